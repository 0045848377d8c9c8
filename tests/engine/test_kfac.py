"""K-FAC optimizer: factors against exact Fishers, the preconditioned update against an
explicit Kronecker solve, true vs empirical Fisher, the quadratic-model rescale, failures."""

import math

import pytest
import torch
from torch import nn

from mletui.engine.optim.kfac import KFAC
from mletui.engine.optim.likelihoods import get_likelihood, mean_loss


def _score_matrix(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Per-label scores ∇_θ log p(y|x) of a softmax Linear layer for one example, as rows
    (C, out*(in+1)) in row-major order of [W | b] (torch.func per-example Jacobians)."""
    def log_probs(w, b):
        return torch.log_softmax(x @ w.t() + b, dim=-1)

    jw, jb = torch.func.jacrev(log_probs, argnums=(0, 1))(layer.weight.detach(), layer.bias.detach())
    c = jw.shape[0]
    return torch.cat([jw, jb.unsqueeze(-1)], dim=-1).reshape(c, -1)


def _layer_opt(layer, **kw):
    kw.setdefault("eigh_dtype", torch.float64)
    return KFAC(layer, likelihood="categorical", **kw)


def test_kfac_block_equals_exact_fisher_block_for_one_example():
    torch.manual_seed(0)
    layer = nn.Linear(3, 4).double()
    x = torch.randn(3, dtype=torch.float64)
    # exact Fisher of the layer at x: E_{y~p}[s_y s_yᵀ] from torch.func Jacobians
    scores = _score_matrix(layer, x)
    probs = torch.softmax(layer(x), -1).detach()
    fisher = (scores.t() * probs) @ scores
    # K-FAC: A from the captured input, G from the optimizer's statistics for each label,
    # the expectation over labels taken exactly (stat_decay=0 makes each update fresh)
    opt = _layer_opt(layer, stat_decay=0.0, fisher="empirical")
    kfac_block = torch.zeros_like(fisher)
    for y in range(4):
        with opt.capture():
            out = layer(x[None])
        opt.update_stats(out, torch.tensor([y]))
        A, G = opt.layers[0].A, opt.layers[0].G
        kfac_block += probs[y] * torch.kron(G, A)
    torch.testing.assert_close(kfac_block, fisher, rtol=1e-10, atol=1e-12)
    # and the order matters: A ⊗ G is a different matrix
    assert not torch.allclose(torch.kron(A, G), torch.kron(G, A))


def _damped(A, G, lam):
    pi = math.sqrt((torch.trace(A) / A.shape[0]) / (torch.trace(G) / G.shape[0]))
    eye_a, eye_g = torch.eye(A.shape[0], dtype=A.dtype), torch.eye(G.shape[0], dtype=G.dtype)
    return A + pi * math.sqrt(lam) * eye_a, G + math.sqrt(lam) / pi * eye_g


def test_update_equals_inverse_kron_of_pi_split_factors_times_row_major_grad():
    torch.manual_seed(1)
    layer = nn.Linear(3, 2).double()
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 2, (5,))
    lam, lr = 0.05, 0.1
    opt = _layer_opt(layer, lr=lr, momentum=0.0, damping=lam, rescale="none", fisher="empirical")
    w0 = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1).clone()
    opt.zero_grad()
    out = layer(x)
    opt.backward(out, y, inputs=x)
    grad = torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1).clone()
    A, G = opt.layers[0].A.clone(), opt.layers[0].G.clone()
    opt.step()
    A_l, G_l = _damped(A, G, lam)
    vec_v = torch.linalg.solve(torch.kron(G_l, A_l), grad.reshape(-1))   # row-major vec
    w1 = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)
    torch.testing.assert_close(w1, w0 - lr * vec_v.reshape(2, 4), rtol=1e-9, atol=1e-12)
    # the split damping is not (A ⊗ G + λ I): that gives a different update
    wrong = torch.linalg.solve(torch.kron(G, A) + lam * torch.eye(8, dtype=torch.float64), grad.reshape(-1))
    assert (wrong - vec_v).abs().max() > 1e-3


def test_batched_preconditioning_matches_per_layer():
    def make():
        torch.manual_seed(2)
        return nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 3))

    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    finals = []
    for batched in (True, False):
        model = make()
        opt = KFAC(model, likelihood="categorical", lr=0.05, batched=batched,
                   generator=torch.Generator().manual_seed(0))
        for _ in range(3):
            opt.zero_grad()
            opt.backward(model(x), y, inputs=x)
            opt.step()
        if batched:
            assert any(len(members) == 2 for members, _, _ in opt._groups)
        finals.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(finals[0], finals[1], rtol=1e-5, atol=1e-6)


def test_sampled_label_fisher_converges_to_exact_model_fisher_and_empirical_does_not():
    torch.manual_seed(3)
    layer = nn.Linear(2, 3).double()
    with torch.no_grad():
        layer.weight.mul_(3.0)
    x = torch.randn(3, 2, dtype=torch.float64)
    probs = torch.softmax(layer(x), -1).detach()
    # exact model Fisher's G: the expectation over all labels, E_n[diag(p) - p pᵀ]
    G_exact = torch.stack([torch.diag(p) - torch.outer(p, p) for p in probs]).mean(0)
    y_obs = probs.argmin(-1)               # observed labels the model finds unlikely

    def estimate(fisher, copies, seed):
        opt = _layer_opt(layer, fisher=fisher, stat_decay=0.0, generator=torch.Generator().manual_seed(seed))
        xs = x.repeat(copies, 1)           # the same examples, one sampled label per copy
        with opt.capture():
            out = layer(xs)
        opt.update_stats(out, y_obs.repeat(copies))
        return opt.layers[0].G.clone()

    err = {m: (estimate("true", m, 7) - G_exact).norm() / G_exact.norm() for m in (10, 10000)}
    assert err[10000] < 0.03
    assert err[10000] < err[10] / 5
    G_emp = estimate("empirical", 10000, 7)
    assert (G_emp - G_exact).norm() / G_exact.norm() > 1.0   # a different matrix, not an estimate
    # empirical with more copies stays where it is: no convergence to the Fisher
    torch.testing.assert_close(G_emp, estimate("empirical", 10, 7))


def test_conv2d_whole_image_kernel_has_the_factors_of_the_equivalent_linear_layer():
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, kernel_size=3).double()
    lin = nn.Linear(18, 3).double()
    with torch.no_grad():
        lin.weight.copy_(conv.weight.reshape(3, -1))
        lin.bias.copy_(conv.bias)
    x = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    factors = []
    for model, inp in ((nn.Sequential(conv, nn.Flatten()), x), (lin, x.reshape(6, -1))):
        opt = KFAC(model, likelihood="categorical", fisher="empirical", stat_decay=0.0)
        with opt.capture():
            out = model(inp)
        opt.update_stats(out, y)
        factors.append((opt.layers[0].A, opt.layers[0].G))
    torch.testing.assert_close(factors[0][0], factors[1][0])
    torch.testing.assert_close(factors[0][1], factors[1][1])


def test_conv2d_patches_factor_is_the_mean_of_unfolded_patches():
    torch.manual_seed(5)
    conv = nn.Conv2d(2, 4, kernel_size=3, padding=1, stride=2).double()
    model = nn.Sequential(conv, nn.Flatten(), nn.LazyLinear(3)).double()
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    model(x)
    opt = KFAC(model, likelihood="categorical", fisher="empirical", stat_decay=0.0)
    with opt.capture():
        out = model(x)
    opt.update_stats(out, torch.tensor([0, 1, 2, 0]))
    patches = torch.nn.functional.unfold(x, 3, padding=1, stride=2).transpose(1, 2).reshape(-1, 18)
    patches = torch.cat([patches, torch.ones(patches.shape[0], 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(opt.layers[0].A, patches.t() @ patches / patches.shape[0])


def test_kl_clip_scales_the_update_to_the_kl_budget():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    lr, kl_clip = 1.0, 1e-6
    opt = KFAC(model, likelihood="categorical", lr=lr, momentum=0.0, kl_clip=kl_clip,
               fisher="empirical", eigh_dtype=torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    opt.backward(model(x), y, inputs=x)
    opt.step()
    _, vg = opt.precondition()
    nu = math.sqrt(kl_clip / (lr * lr * float(vg)))
    assert nu < 1
    assert opt.last_kl == pytest.approx(kl_clip, rel=1e-9)
    # the parameter change is -lr ν V layer by layer
    results, _ = opt.precondition()
    expected = [-lr * nu * t for layer, _, v in results for t in layer.split(v)]
    for p, b, e in zip(model.parameters(), before, expected):
        torch.testing.assert_close(p.detach() - b, e)


def _ggn(model, x, likelihood):
    """Exact Fisher (GGN) of the mean loss on x for the three likelihoods (D = output elements
    for bernoulli and gaussian, whose losses are means over them)."""
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach() for p in model.parameters())

    def f(*ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (x,))

    jac = torch.func.jacrev(f, argnums=tuple(range(len(params))))(*params)
    out = f(*params)
    n, k = out.shape
    J = torch.cat([j.reshape(n, k, -1) for j in jac], dim=2)
    if likelihood == "categorical":
        p = torch.softmax(out, -1)
        H, d = torch.diag_embed(p) - p[:, :, None] * p[:, None, :], 1
    elif likelihood == "bernoulli":
        s = torch.sigmoid(out)
        H, d = torch.diag_embed(s * (1 - s)), k
    else:
        H, d = torch.eye(k, dtype=out.dtype).expand(n, k, k), k
    return torch.einsum("nkp,nkl,nlq->pq", J, H, J) / (n * d)


def test_quadratic_rescale_minimises_the_exact_quadratic_model_over_alpha_mu():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 3, (20,))
    lam, wd = 0.1, 0.01
    opt = KFAC(model, likelihood="categorical", damping=lam, weight_decay=wd, rescale="quadratic",
               fisher="empirical", eigh_dtype=torch.float64)
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])
    prev = None
    for it in range(2):
        opt.zero_grad()
        opt.backward(model(x), y, inputs=x)
        theta = flat([p.detach() for p in model.parameters()]).clone()
        grad = flat([p.grad for p in model.parameters()]) + wd * theta
        Fm = _ggn(model, x, "categorical") + (lam + wd) * torch.eye(theta.numel(), dtype=torch.float64)
        opt.step()
        step = flat([p.detach() for p in model.parameters()]) - theta
        if prev is not None:
            # δ lies in span{Δ, δ_prev} and M's gradient vanishes in that span
            resid = Fm @ step + grad
            basis = torch.stack([step, prev], 1)
            assert (basis.t() @ resid).abs().max() < 1e-8 * (basis.abs().max() * grad.abs().max() + 1)
            M = 0.5 * step @ Fm @ step + grad @ step
            for da, dm in ((1e-2, 0), (-1e-2, 0), (0, 1e-2), (0, -1e-2)):
                alt = step * (1 + da) + dm * prev
                assert 0.5 * alt @ Fm @ alt + grad @ alt >= M - 1e-14
            assert opt.last_kl == pytest.approx(float(step @ (Fm - (lam + wd) * torch.eye(len(step), dtype=torch.float64)) @ step), rel=1e-6)
        else:
            # first step: α along Δ minimises M exactly: (F+λ)δ + ∇ ⟂ δ
            assert abs(float(step @ (Fm @ step + grad))) < 1e-10
        prev = step


def test_adaptive_damping_falls_where_the_quadratic_model_is_exact():
    torch.manual_seed(8)
    model = nn.Linear(4, 2).double()        # linear Gaussian regression: the loss is quadratic
    x = torch.randn(64, 4, dtype=torch.float64)
    y = x @ torch.randn(4, 2, dtype=torch.float64) + 0.1 * torch.randn(64, 2, dtype=torch.float64)
    opt = KFAC(model, likelihood="gaussian", damping=1e-3, rescale="quadratic", adaptive_damping=True,
               t_damping=1, eigh_dtype=torch.float64)
    for _ in range(5):
        opt.zero_grad()
        opt.backward(model(x), y, inputs=x)
        opt.step()
        assert opt.last_rho == pytest.approx(1.0, abs=0.05)
    assert opt.damping == pytest.approx(1e-3 * (19 / 20) ** 5, rel=1e-9)


def test_non_finite_gradient_skips_the_step_raises_damping_and_reports():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    opt = KFAC(model, likelihood="categorical", damping=1e-2, t_cov=1, t_inv=1)
    opt.zero_grad()
    opt.backward(model(x), y, inputs=x)
    opt.step()
    assert opt.skipped == 0
    before = [p.detach().clone() for p in model.parameters()]
    # a NaN input at a non-statistics step: the gradient is NaN, the factors still finite
    opt.group["t_cov"] = opt.group["t_inv"] = 100
    bad = x.clone()
    bad[0, 0] = float("nan")
    opt.zero_grad()
    opt.backward(model(bad), y, inputs=bad)
    opt.step()
    assert opt.skipped == 1
    assert opt.damping == pytest.approx(1e-1)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    events = opt.drain_events()
    assert len(events) == 1 and "non-finite update" in events[0] and "damping" in events[0]


def test_non_finite_factors_and_eigh_failure_skip_the_step(monkeypatch):
    torch.manual_seed(10)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    opt = KFAC(model, likelihood="categorical", t_cov=1, t_inv=1)
    opt.zero_grad()
    opt.backward(model(x), y, inputs=x)
    opt.step()
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    opt.backward(model(x), y, inputs=x)
    opt.layers[1].G[0, 0] = float("inf")
    opt.step()
    assert opt.skipped == 1 and "non-finite factors" in opt.drain_events()[0]
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    # the bad factor is replaced by the next statistics, and training resumes
    opt.zero_grad()
    opt.backward(model(x), y, inputs=x)
    opt.step()
    assert opt.skipped == 1 and torch.isfinite(opt.layers[1].G).all()
    assert not all(torch.equal(p, b) for p, b in zip(model.parameters(), before))

    def failing_eigh(*a, **k):
        raise torch.linalg.LinAlgError("the algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", failing_eigh)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    opt.backward(model(x), y, inputs=x)
    opt.step()
    assert opt.skipped == 2 and "eigendecomposition failed" in opt.drain_events()[0]
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_losses_and_output_hessian_match_autograd():
    torch.manual_seed(11)
    for lik, target in (("categorical", torch.randint(0, 4, (5,))), ("bernoulli", torch.rand(5, 4)),
                        ("gaussian", torch.randn(5, 4))):
        f = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
        t = target.double() if lik != "categorical" else target
        # Fisher of the likelihood in f = expected Hessian = its Hessian (these are canonical links)
        h = torch.autograd.functional.hessian(lambda z: get_likelihood(lik).nll_sum(z, t), f)
        u, v = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
        expected = torch.einsum("ij,ijkl,kl->", u, h, v)
        torch.testing.assert_close(get_likelihood(lik).fisher_product(f.detach(), u, v), expected)
        d = 1 if lik == "categorical" else 4
        assert float(mean_loss(lik, f, t)) * 5 * d == pytest.approx(float(get_likelihood(lik).nll_sum(f, t)))


@pytest.mark.parametrize("lik", ["categorical", "bernoulli", "gaussian"])
def test_closed_form_loss_gradient_and_stacked_fisher_matvec_match_autograd(lik):
    """loss_grad = ∂ mean_loss/∂f (the residual over N·D) and fisher_matvec_and_grad on
    tangents stacked along a leading dim = per-tangent fisher_matvec, for the three likelihoods."""
    torch.manual_seed(12)
    f = torch.randn(6, 4, dtype=torch.float64)
    t = {"categorical": torch.randint(0, 4, (6,)), "bernoulli": torch.rand(6, 4, dtype=torch.float64),
         "gaussian": torch.randn(6, 4, dtype=torch.float64)}[lik]
    L = get_likelihood(lik)
    fr = f.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(L.mean_loss(fr, t), fr)
    torch.testing.assert_close(L.loss_grad(f, t), expected, rtol=1e-13, atol=1e-15)
    u = torch.randn(2, 6, 4, dtype=torch.float64)
    hu, grad = L.fisher_matvec_and_grad(f, u, t)
    torch.testing.assert_close(grad, expected, rtol=1e-13, atol=1e-15)
    for i in range(2):
        torch.testing.assert_close(hu[i], L.fisher_matvec(f, u[i]), rtol=1e-13, atol=1e-15)
    if lik == "categorical":                    # class probabilities as the target
        q = torch.softmax(torch.randn(6, 4, dtype=torch.float64), -1)
        (eq,) = torch.autograd.grad(L.mean_loss(fr, q), fr)
        torch.testing.assert_close(L.loss_grad(f, q), eq, rtol=1e-13, atol=1e-15)


def test_momentum_and_weight_decay_follow_sgd_on_the_preconditioned_gradient():
    """kl_clip rule off (ν = 1): the update is torch.optim.SGD(momentum, weight_decay)
    applied to V, as in the reference implementations."""
    torch.manual_seed(12)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    twin = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    twin.load_state_dict(model.state_dict())
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    lr, mom, wd = 0.05, 0.9, 0.01
    opt = KFAC(model, likelihood="categorical", lr=lr, momentum=mom, weight_decay=wd, kl_clip=0.0,
               t_cov=1, t_inv=1, eigh_dtype=torch.float64)
    ref = torch.optim.SGD(twin.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    for _ in range(3):
        opt.zero_grad()
        opt.backward(model(x), y, inputs=x)
        opt.step()
        results, _ = opt.precondition()            # this step's V (same grads, same inverses)
        for p, v in zip(twin.parameters(), [t for layer, _, vv in results for t in layer.split(vv)]):
            p.grad = v.clone()
        ref.step()
        for p, q in zip(model.parameters(), twin.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_sequential_jvp_from_captured_activations_equals_forward_mode_autodiff():
    torch.manual_seed(13)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3),
                          nn.Tanh(), nn.Identity()).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    opt = KFAC(model, likelihood="categorical", rescale="quadratic")
    assert opt._plan is not None
    opt.zero_grad()
    opt.backward(model(x), y, inputs=x)
    params = list(model.parameters())
    tangents = [[torch.randn_like(p) for p in params] for _ in range(2)]
    out, jvs = opt._jvp_sequential([{id(p): t for p, t in zip(params, ts)} for ts in tangents], 7)
    for i, ts in enumerate(tangents):
        ref_out, ref_jv = opt._jvp(x[:7], ts, params)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(jvs[i], ref_jv)


@pytest.mark.parametrize("likelihood", ["categorical", "bernoulli", "gaussian"])
def test_quad_batch_fits_alpha_mu_to_the_quadratic_model_of_the_sub_batch(likelihood):
    """quad_batch = k: (α, μ) minimise ½ δᵀ(F_k + λI)δ + ∇L_kᵀδ over span{Δ, δ_prev}, F_k and
    ∇L_k the exact Fisher and the gradient of the mean loss on the batch's first k examples
    (Δ stays the whole batch's); with k the batch size (or 0) the fit is the whole batch's,
    bit for bit."""
    n, k, lam = 24, 8, 0.05
    x = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = {"categorical": torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(2)),
         "bernoulli": (torch.rand(n, 3, generator=torch.Generator().manual_seed(2)) < 0.5).double(),
         "gaussian": torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))}[likelihood]
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])
    coefs = {}
    for qb in (0, n, k):
        torch.manual_seed(7)
        model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
        opt = KFAC(model, likelihood=likelihood, damping=lam, rescale="quadratic", fisher="empirical",
                   quad_batch=qb, eigh_dtype=torch.float64)
        prev, fits = None, []
        for it in range(3):
            opt.zero_grad()
            opt.backward(model(x), y, inputs=x)
            theta = flat([p.detach() for p in model.parameters()]).clone()
            grad = flat([p.grad for p in model.parameters()])
            if 0 < qb < n:
                grad = flat(torch.autograd.grad(mean_loss(likelihood, model(x[:qb]), y[:qb]),
                                                list(model.parameters())))
            Fm = _ggn(model, x[:qb] if 0 < qb < n else x, likelihood) + lam * torch.eye(theta.numel(), dtype=torch.float64)
            opt.step()
            step = flat([p.detach() for p in model.parameters()]) - theta
            fits.append((opt.last_alpha, opt.last_mu))
            basis = torch.stack([step] + ([prev] if prev is not None else []), 1)
            resid = Fm @ step + grad                      # M's gradient: zero in the span
            assert (basis.t() @ resid).abs().max() < 1e-9 * (1 + grad.abs().max() * basis.abs().max())
            assert opt.last_kl == pytest.approx(float(step @ (Fm - lam * torch.eye(len(step), dtype=torch.float64)) @ step), rel=1e-6)
            prev = step
        coefs[qb] = fits
    assert coefs[n] == coefs[0]
    assert coefs[k] != coefs[0]             # the sub-batch's curvature is a different matrix


@pytest.mark.parametrize("likelihood", ["categorical", "bernoulli", "gaussian"])
@pytest.mark.parametrize("qb, wd", [(8, 0.0), (0, 0.0), (8, 0.01)])
@pytest.mark.parametrize("qe", [1, 4])
def test_fast_quadratic_step_equals_the_reference_implementation(likelihood, qb, wd, qe):
    """_quadratic_fast (stacked JVP from the captured activations, one host read, closed-form
    gradient terms) takes the same steps as _quadratic_step (flat vectors, autograd): the
    parameters, (α, μ), δᵀFδ, ρ and the LM damping agree to 1e-10 over steps that refit the
    factors, change λ and carry δ_prev (ρ to 1e-8); switching paths mid-run keeps δ_prev.
    With quad_every = 4 both paths fit on the same steps and take the same steps between
    fits (the estimated model, its fallbacks to a fit)."""
    n = 24
    steps, t_damping, t_inv = (9, 2, 3) if qe == 1 else (24, 4, 7)

    def batch(gen):
        x = torch.randn(n, 3, dtype=torch.float64, generator=gen)
        return x, {"categorical": lambda: torch.randint(0, 3, (n,), generator=gen),
                   "bernoulli": lambda: (torch.rand(n, 3, generator=gen) < 0.5).double(),
                   "gaussian": lambda: torch.randn(n, 3, dtype=torch.float64, generator=gen)}[likelihood]()

    x = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = {"categorical": torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(2)),
         "bernoulli": (torch.rand(n, 3, generator=torch.Generator().manual_seed(2)) < 0.5).double(),
         "gaussian": torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))}[likelihood]
    runs = {}
    for mode in ("reference", "fast", "mixed"):
        torch.manual_seed(7)
        gen = torch.Generator().manual_seed(1)        # quad_every > 1: a fresh batch every step
        model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 5),
                              nn.ReLU(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 3)).double()
        opt = KFAC(model, likelihood=likelihood, damping=0.05, rescale="quadratic", adaptive_damping=True,
                   t_damping=t_damping, t_cov=2, t_inv=t_inv, weight_decay=wd, quad_batch=qb,
                   quad_every=qe, eigh_dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        used, trace = [], []
        real = opt._quadratic_fast
        opt._quadratic_fast = lambda: used.append(True) or real()
        for it in range(steps):
            opt.fast_quadratic = mode == "fast" or (mode == "mixed" and it % 3 != 1)
            if qe > 1:
                x, y = batch(gen)
            opt.zero_grad()
            opt.backward(model(x), y, inputs=x)
            opt.step()
            trace.append((opt.last_alpha, opt.last_mu, opt.last_kl, opt.last_rho, opt.damping, opt.quad_fits))
        runs[mode] = ([p.detach().clone() for p in model.parameters()], trace, len(used))
    ref_params, ref_trace, n_ref = runs["reference"]
    assert n_ref == 0
    n_fits = ref_trace[-1][5]
    # quad_every = 4: the 9 scheduled fits (steps 0, 3, 7, ..., 23 by LM and the schedule, 14
    # and 21 by the eigendecompositions) and some fallbacks, but steps between fits were taken
    assert n_fits == steps if qe == 1 else 9 <= n_fits <= steps - 2
    for mode in ("fast", "mixed"):
        params, trace, n_fast = runs[mode]
        assert n_fast == (steps if mode == "fast" else steps - len(range(1, steps, 3)))
        assert math.isfinite(trace[-1][3])                     # ρ was evaluated
        # 24 steps on fresh batches amplify rounding more than 9 on one (at quad_every = 1 the
        # two paths' parameters part by 1e-8 relative over such a run): tolerances to match
        tol = 1e-10 if qe == 1 else 1e-8
        for p, r in zip(params, ref_params):
            torch.testing.assert_close(p, r, rtol=tol, atol=tol * 1e-2)
        for t, r in zip(trace, ref_trace):
            assert t[:3] + t[4:] == pytest.approx(r[:3] + r[4:], rel=tol, abs=1e-14)
            # ρ divides a difference of two losses of the sub-batch: rounding grows by L / ΔL
            assert t[3] == pytest.approx(r[3], rel=1e-8, nan_ok=True)


@pytest.mark.parametrize("fast", [True, False])
def test_quad_every_fits_on_the_schedule_and_takes_fisher_free_steps_between(fast):
    """quad_every = 3 (LM every 6 steps): every scheduled step (the first, steps + 1 ≡ 0 mod 3,
    the LM steps, the eigendecompositions) evaluates the model — one pass of Fisher-vector
    products — and only fitted steps do; a step between fits computes none and moves the
    parameters by αΔ + μ δ_prev with this step's Δ = -V and the last step's δ, 0 < α,
    0 ≤ μ < 1, its reported δᵀFδ at most twice the last fit's; ρ changes only on fits."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    opt = KFAC(model, likelihood="categorical", damping=0.05, rescale="quadratic", adaptive_damping=True,
               t_damping=6, t_cov=2, t_inv=10, quad_batch=16, quad_every=3, eigh_dtype=torch.float64,
               generator=torch.Generator().manual_seed(3))
    opt.fast_quadratic = fast
    calls = []
    if fast:
        lik = opt.likelihood
        real = lik.fisher_matvec_and_grad
        lik.fisher_matvec_and_grad = lambda *a: calls.append(1) or real(*a)
    else:
        real = opt._jvp_sequential
        opt._jvp_sequential = lambda *a: calls.append(1) or real(*a)
    gen = torch.Generator().manual_seed(1)
    params = list(model.parameters())
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])
    prev, kl_fit, rho, between = None, None, float("nan"), 0
    for s in range(40):
        x = torch.randn(48, 4, dtype=torch.float64, generator=gen)
        y = torch.randint(0, 3, (48,), generator=gen)
        opt.zero_grad()
        opt.backward(model(x), y, inputs=x)
        before, fits, n_calls = flat([p.detach() for p in params]).clone(), opt.quad_fits, len(calls)
        opt.step()
        step = flat([p.detach() for p in params]) - before
        fitted = opt.quad_fits == fits + 1
        assert opt.quad_fits - fits in (0, 1)
        assert len(calls) - n_calls == (1 if fitted else 0)
        if s == 0 or (s + 1) % 3 == 0 or (s + 1) % 6 == 0 or s % 10 == 0:
            assert fitted, f"step {s} is scheduled"
        if fitted:
            kl_fit = opt.last_kl
        else:
            between += 1
            assert opt.last_rho == rho or (math.isnan(opt.last_rho) and math.isnan(rho))
            assert opt.last_alpha > 0 and 0 <= opt.last_mu < 1 and 0 < opt.last_kl <= 2 * kl_fit
            # Δ = -V from this step's gradient and inverses (precondition reads, changes nothing)
            results, _ = opt.precondition()
            v = flat([t for layer, _, vv in results for t in layer.split(vv)])
            torch.testing.assert_close(step, -opt.last_alpha * v + opt.last_mu * prev, rtol=1e-10, atol=1e-14)
        rho, prev = opt.last_rho, step
    assert between >= 5          # of the 24 unscheduled steps (the others fell back to a fit)


def test_a_step_between_fits_minimises_the_estimated_model_over_the_momentum_range():
    """_reuse_coefficients (quad_every > 1): on the estimated 2x2 model M(α, μ) = ½ xᵀCx + bᵀx
    (C00 = κ⟨V, ∇W⟩ + λ‖Δ‖², C11 = the last δᵀFδ + λ‖δ_prev‖², C01 = ρ_F sqrt(C00_F C11_F) -
    λΔᵀδ_prev, b = (-⟨V, ∇W⟩, gᵀδ_prev)) the step is the free minimiser when its μ is in
    [0, 1), else the minimiser on the edge μ = 0 (μ < 0) or μ = μ_max (μ ≥ 1) — no point of the
    strip 0 ≤ μ ≤ μ_max below it —, shortened along its ray to δᵀFδ = 2× the last fit's when
    it predicts more; None when the block is not positive definite or α ≤ 0."""
    from mletui.engine.optim.kfac import _REUSE_MU_MAX

    opt = KFAC(nn.Sequential(nn.Linear(2, 2)), rescale="quadratic", quad_every=5, damping=1e-3)
    kappa, corr, kl_prev = 1.3, 0.5, 0.8
    vg, q00, q01, q11 = 1.1, 0.7, 0.2, 0.9
    lam = 1e-3
    c00f, c11f = kappa * vg, kl_prev
    c01f = corr * math.sqrt(c00f * c11f)
    c = torch.tensor([[c00f + lam * q00, c01f - lam * q01], [c01f - lam * q01, c11f + lam * q11]],
                     dtype=torch.float64)

    def model_value(x, b1):
        x = torch.as_tensor(x, dtype=torch.float64)
        return float(0.5 * x @ c @ x + torch.tensor([-vg, b1], dtype=torch.float64) @ x)

    def free(b1):
        return torch.linalg.solve(c, -torch.tensor([-vg, b1], dtype=torch.float64)).tolist()

    cf = torch.tensor([[c00f, c01f], [c01f, c11f]], dtype=torch.float64)
    grid_a = torch.linspace(-1, 4, 501, dtype=torch.float64)
    grid_m = torch.linspace(0, _REUSE_MU_MAX, 91, dtype=torch.float64)
    cases = {}
    for b1 in (-0.6, 0.4, -1.5):                 # free minimiser μ in [0, 1), below 0, above 1
        opt._quad_curv = (kappa, corr, kl_prev, 100.0)
        alpha, mu, kl = opt._reuse_coefficients(vg, b1, q00, q01, q11)
        fa, fm = free(b1)
        cases[b1] = fm
        if 0 <= fm < 1:
            assert (alpha, mu) == pytest.approx((fa, fm), rel=1e-12)
        else:
            assert mu == (0.0 if fm < 0 else _REUSE_MU_MAX)
            assert alpha == pytest.approx((vg - float(c[0, 1]) * mu) / float(c[0, 0]), rel=1e-12)
            a, m = torch.meshgrid(grid_a, grid_m, indexing="ij")
            x = torch.stack([a.reshape(-1), m.reshape(-1)], 1)
            vals = 0.5 * ((x @ c) * x).sum(1) + x @ torch.tensor([-vg, b1], dtype=torch.float64)
            assert model_value((alpha, mu), b1) <= float(vals.min()) + 1e-12
        assert kl == pytest.approx(float(torch.tensor([alpha, mu], dtype=torch.float64) @ cf @ torch.tensor([alpha, mu], dtype=torch.float64)),
                                   rel=1e-12)
        assert alpha > 0 and 0 <= mu < 1 and model_value((alpha, mu), b1) < 0
    assert cases[-0.6] >= 0 and cases[0.4] < 0 and cases[-1.5] >= 1   # the three regimes were met
    # the δᵀFδ bound: the same direction, shortened to 2× the last fit's
    opt._quad_curv = (kappa, corr, kl_prev, 100.0)
    a0, m0, kl0 = opt._reuse_coefficients(vg, -0.6, q00, q01, q11)
    opt._quad_curv = (kappa, corr, kl_prev, kl0 / 4)
    a1, m1, kl1 = opt._reuse_coefficients(vg, -0.6, q00, q01, q11)
    assert kl1 == pytest.approx(kl0 / 2, rel=1e-12)
    assert (a1 / a0, m1 / m0) == pytest.approx((math.sqrt(0.5), math.sqrt(0.5)), rel=1e-12)
    assert model_value((a1, m1), -0.6) < 0
    # no estimate: a block that is not positive definite (|correlation| > 1), no curvature along Δ
    opt._quad_curv = (kappa, 3.0, kl_prev, 100.0)
    assert opt._reuse_coefficients(vg, -0.6, q00, q01, q11) is None
    opt._quad_curv = (kappa, corr, kl_prev, 100.0)
    assert opt._reuse_coefficients(-vg, -0.6, q00, q01, q11) is None


def test_quad_every_below_one_is_refused():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="quad_every"):
        KFAC(model, rescale="quadratic", quad_every=0)
