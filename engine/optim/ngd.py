"""The exact natural gradient, damped, with a KL budget (Amari 1998; the step length of
Martens 2014, "New insights and perspectives on the natural gradient method").

On each batch, with F the exact Fisher of the mean loss there (engine/optim/fisher.py: the
expectation over y ~ p(y | x) in closed form, never a sampled label and never the
observed ones) and g the gradient of the mean loss (plus weight_decay · θ):

    Δ = (F + λI)⁻¹ g                  conjugate gradient on exact Fisher-vector products
    α = sqrt(2ε / (Δᵀ F Δ))           so that ½ (αΔ)ᵀ F (αΔ) = ε, the KL budget
    θ ← θ − min(α, 1) Δ

The damped length uses Δᵀ F Δ, not gᵀ(F + λI)⁻¹g: with λ > 0 the latter overstates the
curvature along Δ and the step moves less than ε (ALGORITHMS.md). To second order the KL
between the model's predictive distributions before and after the step, averaged over the
batch's examples and output elements, is then ε; ``last_kl`` is that prediction.
ε is a budget, not a quota: −Δ minimises the damped quadratic model gᵀd + ½ dᵀ(F + λI)d
(a damped Gauss-Newton step), and a step longer than it overshoots that model — near a
minimum, where the gradient is small, a step held at KL ε would circle it (seen on the
digits classifier: the loss climbing back from 1e-3 to 1.6) — so α is capped at 1.

A non-finite gradient, direction or curvature skips the step (parameters untouched) and
adds a one-line event; ``skipped`` counts them.
"""

from __future__ import annotations

import math
import torch
from torch import nn

from .fisher import BatchFisher, flatten, solve_damped, trainable
from .likelihoods import Likelihood, get_likelihood


class NaturalGradient(torch.optim.Optimizer):
    """Exact natural-gradient steps on ``model``; one group with ``damping`` (λ),
    ``kl_budget`` (ε), ``weight_decay``, ``cg_iters`` and ``cg_tol``, editable between steps.

    Usage: ``loss, output = opt.step_on(x, y)`` (the loss and outputs before the step)."""

    def __init__(self, model: nn.Module, likelihood: str | Likelihood = "categorical",
                 damping: float = 1e-3, kl_budget: float = 1e-2, weight_decay: float = 0.0,
                 cg_iters: int = 50, cg_tol: float = 1e-4) -> None:
        if damping <= 0:
            raise ValueError(f"damping must be > 0, got {damping}")
        if kl_budget <= 0:
            raise ValueError(f"kl_budget must be > 0, got {kl_budget}")
        defaults = dict(damping=damping, kl_budget=kl_budget, weight_decay=weight_decay,
                        cg_iters=cg_iters, cg_tol=cg_tol)
        super().__init__([p for _, p in trainable(model)], defaults)
        self.model = model
        self.likelihood = get_likelihood(likelihood)
        self.steps = 0
        self.skipped = 0
        self.events: list[str] = []
        self.last_kl = float("nan")          # predicted: ½ αΔᵀFΔα (= ε when the step is taken)
        self.last_alpha = float("nan")
        self.last_cg_iterations = 0
        self.last_cg_residual = float("nan")

    def step_on(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One natural-gradient step on the batch (x, y)."""
        g = self.param_groups[0]
        params = [p for _, p in trainable(self.model)]
        fisher = BatchFisher(self.model, self.likelihood, x)
        output = fisher.output
        loss, grad = fisher.gradient(y)
        theta = flatten([p.detach() for p in params])
        if g["weight_decay"]:
            grad = grad + g["weight_decay"] * theta
        self.steps += 1
        if not bool(torch.isfinite(grad).all()):
            return self._skip("non-finite gradient", loss, output)
        sol = solve_damped(fisher.mv, grad, float(g["damping"]), int(g["cg_iters"]), float(g["cg_tol"]))
        self.last_cg_iterations, self.last_cg_residual = sol.iterations, sol.residual
        curvature = float(fisher.quad(sol.x))
        if not (curvature > 0.0 and math.isfinite(curvature) and bool(torch.isfinite(sol.x).all())):
            return self._skip(f"non-finite or zero curvature along the direction ({curvature:.3g})", loss, output)
        alpha = min(1.0, math.sqrt(2.0 * float(g["kl_budget"]) / curvature))
        self.last_alpha = alpha
        self.last_kl = 0.5 * alpha * alpha * curvature
        with torch.no_grad():
            torch._foreach_add_(params, list(fisher.unflatten(sol.x)), alpha=-alpha)
        return loss, output

    def _skip(self, why: str, loss: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.skipped += 1
        self.events.append(f"step {self.steps}: {why}; step skipped")
        return loss, output

    def drain_events(self) -> list[str]:
        ev, self.events = self.events, []
        return ev
