"""View widgets driven headless, one at a time, in a small host app (``App.run_test``).
The assertions read what a widget decided to draw (its ``chart``: curves, ranges; the
table's cell texts; the readout's rows), not pictures."""

from __future__ import annotations

import asyncio
import math
import re

import numpy as np
import pytest
from textual.app import App

from mletui.engine.params import Param
from mletui.engine.topic import Frame, Topic, View
from mletui.tui.charset import ASCII, UNICODE
from mletui.tui.widgets import toggle_history, widget_for
from mletui.tui.widgets.chart import Chart, Curve, Look
from mletui.tui.widgets.numbers import cell_text, value_error
from mletui.tui.widgets.readout import Readout
from mletui.tui.widgets.table import TableView, layout
from mletui.tui.widgets.ticks import inner_ticks, linear_ticks, log_ticks
from mletui.tui.widgets.trace import TraceView


class Host(App):
    """One widget filling the screen."""

    def __init__(self, widget, **kw) -> None:
        super().__init__(**kw)
        self.widget = widget

    def compose(self):
        yield self.widget


def hosted(widget, script, size=(60, 16)):
    async def main():
        app = Host(widget)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await script(pilot)

    asyncio.run(main())


class Sweeps(Topic):
    name = "sweeps"
    step_unit = "sweep"
    labels = {"energy": ("energy per spin", "J"), "beta": "beta"}


def history(n, scalars, params_at=()):
    """Frames 1..n; ``scalars(i)`` gives frame i's scalars; frames in ``params_at`` carry
    params (an edit happened just before them), as the runner marks them."""
    return [Frame(step=i, scalars=scalars(i), params={"edited": True} if i in params_at else None)
            for i in range(1, n + 1)]


def curve(chart, role, label=None):
    return next(c for c in chart.curves if c.role == role and (label is None or c.label == label))


def test_every_chart_colour_is_a_distinct_hue_on_the_screen():
    """Textual draws the 16 named ANSI colours through its terminal theme, where red,
    magenta and bright_magenta are one #f4005f: two references once shared a hue. What
    reaches the screen (the theme's RGB) must differ for every series, reference, bar
    and data colour."""
    from rich.color import Color
    from textual._ansi_theme import DEFAULT_TERMINAL_THEME

    from mletui.tui.widgets import chart as ch

    names = [*ch.SERIES_COLOURS, *ch.REFERENCE_COLOURS, ch.DATA_COLOUR, ch.BAR_COLOUR]
    rgb = [Color.parse(n).get_truecolor(DEFAULT_TERMINAL_THEME) for n in names]
    assert len(set(rgb)) == len(rgb), dict(zip(names, (c.hex for c in rgb)))
    for a in range(len(rgb)):       # and not merely different by a shade
        for b in range(a):
            d = sum((x - y) ** 2 for x, y in zip(rgb[a], rgb[b])) ** 0.5
            assert d > 60, (names[a], names[b], rgb[a].hex, rgb[b].hex)


# -- ticks --------------------------------------------------------------------------------

@pytest.mark.parametrize("lo,hi,most", [(-1.47, -1.346, 5), (30, 2615, 5), (0.405, 0.695, 6),
                                        (1e6, 1.23e6, 5), (1e-5, 3e-5, 4), (-0.2, 7.3, 4)])
def test_linear_ticks_are_round_1_2_5_steps_that_enclose_the_data(lo, hi, most):
    t = linear_ticks(lo, hi, most)
    assert t.lo <= lo and t.hi >= hi                 # the first and last tick are drawn
    assert t.values[0] == t.lo and t.values[-1] == t.hi
    assert 2 <= len(t.values) <= most
    steps = np.diff(t.values)
    assert np.allclose(steps, steps[0])
    mant = steps[0] / 10 ** math.floor(math.log10(steps[0]) + 1e-9)
    assert round(mant, 6) in (1.0, 2.0, 5.0)
    for v, s in zip(t.values, t.labels):
        assert len(s) <= 7 and float(s) == pytest.approx(v, rel=1e-9, abs=1e-12)
    decimals = {len(s.split(".")[1]) if "." in s and "e" not in s else 0 for s in t.labels if s != "0"}
    assert len(decimals) == 1                        # one format per axis


def test_ticks_on_integer_axes_are_integers_and_one_point_gets_short_labels():
    t = linear_ticks(1, 42, 5, integer=True)
    assert all(float(v).is_integer() for v in t.values) and all("." not in s for s in t.labels)
    assert inner_ticks(1, 1, 5, integer=True).labels == ("0", "1", "2")
    one = linear_ticks(-2.10804643710364381, -2.10804643710364381, 5)
    assert one.lo < -2.108 < one.hi and max(len(s) for s in one.labels) <= 4, one


def test_a_range_far_below_the_values_magnitude_gets_distinct_labels_and_a_floor():
    """A converged EM log-likelihood (-2.1075030 and -2.1075025 for the two fits) once drew
    two ticks both labelled "-2.107502e0"."""
    t = linear_ticks(-2.1075030, -2.1075025, 5)
    assert len(set(t.labels)) == len(t.labels) and all("e" not in s for s in t.labels), t
    assert t.hi - t.lo >= 1e-5 * 2.1075 * 0.999          # flat at this scale: drawn flat
    assert t.lo <= -2.1075030 and t.hi >= -2.1075025
    for v, s in zip(t.values, t.labels):
        assert float(s) == pytest.approx(v, rel=1e-9)


def test_log_ticks_are_decades_over_many_decades_and_round_values_over_few():
    assert log_ticks(1e-9, 1e3, 5).labels == ("1e-9", "1e-6", "0.001", "1", "1000")
    assert log_ticks(0.003, 0.7, 5).labels == ("0.001", "0.01", "0.1", "1")
    assert log_ticks(0.405, 0.695, 6).labels == ("0.4", "0.5", "0.6", "0.7")


# -- the chart ------------------------------------------------------------------------------

def _noisy(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(1, n + 1)
    return x, -1.42 + 0.01 * rng.standard_normal(n)


@pytest.mark.parametrize("look", [Look(), Look(mono=True), Look(ascii=True, mono=True), Look(ascii=True)])
def test_chart_rows_are_exactly_the_width_and_ascii_mode_is_ascii(look):
    x, y = _noisy()
    chart = Chart([Curve("a", x, y), Curve("b", x, y + 0.02), Curve("exact", x, np.full_like(y, -1.41),
                                                                      role="reference")],
                  xlabel="sweep", ylabel="E/N", integer_x=True, robust=True)
    for w, h in ((60, 16), (26, 7), (9, 4)):
        rows = chart.render(w, h, look)
        assert len(rows) == h and all(sum(len(t) for t, _ in r) == w for r in rows)
        text = "".join(t for r in rows for t, _ in r)
        if look.ascii:
            assert text.isascii(), [c for c in text if not c.isascii()][:5]
        if look.mono:
            assert all(s is None or s.color is None for r in rows for _, s in r)


def test_each_series_has_its_own_colour_and_in_mono_and_ascii_its_own_marker():
    x = np.arange(10.0)
    chart = Chart([Curve(f"s{k}", x, x * k) for k in range(5)] +
                  [Curve("exact", x, x, role="reference")])
    for look in (Look(), Look(mono=True), Look(ascii=True, mono=True)):
        chart.assign_styles(look)
        marks = [c.mark for c in chart.curves]
        colours = [c.colour for c in chart.curves]
        assert len(set(marks)) == len(marks) and len(set(colours)) == len(colours)
    chart.assign_styles(Look(ascii=True, mono=True))
    rows = chart.render(40, 12, Look(ascii=True, mono=True))
    text = "".join(t for r in rows for t, _ in r)
    for c in chart.curves:                           # every marker is on screen
        assert c.mark in text, c


def test_an_outlier_is_clipped_with_a_marker_and_the_ticks_stay_short():
    x, y = _noisy()
    y[10] = 1e8
    chart = Chart([Curve("", x, y)], robust=True, integer_x=True)
    rows = chart.render(50, 12, Look())
    assert chart.clipped == {"above": 1, "below": 0}
    text = ["".join(t for t, _ in r) for r in rows]
    assert "▲" in text[0]
    labels = [t.split("┤")[0].strip() for t in text if "┤" in t]
    assert labels and max(len(s) for s in labels) <= 6, labels
    assert all(-1.6 < float(s) < -1.2 for s in labels)


def test_legend_goes_where_it_covers_nothing():
    x = np.linspace(0, 1, 200)
    chart = Chart([Curve("rise", x, x), Curve("rise too", x, x * 0.9)])  # data on the diagonal
    rows = [["".join(t for t, _ in r)] for r in chart.render(60, 14, Look(ascii=True, mono=True))]
    top = [r[0] for r in rows[:2]]
    # the top-left corner is empty above the diagonal: the legend is there
    assert "* rise" in top[0] and "o rise too" in top[1], top


def _plot_area(rows: list[str]) -> list[str]:
    """The cells inside the axes: the rows above the x axis, right of the y axis."""
    axis = next(i for i, r in enumerate(rows) if r.strip() and set(r.strip()) <= set("└─┬+-"))
    left = len(rows[axis]) - len(rows[axis].lstrip()) + 1
    return [r[left:] for r in rows[:axis]]


def _plotext_canvas(cols, rows, x, y, xr, yr):
    """What plotext itself draws for one braille line in a bare figure of that size."""
    from plotext._figure import _figure_class

    f = _figure_class()
    f._limit_size(False, False)
    f.plot_size(cols, rows)
    f.theme("clear")
    f.xaxes(False, False), f.yaxes(False, False), f.frame(False), f.xticks([]), f.yticks([])
    f.xlim(*xr), f.ylim(*yr)
    f.plot(list(x), list(y), marker="braille")
    f._set_sizes()
    f._build_matrix()
    return ["".join(r) for r in f.monitor.matrix.marker[::-1]]


def test_a_legend_too_long_for_one_header_row_takes_two_with_its_labels_whole():
    """Six runs whose labels do not fit one header row, and curves filling every corner:
    the legend goes on two header rows, every label whole, when five plot rows remain."""
    x = np.linspace(0, 1, 100)
    names = ["kfac_true", "kfac_empirical", "sgd_momentum", "adam", "ngd_exact", "budget"]
    chart = Chart([Curve(n, x, np.sin(6 * x + k) + 0.1 * k) for k, n in enumerate(names)])
    rows = ["".join(t for t, _ in r) for r in chart.render(48, 14, Look())]
    head = rows[0] + rows[1]
    assert all(n in head for n in names), rows[:2]
    assert not any(ch in "⠁⠂⠄⡀⢀⠈⠐⠠" for ch in head)          # no plot in the header rows


def test_a_curve_drawn_under_another_is_named_not_silently_hidden():
    """One cell shows one curve: where two coincide within a dot the later one hides the
    earlier. Chart.under names the curves the plot drew mostly under another; apart, none;
    crossing once, none."""
    x = np.linspace(0, 1, 200)
    same = Chart([Curve("exact", x, x ** 2, role="reference"), Curve("estimate", x, x ** 2 + 1e-4)])
    same.render(50, 12, Look())
    assert same.under() == [("exact", "estimate")]
    apart = Chart([Curve("a", x, x), Curve("b", x, x + 0.5)])
    apart.render(50, 12, Look())
    assert apart.under() == []
    cross = Chart([Curve("a", x, x), Curve("b", x, 1 - x)])
    cross.render(50, 12, Look())
    assert cross.under() == []


def test_the_plot_area_is_what_plotext_draws_for_the_same_curve(monkeypatch):
    import plotext._figure
    from mletui.tui.widgets import chart as chart_module

    x = np.linspace(0, 10, 400)
    y = np.sin(x) + 0.3 * np.cos(7 * x)
    draw = lambda: _plot_area(["".join(t for t, _ in r) for r in
                               Chart([Curve("", x, y)], xlim=(0, 10), ylim=(-2, 2)).render(50, 14, Look())])
    area = draw()
    assert area == _plotext_canvas(len(area[0]), len(area), x, y, (0, 10), (-2, 2))
    assert sum(ch != " " for r in area for ch in r) > 60      # a real curve, not blank

    class Blind(plotext._figure._figure_class):               # a plotext that plots nothing
        def plot(self, *args, **kwargs):
            pass

    # the reference path of the chart-equality tests is plotext's build itself: a plotext
    # that plots nothing leaves it blank (the default path is plotext_fast.cells)
    monkeypatch.setattr(chart_module, "_figure_class", Blind)
    monkeypatch.setattr(chart_module, "VIA_PLOTEXT", True)
    assert all(r.strip() == "" for r in draw())
    monkeypatch.setattr(chart_module, "VIA_PLOTEXT", False)
    assert draw() == area


def test_a_level_line_lands_braille_cells_in_its_row_and_a_nan_lifts_the_pen():
    x = np.arange(10.0)
    y = np.zeros(10)
    y[4:6] = np.nan
    chart = Chart([Curve("", x, y)], xlim=(0, 9), ylim=(-1, 1))
    area = _plot_area(["".join(t for t, _ in r) for r in chart.render(13, 7, Look())])
    assert len(area) == 5 and len(area[0]) == 10
    # y = 0 is dot 10 of 20 from the bottom: the middle row; x = 3 and x = 6 end the pieces
    # at cells 3 and 6, so cells 4 and 5 stay empty
    assert [r.strip() == "" for r in area] == [True, True, False, True, True]
    line = area[2]
    assert all(0x2800 < ord(ch) <= 0x28FF for k, ch in enumerate(line) if k not in (4, 5)), line
    assert line[4] == line[5] == " ", line


def test_a_line_beyond_the_x_range_is_cut_at_its_edges():
    # from (-1e6, 0) to (1e6, 1): over x in [0, 10] it is y = 0.5 (to 5e-6), edge to edge
    chart = Chart([Curve("", [-1e6, 1e6], [0.0, 1.0])], xlim=(0, 10), ylim=(0, 1))
    area = _plot_area(["".join(t for t, _ in r) for r in chart.render(24, 7, Look())])
    filled = [k for k, r in enumerate(area) if r.strip()]
    assert filled == [2] and " " not in area[2], area       # the middle row, every cell


def test_in_colour_each_series_cells_carry_its_colour_and_in_mono_no_cell_has_a_style():
    x = np.linspace(0, 1, 50)
    chart = Chart([Curve(f"s{k}", x, np.full_like(x, k)) for k in range(3)] +
                  [Curve("exact", x, np.full_like(x, 1.5), role="reference")], ylim=(-0.5, 3.5))
    rows = chart.render(40, 12, Look())
    colours = {s.color.name for r in rows for t, s in r if s is not None and s.color is not None
               and any(0x2800 < ord(ch) <= 0x28FF for ch in t)}
    assert colours == {c.colour for c in chart.curves}       # four curves, four colours
    mono = chart.render(40, 12, Look(mono=True))
    assert all(s is None or (s.color is None and s.bgcolor is None) for r in mono for _, s in r)
    plot = "".join(t for r in mono for t, _ in r)
    for c in chart.curves[1:]:                               # each has its own character
        assert c.mark in plot, c.mark


def test_ascii_bars_are_hashes_and_nothing_else_leaves_ascii():
    edges = np.linspace(-1, 1, 11)
    counts = np.array([0, 1, 3, 7, 12, 12, 7, 3, 1, 0], dtype=float)
    chart = Chart([Curve("", (edges[:-1] + edges[1:]) / 2, counts, kind="bars", width=np.diff(edges))],
                  integer_y=True)
    area = _plot_area(["".join(t for t, _ in r) for r in chart.render(44, 14, Look(ascii=True, mono=True))])
    text = "".join(area)
    assert text.isascii() and set(text) <= {"#", " "}
    heights = [sum(r[k] == "#" for r in area) for k in range(len(area[0]))]
    # 12 on an axis to 15 over 12 rows: plotext fills dots 0..floor(0.5 + 11 * 12 / 15) = 9
    assert max(heights) == 10 and heights[0] == 0
    assert 0 in heights[len(heights) // 4: len(heights) // 2]   # neighbours keep a gap column


# -- trace: references, window, scales -------------------------------------------------------

def test_a_reference_is_drawn_at_each_x_of_the_history_not_as_the_latest_value():
    betas = np.linspace(0.0, 1.0, 41)
    exact = lambda b: -2 * np.tanh(2 * b)           # any curve over x
    frames = [Frame(step=i, scalars={"beta": float(b), "energy": float(exact(b) + 0.01),
                                     "energy_exact": float(exact(b))})
              for i, b in enumerate(betas)]
    view = View("trace", "energy vs beta", series=("energy",), reference=("energy_exact",), x="beta")
    w = TraceView(view, UNICODE, topic=type("Finite", (Sweeps,), {"finite": True})())

    async def script(pilot):
        w.show(frames[-1], frames)
        ref = curve(w.chart, "reference")
        np.testing.assert_allclose(ref.x, betas)
        np.testing.assert_allclose(ref.y, exact(betas))
        assert np.ptp(ref.y) > 1.5                   # not a line at the latest value
        assert w.chart.xlabel == "β"

    hosted(w, script)


def test_a_constant_reference_is_a_line_only_for_the_stretch_it_holds_for():
    # beta edited at frame 51: the exact value moves from -1.4 to -1.7 there
    frames = history(100, lambda i: {"energy": -1.5, "energy_exact": -1.4 if i <= 50 else -1.7},
                     params_at=(1, 51))
    view = View("trace", "energy", series=("energy",), reference=("energy_exact",))
    w = TraceView(view, UNICODE)
    w.full_history = True

    async def script(pilot):
        w.show(frames[-1], frames)
        ref = curve(w.chart, "reference")
        gap = np.flatnonzero(np.isnan(ref.x))
        assert len(gap) == 1                         # one pen-up, at the edit
        before, after = ref.y[:gap[0]], ref.y[gap[0] + 1:]
        assert np.all(before == -1.4) and np.all(after == -1.7)
        np.testing.assert_array_equal(ref.x[:gap[0]], np.arange(1, 51))
        np.testing.assert_array_equal(ref.x[gap[0] + 1:], np.arange(51, 101))

    hosted(w, script)


def test_a_reference_curve_the_frame_carries_is_drawn_as_given():
    grid = np.linspace(0, 1, 11)
    frames = history(5, lambda i: {"beta": i / 10, "log_z": float(i)})
    frames[-1].arrays["log_z_exact"] = {"x": grid.tolist(), "y": (grid ** 2).tolist()}
    w = TraceView(View("trace", "ln Z", series=("log_z",), reference=("log_z_exact",), x="beta"), UNICODE)

    async def script(pilot):
        w.show(frames[-1], frames)
        ref = curve(w.chart, "reference")
        np.testing.assert_allclose(ref.x, grid)
        np.testing.assert_allclose(ref.y, grid ** 2)

    hosted(w, script)


def test_the_recent_window_autoscales_past_the_transient_and_h_shows_everything():
    frames = history(400, lambda i: {"energy": (0.0 if i <= 20 else -1.42 + 0.001 * (i % 7))})
    w = TraceView(View("trace", "energy", series=("energy",)), UNICODE, topic=Sweeps())

    async def script(pilot):
        w.show(frames[-1], frames)
        c = w.chart.curves[0]
        assert c.x[0] == 301 and c.x[-1] == 400      # the last quarter
        lo, hi = w.chart.y_range()
        assert hi < -1.3                             # the transient at 0 is not in view
        assert w.chart.xlabel == "sweep" and w.chart.integer_x
        assert "last 100 of 400 frames" in w.notes_text
        assert toggle_history([w]) == "traces: full history"
        c = w.chart.curves[0]
        assert c.x[0] == 1 and len(c.x) == 400
        assert toggle_history([w]).startswith("traces: recent")

    hosted(w, script)


def test_logy_is_honoured_with_decade_ticks():
    frames = history(60, lambda i: {"loss": 10.0 ** (-i / 10)})
    w = TraceView(View("trace", "loss", series=("loss",), options={"logy": True}), UNICODE)
    w.full_history = True

    async def script(pilot):
        w.show(frames[-1], frames)
        assert w.chart.logy
        labels = [r.split("┤")[0].strip() for r in w.rows() if "┤" in r]
        assert set(labels) <= {"1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1"}, labels
        assert len(labels) >= 3

    hosted(w, script)


def test_a_first_frame_with_one_point_draws_short_sensible_axes():
    f = Frame(step=1, scalars={"loss": -2.10804643710364381})
    w = TraceView(View("trace", "loss", series=("loss",)), UNICODE)

    async def script(pilot):
        w.show(f, [f])
        rows = w.rows()
        labels = [r.split("┤")[0].strip() for r in rows if "┤" in r]
        assert labels and max(len(s) for s in labels) <= 5, labels
        assert any(ch in "".join(rows) for ch in "⠁⠂⠄⡀⠈⠐⠠⢀")  # the point is drawn
        assert "step" in rows[-1]                    # the x label, in the step unit

    hosted(w, script)


def test_nan_is_counted_not_drawn_and_the_subtitle_never_has_an_ellipsis():
    frames = history(30, lambda i: {"energy_per_spin_of_a_long_name": math.nan if i % 3 == 0 else -1.0 * i})
    w = TraceView(View("trace", "energy", series=("energy_per_spin_of_a_long_name",)), ASCII)

    async def script(pilot):
        w.show(frames[-1], frames)
        await pilot.pause()
        assert "10 nan not drawn" in w.notes_text
        assert "10 nan not drawn" in str(w.border_subtitle)   # warnings come first
        assert "…" not in str(w.border_subtitle) and str(w.border_subtitle).isascii()
        assert np.isnan(w.chart.curves[0].y).sum() == 10

    hosted(w, script, size=(30, 10))


# -- histograms ---------------------------------------------------------------------------

def test_a_histogram_title_says_what_was_binned():
    frames = history(40, lambda i: {"m": (i % 5) / 5})
    w = widget_for(View("histogram", "magnetization", series=("m",)), UNICODE)
    src = widget_for(View("histogram", "m per replica", source="h"), UNICODE)

    async def script(pilot):
        w.show(frames[-1], frames)
        await pilot.pause()
        assert str(w.border_title) == "magnetization: last 40 frames"
        f = Frame(views={"h": {"edges": [-1, 0, 1], "counts": [3, 5], "binned": "8 replicas x 40 frames"}})
        src.show(f)
        assert src._title_extra == "8 replicas x 40 frames"

    hosted(w, script)


def test_density_lines_over_a_histogram_have_distinct_colours():
    lines = {name: ([0, 1, 2], [1, 2, 1]) for name in ("EM mixture", "EM 1", "EM 2", "gradient mixture")}
    f = Frame(views={"d": {"edges": [0, 1, 2, 3], "counts": [1, 3, 1], "lines": lines}})
    w = widget_for(View("histogram", "density", source="d"), UNICODE)

    async def script(pilot):
        w.show(f)
        w.chart.assign_styles(Look())
        line_colours = [c.colour for c in w.chart.curves if c.kind == "line"]
        assert len(line_colours) == 4 and len(set(line_colours)) == 4
        bars = next(c.colour for c in w.chart.curves if c.kind == "bars")
        assert not {bars, "bright_" + bars} & set(line_colours)   # no line in the bars' hue

    hosted(w, script)


# -- tables ---------------------------------------------------------------------------------

def test_value_and_error_are_written_to_the_errors_significant_digits():
    assert value_error(-1.42195, 0.0022265) == "-1.4220 ± 0.0022"
    assert value_error(-1.42195, 0.0022265, ascii=True) == "-1.4220 +/- 0.0022"
    assert value_error(-1.42195, 0.0022265, level=1) == "-1.4220(22)"
    assert value_error(-1.42195, 0.0022265, level=2) == "-1.422(2)"
    assert value_error(36.962, 6.2872, level=2) == "37(6)"
    assert value_error(1.2e-5, 3e-7, level=1) == "1.200(30)e-5"
    assert cell_text(None) == "-" and cell_text(math.nan) == "nan"
    flagged = cell_text((2.9, 0.5, 1.8))
    assert "not equilibrated" in flagged and "±" not in flagged and "1.8" in flagged
    assert cell_text((0.31, 0.01, 1.01)) == "0.310 ± 0.010"   # mixed chains: the error stands


ISING_TABLE = (["observable", "measured", "exact L=64", "L=inf"],
               [["energy/spin", (-1.42195, 0.0022265), -1.41605874, -1.40223],
                ["|m|", (0.60826, 0.011764), None, 0.0],
                ["C/spin", (2.0168, 0.063806), 2.2205, None],
                ["acceptance", 0.19694, None, None]])
KFAC_TABLE = (["run", "damping", "cond A[0]", "cond G[0]", "kl", "skipped"],
              [["kfac_true", 0.01, 1.58, 1.6, 0.00099, 0], ["kfac_empirical", 0.01, 1.5, 1.99, 0.001, 0]])
_NUMBER = re.compile(r"^-?\d+(\.\d+)?(\(\d+(\.\d+)?\))?(e-?\d+)?$")


@pytest.mark.parametrize("table", [ISING_TABLE, KFAC_TABLE])
@pytest.mark.parametrize("width", [22, 25, 27, 30, 36, 40, 44, 60])
def test_tables_never_cut_a_number_and_row_labels_stay_distinct(table, width):
    columns, rows = table
    heads, body, hidden = layout(columns, rows, width, ascii=True)
    assert body, "nothing fits"
    for r, src in zip(body, rows):
        assert sum(len(c) for c in r) + 2 * (len(r) - 1) <= width
        for text, cell in zip(r[1:], src[1:]):
            assert "…" not in text and "~" not in text
            if cell is None:
                assert text == "-"
                continue
            first = text.split(" +/- ")[0]
            assert _NUMBER.match(first), (width, text)
            value = cell[0] if isinstance(cell, tuple) else cell
            digits = re.sub(r"\(.*\)", "", first)
            assert float(digits) == pytest.approx(value, rel=0.05, abs=1e-9), (text, value)
    labels = [r[0] for r in body]
    assert len(set(labels)) == len(labels), labels
    assert len(heads) + hidden == len(columns)


def test_a_table_widget_fits_its_width_at_80x24_sizes():
    w = TableView(View("table", "measured vs exact", source="t"), ASCII)
    f = Frame(views={"t": {"columns": ISING_TABLE[0], "rows": ISING_TABLE[1]}})

    async def script(pilot):
        w.show(f)
        await pilot.pause()
        text = w.render().plain
        assert "…" not in text and text.isascii()
        assert "-1.4" in text
        assert all(len(line) <= w.content_size.width for line in text.splitlines())

    hosted(w, script, size=(27, 8))


# -- the values panel ----------------------------------------------------------------------

def test_values_panel_shows_labels_and_units_and_scrolls_with_the_selection():
    names = [f"scalar_{k:02d}" for k in range(30)]
    topic = Sweeps()
    topic.labels = {"scalar_00": ("energy per spin", "J"), **{n: n.replace("_", " ") for n in names[1:]}}
    frame = Frame(scalars={n: float(k) for k, n in enumerate(names)})
    r = Readout(topic)

    async def script(pilot):
        r.show(frame)
        r.focus()
        await pilot.pause()
        text = r.render().plain
        assert text.splitlines()[0].startswith("energy per spin") and text.splitlines()[0].endswith("0 J")
        assert "~" not in text and "scalar_" not in text
        for _ in range(25):
            await pilot.press("down")
        await pilot.pause()
        text = r.render().plain
        assert r.selected == 25 and "scalar 25" in text and "energy per spin" not in text
        assert "of 30" in str(r.border_subtitle)

    hosted(r, script, size=(30, 10))


def _readout(labels: dict, scalars: dict, size: tuple[int, int]) -> tuple[list[str], int]:
    """The values panel's lines and content width for these labels and scalars."""
    topic = Sweeps()
    topic.labels = labels
    r = Readout(topic)
    out: dict = {}

    async def script(pilot):
        r.show(Frame(scalars=scalars))
        await pilot.pause()
        out["lines"], out["width"] = r.render().plain.splitlines(), r.content_size.width

    hosted(r, script, size=size)
    return out["lines"], out["width"]


def test_a_long_text_value_does_not_squeeze_the_labels_of_the_numbers():
    """A string scalar ("compiling for L=16, first time only") once set the value column to
    its own width, and every label became one letter at 80x24."""
    lines, width = _readout({"sweep": ("sweep", "sweeps"), "energy": ("energy per spin", "J"),
                             "compiling": ("compiling", "")},
                            {"sweep": 4, "energy": -0.0080002, "compiling": "compiling for L=16, first time only"},
                            (34, 6))
    assert len(lines) == 3 and all(len(line) <= width for line in lines), lines
    assert lines[0].startswith("sweep") and lines[0].endswith("4 sweeps")
    assert lines[1].startswith("energy per spin") and lines[1].endswith("-0.0080002 J")
    assert lines[2].startswith("compiling compiling for L=16") and lines[2].endswith("…")


def test_a_standard_error_shows_two_significant_digits_and_keeps_its_label_whole():
    """At 80x24 'ln Z AIS s.e. 0.014387' was cut to 'ln Z AIS s 0.014387' (read as another
    ln Z): an uncertainty to two digits, as the tables' 17.396(14), frees the label."""
    lines, _ = _readout({"log_z_ais": ("ln Z (AIS)", ""), "log_z_ais_stderr": ("ln Z AIS s.e.", ""),
                         "log_z_ais_stderr_pcd": ("ln Z AIS s.e. (pcd)", "")},
                        {"log_z_ais": 17.39612, "log_z_ais_stderr": 0.0143871, "log_z_ais_stderr_pcd": 0.0143871},
                        (24, 6))
    assert lines[0].endswith("17.396")
    assert lines[1].startswith("ln Z AIS s.e.") and lines[1].endswith(" 0.014"), lines
    assert lines[2].endswith(" 0.014"), lines


def test_a_label_uses_the_room_its_short_value_leaves_in_the_value_column():
    """At 80x24 another row's wide value ('-19.215 nats') set the column, and 'ln Z AIS
    s.e.' was cut to 'ln Z AIS s' beside a value of five characters."""
    lines, width = _readout({"ll": ("log-likelihood", "nats"), "log_z_ais_stderr": ("ln Z AIS s.e.", "")},
                            {"ll": -19.2151234, "log_z_ais_stderr": 0.0351}, (19, 6))
    assert lines[1].startswith("ln Z AIS s.e.") and lines[1].endswith("0.035"), lines
    assert all(len(line) == width for line in lines), (lines, width)     # values end at the edge


def test_rows_sharing_a_qualifier_are_grouped_under_it_with_whole_labels():
    """K-FAC's compare mode read 'tr. (kfac_true)', 'va. (kfac_true)': the qualifier took
    the room. Rows that share one go under a header naming it, with their own words."""
    topic = Sweeps()
    topic.labels = {f"{q}_{m}": (f"{h} ({m})", "") for q, h in (("train", "training loss"), ("val", "validation loss"))
                    for m in ("kfac_true", "sgd")}
    topic.labels["lone"] = ("Fisher error (kfac_true_0)", "")
    frame = Frame(scalars={"train_kfac_true": 0.45476, "val_kfac_true": 0.45309,
                           "train_sgd": 0.6, "val_sgd": 0.61, "lone": 346.16})
    r = Readout(topic)

    async def script(pilot):
        r.show(frame)
        await pilot.pause()
        lines = [line.rstrip() for line in r.render().plain.splitlines()]
        assert lines[0] == "kfac_true" and lines[3] == "sgd", lines
        assert lines[1].startswith(" training loss") and lines[1].endswith("0.45476")
        assert lines[2].startswith(" validation loss") and lines[5].endswith("0.61")
        assert lines[6].endswith("346.16") and "(" in lines[6]      # alone: keeps its qualifier
        r.focus()
        for _ in range(10):
            await pilot.press("down")
        assert r.selected == 6                                   # headers are rows to move over

    hosted(r, script, size=(30, 10))


def test_labels_that_differ_only_in_their_qualifier_stay_apart_when_shortened():
    """The K-FAC values panel showed four rows "Fi. er. (kf._tr" (per-layer Fisher errors
    of kfac_true_0 ... _3): the qualifier is what tells rows apart, so it is kept."""
    from mletui.tui.widgets.labels import abbreviate

    labels = [f"Fisher error (kfac_true_{k})" for k in range(4)] + ["Fisher error (kfac_empirical_0)"]
    for width in (15, 18, 22):
        short = [abbreviate(lab, width) for lab in labels]
        assert all(len(s) <= width for s in short), short
        assert len(set(short)) == len(labels), short
        assert all(s.endswith(")") for s in short), short
    assert abbreviate("step time (sgd)", 15) == "step time (sgd)"


def test_legend_labels_lose_the_shared_stem_and_the_parentheses():
    from mletui.tui.widgets.labels import strip_common

    assert strip_common(["training loss (kfac_true)", "training loss (sgd)"]) == ["kfac_true", "sgd"]
    assert strip_common(["loss_sgd", "loss_adam"]) == ["sgd", "adam"]
    assert strip_common(["log_z", "log_z_exact"]) == ["log_z", "log_z_exact"]
    # cut inside the qualifier: no stray ")" ("true)" and "empirical)" read as typos)
    assert strip_common(["Fisher error (kfac_true)", "Fisher error (kfac_empirical)"]) == ["true", "empirical"]
    assert strip_common(["a (kfac_true)", "a (kfac_x (1))"]) == ["a (kfac_true)", "a (kfac_x (1))"]


def test_runs_are_named_by_what_tells_them_apart_beside_a_reference():
    from mletui.tui.widgets.labels import series_labels

    runs = ["KL moved (kfac_true)", "KL moved (sgd)", "KL moved (adam)"]
    assert series_labels(runs, ["KL budget (ngd)"]) == ["kfac_true", "sgd", "adam", "KL budget (ngd)"]
    # what every label shares still goes for all ("energy per spin" is not a run qualifier)
    assert series_labels(["loss (sgd)", "loss (adam)"], ["loss (exact)"]) == ["sgd", "adam", "exact"]
    assert series_labels(["energy per spin"], ["exact energy (Kaufman)"]) == \
        ["energy per spin", "exact energy (Kaufman)"]


def test_an_axis_label_that_names_its_unit_is_not_repeated():
    from mletui.tui.widgets.labels import with_unit

    assert with_unit("sweeps", "sweeps") == "sweeps"            # was "sweeps (sweeps)"
    assert with_unit("energy", "J") == "energy (J)"
    assert with_unit("time in sweeps", "sweeps") == "time in sweeps"
    assert with_unit("beta", "") == "beta"


# -- the parameter panel ------------------------------------------------------------------

def test_a_param_value_takes_the_blank_part_of_the_name_column():
    """At 80x24 the Boltzmann list is 23 columns wide and its name column is set by
    'teacher_seed' (cut to 11): 'dataset bars_stripes' fits whole by taking what 'dataset' leaves blank
    (it was cut to 'bars_st~'); a value longer than the row is still cut with a marker, and
    every row keeps the panel's width."""
    from mletui.engine.topics import get_topic
    from mletui.tui.widgets.params import ParamPanel

    topic = get_topic("boltzmann")
    panel = ParamPanel(topic, UNICODE, {**topic.default_params(), "dataset": "bars_stripes"})
    rows = panel.render_rows(23, selected=0, focused=False).plain.split("\n")
    by_name = {r[1:].split()[0]: r for r in rows[:len(topic.params)]}
    assert "bars_stripes" in by_name["dataset"]
    assert len({len(r) for r in rows[:len(topic.params)]}) == 1
    narrow = panel.render_rows(14, selected=0, focused=False).plain.split("\n")
    row = narrow[[p.name for p in topic.params].index("dataset")]
    assert "~" in row and len(row) == len(narrow[0])


def test_param_list_scrolls_with_the_selection_and_the_input_box_is_on_screen():
    from mletui.tui.widgets.params import ParamList, ParamPanel

    class Many(Topic):
        name = "many"
        params = tuple(Param(f"p{k:02d}", "float", 1.0, "a knob", lo=0.0, hi=10.0) for k in range(25))

    panel = ParamPanel(Many(), UNICODE)

    class Side(App):
        CSS = ("#side { height: 1fr; } ParamPanel { height: auto; max-height: 70%; border: round white; }"
               " #param-list { height: auto; } #param-input { height: 3; } .hidden { display: none; }")

        def compose(self):
            from textual.containers import Vertical
            with Vertical(id="side"):
                yield panel

    async def main():
        app = Side()
        async with app.run_test(size=(40, 20)) as pilot:
            plist = panel.query_one(ParamList)
            plist.focus()
            await pilot.pause()
            for _ in range(24):
                await pilot.press("down")
            await pilot.pause()
            assert panel.current.name == "p24"
            shown = plist.render().plain
            assert "p24" in shown and "p00" not in shown
            assert plist.region.bottom <= panel.region.bottom
            await pilot.press("enter")
            await pilot.pause()
            box = panel.query_one("#param-input")
            assert panel.editing and box.region.height > 0
            assert panel.region.y <= box.region.y and box.region.bottom <= panel.region.bottom
            assert box.region.bottom <= app.screen.region.bottom
            assert "p24" in plist.render().plain    # the row being edited stays in view

    asyncio.run(main())


def test_bar_names_are_shortened_but_stay_distinct():
    f = Frame(views={"t": {"labels": ["kfac_true", "kfac_empirical", "sgd", "adam"],
                           "values": [4716.4, 1199.8, 300.0, 250.0]}})
    w = widget_for(View("bars", "step time (ms)", source="t"), UNICODE)

    async def script(pilot):
        w.show(f)
        names = [s for _, s in w.chart.xticks]
        assert len(set(names)) == 4 and names[2:] == ["sgd", "adam"], names
        assert w.chart.ylim is None and w.chart.curves[0].kind == "bars"

    hosted(w, script, size=(27, 9))


def test_the_view_contract_accepts_reference_curves_and_rhat_cells_and_refuses_bad_ones():
    from mletui.engine.views import problems

    trace = View("trace", "ln Z", series=("log_z",), reference=("log_z_exact",), x="beta")
    ok = problems(trace, {"log_z": 1.0, "beta": 0.5}, {}, {"log_z_exact": {"x": [0, 1], "y": [0, 2]}})
    assert ok == []
    bad = problems(trace, {"log_z": 1.0, "beta": 0.5}, {}, {"log_z_exact": {"x": [0, 1], "y": [0]}})
    assert bad and "equal lengths" in bad[0]
    missing = problems(trace, {"log_z": 1.0, "beta": 0.5}, {}, {})
    assert missing and "log_z_exact" in missing[0]
    table = View("table", "t", source="t")
    rows = {"columns": ["obs", "value"], "rows": [["C", (2.9, 0.5, 1.8)], ["E", "1.2 +/- 0.1"]]}
    found = problems(table, {}, {}, {"t": rows})
    assert len(found) == 1 and "row 1" in found[0]


def test_a_history_column_is_floats_with_nan_for_missing_and_counts_only_non_finite_numbers():
    from mletui.tui.widgets.trace import column
    ys, bad = column([1, 2.5, None, math.nan, math.inf, -3])
    assert np.array_equal(ys, [1, 2.5, np.nan, np.nan, np.inf, -3], equal_nan=True) and bad == 2
    ys, bad = column([1.0, "n/a", True, np.float64(2.0), None, math.nan])   # the slow way
    assert np.array_equal(ys, [1, np.nan, np.nan, 2, np.nan, np.nan], equal_nan=True) and bad == 1
    assert column([None, None])[1] == 0 and column([])[0].size == 0


def test_the_legend_lists_what_is_drawn_and_names_a_line_over_bars():
    """A series with no finite value (Langevin's 'last-pass divergence' with the
    exact score) had a legend entry for nothing; a labelled line over a histogram's
    unlabelled bars (annealing's ground-state marker) had none."""
    from mletui.tui.widgets.chart import Chart, Curve, Look

    x = np.arange(10.0)
    chart = Chart([Curve("from exact", x, x + 1), Curve("after the last pass", x, np.full(10, np.nan)),
                   Curve("of exact samples", x, np.full(10, 0.5), role="reference")])
    labels = [label for _, label, _ in chart._legend_entries(Look())]
    assert labels == ["from exact", "of exact samples"]
    bars = Chart([Curve("", x, x, kind="bars", width=1.0), Curve("ground state", [2.0, 2.0], [0.0, 9.0])])
    assert [label for _, label, _ in bars._legend_entries(Look())] == ["ground state"]
    assert Chart([Curve("alone", x, x)])._legend_entries(Look()) == []


def test_a_step_axis_too_narrow_for_its_unit_says_step_not_an_abbreviation():
    """K-FAC's 'minibatch step' and Langevin's x axes read 'mi. st' and 'La. s'."""
    from mletui.tui.widgets.chart import Chart, Curve, Look

    x = np.arange(1, 13, dtype=float)
    narrow = Chart([Curve("loss", x, 1 / x)], xlabel="minibatch step", xshort="step", integer_x=True)
    rows = ["".join(t for t, _ in row) for row in narrow.render(40, 8, Look())]
    assert rows[-1].rstrip().endswith("step") and "mi." not in rows[-1]
    wide = Chart([Curve("loss", x, 1 / x)], xlabel="minibatch step", xshort="step", integer_x=True)
    assert "minibatch step" in "".join(t for t, _ in wide.render(120, 8, Look())[-1])
