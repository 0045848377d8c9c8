"""TopicPane: one topic's tab — its parameter panel, a readout of the latest scalars, and
one widget per View in a grid that reflows with its own size.

Sizes live in assets/mletui.tcss (the side column's width per breakpoint); only the
grid's shape, which depends on how many views there are, is computed here.

The pane owns the topic's runner (anything :class:`~engine.runner.RunnerLike`), created
the first time the pane is shown. The app's timer calls ``tick()`` on the visible pane
only: it reads ``runner.latest`` (never waits on the engine), redraws the views when the
frame changed (not when frozen), and clears them when ``runner.generation`` says the run
was re-initialised.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from textual.app import ComposeResult
from textual.containers import Container, Horizontal, Vertical

from mletui.engine.params import ParamError
from mletui.engine.process_runner import ProcessRunner
from mletui.engine.runner import Runner, RunnerLike
from mletui.engine.topic import Frame, Topic

from .charset import Glyphs
from .widgets import widget_for
from .widgets.params import ParamList, ParamPanel
from .widgets.readout import Readout


STARTING = "starting the engine process (its first frame takes a few seconds)"


def grid_shape(n: int, width: int, height: int) -> tuple[int, int]:
    """Columns and rows for n views in a width x height area: cells as close to the
    shape of a wide plot (about 3:1 in characters) as the count allows."""
    if n <= 1:
        return 1, 1
    best = (1, n)
    best_cost = math.inf
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        cell_w, cell_h = width / cols, height / rows
        if cell_w < 20 or cell_h < 5:
            cost = 1e6 + cols * rows
        else:
            cost = abs(math.log((cell_w / cell_h) / 3.0)) + 0.15 * (cols * rows - n)
        if cost < best_cost:
            best, best_cost = (cols, rows), cost
    return best


class ViewGrid(Container):
    """The views, in a grid whose rows and columns follow its size (``grid_shape``)."""

    def on_resize(self) -> None:
        self.reflow()

    def reflow(self) -> None:
        width, height = self.size.width, self.size.height
        if width <= 0:
            return
        cols, rows = grid_shape(len(self.children), width, height)
        self.styles.grid_size_columns = cols
        self.styles.grid_size_rows = rows


class TopicPane(Horizontal):
    def __init__(self, topic: Topic, glyphs: Glyphs, overrides: Mapping[str, Any] | None = None,
                 seed: int | None = None, device: torch.device | None = None,
                 start_paused: bool = False, runner_kind: str = "thread",
                 preset: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """overrides: typed values over the defaults (and over ``preset``'s values);
        both go through ``Topic.resolve``, and a refusal is the pane's error."""
        super().__init__(**kwargs)
        self.runner_kind = runner_kind
        self.topic = topic
        self.glyphs = glyphs
        self.overrides = dict(overrides or {})
        self.seed = seed
        self.device = device
        self.runner: RunnerLike | None = None
        self.user_paused = start_paused
        self.frozen = False
        self.error: str | None = None
        self.message = ""  # the app's message line while this pane is shown
        self.view_widgets = [widget_for(v, glyphs) for v in topic.views]
        self._needs_history = any(getattr(w, "needs_history", False) for w in self.view_widgets)
        self._shown: Frame | None = None
        self._generation = -1
        self._noted_step = -1
        try:
            values = topic.resolve(self.overrides, preset=preset)
        except ParamError as exc:
            values = topic.default_params()
            self.error = f"preset: {exc}" if exc.layer == "preset" else str(exc)
        self.param_panel = ParamPanel(topic, glyphs, values, id="params")

    def compose(self) -> ComposeResult:
        with Vertical(id="side"):
            yield self.param_panel
            yield Readout(id="readout")
        with ViewGrid(id="views"):
            yield from self.view_widgets

    # -- the runner ---------------------------------------------------------------
    def ensure_runner(self) -> RunnerLike | None:
        """The topic's runner, created on first use with the panel's values: in a spawned
        process ("process", what the app uses on a terminal: the engine keeps its own GIL)
        or a thread of this one."""
        if self.runner is None and self.error is None:
            params = self.param_panel.values
            try:
                runner: RunnerLike | None
                if self.runner_kind == "process":
                    runner = ProcessRunner(self.topic, params=params, seed=self.seed, device=self.device)
                    try:
                        runner.start(paused=self.user_paused)
                        self.message = STARTING
                    except Exception as exc:  # e.g. a topic that cannot be pickled
                        self.message = f"engine in a thread ({type(exc).__name__}: {exc})"[:120]
                        runner = None
                else:
                    runner = None
                if runner is None:
                    runner = Runner(self.topic, params=params, seed=self.seed, device=self.device)
                    runner.start(paused=self.user_paused)
            except ParamError as exc:
                self.error = str(exc)
                return None
            self.runner = runner
            self.param_panel.runner = runner
        return self.runner

    def activate(self) -> None:
        runner = self.ensure_runner()
        if runner is not None and not self.user_paused:
            runner.resume()
        self.query_one(ParamList).focus()

    def deactivate(self) -> None:
        if self.runner is not None:
            self.runner.pause()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop(timeout=2.0)

    # -- keys (called by the app) ----------------------------------------------
    def toggle_run(self) -> str:
        runner = self.ensure_runner()
        if runner is None:
            return self.error or "no runner"
        if runner.paused:
            self.user_paused = False
            runner.resume()
            return "running" if not runner.paused else f"cannot resume: {runner.status}"
        self.user_paused = True
        runner.pause()
        return "paused"

    def step_once(self) -> str:
        runner = self.ensure_runner()
        if runner is None:
            return self.error or "no runner"
        if not runner.paused:
            self.user_paused = True
            runner.pause()
        runner.step_once()
        return "one step"

    def reset(self) -> str:
        runner = self.ensure_runner()
        if runner is None:
            return self.error or "no runner"
        seed = runner.reset()
        if not self.user_paused:
            runner.resume()
        return f"reset with seed {seed}"

    def toggle_freeze(self) -> str:
        self.frozen = not self.frozen
        if not self.frozen:
            self._shown = None  # redraw at once
        return "view frozen (engine keeps running)" if self.frozen else "view live"

    # -- redraw (called by the app's timer) ----------------------------------------
    def tick(self) -> list[str]:
        """Redraw what changed; returns the new one-line notes from frames since last time."""
        runner = self.runner
        if runner is None:
            return []
        if runner.generation != self._generation:
            self._generation = runner.generation
            self._shown = None
            self._noted_step = -1
            for w in self.view_widgets:
                w.clear()
        latest = runner.latest
        if latest is not None and self.message == STARTING:
            self.message = ""
        self.param_panel.refresh_values()
        if latest is None or latest is self._shown:
            return []
        history = runner.frames()
        notes = self._new_notes(history)
        if self.frozen:
            return notes
        for w in self.view_widgets:
            try:
                w.show(latest, history if getattr(w, "needs_history", False) else None)
            except Exception as exc:  # a malformed frame must not kill the app
                w.border_subtitle = f"cannot draw: {type(exc).__name__}: {exc}"[:80]
        self.query_one(Readout).show(latest)
        self._shown = latest
        return notes

    def _new_notes(self, history: list[Frame]) -> list[str]:
        out: list[str] = []
        last = self._noted_step
        for f in history:
            if f.step > last:
                out.extend(f"step {f.step}: {n}" for n in f.notes)
        if history:
            self._noted_step = max(last, history[-1].step)
        return out
