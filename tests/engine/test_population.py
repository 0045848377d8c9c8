"""Population annealing: ln Z against Kaufman, the resampling laws, ln Q in log space, the
adaptive step, the shard layout, and a 2-process gloo run against 1-process runs.

The statistical tests compare the error with the standard error estimated from independent
runs (|z| < 4) and cap that standard error, so neither a bias nor a high-variance bug passes.
Runs use one torch thread: on a shared 2-core machine OpenMP barriers make small ops ~1000x
slower with two threads."""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mletui.engine import distributed
from mletui.engine.exact.ising import kaufman_log_z
from mletui.engine.kernels import checkerboard
from mletui.engine.kernels import resampling as rs
from mletui.engine.runner import run
from mletui.engine.topics.population import TOPIC

# L = 8, R0 = 1000, beta 0 -> 1 in 40 steps of 4 sweeps: ~1 s a run on one core. Measured
# over 30 seeds: mean error of ln Z at beta = 1 +0.003, standard deviation 0.068.
CONFIG = {"L": 8, "replicas": 1000, "dbeta": 0.025, "sweeps_per_step": 4, "beta_max": 1.0}
SEEDS = range(6)
STD_CAP = 0.15          # ~2x the measured spread of ln Z over seeds at this size
CHECK_BETAS = (0.44, 1.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _errors(config, seeds):
    """ln Z estimate - Kaufman at each beta in CHECK_BETAS, for each seed: {beta: [err, ...]}."""
    out = {b: [] for b in CHECK_BETAS}
    for seed in seeds:
        for frame in run(TOPIC, 10_000, config, seed=seed, device="cpu", every=1):
            b = frame.scalars["beta"]
            for target in CHECK_BETAS:
                if abs(b - target) < 0.5 * config["dbeta"] - 1e-12 and len(out[target]) < len(seeds):
                    out[target].append(frame.scalars["log_z"] - frame.scalars["log_z_exact"])
        assert frame.done and frame.scalars["beta"] == config["beta_max"]
        assert frame.scalars["nonfinite_steps"] == 0
    return out


@pytest.fixture(scope="module")
def one_process_errors():
    torch.set_num_threads(1)
    return _errors(CONFIG, SEEDS)


def _assert_agrees(errs, label):
    for beta, e in errs.items():
        mean, std = statistics.mean(e), statistics.stdev(e)
        stderr = std / math.sqrt(len(e))
        assert std < STD_CAP, f"{label}: spread of ln Z at beta={beta} is {std:.3g} >= {STD_CAP}"
        assert abs(mean) < 4 * stderr + 1e-12, \
            f"{label}: ln Z - Kaufman at beta={beta} is {mean:.4g} +- {stderr:.3g} (|z| >= 4)"


def test_population_log_z_matches_kaufman_at_L8_nearest(one_process_errors):
    _assert_agrees(one_process_errors, "nearest")


def test_population_log_z_matches_kaufman_at_L8_multinomial():
    _assert_agrees(_errors({**CONFIG, "resampling": "multinomial"}, range(10, 15)), "multinomial")


def test_population_log_z_starts_at_n_ln2_and_kaufman_reference_is_used():
    frames = list(run(TOPIC, 1, {**CONFIG, "dbeta": 0.01}, seed=0, device="cpu"))
    f = frames[-1]
    assert f.scalars["beta"] == pytest.approx(0.01)
    assert f.scalars["log_z_exact"] == pytest.approx(kaufman_log_z(0.01, 8), rel=1e-12)
    # one step from beta = 0 (ln Z = 64 ln 2): ln Q = ln <exp(-0.01 E)> is tiny and the estimate
    # sits within 0.01 of the exact value
    assert abs(f.scalars["log_z"] - f.scalars["log_z_exact"]) < 0.01
    assert abs(f.scalars["log_z"] - 64 * math.log(2)) < 0.05


def test_nearest_counts_are_unbiased_nonnegative_and_within_one_of_tau():
    g = torch.Generator().manual_seed(3)
    R, reps, R0 = 300, 4000, 300
    # energies with a huge spread so most weights underflow to 0 and a few dominate
    energy = torch.randn(R, generator=g, dtype=torch.float64) * 40.0
    for dbeta in (0.01, 1.0, 50.0):
        log_w = rs.shifted_log_weights(energy, dbeta, energy.min())
        total = torch.exp(log_w).sum()
        tau = rs.expected_copies(log_w, total, R0)
        assert float(tau.sum()) == pytest.approx(R0, rel=1e-12)
        counts = rs.nearest_counts(tau.expand(reps, R), g)
        assert counts.dtype == torch.int64
        assert bool((counts >= 0).all())
        floor = torch.floor(tau)
        assert bool(((counts == floor) | (counts == floor + 1)).all())
        # E[count_j] = tau_j: per-replica z-test over reps draws (Bernoulli variance)
        frac = tau - floor
        sd = torch.sqrt(frac * (1 - frac) / reps).clamp_min(1e-12)
        z = (counts.double().mean(0) - tau) / sd
        assert float(z.abs().max()) < 5.0
        # the population size: mean R0, variance sum frac (1 - frac) <= R / 4
        sizes = counts.sum(1).double()
        var = float((frac * (1 - frac)).sum())
        assert abs(float(sizes.mean()) - R0) < 4 * math.sqrt(var / reps) + 1e-9
        assert float(sizes.var()) <= 1.3 * var + 1e-9


def test_nearest_counts_refuse_nan_and_negative_tau():
    tau = torch.tensor([float("nan"), -1.0, float("inf"), 2.5, 0.0], dtype=torch.float64)
    counts = rs.nearest_counts(tau, torch.Generator().manual_seed(0))
    assert bool((counts >= 0).all())
    assert counts[:3].tolist() == [0, 0, 0]
    assert counts[3].item() in (2, 3)


def test_multinomial_counts_sum_to_draws_with_the_right_means():
    g = torch.Generator().manual_seed(5)
    energy = torch.linspace(-20, 20, 50, dtype=torch.float64)
    log_w = rs.shifted_log_weights(energy, 0.1, energy.min())
    p = torch.exp(log_w) / torch.exp(log_w).sum()
    acc = torch.zeros(50, dtype=torch.float64)
    reps, draws = 400, 1000
    for _ in range(reps):
        c = rs.multinomial_counts(log_w, draws, g)
        assert int(c.sum()) == draws and bool((c >= 0).all())
        acc += c
    mean = acc / reps
    sd = torch.sqrt(draws * p * (1 - p) / reps).clamp_min(1e-9)
    assert float(((mean - draws * p) / sd).abs().max()) < 5.0


def test_parents_repeat_each_replica_count_times():
    counts = torch.tensor([0, 3, 1, 0, 2])
    assert rs.parents(counts, 6).tolist() == [1, 1, 1, 2, 4, 4]


def test_log_q_is_the_log_mean_of_weights_without_overflow():
    energy = torch.tensor([-5000.0, -4990.0, -4000.0, 100.0], dtype=torch.float64)
    for dbeta in (1e-3, 0.5, 2.0):
        e_min = energy.min()
        log_w = rs.shifted_log_weights(energy, dbeta, e_min)
        s = rs.weight_sums(log_w)
        got = float(rs.log_q(-dbeta * e_min, s[0], s[2]))
        assert math.isfinite(got)
        want = float(np.logaddexp.reduce((-dbeta * energy).numpy())) - math.log(4)
        assert got == pytest.approx(want, rel=1e-13, abs=1e-9)
        ess = float(rs.ess_fraction_of(s))
        w = np.exp(log_w.numpy())
        assert ess == pytest.approx(w.sum() ** 2 / (4 * (w * w).sum()), rel=1e-12)


def test_adaptive_dbeta_hits_the_ess_target():
    g = torch.Generator().manual_seed(7)
    energy = torch.randn(5000, generator=g, dtype=torch.float64) * 20.0 - 300.0
    e_min = energy.min()
    for target in (0.5, 0.9, 0.99):
        db = rs.adaptive_dbeta(energy, e_min, target, dbeta_max=1.0)
        w = np.exp(-float(db) * (energy - e_min).numpy())
        ess = w.sum() ** 2 / (len(w) * (w * w).sum())
        assert ess == pytest.approx(target, abs=1e-4)
    # a cap the target never reaches is returned as is
    assert float(rs.adaptive_dbeta(energy, e_min, 0.5, dbeta_max=1e-4)) == pytest.approx(1e-4)


def test_adaptive_run_keeps_ess_at_target_and_ends_at_beta_max():
    cfg = {**CONFIG, "adaptive": True, "ess_target": 0.8, "dbeta": 0.2, "replicas": 400}
    frames = list(run(TOPIC, 1000, cfg, seed=1, device="cpu"))
    assert frames[-1].done and frames[-1].scalars["beta"] == 1.0
    ess = [f.scalars["ess_fraction"] for f in frames[:-1] if f.scalars["dbeta"] < 0.2 - 1e-9]
    assert ess and all(e >= 0.8 - 1e-3 for e in ess)
    assert abs(frames[-1].scalars["log_z"] - frames[-1].scalars["log_z_exact"]) < 1.0


def test_nonfinite_energy_is_reported_not_plotted():
    p = TOPIC.resolve(CONFIG)
    state = TOPIC.init(p, torch.device("cpu"), 0)
    state.energy = torch.full_like(state.energy, float("nan"))
    TOPIC.step(state, p)
    f = TOPIC.observe(state, p)
    assert f.scalars["nonfinite_steps"] == 1
    assert f.scalars["log_z"] is None and f.scalars["log_z_error_per_spin"] is None
    assert any("not finite" in n for n in f.notes)


@pytest.mark.parametrize("sizes", [[5, 5], [9, 1], [0, 10], [3, 4, 5], [7, 0, 0, 6], [1]])
def test_exchange_plan_tiles_every_even_shard_exactly_once(sizes):
    world, total = len(sizes), sum(sizes)
    bounds = distributed.even_bounds(total, world)
    filled = [np.zeros(bounds[d + 1] - bounds[d], dtype=int) for d in range(world)]
    for s, moves in enumerate(distributed.exchange_plan(sizes)):
        covered = 0
        for dest, start, stop, off in moves:
            assert 0 <= start < stop <= sizes[s]
            filled[dest][off:off + stop - start] += 1
            covered += stop - start
        assert covered == sizes[s]
    assert all((f == 1).all() for f in filled)
    assert max(len(f) for f in filled) - min(len(f) for f in filled) <= 1


# -- two gloo processes ------------------------------------------------------------------------
WORKER = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    from mletui.engine import distributed
    from mletui.engine.runner import run
    from mletui.engine.topics.population import TOPIC
    cfg, seeds = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    out = {"errors": {}, "uneven": 0, "world": 0}
    for seed in seeds:
        for f in run(TOPIC, 10000, cfg, seed=seed, device="cpu", every=1):
            b = f.scalars["beta"]
            for t in (0.44, 1.0):
                if abs(b - t) < 0.5 * cfg["dbeta"] - 1e-12:
                    out["errors"].setdefault(str(t), []).append(f.scalars["log_z"] - f.scalars["log_z_exact"])
    # the shards stay even after every resampling (rebalancing exchange)
    p = TOPIC.resolve(cfg)
    state = TOPIC.init(p, torch.device("cpu"), 99)
    for _ in range(15):
        TOPIC.step(state, p)
        n = torch.tensor([state.replicas.spins.shape[0]])
        sizes = distributed.all_gather(n).reshape(-1).tolist()
        out["uneven"] = max(out["uneven"], max(sizes) - min(sizes))
        assert sum(sizes) == state.population
    # multinomial across shards: exactly R0 children in total, every step
    p = TOPIC.resolve({**cfg, "resampling": "multinomial"})
    state = TOPIC.init(p, torch.device("cpu"), 98)
    out["multinomial_sizes"] = []
    for _ in range(10):
        TOPIC.step(state, p)
        out["multinomial_sizes"].append(state.population)
    out["world"] = distributed.world_size()
    if distributed.is_writer():
        print(json.dumps(out))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv_tail, world=2, timeout=120):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    procs = []
    for r in range(world):
        procs.append(subprocess.Popen([sys.executable] + argv_tail, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for proc in procs:
            outs.append(proc.communicate(timeout=timeout))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
    return outs


def test_two_gloo_processes_agree_with_one_process_and_kaufman(one_process_errors):
    outs = _launch(["-c", WORKER, json.dumps(CONFIG), json.dumps(list(SEEDS))])
    assert outs[1][0].strip() == ""                    # only rank 0 writes
    res = json.loads(outs[0][0])
    assert res["world"] == 2 and res["uneven"] <= 1
    assert res["multinomial_sizes"] == [CONFIG["replicas"]] * 10
    two = {float(k): v for k, v in res["errors"].items()}
    _assert_agrees(two, "2 processes")
    for beta in CHECK_BETAS:
        a, b = one_process_errors[beta], two[beta]
        diff = statistics.mean(b) - statistics.mean(a)
        se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
        assert abs(diff) < 4 * se, f"2-process vs 1-process ln Z at beta={beta}: {diff:.4g} +- {se:.3g}"


def test_buffers_grow_when_the_population_outgrows_them_and_nothing_is_lost():
    p = TOPIC.resolve({**CONFIG, "replicas": 200, "dbeta": 0.1})
    state = TOPIC.init(p, torch.device("cpu"), 4)
    # no slack at all: the first nearest fluctuation above R0 must grow both buffer pairs
    n = state.replicas.spins.shape[0]
    buffers = state.buffers
    buffers.pairs = [[t[:n].clone() for t in pair] for pair in buffers.pairs]
    state.replicas.spins, state.ancestors = buffers.pairs[buffers.current]
    grew = False
    for _ in range(10):
        TOPIC.step(state, p)
        grew = grew or buffers.pairs[0][0].shape[0] > n
        assert state.replicas.spins.shape[0] == state.population == state.ancestors.shape[0]
        assert bool(((state.replicas.spins == 1) | (state.replicas.spins == -1)).all())
        assert bool(((state.ancestors >= 0) & (state.ancestors < 200)).all())
        energy, _ = checkerboard.measure(state.replicas.spins)
        assert torch.equal(energy, state.energy)
    assert grew
    assert math.isfinite(float(state.log_z))


def test_bench_row_times_whole_steps_against_plain_sweeps_and_the_resampling_share():
    from mletui.engine.bench import benchmarks

    rows = list(benchmarks()["population"](torch.device("cpu"), quick=True))
    assert [r["case"] for r in rows] == ["L=8 R=2^8 nearest"]
    row = rows[0]
    assert set(row) == {"case", "value", "unit", "baseline", "baseline_value", "ratio",
                        "replica_sweeps_per_s", "resample_share", "step_s"}
    assert 0 < row["resample_share"] < 1 and row["value"] > 0 and row["step_s"] > 0
