"""UI overhead: engine steps/s with the app attached, as a fraction of the same runner headless.

    python -m mletui.tui.bench_ui [--topic ising] [--set L=256] [--fps 4] [--seconds 8]
                                  [--rounds 3] [--device cpu]

Headless: a Runner in its background thread, the main thread asleep. Attached: the same
Runner inside MletuiApp (Textual's headless driver at 120x40: every redraw is composed
and rendered as on a terminal, only the final write is skipped) redrawing at ``fps``.
The two alternate ``rounds`` times (A B A B ...) after a warm-up so that the load of
other processes hits both alike; the ratio of the medians is reported. Steps are counted
from ``runner.steps`` over a window that starts after each phase has settled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import torch

from mletui.engine.device import describe_device, resolve_device
from mletui.engine.runner import Runner
from mletui.engine.topics import get_topic

from .app import MletuiApp


def _count(runner: Runner, seconds: float) -> float:
    s0, t0 = runner.steps, time.perf_counter()
    time.sleep(seconds)
    return (runner.steps - s0) / (time.perf_counter() - t0)


def headless_rate(topic, params, device, seconds: float, settle: float) -> float:
    runner = Runner(topic, params, seed=1, device=device)
    runner.start()
    try:
        time.sleep(settle)
        return _count(runner, seconds)
    finally:
        runner.stop()


def attached_rate(topic, params, device, seconds: float, settle: float, fps: float) -> float:
    app = MletuiApp(topic=topic.name, topics=[topic], overrides={topic.name: params}, seed=1,
                    device=device, fps=fps)
    out: dict[str, float] = {}

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            runner = app.pane.runner
            await pilot.pause(settle)
            s0, t0 = runner.steps, time.perf_counter()
            await pilot.pause(seconds)
            out["rate"] = (runner.steps - s0) / (time.perf_counter() - t0)
            for pane in app.panes.values():
                pane.stop()

    asyncio.run(main())
    return out["rate"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mletui.tui.bench_ui", description=__doc__.splitlines()[0])
    ap.add_argument("--topic", default="ising")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = ap.parse_args(argv)

    topic = get_topic(args.topic)
    texts = dict(s.split("=", 1) for s in args.set) or ({"L": "256"} if args.topic == "ising" else {})
    params: dict[str, Any] = topic.resolve(texts=texts)
    device = resolve_device(args.device)

    headless_rate(topic, params, device, 1.0, args.settle)  # warm-up (allocations, caches)
    heads, attached = [], []
    for _ in range(args.rounds):
        heads.append(headless_rate(topic, params, device, args.seconds, args.settle))
        attached.append(attached_rate(topic, params, device, args.seconds, args.settle, args.fps))
    h, a = statistics.median(heads), statistics.median(attached)
    row = {
        "topic": topic.name, "params": {k: params[k] for k in texts}, "device": describe_device(device),
        "fps": args.fps, "headless_steps_per_s": round(h, 2), "attached_steps_per_s": round(a, 2),
        "fraction": round(a / h, 3) if h else None, "lost_pct": round(100 * (1 - a / h), 1) if h else None,
        "rounds_headless": [round(x, 2) for x in heads], "rounds_attached": [round(x, 2) for x in attached],
        "torch_threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(row))
    else:
        for k, v in row.items():
            print(f"{k:22} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
