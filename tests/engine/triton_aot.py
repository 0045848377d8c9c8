"""Kernel tests' shared pieces: whether Triton is here (``needs_triton``), the device the
kernels run on (CUDA, or CPU tensors under TRITON_INTERPRET=1), and building kernels for
sm_90 ahead of time without a GPU (Triton's bundled ptxas): the interpreter does not
type-check like the compiler, so a CUDA-only error shows up here."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

try:
    import triton  # noqa: F401
    HAS_TRITON = True
except Exception:  # pragma: no cover
    HAS_TRITON = False

needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


_HEAD = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
"""
_LOOP = """
for fn, sig, consts in cases:
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=GPUTarget("cuda", 90, 32))
    assert k.asm.get("cubin"), "no cubin"
print("compiled", len(cases))
"""


def compile_for_sm90(cases_script: str, tmp_path) -> str:
    """Compile for sm_90 each (kernel, signature, constexprs) in the list ``cases`` that
    ``cases_script`` defines, in a fresh interpreter without TRITON_INTERPRET; return its
    stdout ("compiled N"), failing the test on a non-zero exit."""
    script = _HEAD + cases_script + _LOOP
    try:
        from triton.backends.nvidia import compiler  # noqa: F401
    except Exception:
        pytest.skip("triton without its NVIDIA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
