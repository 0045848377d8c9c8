"""How numbers are written on screen: compact, and non-finite values as text, never drawn.

Table cells (``cell_text``) are numbers, ``(value, stderr)`` pairs, ``(value, stderr,
rhat)`` triples, None or short strings (engine/views.py ``Cell``). A value with its standard error is written to the
error's significant digits: ``-1.4220 ± 0.0022`` (ASCII ``+/-``), more compactly
``-1.4220(22)`` and ``-1.422(2)`` (the digits in brackets are the error in the last
places shown). A split-R-hat above 1.05 (Gelman et al., Bayesian Data Analysis, 3rd ed.,
sec. 11.4; Vehtari et al. 2021) replaces the confident error by a flag: the chains have
not mixed, so the standard error claims an accuracy the run does not have.
"""

from __future__ import annotations

import math
from typing import Any


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def finite(x: Any) -> bool:
    return is_number(x) and math.isfinite(x)


def fmt(x: Any, digits: int = 5) -> str:
    """A value as the panes show it: NaN as "nan", floats with ``digits`` significant digits."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
            mant, exp = f"{x:.{max(digits - 2, 1)}e}".split("e")
            if "." in mant:
                mant = mant.rstrip("0").rstrip(".")
            return f"{mant}e{int(exp)}"
        return f"{x:.{digits}g}"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(fmt(v, 3) for v in x[:4])
        return f"[{inner}{', ...' if len(x) > 4 else ''}]"
    return str(x)


def finite_pairs(xs: list[Any], ys: list[Any]) -> tuple[list[float], list[float], int]:
    """Keep the (x, y) pairs where both are finite numbers; also return how many pairs held
    a non-finite number (NaN, inf): those are counted, missing values (None) are not."""
    kx: list[float] = []
    ky: list[float] = []
    dropped = 0
    for x, y in zip(xs, ys):
        if finite(x) and finite(y):
            kx.append(float(x))
            ky.append(float(y))
        elif (is_number(x) and not finite(x)) or (is_number(y) and not finite(y)):
            dropped += 1
    return kx, ky, dropped


RHAT_LIMIT = 1.05
LEVELS = 4  # cell_text levels: 0 widest ... LEVELS - 1 narrowest


def _sig_decimals(err: float, sig: int) -> int:
    """Decimals that show ``sig`` significant digits of ``err`` (> 0)."""
    return sig - 1 - math.floor(math.log10(err))


def value_error(value: float, err: float, level: int = 0, ascii: bool = False) -> str:
    """``value`` to the significant digits of its standard error ``err``.

    level 0: "v ± e" (2 significant digits of e), 1: "v(ee)", 2 and more: "v(e)"."""
    if not finite(value):
        return fmt(value)
    if err is None or not finite(err) or err < 0:
        return fmt(value, 5 - min(level, 3))
    if err == 0:
        return fmt(value, 5 - min(level, 3))
    sig = 2 if level <= 1 else 1
    mag = abs(value)
    if mag >= 1e5 or (0 < mag < 1e-3):
        exp = math.floor(math.log10(mag))
        scale = 10.0 ** exp
        inner = value_error(value / scale, err / scale, level, ascii)
        if "(" in inner:
            return f"{inner}e{exp}"
        return f"({inner})e{exp}"
    d = _sig_decimals(err, sig)
    # rounding can carry the error into one more digit (0.0996 -> 0.10): recompute
    if round(err, d) >= 10.0 ** (sig - d):
        d -= 1
    if d <= 0:
        v_txt = f"{round(value, d):.0f}" if d == 0 else f"{round(value, d):.0f}"
        e_txt = f"{round(err, d):.0f}"
        if level == 0:
            return f"{v_txt} {'+/-' if ascii else '±'} {e_txt}"
        return f"{v_txt}({e_txt})"
    v_txt = f"{value:.{d}f}"
    if level == 0:
        return f"{v_txt} {'+/-' if ascii else '±'} {err:.{d}f}"
    e_round = round(err, d)
    if e_round >= 1:  # the error reaches past the decimal point: write it out
        return f"{v_txt}({e_round:.{d}f})"
    return f"{v_txt}({int(round(e_round * 10 ** d))})"


def cell_text(cell: Any, level: int = 0, ascii: bool = False) -> str:
    """One table cell at a width level (0 widest). Numbers lose digits as the level rises
    (5, 4, 3, 2 significant); a flagged R-hat becomes shorter text; strings are as given
    (the table abbreviates labels, never numbers)."""
    if isinstance(cell, (tuple, list)) and len(cell) == 3 and is_number(cell[0]):
        value, err, rhat = cell
        if finite(rhat) and rhat > RHAT_LIMIT:
            v = fmt(float(value), 4 - min(level, 2))
            r = f"{rhat:.2g}" if rhat < 10 else f"{rhat:.0f}"
            rh = "Rhat" if ascii else "R\u0302"
            if level == 0:
                return f"{v} not equilibrated ({rh} = {r})"
            if level == 1:
                return f"{v} not equil. ({rh} {r})"
            return f"{v}?({rh} {r})" if level == 2 else f"{v}?"
        cell = (value, err)
    if isinstance(cell, (tuple, list)) and len(cell) == 2 and is_number(cell[0]) and \
            (cell[1] is None or is_number(cell[1])):
        return value_error(float(cell[0]), cell[1] if cell[1] is None else float(cell[1]), level, ascii)
    if isinstance(cell, float):
        return fmt(cell, 5 - min(level, 3))
    if cell is None:
        return "-"
    return fmt(cell) if not isinstance(cell, str) else cell
