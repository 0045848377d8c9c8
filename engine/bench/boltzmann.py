"""Benchmarks of the Boltzmann topic, each against its baseline in the same run.

- PCD-1 epochs on the binarised digits at scikit-learn's BernoulliRBM defaults (256 hidden,
  batch 10, lr 0.1, 10 persistent chains, no momentum): the topic's update loop (one
  ``step`` per mini-batch, 150 per epoch; on the CPU that is PCDChunk) at float64 and at
  float32, each vs ``BernoulliRBM(n_iter=1).fit`` on data of the same dtype (it computes in
  its input's precision; float64 is its default here); ratio = scikit-learn's seconds per
  epoch / ours. A step this small runs on one thread (``OneThread``), whatever the caller's
  count.
- Held-out log-likelihood (exact ln Z) after 200 epochs with 16 hidden units: the
  boltzmann-digits preset vs BernoulliRBM at the same settings (lr 0.01, batch 10), medians
  over seeds 0, 1, 2 (no ratio: the row gives the difference in nats).
- Block-Gibbs chain-sweeps/s of a 784 x 500 rbm (v -> z -> v per chain): the engine's layer
  sampler (float32; the Triton kernel on CUDA) vs scikit-learn's ``BernoulliRBM.gibbs`` on the
  same weights (NumPy, float64), at 10^3, 10^4 and 10^5 chains.
- Planted N = 16 (the boltzmann-race settings): seconds of updates until the coupling RMSE
  is within 1.3x of exact ML's converged RMSE, for mpf, pl and pcd, as ratios of exact's own
  time to get there (> 1: faster than exact), each capped (10 minutes; 2 s when quick).
All timing goes through engine.bench.timing (interleaved rounds, medians).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from .. import datasets, presets
from ..models.boltzmann import RBM, Stream
from ..topics.boltzmann import TOPIC
from . import timing

CAP_S = 600.0


def _digits_epochs(device: torch.device, quick: bool) -> Iterator[dict[str, Any]]:
    """One epoch (150 updates) of the topic's PCD-1 at float64 (the CPU default) and at
    float32 (``dtype=float32``), each against BernoulliRBM fitted on data of the same dtype
    (it computes in its input's precision), all four interleaved; the float32 row also
    gives its ratio to the float64 fit, scikit-learn's default on these data."""
    from sklearn.neural_network import BernoulliRBM

    hidden = 64 if quick else 256
    X, _ = datasets.binary_digits()
    updates = X.shape[0] // 10

    def ours(dtype: str):
        p = TOPIC.resolve({"dataset": "digits", "hidden": hidden, "method": "pcd", "chains": 10,
                           "batch_size": 10, "gibbs_steps": 1, "lr": 0.1, "momentum": 0.0,
                           "eval_every": 10**6, "ais_runs": 2, "ais_betas": 1, "dtype": dtype})
        state = TOPIC.init(p, device, 0)

        def epoch() -> None:
            for _ in range(updates):
                TOPIC.step(state, p)
        return epoch

    X32 = X.astype(np.float32)

    def sklearn(data: np.ndarray):
        def fit() -> None:
            BernoulliRBM(n_components=hidden, learning_rate=0.1, batch_size=10, n_iter=1, random_state=0).fit(data)
        return fit

    dtypes = ("float64", "float32")
    m = timing.interleaved([ours(d) for d in dtypes] + [sklearn(X), sklearn(X32)], device,
                           rounds=2 if quick else 7)
    t_sk = {"float64": m.timings[2].median, "float32": m.timings[3].median}
    for k, dtype in enumerate(dtypes):
        t_ours = m.timings[k].median
        yield {"case": f"digits rbm 64x{hidden} PCD-1 batch 10, {dtype}: one epoch", "value": t_ours,
               "unit": "s/epoch", "baseline": f"scikit-learn BernoulliRBM.fit(n_iter=1) on {dtype} data",
               "baseline_value": t_sk[dtype], "ratio": t_sk[dtype] / t_ours,
               "ratio_to_float64_baseline": t_sk["float64"] / t_ours, "load": m.load,
               "threads": torch.get_num_threads()}


def _digits_likelihood(device: torch.device, quick: bool) -> dict[str, Any]:
    """Held-out log-likelihood (exact ln Z) of a 16-hidden rbm after 200 epochs, the
    boltzmann-digits preset vs BernoulliRBM at the same settings, medians over 3 seeds."""
    import statistics

    from sklearn.neural_network import BernoulliRBM

    from ..exact import boltzmann as exact

    epochs = 2 if quick else 200
    train, held = datasets.binary_digits()
    held_t = torch.from_numpy(held)
    ours, theirs = [], []
    for seed in range(3):
        p = TOPIC.resolve({**presets.load("boltzmann-digits").params, "eval_every": 10**6,
                           "ais_runs": 2, "ais_betas": 1})
        state = TOPIC.init(p, device, seed)
        for _ in range(epochs * train.shape[0] // p["batch_size"]):
            TOPIC.step(state, p)
        model = state.learners[0].model
        ours.append(exact.log_likelihood(model, held_t.to(model.W.device), exact.log_z(model)))
        sk = BernoulliRBM(n_components=16, learning_rate=0.01, batch_size=10, n_iter=epochs,
                          random_state=seed).fit(train)
        m = RBM(torch.from_numpy(sk.components_.T.copy()), torch.from_numpy(sk.intercept_visible_.copy()),
                torch.from_numpy(sk.intercept_hidden_.copy()))
        theirs.append(exact.log_likelihood(m, held_t, exact.log_z(m)))
    a, b = statistics.median(ours), statistics.median(theirs)
    return {"case": f"digits rbm 64x16, {epochs} epochs: held-out log-likelihood (median of 3 seeds)",
            "value": a, "unit": "nats/image", "baseline": "scikit-learn BernoulliRBM, same settings",
            "baseline_value": b, "ratio": None, "difference": a - b,
            "seeds_ours": [round(x, 3) for x in ours], "seeds_sklearn": [round(x, 3) for x in theirs]}


def _gibbs_rows(device: torch.device, quick: bool) -> Iterator[dict[str, Any]]:
    from sklearn.neural_network import BernoulliRBM

    nv, nh = 784, 500
    g = torch.Generator().manual_seed(0)
    model = RBM.init(nv, nh, g, torch.float32, device, scale=0.05)
    sk = BernoulliRBM(n_components=nh)
    sk.components_ = model.W.T.double().cpu().numpy()
    sk.intercept_hidden_ = np.zeros(nh)
    sk.intercept_visible_ = np.zeros(nv)
    sk.random_state_ = np.random.RandomState(0)
    for R in ((100,) if quick else (1000, 10_000, 100_000)):
        V = (torch.rand(R, nv, generator=g) < 0.3).float().to(device)
        Vn = V.double().cpu().numpy()
        stream = Stream.new(1, device)
        m = timing.interleaved([lambda: model.gibbs(V, 1, stream), lambda: sk.gibbs(Vn)], device,
                               rounds=2 if quick else 3)
        ours, base = m.timings[0].rate(R), m.timings[1].rate(R)
        yield {"case": f"block Gibbs 784x500, {R} chains", "value": ours, "unit": "chain-sweeps/s",
               "baseline": "scikit-learn BernoulliRBM.gibbs (float64)", "baseline_value": base,
               "ratio": ours / base, "load": m.load}


def _race(device: torch.device, quick: bool) -> Iterator[dict[str, Any]]:
    cap = 2.0 if quick else CAP_S
    base = {**presets.load("boltzmann-race").params, "eval_every": 10**6, "ais_runs": 2, "ais_betas": 1}
    if quick:
        base.update(n_samples=1000, batch_size=1000, chains=100)

    def fit(method: str, target: float | None, updates: int | None) -> tuple[float, float, bool]:
        """(update seconds until RMSE <= target (or after ``updates``), final RMSE, reached)."""
        optimizer = "sgd" if method == "pcd" else base["optimizer"]    # as compare mode runs it
        p = TOPIC.resolve({**base, "method": method, "optimizer": optimizer})
        state = TOPIC.init(p, device, 0)
        spent, n = 0.0, 0
        while spent < cap:
            spent += timing.time_once(lambda: TOPIC.step(state, p), device)
            n += 1
            rmse = TOPIC.observe(state, p).scalars["coupling_rmse"]
            if (target is not None and rmse <= target) or (updates is not None and n >= updates):
                return spent, rmse, target is None or rmse <= target
        return spent, rmse, False

    _, exact_final, _ = fit("exact", None, 60)
    target = 1.3 * exact_final
    t_exact, _, _ = fit("exact", target, None)
    for method in ("mpf", "pl", "pcd"):
        t, rmse, reached = fit(method, target, None)
        yield {"case": f"planted N=16: {method} to 1.3x exact's RMSE ({target:.4f})",
               "value": t if reached else None, "unit": "s",
               "baseline": "exact ML (enumeration, L-BFGS)", "baseline_value": t_exact,
               "ratio": t_exact / t if reached else None,
               "note": "" if reached else f"not reached in {cap:g} s (RMSE {rmse:.4f})"}


def update_profile(dtype: torch.dtype = torch.float64, hidden: int = 256, reps: int = 1000) -> dict[str, float]:
    """Microseconds per call of each of the calls of one PCDChunk update at the per-epoch
    row's shapes (64 x ``hidden``, 10 chains, batch 10), each timed alone over ``reps``
    calls (median of 5), and of the whole update, plus the chunk's noise draw (once a chunk,
    on the helper thread) per update: what limits the per-epoch row. One intra-op thread,
    as the learner takes for an update this small. Not a
    row (no baseline): ``python -c "from mletui.engine.bench.boltzmann import update_profile;
    print(update_profile())"``."""
    import statistics

    from ..models.boltzmann_learning import PCDChunk, logistic_noise_

    g = torch.Generator().manual_seed(0)
    m = RBM.init(64, hidden, g, dtype)
    bufs = [torch.zeros_like(t) for t in m.parameters()]
    block = PCDChunk.block(m, bufs)
    chains = (torch.rand(10, 64, generator=g) < 0.3).to(dtype)
    ch = PCDChunk(m, bufs, chains, 10, 1, block, (torch.rand(10, hidden, generator=g) < 0.5).to(dtype))
    X = (torch.rand(10, 64, generator=g) < 0.3).to(dtype)
    stream = Stream.new(1, "cpu")
    ch.update(X, 0.0, 0.0, 0.0, stream)       # draws the chunk's uniforms
    t = 0

    def whole() -> None:       # lr > 0: MKL skips a product scaled by 0
        ch.update(X, 1e-12, 0.0, 0.0, stream)
        ch.pos = 1

    data, chain, rows, rows_T, pre_z, pre_all, pre, _, uv, uz = ch.plan[t]
    calls = {
        "copy batch": lambda: data.copy_(X),
        "mm visible": lambda: torch.mm(ch.ha, ch.WvT, out=ch.sv),
        "compare visible (with logit u)": lambda: torch.gt(ch.sv, uv, out=chain),
        "mm stacked rows": lambda: torch.mm(rows, ch.Wa, out=pre),
        "compare hidden (with logit u)": lambda: torch.gt(pre_z, uz, out=ch.z),
        "sigmoid rows": lambda: torch.sigmoid(pre_all, out=ch.Pz),
        "weight rows": lambda: ch.Pz.mul_(ch.w),
        "addmm gradient into parameters": lambda: ch.Wa.addmm_(rows_T, ch.P, alpha=-1e-12),
        "whole update": whole,
    }
    ch.pos = 1
    out: dict[str, list[float]] = {k: [] for k in calls}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # as the learner runs an update this small
    try:
        for _ in range(5):
            for name, fn in calls.items():
                t0 = timing.time_once(lambda: [fn() for _ in range(reps)])
                out[name].append(1e6 * t0 / reps)
    finally:
        torch.set_num_threads(threads)
    res = {k: statistics.median(v) for k, v in out.items()}
    if ch.next is not None and ch.next[1] is not None:
        ch.next[1].result()
    noise = [timing.time_once(lambda: logistic_noise_(ch.Us[1 - ch.cur], 0, 0)) for _ in range(5)]
    res["noise of a chunk, per update (helper thread)"] = 1e6 * statistics.median(noise) / ch.C
    res["load"] = timing.load_average()
    return res


def rows(device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
    yield from _digits_epochs(device, quick)
    yield _digits_likelihood(device, quick)
    yield from _gibbs_rows(device, quick)
    yield from _race(device, quick)
