"""Sampler diagnostics against an exact target: multi-chain effective sample size, the
Kolmogorov-Smirnov statistic against an exact CDF, and the sliced Wasserstein-1 distance.

Chains that left (non-finite positions) are counted in, never dropped: the KS statistic puts
them at +-infinity (NaN at +infinity), so it is at least the fraction of chains that diverged;
the sliced W1 of a set holding a non-finite point is infinite.
"""

from __future__ import annotations

import math

import torch

# E[KS] * sqrt(n) for exact samples, n large (the noise floor of the KS statistic)
KS_FLOOR = math.sqrt(math.pi / 2.0) * math.log(2.0)


def multichain_ess(trace: torch.Tensor) -> float:
    """Effective sample size per chain of draws ``trace`` (W steps, M chains), Stan's
    multi-chain estimator: rho_t = 1 - (mean_var - mean_m acov_m(t)) / var_plus, with
    var_plus = mean_var (W-1)/W + var(chain means), summed by Geyer's initial monotone
    sequence: tau = -1 + 2 sum_k P_k, P_k = rho_2k + rho_2k+1 kept while positive and made
    non-increasing.  Returns W / tau (total ESS / M); chains stuck in different modes make
    var(chain means) large and the ESS small, as they should.  NaN when a draw is not finite."""
    t = trace.to(torch.float64)
    w, m = t.shape
    if w < 4 or m < 1 or not bool(torch.isfinite(t).all()):
        return float("nan")
    means = t.mean(0)
    xc = t - means
    f = torch.fft.rfft(xc, n=2 * w, dim=0)
    acov = torch.fft.irfft(f.real ** 2 + f.imag ** 2, n=2 * w, dim=0)[:w] / w   # (W, M), biased
    chain_var = acov[0] * w / (w - 1)
    mean_var = chain_var.mean()
    var_plus = mean_var * (w - 1) / w
    if m > 1:
        var_plus = var_plus + means.var()
    if not float(var_plus) > 0:
        return float("nan")
    rho = 1.0 - (mean_var - acov.mean(1)) / var_plus
    rho[0] = 1.0
    k = w // 2
    pairs = rho[0:2 * k:2] + rho[1:2 * k:2]
    keep = torch.cumprod((pairs > 0).to(torch.float64), 0)
    pairs = torch.cummin(pairs, 0).values
    tau = -1.0 + 2.0 * float((pairs * keep).sum())
    tau = max(tau, 1.0 / math.log10(max(m * w, 10)))
    return w / tau


def ks_statistic(samples: torch.Tensor, cdf) -> float:
    """sup_x |F_n(x) - F(x)| of 1-D samples against an exact CDF (a callable on float64
    tensors, e.g. ``Target.cdf``). Non-finite samples count at +-inf (NaN at +inf)."""
    x = torch.nan_to_num(samples.to(torch.float64), nan=math.inf, posinf=math.inf, neginf=-math.inf)
    x, _ = torch.sort(x)
    n = x.numel()
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    return float(torch.maximum(i / n - f, f - (i - 1) / n).max())


def sorted_projections(a: torch.Tensor, directions: int = 32) -> torch.Tensor:
    """Projections of points a (2, n) on ``directions`` evenly spaced unit vectors, each sorted:
    (directions, n), float32."""
    ang = torch.arange(directions, dtype=torch.float32, device=a.device) * (math.pi / directions)
    u = torch.stack((torch.cos(ang), torch.sin(ang)))                       # (2, K)
    return torch.sort(u.T @ a.to(torch.float32), dim=1).values


def sliced_w1(a: torch.Tensor, b: torch.Tensor, directions: int = 32,
              b_sorted: torch.Tensor | None = None) -> float:
    """Sliced Wasserstein-1 between equal-size point sets a, b (2, n): the mean over evenly
    spaced directions theta of W1 of the projections (mean |sorted a.theta - sorted b.theta|).
    ``b_sorted``: b's sorted projections, computed once (``sorted_projections``).
    Infinite when a holds a non-finite point (a chain that diverged is infinitely far)."""
    if not bool(torch.isfinite(a).all()):
        return math.inf
    pb = sorted_projections(b, directions) if b_sorted is None else b_sorted
    return float((sorted_projections(a, directions) - pb).abs().to(torch.float64).mean())
