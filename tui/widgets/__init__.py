"""Widgets of the app. Each View kind (engine/topic.py) maps to one widget class here;
a new kind is one new module and one line in ``WIDGETS``.

Every view widget takes ``(view, glyphs, topic=None)`` (the topic gives labels, units and
the step unit; without it scalars are shown by name) and implements
    show(frame, history)  draw the latest Frame (``history``: the runner's recent frames,
                          passed only to widgets whose ``needs_history`` is True)
    clear()               forget what was drawn (the run was re-initialised).
"""

from __future__ import annotations

from typing import Any

from mletui.engine.topic import View

from ..charset import Glyphs


def widget_for(view: View, glyphs: Glyphs, topic: Any = None, **kwargs: Any):
    """The widget that draws one View of ``topic``."""
    from .bars import BarsView
    from .heatmap import HeatmapView
    from .histogram import HistogramView
    from .lattice import LatticeView
    from .plot import PlotView
    from .table import TableView
    from .trace import TraceView

    widgets = {
        "lattice": LatticeView,
        "histogram": HistogramView,
        "trace": TraceView,
        "heatmap": HeatmapView,
        "table": TableView,
        "plot": PlotView,
        "bars": BarsView,
    }
    return widgets[view.kind](view, glyphs, topic=topic, **kwargs)


def toggle_history(widgets) -> str:
    """Switch every trace among ``widgets`` between its recent window and the full
    history (the app's ``h`` key); returns what the traces now show."""
    traces = [w for w in widgets if hasattr(w, "toggle_history")]
    if not traces:
        return "no traces in this pane"
    full = not all(w.full_history for w in traces)
    for w in traces:
        if w.full_history != full:
            w.toggle_history()
    return "traces: full history" if full else "traces: recent window (autoscaled to it)"
