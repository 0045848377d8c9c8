"""Does a running mean over parallel chains describe one distribution? Split-R-hat.

A topic that averages R independent chains (replicas) and quotes the spread of their
time averages as a standard error is right only if the chains sample the same law. Chains
stuck in different long-lived states (an Ising lattice in a striped state beside one that
ordered) each look converged, and their spread says nothing about the error. The potential
scale reduction factor R-hat compares the variance between chains with the variance within
them; it is near 1 when they agree.

Which R-hat: the *rank-normalised split-R-hat* of Vehtari, Gelman, Simpson, Carpenter and
Buerkner (2021), "Rank-normalization, folding, and localization: an improved R-hat", the one
Stan and ArviZ (``arviz.rhat(method="rank")``) report:

    1. split every chain into its first and second half (an odd middle draw is dropped), so
       2R half-chains of n draws each; a chain that drifts disagrees with itself;
    2. rank-normalise: pool all S = 2Rn draws, give each its average rank r (ties share the
       mean of their ranks) and replace it by z = Phi^-1((r - 3/8) / (S + 1/4));
    3. on z, the classic split-R-hat (Gelman et al., Bayesian Data Analysis, 3rd ed.):
           W = mean_j s_j^2,  B = n var_j(mean_j),  R-hat = sqrt(((n - 1) / n W + B / n) / W)
       (s_j^2 and var_j with ddof = 1);
    4. the same on the folded draws |x - median(x)| (the tail / scale R-hat, which sees chains
       that agree in location but not in spread: the inputs of a specific heat);
    5. R-hat = max(bulk, folded).

Conventions where the formula has none: all draws equal gives 1 (the chains agree exactly);
every half-chain constant but not all equal gives +inf (frozen in different states).

Threshold :data:`RHAT_MAX` = 1.01, Vehtari et al.'s recommendation (the older 1.1 of Gelman
and Rubin 1992, and 1.05, let chains that still disagree by a good fraction of a standard
deviation pass). Its price is that a short run is flagged until it has enough draws: with
n_eff effective draws per half-chain R-hat - 1 is about 1 / (2 n_eff) even for perfectly
mixing chains, so a few hundred effective draws per chain are needed before a run can pass,
which is also when its standard error starts to mean what it says.

:class:`ChainDraws` keeps the per-step values on the device with a bounded memory: the
buffer holds at most ``capacity`` draws per chain; when full, every other draw goes and
the spacing doubles (draws 0, s, 2s, ... of the run, s a power of two), so the kept draws
always span the whole run since the last reset and the decision is the step's alone.
"""

from __future__ import annotations

import numpy as np
import torch

RHAT_MAX = 1.01          # Vehtari et al. (2021): trust a figure only when R-hat < 1.01
MIN_HALF = 4             # fewer draws per half-chain give no R-hat (None)
DRAW_BUDGET = 1 << 15    # draws kept per quantity over all chains (device memory, observe cost)


def capacity_for(chains: int, budget: int = DRAW_BUDGET, most: int = 512) -> int:
    """Draws to keep per chain: a power of two, at most ``most``, about ``budget / chains``
    and never fewer than 4 * MIN_HALF (so a full buffer always gives an R-hat)."""
    want = max(4 * MIN_HALF, min(most, budget // max(1, chains)))
    return 1 << (want.bit_length() - 1)


class ChainDraws:
    """Thinned draws of Q scalars of R chains, float64 (Q, R, capacity) on ``device``.

    ``add`` is called once per step with the (Q, R) values of that step; it keeps draw i
    (counting from the last ``reset``) when i is a multiple of the current spacing."""

    def __init__(self, quantities: int, chains: int, device: torch.device | str,
                 capacity: int | None = None) -> None:
        self.capacity = capacity_for(chains) if capacity is None else int(capacity)
        if self.capacity < 2 or self.capacity % 2:
            raise ValueError(f"capacity must be even and >= 2, got {self.capacity}")
        self.values = torch.zeros((quantities, chains, self.capacity), dtype=torch.float64,
                                  device=device)
        self.reset()

    def reset(self) -> None:
        self.kept = 0          # draws in the buffer
        self.spacing = 1       # steps between kept draws
        self.seen = 0          # steps offered since the reset

    def add(self, x: torch.Tensor) -> None:
        if self.seen % self.spacing == 0:
            self.values[:, :, self.kept] = x
            self.kept += 1
            if self.kept == self.capacity:
                half = self.capacity // 2
                self.values[:, :, :half] = self.values[:, :, 0::2].clone()
                self.kept = half
                self.spacing *= 2
        self.seen += 1

    def draws(self) -> torch.Tensor:
        """The kept draws, (Q, R, kept), oldest first (a view)."""
        return self.values[:, :, : self.kept]


def _split(draws: torch.Tensor) -> torch.Tensor:
    """(Q, R, n) -> (Q, 2R, n // 2): first halves then second halves (the middle draw of an
    odd n is dropped)."""
    half = draws.shape[-1] // 2
    return torch.cat((draws[..., :half], draws[..., draws.shape[-1] - half:]), dim=1)


def _average_ranks(ordered: torch.Tensor) -> torch.Tensor:
    """1-based average ranks of the sorted rows ``ordered`` (Q, S), in sorted order: a run of
    t equal values at positions f..f+t-1 gets rank f + (t + 1) / 2 each."""
    s = ordered.shape[1]
    pos = torch.arange(s, device=ordered.device).expand_as(ordered)
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]                   # first of a run of ties
    last = torch.ones_like(new)
    last[:, :-1] = new[:, 1:]                                        # last of a run
    first_pos = torch.cummax(torch.where(new, pos, 0), dim=1).values
    last_pos = torch.where(last, pos, s).flip(1).cummin(dim=1).values.flip(1)
    return (first_pos + last_pos).to(torch.float64) / 2.0 + 1.0


def _sort_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.sort(x, dim=1) (values, indices); on the CPU through numpy's argsort, several
    times faster there than torch's CPU sort for these sizes."""
    if x.device.type != "cpu":
        return torch.sort(x, dim=1)
    order = torch.from_numpy(np.argsort(x.numpy(), axis=1))
    return torch.gather(x, 1, order), order


def _z_scale(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-normalise each quantity (leading dim) over all its draws: average ranks (ties
    share their mean rank), then Phi^-1((r - 3/8) / (S + 1/4)) (Blom's offsets). Returns
    the z values (x's shape) and each quantity's median (Q,), interpolated as numpy's."""
    q = x.shape[0]
    flat = x.reshape(q, -1)
    s = flat.shape[1]
    ordered, order = _sort_rows(flat)
    rank = torch.empty_like(flat, dtype=torch.float64).scatter_(1, order, _average_ranks(ordered))
    z = torch.special.ndtri((rank - 0.375) / (s + 0.25))
    median = (ordered[:, (s - 1) // 2] + ordered[:, s // 2]) / 2.0
    return z.reshape(x.shape), median


def _rhat(x: torch.Tensor) -> torch.Tensor:
    """Classic R-hat of each quantity over its chains: x (Q, C, n) -> (Q,)."""
    n = x.shape[-1]
    chain_mean = x.mean(dim=-1)
    within = x.var(dim=-1, unbiased=True).mean(dim=-1)
    between = n * chain_mean.var(dim=-1, unbiased=True)
    ratio = between / within
    rhat = torch.sqrt((ratio + n - 1) / n)
    frozen = within <= 0
    return torch.where(frozen, torch.where(between <= 0, 1.0, torch.inf).to(rhat.dtype), rhat)


def split_rhat(draws: torch.Tensor) -> torch.Tensor | None:
    """Rank-normalised split-R-hat, max of bulk and folded (module docstring), of each
    quantity of ``draws`` (Q, R, n) (R >= 1 chains, n draws each, oldest first), float64
    (Q,) on the draws' device, no host sync. None when n // 2 < MIN_HALF."""
    if draws.shape[-1] // 2 < MIN_HALF:
        return None
    split = _split(draws.to(torch.float64))
    z, median = _z_scale(split)
    bulk = _rhat(z)
    folded = (split - median.view(-1, 1, 1)).abs()
    tail = _rhat(_z_scale(folded)[0])
    return torch.maximum(bulk, tail)
