"""Exact results for the 2D Ising model (J = 1, k_B = 1, natural log, periodic boundaries).

- Kaufman (1949): ln Z of the finite n x m torus at h = 0, worked in logs in float64
  (the sign of the r = 0 factor of Z4 is kept), and from it the energy per
  spin u = -d ln Z / d beta / N and the specific heat per spin c = beta^2 d^2 ln Z / d beta^2 / N
  (exact derivatives by float64 autograd through the same formula).
- Onsager (L -> infinity): energy per spin, with the complete elliptic integral K computed by
  the arithmetic-geometric mean (no scipy); Yang's spontaneous magnetisation.
- Brute-force enumeration of tiny lattices (L = 4: 65,536 states): the exact joint density of
  states g(E_bond, M), from which the Boltzmann law of the energy at any (beta, h) follows.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

BETA_C = 0.5 * math.log(1.0 + math.sqrt(2.0))  # ln(1 + sqrt 2) / 2 = 0.4406868...


def _ln2cosh(x: torch.Tensor) -> torch.Tensor:
    """ln(2 cosh x) = ln(e^x + e^-x) without overflow. (logaddexp, not |x| + log1p(e^-2|x|):
    the double backward of abs runs through torch._refs, whose first call imports
    torch._dynamo -- seconds before a first frame.)"""
    return torch.logaddexp(x, -x)


def _kaufman_log_z(beta: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """ln Z of the n x m torus (n rows in the transfer direction), as a float64 torch scalar
    differentiable in ``beta``: Kaufman's (1949) Z = 1/2 (2 sinh 2b)^(N/2) (Z1 + Z2 + Z3 + Z4),
    Z1,2 = prod_r 2 cosh|sinh(m g_{2r+1} / 2), Z3,4 = prod_r 2 cosh|sinh(m g_{2r} / 2) over
    r < n, cosh g_k = cosh 2b coth 2b - cos(pi k / n) for k >= 1 and g_0 = 2b + ln tanh b
    (negative below beta_c: the r = 0 factor of Z4 keeps its sign). In logs:
    ln Z = ln 1/2 + (N/2) ln(2 sinh 2b) + ln Z1 + ln(1 + Z2/Z1 + (Z3/Z1)(1 + Z4/Z3))."""
    N = n * m
    two_b = 2.0 * beta
    k = torch.arange(2 * n, dtype=torch.float64)
    c = torch.cosh(two_b) / torch.tanh(two_b) - torch.cos(math.pi * k / n)
    # gamma_k for k >= 1 is acosh(c_k) >= 0; gamma_0 = 2 beta + ln tanh beta (signed, not an acosh)
    gamma_pos = torch.acosh(torch.clamp(c[1:], min=1.0))
    gamma0 = two_b + torch.log(torch.tanh(beta))
    gamma = torch.cat([gamma0.reshape(1), gamma_pos])
    g_odd = gamma[1::2] * (m / 2.0)   # gamma_{2r+1} m / 2, r = 0..n-1
    g_even = gamma[0::2] * (m / 2.0)  # gamma_{2r} m / 2
    ln_z1 = _ln2cosh(g_odd).sum()
    ln_z3 = _ln2cosh(g_even).sum()
    # torch.prod's double backward is wrong where a factor is exactly 0, and tanh(gamma_0 m/2)
    # is 0 at beta_c: keep that factor out of the product (the others are > 0 for k >= 1)
    t_even = torch.tanh(g_even)
    z2_over_z1 = torch.tanh(g_odd).prod()
    z4_over_z3 = t_even[0] * t_even[1:].prod()  # negative below beta_c: keep the sign
    z3_over_z1 = torch.exp(ln_z3 - ln_z1)
    return (math.log(0.5) + (N / 2.0) * torch.log(2.0 * torch.sinh(two_b)) + ln_z1
            + torch.log(1.0 + z2_over_z1 + z3_over_z1 * (1.0 + z4_over_z3)))


def kaufman_log_z(beta: float, L: int, m: int | None = None) -> float:
    """ln Z(beta) of the L x m torus (m = L by default), J = 1, h = 0. beta > 0."""
    if beta <= 0:
        if beta == 0:
            return (L * (m or L)) * math.log(2.0)
        raise ValueError(f"beta must be >= 0, got {beta}")
    b = torch.tensor(float(beta), dtype=torch.float64)
    return float(_kaufman_log_z(b, L, m or L))


@lru_cache(maxsize=256)
def kaufman(beta: float, L: int) -> tuple[float, float, float]:
    """(ln Z, energy per spin, specific heat per spin) of the L x L torus at h = 0.

    energy per spin u = -(1/N) d ln Z / d beta; specific heat per spin
    c = (beta^2 / N) d^2 ln Z / d beta^2 = beta^2 N var(E / N)."""
    N = L * L
    if beta <= 0:
        return N * math.log(2.0), 0.0, 0.0
    b = torch.tensor(float(beta), dtype=torch.float64, requires_grad=True)
    ln_z = _kaufman_log_z(b, L, L)
    (d1,) = torch.autograd.grad(ln_z, b, create_graph=True)
    (d2,) = torch.autograd.grad(d1, b)
    return float(ln_z.detach()), -float(d1.detach()) / N, float(beta) ** 2 * float(d2) / N


def kaufman_energy(beta: float, L: int) -> float:
    """Exact energy per spin of the L x L torus at h = 0 (J = 1)."""
    return kaufman(float(beta), int(L))[1]


def kaufman_specific_heat(beta: float, L: int) -> float:
    """Exact specific heat per spin beta^2 N var(E/N) of the L x L torus at h = 0."""
    return kaufman(float(beta), int(L))[2]


# -- Onsager / Yang (L -> infinity) ----------------------------------------------------------
def elliptic_k(k: float) -> float:
    """Complete elliptic integral of the first kind K(k), modulus k (parameter m = k^2),
    by the arithmetic-geometric mean: K = pi / (2 AGM(1, sqrt(1 - k^2))). inf at k = 1."""
    if not 0.0 <= k <= 1.0:
        raise ValueError(f"modulus must be in [0, 1], got {k}")
    a, b = 1.0, math.sqrt(max(0.0, 1.0 - k * k))
    if b == 0.0:
        return math.inf
    for _ in range(64):
        if abs(a - b) <= 1e-16 * a:
            break
        a, b = 0.5 * (a + b), math.sqrt(a * b)
    return math.pi / (2.0 * a)


def onsager_energy(beta: float) -> float:
    """Energy per spin of the infinite lattice at h = 0:
    u = -coth 2b [1 + (2/pi)(2 tanh^2 2b - 1) K(kappa)], kappa = 2 sinh 2b / cosh^2 2b."""
    if beta <= 0:
        return 0.0
    t = 2.0 * beta
    kappa = min(1.0, 2.0 * math.sinh(t) / math.cosh(t) ** 2)
    factor = 2.0 * math.tanh(t) ** 2 - 1.0
    kk = elliptic_k(kappa)
    term = 0.0 if factor == 0.0 or not math.isfinite(kk) else (2.0 / math.pi) * factor * kk
    return -(1.0 / math.tanh(t)) * (1.0 + term)


def yang_magnetization(beta: float) -> float:
    """Spontaneous magnetisation per spin (1 - sinh(2b)^-4)^(1/8) for b > beta_c, else 0."""
    if beta <= BETA_C:
        return 0.0
    return (1.0 - math.sinh(2.0 * beta) ** -4) ** 0.125


# -- brute-force enumeration --------------------------------------------------------------
@lru_cache(maxsize=4)
def density_of_states(L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact joint density of states of the L x L torus (L*L <= 20 or L = 4), by enumerating
    all 2^(L*L) configurations. Returns (bond_energy, magnetization, count): the distinct
    pairs (E_bond = -sum_<ij> s_i s_j, M = sum_i s_i) and how many states have each."""
    N = L * L
    if N > 24:
        raise ValueError(f"enumeration of {N} spins is too large")
    idx = np.arange(1 << N, dtype=np.int64)
    bits = ((idx[:, None] >> np.arange(N, dtype=np.int64)[None, :]) & 1).astype(np.int8)
    s = (2 * bits - 1).reshape(-1, L, L)
    bond = -(s * np.roll(s, -1, axis=2)).sum(axis=(1, 2), dtype=np.int64) \
        - (s * np.roll(s, -1, axis=1)).sum(axis=(1, 2), dtype=np.int64)
    mag = s.sum(axis=(1, 2), dtype=np.int64)
    pairs, count = np.unique(np.stack([bond, mag], axis=1), axis=0, return_counts=True)
    return pairs[:, 0].copy(), pairs[:, 1].copy(), count.astype(np.int64)


def enumerate_energy_law(L: int, beta: float, h: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact Boltzmann law of the total energy E = E_bond - h M on the L x L torus:
    (distinct energies ascending, probabilities), by enumeration."""
    bond, mag, count = density_of_states(L)
    energy = bond - h * mag
    logw = np.log(count.astype(np.float64)) - beta * energy
    logw -= logw.max()
    w = np.exp(logw)
    values, inverse = np.unique(np.round(energy, 9), return_inverse=True)
    prob = np.bincount(inverse, weights=w)
    return values, prob / prob.sum()


def enumerate_log_z(L: int, beta: float, h: float = 0.0) -> float:
    """ln Z by enumeration (float64, log-sum-exp)."""
    bond, mag, count = density_of_states(L)
    logw = np.log(count.astype(np.float64)) - beta * (bond - h * mag)
    top = logw.max()
    return float(top + np.log(np.exp(logw - top).sum()))


def enumerate_energy(L: int, beta: float, h: float = 0.0) -> float:
    """Mean energy per spin by enumeration."""
    values, prob = enumerate_energy_law(L, beta, h)
    return float((values * prob).sum()) / (L * L)
