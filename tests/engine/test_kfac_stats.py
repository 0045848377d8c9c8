"""The Triton factor-statistics kernel (interpreted on the CPU) against its fused-matmul twin
and against the definition C <- decay C + scale [x, 1]ᵀ[x, 1]."""

import pytest
import torch

from mletui.engine.kernels.kfac_stats import cov_ema_torch, triton

pytestmark = pytest.mark.skipif(triton is None, reason="triton not installed")


@pytest.mark.parametrize("m,d,ones,decay", [(70, 40, True, 0.9), (33, 17, False, 0.0), (5, 31, True, 0.5)])
def test_triton_cov_ema_matches_twin_and_definition(m, d, ones, decay):
    from mletui.engine.kernels.kfac_stats import cov_ema_triton

    torch.manual_seed(m)
    x = torch.randn(m, d)
    n = d + int(ones)
    old = torch.randn(n, n)
    old = old @ old.t()
    scale = (1 - decay) / m
    xa = torch.cat([x, torch.ones(m, 1)], 1) if ones else x
    expected = decay * old + scale * xa.t() @ xa
    twin = cov_ema_torch(x, old.clone(), decay, scale, ones)
    start = old.clone() if decay else torch.full((n, n), float("nan"))   # decay 0 ignores the old value
    kern = cov_ema_triton(x, start, decay, scale, ones, block=16, block_m=32)
    torch.testing.assert_close(twin, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kern, expected, rtol=1e-5, atol=1e-5)


def test_twin_fresh_update_ignores_nan_in_the_old_factor():
    x = torch.randn(8, 3)
    out = cov_ema_torch(x, torch.full((4, 4), float("nan")), 0.0, 1.0 / 8, ones=True)
    assert torch.isfinite(out).all()
