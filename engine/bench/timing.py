"""The one timing harness every benchmark uses.

Benchmarks compare an engine path with its baseline *in the same run*: the callables
are timed in interleaved rounds (engine, baseline, engine, baseline, …) so a load that
comes and goes on a shared machine hits both alike, CUDA is synchronised around every
call, and each figure is the median over the rounds with its min and max. The machine's
load average is sampled at the start and end of a measurement so a row can say what it
ran under.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch


def sync(device: torch.device | str | None) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_host_mib() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss, KiB on Linux)."""
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:  # pragma: no cover - not on Linux
        return float("nan")


def peak_device_mib(device: torch.device) -> float | None:
    """Peak CUDA memory allocated since the last :func:`reset_peak_device`, or None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_peak_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def load_average() -> float | None:
    """The 1-minute load average, or None where the OS does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover
        return None


@dataclass
class Timing:
    """Wall seconds of each timed call of one callable."""

    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    def rate(self, work: float) -> float:
        """Work per second at the median call time."""
        return work / self.median

    def spread(self, work: float) -> tuple[float, float]:
        """(slowest, fastest) rate over the rounds: the min–max of :meth:`rate`."""
        return work / self.max, work / self.min


@dataclass
class Measurement:
    """Timings of interleaved callables plus the load they ran under."""

    timings: list[Timing]
    load_before: float | None
    load_after: float | None

    @property
    def load(self) -> float | None:
        loads = [x for x in (self.load_before, self.load_after) if x is not None]
        return max(loads) if loads else None


def interleaved(fns: Sequence[Callable[[], Any]], device: torch.device | str | None = None,
                rounds: int = 5, min_time: float = 0.0, warmup: int = 1) -> Measurement:
    """Time ``fns`` in interleaved rounds.

    Each callable runs ``warmup`` times untimed first (compilation, caches). Then rounds
    of one call of each, in order, are timed until at least ``rounds`` rounds and at least
    ``min_time`` seconds have passed. The device is synchronised before and after each call.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync(device)
    load_before = load_average()
    timings = [Timing() for _ in fns]
    start = time.perf_counter()
    n = 0
    while n < rounds or time.perf_counter() - start < min_time:
        for fn, timing in zip(fns, timings):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            timing.times.append(time.perf_counter() - t0)
        n += 1
    return Measurement(timings, load_before, load_average())


def time_once(fn: Callable[[], Any], device: torch.device | str | None = None) -> float:
    """Wall seconds of one synchronised call (warm-up and compile times)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def figures(m: Measurement, index: int = 0, work: float | None = None) -> dict[str, float | None]:
    """The row keys of one timed callable of a measurement (engine/bench/__init__.py):
    ``value`` the median, ``value_min`` / ``value_max`` the spread over the rounds, and
    ``load_avg``. With ``work``, a rate (work per second: min is the slowest round);
    without, seconds per call."""
    t = m.timings[index]
    if work is None:
        value, lo, hi = t.median, t.min, t.max
    else:
        value = t.rate(work)
        lo, hi = t.spread(work)
    return {"value": value, "value_min": lo, "value_max": hi, "load_avg": m.load}

