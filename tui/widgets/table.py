"""Table: ``Frame.views[source]`` is {"columns": [...], "rows": [[...], ...]}.
Numbers are written compactly; NaN as "nan"."""

from __future__ import annotations

from rich.table import Table
from rich import box
from textual.widgets import Static

from mletui.engine.topic import Frame, View

from .panel import ViewPanel
from ..charset import Glyphs
from .numbers import fmt


class TableView(ViewPanel, Static):

    def __init__(self, view: View, glyphs: Glyphs, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.bind_view(view, glyphs)

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        data = frame.views.get(self.view.source, frame.arrays.get(self.view.source))
        if not isinstance(data, dict):
            self.update("no data", layout=False)
            return
        table = Table(box=box.ASCII if self.glyphs.ascii else box.SIMPLE_HEAD, expand=True,
                      pad_edge=False, padding=(0, 1))
        for col in data.get("columns", []):
            table.add_column(str(col), justify="right")
        for row in data.get("rows", []):
            table.add_row(*(fmt(v) for v in row))
        self.update(table, layout=False)  # fixed size: no layout pass for the whole screen

    def clear(self) -> None:
        self.update("", layout=False)
