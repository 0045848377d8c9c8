"""The Boltzmann pane in the app, driven with Pilot: it draws every view, `method` switches
live, `exact` on a 64-unit fvbm is refused inline while the run goes on; the CLI refuses the
same value with exit status 2 and one line."""

import torch

from mletui.engine.topics.boltzmann import TOPIC
from mletui.tui.app import MletuiApp
from mletui.tui.cli import main
from pilot import drive, type_value, until

BIG_FVBM = {**TOPIC.quick, "model": "fvbm", "dataset": "digits", "method": "pcd"}


def test_boltzmann_pane_draws_switches_method_live_and_refuses_exact_at_64_units():
    app = MletuiApp(topics=[TOPIC], overrides={"boltzmann": BIG_FVBM}, seed=1,
                    device=torch.device("cpu"), fps=20)

    async def script(pilot):
        runner = app.pane.runner
        panel = app.pane.param_panel
        await until(pilot, lambda: runner.latest is not None and runner.steps > 3, what="frames")
        await until(pilot, lambda: app.pane._shown is not None, what="a drawn frame")
        await pilot.pause(0.3)  # a few redraws
        drawn = [str(w.border_subtitle) for w in app.pane.view_widgets
                 if "cannot draw" in str(w.border_subtitle or "")]
        assert drawn == [], drawn
        frame = runner.latest
        assert len(app.pane.view_widgets) == len(TOPIC.views)
        for view in TOPIC.views:
            assert view.source in frame.views, view.source
        assert frame.scalars["log_likelihood_kind"] == "ais"
        # the app spreads the evaluations over updates (Topic.interactive); headless runs do not
        assert runner.params["eval_slice"] == TOPIC.interactive["eval_slice"] > 0
        assert TOPIC.default_params()["eval_slice"] == 0
        panel.select("method")
        await pilot.pause()
        await type_value(pilot, panel, "exact")
        await until(pilot, lambda: "enumerates at most 20 units" in panel.message, what="the refusal")
        assert "N = 64" in panel.message and panel.query_one("#param-message").has_class("error")
        assert runner.params["method"] == "pcd"
        steps = runner.steps
        await until(pilot, lambda: runner.steps > steps + 2, what="the run to go on")
        await type_value(pilot, panel, "pl")
        await until(pilot, lambda: runner.params["method"] == "pl", what="the switch applied")
        steps = runner.steps
        await until(pilot, lambda: runner.steps > steps + 2, what="steps under pl")
        assert [ln.method for ln in runner._state.learners] == ["pl"]
        assert runner.error is None and runner.status == "running"

    drive(app, script)


def test_cli_refuses_exact_at_64_units_with_exit_2_and_one_line(capsys):
    argv = ["run", "boltzmann", "--steps", "3", "--set", "model=fvbm", "--set", "dataset=digits",
            "--set", "method=exact"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mletui: error:")
    assert "method=exact enumerates at most 20 units; this fvbm has N = 64" in err[0]
