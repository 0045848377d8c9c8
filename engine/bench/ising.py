"""Benchmark of the ising topic: flips per ns of ``checkerboard.sweep`` (Triton on CUDA, the
fast twin on the CPU) against the naive eager checkerboard (float spins, torch.roll,
torch.rand, a mask per colour) on the same L x L lattice in the same run, and the topic's
whole step (sweep + energy + running sums) against the bare sweep at the largest L.

Engine and baseline sweeps alternate (engine.bench.timing.interleaved) and each rate is
taken at the median call time, so a load change on a shared machine hits both. The
engine's warm-up (torch.compile / Triton JIT) and its peak host and device memory are
taken before any baseline runs.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..kernels import checkerboard
from ..models.ising import uniform_spins
from ..topics.ising import TOPIC
from . import timing

BETA = 0.44
NAIVE = "naive eager checkerboard (float spins, roll, rand, colour masks)"


def _spins(L: int, device: torch.device) -> torch.Tensor:
    return uniform_spins(1, L, torch.Generator(device=device).manual_seed(0))


def _flips_per_ns(m: timing.Measurement, sites: int) -> tuple[float, float]:
    """(engine, baseline) spin updates per ns, one sweep of ``sites`` spins per call."""
    return m.timings[0].rate(sites) / 1e9, m.timings[1].rate(sites) / 1e9


def _engine_label(L: int, device: torch.device) -> str:
    if checkerboard.use_triton(device):
        return "triton"
    compiled = L * L // 2 >= checkerboard.COMPILE_MIN_SITES and checkerboard._COMPILED.failed is None
    return "fast twin (compiled)" if compiled else "fast twin (eager)"


def rows(device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
    """One row per (L, method) sweep, then the topic step; ``quick``: L = 32, 64 and short timings.
    New sizes compile in the foreground, so the warm-up includes it and the timings are of
    the compiled kernels."""
    with checkerboard.foreground_builds():
        yield from _rows(device, quick)


def _rows(device: torch.device, quick: bool) -> Iterator[dict[str, Any]]:
    sizes = (32, 64) if quick else (1024, 4096)
    min_time = 0.05 if quick else 4.0
    threads = torch.get_num_threads()
    host_at_start = timing.peak_host_mib()
    timing.reset_peak_device(device)
    warmup: dict[tuple[int, str], float] = {}
    for L in sizes:                                    # engine only: warm-up and memory
        for method in checkerboard.METHODS:
            spins = _spins(L, device)

            def two_sweeps() -> None:
                for i in range(2):
                    checkerboard.sweep(spins, BETA, 0.0, method, seed=1, counter=2 * i)

            warmup[(L, method)] = timing.time_once(two_sweeps, device)
            del spins
    peak_host = timing.peak_host_mib()
    peak_device = timing.peak_device_mib(device)
    for L in sizes:
        for method in checkerboard.METHODS:
            spins = _spins(L, device)
            state = {"s": spins.to(torch.float32), "counter": 4}
            masks = checkerboard.colour_masks(L, device)

            def engine() -> None:
                checkerboard.sweep(spins, BETA, 0.0, method, seed=1, counter=state["counter"])
                state["counter"] += 2

            def naive() -> None:
                state["s"] = checkerboard.sweep_naive(state["s"], BETA, 0.0, method, masks)

            rate, base = _flips_per_ns(timing.interleaved([engine, naive], device, rounds=3,
                                                          min_time=min_time), L * L)
            del state, masks, spins
            row = {"case": f"L={L} {method} sweep", "value": round(rate, 4), "unit": "flips/ns",
                   "baseline": NAIVE, "baseline_value": round(base, 4), "ratio": round(rate / base, 2),
                   "threads": threads, "warmup_s": round(warmup[(L, method)], 2),
                   "engine": _engine_label(L, device)}
            if L == sizes[-1] and method == checkerboard.METHODS[0]:
                row["peak_host_mib"] = round(peak_host, 1)
                row["host_mib_at_start"] = round(host_at_start, 1)
                if peak_device is not None:
                    row["peak_device_mib"] = round(peak_device, 1)
            yield row
    # the whole topic step (what the status bar's flips/ns shows) at the largest L
    L = sizes[-1]
    p = TOPIC.resolve({"L": L, "replicas": 1, "burn_in": 0})
    st = TOPIC.init(p, device, seed=1)
    TOPIC.step(st, p)
    bare_spins = _spins(L, device)
    counter = [0]

    def bare() -> None:
        checkerboard.sweep(bare_spins, p["beta"], 0.0, p["method"], seed=1, counter=counter[0])
        counter[0] += 2

    rate, base = _flips_per_ns(timing.interleaved([lambda: TOPIC.step(st, p), bare], device,
                                                  rounds=3, min_time=min_time), L * L)
    yield {"case": f"L={L} topic step (sweep + energy + running sums)", "value": round(rate, 4),
           "unit": "flips/ns", "baseline": "bare checkerboard.sweep", "baseline_value": round(base, 4),
           "ratio": round(rate / base, 2), "threads": threads}
