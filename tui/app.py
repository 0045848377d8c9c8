"""MletuiApp: one tab per registered topic, a status bar, a key-help footer, a `?` help screen.

Only the visible topic's runner runs; the others are paused. A timer at ``fps`` redraws
the visible pane from ``runner.latest`` (the engine never waits for the UI). Every key
is a ``Binding`` in one list (``BINDINGS`` here, ``ParamList.BINDINGS`` for the
parameter keys): the key bar and the help screen are generated from those lists.

Engines start ahead of need and never hold up an exit: with engines in processes (the
default on a terminal) the first tab's engine starts at launch and a pool of warm engine
processes (``MLETUI_WARM_ENGINES``, default 2; torch already imported) fills in the
background, one at a time, so showing another tab starts its engine at once. A tab left for
more than ``release_after`` seconds (``MLETUI_RELEASE_AFTER``, default 60) has its engine
released (memory stays bounded; the state re-initialises on return, and the pane says so).
``q`` tells every engine to stop and waits for all of them together for at most half a
second (``engine.process_runner.stop_all``), then SIGKILLs what is left.

Launched by ``mletui`` (tui/cli.py) as
    MletuiApp(topic=None, overrides={topic: {param: value}}, seed=None, device=None,
              fps=4.0, preset_name=None).run()
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.filter import Monochrome, NoColor
from textual.widgets import Static, TabbedContent, TabPane, Tabs

from mletui.engine import presets, record
from mletui.engine.device import describe_device, resolve_device
from mletui.engine.params import ParamError
from mletui.engine.process_runner import ProcessRunner, WarmPool, stop_all
from mletui.engine.runner import Status
from mletui.engine.topic import Topic
from mletui.engine.topics import all_topics, failed_topics

from .charset import glyphs as pick_glyphs
from .keybar import KeyBar, fit
from .pane import TopicPane
from .screens import HelpScreen, PresetNameScreen
from .widgets import toggle_history
from .widgets.params import ParamList, ParamPanel
from .widgets.readout import Readout


SWITCH_INTERVAL_S = float(os.environ.get("MLETUI_SWITCH_INTERVAL", "0.0005"))
WARM_ENGINES = 2        # spare engine processes kept ready ($MLETUI_WARM_ENGINES)
RELEASE_AFTER_S = 60.0  # a tab left this long loses its engine ($MLETUI_RELEASE_AFTER)
# The key bar keeps these actions first when the width runs short (80 columns).
KEY_PRIORITY = ("switch(1)", "help", "quit", "save_preset", "toggle_run", "cycle_views", "zoom",
                "step", "reset", "export")


def export_dir() -> Path:
    """Where exports and screenshots go: $MLETUI_EXPORT_DIR, else ./exports."""
    return Path(os.environ.get("MLETUI_EXPORT_DIR") or "exports").expanduser()


def work_rate(work_per_s: float, unit: str) -> str:
    """runner.work_per_s (units of work per second) in the topic's unit: a unit that names
    its time ("flips/ns") is used as given; a bare unit ("flips") gets the time prefix that
    keeps the figure readable (per ns from 1e8 per second, then per us, ms, s)."""
    if not unit or work_per_s <= 0:
        return ""
    scale = {"/ns": 1e-9, "/us": 1e-6, "/µs": 1e-6, "/ms": 1e-3, "/s": 1.0}
    for suffix, factor in scale.items():
        if unit.endswith(suffix):
            return f"{work_per_s * factor:.3g} {unit}"
    for threshold, suffix, factor in ((1e8, "/ns", 1e-9), (1e5, "/us", 1e-6), (1e2, "/ms", 1e-3)):
        if work_per_s >= threshold:
            return f"{work_per_s * factor:.3g} {unit}{suffix}"
    return f"{work_per_s:.3g} {unit}/s"


def not_loaded(failed: Mapping[str, str]) -> str:
    """One line naming the topic modules that failed to import, and the first reason."""
    if not failed:
        return ""
    names = ", ".join(failed)
    first = next(iter(failed))
    more = f" ({first}: {failed[first]})" if len(failed) > 1 else f": {failed[first]}"
    return f"topic{'s' if len(failed) > 1 else ''} {names} not loaded{more}"


class MletuiApp(App):
    TITLE = "mletui"
    # Relative to this file, in a checkout (tui/ beside assets/) and installed alike
    # (mletui/tui beside mletui/assets).
    CSS_PATH = "../assets/mletui.tcss"
    # Width classes on the screen, for the stylesheet's sizes (the side column).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    ENABLE_COMMAND_PALETTE = False  # every action has a key; the footer keeps its room

    BINDINGS = [
        Binding("space", "toggle_run", "Pause/run", tooltip="pause / resume the engine"),
        Binding("f", "freeze", "Freeze", tooltip="freeze / unfreeze the view (the engine keeps running)"),
        Binding("n", "step", "Step", tooltip="one step while paused (pauses first if running)"),
        Binding("r", "reset", "Reset", tooltip="re-initialise with a new seed"),
        Binding("e", "export", "Export",
                tooltip="export the history to JSONL and CSV ($MLETUI_EXPORT_DIR or ./exports)"),
        Binding("s", "screenshot", "SVG", tooltip="save an SVG screenshot (same folder)"),
        Binding("p", "save_preset", "Preset", tooltip="save the current params as a named preset"),
        Binding("c", "cycle_views", "Views",
                tooltip="show the next views (the ones that do not fit; the next view when zoomed)"),
        Binding("z", "zoom", "Zoom", tooltip="zoom one view to the whole pane, or back to the grid"),
        Binding("h", "history", "History", show=False,
                tooltip="traces: the recent window (autoscaled to it) or the full history"),
        Binding("v", "values", "Values", show=False,
                tooltip="move the arrow keys to the values list (and back to the params)"),
        Binding("question_mark", "help", "Help", tooltip="this help"),
        Binding("q", "quit", "Quit", tooltip="quit"),
        Binding("tab", "switch(1)", "Topic", priority=True, tooltip="next topic"),
        Binding("shift+tab", "switch(-1)", "Previous topic", show=False, priority=True,
                tooltip="previous topic"),
        *(Binding(str(i), f"goto({i})", f"Topic {i}", show=False, tooltip=f"go to topic {i}")
          for i in range(1, 10)),
    ]

    def __init__(self, topic: str | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 seed: int | None = None, device: torch.device | str | None = None, fps: float = 4.0,
                 preset_name: str | None = None, *, topics: Sequence[Topic] | None = None,
                 start_paused: bool = False, show_rates: bool = True, ascii: bool | None = None,
                 runner: str | None = None, warm: int | None = None,
                 release_after: float | None = None) -> None:
        """topics: the topics to show (default: every registered one).
        runner: "process" (the engine in a spawned process: it keeps its own GIL, see
        engine/process_runner.py), "thread", or "stepped" (no thread: a step only on `n`,
        in the UI's thread; snapshot tests); default $MLETUI_RUNNER, else "process" on a
        terminal and "thread" under Textual's headless test driver (Pilot tests reach into
        runner state).
        start_paused: runners start paused (tests, snapshots).
        show_rates: False hides timing-dependent text (steps/s, work rate) for snapshots.
        ascii: force ASCII (True) or Unicode (False) drawing; None decides from the locale.
        warm: spare engine processes to keep ready (process runner only; default
        $MLETUI_WARM_ENGINES, else 2). release_after: seconds after which a tab left
        loses its engine (default $MLETUI_RELEASE_AFTER, else 60; 0 or less: never)."""
        super().__init__()
        if self.no_color:  # NO_COLOR: no colour codes at all (Textual's default sends greys)
            self._filters = [f for f in self._filters if not isinstance(f, Monochrome)] + [NoColor()]
        self.glyphs = pick_glyphs(ascii)
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.fps = float(fps) if fps and fps > 0 else 4.0
        self.seed = seed
        self.show_rates = show_rates
        self.start_paused = start_paused
        self.preset_name = preset_name
        self.runner_kind = runner or os.environ.get("MLETUI_RUNNER") or None
        self.warm = int(os.environ.get("MLETUI_WARM_ENGINES", WARM_ENGINES)) if warm is None else int(warm)
        self.release_after = float(os.environ.get("MLETUI_RELEASE_AFTER", RELEASE_AFTER_S)) \
            if release_after is None else float(release_after)
        self.clock = time.monotonic  # when tabs were left (a test may set its own)
        self.left_at: dict[str, float] = {}
        self.pool: WarmPool | None = None
        self._stopped = False
        found = list(topics) if topics is not None else list(all_topics().values())
        self.topics = {t.name: t for t in found}
        self.overrides: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (overrides or {}).items()}
        self.presets: dict[str, dict[str, Any]] = {}  # topic -> the loaded preset's values
        self.panes: dict[str, TopicPane] = {}
        self.active: str | None = None
        # until a pane is shown; then each pane keeps its own line
        self._message = not_loaded(failed_topics()) if topics is None else ""
        if preset_name:
            try:
                preset = presets.load(preset_name)
                self.presets[preset.topic] = dict(preset.params)
                topic = topic or preset.topic
                self.message = f"preset {preset.name} loaded"
            except ParamError as exc:
                self.message = str(exc)
        self.initial = topic if topic in self.topics else (next(iter(self.topics), None))
        if topic is not None and topic not in self.topics:
            self.message = f"unknown topic {topic!r}"
        # describe_device names the thread count, which differs between machines: the
        # snapshot mode (show_rates=False) shows the device type only.
        self._device_name = describe_device(self.device) if show_rates else self.device.type

    # -- layout -------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        initial = f"tab-{self.initial}" if self.initial else None
        with TabbedContent(initial=initial or "", id="topics"):
            for i, (name, topic) in enumerate(self.topics.items(), start=1):
                pane = TopicPane(topic, self.glyphs, overrides=self.overrides.get(name),
                                 preset=self.presets.get(name), seed=self.seed, device=self.device,
                                 start_paused=self.start_paused, id=f"pane-{name}")
                pane.runner_kind = self.runner_kind or "thread"
                self.panes[name] = pane
                title = self.glyphs.text(topic.title or name)
                label = f"{i} {title}" if i <= 9 else title
                with TabPane(label, id=f"tab-{name}"):
                    yield pane
        yield Static("", id="message")
        yield Static("", id="status")
        yield KeyBar(lambda: self.BINDINGS, self.get_key_display, KEY_PRIORITY, self.glyphs.text, id="keys")

    def on_mount(self) -> None:
        if self.runner_kind is None:
            self.runner_kind = "thread" if self.is_headless else "process"
            for pane in self.panes.values():
                pane.runner_kind = self.runner_kind
        if self.runner_kind not in ("thread", "process", "stepped"):
            self._message = f"runner must be thread or process, got {self.runner_kind!r}: using thread"
            self.runner_kind = "thread"
            for pane in self.panes.values():
                pane.runner_kind = "thread"
        # With a thread runner (and for the process runner's reader thread): while one thread
        # runs Python, another waiting for the GIL waits up to the switch interval (5 ms by
        # default) for each hand-over. A short interval keeps keys responsive while an engine
        # thread runs Python-heavy steps; it does not stop the UI from slowing an engine
        # thread (BENCHMARKS.md, ui), which is why the app's default runner is a process.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        # What is alive now (torch, the engine and the widgets: about a million objects)
        # lives as long as the app: out of the garbage collector's way, so its passes over
        # the older generations walk only what redraws allocate (measured: GC was half of
        # the UI process's CPU at 4 redraws a second, BENCHMARKS.md, ui).
        gc.collect()
        gc.freeze()
        if self.glyphs.ascii:
            self.add_class("ascii")
        for tabs in self.query(Tabs):
            tabs.can_focus = False
        if self.runner_kind == "process" and len(self.panes) > 1:
            self.pool = WarmPool(min(self.warm, len(self.panes) - 1))
        if self.initial:
            self._activate(self.initial)
        self.redraw_timer = self.set_interval(1.0 / self.fps, self.tick)
        self.tick()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane_id = event.pane.id or ""
        if pane_id.startswith("tab-"):
            self._activate(pane_id[4:])

    def _activate(self, name: str) -> None:
        if name == self.active:
            return
        now = self.clock()
        for other, pane in self.panes.items():
            if other != name:
                if other == self.active:
                    self.left_at[other] = now
                pane.deactivate()
        self.left_at.pop(name, None)
        self.active = name
        pane = self.panes[name]
        if self._message and not pane.message:
            pane.message, self._message = self._message, ""
        engine = self.pool.take() if self.pool is not None and pane.runner is None else None
        pane.activate(engine)
        if pane.error:
            self.message = pane.error
        self.tick()

    @property
    def message(self) -> str:
        """The message line of the visible pane (the last event, export path, error)."""
        pane = self.pane
        return pane.message if pane is not None else self._message

    @message.setter
    def message(self, text: str) -> None:
        pane = self.pane
        if pane is not None:
            pane.message = text
        else:
            self._message = text

    @property
    def pane(self) -> TopicPane | None:
        return self.panes.get(self.active) if self.active else None

    # -- the redraw timer -----------------------------------------------------------
    def tick(self) -> None:
        try:
            self._tick()
        except NoMatches:  # the screen is being torn down (quit) while the timer fires
            pass

    def _tick(self) -> None:
        if self._stopped:
            return
        pane = self.pane
        if pane is None:
            self._status("no topics registered")
            return
        notes = pane.tick()
        if notes:
            self.message = notes[-1] if len(notes) == 1 else f"{notes[-1]} (+{len(notes) - 1} more)"
        self._status()
        self.release_idle()
        if self.pool is not None:  # one engine process starting at a time
            self.pool.fill(busy=any(isinstance(p.runner, ProcessRunner) and not p.runner.ready
                                    for p in self.panes.values()))

    def release_idle(self) -> list[str]:
        """Release the engines of tabs left more than ``release_after`` seconds ago;
        returns their names. Their processes are reaped in the background."""
        if self.release_after <= 0:
            return []
        now = self.clock()
        gone: list[str] = []
        waits = []
        for name, since in list(self.left_at.items()):
            pane = self.panes[name]
            if name != self.active and pane.runner is not None and now - since > self.release_after:
                waits.append(pane.release())
                gone.append(name)
                del self.left_at[name]
        if waits:
            import threading

            threading.Thread(target=stop_all, args=(waits,), daemon=True,
                             name="release-engines").start()
        return gone

    def _status(self, text: str | None = None) -> None:
        sep = self.glyphs.sep
        status = self.query_one("#status", Static)
        msg = self.query_one("#message", Static)
        if text is not None:
            self._set_line(status, Text(text))
            return
        pane = self.pane
        runner = pane.runner if pane else None
        # (rank, text): the line keeps the lowest ranks whole when the width runs short
        parts: list[tuple[int, str]] = [(6, self._device_name)]
        if runner is None:
            parts.append((0, pane.error if pane and pane.error else "not started"))
        else:
            state = runner.status + (" frozen" if pane.frozen else "")
            parts.append((0, f"{pane.topic.name} {state}"))
            parts.append((3, f"step {runner.steps}"))
            if self.show_rates:
                if runner.status is Status.RUNNING:
                    parts.append((4, f"{runner.steps_per_s:.4g} steps/s"))
                    rate = work_rate(runner.work_per_s, pane.topic.work_unit())
                    if rate:
                        parts.append((2, rate))
            parts.append((1, f"seed {runner.seed}"))
        views = pane.views_label() if pane else ""
        if views:
            parts.append((5, views))
        width = max(10, (status.size.width or self.size.width) - 2)
        if self.glyphs.ascii:
            parts = [(r, self.glyphs.text(t)) for r, t in parts]
        cut = "crop" if self.glyphs.ascii else "ellipsis"  # Rich's ellipsis is not ASCII
        self._set_line(status, Text(sep.join(fit(parts, width, sep)), no_wrap=True, overflow="crop"))
        if runner is not None and runner.error:
            self._set_line(msg, Text(f"error: {runner.error}", style="bold red", no_wrap=True,
                                     overflow=cut))
        else:
            self._set_line(msg, Text(self.message, no_wrap=True, overflow=cut))

    def _set_line(self, widget: Static, text: Text) -> None:
        """Update a one-line Static only when its text changed, without a layout pass;
        in ASCII mode the text is spelled in ASCII (charset.Glyphs.text)."""
        if self.glyphs.ascii:
            text.plain = self.glyphs.text(text.plain)
        key = (text.plain, str(text.style))
        if getattr(widget, "_mletui_key", None) != key:
            widget._mletui_key = key
            widget.update(text, layout=False)

    def say(self, text: str) -> None:
        self.message = text
        self._status()

    # -- actions --------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # With a modal open (help, preset name), tab must not switch the topic behind it.
        if action == "switch" and len(self.screen_stack) > 1:
            return False
        return True

    def action_switch(self, delta: int) -> None:
        names = list(self.panes)
        if not names or self.active is None:
            return
        i = (names.index(self.active) + delta) % len(names)
        self.query_one(TabbedContent).active = f"tab-{names[i]}"

    def action_goto(self, number: int) -> None:
        names = list(self.panes)
        if 1 <= number <= len(names):
            self.query_one(TabbedContent).active = f"tab-{names[number - 1]}"

    def action_toggle_run(self) -> None:
        if self.pane:
            self.say(self.pane.toggle_run())

    def action_freeze(self) -> None:
        if self.pane:
            self.say(self.pane.toggle_freeze())

    def action_step(self) -> None:
        if self.pane:
            self.say(self.pane.step_once())

    def action_reset(self) -> None:
        if self.pane:
            self.say(self.pane.reset())

    def action_history(self) -> None:
        if self.pane:
            self.say(toggle_history(self.pane.view_widgets))

    def action_values(self) -> None:
        if self.pane:
            readout = self.pane.query_one(Readout)
            if readout.has_focus:
                self.pane.query_one(ParamList).focus()
                self.say("arrow keys: params")
            else:
                readout.focus()
                self.say("arrow keys: values (v: back to the params)")

    def _stamp(self) -> str:
        return time.strftime("%Y%m%d-%H%M%S")

    def action_export(self) -> Path | None:
        pane = self.pane
        if pane is None or pane.runner is None:
            return None
        runner = pane.runner
        frames = runner.recorded()  # the regular record since the last reset, not the UI's frames
        if not frames:
            self.say("nothing to export yet")
            return None
        folder = export_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            base = folder / f"{pane.topic.name}-{self._stamp()}"
            params = frames[0].params if frames[0].params is not None else dict(runner.params)
            jsonl = base.with_suffix(".jsonl")
            record.write_jsonl(str(jsonl), pane.topic.name, params, runner.seed, runner.device, frames)
            record.write_csv(str(base.with_suffix(".csv")), pane.topic.name, frames)
        except OSError as exc:
            self.say(f"export failed: {exc}")
            return None
        self.say(f"exported {len(frames)} frames to {jsonl} (+ .csv)")
        return jsonl

    def action_screenshot(self) -> str | None:
        folder = export_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{self.active or 'mletui'}-{self._stamp()}.svg"
            path = self.save_screenshot(filename=name, path=str(folder))
        except OSError as exc:
            self.say(f"screenshot failed: {exc}")
            return None
        self.say(f"screenshot saved to {path}")
        return path

    def action_save_preset(self) -> None:
        pane = self.pane
        if pane is None:
            return
        topic = pane.topic.name

        def done(name: str | None) -> None:
            if not name:
                self.say("preset not saved")
                return
            values = dict(pane.runner.params) if pane.runner else pane.param_panel.values
            try:
                path = presets.save(name, topic, record.plain(values))
            except (ParamError, OSError) as exc:
                self.say(str(exc))
                return
            self.say(f"preset {name} saved to {path}")

        self.push_screen(PresetNameScreen(topic), done)

    def get_key_display(self, binding: Binding) -> str:
        text = super().get_key_display(binding)
        if self.glyphs.ascii and not text.isascii():
            text = binding.key.split(",")[0]
        return text

    def help_rows(self) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        for b in self.BINDINGS:
            if b.action.startswith("goto"):
                continue
            rows.append((self.get_key_display(b), self.glyphs.text(b.tooltip or b.description)))
        rows.append(("1-9", "go to topic N"))
        for b in (*ParamList.BINDINGS, *ParamPanel.BINDINGS):
            rows.append((self.get_key_display(b), self.glyphs.text(f"params: {b.tooltip or b.description}")))
        for b in Readout.BINDINGS:
            rows.append((self.get_key_display(b), self.glyphs.text(b.tooltip or b.description)))
        return rows

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_rows()))

    def action_cycle_views(self) -> None:
        if self.pane:
            self.say(self.pane.cycle_views())

    def action_zoom(self) -> None:
        if self.pane:
            self.say(self.pane.toggle_zoom())

    def stop_engines(self) -> None:
        """Every engine and warm spare told to stop at once, then waited for together
        (at most half a second in all), then SIGKILLed: nothing is left running."""
        if self._stopped:
            return
        self._stopped = True
        runners = [p.runner for p in self.panes.values() if p.runner is not None]
        spares = self.pool.close(wait=False) if self.pool is not None else []
        stop_all([*runners, *spares])

    async def action_quit(self) -> None:
        self.stop_engines()
        self.exit()

    def on_unmount(self) -> None:
        self.stop_engines()
        gc.unfreeze()  # back to the collector (nothing left looks leaked at exit)
        sys.setswitchinterval(getattr(self, "_switch_interval", 0.005))

