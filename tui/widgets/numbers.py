"""How numbers are written on screen: compact, and non-finite values as text, never drawn."""

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
            return f"{x:.{max(digits - 2, 1)}e}"
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
