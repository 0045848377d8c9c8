"""UI overhead: engine steps/s with the app redrawing at ``fps``, as a fraction of the same
engine with the app idle, for the engine in a spawned process (the app's default on a
terminal) and in a thread of the UI's process.

    python -m mletui.tui.bench_ui [--topic ising] [--set L=256] [--fps 4] [--seconds 4]
                                  [--rounds 8] [--device cpu]

One app session (Textual's headless driver at 120x40: every redraw is composed and
rendered as for a terminal; only the final write to the terminal is skipped) runs the
topic's Runner. Phases alternate: "idle" (the redraw timer stopped: the app waits in
its event loop, like a headless run) and "attached" (redrawing at ``fps``), ``rounds``
times each, after a warm-up. Alternating within one process and one runner makes the
comparison hold on a machine whose load from other processes changes from minute to
minute: each attached phase is compared with the idle phases either side of it, and the
median of those ratios is reported. Also reported: the UI thread's CPU time per redraw.
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
from mletui.engine.topics import get_topic

from .app import MletuiApp


def measure(topic, params: dict[str, Any], device: torch.device, fps: float, seconds: float,
            rounds: int, warmup: float, size=(120, 40), runner: str = "process") -> dict[str, Any]:
    app = MletuiApp(topic=topic.name, topics=[topic], overrides={topic.name: params}, seed=1,
                    device=device, fps=fps, runner=runner)
    out: dict[str, Any] = {"idle": [], "attached": [], "ui_ms_per_redraw": []}
    redraws = {"n": 0}

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            runner = app.pane.runner
            tick = app.tick

            def counted() -> None:
                redraws["n"] += 1
                tick()

            app.redraw_timer.stop()
            app.redraw_timer = app.set_interval(1.0 / fps, counted)
            t0 = time.monotonic()
            while runner.steps < 3 or time.monotonic() - t0 < warmup:
                await pilot.pause(0.2)

            async def phase(attached: bool) -> float:
                if attached:
                    app.redraw_timer.resume()
                else:
                    app.redraw_timer.pause()
                await pilot.pause(0.5)  # let the phase settle
                s0, w0, c0, n0 = runner.steps, time.perf_counter(), time.thread_time(), redraws["n"]
                await asyncio.sleep(seconds)
                rate = (runner.steps - s0) / (time.perf_counter() - w0)
                if attached and redraws["n"] > n0:
                    out["ui_ms_per_redraw"].append(1000 * (time.thread_time() - c0) / (redraws["n"] - n0))
                return rate

            out["idle"].append(await phase(False))
            for _ in range(rounds):
                out["attached"].append(await phase(True))
                out["idle"].append(await phase(False))
            for pane in app.panes.values():
                pane.stop()

    asyncio.run(main())
    idle, att = out["idle"], out["attached"]
    ratios = [a / ((idle[i] + idle[i + 1]) / 2) for i, a in enumerate(att) if idle[i] + idle[i + 1] > 0]
    frac = statistics.median(ratios) if ratios else None
    return {
        "idle_steps_per_s": round(statistics.median(idle), 3),
        "attached_steps_per_s": round(statistics.median(att), 3),
        "fraction": round(frac, 3) if frac is not None else None,
        "lost_pct": round(100 * (1 - frac), 1) if frac is not None else None,
        "ratios": [round(r, 3) for r in ratios],
        "ui_ms_per_redraw": round(statistics.median(out["ui_ms_per_redraw"]), 1) if out["ui_ms_per_redraw"] else None,
        "rounds_idle": [round(x, 2) for x in idle],
        "rounds_attached": [round(x, 2) for x in att],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mletui.tui.bench_ui", description=__doc__.splitlines()[0])
    ap.add_argument("--topic", default="ising")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each phase")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--size", default="120x40")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runner", default="process,thread",
                    help="engine placement(s) to measure, comma-separated: process (the app's default "
                         "on a terminal), thread")
    ap.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = ap.parse_args(argv)

    topic = get_topic(args.topic)
    texts = dict(s.split("=", 1) for s in args.set) or ({"L": "256"} if args.topic == "ising" else {})
    params: dict[str, Any] = topic.resolve(texts=texts)
    device = resolve_device(args.device)
    w, h = (int(v) for v in args.size.lower().split("x"))
    for kind in args.runner.split(","):
        row = {"topic": topic.name, "set": texts, "runner": kind, "device": describe_device(device),
               "fps": args.fps, "size": args.size, "date": time.strftime("%Y-%m-%d %H:%M")}
        row.update(measure(topic, params, device, args.fps, args.seconds, args.rounds, args.warmup,
                           (w, h), kind))
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            for k, v in row.items():
                print(f"{k:22} {v}", flush=True)
            print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
