"""K-FAC factor statistics: the running average C <- decay * C + scale * Xᵀ X.

Conventions shared by the Triton kernel and its PyTorch twin:
    x       float32 (M, D), one row per example (Linear) or per patch (Conv2d), contiguous
            in its last dimension; for G the rows are output gradients already scaled to
            per-example gradients of the negative log-likelihood.
    cov     float32 (D + ones, D + ones), updated in place. With ``ones=True`` the input is
            treated as if a trailing column of ones were appended (the bias of a Linear
            layer folded into A) without materialising it.
    decay   the weight of the old value (0 replaces ``cov``, as on the first update).
    scale   the weight of the batch sum Xᵀ X (e.g. (1 - stat_decay) / M).
The twin is a single fused matmul (``torch.addmm`` with beta=decay, alpha=scale); it is
the CPU path, the test reference and the benchmark baseline's neighbour. Both return
``cov`` and never synchronise with the host.
"""

from __future__ import annotations

import torch

from . import tl, triton  # None where Triton is absent (the CPU path never needs it)


def cov_ema_torch(x: torch.Tensor, cov: torch.Tensor, decay: float, scale: float,
                  ones: bool = False) -> torch.Tensor:
    """PyTorch twin: cov <- decay * cov + scale * [x, 1]ᵀ [x, 1] (one fused addmm)."""
    if ones:
        x = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
    if decay == 0.0:
        # beta=0 ignores cov's old value even where it is NaN (a fresh start after a failure)
        return torch.addmm(cov, x.t(), x, beta=0.0, alpha=scale, out=cov)
    return torch.addmm(cov, x.t(), x, beta=decay, alpha=scale, out=cov)


if triton is not None:

    @triton.jit
    def _cov_ema_kernel(x_ptr, cov_ptr, M, D, stride_xm, stride_cov, decay, scale,
                        ONES: tl.constexpr, FRESH: tl.constexpr, BLOCK: tl.constexpr,
                        BLOCK_M: tl.constexpr):
        """One (BLOCK x BLOCK) tile of cov per program; the ones column is index D."""
        pid_i = tl.program_id(0)
        pid_j = tl.program_id(1)
        offs_i = pid_i * BLOCK + tl.arange(0, BLOCK)
        offs_j = pid_j * BLOCK + tl.arange(0, BLOCK)
        offs_m = tl.arange(0, BLOCK_M)
        acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
        for m0 in range(0, M, BLOCK_M):
            rows = m0 + offs_m
            row_ok = rows < M
            xi = tl.load(x_ptr + rows[:, None] * stride_xm + offs_i[None, :],
                         mask=row_ok[:, None] & (offs_i[None, :] < D), other=0.0)
            xj = tl.load(x_ptr + rows[:, None] * stride_xm + offs_j[None, :],
                         mask=row_ok[:, None] & (offs_j[None, :] < D), other=0.0)
            if ONES:
                xi = tl.where(row_ok[:, None] & (offs_i[None, :] == D), 1.0, xi)
                xj = tl.where(row_ok[:, None] & (offs_j[None, :] == D), 1.0, xj)
            acc += tl.dot(tl.trans(xi), xj, input_precision="ieee")
        n = D + ONES
        mask = (offs_i[:, None] < n) & (offs_j[None, :] < n)
        ptrs = cov_ptr + offs_i[:, None] * stride_cov + offs_j[None, :]
        if FRESH:
            new = scale * acc
        else:
            old = tl.load(ptrs, mask=mask, other=0.0)
            new = decay * old + scale * acc
        tl.store(ptrs, new, mask=mask)


def cov_ema_triton(x: torch.Tensor, cov: torch.Tensor, decay: float, scale: float,
                   ones: bool = False, block: int = 32, block_m: int = 64) -> torch.Tensor:
    """Triton kernel, same signature and result as :func:`cov_ema_torch` (float32)."""
    if triton is None:  # pragma: no cover
        raise RuntimeError("triton is not installed")
    assert x.dtype == torch.float32 and cov.dtype == torch.float32
    x = x.contiguous()
    m, d = x.shape
    n = d + int(ones)
    assert cov.shape == (n, n) and cov.stride(1) == 1
    grid = (triton.cdiv(n, block), triton.cdiv(n, block))
    _cov_ema_kernel[grid](x, cov, m, d, x.stride(0), cov.stride(0), float(decay), float(scale),
                          ONES=bool(ones), FRESH=decay == 0.0, BLOCK=block, BLOCK_M=block_m)
    return cov


def cov_ema(x: torch.Tensor, cov: torch.Tensor, decay: float, scale: float,
            ones: bool = False, triton_kernel: bool = False) -> torch.Tensor:
    """Dispatch: the Triton kernel when asked (CUDA), else the fused-matmul twin."""
    if triton_kernel and x.dtype == torch.float32 and cov.dtype == torch.float32:
        return cov_ema_triton(x, cov, decay, scale, ones)
    return cov_ema_torch(x, cov, decay, scale, ones)


# -- representative launches: what engine/kernels/aot.py builds for sm_90 / sm_80 ---------------
# Each calls cov_ema_triton on placeholder tensors (float32 only, as the launch site requires), so
# a build uses the signature it passes. The tile is fixed (BLOCK=32, BLOCK_M=64); the switches
# are ONES (a Linear layer's A factor with the bias folded in) and FRESH (decay 0, the first
# update). Sizes: the K-FAC topic's digits MLP (64 inputs) and a 784-input layer; M examples.
from . import Launch, placeholder  # noqa: E402


def _cov_ema_launch(d: int, m: int, ones: bool, fresh: bool, default: bool = False) -> Launch:
    def call() -> torch.Tensor:
        return cov_ema_triton(placeholder(m, d), placeholder(d + ones, d + ones), 0.0 if fresh else 0.95,
                              0.05 / m, ones=ones)
    return Launch(f"D={d} M={m}" + " ones" * ones + " fresh" * fresh, call, default)


LAUNCHES = (
    *(_cov_ema_launch(d, m, o, f, default=(d, o, f) == (64, True, True))
      for d, m in ((10, 128), (64, 256), (784, 1000)) for o in (False, True) for f in (False, True)),
)
