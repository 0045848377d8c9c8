"""Heatmap: a 2-D float array (rows top to bottom), or {"z": 2-D, "extent": (x0, x1, y0, y1)}.

With colour: half-block cells, foreground = upper row's colour, background = lower
row's, on a blue-to-yellow scale between the finite minimum and maximum. Without
colour (NO_COLOR) or in ASCII mode: one shade character per cell from a ramp.
Non-finite entries are drawn blank and counted in the subtitle.
"""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from mletui.engine.topic import Frame, View

from .panel import ViewPanel
from ..charset import Glyphs
from .numbers import fmt

# A viridis-like scale: (position, r, g, b).
_SCALE = np.array([
    (0.00, 68, 1, 84), (0.25, 59, 82, 139), (0.50, 33, 145, 140),
    (0.75, 94, 201, 98), (1.00, 253, 231, 37),
], dtype=float)


def colour(t: float) -> Color:
    r, g, b = (int(np.interp(t, _SCALE[:, 0], _SCALE[:, i])) for i in (1, 2, 3))
    return Color.from_rgb(r, g, b)


def resample(z: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Nearest-neighbour resampling of z to (rows, cols) (up or down)."""
    n, m = z.shape
    ri = (np.arange(rows) * n // max(rows, 1)).clip(0, n - 1)
    ci = (np.arange(cols) * m // max(cols, 1)).clip(0, m - 1)
    return z[np.ix_(ri, ci)]


class HeatmapView(ViewPanel, Widget):

    DEFAULT_CSS = """
    HeatmapView { width: 1fr; height: 1fr; }
    """

    def __init__(self, view: View, glyphs: Glyphs, topic=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bind_view(view, glyphs, topic)
        self._z: np.ndarray | None = None

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        data = frame.views.get(self.view.source, frame.arrays.get(self.view.source))
        if isinstance(data, dict):
            data = data.get("z")
        if data is None:
            return
        z = np.asarray(data, dtype=float)
        if z.ndim != 2 or z.size == 0:
            return
        self._z = z
        ok = np.isfinite(z)
        bad = int((~ok).sum())
        notes = [("", f"{bad} nan not drawn")] if bad else []
        if ok.any():
            notes += [("min", fmt(float(z[ok].min()))), ("max", fmt(float(z[ok].max())))]
        else:
            notes.append(("", "no finite values"))
        self.set_notes(notes)
        self.refresh()

    def clear(self) -> None:
        self._z = None
        self.set_notes([])
        self.refresh()

    def _monochrome(self) -> bool:
        return self.glyphs.ascii or getattr(self.app, "no_color", False)

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size.width, self.content_size.height
        base = self.rich_style
        if self._z is None or width < 1 or height < 1:
            return Strip.blank(width, base)
        z = self._z
        ok = np.isfinite(z)
        lo = float(z[ok].min()) if ok.any() else 0.0
        hi = float(z[ok].max()) if ok.any() else 1.0
        span = hi - lo if hi > lo else 1.0
        if self._monochrome():
            row = resample(z, height, width)[y]
            ramp = self.glyphs.ramp
            chars = []
            for v in row:
                if not np.isfinite(v):
                    chars.append(" ")
                else:
                    chars.append(ramp[min(len(ramp) - 1, int((v - lo) / span * len(ramp)))])
            return Strip([Segment("".join(chars), base)], width)
        pix = resample(z, 2 * height, width)
        top, bottom = pix[2 * y], pix[2 * y + 1]
        segments = []
        for a, b in zip(top, bottom):
            fg = colour((a - lo) / span) if np.isfinite(a) else None
            bg = colour((b - lo) / span) if np.isfinite(b) else None
            segments.append(Segment(self.glyphs.top, base + Style(color=fg, bgcolor=bg)))
        return Strip(segments, width)
