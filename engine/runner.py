"""Runner: one topic stepped in a background thread; run(): the same loop headless.

The runner steps as fast as the device allows, applies parameter edits between
steps (validated when they are made, never when they are applied), and publishes
the latest Frame plus a bounded history.  The UI polls ``latest`` on its own timer;
the engine never waits for the UI and the UI never waits for the engine.

Two schedules of observation (``Topic.observe``: a device sync and a small copy to the
host), and one ``observe`` call where they meet:
  * for the screen, at most ``observe_hz`` times a second while running (``latest`` and
    ``history``), so a fast topic is not slowed by its own bookkeeping;
  * for the record, on a fixed step schedule of its own (:class:`~engine.record.Record`:
    every ``Topic.every`` steps at first, the spacing doubling whenever the record is
    full), so an export holds a regular history since the last reset whatever the UI's
    frame rate. Since ``observe`` only reads (``Topic``), neither schedule changes the run.

:class:`Runner` (a thread) and :class:`~engine.process_runner.ProcessRunner` (a spawned
process) share their controls through :class:`RunnerBase` and both satisfy
:class:`RunnerLike`, the interface the app is written against.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import replace
from enum import StrEnum
from typing import Any, Iterator, Mapping, Protocol, runtime_checkable

import torch

from .device import resolve_device
from .record import Record
from .topic import Frame, Topic


class Status(StrEnum):
    """Where a runner is. A str, so it prints and compares as its value ("running")."""

    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"      # a finite schedule ended; reset starts again
    ERROR = "error"    # a step or init raised; ``error`` says what, reset starts again

    @property
    def final(self) -> bool:
        """No step happens from here until a reset."""
        return self in (Status.DONE, Status.ERROR)


@runtime_checkable
class RunnerLike(Protocol):
    """What the app needs of a runner, whichever side of a process boundary the engine is."""

    topic: Topic
    device: torch.device
    params: dict[str, Any]
    seed: int
    latest: Frame | None
    status: Status
    error: str | None
    steps: int
    steps_per_s: float
    work_per_s: float
    generation: int  # bumps on every re-init; the UI clears its plots

    @property
    def paused(self) -> bool: ...
    def start(self, paused: bool = False) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...
    def stop_nowait(self) -> Any: ...   # tell it to stop; returns what to wait for
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def toggle(self) -> None: ...
    def step_once(self) -> None: ...
    def reset(self, seed: int | None = None) -> int: ...
    def set(self, name: str, value: Any) -> Any: ...
    def pending_value(self, name: str) -> Any: ...
    def frames(self) -> list[Frame]: ...
    def recorded(self) -> list[Frame]: ...


def new_seed() -> int:
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


def checked_edit(topic: Topic, params: Mapping[str, Any], pending: Mapping[str, Any],
                 name: str, value: Any) -> tuple[Any, dict[str, Any]]:
    """Validate an edit of ``name`` now, against the params plus the edits not yet applied,
    through ``Topic.resolve`` (text is parsed, a typed value checked, then ``check`` on the
    merged set with ``name`` as the one changed). Returns the typed value and the edits to
    queue (``check`` may amend other params). Raises ParamError and changes nothing."""
    edit = {name: value}
    base = {**params, **pending}
    checked = topic.resolve(texts=edit, base=base) if isinstance(value, str) \
        else topic.resolve(edit, base=base)
    changes = {k: v for k, v in checked.items()
               if k == name or params.get(k) != v or k in pending}
    return checked[name], changes


def _observe(topic: Topic, state: Any, p: Mapping[str, Any], steps: int, t0: float) -> Frame:
    frame = topic.observe(state, p)
    frame.step = steps
    frame.time_s = time.perf_counter() - t0
    frame.done = frame.done or topic.is_done(state, p)
    return frame


def run(topic: Topic, steps: int, params: Mapping[str, Any] | None = None, seed: int = 0,
        device: torch.device | str | None = None, every: int = 1) -> Iterator[Frame]:
    """Headless: init, then ``steps`` steps, yielding a Frame every ``every`` steps
    (and after the last). Stops early when a finite topic's schedule ends. The first
    frame carries ``params``. ``params`` are typed values, validated here."""
    if not isinstance(device, torch.device):
        device = resolve_device(device)
    p = topic.resolve(params)
    torch.manual_seed(seed)
    state = topic.init(p, device, seed)
    t0 = time.perf_counter()
    first = True
    for i in range(1, steps + 1):
        topic.step(state, p)
        done = topic.is_done(state, p)
        if i % every == 0 or i == steps or done:
            frame = _observe(topic, state, p, i, t0)
            if first:
                frame.params = dict(p)
                first = False
            yield frame
            if frame.done:
                return
        elif done:
            return


class RunnerBase:
    """What both runners share: their fields, the status machine behind pause / resume /
    single step / reset, edits validated when they are made, and the frames published.
    A subclass carries each command to its engine (``_command``) and runs ``start``/``stop``.

    history        how many screen-rate frames ``frames()`` keeps.
    record_every   the record's first spacing in steps (default ``topic.every``).
    record_frames  the record's capacity (its spacing doubles when full).
    """

    def __init__(self, topic: Topic, params: Mapping[str, Any] | None = None, seed: int | None = None,
                 device: torch.device | str | None = None, history: int = 2000,
                 observe_hz: float = 20.0, record_every: int | None = None,
                 record_frames: int = 2048) -> None:
        self.topic = topic
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.params: dict[str, Any] = topic.resolve(params)
        self.seed = new_seed() if seed is None else int(seed)
        self.history: deque[Frame] = deque(maxlen=history)
        self.observe_hz = observe_hz
        self.record = Record(every=record_every or topic.every, capacity=record_frames)
        self.latest: Frame | None = None
        self.status = Status.PAUSED
        self.error: str | None = None
        self.steps = 0
        self.steps_per_s = 0.0
        self.work_per_s = 0.0
        self.generation = 0
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        self._paused = True

    def _command(self, cmd: str, *args: Any) -> None:
        """Carry a control command to the engine (the state machine here has run)."""
        raise NotImplementedError

    def _keep(self, frame: Frame) -> None:
        """Append a screen frame to the history (under the lock). Only the latest frame
        keeps its view-only data (lattices, histogram counts): readers of the history use
        its scalars and arrays, and 2000 frames of lattices would hold hundreds of MB that
        the garbage collector walks over and over. The kept entry is a copy without them:
        the frame itself is what a reader may be drawing as ``latest`` at this moment (the
        table went blank, "no data", when its frame lost its views mid-draw)."""
        if self.history and self.history[-1].views:
            self.history[-1] = replace(self.history[-1], views={})
        self.history.append(frame)

    def _starting(self, paused: bool) -> None:
        self._paused = paused
        self.status = Status.PAUSED if paused else Status.RUNNING

    # -- controls (called from the UI thread) ---------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        with self._lock:
            self._paused = True
            if self.status is Status.RUNNING:
                self.status = Status.PAUSED
        self._command("pause")

    def resume(self) -> None:
        with self._lock:
            if self.status.final:
                return
            self._paused = False
            self.status = Status.RUNNING
        self._command("resume")

    def toggle(self) -> None:
        if self._paused:
            self.resume()
        else:
            self.pause()

    def step_once(self) -> None:
        """One step while paused (ignored while running or after the end)."""
        with self._lock:
            if not self._paused or self.status.final:
                return
        self._command("step")

    def reset(self, seed: int | None = None) -> int:
        """Re-initialise with a new seed (random if None). Returns the seed used."""
        seed = new_seed() if seed is None else int(seed)
        with self._lock:
            if self.status.final:
                self.status = Status.PAUSED if self._paused else Status.RUNNING
                self.error = None
        self._command("reset", seed)
        return seed

    def set(self, name: str, value: Any) -> Any:
        """Validate now (text is parsed, a typed value checked, ``Topic.check`` on the
        merged set) and queue the edit for the next step boundary. Raises ParamError and
        changes nothing on bad input."""
        with self._lock:
            typed, changes = checked_edit(self.topic, self.params, self._pending, name, value)
            self._pending.update(changes)
        self._command("set", changes)
        return typed

    def pending_value(self, name: str) -> Any:
        with self._lock:
            return self._pending.get(name, self.params[name])

    def frames(self) -> list[Frame]:
        """The screen-rate frames since the last reset (the newest ``history`` of them);
        only the newest carries its view-only data (``views``)."""
        with self._lock:
            return list(self.history)

    def recorded(self) -> list[Frame]:
        """The record: frames on a regular step schedule since the last reset (without
        their view-only data), what an export writes."""
        with self._lock:
            return self.record.frames()


class Runner(RunnerBase):
    """A topic in a background thread with pause / resume / single step / reset and
    live edits. Thread-safe for one UI thread calling its methods."""

    def __init__(self, topic: Topic, params: Mapping[str, Any] | None = None, seed: int | None = None,
                 device: torch.device | str | None = None, history: int = 2000,
                 observe_hz: float = 20.0, record_every: int | None = None,
                 record_frames: int = 2048) -> None:
        super().__init__(topic, params, seed, device, history, observe_hz, record_every, record_frames)
        self.observe_interval = 1.0 / observe_hz if observe_hz > 0 else 0.0
        self._wake = threading.Condition(self._lock)
        self._reset_seed: int | None = None
        self._single = 0
        self._stop = False
        self._params_dirty = True   # the next screen frame carries the params
        self._record_dirty = True   # the next recorded frame carries the params
        self._notes: list[str] = []  # notes of frames observed for the record only
        self._thread: threading.Thread | None = None
        self._state: Any = None
        self._t0 = time.perf_counter()

    # -- control -----------------------------------------------------------------
    def start(self, paused: bool = False) -> None:
        if self._thread is not None:
            return
        self._starting(paused)
        self._thread = threading.Thread(target=self._loop, name=f"runner-{self.topic.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and wait at most ``timeout`` s for the thread (a step in flight
        finishes first; the thread is a daemon, so a long one does not hold up an exit)."""
        thread = self.stop_nowait()
        if thread is not None:
            thread.join(timeout)

    def stop_nowait(self) -> threading.Thread | None:
        """Tell the loop to stop after the step in flight; returns the thread to join."""
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        return self._thread

    def _command(self, cmd: str, *args: Any) -> None:
        with self._wake:
            if cmd == "step":
                self._single += 1
            elif cmd == "reset":
                self._reset_seed = args[0]
            self._wake.notify_all()

    # -- the loop (runner thread) ---------------------------------------------
    def _init_state(self, seed: int) -> None:
        self.seed = seed
        torch.manual_seed(seed)
        self._state = self.topic.init(self.params, self.device, seed)
        with self._lock:
            self.steps = 0
            self.history.clear()
            self.record.clear()
            self.latest = None
            self.generation += 1
        self._params_dirty = self._record_dirty = True
        self._notes = []
        self._t0 = time.perf_counter()

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            reset_seed, self._reset_seed = self._reset_seed, None
        if pending:
            changed = [k for k, v in pending.items() if self.params.get(k) != v]
            self.params.update(pending)
            if not changed:
                pass
            elif any(not self.topic.param(k).live for k in changed):
                reset_seed = self.seed if reset_seed is None else reset_seed
            else:
                self.topic.on_edit(self._state, self.params, changed)
                self._params_dirty = self._record_dirty = True
        if reset_seed is not None:
            self._init_state(reset_seed)
            self._observe(screen=True)

    def _observe(self, screen: bool) -> Frame:
        """One observation, kept in the record when its step is due there and published
        to the screen when ``screen`` (notes of record-only frames ride on the next one)."""
        frame = _observe(self.topic, self._state, self.params, self.steps, self._t0)
        if self.record.due(frame.step) or frame.done:
            params = dict(self.params) if self._record_dirty else None
            self._record_dirty = False
            with self._lock:
                self.record.add(replace(frame, params=params))
        if not screen:
            self._notes.extend(frame.notes)
            return frame
        if self._params_dirty:
            frame.params = dict(self.params)
            self._params_dirty = False
        if self._notes:
            frame.notes[:0] = self._notes
            self._notes = []
        with self._lock:
            self.latest = frame
            self._keep(frame)
            if frame.done:
                self.status = Status.DONE
                self._paused = True
        return frame

    def _loop(self) -> None:
        try:
            self._init_state(self.seed)
            self._observe(screen=True)
        except Exception as exc:  # a bad init must not kill the app
            self._fail(exc)
            return
        last_obs = time.perf_counter()
        rate_t, rate_steps = time.perf_counter(), 0
        while True:
            with self._wake:
                while not self._stop and (self._paused and self._single == 0) \
                        and not self._pending and self._reset_seed is None:
                    self._wake.wait(0.25)
                if self._stop:
                    return
                single = self._single > 0 and self._paused
                if single:
                    self._single -= 1
            try:
                self._apply_pending()
                if self.status.final or (self._paused and not single):
                    rate_t, rate_steps = time.perf_counter(), 0
                    continue
                self.topic.step(self._state, self.params)
                self.steps += 1
                rate_steps += 1
                now = time.perf_counter()
                screen = single or now - last_obs >= self.observe_interval \
                    or self.topic.is_done(self._state, self.params)
                if screen or self.record.due(self.steps):
                    self._observe(screen)
                if screen:
                    now = time.perf_counter()
                    last_obs = now
                    if now - rate_t > 0.5:
                        self.steps_per_s = rate_steps / (now - rate_t)
                        self.work_per_s = self.steps_per_s * self.topic.work_per_step(self._state, self.params)
                        rate_t, rate_steps = now, 0
            except Exception as exc:  # reported on the status line, never raised into the UI
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        with self._lock:
            self.status = Status.ERROR
            self._paused = True
            self.error = f"{type(exc).__name__}: {exc}".splitlines()[0]


class SteppedRunner(Runner):
    """A Runner without a thread: it steps only when told, in the caller's thread, and
    every command takes effect before it returns. Pause, resume and the frame rate do not
    apply (nothing runs by itself), so what it publishes depends only on the seed, the
    params and the steps asked for: for snapshot tests of the app and for reproducing a
    pane step by step. ``start`` initialises and observes step 0."""

    def start(self, paused: bool = True) -> None:
        if self._state is not None:
            return
        self._starting(True)
        try:
            self._init_state(self.seed)
            self._observe(screen=True)
        except Exception as exc:
            self._fail(exc)

    def stop_nowait(self) -> None:
        return None

    def resume(self) -> None:  # nothing runs by itself: stays paused
        return None

    def _command(self, cmd: str, *args: Any) -> None:
        if cmd == "reset":
            self._reset_seed = args[0]
        if cmd not in ("set", "reset", "step") or self._state is None:
            return
        try:
            self._apply_pending()
            if cmd == "step" and not self.status.final:
                self.topic.step(self._state, self.params)
                self.steps += 1
                self._observe(screen=True)
        except Exception as exc:
            self._fail(exc)
