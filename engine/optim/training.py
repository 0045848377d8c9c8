"""One training step for each optimizer the kfac topic compares (K-FAC, SGD, Adam and the
exact natural gradient), from
one dict of hyper-parameters: the topic's params and the study's configurations share it.

``DEFAULTS`` are the hyper-parameters' defaults; the topic's Param specs take theirs from
here, so the study (which never imports a topic) starts from the same values.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .kfac import KFAC
from .likelihoods import get_likelihood
from .ngd import NaturalGradient

DEFAULTS: dict[str, Any] = {
    "lr": 0.3, "lr_sgd": 3.0, "lr_adam": 5e-3, "momentum": 0.9, "damping": 1e-2,
    "t_cov": 10, "t_inv": 100, "kl_clip": 1e-3, "stat_decay": 0.95, "batch_size": 256,
    "stats_batch": 0, "fisher": "true", "rescale": "kl_clip", "adaptive_damping": False,
    "min_damping": 1e-4, "quad_batch": 64, "quad_every": 5, "weight_decay": 0.0,
    "kl_budget": 1e-2, "ngd_damping": 1e-3, "cg_iters": 50,     # ngd: tuned on the digits MLP
}


def make_optimizer(name: str, model: nn.Module, likelihood: str, p: Mapping[str, Any],
                   fisher: str | None = None) -> torch.optim.Optimizer:
    """``name`` kfac | sgd | adam | ngd on ``model`` with the hyper-parameters ``p``."""
    if name == "ngd":
        return NaturalGradient(model, likelihood, damping=p["ngd_damping"], kl_budget=p["kl_budget"],
                               weight_decay=p["weight_decay"], cg_iters=p["cg_iters"])
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=p["lr_sgd"], momentum=p["momentum"],
                               weight_decay=p["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=p["lr_adam"], weight_decay=p["weight_decay"])
    opt = KFAC(model, likelihood=likelihood, lr=p["lr"], momentum=p["momentum"],
               damping=p["damping"], weight_decay=p["weight_decay"], stat_decay=p["stat_decay"],
               kl_clip=p["kl_clip"], t_cov=p["t_cov"], t_inv=p["t_inv"],
               fisher=fisher or p["fisher"], rescale=p["rescale"],
               adaptive_damping=p["adaptive_damping"], quad_batch=p["quad_batch"],
               quad_every=p["quad_every"], min_damping=p["min_damping"], batched=p.get("batched", True))
    opt.fast_quadratic = bool(p.get("fast_quadratic", True))    # False: the general quadratic path
    return opt


def apply_params(opt: torch.optim.Optimizer, p: Mapping[str, Any], changed: Sequence[str] = ()) -> None:
    """Live edits: copy the hyper-parameters ``p`` into a running optimizer."""
    g = opt.param_groups
    if isinstance(opt, NaturalGradient):
        g[0].update(damping=p["ngd_damping"], kl_budget=p["kl_budget"], weight_decay=p["weight_decay"],
                    cg_iters=p["cg_iters"])
    elif isinstance(opt, KFAC):
        grp = g[0]
        grp.update(lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"],
                   stat_decay=p["stat_decay"], kl_clip=p["kl_clip"], t_cov=p["t_cov"],
                   t_inv=p["t_inv"], rescale=p["rescale"], adaptive_damping=p["adaptive_damping"],
                   quad_batch=p["quad_batch"], quad_every=p["quad_every"])
        opt.min_damping = p["min_damping"]
        if "damping" in changed:
            grp["damping"] = p["damping"]
    elif isinstance(opt, torch.optim.Adam):
        for grp in g:
            grp.update(lr=p["lr_adam"], weight_decay=p["weight_decay"])
    else:
        for grp in g:
            grp.update(lr=p["lr_sgd"], momentum=p["momentum"], weight_decay=p["weight_decay"])


def train_step(model: nn.Module, opt: torch.optim.Optimizer, likelihood: str, x: torch.Tensor,
               y: torch.Tensor, x_stats: torch.Tensor | None = None,
               y_stats: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on the batch (x, y); returns the batch loss (0-d, on the device)
    and the model's outputs on x, both taken before the update. K-FAC takes its factor
    statistics from (x_stats, y_stats) when given."""
    if isinstance(opt, NaturalGradient):
        return opt.step_on(x, y)
    opt.zero_grad(set_to_none=True)
    if isinstance(opt, KFAC):
        if x_stats is not None and opt.stats_due:
            opt.update_stats(model(x_stats), y_stats)
        out = model(x)
        loss = opt.backward(out, y, inputs=x)
        opt.step()
        return loss, out.detach()
    out = model(x)
    loss = get_likelihood(likelihood).mean_loss(out, y)
    loss.backward()
    opt.step()
    return loss.detach(), out.detach()
