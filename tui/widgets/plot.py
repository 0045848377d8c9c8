"""Plot: xy lines. ``Frame.views[source]`` is
{"x": [...], "series": {name: [...]}, "xlabel": str, "ylabel": str}
or {"lines": {name: (x, y)}}, optionally with {"points": {name: (x, y)}} drawn as a
scatter under the lines (e.g. data behind fitted ellipses) and a "note" shown when there is
nothing to draw; options ``logy`` draws y on a log scale. A line whose name says "exact"
is drawn as a reference (its own colour and marker), the others as series.
Non-finite points are not drawn; the subtitle counts them."""

from __future__ import annotations

from mletui.engine.topic import Frame

from .chart import Chart, Curve
from .chart_view import ChartView
from .numbers import finite_pairs


class PlotView(ChartView):
    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        data = frame.views.get(self.view.source, frame.arrays.get(self.view.source))
        if not isinstance(data, dict):
            self.draw(None)
            self.set_notes([("", "no data")])
            return
        lines: dict = {}
        if "lines" in data:
            lines = {k: (list(v[0]), list(v[1])) for k, v in data["lines"].items()}
        elif "series" in data:
            x = list(data.get("x") or [])
            for name, ys in data["series"].items():
                ys = list(ys)
                lines[name] = (x if x else list(range(len(ys))), ys)
        dropped = 0
        scattered = 0
        curves: list[Curve] = []
        for name, xy in (data.get("points") or {}).items():
            px, py, d = finite_pairs(list(xy[0]), list(xy[1]))
            dropped += d
            if px:
                scattered += len(px)
                curves.append(Curve(str(name) if lines else "", px, py, kind="points", role="data"))
        for name, (xs, ys) in lines.items():
            px, py, d = finite_pairs(xs, ys)
            dropped += d
            role = "reference" if "exact" in str(name).lower() else "series"
            curves.append(Curve(str(name) if len(lines) > 1 else "", px, py, role=role))
        chart = Chart(curves, xlabel=str(data.get("xlabel") or ""), ylabel=str(data.get("ylabel") or ""),
                      logy=bool(self.view.options.get("logy")),
                      message=str(data.get("note") or "nothing to draw"))
        self.draw(chart)
        parts = []
        if scattered:
            parts.append(("", f"{scattered} points"))
        if dropped:
            parts.append(("", f"{dropped} non-finite points not drawn"))
        if chart.not_positive():
            parts.append(("", f"{chart.not_positive()} <= 0 not drawn (log axis)"))
        if not lines and not scattered and data.get("note"):
            parts.append(("", str(data["note"])))
        self.set_notes(parts)
