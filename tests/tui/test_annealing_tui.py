"""The annealing and tempering panes in the app, driven with Pilot: each opens, streams
frames whose data every view widget draws (no "cannot draw"), and a key edit reaches the
runner (annealing: method metropolis -> gibbs, live; tempering: learn_weights off freezes g
and restarts the rung histogram)."""

import torch

from mletui.engine.topics.annealing import TOPIC as ANNEALING
from mletui.engine.topics.tempering import TOPIC as TEMPERING
from mletui.tui.app import MletuiApp
from pilot import drive, until

SMALL = {"annealing": {"L": 8, "replicas": 64, "anneal_sweeps": 100000},
         "tempering": {"L": 4, "replicas": 32, "rungs": 6, "burn_in": 5}}


def _drive(topic, script):
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    app = MletuiApp(topics=[topic], overrides=SMALL, seed=1, device=torch.device("cpu"), fps=20)

    try:
        drive(app, lambda pilot: script(app, pilot))
    finally:
        torch.set_num_threads(old_threads)


def _drawn_without_error(app):
    return [w.border_subtitle for w in app.pane.view_widgets
            if "cannot draw" in str(w.border_subtitle or "")]


def test_annealing_pane_streams_and_a_live_method_edit_applies():
    async def script(app, pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.latest is not None and runner.steps > 3, what="frames")
        await pilot.pause(0.3)  # a few redraws
        frame = runner.latest
        for name in ("beta", "log_z", "log_z_exact", "mean_work", "best_energy_per_spin"):
            assert frame.scalars[name] is not None, name
        assert sum(frame.views["energy_histogram"]["counts"]) == 64
        assert _drawn_without_error(app) == []
        generation = runner.generation
        panel = app.pane.param_panel
        panel.select("method")
        await pilot.pause()
        await pilot.press("right")  # metropolis -> gibbs, live: no restart
        await until(pilot, lambda: runner.params["method"] == "gibbs", what="method edit")
        steps = runner.steps
        await until(pilot, lambda: runner.steps > steps + 2, what="steps after the edit")
        assert runner.generation == generation and runner.error is None

    _drive(ANNEALING, script)


def test_tempering_pane_streams_and_freezing_the_weights_restarts_the_histogram():
    async def script(app, pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.latest is not None and runner.steps > 20, what="frames")
        await pilot.pause(0.3)
        frame = runner.latest
        assert len(frame.arrays["g"]) == len(frame.arrays["betas"]) == 6
        assert len(frame.views["rung_bars"]["values"]) == 6
        assert _drawn_without_error(app) == []
        panel = app.pane.param_panel
        panel.select("learn_weights")
        await pilot.pause()
        await pilot.press("right")  # on -> off (live)
        await until(pilot, lambda: runner.params["learn_weights"] is False, what="learn_weights edit")
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
        assert runner.error is None

    _drive(TEMPERING, script)
