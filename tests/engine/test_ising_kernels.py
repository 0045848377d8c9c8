"""Checkerboard kernels: the Triton kernels (under TRITON_INTERPRET=1 on the CPU), the fast CPU
twin and the reference twin agree spin for spin on the same uniforms; the in-kernel Philox
and the fast twin's hash generator produce the documented, well-distributed streams."""

import os

import numpy as np
import pytest
import torch

from mletui.engine.kernels import checkerboard as cb

from triton_aot import DEVICE, HAS_TRITON, compile_for_sm90, needs_triton


def _random_spins(R, L, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (R, L, L), generator=g, dtype=torch.int8) * 2 - 1)


def _couplings(L, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, L, L, generator=g)   # not just +-1: exercises the per-bond products


@needs_triton
@pytest.mark.parametrize("method", cb.METHODS)
@pytest.mark.parametrize("with_couplings", [False, True])
@pytest.mark.parametrize("L", [6, 8])
def test_triton_half_sweep_matches_reference_twin_spin_for_spin(method, with_couplings, L):
    R = 3
    beta = torch.tensor([0.2, 0.5, 1.1])          # one beta per replica
    coup = _couplings(L, 1) if with_couplings else None
    ref = _random_spins(R, L, 2)
    tri = ref.clone().to(DEVICE)
    g = torch.Generator().manual_seed(3)
    total_flips = 0
    for half in range(4):                          # two full sweeps, colours 0, 1, 0, 1
        u = torch.rand(R, L, L // 2, generator=g)
        f_ref = cb.half_sweep_torch(ref, half % 2, beta, 0.3, method, couplings=coup, uniforms=u)
        f_tri = cb.half_sweep_triton(tri, half % 2, beta.to(DEVICE), 0.3, method,
                                     couplings=None if coup is None else coup.to(DEVICE),
                                     uniforms=u.to(DEVICE))
        assert torch.equal(tri.cpu(), ref), f"spins differ after half-sweep {half}"
        assert torch.equal(f_tri.cpu(), f_ref)
        total_flips += int(f_ref.sum())
    assert total_flips > 0


@pytest.mark.parametrize("method", cb.METHODS)
@pytest.mark.parametrize("with_couplings", [False, True])
@pytest.mark.parametrize("L", [4, 6, 16])
def test_fast_twin_matches_reference_twin_spin_for_spin(method, with_couplings, L):
    R = 3
    beta = torch.tensor([0.2, 0.5, 1.1])
    coup = _couplings(L, 4) if with_couplings else None
    ref = _random_spins(R, L, 5)
    fast = ref.clone()
    g = torch.Generator().manual_seed(6)
    for half in range(4):
        u = torch.rand(R, L, L // 2, generator=g)
        f_ref = cb.half_sweep_torch(ref, half % 2, beta, -0.4, method, couplings=coup, uniforms=u)
        f_fast = cb.half_sweep_fast(fast, half % 2, beta, -0.4, method, couplings=coup, uniforms=u)
        assert torch.equal(fast, ref), f"spins differ after half-sweep {half}"
        assert torch.equal(f_fast, f_ref)


@needs_triton
@pytest.mark.parametrize("with_couplings", [False, True])
def test_triton_measure_matches_reference(with_couplings):
    L = 12
    spins = _random_spins(4, L, 7)
    coup = _couplings(L, 8) if with_couplings else None
    e_ref, m_ref = cb.measure_torch(spins, coup, 0.25)
    e_tri, m_tri = cb.measure_triton(spins.to(DEVICE), None if coup is None else coup.to(DEVICE), 0.25)
    assert torch.allclose(e_tri.cpu(), e_ref, atol=1e-4)
    assert torch.equal(m_tri.cpu(), m_ref)


def test_fast_measure_matches_reference_and_brute_force():
    L = 6
    spins = _random_spins(3, L, 9)
    e_fast, m_fast = cb.measure_fast(spins, None, 0.5)
    e_ref, m_ref = cb.measure_torch(spins, None, 0.5)
    assert torch.equal(e_fast, e_ref) and torch.equal(m_fast, m_ref)
    s = spins[0].numpy().astype(int)
    bonds = sum(s[i, j] * (s[i, (j + 1) % L] + s[(i + 1) % L, j]) for i in range(L) for j in range(L))
    assert float(e_fast[0]) == -bonds - 0.5 * s.sum()


def test_flip_count_equals_changed_spins():
    spins = _random_spins(5, 10, 10)
    before = spins.clone()
    flips = cb.sweep(spins, 0.35, 0.2, "metropolis", seed=1, counter=0)
    # a site may flip in colour 0 and its neighbour in colour 1; each site is updated once
    assert torch.equal(flips, (spins != before).sum(dim=(1, 2), dtype=torch.int32))


@pytest.mark.parametrize("impl", ["fast", "reference"] + (["triton"] if HAS_TRITON else []))
def test_metropolis_at_beta_zero_flips_every_spin(impl):
    """At beta = 0 every Metropolis proposal is accepted: flips == attempted updates."""
    spins = _random_spins(2, 8, 11)
    before = spins.clone()
    if impl == "fast":
        flips = cb.sweep_fast(spins, 0.0, 0.0, "metropolis", seed=3, counter=0)
    elif impl == "reference":
        flips = cb.sweep(spins, 0.0, 0.0, "metropolis", generator=torch.Generator().manual_seed(1))
    else:
        flips = cb.half_sweep_triton(spins, 0, 0.0, 0.0, "metropolis", seed=3, counter=0) \
            + cb.half_sweep_triton(spins, 1, 0.0, 0.0, "metropolis", seed=3, counter=1)
    assert flips.tolist() == [64, 64]
    assert torch.equal(spins, -before)


# -- generators ---------------------------------------------------------------------------
_M32 = np.uint64(0xFFFFFFFF)


def _philox4x32_10(c, key):
    """Reference Philox4x32-10 (Salmon et al. 2011) on uint64 arrays holding 32-bit words."""
    c0, c1, c2, c3 = (np.asarray(x, dtype=np.uint64) & _M32 for x in c)
    k0, k1 = (np.uint64(k) for k in key)
    A, B = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    for _ in range(10):
        pa, pb = A * c0, B * c2          # < 2^64: exact in uint64
        c0, c1, c2, c3 = (pb >> np.uint64(32)) ^ c1 ^ k0, pb & _M32, (pa >> np.uint64(32)) ^ c3 ^ k1, pa & _M32
        k0 = (k0 + np.uint64(0x9E3779B9)) & _M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & _M32
    return c0, c1, c2, c3


@needs_triton
def test_in_kernel_uniforms_are_philox_with_the_documented_counters():
    """u[r, i, q*QW + k4] = (x_q >> 8) / 2^24, x = Philox(key=seed; (i*QW + k4, r, ctr_lo, ctr_hi)):
    64-bit counters and the replica in the counter, so no two half-sweeps or replicas overlap."""
    R, L, seed, counter = 3, 10, 0x12345678, (7 << 32) + 5
    u = cb.uniforms_triton(R, L, seed, counter, DEVICE).cpu().numpy()
    _, qw = cb._sweep_tiling(L)
    half = L // 2
    r, i, k4 = np.meshgrid(np.arange(R), np.arange(L), np.arange(qw), indexing="ij")
    xs = _philox4x32_10((i * qw + k4, r, np.full_like(r, counter & 0xFFFFFFFF), np.full_like(r, counter >> 32)),
                        (seed & 0xFFFFFFFF, seed >> 32))
    expect = np.full((R, L, 4 * qw), np.nan, dtype=np.float64)
    for q in range(4):
        expect[:, :, q * qw:(q + 1) * qw] = (xs[q] >> np.uint64(8)).astype(np.float64) * 2.0 ** -24
    np.testing.assert_array_equal(u, expect[:, :, :half].astype(np.float32))


def _check_uniform_stream(streams):
    """streams: float array (n_streams, n). Moments, 16-bin chi-square, lag-1 and
    cross-stream correlations, all within generous multiples of their sampling error."""
    x = np.asarray(streams, dtype=np.float64)
    flat = x.ravel()
    n = flat.size
    assert flat.min() >= 0.0 and flat.max() < 1.0
    assert abs(flat.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(flat.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / n)
    counts = np.bincount((flat * 16).astype(int), minlength=16)
    chi2 = ((counts - n / 16) ** 2 / (n / 16)).sum()
    assert chi2 < 50.0                        # 15 dof: P(chi2 > 50) ~ 1e-5
    z = (x - 0.5) * np.sqrt(12)
    lag1 = (z[:, 1:] * z[:, :-1]).mean()
    assert abs(lag1) < 5 / np.sqrt(z[:, 1:].size)
    cross = (z[1:] * z[:-1]).mean()           # neighbouring streams (counters or replicas)
    assert abs(cross) < 5 / np.sqrt(z[1:].size)


@needs_triton
def test_in_kernel_generator_statistics_across_counters_and_replicas():
    R, L = 4, 32
    by_counter = np.stack([cb.uniforms_triton(R, L, 99, c, DEVICE).cpu().numpy().ravel() for c in range(6)])
    _check_uniform_stream(by_counter)
    by_replica = cb.uniforms_triton(R, L, 99, 0, DEVICE).cpu().numpy().reshape(R, -1)
    _check_uniform_stream(by_replica)
    assert len(np.unique(by_counter)) > 0.99 * by_counter.size   # 24-bit values: few collisions


def test_fast_twin_generator_statistics_across_counters_and_replicas():
    R, L = 8, 64
    by_counter = np.stack([cb.hash_uniforms(R, L, 5, c).numpy().ravel() for c in range(8)])
    _check_uniform_stream(by_counter)
    by_replica = cb.hash_uniforms(R, L, 5, 0).numpy().reshape(R, -1)
    _check_uniform_stream(by_replica)
    # a different seed gives an unrelated stream; the same (seed, counter) the same stream
    assert torch.equal(cb.hash_uniforms(2, 8, 5, 3), cb.hash_uniforms(2, 8, 5, 3))
    other = cb.hash_uniforms(R, L, 6, 0).numpy().ravel()
    z0, z1 = (by_counter[0] - 0.5) * np.sqrt(12), (other - 0.5) * np.sqrt(12)
    assert abs((z0 * z1).mean()) < 5 / np.sqrt(z0.size)


def test_fast_twin_compiled_path_equals_eager_path(monkeypatch):
    """torch.compile must not change a single spin: same integer hash, same comparisons."""
    if os.environ.get("MLETUI_NO_COMPILE", "") not in ("", "0"):
        pytest.skip("compilation disabled")
    spins = _random_spins(1, 256, 12)
    eager = spins.clone()
    monkeypatch.setattr(cb, "COMPILE_MIN_SITES", 1 << 40)
    f_eager = cb.sweep_fast(eager, 0.44, 0.1, "metropolis", seed=4, counter=10)
    monkeypatch.setattr(cb, "COMPILE_MIN_SITES", 1)
    monkeypatch.setattr(cb._COMPILED, "background", False)   # compile on this call (no eager first)
    compiled = spins.clone()
    f_comp = cb.sweep_fast(compiled, 0.44, 0.1, "metropolis", seed=4, counter=10)
    assert cb._COMPILED.failed is None, cb._COMPILED.failed
    assert torch.equal(compiled, eager)
    assert torch.equal(f_comp, f_eager)


def test_fast_twin_honours_couplings_edited_in_place_between_sweeps():
    """The fast twin caches packed couplings; an in-place edit (a spin-glass re-draw) must
    invalidate that cache, or the twin would sample the old Hamiltonian."""
    L, R = 8, 2
    coup = _couplings(L, 13)
    ref = _random_spins(R, L, 14)
    fast = ref.clone()
    g = torch.Generator().manual_seed(15)
    for half in range(4):
        if half == 2:
            coup.neg_()                                   # ferro <-> antiferro, same tensor
        u = torch.rand(R, L, L // 2, generator=g)
        cb.half_sweep_torch(ref, half % 2, 0.7, 0.0, "gibbs", couplings=coup, uniforms=u)
        cb.half_sweep_fast(fast, half % 2, 0.7, 0.0, "gibbs", couplings=coup, uniforms=u)
        assert torch.equal(fast, ref), f"spins differ after half-sweep {half}"
