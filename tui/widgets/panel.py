"""What every view widget shares, whatever Textual widget it is built on: its View, the
glyph set (Unicode or ASCII), the topic (for labels and the step unit), and a bordered
box titled with the view's title.

Titles and subtitles are fitted to the box here (labels abbreviated, whole notes left
out, numbers never cut), so Textual never has to cut them with an ellipsis (which would
also put a non-ASCII character on an ASCII terminal).
"""

from __future__ import annotations

from typing import Any

from mletui.engine.topic import View

from ..charset import Glyphs
from .labels import describe, fit_parts


class ViewPanel:
    """Mixin for view widgets; call ``bind_view`` right after the widget's own __init__."""

    needs_history = False

    def bind_view(self, view: View, glyphs: Glyphs, topic: Any = None) -> None:
        self.view = view
        self.glyphs = glyphs
        self.topic = topic
        self._title_extra = ""
        self._notes: list[tuple[str, str]] = []
        self.add_class("view")
        self._fit_border()

    # -- labels -----------------------------------------------------------------------
    def label(self, name: str) -> str:
        return describe(self.topic, name)[0]

    def unit(self, name: str) -> str:
        return describe(self.topic, name)[1]

    @property
    def step_unit(self) -> str:
        return getattr(self.topic, "step_unit", None) or "step"

    @property
    def monochrome(self) -> bool:
        """NO_COLOR: draw without any colour."""
        try:
            return bool(getattr(self.app, "no_color", False))
        except Exception:  # not mounted
            return False

    # -- the box ------------------------------------------------------------------------
    def set_title_extra(self, extra: str) -> None:
        """Say more in the title when there is room ("... : per-replica m, 8 x 40")."""
        self._title_extra = extra
        self._fit_border()

    def set_notes(self, parts: list[tuple[str, str]]) -> None:
        """The subtitle, as (label, value) parts in priority order."""
        self._notes = list(parts)
        self._fit_border()

    @property
    def notes_text(self) -> str:
        """Every note, unfitted (what the subtitle would say with room to spare)."""
        return " | ".join(f"{a} {b}".strip() for a, b in self._notes)

    def _border_room(self) -> int:
        width = self.size.width if self.size.width else 80
        return max(0, width - 6)

    def _fit_border(self) -> None:
        room = self._border_room()
        title = self.view.title
        extra = self._title_extra
        if extra and len(title) + 2 + len(extra) <= room:
            title = f"{title}: {extra}"
        elif extra and room - len(extra) - 2 >= 8:  # what was binned matters more than words
            title = f"{self._cut(title, room - len(extra) - 2)}: {extra}"
        border = (self._cut(title, room), fit_parts(self._notes, room))
        if border != getattr(self, "_border_set", None):  # setting one always repaints
            self._border_set = border
            self.border_title, self.border_subtitle = border

    def _cut(self, title: str, room: int) -> str:
        """A title in ``room`` characters: cut after a whole word, marked with an ellipsis
        (``~`` in ASCII mode); a title has no numbers to lose."""
        if len(title) <= room:
            return title
        mark = "~" if self.glyphs.ascii else "…"
        head = title[: max(0, room - 1)]
        if " " in head and not title[len(head)].isspace():
            head = head[: head.rfind(" ")]
        return head.rstrip(" ,;:(") + mark if room > 1 else ""

    def on_resize(self) -> None:
        self._fit_border()
