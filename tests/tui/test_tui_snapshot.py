"""One snapshot of the Ising pane (pytest-textual-snapshot). Deterministic: fixed seed,
started paused, five single steps with `n`, fixed size, and the app's snapshot mode
(show_rates=False) hides steps/s, the work rate and the machine's thread count.
The picture depends on the Ising engine's random stream (seed, counter): a change there
(or in the pinned Textual/plotext) changes it. Update after an intended change with
`pytest tests/tui/test_tui_snapshot.py --snapshot-update` and look at the new SVG."""

import time

import torch

from mletui.engine.topics import all_topics
from mletui.tui.app import MletuiApp

STEPS = 5


def _app() -> MletuiApp:
    return MletuiApp(topics=[all_topics()["ising"]], overrides={"ising": {"L": 32, "replicas": 2, "burn_in": 2}},
                     seed=7, device=torch.device("cpu"), fps=4, start_paused=True, show_rates=False,
                     ascii=False)


async def _five_steps(pilot) -> None:
    app = pilot.app
    runner = app.pane.runner
    t0 = time.monotonic()
    while runner.latest is None and time.monotonic() - t0 < 30:
        await pilot.pause(0.05)
    for i in range(1, STEPS + 1):
        await pilot.press("n")
        while (runner.latest is None or runner.latest.step < i) and time.monotonic() - t0 < 60:
            await pilot.pause(0.05)
    assert runner.latest.step == STEPS and runner.paused
    app.tick()
    await pilot.pause(0.2)


def test_ising_pane_snapshot(snap_compare):
    app = _app()
    try:
        assert snap_compare(app, terminal_size=(120, 40), run_before=_five_steps)
    finally:
        for pane in app.panes.values():
            pane.stop()
