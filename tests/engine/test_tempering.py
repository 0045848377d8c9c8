"""Simulated tempering with weights learned by the trapezoid rule (topic `tempering`).

Exact references by brute-force enumeration of the 4 x 4 torus (65,536 states),
independent of Kaufman and of the engine's kernels.
"""

import math

import numpy as np
import pytest
import torch

from mletui.engine.exact.ising import enumerate_energy, enumerate_log_z
from mletui.engine.params import ParamError
from mletui.engine.runner import run
from mletui.engine.annealing import beta_ladder, fill_unmeasured, trapezoid_log_z_differences
from mletui.engine.topics.tempering import TOPIC

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def exact_g(betas) -> np.ndarray:
    """-ln Z(beta_k) + ln Z(beta_0) of the 4x4 ferromagnet, by enumeration."""
    log_z = np.array([enumerate_log_z(4, float(b)) for b in betas])
    return -(log_z - log_z[0])


def advance(state, p, steps):
    for _ in range(steps):
        TOPIC.step(state, p)


LADDER = {"L": 4, "replicas": 256, "rungs": 10, "beta_min": 0.1, "beta_max": 0.8, "burn_in": 100}


@pytest.fixture(scope="module")
def learned():
    """A 4x4 run: learn the weights for 1200 sweeps, then freeze them and count rungs
    for 1200 more."""
    torch.set_num_threads(1)
    p = TOPIC.resolve(LADDER)
    state = TOPIC.init(p, CPU, seed=7)
    advance(state, p, 1200)
    learned_frame = TOPIC.observe(state, p)
    p = dict(p, learn_weights=False)
    TOPIC.on_edit(state, p, ["learn_weights"])
    g_frozen = state.g.clone()
    advance(state, p, 1200)
    return learned_frame, TOPIC.observe(state, p), g_frozen, state


def test_learned_g_differences_agree_with_exact_log_z_differences(learned):
    frame, _, _, _ = learned
    betas = frame.arrays["betas"]
    g = np.array(frame.arrays["g"])
    exact = exact_g(betas)
    # the trapezoid rule on the exact energies: the discretisation part of the error
    trap = trapezoid_log_z_differences(torch.tensor(betas, dtype=torch.float64),
                             torch.tensor([16 * enumerate_energy(4, b) for b in betas],
                                          dtype=torch.float64)).numpy()
    assert np.abs(trap - exact).max() < 0.03
    # learned vs exact: within 0.06 over a range of 15 in g (statistical + discretisation;
    # over seeds 0-3 the worst was 0.041), and vs the trapezoid of the exact energies (the
    # statistical part alone) within 0.04
    assert g[0] == 0.0
    assert np.abs(g - exact).max() < 0.06, np.round(g - exact, 3)
    assert np.abs(g - trap).max() < 0.04, np.round(g - trap, 3)
    # and the frame's own exact reference (Kaufman) is the enumerated one
    assert np.allclose(frame.arrays["g_exact"], exact, atol=1e-9)
    assert frame.scalars["g_max_error"] == pytest.approx(np.abs(g - frame.arrays["g_exact"]).max())


def test_rung_histogram_is_flat_once_the_weights_are_learned(learned):
    _, frame, g_frozen, state = learned
    hist = np.array(frame.arrays["rung_histogram"], dtype=float)
    assert hist.sum() == 1200 * 256  # restarted when learn_weights was switched off
    frac = hist / hist.sum()
    assert np.abs(frac * len(frac) - 1).max() < 0.15, np.round(frac * len(frac), 3)
    # frozen means frozen
    assert torch.equal(state.g, g_frozen)
    # chains travel the whole ladder
    assert frame.scalars["round_trips"] > 100
    acc = frame.arrays["rung_acceptance"]
    assert len(acc) == 9 and all(0.3 < a <= 1 for a in acc)


def test_with_zero_weights_rungs_are_visited_in_proportion_to_z():
    # g = 0 frozen: the marginal of the rung is P(k) = Z(beta_k) / sum_j Z(beta_j), a check of
    # the rung-move acceptance min(1, exp(-(beta_k' - beta_k) E + g_k' - g_k)) on its own
    p = TOPIC.resolve({"L": 4, "replicas": 256, "rungs": 5, "beta_min": 0.1, "beta_max": 0.3,
                       "burn_in": 50, "learn_weights": False})
    state = TOPIC.init(p, CPU, seed=3)
    advance(state, p, 1500)
    f = TOPIC.observe(state, p)
    assert f.arrays["g"] == [0.0] * 5
    hist = np.array(f.arrays["rung_histogram"], dtype=float)
    log_z = np.array([enumerate_log_z(4, b) for b in f.arrays["betas"]])
    expected = np.exp(log_z - log_z.max())
    expected /= expected.sum()
    assert expected.max() / expected.min() > 2  # the test has something to see
    assert np.abs(hist / hist.sum() - expected).max() < 0.02, (hist / hist.sum(), expected)


def test_trapezoid_rule_of_exact_energies_converges_to_log_z_differences():
    betas = beta_ladder("geometric", 0.05, 1.0, 201)
    energies = torch.tensor([16 * enumerate_energy(4, b) for b in betas], dtype=torch.float64)
    g = trapezoid_log_z_differences(torch.tensor(betas), energies).numpy()
    assert np.abs(g - exact_g(betas)).max() < 2e-3


def test_unmeasured_rungs_borrow_the_nearest_measured_mean():
    mean = torch.tensor([0.0, -1.0, 0.0, 0.0, -4.0, 0.0], dtype=torch.float64)
    measured = torch.tensor([False, True, False, False, True, False])
    assert fill_unmeasured(mean, measured).tolist() == [-1.0, -1.0, -1.0, -4.0, -4.0, -4.0]
    assert fill_unmeasured(mean, torch.zeros(6, dtype=torch.bool)).tolist() == [0.0] * 6


def test_ladders_and_cross_checks():
    assert np.allclose(beta_ladder("linear", 0.2, 0.6, 5), [0.2, 0.3, 0.4, 0.5, 0.6])
    assert np.allclose(beta_ladder("geometric", 0.1, 0.8, 4), [0.1, 0.2, 0.4, 0.8])
    with pytest.raises(ParamError, match="beta_max"):
        TOPIC.resolve({"beta_min": 0.5, "beta_max": 0.4})


def test_frames_carry_the_jsonl_schema_and_chain_zero_rung():
    frames = list(run(TOPIC, steps=30, params={"L": 4, "replicas": 8, "rungs": 4, "burn_in": 10},
                      seed=1, device="cpu", every=10))
    f = frames[-1]
    assert len(f.arrays["g"]) == len(f.arrays["betas"]) == len(f.arrays["rung_histogram"]) == 4
    assert sum(f.arrays["rung_histogram"]) == 20 * 8
    assert 0 <= f.scalars["chain0_rung"] < 4
    assert f.scalars["chain0_beta"] == f.arrays["betas"][f.scalars["chain0_rung"]]
    assert frames[0].scalars["chain0_rung"] == 0  # chain r starts on rung r mod K, no moves in burn-in
    assert f.views["g_plot"]["x"] == f.arrays["betas"]
    assert len(f.views["acceptance_bars"]["values"]) == 3


def test_spin_glass_runs_without_an_exact_reference():
    f = list(run(TOPIC, steps=40, params={"model": "spinglass", "L": 4, "replicas": 16, "rungs": 4,
                                          "burn_in": 10}, seed=1, device="cpu", every=40))[-1]
    assert f.arrays["g_exact"] is None and f.scalars["g_max_error"] is None
    assert all(math.isfinite(x) for x in f.arrays["g"])


def test_non_finite_weights_are_reported_and_their_rung_moves_rejected():
    p = TOPIC.resolve({"L": 4, "replicas": 64, "rungs": 4, "burn_in": 0})
    state = TOPIC.init(p, CPU, seed=2)
    TOPIC.step(state, p)
    state.energy_sum[2] = float("nan")  # a poisoned running mean: g_2 and g_3 become NaN
    for _ in range(20):
        before = state.rung.clone()
        TOPIC.step(state, p)
        # no chain crosses into or out of rungs 2..3 through a NaN acceptance ratio
        crossed = (before <= 1) != (state.rung <= 1)
        assert not crossed.any()
    f = TOPIC.observe(state, p)
    assert f.scalars["nonfinite_weights"] == 2 and f.arrays["g"][2] is None
    assert any("not finite" in n for n in f.notes)


def test_bench_row_compares_tempering_steps_with_the_plain_sweep():
    from mletui.engine.bench import benchmarks

    rows = list(benchmarks()["tempering"](CPU, quick=True))
    assert [r["case"] for r in rows] == ["L=16 R=64 K=16 metropolis 1 thread"]
    assert set(rows[0]) == {"case", "value", "unit", "baseline", "baseline_value", "ratio",
                            "replica_sweeps_per_s", "baseline_replica_sweeps_per_s"}
    assert rows[0]["value"] > 0 and rows[0]["baseline_value"] > 0
