"""Boltzmann kernels: the Triton kernels (under TRITON_INTERPRET=1 on the CPU) and their
PyTorch twins agree draw for draw on the same uniforms and term for term on the per-site
pl / mpf terms; the in-kernel Philox draws have the right mean."""

import pytest
import torch

from mletui.engine.kernels import boltzmann as kb

from triton_aot import DEVICE, HAS_TRITON, compile_for_sm90, needs_triton


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


@pytest.mark.parametrize("impl", ["fast"] + (["triton"] if HAS_TRITON else []))
def test_checkerboard_per_site_field_matches_the_reference_twin_spin_for_spin(impl):
    """The fvbm on the lattice graph: per-bond couplings and a per-site field h_ij."""
    from mletui.engine.kernels import checkerboard as cb

    R, L = 3, 6
    g = torch.Generator().manual_seed(4)
    coup = torch.randn(2, L, L, generator=g)
    field = torch.randn(L, L, generator=g)
    beta = torch.tensor([0.3, 0.7, 1.0])
    ref = (torch.randint(0, 2, (R, L, L), generator=g, dtype=torch.int8) * 2 - 1)
    other = ref.clone().to(DEVICE)
    flipped = 0
    for half in range(4):
        u = torch.rand(R, L, L // 2, generator=g)
        # the reference: heat bath with lambda = sum_j J_ij s_j + h_ij, by hand
        lam = cb.local_field(ref, coup, 0.0) + field
        p_up = torch.sigmoid(2 * beta[:, None, None] * lam)
        want = torch.where(cb.color_mask(L, half % 2), torch.where(cb.expand_uniforms(u, half % 2) < p_up, 1, -1),
                           ref.to(torch.int64)).to(torch.int8)
        f_ref = cb.half_sweep_torch(ref, half % 2, beta, field, "gibbs", couplings=coup, uniforms=u)
        assert torch.equal(ref, want)
        fn = cb.half_sweep_fast if impl == "fast" else cb.half_sweep_triton
        f_other = fn(other, half % 2, beta.to(DEVICE), field.to(DEVICE), "gibbs", couplings=coup.to(DEVICE),
                     uniforms=u.to(DEVICE))
        assert torch.equal(other.cpu(), ref) and torch.equal(f_other.cpu(), f_ref)
        flipped += int(f_ref.sum())
    assert flipped > 0


_AOT = """
from mletui.engine.kernels import boltzmann as kb

sample_sig = {"pre_ptr": "*fp32", "bias_ptr": "*fp32", "unif_ptr": "*fp32", "out_ptr": "*fp32",
              "prob_ptr": "*fp32", "stat_ptr": "*fp32", "R": "i32", "n": "i32", "seed": "i64",
              "ctr_lo": "i64", "ctr_hi": "i64", "BLOCK_R": "constexpr", "BLOCK_N": "constexpr",
              "HAS_UNIF": "constexpr", "STORE_PROB": "constexpr", "ACCUM": "constexpr"}
terms_sig = {"x_ptr": "*fp32", "f_ptr": "*fp32", "coef_ptr": "*fp32", "obj_ptr": "*fp32", "M": "i32",
             "N": "i32", "METHOD": "constexpr", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"}
cases = [(kb._sample_layer_kernel, sample_sig, dict(BLOCK_R=32, BLOCK_N=128, HAS_UNIF=False, STORE_PROB=True, ACCUM=True)),
         (kb._sample_layer_kernel, sample_sig, dict(BLOCK_R=32, BLOCK_N=128, HAS_UNIF=True, STORE_PROB=False, ACCUM=False)),
         (kb._site_terms_kernel, terms_sig, dict(METHOD=0, BLOCK_M=32, BLOCK_N=128)),
         (kb._site_terms_kernel, terms_sig, dict(METHOD=1, BLOCK_M=32, BLOCK_N=128))]
"""


@needs_triton
def test_boltzmann_kernels_compile_for_an_h100_without_a_gpu(tmp_path):
    """The interpreter does not type-check like the compiler: build both kernels for sm_90
    ahead of time (Triton's bundled ptxas; no GPU needed)."""
    assert "compiled 4" in compile_for_sm90(_AOT, tmp_path)
