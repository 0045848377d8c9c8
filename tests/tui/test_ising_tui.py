"""The Ising pane driven with Pilot: frames stream, every view draws, the exact value
is shown and replaced by "no exact value" once a field is set."""

import torch

from mletui.engine.topics import all_topics
from mletui.tui.app import MletuiApp
from pilot import drive, until

TOPIC = all_topics()["ising"]


def test_ising_pane_streams_frames_draws_every_view_and_says_no_exact_value_at_nonzero_h():
    app = MletuiApp(topics=[TOPIC], overrides={"ising": {"L": 16, "replicas": 2, "burn_in": 0}},
                    seed=2, device=torch.device("cpu"), fps=20)

    async def script(pilot):
        pane = app.pane
        runner = pane.runner
        await until(pilot, lambda: runner.latest is not None and runner.steps > 20, what="frames")
        await until(pilot, lambda: pane._shown is not None, what="a drawn frame")
        for w in pane.view_widgets:
            assert "cannot draw" not in str(w.border_subtitle or "")
        trace = pane.view_widgets[[v.kind for v in TOPIC.views].index("trace")]
        await until(pilot, lambda: "energy_exact -" in trace.notes_text, what="exact value shown")
        pane.param_panel.select("h")
        await pilot.pause()
        await pilot.press("right")
        await until(pilot, lambda: runner.params["h"] > 0, what="h edit applied")
        await until(pilot, lambda: "no exact value" in trace.notes_text, what="no exact value")

    drive(app, script)
