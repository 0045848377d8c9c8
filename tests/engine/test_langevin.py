"""Langevin topic: exact targets, ULA's closed-form bias, MALA's exactness, slow mode mixing,
the Triton step against its twin (interpreter), the learned score, non-finite chains."""

import math

import numpy as np
import pytest
import torch

from mletui.engine.exact.targets import NAMES, gaussian, make_target
from mletui.engine.kernels import langevin as kern
from mletui.engine.params import ParamError
from mletui.engine.runner import run
from mletui.engine.diagnostics import ks_statistic, multichain_ess
from mletui.engine.models.score import dsm_loss
from mletui.engine.topics.langevin import TOPIC

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _chains(target, n, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = (target.sample(n, g) * scale).T.contiguous()
    logp, grad = torch.empty(n), torch.empty_like(x)
    packed = kern.pack_target(target)
    kern.refresh(x, logp, grad, packed)
    return x, logp, grad, packed


@pytest.mark.parametrize("name", NAMES)
def test_target_score_is_grad_of_log_density_and_samples_have_exact_moments(name):
    t = make_target(name)
    g = torch.Generator().manual_seed(3)
    x = t.sample(200_000, g, dtype=torch.float64)
    pts = x[:50].clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(t.log_density(pts).sum(), pts)
    assert torch.allclose(auto, t.score(x[:50]), atol=1e-10)
    n = x.shape[0]
    cov = t.covariance()
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0).numpy() - t.mean()) < 5 * se_mean)
    emp = np.cov(x.numpy().T).reshape(t.dim, t.dim)
    # loose (kurtotic targets): 5 standard errors of a Gaussian's covariance, times 3
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
    assert np.all(np.abs(emp - cov) < 15 * se_cov)
    # the twin's packed formulas agree with the reference formulas
    packed = kern.pack_target(t)
    lp, sc = kern.log_density_and_score_torch(packed, x[:1000].T.to(torch.float32).contiguous())
    ref_lp, ref_sc = t.log_density_and_score(x[:1000])
    assert torch.allclose(lp.double(), ref_lp, atol=1e-4, rtol=1e-5)
    assert torch.allclose(sc.T.double(), ref_sc, atol=1e-3, rtol=1e-4)


def test_ks_statistic_equals_scipy_kstest():
    stats = pytest.importorskip("scipy.stats")
    t = make_target("bimodal")
    x = t.sample(3000, torch.Generator().manual_seed(0), dtype=torch.float64)[:, 0]
    cdf = lambda v: t.cdf(torch.as_tensor(v)).numpy()  # noqa: E731
    assert ks_statistic(x, t.cdf) == pytest.approx(stats.kstest(x.numpy(), cdf).statistic, abs=1e-12)


def test_multichain_ess_matches_ar1_integrated_autocorrelation_time():
    # AR(1) x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t: tau = (1 + phi) / (1 - phi) = 9 at phi = 0.8
    g = torch.Generator().manual_seed(0)
    phi, w, m = 0.8, 4000, 64
    e = torch.randn(w, m, generator=g, dtype=torch.float64)
    x = torch.empty(w, m, dtype=torch.float64)
    x[0] = e[0]
    for t in range(1, w):
        x[t] = phi * x[t - 1] + math.sqrt(1 - phi * phi) * e[t]
    assert multichain_ess(x) == pytest.approx(w / 9.0, rel=0.12)
    # chains that never leave their own mode: between-chain variance makes the ESS tiny
    stuck = x * 0.1 + torch.where(torch.arange(m) % 2 == 0, -3.0, 3.0).double()
    assert multichain_ess(stuck) < 0.02 * w / 9.0


@pytest.mark.parametrize("step", [0.2, 0.8])
def test_ula_stationary_variance_equals_closed_form(step):
    # ULA on N(0, s^2): x' = (1 - eps / 2s^2) x + sqrt(eps) z  =>  var = s^2 / (1 - eps / (4 s^2))
    s2 = 1.0
    t = gaussian([0.0], [[s2]])
    n = 200_000
    x, logp, grad, packed = _chains(t, n)
    g = torch.Generator().manual_seed(1)
    for _ in range(60):  # the variance relaxes by (1 - eps/2)^2 per step: converged long before
        kern.langevin_step_torch(x, logp, grad, step, packed, mala=False, generator=g)
    var = x[0].double().var().item()
    exact = s2 / (1.0 - step / (4.0 * s2))
    se = exact * math.sqrt(2.0 / n)
    assert abs(var - exact) < 5 * se
    assert var - s2 > 10 * se  # the bias is real, not noise
    # MALA with the same step keeps the exact variance
    x, logp, grad, packed = _chains(t, n)
    for _ in range(60):
        kern.langevin_step_torch(x, logp, grad, step, packed, mala=True, generator=g)
    assert abs(x[0].double().var().item() - s2) < 5 * s2 * math.sqrt(2.0 / n)


def test_ula_covariance_on_correlated_gaussian_equals_its_closed_form_limit():
    # 2-D: C = Sigma (I - (eps/4) Sigma^-1)^-1, reported as covariance_ula beside the chains'
    n, step = 100_000, 0.8
    frames = list(run(TOPIC, 120, {"target": "gaussian", "method": "ula", "step_size": step,
                                   "chains": n, "init": "exact"}, seed=3, every=120))
    f = frames[-1]
    cov, c_ula = np.array(f.arrays["covariance"]), np.array(f.arrays["covariance_ula"])
    lam = np.linalg.eigvalsh(make_target("gaussian").covariance())
    assert np.allclose(np.sort(np.linalg.eigvalsh(c_ula)), np.sort(lam / (1 - step / (4 * lam))))
    se = np.sqrt((np.outer(np.diag(c_ula), np.diag(c_ula)) + c_ula ** 2) / n)
    assert np.all(np.abs(cov - c_ula) < 5 * se)
    assert f.scalars["variance_ratio"] > 1.2


def test_mala_matches_correlated_gaussian_mean_and_covariance():
    n = 20_000
    frames = list(run(TOPIC, 400, {"target": "gaussian", "method": "mala", "step_size": 0.5,
                                   "chains": n, "init": "uniform"}, seed=2, every=400))
    f = frames[-1]
    mean, cov = np.array(f.arrays["mean"]), np.array(f.arrays["covariance"])
    t = make_target("gaussian")
    m_ex, c_ex = t.mean(), t.covariance()
    assert np.allclose(f.arrays["mean_exact"], m_ex) and np.allclose(f.arrays["covariance_exact"], c_ex)
    assert np.all(np.abs(mean - m_ex) < 5 * np.sqrt(np.diag(c_ex) / n))
    se_cov = np.sqrt((np.outer(np.diag(c_ex), np.diag(c_ex)) + c_ex ** 2) / n)
    assert np.all(np.abs(cov - c_ex) < 5 * se_cov)
    assert 0.3 < f.scalars["acceptance"] < 1.0
    assert f.scalars["divergence"] < 3 * f.scalars["divergence_floor"]


def test_mala_on_bimodal_reaches_the_exact_mode_weights_slowly():
    # all chains start in the left mode; the right mode's weight (exactly 1/2) is reached only
    # after thousands of steps: the barrier crossing is rare
    n = 10_000
    p = TOPIC.resolve({"target": "bimodal", "method": "mala", "step_size": 1.0, "chains": n, "init": "mode"})
    state = TOPIC.init(p, CPU, 4)
    right = []
    for i in range(1, 3001):
        TOPIC.step(state, p)
        if i in (20, 3000):
            right.append((state.x[0] > 0).double().mean().item())
    assert right[0] < 0.05
    assert abs(right[1] - 0.5) < 5 * math.sqrt(0.25 / n)
    f = TOPIC.observe(state, p)
    assert f.scalars["divergence"] < 4 * f.scalars["divergence_floor"]


FAMILY_CASES = [("gaussian", 0.3), ("bimodal", 0.5), ("modes", 0.05), ("banana", 0.05), ("ring", 0.05)]


@pytest.mark.parametrize("name,step", FAMILY_CASES)
@pytest.mark.parametrize("mala", [False, True])
def test_triton_step_equals_twin_given_the_same_noise(name, step, mala):
    pytest.importorskip("triton")
    t = make_target(name)
    n = 2500  # 3 programs of 1024
    x, logp, grad, packed = _chains(t, n, seed=5, scale=1.3)
    a = [x.clone(), logp.clone(), grad.clone()]
    b = [x.clone(), logp.clone(), grad.clone()]
    acc_a, acc_b = torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    tr_a, tr_b = torch.zeros(3, 100), torch.zeros(3, 100)
    g = torch.Generator().manual_seed(6)
    for row in range(3):
        z, u = torch.randn(t.dim, n, generator=g), torch.rand(n, generator=g)
        kern.langevin_step_triton(*a, step, packed, mala, noise=z, uniforms=u, accept_count=acc_a,
                                  trace=tr_a, trace_row=row)
        kern.langevin_step_torch(*b, step, packed, mala, noise=z, uniforms=u, accept_count=acc_b,
                                 trace=tr_b, trace_row=row)
    for u, v in zip(a, b):
        assert torch.allclose(u, v, rtol=1e-4, atol=1e-4)
    assert torch.allclose(tr_a, tr_b, rtol=1e-4, atol=1e-4)
    assert acc_a.item() == acc_b.item()
    if mala:
        assert 0 < acc_a.item() < 3 * n


def test_triton_in_kernel_philox_noise_is_standard_normal_and_keyed_by_counter():
    pytest.importorskip("triton")
    t = gaussian([0.0], [[1.0]])
    n, step = 4096, 0.25
    packed = kern.pack_target(t)

    def proposal_noise(counter):
        x, logp, grad = torch.zeros(1, n), torch.zeros(n), torch.zeros(1, n)  # at the mode: no drift
        kern.langevin_step_triton(x, logp, grad, step, packed, mala=False, seed=11, counter=counter)
        return x[0] / math.sqrt(step)

    z1, z1b, z2 = proposal_noise(1), proposal_noise(1), proposal_noise(2)
    assert torch.equal(z1, z1b)
    assert abs(z1.mean().item()) < 5 / math.sqrt(n)
    assert abs(z1.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert abs(torch.corrcoef(torch.stack((z1, z2)))[0, 1].item()) < 5 / math.sqrt(n)


def test_learned_score_dsm_loss_falls_toward_the_bayes_optimal_loss():
    # on a Gaussian target the optimal noised score is -(Sigma + sigma^2 I)^-1 (x~ - mu): the DSM
    # loss's minimum is known, and training must close most of the gap to it
    p = TOPIC.resolve({"target": "gaussian", "score": "learned", "method": "ula", "chains": 500,
                       "train_iters": 4, "lr": 3e-3, "steps_per_level": 5})
    state = TOPIC.init(p, CPU, 7)
    t = state.target
    g = torch.Generator().manual_seed(8)
    m = 4096
    x = t.sample(m, g)
    sigma = state.sigmas[torch.randint(0, state.sigmas.numel(), (m,), generator=g)][:, None]
    z = torch.randn(m, 2, generator=g)
    mu = torch.tensor(t.mean(), dtype=torch.float32)
    cov = torch.tensor(t.covariance(), dtype=torch.float32)
    xt = x + sigma * z
    prec = torch.linalg.inv(cov[None] + sigma[:, :, None] ** 2 * torch.eye(2)[None])
    best = -torch.einsum("nij,nj->ni", prec, xt - mu)
    loss_opt = ((sigma * best + z) ** 2).sum(1).mean().item()
    with torch.no_grad():
        before = dsm_loss(state.net, x, sigma, z).item()
    for _ in range(250):
        TOPIC.step(state, p)
    with torch.no_grad():
        after = dsm_loss(state.net, x, sigma, z).item()
    assert before - loss_opt > 0.3
    assert after - loss_opt < 0.35 * (before - loss_opt)
    f = TOPIC.observe(state, p)
    assert "loss" in f.scalars and math.isfinite(f.scalars["loss"])
    assert f.scalars["passes"] >= 4 and f.scalars["divergence_final"] is not None


def _all_finite(obj):
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_all_finite(v) for v in obj)
    return True


def test_nonfinite_chains_are_counted_in_and_reported_never_reseeded():
    p = TOPIC.resolve({"target": "gaussian", "method": "mala", "chains": 3000, "init": "exact"})
    state = TOPIC.init(p, CPU, 9)
    for _ in range(5):
        TOPIC.step(state, p)
    state.x[:, :10] = float("nan")
    state.x[0, 10:15] = float("inf")
    f = TOPIC.observe(state, p)
    assert f.scalars["diverged_chains"] == 15
    assert any("15 of 3000 chains diverged" in note for note in f.notes)
    assert int((~torch.isfinite(state.x).all(0)).sum()) == 15          # left where they went
    assert f.scalars["divergence"] == math.inf                         # sliced W1: infinitely far
    assert f.scalars["variance_ratio"] == math.inf
    hist = f.views["marginal_x"]
    mass = np.sum(np.asarray(hist["counts"]) * np.diff(hist["edges"]))
    assert mass <= 1.0 - 15 / 3000 + 1e-9                               # the histogram lost their mass
    TOPIC.step(state, p)
    again = TOPIC.observe(state, p)
    assert again.scalars["diverged_chains"] == 15
    assert not any("by step" in n for n in again.notes)                  # the event once...
    assert any("divergence and variance_ratio infinite: 15 of 3000" in n for n in again.notes)  # ...its figures always
    # 1-D: the KS statistic counts the diverged chains at infinity
    p1 = TOPIC.resolve({"target": "bimodal", "method": "mala", "chains": 2000, "init": "exact"})
    state = TOPIC.init(p1, CPU, 2)
    clean = TOPIC.observe(state, p1).scalars["divergence"]
    state.x[0, :400] = float("nan")
    f = TOPIC.observe(state, p1)
    assert f.scalars["diverged_chains"] == 400
    assert f.scalars["divergence"] >= 400 / 2000 - clean


@pytest.mark.parametrize("target", ["gaussian", "bimodal"])
def test_a_diverging_ula_run_reports_a_large_divergence_at_every_observation_rate(target):
    """ULA beyond its stability limit (gaussian: 4 x the smallest eigenvalue, ~1.09): the chains
    blow up, and --every 1 and --every 10 report the same large divergence, the same count of
    diverged chains and a note that says so."""
    params = {"target": target, "method": "ula", "step_size": 3.0 if target == "gaussian" else 6.0,
              "chains": 2000}
    runs = {every: list(run(TOPIC, 200, params, seed=1, every=every)) for every in (1, 10)}
    for every, frames in runs.items():
        last = frames[-1].scalars
        assert last["diverged_chains"] > 1000, every
        assert last["divergence"] > 0.5 if target == "bimodal" else last["divergence"] == math.inf
        assert any("chains diverged" in note for fr in frames for note in fr.notes), every
        counts = [fr.scalars["diverged_chains"] for fr in frames]
        assert counts == sorted(counts)
    by_step = {fr.step: fr.scalars for fr in runs[1]}
    for fr in runs[10]:
        for name in ("divergence", "diverged_chains", "variance_ratio"):
            assert fr.scalars[name] == by_step[fr.step][name], (fr.step, name)


def test_mala_treats_a_nan_log_acceptance_as_a_rejection():
    # a huge step on the banana: proposals overflow to inf/NaN, MALA must reject them all
    t = make_target("banana")
    x, logp, grad, packed = _chains(t, 2000, seed=1)
    x0 = x.clone()
    acc = torch.zeros(1, dtype=torch.int64)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        kern.langevin_step_torch(x, logp, grad, 1e30, packed, mala=True, accept_count=acc, generator=g)
    assert acc.item() == 0 and torch.equal(x, x0) and torch.isfinite(logp).all()


@pytest.mark.parametrize("changed", [("method",), ("score",), ()])
def test_mala_with_learned_score_is_refused_with_one_line(changed):
    p = TOPIC.default_params()
    p.update(method="mala", score="learned")
    with pytest.raises(ParamError) as err:
        TOPIC.check(p, changed)
    msg = str(err.value)
    assert "\n" not in msg and "learned" in msg and "mala" in msg.lower()
    assert msg.startswith("score=" if changed == ("score",) else "method=")


def test_twin_result_does_not_depend_on_its_threading():
    # the twin draws its noise up front and spreads independent chunks over threads: a seeded
    # step must give bit-identical chains with 1 or 2 threads
    t = make_target("modes")
    outs = []
    for threads in (1, 2):
        x, logp, grad, packed = _chains(t, 50_000, seed=2)
        acc = torch.zeros(1, dtype=torch.int64)
        g = torch.Generator().manual_seed(3)
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for _ in range(3):
                kern.langevin_step_torch(x, logp, grad, 0.1, packed, mala=True, accept_count=acc, generator=g)
        finally:
            torch.set_num_threads(old)
        assert torch.get_num_threads() == old
        outs.append((x, logp, grad, acc))
    for a, b in zip(*outs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("target", ["gaussian", "bimodal"])
def test_the_two_density_heatmaps_share_one_colour_scale_covering_both(target):
    """The chains' density and the exact density are drawn on one scale (0 to the larger
    maximum), so equal colours mean equal densities (2-D target and 1-D trace alike)."""
    frames = list(run(TOPIC, 20, {"target": target, "chains": 500, **TOPIC.quick}, seed=3, every=10))
    views = frames[-1].views
    chains, exact = views["density_chains"], views["density_exact"]
    assert chains["scale"] == exact["scale"]
    lo, hi = chains["scale"]
    top = max(float(np.nanmax(np.asarray(chains["z"], dtype=float))),
              float(np.nanmax(np.asarray(exact["z"], dtype=float))))
    assert lo == 0.0 and hi == top
