"""Benchmark of the population topic: whole population-annealing steps (reweight + resample
+ 10 sweeps) against plain checkerboard sweeps of a population of the same size, same run.

value: spin updates per ns of whole annealing steps; baseline: spin updates per ns of plain
sweeps of the same (R, L, L) population; ratio = value / baseline (1 = nothing lost to
reweighting and resampling). Extra: replica-sweeps/s, the share of a step's time spent
reweighting and resampling, and the seconds of one step of R0 replicas.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterator

import torch

from ..kernels import checkerboard
from ..topics.population import TOPIC
from . import timing

SWEEPS = 10


def rows(device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
    if quick:
        cases = [(8, 1 << 8, 2)]
    else:
        cases = [(16, 1 << 14, 6), (16, 1 << 15, 5), (16, 1 << 16, 4), (16, 1 << 17, 3),
                 (16, 1 << 18, 3), (64, 1 << 14, 4)]
    with checkerboard.foreground_builds():     # warm-up compiles; the rounds time compiled steps
        for L, R, rounds in cases:
            yield case(device, L, R, rounds, SWEEPS)


def case(device: torch.device, L: int, R: int, rounds: int, sweeps: int,
         resampling: str = "nearest") -> dict[str, Any]:
    """One row. A population is annealed to beta = 0.4 in one step (then two warm-up steps:
    the fast CPU twin compiles for the first population size and again with dynamic shapes
    when nearest resampling changes it). Then ``rounds`` interleaved rounds time (a)
    ``sweeps`` plain sweeps of a copy of that population at the same beta and (b) one whole
    annealing step in its two phases, PopulationTopic.reweight_and_resample then
    PopulationTopic.move (the device synchronised between them, as around every call)."""
    N = L * L
    p = TOPIC.resolve({"L": L, "replicas": R, "sweeps_per_step": sweeps, "dbeta": 0.005,
                       "beta_max": 1.0, "resampling": resampling})
    state = TOPIC.init(p, device, 1)
    TOPIC.step(state, {**p, "dbeta": 0.4, "sweeps_per_step": 1})
    for _ in range(2):
        TOPIC.step(state, {**p, "sweeps_per_step": 1})
    copy = state.replicas.spins.clone()
    counter = [1 << 20]
    sizes: list[int] = []           # the population each timed step started from

    def plain() -> None:
        for _ in range(sweeps):
            checkerboard.sweep(copy, state.beta, 0.0, "metropolis", seed=3, counter=counter[0])
            counter[0] += 2

    def resample() -> None:
        sizes.append(state.population)
        TOPIC.reweight_and_resample(state, p)

    def move() -> None:
        TOPIC.move(state, p)

    m = timing.interleaved([plain, resample, move], device, rounds=rounds)
    t_plain, t_resample, t_move = m.timings
    steps = [a + b for a, b in zip(t_resample.times, t_move.times)]
    per_update_plain = t_plain.median / (copy.shape[0] * N * sweeps)
    per_update_step = statistics.median(t / (n * N * sweeps) for t, n in zip(steps, sizes[-len(steps):]))
    share = statistics.median(a / t for a, t in zip(t_resample.times, steps))
    value, plain_rate = 1e-9 / per_update_step, 1e-9 / per_update_plain
    return {"case": f"L={L} R=2^{int(round(math.log2(R)))} {resampling}", "value": round(value, 5),
            "unit": "flips/ns", "baseline": "plain sweep", "baseline_value": round(plain_rate, 5),
            "ratio": round(value / plain_rate, 3),
            "replica_sweeps_per_s": round(value * 1e9 / N, 1),
            "resample_share": round(share, 4),
            "step_s": round(per_update_step * R * N * sweeps, 3)}
