"""Bars: ``Frame.views[source]`` is {"labels": [...], "values": [...]}, optionally
"ylabel". Bars rise from 0, one per label; names under the axis are abbreviated to the
bar's width as far as they stay distinct, numbers kept whole; labels that would overlap
are left out. A non-finite value is drawn as an empty bar
and written "nan" in the subtitle."""

from __future__ import annotations

from mletui.engine.topic import Frame

from .chart import Chart, Curve
from .chart_view import ChartView
from .labels import abbreviate
from .numbers import finite, fmt


class BarsView(ChartView):
    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        data = frame.views.get(self.view.source, frame.arrays.get(self.view.source))
        if not isinstance(data, dict) or not data.get("labels"):
            self.draw(None)
            self.set_notes([("", "no data")])
            return
        labels = [str(x) for x in data["labels"]]
        values = list(data.get("values") or [])[:len(labels)]
        labels = labels[:len(values)]
        bad = [lab for lab, v in zip(labels, values) if not finite(v)]
        shown = [float(v) if finite(v) else float("nan") for v in values]
        n = max(1, len(labels))
        # room per bar: the plot is about the widget's width less a y-label column. Names
        # are shortened to it; numbers are kept whole (the axis shows those that fit)
        per = max(3, (max(self.content_size.width, 20) - 6) // n - 1)
        names = [lab for lab in labels if not any(c.isdigit() for c in lab)]
        longest = max([len(lab) for lab in names] + [per])
        while per < longest and len({abbreviate(lab, per) for lab in names}) < len(set(names)):
            per += 1  # shortened names must still tell the bars apart
        ticks = [(float(i), lab if any(c.isdigit() for c in lab) else abbreviate(lab, per))
                 for i, lab in enumerate(labels)]
        self.draw(Chart([Curve("", list(range(len(shown))), shown, kind="bars", width=0.8)],
                        ylabel=str(data.get("ylabel") or ""), xticks=ticks, xlim=(-0.5, n - 0.5),
                        message="no data"))
        finite_vals = [v for v in shown if v == v]
        if bad:
            self.set_notes([(lab, "nan") for lab in bad[:4]])
        else:
            self.set_notes([("max", fmt(max(finite_vals)))] if finite_vals else [])
