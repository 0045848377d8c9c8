"""Boltzmann machines: the exact, pl and mpf gradients against autograd of objectives written
independently (explicit flips, a dense logsumexp over every state), streaming enumeration
against the dense one, and the Gibbs samplers' stationary laws against enumeration by
chi-square (with a deliberately wrong conditional that must fail the same test)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats as sps

from mletui.engine.exact import boltzmann as exact
from mletui.engine.models.boltzmann import FVBM, RBM, Stream, lattice_pairs

pytestmark = pytest.mark.usefixtures("one_thread")


def _fvbm(n, seed, scale=0.5, graph="dense", L=None):
    g = torch.Generator().manual_seed(seed)
    m = FVBM.zeros(n, graph, L)
    m.theta.copy_(torch.randn(m.theta.shape, generator=g, dtype=torch.float64) * scale)
    m.h.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.3)
    return m


def _rbm(nv, nh, seed, scale=0.7):
    g = torch.Generator().manual_seed(seed)
    return RBM(torch.randn(nv, nh, generator=g, dtype=torch.float64) * scale,
               torch.randn(nv, generator=g, dtype=torch.float64) * 0.5,
               torch.randn(nh, generator=g, dtype=torch.float64) * 0.5)


def _spins(M, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (M, n), generator=g).to(torch.float64) * 2 - 1


def _bits(M, n, seed):
    return (_spins(M, n, seed) + 1) / 2


def _all_states(n, spins):
    k = torch.arange(1 << n)
    b = ((k[:, None] >> torch.arange(n)) & 1).to(torch.float64)
    return 2 * b - 1 if spins else b


# Independent objectives, as functions of leaf tensors, for autograd ---------------------------
def _energy(theta, h, iu, ju, S):
    return -((S[:, iu] * S[:, ju]) @ theta + S @ h)


def _flipped(X, i, spins):
    Y = X.clone()
    Y[:, i] = -Y[:, i] if spins else 1 - Y[:, i]
    return Y


def _fvbm_objective(method, theta, h, m, X):
    E = lambda S: _energy(theta, h, m.iu, m.ju, S)
    if method == "exact":
        return E(X).mean() + torch.logsumexp(-E(_all_states(m.n, True)), 0)
    total = 0.0
    for i in range(m.n):
        d = E(X) - E(_flipped(X, i, True))             # E(x) - E(x^(i))
        total = total + (torch.log(torch.sigmoid(-d)) if method == "pl" else torch.exp(0.5 * d))
    return (-1 if method == "pl" else 1) * total.mean()


def _rbm_objective(method, W, b, c, X):
    F = lambda V: -(V @ b + torch.nn.functional.softplus(V @ W + c).sum(1))
    if method == "exact":
        nv, nh = W.shape
        A = _all_states(nv + nh, False)
        V, Z = A[:, :nv], A[:, nv:]
        return F(X).mean() + torch.logsumexp(((V @ W) * Z).sum(1) + V @ b + Z @ c, 0)
    total = 0.0
    for i in range(X.shape[1]):
        d = F(X) - F(_flipped(X, i, False))
        total = total + (torch.log(torch.sigmoid(-d)) if method == "pl" else torch.exp(0.5 * d))
    return (-1 if method == "pl" else 1) * total.mean()


@pytest.mark.parametrize("method", ["exact", "pl", "mpf"])
@pytest.mark.parametrize("graph", ["dense", "lattice"])
def test_fvbm_gradients_equal_autograd_of_their_objectives(method, graph):
    n = 8 if graph == "dense" else 16
    if graph == "lattice" and method == "exact":
        n = 16                                         # 65,536 states, still enumerable
    m = _fvbm(n, 1, graph=graph, L=4 if graph == "lattice" else None)
    X = _spins(40, n, 2)
    if method == "exact":
        ln_z, model_stats = exact.moments(m)
        grads = m.ml_grad(m.stats(X), model_stats)
    else:
        _, grads = m.site_loss(X, method)
    theta = m.theta.clone().requires_grad_()
    h = m.h.clone().requires_grad_()
    obj = _fvbm_objective(method, theta, h, m, X)
    obj.backward()
    torch.testing.assert_close(grads[0], theta.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[1], h.grad, rtol=1e-10, atol=1e-12)
    if method != "exact":
        loss, _ = m.site_loss(X, method)
        assert float(loss) == pytest.approx(float(obj.detach()), rel=1e-12)


@pytest.mark.parametrize("method", ["exact", "pl", "mpf"])
@pytest.mark.parametrize("shape", [(6, 4), (4, 6)])   # enumerates hidden, then visible
def test_rbm_gradients_equal_autograd_of_their_objectives(method, shape):
    nv, nh = shape
    m = _rbm(nv, nh, 3)
    X = _bits(30, nv, 4)
    if method == "exact":
        _, model_stats = exact.moments(m)
        grads = m.ml_grad(m.stats(X), model_stats)
    else:
        loss, grads = m.flip_loss(X, method, chunk_elems=7 * nv * nh)   # several row chunks
    leaves = [t.clone().requires_grad_() for t in m.parameters()]
    obj = _rbm_objective(method, *leaves, X)
    obj.backward()
    for g, leaf in zip(grads, leaves):
        torch.testing.assert_close(g, leaf.grad, rtol=1e-10, atol=1e-12)
    if method != "exact":
        assert float(loss) == pytest.approx(float(obj.detach()), rel=1e-12)


def test_streamed_enumeration_equals_dense_logsumexp(monkeypatch):
    monkeypatch.setattr(exact, "CHUNK", 7)            # many ragged chunks
    f = _fvbm(9, 5, scale=1.5)
    dense = float(torch.logsumexp(-f.energy(_all_states(9, True)), 0))
    assert exact.log_z(f) == pytest.approx(dense, abs=1e-12)
    r = _rbm(7, 5, 6, scale=2.0)
    A = _all_states(12, False)
    V, Z = A[:, :7], A[:, 7:]
    dense = float(torch.logsumexp(((V @ r.W) * Z).sum(1) + V @ r.b + Z @ r.c, 0))
    assert exact.log_z(r) == pytest.approx(dense, abs=1e-12)
    flipped = RBM(r.W.T.contiguous(), r.c, r.b)        # the same law with the layers swapped
    assert exact.log_z(flipped) == pytest.approx(dense, abs=1e-12)


def test_exact_refuses_more_than_twenty_enumerated_units():
    with pytest.raises(ValueError, match="<= 20 units.*= 21"):
        exact.log_z(RBM(torch.zeros(21, 30), torch.zeros(21), torch.zeros(30)))
    assert exact.enumerable(RBM(torch.zeros(784, 20), torch.zeros(784), torch.zeros(20)))


def test_lattice_pairs_are_the_torus_bonds_in_checkerboard_layout():
    iu, ju = lattice_pairs(4)
    assert iu.numel() == 32 and len({(min(a, b), max(a, b)) for a, b in zip(iu.tolist(), ju.tolist())}) == 32
    assert (iu[5].item(), ju[5].item()) == (5, 6)       # right bond of (1, 1)
    assert (iu[16 + 13].item(), ju[16 + 13].item()) == (13, 1)   # down bond of (3, 1) wraps


# Stationary laws by chi-square ---------------------------------------------------------------
def _chi_square_p(counts, probs):
    expected = probs * counts.sum()
    keep = expected > 5
    obs, exp = counts[keep], expected[keep]
    if not keep.all():                                 # pool the sparse cells into one
        obs = torch.cat([obs, counts[~keep].sum().reshape(1)])
        exp = torch.cat([exp, expected[~keep].sum().reshape(1)])
    stat = float(((obs - exp) ** 2 / exp).sum())
    return float(sps.chi2.sf(stat, obs.numel() - 1))


def _index(X):
    return (X.round().long() * (1 << torch.arange(X.shape[1]))).sum(1)


R = 20_000


def test_sequential_gibbs_on_n5_fvbm_has_the_enumerated_law_and_a_wrong_conditional_fails():
    m = _fvbm(5, 7, scale=0.6)
    probs = exact.probabilities(m)
    for cond, ok in ((None, True), (lambda f: torch.sigmoid(f), False)):   # sigma(f): the missing 2
        S = _spins(R, 5, 8)
        m.gibbs(S, 15, Stream.new(9, "cpu"), conditional=cond)
        counts = torch.bincount(_index((S + 1) / 2), minlength=32).to(torch.float64)
        p = _chi_square_p(counts, probs)
        assert (p > 1e-4) if ok else (p < 1e-12), p


def test_block_gibbs_on_4x3_rbm_has_the_enumerated_joint_law_and_a_wrong_conditional_fails():
    m = _rbm(4, 3, 10, scale=1.0)
    probs = exact.probabilities(m)
    stream = Stream.new(11, "cpu")
    wrong = RBM(m.W, m.b, -m.c)                         # p(z | v) with the hidden bias negated
    for hidden_model, ok in ((m, True), (wrong, False)):
        V = _bits(R, 4, 12)
        for _ in range(20):
            Z, _ = hidden_model.sample_hidden(V, stream)
            V, _ = m.sample_visible(Z, stream)
        Z, _ = hidden_model.sample_hidden(V, stream)
        counts = torch.bincount(_index(torch.cat([V, Z], 1)), minlength=128).to(torch.float64)
        p = _chi_square_p(counts, probs)
        assert (p > 1e-4) if ok else (p < 1e-12), p


def test_cpu_pcd_chains_carrying_their_hidden_units_have_the_enumerated_joint_law():
    """The CPU rbm's PCD chunks keep (v, z) from update to update and share the z-half with the
    statistics' product: at lr = 0 (the parameters fixed) the chains' (v, z) after 20 updates
    follow the 4x3 rbm's joint law, across chunk rollovers (6 updates a chunk here); paired
    with another chain's hidden units (the product of the marginals) they do not."""
    from mletui.engine.models import boltzmann_learning as bl

    m = _rbm(4, 3, 10, scale=1.0)
    probs = exact.probabilities(m)
    ln = bl.Learner("pcd", m.clone(), "sgd", _bits(R, 4, 12), Stream.new(13, "cpu"))
    p = {"lr": 0.0, "momentum": 0.0, "weight_decay": 0.0, "gibbs_steps": 1, "batch_size": 10}
    ln.build_optimizer(p)
    assert ln.chunked
    X = _bits(10, 4, 14)
    for _ in range(20):
        ln.update(X, p)
    chains, hidden = ln.hidden
    assert chains is ln.chains and ln.chunk.C < 20
    for Z, ok in ((hidden, True), (hidden[torch.randperm(R, generator=torch.Generator().manual_seed(15))], False)):
        counts = torch.bincount(_index(torch.cat([ln.chains, Z], 1)), minlength=128).to(torch.float64)
        p_value = _chi_square_p(counts, probs)
        assert (p_value > 1e-4) if ok else (p_value < 1e-12), p_value


def test_checkerboard_gibbs_on_4x4_lattice_matches_exact_pair_moments():
    m = _fvbm(16, 13, scale=0.4, graph="lattice", L=4)
    _, (pairs, means) = exact.moments(m)
    S = _spins(8000, 16, 14)
    m.gibbs(S, 30, Stream.new(15, "cpu"))
    got_pairs, got_means = m.stats(S)
    se = 1.0 / math.sqrt(S.shape[0])                   # |s_i s_j| = 1: sd <= 1
    assert float((got_pairs - pairs).abs().max()) < 4.5 * se
    assert float((got_means - means).abs().max()) < 4.5 * se
    # annealed: p*_beta with base fields is the fvbm (beta theta, beta h + (1 - beta) h_A)
    base = torch.linspace(-0.5, 0.5, 16, dtype=torch.float64)
    target = m.like(0.4 * m.theta, 0.4 * m.h + 0.6 * base)
    _, (pairs, means) = exact.moments(target)
    S = _spins(8000, 16, 16)
    m.gibbs(S, 30, Stream.new(17, "cpu"), beta=0.4, h_base=base)
    got_pairs, got_means = m.stats(S)
    assert float((got_pairs - pairs).abs().max()) < 4.5 * se
    assert float((got_means - means).abs().max()) < 4.5 * se


def test_exact_samples_follow_the_enumerated_law():
    m = _fvbm(5, 16, scale=0.8)
    X = exact.sample(m, 30_000, torch.Generator().manual_seed(17))
    counts = torch.bincount(_index((X + 1) / 2), minlength=32).to(torch.float64)
    assert _chi_square_p(counts, exact.probabilities(m)) > 1e-4


def test_annealed_gibbs_leaves_the_intermediate_law_invariant():
    """At beta = 0.4 the moves with the base fields must sample p*_beta (checked on N = 5)."""
    m = _fvbm(5, 18, scale=0.7)
    base = torch.tensor([0.3, -0.5, 0.1, 0.8, -0.2], dtype=torch.float64)
    S_all = _all_states(5, True)
    probs = torch.softmax(m.log_p_star(S_all, 0.4, base), 0)
    S = _spins(R, 5, 19)
    m.gibbs(S, 15, Stream.new(20, "cpu"), beta=0.4, h_base=base)
    counts = torch.bincount(_index((S + 1) / 2), minlength=32).to(torch.float64)
    assert _chi_square_p(counts, probs) > 1e-4
    r = _rbm(4, 3, 21)
    b_base = torch.tensor([0.4, -0.3, 0.2, -0.6], dtype=torch.float64)
    probs = torch.softmax(r.log_p_star(_all_states(4, False), 0.4, b_base), 0)
    V = _bits(R, 4, 22)
    V = r.gibbs(V, 20, Stream.new(23, "cpu"), beta=0.4, b_base=b_base)
    counts = torch.bincount(_index(V), minlength=16).to(torch.float64)
    assert _chi_square_p(counts, probs) > 1e-4


def test_fused_rbm_update_equals_the_generic_gibbs_and_sgd_step():
    from mletui.engine.kernels import boltzmann as kb
    from mletui.engine.models.boltzmann_learning import rbm_sgd_update

    ref = _rbm(6, 4, 30)
    fused = ref.clone()
    opt = torch.optim.SGD([{"params": [ref.W], "weight_decay": 0.01}, {"params": [ref.b, ref.c], "weight_decay": 0.0}],
                          lr=0.1, momentum=0.5)
    bufs = [torch.zeros_like(t) for t in fused.parameters()]
    g = torch.Generator().manual_seed(31)
    v_ref = v_fused = _bits(9, 6, 32)
    for update in range(3):
        X = _bits(12, 6, 33 + update)
        uh, uv = torch.rand(2, 9, 4, generator=g), torch.rand(2, 9, 6, generator=g)
        V = v_ref
        for k in range(2):
            Z, _ = kb.sample_layer_torch(V @ ref.W, ref.c, uniforms=uh[k])
            V, _ = kb.sample_layer_torch(Z @ ref.W.T, ref.b, uniforms=uv[k])
        energy_ref = float(ref.free_energy(V).mean()) / 6           # at the parameters before the step
        for t, grad in zip(ref.parameters(), ref.ml_grad(ref.stats(X), ref.stats(V))):
            t.grad = grad
        opt.step()
        flips_ref = float((V != v_ref).to(torch.float64).mean() / 2)
        v_ref = V
        v_fused, flips, energy, z = rbm_sgd_update(fused.W, fused.b, fused.c, *bufs, X, v_fused, uh, uv, 0.1, 0.5, 0.01)
        assert z is None
        assert torch.equal(v_fused, v_ref)
        assert float(flips) / (9 * 6 * 2) == pytest.approx(flips_ref)
        assert float(energy) == pytest.approx(energy_ref, rel=1e-12)
        for a, b in zip(fused.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def _hidden_units(model, v, stream):
    """The z a PCD chunk draws for chains that arrive without one: the layer sampler's twin
    on one uniform block of the learner's stream."""
    from mletui.engine.kernels import boltzmann as kb

    u = stream.uniform_(torch.empty(v.shape[0], model.nh, dtype=v.dtype))
    return kb.sample_layer_torch(v @ model.W, model.c, uniforms=u, want_probs=False)[0]


@pytest.mark.parametrize("steps, batch, dtype", [(1, 9, torch.float64), (2, 12, torch.float64), (1, 10, torch.float32)])
def test_chunked_pcd_learner_equals_the_fused_update_with_the_same_uniforms(monkeypatch, steps, batch, dtype):
    """The CPU rbm PCD path (PCDChunk: augmented parameters, a chunk's uniforms drawn up front
    from the stream's PCG64 in the model's dtype, energies and flips accounted for at flush)
    against rbm_sgd_update fed the same uniforms,
    across two chunk rollovers, with a batch-size change (a new chunk) and an observation
    (flush) in the middle of a chunk: equal chains, parameters to 1e-12, the energy ring and
    the flip rate alike (float32: to float32's precision)."""
    from mletui.engine.models import boltzmann_learning as bl

    monkeypatch.setattr(bl, "CHUNK_UPDATES", 3)
    nv, nh, R = 6, 4, 9
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    ref = _rbm(nv, nh, 40).clone(dtype)
    ln = bl.Learner("pcd", ref.clone(), "sgd", _bits(R, nv, 41).to(dtype), Stream.new(42, "cpu"))
    p = {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.01, "gibbs_steps": steps, "batch_size": batch}
    ln.build_optimizer(p)
    twin = Stream.new(42, "cpu")
    bufs = [torch.zeros_like(t) for t in ref.parameters()]
    v_ref, U, t, energies, flips = _bits(R, nv, 41).to(dtype), None, 0, [], []
    z_ref = _hidden_units(ref, v_ref, twin)         # once, for chains that arrive without z
    sizes = [batch] * 4 + [5] * 4
    for update, M in enumerate(sizes):
        if U is None or t == 3 or (update and M != sizes[update - 1]):
            U, t = twin.uniform_(torch.empty((3, steps, R, nh + nv), dtype=dtype)), 0
        X = _bits(M, nv, 50 + update).to(dtype)
        ln.update(X, {**p, "batch_size": M})
        v_new, f, e, z_ref = bl.rbm_sgd_update(ref.W, ref.b, ref.c, *bufs, X, v_ref, U[t, :, :, :nh], U[t, :, :, nh:],
                                               0.1, 0.5, 0.01, z0=z_ref)
        t += 1
        flips.append(float(f) / (R * nv * steps))
        energies.append(float(e))
        v_ref = v_new
        assert torch.equal(ln.chains, v_ref)
        assert torch.equal(ln.hidden[1], z_ref)     # the hidden units cross the new chunk
        for a, b in zip(ln.model.parameters(), ref.parameters()):
            assert a.dtype == dtype
            torch.testing.assert_close(a, b, **tol)
        if update == 1:
            assert ln.take_flip_rate() == pytest.approx(sum(flips) / 2, rel=tol["rtol"])
    assert ln.take_flip_rate() == pytest.approx(sum(flips[2:]) / (len(flips) - 2), rel=tol["rtol"])
    xs, ys = ln.energy_trace()
    assert xs == list(range(1, len(sizes) + 1))
    assert ys == pytest.approx(energies, rel=tol["rtol"])


def test_stream_uniform_blocks_are_keyed_by_seed_and_counter():
    """Stream.uniform_ gives block k of its seed whatever was drawn before (so a block drawn
    ahead on another thread changes no later draw): the k-th call equals uniforms_at(seed, k);
    blocks differ across counters and seeds; float64 values in [0, 1) with mean ~1/2."""
    from mletui.engine.models.boltzmann import uniforms_at

    s = Stream.new(11, "cpu")
    blocks = [s.uniform_(torch.empty(4000, dtype=torch.float64)) for _ in range(3)]
    assert s.counter == 3
    for k, b in enumerate(blocks):
        assert torch.equal(b, uniforms_at(torch.empty(4000, dtype=torch.float64), 11, k))
    assert not torch.equal(blocks[0], blocks[1])
    assert not torch.equal(blocks[0], uniforms_at(torch.empty(4000, dtype=torch.float64), 12, 0))
    u = torch.cat(blocks)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.01
    f32 = uniforms_at(torch.empty(2, 50, dtype=torch.float32), 11, 0)
    assert f32.dtype == torch.float32 and 0.0 <= float(f32.min()) and float(f32.max()) < 1.0


@pytest.mark.parametrize("prefetch", [True, False])
def test_chunked_pcd_without_momentum_matches_sgd_and_computes_only_the_energies_the_ring_keeps(monkeypatch, prefetch):
    """No momentum, no weight decay (scikit-learn's setting): the PCDChunk update goes straight
    into the parameters; against rbm_sgd_update fed the same uniforms, equal chains and
    parameters to 1e-12. Then momentum is switched on: the buffer starts at g, as
    torch.optim.SGD creates it at the first step with momentum (the reference's buffers are
    zeroed at the switch). With a 3-update energy ring and 2-update chunks cycling through 3
    pre-activation histories, the energies of updates the ring has dropped are never
    computed: exactly the 3 + 3 entries the two traces read are, and they equal the
    reference's last energies. The same with the next chunk's noise drawn ahead on the helper
    thread or not (the blocks are keyed by the stream's counter)."""
    from mletui.engine.models import boltzmann_learning as bl

    monkeypatch.setattr(bl, "PREFETCH", prefetch)
    monkeypatch.setattr(bl, "CHUNK_UPDATES", 2)
    monkeypatch.setattr(bl, "ENERGY_HISTORY", 3)
    computed = []
    energies_of = bl.PCDChunk.energies
    monkeypatch.setattr(bl.PCDChunk, "energies",
                        staticmethod(lambda A, nv: computed.append(A.shape[0]) or energies_of(A, nv)))
    nv, nh, R, M = 6, 4, 9, 7
    ref = _rbm(nv, nh, 70).clone(torch.float64)
    ln = bl.Learner("pcd", ref.clone(), "sgd", _bits(R, nv, 71).to(torch.float64), Stream.new(72, "cpu"))
    p = {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "gibbs_steps": 1, "batch_size": M}
    ln.build_optimizer(p)
    assert ln.chunked
    twin = Stream.new(72, "cpu")
    bufs = [torch.zeros_like(t) for t in ref.parameters()]
    v_ref, U, t, energies = _bits(R, nv, 71).to(torch.float64), None, 0, []
    z_ref = _hidden_units(ref, v_ref, twin)
    for update in range(14):
        mom = 0.0 if update < 7 else 0.5
        if update == 7:
            for buf in bufs:
                buf.zero_()
        if U is None or t == 2:
            U, t = twin.uniform_(torch.empty((2, 1, R, nh + nv), dtype=torch.float64)), 0
        X = _bits(M, nv, 80 + update).to(torch.float64)
        ln.update(X, {**p, "momentum": mom})
        v_ref, _, e, z_ref = bl.rbm_sgd_update(ref.W, ref.b, ref.c, *bufs, X, v_ref, U[t, :, :, :nh], U[t, :, :, nh:],
                                               0.1, mom, 0.0, z0=z_ref)
        t += 1
        energies.append(float(e))
        assert torch.equal(ln.chains, v_ref)
        for a, b in zip(ln.model.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        if update == 9:
            xs, ys = ln.energy_trace()
            assert xs == [8, 9, 10] and ys == pytest.approx(energies[-3:], rel=1e-12)
    for a, b in zip(ln.bufs, bufs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    xs, ys = ln.energy_trace()
    assert xs == [12, 13, 14] and ys == pytest.approx(energies[-3:], rel=1e-12)
    assert sum(computed) == 6


def test_log_z_in_steps_yields_once_per_chunk_and_returns_log_z(monkeypatch):
    """The evaluation's exact ln Z, spread over steps: one yield per chunk of states, the
    same ln Z as in one call (and as the dense logsumexp)."""
    r = _rbm(10, 12, 60, scale=0.4)
    whole = exact.log_z(r)
    monkeypatch.setattr(exact, "CHUNK", 64)
    assert exact.chunks(r) == 16
    job, yields = exact.log_z_steps(r), 0
    while True:
        try:
            next(job)
            yields += 1
        except StopIteration as stop:
            value = stop.value
            break
    assert yields == 16 and value == pytest.approx(whole, rel=1e-13)
    V = _all_states(10, False)
    dense = float(torch.logsumexp(V @ r.b + torch.nn.functional.softplus(V @ r.W + r.c).sum(1), 0))
    assert value == pytest.approx(dense, rel=1e-12)
