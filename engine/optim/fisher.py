"""The exact Fisher of a batch and K-FAC's error against it, without forming the matrix.

For a network f(x; θ) with a likelihood p(y | f) (engine/optim/likelihoods.py) the Fisher
of the mean loss on a batch of N examples with D output elements each is

    F = (1 / (N D)) Σ_n J_nᵀ H_n J_n,    J_n = ∂f(x_n)/∂θ,  H_n the likelihood's Fisher,

the expectation over y ~ p(y | x_n) taken exactly (for these canonical links it is also
the generalised Gauss-Newton matrix, and minus the expected Hessian of log p). Its
second-order term is the KL: KL[p_θ ‖ p_θ+d] ≈ ½ dᵀ F d, KL averaged per example and
output element (``Likelihood.kl``).

  * :class:`BatchFisher`: F v by one Jacobian-vector product (forward mode) and one
    vector-Jacobian product (reverse mode), so F is never formed: at 17,786 parameters
    the dense matrix would take 1.3 GB and a minute to factor.
  * :func:`solve_damped`: Δ = (F + λI)⁻¹ g by conjugate gradient on those products.
  * :func:`layer_jacobians`: for an ``nn.Sequential`` of Linear layers and parameter-free
    activations, per Linear layer the inputs ã_n (with a trailing 1) and the output
    gradients g_nc = (∂f_n/∂s_n)ᵀ r_nc / √(ND), r_nc the columns of H_n's square root
    (``Likelihood.fisher_sqrt``): the layer's block is then F_l = Σ_nc u_nc u_ncᵀ with
    u_nc = g_nc ⊗ ã_n (row-major vec of W, the bias as its last column), and the exact
    expectation of K-FAC's G is Σ_nc g_nc g_ncᵀ (BackPACK's KFLR, curvlinops' type-2).
  * :func:`kfac_block_error`: ‖A ⊗ G − F_l‖_F / ‖F_l‖_F from Gram identities:
    ‖F_l‖² = Σ_nm (ã_n·ã_m)² ⟨M_n, M_m⟩ with M_n = Σ_c g_nc g_ncᵀ,
    ⟨A ⊗ G, F_l⟩ = Σ_nc (g_ncᵀ G g_nc)(ã_nᵀ A ã_n), ‖A ⊗ G‖² = ‖A‖² ‖G‖².
  * :func:`block_heatmaps`: |F_l| and |A ⊗ G| on the first output units of a layer, as
    log10 of cell means (downsampled), for the heatmap view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .likelihoods import Likelihood, get_likelihood


def trainable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def flatten(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


class BatchFisher:
    """The exact Fisher of ``model`` on the batch ``x`` (see the module doc), as products.

    ``mv(v)`` returns F v for a flat vector v over the trainable parameters (in
    ``model.named_parameters()`` order); ``output`` is f(x) at the current parameters."""

    def __init__(self, model: nn.Module, likelihood: str | Likelihood, x: torch.Tensor) -> None:
        self.likelihood = get_likelihood(likelihood)
        named = trainable(model)
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self._primals = tuple(p.detach() for _, p in named)

        def f(*ps: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(model, dict(zip(self.names, ps)), (x,))

        self._f = f
        self.output, self._vjp = torch.func.vjp(f, *self._primals)
        self.output = self.output.detach()
        self.scale = 1.0 / (x.shape[0] * self.likelihood.elements(self.output))

    def gradient(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss, its flat gradient) at the batch's outputs, through the same VJP."""
        out = self.output.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = self.likelihood.mean_loss(out, target)
            (d_out,) = torch.autograd.grad(loss, out)
        return loss.detach(), flatten(self._vjp(d_out))

    def unflatten(self, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.view(s) for t, s in zip(torch.split(v, self.sizes), self.shapes))

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """J v: the change of the outputs along the flat parameter direction v."""
        return torch.func.jvp(self._f, self._primals, self.unflatten(v))[1]

    def mv(self, v: torch.Tensor) -> torch.Tensor:
        """F v = (1/(ND)) Jᵀ H J v."""
        hjv = self.likelihood.fisher_matvec(self.output, self.jvp(v))
        return flatten(self._vjp(hjv)) * self.scale

    def quad(self, v: torch.Tensor) -> torch.Tensor:
        """vᵀ F v = (1/(ND)) (Jv)ᵀ H (Jv), from one Jacobian-vector product."""
        jv = self.jvp(v)
        return self.likelihood.fisher_product(self.output, jv, jv) * self.scale


@dataclass
class Solve:
    x: torch.Tensor
    iterations: int
    residual: float        # ‖(F + λI) x - g‖ / ‖g‖


def solve_damped(mv: Callable[[torch.Tensor], torch.Tensor], g: torch.Tensor, damping: float,
                 max_iter: int = 100, tol: float = 1e-6) -> Solve:
    """(F + λI) x = g by conjugate gradient from x = 0 (F symmetric positive semi-definite,
    so F + λI is positive definite for λ > 0). Stops at relative residual ``tol``."""
    x = torch.zeros_like(g)
    r = g.clone()
    p = r.clone()
    rr = float(r @ r)
    g_norm = math.sqrt(rr)
    if g_norm == 0.0 or not math.isfinite(g_norm):
        return Solve(x, 0, 0.0 if g_norm == 0.0 else float("nan"))
    it = 0
    while it < max_iter and math.sqrt(rr) > tol * g_norm:
        ap = mv(p) + damping * p
        pap = float(p @ ap)
        if not (pap > 0.0 and math.isfinite(pap)):
            break
        alpha = rr / pap
        x.add_(p, alpha=alpha)
        r.sub_(ap, alpha=alpha)
        rr_new = float(r @ r)
        p.mul_(rr_new / rr).add_(r)
        rr = rr_new
        it += 1
    return Solve(x, it, math.sqrt(rr) / g_norm)


# -- per-layer factors of the exact Fisher (Sequential MLPs) --------------------------------
@dataclass
class LayerJacobian:
    """One Linear layer's share of the exact Fisher on a batch (see the module doc)."""

    name: str
    a: torch.Tensor        # (N, d_in + 1): inputs with a trailing 1 (or d_in without a bias)
    g: torch.Tensor        # (N, C, d_out): output gradients per column of H's square root, / √(ND)

    @property
    def exact_G(self) -> torch.Tensor:
        """E_y[g gᵀ] / D taken exactly: Σ_nc g_nc g_ncᵀ (the scale 1/(ND) is in g)."""
        return torch.einsum("nci,ncj->ij", self.g, self.g)

    @property
    def A(self) -> torch.Tensor:
        """K-FAC's A on the same examples: E_n[ã ãᵀ]."""
        return self.a.t() @ self.a / self.a.shape[0]


def layer_jacobians(model: nn.Sequential, likelihood: str | Likelihood, x: torch.Tensor) -> list[LayerJacobian]:
    """Per Linear layer of ``model`` (a Sequential of Linear layers and parameter-free
    modules), ã and g of the exact Fisher on ``x``: C backward passes, one per column of
    the likelihood's Fisher square root. The forward is run here, layer by layer, so no
    module hook (K-FAC's statistics) sees it."""
    lik = get_likelihood(likelihood)
    if not isinstance(model, nn.Sequential):
        raise ValueError("layer_jacobians needs an nn.Sequential of Linear layers and activations")
    h = x
    inputs, outputs, names = [], [], []
    with torch.enable_grad():
        for name, m in model.named_children():
            if isinstance(m, nn.Linear):
                inputs.append(h.detach())
                s = F.linear(h, m.weight.detach(), None if m.bias is None else m.bias.detach())
                if not s.requires_grad:              # the first layer: a leaf to differentiate at
                    s.requires_grad_(True)
                outputs.append(s)
                names.append(name)
                h = s
            elif next(m.parameters(), None) is None:
                h = m(h)
            else:
                raise ValueError(f"layer_jacobians: {type(m).__name__} has parameters and is not nn.Linear")
        out = h
        n = out.shape[0]
        root = lik.fisher_sqrt(out.detach())                     # (N, K, C)
        scale = 1.0 / math.sqrt(n * lik.elements(out))
        cols = []
        for c in range(root.shape[2]):
            gs = torch.autograd.grad((out * root[:, :, c]).sum(), outputs,
                                     retain_graph=c < root.shape[2] - 1)
            cols.append(gs)
    result = []
    for i, (name, a) in enumerate(zip(names, inputs)):
        m = model.get_submodule(name)
        if m.bias is not None:
            a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
        g = torch.stack([cols[c][i] for c in range(len(cols))], dim=1) * scale
        result.append(LayerJacobian(name, a, g))
    return result


def kfac_block_error(A: torch.Tensor, G: torch.Tensor, jac: LayerJacobian) -> tuple[float, float]:
    """(‖A ⊗ G − F_l‖_F / ‖F_l‖_F, ‖F_l‖_F) for K-FAC's undamped block A ⊗ G (G scaled
    as the loss's, i.e. already divided by D) against the exact block of ``jac``; in
    float64 (the error is a difference of squares)."""
    a, g = jac.a.double(), jac.g.double()
    A, G = A.double(), G.double()
    n, c, d = g.shape
    gram_a = (a @ a.t()) ** 2
    if n * d * d <= max((n * c) ** 2, 1 << 22):             # memory n d² vs (nc)²
        m = torch.einsum("nci,ncj->nij", g, g).reshape(n, d * d)
        norm_f2 = float((gram_a * (m @ m.t())).sum())
    else:                                                     # many outputs, wide layer
        flat = g.reshape(n * c, d)
        gram_g = (flat @ flat.t()).reshape(n, c, n, c).pow(2).sum((1, 3))
        norm_f2 = float((gram_a * gram_g).sum())
    cross = float((torch.einsum("nci,ij,ncj->n", g, G, g) * torch.einsum("ni,ij,nj->n", a, A, a)).sum())
    norm_k2 = float((A * A).sum() * (G * G).sum())
    if not norm_f2 > 0.0:
        return float("nan"), 0.0
    err2 = max(norm_k2 - 2.0 * cross + norm_f2, 0.0)
    return math.sqrt(err2 / norm_f2), math.sqrt(norm_f2)


def block_heatmaps(A: torch.Tensor, G: torch.Tensor, jac: LayerJacobian, max_params: int = 576,
                   cells: int = 48) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(log10 |F|, log10 |A ⊗ G|, k, m) on the parameters of the first k output units and
    first m inputs of the layer (k·m ≤ ``max_params``), each downsampled to at most
    ``cells`` x ``cells`` cell means of the absolute values."""
    a, g = jac.a.double(), jac.g.double()
    d_in, d_out = a.shape[1], g.shape[2]
    m = min(d_in, max_params)
    k = max(1, min(d_out, max_params // m))
    u = torch.einsum("nci,nj->ncij", g[:, :, :k], a[:, :m]).reshape(-1, k * m)
    exact = u.t() @ u
    approx = torch.kron(G.double()[:k, :k], A.double()[:m, :m])

    def shrink(z: torch.Tensor) -> torch.Tensor:
        side = min(cells, z.shape[0])
        pooled = F.adaptive_avg_pool2d(z.abs()[None, None], side)[0, 0]
        return torch.log10(pooled.clamp(min=1e-30))

    return shrink(exact), shrink(approx), k, m
