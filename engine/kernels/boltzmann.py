"""Kernels of Boltzmann-machine learning: the sampling half of a block-Gibbs step, and the
fully visible machine's per-site terms shared by pseudo-likelihood and minimum probability flow.

``sample_layer`` — one layer of block Gibbs (Tieleman 2008; the rbm's conditionals
p(z_j = 1 | v) = sigma(c_j + (v^T W)_j) and p(v_i = 1 | z) = sigma(b_i + (W z)_i)):
    pre       float (R, n): the matmul half (v @ W or z @ W^T, done by cuBLAS / MKL).
    bias      float (n,).
    returns   samples (R, n) in {0, 1} (same dtype as ``pre``) with P(x = 1) = sigma(pre + bias),
              and the probabilities themselves (None when ``want_probs`` is False).
    stat      optional float (n,), accumulated in place: stat += sum over rows of the
              probabilities (the fused statistic of a bias gradient).
    uniforms  optional float (R, n): the uniform used for each draw (x = u < p). Kernel and twin
              given the same uniforms draw the same samples.
    seed, counter  the in-kernel Philox4x32-10 stream on CUDA: key = seed, counter =
              (element index lo, element index hi, counter lo, counter hi), uniform
              (x0 >> 8) * 2^-24. The twin draws torch.rand from ``generator`` instead.

``site_terms`` — from the field matrix F = X J + h (f_i the local field of spin i) and the
±1 data X: each site's flip energy dE_i = 2 s_i f_i (the energy change when s_i flips), then
    pl   term ln sigma(dE_i)      (Besag's pseudo-likelihood; to maximise)
         coefficient d term / d f_i = 2 s_i sigma(-dE_i)
    mpf  term exp(-dE_i / 2)      (Sohl-Dickstein, Battaglino & DeWeese 2011, single-flip
                                   connectivity, summed over all flips; to minimise)
         coefficient d term / d f_i = -s_i exp(-dE_i / 2)
    returns (objective: 0-d sum of the terms over rows and sites, coefficients A (M, N)); the
    gradient of the objective is then the matmul A^T X (couplings) and the column sums of A
    (fields), done by the caller.

Implementations, one contract: the Triton kernels on CUDA (and on CPU tensors under
TRITON_INTERPRET=1, for tests), their vectorised PyTorch twins elsewhere (``*_torch``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf

from ..device import use_triton

SITE_METHODS = ("pl", "mpf")

from . import Launch, placeholder, tl, triton  # one Triton import guard (None without triton)


# -- the PyTorch twins -------------------------------------------------------------------------
def sample_layer_torch(pre: torch.Tensor, bias: torch.Tensor, seed: int = 0, counter: int = 0,
                       uniforms: torch.Tensor | None = None, generator: torch.Generator | None = None,
                       stat: torch.Tensor | None = None, want_probs: bool = True
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Twin of the Triton sampling kernel (see the module docstring); ``seed`` and ``counter``
    are ignored (the stream is ``generator``'s, or the given ``uniforms``)."""
    p = torch.sigmoid(pre + bias)
    # float32 uniforms (24 random bits, as the kernel's) are half the cost of float64 ones
    u = uniforms if uniforms is not None else torch.rand(p.shape, dtype=torch.float32, device=p.device,
                                                           generator=generator)
    x = (u < p).to(p.dtype)
    if stat is not None:
        stat += p.sum(dim=0).to(stat.dtype)
    return x, (p if want_probs else None)


def site_terms_torch(X: torch.Tensor, F: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin of the per-site terms kernel (see the module docstring)."""
    de = 2.0 * X * F
    if method == "pl":
        term = -nnf.softplus(-de)
        coef = 2.0 * X * torch.sigmoid(-de)
    elif method == "mpf":
        term = torch.exp(-0.5 * de)
        coef = -X * term
    else:
        raise ValueError(f"method must be one of {SITE_METHODS}, got {method!r}")
    return term.sum(), coef


# -- Triton kernels -----------------------------------------------------------------------------
if triton is not None:

    @triton.jit(do_not_specialize=["seed", "ctr_lo", "ctr_hi"])
    def _sample_layer_kernel(pre_ptr, bias_ptr, unif_ptr, out_ptr, prob_ptr, stat_ptr, R, n,
                             seed, ctr_lo, ctr_hi, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
                             HAS_UNIF: tl.constexpr, STORE_PROB: tl.constexpr, ACCUM: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        rmask = rows < R
        cmask = cols < n
        mask = rmask[:, None] & cmask[None, :]
        idx = rows.to(tl.int64)[:, None] * n + cols[None, :]
        x = tl.load(pre_ptr + idx, mask=mask, other=0.0) + tl.load(bias_ptr + cols, mask=cmask, other=0.0)[None, :]
        p = 1.0 / (1.0 + tl.exp(-x))
        if HAS_UNIF:
            u = tl.load(unif_ptr + idx, mask=mask, other=1.0)
        else:
            zero = tl.zeros([BLOCK_R, BLOCK_N], dtype=tl.uint32)
            c0 = (idx & 0xFFFFFFFF).to(tl.uint32) + zero
            c1 = (idx >> 32).to(tl.uint32) + zero
            c2 = (zero + ctr_lo).to(tl.uint32)
            c3 = (zero + ctr_hi).to(tl.uint32)
            r0, r1, r2, r3 = tl.philox(seed, c0, c1, c2, c3)
            u = (r0 >> 8).to(tl.float32) * 5.9604644775390625e-08
        s = tl.where(u < p, 1.0, 0.0)
        tl.store(out_ptr + idx, s, mask=mask)
        if STORE_PROB:
            tl.store(prob_ptr + idx, p, mask=mask)
        if ACCUM:
            colsum = tl.sum(tl.where(mask, p, 0.0), axis=0)
            tl.atomic_add(stat_ptr + cols, colsum, mask=cmask)

    @triton.jit
    def _site_terms_kernel(x_ptr, f_ptr, coef_ptr, obj_ptr, M, N, METHOD: tl.constexpr,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (rows < M)[:, None] & (cols < N)[None, :]
        idx = rows.to(tl.int64)[:, None] * N + cols[None, :]
        s = tl.load(x_ptr + idx, mask=mask, other=0.0)
        f = tl.load(f_ptr + idx, mask=mask, other=0.0)
        de = 2.0 * s * f
        if METHOD == 0:
            # ln sigma(de) = -softplus(-de), stably; d/df = 2 s sigma(-de)
            a = tl.abs(de)
            term = tl.minimum(de, 0.0) - tl.log(1.0 + tl.exp(-a))
            coef = 2.0 * s / (1.0 + tl.exp(de))
        else:
            term = tl.exp(-0.5 * de)
            coef = -s * term
        tl.store(coef_ptr + idx, coef, mask=mask)
        tl.atomic_add(obj_ptr, tl.sum(tl.sum(tl.where(mask, term, 0.0), axis=1), axis=0))


def _blocks(R: int, n: int) -> tuple[int, int]:
    bn = min(triton.next_power_of_2(max(int(n), 1)), 128)
    br = max(1, min(triton.next_power_of_2(max(int(R), 1)), 1024 // bn))  # 8 per thread: no spill
    return br, bn


def sample_layer_triton(pre: torch.Tensor, bias: torch.Tensor, seed: int = 0, counter: int = 0,
                        uniforms: torch.Tensor | None = None, generator: torch.Generator | None = None,
                        stat: torch.Tensor | None = None, want_probs: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton sampling kernel (CUDA; CPU tensors under TRITON_INTERPRET=1), float32.
    ``generator`` is ignored: the stream is Philox keyed by (seed, counter)."""
    if triton is None:
        raise RuntimeError("triton is not installed")
    pre = pre.contiguous()
    R, n = pre.shape
    out = torch.empty_like(pre)
    probs = torch.empty_like(pre) if want_probs else out
    unif = uniforms.to(device=pre.device, dtype=pre.dtype).contiguous() if uniforms is not None else out
    st = stat if stat is not None else out
    br, bn = _blocks(R, n)
    counter = int(counter) & 0xFFFFFFFFFFFFFFFF
    grid = (triton.cdiv(R, br), triton.cdiv(n, bn))
    _sample_layer_kernel[grid](pre, bias.contiguous(), unif, out, probs, st, R, n,
                               int(seed) & 0x7FFFFFFFFFFFFFFF, counter & 0xFFFFFFFF, counter >> 32,
                               BLOCK_R=br, BLOCK_N=bn, HAS_UNIF=uniforms is not None,
                               STORE_PROB=want_probs, ACCUM=stat is not None)
    return out, (probs if want_probs else None)


def site_terms_triton(X: torch.Tensor, F: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton per-site terms kernel (CUDA; CPU tensors under TRITON_INTERPRET=1), float32."""
    if triton is None:
        raise RuntimeError("triton is not installed")
    if method not in SITE_METHODS:
        raise ValueError(f"method must be one of {SITE_METHODS}, got {method!r}")
    X = X.contiguous()
    F = F.contiguous()
    M, N = X.shape
    coef = torch.empty_like(F)
    obj = torch.zeros((), dtype=F.dtype, device=F.device)
    bm, bn = _blocks(M, N)
    _site_terms_kernel[(triton.cdiv(M, bm), triton.cdiv(N, bn))](
        X, F, coef, obj, M, N, METHOD=SITE_METHODS.index(method), BLOCK_M=bm, BLOCK_N=bn)
    return obj, coef


# -- public entry points: Triton on CUDA (float32), the twin elsewhere --------------------------
def sample_layer(pre: torch.Tensor, bias: torch.Tensor, seed: int = 0, counter: int = 0,
                 uniforms: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 stat: torch.Tensor | None = None, want_probs: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One block-Gibbs layer draw (module docstring). On CUDA in float32: the Triton kernel
    (in-kernel Philox from (seed, counter)); elsewhere the twin (``generator``'s stream)."""
    if use_triton(pre.device) and pre.dtype == torch.float32:
        return sample_layer_triton(pre, bias, seed, counter, uniforms, None, stat, want_probs)
    return sample_layer_torch(pre, bias, seed, counter, uniforms, generator, stat, want_probs)


def site_terms(X: torch.Tensor, F: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-site pl / mpf terms (module docstring): Triton on CUDA in float32, else the twin."""
    if use_triton(F.device) and F.dtype == torch.float32:
        return site_terms_triton(X, F, method)
    return site_terms_torch(X, F, method)


# -- the launches the compile gate builds (engine/kernels: Launch, LAUNCHES) --------------------
def _sample_launch(R: int, n: int, unif: bool, probs: bool, accum: bool, default: bool = False) -> Launch:
    def call():
        return sample_layer_triton(placeholder(R, n), placeholder(n), seed=3, counter=5,
                                   uniforms=placeholder(R, n) if unif else None,
                                   stat=placeholder(n) if accum else None, want_probs=probs)
    label = f"R={R} n={n}" + " uniforms" * unif + " probs" * probs + " accumulate" * accum
    return Launch(label, call, default)


def _site_launch(M: int, N: int, method: str, default: bool = False) -> Launch:
    def call():
        return site_terms_triton(placeholder(M, N), placeholder(M, N), method)
    return Launch(f"M={M} N={N} {method}", call, default)


LAUNCHES = (
    # chains x units: a 4x3 test machine, the 784x500 digits rbm's hidden layer, 10^5 chains
    *(_sample_launch(R, n, u, p, a, default=(R, n, u, p, a) == (1000, 500, False, True, True))
      for R, n in ((10, 16), (1000, 500), (100000, 784))
      for u in (False, True) for p in (False, True) for a in (False, True)),
    *(_site_launch(M, N, m, default=(M, N) == (10000, 16))
      for M, N in ((100, 8), (10000, 16), (1500, 400)) for m in SITE_METHODS),
)
