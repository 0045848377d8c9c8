"""Widgets of the app. Each View kind (engine/topic.py) maps to one widget class here;
a new kind is one new module and one line in ``WIDGETS``.

Every view widget takes ``(view, glyphs)`` and implements
    show(frame, history)  draw the latest Frame (``history``: the runner's recent frames,
                          passed only to widgets whose ``needs_history`` is True)
    clear()               forget what was drawn (the run was re-initialised).
"""

from __future__ import annotations

from typing import Any

from mletui.engine.topic import View

from ..charset import Glyphs


def widget_for(view: View, glyphs: Glyphs, **kwargs: Any):
    """The widget that draws one View."""
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
    return widgets[view.kind](view, glyphs, **kwargs)
