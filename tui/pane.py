"""TopicPane: one topic's tab — its parameter panel, a readout of the latest scalars, and
the topic's views in a grid that shows what fits legibly and puts the rest a key away.

Which views are on screen (``layout_views``):
  * a view that does not apply to the run's params (``View.when``, decided in the engine)
    is hidden, and so is one with nothing to draw yet (``engine.views.has_content``): no
    empty frame is ever drawn; until some view has content the grid says why (the engine
    is starting, the first frame is on its way, the engine was released);
  * of the others, in the topic's order (its order of importance), as many as fit with
    cells of at least ``MIN_CELL`` characters; ``c`` shows the next ones (pages), ``z``
    zooms one view to the whole grid (then ``c`` moves to the next view).
Only the views on screen are drawn on a tick, so a pane's UI cost is what it shows.

Sizes live in assets/mletui.tcss (the side column's width per breakpoint); only the
grid's shape, which depends on how many views are shown, is computed here.

The pane owns the topic's runner (anything :class:`~engine.runner.RunnerLike`). With the
process runner the app hands it a warm engine process from its pool when the tab is first
shown; ``release`` drops the runner (the app does so for tabs left for a while, to bound
memory) and the next visit starts a fresh one, which the pane says. The app's timer calls
``tick()`` on the visible pane only: it reads ``runner.latest`` (never waits on the
engine), redraws the shown views when the frame changed (not when frozen), and clears them
when ``runner.generation`` says the run was re-initialised.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from textual import on
from textual.app import ComposeResult
from textual.containers import Container, Horizontal, Vertical
from textual.widgets import Static

from mletui.engine.params import ParamError
from mletui.engine.process_runner import EngineProcess, ProcessRunner
from mletui.engine.runner import Runner, RunnerLike, SteppedRunner
from mletui.engine.topic import Frame, Topic
from mletui.engine.views import has_content

from .charset import Glyphs
from .widgets import widget_for
from .widgets.params import ParamList, ParamPanel
from .widgets.readout import Readout


STARTING = "starting the engine process (its first frame takes a few seconds)"
WAITING = "waiting for the engine's first frame"
MIN_CELL = (30, 8)  # the smallest legible view: columns, rows (border included)


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


def legible(n: int, width: int, height: int, min_cell: tuple[int, int] = MIN_CELL) -> bool:
    """Whether n views fit a width x height area with cells of at least ``min_cell``
    (some arrangement of columns and rows)."""
    for cols in range(1, n + 1):
        rows = math.ceil(n / cols)
        if width // cols >= min_cell[0] and height // rows >= min_cell[1]:
            return True
    return False


def capacity(n: int, width: int, height: int, min_cell: tuple[int, int] = MIN_CELL) -> int:
    """How many of n views to show at once: the most that fit legibly, at least one."""
    k = max(1, n)
    while k > 1 and not legible(k, width, height, min_cell):
        k -= 1
    return min(k, n) if n else 0


def legible_shape(n: int, width: int, height: int,
                  min_cell: tuple[int, int] = MIN_CELL) -> tuple[int, int]:
    """``grid_shape`` among the arrangements whose cells are legible (when one is)."""
    cols, rows = grid_shape(n, width, height)
    if n <= 1 or (width // cols >= min_cell[0] and height // rows >= min_cell[1]):
        return cols, rows
    fits = [(c, math.ceil(n / c)) for c in range(1, n + 1)
            if width // c >= min_cell[0] and height // math.ceil(n / c) >= min_cell[1]]
    if not fits:
        return cols, rows
    return min(fits, key=lambda cr: (cr[0] * cr[1] - n, abs(math.log((width / cr[0]) / (height / cr[1]) / 3.0))))


class ViewGrid(Container):
    """The views, in a grid whose rows and columns follow its size and what is shown."""

    def on_resize(self) -> None:
        pane = self.parent
        if isinstance(pane, TopicPane):
            pane.layout_views()


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
        self.released = False  # the engine was released; the next one starts afresh
        self.view_widgets = [widget_for(v, glyphs, topic) for v in topic.views]
        self.note = Static("", id="views-note")
        self._content = [False] * len(self.view_widgets)   # has drawn something (this generation)
        self._content_step = -1     # frames up to this step were looked at for content
        self._applies = [v.applies(None) for v in topic.views]
        self.shown: list[int] = []  # indices of the views on screen
        self.first = 0              # index (among the eligible views) of the first one shown
        self.zoomed = False
        self._shown: Frame | None = None
        self._generation = -1
        self._noted_step = -1
        try:
            base = topic.resolve(topic.interactive) if topic.interactive else None
            values = topic.resolve(self.overrides, preset=preset, base=base)
        except ParamError as exc:
            values = topic.default_params()
            self.error = f"preset: {exc}" if exc.layer == "preset" else str(exc)
        self.param_panel = ParamPanel(topic, glyphs, values, id="params")

    def compose(self) -> ComposeResult:
        with Vertical(id="side"):
            yield self.param_panel
            yield Readout(self.topic, id="readout")
        with ViewGrid(id="views"):
            yield from self.view_widgets
            yield self.note

    def on_mount(self) -> None:
        self._applies = [v.applies(self.param_panel.values) for v in self.topic.views]
        self.layout_views()

    # -- the runner ---------------------------------------------------------------
    def ensure_runner(self, engine: EngineProcess | None = None) -> RunnerLike | None:
        """The topic's runner, created on first use with the panel's values: in a spawned
        process ("process", what the app uses on a terminal: the engine keeps its own GIL;
        ``engine`` a warm one from the app's pool) or a thread of this one."""
        if self.runner is None and self.error is None:
            params = self.param_panel.values
            try:
                runner: RunnerLike | None
                if self.runner_kind == "process":
                    runner = ProcessRunner(self.topic, params=params, seed=self.seed, device=self.device,
                                           process=engine)
                    try:
                        runner.start(paused=self.user_paused)
                    except Exception as exc:  # e.g. a topic that cannot be pickled
                        self.message = f"engine in a thread ({type(exc).__name__}: {exc})"[:120]
                        runner = None
                elif self.runner_kind == "stepped":  # snapshot tests: steps only on `n`
                    runner = SteppedRunner(self.topic, params=params, seed=self.seed, device=self.device)
                    runner.start()
                else:
                    runner = None
                if runner is None:
                    runner = Runner(self.topic, params=params, seed=self.seed, device=self.device)
                    runner.start(paused=self.user_paused)
            except ParamError as exc:
                self.error = str(exc)
                return None
            if self.released:
                self.message = f"engine released while away: state re-initialised (seed {runner.seed})"
                self.released = False
            elif isinstance(runner, ProcessRunner) and not runner.ready:
                self.message = STARTING
            self.runner = runner
            self.param_panel.runner = runner
        return self.runner

    def activate(self, engine: EngineProcess | None = None) -> None:
        runner = self.ensure_runner(engine)
        if runner is not None and not self.user_paused:
            runner.resume()
        self.query_one(ParamList).focus()

    def deactivate(self) -> None:
        if self.runner is not None:
            self.runner.pause()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop(timeout=0.5)

    def release(self) -> Any:
        """Drop the runner to free its memory: tell it to stop (returns what to wait for,
        see ``engine.process_runner.stop_all``), keep its params (and seed, unless the app
        was given none) for the next start, clear the views. The next ``activate`` starts
        a fresh run and says so."""
        runner = self.runner
        if runner is None:
            return None
        self.param_panel._values = dict(runner.params)
        self.param_panel.runner = None
        if self.seed is None:
            self.seed = runner.seed
        wait = runner.stop_nowait()
        self.runner = None
        self.released = True
        self._reset_views()
        return wait

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

    def cycle_views(self, delta: int = 1) -> str:
        """The next views (a page of what fits; one view when zoomed)."""
        eligible = self.eligible()
        if not eligible:
            return "no view to show yet"
        n = len(eligible)
        k = 1 if self.zoomed else self._capacity(n)
        if k >= n:
            return f"all {n} views are shown (z: zoom one)"
        if self.zoomed:
            self.first = (self.first + delta) % n
        elif delta > 0:  # pages are always full: the last one ends with the last view
            self.first = 0 if self.first + k >= n else min(self.first + k, n - k)
        else:
            self.first = n - k if self.first == 0 else max(0, self.first - k)
        self.layout_views(redraw=True)
        return f"{self.views_label()} (c: next, z: zoom)"

    def toggle_zoom(self) -> str:
        eligible = self.eligible()
        if not eligible:
            return "no view to zoom yet"
        self.zoomed = not self.zoomed  # the grid comes back starting at the zoomed view
        self.layout_views(redraw=True)
        if self.zoomed:
            title = self.topic.views[self.shown[0]].title if self.shown else ""
            return f"zoomed: {title} (z: back, c: next view)"
        return f"{self.views_label()}"

    def views_label(self) -> str:
        """Which views are on screen: "views 3-4 of 6", "view 2 of 5 (zoomed)", ""."""
        eligible = self.eligible()
        if not self.shown or (len(self.shown) == len(eligible) and not self.zoomed):
            return ""
        pos = [eligible.index(i) + 1 for i in self.shown if i in eligible]
        if not pos:
            return ""
        if self.zoomed:
            return f"view {pos[0]} of {len(eligible)} (zoomed)"
        span = f"{pos[0]}-{pos[-1]}" if len(pos) > 1 else f"{pos[0]}"
        return f"views {span} of {len(eligible)}"

    # -- which views are on screen ----------------------------------------------
    def eligible(self) -> list[int]:
        """Indices of the views that apply to the run's params and have content."""
        return [i for i in range(len(self.view_widgets)) if self._applies[i] and self._content[i]]

    def _area(self) -> tuple[int, int]:
        grid = self.query_one(ViewGrid)
        return grid.size.width, grid.size.height

    def _capacity(self, n: int) -> int:
        w, h = self._area()
        return capacity(n, w, h) if w > 0 else n

    def layout_views(self, redraw: bool = False) -> None:
        """Show the eligible views that fit (from ``first``; one when zoomed), hide the
        rest, and set the grid's shape; the note stands in when none has content."""
        try:
            grid = self.query_one(ViewGrid)
        except Exception:
            return
        width, height = grid.size.width, grid.size.height
        eligible = self.eligible()
        if eligible:
            n = len(eligible)
            k = 1 if self.zoomed else (capacity(n, width, height) if width > 0 else n)
            self.first = max(0, min(self.first, n - k))  # a full page (or the one zoomed)
            shown = eligible[self.first:self.first + k]
        else:
            self.first, shown = 0, []
        before = set(self.shown)
        self.shown = shown
        for i, w in enumerate(self.view_widgets):
            w.display = i in shown
        self.note.display = not shown
        if not shown:
            self.note.update(self.glyphs.text(self._why_empty()))
        if width > 0:
            cols, rows = legible_shape(max(1, len(shown)), width, height)
            grid.styles.grid_size_columns = cols
            grid.styles.grid_size_rows = rows
        if redraw or set(shown) - before:
            self.call_after_refresh(self._redraw_shown)

    def _why_empty(self) -> str:
        if self.error:
            return self.error
        if self.runner is None:
            return "engine released: it starts again when this tab is shown" if self.released \
                else "the engine starts when this tab is shown"
        if self.runner.error:
            return f"error: {self.runner.error}"
        if self.runner.latest is None:
            return STARTING if isinstance(self.runner, ProcessRunner) and not self.runner.ready else WAITING
        return "no view has anything to draw yet"

    def _redraw_shown(self) -> None:
        runner = self.runner
        if runner is None or runner.latest is None or self.frozen:
            return
        self._draw(runner.latest, runner.frames(), [self.view_widgets[i] for i in self.shown])

    def _draw(self, latest: Frame, history: list[Frame], widgets: list[Any]) -> None:
        for w in widgets:
            try:
                w.show(latest, history if getattr(w, "needs_history", False) else None)
            except Exception as exc:  # a malformed frame must not kill the app
                w.border_subtitle = f"cannot draw: {type(exc).__name__}: {exc}"[:80]

    def _reset_views(self) -> None:
        self._shown = None
        self._noted_step = -1
        self._content = [False] * len(self.view_widgets)
        self._content_step = -1
        for w in self.view_widgets:
            w.clear()
        self.layout_views()

    @on(ParamPanel.Refused)
    def _refused(self, event: ParamPanel.Refused) -> None:
        """A refused value also goes to the event line (the panel shows it too)."""
        self.message = event.text
        app = self.app
        if hasattr(app, "say") and getattr(app, "pane", None) is self:
            app.say(event.text)

    # -- redraw (called by the app's timer) ----------------------------------------
    def tick(self) -> list[str]:
        """Redraw what changed; returns the new one-line notes from frames since last time."""
        runner = self.runner
        if runner is None:
            if self.note.display:
                self.note.update(self.glyphs.text(self._why_empty()))
            return []
        if runner.generation != self._generation:
            self._generation = runner.generation
            self._reset_views()
        latest = runner.latest
        if latest is not None and self.message in (STARTING, WAITING):
            self.message = ""
        self.param_panel.refresh_values()
        applies = [v.applies(runner.params) for v in self.topic.views]
        if applies != self._applies:  # an edit applied while paused changes no frame
            self._applies = applies
            self.layout_views()
        if latest is None or latest is self._shown:
            if self.note.display:
                self.note.update(self.glyphs.text(self._why_empty()))
            return []
        history = runner.frames()
        notes = self._new_notes(history)
        if self.frozen:
            return notes
        if not all(self._content):
            # the frames not looked at yet (a view without content so far may get some)
            fresh = []
            for f in reversed(history):
                if f.step <= self._content_step:
                    break
                fresh.append(f)
            fresh = fresh or [latest]
            content = [c or has_content(v, latest, fresh) for c, v in zip(self._content, self.topic.views)]
            self._content_step = max(self._content_step, latest.step)
        else:
            content = self._content
        if content != self._content:
            self._content = content
            self.layout_views()
        self._draw(latest, history, [self.view_widgets[i] for i in self.shown])
        self.query_one(Readout).show(latest)
        self._shown = latest
        return notes

    def _new_notes(self, history: list[Frame]) -> list[str]:
        last = self._noted_step
        fresh: list[Frame] = []
        for f in reversed(history):  # the new frames are at the end
            if f.step <= last:
                break
            fresh.append(f)
        if history:
            self._noted_step = max(last, history[-1].step)
        return [f"step {f.step}: {n}" for f in reversed(fresh) for n in f.notes]
