"""NumPy versions of plotext's pure-Python rasterising steps: three of its helpers, and
:func:`cells`, its whole build of one line or scatter signal.

plotext (pinned in pyproject.toml) draws every chart's plot area (tui/widgets/chart.py).
Three of its helpers work point by point in Python and were most of a chart's cost: a
two-curve trace at 56x14 took about 26 ms per render, 11 ms of it in ``hd_group`` (the
braille/quadrant grouping of dots into cells), 7 ms in ``get_lines`` (the dots between
consecutive points) and ~2 ms in ``get_matrix_data`` (data to canvas coordinates).
``install`` replaces them in ``plotext._utility`` (plotext's build reads them there).
``get_matrix_data`` returns what plotext's does, element for element. ``get_lines`` and
``hd_group`` return the same points and cells; what plotext does with them next
(``brush``: a ``set``) keeps neither their order nor their repeats, so these return each
once, in any order. ``tests/tui/test_plotext_fast.py`` checks all three against the
originals (kept as ``ORIGINAL``) and whole charts drawn both ways; the screen snapshots
check the drawn result.

Even with them, plotext's build handles every dot in Python several times over (its
markers, brush, grouping and insertion lists): a noisy 2000-frame trace lights ~2,900 dots
and cost ~9 ms a render. :func:`cells` composes the same steps on arrays and returns the
cells a signal draws, with plotext's character for each, which the chart stamps in
plotext's order (tui/widgets/chart.py); checked cell for cell against plotext's own build
with its own helpers, for lines and points, fine and plain markers, beyond the canvas.
"""

from __future__ import annotations

import numpy as np
import plotext._utility as _ut

ORIGINAL = {"get_lines": _ut.get_lines, "hd_group": _ut.hd_group,
            "get_matrix_data": _ut.get_matrix_data}


def _numeric(values: list) -> np.ndarray:
    """The list as floats, NaN where plotext's ``numerical`` says no (None or NaN)."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def get_matrix_data(data, lim, bins):
    """Data to canvas coordinates, as plotext computes them: ``floor(round(0.5 + (bins -
    1) * (v - lo) / (hi - lo), 8))`` with plotext's own ``round`` (halves up), the same
    float operations in the same order; a non-numerical element (None, NaN) is kept."""
    values = list(data)
    if any(isinstance(v, str) for v in values):          # string dates: plotext's own way
        return ORIGINAL["get_matrix_data"](data, lim, bins)
    v = _numeric(values)
    ok = np.isfinite(v) | np.isinf(v)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        n = (0.5 + (bins - 1) * (v - lim[0]) / (lim[1] - lim[0])) * 10 ** 8
        f = np.floor(n)
        r = np.where(n - f < 0.5, f, np.ceil(n)) * 10 ** (-8)
        cells = np.floor(r)
    good = ok & np.isfinite(cells)
    out = list(values)
    for i, c in zip(np.flatnonzero(good).tolist(), cells[good].tolist()):
        out[i] = int(c)
    return out


def _segment_dots(xf: np.ndarray, yf: np.ndarray):
    """plotext's ``get_lines`` on float arrays (NaN: pen up): every dot's (x, y) and the
    index of the point whose segment it belongs to, the last point included."""
    x0, x1, y0, y1 = xf[:-1], xf[1:], yf[:-1], yf[1:]
    ok = np.isfinite(x0) & np.isfinite(x1) & np.isfinite(y0) & np.isfinite(y1)
    with np.errstate(invalid="ignore"):
        ix0, iy0 = np.trunc(np.where(ok, x0, 0)), np.trunc(np.where(ok, y0, 0))
        ix1, iy1 = np.trunc(np.where(ok, x1, 0)), np.trunc(np.where(ok, y1, 0))
        a = np.maximum(np.abs(ix1 - ix0), np.abs(iy1 - iy0)).astype(np.int64) + 1
    counts = np.where(ok, a - 1, 1)
    seg = np.repeat(np.arange(len(counts)), counts)
    step = np.arange(len(seg)) - np.repeat(np.cumsum(counts) - counts, counts)
    denom = np.where(a > 1, a - 1, 1).astype(float)
    sx = np.where(a > 1, (np.where(ok, x1, 0) - np.where(ok, x0, 0)) / denom, 0.0)
    sy = np.where(a > 1, (np.where(ok, y1, 0) - np.where(ok, y0, 0)) / denom, 0.0)
    good = ok[seg]
    px = np.where(good, np.trunc(x0[seg] + step * sx[seg]), x0[seg])
    py = np.where(good, np.trunc(y0[seg] + step * sy[seg]), y0[seg])
    return np.append(px, xf[-1]), np.append(py, yf[-1]), np.append(seg, len(xf) - 1)


def get_lines(x, y, *other):
    """Every dot on the segments between consecutive points (plotext's ``get_line``:
    ``max(|dx|, |dy|) + 1`` evenly spaced dots, truncated to integers, the segment's end
    left to the next), a point next to a pen-up (NaN) kept as it is, the last point
    kept; ``other`` (markers, colours, styles) follow their segment's first point."""
    k = len(other)
    if len(x) == 0:
        return [[], []] + [[] for _ in range(k)]
    xf, yf = _numeric(list(x)), _numeric(list(y))
    px, py, idx = _segment_dots(xf, yf)
    finite = np.isfinite(px) & np.isfinite(py)
    # one of each finite dot with its attributes (brush removes repeats anyway); the
    # pen-up points go on as they came (plotext drops them as outside the canvas)
    attrs = [list(o) for o in other]
    ids: dict = {}
    attr_id = np.array([ids.setdefault(tuple(o[i] for o in attrs), len(ids)) for i in range(len(xf))],
                       dtype=np.int64)
    by_id = list(ids)
    fi = idx[finite]
    keys = _unique_rows(px[finite].astype(np.int64), py[finite].astype(np.int64), attr_id[fi])
    keyed = [(cx, cy, *by_id[a]) for cx, cy, a in keys]
    rest = [(x[i], y[i], *(o[i] for o in attrs)) for i in idx[~finite].tolist()]
    rows = keyed + rest
    if not rows:
        return [[], []] + [[] for _ in range(k)]
    return [list(col) for col in zip(*rows)]


def hd_group(x, y, xf, yf):
    """Dots grouped into the cells of a fine marker (braille: 2x4 dots, quadrants: 2x2):
    each cell's coordinates and the tuple of its dots, rows from the top, as plotext's
    ``get_hd_marker`` reads it. Cells with a non-finite coordinate are left out (plotext
    would drop them as outside the canvas)."""
    if len(x) == 0:
        return [], [], []
    fx, fy = int(max(xf)), int(max(yf))
    # plotext reads every dot's position in its cell with the last point's factors
    cx, cy = int(xf[-1]), int(yf[-1])
    X, Y = _numeric(list(x)), _numeric(list(y))
    ok = np.isfinite(X) & np.isfinite(Y)
    X, Y = X[ok], Y[ok]
    if X.size == 0:
        return [], [], []
    gx, gy = np.floor_divide(X, fx), np.floor_divide(Y, fy)
    bit = (cy - 1 - np.floor(np.mod(Y, cy))) * cx + np.floor(np.mod(X, cx))
    gx, gy = gx.astype(np.int64), gy.astype(np.int64)
    x0, y0 = gx.min(), gy.min()
    span = int(gy.max() - y0) + 1
    codes, inverse = np.unique((gx - x0) * span + (gy - y0), return_inverse=True)
    bits = np.zeros((len(codes), cx * cy), dtype=np.int64)
    bits[inverse.reshape(-1), bit.astype(np.int64)] = 1
    out_x = (codes // span + x0).tolist()
    out_y = (codes % span + y0).tolist()
    return out_x, out_y, [tuple(row) for row in bits.tolist()]


def _unique_rows(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> list[tuple[int, int, int]]:
    """The distinct (a, b, c) triples of small integers, through one int64 code each."""
    if a.size == 0:
        return []
    a0, b0 = a.min(), b.min()
    nb, nc = int(b.max() - b0) + 1, int(c.max()) + 1
    codes = np.unique(((a - a0) * nb + (b - b0)) * nc + c)
    ab, cc = np.divmod(codes, nc)
    aa, bb = np.divmod(ab, nb)
    return list(zip((aa + a0).tolist(), (bb + b0).tolist(), cc.tolist()))


# -- a curve straight to cells ------------------------------------------------------------
DOTS = {"braille": (2, 4), "fhd": (2, 3), "hd": (2, 2)}   # plotext's marker_factor, per axis


def plotext_marker(marker: str) -> str:
    """The marker plotext draws for ``marker`` (its ``check_marker``): a named marker's
    character, a fine marker's name, else the first character."""
    marker = _ut.marker_codes.get(marker, marker)
    return marker if marker in _ut.hd_symbols else marker[0]


_CELL_CHARS: dict[tuple[int, int], np.ndarray] = {}


def _cell_chars(sx: int, sy: int) -> np.ndarray:
    """plotext's character for each set of dots of a fine-marker cell, indexed by the code
    sum(dot_k << k) with dots numbered as :func:`hd_group` numbers them (its tuple)."""
    table = _CELL_CHARS.get((sx, sy))
    if table is None:
        n = sx * sy
        table = np.array([" "] + [_ut.get_hd_marker(tuple((k >> b) & 1 for b in range(n)))
                                  for k in range(1, 1 << n)], dtype="<U1")
        _CELL_CHARS[(sx, sy)] = table
    return table


def cells(x: np.ndarray, y: np.ndarray, xlim, ylim, cols: int, rows: int, marker: str,
          lines: bool, fill: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What plotext's build puts in the cells of a ``cols`` x ``rows`` canvas for one
    signal (``plot`` when ``lines``, else ``scatter``) of data x, y (NaN: pen up) in the
    limits xlim, ylim: (column, row from the bottom, character) of each cell drawn, once
    each. Its steps, in NumPy: the data to dots (:func:`get_matrix_data`, the canvas
    scaled by the marker's dots per cell), the dots between consecutive points
    (:func:`get_lines`), with ``fill`` (plotext's ``fillx`` at a level) each dot's column
    of dots down (or up) to the level (its ``fill_data``), the dots grouped into cells (:func:`hd_group`) with plotext's
    character for each pattern of dots, and the cells outside the canvas dropped. Used by
    the chart for its curves; tests/tui/test_plotext_fast.py checks every chart drawn so
    against plotext's own build."""
    m = plotext_marker(marker)
    sx, sy = DOTS.get(m, (1, 1))
    gx = _matrix_floats(np.asarray(x, dtype=float), xlim, cols * sx)
    gy = _matrix_floats(np.asarray(y, dtype=float), ylim, rows * sy)
    if lines and len(gx):
        gx, gy, _ = _segment_dots(gx, gy)
    ok = np.isfinite(gx) & np.isfinite(gy)
    px, py = gx[ok].astype(np.int64), gy[ok].astype(np.int64)
    if fill is not None:
        px, py = _filled(px, py, fill, ylim, rows * sy)
    cx, cy = np.floor_divide(px, sx), np.floor_divide(py, sy)
    inside = (cx >= 0) & (cx < cols) & (cy >= 0) & (cy < rows)
    cell = (cy * cols + cx)[inside]
    if sx * sy == 1:
        drawn = np.unique(cell)
        return drawn % cols, drawn // cols, np.full(len(drawn), m, dtype="<U1")
    bit = ((sy - 1 - np.mod(py, sy)) * sx + np.mod(px, sx))[inside]
    code = np.zeros(cols * rows, dtype=np.int64)
    np.bitwise_or.at(code, cell, np.left_shift(1, bit))
    drawn = np.flatnonzero(code)
    return drawn % cols, drawn // cols, _cell_chars(sx, sy)[code[drawn]]


def _filled(px: np.ndarray, py: np.ndarray, fill: float, lim, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """plotext's ``fill_data`` towards the level ``fill`` (clamped to the limits, then to its
    dot): above the level a dot's column runs from the level up to it, below from it up to
    the level's dot excluded, at the level the dot alone."""
    level = int(_matrix_floats(np.array([min(max(fill, lim[0]), lim[1])]), lim, bins)[0])
    start = np.where(py > level, level, py)
    n = np.where(py > level, py - level + 1, np.where(py < level, level - py, 1))
    off = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return np.repeat(px, n), np.repeat(start, n) + off


def _matrix_floats(v: np.ndarray, lim, bins: int) -> np.ndarray:
    """:func:`get_matrix_data` on a float array: the dot of each finite value as a float
    (an integer), NaN where the value is not finite."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        n = (0.5 + (bins - 1) * (v - lim[0]) / (lim[1] - lim[0])) * 10 ** 8
        f = np.floor(n)
        r = np.where(n - f < 0.5, f, np.ceil(n)) * 10 ** (-8)
        out = np.floor(r)
    return np.where(np.isfinite(v) & np.isfinite(out), out, np.nan)


def install() -> None:
    """Put the versions above in plotext's helper module (its build reads them there)."""
    _ut.get_lines = get_lines
    _ut.hd_group = hd_group
    _ut.get_matrix_data = get_matrix_data
