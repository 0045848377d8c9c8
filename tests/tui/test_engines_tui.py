"""The app's engines: started ahead of need (a warm pool of engine processes), released
when their tab is left for long (state re-initialised on return, and the pane says so),
and all stopped at once on quit with nothing left running and no long wait. Behaviour,
not timing: what is alive after `q`, and the timeouts every join was given."""

from __future__ import annotations

import multiprocessing.process
import signal
import threading

import torch

from mletui.engine import process_runner
from mletui.engine.process_runner import KILL_REAP_S, STOP_TIMEOUT_S, ProcessRunner
from mletui.engine.runner import Runner
from mletui.engine.topics import all_topics
from mletui.tui.app import MletuiApp
from pilot import until

TOPICS = all_topics()
ISING, TEMPERING = TOPICS["ising"], TOPICS["tempering"]
QUICK = {"ising": dict(ISING.quick), "tempering": dict(TEMPERING.quick)}


def _record_joins(monkeypatch) -> list:
    """Every Process.join / kill and runner Thread.join, in order: ("join", timeout) or ("kill",)."""
    calls: list = []
    pjoin = multiprocessing.process.BaseProcess.join
    pkill = multiprocessing.process.BaseProcess.kill
    tjoin = threading.Thread.join

    def process_join(self, timeout=None):
        calls.append(("join", timeout))
        return pjoin(self, timeout)

    def process_kill(self):
        calls.append(("kill",))
        return pkill(self)

    def thread_join(self, timeout=None):
        if self.name.startswith("runner-"):
            calls.append(("join", timeout))
        return tjoin(self, timeout)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "join", process_join)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "kill", process_kill)
    monkeypatch.setattr(threading.Thread, "join", thread_join)
    return calls


def _check_bounded(calls: list) -> None:
    """No join without a timeout; before any kill, none longer than STOP_TIMEOUT_S (and
    each no longer than the one before: one deadline shared by all); after a kill, only
    short reaping joins."""
    assert calls, "nothing was waited for"
    assert all(c[0] == "kill" or c[1] is not None for c in calls), calls
    first_kill = next((i for i, c in enumerate(calls) if c[0] == "kill"), len(calls))
    before = [c[1] for c in calls[:first_kill] if c[0] == "join"]
    assert all(t <= STOP_TIMEOUT_S for t in before), calls
    assert before == sorted(before, reverse=True), calls
    assert all(c[1] <= KILL_REAP_S for c in calls[first_kill:] if c[0] == "join"), calls


def _gone(proc) -> bool:
    """A stopped engine process has exited (status 0, on ``stop``) or was SIGKILLed, and is
    collected. ``reap`` waits KILL_REAP_S for the kernel to tear a killed process down; on a
    loaded two-core machine, with another engine importing torch beside it, that has taken
    longer (CI), so the check waits for the teardown itself, up to a minute: what it asserts
    is that the process was stopped, not how fast the kernel frees its memory."""
    proc.join(60.0)
    return not proc.is_alive() and proc.exitcode in (0, -signal.SIGKILL)


def _run(app, script, size=(120, 40)):
    import asyncio

    async def main():
        async with app.run_test(size=size) as pilot:
            await script(pilot)

    asyncio.run(main())


def test_q_with_engines_in_processes_stops_them_all_at_once_and_leaves_none_alive(monkeypatch):
    app = MletuiApp(topics=[ISING, TEMPERING], overrides=QUICK, seed=1, device=torch.device("cpu"),
                    fps=10, runner="process", warm=1)
    seen: dict = {}

    async def script(pilot):
        first = app.pane.runner
        assert isinstance(first, ProcessRunner)
        await until(pilot, lambda: first.latest is not None, timeout=120, what="the first engine's frame")
        await until(pilot, lambda: app.pool.spares and app.pool.spares[0].poll_ready(), timeout=120,
                    what="a warm spare ready")
        spare_pid = app.pool.spares[0].proc.pid
        await pilot.press("2")
        await until(pilot, lambda: app.active == "tempering", what="the second tab")
        second = app.pane.runner
        assert second.engine.proc.pid == spare_pid, "the tab took the warm spare"
        await until(pilot, lambda: second.latest is not None, timeout=60, what="the second engine's frame")
        assert first.paused and not second.paused
        seen["procs"] = [first.engine.proc, second.engine.proc]
        seen["readers"] = [first._reader, second._reader]
        seen["pool"] = app.pool
        calls = _record_joins(monkeypatch)
        seen["calls"] = calls
        await pilot.press("q")

    _run(app, script)
    _check_bounded(seen["calls"])
    for proc in seen["procs"]:
        assert _gone(proc), proc
    assert seen["pool"].closed and not seen["pool"].spares
    for reader in seen["readers"]:
        reader.join(30.0)  # the pipe is closed: each reader sees EOF and ends (at once; 30 s for a loaded CI)
        assert not reader.is_alive()


def test_q_with_engines_in_threads_leaves_no_runner_thread_alive(monkeypatch):
    app = MletuiApp(topics=[ISING, TEMPERING], overrides=QUICK, seed=1, device=torch.device("cpu"),
                    fps=20, runner="thread")
    seen: dict = {}

    async def script(pilot):
        first = app.pane.runner
        await until(pilot, lambda: first.steps > 3, what="steps on the first tab")
        await pilot.press("2")
        await until(pilot, lambda: app.pane.runner is not None and app.pane.runner.steps > 3,
                    what="steps on the second tab")
        seen["threads"] = [first._thread, app.pane.runner._thread]
        seen["calls"] = _record_joins(monkeypatch)
        await pilot.press("q")

    _run(app, script)
    _check_bounded(seen["calls"])
    for t in seen["threads"]:
        assert not t.is_alive(), t


def test_a_tab_left_for_over_a_minute_releases_its_engine_and_says_so_on_return():
    app = MletuiApp(topics=[ISING, TEMPERING], overrides=QUICK, seed=None, device=torch.device("cpu"),
                    fps=20, runner="thread", release_after=60.0)
    now = [1000.0]
    app.clock = lambda: now[0]

    async def script(pilot):
        ising = app.panes["ising"]
        first = ising.runner
        await until(pilot, lambda: first.steps > 3, what="steps")
        first.set("beta", 0.3)
        await until(pilot, lambda: first.params["beta"] == 0.3, what="the edit applied")
        seed = first.seed
        await pilot.press("2")
        await until(pilot, lambda: app.active == "tempering", what="the second tab")
        now[0] += 59.0
        assert app.release_idle() == [] and ising.runner is first      # not yet a minute
        now[0] += 2.0
        assert app.release_idle() == ["ising"]
        assert ising.runner is None and ising.released
        first._thread.join(30.0)  # returns when it ends; the bound is for a loaded CI machine
        assert not first._thread.is_alive(), "the released engine stopped"
        assert not any(w.display for w in ising.view_widgets)           # its views went
        await pilot.press("1")
        await until(pilot, lambda: app.active == "ising" and ising.runner is not None, what="back on ising")
        fresh = ising.runner
        assert fresh is not first and isinstance(fresh, Runner)
        assert fresh.params["beta"] == 0.3 and fresh.seed == seed       # same params and seed
        assert "re-initialised" in app.message and str(seed) in app.message
        await until(pilot, lambda: fresh.latest is not None and fresh.latest.step >= 1, what="a fresh run")
        assert fresh.frames()[0].step == 0

    _run(app, script)


def test_a_warm_pool_hands_out_a_ready_process_and_starts_one_at_a_time():
    pool = process_runner.WarmPool(2)
    try:
        pool.fill()
        assert len(pool.spares) == 1
        pool.fill()
        assert len(pool.spares) == 1, "a second one waits until the first is ready"
        first = pool.spares[0]
        for _ in range(1200):
            if first.poll_ready():
                break
            threading.Event().wait(0.1)
        assert first.ready
        pool.fill(busy=True)
        assert len(pool.spares) == 1, "none starts while another engine is starting"
        pool.fill()
        assert len(pool.spares) == 2
        taken = pool.take()
        assert taken is first and first not in pool.spares
        r = ProcessRunner(ISING, ISING.quick, seed=3, device="cpu", process=taken)
        r.start()
        try:
            for _ in range(1200):
                if r.latest is not None and r.steps > 2:
                    break
                threading.Event().wait(0.1)
            assert r.latest is not None and r.engine.proc.pid == first.proc.pid
        finally:
            r.stop()
        assert _gone(first.proc), first.proc
    finally:
        spares = list(pool.spares)
        pool.close()
    assert all(_gone(p.proc) for p in spares) and pool.spares == []
