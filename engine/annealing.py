"""The mechanisms of annealing, for any energy: beta ladders, importance weights (AIS),
their log-mean-exp and effective sample size, free-energy differences by thermodynamic
integration, and the reweight / resample step of population annealing.

Conventions (natural log, k_B = 1). An annealing run passes through unnormalised densities
p*_0, p*_1, ..., p*_T with normalisers Z_k. The *log-ratio* of replica j at step k is

    l_jk = ln p*_k(x_j) - ln p*_{k-1}(x_j),

evaluated at the state x_j *before* the moves at step k (after those at step k-1). For a
Boltzmann law p*_k = exp(-beta_k E) it is -(beta_k - beta_{k-1}) E(x_j), minus the work of
that step; a marginal whose log-density is not linear in beta (an RBM's free energy)
supplies its own. Everything here takes *log*-weights, never weights, and shifts them by
their largest value before any exp.

    AIS (Neal 2001; Jarzynski 1997)   ln w_j = sum_k l_jk,  ln(Z_T / Z_0) ~ ln mean_j w_j
                                      (unbiased in Z_T / Z_0, biased low in its log: Jensen)
    population annealing              per step, ln Q_k = ln mean_j exp(l_jk),
                                      ln Z_T = ln Z_0 + sum_k ln Q_k, then resampling
    ESS of weights w                  (sum w)^2 / sum w^2, in [1, R]; reported as ESS / R

The population step runs on the tensors' device, in a few batched ops with one host sync
per step, over a population that may be split in shards (engine.distributed): the sums
that normalise it are all-reduced, so every shard computes its copies from the same figures.
The primitives (weight sums, copy counts, parents) are engine.kernels.resampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from . import distributed as shards
from .kernels import resampling as rs
from .params import ParamError

SCHEDULES = ("linear", "geometric")
SPACINGS = ("linear", "geometric")
CAPACITY_FACTOR = 1.25  # population buffer rows, as a multiple of the rows needed


# -- beta ladders ------------------------------------------------------------------------
def beta_schedule(schedule: str, beta_start: float, beta_end: float, sweeps: int) -> np.ndarray:
    """An annealing schedule beta_0 = beta_start < ... < beta_T = beta_end, T = ``sweeps``
    steps, float64 (T + 1,).

    linear     beta_t = beta_start + (beta_end - beta_start) t / T
    geometric  from beta_start > 0: beta_t = beta_start (beta_end / beta_start)^(t / T);
               from beta_start = 0 (where a geometric ladder cannot start) the first step
               goes 0 -> beta_1 = beta_end / T (the first step of the linear schedule) and
               steps 1..T are geometric from beta_1 to beta_end.
    The end points are exactly beta_start and beta_end."""
    t = np.arange(sweeps + 1, dtype=np.float64)
    if schedule == "linear":
        betas = beta_start + (beta_end - beta_start) * t / sweeps
    elif schedule == "geometric":
        if beta_start > 0:
            betas = beta_start * (beta_end / beta_start) ** (t / sweeps)
        elif sweeps == 1:
            betas = np.array([0.0, beta_end])
        else:
            beta_1 = beta_end / sweeps
            betas = np.empty(sweeps + 1)
            betas[0] = 0.0
            betas[1:] = beta_1 * (beta_end / beta_1) ** ((t[1:] - 1) / (sweeps - 1))
    else:
        raise ParamError(f"schedule must be one of {'|'.join(SCHEDULES)}, got {schedule!r}")
    betas[0], betas[-1] = beta_start, beta_end  # exact end points, no rounding drift
    return betas


def beta_ladder(spacing: str, beta_min: float, beta_max: float, rungs: int) -> np.ndarray:
    """A tempering ladder beta_0 = beta_min < ... < beta_{K-1} = beta_max of K = ``rungs``
    rungs, evenly spaced in beta (linear) or in ln beta (geometric), float64 (K,)."""
    if spacing == "linear":
        betas = np.linspace(beta_min, beta_max, rungs)
    elif spacing == "geometric":
        betas = beta_min * (beta_max / beta_min) ** (np.arange(rungs) / (rungs - 1))
    else:
        raise ParamError(f"spacing must be one of {'|'.join(SPACINGS)}, got {spacing!r}")
    betas[0], betas[-1] = beta_min, beta_max
    return betas


# -- importance weights ------------------------------------------------------------------
def _shifted_weights(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_j / max w, ln max w) from log-weights, float64: the exp never overflows."""
    log_w = log_w.to(torch.float64)
    shift = torch.max(log_w)
    return torch.exp(log_w - shift), shift


def log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """ln mean_j exp(log_w_j) of log-weights (R,), float64 0-d on their device, computed as
    max + ln mean exp(log_w - max). NaN when any log-weight is NaN or all are -inf."""
    w, shift = _shifted_weights(log_w)
    return torch.log(w.mean()) + shift


def ess_fraction(log_w: torch.Tensor) -> torch.Tensor:
    """ESS / R = (sum w)^2 / (R sum w^2) of log-weights (R,): 1 for equal weights, 1/R when
    one weight dominates. float64 0-d on their device."""
    log_w = log_w.to(torch.float64)
    return rs.ess_fraction_of(rs.weight_sums(log_w - torch.max(log_w)))


@dataclass(frozen=True)
class AISEstimate:
    """ln mean_j w_j of AIS log-weights, with its diagnostics (host floats).

    log_mean_weight  estimates ln(Z_T / Z_0); add ln Z_0 for ln Z_T.
    stderr           its standard error by the delta method, sd(w) / (sqrt(R) mean w);
                     NaN for R = 1.
    ess_fraction     (sum w)^2 / (R sum w^2).
    """

    log_mean_weight: float
    stderr: float
    ess_fraction: float


def ais_estimate(log_w: torch.Tensor) -> AISEstimate:
    """The AIS estimate from the log-weights ln w_j (R,) of R independent annealing chains
    started from exact samples of p_0 (one host sync)."""
    r = log_w.numel()
    w, shift = _shifted_weights(log_w)
    mean_w = w.mean()
    log_mean = torch.log(mean_w) + shift
    nan = torch.tensor(math.nan, dtype=torch.float64, device=w.device)
    stderr = w.std(unbiased=True) / (math.sqrt(r) * mean_w) if r > 1 else nan
    values = torch.stack([log_mean, stderr, ess_fraction(log_w)]).tolist()
    return AISEstimate(*values)


# -- thermodynamic integration -----------------------------------------------------------
def trapezoid_log_z_differences(betas: torch.Tensor, mean_energy: torch.Tensor) -> torch.Tensor:
    """g_k = -(ln Z(beta_k) - ln Z(beta_0)) by the trapezoid rule on d(-ln Z)/d beta = <E>:
    g_0 = 0, g_{k+1} = g_k + (<E>_{k+1} + <E>_k)(beta_{k+1} - beta_k) / 2. float64 (K,),
    from the ladder (K,) and the mean energy at each rung (K,), on their device."""
    steps = 0.5 * (mean_energy[1:] + mean_energy[:-1]) * (betas[1:] - betas[:-1])
    return torch.cat([torch.zeros(1, dtype=steps.dtype, device=steps.device), torch.cumsum(steps, 0)])


def fill_unmeasured(mean: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """Rungs with no measurement take the nearest measured rung's value (the lower one on a
    tie); all-unmeasured gives zeros. On the device, no host sync. (K,) -> (K,)."""
    k = mean.numel()
    idx = torch.arange(k, device=mean.device)
    below = torch.where(measured, idx, torch.full_like(idx, -1)).cummax(0).values
    above = torch.where(measured, idx, torch.full_like(idx, k)).flip(0).cummin(0).values.flip(0)
    has_below, has_above = below >= 0, above < k
    use_below = has_below & (~has_above | (idx - below <= above - idx))
    src = torch.where(use_below, below, above).clamp(0, k - 1)
    filled = mean[src]
    return torch.where(has_below | has_above, filled, torch.zeros_like(mean))


# -- population annealing: reweight, resample ------------------------------------------------
@dataclass
class Reweighting:
    """One reweighting of a population by its log-ratios l_j, over all shards.

    log_w         float64 (R_shard,): l_j - shift, the log-weights this shard resamples by.
    shard_sums    [sum w, sum w^2, R] of this shard's w_j = exp(log_w_j), float64 (3,).
    sums          the same summed over all shards.
    log_q         ln Q = ln[(1/R) sum_j exp(l_j)] = shift + ln(sum w) - ln R, float64 0-d:
                  ln Z(new) = ln Z(old) + ln Q (R the current population size).
    ess_fraction  (sum w)^2 / (R sum w^2) of the whole population, float64 0-d.
    All on the device; nothing here syncs with the host.
    """

    log_w: torch.Tensor
    shard_sums: torch.Tensor
    sums: torch.Tensor
    log_q: torch.Tensor
    ess_fraction: torch.Tensor


def reweight(log_w: torch.Tensor, shift: torch.Tensor | float) -> Reweighting:
    """Reweight by log-weights already shifted: ``log_w`` = l_j - ``shift``, with ``shift``
    the largest log-ratio over all shards (any value >= it keeps every w_j <= 1; a shift by
    the smallest overflows). For a Boltzmann step beta -> beta + dbeta, l_j = -dbeta E_j
    and shift = -dbeta E_min (kernels.resampling.shifted_log_weights gives log_w)."""
    shard_sums = rs.weight_sums(log_w)
    sums = shards.all_reduce(shard_sums.clone(), "sum")
    return Reweighting(log_w, shard_sums, sums, rs.log_q(shift, sums[0], sums[2]),
                       rs.ess_fraction_of(sums))


def copy_counts(rw: Reweighting, target: int, method: str, generator: torch.Generator,
                key: Sequence[int]) -> torch.Tensor:
    """How many copies of each of this shard's replicas the resampled population holds,
    int64 (R_shard,), for a population of ``target`` (R0) replicas on average.

    nearest      floor(tau_j) plus one with probability tau_j - floor(tau_j),
                 tau_j = R0 w_j / sum_k w_k (unbiased; the size fluctuates around R0).
    multinomial  exactly R0 draws with probabilities w_j / sum_k w_k. Across shards, each
                 shard's number of draws is drawn first from the multinomial over the
                 shards' weight sums, by a host generator keyed by ``key`` (the run's seed
                 and step: the same draw on every rank), then the shard draws its own.
    """
    if method == "nearest":
        return rs.nearest_counts(rs.expected_copies(rw.log_w, rw.sums[0], target), generator)
    if method != "multinomial":
        raise ParamError(f"resampling must be one of {'|'.join(rs.RESAMPLING)}, got {method!r}")
    draws = target
    if shards.world_size() > 1:
        block = shards.all_gather(rw.shard_sums[0].reshape(1)).reshape(-1).double().cpu().numpy()
        rng = np.random.default_rng([*key, 0x5EED])
        draws = int(rng.multinomial(target, block / block.sum())[shards.rank()])
    return rs.multinomial_counts(rw.log_w, draws, generator)


class ReplicaBuffers:
    """A sharded population's rows (one tensor per per-replica field: spins, ancestors, ...)
    in two capacity buffers each: ``pairs[current]`` holds the live rows, the other is where
    resampling writes the children. Both grow by CAPACITY_FACTOR when a fluctuation of
    nearest resampling needs more rows than they have."""

    def __init__(self, rows: Sequence[torch.Tensor], capacity: int) -> None:
        """``rows``: the initial live tensors, all with the same number of rows n <= capacity."""
        self.pairs = [[torch.empty((capacity,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
                       for t in rows] for _ in range(2)]
        self.current = 0
        for buf, t in zip(self.pairs[0], rows):
            buf[:t.shape[0]].copy_(t)

    def live(self, n: int) -> list[torch.Tensor]:
        """Views of the first ``n`` rows of the current buffers."""
        return [buf[:n] for buf in self.pairs[self.current]]

    def resample(self, rows: Sequence[torch.Tensor], parents: torch.Tensor,
                 sizes: Sequence[int]) -> list[torch.Tensor]:
        """The children ``row[parents]`` of this shard, rebalanced so the shards are even
        (engine.distributed.gather_rebalanced), written into the spare buffers, which become
        current. ``sizes``: every shard's number of children. Returns views of the new rows."""
        world = len(sizes)
        me = shards.rank() if world > 1 else 0
        bounds = shards.even_bounds(sum(sizes), world)
        need = bounds[me + 1] - bounds[me]
        if need > self.pairs[1 - self.current][0].shape[0]:
            n = rows[0].shape[0]
            cap = int(math.ceil(CAPACITY_FACTOR * need))
            self.pairs = [[torch.empty((cap,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
                           for t in pair] for pair in self.pairs]
            for buf, t in zip(self.pairs[self.current], rows):
                buf[:n].copy_(t)
            rows = self.live(n)
        out = shards.gather_rebalanced(list(rows), parents, sizes, self.pairs[1 - self.current])
        self.current = 1 - self.current
        return out
