"""The engine contract every topic follows: Topic (init/step/observe) and Frame.

A topic owns the numerics of one algorithm.  ``init`` builds a state on a device,
``step`` advances it by one iteration *on the device* (no host sync needed), and
``observe`` reduces it to a small host-side :class:`Frame`.  ``step`` decides and
``observe`` reads (the State/Info split of BlackJAX's kernels): everything that changes
what a run does happens in ``step``, so a run's trajectory does not depend on how often
it is observed.  A topic declares its views (:mod:`engine.views`); the TUI maps each view
kind to one widget, so a topic made of known kinds shows up in the app untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from .params import Param, ParamError, by_name, defaults
from .views import VIEW_KINDS, Labels, Scalar, View, labels_of

__all__ = ["Frame", "Topic", "Scalar", "View", "VIEW_KINDS", "finite_or_none"]

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
    interactive  overrides the app puts under a preset's and the user's values (never seen
            by headless runs): e.g. spreading an expensive evaluation over steps so the stream
            of frames does not stall. Like any param, they only decide what ``step`` does.
    window_scalars  names (fnmatch patterns allowed) of the scalars that describe the
            window since the last frame rather than the state: means over that window
            (an acceptance rate, a loss averaged since the last frame) and throughput.
            Everything else a frame reports must not depend on how often it is observed.
    every   the default observation interval in steps: ``mletui run``'s ``--every`` and
            the first spacing of the runner's record (engine/runner.py).
    scalars what each scalar of the frames means: :class:`~engine.views.Scalar` records
            (label, unit, one line of help; fnmatch names for suffixed families). The
            values panel, tables and README read them (``engine.views.describe``); the
            contract suite checks that every scalar a frame reports is described.

    Benchmarks are not part of the contract: ``engine/bench/<name>.py`` holds a topic's.
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
    interactive: Mapping[str, Any] = {}
    window_scalars: tuple[str, ...] = ()
    every: int = 1
    scalars: tuple[Scalar, ...] = ()

    @property
    def labels(self) -> Labels:
        """``scalars`` as a mapping name -> Scalar that resolves patterns (read-only)."""
        return labels_of(self)

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

    # -- helpers built on the params -----------------------------------------
    def param(self, name: str) -> Param:
        try:
            return by_name(self.params)[name]
        except KeyError:
            known = ", ".join(p.name for p in self.params)
            raise ParamError(f"{self.name} has no parameter {name!r} (known: {known})") from None

    def default_params(self) -> dict[str, Any]:
        return defaults(self.params)

    def resolve(self, values: Mapping[str, Any] | None = None, texts: Mapping[str, str] | None = None,
                *, preset: Mapping[str, Any] | None = None,
                base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The one way a full parameter set is made: ``base`` (a set already resolved, e.g.
        a run's current params; default: the defaults), then a ``preset``'s values, typed
        ``values`` and ``texts`` (parsed), each layer over the one before, then ``check``
        with every name the layers set (not the base's) as changed.

        A bad entry raises ParamError naming it: ``exc.param`` is the parameter's name and
        ``exc.layer`` says where it came from ("preset", "values", "texts", or "check"
        for a cross-parameter refusal), so a caller can say ``--set beta=-1: ...``."""
        p = dict(base) if base is not None else self.default_params()
        changed: list[str] = []
        for layer, entries in (("preset", preset), ("values", values), ("texts", texts)):
            for name, value in (entries or {}).items():
                try:
                    param = self.param(name)
                    p[name] = param.parse(value) if layer == "texts" else param.validate(value)
                except ParamError as exc:
                    exc.param, exc.layer = name, layer
                    raise
                if name not in changed:
                    changed.append(name)
        try:
            return self.check(p, tuple(changed))
        except ParamError as exc:
            exc.layer = exc.layer or "check"
            raise


def finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
