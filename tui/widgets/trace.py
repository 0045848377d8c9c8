"""Trace: scalars over the frame history, with their references.

View fields: ``series`` (scalar names drawn against ``x``, default the step), ``reference``
(names of the exact values), options ``ylabel``, ``logy`` (log y axis), ``window``
(how many recent frames the recent view shows).

A reference is data, not a last value. Each name in ``reference`` is either
  - a curve the latest frame carries over the view's x: ``Frame.views[name]`` or
    ``Frame.arrays[name]`` = {"x": [...], "y": [...]} (or an (x, y) pair), e.g. the exact
    energy over the whole annealing schedule; it is drawn as given; or
  - a scalar: drawn at each frame's x from that frame's value, so a reference that moves
    with x (Kaufman's energy along an annealing run) is a curve, and a constant one is a
    line for the stretch of history it holds. A stretch ends where the parameters were
    edited (the frame carries ``params``) or the value is missing (None: "no exact value").

What is shown: by default the recent part of the history (the last ``window`` frames,
else the last quarter and at least 50 frames), autoscaled to it, so a start-up transient
does not squeeze the rest; ``full_history`` (a key in the app) shows every frame the
runner keeps. Topics that end by themselves (``Topic.finite``: annealing schedules)
show the whole run by default. The y range fits the bulk of the values; points beyond
it are drawn on the edge as ▲/▼ and counted in the subtitle. Non-finite values are never
drawn: the subtitle counts them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mletui.engine.topic import Frame

from .chart import Chart, Curve
from .chart_view import ChartView
from .labels import axis_name, series_labels, with_unit
from .numbers import fmt, is_number

RECENT_MIN = 50


def recent(frames: list[Frame], window: int | None) -> list[Frame]:
    """The recent part of a history: the last ``window`` frames, else the last quarter
    (at least RECENT_MIN frames)."""
    n = int(window) if window else max(RECENT_MIN, len(frames) // 4)
    return frames[-n:]


def _curve_data(data: Any) -> tuple[list, list] | None:
    """(x, y) of a reference curve carried by a frame, or None if it is not one."""
    if isinstance(data, dict) and "x" in data and "y" in data:
        return list(data["x"]), list(data["y"])
    if isinstance(data, (list, tuple)) and len(data) == 2 and all(
            isinstance(v, (list, tuple, np.ndarray)) for v in data):
        return list(data[0]), list(data[1])
    return None


def _num(v: Any) -> float:
    return float(v) if is_number(v) else math.nan


_PLAIN = (float, int, type(None))


def column(values: list) -> tuple[np.ndarray, int]:
    """(values as floats, NaN where not a number; how many numbers were not finite): one
    NumPy conversion when every value is a float, an int or None (the usual history), else
    value by value."""
    if all(type(v) in _PLAIN for v in values):
        ys = np.array(values, dtype=float)          # None -> nan
        missing = sum(1 for v in values if v is None) if np.isnan(ys).any() else 0
        return ys, int((~np.isfinite(ys)).sum()) - missing
    ys = np.array([_num(v) for v in values])
    bad = sum(1 for v in values if is_number(v) and not math.isfinite(v))
    return ys, bad


class TraceView(ChartView):
    needs_history = True

    def __init__(self, view, glyphs, topic=None, **kwargs) -> None:
        super().__init__(view, glyphs, topic, **kwargs)
        self.full_history = bool(getattr(topic, "finite", False))

    def toggle_history(self) -> bool:
        """Switch between the recent window and the full history; returns the new mode."""
        self.full_history = not self.full_history
        last = getattr(self, "_last", None)
        if last is not None:
            self.show(*last)
        return self.full_history

    def show(self, frame: Frame, history: list[Frame] | None = None) -> None:
        self._last = (frame, history)
        view = self.view
        every = list(history or [frame])
        frames = every if self.full_history else recent(every, view.options.get("window"))
        xname = view.x
        xs_raw = [f.step if xname is None else f.value(xname) for f in frames]
        xs = column(xs_raw)[0]
        integer_x = all(type(v) is int for v in xs_raw)
        # a new stretch starts where the params were edited (not at the first frame shown)
        starts = [i for i, f in enumerate(frames) if i > 0 and f.params is not None]

        names = list(view.series) + list(view.reference)
        shown = series_labels([self.label(n) for n in view.series], [self.label(n) for n in view.reference])
        short = dict(zip(names, shown))
        curves: list[Curve] = []
        warn: list[tuple[str, str]] = []
        values: list[tuple[str, str]] = []
        for name in view.series:
            ys, bad = column([f.scalars.get(name) for f in frames])
            curves.append(Curve(short[name], xs, ys))
            values.append((self.label(name), fmt(frame.scalars.get(name))))
            if bad:
                warn.append((self.label(name) if len(view.series) > 1 else "", f"{bad} nan not drawn"))
        for name in view.reference:
            given = _curve_data(frame.views.get(name, frame.arrays.get(name)))
            if given is not None:
                rx = np.array([_num(v) for v in given[0]])
                ry = np.array([_num(v) for v in given[1]])
                curves.append(Curve(short[name], rx, ry, role="reference"))
                values.append((self.label(name), "curve"))
                continue
            ys = column([f.scalars.get(name) for f in frames])[0]
            rx, ry = xs.copy(), ys.copy()
            if starts:
                rx = np.insert(rx, starts, np.nan)
                ry = np.insert(ry, starts, np.nan)
            curves.append(Curve(short[name], rx, ry, role="reference"))
            ref = frame.scalars.get(name)
            if is_number(ref) and math.isfinite(ref):
                values.append((self.label(name), fmt(ref)))
            else:
                values.append((f"{self.label(name)}:", "no exact value"))

        logy = bool(view.options.get("logy"))
        xlabel = self.step_unit if xname is None else axis_name(self.label(xname), self.glyphs.ascii)
        if xname is not None:
            xlabel = with_unit(xlabel, self.unit(xname))
        ylabel = str(view.options.get("ylabel") or "")
        if not ylabel and len(view.series) == 1 and self.unit(view.series[0]):
            ylabel = self.unit(view.series[0])
        xlim = None
        finite_x = xs[np.isfinite(xs)]
        if finite_x.size and len(frames) < len(every):
            xlim = (float(finite_x.min()), float(finite_x.max()))
        chart = Chart(curves, xlabel=xlabel, xshort="step" if xname is None else "", ylabel=ylabel,
                      logy=logy, integer_x=integer_x,
                      robust=True, xlim=xlim, message="no finite values yet")
        self.draw(chart)
        if self.content_size.width and self.content_size.height:  # counts what is clipped
            chart.render(self.content_size.width, self.content_size.height, self.look)
        k = len(view.series)
        under = [("", f"{a} under {b}") for a, b in chart.under()]
        notes = warn + self._clip_notes() + under + values[:1] + values[k:] + values[1:k]
        if chart.not_positive():
            notes.append(("", f"{chart.not_positive()} <= 0 not drawn (log axis)"))
        if len(frames) < len(every):
            notes.append(("", f"last {len(frames)} of {len(every)} frames"))
        self.set_notes(notes)

    def _clip_notes(self) -> list[tuple[str, str]]:
        if self.chart is None:
            return []
        up, down = self.chart.clipped["above"], self.chart.clipped["below"]
        out = []
        if up:
            out.append(("", f"{up} above {'^' if self.glyphs.ascii else '▲'}"))
        if down:
            out.append(("", f"{down} below {'v' if self.glyphs.ascii else '▼'}"))
        return out
