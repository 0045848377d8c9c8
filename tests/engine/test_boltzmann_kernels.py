"""Boltzmann kernels: the Triton kernels (under TRITON_INTERPRET=1 on the CPU) and their
PyTorch twins agree draw for draw on the same uniforms and term for term on the per-site
pl / mpf terms; the in-kernel Philox draws have the right mean."""

import pytest
import torch

from mletui.engine.kernels import boltzmann as kb

try:
    import triton  # noqa: F401
    HAS_TRITON = True
except Exception:  # pragma: no cover
    HAS_TRITON = False

needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@needs_triton
@pytest.mark.parametrize("shape", [(7, 5), (33, 130)])    # ragged tiles, several column blocks
def test_triton_sample_layer_matches_twin_draw_for_draw(shape):
    g = torch.Generator().manual_seed(1)
    pre = torch.randn(shape, generator=g) * 2
    bias = torch.randn(shape[1], generator=g)
    u = torch.rand(shape, generator=g)
    stat_t = torch.zeros(shape[1])
    x_t, p_t = kb.sample_layer_torch(pre, bias, uniforms=u, stat=stat_t)
    stat_k = torch.zeros(shape[1], device=DEVICE)
    x_k, p_k = kb.sample_layer_triton(pre.to(DEVICE), bias.to(DEVICE), uniforms=u.to(DEVICE), stat=stat_k)
    assert torch.equal(x_k.cpu(), x_t)
    assert 0 < int(x_t.sum()) < x_t.numel()
    torch.testing.assert_close(p_k.cpu(), p_t, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(stat_k.cpu(), stat_t, rtol=1e-5, atol=1e-5)
    x_n, p_n = kb.sample_layer_triton(pre.to(DEVICE), bias.to(DEVICE), uniforms=u.to(DEVICE), want_probs=False)
    assert p_n is None and torch.equal(x_n.cpu(), x_t)


@needs_triton
def test_triton_philox_draws_have_the_sigmoid_mean_and_differ_by_counter():
    R, n = 64, 32
    pre = torch.full((R, n), 0.0, device=DEVICE)
    bias = torch.linspace(-2, 2, n, device=DEVICE)
    a, _ = kb.sample_layer_triton(pre, bias, seed=5, counter=0)
    b, _ = kb.sample_layer_triton(pre, bias, seed=5, counter=1)
    c, _ = kb.sample_layer_triton(pre, bias, seed=5, counter=0)
    assert torch.equal(a, c) and not torch.equal(a, b)
    draws = torch.cat([kb.sample_layer_triton(pre, bias, seed=5, counter=k)[0] for k in range(8)])
    mean = draws.mean(0).cpu()
    p = torch.sigmoid(bias.cpu())
    se = (p * (1 - p) / draws.shape[0]).sqrt()
    assert float(((mean - p).abs() / se).max()) < 4.5


@needs_triton
@pytest.mark.parametrize("method", kb.SITE_METHODS)
def test_triton_site_terms_match_twin(method):
    g = torch.Generator().manual_seed(2)
    X = torch.randint(0, 2, (37, 19), generator=g).float() * 2 - 1
    F = torch.randn(37, 19, generator=g) * 3
    obj_t, A_t = kb.site_terms_torch(X, F, method)
    obj_k, A_k = kb.site_terms_triton(X.to(DEVICE), F.to(DEVICE), method)
    torch.testing.assert_close(A_k.cpu(), A_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(obj_k.cpu(), obj_t, rtol=1e-5, atol=1e-4)


def test_site_terms_twin_values():
    """pl: ln sigma(2 s f), coefficient 2 s sigma(-2 s f); mpf: exp(-s f), coefficient -s exp(-s f)."""
    X = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    F = torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    obj, A = kb.site_terms_torch(X, F, "pl")
    s = torch.sigmoid
    assert float(obj) == pytest.approx(float(torch.log(s(torch.tensor(1.0))) + torch.log(s(torch.tensor(-0.5)))))
    assert A.tolist()[0] == pytest.approx([2 * float(s(torch.tensor(-1.0))), -2 * float(s(torch.tensor(0.5)))])
    obj, A = kb.site_terms_torch(X, F, "mpf")
    assert float(obj) == pytest.approx(float(torch.exp(torch.tensor(-0.5)) + torch.exp(torch.tensor(0.25))))
    assert A.tolist()[0] == pytest.approx([-float(torch.exp(torch.tensor(-0.5))), float(torch.exp(torch.tensor(0.25)))])
    with pytest.raises(ValueError, match="pl"):
        kb.site_terms_torch(X, F, "cd")
