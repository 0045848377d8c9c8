"""Test setup. Without a GPU, Triton kernels run under the interpreter on CPU tensors:
TRITON_INTERPRET must be set before any kernel module is imported."""

import os

import pytest

try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except Exception:  # pragma: no cover
    _HAS_CUDA = False

if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if _HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _quick_idle(monkeypatch):
    """Pilot waits after each key until the process looks idle (CPU time not advancing), for
    at most 1 s. With an engine running the process is never idle, so every key would cost
    1 s: cap that wait (the pilot still waits for the screen to process its messages).
    Engine-only tests never import textual, so this patches nothing for them."""
    import sys

    if "textual.pilot" not in sys.modules and "mletui.tui.app" not in sys.modules:
        yield
        return
    import textual.app
    import textual.pilot
    from textual._wait import wait_for_idle

    async def quick(min_sleep: float = 0.0, max_sleep: float = 1.0) -> None:
        await wait_for_idle(min_sleep, min(max_sleep, 0.05))

    monkeypatch.setattr(textual.app, "wait_for_idle", quick)
    monkeypatch.setattr(textual.pilot, "wait_for_idle", quick)
    yield


@pytest.fixture
def one_thread():
    """One torch thread for the test: with tiny tensors a second OpenMP thread only adds
    fork/join stalls, badly so on a loaded 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
