"""Benchmark of the EM topic: seconds per EM iteration against scikit-learn's GaussianMixture.

Same data and initial parameters on both sides, in the same run: N=200,000, D=8, K=16, full
covariance, float32 and float64 (quick: N=20,000); on CUDA also N=10^6 and 10^7 (scikit-learn
timed at 10^6 and scaled linearly). Iterations alternate between the two sides
(:func:`engine.bench.timing.interleaved`; scikit-learn's loop body is ``_e_step`` then
``_m_step``) and the medians are compared, so a load burst on a shared machine hits both.
The log-likelihoods after the same number of iterations are reported beside.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator

import numpy as np
import torch

from ..topics.em import TOPIC
from .timing import interleaved, peak_device_mib, reset_peak_device, time_once


def rows(device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
    n = 20_000 if quick else 200_000
    cases = [(n, torch.float32), (n, torch.float64)]
    if device.type == "cuda" and not quick:
        cases += [(1_000_000, torch.float32), (10_000_000, torch.float32)]
    iters = 3 if quick else 9
    for n, dtype in cases:
        yield _case(device, n, 8, 16, dtype, iters)


def _blobs(n: int, d: int, k: int) -> np.ndarray:
    """K anisotropic Gaussian blobs in D dimensions, seed 0."""
    rng = np.random.default_rng(0)
    true_means = rng.normal(0.0, 4.0, (k, d))
    mix = np.eye(d) + rng.normal(0.0, 0.4, (k, d, d))
    labels = rng.integers(0, k, n)
    return true_means[labels] + np.einsum("nij,nj->ni", mix[labels], rng.standard_normal((n, d)))


def _case(device: torch.device, n: int, d: int, k: int, dtype: torch.dtype, iters: int) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    pts = _blobs(n, d, k)
    name = "float64" if dtype == torch.float64 else "float32"
    p = TOPIC.default_params()
    p.update(K=k, covariance="full", dtype=name, mode="em", init="kmeans++", reseed=True,
             dataset="blobs", n_points=n, tol=0.0, max_iter=10**6)   # never stops while timed
    state = TOPIC.state_from_points(pts, p, device, seed=0)
    w0, m0, c0, _ = (t.double().cpu().numpy() for t in state.init_params)
    m0 = m0 + state.center
    reset_peak_device(device)
    time_once(lambda: TOPIC.em_step(state, p), device)     # warm-up (kernel compilation)
    # scikit-learn on the same data and initial parameters (on at most 10^6 points, scaled).
    sk_n = min(n, 1_000_000)
    xs = pts[:sk_n].astype(np.float64 if name == "float64" else np.float32)
    gm = GaussianMixture(n_components=k, covariance_type="full", tol=0.0, reg_covar=p["reg_covar"],
                         weights_init=w0, means_init=m0, precisions_init=np.linalg.inv(c0),
                         init_params="random", random_state=0, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(xs)                                         # initialisation + one iteration, like ours
    sk_ll: list[float] = []

    def sklearn_iteration() -> None:
        log_prob_norm, log_resp = gm._e_step(xs)
        gm._m_step(xs, log_resp)
        sk_ll.append(float(log_prob_norm))

    m = interleaved([lambda: TOPIC.em_step(state, p), sklearn_iteration], device, rounds=iters, warmup=0)
    ours, sk_time = m.timings[0].median, m.timings[1].median
    sk_scaled = sk_time * n / sk_n
    row = {
        "case": f"EM iteration N={n} D={d} K={k} full {name}",
        "value": ours,
        "unit": "s/iter",
        "baseline": "scikit-learn GaussianMixture (CPU)" + (
            f", measured at N={sk_n} and scaled x{n // sk_n}" if sk_n != n else ""),
        "baseline_value": sk_scaled,
        "ratio": sk_scaled / ours if ours > 0 else float("inf"),
        "engine": "triton" if state.use_kernel else "torch twin",
        "device": str(device),
    }
    if sk_n == n:
        row["log_likelihood"] = float(state.log_likelihood)
        row["log_likelihood_sklearn"] = sk_ll[-1]
    peak = peak_device_mib(device)
    if peak is not None:
        row["peak_device_mib"] = peak
    return row
