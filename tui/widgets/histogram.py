"""Histogram: counts over bins.

Two feeds (engine/topic.py View docstring):
  ``source``: ``Frame.views[source]`` (or ``Frame.arrays``) is
              {"edges": [...], "counts": [...], "lines": {name: (x, y)}} (lines optional,
              e.g. an exact density drawn over the bars);
  ``series``: the one scalar whose recent values (options ``window``, default 500
              frames) are binned here (options ``bins``, default 30; ``range`` (lo, hi)).
Non-finite values are not binned; the subtitle counts them.
"""

from __future__ import annotations

import numpy as np

from mletui.engine.topic import Frame

from .numbers import finite, finite_pairs, fmt
from .plotext_view import PlotextView


class HistogramView(PlotextView):
    def __init__(self, view, glyphs, **kwargs) -> None:
        super().__init__(view, glyphs, **kwargs)
        self.needs_history = view.source is None and bool(view.series)

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        view = self.view
        lines: dict = {}
        note = ""
        if view.source is not None:
            data = frame.views.get(view.source, frame.arrays.get(view.source))
            if not isinstance(data, dict) or "edges" not in data or "counts" not in data:
                self.clear()
                self.border_subtitle = "no data"
                return
            edges = [float(e) for e in data["edges"]]
            counts = [float(c) if finite(c) else 0.0 for c in data["counts"]]
            lines = data.get("lines") or {}
        else:
            name = view.series[0]
            window = int(view.options.get("window", 500))
            frames = (history or [frame])[-window:]
            values = [f.scalars.get(name) for f in frames]
            good = np.array([v for v in values if finite(v)], dtype=float)
            bad = len(values) - len(good)
            bins = int(view.options.get("bins", 30))
            rng = view.options.get("range")
            if len(good) == 0:
                self.clear()
                self.border_subtitle = f"{name}: no finite values" if bad else f"{name}: no data"
                return
            if rng is None:
                lo, hi = float(good.min()), float(good.max())
                if hi - lo < 1e-12:
                    lo, hi = lo - 0.5, hi + 0.5
                rng = (lo, hi)
            c, e = np.histogram(good, bins=bins, range=(float(rng[0]), float(rng[1])))
            counts, edges = c.astype(float).tolist(), e.tolist()
            note = f"{name} {fmt(frame.scalars.get(name))}, {len(good)} frames"
            if bad:
                note += f", {bad} nan not binned"
        plt = self.begin()
        if len(edges) >= 2 and len(counts) == len(edges) - 1:
            centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
            plt.bar(centers, counts, marker=self.glyphs.bar_marker, width=1.0)
            ticks = [edges[0], (edges[0] + edges[-1]) / 2, edges[-1]]
            plt.xticks(ticks, [fmt(t, 3) for t in ticks])
        for k, (lname, xy) in enumerate(lines.items()):
            px, py, _ = finite_pairs(list(xy[0]), list(xy[1]))
            if px:
                plt.plot(px, py, marker=self.glyphs.marker, color="red", label=lname)
        self.border_subtitle = note
        self.refresh()
