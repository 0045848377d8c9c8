"""The benchmark shape the annealing and tempering topics share: whole topic steps against
the plain Ising sweep (checkerboard.sweep at one fixed beta) on a batch of the same shape."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

import torch

from ..kernels import checkerboard
from ..topic import Topic
from . import timing


def rows_against_plain_sweep(topic: Topic, device: torch.device, quick: bool,
                             params: Callable[[int, int, int], Mapping[str, Any]], label: str,
                             rounds: int = 7) -> Iterator[dict[str, Any]]:
    """Rows for ``mletui bench``: ``sweeps`` calls of ``topic.step`` against ``sweeps`` plain
    checkerboard sweeps at beta = 0.44 of a copy of the topic's (R, L, L) lattices, timed
    interleaved in the same run (``rounds`` rounds after one warm-up call each; medians).
    ``params(L, R, sweeps)`` gives the topic's overrides for a case. On the CPU the timing
    runs on one torch thread (steadier on a shared machine; said in the case)."""
    if quick:
        cases = [(16, 64, 3)]
    elif device.type == "cuda":
        cases = [(16, 65536, 50), (64, 4096, 50), (256, 256, 50)]
    else:
        cases = [(16, 4096, 5), (64, 256, 5), (128, 64, 5)]
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        with checkerboard.foreground_builds():   # warm-up compiles; rounds time compiled kernels
            for L, r, sweeps in cases:
                p = topic.resolve(params(L, r, sweeps))
                state = topic.init(p, device, seed=1)
                spins = state.replicas.spins.clone()
                gen = torch.Generator(device=device).manual_seed(2)

                def plain() -> None:
                    for i in range(sweeps):
                        checkerboard.sweep(spins, 0.44, 0.0, "metropolis", 2, 2 * i, None, gen)

                def stepped() -> None:
                    for _ in range(sweeps):
                        topic.step(state, p)

                m = timing.interleaved([plain, stepped], device, rounds=rounds)
                t_plain, t_topic = m.timings[0].median, m.timings[1].median
                updates = r * L * L * sweeps
                rate, base = updates / t_topic / 1e9, updates / t_plain / 1e9
                where = " 1 thread" if device.type == "cpu" else ""
                yield {"case": f"L={L} R={r} {label}{where}", "value": round(rate, 4), "unit": "flips/ns",
                       "baseline": "plain Ising sweep (checkerboard.sweep, fixed beta)",
                       "baseline_value": round(base, 4), "ratio": round(rate / base, 3),
                       "replica_sweeps_per_s": round(r * sweeps / t_topic, 1),
                       "baseline_replica_sweeps_per_s": round(r * sweeps / t_plain, 1)}
    finally:
        torch.set_num_threads(threads)
