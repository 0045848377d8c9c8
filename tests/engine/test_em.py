"""EM for Gaussian mixtures: the monotone climb, scikit-learn parity, the Triton E-step against
its twin and an explicit density, refused data files, re-seeding and the gradient-MLE run."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch

import mletui.engine.gmm as gmm
import mletui.engine.topics.em as em
from mletui.engine.datasets import DataError, generate
from mletui.engine.kernels.gmm_estep import estep_torch, estep_triton
from mletui.engine.params import ParamError
from mletui.engine.runner import run
from mletui.engine.topic import View

TOPIC = em.TOPIC
CPU = torch.device("cpu")


def em_params(**kw):
    p = TOPIC.default_params()
    p.update(mode="em")
    p.update(kw)
    return p


def log_likelihood_trace(steps: int = 30, seed: int = 0, **kw) -> list[float]:
    return [f.scalars["log_likelihood"] for f in run(TOPIC, steps=steps, params=em_params(**kw), seed=seed)]


def decreases(trace: list[float], rel: float = 1e-12) -> list[tuple[int, float]]:
    """(iteration, drop) wherever the log-likelihood went down by more than float tolerance."""
    return [(i + 1, trace[i] - trace[i + 1]) for i in range(len(trace) - 1)
            if trace[i + 1] < trace[i] - rel * max(1.0, abs(trace[i]))]


MONOTONE_CASES = [
    dict(dataset="bimodal", K=2, covariance="full", init="kmeans++"),
    dict(dataset="bimodal_unequal", K=3, covariance="spherical", init="random"),
    dict(dataset="blobs", K=3, covariance="full", init="random"),
    dict(dataset="blobs", K=4, covariance="diag", init="kmeans++"),
    dict(dataset="ring", K=5, covariance="full", init="kmeans++"),
]


# -- the EM guarantee ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", MONOTONE_CASES, ids=lambda c: f"{c['dataset']}-K{c['K']}-{c['covariance']}")
def test_em_loglik_never_decreases_without_floor_or_reseeding(case):
    for seed in (0, 1, 2):
        trace = log_likelihood_trace(steps=30, seed=seed, n_points=600, reg_covar=0.0, reseed=False, **case)
        assert all(math.isfinite(v) for v in trace)
        assert not decreases(trace), f"seed {seed}: log-likelihood decreased at {decreases(trace)[:3]}"
        assert trace[-1] > trace[0]


def test_a_broken_m_step_fails_the_monotonicity_check(monkeypatch):
    """Sigma_k normalised by N instead of N_k (a classic bug): the same check must catch it."""
    correct = gmm.m_step

    def broken(stats, reg_covar, covariance_type):
        w, m, c = correct(stats, reg_covar, covariance_type)
        share = (stats.nk / stats.nk.sum()).view(-1, *([1] * (c.dim() - 1)))
        return w, m, c * share

    monkeypatch.setattr(gmm, "m_step", broken)
    caught = 0
    for case in MONOTONE_CASES:
        trace = log_likelihood_trace(steps=30, seed=0, n_points=600, reg_covar=0.0, reseed=False, **case)
        caught += bool(decreases(trace))
    assert caught >= 2


# -- parity with scikit-learn -------------------------------------------------------------------
def _sklearn_precisions(cov: np.ndarray, covariance_type: str) -> np.ndarray:
    return np.linalg.inv(cov) if covariance_type == "full" else 1.0 / cov


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_em_matches_sklearn_from_the_same_initial_parameters(covariance_type):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(3)
    pts = np.concatenate([generate("blobs", 700, 5), rng.normal(0.0, 1.0, (700, 1))], axis=1) + [10.0, -4.0, 2.0]
    p = em_params(K=4, covariance=covariance_type, reseed=False, dtype="float64", init="random", tol=0.0)
    state = TOPIC.state_from_points(pts, p, CPU, seed=11)
    w0, m0, c0, _ = (t.numpy().copy() for t in state.init_params)
    m0 = m0 + state.center
    iterations = 12
    for _ in range(iterations):
        TOPIC.em_step(state, p)
    gm = GaussianMixture(n_components=4, covariance_type=covariance_type, max_iter=iterations, tol=0.0,
                         reg_covar=p["reg_covar"], weights_init=w0, means_init=m0,
                         precisions_init=_sklearn_precisions(c0, covariance_type), init_params="random",
                         random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(pts)
    assert gm.n_iter_ == iterations

    def rel(a, b):
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))

    assert rel(float(state.log_likelihood), gm.lower_bound_) <= 1e-6
    assert rel(state.weights.numpy(), gm.weights_) <= 1e-6
    assert rel(state.means.numpy() + state.center, gm.means_) <= 1e-6
    assert rel(state.covariances.numpy(), gm.covariances_) <= 1e-6
    # and the fit moved: the parity is not that of two idle runs
    assert rel(gm.means_, m0) > 1e-3


# -- the E-step ----------------------------------------------------------------------------------
def _random_mixture(k, d, covariance_type, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    log_w = torch.log_softmax(torch.randn(k, generator=g, dtype=dtype), 0)
    means = torch.randn(k, d, generator=g, dtype=dtype)
    if covariance_type == "full":
        a = torch.randn(k, d, d, generator=g, dtype=dtype) * 0.3
        prec = torch.triu(a, 1) + torch.diag_embed(torch.rand(k, d, generator=g, dtype=dtype) + 0.6)
    elif covariance_type == "diag":
        prec = torch.rand(k, d, generator=g, dtype=dtype) + 0.5
    else:
        prec = torch.rand(k, generator=g, dtype=dtype) + 0.5
    return log_w, means, prec


def _explicit_estep(x, log_w, means, prec, covariance_type):
    """Independent reference: scipy's multivariate normal per component, N x K in float64."""
    from scipy.stats import multivariate_normal

    x = x.double().numpy()
    k, d = means.shape
    p = prec.double().numpy()
    if covariance_type == "full":
        covs = [np.linalg.inv(p[j] @ p[j].T) for j in range(k)]
    elif covariance_type == "diag":
        covs = [np.diag(1.0 / p[j] ** 2) for j in range(k)]
    else:
        covs = [np.eye(d) / p[j] ** 2 for j in range(k)]
    lp = np.stack([multivariate_normal(means[j].double().numpy(), covs[j]).logpdf(x).reshape(-1)
                   for j in range(k)], 1) + log_w.double().numpy()
    lpn = np.logaddexp.reduce(lp, axis=1)
    r = np.exp(lp - lpn[:, None])
    sxx = np.einsum("nk,ni,nj->kij", r, x, x) if covariance_type == "full" else r.T @ (x * x)
    return lpn, r.sum(0), r.T @ x, sxx


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_estep_twin_matches_explicit_gaussian_densities(covariance_type):
    x = torch.randn(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.5
    log_w, means, prec = _random_mixture(4, 3, covariance_type, torch.float64)
    got = estep_torch(x, log_w, means, prec, covariance_type, chunk=128)   # several chunks
    want = _explicit_estep(x, log_w, means, prec, covariance_type)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_estep_matches_twin_under_interpreter(covariance_type, dtype):
    """300 points (not a multiple of the tile), D=3 (padded to 4), K=4, two programs walking
    several tiles each: the kernel's partial sums equal the twin's."""
    x = torch.randn(300, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    log_w, means, prec = _random_mixture(4, 3, covariance_type, dtype, seed=4)
    twin = estep_torch(x, log_w, means, prec, covariance_type)
    kern = estep_triton(x, log_w, means, prec, covariance_type, programs=2, block_n=64)
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-4)
    for name, a, b in zip(twin._fields, twin, kern):
        assert a.shape == b.shape, name
        torch.testing.assert_close(b, a, **tol, msg=lambda m: f"{name}: {m}")


def test_tied_estep_runs_through_the_full_kernel_with_one_shared_factor():
    """tied: the kernel (under the interpreter) and the twin both see K copies of one factor,
    and equal the full-covariance E-step with that factor repeated."""
    pytest.importorskip("triton")
    x = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    log_w, means, prec = _random_mixture(3, 3, "full", torch.float64, seed=8)
    shared = prec[0]
    twin = gmm.estep(x, log_w, means, shared, "tied", use_kernel=False)
    kern = gmm.estep(x, log_w, means, shared, "tied", use_kernel=True)
    full = estep_torch(x, log_w, means, shared.expand(3, 3, 3).contiguous(), "full")
    for a, b, c in zip(twin, kern, full):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-11)
        torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_triton_estep_one_dimension_matches_twin():
    x = torch.randn(130, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    log_w, means, prec = _random_mixture(3, 1, "full", torch.float64, seed=6)
    twin = estep_torch(x, log_w, means, prec, "full")
    kern = estep_triton(x, log_w, means, prec, "full", programs=3)
    for a, b in zip(twin, kern):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-11)


# -- data files ----------------------------------------------------------------------------------
def _refusal(path, **kw) -> str:
    with pytest.raises(ParamError) as info:
        TOPIC.resolve(texts={"data": str(path), **kw})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_good_file_implies_dataset_file_and_sets_d(tmp_path):
    pts = generate("blobs", 300, 0)
    path = tmp_path / "points.csv"
    path.write_text("x1,x2\n" + "\n".join(f"{a},{b}" for a, b in pts))
    p = TOPIC.resolve(texts={"data": str(path), "K": "3"})
    assert p["dataset"] == "file"
    frames = list(run(TOPIC, steps=3, params={**p, "mode": "em"}, seed=0))
    assert frames[-1].scalars["D"] == 2 and frames[-1].scalars["n_points"] == 300
    np.testing.assert_allclose(np.sum(frames[-1].arrays["weights"]), 1.0)


def test_file_with_nan_and_inf_rows_is_refused_with_the_count(tmp_path):
    pts = np.random.default_rng(0).normal(size=(50, 2))
    pts[[3, 17, 40], 1] = [np.nan, np.inf, -np.inf]
    np.save(tmp_path / "bad.npy", pts)
    msg = _refusal(tmp_path / "bad.npy")
    assert "3 of 50 rows" in msg and "NaN/inf" in msg
    csv = tmp_path / "bad.csv"
    csv.write_text("1,2\n3,nan\n5,6\ninf,1\n")
    msg = _refusal(csv, K="1")
    assert "2 of 4 rows" in msg


def test_file_of_wrong_shape_is_refused(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((4, 3, 2)))
    assert "wrong shape (4, 3, 2)" in _refusal(tmp_path / "cube.npy")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n3,4\n5\n6,7,8\n9,10\n")
    msg = _refusal(ragged)
    assert "wrong shape" in msg and "2 rows" in msg


def test_fewer_points_than_components_is_refused(tmp_path):
    np.save(tmp_path / "few.npy", np.arange(3.0))
    msg = _refusal(tmp_path / "few.npy", K="5")
    assert "3 points" in msg and "K=5" in msg


def test_pickled_object_arrays_are_refused_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    obj = np.array([_Trap(str(marker)), 1.0], dtype=object)
    np.save(tmp_path / "objects.npy", obj, allow_pickle=True)
    np.savez(tmp_path / "objects.npz", x=obj)
    with open(tmp_path / "plain.npy", "wb") as fh:  # a bare pickle wearing an .npy name
        pickle.dump(_Trap(str(marker)), fh)
    for name in ("objects.npy", "objects.npz", "plain.npy"):
        msg = _refusal(tmp_path / name)
        assert "pickle" in msg or "objects" in msg
    assert not marker.exists()


class _Trap:
    """Unpickling this creates a file: the proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_data_and_another_dataset_together_are_refused(tmp_path):
    np.save(tmp_path / "ok.npy", np.arange(10.0))
    with pytest.raises(ParamError, match="implies dataset=file"):
        TOPIC.resolve(texts={"data": str(tmp_path / "ok.npy"), "dataset": "blobs"})
    with pytest.raises(ParamError, match="needs data=PATH"):
        TOPIC.resolve(texts={"dataset": "file"})
    with pytest.raises(DataError):  # a DataError is a ParamError: the CLI exits 2 on it
        TOPIC.resolve(texts={"data": str(tmp_path / "ok.npy"), "K": "11"})


# -- re-seeding, resets, gradient MLE ------------------------------------------------------------
def test_collapsed_component_is_reseeded_on_the_worst_explained_point():
    p = em_params(dataset="blobs", K=3, n_points=400)
    state = TOPIC.state_from_points(generate("blobs", 400, 0), p, CPU, seed=0)
    state.means[2] = torch.tensor([500.0, 500.0], dtype=state.means.dtype)  # explains no point
    stats = gmm.estep(state.x, torch.log(state.weights), state.means, state.prec_chol, "full")
    worst = state.x[int(torch.argmin(stats.log_prob_norm))]
    TOPIC.step(state, p)
    frame = TOPIC.observe(state, p)
    assert frame.scalars["reseeded"] == 1
    torch.testing.assert_close(state.means[2], worst)
    assert any("component 3 collapsed" in n and "re-seeded" in n for n in frame.notes)
    # re-seeding off: the component stays put and nothing is reported
    p_off = dict(p, reseed=False)
    state = TOPIC.state_from_points(generate("blobs", 400, 0), p_off, CPU, seed=0)
    state.means[2] = torch.tensor([500.0, 500.0], dtype=state.means.dtype)
    TOPIC.step(state, p_off)
    assert TOPIC.observe(state, p_off).scalars["reseeded"] == 0


def test_reset_draws_a_new_initialisation_and_data_seed_keeps_the_data():
    p = TOPIC.resolve({"dataset": "blobs", "K": 3})
    a = TOPIC.init(p, CPU, seed=1)
    b = TOPIC.init(p, CPU, seed=2)
    assert torch.equal(a.x, b.x)
    assert not torch.allclose(a.init_params[1], b.init_params[1])
    c = TOPIC.init(dict(p, data_seed=7), CPU, seed=1)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.05), ("lbfgs", 1.0)])
def test_gradient_mle_reaches_the_em_maximum_on_bimodal(optimizer, lr):
    frames = list(run(TOPIC, steps=100, params=dict(dataset="bimodal", K=2, n_points=500, mode="both",
                                                    gradient_optimizer=optimizer, lr=lr), seed=0, every=10))
    em_ll = frames[-1].scalars["log_likelihood"]
    grad = [f.scalars["log_likelihood_gradient"] for f in frames]
    assert grad[-1] == pytest.approx(em_ll, abs=2e-3)
    assert grad[-1] <= em_ll + 1e-6          # EM's fixed point is the maximum here
    assert frames[-1].scalars["gradient_divergences"] == 0


def test_gradient_divergence_is_reported_not_plotted(monkeypatch):
    p = em_params(mode="gradient", dataset="bimodal", K=2, n_points=200)
    state = TOPIC.init(p, CPU, seed=0)
    monkeypatch.setattr(gmm.GradientFit, "_loss_and_grad",
                        lambda self: torch.tensor(float("nan"), dtype=self.x.dtype))
    TOPIC.step(state, p)
    frame = TOPIC.observe(state, p)
    assert frame.scalars["gradient_divergences"] == 1
    assert frame.scalars["log_likelihood_gradient"] is None
    assert any("non-finite" in n for n in frame.notes)


def test_views_are_known_kinds_and_frames_fill_them():
    assert all(isinstance(v, View) for v in TOPIC.views)
    frame = list(run(TOPIC, steps=2, params={"dataset": "blobs", "K": 3, "mode": "both"}, seed=0))[-1]
    hist = frame.views["density_1d"]
    width = np.diff(hist["edges"])
    assert np.sum(np.asarray(hist["counts"]) * width) == pytest.approx(1.0, abs=0.01)  # a density
    x, y = hist["lines"]["EM mixture"]
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.02)
    assert len(frame.views["ellipses_2d"]["lines"]) == 6            # 3 EM + 3 gradient ellipses
    assert len(frame.views["components"]["rows"]) == 6


def test_float32_data_follow_the_float64_fit_on_narrow_components_far_from_the_origin():
    """sxx / N_k - mu mu^T cancels |mu|^2 down to sigma^2: with float32 sums EM wandered by
    up to ~1e-2 per point (and even went down); float64 statistics keep float32 data on track."""
    rng = np.random.default_rng(0)
    k, d, n = 8, 4, 6000
    centres = rng.normal(0.0, 6.0, (k, d))
    shapes = np.eye(d) * 0.3 + rng.normal(0.0, 0.15, (k, d, d))
    labels = rng.integers(0, k, n)
    pts = centres[labels] + np.einsum("nij,nj->ni", shapes[labels], rng.standard_normal((n, d)))
    traces = {}
    for name in ("float32", "float64"):
        p = em_params(K=k, dtype=name, reseed=False, tol=0.0)
        state = TOPIC.state_from_points(pts, p, CPU, seed=0)
        trace = []
        for _ in range(12):
            TOPIC.em_step(state, p)
            trace.append(float(state.log_likelihood))
        traces[name] = trace
    np.testing.assert_allclose(traces["float32"], traces["float64"], rtol=0, atol=1e-5)


# -- reference parity on real data (issue: EM complete against scikit-learn) ---------------------
def _standardised(name):
    from sklearn import datasets

    x = getattr(datasets, f"load_{name}")().data
    return (x - x.mean(0)) / x.std(0)


def _sklearn_start(state, covariance_type):
    """The state's initial parameters in scikit-learn's layouts (means in data coordinates)."""
    w0, m0, c0, _ = (t.numpy().copy() for t in state.init_params)
    return dict(weights_init=w0, means_init=m0 + state.center,
                precisions_init=np.linalg.inv(c0) if covariance_type in ("full", "tied") else 1.0 / c0)


def _sklearn_fit(x, k, covariance_type, start, max_iter, tol=0.0, **kw):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(k, covariance_type=covariance_type, max_iter=max_iter, tol=tol, random_state=0,
                         **start, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(x)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("dataset", ["iris", "wine"])
def test_em_matches_sklearn_per_iteration_on_iris_and_wine(dataset, covariance_type):
    """From the same initial parameters, every iteration's log-likelihood, weights, means and
    covariances equal scikit-learn's GaussianMixture after as many iterations (1e-10)."""
    x = _standardised(dataset)
    p = em_params(K=4, covariance=covariance_type, reseed=False, tol=0.0, init="random", max_iter=1000)
    state = TOPIC.state_from_points(x, p, CPU, seed=5)
    start = _sklearn_start(state, covariance_type)

    def rel(a, b):
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))

    for t in range(1, 11):
        TOPIC.em_step(state, p)
        gm = _sklearn_fit(x, 4, covariance_type, start, max_iter=t)
        assert gm.n_iter_ == t
        assert rel(float(state.log_likelihood), gm.lower_bound_) <= 1e-10, t
        assert rel(state.weights.numpy(), gm.weights_) <= 1e-10, t
        assert rel(state.means.numpy() + state.center, gm.means_) <= 1e-10, t
        assert rel(state.covariances.numpy(), gm.covariances_) <= 1e-10, t
    assert state.covariances.shape == gm.covariances_.shape
    assert rel(gm.means_, start["means_init"]) > 1e-2      # the fit moved
    bic, aic = em.gmm.information_criteria(float(state.log_likelihood), len(x), 4, x.shape[1], covariance_type)
    n = len(x)
    assert em.gmm.n_parameters(4, x.shape[1], covariance_type) == gm._n_parameters()
    assert bic == pytest.approx(-2 * n * gm.lower_bound_ + gm._n_parameters() * math.log(n), rel=1e-12)
    assert aic == pytest.approx(-2 * n * gm.lower_bound_ + 2 * gm._n_parameters(), rel=1e-12)


@pytest.mark.parametrize("k", [3, 4])
def test_wine_full_converges_at_the_defaults_and_keeps_its_small_components(k):
    """Standardised wine, full covariance: the old rule (N_k < D + 1) re-seeded a legitimate
    small component every iteration and never converged. At the defaults every seed now
    converges, nothing is re-seeded (reg_covar keeps the small components usable) and the fit
    ends where scikit-learn's ends from the same start."""
    x = _standardised("wine")
    small = 0
    # the defaults (init=kmeans) on four seeds, and K points as centres on two seeds where a
    # component of 4-6 points occurs (as the old k-means++ start made it on wine)
    for init, seed in [("kmeans", s) for s in range(4)] + [("random_from_data", 2), ("random_from_data", 11)]:
        p = TOPIC.resolve({"K": k, "mode": "em", "init": init})
        state = TOPIC.state_from_points(x, p, CPU, seed=seed)
        start = _sklearn_start(state, "full")
        frames = []
        while not state.finished:
            TOPIC.step(state, p)
            frames.append(TOPIC.observe(state, p))
            assert len(frames) <= p["max_iter"]
        last = frames[-1].scalars
        assert last["converged"] and last["fit_done"] and last["reseeded"] == 0
        gm = _sklearn_fit(x, k, "full", start, max_iter=p["max_iter"], tol=p["tol"])
        assert gm.converged_ and gm.n_iter_ == last["n_iter"]
        assert last["log_likelihood"] == pytest.approx(gm.lower_bound_, abs=1e-9)
        small += int((np.asarray(frames[-1].arrays["weights"]) * len(x) < x.shape[1] + 1).any())
    assert small >= 2         # components on fewer than D + 1 points occurred and were kept


def test_reg_covar_zero_without_reseeding_never_decreases_and_stops_at_a_singular_covariance():
    """reg_covar=0, reseed off, wine K=6: some starts reach a component on too few points for a
    covariance; the step is then not taken and the start stops with a note, so the reported
    log-likelihood never decreases (the README's guarantee)."""
    x = _standardised("wine")
    stopped = 0
    for seed in range(8):
        p = TOPIC.resolve({"K": 6, "mode": "em", "reg_covar": 0.0, "reseed": False, "tol": 1e-6, "max_iter": 500})
        state = TOPIC.state_from_points(x, p, CPU, seed=seed)
        trace, notes = [], []
        while not state.finished:
            TOPIC.step(state, p)
            f = TOPIC.observe(state, p)
            trace.append(f.scalars["log_likelihood"])
            notes += f.notes
        assert not decreases(trace), f"seed {seed}: {decreases(trace)[:3]}"
        if f.scalars["singular_covariances"]:
            stopped += 1
            assert not f.scalars["converged"]
            assert any("singular" in n and "start stops" in n for n in notes)
    assert stopped >= 1


def test_reseeding_is_bounded_once_per_component_and_start():
    """reg_covar=0 with re-seeding: a component re-seeded and collapsing again is left alone,
    so re-seeding never loops; the start ends after a few iterations."""
    x = _standardised("wine")
    for seed in (2, 3, 6):
        p = TOPIC.resolve({"K": 6, "mode": "em", "reg_covar": 0.0, "tol": 1e-6, "max_iter": 500})
        state = TOPIC.state_from_points(x, p, CPU, seed=seed)
        notes = []
        while not state.finished:
            TOPIC.step(state, p)
            notes += TOPIC.observe(state, p).notes
        assert 1 <= state.reseeded <= 6
        assert state.n_iter < 50
        assert any("collapsed again" in n for n in notes) or any("start stops" in n for n in notes)


def test_n_init_fits_starts_one_after_another_and_keeps_the_best():
    p = em_params(dataset="ring", K=5, n_points=600, init="random", n_init=3, tol=1e-4)
    frames = list(run(TOPIC, 400, p, seed=4))
    index = [f.scalars["init_index"] for f in frames]
    finals = {}
    for f, g in zip(frames, frames[1:]):
        if g.scalars["init_index"] != f.scalars["init_index"] and not g.scalars["fit_done"]:
            finals[f.scalars["init_index"]] = f.scalars["log_likelihood"]
    done = next(f for f in frames if f.scalars["fit_done"])
    before = frames[frames.index(done) - 1]
    finals.setdefault(before.scalars["init_index"], before.scalars["log_likelihood"])
    assert sorted(finals) == [0, 1, 2] and index[0] == 0
    assert len(set(round(v, 9) for v in finals.values())) == 3        # three different starts
    best = max(finals, key=finals.get)
    assert done.scalars["log_likelihood"] == finals[best]
    assert done.scalars["init_index"] == best and frames[-1].scalars["init_index"] == best
    assert frames[-1].scalars["log_likelihood"] == finals[best]       # EM rests on the best
    assert any("the best is start" in n for f in frames for n in f.notes)
    # each start is an independent EM run from its own initial parameters: start 0 alone
    alone = list(run(TOPIC, 400, dict(p, n_init=1), seed=4))
    assert next(f for f in alone if f.scalars["fit_done"]).scalars["log_likelihood"] == finals[0]


def test_init_file_starts_from_the_given_parameters_and_bad_shapes_are_refused(tmp_path):
    pts = generate("blobs", 500, 0)
    weights = np.array([0.2, 0.3, 0.5])
    means = np.array([[-4.0, -2.0], [3.0, -3.0], [0.0, 4.0]])
    covs = np.array([np.eye(2) * s for s in (1.0, 0.5, 2.0)])
    np.savez(tmp_path / "start.npz", weights=weights, means=means, covariances=covs)
    np.savez(tmp_path / "prec.npz", weights=weights, means=means, precisions=np.linalg.inv(covs))
    for name in ("start.npz", "prec.npz"):
        p = TOPIC.resolve({"dataset": "blobs", "n_points": 500, "K": 3, "mode": "em",
                           "init_file": str(tmp_path / name)})
        state = TOPIC.init(p, CPU, seed=0)
        w0, m0, c0, _ = (t.numpy() for t in state.init_params)
        np.testing.assert_allclose(w0, weights, rtol=1e-14)
        np.testing.assert_allclose(m0 + state.center, means, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(c0, covs, rtol=1e-12, atol=1e-14)
    # parity from the file's start
    p = dict(p, reseed=False, tol=0.0)
    state = TOPIC.state_from_points(pts, p, CPU, seed=0)
    for _ in range(5):
        TOPIC.em_step(state, p)
    gm = _sklearn_fit(pts, 3, "full", dict(weights_init=weights, means_init=means,
                                           precisions_init=np.linalg.inv(covs)), max_iter=5)
    assert float(state.log_likelihood) == pytest.approx(gm.lower_bound_, rel=1e-10)

    def refused(match, **kw):
        with pytest.raises(ParamError, match=match) as info:
            TOPIC.resolve({"dataset": "blobs", "K": 3, **kw})
        assert "\n" not in str(info.value)

    np.savez(tmp_path / "k4.npz", weights=np.full(4, 0.25), means=np.zeros((4, 2)), covariances=np.stack([np.eye(2)] * 4))
    refused(r"weights .* shape \(4,\), expected \(3,\)", init_file=str(tmp_path / "k4.npz"))
    np.savez(tmp_path / "d3.npz", weights=weights, means=np.zeros((3, 3)), covariances=covs)
    refused(r"means .* shape \(3, 3\), expected \(3, 2\)", init_file=str(tmp_path / "d3.npz"))
    refused(r"covariances .* expected \(2, 2\)", init_file=str(tmp_path / "start.npz"), covariance="tied")
    np.savez(tmp_path / "nomeans.npz", weights=weights, covariances=covs)
    refused("lacks means", init_file=str(tmp_path / "nomeans.npz"))
    np.savez(tmp_path / "bad.npz", weights=np.array([0.5, 0.6, 0.1]), means=means, covariances=covs)
    refused("sum to 1", init_file=str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "neg.npz", weights=weights, means=means, covariances=-covs)
    refused("positive definite", init_file=str(tmp_path / "neg.npz"))
    refused("n_init must be 1", init_file=str(tmp_path / "start.npz"), n_init=2)
    (tmp_path / "junk.npz").write_text("not a zip")
    refused("not a readable .npz", init_file=str(tmp_path / "junk.npz"))


def test_lloyd_kmeans_gives_sklearn_kmeans_partition_from_the_same_centres(monkeypatch):
    from sklearn.cluster import KMeans

    for name, k in (("iris", 3), ("wine", 4)):
        x = _standardised(name)
        xt = torch.as_tensor(x)
        centres = xt[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[:k]]
        monkeypatch.setattr(gmm, "kmeans_plusplus", lambda x, k, gen: centres)
        ours = gmm.kmeans(xt, k, torch.Generator()).numpy()
        theirs = KMeans(k, init=centres.numpy(), n_init=1).fit(x).labels_
        np.testing.assert_array_equal(ours, theirs)


def _potential(x, centres):
    return float(((x[:, None, :] - centres[None]) ** 2).sum(-1).min(1).sum())


def test_greedy_kmeans_plusplus_matches_sklearn_in_distribution():
    """The potential sum_i min_c |x_i - c|^2 of the seeded centres, over 300 seeds, has the same
    law as scikit-learn's kmeans_plusplus (two-sample KS), and a law the plain (one-candidate)
    k-means++ does not have: greedy seeding picks better centres."""
    from scipy.stats import ks_2samp
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.default_rng(0)
    sizes = [120, 80, 60, 40, 30, 30, 20, 20]
    x = np.concatenate([rng.normal(rng.uniform(-10, 10, 2), 0.8, (n, 2)) for n in sizes])
    xt = torch.as_tensor(x)
    k = len(sizes)
    ours = [_potential(x, gmm.kmeans_plusplus(xt, k, torch.Generator().manual_seed(s)).numpy()) for s in range(300)]
    theirs = [_potential(x, kmeans_plusplus(x, k, random_state=s)[0]) for s in range(300)]
    plain = []
    for s in range(300):
        g = np.random.default_rng(1000 + s)
        c = [x[g.integers(len(x))]]
        for _ in range(k - 1):
            d2 = ((x[:, None, :] - np.array(c)[None]) ** 2).sum(-1).min(1)
            c.append(x[g.choice(len(x), p=d2 / d2.sum())])
        plain.append(_potential(x, np.array(c)))
    assert ks_2samp(ours, theirs).pvalue > 1e-3
    assert ks_2samp(plain, theirs).pvalue < 1e-3
    assert np.median(ours) < np.median(plain)


def test_init_names_follow_sklearn_and_kmeanspp_is_an_alias():
    assert TOPIC.default_params()["init"] == "kmeans"
    assert TOPIC.resolve({"init": "kmeans++"})["init"] == "k-means++"
    for init in ("kmeans", "k-means++", "random", "random_from_data"):
        frames = list(run(TOPIC, 3, em_params(dataset="blobs", K=3, n_points=300, init=init), seed=1))
        assert math.isfinite(frames[-1].scalars["log_likelihood"])
