"""Runner and run(): the loop every topic shares, driven with a tiny deterministic topic."""

import time

import pytest
import torch

from mletui.engine.params import Param, ParamError
from mletui.engine.record import Record
from mletui.engine.runner import Runner, RunnerLike, Status, run
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
        _wait(lambda: r.status is Status.DONE)
        assert r.latest.done and r.steps == 20
    finally:
        r.stop()


def test_a_failing_step_is_reported_not_raised_and_reset_recovers():
    r = Runner(Walk(), params={"explode_at": 3}, seed=1, device="cpu", observe_hz=0)
    r.start()
    try:
        _wait(lambda: r.status is Status.ERROR)
        assert "diverged" in r.error
        r.set("explode_at", 0)
        r.reset()
        r.resume()
        _wait(lambda: r.steps > 10)
    finally:
        r.stop()


# -- the runner's record ----------------------------------------------------------------

def _frames_until_done(r, timeout=10.0):
    _wait(lambda: r.status is Status.DONE, timeout)
    return r.recorded()


@pytest.mark.parametrize("observe_hz", [0, 2.0])
def test_record_is_a_regular_step_schedule_whatever_the_screen_rate(observe_hz):
    """observe_hz=0 publishes every step to the screen, 2 Hz almost none: the record is the
    same, every 3 steps from the reset, with the run's last frame, and the same values."""
    r = Runner(Walk(), params={"length": 20, "noise": 1.0}, seed=5, device="cpu",
               observe_hz=observe_hz, record_every=3)
    r.start()
    try:
        rec = _frames_until_done(r)
    finally:
        r.stop()
    assert [f.step for f in rec] == [0, 3, 6, 9, 12, 15, 18, 20]
    assert rec[-1].done and all(f.views == {} for f in rec)
    assert rec[0].params is not None and all(f.params is None for f in rec[1:])
    headless = {f.step: f.scalars["x"] for f in run(Walk(), 20, {"length": 20, "noise": 1.0}, seed=5,
                                                     device="cpu")}
    assert [f.scalars["x"] for f in rec[1:]] == [headless[f.step] for f in rec[1:]]


def test_a_full_record_drops_every_other_frame_and_doubles_its_spacing():
    r = Runner(Walk(), params={"length": 100}, seed=1, device="cpu", observe_hz=0,
               record_every=1, record_frames=10)
    r.start()
    try:
        rec = _frames_until_done(r)
    finally:
        r.stop()
    steps = [f.step for f in rec]
    # 0..100 every step is 101 frames: 10 fit after three doublings (every 16) plus the end
    assert r.record.every == 16 and steps == [0, 16, 32, 48, 64, 80, 96, 100]
    assert len(rec) <= 10


def test_a_reset_starts_the_record_again():
    r = Runner(Walk(), seed=1, device="cpu", observe_hz=0, record_every=2)
    r.start(paused=True)
    try:
        _wait(lambda: r.latest is not None)
        for n in range(1, 6):
            r.step_once()
            _wait(lambda: r.steps == n)
        assert [f.step for f in r.recorded()] == [0, 2, 4]
        gen = r.generation
        r.reset(seed=2)
        _wait(lambda: r.generation > gen and r.latest is not None)
        assert [f.step for f in r.recorded()] == [0] and r.record.every == 2
    finally:
        r.stop()


def test_thinning_moves_a_dropped_frames_edit_and_notes_to_the_next_frame_kept():
    rec = Record(every=1, capacity=4)
    rec.add(Frame(step=0, params={"a": 1}))
    rec.add(Frame(step=1, params={"a": 2}, notes=["re-seeded"]))
    rec.add(Frame(step=2))
    rec.add(Frame(step=3, notes=["late"]))
    assert rec.every == 1 and len(rec) == 4
    rec.add(Frame(step=4))  # the fifth: every other frame goes
    assert rec.every == 2 and [f.step for f in rec.frames()] == [0, 2, 4]
    kept = rec.frames()
    assert kept[1].params == {"a": 2} and kept[1].notes == ["step 1: re-seeded"]
    assert kept[2].notes == ["step 3: late"]
    assert not rec.add(Frame(step=5)) and rec.add(Frame(step=5, done=True))
    assert [f.step for f in rec.since(3)] == [4, 5]


def test_status_is_an_enum_that_reads_as_its_word_and_both_runners_are_runnerlike():
    from mletui.engine.process_runner import ProcessRunner

    assert Status.RUNNING == "running" and f"{Status.PAUSED}" == "paused"
    assert Status.DONE.final and Status.ERROR.final and not Status.RUNNING.final
    r = Runner(Walk(), seed=1, device="cpu")
    assert isinstance(r, RunnerLike) and r.status is Status.PAUSED
    assert isinstance(ProcessRunner(Walk(), seed=1, device="cpu"), RunnerLike)  # not started


def test_a_stepped_runner_publishes_what_a_headless_run_yields_step_by_step():
    """No thread: each step_once steps and observes before it returns, so its frames are
    the headless run's frames at every=1 (the same seed and params), and an edit applies
    at once."""
    from mletui.engine.runner import SteppedRunner, run
    from mletui.engine.topics import get_topic

    topic = get_topic("ising")
    params = dict(topic.quick)
    r = SteppedRunner(topic, params, seed=4, device="cpu")
    r.start()
    assert r.latest.step == 0 and r.paused and r._thread is None
    for _ in range(6):
        r.step_once()
    headless = list(run(topic, steps=6, params=params, seed=4, device="cpu", every=1))
    assert [f.step for f in r.frames()] == [0, 1, 2, 3, 4, 5, 6]
    for mine, theirs in zip(r.frames()[1:], headless):
        assert mine.scalars == theirs.scalars, mine.step
    r.resume()
    assert r.paused and r.steps == 6, "nothing runs by itself"
    r.set("beta", 0.3)
    assert r.params["beta"] == 0.3
    gen = r.generation
    r.reset(9)
    assert r.generation == gen + 1 and r.seed == 9 and r.latest.step == 0
    r.stop()


def test_keeping_a_new_frame_does_not_take_the_views_of_the_one_a_reader_holds():
    """Only the newest history frame keeps its views; the older entry is a copy without
    them, never the frame object itself (the UI may be drawing it as ``latest``: its table
    read 'no data' when the views were emptied mid-draw)."""
    r = Runner(Walk(), seed=1, device="cpu", observe_hz=0)
    first = Frame(step=1, scalars={"x": 1.0}, views={"t": {"rows": []}})
    second = Frame(step=2, scalars={"x": 2.0}, views={"t": {"rows": [[1]]}})
    r._keep(first)
    held = r.history[-1]
    r._keep(second)
    assert held is first and first.views == {"t": {"rows": []}}
    assert r.history[0].views == {} and r.history[0].step == 1 and r.history[0].scalars == {"x": 1.0}
    assert r.history[-1] is second and second.views
