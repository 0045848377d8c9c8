"""Histogram: counts over bins, and the title says what was binned.

Two feeds (engine/topic.py View docstring):
  ``source``: ``Frame.views[source]`` (or ``Frame.arrays``) is
              {"edges": [...], "counts": [...], "lines": {name: (x, y)}, "binned": str}
              (lines optional, e.g. an exact density drawn over the bars, a line whose
              name says "exact" is drawn as a reference; "binned" optional: what the
              counts are of, e.g. "per-replica m, 8 replicas x 40 frames", shown in the
              title);
  ``series``: the one scalar whose recent values (options ``window``, default 500
              frames) are binned here (options ``bins``, default 30; ``range`` (lo, hi));
              the title says "<scalar>, last N frames".
Options ``xlabel`` and ``ylabel`` name the axes (the x label defaults to the binned
scalar). Non-finite values are not binned; the subtitle counts them.
"""

from __future__ import annotations

import numpy as np

from mletui.engine.topic import Frame

from .chart import Chart, Curve
from .chart_view import ChartView
from .labels import with_unit
from .numbers import finite, finite_pairs, fmt


class HistogramView(ChartView):
    def __init__(self, view, glyphs, topic=None, **kwargs) -> None:
        super().__init__(view, glyphs, topic, **kwargs)
        self.needs_history = view.source is None and bool(view.series)

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        view = self.view
        lines: dict = {}
        notes: list[tuple[str, str]] = []
        xlabel = str(view.options.get("xlabel") or "")
        if view.source is not None:
            data = frame.views.get(view.source, frame.arrays.get(view.source))
            if not isinstance(data, dict) or "edges" not in data or "counts" not in data:
                self.clear()
                self.set_notes([("", "no data")])
                return
            edges = [float(e) for e in data["edges"]]
            raw = list(data["counts"])
            counts = [float(c) if finite(c) else 0.0 for c in raw]
            bad = sum(1 for c in raw if not finite(c) and c is not None)
            if bad:
                notes.append(("", f"{bad} bins nan"))
            lines = data.get("lines") or {}
            self.set_title_extra(str(data.get("binned") or ""))
        else:
            name = view.series[0]
            window = int(view.options.get("window", 500))
            frames = (history or [frame])[-window:]
            values = [f.scalars.get(name) for f in frames]
            good = np.array([v for v in values if finite(v)], dtype=float)
            bad = len(values) - len(good)
            bins = int(view.options.get("bins", 30))
            rng = view.options.get("range")
            label = self.label(name)
            xlabel = xlabel or with_unit(label, self.unit(name))
            self.set_title_extra(f"last {len(frames)} frames")
            if len(good) == 0:
                self.draw(None)
                self.set_notes([(f"{label}:", "no finite values" if bad else "no data")])
                return
            if rng is None:
                lo, hi = float(good.min()), float(good.max())
                if hi - lo < 1e-12:
                    lo, hi = lo - 0.5, hi + 0.5
                rng = (lo, hi)
            c, e = np.histogram(good, bins=bins, range=(float(rng[0]), float(rng[1])))
            counts, edges = c.astype(float).tolist(), e.tolist()
            notes.append((label, fmt(frame.scalars.get(name))))
            notes.append(("", f"{len(good)} frames"))
            if bad:
                notes.insert(1, ("", f"{bad} nan not binned"))
        curves: list[Curve] = []
        if len(edges) >= 2 and len(counts) == len(edges) - 1:
            e = np.asarray(edges)
            curves.append(Curve("", (e[:-1] + e[1:]) / 2, counts,
                                kind="bars", width=np.diff(e)))
        dropped = 0
        for lname, xy in lines.items():
            px, py, d = finite_pairs(list(xy[0]), list(xy[1]))
            dropped += d
            role = "reference" if "exact" in str(lname).lower() else "series"
            curves.append(Curve(str(lname), px, py, role=role))
        if dropped:
            notes.append(("", f"{dropped} non-finite points not drawn"))
        ylabel = str(view.options.get("ylabel") or "")
        if not ylabel and not lines:
            ylabel = "count" if view.source is not None else "frames"
        integral = all(float(c).is_integer() for c in counts)
        self.draw(Chart(curves, xlabel=xlabel, ylabel=ylabel, integer_y=integral and not lines,
                        message="no data"))
        self.set_notes(notes)
