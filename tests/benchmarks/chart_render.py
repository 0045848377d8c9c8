"""CPU per chart render: every curve through plotext's build with its own rasterising
helpers, with the NumPy versions of tui/widgets/plotext_fast.py (and a kept figure per
size against a new one), and straight to cells (plotext_fast.cells, the chart's default),
in one process, interleaved round by round so a load that comes and goes hits all alike.

The chart is a trace as the Ising pane draws one: 2000 frames of a noisy energy and a
constant exact reference, at 56x14 cells (a quarter of a 120x40 screen), braille.
Usage:

    .venv/bin/python tests/benchmarks/chart_render.py [--rounds 9] [--charts 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import plotext._utility as ut

from mletui.tui.widgets import chart as chart_module
from mletui.tui.widgets import plotext_fast
from mletui.tui.widgets.chart import Chart, Curve, Look

MODES = ("plotext helpers, new figure", "numpy helpers, new figure", "numpy helpers, kept figure",
         "straight to cells")


def _trace(rng: np.random.Generator) -> Chart:
    x = np.arange(2000.0)
    y = np.cumsum(rng.normal(size=2000)) * 0.01 + rng.normal(size=2000)
    return Chart([Curve("energy", x, y), Curve("exact", x, np.full(2000, 0.3), role="reference")],
                 xlabel="sweeps", ylabel="E/N")


def _use(mode: str) -> None:
    if mode.startswith("plotext"):
        for name, fn in plotext_fast.ORIGINAL.items():
            setattr(ut, name, fn)
    else:
        plotext_fast.install()
    chart_module.VIA_PLOTEXT = mode != "straight to cells"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--charts", type=int, default=10, help="renders per mode per round")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ms: dict[str, list[float]] = {m: [] for m in MODES}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
        for mode in MODES:
            _use(mode)
            charts = [_trace(rng) for _ in range(args.charts)]
            t = time.process_time()
            for c in charts:
                if "new figure" in mode:
                    chart_module._FIGURES.clear()
                c.render(56, 14, Look())
            ms[mode].append((time.process_time() - t) / args.charts * 1e3)
    plotext_fast.install()
    chart_module.VIA_PLOTEXT = False
    base = statistics.median(ms[MODES[0]])
    for mode in MODES:
        med = statistics.median(ms[mode])
        print(json.dumps({"case": mode, "ms_per_render": round(med, 2), "min": round(min(ms[mode]), 2),
                          "max": round(max(ms[mode]), 2), "speedup": round(base / med, 2),
                          "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}))


if __name__ == "__main__":
    main()
