"""Triton kernels, each beside a plain-PyTorch twin of the same signature (the CPU path, the
test reference and the benchmarks' neighbour).

Two things every kernel module shares live here:

``triton``, ``tl``
    The one import guard: the modules, or None where Triton is absent (the CPU path never
    needs it). A kernel module writes ``from . import triton, tl`` and defines its
    ``@triton.jit`` functions under ``if triton is not None:``.

``Launch``, ``LAUNCHES``
    Each kernel module ends with ``LAUNCHES``, a tuple of :class:`Launch`: the representative
    calls its launch sites make (smallest, default and largest tile, each dtype, each
    constexpr switch a launch site passes). A launch goes through the launch site's own
    Python code with :func:`placeholder` tensors (a shape and a dtype, no storage), so the
    signature a build uses is the one the launch site passes, never a copy of it;
    :mod:`.aot` records the launch instead of running it and builds the kernel ahead of
    time for a named GPU. ``default`` marks the few per kernel that the default test run
    builds; the rest build under the ``slow`` marker and with ``mletui kernels --full``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

try:  # triton is optional: the CPU path never needs it
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - platforms without triton wheels
    triton = None
    tl = None


@dataclass(frozen=True)
class Launch:
    """One representative call of a kernel module's launch site (see the module docstring).

    ``label`` names the specialisation in the words of the call ("L=8192 gibbs couplings");
    ``call()`` makes the call with :func:`placeholder` tensors; ``default`` puts it in the
    default build set. ``known`` describes a defect the compile gate has found and tolerates on
    ``known_archs`` (a register spill, say) until the kernel is fixed; the gate then fails,
    so that the note goes when the defect does."""

    label: str
    call: Callable[[], Any]
    default: bool = False
    known: str = ""
    known_archs: tuple[str, ...] = ("sm_90", "sm_80")


def placeholder(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor with a shape and a dtype and no storage (device ``meta``): a launch site runs
    its own code path on it up to the launch, which :mod:`.aot` records instead of running."""
    return torch.empty(shape, dtype=dtype, device="meta")
