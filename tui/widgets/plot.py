"""Plot: xy lines. ``Frame.views[source]`` is
{"x": [...], "series": {name: [...]}, "xlabel": str, "ylabel": str}
or {"lines": {name: (x, y)}}, optionally with {"points": {name: (x, y)}} drawn as a
scatter under the lines (e.g. data behind fitted ellipses) and a "note" shown when there is
nothing to draw; options ``logy`` draws y on a log scale.
Non-finite points are not drawn; the subtitle counts them."""

from __future__ import annotations

from mletui.engine.topic import Frame

from .numbers import finite_pairs
from .plotext_view import PlotextView

_COLORS = ("cyan", "orange", "green", "magenta", "blue", "red", "white", "yellow")


class PlotView(PlotextView):
    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        data = frame.views.get(self.view.source, frame.arrays.get(self.view.source))
        plt = self.begin()
        if not isinstance(data, dict):
            self.border_subtitle = "no data"
            self.refresh()
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
        logy = bool(self.view.options.get("logy"))
        for k, (name, xy) in enumerate((data.get("points") or {}).items()):
            px, py, d = finite_pairs(list(xy[0]), list(xy[1]))
            dropped += d
            if px:
                scattered += len(px)
                plt.scatter(px, py, marker=self.glyphs.marker, color="gray",
                            label=name if lines else None)
        for k, (name, (xs, ys)) in enumerate(lines.items()):
            px, py, d = finite_pairs(xs, ys)
            if logy:
                keep = [(a, b) for a, b in zip(px, py) if b > 0]
                d += len(px) - len(keep)
                px, py = [a for a, _ in keep], [b for _, b in keep]
            dropped += d
            if px:
                plt.plot(px, py, marker=self.glyphs.marker, color=_COLORS[k % len(_COLORS)],
                         label=name if len(lines) > 1 else None)
        if logy:
            plt.yscale("log")
        if data.get("xlabel"):
            plt.xlabel(str(data["xlabel"]))
        if data.get("ylabel"):
            plt.ylabel(str(data["ylabel"]))
        parts = []
        if scattered:
            parts.append(f"{scattered} points")
        if dropped:
            parts.append(f"{dropped} non-finite points not drawn")
        if not lines and not scattered and data.get("note"):
            parts.append(str(data["note"]))
        self.border_subtitle = ", ".join(parts)
        self.refresh()
