"""Bars: ``Frame.views[source]`` is {"labels": [...], "values": [...]}.
A non-finite value is drawn as an empty bar and written "nan" in the subtitle."""

from __future__ import annotations

from mletui.engine.topic import Frame

from .numbers import finite, fmt
from .plotext_view import PlotextView


class BarsView(PlotextView):
    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        data = frame.views.get(self.view.source, frame.arrays.get(self.view.source))
        plt = self.begin()
        if not isinstance(data, dict) or not data.get("labels"):
            self.border_subtitle = "no data"
            self.refresh()
            return
        labels = [str(x) for x in data["labels"]]
        values = list(data.get("values") or [])
        bad = [lab for lab, v in zip(labels, values) if not finite(v)]
        shown = [float(v) if finite(v) else 0.0 for v in values]
        plt.bar(labels[:len(shown)], shown, marker=self.glyphs.bar_marker)
        self.border_subtitle = ", ".join(f"{lab} nan" for lab in bad[:4]) if bad else \
            ("max " + fmt(max(shown)) if shown else "")
        self.refresh()
