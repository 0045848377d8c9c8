"""App tests: Textual's Pilot drives the app headless. The helpers every app test uses
live in ``pilot.py`` beside this file (``drive``, ``until``); the idle patch is here."""

import pytest


@pytest.fixture(autouse=True)
def _quick_idle(monkeypatch):
    """Pilot waits after each key until the process looks idle (CPU time not advancing), for
    at most 1 s. With an engine running the process is never idle, so every key would cost
    1 s: cap that wait (the pilot still waits for the screen to process its messages).
    """
    import textual.app
    import textual.pilot
    from textual._wait import wait_for_idle

    async def quick(min_sleep: float = 0.0, max_sleep: float = 1.0) -> None:
        await wait_for_idle(min_sleep, min(max_sleep, 0.05))

    monkeypatch.setattr(textual.app, "wait_for_idle", quick)
    monkeypatch.setattr(textual.pilot, "wait_for_idle", quick)
    yield
