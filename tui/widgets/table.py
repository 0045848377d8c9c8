"""Table: ``Frame.views[source]`` is {"columns": [...], "rows": [[...], ...]}.

Cells are numbers, ``(value, stderr)`` pairs, ``(value, stderr, rhat)`` triples, None or
short strings (engine/views.py ``Cell``); they are written here (numbers.cell_text), never pre-formatted by the
topic. The table fits its width without cutting a number: first fewer digits (5, 4, 3
then 2 significant; "v ± e", then "v(ee)", "v(e)"), then shorter labels (column headers
and the row labels of the first column abbreviated word by word, kept distinct), and
only as a last resort fewer columns (the subtitle says how many are not shown).
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

from mletui.engine.topic import Frame, View

from ..charset import Glyphs
from .labels import abbreviate
from .numbers import cell_text
from .panel import ViewPanel

GAP = 2
MIN_LABEL = 4


def _is_label_column(rows: list[list[Any]], j: int) -> bool:
    return j == 0 and bool(rows) and all(isinstance(r[0], str) for r in rows if len(r) > 0)


def _shorten(label: str, width: int) -> str:
    """Word by word only ("observable" -> "obs."): never drops a word, a digit or a sign."""
    return abbreviate(label, width, cut=False)


# (digits level, labels shortened), tried in order (cell_text levels: 0 "v ± e" and 5
# significant digits, 1 "v(ee)" and 4, 2 "v(e)" and 3, 3 "v(e)" and 2): one digit fewer
# before shorter labels, but shorter labels before a second digit less, and 2 digits last
CANDIDATES = ((0, False), (1, False), (0, True), (1, True), (2, False), (2, True), (3, False), (3, True))


def layout(columns: list[str], rows: list[list[Any]], width: int, ascii: bool = False
           ) -> tuple[list[str], list[list[str]], int]:
    """Headers and cell texts that fit ``width``, and how many columns were left out."""
    n = max([len(columns)] + [len(r) for r in rows]) if (columns or rows) else 0
    heads = [str(c) for c in columns] + [""] * (n - len(columns))
    grid = [list(r) + [None] * (n - len(r)) for r in rows]
    label_col = _is_label_column(grid, 0)

    def need(hs: list[str], body: list[list[str]], keep: int) -> int:
        ws = [max([cell_len(hs[j])] + [cell_len(r[j]) for r in body]) for j in range(keep)]
        return sum(ws) + GAP * max(0, keep - 1)

    for keep in range(n, 0, -1):
        for level, short in CANDIDATES:
            body = [[cell_text(c, level, ascii) for c in r[:keep]] for r in grid]
            hs = list(heads[:keep])
            if short:
                first = 1 if label_col else 0
                num_w = [max([0] + [cell_len(r[j]) for r in body]) for j in range(keep)]
                for j in range(first, keep):
                    hs[j] = _shorten(hs[j], max(num_w[j], MIN_LABEL))
                if label_col:
                    others = need(hs, body, keep) - max([cell_len(hs[0])] + [cell_len(r[0]) for r in body])
                    room = max(MIN_LABEL, width - others)
                    labels = [r[0] for r in body]
                    shorts = [_shorten(lab, room) for lab in labels]
                    if len(set(shorts)) < len(set(labels)):
                        continue
                    hs[0] = _shorten(hs[0], room)
                    body = [[x] + r[1:] for x, r in zip(shorts, body)]
            if need(hs, body, keep) <= width:
                return hs, body, n - keep
    return [], [], n


class TableView(ViewPanel, Widget):

    DEFAULT_CSS = """
    TableView { width: 1fr; height: 1fr; }
    """

    def __init__(self, view: View, glyphs: Glyphs, topic: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_view(view, glyphs, topic)
        self._data: dict | None = None

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        data = frame.views.get(self.view.source, frame.arrays.get(self.view.source))
        self._data = data if isinstance(data, dict) else None
        self._fit_notes()
        self.refresh()

    def clear(self) -> None:
        self._data = None
        self.set_notes([])
        self.refresh()

    def cells(self, width: int | None = None) -> tuple[list[str], list[list[str]], int]:
        """(headers, cell texts, columns left out) at the widget's width (or the one given)."""
        if self._data is None:
            return [], [], 0
        width = self.content_size.width if width is None else width
        cached = getattr(self, "_cells", None)       # the notes and the drawing ask alike
        if cached is not None and cached[0] is self._data and cached[1] == width:
            return cached[2]
        out = layout(list(self._data.get("columns", [])), [list(r) for r in self._data.get("rows", [])],
                     max(1, width), self.glyphs.ascii)
        self._cells = (self._data, width, out)
        return out

    def _fit_notes(self) -> None:
        if self._data is None:
            self.set_notes([("", "no data")])
            return
        _, _, hidden = self.cells() if self.content_size.width else ([], [], 0)
        self.set_notes([("", f"{hidden} column{'s' if hidden > 1 else ''} hidden: widen the pane")] if hidden else [])

    def on_resize(self) -> None:
        self._fit_notes()
        self._fit_border()

    def render(self) -> Text:
        heads, body, _ = self.cells()
        if not heads and not body:
            return Text("no data" if self._data is None else "", style="dim")
        keep = len(heads)
        ws = [max([cell_len(heads[j])] + [cell_len(r[j]) for r in body]) for j in range(keep)]
        label_col = _is_label_column([list(r) for r in self._data.get("rows", [])], 0)
        out = Text(no_wrap=True, overflow="crop")
        gap = " " * GAP

        def line(cells: list[str], style: str = "") -> None:
            parts = []
            for j, c in enumerate(cells):
                pad = " " * (ws[j] - cell_len(c))
                parts.append(c + pad if (j == 0 and label_col) else pad + c)
            out.append(gap.join(parts), style=style)
            out.append("\n")

        line(heads, "bold")
        out.append(("-" if self.glyphs.ascii else "─") * (sum(ws) + GAP * (keep - 1)) + "\n", style="dim")
        for r in body:
            line(r)
        out.rstrip()
        return out
