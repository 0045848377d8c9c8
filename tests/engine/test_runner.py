"""Runner and run(): the loop every topic shares, driven with a tiny deterministic topic."""

import time

import pytest
import torch

from mletui.engine.params import Param, ParamError
from mletui.engine.runner import DONE, ERROR, Runner, run
from mletui.engine.topic import Frame, Topic, View


class Walk(Topic):
    """x += increment + noise each step; finite when `length` > 0."""

    name = "walk"
    title = "Walk"
    params = (
        Param("increment", "float", 1.0, lo=-10, hi=10),
        Param("noise", "float", 0.0, lo=0, hi=1),
        Param("size", "int", 4, lo=1, hi=64, live=False),
        Param("length", "int", 0, lo=0, hi=10_000, live=False),
        Param("explode_at", "int", 0, lo=0, hi=10_000),
    )
    views = (View("trace", "x", series=("x",)),)

    def init(self, p, device, seed):
        g = torch.Generator().manual_seed(seed)
        return {"x": torch.zeros(p["size"]), "g": g, "n": 0, "edits": 0}

    def step(self, s, p):
        s["n"] += 1
        if p["explode_at"] and s["n"] >= p["explode_at"]:
            raise FloatingPointError("diverged")
        s["x"] += p["increment"] + p["noise"] * torch.randn(p["size"], generator=s["g"])

    def observe(self, s, p):
        return Frame(scalars={"x": float(s["x"].mean()), "n": s["n"], "edits": s["edits"]})

    def on_edit(self, s, p, changed):
        s["edits"] += 1

    def is_done(self, s, p):
        return p["length"] > 0 and s["n"] >= p["length"]


def _wait(cond, timeout=10.0):
    t = time.time()
    while not cond():
        if time.time() - t > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_run_yields_every_k_steps_with_params_on_the_first_frame_only():
    frames = list(run(Walk(), steps=10, params={"increment": 2.0}, every=3, device="cpu"))
    assert [f.step for f in frames] == [3, 6, 9, 10]
    assert frames[0].params["increment"] == 2.0 and all(f.params is None for f in frames[1:])
    assert frames[-1].scalars["x"] == pytest.approx(20.0)


def test_run_stops_at_the_end_of_a_finite_schedule_and_says_done():
    frames = list(run(Walk(), steps=100, params={"length": 7}, device="cpu"))
    assert frames[-1].step == 7 and frames[-1].done


def test_run_is_reproducible_for_a_seed_and_differs_across_seeds():
    a = [f.scalars["x"] for f in run(Walk(), 5, {"noise": 1.0}, seed=3, device="cpu")]
    b = [f.scalars["x"] for f in run(Walk(), 5, {"noise": 1.0}, seed=3, device="cpu")]
    c = [f.scalars["x"] for f in run(Walk(), 5, {"noise": 1.0}, seed=4, device="cpu")]
    assert a == b and a != c


def test_run_refuses_bad_params_before_starting():
    with pytest.raises(ParamError, match="increment must be <= 10"):
        next(run(Walk(), 5, {"increment": 11.0}, device="cpu"))


@pytest.fixture
def runner():
    r = Runner(Walk(), seed=1, device="cpu", observe_hz=0)
    r.start(paused=True)
    _wait(lambda: r.latest is not None)
    yield r
    r.stop()


def test_paused_runner_does_not_step_and_single_step_advances_exactly_one(runner):
    time.sleep(0.1)
    assert runner.steps == 0
    runner.step_once()
    _wait(lambda: runner.steps == 1)
    time.sleep(0.1)
    assert runner.steps == 1 and runner.latest.step == 1


def test_bad_edit_is_refused_at_once_and_changes_nothing(runner):
    with pytest.raises(ParamError, match="increment must be a number"):
        runner.set("increment", "fast")
    with pytest.raises(ParamError, match="no parameter"):
        runner.set("beta", "0.3")
    runner.step_once()
    _wait(lambda: runner.steps == 1)
    assert runner.params["increment"] == 1.0 and runner.latest.scalars["x"] == pytest.approx(1.0)


def test_live_edit_applies_between_steps_and_is_recorded_in_the_next_frame(runner):
    runner.step_once()
    _wait(lambda: runner.steps == 1)
    runner.set("increment", "5")
    runner.step_once()
    _wait(lambda: runner.steps == 2)
    f = runner.latest
    assert f.scalars["x"] == pytest.approx(6.0) and f.scalars["edits"] == 1
    assert f.params is not None and f.params["increment"] == 5.0


def test_non_live_edit_reinitialises(runner):
    runner.step_once()
    _wait(lambda: runner.steps == 1)
    gen = runner.generation
    runner.set("size", 8)
    _wait(lambda: runner.generation > gen)
    assert runner.steps == 0 and runner.params["size"] == 8


def test_resume_runs_and_pause_stops(runner):
    runner.resume()
    _wait(lambda: runner.steps > 50)
    runner.pause()
    time.sleep(0.05)
    n = runner.steps
    time.sleep(0.2)
    assert runner.steps == n


def test_reset_uses_a_new_seed_and_restarts_the_count(runner):
    runner.step_once()
    _wait(lambda: runner.steps == 1)
    gen = runner.generation
    seed = runner.reset(seed=99)
    _wait(lambda: runner.generation > gen)
    assert seed == 99 and runner.seed == 99 and runner.steps == 0


def test_finite_topic_ends_in_done_state():
    r = Runner(Walk(), params={"length": 20}, seed=1, device="cpu", observe_hz=0)
    r.start()
    try:
        _wait(lambda: r.status == DONE)
        assert r.latest.done and r.steps == 20
    finally:
        r.stop()


def test_a_failing_step_is_reported_not_raised_and_reset_recovers():
    r = Runner(Walk(), params={"explode_at": 3}, seed=1, device="cpu", observe_hz=0)
    r.start()
    try:
        _wait(lambda: r.status == ERROR)
        assert "diverged" in r.error
        r.set("explode_at", 0)
        r.reset()
        r.resume()
        _wait(lambda: r.steps > 10)
    finally:
        r.stop()
