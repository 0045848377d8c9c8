"""Heatmap: a 2-D float array (rows top to bottom), or {"z": 2-D, "extent": (x0, x1, y0, y1)}.

With colour: half-block cells, foreground = upper row's colour, background = lower
row's, on a blue-to-yellow scale between the finite minimum and maximum, or between
the ends of the data's ``scale`` when it fixes one (two heatmaps meant to be compared
share it; values beyond it take the end colour and are counted in the subtitle). Without
colour (NO_COLOR) or in ASCII mode: one shade character per cell from a ramp.
Non-finite entries are drawn blank and counted in the subtitle, less the data's
``gutters`` (NaN cells laid out between tiled images). The rows are drawn once
per frame and size, not once per line asked for.
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
        self._scale: tuple[float, float] | None = None   # the colour scale's ends
        self._strips: tuple[tuple, list[Strip]] | None = None

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        data = frame.views.get(self.view.source, frame.arrays.get(self.view.source))
        fixed, gutters = None, 0
        if isinstance(data, dict):
            fixed = data.get("scale")
            gutters = int(data.get("gutters") or 0)
            data = data.get("z")
        if data is None:
            return
        z = np.asarray(data, dtype=float)
        if z.ndim != 2 or z.size == 0:
            return
        self._z = z
        self._strips = None
        ok = np.isfinite(z)
        bad = int((~ok).sum()) - gutters          # the gutters between tiles are layout
        notes = [("", f"{bad} nan not drawn")] if bad > 0 else []
        if fixed is not None:
            lo, hi = float(fixed[0]), float(fixed[1])
            self._scale = (lo, hi)
            beyond = int((z[ok] < lo).sum() + (z[ok] > hi).sum())
            notes += [("scale", f"{fmt(lo)}–{fmt(hi)}" if not self.glyphs.ascii else f"{fmt(lo)}..{fmt(hi)}")]
            if beyond:
                notes.append(("", f"{beyond} beyond the scale"))
        elif ok.any():
            self._scale = (float(z[ok].min()), float(z[ok].max()))
            notes += [("min", fmt(self._scale[0])), ("max", fmt(self._scale[1]))]
        else:
            self._scale = None
            notes.append(("", "no finite values"))
        self.set_notes(notes)
        self.refresh()

    def clear(self) -> None:
        self._z = None
        self._strips = None
        self.set_notes([])
        self.refresh()

    def _monochrome(self) -> bool:
        return self.glyphs.ascii or getattr(self.app, "no_color", False)

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size.width, self.content_size.height
        key = (width, height, self._monochrome(), id(self._z))
        if self._strips is None or self._strips[0] != key:
            base = self.rich_style
            self._strips = (key, self._draw(width, height, base), Strip.blank(width, base))
        strips = self._strips[1]
        return strips[y] if 0 <= y < len(strips) else self._strips[2]

    def _draw(self, width: int, height: int, base: Style) -> list[Strip]:
        """Every row of the picture at this size, drawn once per frame and size."""
        if self._z is None or width < 1 or height < 1:
            return []
        z = self._z
        lo, hi = self._scale if self._scale is not None else (0.0, 1.0)
        span = hi - lo if hi > lo else 1.0
        if self._monochrome():
            ramp = self.glyphs.ramp
            strips = []
            for row in resample(z, height, width):
                chars = []
                for v in row:
                    if not np.isfinite(v):
                        chars.append(" ")
                    else:
                        t = min(1.0, max(0.0, (v - lo) / span))
                        chars.append(ramp[min(len(ramp) - 1, int(t * len(ramp)))])
                strips.append(Strip([Segment("".join(chars), base)], width))
            return strips
        pix = resample(z, 2 * height, width)
        t = np.clip((pix - lo) / span, 0.0, 1.0)
        cache: dict[float, Color] = {}

        def col(v: float, finite: bool) -> Color | None:
            if not finite:
                return None
            c = cache.get(v)
            if c is None:
                c = cache[v] = colour(v)
            return c

        fin = np.isfinite(pix)
        strips = []
        for y in range(height):
            top, bottom = t[2 * y], t[2 * y + 1]
            ft, fb = fin[2 * y], fin[2 * y + 1]
            segments = [Segment(self.glyphs.top, base + Style(color=col(a, p), bgcolor=col(b, q)))
                        for a, b, p, q in zip(top.tolist(), bottom.tolist(), ft.tolist(), fb.tolist())]
            strips.append(Strip(segments, width))
        return strips
