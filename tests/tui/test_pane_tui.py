"""Every topic's pane driven with Pilot by one script: it opens, streams frames whose data
every view widget draws (no "cannot draw"), the frame carries what the topic's views and
readers need, an arrow-key edit reaches the runner, and the run goes on without error;
then at 80x24 at least two views with content are on screen and the others a key away.
What is particular to a topic (a live edit that must not restart, one that re-initialises,
a refusal shown inline, a reset) is the case's ``after`` step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import pytest
import torch

from mletui.engine.topics import all_topics
from mletui.tui.app import MletuiApp
from pilot import drive, until

TOPICS = all_topics()


@dataclass
class Case:
    topic: str
    overrides: dict[str, Any]
    warmup: int                                  # steps before the frame is checked
    frame: Callable[[Any], None]                 # assertions on the latest frame
    edit: str                                    # the param stepped with the right arrow
    applied: Callable[[dict, Any], bool]         # (runner.params, topic): the edit arrived
    after: Callable[..., Awaitable[None]] | None = None   # (app, pilot, runner) -> checks
    seed: int = 1
    one_thread: bool = False
    restarts: bool | None = None                 # the edit re-initialises (None: not checked)


def becomes(name, value):
    return lambda params, topic: params[name] == value


def nudged_up(name):
    """The param one right-arrow step above its default."""
    return lambda params, topic: params[name] == topic.param(name).nudge(topic.param(name).default, +1)


# -- per-topic frame checks and follow-ups ---------------------------------------------------

def ising_frame(f):
    assert f.scalars["energy_per_spin"] is not None


async def ising_after(app, pilot, runner):
    """The exact value is shown at h = 0 and replaced by "no exact value" once h > 0."""
    trace = app.pane.view_widgets[[v.kind for v in app.pane.topic.views].index("trace")]
    await until(pilot, lambda: "no exact value" in trace.notes_text, what="no exact value")


async def ising_before(app, pilot):
    trace = app.pane.view_widgets[[v.kind for v in app.pane.topic.views].index("trace")]
    await until(pilot, lambda: "exact energy (Kaufman) -" in trace.notes_text, what="exact value shown")


def annealing_frame(f):
    for name in ("beta", "log_z", "log_z_exact", "mean_work", "best_energy_per_spin"):
        assert f.scalars[name] is not None, name
    assert sum(f.views["energy_histogram"]["counts"]) == 64


def tempering_frame(f):
    assert len(f.arrays["g"]) == len(f.arrays["betas"]) == 6
    assert len(f.views["rung_bars"]["values"]) == 6


async def tempering_after(app, pilot, runner):
    """learn_weights off freezes g and restarts the rung histogram."""
    steps = runner.steps
    await until(pilot, lambda: runner.latest is not None and runner.latest.step > steps + 3,
                what="frames after the edit")
    g1 = runner.latest.arrays["g"]
    # the histogram restarted at the edit: fewer counts than all the steps taken since burn-in
    assert sum(runner.latest.arrays["rung_histogram"]) < (runner.latest.step - 5) * 32
    steps = runner.latest.step
    await until(pilot, lambda: runner.latest.step > steps + 3, what="more frames")
    assert runner.latest.arrays["g"] == g1  # frozen
    notes = [n for f in runner.frames() for n in f.notes]
    assert any("g frozen" in n for n in notes), notes


def population_frame(f):
    assert "energy_histogram" in f.views and "lattice" in f.views
    assert len(f.views["lattice"]) == 8
    for name in ("beta", "log_z", "log_z_exact", "ess_fraction", "families", "population"):
        assert name in f.scalars


async def population_after(app, pilot, runner):
    """multinomial resampling keeps the population at exactly R0; a dbeta step applies."""
    steps = runner.steps
    await until(pilot, lambda: runner.steps > steps + 2 and runner.latest.step > steps + 1,
                what="frames after the edit")
    assert runner.latest.scalars["population"] == 300
    app.pane.param_panel.select("dbeta")
    await pilot.pause()
    await pilot.press("right")
    want = app.pane.topic.param("dbeta").nudge(1e-4, +1)
    await until(pilot, lambda: runner.params["dbeta"] == want, what="dbeta edit")
    steps = runner.steps
    await until(pilot, lambda: runner.latest is not None and runner.latest.step > steps + 1,
                what="a frame after the dbeta edit")
    assert abs(runner.latest.scalars["dbeta"] - want) < 1e-12


def em_frame(f):
    for key in ("density_1d", "ellipses_2d", "components"):
        assert key in f.views
    assert len(f.arrays["weights"]) == 3
    assert f.scalars["log_likelihood"] is not None


async def em_before(app, pilot):
    plot = next(w for w in app.pane.view_widgets if w.view.kind == "plot")
    await until(pilot, lambda: str(plot.border_subtitle).endswith(" points"),
                what="the data drawn as a scatter under the 2-sigma ellipses")


async def em_after(app, pilot, runner):
    """K=4 re-initialises with four components; the reset key draws a new initialisation
    on the same data."""
    await until(pilot, lambda: runner.latest is not None and len(runner.latest.arrays.get("weights", [])) == 4,
                what="a fit with 4 components")
    generation, seed = runner.generation, runner.seed
    await pilot.press("r")
    await until(pilot, lambda: runner.generation > generation, what="reset")
    assert runner.seed != seed
    await until(pilot, lambda: runner.latest is not None and runner.steps > 1, what="frames after reset")
    assert runner.latest.scalars["n_points"] == 1000


def langevin_frame(f):
    for key in ("density_chains", "density_exact", "marginal_x", "marginal_y", "moments"):
        assert key in f.views
    assert "divergence" in f.scalars and len(f.arrays["mean"]) == 2


async def langevin_after(app, pilot, runner):
    """score=learned under method=mala is refused inline and changes nothing."""
    panel = app.pane.param_panel
    panel.select("score")
    await pilot.pause()
    await pilot.press("right")  # exact -> learned, refused while method=mala
    await pilot.pause(0.2)
    assert "needs method=ula" in panel.message
    assert runner.params["score"] == "exact"


KFAC_RUNS = ("kfac_true", "kfac_empirical", "sgd", "adam")


def kfac_frame(f):
    for name in KFAC_RUNS:
        assert f"loss_{name}" in f.scalars
    assert "kfac_state" in f.views and "step_times" in f.views


async def kfac_after(app, pilot, runner):
    """The damping edit reaches the running optimizers."""
    want = app.pane.topic.param("damping").nudge(app.pane.topic.param("damping").default, +1)
    for run in runner._state.runs:
        if run.kfac:
            assert run.opt.damping == want


CASES = [
    Case("ising", {"L": 16, "replicas": 2, "burn_in": 0}, 20, ising_frame, "h",
         lambda params, topic: params["h"] > 0, ising_after, seed=2),
    Case("annealing", {"L": 8, "replicas": 64, "anneal_sweeps": 100000}, 3, annealing_frame, "method",
         becomes("method", "gibbs"), one_thread=True, restarts=False),
    Case("tempering", {"L": 4, "replicas": 32, "rungs": 6, "burn_in": 5}, 20, tempering_frame,
         "learn_weights", becomes("learn_weights", False), tempering_after, one_thread=True),
    # beta_max / dbeta = 50,000 steps: the run cannot reach its end (and stop) during the test
    Case("population", {"L": 8, "replicas": 300, "dbeta": 1e-4, "beta_max": 5.0, "sweeps_per_step": 2}, 3,
         population_frame, "resampling", becomes("resampling", "multinomial"), population_after,
         one_thread=True),
    Case("em", {"dataset": "blobs", "K": 3, "n_points": 1000}, 5, em_frame, "K", becomes("K", 4), em_after,
         restarts=True),
    Case("langevin", {"chains": 2000}, 40, langevin_frame, "step_size", nudged_up("step_size"),
         langevin_after),
    Case("kfac", {"widths": (16, 4), "batch_size": 32, "t_inv": 5, "t_cov": 1}, 6, kfac_frame, "damping",
         nudged_up("damping"), kfac_after),
]
BEFORE = {"ising": ising_before, "em": em_before}


async def small_terminal(app, pilot):
    """At 80x24: at least two views on screen, each with something drawn; ``c`` pages
    through every view that applies and has content, ``z`` zooms one to the whole grid
    and back; the status line still shows the seed and the key bar ``p`` and ``tab``."""
    from mletui.engine.views import has_content
    from mletui.tui.pane import MIN_CELL, ViewGrid

    pane = app.pane
    await pilot.resize_terminal(80, 24)

    def laid_out() -> bool:
        return pane.query_one(ViewGrid).size.width < 60 and len(pane.shown) >= 2 and all(
            pane.view_widgets[i].region.width >= MIN_CELL[0] and pane.view_widgets[i].region.height >= MIN_CELL[1]
            for i in pane.shown)

    await until(pilot, laid_out, what="two legible views at 80x24")
    runner = pane.runner
    latest, history = runner.latest, runner.frames()
    for i in pane.shown:
        view = pane.topic.views[i]
        assert has_content(view, latest, history), view.title
    assert "seed " in str(app.query_one("#status").render())
    keys = str(app.query_one("#keys").render())
    assert "p " in keys and "tab " in keys, keys
    eligible = pane.eligible()
    seen = set(pane.shown)
    for _ in range(len(eligible)):
        before = list(pane.shown)
        await pilot.press("c")
        if len(eligible) > len(before):
            await until(pilot, lambda: pane.shown != before, what="the next views")
        seen |= set(pane.shown)
    # the engine runs on: a view may start to apply while paging (Boltzmann's evaluation)
    assert set(eligible) <= seen <= set(pane.eligible()), (seen, eligible, pane.eligible())
    await pilot.press("z")
    await until(pilot, lambda: pane.zoomed and len(pane.shown) == 1, what="one view zoomed")
    grid = pane.query_one(ViewGrid)
    await until(pilot, lambda: pane.view_widgets[pane.shown[0]].region.width == grid.region.width,
                what="the zoomed view filling the grid")
    await pilot.press("z")
    await until(pilot, lambda: not pane.zoomed and len(pane.shown) >= 2, what="back to the grid")


@pytest.mark.parametrize("case", CASES, ids=[c.topic for c in CASES])
def test_pane_streams_draws_every_view_and_a_key_edit_reaches_the_runner(case):
    if case.topic not in TOPICS:
        pytest.fail(f"topic {case.topic} is not registered")
    topic = TOPICS[case.topic]
    overrides = {case.topic: {**topic.quick, **case.overrides}}
    app = MletuiApp(topics=[topic], overrides=overrides, seed=case.seed, device=torch.device("cpu"), fps=20)

    async def script(pilot):
        pane = app.pane
        runner = pane.runner
        await until(pilot, lambda: runner.latest is not None and runner.steps > case.warmup, what="frames")
        await until(pilot, lambda: pane._shown is not None, what="a drawn frame")
        await pilot.pause(0.3)  # a few redraws
        drawn = [str(w.border_subtitle) for w in pane.view_widgets
                 if "cannot draw" in str(w.border_subtitle or "")]
        assert drawn == [], drawn
        case.frame(runner.latest)
        if case.topic in BEFORE:
            await BEFORE[case.topic](app, pilot)
        generation = runner.generation
        pane.param_panel.select(case.edit)
        await pilot.pause()
        await pilot.press("right")
        await until(pilot, lambda: case.applied(runner.params, topic), what=f"the {case.edit} edit applied")
        if case.restarts is not None:
            await until(pilot, lambda: runner.generation > generation or not case.restarts,
                        what="the re-initialisation")
        steps = runner.steps
        await until(pilot, lambda: runner.steps > steps + 1, what="steps after the edit")
        if case.restarts is False:
            assert runner.generation == generation, "a live edit must not restart the run"
        if case.after is not None:
            await case.after(app, pilot, runner)
        assert runner.error is None
        await small_terminal(app, pilot)

    old_threads = torch.get_num_threads()
    if case.one_thread:
        torch.set_num_threads(1)
    try:
        drive(app, script)
    finally:
        torch.set_num_threads(old_threads)


UNCASED = [name for name in TOPICS if name not in {c.topic for c in CASES}]


@pytest.mark.parametrize("name", UNCASED or ["(every topic has a case)"])
def test_a_topic_without_a_case_is_readable_at_80x24(name):
    """A topic the cases above do not cover still gets the 80x24 check, at its quick params."""
    if name not in TOPICS:
        pytest.skip(name)
    topic = TOPICS[name]
    app = MletuiApp(topics=[topic], overrides={name: dict(topic.quick)}, seed=1, device=torch.device("cpu"),
                    fps=20)

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.latest is not None and runner.steps > 3, timeout=120, what="frames")
        await small_terminal(app, pilot)
        assert runner.error is None

    drive(app, script)
