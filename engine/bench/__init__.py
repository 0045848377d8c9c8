"""Benchmarks, one module per topic, found like topics.

``engine/bench/foo.py`` defining ``rows(device, quick=False)`` is the benchmark of topic
``foo``: ``mletui bench foo`` prints its rows. Every module times with
:mod:`engine.bench.timing`. A row is a dict with

    case            what was measured ("L=1024 metropolis sweep")
    value           the figure: the median over interleaved rounds, at full precision
                    (not rounded: ``mletui bench`` formats, ``--json`` writes it as it is)
    unit            its unit ("flips/ns", "ms", "MiB")
    better          "higher" or "lower": which direction is better for ``value``; when
                    absent, :func:`better` decides from the unit (rates and speed-ups
                    higher, times, memory and errors lower)
    value_min, value_max   the spread of ``value`` over the rounds (slowest and fastest
                    round for a rate: ``timing.Timing.spread``), when measured
    load_avg        the machine's 1-minute load average during the measurement
                    (``timing.Measurement.load``), when measured
    baseline, baseline_value, baseline_min, baseline_max   the same for the baseline
    ratio           how many times better than the baseline (> 1 is better)

plus any extra figures (``threads``, ``peak_host_mib`` ...). ``timing.figures`` makes
``value``, ``value_min``, ``value_max`` and ``load_avg`` from a measurement.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Iterator

import torch

from ..params import ParamError

Rows = Callable[..., Iterator[dict[str, Any]]]


# Units whose figure is better when lower (times, memory, errors); any other unit (rates
# such as "flips/ns", "steps/s", speed-ups "x") is better when higher.
_LOWER_UNITS = ("s", "ms", "us", "µs", "ns", "min", "mib", "gib", "kib", "mb", "gb", "bytes",
                "error", "nats")


def better(row: dict[str, Any]) -> str:
    """"higher" or "lower": the row's own ``better`` key, else decided from its unit (a
    rate "x/y" or a speed-up is higher-is-better; a time, a memory size or an error is
    lower-is-better)."""
    given = row.get("better")
    if given in ("higher", "lower"):
        return given
    unit = str(row.get("unit") or "").strip().lower()
    if "/" in unit:  # per time, per work: a rate
        head, _, tail = unit.partition("/")
        return "lower" if head in _LOWER_UNITS and tail not in _LOWER_UNITS else "higher"
    return "lower" if unit in _LOWER_UNITS or unit.endswith("error") else "higher"


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
