"""The engine contract every topic follows: Topic (init/step/observe), Frame, View.

A topic owns the numerics of one algorithm.  ``init`` builds a state on a device,
``step`` advances it by one iteration *on the device* (no host sync needed), and
``observe`` reduces it to a small host-side :class:`Frame`.  A topic declares its
views; the TUI maps each view kind to one widget, so a topic made of known kinds
shows up in the app untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch

from .params import Param, ParamError, by_name, defaults

# View kinds the TUI knows. A new kind is one new widget in tui/widgets/.
VIEW_KINDS = ("lattice", "histogram", "trace", "heatmap", "table", "plot", "bars")


@dataclass(frozen=True)
class View:
    """One panel of a topic's pane.

    kind     lattice | histogram | trace | heatmap | table | plot | bars
    title    shown above the panel.
    source   key in ``Frame.views`` (or ``Frame.arrays``) holding the data, for
             lattice / heatmap / table / plot / bars and array-fed histograms.
    series   for trace: scalar names drawn over the frame history; for a history-fed
             histogram: the one scalar whose recent values are binned.
    reference scalar names drawn as reference lines on a trace (e.g. the exact value);
             a reference whose value is None or missing is shown as "no exact value".
    x        for trace: the scalar used as abscissa (default: the step).
    options  free-form hints (``logy``, ``ylabel``, ``bins``, ``width`` …).

    Data conventions for ``Frame.views[source]``:
      lattice:   2-D array of spins (+1/-1 or 0/1), already downsampled.
      heatmap:   2-D float array (rows top to bottom), or {"z": 2-D, "extent": (x0,x1,y0,y1)}.
      histogram: {"edges": [...], "counts": [...], "lines": {name: (x, y)}}.
      plot:      {"x": [...], "series": {name: [...]}, "xlabel": str, "ylabel": str}
                 or {"lines": {name: (x, y)}}; optional "points": {name: (x, y)} are drawn
                 as a scatter under the lines, and "note" is shown when nothing is drawn.
      table:     {"columns": [...], "rows": [[...], ...]}.
      bars:      {"labels": [...], "values": [...]}.
    """

    kind: str
    title: str
    source: str | None = None
    series: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    x: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"unknown view kind {self.kind!r}; known: {', '.join(VIEW_KINDS)}")


@dataclass
class Frame:
    """A small host-side summary of a topic's state after some step.

    scalars  numbers (float/int/bool) and short strings, written to JSONL.
    arrays   small named arrays (lists / nested lists), written to JSONL.
    views    view-only data (lattices, raw histogram counts): never written to JSONL.
    notes    one-line events for the pane ("component 2 re-seeded at x=…").
    done     True when a finite schedule has ended.
    """

    step: int = 0
    scalars: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)
    views: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    done: bool = False
    time_s: float = 0.0
    params: dict[str, Any] | None = None  # set by the runner on the first frame and after edits

    def value(self, name: str) -> Any:
        if name in self.scalars:
            return self.scalars[name]
        if name == "step":
            return self.step
        return self.arrays.get(name)


class Topic:
    """Base class of every topic. Subclasses set the class attributes and implement
    ``init``, ``step`` and ``observe``.

    name    the CLI and registry name ("ising").
    title   the tab title ("Ising MCMC").
    order   tab position (lower first).
    params  the knobs (Param); live ones apply between steps, others re-init.
    views   the pane's panels (View).
    finite  True when runs end by themselves (an annealing schedule); frames then say ``done``.
    step_unit  what one step is, for help texts ("sweep", "EM iteration").
    quick   overrides that make a run small and fast (no torch.compile): the contract
            suite and the pane tests run every topic at these.
    window_scalars  names (fnmatch patterns allowed) of the scalars that describe the
            window since the last frame rather than the state: means over that window
            (an acceptance rate, a loss averaged since the last frame) and throughput.
            Everything else a frame reports must not depend on how often it is observed.
    """

    name: str = ""
    title: str = ""
    order: int = 100
    summary: str = ""
    params: tuple[Param, ...] = ()
    views: tuple[View, ...] = ()
    finite: bool = False
    step_unit: str = "step"
    quick: Mapping[str, Any] = {}
    window_scalars: tuple[str, ...] = ()

    # -- the contract ------------------------------------------------------
    def init(self, p: Mapping[str, Any], device: torch.device, seed: int) -> Any:
        raise NotImplementedError

    def step(self, state: Any, p: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def observe(self, state: Any, p: Mapping[str, Any]) -> Frame:
        raise NotImplementedError

    # -- optional hooks ------------------------------------------------------
    def check(self, p: dict[str, Any], changed: Sequence[str] = ()) -> dict[str, Any]:
        """Cross-parameter validation after single-param checks. ``changed`` names the
        params just set (so a topic can let one imply another, e.g. ``data=PATH`` implies
        ``dataset=file``). Return the (possibly amended) dict or raise ParamError."""
        return p

    def on_edit(self, state: Any, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        """Called between steps after live params changed (e.g. restart running means)."""

    def is_done(self, state: Any, p: Mapping[str, Any]) -> bool:
        """True once a finite schedule has ended (cheap, host-side: no device sync)."""
        return False

    def work_per_step(self, state: Any, p: Mapping[str, Any]) -> float:
        """Units of work in one step, for throughput in the status bar (Ising: spin
        updates attempted). 0 when the topic has no such measure."""
        return 0.0

    def work_unit(self) -> str:
        return ""

    def bench(self, device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
        """Benchmark rows for ``mletui bench TOPIC``, each measured against its baseline in
        the same run. Keys: ``case`` (e.g. "L=1024 metropolis"), ``value`` and ``unit``
        (e.g. 2.1, "flips/ns"), ``baseline`` (what was compared with), ``baseline_value``,
        ``ratio`` (how many times better than the baseline; > 1 is better), plus any extra
        figures (``peak_host_mib`` …). ``quick`` makes every case small, for tests."""
        raise NotImplementedError(f"{self.name} has no benchmark yet")

    # -- helpers built on the params -----------------------------------------
    def param(self, name: str) -> Param:
        try:
            return by_name(self.params)[name]
        except KeyError:
            known = ", ".join(p.name for p in self.params)
            raise ParamError(f"{self.name} has no parameter {name!r} (known: {known})") from None

    def default_params(self) -> dict[str, Any]:
        return defaults(self.params)

    def resolve(self, overrides: Mapping[str, Any] | None = None,
                texts: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Defaults + typed overrides (validated) + text overrides (parsed), then ``check``."""
        p = self.default_params()
        changed: list[str] = []
        for name, value in (overrides or {}).items():
            p[name] = self.param(name).validate(value)
            changed.append(name)
        for name, text in (texts or {}).items():
            p[name] = self.param(name).parse(text)
            changed.append(name)
        return self.check(p, tuple(changed))


def finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
