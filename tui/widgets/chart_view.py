"""The base of the chart-drawn views (trace, histogram, plot, bars): a Textual widget
that draws its ``chart`` (tui/widgets/chart.py) at whatever size it is given.

``show`` builds a new Chart from the frame; ``chart`` keeps it, so tests read what is
drawn (curves, their x and y, the ranges) rather than a picture, and ``text()`` gives the
rendered characters. Without colour (NO_COLOR) or in ASCII mode every curve has its
own marker character.
"""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from textual.strip import Strip
from textual.widget import Widget

from mletui.engine.topic import Frame, View

from ..charset import Glyphs
from .chart import Chart, Look
from .panel import ViewPanel


class ChartView(ViewPanel, Widget):

    DEFAULT_CSS = """
    ChartView { width: 1fr; height: 1fr; }
    """

    def __init__(self, view: View, glyphs: Glyphs, topic: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_view(view, glyphs, topic)
        self.chart: Chart | None = None
        self._strips: tuple[tuple, list[Strip]] | None = None

    @property
    def look(self) -> Look:
        return Look(mono=self.monochrome, ascii=self.glyphs.ascii)

    def draw(self, chart: Chart | None) -> None:
        self.chart = chart
        self._strips = None
        self.refresh()

    def clear(self) -> None:
        self.set_notes([])
        self.set_title_extra("")
        self.draw(None)

    def rows(self, width: int | None = None, height: int | None = None) -> list[str]:
        """The chart's characters at the widget's size (or the one given)."""
        width = self.content_size.width if width is None else width
        height = self.content_size.height if height is None else height
        if self.chart is None:
            return [" " * width] * height
        return ["".join(t for t, _ in row) for row in self.chart.render(width, height, self.look)]

    def text(self) -> str:
        return "\n".join(self.rows())

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size.width, self.content_size.height
        key = (width, height, self.look, id(self.chart))
        if self._strips is None or self._strips[0] != key:
            # the widget's style is read once per drawing, not per line (Textual computes
            # it from the CSS each time it is asked)
            base = self.rich_style
            strips: list[Strip] = []
            if self.chart is not None and width > 0 and height > 0:
                for row in self.chart.render(width, height, self.look):
                    strips.append(Strip([Segment(t, base + s if s is not None else base)
                                         for t, s in row], width))
            self._strips = (key, strips, Strip.blank(width, base))
        strips = self._strips[1]
        if y < len(strips):
            return strips[y]
        return self._strips[2]

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:  # pragma: no cover
        raise NotImplementedError
