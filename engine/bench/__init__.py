"""Benchmarks, one module per topic, found like topics.

``engine/bench/foo.py`` defining ``rows(device, quick=False)`` is the benchmark of topic
``foo``: ``mletui bench foo`` prints its rows. Every module times with
:mod:`engine.bench.timing`. A row is a dict with ``case``, ``value``, ``unit``,
``baseline``, ``baseline_value``, ``ratio`` (how many times better than the baseline;
> 1 is better), plus any extra figures.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Iterator

import torch

from ..params import ParamError

Rows = Callable[..., Iterator[dict[str, Any]]]


def benchmarks() -> dict[str, Rows]:
    """Topic name -> its ``rows`` function, for every module here that defines one."""
    found: dict[str, Rows] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "timing":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        rows = getattr(module, "rows", None)
        if callable(rows):
            found[info.name] = rows
    return found


def bench(topic: str, device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
    """The benchmark rows of ``topic``; ParamError when it has none."""
    found = benchmarks()
    if topic not in found:
        raise ParamError(f"{topic} has no benchmark (benchmarked: {', '.join(sorted(found)) or 'none'})")
    return found[topic](device, quick=quick)
