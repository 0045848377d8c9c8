"""A learned score model: s_theta(x, sigma) ~ grad log p_sigma(x), trained by denoising score
matching (Vincent 2011; Song & Ermon 2019's noise-conditional form)."""

from __future__ import annotations

import torch


class ScoreNet(torch.nn.Module):
    """s_theta(x, sigma) = f_theta(x, log sigma) / sigma, f an MLP (D+1 -> H -> H -> D, SiLU)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.f = torch.nn.Sequential(
            torch.nn.Linear(dim + 1, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x (B, D), sigma (B, 1) -> score (B, D)."""
        return self.f(torch.cat((x, torch.log(sigma)), dim=1)) / sigma


def dsm_loss(net: ScoreNet, x: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Denoising score matching with weight sigma^2: mean |sigma s(x + sigma z, sigma) + z|^2
    (the target score of the noising kernel is -z / sigma)."""
    return ((sigma * net(x + sigma * z, sigma) + z) ** 2).sum(1).mean()
