"""Benchmark of the Langevin topic.

Chain-steps per second of the fused step (Triton on CUDA, the twin on the CPU) against the plain
eager-PyTorch step (``kernels.langevin.langevin_step_eager``) in the same run, on bimodal2d, ULA
and MALA at 1e4 ... 1e7 chains, timed in interleaved rounds (:func:`timing.interleaved`: fused,
eager, fused, ...; medians); each timed call runs a block of steps sized so that it lasts about
a tenth of ``min_time``, so CUDA's per-call synchronisation does not dominate small sizes.
Then ESS per second of MALA on the 1-D bimodal target: the same estimator
(``engine.diagnostics.multichain_ess``) on both samplers' traces, each run timed once.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch

from ..diagnostics import multichain_ess
from ..exact.targets import Target, make_target
from ..kernels import langevin as kern
from ..topics.langevin import TRACE_CHAINS
from .timing import interleaved, time_once


def rows(device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
    sizes = (1_000, 10_000) if quick else (10_000, 100_000, 1_000_000, 10_000_000)
    min_time = 0.05 if quick else 1.0
    target = make_target("bimodal2d")
    packed = kern.pack_target(target, device)
    path = "triton" if kern.use_triton(device) else "twin"
    for n in sizes:
        for method in ("ula", "mala"):
            fused, eager = _throughput(target, packed, device, n, method == "mala", min_time)
            yield {"case": f"{method} bimodal2d chains={n:.0e}", "value": fused, "unit": "chain-steps/s",
                   "baseline": "eager PyTorch step", "baseline_value": eager, "ratio": fused / eager,
                   "path": path, "device": str(device), "threads": torch.get_num_threads()}
    n_chains, steps = (256, 300) if quick else (1000, 4000)
    ours, theirs = _ess_per_s(device, n_chains, steps)
    yield {"case": f"ESS/s mala bimodal chains={n_chains} steps={steps} step_size=1.5", "value": ours,
           "unit": "ESS/s", "baseline": "eager PyTorch step", "baseline_value": theirs,
           "ratio": ours / theirs, "path": path, "device": str(device), "threads": torch.get_num_threads()}


def _block(step: Callable[[], None], device: torch.device, min_time: float) -> tuple[Callable[[], None], int]:
    """A callable running ``reps`` steps, with reps such that one call takes ~min_time / 10."""
    once = time_once(step, device)                      # also the warm-up (Triton compile)
    once = min(once, time_once(step, device))
    reps = max(1, min(10_000, int(0.1 * min_time / max(once, 1e-7))))

    def run() -> None:
        for _ in range(reps):
            step()
    return run, reps


def _throughput(target: Target, packed: kern.PackedTarget, device: torch.device, n: int,
                mala: bool, min_time: float) -> tuple[float, float]:
    host = torch.Generator().manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(1)
    x = target.sample(n, host, device).T.contiguous()
    logp = torch.empty(n, device=device)
    grad = torch.empty_like(x)
    kern.refresh(x, logp, grad, packed)
    acc = torch.zeros(1, dtype=torch.int64, device=device)
    counter = [0]

    def fused() -> None:
        counter[0] += 1
        kern.langevin_step(x, logp, grad, 0.5, packed, mala, seed=7, counter=counter[0],
                           accept_count=acc, generator=gen)

    box = [x.T.contiguous(), logp.clone(), grad.T.contiguous()]

    def eager() -> None:
        box[0], box[1], box[2], _ = kern.langevin_step_eager(target, box[0], box[1], box[2], 0.5, mala, gen)

    fused_block, fused_reps = _block(fused, device, min_time)
    eager_block, eager_reps = _block(eager, device, min_time)
    m = interleaved([fused_block, eager_block], device, rounds=3, min_time=min_time, warmup=0)
    return m.timings[0].rate(n * fused_reps), m.timings[1].rate(n * eager_reps)


def _ess_per_s(device: torch.device, n: int, steps: int) -> tuple[float, float]:
    """ESS/s of MALA (step 1.5) on the 1-D bimodal target from exact starts: ours vs eager."""
    target = make_target("bimodal")
    packed = kern.pack_target(target, device)
    host = torch.Generator().manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(1)
    x0 = target.sample(n, host, device).T.contiguous()
    m = min(n, TRACE_CHAINS)
    x, logp, grad = x0.clone(), torch.empty(n, device=device), torch.empty_like(x0)
    kern.refresh(x, logp, grad, packed)
    trace = torch.empty(steps, m, device=device)

    def ours() -> None:
        for i in range(steps):
            kern.langevin_step(x, logp, grad, 1.5, packed, True, seed=3, counter=i, trace=trace,
                               trace_row=i, generator=gen)

    pts = x0.T.contiguous()
    lp, sc = target.log_density_and_score(pts)
    box = [pts, lp, sc]
    trace_e = torch.empty(steps, m, device=device)

    def eager() -> None:
        for i in range(steps):
            box[0], box[1], box[2], _ = kern.langevin_step_eager(target, box[0], box[1], box[2], 1.5, True, gen)
            trace_e[i] = box[0][:m, 0]

    t_ours = time_once(ours, device)
    t_eager = time_once(eager, device)
    return (multichain_ess(trace) * m / t_ours * (n / m),
            multichain_ess(trace_e) * m / t_eager * (n / m))
