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
    assert f.scalars["energy_mean"] is not None and f.scalars["energy_stderr"] is not None
    # a live edit: the means describe another distribution, so they restart, burn-in included
    p = dict(p, beta=0.6)
    TOPIC.on_edit(state, p, ["beta"])
    for _ in range(5):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    assert f.scalars["samples"] == 0 and f.scalars["energy_mean"] is None
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
    assert TOPIC.work_per_step(state, p) == 4 * 32 * 32 and TOPIC.work_unit() == "flips/ns"


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


def test_measured_vs_exact_table_names_the_exact_values():
    p, state = _init(L=8, replicas=4, burn_in=0, beta=0.6)
    for _ in range(3):
        TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    table, s = f.views["measured_vs_exact"], f.scalars
    assert table["columns"] == ["observable", "measured", "exact L=8", "L=inf"] and len(table["rows"]) == 4
    energy, m, c, acc = table["rows"]
    # cells are numbers, (value, stderr) pairs or None: the UI formats them
    assert energy == ["energy/spin", (s["energy_mean"], s["energy_stderr"]), exact.kaufman_energy(0.6, 8),
                      exact.onsager_energy(0.6)]
    assert m == ["|m|", (s["abs_magnetization_mean"], s["abs_magnetization_stderr"]), None,
                 exact.yang_magnetization(0.6)]
    assert c == ["C/spin", (s["specific_heat"], s["specific_heat_stderr"]), exact.kaufman_specific_heat(0.6, 8),
                 None]
    assert acc == ["acceptance", s["acceptance"], None, None] and 0 < s["acceptance"] < 1
    # one replica: no error bar, so the measured cell is the value alone; before any sample, None
    p, state = _init(L=8, replicas=1, burn_in=0, beta=0.6)
    TOPIC.step(state, p)
    row = TOPIC.observe(state, p).views["measured_vs_exact"]["rows"][0]
    assert isinstance(row[1], float) and row[1] == TOPIC.observe(state, p).scalars["energy_mean"]
    p, state = _init(L=8, replicas=2, burn_in=5)
    assert TOPIC.observe(state, p).views["measured_vs_exact"]["rows"][0][1] is None


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
