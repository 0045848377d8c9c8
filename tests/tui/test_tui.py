"""The Textual app driven with Pilot (no async plugin: each test runs its own event loop).

The Ising pane runs the real `ising` topic on a small lattice (L=8, 2 replicas) so the
engine is fast; a tiny topic defined here drives the view kinds Ising does not use
(heatmap, plot, bars, a source-fed histogram) and NaN handling."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import time

import numpy as np
import pytest
import torch

from mletui.engine.params import Param
from mletui.engine.topic import Frame, Topic, View
from mletui.engine.topics import all_topics
from mletui.tui.app import HelpScreen, MletuiApp, work_rate
from mletui.tui.charset import ASCII, ascii_only, to_ascii
from mletui.tui.pane import TopicPane, grid_shape
from mletui.tui.widgets.lattice import LatticeView, cells, downsample
from mletui.tui.widgets.params import ParamPanel
from mletui.tui.widgets.chart_view import ChartView
from pilot import drive, type_value, until

ISING = all_topics()["ising"]
SMALL = {"ising": {"L": 8, "replicas": 2, "burn_in": 0}}


class ToyTopic(Topic):
    """Every view kind fed from the data conventions of engine/topic.py's View docstring;
    ``nan_every`` makes one scalar NaN on chosen steps."""

    name = "toy"
    title = "Toy"
    order = 1000
    params = (Param("rate", "float", 1.0, "growth", lo=0.0, hi=10.0, step=0.5),
              Param("nan_every", "int", 0, "NaN energy every k steps (0: never)", lo=0, hi=100),
              Param("size", "int", 4, "state size", lo=1, hi=64, live=False),
              Param("beta", "float", 0.5, "inverse temperature β ≥ 0 (λ unused)", lo=0.0))
    views = (
        View("trace", "energy", series=("energy",), reference=("energy_ref",)),
        View("histogram", "counts", source="hist"),
        View("heatmap", "field", source="field"),
        View("table", "table", source="table"),
        View("plot", "curves", source="curves"),
        View("bars", "bars", source="bars"),
    )

    def init(self, p, device, seed):
        return {"t": 0}

    def step(self, state, p):
        time.sleep(0.002)  # stands for device work (which releases the GIL, as torch kernels do)
        state["t"] += 1

    def observe(self, state, p):
        t = state["t"]
        k = p["nan_every"]
        energy = math.nan if (k and t % k == 0) else math.sin(t * p["rate"])
        z = np.outer(np.arange(6.0), np.arange(8.0))
        z[0, 0] = math.nan
        return Frame(
            scalars={"energy": energy, "energy_ref": None if t % 2 else 0.0, "t": t},
            views={
                "hist": {"edges": [0, 1, 2, 3], "counts": [1, 5, 2],
                         "lines": {"exact": ([0.5, 1.5, 2.5], [2, 4, 2])}},
                "field": {"z": z.tolist(), "extent": (0, 1, 0, 1)},
                "table": {"columns": ["a", "b"], "rows": [[1, math.nan], [2.5, "x"]]},
                "curves": {"x": [0, 1, 2, 3], "series": {"up": [0, 1, 2, math.inf], "down": [3, 2, 1, 0]}},
                "bars": {"labels": ["p", "q", "r"], "values": [1.0, 3.0, math.nan]},
            },
        )


TOY = ToyTopic()


def frame_with(runner, name, value):
    """A published frame records params[name] == value (frames carry params after edits)."""
    return any(f.params is not None and f.params.get(name) == value for f in runner.frames())


def ising_app(**kw) -> MletuiApp:
    kw.setdefault("overrides", SMALL)
    return MletuiApp(topics=[ISING, TOY], seed=3, device=torch.device("cpu"), fps=20, **kw)


async def select_param(pilot, app, name):
    app.pane.param_panel.select(name)
    await pilot.pause()


# -- parameters from the keyboard ----------------------------------------------------------

def test_right_arrow_steps_beta_and_a_following_frame_carries_it():
    app = ising_app(start_paused=True)

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.latest is not None, what="the first frame")
        await pilot.press("down")  # L -> beta
        await until(pilot, lambda: app.pane.param_panel.current.name == "beta", what="beta selected")
        await pilot.press("right")
        want = ISING.param("beta").nudge(0.44, +1)
        assert want == pytest.approx(0.45)
        await until(pilot, lambda: runner.params["beta"] == want, what="the edit applied")
        await pilot.press("n")
        await until(pilot, lambda: frame_with(runner, "beta", want), what="a frame with the new beta")
        await pilot.press("left", "left")
        back = ISING.param("beta").nudge(ISING.param("beta").nudge(want, -1), -1)
        await until(pilot, lambda: runner.params["beta"] == back, what="beta stepped down twice")
        await until(pilot, lambda: "beta = " in app.pane.param_panel.message, what="the panel message")

    drive(app, script)


def test_typed_value_applies_and_bad_value_shows_error_and_leaves_beta_unchanged():
    app = ising_app(start_paused=True)

    async def script(pilot):
        runner = app.pane.runner
        panel: ParamPanel = app.pane.param_panel
        await until(pilot, lambda: runner.latest is not None, what="the first frame")
        await select_param(pilot, app, "beta")
        await type_value(pilot, panel, "0.3")
        await until(pilot, lambda: runner.params["beta"] == 0.3, what="the edit applied")
        await pilot.press("n")
        await until(pilot, lambda: frame_with(runner, "beta", 0.3), what="beta = 0.3 in a frame")
        assert not panel.editing
        for bad, words in (("-1", "beta must be >= 0"), ("abc", "beta must be a number"),
                           ("nan", "beta must be a finite number")):
            await type_value(pilot, panel, bad)
            await until(pilot, lambda: words in panel.message, what=f"error {words!r}, got {panel.message!r} value {panel.query_one('#param-input').value!r}")
            assert panel.query_one("#param-message").has_class("error")
            assert runner.params["beta"] == 0.3 and runner.pending_value("beta") == 0.3
        steps = runner.steps
        await pilot.press("space")
        await until(pilot, lambda: runner.steps > steps + 2, what="the run to go on")
        assert runner.status == "running" and runner.error is None
        assert runner.params["beta"] == 0.3

    drive(app, script)


def test_odd_L_is_refused_inline_and_even_L_reinitialises():
    app = ising_app(start_paused=True)

    async def script(pilot):
        runner = app.pane.runner
        panel = app.pane.param_panel
        await until(pilot, lambda: runner.latest is not None, what="the first frame")
        gen = runner.generation
        await select_param(pilot, app, "L")
        await type_value(pilot, panel, "9")
        await until(pilot, lambda: "L must be even" in panel.message, what="the odd-L error")
        assert runner.params["L"] == 8 and runner.generation == gen
        await type_value(pilot, panel, "12")
        await until(pilot, lambda: runner.generation > gen and frame_with(runner, "L", 12), what="re-init at L=12")

    drive(app, script)


# -- engine and view control -------------------------------------------------------------

def test_space_pauses_n_steps_exactly_once_and_space_resumes():
    app = ising_app()

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.steps > 2, what="running")
        await pilot.press("space")
        await until(pilot, lambda: runner.status == "paused", what="paused")
        await pilot.pause(0.2)
        held = runner.steps
        await pilot.pause(0.3)
        assert runner.steps == held, "a paused runner must not step"
        await pilot.press("n")
        await until(pilot, lambda: runner.steps == held + 1, what="one step")
        await until(pilot, lambda: runner.latest.step == held + 1, what="the stepped frame")
        await pilot.pause(0.3)
        assert runner.steps == held + 1
        assert "paused" in str(app.query_one("#status").render())
        await pilot.press("space")
        await until(pilot, lambda: runner.steps > held + 3, what="resumed")
        assert "running" in str(app.query_one("#status").render())

    drive(app, script)


def test_r_resets_with_a_new_seed_and_clears_the_history():
    app = ising_app()

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.steps > 20, what="some steps")
        gen, seed = runner.generation, runner.seed
        await pilot.press("r")
        await until(pilot, lambda: runner.generation == gen + 1, what="re-init")
        assert runner.seed != seed
        assert f"seed {runner.seed}" in app.message
        assert all(f.step <= runner.steps for f in runner.frames())
        assert runner.frames()[0].step == 0

    drive(app, script)


def test_f_freezes_the_view_while_the_engine_keeps_running():
    app = ising_app()

    async def script(pilot):
        runner = app.pane.runner
        pane = app.pane
        await until(pilot, lambda: pane._shown is not None, what="a drawn frame")
        await pilot.press("f")
        await until(pilot, lambda: pane.frozen, what="the view frozen")
        await pilot.pause(0.1)
        shown, steps = pane._shown, runner.steps
        await until(pilot, lambda: runner.steps > steps + 5, what="engine steps while frozen")
        await pilot.pause(0.2)
        assert pane._shown is shown, "a frozen view must not redraw"
        assert "frozen" in str(app.query_one("#status").render())
        await pilot.press("f")
        await until(pilot, lambda: pane._shown is not shown, what="redraw after unfreeze")

    drive(app, script)


def test_export_writes_jsonl_and_csv_that_parse_with_params_in_the_header(tmp_path, monkeypatch):
    monkeypatch.setenv("MLETUI_EXPORT_DIR", str(tmp_path))
    app = ising_app()

    async def script(pilot):
        runner = app.pane.runner
        # the export is the record (Topic.every apart: 50 sweeps for ising), not the UI frames
        await until(pilot, lambda: len(runner.recorded()) > 5, what="recorded frames")
        await pilot.press("e")
        await pilot.pause(0.1)
        assert str(tmp_path) in app.message

    drive(app, script)
    jsonl = list(tmp_path.glob("ising-*.jsonl"))
    csvs = list(tmp_path.glob("ising-*.csv"))
    assert len(jsonl) == 1 and len(csvs) == 1
    records = [json.loads(line) for line in jsonl[0].read_text().splitlines()]
    header, frames = records[0], records[1:]
    assert header["topic"] == "ising" and header["seed"] == 3
    assert header["params"]["L"] == 8 and header["params"]["beta"] == 0.44
    assert len(frames) > 5
    assert all(r["topic"] == "ising" and "energy_per_spin" in r for r in frames)
    assert "lattice" not in frames[-1], "view-only data stays out of exports"
    # the runner's record, not the UI-rate frames: one every k steps from the start
    steps = [r["step"] for r in frames]
    every = steps[1] - steps[0]
    assert steps == list(range(0, every * len(steps), every)), steps[:10]
    rows = list(csv.reader(csvs[0].open()))
    assert rows[0][:3] == ["topic", "step", "time_s"] and "energy_per_spin" in rows[0]
    assert len(rows) == len(frames) + 1


def test_s_saves_an_svg_screenshot_and_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MLETUI_EXPORT_DIR", str(tmp_path))
    app = ising_app()

    async def script(pilot):
        await until(pilot, lambda: app.pane._shown is not None, what="a drawn frame")
        await pilot.press("s")
        await pilot.pause(0.1)

    drive(app, script)
    svgs = list(tmp_path.glob("*.svg"))
    assert len(svgs) == 1 and svgs[0].read_text().lstrip().startswith("<svg")
    assert str(svgs[0]) in app.message


def test_p_saves_the_current_params_as_a_preset_that_loads_back(tmp_path, monkeypatch):
    from mletui.engine import presets

    monkeypatch.setenv("MLETUI_PRESETS", str(tmp_path))
    app = ising_app(start_paused=True)

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.latest is not None, what="the first frame")
        await select_param(pilot, app, "beta")
        await pilot.press("right")
        await until(pilot, lambda: runner.params["beta"] == pytest.approx(0.45), what="beta edit")
        await pilot.press("p")
        await until(pilot, lambda: app.screen.query("#preset-name") and app.screen.query_one("#preset-name").has_focus,
                    what="the name prompt")
        await pilot.press(*"my-run", "enter")
        await until(pilot, lambda: "saved" in app.message, what="the saved message")

    drive(app, script)
    loaded = presets.load("my-run")
    assert loaded.topic == "ising"
    assert loaded.params["beta"] == pytest.approx(0.45) and loaded.params["L"] == 8


def test_help_screen_lists_every_binding_and_closes():
    app = ising_app(start_paused=True)

    async def script(pilot):
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help screen")
        text = " ".join(f"{k} {d}" for k, d in app.screen.rows)
        for b in app.BINDINGS:
            if not b.action.startswith("goto"):
                assert app.get_key_display(b) in text, b.key
        for word in ("pause", "freeze", "export", "screenshot", "preset", "exact value", "next topic"):
            assert word in text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), what="help closed")

    drive(app, script)


def test_switching_tabs_pauses_the_old_runner_and_runs_the_new_one():
    app = ising_app()

    async def script(pilot):
        ising = app.panes["ising"]
        toy = app.panes["toy"]
        assert toy.runner is None, "runners start lazily, when their pane is first shown"
        await until(pilot, lambda: ising.runner.steps > 1, what="ising running")
        await pilot.press("tab")
        await until(pilot, lambda: app.active == "toy", what="tab switch")
        assert toy.runner is not None
        await until(pilot, lambda: ising.runner.status == "paused", what="ising paused")
        await until(pilot, lambda: toy.runner.steps > 3, what="toy running")
        # paused: no new step starts (one in flight when the pause came may still finish)
        held = ising.runner.steps
        await pilot.pause(0.3)
        assert ising.runner.steps <= held + 1
        await pilot.pause(0.3)
        assert ising.runner.steps <= held + 1
        held = ising.runner.steps
        await pilot.press("1")
        await until(pilot, lambda: app.active == "ising", what="number key switch")
        await until(pilot, lambda: toy.runner.status == "paused", what="toy paused")
        await until(pilot, lambda: ising.runner.steps > held, what="ising resumed")

    drive(app, script)


def test_a_pane_paused_by_the_user_stays_paused_across_tab_switches():
    app = ising_app()

    async def script(pilot):
        ising = app.panes["ising"]
        await until(pilot, lambda: ising.runner.steps > 1, what="running")
        await pilot.press("space")
        await until(pilot, lambda: ising.runner.paused and ising.user_paused, what="paused by the user")
        await pilot.press("tab")
        await until(pilot, lambda: app.active == "toy", what="switch")
        await pilot.press("shift+tab")
        await until(pilot, lambda: app.active == "ising", what="switch back")
        await pilot.pause(0.3)
        held = ising.runner.steps
        await pilot.pause(0.3)
        assert ising.runner.paused and ising.runner.steps == held

    drive(app, script)


def test_app_has_one_tab_per_registered_topic_in_order():
    app = MletuiApp(device=torch.device("cpu"), start_paused=True)

    async def script(pilot):
        assert list(app.panes) == list(all_topics())
        assert app.active == next(iter(all_topics()))
        started = [name for name, pane in app.panes.items() if pane.runner is not None]
        assert started == [app.active], "only the visible topic's runner exists"

    drive(app, script, size=(80, 24))


# -- views: data conventions, NaN, ASCII, layout -------------------------------------------

def views_laid_out(pane) -> bool:
    """Every view of the pane on screen with a size and drawn (views appear with their
    first content, so the first frame finds them not laid out yet)."""
    widgets = pane.view_widgets
    return len(pane.shown) == len(widgets) and all(w.size.width > 0 and w.size.height > 0 for w in widgets) \
        and all(getattr(w, "notes_text", "x") != "" or w.view.kind in ("histogram", "table") for w in widgets)


def _toy_app(**kw):
    return MletuiApp(topics=[TOY], seed=0, device=torch.device("cpu"), fps=20, **kw)


def test_every_view_kind_draws_its_documented_data_and_nan_is_text_not_plotted():
    app = _toy_app(overrides={"toy": {"nan_every": 3}})

    async def script(pilot):
        pane = app.pane
        await until(pilot, lambda: pane._shown is not None and pane._shown.step > 7, what="frames")
        trace = next(w for w in pane.view_widgets if w.view.kind == "trace")

        def both_drawn() -> bool:  # a finite energy to draw and a NaN one to report
            return all(w.display for w in pane.view_widgets) and "nan not drawn" in trace.notes_text

        # the frames kept are the runner's choice: pause, look, and run on until they hold both
        for _ in range(40):
            await pilot.press("space")
            await pilot.pause(0.2)
            if both_drawn():
                break
            await pilot.press("space")
            await pilot.pause(0.2)
        assert both_drawn(), ([w.display for w in pane.view_widgets], trace.notes_text)
        subs = {w.view.kind: w.notes_text for w in pane.view_widgets}
        assert not any("cannot draw" in s for s in subs.values()), subs
        assert "nan not drawn" in subs["trace"], subs["trace"]
        assert "no exact value" in subs["trace"] or "energy_ref 0" in subs["trace"]
        assert "1 nan not drawn" in subs["heatmap"]
        assert "r nan" in subs["bars"]
        assert "1 non-finite" in subs["plot"]
        readout = str(pane.query_one("#readout").render())
        shown = pane._shown
        if math.isnan(shown.scalars["energy"]):
            assert "nan" in readout

    drive(app, script, size=(200, 60))


def test_trace_says_no_exact_value_when_the_reference_is_none():
    app = ising_app(overrides={"ising": {"L": 8, "replicas": 2, "h": 0.1}}, start_paused=True)

    async def script(pilot):
        await until(pilot, lambda: app.pane._shown is not None, what="a drawn frame")
        trace = next(w for w in app.pane.view_widgets if w.view.kind == "trace")
        assert "no exact value" in trace.notes_text
        app.pane.param_panel.select("h")
        await type_value(pilot, app.pane.param_panel, "0")
        await pilot.press("n")
        await until(pilot, lambda: "exact energy (Kaufman) -" in trace.notes_text, what="exact value shown")

    drive(app, script)


def test_lattice_downsample_is_a_block_majority_and_fits():
    up = np.zeros((64, 64), dtype=bool)
    up[:32] = True  # top half up
    small = downsample(up, 16, 40)
    assert small.shape == (16, 16)
    assert small[:8].all() and not small[8:].any()
    # 2 pixel rows per text line: upper half, lower half
    lines = cells(np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=bool), ASCII)
    assert lines == ['#". ']


def test_a_lattice_with_every_spin_down_is_drawn_not_blank():
    """Down spins are grey on the panel's background: an all-down lattice (half the ordered
    states annealing ends in) is seen as a lattice, not as an empty panel."""
    import dataclasses

    app = ising_app()

    async def script(pilot):
        await until(pilot, lambda: app.pane._shown is not None, what="a drawn frame")
        lattice = next(w for w in app.pane.view_widgets if isinstance(w, LatticeView))
        await pilot.press("f")                              # freeze: the frame below stays
        frame = app.pane.runner.latest
        src = lattice.view.source
        n = np.asarray(frame.views.get(src, frame.arrays.get(src))).shape[-1]
        lattice.show(dataclasses.replace(frame, views={**frame.views, src: -np.ones((n, n))}))
        await pilot.pause(0.1)
        assert "0% up" in lattice.notes_text
        segs = [seg for y in range(lattice.content_size.height) for seg in lattice.render_line(y)]
        spins = [seg for seg in segs if seg.text.strip() == "" and seg.text and seg.style.bgcolor is not None
                 and seg.style.bgcolor.name == "grey30"]
        around = {seg.style.bgcolor for seg in segs if seg not in spins}
        assert spins and sum(len(seg.text) for seg in spins) >= n // 2
        assert spins[0].style.bgcolor not in around

    drive(app, script)


def test_ascii_mode_draws_views_without_non_ascii_characters():
    app = _toy_app(ascii=True)
    ising = ising_app(ascii=True)

    def check(app_):
        async def script(pilot):
            await until(pilot, lambda: app_.pane._shown is not None, what="a drawn frame")
            await pilot.pause(0.1)
            for w in app_.pane.view_widgets:
                if isinstance(w, ChartView):
                    text = w.text() + str(w.border_title) + str(w.border_subtitle)
                elif isinstance(w, LatticeView) or hasattr(w, "render_line"):
                    text = "".join(seg.text for y in range(w.content_size.height)
                                   for seg in w.render_line(y)) if not hasattr(w, "update") else ""
                else:
                    text = ""
                assert all(ord(c) < 128 for c in text), (w.view.kind, [c for c in text if ord(c) > 127][:5])
        return script

    drive(app, check(app))
    drive(ising, check(ising))
    assert to_ascii("┌─┐│⠁█") == "+-+|*#"


def test_ascii_mode_spells_greek_letters_in_help_texts_titles_and_status():
    app = _toy_app(ascii=True, start_paused=True)

    async def script(pilot):
        await until(pilot, lambda: app.pane.runner.latest is not None, what="the first frame")
        await select_param(pilot, app, "beta")
        assert app.pane.param_panel.message == "beta: inverse temperature beta >= 0 (lambda unused) [0, inf]"
        app.say("step size δ halved")
        assert str(app.query_one("#message").render()) == "step size delta halved"
        app.pane.param_panel.select("size")
        await pilot.pause()
        assert app.pane.param_panel.message.isascii()

    drive(app, script)
    assert to_ascii("αβ ∇²") == "alphabeta grad^2"


def test_a_topic_module_that_failed_to_import_is_named_on_the_message_line(monkeypatch):
    import mletui.tui.app as app_module

    assert app_module.not_loaded({}) == ""
    assert app_module.not_loaded({"broken": "SyntaxError: invalid syntax (broken.py, line 3)"}) \
        == "topic broken not loaded: SyntaxError: invalid syntax (broken.py, line 3)"
    assert app_module.not_loaded({"a": "ImportError: x", "b": "NameError: y"}) \
        == "topics a, b not loaded (a: ImportError: x)"
    monkeypatch.setattr(app_module, "failed_topics", lambda: {"broken": "ImportError: no module named zz"})
    app = MletuiApp(topic="ising", overrides=SMALL, seed=1, device=torch.device("cpu"), start_paused=True)

    async def script(pilot):
        await until(pilot, lambda: app.pane is not None and app.pane.runner is not None, what="the pane")
        assert app.message == "topic broken not loaded: ImportError: no module named zz"
        assert list(app.panes) == list(all_topics()), "the other topics still load"

    drive(app, script, size=(80, 24))


@pytest.mark.parametrize("env,expect", [
    ({"LANG": "C"}, True),
    ({"LC_ALL": "C", "LANG": "en_US.UTF-8"}, True),
    ({"LANG": "C", "LC_CTYPE": "C.UTF-8"}, True),   # Python's PEP 538 coercion of LANG=C
    ({"LANG": "POSIX"}, True),
    ({"LANG": "en_US.ISO-8859-1"}, True),
    ({"LANG": "en_US.UTF-8"}, False),
    ({"LC_ALL": "de_DE.utf8"}, False),
    ({"LANG": "C", "MLETUI_ASCII": "0"}, False),
    ({"LANG": "en_US.UTF-8", "MLETUI_ASCII": "1"}, True),
])
def test_ascii_fallback_follows_the_locale(env, expect):
    assert ascii_only(env, encoding="utf-8") is expect


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_views_reflow_so_every_view_has_room(n, size):
    cols, rows = grid_shape(n, size[0] - (26 if size[0] < 100 else 32), size[1] - 5)
    assert cols * rows >= n and cols * rows - n < cols
    cell_w = (size[0] - 32) / cols
    cell_h = (size[1] - 5) / rows
    assert cell_w >= 20 and cell_h >= 5


def test_pane_survives_resizes_and_keeps_views_inside_the_screen():
    """The views shown fit the screen at every size, legibly (the grid's minimum cell);
    the others are hidden, not squeezed."""
    from mletui.tui.pane import MIN_CELL

    app = _toy_app(start_paused=True)

    async def script(pilot):
        await until(pilot, lambda: app.pane.shown, what="views with content")
        for size in ((120, 40), (80, 24), (100, 30), (80, 24)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.2)
            shown = [w for i, w in enumerate(app.pane.view_widgets) if i in app.pane.shown]
            assert len(shown) >= 2, (size, app.pane.shown)
            for w in app.pane.view_widgets:
                r = w.region
                if w not in shown:
                    assert not w.display and r.width == 0, (size, w.view.kind, r)
                    continue
                assert r.width >= MIN_CELL[0] and r.height >= MIN_CELL[1], (size, w.view.kind, r)
                assert r.right <= size[0] and r.bottom <= size[1]

    drive(app, script, size=(120, 40))


def test_work_rate_is_shown_in_the_topics_unit():
    assert work_rate(2.5e8, "flips") == "0.25 flips/ns"
    assert work_rate(3.0e6, "flips") == "3 flips/us"
    assert work_rate(2e9, "flips/ns") == "2 flips/ns"
    assert work_rate(0.0, "flips") == ""


def test_no_color_draws_the_heatmap_with_shade_characters(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = _toy_app(start_paused=True, ascii=False)

    async def script(pilot):
        assert app.no_color, "Textual reads NO_COLOR (and then renders monochrome)"
        heat = next(w for w in app.pane.view_widgets if w.view.kind == "heatmap")

        def drawn() -> str:
            return "".join(seg.text for y in range(heat.content_size.height) for seg in heat.render_line(y))

        # the heatmap is drawn once it is on screen and laid out; wait for that, not for the frame alone
        await until(pilot, lambda: app.pane._shown is not None and heat.display and drawn().strip(),
                    what="the heatmap drawn")
        text = drawn()
        assert "▀" not in text, "colour-only half blocks are invisible without colour"
        assert set(text) - {" "} <= set(app.glyphs.ramp) and len(set(text)) > 2

    drive(app, script, size=(200, 60))


class FailingTopic(ToyTopic):
    name = "failing"
    title = "Failing"

    def step(self, state, p):
        state["t"] += 1
        if state["t"] == 3:
            raise FloatingPointError("energy diverged at step 3")


def test_an_engine_error_is_shown_in_the_status_area_and_the_app_goes_on():
    app = MletuiApp(topics=[FailingTopic(), TOY], seed=0, device=torch.device("cpu"), fps=20)

    async def script(pilot):
        runner = app.pane.runner
        await until(pilot, lambda: runner.status == "error", what="the error")
        await until(pilot, lambda: "energy diverged at step 3" in str(app.query_one("#message").render()),
                    what="the error on screen")
        assert "failing error" in str(app.query_one("#status").render())
        await pilot.press("tab")
        await until(pilot, lambda: app.active == "toy" and app.panes["toy"].runner.steps > 2, what="the other topic")

    drive(app, script)


def test_a_preset_opens_its_topic_with_its_values_under_the_typed_overrides(tmp_path, monkeypatch):
    """The app merges a preset through Topic.resolve: defaults < preset < overrides; a bad
    preset value is the pane's one-line error and no runner starts."""
    monkeypatch.setenv("MLETUI_PRESETS", str(tmp_path))
    (tmp_path / "cold.toml").write_text('topic = "ising"\n[params]\nbeta = 0.7\nL = 16\nreplicas = 2\n')
    (tmp_path / "bad.toml").write_text('topic = "ising"\n[params]\nbeta = -1.0\n')
    app = MletuiApp(topics=[ISING, TOY], overrides={"ising": {"L": 8}}, preset_name="cold", seed=1,
                    device=torch.device("cpu"), start_paused=True)

    async def script(pilot):
        runner = app.pane.runner
        assert app.active == "ising" and "preset cold loaded" in app.message
        assert runner.params["beta"] == 0.7 and runner.params["L"] == 8 and runner.params["replicas"] == 2

    drive(app, script)
    bad = MletuiApp(topics=[ISING], preset_name="bad", seed=1, device=torch.device("cpu"), start_paused=True)

    async def refused(pilot):
        assert bad.pane.runner is None
        assert bad.pane.error == "preset: beta must be >= 0, got -1"
        # without a runner the panel still edits through Topic.resolve, refusals included
        panel = bad.pane.param_panel
        await select_param(pilot, bad, "beta")
        await type_value(pilot, panel, "0.3")
        assert panel.values["beta"] == 0.3 and "beta = 0.3" in panel.message
        await select_param(pilot, bad, "L")
        await type_value(pilot, panel, "7")
        assert "L must be even" in panel.message and panel.values["L"] == 64

    drive(bad, refused)


def test_a_heatmap_with_a_fixed_scale_colours_by_it_and_counts_what_is_beyond():
    """Two heatmaps meant to be compared share the scale their data fixes: the same value
    gets the same colour in both, a value past the scale takes the end colour and is
    counted in the subtitle; without a scale the map runs from its own min to max."""
    app = _toy_app(start_paused=True, ascii=False)

    async def script(pilot):
        heat = next(w for w in app.pane.view_widgets if w.view.kind == "heatmap")
        await until(pilot, lambda: app.pane._shown is not None and heat.display
                    and heat.content_size.width > 0, what="the heatmap laid out")

        def colours(z, scale=None) -> set:
            data = {"z": z, **({"scale": scale} if scale else {})}
            heat.show(Frame(scalars={}, views={"field": data}))
            return {seg.style.color for y in range(heat.content_size.height)
                    for seg in heat.render_line(y) if seg.style is not None and seg.style.color}

        half = colours([[0.5, 0.5], [0.5, 0.5]], scale=(0.0, 1.0))
        assert len(half) == 1 and "scale 0–1" in heat.border_subtitle
        again = colours([[0.5, 0.5], [0.5, 0.5]], scale=(0.0, 1.0))
        assert again == half
        top = colours([[1.0, 1.0], [1.0, 1.0]], scale=(0.0, 1.0))
        assert top != half
        past = colours([[3.0, 3.0], [1.0, 1.0]], scale=(0.0, 1.0))
        assert past == top and "2 beyond the scale" in heat.border_subtitle   # the two 3.0 cells
        own = colours([[0.5, 0.5], [1.0, 1.0]])          # no scale: its own min (0.5) to max
        assert "min 0.5" in heat.border_subtitle and len(own) == 2 and not own & half

    drive(app, script, size=(200, 60))
