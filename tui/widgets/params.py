"""ParamPanel: the topic's parameters, edited from the keyboard.

↑/↓ select a parameter, ←/→ step it (``Param.nudge``: log steps where the Param says
so, choices cycle, bools toggle), Enter opens an input for an exact value (Escape
cancels). Every value goes through ``Param.parse`` / ``Param.validate`` and
``Runner.set`` (which runs ``Topic.check``): a rejected value shows its ParamError
message on the panel's message line and the run goes on unchanged.

Values shown are the runner's (pending edits included). Parameters marked with the
re-init glyph (↻, ASCII ``*``) re-initialise the run when changed; the others apply
live, between two steps.

The list is as tall as the panel allows (its share of the side column, less the message
line and, while typing, the input box) and scrolls with the selection; the panel's
subtitle says which rows are shown. The input box sits above the list, so it is on
screen whatever is selected.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Static

from mletui.engine.params import Param, ParamError
from mletui.engine.topic import Topic

from ..charset import Glyphs


class ParamList(Widget, can_focus=True):
    """The list of parameters; owns the arrow keys and Enter."""

    BINDINGS = [
        Binding("up", "move(-1)", "Prev param", show=False, tooltip="select the previous parameter"),
        Binding("down", "move(1)", "Next param", show=False, tooltip="select the next parameter"),
        Binding("left", "nudge(-1)", "Step down", show=False,
                tooltip="step the parameter down (log steps where its range says log)"),
        Binding("right", "nudge(1)", "Step up", show=False, tooltip="step the parameter up"),
        Binding("enter", "edit", "Type value", tooltip="type an exact value"),
    ]

    selected: reactive[int] = reactive(0)

    def __init__(self, panel: "ParamPanel", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.panel = panel

    top = 0  # first row shown

    def get_content_height(self, container, viewport, width: int) -> int:
        rows = len(self.panel.topic.params) or 1
        legend = 1 if any(not p.live for p in self.panel.topic.params) else 0
        return max(1, min(rows + legend, self.budget()))

    def budget(self) -> int:
        """Lines the list may use: the panel's largest height less its border, the message
        line and the input box when it is open."""
        panel = self.panel
        parent = panel.parent
        try:
            limit = parent.size.height if parent is not None else self.app.size.height
            max_h = panel.styles.max_height
            if max_h is not None and parent is not None:
                limit = min(limit, int(max_h.resolve(parent.size, self.app.size)))
            limit -= panel.styles.gutter.height
            limit -= panel.query_one("#param-message").outer_size.height
            if panel.editing:
                limit -= panel.query_one("#param-input").outer_size.height or 3
        except Exception:  # not mounted yet
            return 1000
        return max(2, limit)

    def window(self, height: int) -> tuple[int, int]:
        """First and last+1 parameter rows shown in ``height`` lines (one goes to the
        legend line when some params re-initialise), keeping the selection in view."""
        n = len(self.panel.topic.params)
        legend = 1 if any(not p.live for p in self.panel.topic.params) else 0
        rows = max(1, height - legend) if n + legend > height else n
        sel = self.selected % n if n else 0
        if sel < self.top:
            self.top = sel
        elif sel >= self.top + rows:
            self.top = sel - rows + 1
        self.top = max(0, min(self.top, max(0, n - rows)))
        return self.top, min(n, self.top + rows)

    def render(self) -> Text:
        first, last = self.window(self.size.height)
        n = len(self.panel.topic.params)
        self.panel.border_subtitle = f"{first + 1}-{last} of {n}" if (last - first) < n else ""
        return self.panel.render_rows(self.size.width, self.selected, self.has_focus, first, last)

    def watch_selected(self, value: int) -> None:
        self.panel.show_help()
        self.refresh()

    def action_move(self, delta: int) -> None:
        n = len(self.panel.topic.params)
        if n:
            self.selected = (self.selected + delta) % n

    def action_nudge(self, direction: int) -> None:
        self.panel.nudge(direction)

    def action_edit(self) -> None:
        self.panel.open_input()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


class ParamPanel(Vertical):
    """Params list + an input for exact values + a message line (help or error)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False, tooltip="cancel typing a value")]

    class Refused(Message):
        """A value was refused (its ParamError's text): the pane repeats it on the event line."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, topic: Topic, glyphs: Glyphs, values: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.topic = topic
        self.glyphs = glyphs
        self.runner = None
        self._values = dict(values) if values is not None else topic.default_params()
        self.border_title = "params"

    def compose(self) -> ComposeResult:
        # The input above the list: on screen whichever row is selected.
        # select_on_focus would select the text after the focus lands, possibly after the
        # first typed key: open_input selects it at once instead (typing replaces it).
        yield Input(id="param-input", classes="hidden", select_on_focus=False)
        yield ParamList(self, id="param-list")
        yield Static("", id="param-message")

    def on_mount(self) -> None:
        self.show_help()

    # -- values ----------------------------------------------------------------
    @property
    def values(self) -> dict[str, Any]:
        """The full parameter set shown: the runner's (edits pending included), or the
        panel's own while there is no runner."""
        if self.runner is not None:
            return {p.name: self.value(p.name) for p in self.topic.params}
        return dict(self._values)

    def value(self, name: str) -> Any:
        if self.runner is not None:
            try:
                return self.runner.pending_value(name)
            except KeyError:
                pass
        return self._values.get(name)

    @property
    def current(self) -> Param | None:
        params = self.topic.params
        if not params:
            return None
        return params[self.query_one(ParamList).selected % len(params)]

    def select(self, name: str) -> None:
        names = [p.name for p in self.topic.params]
        self.query_one(ParamList).selected = names.index(name)

    # -- drawing ----------------------------------------------------------------
    def render_rows(self, width: int, selected: int, focused: bool, first: int = 0,
                    last: int | None = None) -> Text:
        """Rows ``first`` to ``last`` (exclusive) of the list, then the re-init legend."""
        params = self.topic.params
        if not params:
            return Text("(no parameters)", style="dim")
        last = len(params) if last is None else last
        name_w = min(max(len(p.name) for p in params), max(4, width - 12))
        out = Text(no_wrap=True, overflow="crop")
        for i, p in enumerate(params):
            if not first <= i < last:
                continue
            mark = self.glyphs.cursor if i == selected else " "
            live = " " if p.live else self.glyphs.live
            value = p.format(self.value(p.name))
            # the value column, widened into the part of the name column this row's own
            # name leaves blank ("dataset bars_stripes" beside a column set by "teacher_seed")
            name, span = p.name[:name_w], max(2, width - 4)
            room = max(1, span - name_w, min(len(value), span - len(name)))
            if len(value) > room:
                value = value[: max(1, room - 1)] + "~"
            line = f"{mark}{name:<{max(0, span - room)}} {value:>{room}}{live}"
            style = "reverse" if i == selected and focused else ("bold" if i == selected else "")
            out.append(line, style=style)
            if i < last - 1:
                out.append("\n")
        if any(not p.live for p in params):
            out.append(f"\n{self.glyphs.live} re-initialises", style="dim")
        return out

    def refresh_values(self) -> None:
        """Redraw the list when a value changed (called on every redraw tick)."""
        shown = tuple(repr(self.value(p.name)) for p in self.topic.params)
        if shown != getattr(self, "_shown_values", None):
            self._shown_values = shown
            self.query_one(ParamList).refresh()

    def show_help(self) -> None:
        p = self.current
        if p is None:
            return
        desc = p.describe()
        rng = desc["range"]
        extra = "" if not rng else f" {rng}" if rng.startswith("[") else f" ({rng})"
        self._message(f"{p.name}: {p.help}{extra}", error=False)

    def _message(self, text: str, error: bool) -> None:
        try:
            msg = self.query_one("#param-message", Static)
        except Exception:
            return
        msg.update(Text(self.glyphs.text(text), style="bold red" if error else "dim"))
        msg.set_class(error, "error")
        if error:
            self.post_message(self.Refused(text))

    @property
    def message(self) -> str:
        return str(self.query_one("#param-message", Static).render())

    # -- edits ----------------------------------------------------------------
    def _apply(self, p: Param, value: Any) -> bool:
        """Validate and queue one value (typed or text). Shows the outcome; True if accepted."""
        try:
            if self.runner is None:  # the same path as a runner's edit: Topic.resolve
                edit = {p.name: value}
                self._values = self.topic.resolve(texts=edit, base=self._values) \
                    if isinstance(value, str) else self.topic.resolve(edit, base=self._values)
                typed = self._values[p.name]
            else:
                typed = self.runner.set(p.name, value)
        except ParamError as exc:
            self._message(str(exc), error=True)
            self.refresh_values()
            return False
        note = "" if p.live else " (re-initialises)"
        self._message(f"{p.name} = {p.format(typed)}{note}", error=False)
        self.refresh_values()
        return True

    def nudge(self, direction: int) -> None:
        p = self.current
        if p is None:
            return
        try:
            new = p.nudge(self.value(p.name), direction)
        except ParamError as exc:
            self._message(str(exc), error=True)
            return
        self._apply(p, new)

    def open_input(self) -> None:
        p = self.current
        if p is None:
            return
        box = self.query_one("#param-input", Input)
        box.value = p.format(self.value(p.name))
        box.placeholder = f"{p.name} ({p.kind})"
        box.border_title = f"{p.name} ="
        box.remove_class("hidden")
        box.select_all()
        box.focus()
        self.query_one(ParamList).refresh(layout=True)
        self._message(f"type a value for {p.name}, Enter to apply, Escape to cancel", error=False)

    def close_input(self) -> None:
        box = self.query_one("#param-input", Input)
        box.add_class("hidden")
        self.query_one(ParamList).refresh(layout=True)
        self.query_one(ParamList).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        p = self.current
        self.close_input()
        if p is not None:
            self._apply(p, event.value)

    def action_cancel(self) -> None:
        box = self.query_one("#param-input", Input)
        if not box.has_class("hidden"):
            self.close_input()
            self.show_help()

    @property
    def editing(self) -> bool:
        return not self.query_one("#param-input", Input).has_class("hidden")
