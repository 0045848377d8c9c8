"""Benchmark of the tempering topic: tempering steps (a sweep at each chain's own beta +
energy + weights + rung move) against the plain Ising sweep at one fixed beta on the same
batch, in the same run."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..topics.tempering import TOPIC
from ._sweeps import rows_against_plain_sweep


def rows(device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
    yield from rows_against_plain_sweep(
        TOPIC, device, quick, lambda L, r, sweeps: {"L": L, "replicas": r, "burn_in": 0},
        label=f"K={TOPIC.param('rungs').default} metropolis")
