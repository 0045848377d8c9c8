"""ProcessRunner: the Runner's interface with the engine in a spawned process.

Why: a Runner is a thread of the UI's process, so the two share one GIL. Measured with
``python -m mletui.tui.bench_ui`` (Ising, L=256, CPU, 4 redraws/s at 120x40), the app's
redraws (about 35 ms of Python each) cost the engine thread about half of its steps:
every torch call hands the GIL back and waits for it again while the UI runs. In a
process of its own the engine keeps its GIL; what is left is the CPU time the UI takes.

The child runs an ordinary :class:`~mletui.engine.runner.Runner` and forwards its frames
(pickled, small by the Frame contract), the frames its record added, and its status over
a pipe; the parent keeps the latest frame, a bounded history, a mirror of the record and
the status fields. Both classes share their controls (:class:`~mletui.engine.runner.RunnerBase`)
and satisfy :class:`~mletui.engine.runner.RunnerLike`, so the app does not know which it
has. Edits are validated in the parent (ParamError at once, as with Runner) and applied by
the child's Runner between two steps. The topic object is pickled to the child
(module-level topics are pickled by reference to their class).

Starting and stopping. Importing torch takes seconds, so an engine process starts warm
(:class:`EngineProcess`: imports done, waiting for a topic) and the app keeps a few such
spares (:class:`WarmPool`) to hand to a tab the moment it is shown. Stopping never waits
long: ``stop`` ends the child with ``os._exit`` (skipping the interpreter's teardown of
torch), and :func:`stop_all` tells every engine first and then waits for all of them
against one deadline before SIGKILL, so quitting takes well under a second however many
engines ran.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
import types
from typing import Any, Mapping, Sequence

import torch

from .runner import Runner, RunnerBase, Status
from .topic import Frame, Topic

_POLL_S = 0.02  # the child forwards new frames and status at most this often
STOP_TIMEOUT_S = 0.25  # how long stopping waits, for all the processes together, before SIGKILL
KILL_REAP_S = 5.0     # collecting a SIGKILLed process (returns as soon as it is gone; a loaded
                      # machine can take over a second to tear down a torch process)


def _warm_compiler() -> None:
    """Import ``torch._dynamo`` before a spare says ready: a topic's first ``torch.optim``
    optimizer and every ``torch.compile`` import it on first use (2-4 s here under load,
    which the Boltzmann pane's first frame paid). Only spares do it (a tab that starts its
    own engine should not wait for an import it may not need)."""
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # an optional speed-up: a broken import is met again where it matters
        pass


def _child(conn, warm_compiler: bool = False) -> None:
    """The engine process. Warm first: torch and every topic module imported, it says
    ``ready`` and waits for ``init`` (the topic and its settings), so a process started
    ahead of need (:class:`WarmPool`) serves a tab at once. Then a Runner, a command loop,
    and a forwarder of frames/status. ``stop`` (or the parent gone) ends the process at
    once with ``os._exit``: nothing here needs flushing, and the interpreter's teardown of
    torch (and of torch.compile's worker pool) would take seconds."""
    try:
        from .topics import all_topics

        all_topics()
        if warm_compiler:
            _warm_compiler()
        conn.send(("ready",))
        while True:
            cmd, *args = conn.recv()
            if cmd == "init":
                break
            if cmd == "stop":
                os._exit(0)
    except (EOFError, BrokenPipeError, OSError, KeyboardInterrupt):
        os._exit(0)
    topic, params, seed, device, history, observe_hz, record_every, record_frames, paused = args
    try:
        runner = Runner(topic, params, seed=seed, device=device, history=history, observe_hz=observe_hz,
                        record_every=record_every, record_frames=record_frames)
        runner.start(paused=paused)
    except Exception as exc:  # report and leave
        conn.send(("update", {"status": Status.ERROR,
                              "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}, [], []))
        os._exit(0)
    last: Frame | None = None
    last_gen = -1
    last_seq = 0
    status_key: Any = None
    try:
        while True:
            while conn.poll(_POLL_S):
                cmd, *args = conn.recv()
                if cmd == "stop":
                    os._exit(0)
                try:
                    if cmd == "set":
                        for name, value in args[0].items():
                            runner.set(name, value)
                    elif cmd == "reset":
                        runner.reset(*args)
                    else:
                        getattr(runner, {"pause": "pause", "resume": "resume", "step": "step_once"}[cmd])()
                except Exception as exc:  # validated in the parent already; never kill the loop
                    conn.send(("note", f"{cmd}: {exc}"))
            with runner._lock:
                frames = list(runner.history)
                gen = runner.generation
                if gen != last_gen:
                    last_seq = 0
                recorded = runner.record.since(last_seq)
                last_seq = runner.record.seq
            new: list[Frame] = []
            if gen != last_gen:
                new = frames
                last_gen = gen
            else:
                for f in reversed(frames):
                    if f is last:
                        break
                    new.append(f)
                new.reverse()
            if new:
                last = new[-1]
            status = {
                "status": runner.status, "error": runner.error, "steps": runner.steps,
                "steps_per_s": runner.steps_per_s, "work_per_s": runner.work_per_s,
                "generation": gen, "seed": runner.seed, "params": dict(runner.params),
                "paused": runner.paused,
            }
            key = (status["status"], status["error"], status["steps"], gen, status["seed"], status["paused"],
                   repr(status["params"]))
            if new or recorded or key != status_key:
                conn.send(("update", status, new, recorded))
                status_key = key
    except (EOFError, BrokenPipeError, OSError, KeyboardInterrupt):
        os._exit(0)


class EngineProcess:
    """One spawned engine process and the parent's end of its pipe. Started warm (see
    :func:`_child`); a :class:`ProcessRunner` gives it a topic with ``init``."""

    def __init__(self, warm_compiler: bool = False) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.conn = parent
        self.ready = False
        self.proc = ctx.Process(target=_child, name="mletui-engine", daemon=True, args=(child, warm_compiler))
        # spawn re-runs the parent's __main__ in the child unless it is hidden: a script that
        # starts the app without an `if __name__ == "__main__"` guard would start it again there.
        # Also: a running Textual app replaces sys.stdout/stderr with objects whose fileno()
        # is not a real descriptor, and multiprocessing passes stderr's to the helper it starts.
        main = sys.modules.get("__main__")
        saved = sys.stdout, sys.stderr
        sys.modules["__main__"] = types.ModuleType("__main__")
        if sys.__stdout__ is not None:
            sys.stdout = sys.__stdout__
        if sys.__stderr__ is not None:
            sys.stderr = sys.__stderr__
        try:
            self.proc.start()
        finally:
            sys.stdout, sys.stderr = saved
            if main is not None:
                sys.modules["__main__"] = main
        child.close()

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def poll_ready(self) -> bool:
        """True once the process has said ``ready`` (reads its pipe without blocking; only
        while no runner owns the process)."""
        if not self.ready:
            try:
                while self.conn.poll(0):
                    if self.conn.recv()[0] == "ready":
                        self.ready = True
                        break
            except (EOFError, OSError):
                return False
        return self.ready

    def send(self, *msg: Any) -> None:
        try:
            self.conn.send(msg)
        except (BrokenPipeError, OSError):
            pass

    def kill(self) -> None:
        """Ask it to stop; SIGKILL when it has not gone (call :func:`reap` after)."""
        self.send("stop")


def reap(processes: Sequence[EngineProcess], timeout: float = STOP_TIMEOUT_S) -> None:
    """Wait for processes that were told to stop, all against one deadline of ``timeout``
    seconds (not one per process), then SIGKILL those still there and collect them."""
    deadline = time.monotonic() + timeout
    for p in processes:
        p.proc.join(max(0.0, deadline - time.monotonic()))
    for p in processes:
        if p.proc.is_alive():
            p.proc.kill()
    for p in processes:
        p.proc.join(KILL_REAP_S)
        try:
            p.conn.close()
        except OSError:
            pass


def stop_all(items: Sequence[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop runners of both kinds at once: every one is told first (``stop_nowait``), then
    threads are joined and processes reaped against one shared deadline of ``timeout``
    seconds, and engine processes still there are SIGKILLed. Quitting costs at most about
    ``timeout`` whatever the number of engines, and leaves no engine process behind.
    ``items`` may also hold what a runner's ``stop_nowait`` returned (a thread, an
    :class:`EngineProcess` already told to stop) or None."""
    waits = [x.stop_nowait() if hasattr(x, "stop_nowait") else x for x in items]
    deadline = time.monotonic() + timeout
    for w in waits:
        if isinstance(w, threading.Thread):
            w.join(max(0.0, deadline - time.monotonic()))
    reap([w for w in waits if isinstance(w, EngineProcess)], max(0.0, deadline - time.monotonic()))


class WarmPool:
    """Engine processes started ahead of need, so a tab's engine starts without waiting
    for Python and torch to import (seconds). ``fill`` (called on the app's timer) starts
    one at a time, never while another engine process is still starting, up to ``size``
    spares; ``take`` hands one out (a ready one first). Bounded: ``size`` idle processes.
    """

    def __init__(self, size: int = 2) -> None:
        self.size = max(0, int(size))
        self.spares: list[EngineProcess] = []
        self.closed = False

    def fill(self, busy: bool = False) -> None:
        if self.closed:
            return
        self.spares = [p for p in self.spares if p.alive]
        starting = [p for p in self.spares if not p.poll_ready()]
        if busy or starting or len(self.spares) >= self.size:
            return
        self.spares.append(EngineProcess(warm_compiler=True))

    def take(self) -> EngineProcess | None:
        self.spares = [p for p in self.spares if p.alive]
        for p in self.spares:
            if p.poll_ready():
                self.spares.remove(p)
                return p
        return self.spares.pop(0) if self.spares else None

    def close(self, wait: bool = True) -> list[EngineProcess]:
        """Stop every spare; with ``wait``, reap them (else the caller does, with others)."""
        self.closed = True
        spares, self.spares = self.spares, []
        for p in spares:
            p.kill()
        if wait:
            reap(spares)
        return spares


class ProcessRunner(RunnerBase):
    """A Runner whose engine lives in a spawned process (same interface as Runner).

    ``process``: a warm :class:`EngineProcess` to use (from a :class:`WarmPool`); without
    one, ``start`` spawns its own."""

    def __init__(self, topic: Topic, params: Mapping[str, Any] | None = None, seed: int | None = None,
                 device: torch.device | str | None = None, history: int = 2000,
                 observe_hz: float = 20.0, record_every: int | None = None,
                 record_frames: int = 2048, process: EngineProcess | None = None) -> None:
        super().__init__(topic, params, seed, device, history, observe_hz, record_every, record_frames)
        self.notes: list[str] = []
        self.engine: EngineProcess | None = process
        self.ready = False  # the engine process has said it is ready
        self._reader: threading.Thread | None = None

    @property
    def _proc(self) -> mp.Process | None:
        return self.engine.proc if self.engine is not None else None

    @property
    def _conn(self):
        return self.engine.conn if self.engine is not None else None

    # -- lifecycle -----------------------------------------------------------------
    def start(self, paused: bool = False) -> None:
        if self._reader is not None:
            return
        if self.engine is None or not self.engine.alive:
            self.engine = EngineProcess()
        self.ready = self.engine.ready
        self._starting(paused)
        self.engine.send("init", self.topic, dict(self.params), self.seed, str(self.device),
                         self.history.maxlen, self.observe_hz, self.record.first_every,
                         self.record.capacity, paused)
        self._reader = threading.Thread(target=self._read, name=f"reader-{self.topic.name}", daemon=True)
        self._reader.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Tell the engine process to stop, wait at most ``timeout`` s, then SIGKILL it."""
        self.stop_nowait()
        if self.engine is not None:
            reap([self.engine], timeout)

    def stop_nowait(self) -> EngineProcess | None:
        """Tell the engine process to stop; returns it for :func:`reap` (None if none)."""
        if self.engine is not None:
            self.engine.kill()
        return self.engine

    def _command(self, cmd: str, *args: Any) -> None:
        if self.engine is not None:
            self.engine.send(cmd, *args)

    def _read(self) -> None:
        conn = self._conn
        while True:
            try:
                kind, *rest = conn.recv()
            except (EOFError, OSError):
                with self._lock:
                    if not self.status.final and self._proc is not None \
                            and self._proc.exitcode not in (None, 0):
                        self.status = Status.ERROR
                        self.error = f"engine process exited with code {self._proc.exitcode}"
                return
            self.ready = True
            if kind == "ready":
                continue
            if kind == "note":
                self.notes.append(rest[0])
                continue
            status, frames, recorded = rest
            with self._lock:
                gen = status.get("generation", self.generation)
                if gen != self.generation:
                    self.history.clear()
                    self.record.clear()
                    self.latest = None
                    self.generation = gen
                for f in frames:
                    self._keep(f)
                for f in recorded:
                    self.record.add(f)
                if frames:
                    self.latest = frames[-1]
                for key in ("status", "error", "steps", "steps_per_s", "work_per_s", "seed"):
                    if key in status:
                        setattr(self, key, status[key])
                if "paused" in status:
                    self._paused = status["paused"]
                if "params" in status:
                    self.params = status["params"]
                    self._pending = {k: v for k, v in self._pending.items() if self.params.get(k) != v}
