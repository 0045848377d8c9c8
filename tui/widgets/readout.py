"""Readout: the latest frame's scalars as "name value" lines (NaN written "nan").

Scalars named in a trace's ``reference`` are shown beside the measured series as
"measured vs exact" by the trace itself; here every scalar is listed once, in the
order the topic emits them."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from mletui.engine.topic import Frame

from .numbers import finite, fmt


class Readout(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "values"

    def show(self, frame: Frame | None) -> None:
        if frame is None:
            self.update(Text("waiting for the first frame", style="dim"), layout=False)
            return
        names = list(frame.scalars)
        if not names:
            self.update("", layout=False)
            return
        room = max(self.content_size.width, 16)
        values = [fmt(frame.scalars[n]) for n in names]
        value_w = min(max(len(v) for v in values), room // 2)
        name_w = max(4, room - value_w - 1)
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, (name, text) in enumerate(zip(names, values)):
            v = frame.scalars[name]
            bad = isinstance(v, float) and not finite(v)
            label = name if len(name) <= name_w else name[: name_w - 1] + "~"
            out.append(f"{label:<{name_w}} ", style="dim")
            out.append(f"{text:>{value_w}}", style="bold red" if bad else "")
            if i < len(names) - 1:
                out.append("\n")
        self.update(out, layout=False)  # fixed size: no layout pass for the whole screen
