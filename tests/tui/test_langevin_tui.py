"""The Langevin pane in the app, driven with Pilot: it opens and streams frames, an arrow-key
edit of step_size reaches the runner, and score=learned under method=mala is refused inline."""

import torch

from mletui.engine.topics.langevin import TOPIC
from mletui.tui.app import MletuiApp
from pilot import drive, until


def test_langevin_pane_streams_frames_and_refuses_mala_with_learned_score_inline():
    app = MletuiApp(topics=[TOPIC], overrides={"langevin": {"chains": 2000}}, seed=1,
                    device=torch.device("cpu"), fps=20)

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.latest is not None and runner.steps > 40, what="frames")
        frame = runner.latest
        for key in ("density_chains", "density_exact", "marginal_x", "marginal_y", "moments"):
            assert key in frame.views
        assert "divergence" in frame.scalars and len(frame.arrays["mean"]) == 2
        panel = app.pane.param_panel
        panel.select("step_size")
        await pilot.pause()
        await pilot.press("right")
        want = TOPIC.param("step_size").nudge(TOPIC.param("step_size").default, +1)
        await until(pilot, lambda: runner.params["step_size"] == want, what="step_size edit applied")
        steps = runner.steps
        await until(pilot, lambda: runner.steps > steps + 1, what="more steps")
        panel.select("score")
        await pilot.pause()
        await pilot.press("right")  # exact -> learned, refused while method=mala
        await pilot.pause(0.2)
        assert "needs method=ula" in panel.message
        assert runner.params["score"] == "exact" and runner.error is None

    drive(app, script)
