"""The base of the plotext-drawn views (trace, histogram, plot, bars).

Draws through textual-plotext's PlotextPlot; in ASCII mode the built chart has its
box-drawing and block characters replaced (see ``charset.to_ascii``) and markers are
plain ``*``. The view's title is the widget's border title, so the chart keeps every
row; the border subtitle carries the numbers (latest values, "nan" counts, references).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual_plotext import PlotextPlot

from mletui.engine.topic import Frame, View

from .panel import ViewPanel
from ..charset import Glyphs, to_ascii


class PlotextView(ViewPanel, PlotextPlot):

    def __init__(self, view: View, glyphs: Glyphs, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_view(view, glyphs)

    def render(self):
        text = super().render()
        if self.glyphs.ascii and isinstance(text, Text):
            text = Text(to_ascii(text.plain), spans=list(text.spans), end="")
        return text

    def begin(self):
        """A clean figure to draw on (plotext keeps data between builds otherwise)."""
        plt = self.plt
        plt.clear_figure()
        return plt

    def clear(self) -> None:
        self.begin()
        self.border_subtitle = ""
        self.refresh()

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:  # pragma: no cover
        raise NotImplementedError
