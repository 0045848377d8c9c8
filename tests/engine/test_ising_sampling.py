"""The Ising samplers have the right stationary law: the exact Boltzmann energy law on 4x4
(by enumeration) for both methods, and Kaufman's exact mean energy at L = 8 in both phases.
A deliberately wrong rule run through the same statistic fails it."""

import numpy as np
import pytest
import torch

from mletui.engine.exact import ising as exact
from mletui.engine.kernels import checkerboard as cb
from mletui.engine.runner import run
from mletui.engine.topics.ising import TOPIC

chi2 = pytest.importorskip("scipy.stats").chi2


pytestmark = pytest.mark.usefixtures("one_thread")


def _energy_samples(method, beta, h, generator=None, R=512, burn_in=200, samples=50, thin=10, seed=1):
    """Total energies of R independent 4x4 chains, every ``thin`` sweeps after ``burn_in``
    (thin = 10 sweeps makes successive samples of one chain practically independent)."""
    g = torch.Generator().manual_seed(seed)
    spins = torch.randint(0, 2, (R, 4, 4), generator=g, dtype=torch.int8) * 2 - 1
    beta = torch.as_tensor(beta, dtype=torch.float32)
    out = []
    for t in range(burn_in + samples * thin):
        cb.sweep(spins, beta, h, method, seed=seed, counter=2 * t, generator=generator)
        if t >= burn_in and (t - burn_in) % thin == thin - 1:
            out.append(cb.measure(spins, None, h)[0].numpy().copy())
    return np.concatenate(out)


def _chi2_pvalue(energies, beta, h):
    """Chi-square of the sampled energy histogram against the exact 4x4 Boltzmann law
    (levels with fewer than 5 expected counts pooled)."""
    values, prob = exact.enumerate_energy_law(4, beta, h)
    level = np.abs(values[None, :] - energies[:, None]).argmin(axis=1)
    observed = np.bincount(level, minlength=len(values)).astype(float)
    expected = prob * len(energies)
    keep = expected >= 5
    o = np.append(observed[keep], observed[~keep].sum())
    e = np.append(expected[keep], expected[~keep].sum())
    stat = float(((o - e) ** 2 / e).sum())
    return chi2.sf(stat, len(o) - 1)


BETA, H = 0.4, 0.1


@pytest.mark.parametrize("method", cb.METHODS)
def test_stationary_energy_law_on_4x4_matches_enumeration(method):
    p = _chi2_pvalue(_energy_samples(method, BETA, H), BETA, H)
    assert p > 1e-3, f"{method}: chi-square p-value {p:.2e} against the exact Boltzmann law"


def test_reference_twin_with_torch_rand_has_the_same_stationary_law():
    p = _chi2_pvalue(_energy_samples("metropolis", BETA, H, generator=torch.Generator().manual_seed(3)), BETA, H)
    assert p > 1e-3


@pytest.mark.parametrize("method", cb.METHODS)
def test_a_wrong_acceptance_rule_fails_the_same_statistic(method):
    """Metropolis accepting with exp(-beta dE / 2) is Metropolis at beta/2; heat bath with the
    wrong sign, P(+1) = sigmoid(-2 beta lambda), is heat bath at (-beta) with field -h. Both
    run through the real kernels and must be rejected by the test above."""
    if method == "metropolis":
        wrong = _energy_samples(method, BETA / 2, H, samples=20)
    else:
        wrong = _energy_samples(method, -BETA, -H, samples=20)
    assert _chi2_pvalue(wrong, BETA, H) < 1e-12


@pytest.mark.parametrize("method", cb.METHODS)
@pytest.mark.parametrize("beta", [0.3, 0.6])   # disordered and ordered phases
def test_mean_energy_matches_kaufman_at_L8(method, beta):
    params = {"L": 8, "beta": beta, "h": 0.0, "method": method, "replicas": 64, "burn_in": 200}
    *_, last = run(TOPIC, steps=1000, params=params, seed=11, device="cpu", every=1000)
    s = last.scalars
    exact_u = exact.kaufman_energy(beta, 8)
    assert s["energy_exact"] == pytest.approx(exact_u)
    assert s["samples"] == 800
    assert s["energy_stderr"] < 0.004           # the test has power
    assert abs(s["energy_mean"] - exact_u) < 4 * s["energy_stderr"], s
    # the fluctuation estimate of the specific heat agrees with Kaufman's too (looser)
    assert s["specific_heat"] == pytest.approx(s["specific_heat_exact"], rel=0.15)


@pytest.mark.cuda
@pytest.mark.parametrize("method", cb.METHODS)
def test_triton_with_in_kernel_philox_has_the_exact_stationary_law_on_cuda(method):
    """On a GPU the whole chain runs in the Triton kernels with their own Philox stream."""
    g = torch.Generator(device="cuda").manual_seed(1)
    R = 4096
    spins = torch.randint(0, 2, (R, 4, 4), generator=g, device="cuda", dtype=torch.int8) * 2 - 1
    out = []
    for t in range(200 + 10 * 10):
        cb.sweep(spins, BETA, H, method, seed=7, counter=2 * t)
        if t >= 200 and t % 10 == 9:
            out.append(cb.measure(spins, None, H)[0].cpu().numpy())
    assert _chi2_pvalue(np.concatenate(out), BETA, H) > 1e-3


@pytest.mark.cuda
@pytest.mark.parametrize("method", cb.METHODS)
def test_topic_on_cuda_matches_kaufman_at_L16(method):
    params = {"L": 16, "beta": 0.6, "method": method, "replicas": 256, "burn_in": 300}
    *_, last = run(TOPIC, steps=1300, params=params, seed=3, device="cuda", every=1300)
    s = last.scalars
    assert abs(s["energy_mean"] - exact.kaufman_energy(0.6, 16)) < 4 * s["energy_stderr"], s
