"""The key bar and the status line: one line each that fits the terminal's width by
leaving out the least important parts whole, never by cutting one ("? He").

``KeyBar`` draws the app's bindings marked ``show`` (the same list the help screen reads):
with their descriptions when they fit, else with short ones, else the least important
keys are left out (``priority`` names the order in which keys are kept: the topic switch,
help, quit and the preset key first). ``fit`` does the same for any list of parts.
"""

from __future__ import annotations

from typing import Callable, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static


def fit(parts: Sequence[tuple[int, str]], width: int, sep: str) -> list[str]:
    """Parts (rank, text) joined by ``sep`` in at most ``width`` characters: the parts of
    highest rank (lowest number) are kept whole, the others left out; the order of the
    parts is kept. A part that alone is wider than ``width`` is kept only if it is the
    most important one."""
    order = sorted(range(len(parts)), key=lambda i: parts[i][0])
    kept: set[int] = set()
    for i in order:
        trial = kept | {i}
        text = sep.join(parts[j][1] for j in sorted(trial))
        if len(text) <= width or not kept:
            kept = trial
    return [parts[j][1] for j in sorted(kept)]


class KeyBar(Static):
    """The footer: "key description" for the bindings shown, fitted to the width."""

    DEFAULT_CSS = """
    KeyBar { height: 1; padding: 0 1; }
    """

    def __init__(self, bindings: Callable[[], Sequence[Binding]], key_display: Callable[[Binding], str],
                 priority: Sequence[str] = (), text: Callable[[str], str] = lambda s: s,
                 **kwargs) -> None:
        """bindings: the bindings to offer (called on each redraw); key_display: how a key
        is written; priority: actions in the order they are kept when room runs out (the
        others follow in their own order); text: the charset's spelling (ASCII mode)."""
        super().__init__("", **kwargs)
        self._bindings = bindings
        self._key_display = key_display
        self._priority = list(priority)
        self._text = text
        self._key = None

    def on_resize(self) -> None:
        self.redraw()

    def entries(self, width: int) -> list[tuple[str, str]]:
        """(key, description) pairs that fit ``width``: full descriptions if they all fit,
        else short ones (the first word), leaving out the least important keys."""
        shown = [b for b in self._bindings() if b.show]
        keys = [self._text(self._key_display(b)) for b in shown]

        def rank(b: Binding, i: int) -> int:
            return self._priority.index(b.action) if b.action in self._priority else len(self._priority) + i

        for short in (False, True):
            descs = [self._text(b.description.split("/")[0].split()[0].lower() if short and b.description
                                else b.description) for b in shown]
            parts = [(rank(b, i), f"{k} {d}") for i, (b, k, d) in enumerate(zip(shown, keys, descs))]
            kept = fit(parts, width, "  ")
            if len(kept) == len(parts) or short:
                index = {p[1]: i for i, p in enumerate(parts)}
                return [(keys[index[t]], descs[index[t]]) for t in kept]
        return []

    def redraw(self) -> None:
        width = max(0, self.content_size.width or self.size.width - 2)
        pairs = self.entries(width)
        key = (width, tuple(pairs))
        if key == self._key:
            return
        self._key = key
        out = Text(no_wrap=True, overflow="crop")
        for i, (k, d) in enumerate(pairs):
            if i:
                out.append("  ")
            out.append(k, style="bold")
            out.append(f" {d}", style="dim")
        self.update(out)
