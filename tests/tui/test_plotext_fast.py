"""The vectorised plotext helpers (tui/widgets/plotext_fast.py) give plotext the same
points as its own, and a chart drawn with them is the chart drawn with plotext's."""

from __future__ import annotations

import math

import numpy as np
import plotext._utility as ut
import pytest

from mletui.tui.widgets import plotext_fast
from mletui.tui.widgets.chart import Chart, Curve, Look

ORIG = plotext_fast.ORIGINAL


def _finite_rows(cols):
    rows = list(zip(*cols)) if cols and cols[0] else []
    return {r for r in rows if all(not (isinstance(v, float) and math.isnan(v)) for v in r[:2])}


def _polyline(rng, n, span):
    x = [int(v) for v in np.sort(rng.integers(0, span, n))]
    y = [int(v) for v in rng.integers(-3, span, n)]
    for i in rng.choice(n, size=max(1, n // 8), replace=False):   # pen-ups
        if rng.random() < 0.5:
            x[i] = math.nan
        else:
            y[i] = math.nan
    return x, y


@pytest.mark.parametrize("seed", range(12))
def test_get_lines_lights_the_dots_plotexts_get_lines_lights(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    x, y = _polyline(rng, n, int(rng.integers(2, 120)))
    m, c = ["braille"] * n, [int(v) for v in rng.integers(0, 3, n)]   # per-point attributes
    want = ORIG["get_lines"](x, y, m, c)
    got = plotext_fast.get_lines(x, y, m, c)
    assert _finite_rows(got) == _finite_rows(want)
    assert len(_finite_rows(got)) == len(list(zip(*got))) - sum(
        1 for r in zip(*got) if any(isinstance(v, float) and math.isnan(v) for v in r[:2]))


def test_get_lines_edge_cases_match():
    for x, y in [([], []), ([3], [4]), ([2, 2], [5, 5]), ([0, 9], [0, 2]), ([0, 2], [9, 0]),
                 ([5, 0], [0, -7]), ([1, math.nan, 4], [1, 2, 3])]:
        got = plotext_fast.get_lines(x, y, ["x"] * len(x))
        want = ORIG["get_lines"](x, y, ["x"] * len(x))
        assert _finite_rows(got) == _finite_rows(want), (x, y)


@pytest.mark.parametrize("factors", [(2, 4), (2, 2), (2, 3)])
@pytest.mark.parametrize("seed", range(6))
def test_hd_group_makes_plotexts_cells(factors, seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 200))
    x = [int(v) for v in rng.integers(0, 60, n)]
    y = [int(v) for v in rng.integers(0, 40, n)]
    if n > 3:
        x[1] = math.nan
    xf, yf = [factors[0]] * n, [factors[1]] * n
    wx, wy, wm = ORIG["hd_group"](x, y, xf, yf)
    gx, gy, gm = plotext_fast.hd_group(x, y, xf, yf)
    want = {(a, b): m for a, b, m in zip(wx, wy, wm)
            if not any(isinstance(v, float) and math.isnan(v) for v in (a, b))}
    assert dict(zip(zip(gx, gy), gm)) == want
    assert len(gx) == len(want)


def _charts(rng):
    n = 400
    x = np.arange(n, dtype=float)
    y = np.cumsum(rng.normal(size=n))
    y[rng.choice(n, 5, replace=False)] = np.nan
    y[7] = 1e6                                                   # clipped outlier
    yield Chart([Curve("a", x, y), Curve("exact", x, np.full(n, y[0]), role="reference")], robust=True)
    yield Chart([Curve("pts", rng.normal(size=300), rng.normal(size=300), kind="points", role="data"),
                 Curve("fit", np.linspace(-2, 2, 50), np.linspace(-1, 1, 50))])
    centres = np.linspace(-1, 1, 21)
    yield Chart([Curve("h", centres, rng.random(21), kind="bars", width=0.1),
                 Curve("exact", centres, np.full(21, 0.5), role="reference")])
    yield Chart([Curve("loss", x + 1, np.exp(-x / 50) + 1e-3)], logy=True)


@pytest.mark.parametrize("look", [Look(), Look(mono=True), Look(ascii=True)])
def test_a_chart_drawn_with_them_is_the_chart_plotext_draws(monkeypatch, look):
    """Every signal straight to cells (plotext_fast.cells) against every signal through
    plotext's build with its own helpers."""
    from mletui.tui.widgets import chart as chart_module

    for size in [(56, 14), (37, 9), (110, 30)]:
        for seed in range(2):
            fast = [c.render(*size, look) for c in _charts(np.random.default_rng(seed))]
            with monkeypatch.context() as m:
                m.setattr(ut, "get_lines", ORIG["get_lines"])
                m.setattr(ut, "hd_group", ORIG["hd_group"])
                m.setattr(ut, "get_matrix_data", ORIG["get_matrix_data"])
                m.setattr(chart_module, "VIA_PLOTEXT", True)
                slow = [c.render(*size, look) for c in _charts(np.random.default_rng(seed))]
            assert fast == slow


def _plotext_cells(x, y, xlim, ylim, cols, rows, marker, lines, fill=None):
    """{(column, row from the bottom): character} of one signal through plotext's build."""
    from mletui.tui.widgets.chart import _blank_figure

    fig = _blank_figure(cols, rows)
    fig.xlim(*xlim)
    fig.ylim(*ylim)
    if fill is None:
        (fig.plot if lines else fig.scatter)(list(x), list(y), marker=marker)
    else:
        fig.scatter(list(x), list(y), marker=marker, fillx=fill)
    fig._set_sizes()
    fig._build_matrix()
    m = fig.monitor.matrix.marker
    return {(c, r): m[r][c] for r in range(rows) for c in range(cols) if m[r][c] != " "}


@pytest.mark.parametrize("marker", ["braille", "hd", "fhd", "x", "dot"])
@pytest.mark.parametrize("seed", range(6))
def test_cells_are_the_cells_plotexts_build_draws(monkeypatch, marker, seed):
    """plotext_fast.cells against plotext's own build (its own helpers) for lines and points
    that run beyond the canvas on every side, with pen-ups."""
    for name, fn in ORIG.items():
        monkeypatch.setattr(ut, name, fn)
    rng = np.random.default_rng(300 + seed)
    n = int(rng.integers(2, 150))
    x = np.sort(rng.uniform(-0.3, 1.3, n))
    y = rng.normal(0.5, 0.5, n)
    y[rng.choice(n, max(1, n // 10), replace=False)] = np.nan
    cols, rows = int(rng.integers(5, 60)), int(rng.integers(3, 20))
    for lines in (True, False):
        want = _plotext_cells(x, y, (0.0, 1.0), (0.0, 1.0), cols, rows, marker, lines)
        cx, cy, chars = plotext_fast.cells(x, y, (0.0, 1.0), (0.0, 1.0), cols, rows, marker, lines)
        got = dict(zip(zip(cx.tolist(), cy.tolist()), chars.tolist()))
        assert len(got) == len(cx)
        assert got == want, (lines, len(got), len(want))
    ok = np.isfinite(y)
    for fill in (0.5, -1.0, 2.0, 0.0):                 # bars: filled to a level, clamped to the limits
        want = _plotext_cells(x[ok], y[ok], (0.0, 1.0), (0.0, 1.0), cols, rows, marker, False, fill)
        cx, cy, chars = plotext_fast.cells(x[ok], y[ok], (0.0, 1.0), (0.0, 1.0), cols, rows, marker, False, fill)
        assert dict(zip(zip(cx.tolist(), cy.tolist()), chars.tolist())) == want, fill


@pytest.mark.parametrize("seed", range(8))
def test_get_matrix_data_is_plotexts_element_for_element(seed):
    rng = np.random.default_rng(200 + seed)
    bins = int(rng.integers(2, 400))
    lo, hi = sorted(rng.normal(size=2) * 10.0 ** int(rng.integers(-3, 4)))
    data = list(rng.uniform(lo - (hi - lo), hi + (hi - lo), 300))
    # points on the cell edges, where rounding decides: 0.5 + (bins - 1) t = k + 0.5
    data += [lo + (hi - lo) * k / (bins - 1) for k in range(0, bins, max(1, bins // 20))]
    data += [lo, hi, math.nan, None, float(int(lo))]
    want = ORIG["get_matrix_data"](data, [lo, hi], bins)
    got = plotext_fast.get_matrix_data(data, [lo, hi], bins)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, float) and math.isnan(w):
            assert isinstance(g, float) and math.isnan(g)
        else:
            assert g == w and type(g) is type(w)


def test_a_kept_figure_carries_nothing_from_one_chart_to_the_next():
    """One plotext figure per size is kept and cleared: a chart drawn after others is the
    chart drawn on a new figure."""
    from mletui.tui.widgets import chart as chart_module

    def drawn(order):
        out = {}
        for i in order:
            out[i] = list(_charts(np.random.default_rng(5)))[i].render(56, 14, Look())
        return out

    chart_module._FIGURES.clear()
    forwards, backwards = drawn([0, 1, 2, 3]), drawn([3, 2, 1, 0])
    fresh = {}
    for i in range(4):
        chart_module._FIGURES.clear()
        fresh[i] = list(_charts(np.random.default_rng(5)))[i].render(56, 14, Look())
    assert forwards == backwards == fresh
