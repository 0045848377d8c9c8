"""A terminal chart: curves, points and bars on a character grid, with round ticks, axis
labels, a legend placed where it covers least, and outliers clipped with a marker.

No Textual here: ``Chart`` is the data a view decided to draw (read it back in tests),
``Chart.render(width, height, look)`` the rows of (text, style) runs for one size.

Drawing modes (``Look``):
  colour   every curve in braille dots (2 x 4 per cell), a distinct colour per curve;
  mono     NO_COLOR: no colour at all, a distinct marker character per curve (the first
           series keeps braille dots in Unicode);
  ascii    only ASCII characters: ``*``, ``o``, ``x``, ``%`` ... per series, ``-``, ``=``
           for references, ``#`` bars, ``^``/``v`` for clipped points.

A curve is drawn through its consecutive points; a NaN in x or y lifts the pen (a
reference that holds for one stretch of the history is a separate piece). Points above
or below the y range are drawn on the edge row as ``▲``/``▼`` (``^``/``v``) and counted
in ``Chart.clipped``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from rich.style import Style

from .labels import abbreviate
from .ticks import Ticks, inner_ticks, linear_ticks, log_ticks

SERIES_COLOURS = ("cyan", "yellow", "green", "magenta", "bright_blue", "bright_white",
                  "bright_cyan", "bright_yellow")
REFERENCE_COLOURS = ("red", "bright_magenta", "bright_green")
DATA_COLOUR = "bright_black"
BAR_COLOUR = "blue"

UNICODE_SERIES_MARKS = ("braille", "+", "x", "o", "#", "%", "@", "&")
ASCII_SERIES_MARKS = ("*", "o", "x", "%", "@", "&", "$", "s")   # "+" is the ASCII tick
REFERENCE_MARKS = ("-", "=", ":")
AXIS = Style(dim=True)

_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)
_EIGHTHS = " ▁▂▃▄▅▆▇█"
_BRAILLE = np.array([chr(0x2800 + i) for i in range(256)])


@dataclass(frozen=True)
class Look:
    """How to draw: ``mono`` (no colour codes) and ``ascii`` (ASCII characters only)."""

    mono: bool = False
    ascii: bool = False

    @property
    def braille(self) -> bool:
        return not self.ascii


@dataclass
class Curve:
    """One thing drawn. ``kind``: line | points | bars (``x`` the bar centres, ``width``
    their widths). ``role``: series | reference | data (a scatter behind the fit)."""

    label: str
    x: np.ndarray
    y: np.ndarray
    kind: str = "line"
    role: str = "series"
    width: float | np.ndarray | None = None
    colour: str | None = None   # set by Chart.assign_styles
    mark: str = ""

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=float).reshape(-1)
        self.y = np.asarray(self.y, dtype=float).reshape(-1)
        n = min(len(self.x), len(self.y))
        self.x, self.y = self.x[:n], self.y[:n]


@dataclass
class Chart:
    """What a view draws. ``xlim``/``ylim`` fix a range (else from the data); ``robust``
    fits the y range to the bulk of the data and clips outliers; ``xticks`` gives
    categorical (value, label) ticks (bars by name)."""

    curves: list[Curve] = field(default_factory=list)
    xlabel: str = ""
    ylabel: str = ""
    logy: bool = False
    integer_x: bool = False
    integer_y: bool = False
    xlim: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None
    robust: bool = False
    xticks: Sequence[tuple[float, str]] | None = None
    legend: bool = True
    message: str = ""     # drawn in the middle when there is nothing else
    clipped: dict = field(default_factory=lambda: {"above": 0, "below": 0})  # set by render

    # -- derived, size-independent -------------------------------------------------------
    def assign_styles(self, look: Look) -> None:
        """A distinct colour and marker per curve, in draw order within each role."""
        marks = ASCII_SERIES_MARKS if look.ascii else UNICODE_SERIES_MARKS
        k_series = k_ref = 0
        for c in self.curves:
            if c.role == "reference":
                c.colour = REFERENCE_COLOURS[k_ref % len(REFERENCE_COLOURS)]
                c.mark = REFERENCE_MARKS[k_ref % len(REFERENCE_MARKS)]
                k_ref += 1
            elif c.role == "data":
                c.colour = DATA_COLOUR
                c.mark = "." if look.ascii else "·"
            elif c.kind == "bars":
                c.colour = BAR_COLOUR if k_series == 0 else SERIES_COLOURS[k_series % len(SERIES_COLOURS)]
                c.mark = "#" if look.ascii else "█"
                k_series += 1
            else:
                c.colour = SERIES_COLOURS[k_series % len(SERIES_COLOURS)]
                c.mark = marks[k_series % len(marks)]
                k_series += 1

    def _ys(self, c: Curve) -> np.ndarray:
        y = c.y
        if self.logy:
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)
        return y

    def not_positive(self) -> int:
        """Finite values a log axis cannot show (<= 0)."""
        if not self.logy:
            return 0
        return int(sum(np.sum(np.isfinite(c.y) & (c.y <= 0)) for c in self.curves))

    def x_range(self) -> tuple[float, float] | None:
        if self.xlim is not None:
            return float(self.xlim[0]), float(self.xlim[1])
        lo, hi = math.inf, -math.inf
        for c in self.curves:
            ok = np.isfinite(c.x) & np.isfinite(c.y)
            if not ok.any():
                continue
            xs = c.x[ok]
            half = 0.0
            if c.kind == "bars":
                w = np.broadcast_to(np.asarray(1.0 if c.width is None else c.width, dtype=float),
                                    c.x.shape)[ok]
                half = w / 2
            lo = min(lo, float(np.min(xs - half)))
            hi = max(hi, float(np.max(xs + half)))
        return None if lo > hi else (lo, hi)

    def y_range(self) -> tuple[float, float] | None:
        """The y range in axis units (log10 on a log axis), before widening to ticks."""
        if self.ylim is not None:
            lo, hi = (float(v) for v in self.ylim)
            return (math.log10(lo), math.log10(hi)) if self.logy else (lo, hi)
        parts = []
        has_bars = False
        for c in self.curves:
            y = self._ys(c)
            y = y[np.isfinite(y) & np.isfinite(c.x)]
            if c.kind == "bars":
                has_bars = True
            parts.append(y)
        ys = np.concatenate(parts) if parts else np.zeros(0)
        if ys.size == 0:
            return None
        lo, hi = float(ys.min()), float(ys.max())
        if self.robust and ys.size >= 8:
            p5, p95 = np.percentile(ys, [5, 95])
            spread = float(p95 - p5)
            lo = max(lo, float(p5) - 3 * spread)
            hi = min(hi, float(p95) + 3 * spread)
        if has_bars and not self.logy:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        return lo, hi

    # -- layout ------------------------------------------------------------------------
    def _yticks(self, rows: int) -> Ticks | None:
        yr = self.y_range()
        if yr is None:
            return None
        most = max(2, min(6, rows // 2 + 1))
        if self.logy:
            return log_ticks(10.0 ** yr[0], 10.0 ** yr[1], most)
        if self.ylim is not None:
            return inner_ticks(yr[0], yr[1], most, self.integer_y)
        return linear_ticks(yr[0], yr[1], most, self.integer_y)

    def _xticks(self, cols: int, xr: tuple[float, float]) -> list[tuple[float, str]]:
        if self.xticks is not None:
            return [(float(v), str(s)) for v, s in self.xticks]
        most = max(2, cols // 7)
        while True:
            t = inner_ticks(xr[0], xr[1], most, self.integer_x)
            widest = max(len(s) for s in t.labels)
            if most <= 2 or len(t.values) * (widest + 2) <= cols:
                return list(zip(t.values, t.labels))
            most -= 1

    def render(self, width: int, height: int, look: Look) -> list[list[tuple[str, Style | None]]]:
        """Rows of (text, style) runs, each row exactly ``width`` characters (the last
        size's rows are kept: a widget and its subtitle ask for the same one)."""
        key = (width, height, look)
        cached = getattr(self, "_rendered", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        out = self._render(width, height, look)
        self._rendered = (key, out)
        return out

    def _render(self, width: int, height: int, look: Look) -> list[list[tuple[str, Style | None]]]:
        self.assign_styles(look)
        blank = [[(" " * width, None)] for _ in range(max(0, height))]
        if width < 8 or height < 3:
            return blank
        drawn = [c for c in self.curves if (np.isfinite(c.x) & np.isfinite(self._ys(c))).any()]
        xr = self.x_range()
        if not drawn or xr is None or self.y_range() is None:
            if self.message:
                row = height // 2
                blank[row] = [(_centre(self.message, width), AXIS)]
            return blank
        if xr[1] <= xr[0]:
            pad = 1.0 if self.integer_x or xr[0] == 0 else abs(xr[0]) * 0.1
            xr = (xr[0] - pad, xr[1] + pad)

        ylabel = self.ylabel
        entries = self._legend_entries(look) if self.legend else []
        header = 1 if ylabel and height >= 8 else 0
        # a long x label gets a row of its own when there is height for it
        own = 1 if self.xlabel and len(self.xlabel) > max(6, width // 4) and height >= 9 else 0
        layout = self._layout(width, height - header - own, look, xr)
        if layout is None:
            return blank
        yt, (y_lo, y_hi), label_w, grid = layout
        in_header = False
        if entries:
            spot = grid.place_legend(entries)
            room = width - (len(ylabel) + 2 if header else 0)
            if spot is None and _pack(entries, room, shorten=False) is None and \
                    _pack(entries, width, shorten=False) is not None:
                ylabel, room = "", width  # which line is which matters more than the y label
            if spot is None and _pack(entries, room) is not None and height - 1 - 2 - own >= 4:
                in_header = True
                if not header:
                    header = 1
                    layout = self._layout(width, height - header - own, look, xr)
                    if layout is None:
                        return blank
                    yt, (y_lo, y_hi), label_w, grid = layout
            else:
                if spot is None and len(entries) <= grid.rows // 2:
                    spot = grid.place_legend(entries, force=True)
                if spot is not None:
                    grid.stamp_legend(entries, spot)
        rows, cols = grid.rows, grid.cols
        out: list[list[tuple[str, Style | None]]] = []
        if header:
            runs: list[tuple[str, Style | None]] = []
            if ylabel:
                runs.append((ylabel[:width], AXIS))
            if in_header:
                packed = _pack(entries, width - (len(ylabel) + 2 if ylabel else 0)) or []
                gap = width - len(ylabel) - sum(len(t) for t, _ in packed)
                runs.append((" " * max(0, gap), None))
                runs.extend(packed)
            out.append(_clip_runs(runs, width))
        tick_rows = {}
        for v, s in zip(yt.values, yt.labels):
            a = math.log10(v) if self.logy else v
            r = int(round((y_hi - a) / (y_hi - y_lo) * (rows - 1)))
            if 0 <= r < rows and r not in tick_rows:
                tick_rows[r] = s
        vbar, tick = ("|", "+") if look.ascii else ("│", "┤")
        for r in range(rows):
            label = tick_rows.get(r, "")
            runs = [(f"{label:>{label_w}}", AXIS), (tick if label else vbar, AXIS)]
            runs.extend(grid.row_runs(r))
            out.append(_clip_runs(runs, width))
        out.extend(self._x_axis(width, label_w, cols, xr, look, own))
        return out

    def _x_axis(self, width: int, label_w: int, cols: int, xr, look: Look, own: int):
        """The axis line, the tick labels with the x label at their right (or, when it is
        long and there is height, on a row of its own)."""
        hbar, corner, xtick = ("-", "+", "+") if look.ascii else ("─", "└", "┬")
        out = []
        xt = [(v, s) for v, s in self._xticks(cols, xr) if xr[0] - 1e-9 <= v <= xr[1] + 1e-9]
        axis = [hbar] * cols
        label_row = [" "] * width
        inline = self.xlabel if (self.xlabel and not own and len(self.xlabel) <= max(6, width // 4)) else ""
        stop = width - len(inline) - 1 if inline else width
        last_end = -1
        for v, s in xt:
            c = int(round((v - xr[0]) / (xr[1] - xr[0]) * (cols - 1))) if xr[1] > xr[0] else 0
            axis[c] = xtick
            start = label_w + 1 + c - len(s) // 2
            start = max(label_w + 1 if len(xt) > 1 else 0, min(start, width - len(s)))
            if start <= last_end or start + len(s) > stop:
                continue
            label_row[start:start + len(s)] = s
            last_end = start + len(s)
        if self.xlabel and not own and not inline:  # long label, no row for it: what fits
            inline = abbreviate(self.xlabel, width - last_end - 1)
            inline = inline if len(inline) >= 3 else ""
        if inline:
            label_row[width - len(inline):] = inline
        out.append(_clip_runs([(" " * label_w + corner, AXIS), ("".join(axis), AXIS)], width))
        out.append(_clip_runs([("".join(label_row), AXIS)], width))
        if own:
            xl = abbreviate(self.xlabel, width)
            out.append(_clip_runs([(" " * (width - len(xl)) + xl, AXIS)], width))
        return out

    def _layout(self, width: int, height: int, look: Look, xr):
        """Ticks, y range, label width and the rastered grid for a plot of this size."""
        rows = height - 2
        yt = self._yticks(rows)
        if yt is None or rows < 1:
            return None
        y_lo, y_hi = (math.log10(yt.lo), math.log10(yt.hi)) if self.logy else (yt.lo, yt.hi)
        if y_hi <= y_lo:
            y_hi = y_lo + 1.0
        label_w = max(len(s) for s in yt.labels)
        cols = width - label_w - 1
        if cols < 4:
            return None
        grid = _Grid(rows, cols, look)
        self.clipped = grid.draw(self, xr, (y_lo, y_hi))
        return yt, (y_lo, y_hi), label_w, grid

    def _legend_entries(self, look: Look) -> list[tuple[str, str, Style | None]]:
        """(sample, label, style) for each labelled curve; none when only one is drawn."""
        labelled = [c for c in self.curves if c.label]
        if len(labelled) < 2:
            return []
        out = []
        for c in labelled:
            style = None if look.mono else Style(color=c.colour)
            if look.mono:
                sample = "⣿" if c.mark == "braille" else c.mark
            elif c.kind == "bars":
                sample = "#" if look.ascii else "█"
            elif c.role == "data":
                sample = "." if look.ascii else "·"
            else:
                sample = "-" if look.ascii else "━"
            out.append((sample, c.label, style))
        return out


class _Grid:
    """The plot area: per cell the curve on top, its dots (braille bits) and bar fill."""

    def __init__(self, rows: int, cols: int, look: Look) -> None:
        self.rows, self.cols, self.look = rows, cols, look
        self.owner = np.full((rows, cols), -1, dtype=np.int64)
        self.bits = np.zeros((rows, cols), dtype=np.int64)
        self.bar = np.zeros((rows, cols), dtype=np.int64)     # eighths filled, 0..8
        self.bar_owner = np.full((rows, cols), -1, dtype=np.int64)
        self.clip_mark = np.full((rows, cols), "", dtype=object)
        self.overlay: dict[tuple[int, int], tuple[str, Style | None]] = {}
        self.curves: list[Curve] = []
        self._chars = None

    def _sub(self, c: Curve) -> tuple[int, int]:
        fine = self.look.braille and (not self.look.mono or c.mark == "braille")
        return (2, 4) if fine and c.kind != "bars" else (1, 1)

    def draw(self, chart: Chart, xr: tuple[float, float], yr: tuple[float, float]) -> dict[str, int]:
        """Raster every curve; returns {"above": n, "below": n} clipped points."""
        self.curves = chart.curves
        clipped = {"above": 0, "below": 0}
        # bars, then data points, references, series on top; with one marker per cell
        # (NO_COLOR, ASCII) a reference goes on top, or the series around it hides it
        ref_rank = 4 if (self.look.mono or self.look.ascii) else 2

        def rank(i: int) -> int:
            c = chart.curves[i]
            if c.kind == "bars":
                return 0
            return {"data": 1, "reference": ref_rank}.get(c.role, 3)

        order = sorted(range(len(chart.curves)), key=rank)
        for i in order:
            c = chart.curves[i]
            y = chart._ys(c)
            if c.kind == "bars":
                self._bars(i, c, y, xr, yr)
                continue
            sx, sy = self._sub(c)
            W, H = self.cols * sx, self.rows * sy
            fx = (c.x - xr[0]) / (xr[1] - xr[0]) * (W - 1)
            fy = (yr[1] - y) / (yr[1] - yr[0]) * (H - 1)
            ok = np.isfinite(fx) & np.isfinite(fy)
            above = ok & (fy < -0.5)
            below = ok & (fy > H - 0.5)
            if c.role != "data":
                clipped["above"] += int(above.sum())
                clipped["below"] += int(below.sum())
            fyc = np.clip(fy, 0, H - 1)
            fyc[~ok] = np.nan
            fx = np.where(ok, fx, np.nan)
            if c.kind == "points":
                px, py = _points(fx, fyc)
            else:
                px, py = _segments(fx, fyc)
            keep = (px >= 0) & (px < W) & (py >= 0) & (py < H)
            px, py = px[keep], py[keep]
            cr, cc = py // sy, px // sx
            if sx == 2:
                bit = _BRAILLE_BITS[py % 4, px % 2]
                taken = np.zeros((self.rows, self.cols), dtype=np.int64)
                np.bitwise_or.at(taken, (cr, cc), bit)
                hit = taken > 0
                self.bits[hit] = taken[hit]
                self.owner[hit] = i
            else:
                self.owner[cr, cc] = i
                self.bits[cr, cc] = 0
            for mask, row, glyph in ((above, 0, "^" if self.look.ascii else "▲"),
                                     (below, self.rows - 1, "v" if self.look.ascii else "▼")):
                if mask.any():
                    cols = np.clip((fx[mask] / sx).astype(np.int64), 0, self.cols - 1)
                    for col in np.unique(cols):
                        self.clip_mark[row, col] = glyph
                        self.owner[row, col] = i
        return clipped

    def _bars(self, i: int, c: Curve, y: np.ndarray, xr, yr) -> None:
        widths = np.broadcast_to(np.asarray(1.0 if c.width is None else c.width, dtype=float), c.x.shape)
        base = min(max(0.0, yr[0]), yr[1])  # bars rise from 0 (or the axis' bottom)
        for xc, w, v in zip(c.x, widths, y):
            if not (np.isfinite(xc) and np.isfinite(v)):
                continue
            a = (xc - w / 2 - xr[0]) / (xr[1] - xr[0]) * self.cols
            b = (xc + w / 2 - xr[0]) / (xr[1] - xr[0]) * self.cols
            c0, c1 = int(math.floor(a + 1e-9)), int(math.ceil(b - 1e-9))
            if c1 - c0 >= 3:  # wide bars: a gap column between neighbours
                c1 -= 1
            c0, c1 = max(0, c0), min(self.cols, max(c1, c0 + 1))
            top = (min(max(v, yr[0]), yr[1]) - yr[0]) / (yr[1] - yr[0]) * self.rows * 8
            bottom = (base - yr[0]) / (yr[1] - yr[0]) * self.rows * 8
            lo8, hi8 = int(round(min(top, bottom))), int(round(max(top, bottom)))
            for r in range(self.rows):
                cell_lo = (self.rows - 1 - r) * 8
                fill = min(max(hi8 - max(lo8, cell_lo), 0), 8) if hi8 > cell_lo else 0
                if fill > 0 and lo8 <= cell_lo:
                    self.bar[r, c0:c1] = np.maximum(self.bar[r, c0:c1], fill)
                    self.bar_owner[r, c0:c1] = i

    # -- legend -------------------------------------------------------------------------
    def place_legend(self, entries, force: bool = False) -> tuple[int, int] | None:
        """(row, col) of the top-left corner of the legend box: the corner whose cells hold
        nothing drawn; with ``force`` the corner covering fewest."""
        w = max(len(label) for _, label, _ in entries) + 2
        w = min(w, self.cols)
        h = len(entries)
        if h > self.rows:
            return None
        busy = (self.owner >= 0) | (self.bar > 0)
        best, best_cost = None, None
        for r0 in (0, self.rows - h):
            for c0 in (self.cols - w, 0):
                # one free column between the legend and anything drawn
                lo, hi = max(0, c0 - 1), min(self.cols, c0 + w + 1)
                cost = int(busy[r0:r0 + h, lo:hi].sum())
                if best_cost is None or cost < best_cost:
                    best, best_cost = (r0, c0), cost
        if best_cost == 0 or force:
            return best
        return None

    def stamp_legend(self, entries, at: tuple[int, int]) -> None:
        r0, c0 = at
        w = min(max(len(label) for _, label, _ in entries) + 2, self.cols - c0)
        for k, (sample, label, style) in enumerate(entries):
            text = (sample + " " + abbreviate(label, w - 2)).ljust(w)[:w]
            for j, ch in enumerate(text):
                self.overlay[(r0 + k, c0 + j)] = (ch, style if j == 0 else None)

    # -- output -------------------------------------------------------------------------
    def _compose(self) -> None:
        """Every cell's character and style key (a curve index, an overlay style, or -1)."""
        look = self.look
        chars = np.full((self.rows, self.cols), " ", dtype="<U1")
        key = np.full((self.rows, self.cols), -1, dtype=np.int64)
        fill = self.bar
        if (fill > 0).any():
            ramp = np.array(list(" " * 4 + "#" * 5) if look.ascii else list(_EIGHTHS))
            on = fill > 0
            chars[on] = ramp[fill[on]]
            key[on] = self.bar_owner[on]
        own = self.owner >= 0
        if own.any():
            marks = np.array([(c.mark if c.mark != "braille" else "•") or " " for c in self.curves] + [" "])
            dots = own & (self.bits > 0)
            chars[dots] = _BRAILLE[self.bits[dots]]
            plain = own & (self.bits == 0)
            chars[plain] = marks[self.owner[plain]]
            key[own] = self.owner[own]
        clip = self.clip_mark != ""
        chars[clip] = self.clip_mark[clip].astype("<U1")
        self._styles: dict[int, Style | None] = {-1: None}
        for i, c in enumerate(self.curves):
            self._styles[i] = None if look.mono else Style(color=c.colour)
        overlay_keys: dict[Style | None, int] = {}
        for (r, c), (ch, style) in self.overlay.items():
            k = overlay_keys.setdefault(style, -2 - len(overlay_keys))
            self._styles[k] = style
            chars[r, c] = ch
            key[r, c] = k
        self._chars, self._keys = chars, key

    def row_runs(self, r: int) -> list[tuple[str, Style | None]]:
        if getattr(self, "_chars", None) is None:
            self._compose()
        chars, keys = self._chars[r], self._keys[r]
        cuts = np.flatnonzero(np.diff(keys)) + 1
        runs = []
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), len(keys)]
        styles = self._styles
        return [("".join(chars[lo:hi]), styles[int(keys[lo])]) for lo, hi in zip(starts, ends)]


def _segments(fx: np.ndarray, fy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer dot coordinates along the polyline through (fx, fy); NaN lifts the pen."""
    n = len(fx)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ok = np.isfinite(fx) & np.isfinite(fy)
    xs, ys = [], []
    if n >= 2:
        seg = ok[:-1] & ok[1:]
        x0, y0, x1, y1 = fx[:-1][seg], fy[:-1][seg], fx[1:][seg], fy[1:][seg]
        steps = np.ceil(np.maximum(np.abs(x1 - x0), np.abs(y1 - y0))).astype(np.int64) + 1
        idx = np.repeat(np.arange(len(steps)), steps)
        start = np.repeat(np.cumsum(steps) - steps, steps)
        k = np.arange(int(steps.sum())) - start
        t = k / np.maximum(steps[idx] - 1, 1)
        xs.append(x0[idx] + (x1[idx] - x0[idx]) * t)
        ys.append(y0[idx] + (y1[idx] - y0[idx]) * t)
    lone = ok.copy()
    if n >= 2:
        lone[1:] &= ~ok[:-1]
        lone[:-1] &= ~ok[1:]
    xs.append(fx[lone])
    ys.append(fy[lone])
    x = np.rint(np.concatenate(xs)).astype(np.int64)
    y = np.rint(np.concatenate(ys)).astype(np.int64)
    return x, y


def _points(fx: np.ndarray, fy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(fx) & np.isfinite(fy)
    return np.rint(fx[ok]).astype(np.int64), np.rint(fy[ok]).astype(np.int64)


def _pack(entries, width: int, shorten: bool = True) -> list[tuple[str, Style | None]] | None:
    """The legend on one line: "━ a  ━ b", else "━a ━b", else with the labels shortened
    word by word; None when even that does not fit."""
    labels = [label for _, label, _ in entries]
    longest = max(len(x) for x in labels)
    forms = [(2, " ", labels), (1, " ", labels), (1, "", labels)]
    if shorten:
        forms += [(1, "", [abbreviate(x, k) for x in labels]) for k in range(longest - 1, 2, -1)]
    for gap, space, labs in forms:
        if len(set(labs)) < len(set(labels)):  # shortened into the same text: no use
            continue
        runs: list[tuple[str, Style | None]] = []
        used = 0
        for k, ((sample, _, style), label) in enumerate(zip(entries, labs)):
            if k:
                runs.append((" " * gap, None))
            runs.append((sample, style))
            runs.append((space + label, None))
            used += (gap if k else 0) + len(sample) + len(space) + len(label)
        if used <= width:
            return [r for r in runs if r[0]]
    return None


def _merge(runs):
    out: list[tuple[str, Style | None]] = []
    for text, style in runs:
        if out and out[-1][1] is style:  # styles are shared objects: identity is enough
            out[-1] = (out[-1][0] + text, style)
        else:
            out.append((text, style))
    return out


def _clip_runs(runs, width: int):
    """Exactly ``width`` characters: cut at the right edge, padded with spaces."""
    out, used = [], 0
    for text, style in runs:
        if used >= width:
            break
        text = text[: width - used]
        out.append((text, style))
        used += len(text)
    if used < width:
        out.append((" " * (width - used), None))
    return _merge(out)


def _centre(text: str, width: int) -> str:
    text = text[:width]
    left = (width - len(text)) // 2
    return " " * left + text + " " * (width - left - len(text))
