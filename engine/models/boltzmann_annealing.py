"""ln Z of a Boltzmann machine by annealed importance sampling and by population annealing.

Both anneal over one ladder 0 = beta_0 < ... < beta_K = 1 between a base model A with a known
ln Z_A and the machine, along the marginals log p*_beta of engine.models.boltzmann (linear in
beta for the fvbm; for the rbm the hidden layer is summed out, so softplus(beta x) is not).

AIS (Neal 2001; Salakhutdinov & Murray 2008): R runs start from exact draws of A; step k adds
log p*_k(x) - log p*_{k-1}(x) to each run's log-weight at the state *before* the move, then one
Gibbs step leaves p_k invariant. ln Z_hat = ln Z_A + ln mean w; its standard error is
sd(w) / (sqrt(R) mean w), the delta method carried to the log. E[ln Z_hat] <= ln Z (Jensen).

Population annealing (Hukushima & Iba 2003; Machta 2010) over the same ladder: P independent
populations of R replicas. Step k weighs replica j by the same log-ratio, ln Q_k = ln mean_j w_j
(shifted by the largest log-weight), resamples R replicas with probabilities proportional to w
(multinomial, inverse CDF in float64), then one Gibbs step. ln Z_p = ln Z_A + sum_k ln Q_k per
population; the estimate and its standard error combine the P values of Z_p as AIS combines
its weights. Diagnostics: the mean ESS / R of the step weights and the surviving families
(distinct beta = 0 ancestors) per population, as fractions of R.

The estimate and its standard error are engine.annealing's ``ais_estimate`` (for AIS's
weights and for the P populations' Z_p alike); the populations' per-step log-mean-exp, ESS
and multinomial resampling are the same formulas batched along rows (``_rows_*``).

Base models: rbm, b_A = logit of the training pixel means smoothed by (count + 1) / (M + 2),
W = 0, c = 0, so ln Z_A = sum_i softplus(b_A,i) + nh ln 2; fvbm, independent spins with
fields h_A = atanh(smoothed mean spin), ln Z_A = sum_i ln(2 cosh h_A,i). The ladder follows
Salakhutdinov's MNIST spacing scaled to K steps: 3.4% of the steps on [0, 0.5], 27.6% on
[0.5, 0.9], the rest on [0.9, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

from .. import annealing as shared
from .boltzmann import FVBM, RBM, Stream

POPULATIONS = 8


# -- row-wise forms for P independent populations at once ----------------------------------
# engine.annealing's log_mean_exp, ess_fraction and copy counts take one population (R,);
# these are the same formulas along dim 1 of (P, R), so the P populations step in one batch.
def _rows_log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """ln mean_j exp(l_pj) per row of (P, R) log-weights, float64 (P,)."""
    lw = log_w.to(torch.float64)
    return torch.logsumexp(lw, 1) - math.log(lw.shape[1])


def _rows_ess_fraction(log_w: torch.Tensor) -> torch.Tensor:
    """(sum w)^2 / (R sum w^2) per row, float64 (P,)."""
    lw = log_w.to(torch.float64)
    return torch.exp(2 * torch.logsumexp(lw, 1) - torch.logsumexp(2 * lw, 1)) / lw.shape[1]


def _rows_multinomial(log_w: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per row, R multinomial draws with probabilities proportional to w, as indices into the
    row, int64 (P, R) (inverse CDF against the float64 cumulative sum, as
    engine.kernels.resampling.multinomial_counts draws them)."""
    lw = log_w.to(torch.float64)
    cdf = torch.cumsum(torch.exp(lw - lw.max(dim=1, keepdim=True).values), dim=1)
    u = torch.rand(lw.shape, dtype=torch.float64, device=lw.device, generator=generator) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=lw.shape[1] - 1)


# -- the Boltzmann-machine side -----------------------------------------------------------------
def ladder(K: int) -> list[float]:
    """K + 1 inverse temperatures from 0 to 1 (module docstring's spacing)."""
    K = max(int(K), 1)
    n1 = max(1, round(K * 500 / 14500))
    n2 = max(1, round(K * 4000 / 14500)) if K > 2 else 0
    n3 = max(1, K - n1 - n2)
    parts = [torch.linspace(0.0, 0.5, n1 + 1, dtype=torch.float64)]
    if n2:
        parts.append(torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64)[1:])
    parts.append(torch.linspace(0.9 if n2 else 0.5, 1.0, n3 + 1, dtype=torch.float64)[1:])
    return torch.cat(parts).tolist()


def base_model(model: FVBM | RBM, train: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(base biases b_A or fields h_A, ln Z_A) from 0/1 training rows (module docstring)."""
    x = train.to(device=_param(model).device, dtype=torch.float64)
    p = (x.sum(0) + 1.0) / (x.shape[0] + 2.0)
    if isinstance(model, RBM):
        b = torch.log(p) - torch.log1p(-p)
        return b, float(nnf.softplus(b).sum()) + model.nh * math.log(2.0)
    h = torch.atanh(2.0 * p - 1.0)
    return h, float((h.abs() + torch.log1p(torch.exp(-2.0 * h.abs())) + math.log(2.0)).sum())


def _param(model: FVBM | RBM) -> torch.Tensor:
    return model.h if isinstance(model, FVBM) else model.W


def _base_draws(model: FVBM | RBM, base: torch.Tensor, count: int, stream: Stream) -> torch.Tensor:
    """Exact draws of the base model: 0/1 visibles (rbm) or ±1 spins (fvbm), float64."""
    u = stream.rand((count, base.numel()), torch.float64, base.device)
    if isinstance(model, RBM):
        return (u < torch.sigmoid(base)).to(torch.float64)
    return torch.where(u < torch.sigmoid(2.0 * base), 1.0, -1.0).to(torch.float64)


class _Path:
    """log-ratios and moves along the ladder, sharing the matmul of the two marginals."""

    def __init__(self, model: FVBM | RBM, base: torch.Tensor) -> None:
        self.model = model.clone(torch.float64)
        self.base = base

    def log_ratio(self, X: torch.Tensor, b0: float, b1: float) -> torch.Tensor:
        m = self.model
        if isinstance(m, RBM):
            a = X @ m.W + m.c
            lin = X @ (m.b - self.base)
            return (b1 - b0) * lin + (nnf.softplus(b1 * a) - nnf.softplus(b0 * a)).sum(1)
        return (b1 - b0) * (-m.energy(X) - X @ self.base)

    def move(self, X: torch.Tensor, beta: float, stream: Stream) -> torch.Tensor:
        if isinstance(self.model, RBM):
            return self.model.gibbs(X, 1, stream, beta=beta, b_base=self.base)
        return self.model.gibbs(X, 1, stream, beta=beta, h_base=self.base)


def drain(job):
    """Run a generator to its end; its return value."""
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def ais_steps(model: FVBM | RBM, train: torch.Tensor, runs: int, steps: int, stream: Stream):
    """:func:`ais` as a generator that yields after each ladder step (so the work can be
    spread over calls); it returns (ln Z_hat, standard error). The model is copied at the
    call, before the first step."""
    base, log_z_a = base_model(model, train)
    path = _Path(model, base)
    return _ais(path, base, log_z_a, runs, ladder(steps), stream)


def _ais(path: "_Path", base: torch.Tensor, log_z_a: float, runs: int, betas: list, stream: Stream):
    X = _base_draws(path.model, base, runs, stream)
    log_w = torch.zeros(runs, dtype=torch.float64, device=X.device)
    for k in range(1, len(betas)):
        log_w += path.log_ratio(X, betas[k - 1], betas[k])
        if k < len(betas) - 1:
            X = path.move(X, betas[k], stream)
        yield
    est = shared.ais_estimate(log_w)
    return log_z_a + est.log_mean_weight, est.stderr


def ais(model: FVBM | RBM, train: torch.Tensor, runs: int, steps: int, stream: Stream) -> tuple[float, float]:
    """(ln Z_hat, its standard error) by AIS with ``runs`` runs over ``ladder(steps)``."""
    return drain(ais_steps(model, train, runs, steps, stream))


@dataclass
class PAResult:
    log_z: float
    stderr: float
    ess_fraction: float        # mean over steps and populations of ESS / R
    families_fraction: float   # mean over populations of surviving ancestors / R


def population_annealing_steps(model: FVBM | RBM, train: torch.Tensor, replicas: int, steps: int,
                               stream: Stream, populations: int = POPULATIONS):
    """:func:`population_annealing` as a generator that yields after each ladder step and
    returns the :class:`PAResult`; the model is copied at the call."""
    base, log_z_a = base_model(model, train)
    path = _Path(model, base)
    return _population_annealing(path, base, log_z_a, replicas, ladder(steps), stream, populations)


def _population_annealing(path: "_Path", base: torch.Tensor, log_z_a: float, replicas: int, betas: list,
                          stream: Stream, populations: int):
    P, R = populations, replicas
    X = _base_draws(path.model, base, P * R, stream)
    dev = X.device
    ancestors = torch.arange(R, device=dev).repeat(P, 1)
    offsets = (torch.arange(P, device=dev) * R)[:, None]
    log_z = torch.full((P,), log_z_a, dtype=torch.float64, device=dev)
    ess_sum = torch.zeros((), dtype=torch.float64, device=dev)
    for k in range(1, len(betas)):
        lw = path.log_ratio(X, betas[k - 1], betas[k]).view(P, R)
        log_z += _rows_log_mean_exp(lw)
        ess_sum += _rows_ess_fraction(lw).mean()
        idx = _rows_multinomial(lw, stream.generator)
        ancestors = torch.gather(ancestors, 1, idx)
        X = X[(idx + offsets).reshape(-1)]
        if k < len(betas) - 1:
            X = path.move(X, betas[k], stream)
        yield
    est = shared.ais_estimate(log_z)       # the P values of Z_p combine as AIS weights do
    families = sum(int(torch.unique(ancestors[p]).numel()) for p in range(P)) / (P * R)
    return PAResult(est.log_mean_weight, est.stderr, float(ess_sum) / (len(betas) - 1), families)


def population_annealing(model: FVBM | RBM, train: torch.Tensor, replicas: int, steps: int,
                         stream: Stream, populations: int = POPULATIONS) -> PAResult:
    """ln Z by ``populations`` independent populations of ``replicas`` over ``ladder(steps)``."""
    return drain(population_annealing_steps(model, train, replicas, steps, stream, populations))
