"""What every view widget shares, whatever Textual widget it is built on: its View, the
glyph set (Unicode or ASCII), and a bordered box titled with the view's title."""

from __future__ import annotations

from mletui.engine.topic import View

from ..charset import Glyphs


class ViewPanel:
    """Mixin for view widgets; call ``bind_view`` right after the widget's own __init__."""

    needs_history = False

    def bind_view(self, view: View, glyphs: Glyphs) -> None:
        self.view = view
        self.glyphs = glyphs
        self.border_title = view.title
        self.add_class("view")
