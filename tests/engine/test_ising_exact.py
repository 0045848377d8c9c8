"""Exact references of the Ising topic: Kaufman's finite torus against brute-force
enumeration, Onsager's infinite lattice at known values, Kaufman -> Onsager as L grows."""

import math

import numpy as np
import pytest

from mletui.engine.exact import ising as exact


@pytest.mark.parametrize("beta", [0.1, 0.3, exact.BETA_C, 0.6, 1.0])
def test_kaufman_log_z_and_energy_match_enumeration_at_L4(beta):
    ln_z, u, c = exact.kaufman(beta, 4)
    assert ln_z == pytest.approx(exact.enumerate_log_z(4, beta), rel=1e-12)
    assert u == pytest.approx(exact.enumerate_energy(4, beta), rel=1e-12)
    # specific heat per spin = beta^2 N var(E/N) from the enumerated energy law
    values, prob = exact.enumerate_energy_law(4, beta)
    var_e = float((values ** 2 * prob).sum() - ((values * prob).sum()) ** 2)
    assert c == pytest.approx(beta ** 2 * var_e / 16, rel=1e-9)


def test_enumeration_counts_every_state_and_ground_states_at_L4():
    bond, mag, count = exact.density_of_states(4)
    assert count.sum() == 2 ** 16
    # two ground states (all up, all down) at E = -2N
    assert count[bond == -32].sum() == 2
    assert set(mag[bond == -32]) == {-16, 16}


def test_onsager_energy_at_known_values():
    assert exact.onsager_energy(0.3) == pytest.approx(-0.704499, abs=1e-6)
    assert exact.onsager_energy(0.6) == pytest.approx(-1.909086, abs=1e-6)
    # at beta_c the elliptic term vanishes: u = -coth(2 beta_c) = -sqrt(2)
    assert exact.onsager_energy(exact.BETA_C) == pytest.approx(-math.sqrt(2.0), rel=1e-9)


def test_elliptic_k_by_agm_matches_scipy():
    scipy_special = pytest.importorskip("scipy.special")
    for k in (0.0, 0.1, 0.5, 0.9, 0.999, 0.999999):
        assert exact.elliptic_k(k) == pytest.approx(scipy_special.ellipk(k * k), rel=1e-13)


@pytest.mark.parametrize("beta", [0.2, 0.3, 0.6, 0.8])
def test_kaufman_energy_approaches_onsager_for_large_L(beta):
    far = abs(exact.kaufman_energy(beta, 16) - exact.onsager_energy(beta))
    near = abs(exact.kaufman_energy(beta, 256) - exact.onsager_energy(beta))
    assert near < 1e-9
    assert near <= max(far, 1e-12)  # at beta = 0.8 both agree to rounding already


def test_kaufman_is_finite_and_smooth_across_beta_c_for_L64():
    betas = np.linspace(0.40, 0.48, 17)
    u = np.array([exact.kaufman_energy(b, 64) for b in betas])
    assert np.all(np.isfinite(u))
    assert np.all(np.diff(u) < 0)  # energy decreases as beta grows (C > 0)
    c = np.array([exact.kaufman_specific_heat(b, 64) for b in betas])
    assert np.all(c > 0)
    assert abs(betas[np.argmax(c)] - exact.BETA_C) < 0.02  # the finite-size peak sits near beta_c


def test_yang_magnetization_closed_form():
    assert exact.yang_magnetization(0.3) == 0.0
    assert exact.yang_magnetization(exact.BETA_C) == 0.0
    b = 0.6
    assert exact.yang_magnetization(b) == pytest.approx((1 - math.sinh(2 * b) ** -4) ** 0.125)
    assert exact.yang_magnetization(3.0) == pytest.approx(1.0, abs=1e-9)
