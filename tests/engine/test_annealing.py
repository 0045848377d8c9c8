"""Simulated annealing with Jarzynski / AIS work (topic `annealing`).

The exact references are independent of the engine: ln Z of the 4 x 4 torus by brute-force
enumeration of its 65,536 states (ferromagnet and the seeded +-J spin glass alike).
"""

import math

import numpy as np
import pytest
import torch

from mletui.engine.kernels import checkerboard
from mletui.engine.runner import run
from mletui.engine.models.ising import edwards_anderson_couplings, model_couplings
from mletui.engine import annealing
from mletui.engine.annealing import beta_schedule
from mletui.engine.topics.annealing import TOPIC
from mletui.engine.params import ParamError


def enumerated_energies(L: int, couplings: torch.Tensor | None) -> np.ndarray:
    """Energies of all 2^(L*L) states of the L x L torus (J_ij from `couplings`), float64."""
    n = L * L
    codes = np.arange(2 ** n, dtype=np.int64)
    bits = (codes[:, None] >> np.arange(n)) & 1
    s = (2 * bits - 1).reshape(-1, L, L).astype(np.float64)
    jr = np.ones((L, L)) if couplings is None else couplings[0].numpy().astype(np.float64)
    jd = np.ones((L, L)) if couplings is None else couplings[1].numpy().astype(np.float64)
    return -(s * (jr * np.roll(s, -1, axis=2) + jd * np.roll(s, -1, axis=1))).sum(axis=(1, 2))


def enumerated_log_z(energies: np.ndarray, beta: float) -> float:
    x = -beta * energies
    m = x.max()
    return float(m + math.log(np.exp(x - m).sum()))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ferro_energies():
    return enumerated_energies(4, None)


def last_frame(params, seed, steps=10**6):
    frames = list(run(TOPIC, steps=steps, params=params, seed=seed, device="cpu", every=steps))
    return frames[-1]


def test_enumeration_reference_is_right(ferro_energies):
    # the reference itself: ground state -32, ln Z(0) = 16 ln 2, and the energy histogram
    # of the 4x4 torus has the known degeneracies g(-32) = 2, g(-24) = 32
    assert ferro_energies.min() == -32
    assert enumerated_log_z(ferro_energies, 0.0) == pytest.approx(16 * math.log(2), abs=1e-12)
    values, counts = np.unique(ferro_energies, return_counts=True)
    assert dict(zip(values[:2], counts[:2])) == {-32.0: 2, -24.0: 32}
    # and the checkerboard measure agrees with it on random states
    s = (torch.randint(0, 2, (64, 4, 4), generator=torch.Generator().manual_seed(0)) * 2 - 1).to(torch.int8)
    e, _ = checkerboard.measure(s)
    codes = (((s.reshape(64, -1) + 1) // 2).long() << torch.arange(16)).sum(1)
    assert np.array_equal(e.numpy(), ferro_energies[codes.numpy()])


@pytest.mark.parametrize("schedule", ["linear", "geometric"])
def test_ais_log_z_at_L4_agrees_with_enumeration_within_its_error(ferro_energies, schedule):
    # A fast schedule (40 sweeps from 0 to 1): using the energy AFTER the moves at the new
    # beta would bias ln Z upward by ~0.5 here, about 20 standard errors.
    p = {"L": 4, "replicas": 4000, "anneal_sweeps": 40, "schedule": schedule, "beta_end": 1.0}
    f = last_frame(p, seed=3)
    exact = enumerated_log_z(ferro_energies, 1.0)
    err = f.scalars["log_z_stderr"]
    assert 0 < err < 0.05  # a high-variance estimator cannot pass by a wide error bar
    assert abs(f.scalars["log_z"] - exact) < 4 * err, (f.scalars["log_z"], exact, err)
    assert f.done and f.scalars["beta"] == 1.0
    # the frame's exact references (Kaufman) are the enumerated values
    assert f.scalars["log_z_exact"] == pytest.approx(exact, abs=1e-9)
    assert f.scalars["minus_delta_log_z_exact"] == pytest.approx(16 * math.log(2) - exact, abs=1e-9)


def test_ais_log_z_of_the_spin_glass_agrees_with_enumeration():
    p = {"L": 4, "replicas": 4000, "anneal_sweeps": 40, "model": "spinglass", "disorder_seed": 5,
         "beta_end": 1.5}
    f = last_frame(p, seed=4)
    energies = enumerated_energies(4, edwards_anderson_couplings(4, 5))
    exact = enumerated_log_z(energies, 1.5)
    err = f.scalars["log_z_stderr"]
    assert 0 < err < 0.05
    assert abs(f.scalars["log_z"] - exact) < 4 * err, (f.scalars["log_z"], exact, err)
    # no exact reference for the spin glass in the frames, and the best energy is a real state's
    assert f.scalars["log_z_exact"] is None
    assert f.scalars["best_energy_per_spin"] * 16 >= energies.min() - 1e-6


def test_mean_work_obeys_the_second_law_and_the_gap_shrinks_with_slower_schedules(ferro_energies):
    minus_delta = -(enumerated_log_z(ferro_energies, 1.0) - enumerated_log_z(ferro_energies, 0.0))
    gaps = []
    for sweeps in (5, 20, 80):
        f = last_frame({"L": 4, "replicas": 2000, "anneal_sweeps": sweeps}, seed=5)
        gaps.append(f.scalars["mean_work"] - minus_delta)
        assert f.scalars["dissipated_work"] == pytest.approx(gaps[-1], abs=1e-9)
    # <W> >= -ln(Z_T/Z_0) (Jensen), strictly for a finite schedule
    assert all(g > 0 for g in gaps), gaps
    assert gaps[0] > gaps[1] > gaps[2], gaps


def test_a_schedule_not_starting_at_zero_gives_no_log_z_and_says_why():
    frames = list(run(TOPIC, steps=20, params={"L": 4, "replicas": 64, "anneal_sweeps": 20,
                                                "beta_start": 0.2}, seed=1, device="cpu"))
    assert all(f.scalars["log_z"] is None for f in frames)
    assert all(f.scalars["mean_work"] is not None for f in frames)  # the work still accrues
    notes = [n for f in frames for n in f.notes]
    assert any("beta_start" in n and "beta = 0" in n for n in notes), notes


def test_schedules_end_points_and_shapes():
    lin = beta_schedule("linear", 0.0, 1.0, 10)
    assert lin[0] == 0.0 and lin[-1] == 1.0 and np.allclose(np.diff(lin), 0.1)
    geo = beta_schedule("geometric", 0.1, 1.6, 4)
    assert np.allclose(geo, [0.1, 0.2, 0.4, 0.8, 1.6])
    # from 0: the first step to beta_end / T, then a constant ratio up to beta_end
    g0 = beta_schedule("geometric", 0.0, 1.0, 100)
    assert g0[0] == 0.0 and g0[1] == pytest.approx(0.01) and g0[-1] == 1.0
    ratios = g0[2:] / g0[1:-1]
    assert np.allclose(ratios, ratios[0]) and ratios[0] > 1


def test_beta_end_must_exceed_beta_start():
    with pytest.raises(ParamError, match="beta_end"):
        TOPIC.resolve({"beta_start": 0.5, "beta_end": 0.5})


def test_spin_glass_couplings_are_seeded_plus_minus_one():
    a, b = edwards_anderson_couplings(8, 1), edwards_anderson_couplings(8, 1)
    c = edwards_anderson_couplings(8, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    assert model_couplings("ferromagnet", 8, 1) is None


def test_best_energy_is_the_minimum_over_time_and_replicas():
    # annealing a 4x4 ferromagnet slowly to beta = 2 finds the ground state (-2 per spin);
    # the best energy never rises and never lies below the ground state
    frames = list(run(TOPIC, steps=400, params={"L": 4, "replicas": 16, "anneal_sweeps": 400,
                                                 "beta_end": 2.0}, seed=2, device="cpu", every=10))
    best = [f.scalars["best_energy_per_spin"] for f in frames]
    assert all(b2 <= b1 for b1, b2 in zip(best, best[1:]))
    assert best[-1] == -2.0
    hist = frames[-1].views["energy_histogram"]
    assert sum(hist["counts"]) == 16 and len(hist["edges"]) == len(hist["counts"]) + 1
    assert frames[-1].arrays["final_energy_counts"] == hist["counts"]


def test_a_non_finite_work_is_reported_not_plotted():
    p = TOPIC.resolve({"L": 4, "replicas": 32, "anneal_sweeps": 10})
    state = TOPIC.init(p, torch.device("cpu"), seed=1)
    TOPIC.step(state, p)
    state.work[3] = float("nan")
    f = TOPIC.observe(state, p)
    assert f.scalars["nonfinite_work"] == 1
    assert f.scalars["log_z"] is None and f.scalars["mean_work"] is None
    assert any("non-finite work" in n for n in f.notes)


def test_work_of_each_step_uses_the_energy_before_the_moves_at_the_new_beta():
    # W_t - W_{t-1} = (beta_t - beta_{t-1}) E(s_{t-1}): the state the step found, not the one
    # the sweep at beta_t left behind (which would bias ln Z upward)
    p = TOPIC.resolve({"L": 8, "replicas": 64, "anneal_sweeps": 5, "beta_end": 2.0})
    state = TOPIC.init(p, torch.device("cpu"), seed=9)
    for t in range(1, 6):
        before, _ = checkerboard.measure(state.replicas.spins.clone())
        w0 = state.work.clone()
        TOPIC.step(state, p)
        after, _ = checkerboard.measure(state.replicas.spins)
        dbeta = state.betas[t] - state.betas[t - 1]
        assert torch.allclose(state.work - w0, dbeta * before.double(), atol=1e-9)
        assert not torch.equal(before, after)  # the sweep moved something, so the test can tell


# -- the mechanisms of engine.annealing, on log-weights that are not -dbeta E ----------------
def test_log_mean_exp_and_ess_of_log_weights_match_float64_sums_without_overflow():
    g = torch.Generator().manual_seed(0)
    log_w = torch.randn(1000, generator=g, dtype=torch.float64) * 3.0 + 800.0  # exp overflows
    got = float(annealing.log_mean_exp(log_w))
    want = float(np.logaddexp.reduce(log_w.numpy())) - math.log(1000)
    assert math.isfinite(got) and got == pytest.approx(want, rel=1e-14)
    w = np.exp(log_w.numpy() - log_w.numpy().max())
    assert float(annealing.ess_fraction(log_w)) == pytest.approx(w.sum() ** 2 / (1000 * (w * w).sum()),
                                                                 rel=1e-12)
    assert float(annealing.ess_fraction(torch.zeros(7, dtype=torch.float64))) == 1.0
    one = torch.full((5,), -1e4, dtype=torch.float64)
    one[2] = 0.0
    assert float(annealing.ess_fraction(one)) == pytest.approx(1 / 5)


def _nonlinear_target():
    """p0 uniform on {0..15}; p1*(x) = exp(sqrt(x) + sin x), not linear in any beta:
    exact ln(Z1 / Z0) by summation."""
    xs = np.arange(16, dtype=np.float64)
    log_ratio = np.sqrt(xs) + np.sin(xs)
    return xs, log_ratio, float(np.logaddexp.reduce(log_ratio)) - math.log(16)


def test_ais_estimate_of_a_nonlinear_log_ratio_agrees_with_the_exact_ratio_within_its_error():
    _, log_ratio, exact = _nonlinear_target()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 16, (20000,), generator=g)                 # exact samples of p0
    est = annealing.ais_estimate(torch.as_tensor(log_ratio)[x])
    assert 0 < est.stderr < 0.02
    assert abs(est.log_mean_weight - exact) < 4 * est.stderr, (est, exact)
    assert 0.2 < est.ess_fraction < 1.0
    assert math.isnan(annealing.ais_estimate(torch.zeros(1, dtype=torch.float64)).stderr)


@pytest.mark.parametrize("method", ["nearest", "multinomial"])
def test_reweight_and_copy_counts_on_nonlinear_log_ratios_give_log_q_and_the_target_law(method):
    xs, log_ratio, exact = _nonlinear_target()
    g = torch.Generator().manual_seed(2)
    R0 = 4000
    x = torch.arange(16).repeat_interleave(R0 // 16)   # a population that is exactly p0
    lr = torch.as_tensor(log_ratio)[x]
    shift = lr.max()
    rw = annealing.reweight(lr - shift, shift)
    # ln Q is the log mean of exp(l): here exactly ln(Z1 / Z0)
    assert float(rw.log_q) == pytest.approx(exact, rel=1e-13)
    assert float(rw.log_q) == pytest.approx(float(annealing.log_mean_exp(lr)), rel=1e-13)
    counts = torch.zeros(16, dtype=torch.float64)
    reps = 50
    for _ in range(reps):
        c = annealing.copy_counts(rw, R0, method, g, key=(0, 0))
        if method == "multinomial":
            assert int(c.sum()) == R0
        counts.index_add_(0, x, c.double())
    p1 = np.exp(log_ratio - log_ratio.max())
    p1 /= p1.sum()
    # the resampled population follows p1: over 50 resamplings of 4000 the frequency of each
    # value has a standard deviation below 0.001 (p1 is 0.0017 to 0.25, p0 is 1/16)
    assert np.abs(counts.numpy() / counts.sum().item() - p1).max() < 0.005
    with pytest.raises(ParamError, match="resampling"):
        annealing.copy_counts(rw, R0, "systematic", g, key=(0, 0))


def test_bench_row_compares_annealing_steps_with_the_plain_sweep():
    from mletui.engine.bench import benchmarks

    rows = list(benchmarks()["annealing"](torch.device("cpu"), quick=True))
    assert [r["case"] for r in rows] == ["L=16 R=64 metropolis 1 thread"]
    assert set(rows[0]) == {"case", "value", "unit", "baseline", "baseline_value", "ratio",
                            "replica_sweeps_per_s", "baseline_replica_sweeps_per_s"}
    assert rows[0]["value"] > 0 and rows[0]["baseline_value"] > 0
