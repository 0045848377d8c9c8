"""Driving the app headless with Textual's Pilot: shared by every app test."""

from __future__ import annotations

import asyncio
import time


def drive(app, script, size=(120, 40)):
    """Run the app headless, await ``script(pilot)``, then stop every pane's runner."""

    async def main():
        async with app.run_test(size=size) as pilot:
            try:
                await script(pilot)
            finally:
                for pane in app.panes.values():
                    pane.stop()

    asyncio.run(main())


async def until(pilot, cond, timeout=30.0, what="condition"):
    """Let the app run until ``cond()`` holds; fail naming ``what`` after ``timeout`` s."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def type_value(pilot, panel, text):
    """Enter opens the param panel's input; once it has focus, clear it, type, Enter."""
    from textual.widgets import Input

    await pilot.press("enter")
    box = panel.query_one("#param-input", Input)
    await until(pilot, lambda: panel.editing and box.has_focus, what="the input to open")
    await pilot.press("ctrl+u", *text, "enter")
    await until(pilot, lambda: not panel.editing, what="the input to close")
