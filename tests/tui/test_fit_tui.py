"""What a pane shows when room is short or a view does not apply: hidden views, the note
standing in for empty ones, paging (c) and zoom (z), a key bar and a status line that fit
80 columns in ASCII, and refused values repeated on the event line."""

from __future__ import annotations

import math
import time

import pytest
import torch

from mletui.engine.params import Param
from mletui.engine.topic import Frame, Topic, View
from mletui.tui.app import MletuiApp
from mletui.tui.keybar import fit
from mletui.tui.pane import MIN_CELL, capacity, legible
from pilot import drive, until


class Shapes(Topic):
    """Five views: two always, one only for dim >= 2, one whose series has no value until
    step 5, one that never has anything to draw."""

    name = "shapes"
    title = "Shapes"
    params = (Param("dim", "int", 1, "data dimension", lo=1, hi=3),)
    views = (
        View("trace", "first", series=("a",)),
        View("trace", "second", series=("b",)),
        View("plot", "two-d only", source="xy", when=lambda p: p["dim"] >= 2),
        View("trace", "late", series=("late",)),
        View("trace", "never", series=("never",)),
    )

    def init(self, p, device, seed):
        return {"t": 0}

    def step(self, state, p):
        time.sleep(0.002)
        state["t"] += 1

    def observe(self, state, p):
        t = state["t"]
        return Frame(scalars={"a": math.sin(t), "b": math.cos(t), "late": float(t) if t >= 5 else None,
                              "never": None},
                     views={"xy": {"lines": {"c": ([0.0, 1.0], [1.0, float(t)])}}})


SHAPES = Shapes()


def _app(**kw):
    return MletuiApp(topics=[SHAPES], seed=1, device=torch.device("cpu"), fps=20, show_rates=False,
                     runner="thread", **kw)


def titles(pane) -> list[str]:
    return [pane.topic.views[i].title for i in pane.shown]


def test_a_view_that_does_not_apply_or_has_nothing_to_draw_is_hidden_until_it_does():
    app = _app(start_paused=True)

    async def script(pilot):
        pane = app.pane
        await until(pilot, lambda: pane.shown, what="views shown")
        # paused at step 0: "late" has no value yet, "never" never has; dim = 1 hides the plot
        assert titles(pane) == ["first", "second"]
        assert not pane.view_widgets[2].display and not pane.view_widgets[4].display
        for _ in range(5):
            await pilot.press("n")
        await until(pilot, lambda: "late" in titles(pane), what="the late view once it has a value")
        pane.param_panel.select("dim")
        await pilot.pause()
        await pilot.press("right")
        await until(pilot, lambda: "two-d only" in titles(pane), what="the 2-D view once dim = 2")
        assert titles(pane) == ["first", "second", "two-d only", "late"]
        assert "never" not in titles(pane)

    drive(app, script, size=(120, 40))


def test_before_any_view_has_content_the_grid_says_why_instead_of_empty_frames():
    class Silent(Shapes):
        name = "silent"

        def observe(self, state, p):
            return Frame(scalars={"a": None, "b": None, "late": None, "never": None}, views={})

    app = MletuiApp(topics=[Silent()], seed=1, device=torch.device("cpu"), fps=20, runner="thread")

    async def script(pilot):
        pane = app.pane
        await until(pilot, lambda: pane.runner.latest is not None and pane.runner.steps > 3, what="frames")
        await pilot.pause(0.2)
        assert pane.shown == [] and pane.note.display
        assert not any(w.display for w in pane.view_widgets)
        assert "no view has anything to draw" in str(pane.note.render())

    drive(app, script, size=(80, 24))


def test_c_pages_through_the_views_and_z_zooms_one_at_80x24():
    app = _app()

    async def script(pilot):
        pane = app.pane
        pane.param_panel.select("dim")
        await pilot.pause()
        await pilot.press("right")
        await until(pilot, lambda: len(pane.eligible()) == 4, what="four views with content")
        await until(pilot, lambda: len(pane.shown) == 2, what="two views at 80x24")
        assert titles(pane) == ["first", "second"]
        assert "views 1-2 of 4" in str(app.query_one("#status").render())
        await pilot.press("c")
        await until(pilot, lambda: titles(pane) == ["two-d only", "late"], what="the next page")
        await pilot.press("c")
        await until(pilot, lambda: titles(pane) == ["first", "second"], what="back to the first page")
        await pilot.press("z")
        await until(pilot, lambda: pane.zoomed and titles(pane) == ["first"], what="zoomed on the first")
        assert "zoomed" in app.message
        await pilot.press("c")
        await until(pilot, lambda: titles(pane) == ["second"], what="the next view, zoomed")
        await pilot.press("z")
        await until(pilot, lambda: not pane.zoomed and titles(pane) == ["second", "two-d only"],
                    what="the grid from the zoomed view")

    drive(app, script, size=(80, 24))


@pytest.mark.parametrize("width,height,n,want", [
    (54, 19, 4, 2),    # 80x24 beside the narrow side column: two stacked
    (88, 35, 9, 8),    # 120x40: 2 columns x 4 rows
    (88, 35, 3, 3),
    (20, 6, 3, 1),     # too small for even one legible cell: still one
])
def test_capacity_is_the_most_views_with_legible_cells(width, height, n, want):
    assert capacity(n, width, height) == want
    if want > 1:
        assert legible(want, width, height) and (want == n or not legible(want + 1, width, height))
    assert MIN_CELL == (30, 8)


def test_fit_keeps_the_most_important_parts_whole_in_their_order():
    parts = [(6, "cpu (2 threads)"), (0, "ising running"), (3, "step 12345"), (4, "512 steps/s"),
             (2, "0.31 flips/ns"), (1, "seed 123456789")]
    assert fit(parts, 200, " | ") == [p[1] for p in parts]
    narrow = fit(parts, 60, " | ")
    assert narrow == ["ising running", "step 12345", "0.31 flips/ns", "seed 123456789"]
    assert len(" | ".join(narrow)) <= 60
    assert fit(parts, 5, " | ") == ["ising running"]   # the first one even if too wide


def test_at_80_columns_in_ascii_the_status_and_key_bar_keep_seed_p_and_tab_and_are_ascii():
    from mletui.engine.topics import all_topics

    ising = all_topics()["ising"]
    app = MletuiApp(topics=[ising, SHAPES], overrides={"ising": dict(ising.quick)}, seed=123456789,
                    device=torch.device("cpu"), fps=20, ascii=True, runner="thread")

    async def script(pilot):
        await until(pilot, lambda: "flips/" in str(app.query_one("#status").render()), what="the work rate")
        status = str(app.query_one("#status").render())
        keys = str(app.query_one("#keys").render())
        assert "seed 123456789" in status and "flips/" in status, status
        assert "p " in keys and "tab " in keys and "? " in keys and "q " in keys, keys
        assert "..." not in keys and "~" not in status
        assert len(status) <= 80 and len(keys) <= 80
        for text in (status, keys, str(app.query_one("#message").render())):
            assert text.isascii(), text

    drive(app, script, size=(80, 24))


def test_a_refused_typed_value_is_also_on_the_event_line():
    app = _app(start_paused=True)

    async def script(pilot):
        pane = app.pane
        await until(pilot, lambda: pane.runner.latest is not None, what="a frame")
        pane.param_panel.select("dim")
        await pilot.pause()
        await pilot.press("enter")
        await until(pilot, lambda: pane.param_panel.editing, what="the input")
        await pilot.press("ctrl+u", "9", "enter")
        await until(pilot, lambda: "dim must be <= 3" in app.message, what="the refusal on the event line")
        assert "dim must be <= 3" in str(app.query_one("#message").render())
        assert pane.runner.params["dim"] == 1

    drive(app, script, size=(80, 24))


def _screen_text(app) -> str:
    """Every character on the screen (from Textual's SVG export, which writes each cell)."""
    import html
    import re

    svg = app.export_screenshot()
    return html.unescape("".join(re.findall(r"<text[^>]*>(.*?)</text>", svg, re.S))).replace("\xa0", " ")


def _topic_names() -> list[str]:
    from mletui.engine.topics import all_topics

    return list(all_topics())


@pytest.mark.parametrize("name", _topic_names())
def test_in_ascii_mode_every_character_on_the_screen_and_the_help_is_ascii(name):
    from mletui.engine.topics import all_topics

    topic = all_topics()[name]
    app = MletuiApp(topics=[topic], overrides={name: dict(topic.quick)}, seed=1, device=torch.device("cpu"),
                    fps=20, ascii=True, runner="thread")

    async def script(pilot):
        await until(pilot, lambda: app.pane.shown and app.pane.runner.steps > 3, timeout=60, what="views")
        await pilot.pause(0.3)
        text = _screen_text(app)
        assert "seed 1" in text and "tab " in text
        bad = sorted({c for c in text if ord(c) > 127})
        assert not bad, (bad, [text[max(0, i - 30):i + 5] for i, c in enumerate(text) if ord(c) > 127][:3])
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        bad = sorted({c for c in _screen_text(app) if ord(c) > 127})
        assert not bad, bad

    drive(app, script, size=(80, 24))


def _terminal_bytes(env: dict, seconds: float = 12.0) -> bytes:
    """What the app (as `mletui` starts it, thread runner) writes to an 80x24 terminal
    in ``seconds``, then after ``q``."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import sys
    import termios

    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update({"TERM": "xterm-256color", "MLETUI_RUNNER": "thread", **env})
        os.execv(sys.executable, [sys.executable, "-m", "mletui.tui.cli", "--topic", "ising", "--set", "L=16"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    out = b""
    t0 = time.monotonic()
    quit_sent = False
    while time.monotonic() - t0 < seconds + 30:
        if not quit_sent and time.monotonic() - t0 > seconds:
            os.write(fd, b"q")
            quit_sent = True
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
    os.waitpid(pid, 0)
    os.close(fd)
    return out


def _colour_params(out: bytes) -> set[str]:
    """SGR parameters that set a colour (30-37, 40-47, 90-97, 100-107, 38;..., 48;...)."""
    import re

    found = set()
    for seq in re.findall(rb"\x1b\[([0-9;]*)m", out):
        for p in seq.decode().split(";"):
            if p.isdigit() and (30 <= int(p) <= 38 or 40 <= int(p) <= 48 or 90 <= int(p) <= 107):
                found.add(p)
    return found


def test_no_color_the_app_sends_no_colour_codes_to_the_terminal():
    assert _colour_params(_terminal_bytes({})), "in colour the app sends colour codes (the check can fail)"
    out = _terminal_bytes({"NO_COLOR": "1"})
    assert b"seed" in out and not _colour_params(out), _colour_params(out)
