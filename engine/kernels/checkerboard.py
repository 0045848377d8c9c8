"""Checkerboard half-sweeps of the 2D Ising model, batched over replicas.

Conventions (J > 0 ferromagnetic, periodic L x L torus, natural log):
    E(s) = - sum_<ij> J_ij s_i s_j - h sum_i s_i
    local field  lambda_i = sum_{j in nbr(i)} J_ij s_j + h,   flip cost dE = 2 s_i lambda_i
Colour c in {0, 1} is the sublattice of sites (i, j) with (i + j) % 2 == c; all sites of
one colour are conditionally independent, so a half-sweep updates them in parallel and
keeps detailed balance. A full sweep is colour 0 then colour 1.

Layouts shared by the Triton kernels and their PyTorch twins:
    spins      int8 (R, L, L), values +1/-1, updated in place; L even.
    beta       float, or float32 tensor (R,) (one inverse temperature per replica).
    h          float, or float32 (L, L): a per-site field h_ij shared by all replicas (the
               fully visible Boltzmann machine on the lattice graph); ``measure`` takes a float.
    couplings  None (uniform J = 1) or float32 (2, L, L) shared by all replicas:
               couplings[0, i, j] = J between (i, j) and (i, j+1 mod L)   ("right" bond)
               couplings[1, i, j] = J between (i, j) and (i+1 mod L, j)   ("down" bond)
    uniforms   None (generate in-kernel / in-twin) or float32 (R, L, L // 2): the uniform
               used for the k-th active site of row i, which is column j = 2k + ((i + c) % 2).
               Kernel and twin given the same uniforms produce the same spins.
    seed, counter  the random stream: (seed, counter) names one half-sweep's numbers;
               callers advance counter by one per half-sweep.
Returns the number of spins flipped in each replica, int32 (R,), on the device (no sync).

Implementations, one contract (``half_sweep`` / ``sweep`` / ``measure`` pick one):
    Triton kernels     CUDA (and CPU tensors under TRITON_INTERPRET=1, for tests): in-kernel
                       Philox4x32-10, key = seed, counter = (site, replica, counter lo, hi).
    fast CPU twin      packed colour layout, a fused counter-based hash generator, compiled by
                       torch.compile on large lattices (eager below COMPILE_MIN_SITES); a new
                       size is compiled in a background thread while the twin runs eagerly
                       (``compiling()`` names the sizes being built), same spins either way.
    reference twin     ``half_sweep_torch``: masked full lattice, torch.rand (used when a
                       ``generator`` is passed); the test reference and benchmark neighbour.
The three streams differ (Philox, hash, torch.rand); the statistics do not, and given the
same ``uniforms`` all three produce the same spins.
"""

from __future__ import annotations

import atexit as _atexit
import contextlib as _contextlib
import ctypes as _ctypes
import os as _os
import sys as _sys
import threading as _threading
import time as _time
from typing import Any, Iterator

import numpy as _np
import torch

from ..device import use_triton

METHODS = ("metropolis", "gibbs")


def _beta_tensor(beta: float | torch.Tensor, spins: torch.Tensor) -> torch.Tensor:
    r = spins.shape[0]
    if isinstance(beta, torch.Tensor):
        b = beta.to(device=spins.device, dtype=torch.float32)
        return b.expand(r) if b.dim() == 0 else b
    return torch.full((r,), float(beta), device=spins.device, dtype=torch.float32)


def color_mask(L: int, color: int, device: torch.device | str = "cpu") -> torch.Tensor:
    i = torch.arange(L, device=device)
    return ((i[:, None] + i[None, :]) % 2) == color


def local_field(spins: torch.Tensor, couplings: torch.Tensor | None, h: float) -> torch.Tensor:
    """lambda = sum_j J_ij s_j + h at every site, float32 (R, L, L)."""
    s = spins.to(torch.float32)
    right = torch.roll(s, -1, dims=2)
    left = torch.roll(s, 1, dims=2)
    down = torch.roll(s, -1, dims=1)
    up = torch.roll(s, 1, dims=1)
    if couplings is None:
        return right + left + down + up + h
    jr, jd = couplings[0], couplings[1]
    jl = torch.roll(jr, 1, dims=1)  # bond to the left of (i, j) is the right bond of (i, j-1)
    ju = torch.roll(jd, 1, dims=0)  # bond above (i, j) is the down bond of (i-1, j)
    return jr * right + jl * left + jd * down + ju * up + h


def expand_uniforms(uniforms: torch.Tensor, color: int) -> torch.Tensor:
    """(R, L, L//2) packed sublattice uniforms -> (R, L, L) with the active sites filled."""
    r, L, half = uniforms.shape
    full = torch.ones(r, L, 2 * half, device=uniforms.device, dtype=uniforms.dtype)
    even_rows = uniforms[:, 0::2, :]
    odd_rows = uniforms[:, 1::2, :]
    # row i active columns start at (i + color) % 2
    full[:, 0::2, (color % 2)::2] = even_rows
    full[:, 1::2, ((1 + color) % 2)::2] = odd_rows
    return full


def half_sweep_torch(spins: torch.Tensor, color: int, beta: float | torch.Tensor, h: float = 0.0,
                     method: str = "metropolis", seed: int = 0, counter: int = 0,
                     couplings: torch.Tensor | None = None,
                     uniforms: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Reference twin: one checkerboard half-sweep, in place. See the module docstring."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    r, L, _ = spins.shape
    b = _beta_tensor(beta, spins)[:, None, None]
    lam = local_field(spins, couplings, h)
    mask = color_mask(L, color, spins.device)
    if uniforms is None:
        u = torch.rand(spins.shape, device=spins.device, generator=generator)
    else:
        u = expand_uniforms(uniforms, color)
    s = spins.to(torch.float32)
    if method == "metropolis":
        # accept with min(1, exp(-beta dE)), dE = 2 s lambda
        flip = u < torch.exp(-b * 2.0 * s * lam)
        new = torch.where(flip, -s, s)
    else:
        # heat bath: s = +1 with probability exp(b lam) / (2 cosh b lam) = sigmoid(2 b lam)
        new = torch.where(u < torch.sigmoid(2.0 * b * lam), 1.0, -1.0)
    new = torch.where(mask, new, s)
    flipped = (new != s).sum(dim=(1, 2), dtype=torch.int32)
    spins.copy_(new.to(torch.int8))
    return flipped


def measure_torch(spins: torch.Tensor, couplings: torch.Tensor | None = None,
                  h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Total energy and total magnetisation of each replica, float32 (R,) each, on the device."""
    s = spins.to(torch.float32)
    right = torch.roll(s, -1, dims=2)
    down = torch.roll(s, -1, dims=1)
    if couplings is None:
        bonds = s * (right + down)
    else:
        bonds = s * (couplings[0] * right + couplings[1] * down)
    m = s.sum(dim=(1, 2))
    e = -bonds.sum(dim=(1, 2)) - h * m
    return e, m


# -- Triton kernels -------------------------------------------------------------------------
# Tiling: one program updates BLOCK_ROWS rows of one replica. Each row's L/2 active sites are
# split into 4 sub-tiles of QW sites (site k = q * QW + k4, q = 0..3), because one Philox call
# yields 4 independent uint32: the call for (row i, k4) feeds sites k4, QW + k4, 2 QW + k4,
# 3 QW + k4. The Philox counter is (c0, c1, c2, c3) = (i * QW + k4, replica, counter mod 2^32,
# counter >> 32), the key is the 64-bit seed: distinct (seed, counter, replica, site) never
# share a number, for any number of sweeps. A uint32 x becomes the uniform (x >> 8) * 2^-24,
# in [0, 1) with 24 random bits.
from . import tl, triton  # None where Triton is absent (the CPU path never needs it)

_U24 = 1.0 / (1 << 24)

if triton is not None:

    @triton.jit
    def _site_update(spins_ptr, coup_ptr, base, rows, up, down, parity, k, row_ok, L, HALF,
                     beta, h, u, METHOD: tl.constexpr, HAS_COUP: tl.constexpr,
                     field_ptr, HAS_FIELD: tl.constexpr):
        """Update the active sites (rows, k) of one sub-tile in place; returns the flip count."""
        mask = row_ok[:, None] & (k < HALF)[None, :]
        j = 2 * k[None, :] + parity[:, None]
        jl = tl.where(j == 0, L - 1, j - 1)
        jr = tl.where(j == L - 1, 0, j + 1)
        row = rows[:, None] * L
        rup = up[:, None] * L
        rdn = down[:, None] * L
        s = tl.load(spins_ptr + base + row + j, mask=mask, other=1).to(tl.float32)
        s_r = tl.load(spins_ptr + base + row + jr, mask=mask, other=0).to(tl.float32)
        s_l = tl.load(spins_ptr + base + row + jl, mask=mask, other=0).to(tl.float32)
        s_d = tl.load(spins_ptr + base + rdn + j, mask=mask, other=0).to(tl.float32)
        s_u = tl.load(spins_ptr + base + rup + j, mask=mask, other=0).to(tl.float32)
        if HAS_FIELD:
            h = tl.load(field_ptr + row + j, mask=mask, other=0.0)
        if HAS_COUP:
            plane = L * L
            j_r = tl.load(coup_ptr + row + j, mask=mask, other=0.0)
            j_l = tl.load(coup_ptr + row + jl, mask=mask, other=0.0)
            j_d = tl.load(coup_ptr + plane + row + j, mask=mask, other=0.0)
            j_u = tl.load(coup_ptr + plane + rup + j, mask=mask, other=0.0)
            lam = j_r * s_r + j_l * s_l + j_d * s_d + j_u * s_u + h
        else:
            lam = s_r + s_l + s_d + s_u + h
        if METHOD == 0:
            # Metropolis: accept with min(1, exp(-beta dE)), dE = 2 s lambda
            flip = u < tl.exp(-beta * 2.0 * s * lam)
            new = tl.where(flip, -s, s)
        else:
            # heat bath: s = +1 with probability sigmoid(2 beta lambda)
            p_up = 1.0 / (1.0 + tl.exp(-(2.0 * beta) * lam))
            new = tl.where(u < p_up, 1.0, -1.0)
        changed = (new != s) & mask
        tl.store(spins_ptr + base + row + j, new.to(tl.int8), mask=changed)
        return tl.sum(tl.sum(changed.to(tl.int32), axis=1), axis=0)

    @triton.jit(do_not_specialize=["seed", "ctr_lo", "ctr_hi"])
    def _half_sweep_kernel(spins_ptr, beta_ptr, coup_ptr, unif_ptr, flips_ptr, h, seed,
                           ctr_lo, ctr_hi, L, HALF, color,
                           BLOCK_ROWS: tl.constexpr, QW: tl.constexpr, METHOD: tl.constexpr,
                           HAS_COUP: tl.constexpr, HAS_UNIF: tl.constexpr,
                           field_ptr, HAS_FIELD: tl.constexpr):
        r = tl.program_id(0)
        rows = tl.program_id(1) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        k4 = tl.arange(0, QW)
        row_ok = rows < L
        base = r.to(tl.int64) * L * L
        beta = tl.load(beta_ptr + r)
        up = tl.where(rows == 0, L - 1, rows - 1)
        down = tl.where(rows == L - 1, 0, rows + 1)
        parity = (rows + color) % 2
        if HAS_UNIF:
            ubase = r.to(tl.int64) * L * HALF + rows[:, None] * HALF
            umask = row_ok[:, None] & (k4 < HALF)[None, :]
            u0 = tl.load(unif_ptr + ubase + k4[None, :], mask=umask, other=1.0)
            umask = row_ok[:, None] & ((QW + k4) < HALF)[None, :]
            u1 = tl.load(unif_ptr + ubase + QW + k4[None, :], mask=umask, other=1.0)
            umask = row_ok[:, None] & ((2 * QW + k4) < HALF)[None, :]
            u2 = tl.load(unif_ptr + ubase + 2 * QW + k4[None, :], mask=umask, other=1.0)
            umask = row_ok[:, None] & ((3 * QW + k4) < HALF)[None, :]
            u3 = tl.load(unif_ptr + ubase + 3 * QW + k4[None, :], mask=umask, other=1.0)
        else:
            zero = tl.zeros([BLOCK_ROWS, QW], dtype=tl.uint32)
            c0 = (rows[:, None] * QW + k4[None, :]).to(tl.uint32) + zero
            c1 = zero + r.to(tl.uint32)
            c2 = (zero + ctr_lo).to(tl.uint32)   # no .to on a scalar arg: 1 arrives as a constexpr
            c3 = (zero + ctr_hi).to(tl.uint32)
            x0, x1, x2, x3 = tl.philox(seed, c0, c1, c2, c3)
            u0 = (x0 >> 8).to(tl.float32) * 5.9604644775390625e-08
            u1 = (x1 >> 8).to(tl.float32) * 5.9604644775390625e-08
            u2 = (x2 >> 8).to(tl.float32) * 5.9604644775390625e-08
            u3 = (x3 >> 8).to(tl.float32) * 5.9604644775390625e-08
        n = _site_update(spins_ptr, coup_ptr, base, rows, up, down, parity, k4, row_ok, L, HALF,
                         beta, h, u0, METHOD, HAS_COUP, field_ptr, HAS_FIELD)
        n += _site_update(spins_ptr, coup_ptr, base, rows, up, down, parity, QW + k4, row_ok, L,
                          HALF, beta, h, u1, METHOD, HAS_COUP, field_ptr, HAS_FIELD)
        n += _site_update(spins_ptr, coup_ptr, base, rows, up, down, parity, 2 * QW + k4, row_ok,
                          L, HALF, beta, h, u2, METHOD, HAS_COUP, field_ptr, HAS_FIELD)
        n += _site_update(spins_ptr, coup_ptr, base, rows, up, down, parity, 3 * QW + k4, row_ok,
                          L, HALF, beta, h, u3, METHOD, HAS_COUP, field_ptr, HAS_FIELD)
        tl.atomic_add(flips_ptr + r, n)

    @triton.jit(do_not_specialize=["seed", "ctr_lo", "ctr_hi"])
    def _uniforms_kernel(out_ptr, seed, ctr_lo, ctr_hi, L, HALF,
                         BLOCK_ROWS: tl.constexpr, QW: tl.constexpr):
        """The uniforms the half-sweep kernel draws in-kernel, written out as (R, L, L//2):
        for testing the generator's statistics and its counter layout."""
        r = tl.program_id(0)
        rows = tl.program_id(1) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        k4 = tl.arange(0, QW)
        row_ok = rows < L
        zero = tl.zeros([BLOCK_ROWS, QW], dtype=tl.uint32)
        c0 = (rows[:, None] * QW + k4[None, :]).to(tl.uint32) + zero
        c1 = zero + r.to(tl.uint32)
        c2 = (zero + ctr_lo).to(tl.uint32)   # no .to on a scalar arg: 1 arrives as a constexpr
        c3 = (zero + ctr_hi).to(tl.uint32)
        x0, x1, x2, x3 = tl.philox(seed, c0, c1, c2, c3)
        obase = r.to(tl.int64) * L * HALF + rows[:, None] * HALF
        m = row_ok[:, None] & (k4 < HALF)[None, :]
        tl.store(out_ptr + obase + k4[None, :], (x0 >> 8).to(tl.float32) * 5.9604644775390625e-08, mask=m)
        m = row_ok[:, None] & ((QW + k4) < HALF)[None, :]
        tl.store(out_ptr + obase + QW + k4[None, :], (x1 >> 8).to(tl.float32) * 5.9604644775390625e-08, mask=m)
        m = row_ok[:, None] & ((2 * QW + k4) < HALF)[None, :]
        tl.store(out_ptr + obase + 2 * QW + k4[None, :], (x2 >> 8).to(tl.float32) * 5.9604644775390625e-08, mask=m)
        m = row_ok[:, None] & ((3 * QW + k4) < HALF)[None, :]
        tl.store(out_ptr + obase + 3 * QW + k4[None, :], (x3 >> 8).to(tl.float32) * 5.9604644775390625e-08, mask=m)

    @triton.jit
    def _measure_kernel(spins_ptr, coup_ptr, bonds_ptr, mag_ptr, L,
                        BLOCK_ROWS: tl.constexpr, LP: tl.constexpr, HAS_COUP: tl.constexpr):
        """Per replica: bonds = sum_i s_i (J_right s_right + J_down s_down), M = sum_i s_i."""
        r = tl.program_id(0)
        rows = tl.program_id(1) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        cols = tl.arange(0, LP)
        mask = (rows < L)[:, None] & (cols < L)[None, :]
        base = r.to(tl.int64) * L * L
        row = rows[:, None] * L
        rdn = tl.where(rows == L - 1, 0, rows + 1)[:, None] * L
        jr = tl.where(cols == L - 1, 0, cols + 1)[None, :]
        s = tl.load(spins_ptr + base + row + cols[None, :], mask=mask, other=0).to(tl.int32)
        s_r = tl.load(spins_ptr + base + row + jr, mask=mask, other=0).to(tl.int32)
        s_d = tl.load(spins_ptr + base + rdn + cols[None, :], mask=mask, other=0).to(tl.int32)
        if HAS_COUP:
            plane = L * L
            c_r = tl.load(coup_ptr + row + cols[None, :], mask=mask, other=0.0)
            c_d = tl.load(coup_ptr + plane + row + cols[None, :], mask=mask, other=0.0)
            bonds = tl.sum(tl.sum(s.to(tl.float32) * (c_r * s_r.to(tl.float32) + c_d * s_d.to(tl.float32)), axis=1), axis=0)
        else:
            bonds = tl.sum(tl.sum(s * (s_r + s_d), axis=1), axis=0)
        tl.atomic_add(bonds_ptr + r, bonds)
        tl.atomic_add(mag_ptr + r, tl.sum(tl.sum(s, axis=1), axis=0))


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _sweep_tiling(L: int) -> tuple[int, int]:
    """(BLOCK_ROWS, QW): QW = pow2 >= ceil(L/2 / 4) sites per sub-tile; rows so a program
    holds about 1024 sites per sub-tile (a whole small lattice is one program)."""
    half = L // 2
    qw = _pow2(-(-half // 4))
    rows = min(_pow2(L), max(1, 1024 // qw))
    return rows, qw


def _check_spins(spins: torch.Tensor) -> None:
    if spins.dtype != torch.int8 or spins.dim() != 3 or spins.shape[1] != spins.shape[2]:
        raise ValueError(f"spins must be int8 (R, L, L), got {spins.dtype} {tuple(spins.shape)}")
    if spins.shape[1] % 2:
        raise ValueError(f"L must be even, got {spins.shape[1]}")
    if not spins.is_contiguous():
        raise ValueError("spins must be contiguous")


def half_sweep_triton(spins: torch.Tensor, color: int, beta: float | torch.Tensor, h: float = 0.0,
                      method: str = "metropolis", seed: int = 0, counter: int = 0,
                      couplings: torch.Tensor | None = None,
                      uniforms: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Triton half-sweep (CUDA; CPU tensors under TRITON_INTERPRET=1). Same contract as the
    twin; ``generator`` is ignored (the stream is (seed, counter))."""
    if triton is None:
        raise RuntimeError("triton is not installed")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_spins(spins)
    R, L, _ = spins.shape
    half = L // 2
    b = _beta_tensor(beta, spins).contiguous()
    flips = torch.zeros(R, dtype=torch.int32, device=spins.device)
    coup = couplings.to(device=spins.device, dtype=torch.float32).contiguous() if couplings is not None else b
    unif = uniforms.to(device=spins.device, dtype=torch.float32).contiguous() if uniforms is not None else b
    per_site = isinstance(h, torch.Tensor)
    field = h.to(device=spins.device, dtype=torch.float32).contiguous() if per_site else b
    rows, qw = _sweep_tiling(L)
    counter = int(counter) & 0xFFFFFFFFFFFFFFFF
    grid = (R, triton.cdiv(L, rows))
    _half_sweep_kernel[grid](spins, b, coup, unif, flips, 0.0 if per_site else float(h),
                             int(seed) & 0x7FFFFFFFFFFFFFFF,
                             counter & 0xFFFFFFFF, counter >> 32, L, half, int(color) % 2,
                             BLOCK_ROWS=rows, QW=qw, METHOD=METHODS.index(method),
                             HAS_COUP=couplings is not None, HAS_UNIF=uniforms is not None,
                             field_ptr=field, HAS_FIELD=per_site)
    return flips


def uniforms_triton(R: int, L: int, seed: int, counter: int, device: torch.device | str) -> torch.Tensor:
    """The in-kernel uniforms of half-sweep ``(seed, counter)``, float32 (R, L, L//2)."""
    if triton is None:
        raise RuntimeError("triton is not installed")
    half = L // 2
    out = torch.empty((R, L, half), dtype=torch.float32, device=device)
    rows, qw = _sweep_tiling(L)
    counter = int(counter) & 0xFFFFFFFFFFFFFFFF
    _uniforms_kernel[(R, triton.cdiv(L, rows))](out, int(seed) & 0x7FFFFFFFFFFFFFFF,
                                                counter & 0xFFFFFFFF, counter >> 32, L, half,
                                                BLOCK_ROWS=rows, QW=qw)
    return out


def measure_triton(spins: torch.Tensor, couplings: torch.Tensor | None = None,
                   h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton twin of :func:`measure_torch`: float32 (R,) energies and magnetisations."""
    if triton is None:
        raise RuntimeError("triton is not installed")
    _check_spins(spins)
    R, L, _ = spins.shape
    lp = _pow2(L)
    rows = min(lp, max(1, 4096 // lp))
    bonds = torch.zeros(R, dtype=torch.int32 if couplings is None else torch.float32, device=spins.device)
    mag = torch.zeros(R, dtype=torch.int32, device=spins.device)
    coup = couplings.to(device=spins.device, dtype=torch.float32).contiguous() if couplings is not None else bonds
    _measure_kernel[(R, triton.cdiv(L, rows))](spins, coup, bonds, mag, L, BLOCK_ROWS=rows, LP=lp,
                                               HAS_COUP=couplings is not None)
    m = mag.to(torch.float32)
    return -bonds.to(torch.float32) - h * m, m


# -- the fast CPU twin -------------------------------------------------------------------------
# The reference twin above costs a torch.rand per site (about 3 ns) and updates the masked full
# lattice. The fast twin works on the packed colour layout P_c[r, i, k] = spins[r, i, 2k + (i+c)%2]
# (the same layout as ``uniforms``), so a half-sweep touches only the active sublattice, and draws
# its uniforms from a counter-based hash fused into the update:
#     x = fmix32(fmix32(site ^ k1[r]) + k2[r]),   u = (x >> 8) * 2^-24,   site = i * L/2 + k,
# where (k1[r], k2[r]) = splitmix64(splitmix64(splitmix64(seed) ^ counter) ^ r * golden), split
# into two 32-bit keys (fmix32: MurmurHash3's finaliser, a bijection of 32-bit words). Distinct
# (seed, counter, replica) give unrelated streams; within one half-sweep all L^2/2 numbers of
# a replica are distinct. The same Python function runs eagerly (small lattices, tests) and
# under torch.compile (large lattices): same integer arithmetic, same spins.
_M64 = (1 << 64) - 1
_FMIX_1 = 0x85EBCA6B - (1 << 32)   # MurmurHash3 fmix32 multipliers as signed int32
_FMIX_2 = 0xC2B2AE35 - (1 << 32)
COMPILE_MIN_SITES = 1 << 16        # below this many sites per half-sweep the eager twin is used
BUILD_NICENESS = 10                # the background build thread's CPU priority (nice), Linux
BUILD_SWITCH_INTERVAL = 0.0005     # the GIL switch interval (s) while a build runs (default 0.005)


def _splitmix64(x: _np.ndarray) -> _np.ndarray:
    """Vectorised splitmix64 finaliser on uint64 (wrapping arithmetic)."""
    with _np.errstate(over="ignore"):
        z = x + _np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _np.uint64(30))) * _np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _np.uint64(27))) * _np.uint64(0x94D049BB133111EB)
        return z ^ (z >> _np.uint64(31))


def hash_keys(seed: int, counter: int, replicas: int) -> torch.Tensor:
    """The fast twin's per-replica keys for half-sweep (seed, counter): int32 (2, R, 1, 1)."""
    base = _splitmix64(_np.array([int(seed) & _M64], dtype=_np.uint64))[0]
    r = _np.arange(replicas, dtype=_np.uint64)
    with _np.errstate(over="ignore"):
        z = _splitmix64(_splitmix64(base ^ _np.uint64(int(counter) & _M64)) ^ (r * _np.uint64(0x9E3779B97F4A7C15)))
    keys = _np.stack([(z & _np.uint64(0xFFFFFFFF)), (z >> _np.uint64(32))]).astype(_np.uint32).view(_np.int32)
    return torch.from_numpy(keys.reshape(2, replicas, 1, 1).copy())


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3 fmix32 on int32 tensors (wrapping multiply, logical shifts by masking)."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * _FMIX_1
    x = x ^ ((x >> 13) & 0x7FFFF)
    x = x * _FMIX_2
    return x ^ ((x >> 16) & 0xFFFF)


def _hash_uniforms(keys: torch.Tensor, L: int, half: int) -> torch.Tensor:
    site = torch.arange(L * half, dtype=torch.int32, device=keys.device).view(1, L, half)
    x = _fmix32(_fmix32(site ^ keys[0]) + keys[1])
    return ((x >> 8) & 0xFFFFFF).to(torch.float32) * (1.0 / 16777216.0)


def hash_uniforms(R: int, L: int, seed: int, counter: int) -> torch.Tensor:
    """The uniforms the fast twin draws for half-sweep (seed, counter), float32 (R, L, L//2)
    in the ``uniforms`` layout (for testing the generator)."""
    return _hash_uniforms(hash_keys(seed, counter, R), L, L // 2)


def _pad(other: torch.Tensor) -> torch.Tensor:
    """Packed (R, L, L/2) -> (R, L+2, L/2+2) with a periodic halo of one row / one packed column,
    so every neighbour is a plain slice (vectorisable loads, no modulo)."""
    o = torch.cat((other[:, -1:], other, other[:, :1]), dim=1)
    return torch.cat((o[:, :, -1:], o, o[:, :, :1]), dim=2)


def _update_packed(active: torch.Tensor, other_pad: torch.Tensor, parity0: torch.Tensor,
                   beta: torch.Tensor, h: torch.Tensor, keys: torch.Tensor,
                   uniforms: torch.Tensor | None, jr: torch.Tensor | None, jl: torch.Tensor | None,
                   jd: torch.Tensor | None, ju: torch.Tensor | None, method: int) -> torch.Tensor:
    """New spins of the active colour, packed int8 (R, L, L/2), from the other colour's
    (padded by :func:`_pad`). parity0: bool (1, L, 1), True on rows whose active sites sit at
    even columns: there the second horizontal neighbour is other[i, k-1], else other[i, k+1].
    beta: float32 (R, 1, 1); h: float32 scalar tensor or a packed per-site field (1, L, L/2); keys: int32 (2, R, 1, 1)."""
    _, L, half = active.shape
    o = other_pad.to(torch.float32)
    same_k = o[:, 1:-1, 1:-1]                                           # other[i, k]
    shifted = torch.where(parity0, o[:, 1:-1, :-2], o[:, 1:-1, 2:])      # other[i, k -/+ 1]
    up = o[:, :-2, 1:-1]                                                # other[i-1, k]
    down = o[:, 2:, 1:-1]                                               # other[i+1, k]
    if jr is None:
        lam = same_k + shifted + up + down + h
    else:
        # other[i, k] is the right neighbour on even-column rows, the left one otherwise;
        # summed in the reference twin's order (right, left, down, up) for identical rounding
        right = torch.where(parity0, same_k, shifted)
        left = torch.where(parity0, shifted, same_k)
        lam = jr * right + jl * left + jd * down + ju * up + h
    u = _hash_uniforms(keys, L, half) if uniforms is None else uniforms
    s = active.to(torch.float32)
    if method == 0:
        # Metropolis: accept with min(1, exp(-beta dE)), dE = 2 s lambda
        new = torch.where(u < torch.exp(-beta * 2.0 * s * lam), -s, s)
    else:
        # heat bath: s = +1 with probability sigmoid(2 beta lambda)
        new = torch.where(u < torch.sigmoid(2.0 * beta * lam), 1.0, -1.0)
    return new.to(torch.int8)


def _count_flips(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return (new != old).view(new.shape[0], -1).sum(dim=1, dtype=torch.int32)


def pack(spins: torch.Tensor, color: int) -> torch.Tensor:
    """(R, L, L) -> the packed colour-``color`` sites (R, L, L//2): P[r, i, k] = spins[r, i, 2k + (i+c)%2]."""
    R, L, _ = spins.shape
    v = spins.reshape(R, L // 2, 2, L // 2, 2)
    c = color % 2
    return torch.stack((v[:, :, 0, :, c], v[:, :, 1, :, 1 - c]), dim=2).reshape(R, L, L // 2)


def _unpack_into(p0: torch.Tensor, p1: torch.Tensor, spins: torch.Tensor) -> None:
    """Packed colours 0 and 1 -> spins (R, L, L), in place (four strided copies)."""
    R, L, half = p0.shape
    v = spins.view(R, L // 2, 2, L // 2, 2)
    a = p0.view(R, L // 2, 2, half)
    b = p1.view(R, L // 2, 2, half)
    v[:, :, 0, :, 0].copy_(a[:, :, 0])   # even rows: colour 0 at even columns
    v[:, :, 0, :, 1].copy_(b[:, :, 0])
    v[:, :, 1, :, 0].copy_(b[:, :, 1])   # odd rows: colour 1 at even columns
    v[:, :, 1, :, 1].copy_(a[:, :, 1])


def _pack_both(spins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return pack(spins, 0), pack(spins, 1)


_COUPLING_CACHE: dict = {}


def _packed_couplings(couplings: torch.Tensor, color: int) -> tuple[torch.Tensor, ...]:
    """J_right, J_left, J_down, J_up of each colour-``color`` site, packed float32 (1, L, L//2).
    Cached per couplings tensor (held by a weak reference, checked with its version counter,
    so an in-place edit or a new tensor at a reused address is never served stale)."""
    import weakref

    key = (id(couplings), color)
    got = _COUPLING_CACHE.get(key)
    if got is not None and got[0]() is couplings and got[1] == couplings._version:
        return got[2]
    c = couplings.to(torch.float32)
    jr, jd = c[0], c[1]
    jl = torch.roll(jr, 1, dims=1)
    ju = torch.roll(jd, 1, dims=0)
    packed = tuple(pack(j[None].contiguous(), color).contiguous() for j in (jr, jl, jd, ju))
    if len(_COUPLING_CACHE) > 8:
        _COUPLING_CACHE.clear()
    _COUPLING_CACHE[key] = (weakref.ref(couplings), couplings._version, packed)
    return packed


def _signature(args: tuple) -> tuple:
    """What a build serves: each tensor's shape, strides and dtype, every other argument's
    value (None, ints), with the replica count R = args[0].shape[0] left out (a size or
    stride equal to it reads -1) when R > 1: builds are dynamic in R (:func:`_like`), so a
    population whose size changes every step (population annealing) needs one build."""
    r = args[0].shape[0] if isinstance(args[0], torch.Tensor) else 0

    def free(sizes: Any) -> tuple:
        return tuple(-1 if r > 1 and n == r else n for n in sizes)

    return tuple((free(a.shape), free(a.stride()), a.dtype) if isinstance(a, torch.Tensor) else a
                 for a in args)


def _like(a: Any, replicas: int) -> Any:
    """A copy of a tensor argument with the same shape, strides and values (for a build off
    the caller's data), every dimension of size ``replicas`` (> 1) marked dynamic; anything
    else as it is."""
    if not isinstance(a, torch.Tensor):
        return a
    out = torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device=a.device).copy_(a)
    if replicas > 1:
        from torch._dynamo import maybe_mark_dynamic   # only here: importing it takes seconds

        for dim, n in enumerate(out.shape):
            if n == replicas:
                maybe_mark_dynamic(out, dim)
    return out


class _BuildCancelled(BaseException):
    """Raised in a build thread to stop it (at exit); not an Exception, so the compiler's
    own handlers let it through."""


class _Compiled:
    """torch.compile'd versions of the fast twin's pieces.

    The first call of a piece with a new signature (a new lattice size, say) queues its build
    for one background thread (niced, so the stepping keeps the CPU), on copies of that
    call's arguments, and runs eagerly; so do all calls while any build is queued or under
    way (no compiled code runs beside a compilation). Once
    every build is done the compiled pieces run. The two paths are the same integer hash and
    the same float32 comparisons, so they give the same spins and a run does not depend on
    when the switch happened. With ``background`` False (benchmarks, tests) a build runs in
    the calling thread on its first call, as torch.compile does. Any failure (no compiler, an
    inductor error) falls back to eager for the rest of the process; ``failed`` says why.
    ``MLETUI_NO_COMPILE=1`` keeps everything eager."""

    def __init__(self) -> None:
        self.fns: dict[str, Any] = {}
        self.failed: str | None = None if _os.environ.get("MLETUI_NO_COMPILE", "") in ("", "0") \
            else "disabled by MLETUI_NO_COMPILE"
        self.background = True
        self.ready: set[tuple] = set()          # (name, signature) built
        self.pending: dict[tuple, str] = {}     # (name, signature) -> what it is for ("L=1024")
        self.compiled_calls = 0                 # calls that ran a compiled piece (for tests)
        self._lock = _threading.Lock()
        self._jobs: list[tuple] = []            # builds queued for the worker
        self._worker: _threading.Thread | None = None
        self._registered = False                # cancel() registered with atexit

    def _compiled(self, name: str, fn: Any) -> Any:
        got = self.fns.get(name)
        if got is None:
            got = self.fns[name] = torch.compile(fn)
        return got

    def _fail(self, exc: BaseException) -> None:  # pragma: no cover - depends on the toolchain
        self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0]

    def call(self, name: str, fn: Any, *args: Any, label: str = "") -> Any:
        if self.failed is not None:
            return fn(*args)
        key = (name, _signature(args))
        if not self.background:
            try:
                out = self._compiled(name, fn)(*args)
            except Exception as exc:  # pragma: no cover - depends on the toolchain
                self._fail(exc)
                return fn(*args)
            self.ready.add(key)
            self.compiled_calls += 1
            return out
        with self._lock:
            if key in self.ready and not self.pending:
                compiled = self.fns[name]
            else:
                compiled = None
                if key not in self.ready and key not in self.pending:
                    self._start(key, name, fn, args, label)
        if compiled is None:
            return fn(*args)
        try:
            out = compiled(*args)
        except Exception as exc:  # pragma: no cover - depends on the toolchain
            self._fail(exc)
            return fn(*args)
        self.compiled_calls += 1
        return out

    def _start(self, key: tuple, name: str, fn: Any, args: tuple, label: str) -> None:
        """Queue the build of ``key`` for the worker thread (called with the lock held)."""
        self.pending[key] = label or name
        copies = tuple(_like(a, 1) for a in args)        # the caller may change them in place
        self._jobs.append((key, name, fn, copies, args[0].shape[0], torch.is_grad_enabled()))
        if self._worker is None:
            if not self._registered:
                _atexit.register(self.cancel)
                self._registered = True
            self._worker = _threading.Thread(target=self._work, name="mletui-compile", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        """The build thread: one build at a time, at a lower CPU priority than the stepping
        (its compiler subprocesses inherit it), until the queue is empty or it is cancelled."""
        try:
            _os.setpriority(_os.PRIO_PROCESS, _threading.get_native_id(), BUILD_NICENESS)
        except (AttributeError, OSError):  # pragma: no cover - not on Linux
            pass
        # the compiler is Python and holds the GIL; every eager op of the stepping thread
        # waits for it up to the switch interval (5 ms): shorter while building
        interval = _sys.getswitchinterval()
        _sys.setswitchinterval(min(interval, BUILD_SWITCH_INTERVAL))
        try:
            while True:
                with self._lock:
                    if not self._jobs:
                        self._worker = None          # the next build starts a new worker
                        _sys.setswitchinterval(interval)
                        return
                    key, name, fn, copies, replicas, grad = self._jobs.pop(0)
                done = False
                try:
                    # torch.compile guards on the grad mode: build as the caller calls
                    with torch.set_grad_enabled(grad):
                        self._compiled(name, fn)(*(_like(a, replicas) for a in copies))
                    done = True
                except Exception as exc:  # pragma: no cover - depends on the toolchain
                    self._fail(exc)
                with self._lock:
                    self.pending.pop(key, None)
                    if done and self.failed is None:
                        self.ready.add(key)
        except _BuildCancelled:
            with self._lock:
                self._jobs.clear()
                self.pending.clear()
                self._worker = None
            _sys.setswitchinterval(interval)

    def cancel(self, timeout: float = 2.0) -> None:
        """Stop the builds (at exit): drop the queue, raise _BuildCancelled in the build
        thread and wait for it. A daemon thread still inside torch when the interpreter
        finalises is killed through C++ frames that may not unwind (std::terminate, exit
        status 134); tracing and code generation are Python, so the exception lands soon."""
        with self._lock:
            self._jobs.clear()
            worker = self._worker
        if worker is None or not worker.is_alive():
            return
        _ctypes.pythonapi.PyThreadState_SetAsyncExc(_ctypes.c_ulong(worker.ident),
                                                    _ctypes.py_object(_BuildCancelled))
        worker.join(timeout)

    def building(self) -> tuple[str, ...]:
        """What the builds under way are for (e.g. "L=1024"), each once, sorted."""
        with self._lock:
            return tuple(sorted(set(self.pending.values())))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the builds under way; True when none is left."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return not self.pending


_COMPILED = _Compiled()


@_contextlib.contextmanager
def foreground_builds() -> Iterator[None]:
    """Within: a new size is compiled on its first call, in the calling thread (benchmarks
    time the compiled kernels, not the eager ones that run during a background build)."""
    before = _COMPILED.background
    _COMPILED.background = False
    try:
        yield
    finally:
        _COMPILED.background = before


def compiling() -> tuple[str, ...]:
    """The lattice sizes whose compiled CPU kernels are being built in the background
    (e.g. ("L=1024",)); meanwhile the fast twin runs eagerly. Empty when none is."""
    return _COMPILED.building()


def _run(name: str, fn: Any, sites: int, *args: Any, L: int = 0) -> Any:
    if sites >= COMPILE_MIN_SITES and args[0].device.type == "cpu":
        return _COMPILED.call(name, fn, *args, label=f"L={L}" if L else "")
    return fn(*args)


def _fast_half(p_act: torch.Tensor, p_oth: torch.Tensor, color: int, b: torch.Tensor, h: float,
               method: str, seed: int, counter: int, couplings: torch.Tensor | None,
               uniforms: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    R, L, half = p_act.shape
    parity0 = ((torch.arange(L, device=p_act.device) + color) % 2 == 0).view(1, L, 1)
    keys = hash_keys(seed, counter, R).to(p_act.device)
    if isinstance(h, torch.Tensor):   # per-site field: packed like the active colour's spins
        hh = pack(h.to(device=p_act.device, dtype=torch.float32)[None].contiguous(), color).contiguous()
    else:
        hh = torch.tensor(float(h), dtype=torch.float32, device=p_act.device)
    js = _packed_couplings(couplings.to(p_act.device), color) if couplings is not None else (None,) * 4
    u = uniforms.to(device=p_act.device, dtype=torch.float32) if uniforms is not None else None
    new = _run(f"update{METHODS.index(method)}{couplings is not None}{u is not None}{hh.dim()}", _update_packed,
               R * L * half, p_act, _pad(p_oth), parity0, b.view(R, 1, 1), hh, keys, u, *js,
               METHODS.index(method), L=L)
    flips = _run("count", _count_flips, R * L * half, new, p_act, L=L)
    return new, flips


def half_sweep_fast(spins: torch.Tensor, color: int, beta: float | torch.Tensor, h: float = 0.0,
                    method: str = "metropolis", seed: int = 0, counter: int = 0,
                    couplings: torch.Tensor | None = None,
                    uniforms: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """The fast CPU twin of one half-sweep (same contract; ``generator`` is ignored: the stream
    is the hash of (seed, counter)). Given ``uniforms``, it matches the reference twin and the
    Triton kernel spin for spin."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_spins(spins)
    R, L, _ = spins.shape
    c = int(color) % 2
    p = list(_pack_both(spins))
    p[c], flips = _fast_half(p[c], p[1 - c], c, _beta_tensor(beta, spins), h, method, seed, counter,
                             couplings, uniforms)
    _unpack_into(p[0], p[1], spins)
    return flips


def sweep_fast(spins: torch.Tensor, beta: float | torch.Tensor, h: float = 0.0,
               method: str = "metropolis", seed: int = 0, counter: int = 0,
               couplings: torch.Tensor | None = None) -> torch.Tensor:
    """One full sweep with the fast CPU twin: pack once, colour 0 then 1, unpack once."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_spins(spins)
    R, L, _ = spins.shape
    b = _beta_tensor(beta, spins)
    p0, p1 = _pack_both(spins)
    p0, f0 = _fast_half(p0, p1, 0, b, h, method, seed, counter, couplings, None)
    p1, f1 = _fast_half(p1, p0, 1, b, h, method, seed, counter + 1, couplings, None)
    _unpack_into(p0, p1, spins)
    return f0 + f1


def _bonds_and_magnetization(spins_pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per replica, int32: sum_i s_i (s_right + s_down) and sum_i s_i, from spins padded by one
    wrapped row and column at the bottom and right."""
    s = spins_pad[:, :-1, :-1].to(torch.int32)
    right = spins_pad[:, :-1, 1:].to(torch.int32)
    down = spins_pad[:, 1:, :-1].to(torch.int32)
    R = s.shape[0]
    bonds = (s * (right + down)).reshape(R, -1).sum(dim=1, dtype=torch.int32)
    return bonds, s.reshape(R, -1).sum(dim=1, dtype=torch.int32)


def measure_fast(spins: torch.Tensor, couplings: torch.Tensor | None = None,
                 h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast CPU twin of :func:`measure_torch` (integer sums; couplings go to the reference)."""
    if couplings is not None:
        return measure_torch(spins, couplings, h)
    R, L, _ = spins.shape
    padded = torch.cat((spins, spins[:, :1]), dim=1)
    padded = torch.cat((padded, padded[:, :, :1]), dim=2)
    bonds, mag = _run("bonds", _bonds_and_magnetization, R * L * L // 2, padded, L=L)
    m = mag.to(torch.float32)
    return -bonds.to(torch.float32) - h * m, m


# -- the benchmark baseline ----------------------------------------------------------------------
def colour_masks(L: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    return color_mask(L, 0, device), color_mask(L, 1, device)


def sweep_naive(spins: torch.Tensor, beta: float, h: float, method: str,
                masks: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The naive eager-PyTorch checkerboard the benchmarks compare with (issue 3): float32
    spins (R, L, L), torch.roll for the neighbours, torch.rand for every site, a boolean
    mask per colour over the full lattice. Returns the new spins (not in place)."""
    for mask in masks:
        lam = (torch.roll(spins, 1, 1) + torch.roll(spins, -1, 1) + torch.roll(spins, 1, 2)
               + torch.roll(spins, -1, 2) + h)
        u = torch.rand_like(spins)
        if method == "metropolis":
            flip = (u < torch.exp(-beta * 2.0 * spins * lam)) & mask
            spins = torch.where(flip, -spins, spins)
        else:
            new = torch.where(u < torch.sigmoid(2.0 * beta * lam), 1.0, -1.0)
            spins = torch.where(mask, new, spins)
    return spins


# Public entry points: dispatch to Triton on CUDA, to the twin elsewhere.
def half_sweep(spins: torch.Tensor, color: int, beta: float | torch.Tensor, h: float = 0.0,
               method: str = "metropolis", seed: int = 0, counter: int = 0,
               couplings: torch.Tensor | None = None,
               uniforms: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """One checkerboard half-sweep in place (see the module docstring). On CUDA: the Triton
    kernel. Elsewhere: the PyTorch twin (``uniforms`` or ``generator`` given: the reference
    twin with exactly those numbers)."""
    if use_triton(spins.device):
        return half_sweep_triton(spins, color, beta, h, method, seed, counter, couplings, uniforms)
    if generator is not None:
        return half_sweep_torch(spins, color, beta, h, method, seed, counter, couplings, uniforms, generator)
    return half_sweep_fast(spins, color, beta, h, method, seed, counter, couplings, uniforms)


def sweep(spins: torch.Tensor, beta: float | torch.Tensor, h: float = 0.0, method: str = "metropolis",
          seed: int = 0, counter: int = 0, couplings: torch.Tensor | None = None,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """One full sweep (colour 0 then 1), consuming counters ``counter`` and ``counter + 1``.
    Returns spins flipped per replica, int32 (R,). On CUDA: two Triton launches; on the CPU
    the fast twin (hash generator keyed by (seed, counter)), or the reference twin drawing
    from ``generator`` when one is given."""
    if generator is None and not use_triton(spins.device) and spins.device.type == "cpu":
        return sweep_fast(spins, beta, h, method, seed, counter, couplings)
    a = half_sweep(spins, 0, beta, h, method, seed, counter, couplings, None, generator)
    b = half_sweep(spins, 1, beta, h, method, seed, counter + 1, couplings, None, generator)
    return a + b


def measure(spins: torch.Tensor, couplings: torch.Tensor | None = None,
            h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Total energy and magnetisation per replica, float32 (R,) each, on the device."""
    if use_triton(spins.device):
        return measure_triton(spins, couplings, h)
    if spins.device.type == "cpu":
        return measure_fast(spins, couplings, h)
    return measure_torch(spins, couplings, h)


# -- representative launches: what engine/kernels/aot.py builds for sm_90 / sm_80 ---------------
# Each calls a launch site above on placeholder tensors, so a build uses the signature the site
# passes. _sweep_tiling gives 12 distinct (BLOCK_ROWS, QW) tiles over L = 4 .. 8192 (the topics'
# range), one per power of two. Default set: the smallest tile (L=4), the Ising topic's default
# (L=64) and the largest (L=8192), spread over the switches (DEFAULT_SWEEPS). Full set: every tile x method x
# couplings x uniforms (96 half-sweeps), plus colour 1 (Triton makes an integer argument equal to
# 1 a constexpr: a second build), an L not divisible by 16 (no alignment hint) and a seed past
# 2^31 (an i64 argument): each a build a run can trigger.
from . import Launch, placeholder  # noqa: E402

SWEEP_SIDES = tuple(1 << k for k in range(2, 14))
# Register spills the compile gate found (local memory, STL/LDL in the SASS), tolerated until
# fixed (the gate fails once one is gone): one 8-byte value parked across the four sub-tiles.
SWEEP_SPILLS = {"L=256 metropolis couplings uniforms": ("sm_90",), "L=8192 gibbs": ("sm_80",)}


def _half_sweep_launch(L: int, method: str = "metropolis", couplings: bool = False,
                       uniforms: bool = False, color: int = 0, seed: int = 12345,
                       default: bool = False) -> Launch:
    def call() -> torch.Tensor:
        R = 2
        return half_sweep_triton(placeholder(R, L, L, dtype=torch.int8), color, placeholder(R), 0.1,
                                 method, seed=seed, counter=7,
                                 couplings=placeholder(2, L, L) if couplings else None,
                                 uniforms=placeholder(R, L, L // 2) if uniforms else None)
    label = " ".join([f"L={L}", method] + ["couplings"] * couplings + ["uniforms"] * uniforms
                     + [f"colour={color}"] * (color != 0) + [f"seed={seed:#x}"] * (seed >= 1 << 31))
    archs = SWEEP_SPILLS.get(label, ())
    return Launch(label, call, default, known="register spill (see SWEEP_SPILLS)" if archs else "",
                  known_archs=archs)


def _measure_launch(L: int, couplings: bool = False, default: bool = False) -> Launch:
    def call() -> tuple[torch.Tensor, torch.Tensor]:
        return measure_triton(placeholder(2, L, L, dtype=torch.int8),
                              placeholder(2, L, L) if couplings else None, 0.1)
    return Launch(f"L={L}" + " couplings" * couplings, call, default)


def _field_launch(L: int, default: bool = False) -> Launch:
    """The per-site field specialisation (HAS_FIELD: the fvbm on the lattice graph)."""
    def call() -> torch.Tensor:
        return half_sweep_triton(placeholder(2, L, L, dtype=torch.int8), 0, placeholder(2), placeholder(L, L),
                                 "gibbs", seed=12345, counter=7, couplings=placeholder(2, L, L))
    return Launch(f"L={L} gibbs couplings field", call, default)


def _uniforms_launch(L: int, default: bool = False) -> Launch:
    return Launch(f"L={L} stream", lambda: uniforms_triton(2, L, 12345, 7, "meta"), default)


DEFAULT_SWEEPS = {(4, "metropolis", False, False), (64, "gibbs", False, True), (8192, "metropolis", True, False)}

LAUNCHES = (
    *(_half_sweep_launch(L, m, c, u, default=(L, m, c, u) in DEFAULT_SWEEPS)
      for L in SWEEP_SIDES for m in METHODS for c in (False, True) for u in (False, True)),
    _half_sweep_launch(64, color=1),
    _half_sweep_launch(100),
    _half_sweep_launch(1024, seed=0x1234_5678_9ABC),
    *(_measure_launch(L, c, default=(L, c) == (8192, True)) for L in SWEEP_SIDES for c in (False, True)),
    *(_uniforms_launch(L, default=L == 4) for L in SWEEP_SIDES),
    _field_launch(64, default=True),
)
