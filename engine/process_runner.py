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
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import threading
import types
from typing import Any, Mapping

import torch

from .runner import Runner, RunnerBase, Status
from .topic import Frame, Topic

_POLL_S = 0.02  # the child forwards new frames and status at most this often


def _child(topic: Topic, params: dict[str, Any], seed: int, device: str, history: int,
           observe_hz: float, record_every: int, record_frames: int, paused: bool, conn) -> None:
    """The engine process: a Runner, a command loop, and a forwarder of frames/status."""
    try:
        runner = Runner(topic, params, seed=seed, device=device, history=history, observe_hz=observe_hz,
                        record_every=record_every, record_frames=record_frames)
        runner.start(paused=paused)
    except Exception as exc:  # report and leave
        conn.send(("update", {"status": Status.ERROR,
                              "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}, [], []))
        return
    last: Frame | None = None
    last_gen = -1
    last_seq = 0
    status_key: Any = None
    try:
        while True:
            while conn.poll(_POLL_S):
                cmd, *args = conn.recv()
                if cmd == "stop":
                    runner.stop()
                    return
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
    except (EOFError, BrokenPipeError, OSError):
        runner.stop()


class ProcessRunner(RunnerBase):
    """A Runner whose engine lives in a spawned process (same interface as Runner)."""

    def __init__(self, topic: Topic, params: Mapping[str, Any] | None = None, seed: int | None = None,
                 device: torch.device | str | None = None, history: int = 2000,
                 observe_hz: float = 20.0, record_every: int | None = None,
                 record_frames: int = 2048) -> None:
        super().__init__(topic, params, seed, device, history, observe_hz, record_every, record_frames)
        self.notes: list[str] = []
        self._conn = None
        self._proc: mp.Process | None = None
        self._reader: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self, paused: bool = False) -> None:
        if self._proc is not None:
            return
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._conn = parent
        self._starting(paused)
        self._proc = ctx.Process(target=_child, name=f"mletui-{self.topic.name}", daemon=True,
                                 args=(self.topic, dict(self.params), self.seed, str(self.device),
                                       self.history.maxlen, self.observe_hz, self.record.first_every,
                                       self.record.capacity, paused, child))
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
            self._proc.start()
        finally:
            sys.stdout, sys.stderr = saved
            if main is not None:
                sys.modules["__main__"] = main
        child.close()
        self._reader = threading.Thread(target=self._read, name=f"reader-{self.topic.name}", daemon=True)
        self._reader.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._command("stop")
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(1.0)

    def _command(self, cmd: str, *args: Any) -> None:
        if self._conn is None:
            return
        try:
            self._conn.send((cmd, *args))
        except (BrokenPipeError, OSError):
            pass

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
                self.history.extend(frames)
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
