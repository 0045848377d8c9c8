"""The exact Fisher of a batch (engine/optim/fisher.py), the exact natural gradient
(engine/optim/ngd.py) and K-FAC's error against the exact Fisher, on nets small enough to
form every matrix: the Fisher as an expectation of score outer products and as minus the
expected Hessian, the damped step and its KL budget, the Gram identities of the block error."""

import itertools
import math

import pytest
import torch
from torch import nn

from mletui.engine.optim.fisher import BatchFisher, block_heatmaps, kfac_block_error, layer_jacobians, solve_damped
from mletui.engine.optim.kfac import KFAC
from mletui.engine.optim.likelihoods import get_likelihood
from mletui.engine.optim.ngd import NaturalGradient

D64 = torch.float64


def _dense(fisher: BatchFisher) -> torch.Tensor:
    eye = torch.eye(sum(fisher.sizes), dtype=D64)
    return torch.stack([fisher.mv(e) for e in eye], 1)


def _log_lik(model, x, likelihood):
    """θ (flat) -> per-example log p(y | x_n, θ) for every label y of the enumeration."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def out(t):
        ps = [v.view(s) for v, s in zip(torch.split(t, sizes), shapes)]
        return torch.func.functional_call(model, dict(zip(names, ps)), (x,))

    if likelihood == "categorical":
        labels = torch.arange(out(theta).shape[1])

        def logp(t):                       # (N, C): log p(y = c | x_n)
            return torch.log_softmax(out(t), -1)
        return theta, logp, labels
    k = out(theta).shape[1]
    labels = torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)), dtype=D64)    # (2^k, k)

    def logp(t):                           # (N, 2^k): Σ_d log Bernoulli(y_d | f_nd)
        f = out(t)
        return (labels[None] * nn.functional.logsigmoid(f)[:, None] +
                (1 - labels[None]) * nn.functional.logsigmoid(-f)[:, None]).sum(-1)
    return theta, logp, labels


@pytest.mark.parametrize("likelihood,k", [("categorical", 4), ("bernoulli", 2)])
def test_exact_fisher_is_the_expected_score_outer_product_and_minus_the_expected_hessian(likelihood, k):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, k)).double()
    x = torch.randn(5, 3, dtype=D64)
    n, d = x.shape[0], 1 if likelihood == "categorical" else k
    fisher = _dense(BatchFisher(model, likelihood, x))
    theta, logp, labels = _log_lik(model, x, likelihood)
    probs = logp(theta).exp().detach()                               # (N, Y)
    assert torch.allclose(probs.sum(1), torch.ones(n, dtype=D64))
    scores = torch.func.jacrev(logp)(theta)                          # (N, Y, P)
    expected_outer = torch.einsum("ny,nyp,nyq->pq", probs, scores, scores) / (n * d)
    torch.testing.assert_close(fisher, expected_outer, rtol=1e-10, atol=1e-13)
    hess = torch.func.hessian(lambda t: (probs * logp(t)).sum())(theta)     # Σ_n E_y ∇² log p
    torch.testing.assert_close(fisher, -hess / (n * d), rtol=1e-9, atol=1e-12)
    # the same outer product at the observed labels is the empirical Fisher: another matrix
    observed = torch.randint(0, len(labels), (n,))
    s_obs = scores[torch.arange(n), observed]
    empirical = s_obs.t() @ s_obs / (n * d)
    assert (empirical - fisher).norm() > 0.1 * fisher.norm()


def test_layer_blocks_and_exact_G_match_the_dense_fisher():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4)).double()
    x = torch.randn(6, 3, dtype=D64)
    dense = _dense(BatchFisher(model, "categorical", x))
    offset = 0
    for jac, lin in zip(layer_jacobians(model, "categorical", x), [model[0], model[2]]):
        d_out, d_in = lin.weight.shape
        index = torch.cat([torch.arange(d_out * d_in).view(d_out, d_in),
                           (d_out * d_in + torch.arange(d_out))[:, None]], 1).reshape(-1) + offset
        block = dense[index][:, index]                               # [W | b] row-major
        u = torch.einsum("nci,nj->ncij", jac.g, jac.a).reshape(-1, d_out * (d_in + 1))
        torch.testing.assert_close(u.t() @ u, block, rtol=1e-10, atol=1e-14)
        offset += d_out * (d_in + 1)


def test_kfac_block_error_equals_the_dense_frobenius_error_on_both_gram_paths():
    torch.manual_seed(2)
    for width, n in ((5, 7), (300, 64)):       # (300, 64): n·d² > 2^22, the (nc)² Gram path
        model = nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 3)).double()
        x = torch.randn(n, 4, dtype=D64)
        jac = layer_jacobians(model, "categorical", x)[0]
        u = torch.einsum("nci,nj->ncij", jac.g, jac.a).reshape(-1, width * 5)
        block = u.t() @ u
        A = jac.A
        G = torch.randn(width, width, dtype=D64)
        G = G @ G.t() / width
        err, norm = kfac_block_error(A, G, jac)
        assert norm == pytest.approx(float(block.norm()), rel=1e-10)
        assert err == pytest.approx(float((torch.kron(G, A) - block).norm() / block.norm()), rel=1e-8)


def test_fisher_error_is_zero_for_one_linear_layer_and_one_example_with_the_exact_G():
    """K-FAC is exact there: F = Σ_c (g_c ⊗ a)(g_c ⊗ a)ᵀ = (Σ_c g_c g_cᵀ) ⊗ a aᵀ."""
    torch.manual_seed(3)
    layer = nn.Linear(3, 4).double()
    x = torch.randn(1, 3, dtype=D64)
    opt = KFAC(layer, likelihood="categorical", fisher="empirical", stat_decay=0.0)   # fresh factors
    probs = torch.softmax(layer(x), -1).detach()[0]
    G = torch.zeros(4, 4, dtype=D64)
    for y in range(4):                          # G's expectation over y, taken exactly
        with opt.capture():
            out = layer(x)
        opt.update_stats(out, torch.tensor([y]))
        G += probs[y] * opt.layers[0].G
    jac = layer_jacobians(nn.Sequential(layer), "categorical", x)[0]
    err, _ = kfac_block_error(opt.layers[0].A, G, jac)          # undamped A ⊗ G
    assert err < 1e-7
    torch.testing.assert_close(G, jac.exact_G, rtol=1e-12, atol=1e-15)
    # a sampled label's G, or a second example, makes it an approximation
    assert kfac_block_error(opt.layers[0].A, opt.layers[0].G, jac)[0] > 0.1
    x2 = torch.randn(2, 3, dtype=D64)
    jac2 = layer_jacobians(nn.Sequential(layer), "categorical", x2)[0]
    assert kfac_block_error(jac2.A, jac2.exact_G, jac2)[0] > 1e-3


def test_heatmap_halves_are_the_pooled_blocks_of_F_and_A_kron_G():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(9, 7, dtype=D64)
    jac = layer_jacobians(model, "categorical", x)[0]
    G = jac.exact_G
    exact, approx, k, m = block_heatmaps(jac.A, G, jac, max_params=24, cells=48)
    assert (k, m) == (3, 8)                     # 3 units x (7 inputs + bias)
    u = torch.einsum("nci,nj->ncij", jac.g[:, :, :k], jac.a).reshape(-1, k * m)
    torch.testing.assert_close(exact, torch.log10((u.t() @ u).abs().clamp(min=1e-30)))
    torch.testing.assert_close(approx, torch.log10(torch.kron(G[:k, :k], jac.A).abs().clamp(min=1e-30)))
    small, _, _, _ = block_heatmaps(jac.A, G, jac, max_params=24, cells=6)
    assert small.shape == (6, 6)
    block = (u.t() @ u).abs()
    torch.testing.assert_close(small[0, 0], torch.log10(block[:4, :4].mean()))


def test_conjugate_gradient_solves_the_damped_system():
    torch.manual_seed(5)
    m = torch.randn(12, 12, dtype=D64)
    F = m @ m.t()
    g = torch.randn(12, dtype=D64)
    sol = solve_damped(lambda v: F @ v, g, 0.1, max_iter=100, tol=1e-12)
    torch.testing.assert_close(sol.x, torch.linalg.solve(F + 0.1 * torch.eye(12, dtype=D64), g))
    assert sol.iterations <= 13 and sol.residual < 1e-12


def test_ngd_step_is_the_damped_natural_gradient_with_the_damped_step_length():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(8, 4, dtype=D64), torch.randint(0, 3, (8,))
    lam, eps, wd = 1e-2, 1e-3, 1e-3
    dense = _dense(BatchFisher(model, "categorical", x))
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()
    loss = get_likelihood("categorical").mean_loss(model(x), y)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))]) + wd * theta
    delta = torch.linalg.solve(dense + lam * torch.eye(len(theta), dtype=D64), grad)
    alpha = math.sqrt(2 * eps / float(delta @ dense @ delta))       # not sqrt(2ε / gᵀ(F+λ)⁻¹g)
    opt = NaturalGradient(model, "categorical", damping=lam, kl_budget=eps, weight_decay=wd,
                          cg_iters=500, cg_tol=1e-13)
    before_loss, _ = opt.step_on(x, y)
    assert float(before_loss) == pytest.approx(float(loss.detach()), rel=1e-12)
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(after, theta - alpha * delta, rtol=1e-8, atol=1e-10)
    assert opt.last_kl == pytest.approx(eps, rel=1e-12) and opt.last_alpha == pytest.approx(alpha, rel=1e-8)
    # the undamped length sqrt(2ε / gᵀΔ) would move ε ΔᵀFΔ / gᵀΔ < ε (gᵀΔ = ΔᵀFΔ + λ|Δ|²)
    undamped = math.sqrt(2 * eps / float(grad @ delta))
    assert (undamped / alpha) ** 2 == pytest.approx(float(delta @ dense @ delta) / float(grad @ delta))
    assert (undamped / alpha) ** 2 < 0.95


def test_ngd_never_steps_past_the_minimum_of_the_damped_quadratic_model():
    """With a budget larger than the full step moves, the step is −Δ (α = 1) and it moves
    less than ε: ½ ΔᵀFΔ < ε."""
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(8, 4, dtype=D64), torch.randint(0, 3, (8,))
    dense = _dense(BatchFisher(model, "categorical", x))
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()
    loss = get_likelihood("categorical").mean_loss(model(x), y)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])
    delta = torch.linalg.solve(dense + 1e-2 * torch.eye(len(theta), dtype=D64), grad)
    eps = 10.0
    assert 0.5 * float(delta @ dense @ delta) < eps
    opt = NaturalGradient(model, "categorical", damping=1e-2, kl_budget=eps, cg_iters=500, cg_tol=1e-13)
    opt.step_on(x, y)
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(after, theta - delta, rtol=1e-8, atol=1e-10)
    assert opt.last_alpha == 1.0 and opt.last_kl == pytest.approx(0.5 * float(delta @ dense @ delta), rel=1e-8)


@pytest.mark.parametrize("likelihood", ["categorical", "bernoulli", "gaussian"])
def test_ngd_moves_the_predictive_distribution_by_the_kl_budget(likelihood):
    torch.manual_seed(7)
    k = 4
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, k)).double()
    x = torch.randn(32, 6, dtype=D64)
    y = {"categorical": torch.randint(0, k, (32,)), "bernoulli": torch.rand(32, k, dtype=D64),
         "gaussian": torch.randn(32, k, dtype=D64)}[likelihood]
    lik = get_likelihood(likelihood)
    eps = 1e-5
    opt = NaturalGradient(model, likelihood, damping=1e-3, kl_budget=eps, cg_iters=200, cg_tol=1e-8)
    for _ in range(5):
        _, before = opt.step_on(x, y)
        with torch.no_grad():
            moved = float(lik.kl(before, model(x)))
        assert moved == pytest.approx(eps, rel=0.1)
    assert opt.skipped == 0


def test_ngd_skips_a_non_finite_gradient_and_leaves_the_parameters():
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    x = torch.tensor([[float("nan"), 0.0]], dtype=D64)
    before = [p.detach().clone() for p in model.parameters()]
    opt = NaturalGradient(model, "categorical")
    opt.step_on(x, torch.tensor([0]))
    assert opt.skipped == 1 and "non-finite gradient" in opt.drain_events()[0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
