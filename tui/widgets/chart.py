"""A terminal chart: curves, points and bars drawn by plotext, with our own round ticks,
axis labels, a legend placed where it covers least, and outliers clipped with a marker.

No Textual here: ``Chart`` is the data a view decided to draw (read it back in tests),
``Chart.render(width, height, look)`` the rows of (text, style) runs for one size.

Who draws what. plotext (5.3.2, pinned) rasterises the plot area: a figure of exactly the
plot area's size with its axes, ticks, frame and colours turned off, one ``plot`` per curve,
a ``scatter`` per set of points and per set of bars (filled down to the base with plotext's
``fillx``); we read its character matrix and its per-cell colour codes (``monitor.matrix``,
no ANSI text to parse). A cell holds the last curve drawn through it (plotext replaces a
cell signal by signal), so series go on top of references and bars. Around and on top of
that this module adds what plotext does not do as the issue asks: 1-2-5 ticks with integers
on integer axes (ticks.py; plotext's ticks are evenly spaced fractions of the range), the
axis lines and the x label with its unit, the legend in the corner that covers least
(plotext's sits in the top-left corner whatever is under it), and outliers clipped to the
edge row with ``▲``/``▼`` and counted (plotext drops points outside its limits). A log y
axis hands plotext log10(y) on a linear scale, so our decade ticks line up with it. The
cost: plotext works dot by dot in Python, several times the CPU of a numpy rasteriser per
chart (BENCHMARKS.md, issue 11).

Drawing modes (``Look``):
  colour   every curve in braille dots (2 x 4 per cell), a distinct colour per curve,
           bars in quadrant blocks (2 x 2 per cell);
  mono     NO_COLOR: plotext is given no colour (its "default") and no style is emitted;
           a distinct marker character per curve (the first series keeps braille dots);
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
from plotext._figure import _figure_class
from rich.color import Color
from rich.style import Style

from . import plotext_fast
from .labels import abbreviate
from .ticks import Ticks, inner_ticks, linear_ticks, log_ticks

plotext_fast.install()

# Colours from the xterm 256-colour cube, not the 16 named ANSI colours: Textual's
# default terminal theme draws red, magenta and bright_magenta all as #f4005f (and cyan
# as bright_cyan, blue as bright_blue), so named colours gave two references, or a series
# and a reference, the same hue. Hues in the spirit of Okabe & Ito's palette.
SERIES_COLOURS = ("color(74)", "color(214)", "color(35)", "color(170)", "color(227)",
                  "color(33)", "color(43)", "color(166)")      # sky, orange, green, pink, yellow, blue, teal, rust
REFERENCE_COLOURS = ("color(196)", "color(231)", "color(118)")  # red, white, lime
DATA_COLOUR = "color(244)"                                      # grey
BAR_COLOUR = "color(99)"                                        # violet

UNICODE_SERIES_MARKS = ("braille", "+", "x", "o", "#", "%", "@", "&")
ASCII_SERIES_MARKS = ("*", "o", "x", "%", "@", "&", "$", "s")   # "+" is the ASCII tick
REFERENCE_MARKS = ("-", "=", ":")
AXIS = Style(dim=True)

_DOTS = {"braille": (2, 4), "hd": (2, 2)}    # dots per cell of plotext's fine markers
_NO_COLOUR = "default"                        # plotext's name for "no colour code"


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
    xshort: str = ""      # the x label when ``xlabel`` would have to be abbreviated ("step")
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
    hidden: dict = field(default_factory=dict)   # set by render: curve -> the curve over most of it

    # -- derived, size-independent -------------------------------------------------------
    def assign_styles(self, look: Look) -> None:
        """A distinct colour and marker per curve, in draw order within each role."""
        marks = ASCII_SERIES_MARKS if look.ascii else UNICODE_SERIES_MARKS
        k_series = k_ref = k_bars = 0
        for c in self.curves:
            if c.role == "reference":
                c.colour = REFERENCE_COLOURS[k_ref % len(REFERENCE_COLOURS)]
                c.mark = REFERENCE_MARKS[k_ref % len(REFERENCE_MARKS)]
                k_ref += 1
            elif c.role == "data":
                c.colour = DATA_COLOUR
                c.mark = "." if look.ascii else "·"
            elif c.kind == "bars":   # the lines over a histogram keep the series colours
                c.colour = BAR_COLOUR if k_bars == 0 else SERIES_COLOURS[-k_bars % len(SERIES_COLOURS)]
                c.mark = "#" if look.ascii else "█"
                k_bars += 1
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
        drawn = self._drawn()
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
        entries = self._legend_entries(look, drawn) if self.legend else []
        header = 1 if ylabel and height >= 8 else 0
        # a long x label gets a row of its own when there is height for it
        own = 1 if self.xlabel and len(self.xlabel) > max(6, width // 4) and height >= 9 else 0
        layout = self._layout(width, height - header - own, look, xr)
        if layout is None:
            return blank
        yt, (y_lo, y_hi), label_w, grid = layout
        in_header = False
        legend_rows: list = []
        if entries:
            spot = grid.place_legend(entries)
            room = width - (len(ylabel) + 2 if header else 0)
            if spot is None and _pack(entries, room, shorten=False) is None and \
                    _pack(entries, width, shorten=False) is not None:
                ylabel, room = "", width  # which line is which matters more than the y label
            # which curve is which matters more than a fourth plot row: a header down to 3
            # rows, on two lines when one does not hold it, or holds it only with the labels
            # shortened while two hold them whole and 5 plot rows remain
            if spot is None and len(entries) >= 4:
                two = _two_rows(entries, room, width)
                plot_rows = height - 2 - 2 - own
                whole = all(_pack(r, w, shorten=False) is not None for r, w in zip(two, (room, width)))
                if (whole and plot_rows >= 5 and _pack(entries, room, shorten=False) is None) or \
                        (_pack(entries, room) is None and plot_rows >= 3 and _pack(two[1], width) is not None):
                    if _pack(two[0], room) is None and _pack(two[0], width) is not None:
                        ylabel, room = "", width
                    if _pack(two[0], room) is not None:
                        legend_rows = two
            if spot is None and (legend_rows or (_pack(entries, room) is not None and height - 1 - 2 - own >= 3)):
                in_header = True
                legend_rows = legend_rows or [entries]
                if header != len(legend_rows):
                    header = len(legend_rows)
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
                packed = _pack(legend_rows[0], width - (len(ylabel) + 2 if ylabel else 0)) or []
                gap = width - len(ylabel) - sum(len(t) for t, _ in packed)
                runs.append((" " * max(0, gap), None))
                runs.extend(packed)
            out.append(_clip_runs(runs, width))
            for more in legend_rows[1:]:
                packed = _pack(more, width) or []
                gap = width - sum(len(t) for t, _ in packed)
                out.append(_clip_runs([(" " * max(0, gap), None), *packed], width))
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
            room = width - last_end - 1
            inline = abbreviate(self.xlabel, room)
            if inline != self.xlabel and self.xshort and len(self.xshort) <= room:
                inline = self.xshort                  # "step", not "mi. st" for "minibatch step"
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
        grid = _Canvas(rows, cols, look)
        self.clipped = grid.draw(self, xr, (y_lo, y_hi))
        self.hidden = grid.hidden
        return yt, (y_lo, y_hi), label_w, grid

    def under(self) -> list[tuple[str, str]]:
        """(curve, the curve over it) for each labelled curve the last render drew mostly
        under another (within a dot of each other, one cell shows one curve): the panel
        says so, as the legend cannot."""
        return [(self.curves[i].label, self.curves[j].label or "another curve")
                for i, j in sorted(self.hidden.items()) if self.curves[i].label]

    def _drawn(self) -> list[Curve]:
        """The curves with at least one finite point to draw."""
        return [c for c in self.curves if (np.isfinite(c.x) & np.isfinite(self._ys(c))).any()]

    def _legend_entries(self, look: Look, drawn: list[Curve] | None = None) -> list[tuple[str, str, Style | None]]:
        """(sample, label, style) for each labelled curve that draws something; none when
        only one curve is drawn (the title names it). A labelled line over unlabelled bars (a histogram's
        ground-state marker or exact density) gets its entry."""
        drawn = self._drawn() if drawn is None else drawn
        labelled = [c for c in drawn if c.label]   # a curve with nothing drawn has no entry
        if not labelled or len(drawn) < 2:
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


class _Canvas:
    """The plot area: a character matrix of braille dots, quadrant blocks for bars, or one
    marker character per cell, drawn signal by signal in plotext's order by
    :func:`plotext_fast.cells` (plotext's own rasterising steps in NumPy, the same cells:
    tests/tui/test_plotext_fast.py draws every kind of chart both ways, ``VIA_PLOTEXT``
    being plotext's build itself); on top we stamp the clip markers and the legend, placed
    from what was drawn.

    The curves are drawn already reduced to what a cell grid can show: a line
    keeps, per dot column, its first, lowest, highest and last point (M4, Jugel et al.,
    "M4: a visualization-oriented time series data aggregation", VLDB 2014: the same dots
    are lit), scattered points one per dot, and a line is cut at the x range's edges."""

    def __init__(self, rows: int, cols: int, look: Look) -> None:
        self.rows, self.cols, self.look = rows, cols, look
        self.chars = np.full((rows, cols), " ", dtype="<U1")
        self.keys = np.full((rows, cols), -1, dtype=np.int64)   # colour code, or -1
        self.styles: dict[int, Style | None] = {-1: None}
        self.overlay: dict[tuple[int, int], tuple[str, Style | None]] = {}
        self._composed = False
        self.hidden: dict[int, int] = {}    # curve -> the curve drawn over most of its cells

    def marker(self, c: Curve) -> str:
        """The plotext marker for a curve: braille dots in colour (and for the first series
        without colour), quadrant blocks for bars, else the curve's own character."""
        if c.kind == "bars":
            return "#" if self.look.ascii else "hd"
        if self.look.braille and (not self.look.mono or c.mark == "braille"):
            return "braille"
        return c.mark

    def draw(self, chart: Chart, xr: tuple[float, float], yr: tuple[float, float]) -> dict[str, int]:
        """Draw every curve, in plotext's order; returns {"above": n, "below": n} clipped points."""
        clipped = {"above": 0, "below": 0}
        # bars, then data points, references, series on top; with one marker per cell
        # (NO_COLOR, ASCII) a reference goes on top, or the series around it hides it
        ref_rank = 4 if (self.look.mono or self.look.ascii) else 2

        def rank(i: int) -> int:
            c = chart.curves[i]
            if c.kind == "bars":
                return 0
            return {"data": 1, "reference": ref_rank}.get(c.role, 3)

        clip_marks: list[tuple[int, int, str, int]] = []
        # (curve, x, y, lines, marker, colour code, fill level) of each signal, in order
        layers: list[tuple[int, np.ndarray, np.ndarray, bool, str, int | str, float | None]] = []
        for i in sorted(range(len(chart.curves)), key=rank):
            c = chart.curves[i]
            code: int | str = _NO_COLOUR
            if not self.look.mono:
                code = Color.parse(c.colour).number
                self.styles.setdefault(code, Style(color=c.colour))
            marker = self.marker(c)
            y = chart._ys(c)
            if c.kind == "bars":
                bars = self._bars(c, y, xr, yr, marker)
                if bars is not None:
                    layers.append((i, bars[0], bars[1], False, marker, code, bars[2]))
                continue
            sx, sy = _DOTS.get(marker, (1, 1))
            W, H = self.cols * sx, self.rows * sy
            fx = (c.x - xr[0]) / (xr[1] - xr[0]) * (W - 1)
            fy = (y - yr[0]) / (yr[1] - yr[0]) * (H - 1)       # dots from the bottom
            ok = np.isfinite(fx) & np.isfinite(fy)
            inside = ok & (fx > -0.5) & (fx < W - 0.5)
            above = inside & (fy > H - 0.5)
            below = inside & (fy < -0.5)
            if c.role != "data":
                clipped["above"] += int(above.sum())
                clipped["below"] += int(below.sum())
            for mask, row, glyph in ((above, 0, "^" if self.look.ascii else "▲"),
                                     (below, self.rows - 1, "v" if self.look.ascii else "▼")):
                if mask.any():
                    for col in np.unique(np.clip(np.floor(fx[mask] + 0.5) // sx, 0, self.cols - 1)):
                        clip_marks.append((row, int(col), glyph, code if isinstance(code, int) else -1))
            x = np.where(ok, c.x, np.nan)
            yc = np.where(ok, np.clip(y, yr[0], yr[1]), np.nan)  # outliers run along the edge
            lines = c.kind != "points"
            if not lines:
                keep = _one_per_dot(fx, np.clip(fy, 0, H - 1), ok & inside)
                xs, ys = x[keep], yc[keep]
                drawn = len(xs) > 0
            else:
                xs, ys = _cut_at(x, yc, xr)
                fxs = (xs - xr[0]) / (xr[1] - xr[0]) * (W - 1)
                keep = _m4(fxs, ys)
                xs, ys = xs[keep], ys[keep]
                drawn = bool(np.isfinite(xs).any())
            if drawn:
                layers.append((i, xs, ys, lines, marker, code, None))
        if VIA_PLOTEXT:
            self._plotext(layers, xr, yr)
        else:
            self._stamp(layers, xr, yr)
        for row, col, glyph, key in clip_marks:
            self.chars[row, col] = glyph
            self.keys[row, col] = key
        return clipped

    def _plotext(self, layers, xr, yr) -> None:
        """The signals through plotext's own build (the tests' reference)."""
        if not layers:
            return
        fig = _blank_figure(self.cols, self.rows)
        fig.xlim(*xr)
        fig.ylim(*yr)
        for _, xs, ys, lines, marker, code, fill in layers:
            if lines:
                fig.plot(xs.tolist(), ys.tolist(), marker=marker, color=code)
            else:
                fig.scatter(xs.tolist(), ys.tolist(), marker=marker, color=code, fillx=fill)
        fig._set_sizes()
        fig._build_matrix()
        m = fig.monitor.matrix
        self.chars = np.array(m.marker[::-1], dtype="<U1")[:self.rows, :self.cols]
        fg = m.fullground[::-1]
        keys = np.array([[v if isinstance(v, int) else -1 for v in row] for row in fg], dtype=np.int64)
        self.keys = np.where(self.chars != " ", keys[:self.rows, :self.cols], -1)

    def _stamp(self, layers, xr, yr) -> None:
        """Each signal's cells (plotext_fast.cells) over the ones before it; notes which
        curves end up mostly under another (:attr:`hidden`)."""
        owner = np.full((self.rows, self.cols), -1, dtype=np.int64)
        covered: list[tuple[int, np.ndarray]] = []
        for i, xs, ys, lines, marker, code, fill in layers:
            cx, cy, chars = plotext_fast.cells(xs, ys, xr, yr, self.cols, self.rows, marker, lines, fill)
            r = self.rows - 1 - cy
            self.chars[r, cx] = chars
            self.keys[r, cx] = code if isinstance(code, int) else -1
            owner[r, cx] = i
            covered.append((i, r * self.cols + cx))
        self.hidden = _hidden(owner.reshape(-1), covered)

    def _bars(self, c: Curve, y: np.ndarray, xr, yr, marker: str) -> tuple | None:
        """All the bars of a curve as one signal, (x, y, fill level), or None when none is
        drawn: a point at the bar's top in each
        dot column it covers, filled down to the base (plotext's fillx). One signal, so two
        bars sharing a cell share its quadrant block (plotext replaces a cell signal by
        signal). Neighbours keep a free dot column between them when every bar is at least
        three dots wide (else a histogram stays contiguous)."""
        sx, sy = _DOTS.get(marker, (1, 1))
        W = self.cols * sx
        widths = np.broadcast_to(np.asarray(1.0 if c.width is None else c.width, dtype=float), c.x.shape)
        base = min(max(0.0, yr[0]), yr[1])  # bars rise from 0 (or the axis' bottom)
        dot = (xr[1] - xr[0]) / (W - 1)
        ok = np.isfinite(c.x) & np.isfinite(y) & (y != base)
        if not ok.any():
            return None
        a = np.floor(0.5 + (c.x - widths / 2 - xr[0]) / dot)
        b = np.floor(0.5 + (c.x + widths / 2 - xr[0]) / dot) - 1    # the next bar starts at b + 1
        if (b - a)[ok].min() >= 2:
            b = b - 1                                                 # a gap dot between neighbours
        a, b = np.maximum(a, 0), np.minimum(np.maximum(a, b), W - 1)
        ok &= a <= b
        top = np.clip(y, yr[0], yr[1])
        cols = [np.arange(ai, bi + 1) for ai, bi in zip(a[ok], b[ok])]
        if not cols:
            return None
        xs = xr[0] + np.concatenate(cols) * dot
        ys = np.repeat(top[ok], [len(k) for k in cols])
        return xs, ys, base

    # -- legend -------------------------------------------------------------------------
    def place_legend(self, entries, force: bool = False) -> tuple[int, int] | None:
        """(row, col) of the top-left corner of the legend box: the corner whose cells hold
        nothing drawn; with ``force`` the corner covering fewest."""
        w = max(len(label) for _, label, _ in entries) + 2
        w = min(w, self.cols)
        h = len(entries)
        if h > self.rows:
            return None
        busy = self.chars != " "
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
        overlay_keys: dict[Style | None, int] = {}
        for (r, c), (ch, style) in self.overlay.items():
            k = overlay_keys.setdefault(style, -2 - len(overlay_keys))
            self.styles[k] = style
            self.chars[r, c] = ch
            self.keys[r, c] = k
        if self.look.mono:
            self.styles = {k: None for k in self.styles}
        self._composed = True

    def row_runs(self, r: int) -> list[tuple[str, Style | None]]:
        if not self._composed:
            self._compose()
        chars, keys = self.chars[r], self.keys[r]
        cuts = np.flatnonzero(np.diff(keys)) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), len(keys)]
        styles = self.styles
        return [("".join(chars[lo:hi]), styles.get(int(keys[lo]))) for lo, hi in zip(starts, ends)]


VIA_PLOTEXT = False     # True: every signal through plotext's own build (the tests' reference)
_FIGURES: dict[tuple[type, int, int], object] = {}


def _blank_figure(cols: int, rows: int):
    """A plotext figure of that size with no axes, frame, ticks or theme colours and no
    data: one per size, kept and cleared of its data for each drawing (making one
    deep-copies plotext's defaults, a millisecond or two)."""
    key = (_figure_class, cols, rows)
    fig = _FIGURES.get(key)
    if fig is None:
        if len(_FIGURES) > 64:                 # sizes seen in one session: a few dozen
            _FIGURES.clear()
        fig = _figure_class()
        fig._limit_size(False, False)
        fig.plot_size(cols, rows)
        fig.theme("clear")                     # no colour but the curves' own
        fig.xaxes(False, False)
        fig.yaxes(False, False)
        fig.frame(False)
        fig.xticks([])
        fig.yticks([])
        _FIGURES[key] = fig
    fig.clear_data()
    return fig


def _hidden(owner: np.ndarray, covered: list[tuple[int, np.ndarray]]) -> dict[int, int]:
    """{curve: the curve over most of its cells} for each curve that keeps fewer than half
    of the cells it drew (a cell shows one curve: where two coincide within a dot, the one
    drawn later hides the other)."""
    out = {}
    for i, cells in covered:
        if not len(cells):
            continue
        on = owner[cells]
        if (on == i).mean() < 0.5:
            over = on[(on != i) & (on >= 0)]
            if len(over):
                out[i] = int(np.bincount(over).argmax())
    return out


def _m4(fx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of a polyline that light the same dots: per run of points in one dot column
    (x in dot units), the first, lowest, highest and last; a NaN (pen up) is kept once."""
    n = len(fx)
    if n <= 4:
        return np.arange(n)
    ok = np.isfinite(fx) & np.isfinite(y)
    col = np.where(ok, np.floor(fx + 0.5), -np.inf)
    start = np.r_[True, col[1:] != col[:-1]]
    starts = np.flatnonzero(start)
    ends = np.r_[starts[1:], n] - 1
    gid = np.cumsum(start) - 1
    order = np.lexsort((np.where(ok, y, 0.0), gid))
    good = ok[starts]
    keep = np.concatenate([starts, ends[good], order[starts][good], order[ends][good]])
    return np.unique(keep)


def _one_per_dot(fx: np.ndarray, fy: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Indices of the points that land on distinct dots (the first of each)."""
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return idx
    cells = np.stack([np.floor(fx[idx] + 0.5), np.floor(fy[idx] + 0.5)], axis=1)
    _, first = np.unique(cells, axis=0, return_index=True)
    return idx[np.sort(first)]


def _cut_at(x: np.ndarray, y: np.ndarray, xr: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The polyline restricted to lo <= x <= hi: a segment that crosses an edge ends on it,
    points beyond it lift the pen (plotext would walk every dot out to them)."""
    lo, hi = xr
    ok = np.isfinite(x) & np.isfinite(y)
    if not ((ok & ((x < lo) | (x > hi))).any()):
        return x, y
    xs: list[float] = []
    ys: list[float] = []

    def pen_up() -> None:
        if xs and xs[-1] == xs[-1]:
            xs.append(math.nan), ys.append(math.nan)

    for k in range(len(x)):
        if not ok[k]:
            pen_up()
            continue
        if k == 0 or not ok[k - 1]:                 # a piece starts
            if lo <= x[k] <= hi:
                xs.append(x[k]), ys.append(y[k])
            continue
        x0, y0, x1, y1 = x[k - 1], y[k - 1], x[k], y[k]
        if x0 == x1:
            if lo <= x1 <= hi:
                xs.append(x1), ys.append(y1)
            continue
        ta, tb = (lo - x0) / (x1 - x0), (hi - x0) / (x1 - x0)
        t_in, t_out = max(0.0, min(ta, tb)), min(1.0, max(ta, tb))
        if t_in > t_out:                            # the segment misses the range
            pen_up()
            continue
        if t_in > 0:                                # enters through an edge
            pen_up()
            xs.append(x0 + t_in * (x1 - x0)), ys.append(y0 + t_in * (y1 - y0))
        xs.append(x0 + t_out * (x1 - x0)), ys.append(y0 + t_out * (y1 - y0))
        if t_out < 1:                               # leaves through an edge
            pen_up()
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def _two_rows(entries, first: int, width: int) -> list:
    """The legend's entries split over two header rows (the first ``first`` wide, beside a
    y label, the second ``width``): where both rows hold their labels whole, the most even
    split; else the split in half."""
    whole = [k for k in range(1, len(entries))
             if _pack(entries[:k], first, shorten=False) is not None
             and _pack(entries[k:], width, shorten=False) is not None]
    if whole:
        k = min(whole, key=lambda k: abs(2 * k - len(entries)))
    else:
        k = (len(entries) + 1) // 2
    return [entries[:k], entries[k:]]


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
