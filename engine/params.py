"""Param: one knob, the single source for CLI flags, TUI editing and validation.

A Param parses text (from ``--set NAME=VALUE`` or the TUI's input box), checks
ranges and choices, formats values for display and steps them for the arrow
keys.  Every error is a :class:`ParamError` whose message is one line naming
the parameter and the problem, e.g. ``beta must be >= 0, got -1``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

KINDS = ("int", "float", "bool", "choice", "text", "path")
_TRUE = ("true", "on", "1", "yes")
_FALSE = ("false", "off", "0", "no")


class ParamError(ValueError):
    """A value a Param refuses. The message is one line, fit to show a user.

    ``param`` and ``layer`` are filled in by ``Topic.resolve``: the parameter refused and
    where its value came from ("preset", "values", "texts", "check")."""

    param: str | None = None
    layer: str | None = None


@dataclass(frozen=True)
class Param:
    """One parameter of a topic.

    kind: int | float | bool | choice | text | path.
    lo, hi: inclusive range for int and float (None = unbounded).
    log: float stepped multiplicatively by the arrow keys (factor ``step``, default 2**0.5).
    step: the arrow keys' increment (additive; multiplicative when ``log``).
    live: True when a change applies between steps; False re-initialises the run.
    check: an extra validator ``value -> None`` raising ParamError (e.g. "L must be even").
    parse_text: for kind="text", turns the text into a value (e.g. "64,32,8" -> (64, 32, 8)).
    """

    name: str
    kind: str
    default: Any
    help: str = ""
    lo: float | None = None
    hi: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = True
    check: Callable[[Any], None] | None = field(default=None, compare=False)
    parse_text: Callable[[str], Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"param {self.name}: unknown kind {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"param {self.name}: a choice needs choices")

    # -- parsing and validation -------------------------------------------
    def parse(self, text: str) -> Any:
        """Text (CLI or TUI) -> a validated value, or ParamError."""
        raw = str(text).strip()
        if raw == "" and self.kind not in ("text", "path"):
            raise ParamError(f"{self.name} needs a value")
        if self.kind == "int":
            try:
                value: Any = int(raw, 0) if raw.lower().startswith(("0x", "0b", "0o")) else int(raw)
            except ValueError:
                try:
                    f = float(raw)
                except ValueError:
                    raise ParamError(f"{self.name} must be an integer, got {raw!r}") from None
                if not math.isfinite(f) or f != int(f):
                    raise ParamError(f"{self.name} must be an integer, got {raw!r}") from None
                value = int(f)
        elif self.kind == "float":
            try:
                value = float(raw)
            except ValueError:
                raise ParamError(f"{self.name} must be a number, got {raw!r}") from None
        elif self.kind == "bool":
            low = raw.lower()
            if low in _TRUE:
                value = True
            elif low in _FALSE:
                value = False
            else:
                raise ParamError(f"{self.name} must be true/false/on/off/1/0, got {raw!r}")
        elif self.kind == "choice":
            if raw not in self.choices:
                raise ParamError(f"{self.name} must be one of {'|'.join(self.choices)}, got {raw!r}")
            value = raw
        elif self.kind == "text":
            if self.parse_text is not None:
                try:
                    value = self.parse_text(raw)
                except ParamError:
                    raise
                except (ValueError, TypeError) as exc:
                    raise ParamError(f"{self.name}: {exc}") from None
            else:
                value = raw
        else:  # path
            value = raw
        return self.validate(value)

    def validate(self, value: Any) -> Any:
        """Check a typed value (the default, a preset's value, a parsed one)."""
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and math.isfinite(value) and value == int(value):
                    value = int(value)
                else:
                    raise ParamError(f"{self.name} must be an integer, got {value!r}")
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParamError(f"{self.name} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ParamError(f"{self.name} must be a finite number, got {value}")
        elif self.kind == "bool":
            if isinstance(value, str):
                return self.parse(value)
            if not isinstance(value, bool):
                raise ParamError(f"{self.name} must be true or false, got {value!r}")
        elif self.kind == "choice":
            if value not in self.choices:
                raise ParamError(f"{self.name} must be one of {'|'.join(self.choices)}, got {value!r}")
        elif self.kind == "text":
            if isinstance(value, str) and self.parse_text is not None:
                return self.parse(value)
        elif self.kind == "path":
            value = str(value)
            if value:
                path = os.path.expanduser(value)
                if not os.path.isfile(path):
                    raise ParamError(f"{self.name}: no readable file at {value!r}")
                if not os.access(path, os.R_OK):
                    raise ParamError(f"{self.name}: {value!r} is not readable")
        if self.kind in ("int", "float"):
            if self.lo is not None and value < self.lo:
                raise ParamError(f"{self.name} must be >= {_num(self.lo)}, got {_num(value)}")
            if self.hi is not None and value > self.hi:
                raise ParamError(f"{self.name} must be <= {_num(self.hi)}, got {_num(value)}")
        if self.check is not None:
            self.check(value)
        return value

    # -- display and keyboard stepping -------------------------------------
    def format(self, value: Any) -> str:
        if self.kind == "float":
            return _num(value)
        if self.kind == "bool":
            return "on" if value else "off"
        if self.kind == "text" and isinstance(value, (tuple, list)):
            return ",".join(str(v) for v in value)
        return str(value)

    def nudge(self, value: Any, direction: int) -> Any:
        """The value one arrow-key step away (direction = +1 or -1), clamped and validated.

        Raises ParamError where no step is possible (text, path) or the step leaves
        the range in a way clamping cannot fix (e.g. L must stay even)."""
        if self.kind == "bool":
            return not value
        if self.kind == "choice":
            i = self.choices.index(value) if value in self.choices else 0
            return self.choices[(i + direction) % len(self.choices)]
        if self.kind in ("text", "path"):
            raise ParamError(f"{self.name}: press Enter to type a value")
        if self.kind == "int":
            step = int(self.step or 1)
            if self.log:
                new = int(round(value * (2 if direction > 0 else 0.5)))
                if new == value:
                    new = value + direction * step
            else:
                new = value + direction * step
        else:
            if self.log:
                factor = self.step or 2 ** 0.5
                new = value * factor if direction > 0 else value / factor
                if value == 0:
                    new = self.lo if self.lo and self.lo > 0 else 1e-3
            else:
                step = self.step if self.step is not None else _default_step(self)
                new = round(value + direction * step, 12)
        if self.lo is not None:
            new = max(new, self.lo if self.kind == "float" else int(math.ceil(self.lo)))
        if self.hi is not None:
            new = min(new, self.hi if self.kind == "float" else int(math.floor(self.hi)))
        return self.validate(new)

    def describe(self) -> dict[str, Any]:
        """A plain record for `mletui topics` and JSON headers."""
        if self.kind in ("int", "float"):
            lo = "-inf" if self.lo is None else _num(self.lo)
            hi = "inf" if self.hi is None else _num(self.hi)
            rng = f"[{lo}, {hi}]" + (" log" if self.log else "")
        elif self.kind == "choice":
            rng = "|".join(self.choices)
        elif self.kind == "bool":
            rng = "on|off"
        else:
            rng = ""
        return {
            "name": self.name,
            "type": self.kind,
            "default": self.format(self.default),
            "range": rng,
            "live": self.live,
            "help": self.help,
        }


def _default_step(p: Param) -> float:
    if p.lo is not None and p.hi is not None:
        span = p.hi - p.lo
        mag = 10 ** math.floor(math.log10(span / 20)) if span > 0 else 0.01
        return mag
    return 0.1


def _num(x: Any) -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.6g}"


def int_list(text: str, lo: int = 1, hi: int = 1 << 20) -> tuple[int, ...]:
    """Parse '64,32,8' into (64, 32, 8): the text Param for layer widths and the like."""
    parts = [s.strip() for s in text.replace(" ", ",").split(",") if s.strip()]
    if not parts:
        raise ValueError("expected a comma-separated list of integers such as 64,32,8")
    out = []
    for s in parts:
        try:
            v = int(s)
        except ValueError:
            raise ValueError(f"expected integers such as 64,32,8, got {s!r}") from None
        if not lo <= v <= hi:
            raise ValueError(f"each entry must be in [{lo}, {hi}], got {v}")
        out.append(v)
    return tuple(out)


def defaults(params: Sequence[Param]) -> dict[str, Any]:
    return {p.name: p.default for p in params}


def by_name(params: Sequence[Param]) -> Mapping[str, Param]:
    return {p.name: p for p in params}
