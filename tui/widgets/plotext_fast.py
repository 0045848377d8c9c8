"""NumPy versions of three of plotext's pure-Python rasterising helpers.

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


def get_lines(x, y, *other):
    """Every dot on the segments between consecutive points (plotext's ``get_line``:
    ``max(|dx|, |dy|) + 1`` evenly spaced dots, truncated to integers, the segment's end
    left to the next), a point next to a pen-up (NaN) kept as it is, the last point
    kept; ``other`` (markers, colours, styles) follow their segment's first point."""
    k = len(other)
    if len(x) == 0:
        return [[], []] + [[] for _ in range(k)]
    xf, yf = _numeric(list(x)), _numeric(list(y))
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
    px, py = np.append(px, xf[-1]), np.append(py, yf[-1])
    idx = np.append(seg, len(xf) - 1)
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


def install() -> None:
    """Put the versions above in plotext's helper module (its build reads them there)."""
    _ut.get_lines = get_lines
    _ut.hd_group = hd_group
    _ut.get_matrix_data = get_matrix_data
