"""Test setup. Without a GPU, Triton kernels run under the interpreter on CPU tensors:
TRITON_INTERPRET must be set before any kernel module is imported. OMP_WAIT_POLICY is set as
mletui.engine sets it (PASSIVE unless given), before torch is first imported below: libgomp
reads it only then."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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


@pytest.fixture
def one_thread():
    """One torch thread for the test: with tiny tensors a second OpenMP thread only adds
    fork/join stalls, badly so on a loaded 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
