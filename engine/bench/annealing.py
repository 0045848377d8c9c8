"""Benchmark of the annealing topic: annealing steps (work + a sweep at the new beta + energy
+ best energy) against the plain Ising sweep at a fixed beta on the same batch, same run."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..topics.annealing import TOPIC
from ._sweeps import rows_against_plain_sweep


def rows(device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
    # a schedule of 8 x sweeps steps: the warm-up call and 7 timed rounds use it exactly up
    yield from rows_against_plain_sweep(
        TOPIC, device, quick, lambda L, r, sweeps: {"L": L, "replicas": r, "anneal_sweeps": 8 * sweeps},
        label="metropolis")
