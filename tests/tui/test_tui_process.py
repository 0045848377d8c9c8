"""The engine in a spawned process (engine/process_runner.py): the app's default on a
terminal. Same contract as the thread Runner: frames stream, edits are validated in the
UI's process and reach the engine, pause / single step / reset behave."""

import asyncio
import time

import pytest
import torch

from mletui.engine.params import ParamError
from mletui.engine.process_runner import ProcessRunner
from mletui.engine.topics import all_topics
from mletui.tui.app import MletuiApp

ISING = all_topics()["ising"]


def _wait(cond, timeout=60.0, what="condition"):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _steady(r, window=0.5) -> bool:
    s = r.steps
    time.sleep(window)
    return r.steps == s


def _regular_from_zero(frames, every):
    return [f.step for f in frames] == list(range(0, every * len(frames), every))


def test_process_runner_keeps_the_runner_contract():
    r = ProcessRunner(ISING, {"L": 8, "replicas": 2, "burn_in": 0}, seed=5, device="cpu", record_every=2)
    r.start()
    try:
        _wait(lambda: r.latest is not None and r.steps > 3, what="frames from the engine process")
        assert r.status == "running" and r.seed == 5
        # the record reaches this side: every 2 steps from the start (its spacing may double)
        _wait(lambda: len(r.recorded()) > 3, what="recorded frames")
        rec = r.recorded()
        assert _regular_from_zero(rec, r.record.every) and r.record.every % 2 == 0
        assert rec[0].params["L"] == 8 and all(f.views == {} for f in rec)
        assert r.frames()[0].params["L"] == 8, "the first frame carries the params"
        # an edit is validated here and reaches the engine: a later frame records it
        r.set("beta", 0.3)
        assert r.pending_value("beta") == 0.3
        _wait(lambda: any(f.params and f.params.get("beta") == 0.3 for f in r.frames()), what="beta=0.3 frame")
        with pytest.raises(ParamError, match="beta must be >= 0"):
            r.set("beta", "-1")
        with pytest.raises(ParamError, match="L must be even"):
            r.set("L", 9)
        assert r.pending_value("beta") == 0.3 and r.pending_value("L") == 8
        # pause holds, one step is one step
        r.pause()
        _wait(lambda: r.status == "paused" and r.paused, what="paused")
        _wait(lambda: _steady(r), what="the engine process to stop stepping")
        held = r.steps
        time.sleep(0.5)
        assert r.steps == held
        r.step_once()
        _wait(lambda: r.steps == held + 1, what="one step")
        time.sleep(0.5)
        assert r.steps == held + 1
        _wait(lambda: r.latest.step == held + 1, what="the stepped frame")
        # reset: a new generation from step 0 with the seed asked for
        gen = r.generation
        r.reset(11)
        _wait(lambda: r.generation > gen and r.latest is not None, what="re-init")
        assert r.seed == 11 and r.latest.step == 0 and r.frames()[0].step == 0
        _wait(lambda: r.recorded() and r.recorded()[0].step == 0, what="the record from the reset")
        assert _regular_from_zero(r.recorded(), r.record.every)
        # a non-live edit re-initialises in the engine process
        gen = r.generation
        r.set("L", 12)
        _wait(lambda: r.generation > gen and r.params["L"] == 12, what="re-init at L=12")
    finally:
        r.stop()
    assert r._proc.exitcode == 0


def test_app_with_the_engine_in_a_process_streams_and_applies_key_edits():
    app = MletuiApp(topics=[ISING], overrides={"ising": {"L": 8, "replicas": 2}}, seed=2,
                    device=torch.device("cpu"), fps=10, runner="process")

    async def main():
        async with app.run_test(size=(120, 40)) as pilot:
            try:
                runner = app.pane.runner
                assert isinstance(runner, ProcessRunner), app.pane.message
                t0 = time.monotonic()
                while (app.pane._shown is None or runner.steps < 3) and time.monotonic() - t0 < 60:
                    await pilot.pause(0.1)
                assert app.pane._shown is not None, "frames reach the pane"
                app.pane.param_panel.select("beta")
                await pilot.pause()
                await pilot.press("right")
                t0 = time.monotonic()
                while runner.params["beta"] != pytest.approx(0.45) and time.monotonic() - t0 < 30:
                    await pilot.pause(0.1)
                assert runner.params["beta"] == pytest.approx(0.45)
                await pilot.press("space")
                t0 = time.monotonic()
                while runner.status != "paused" and time.monotonic() - t0 < 30:
                    await pilot.pause(0.1)
                assert runner.status == "paused"
            finally:
                for pane in app.panes.values():
                    pane.stop()

    asyncio.run(main())


class Diverging(type(ISING)):
    """Ising whose third sweep raises, as a divergence check would."""

    name = "diverging"

    def step(self, state, p):
        super().step(state, p)
        if state.sweeps == 3:
            raise FloatingPointError("energy is nan after sweep 3")


def test_an_engine_error_in_the_process_reaches_the_ui_side():
    r = ProcessRunner(Diverging(), {"L": 8, "replicas": 1}, seed=1, device="cpu")
    r.start()
    try:
        _wait(lambda: r.status == "error", what="the error")
        assert r.error == "FloatingPointError: energy is nan after sweep 3"
        assert r.steps == 2, "the failed step is not counted"
    finally:
        r.stop()
