"""The K-FAC pane in the app, driven with Pilot: it opens, streams frames of the compare
run, and an arrow-key edit of a live knob reaches the running optimizers."""

import torch

from mletui.engine.topics.kfac import TOPIC
from mletui.tui.app import MletuiApp
from pilot import drive, until

SMALL = {"kfac": {"widths": (16, 4), "batch_size": 32, "t_inv": 5, "t_cov": 1}}


def test_kfac_pane_streams_compare_frames_and_a_key_edit_reaches_the_optimizers():
    app = MletuiApp(topics=[TOPIC], overrides=SMALL, seed=1, device=torch.device("cpu"), fps=20)

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.latest is not None and runner.steps > 6, what="frames")
        frame = runner.latest
        for name in ("kfac_true", "kfac_empirical", "sgd", "adam"):
            assert f"loss_{name}" in frame.scalars
        assert "kfac_state" in frame.views and "step_times" in frame.views
        app.pane.param_panel.select("damping")
        await pilot.pause()
        await pilot.press("right")
        want = TOPIC.param("damping").nudge(TOPIC.param("damping").default, +1)
        await until(pilot, lambda: runner.params["damping"] == want, what="damping edit applied")
        steps = runner.steps
        await until(pilot, lambda: runner.steps > steps + 1, what="more steps")
        for run in runner._state.runs:
            if run.kfac:
                assert run.opt.damping == want
        assert runner.error is None

    drive(app, script)
