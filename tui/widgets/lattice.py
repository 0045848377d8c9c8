"""Lattice: a 2-D array of spins (+1/-1, or 1/0), drawn with half-block characters.

Each text cell shows two lattice rows, its upper half (▀) and lower half (▄), so a
terminal cell (about twice as tall as wide) holds two square pixels. A lattice larger
than the widget is downsampled by an integer factor k: each pixel is the majority of
a k x k block (ties show as down). In ASCII mode the cell characters are
``#`` (both up), ``"`` (upper), ``.`` (lower) and space. In colour, down spins are grey on
the panel's darker background, so a lattice with every spin down is still seen as one
(without colour its subtitle says "0% up").
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from mletui.engine.topic import Frame, View

from .panel import ViewPanel
from ..charset import Glyphs

UP = Style(color="bright_white")
SPINS = Style(color="bright_white", bgcolor="grey30")   # down spins: a grey the panel's background is not


def spins_up(data) -> np.ndarray:
    """Boolean (n, m): True where the spin is up (value > 0)."""
    arr = np.asarray(data)
    if arr.ndim == 3:  # a batch of replicas: show the first
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"lattice view needs a 2-D array, got shape {arr.shape}")
    return arr > 0


def downsample(up: np.ndarray, max_rows: int, max_cols: int) -> np.ndarray:
    """Majority-vote k x k blocks with the smallest integer k such that the result fits
    in max_rows x max_cols pixels (rows are half text lines)."""
    n, m = up.shape
    if n == 0 or m == 0 or max_rows < 1 or max_cols < 1:
        return np.zeros((0, 0), dtype=bool)
    k = max(1, -(-n // max_rows), -(-m // max_cols))
    if k == 1:
        return up
    nn, mm = n // k, m // k
    if nn == 0 or mm == 0:
        return np.zeros((0, 0), dtype=bool)
    blocks = up[: nn * k, : mm * k].reshape(nn, k, mm, k)
    return blocks.mean(axis=(1, 3)) > 0.5


def cells(up: np.ndarray, glyphs: Glyphs) -> list[str]:
    """Pixels (2r, c) -> r text lines of half-block characters."""
    n, m = up.shape
    if n % 2:
        up = np.vstack([up, np.zeros((1, m), dtype=bool)])
    top, bottom = up[0::2], up[1::2]
    code = top.astype(np.int8) * 2 + bottom.astype(np.int8)
    table = np.array([glyphs.empty, glyphs.bottom, glyphs.top, glyphs.both])
    return ["".join(row) for row in table[code]]


class LatticeView(ViewPanel, Widget):

    DEFAULT_CSS = """
    LatticeView { width: 1fr; height: 1fr; }
    """

    def __init__(self, view: View, glyphs: Glyphs, topic=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bind_view(view, glyphs, topic)
        self._up: np.ndarray | None = None
        self._lines: list[str] = []
        self._fit: tuple[int, int] = (0, 0)

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        data = frame.views.get(self.view.source, frame.arrays.get(self.view.source))
        if data is None:
            return
        self._up = spins_up(data)
        n, m = self._up.shape
        self.set_notes([("", f"{n}x{m}"), ("", f"{self._up.mean():.0%} up")])
        self._fit = (0, 0)
        self.refresh()

    def clear(self) -> None:
        self._up = None
        self._lines = []
        self.set_notes([])
        self.refresh()

    def _layout_lines(self) -> list[str]:
        width, height = self.content_size.width, self.content_size.height
        if self._up is None or width < 1 or height < 1:
            return []
        if self._fit != (width, height):
            small = downsample(self._up, 2 * height, width)
            self._lines = cells(small, self.glyphs)
            self._fit = (width, height)
        return self._lines

    def render_line(self, y: int) -> Strip:
        lines = self._layout_lines()
        width, height = self.content_size.width, self.content_size.height
        key = (width, height)
        cached = getattr(self, "_strips", None)
        if cached is None or cached[0] != key or cached[3] is not lines:
            # drawn once per frame and size; the widget's style is read once, not per line
            base = self.rich_style
            spins = base + (UP if self.monochrome else SPINS)
            top = max(0, (height - len(lines)) // 2)
            strips = {}
            for row, text in enumerate(lines):
                left = max(0, (width - len(text)) // 2)
                strips[top + row] = Strip([Segment(" " * left, base), Segment(text, spins),
                                           Segment(" " * max(0, width - left - len(text)), base)], width)
            cached = self._strips = (key, strips, Strip.blank(width, base), lines)
        return cached[1].get(y, cached[2])
