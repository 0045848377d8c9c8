"""Readout: the latest frame's scalars, one "label value unit" line each (NaN written
"nan", in bold red), in the order the topic emits them; a standard error (``*_stderr``)
to two significant digits.

Labels and units come from the topic (``Topic.labels``, see labels.py); a scalar without
one is shown by its name. A label too long for the panel is shortened word by word,
never cut with a marker; a value is never cut. When the list is longer than the panel,
↑/↓ (PageUp/PageDown, Home/End) move a selection and the list scrolls with it; the
subtitle says which rows are shown.
"""

from __future__ import annotations

from typing import Any

from functools import lru_cache

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from mletui.engine.topic import Frame

from ..charset import to_ascii
from .labels import _QUALIFIED, abbreviate, describe, fit_parts
from .numbers import finite, fmt


def _grouped(rows: list[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
    """Consecutive rows that share a qualifier ("training loss (kfac_true)", "step time
    (kfac_true)", ...) under one header row ("kfac_true", no value), each indented by a
    space and without it: in compare mode the qualifier took the room and every label
    became two letters ("tr. (kfac_true)")."""
    quals = [_QUALIFIED.match(lab) for lab, _, _ in rows]
    out: list[tuple[str, str, bool]] = []
    i = 0
    while i < len(rows):
        m = quals[i]
        j = i + 1
        while m and j < len(rows) and quals[j] and quals[j].group(2) == m.group(2):
            j += 1
        if m and j - i >= 2:
            out.append((m.group(2)[1:-1], "", False))
            out.extend((" " + quals[k].group(1), rows[k][1], rows[k][2]) for k in range(i, j))
        else:
            out.extend(rows[i:j])
        i = j
    return out


@lru_cache(maxsize=64)
def _style(spec: str) -> Style:
    return Style.parse(spec) if spec else Style()


class Readout(Widget, can_focus=True):

    BINDINGS = [
        Binding("up", "move(-1)", "Prev value", show=False, tooltip="values: select the previous scalar"),
        Binding("down", "move(1)", "Next value", show=False, tooltip="values: select the next scalar"),
        Binding("pageup", "move(-10)", "Page up", show=False, tooltip="values: ten rows up"),
        Binding("pagedown", "move(10)", "Page down", show=False, tooltip="values: ten rows down"),
        Binding("home", "move(-100000)", "First", show=False, tooltip="values: the first scalar"),
        Binding("end", "move(100000)", "Last", show=False, tooltip="values: the last scalar"),
    ]

    selected: reactive[int] = reactive(0)

    def __init__(self, topic: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.topic = topic
        self.border_title = "values"
        self._frame: Frame | None = None
        self._waiting = True
        self.top = 0  # first row shown

    # -- data ---------------------------------------------------------------------------
    def show(self, frame: Frame | None) -> None:
        self._waiting = frame is None
        self._frame = frame
        self.refresh()

    @property
    def names(self) -> list[str]:
        return list(self._frame.scalars) if self._frame is not None else []

    def lines(self, width: int) -> list[tuple[str, str, bool]]:
        """(label, value text, bad) for every scalar, fitted to ``width`` characters."""
        if self._frame is None:
            return []
        rows = []
        for name in self.names:
            v = self._frame.scalars[name]
            label, unit = describe(self.topic, name)
            if self.app_ascii:  # labels may hold Greek letters (β): spelled out in ASCII mode
                label, unit = to_ascii(label), to_ascii(unit)
            # a standard error is an uncertainty: two significant digits, as the tables'
            # 17.396(14) give it (and the columns it frees keep its label whole at 80x24)
            text = fmt(v, digits=2) if "_stderr" in name else fmt(v)
            if unit and cell_len(text) + 1 + cell_len(unit) <= width // 2:
                text = f"{text} {unit}"
            rows.append((label, text, isinstance(v, float) and not finite(v)))
        value_w = self._value_width(rows, width)
        label_w = max(1, width - value_w - 1)
        out = []
        for lab, t, bad in _grouped(rows):
            if not t:                                         # a group's header
                out.append((abbreviate(lab, width), t, bad))
                continue
            # a label may take the part of the value column its own value leaves blank
            room = max(label_w, width - cell_len(t) - 1)
            if lab.startswith(" ") and cell_len(t) <= value_w:  # a row of a group
                out.append((" " + abbreviate(lab[1:], max(1, room - 1)), t, bad))
                continue
            if cell_len(t) <= value_w:
                out.append((abbreviate(lab, room), t, bad))
                continue
            # a long text (a string, e.g. "compiling for L=1024, first time only"): it does not
            # set the column, its label is shortened to a third and the text cut at the end
            lab = abbreviate(lab, max(3, width // 3))
            room = max(1, width - cell_len(lab) - 1)
            if cell_len(t) > room:
                t = t[: max(0, room - 1)] + ("~" if self.app_ascii else "…")
            out.append((lab, t, bad))
        return out

    @staticmethod
    def _value_width(rows: list[tuple[str, str, bool]], width: int) -> int:
        """The value column: as wide as the widest value that takes at most half the
        panel (numbers always do); a longer text is laid out on its own row."""
        fits = [cell_len(t) for _, t, _ in rows if cell_len(t) <= max(10, width // 2)]
        return max(fits, default=0)

    # -- keys ---------------------------------------------------------------------------
    def action_move(self, delta: int) -> None:
        n = len(self.lines(max(self.content_size.width, 8)))   # group headers are rows too
        if n:
            self.selected = max(0, min(n - 1, self.selected + delta))

    def watch_selected(self, value: int) -> None:
        self._scroll_to(value)
        self.refresh()

    def _scroll_to(self, row: int) -> None:
        h = max(1, self.content_size.height)
        if row < self.top:
            self.top = row
        elif row >= self.top + h:
            self.top = row - h + 1

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- drawing ------------------------------------------------------------------------
    def _rows(self) -> list[list[tuple[str, str]]]:
        """The shown rows as (text, style) runs at the widget's size; sets the subtitle."""
        if self._waiting:
            self._subtitle("")
            return [[("waiting for the first frame", "dim")]]
        width, height = max(self.content_size.width, 8), max(self.content_size.height, 1)
        rows = self.lines(width)
        n = len(rows)
        self.top = max(0, min(self.top, n - height))
        self._scroll_to(min(self.selected, max(0, n - 1)))
        shown = rows[self.top:self.top + height]
        if n > height:
            last = self.top + len(shown)
            more = ("↑" if self.top else "") + ("↓" if last < n else "")
            if self.app_ascii:
                more = more.replace("↑", "^").replace("↓", "v")
            self._subtitle(fit_parts([("", f"{self.top + 1}-{last} of {n} {more}".strip())],
                                             max(0, self.size.width - 6)))
        else:
            self._subtitle("")
        value_w = self._value_width(rows, width)
        out = []
        for i, (label, text, bad) in enumerate(shown):
            row = self.top + i
            style = "reverse" if (row == self.selected and self.has_focus) else ""
            if not text:                          # a group's header: its qualifier, bold
                out.append([(label.ljust(width), ("bold " + style).strip())])
                continue
            if cell_len(text) > value_w:   # a long text: right after its label
                gap = 1
            else:                          # the value's right edge at the panel's
                gap = max(1, width - cell_len(label) - cell_len(text))
            out.append([(label + " " * gap, ("dim " + style).strip()),
                        (text, ("bold red " + style).strip() if bad else style)])
        return out

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="crop")
        rows = self._rows()
        for i, runs in enumerate(rows):
            for text, style in runs:
                out.append(text, style=style)
            if i < len(rows) - 1:
                out.append("\n")
        return out

    def render_line(self, y: int) -> Strip:
        """The rows as strips, built once per frame, size, selection and focus (Textual's
        conversion of a Text on every refresh was most of this panel's cost)."""
        width = self.content_size.width

        def key() -> tuple:
            return (self._waiting, width, self.content_size.height, self.selected, self.has_focus, self.top)

        cached = getattr(self, "_strips", None)
        if cached is None or cached[0] is not self._frame or cached[1] != key():
            base = self.rich_style
            strips = []
            for runs in self._rows():          # may scroll (self.top): the key is read after
                segs = [Segment(t, base + _style(st)) for t, st in runs]
                strips.append(Strip(segs).crop_extend(0, width, base))
            cached = self._strips = (self._frame, key(), strips, Strip.blank(width, base))
        strips = cached[2]
        return strips[y] if 0 <= y < len(strips) else cached[3]

    def _subtitle(self, text: str) -> None:
        """Set the subtitle only when it changes: setting one repaints, and this is
        called from render (a repaint each time would render again)."""
        if text != getattr(self, "_subtitle_set", None):
            self._subtitle_set = text
            self.border_subtitle = text

    @property
    def app_ascii(self) -> bool:
        try:
            return "ascii" in self.app.classes or bool(getattr(self.app, "ascii", False))
        except Exception:
            return False
