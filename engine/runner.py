"""Runner: one topic stepped in a background thread; run(): the same loop headless.

The runner steps as fast as the device allows, applies parameter edits between
steps (validated when they are made, never when they are applied), and publishes
the latest Frame plus a bounded history.  The UI polls ``latest`` on its own timer;
the engine never waits for the UI and the UI never waits for the engine.

Observation (``Topic.observe``: a device sync and a small copy to the host) happens
at most ``observe_hz`` times a second while running, so a fast topic is not slowed
by its own bookkeeping; topics accumulate their running means on the device in
``step``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Iterator, Mapping

import torch

from .device import resolve_device
from .params import ParamError
from .topic import Frame, Topic

RUNNING, PAUSED, DONE, ERROR = "running", "paused", "done", "error"


def new_seed() -> int:
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


def checked_edit(topic: Topic, params: Mapping[str, Any], pending: Mapping[str, Any],
                 name: str, value: Any) -> tuple[Any, dict[str, Any]]:
    """Validate an edit of ``name`` now, against the params plus the edits not yet applied:
    text is parsed, a typed value checked, then ``topic.check`` runs on the merged set.
    Returns the typed value and the edits to queue (``check`` may amend other params).
    Raises ParamError and changes nothing on bad input."""
    param = topic.param(name)
    typed = param.parse(value) if isinstance(value, str) else param.validate(value)
    merged = {**params, **pending, name: typed}
    checked = topic.check(merged, (name,))
    changes = {k: v for k, v in checked.items()
               if k == name or params.get(k) != v or k in pending}
    return typed, changes


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


class Runner:
    """A topic in a background thread with pause / resume / single step / reset and
    live edits. Thread-safe for one UI thread calling its methods."""

    def __init__(self, topic: Topic, params: Mapping[str, Any] | None = None, seed: int | None = None,
                 device: torch.device | str | None = None, history: int = 2000,
                 observe_hz: float = 20.0) -> None:
        self.topic = topic
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.params: dict[str, Any] = topic.resolve(params)
        self.seed = new_seed() if seed is None else int(seed)
        self.history: deque[Frame] = deque(maxlen=history)
        self.observe_interval = 1.0 / observe_hz if observe_hz > 0 else 0.0
        self.latest: Frame | None = None
        self.status = PAUSED
        self.error: str | None = None
        self.steps = 0
        self.steps_per_s = 0.0
        self.work_per_s = 0.0
        self.generation = 0  # bumps on every re-init; the UI uses it to clear its plots
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[str, Any] = {}
        self._reset_seed: int | None = None
        self._single = 0
        self._paused = True
        self._stop = False
        self._params_dirty = True
        self._thread: threading.Thread | None = None
        self._state: Any = None
        self._t0 = time.perf_counter()

    # -- control (called from the UI thread) -----------------------------------
    def start(self, paused: bool = False) -> None:
        if self._thread is not None:
            return
        self._paused = paused
        self.status = PAUSED if paused else RUNNING
        self._thread = threading.Thread(target=self._loop, name=f"runner-{self.topic.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def pause(self) -> None:
        with self._wake:
            self._paused = True
            if self.status == RUNNING:
                self.status = PAUSED

    def resume(self) -> None:
        with self._wake:
            if self.status in (DONE, ERROR):
                return
            self._paused = False
            self.status = RUNNING
            self._wake.notify_all()

    def toggle(self) -> None:
        if self._paused:
            self.resume()
        else:
            self.pause()

    @property
    def paused(self) -> bool:
        return self._paused

    def step_once(self) -> None:
        """One step while paused (ignored while running)."""
        with self._wake:
            if self._paused and self.status not in (DONE, ERROR):
                self._single += 1
                self._wake.notify_all()

    def reset(self, seed: int | None = None) -> int:
        """Re-initialise with a new seed (random if None). Returns the seed used."""
        seed = new_seed() if seed is None else int(seed)
        with self._wake:
            self._reset_seed = seed
            if self.status in (DONE, ERROR):
                self.status = PAUSED if self._paused else RUNNING
            self._wake.notify_all()
        return seed

    def set(self, name: str, value: Any) -> Any:
        """Validate now (text is parsed, a typed value checked) and queue the edit for
        the next step boundary. Raises ParamError and changes nothing on bad input."""
        with self._lock:
            typed, changes = checked_edit(self.topic, self.params, self._pending, name, value)
            self._pending.update(changes)
            self._wake.notify_all()
        return typed

    def pending_value(self, name: str) -> Any:
        with self._lock:
            return self._pending.get(name, self.params[name])

    def frames(self) -> list[Frame]:
        with self._lock:
            return list(self.history)

    # -- the loop (runner thread) ---------------------------------------------
    def _init_state(self, seed: int) -> None:
        self.seed = seed
        torch.manual_seed(seed)
        self._state = self.topic.init(self.params, self.device, seed)
        self.steps = 0
        self.history.clear()
        self.latest = None
        self.generation += 1
        self._params_dirty = True
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
                self._params_dirty = True
        if reset_seed is not None:
            self._init_state(reset_seed)
            self._publish()

    def _publish(self) -> None:
        frame = _observe(self.topic, self._state, self.params, self.steps, self._t0)
        if self._params_dirty:
            frame.params = dict(self.params)
            self._params_dirty = False
        with self._lock:
            self.latest = frame
            self.history.append(frame)
            if frame.done:
                self.status = DONE
                self._paused = True

    def _loop(self) -> None:
        try:
            self._init_state(self.seed)
            self._publish()
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
                if self.status in (DONE, ERROR) or (self._paused and not single):
                    rate_t, rate_steps = time.perf_counter(), 0
                    continue
                self.topic.step(self._state, self.params)
                self.steps += 1
                rate_steps += 1
                now = time.perf_counter()
                if single or now - last_obs >= self.observe_interval or self.topic.is_done(self._state, self.params):
                    self._publish()
                    now = time.perf_counter()
                    last_obs = now
                    if now - rate_t > 0.5:
                        self.steps_per_s = rate_steps / (now - rate_t)
                        self.work_per_s = self.steps_per_s * self.topic.work_per_step(self._state, self.params)
                        rate_t, rate_steps = now, 0
            except ParamError as exc:
                self._fail(exc)
            except Exception as exc:
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        with self._lock:
            self.status = ERROR
            self._paused = True
            self.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
