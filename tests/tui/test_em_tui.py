"""The EM pane in the app, driven with Pilot: it opens and streams frames into its views, an
arrow-key edit of K re-initialises the fit with K components, and the reset key draws a new
initialisation on the same data."""

import torch

from mletui.engine.topics.em import TOPIC
from mletui.tui.app import MletuiApp
from pilot import drive, until


def test_em_pane_streams_frames_edits_k_and_resets_to_a_new_initialisation():
    app = MletuiApp(topics=[TOPIC], overrides={"em": {"dataset": "blobs", "K": 3, "n_points": 1000}},
                    seed=1, device=torch.device("cpu"), fps=20)

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.latest is not None and runner.steps > 5, what="frames")
        frame = runner.latest
        for key in ("density_1d", "ellipses_2d", "components"):
            assert key in frame.views
        assert len(frame.arrays["weights"]) == 3
        assert frame.scalars["log_likelihood"] is not None
        plot = next(w for w in app.pane.view_widgets if w.view.kind == "plot")
        await until(pilot, lambda: str(plot.border_subtitle).endswith(" points"),
                     what="the data drawn as a scatter under the 2-sigma ellipses")
        panel = app.pane.param_panel
        panel.select("K")
        await pilot.pause()
        await pilot.press("right")
        await until(pilot, lambda: runner.params["K"] == 4, what="K edit applied")
        await until(pilot, lambda: runner.latest is not None and len(runner.latest.arrays.get("weights", [])) == 4,
                     what="a fit with 4 components")
        generation, seed = runner.generation, runner.seed
        await pilot.press("r")
        await until(pilot, lambda: runner.generation > generation, what="reset")
        assert runner.seed != seed
        await until(pilot, lambda: runner.latest is not None and runner.steps > 1, what="frames after reset")
        assert runner.latest.scalars["n_points"] == 1000 and runner.error is None

    drive(app, script)
