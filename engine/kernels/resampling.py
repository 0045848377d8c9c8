"""Reweighting and resampling of a population of replicas (population annealing, SMC).

Everything here runs on the tensors' device in a handful of batched PyTorch ops (no
per-replica Python loop, no host round trip per replica); these are memory-bound
gathers and scans, so there is no Triton kernel: the same code is the CPU and the GPU
path. The population may be split in shards over processes (``engine.distributed``):
every function takes the *global* normalisation as an argument, so a shard computes its
own copy counts from numbers that all shards agree on.

Conventions (natural log, k_B = 1):
    energy      float32 or float64 (R,), total energy E_j of each replica.
    dbeta       the inverse-temperature step beta' - beta >= 0 (float or 0-d tensor).
    log weight  ln w_j = -dbeta (E_j - E_min), shifted by the minimum energy so the
                largest weight is exactly 1 (a shift by the maximum energy overflows).
    ln Q        ln[(1/R) sum_j exp(-dbeta E_j)] = -dbeta E_min + ln(sum_j w_j) - ln R,
                so ln Z(beta') = ln Z(beta) + ln Q (R the current population size). For
                any log-weights l_j shifted by s (w_j = exp(l_j - s)): s + ln(sum w) - ln R.
    tau_j       expected number of copies = R0 w_j / sum_k w_k (R0 the target size).
    counts      int64 (R,), copies of each replica, >= 0.
"""

from __future__ import annotations

from typing import Callable

import torch

RESAMPLING = ("nearest", "multinomial")


def shifted_log_weights(energy: torch.Tensor, dbeta: float | torch.Tensor,
                        energy_min: float | torch.Tensor) -> torch.Tensor:
    """ln w_j = -dbeta (E_j - E_min), float64 (R,), all <= 0 when E_min is the minimum."""
    e = energy.to(torch.float64)
    if isinstance(dbeta, torch.Tensor):
        dbeta = dbeta.to(torch.float64)
    if isinstance(energy_min, torch.Tensor):
        energy_min = energy_min.to(torch.float64)
    return -dbeta * (e - energy_min)


def weight_sums(log_w: torch.Tensor) -> torch.Tensor:
    """[sum w, sum w^2, R] of shifted log-weights, float64 (3,), on the device.

    Summed over shards (all-reduce), they give ln Q and the effective sample size
    ESS = (sum w)^2 / sum w^2 of the whole population."""
    w = torch.exp(log_w)
    n = w.new_full((), float(log_w.numel()))  # a fill on the device, not a host-to-device copy
    return torch.stack([w.sum(), (w * w).sum(), n])


def ess_fraction_of(sums: torch.Tensor) -> torch.Tensor:
    """ESS / R = (sum w)^2 / (R sum w^2) from ``weight_sums`` (in (0, 1]; 1 = equal weights)."""
    s, s2, r = sums[0], sums[1], sums[2]
    return (s * s) / (r * s2).clamp_min(1e-300)


def adaptive_dbeta(energy: torch.Tensor, energy_min: torch.Tensor, target: float, dbeta_max: float,
                   reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
                   iterations: int = 24, dbeta_min: float = 1e-7) -> torch.Tensor:
    """The largest dbeta in [dbeta_min, dbeta_max] whose weights keep ESS / R >= target,
    by bisection on the device (no host sync; ``reduce`` sums the (3,) weight sums over
    shards, identity in one process). ESS / R is non-increasing in dbeta
    (d ln ESS / d dbeta = 2(<E>_{2 dbeta} - <E>_{dbeta}) <= 0), so bisection finds the
    crossing; ``iterations`` = 24 pins it to dbeta_max * 2**-24. Returns a float64 0-d tensor."""
    dev = energy.device
    lo = torch.tensor(0.0, dtype=torch.float64, device=dev)
    hi = torch.tensor(float(dbeta_max), dtype=torch.float64, device=dev)
    ess_hi = ess_fraction_of(reduce(weight_sums(shifted_log_weights(energy, hi, energy_min))))
    ok_at_max = ess_hi >= target
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        ess = ess_fraction_of(reduce(weight_sums(shifted_log_weights(energy, mid, energy_min))))
        good = ess >= target
        lo = torch.where(good, mid, lo)
        hi = torch.where(good, hi, mid)
    chosen = torch.where(ok_at_max, torch.tensor(float(dbeta_max), dtype=torch.float64, device=dev), lo)
    return chosen.clamp(min=min(dbeta_min, dbeta_max), max=dbeta_max)


def expected_copies(log_w: torch.Tensor, weight_total: torch.Tensor | float, target: int) -> torch.Tensor:
    """tau_j = R0 w_j / sum_k w_k, float64 (R,). ``weight_total`` is the global sum of w."""
    return float(target) * torch.exp(log_w) / weight_total


def nearest_counts(tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """floor(tau) plus one more with probability tau - floor(tau): int64 (R,) counts with
    E[count_j] = tau_j exactly (plain rounding is biased) and |count_j - tau_j| < 1.
    Non-finite or negative tau (which a correct caller never passes) count 0."""
    tau = torch.where(torch.isfinite(tau), tau, torch.zeros_like(tau)).clamp_min(0.0)
    base = torch.floor(tau)
    u = torch.rand(tau.shape, dtype=torch.float64, device=tau.device, generator=generator)
    return (base + (u < (tau - base)).to(torch.float64)).to(torch.int64)


def multinomial_counts(log_w: torch.Tensor, draws: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``draws`` independent draws with probabilities proportional to w_j, as counts int64 (R,)
    summing to ``draws``: inverse CDF of float64 uniforms against the float64 cumulative sum
    of the weights (torch.multinomial works in float32, which biases large populations)."""
    r = log_w.numel()
    if draws <= 0 or r == 0:
        return torch.zeros(r, dtype=torch.int64, device=log_w.device)
    cdf = torch.cumsum(torch.exp(log_w), 0)
    u = torch.rand(draws, dtype=torch.float64, device=log_w.device, generator=generator) * cdf[-1]
    idx = torch.searchsorted(cdf, u, right=True).clamp_(max=r - 1)
    return torch.bincount(idx, minlength=r)


def parents(counts: torch.Tensor, total: int) -> torch.Tensor:
    """The parent index of each new replica, int64 (total,): replica j repeated counts_j
    times, in order (a cumulative sum of the counts gives each parent's first slot).
    ``total`` = counts.sum(), known on the host, so no sync happens here."""
    src = torch.arange(counts.numel(), device=counts.device)
    return torch.repeat_interleave(src, counts, output_size=int(total))


def log_q(shift: torch.Tensor | float, weight_total: torch.Tensor | float,
          population: torch.Tensor | float) -> torch.Tensor:
    """ln Q = shift + ln(sum w) - ln R, float64: the log mean of the weights exp(l_j) whose
    shifted logs l_j - shift gave ``weight_total`` = sum w (for energies shift = -dbeta E_min,
    the shifted form of ALGORITHMS.md)."""
    e = torch.as_tensor(shift, dtype=torch.float64)
    s = torch.as_tensor(weight_total, dtype=torch.float64, device=e.device)
    r = torch.as_tensor(population, dtype=torch.float64, device=e.device)
    return e + torch.log(s) - torch.log(r)
