"""The ising topic's bookkeeping: running means restart after a live edit and wait for the
burn-in, acceptance counts attempted spin updates, exact references only at h = 0, the
lattice view is downsampled on the device, corrupted spins are reported; and its pane in
the app (Pilot) streams frames, draws every view and says "no exact value" at h != 0."""

import time

import pytest
import torch

from mletui.engine.exact import ising as exact
from mletui.engine.params import ParamError
from mletui.engine.topics.ising import TOPIC


pytestmark = pytest.mark.usefixtures("one_thread")


def _init(**over):
    p = TOPIC.resolve(over)
    return p, TOPIC.init(p, torch.device("cpu"), seed=5)


def test_L_must_be_even_and_L_replicas_are_not_live():
    with pytest.raises(ParamError, match="L must be even"):
        TOPIC.param("L").parse("63")
    assert not TOPIC.param("L").live and not TOPIC.param("replicas").live
    assert all(TOPIC.param(n).live for n in ("beta", "h", "method", "burn_in"))


def test_running_means_start_after_burn_in_and_restart_after_a_live_edit():
    p, state = _init(L=8, replicas=4, burn_in=5, beta=0.3)
    for _ in range(5):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    assert f.scalars["samples"] == 0 and f.scalars["energy_mean"] is None   # still burning in
    for _ in range(10):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    assert f.scalars["samples"] == 10 and f.scalars["sweeps"] == 15
    assert f.scalars["energy_mean"] is not None and f.scalars["energy_rhat"] is not None
    assert sum(f.views["m_histogram"]["counts"]) == 4 * 10          # each replica, each sweep
    # a live edit: the means describe another distribution, so they restart, burn-in included
    p = dict(p, beta=0.6)
    TOPIC.on_edit(state, p, ["beta"])
    for _ in range(5):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    assert f.scalars["samples"] == 0 and f.scalars["energy_mean"] is None
    assert f.scalars["energy_rhat"] is None and sum(f.views["m_histogram"]["counts"]) == 0
    assert f.scalars["sweeps"] == 20                                    # sweeps keep counting
    TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    assert f.scalars["samples"] == 1
    # with one sample per replica the running mean is the replica average of that sample
    assert f.scalars["energy_mean"] == pytest.approx(f.scalars["energy_per_spin"])


def test_running_means_restart_through_the_runner_on_a_key_edit():
    from mletui.engine.runner import Runner

    runner = Runner(TOPIC, params={"L": 8, "replicas": 2, "burn_in": 0}, seed=1, device="cpu",
                    observe_hz=0)
    runner.start()
    try:
        t0 = time.monotonic()
        while (runner.latest is None or runner.latest.scalars["samples"] < 50) and time.monotonic() - t0 < 20:
            time.sleep(0.01)
        runner.pause()
        runner.set("beta", 0.5)
        runner.step_once()
        t0 = time.monotonic()
        while runner.latest.params is None or runner.latest.params.get("beta") != 0.5:
            assert time.monotonic() - t0 < 20
            time.sleep(0.01)
        assert runner.latest.scalars["samples"] == 1      # restarted, then one sweep
    finally:
        runner.stop()


def test_acceptance_is_flips_over_attempted_updates():
    # beta = 0: every Metropolis proposal is accepted, exactly
    p, state = _init(L=8, replicas=3, beta=0.0, method="metropolis")
    for _ in range(4):
        TOPIC.step(state, p)
    assert TOPIC.observe(state, p).scalars["acceptance"] == 1.0
    # cold start deep in the ordered phase: a flip costs dE = 8, accepted with exp(-8 beta)
    p, state = _init(L=16, replicas=4, beta=1.5, start="cold", method="metropolis")
    for _ in range(3):
        TOPIC.step(state, p)
    assert TOPIC.observe(state, p).scalars["acceptance"] < 1e-3
    # heat bath at beta = 0 draws each spin afresh: it changes with probability 1/2
    p, state = _init(L=32, replicas=4, beta=0.0, method="gibbs")
    for _ in range(4):
        TOPIC.step(state, p)
    acc = TOPIC.observe(state, p).scalars["acceptance"]
    assert abs(acc - 0.5) < 5 * (0.25 / (4 * 4 * 32 * 32)) ** 0.5
    assert TOPIC.work_per_step(state, p) == 4 * 32 * 32 and TOPIC.work_unit() == "flips"


def test_exact_references_only_at_zero_field():
    p, state = _init(L=16, replicas=2, beta=0.6)
    TOPIC.step(state, p)
    s = TOPIC.observe(state, p).scalars
    assert s["energy_exact"] == pytest.approx(exact.kaufman_energy(0.6, 16))
    assert s["energy_onsager"] == pytest.approx(exact.onsager_energy(0.6))
    assert s["magnetization_yang"] == pytest.approx(exact.yang_magnetization(0.6))
    p = dict(p, h=0.2)
    s = TOPIC.observe(state, p).scalars
    assert s["energy_exact"] is None and s["energy_onsager"] is None and s["magnetization_yang"] is None


def test_cold_start_scalars_are_the_ground_state():
    p, state = _init(L=8, replicas=2, start="cold", h=0.5)
    f = TOPIC.observe(state, p)
    assert f.scalars["energy_per_spin"] == pytest.approx(-2.0 - 0.5)
    assert f.scalars["magnetization_per_spin"] == 1.0 and f.scalars["abs_magnetization"] == 1.0


def test_lattice_view_is_downsampled_to_at_most_128_and_holds_spins():
    p, state = _init(L=300, replicas=1)
    f = TOPIC.observe(state, p)
    lat = f.views["lattice"]
    assert lat.shape == (100, 100)                  # block 3: 300 / 3
    assert set(lat.ravel().tolist()) <= {-1, 1}
    p, state = _init(L=64, replicas=1)
    lat = TOPIC.observe(state, p).views["lattice"]
    assert (torch.as_tensor(lat) == state.replicas.spins[0]).all()   # small lattices are shown as they are


def test_a_corrupted_lattice_is_reported_not_plotted_silently():
    p, state = _init(L=8, replicas=2)
    state.replicas.spins[1, 3, 3] = 0
    f = TOPIC.observe(state, p)
    assert f.scalars["bad_spins"] == 1
    assert any("not +1/-1" in n for n in f.notes)


def test_measured_vs_exact_table_names_the_exact_values_and_the_rhat_behind_each_figure():
    p, state = _init(L=8, replicas=8, burn_in=50, beta=0.3)
    for _ in range(550):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    table, s = f.views["measured_vs_exact"], f.scalars
    assert s["equilibrated"] is True and table["note"].startswith("equilibrated")
    assert table["columns"] == ["observable", "measured", "Rhat", "exact L=8", "L=inf"] and len(table["rows"]) == 4
    energy, m, c, acc = table["rows"]
    # cells are numbers, (value, stderr) pairs or None: the UI formats them
    assert energy == ["energy/spin", (s["energy_mean"], s["energy_stderr"]), s["energy_rhat"],
                      exact.kaufman_energy(0.3, 8), exact.onsager_energy(0.3)]
    assert m == ["|m|", (s["abs_magnetization_mean"], s["abs_magnetization_stderr"]), s["abs_magnetization_rhat"],
                 None, 0.0]                                        # no spontaneous m above T_c
    assert c == ["C/spin", (s["specific_heat"], s["specific_heat_stderr"]), s["energy_rhat"],
                 exact.kaufman_specific_heat(0.3, 8), None]
    assert acc == ["acceptance", s["acceptance"], None, None, None] and 0 < s["acceptance"] < 1
    assert all(isinstance(x, float) for x in (s["energy_stderr"], s["specific_heat_stderr"], s["energy_rhat"]))
    # too few sweeps for an R-hat: the values without error bars, and the note says why
    p, state = _init(L=8, replicas=4, burn_in=0, beta=0.3)
    for _ in range(3):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    s, rows = f.scalars, f.views["measured_vs_exact"]["rows"]
    assert s["energy_rhat"] is None and s["equilibrated"] is False and s["energy_stderr"] is None
    assert rows[0][1] == (s["energy_mean"], None) and rows[0][2] is None
    assert "too few" in f.views["measured_vs_exact"]["note"]
    # one replica: no error bar to withhold once equilibrated; before any sample, None
    p, state = _init(L=8, replicas=1, burn_in=0, beta=0.3)
    for _ in range(400):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    assert f.scalars["equilibrated"] is True
    assert f.views["measured_vs_exact"]["rows"][0][1] == f.scalars["energy_mean"]
    p, state = _init(L=8, replicas=2, burn_in=5)
    assert TOPIC.observe(state, p).views["measured_vs_exact"]["rows"][0][1] is None


def _mixed_start(beta, seed, L=32, replicas=8, burn_in=100):
    """Half the replicas from uniform spins (hot), half from the all-up lattice (cold)."""
    p, state = _init(L=L, replicas=replicas, beta=beta, burn_in=burn_in)
    p, state = p, TOPIC.init(p, torch.device("cpu"), seed=seed)
    state.replicas.spins[replicas // 2:] = 1
    return p, state


def test_rhat_flags_replicas_stuck_in_stripes_below_tc_and_passes_above_it():
    """Below T_c (beta = 0.6, L = 32) a random start coarsens into stripes (two domain walls
    around the torus) that live far longer than the run, beside the cold replicas' ordered
    lattices: each replica's time average looks converged, their spread is no error bar, and
    R-hat must say so. Above T_c (beta = 0.3) the same mixed start forgets itself during
    the burn-in and R-hat passes."""
    from mletui.engine.convergence import RHAT_MAX

    R, L = 8, 32
    p, state = _mixed_start(0.6, seed=1)
    for _ in range(400):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    s = f.scalars
    e, m = (x / L**2 for x in state.replicas.measure())
    hot, cold = slice(0, R // 2), slice(R // 2, R)
    # a hot replica is still striped: 2L broken bonds above the ordered energy, |m| far from 1
    striped = (e[hot] > e[cold].max() + 2 * 2 * L / L**2 * 0.75) & (m[hot].abs() < 0.6)
    assert bool(striped.any()), (e, m)
    assert s["energy_rhat"] > RHAT_MAX and s["equilibrated"] is False
    assert s["energy_stderr"] is None and s["specific_heat_stderr"] is None
    rows = f.views["measured_vs_exact"]["rows"]
    assert rows[0][1] == (s["energy_mean"], None) and rows[0][2] == s["energy_rhat"]
    assert rows[2][1] == (s["specific_heat"], None)
    note = f.views["measured_vs_exact"]["note"]
    assert note.startswith("not equilibrated") and "energy_rhat" in note
    # the specific heat it would have claimed is far from the exact value (the 2.9 vs 0.31)
    assert s["specific_heat"] > 2 * s["specific_heat_exact"]

    p, state = _mixed_start(0.3, seed=1)
    for _ in range(600):
        TOPIC.step(state, p)
    s = TOPIC.observe(state, p).scalars
    assert s["energy_rhat"] < RHAT_MAX and s["abs_magnetization_rhat"] < RHAT_MAX
    assert s["equilibrated"] is True and s["energy_stderr"] > 0 and s["specific_heat_stderr"] > 0
    assert abs(s["energy_mean"] - exact.kaufman_energy(0.3, L)) < 4 * s["energy_stderr"]


def test_magnetisation_histogram_bins_each_replica_not_their_average():
    """Two frozen replicas at +1 and -1 (beta = 3, cold): their average m is 0, yet the
    histogram must show two peaks at the ends, one count per replica per sweep."""
    p, state = _init(L=8, replicas=2, beta=3.0, start="cold", burn_in=0)
    state.replicas.spins[1] = -1
    for _ in range(5):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    hist = f.views["m_histogram"]
    assert len(hist["edges"]) == len(hist["counts"]) + 1 == 41
    assert hist["edges"][0] == -1.0 and hist["edges"][-1] == 1.0
    assert hist["counts"][0] == 5 and hist["counts"][-1] == 5 and sum(hist["counts"]) == 10
    assert abs(f.scalars["magnetization_per_spin"]) < 0.1           # the average sits in between
    # frozen replicas in different states: R-hat of m is infinite, and a note names it
    assert f.scalars["magnetization_rhat"] is None                  # 5 sweeps: too few
    for _ in range(20):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    assert f.scalars["magnetization_rhat"] == float("inf")
    assert any("magnetization_rhat" in n and "inf" in n for n in f.notes)
    view = next(v for v in TOPIC.views if v.kind == "histogram")
    assert view.source == "m_histogram" and "per-replica m" in view.title


def test_rhat_and_histogram_do_not_depend_on_how_often_frames_are_taken():
    from mletui.engine.runner import run

    params = {"L": 16, "replicas": 4, "beta": 0.5, "burn_in": 3}
    one = {f.step: f for f in run(TOPIC, steps=42, params=params, seed=3, device="cpu", every=1)}
    seven = list(run(TOPIC, steps=42, params=params, seed=3, device="cpu", every=7))
    for f in seven:
        g = one[f.step]
        for k in ("energy_rhat", "magnetization_rhat", "abs_magnetization_rhat", "equilibrated",
                  "energy_stderr", "specific_heat"):
            assert f.scalars[k] == g.scalars[k], (f.step, k)
        assert f.views["m_histogram"] == g.views["m_histogram"]


def test_a_lattice_batch_too_large_for_memory_is_refused_with_one_line():
    with pytest.raises(ParamError, match="replicas x L\\^2"):
        TOPIC.resolve({"L": 8192, "replicas": 64})
    assert TOPIC.resolve({"L": 4096, "replicas": 8})["L"] == 4096


def test_bench_rows_are_the_sweeps_per_size_and_method_then_the_topic_step():
    from mletui.engine.bench import benchmarks

    rows = list(benchmarks()["ising"](torch.device("cpu"), quick=True))
    assert [r["case"] for r in rows] == ["L=32 metropolis sweep", "L=32 gibbs sweep", "L=64 metropolis sweep",
                                         "L=64 gibbs sweep", "L=64 topic step (sweep + energy + running sums)"]
    base = {"case", "value", "unit", "baseline", "baseline_value", "ratio", "threads"}
    assert all(base <= set(r) and r["unit"] == "flips/ns" and r["value"] > 0 for r in rows)
    assert {"peak_host_mib", "host_mib_at_start", "warmup_s", "engine"} <= set(rows[2])
