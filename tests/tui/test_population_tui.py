"""The population-annealing pane in the app, driven with Pilot: it opens and streams frames
carrying every view's data, and live key edits reach the runner (resampling switched to
multinomial makes the population exactly R0; a dbeta step changes the beta increment)."""

import torch

from mletui.engine.topics.population import TOPIC
from mletui.tui.app import MletuiApp
from pilot import drive, until

# beta_max / dbeta = 50,000 steps: the run cannot reach its end (and stop) during the test
SMALL = {"population": {"L": 8, "replicas": 300, "dbeta": 1e-4, "beta_max": 5.0, "sweeps_per_step": 2}}


def test_population_pane_streams_frames_and_live_resampling_and_dbeta_edits_apply():
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    app = MletuiApp(topics=[TOPIC], overrides=SMALL, seed=1, device=torch.device("cpu"), fps=20)

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.latest is not None and runner.steps > 3, what="frames")
        frame = runner.latest
        assert "energy_histogram" in frame.views and "lattice" in frame.views
        assert len(frame.views["lattice"]) == 8
        for name in ("beta", "log_z", "log_z_exact", "ess_fraction", "families", "population"):
            assert name in frame.scalars
        panel = app.pane.param_panel
        panel.select("resampling")
        await pilot.pause()
        await pilot.press("right")  # nearest -> multinomial (live)
        await until(pilot, lambda: runner.params["resampling"] == "multinomial", what="resampling edit")
        steps = runner.steps
        await until(pilot, lambda: runner.steps > steps + 2 and runner.latest.step > steps + 1,
                     what="frames after the edit")
        assert runner.latest.scalars["population"] == 300  # multinomial: exactly R0
        panel.select("dbeta")
        await pilot.pause()
        await pilot.press("right")
        want = TOPIC.param("dbeta").nudge(1e-4, +1)
        await until(pilot, lambda: runner.params["dbeta"] == want, what="dbeta edit")
        steps = runner.steps
        await until(pilot, lambda: runner.latest is not None and runner.latest.step > steps + 1,
                     what="a frame after the dbeta edit")
        assert abs(runner.latest.scalars["dbeta"] - want) < 1e-12
        assert runner.error is None

    try:
        drive(app, script)
    finally:
        torch.set_num_threads(old_threads)
