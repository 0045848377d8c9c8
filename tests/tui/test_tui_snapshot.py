"""Snapshots of every topic's pane at 80x24 and 120x40 (pytest-textual-snapshot).

Deterministic by construction: the engine is a SteppedRunner (no thread: each `n` steps
and observes before the key returns), at the topic's ``quick`` params, seed 7, STEPS steps,
one torch thread; the app's snapshot mode (show_rates=False) hides steps/s, the work rate
and the machine's thread count; the topics that time their own steps (K-FAC's step times,
Langevin's chain steps per second, Boltzmann's throughput) read a clock that advances 1 ms
per reading. The pictures depend on the engines' random streams and the pinned Textual and
plotext (which draws every chart's plot area): a change there changes them. Update after an
intended change with `pytest tests/tui/test_tui_snapshot.py --snapshot-update`, and look at
every new SVG."""

from __future__ import annotations

import types

import pytest
import torch

from mletui.engine.topics import all_topics
from mletui.tui.app import MletuiApp

STEPS = 12
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
TOPICS = all_topics()
TIMED = ("kfac", "langevin", "boltzmann")  # topic modules that read time.perf_counter


@pytest.fixture
def fixed_clock(monkeypatch):
    """time.perf_counter, as the timed topic modules see it, advancing 1 ms per reading."""
    import importlib

    ticks = iter(range(1, 10**9))
    clock = types.SimpleNamespace(perf_counter=lambda: next(ticks) * 1e-3)
    for name in TIMED:
        if name in TOPICS:
            module = importlib.import_module(f"mletui.engine.topics.{name}")
            monkeypatch.setattr(module, "time", clock)


def _app(name: str) -> MletuiApp:
    topic = TOPICS[name]
    return MletuiApp(topics=[topic], overrides={name: dict(topic.quick)}, seed=7, device=torch.device("cpu"),
                     fps=4, start_paused=True, show_rates=False, ascii=False, runner="stepped")


async def _steps(pilot) -> None:
    app = pilot.app
    for _ in range(STEPS):
        await pilot.press("n")
    runner = app.pane.runner
    assert runner.latest.step == min(STEPS, runner.steps) and runner.error is None, runner.error
    app.tick()
    await pilot.pause(0.3)
    app.tick()
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(TOPICS))
def test_pane_snapshot(name, size, snap_compare, one_thread, fixed_clock):
    app = _app(name)
    assert snap_compare(app, terminal_size=SIZES[size], run_before=_steps)
