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
    couplings  None (uniform J = 1) or float32 (2, L, L) shared by all replicas:
               couplings[0, i, j] = J between (i, j) and (i, j+1 mod L)   ("right" bond)
               couplings[1, i, j] = J between (i, j) and (i+1 mod L, j)   ("down" bond)
    uniforms   None (generate in-kernel / in-twin) or float32 (R, L, L // 2): the uniform
               used for the k-th active site of row i, which is column j = 2k + ((i + c) % 2).
               Kernel and twin given the same uniforms produce the same spins.
    seed, counter  the random stream: (seed, counter) names one half-sweep's numbers;
               callers advance counter by one per half-sweep.
Returns the number of spins flipped in each replica, int32 (R,), on the device (no sync).
"""

from __future__ import annotations

import torch

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


# Public entry points: dispatch to Triton on CUDA, to the twin elsewhere.
def half_sweep(spins: torch.Tensor, color: int, beta: float | torch.Tensor, h: float = 0.0,
               method: str = "metropolis", seed: int = 0, counter: int = 0,
               couplings: torch.Tensor | None = None,
               uniforms: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    return half_sweep_torch(spins, color, beta, h, method, seed, counter, couplings, uniforms, generator)


def sweep(spins: torch.Tensor, beta: float | torch.Tensor, h: float = 0.0, method: str = "metropolis",
          seed: int = 0, counter: int = 0, couplings: torch.Tensor | None = None,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """One full sweep (colour 0 then 1), consuming counters ``counter`` and ``counter + 1``.
    Returns spins flipped per replica, int32 (R,)."""
    a = half_sweep(spins, 0, beta, h, method, seed, counter, couplings, None, generator)
    b = half_sweep(spins, 1, beta, h, method, seed, counter + 1, couplings, None, generator)
    return a + b


def measure(spins: torch.Tensor, couplings: torch.Tensor | None = None,
            h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    return measure_torch(spins, couplings, h)
