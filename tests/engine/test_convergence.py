"""Split-R-hat (engine.convergence): the rank-normalised, folded split-R-hat of Vehtari et
al. (2021) against an independent NumPy/SciPy transcription of the published algorithm (the
one ArviZ's ``rhat(method="rank")`` implements), its behaviour on chains that agree and
disagree, and the thinned per-chain draw buffer that feeds it."""

import numpy as np
import pytest
import torch
from scipy.stats import norm, rankdata

from mletui.engine import convergence as cv
from mletui.engine.convergence import MIN_HALF, RHAT_MAX, ChainDraws, capacity_for, split_rhat


def _reference_rhat(chains: np.ndarray) -> float:
    """Vehtari et al. (2021), section 4.2 and appendix A, for one quantity (chains, draws)."""
    half = chains.shape[1] // 2
    split = np.vstack((chains[:, :half], chains[:, chains.shape[1] - half:]))

    def z(a):
        r = rankdata(a, method="average", axis=None).reshape(a.shape)
        return norm.ppf((r - 3 / 8) / (a.size + 1 / 4))

    def rhat(a):
        n = a.shape[1]
        b = n * np.var(a.mean(axis=1), ddof=1)
        w = np.mean(np.var(a, axis=1, ddof=1))
        return np.sqrt(((n - 1) / n * w + b / n) / w)

    return max(rhat(z(split)), rhat(z(np.abs(split - np.median(split)))))


@pytest.mark.parametrize("chains, draws, shift, decimals", [
    (4, 100, 0.0, None), (8, 33, 0.3, 1), (1, 50, 0.0, None), (3, 201, 0.0, 0), (16, 64, 1.0, 2)])
def test_split_rhat_matches_the_published_algorithm(chains, draws, shift, decimals):
    rng = np.random.default_rng(chains * 1000 + draws)
    a = rng.standard_normal((chains, draws)) * rng.uniform(0.5, 2.0, (chains, 1))
    a[0] += shift
    if decimals is not None:            # ties, as the Ising model's discrete energies have
        a = np.round(a, decimals)
    b = rng.gamma(2.0, size=(chains, draws))
    got = split_rhat(torch.tensor(np.stack((a, b))))
    assert got.shape == (2,) and got.dtype == torch.float64
    assert got[0].item() == pytest.approx(_reference_rhat(a), rel=1e-12)
    assert got[1].item() == pytest.approx(_reference_rhat(b), rel=1e-12)


def test_chains_of_one_law_pass_and_chains_that_disagree_fail():
    g = torch.Generator().manual_seed(0)
    same = torch.randn(1, 8, 512, generator=g, dtype=torch.float64)
    assert split_rhat(same).item() < RHAT_MAX
    shifted = same.clone()
    shifted[0, 0] += 0.5                             # one chain half a standard deviation off
    assert split_rhat(shifted).item() > RHAT_MAX
    drift = same + torch.linspace(0, 1.0, 512, dtype=torch.float64)   # every chain drifts: split sees it
    assert split_rhat(drift).item() > RHAT_MAX
    wide = same.clone()
    wide[0, :4] *= 2.0           # same centre, twice the spread: the bulk R-hat misses it, the folded one not
    bulk = cv._rhat(cv._z_scale(cv._split(wide))[0])
    assert bulk.item() < RHAT_MAX < split_rhat(wide).item()


def test_frozen_chains_give_one_when_they_agree_and_infinity_when_they_do_not():
    agree = torch.full((1, 4, 16), -2.0, dtype=torch.float64)
    assert split_rhat(agree).item() == 1.0
    apart = agree.clone()
    apart[0, 2:] = -1.875
    assert split_rhat(apart).item() == float("inf")


def test_too_few_draws_give_no_rhat():
    assert split_rhat(torch.zeros(2, 4, 2 * MIN_HALF - 1, dtype=torch.float64)) is None
    assert split_rhat(torch.randn(2, 4, 2 * MIN_HALF, dtype=torch.float64)) is not None


def test_the_draw_buffer_keeps_evenly_spaced_draws_of_the_whole_run_within_its_capacity():
    buf = ChainDraws(2, 3, "cpu", capacity=8)
    for i in range(37):
        buf.add(torch.tensor([[i, i, i], [-i, -i, -i]], dtype=torch.float64))
        assert buf.kept < 8
    # 37 steps, capacity 8: the spacing doubled to 8 at step 32 (0, 8, 16, 24, 32 kept)
    assert buf.spacing == 8
    assert buf.draws()[0, 1].tolist() == [0, 8, 16, 24, 32]
    assert buf.draws()[1, 2].tolist() == [0, -8, -16, -24, -32]
    buf.reset()
    assert buf.draws().shape == (2, 3, 0) and buf.spacing == 1
    buf.add(torch.ones(2, 3, dtype=torch.float64))
    assert buf.draws().shape == (2, 3, 1)


def test_buffer_capacity_is_a_power_of_two_bounded_by_the_budget():
    assert capacity_for(8) == 512 and capacity_for(1) == 512
    assert capacity_for(64) == 512 and capacity_for(4096) == 16     # 2^15 / 4096 = 8 -> at least 16
    assert all(c & (c - 1) == 0 for c in map(capacity_for, range(1, 5000, 37)))
    with pytest.raises(ValueError):
        ChainDraws(1, 1, "cpu", capacity=7)
