"""The app's modal screens: the key help (``?``) and the preset-name prompt (``p``)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.scrollbar import ScrollBarRender
from textual.widgets import Input, Static


class AsciiScrollBarRender(ScrollBarRender):
    """A scrollbar without block characters (ASCII mode): the thumb is its colour alone."""

    VERTICAL_BARS = [" "] * 8
    HORIZONTAL_BARS = [" "] * 8


class HelpScreen(ModalScreen):
    """Every binding, generated from the same lists that feed the footer."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close help")]

    def __init__(self, rows: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("action")
        for key, desc in self.rows:
            table.add_row(key, desc)
        with VerticalScroll(id="help-box") as box:
            box.border_title = "keys (escape closes)"
            yield Static(table, id="help-table")

    def on_mount(self) -> None:
        glyphs = getattr(self.app, "glyphs", None)
        if glyphs is not None and glyphs.ascii:
            box = self.query_one("#help-box", VerticalScroll)
            box.vertical_scrollbar.renderer = AsciiScrollBarRender
            box.horizontal_scrollbar.renderer = AsciiScrollBarRender

    def action_dismiss(self) -> None:
        self.dismiss()


class PresetNameScreen(ModalScreen[str | None]):
    """Asks for a preset name; dismisses with the name, or None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, topic: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.topic = topic

    def compose(self) -> ComposeResult:
        with Vertical(id="preset-box") as box:
            box.border_title = f"save {self.topic} params as preset"
            yield Input(placeholder="name (letters, digits, - and _)", id="preset-name")
            yield Static("Enter saves, Escape cancels", id="preset-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
