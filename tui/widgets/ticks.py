"""Axis ticks a reader can use: round steps (1, 2 or 5 times a power of ten), labels with
only the significant digits the step needs, integers on integer axes, and decades on a
log axis.

    linear_ticks(lo, hi, most)     -> Ticks(lo, hi, values, labels) over [lo, hi] widened
                                      to whole steps (so the first and last tick are drawn)
    log_ticks(lo, hi, most)        -> the same for a log10 axis (values in data units)
    inner_ticks(lo, hi, most)      -> round ticks inside [lo, hi], the range kept as given
    tick_label(value, step)        -> "0.25", "1e-4", "2.5e6": no 20-digit labels

The labels of one axis all use the same number of decimals, the fewest that tell the
ticks apart (Heckbert, "Nice numbers for graph labels", Graphics Gems, 1990).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_STEPS = (1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Ticks:
    lo: float                 # the axis range (data units; log axes too)
    hi: float
    values: tuple[float, ...]
    labels: tuple[str, ...]


def _candidates(span: float, most: int, integer: bool):
    """Steps {1, 2, 5} x 10^k in increasing order, from the first that could fit."""
    most = max(2, int(most))
    raw = span / (most - 1) if math.isfinite(span) and span > 0 else 1.0
    k = math.floor(math.log10(raw)) - 1
    while True:
        for m in _STEPS:
            step = m * 10.0 ** k
            if not (integer and step < 1):
                yield step
        k += 1


def nice_step(span: float, most: int, integer: bool = False) -> float:
    """The smallest step of the form {1, 2, 5} x 10^k that puts at most ``most`` ticks
    over ``span`` (integer axes: at least 1)."""
    for step in _candidates(span, most, integer):
        if math.floor(span / step + 1e-9) + 1 <= max(2, most):
            return step
    raise AssertionError("unreachable")


def _decimals(step: float) -> int:
    """Decimals needed to write multiples of ``step`` (a 1-2-5 step) exactly."""
    if step <= 0 or not math.isfinite(step):
        return 0
    return max(0, -math.floor(math.log10(step) + 1e-9))


def tick_label(value: float, step: float) -> str:
    """One tick's label: fixed-point with the step's decimals when that is short, else a
    compact exponent form with as many digits as the step needs ("2.5e6", "1e-5")."""
    if value == 0 or abs(value) < step * 1e-6:
        return "0"
    mag = abs(value)
    if 1e-3 <= mag < 1e5 and _decimals(step) <= 7:
        return f"{value:.{_decimals(step)}f}"
    exp = math.floor(math.log10(mag) + 1e-12)
    digits = max(0, exp - math.floor(math.log10(step) + 1e-9))
    mant = f"{value / 10.0 ** exp:.{min(digits, 7)}f}"
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    if mant in ("10", "-10"):  # rounding carried into the next decade
        mant, exp = mant[:-1], exp + 1
    return f"{mant}e{exp}"


# The narrowest span an axis shows, relative to its values' magnitude: a converged
# log-likelihood of -2.1075 jittering by 5e-7 is drawn flat on ticks 5e-6 apart, which
# a label of seven significant digits can still tell apart.
MIN_RELATIVE_SPAN = 1e-5


def _pad(lo: float, hi: float, integer: bool = False) -> tuple[float, float]:
    """A non-empty range around a single value, so that one point still gets sensible axes:
    a tenth of the value's order of magnitude either side (one unit on integer axes); a
    range narrower than MIN_RELATIVE_SPAN of its magnitude is widened to that, centred."""
    if integer and hi <= lo:
        return lo - 1, hi + 1
    mag = max(abs(lo), abs(hi))
    if hi > lo and (integer or hi - lo >= MIN_RELATIVE_SPAN * mag):
        return lo, hi
    if hi > lo:
        mid, half = 0.5 * (lo + hi), 0.5 * MIN_RELATIVE_SPAN * mag
        return mid - half, mid + half
    half = 0.1 * 10.0 ** math.floor(math.log10(abs(lo))) if lo != 0 else 1.0
    return lo - half, hi + half


def linear_ticks(lo: float, hi: float, most: int = 5, integer: bool = False) -> Ticks:
    """Round ticks, the axis widened to the enclosing whole steps."""
    lo, hi = _pad(float(lo), float(hi), integer)
    if integer:
        lo, hi = math.floor(lo), math.ceil(hi)
    for step in _candidates(hi - lo, most, integer):
        first = math.floor(lo / step + 1e-9)
        last = math.ceil(hi / step - 1e-9)
        if last - first + 1 <= max(2, most):
            break
    values = tuple(_clean(i * step, step) for i in range(int(first), int(last) + 1))
    return Ticks(values[0], values[-1], values, tuple(tick_label(v, step) for v in values))


def inner_ticks(lo: float, hi: float, most: int = 5, integer: bool = False) -> Ticks:
    """Round ticks inside [lo, hi]; the range itself is kept (an x axis whose right edge is
    the latest point). At least one tick is always returned."""
    lo, hi = _pad(float(lo), float(hi), integer)
    step = nice_step(hi - lo, most, integer)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    if last < first:
        last = first
    values = tuple(_clean(i * step, step) for i in range(int(first), int(last) + 1))
    return Ticks(lo, hi, values, tuple(tick_label(v, step) for v in values))


def log_ticks(lo: float, hi: float, most: int = 5) -> Ticks:
    """Ticks for a log10 axis over [lo, hi] (both > 0), the range widened to the outer
    ticks: round linear ticks within a factor of 5, else 1-2-5 multiples, else 1-3
    multiples, else whole decades (every k-th decade when there are many)."""
    if not (lo > 0 and hi > 0):
        raise ValueError("log ticks need a positive range")
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    a, b = math.log10(lo), math.log10(hi)
    if b - a < 0.7:
        t = linear_ticks(lo, hi, most)
        return t if t.lo > 0 else inner_ticks(lo, hi, most)
    da, db = math.floor(a + 1e-9), math.ceil(b - 1e-9)
    for mults in (_STEPS, (1.0, 3.0)):
        cands = sorted({float(f"{m * 10.0 ** k:.12g}") for k in range(da - 1, db + 1) for m in mults})
        first = max(c for c in cands if c <= lo * (1 + 1e-9))
        last = min(c for c in cands if c >= hi * (1 - 1e-9))
        values = tuple(c for c in cands if first <= c <= last)
        if len(values) <= max(3, most):
            return Ticks(first, last, values, tuple(tick_label(v, _unit(v)) for v in values))
    every = 1
    while (db - da + every - 1) // every + 1 > max(2, most):
        every += 1
    da = (da // every) * every
    db = -((-db) // every) * every
    values = tuple(10.0 ** k for k in range(da, db + 1, every))
    return Ticks(values[0], values[-1], values, tuple(tick_label(v, v) for v in values))


def _unit(v: float) -> float:
    return 10.0 ** math.floor(math.log10(v) + 1e-9)


def _clean(v: float, step: float) -> float:
    """Remove float noise from a multiple of step (0.30000000000000004 -> 0.3)."""
    return round(v, _decimals(step) + 2) if step < 1 else float(round(v / step) * step)
