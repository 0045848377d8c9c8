"""K-FAC: Kronecker-factored approximate natural gradient, a ``torch.optim`` optimizer
(Martens & Grosse 2015; for convolutions the KFC approximation of Grosse & Martens 2016).

Conventions (ALGORITHMS.md, "Fisher information, natural gradient, K-FAC"):
  * A layer ``s = W a`` (``nn.Linear``: W is out x in; ``nn.Conv2d``: W reshaped to
    out x (in*kh*kw)) has the Fisher block F ≈ A ⊗ G (row-major vec of W), with
        A = E[a aᵀ]   (a the layer input, with a trailing 1 when the layer has a bias;
                       Conv2d: the mean over examples and output positions of the
                       unfolded input patches),
        G = E[g gᵀ]   (g = ∂(-log p(y|x))/∂s per example; Conv2d: Σ over output positions
                       of g gᵀ, averaged over examples).
    Each handled module type is one small :class:`KFACLayer` subclass (``LAYER_KINDS``)
    that says how its rows of a and g are laid out.
  * The loss whose curvature K-FAC models is the mean over the batch *and over the output
    elements* of the negative log-likelihood (a :class:`~.likelihoods.Likelihood`:
    categorical = softmax cross-entropy on logits, D = 1; bernoulli = binary cross-entropy
    on logits; gaussian = ½ (y - f)² with unit variance), so the optimizer preconditions
    with A ⊗ (G / D), D the number of output elements per example.
  * Damping λ with the π-corrected split: A_λ = A + π√λ I, G_λ = G/D + (√λ/π) I,
    π = sqrt((tr A / dim A) / (tr (G/D) / dim G)); the update direction is
    V = G_λ⁻¹ ∇W A_λ⁻¹, i.e. vec(V) = (G_λ ⊗ A_λ)⁻¹ vec(∇W) (``torch.kron(G_λ, A_λ)``).
  * Factors: exponential running averages with weight ``stat_decay`` on the old value
    (the first update replaces them), refreshed every ``t_cov`` steps from a forward pass
    captured by module hooks; eigendecompositions (``torch.linalg.eigh`` in
    ``eigh_dtype``, float32 or float64 whatever the model's dtype) every ``t_inv`` steps.
    Damping enters through the eigenvalues, so a new λ needs no new eigendecomposition.
  * ``fisher``: ``true`` fills G from labels sampled from the model's own predictive
    (``Likelihood.sample``: ``torch.multinomial`` on the softmax, a Bernoulli draw on the
    sigmoid, a unit Gaussian draw around the output), ``empirical`` from the observed
    labels. The two share one code path and differ only in the labels.
  * ``rescale``:
      ``kl_clip``  the reference implementations' rule (KFAC-Pytorch, kfac-jax): the
                   update is scaled by ν = min(1, sqrt(kl_clip / (lr² Σ_layers ⟨V, ∇W⟩))),
                   then weight decay and momentum are applied as in torch.optim.SGD
                   (d = νV + wd·θ; buf = momentum·buf + d; θ -= lr·buf). The reported
                   ``kl`` is lr² ν² Σ⟨V, ∇W⟩ (the convention of ``kl_clip``: no ½).
      ``quadratic`` Martens & Grosse: δ = α Δ + μ δ_prev with Δ = -V and (α, μ) minimising
                   M(δ) = ½ δᵀ(F + (λ + wd) I)δ + ∇Lᵀδ, F the exact Fisher (= GGN for
                   these likelihoods) on the batch through Jacobian-vector products: a
                   2x2 linear solve that replaces both the learning rate and momentum.
                   ``quad_batch`` = k > 0 (below the batch size) takes the whole quadratic
                   model on the batch's first k examples: the Fisher-vector products, M's
                   gradient term ∇L_kᵀδ (from the same Jacobian-vector products: no extra
                   backward) and the reduction ratio ρ (a forward pass of k examples), so the
                   model stays one consistent quadratic (a subset of the minibatch for these
                   products, as Martens & Grosse 2015 discuss). The direction Δ stays the
                   whole batch's. A sub-batch's curvature with the whole batch's gradient
                   (this option's earlier meaning) overshoots: on the digits MLP it never
                   reached SGD's loss (BENCHMARKS.md, K-FAC).
                   For an ``nn.Sequential`` of Linear layers and elementwise activations
                   (the topic's MLPs) the step runs on per-layer [W | b] tensors: both
                   Jacobian-vector products in one forward-mode pass over the sub-batch with
                   the tangents stacked, from the training forward's activations; the 2x2
                   block, the gradient terms and the Gram matrix in two matrix products; one
                   host read; the same numbers as the general path to rounding
                   (``_quadratic_fast``; ``fast_quadratic = False`` forces the general one).
                   ``quad_every`` = e > 1 fits (α, μ) to the model (the two Fisher-vector
                   products, the 2x2 solve) only every e-th step, on every LM step (ρ needs
                   the model's predicted reduction, so ρ always comes from a fitted step) and
                   whenever there is nothing safe to reuse: the first step, after a skipped
                   step, after a new eigendecomposition (the factors moved, and with them Δ's
                   scale). The steps in between keep M's exact parts that need no Fisher
                   product — this step's whole-batch gradient terms gᵀΔ = -⟨V, ∇W⟩ and
                   gᵀδ_prev and the damping's Gram matrix (λ as it is now) — and estimate its
                   Fisher block from the last fit: ΔᵀFΔ ≈ κ⟨V, ∇W⟩ with κ the fit's ratio of
                   the exact to the K-FAC curvature along Δ, δ_prevᵀFδ_prev ≈ the last step's
                   δᵀFδ, the cross term from the fit's correlation; then δ = αΔ + μ δ_prev
                   with the fresh Δ and δ_prev, the estimated model's minimiser, or where its
                   μ falls outside [0, 1) the minimiser on the edge μ = 0 or μ = 0.9, and
                   shortened along its ray to δᵀFδ = 2× the last fit's where it predicts more.
                   Such a step falls back to a fit only where its block is not positive
                   definite, or it is not finite, α ≤ 0 or it predicts no reduction (on the
                   digits tasks the fits are then the scheduled ones plus the
                   eigendecompositions' refits: 21 % of the steps). Reusing the fitted (α, μ)
                   themselves diverged on the digits autoencoder (α moves over two orders of
                   magnitude from step to step, μ over ±2; BENCHMARKS.md). Martens & Grosse
                   2015 (section 7, "re-scaling and momentum", and section 8 on its cost) fit
                   (α, μ) every step; this trades that for fewer Jacobian-vector products.
                   The reported ``kl`` of a step between fits is the estimate's δᵀFδ;
                   ``quad_fits`` counts the fitted steps. quad_every = 1: every step is fitted,
                   bit for bit the same steps as without the option.
                   ``adaptive_damping`` then adapts λ every ``t_damping`` steps by the
                   reduction ratio ρ = (L(θ+δ) - L(θ)) / M(δ): λ ← λ·ω when ρ > ¾,
                   λ ← λ/ω when ρ < ¼, ω = (19/20)^t_damping. The reported ``kl`` is δᵀFδ.
      ``none``     plain preconditioned SGD with momentum.
  * Failures: a failed eigendecomposition, non-finite factors or a non-finite update
    skip the step (parameters untouched), multiply λ by ``damping_raise`` and append a
    one-line event to ``events``; ``skipped`` counts them. Training never goes on with NaNs.

Usage::

    opt = KFAC(model, likelihood="categorical", lr=0.1, damping=1e-3)
    for x, y in batches:
        opt.zero_grad()
        output = model(x)                  # hooks record layer inputs when statistics are due
        loss = opt.backward(output, y, inputs=x)   # factor statistics, then loss.backward()
        opt.step()

``opt.backward`` may be preceded by ``opt.update_stats(model(x_big), y_big)`` to take the
factor statistics from a larger batch than the gradient's. Parameters of layers K-FAC
does not handle (grouped convolutions, norms, ...) are updated with their plain gradient.

Host syncs: one scalar per step (the finiteness and norm of the update), plus the
eigendecompositions every ``t_inv`` steps and the 2x2 solve in quadratic mode (on the
Sequential fast path one read per step carries all of it; ρ's loss is a second one on the
``t_damping`` steps).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.kfac_stats import cov_ema
from .likelihoods import LIKELIHOODS, Likelihood, get_likelihood, mean_loss

__all__ = ["KFAC", "KFACLayer", "LinearLayer", "Conv2dLayer", "LAYER_KINDS", "kfac_layers",
           "LIKELIHOODS", "Likelihood", "get_likelihood", "mean_loss"]

# .grad views of the gradient buffers have the buffer's strides, which autograd notes once
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

# elementwise activations the Sequential JVP fast path knows: (φ, φ' as a function of φ's output)
_ACTIVATIONS: dict[type, tuple[Callable, Callable]] = {
    nn.Tanh: (torch.tanh, lambda y: 1 - y * y),
    nn.Sigmoid: (torch.sigmoid, lambda y: y * (1 - y)),
    nn.ReLU: (torch.relu, lambda y: (y > 0).to(y.dtype)),
    nn.Identity: (lambda z: z, None),
}

RESCALES = ("kl_clip", "quadratic", "none")
FISHERS = ("true", "empirical")


# -- one K-FAC layer, one class per module type ------------------------------------------
class KFACLayer:
    """A handled module, its factors and their decomposition. Subclasses say which modules
    they handle (``handles``) and how the rows of a and g are laid out."""

    module_type: type = nn.Module

    @classmethod
    def handles(cls, module: nn.Module) -> bool:
        return isinstance(module, cls.module_type)

    def __init__(self, name: str, module: nn.Module, factor_dtype: torch.dtype) -> None:
        self.name = name
        self.module = module
        w = module.weight
        # the parameters themselves (the hot paths skip nn.Module.__getattr__)
        self.weight, self.bias = w, (module.bias if getattr(module, "bias", None) is not None else None)
        self.has_bias = getattr(module, "bias", None) is not None
        self.d_out = w.shape[0]
        self.d_in = int(w[0].numel()) + int(self.has_bias)
        dev = w.device
        self.A = torch.zeros(self.d_in, self.d_in, device=dev, dtype=factor_dtype)
        self.G = torch.zeros(self.d_out, self.d_out, device=dev, dtype=factor_dtype)
        self.fresh = True          # the next statistics replace the factors
        self.a: torch.Tensor | None = None       # captured input (detached)
        self.s: torch.Tensor | None = None       # captured output (in the graph)
        self.eig: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.pi = 1.0
        self.A_inv: torch.Tensor | None = None
        self.G_inv: torch.Tensor | None = None
        self.a_last: torch.Tensor | None = None      # the last training forward's input and
        self.s_last: torch.Tensor | None = None      # output (rescale=quadratic, Sequential models)
        self.grad_buf: torch.Tensor | None = None     # [∇W | ∇b], the .grad tensors are views of it
        self.grad_group: torch.Tensor | None = None   # the (k, out, in) buffer it is a slice of

    # how the module lays out its rows of a and g ------------------------------------------
    def activations(self) -> torch.Tensor:
        """Rows a for A (without the ones column), from the captured input."""
        raise NotImplementedError

    def output_grads(self, g: torch.Tensor) -> torch.Tensor:
        """Rows g for G from ∂(-log p)/∂s (positions summed in G by the 1/N scale)."""
        raise NotImplementedError

    def weight_view(self, vw: torch.Tensor) -> torch.Tensor:
        """The out x in matrix of the weight part as a tensor shaped like the weight."""
        return vw

    shares_grad_buffer = True   # may its .grad tensors be views of a (k, out, in) buffer

    # gradients --------------------------------------------------------------------------
    def attach_grads(self) -> None:
        """Make weight.grad and bias.grad views of grad_buf (autograd accumulates in place)."""
        if self.grad_buf is None:
            return
        w = self.weight
        if self.has_bias:
            w.grad = self.grad_buf[:, :-1]
            self.bias.grad = self.grad_buf[:, -1]
        else:
            w.grad = self.grad_buf.view(w.shape)
        # the attached tensors and where they point (autograd accumulates into them in place)
        self._attached = (w.grad, w.grad.data_ptr(), self.bias.grad if self.has_bias else None,
                          self.bias.grad.data_ptr() if self.has_bias else 0)

    _attached: tuple = (None, 0, None, 0)

    def grads_attached(self) -> bool:
        if self.grad_buf is None:
            return False
        gw, pw, gb, pb = self._attached
        w = self.weight.grad
        if w is None or w is not gw or w.data_ptr() != pw:
            return False
        if self.has_bias:
            b = self.bias.grad
            return b is not None and b is gb and b.data_ptr() == pb
        return True

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.weight] + ([self.bias] if self.has_bias else [])

    def grad_matrix(self, weight_decay: float = 0.0) -> torch.Tensor:
        """∇W as out x in (bias as the last column), in the factors' dtype."""
        w = self.module.weight
        if self.grads_attached():
            if not weight_decay:
                return self.grad_buf
            wb = torch.cat([w.detach().reshape(self.d_out, -1), self.module.bias.detach()[:, None]], 1) \
                if self.has_bias else w.detach().reshape(self.d_out, -1)
            return self.grad_buf + weight_decay * wb
        g = w.grad.reshape(self.d_out, -1)
        if weight_decay:
            g = g + weight_decay * w.detach().reshape(self.d_out, -1)
        if self.has_bias:
            b = self.module.bias
            gb = b.grad if not weight_decay else b.grad + weight_decay * b.detach()
            g = torch.cat([g, gb.unsqueeze(1)], dim=1)
        return g if g.dtype == self.A.dtype else g.to(self.A.dtype)

    def split(self, v: torch.Tensor) -> list[torch.Tensor]:
        """A matrix shaped like grad_matrix() -> tensors shaped like the parameters."""
        w = self.module.weight
        if v.dtype != w.dtype:
            v = v.to(w.dtype)
        vw = self.weight_view(v[:, :-1] if self.has_bias else v)
        return [vw, v[:, -1]] if self.has_bias else [vw]


class LinearLayer(KFACLayer):
    """``nn.Linear``: one row of a and of g per example (and per leading position)."""

    module_type = nn.Linear

    def activations(self) -> torch.Tensor:
        return self.a.reshape(-1, self.a.shape[-1])

    def output_grads(self, g: torch.Tensor) -> torch.Tensor:
        return g.reshape(-1, g.shape[-1])


class Conv2dLayer(KFACLayer):
    """``nn.Conv2d`` (ungrouped, zero padding): one row per example and output position,
    the unfolded input patch for a, the output channels' gradient for g (KFC)."""

    module_type = nn.Conv2d

    @classmethod
    def handles(cls, module: nn.Module) -> bool:
        return isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"

    @property
    def shares_grad_buffer(self) -> bool:          # a conv bias keeps its own gradient
        return not self.has_bias

    def activations(self) -> torch.Tensor:
        m = self.module
        patches = F.unfold(self.a, m.kernel_size, dilation=m.dilation, padding=m.padding,
                           stride=m.stride)                   # (N, in*kh*kw, T)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])

    def output_grads(self, g: torch.Tensor) -> torch.Tensor:
        return g.permute(0, 2, 3, 1).reshape(-1, g.shape[1])

    def weight_view(self, vw: torch.Tensor) -> torch.Tensor:
        return vw.reshape(self.module.weight.shape)


LAYER_KINDS: tuple[type[KFACLayer], ...] = (LinearLayer, Conv2dLayer)


def layer_kind(module: nn.Module) -> type[KFACLayer] | None:
    """The KFACLayer class that handles ``module``, or None."""
    for kind in LAYER_KINDS:
        if kind.handles(module):
            return kind
    return None


class KFAC(torch.optim.Optimizer):
    """K-FAC for the ``nn.Linear`` and ``nn.Conv2d`` layers of ``model`` (see module doc).

    Hyper-parameters live in ``param_groups[0]`` (one group) and may be changed between
    steps: lr, momentum, damping, weight_decay, stat_decay, kl_clip, t_cov, t_inv,
    fisher, rescale, adaptive_damping, t_damping, quad_batch, quad_every.
    """

    def __init__(self, model: nn.Module, likelihood: str | Likelihood = "categorical", lr: float = 0.1,
                 momentum: float = 0.9, damping: float = 1e-3, weight_decay: float = 0.0,
                 stat_decay: float = 0.95, kl_clip: float = 1e-3, t_cov: int = 10,
                 t_inv: int = 100, fisher: str = "true", rescale: str = "kl_clip",
                 adaptive_damping: bool = False, t_damping: int = 5, quad_batch: int = 0,
                 quad_every: int = 1, eigh_dtype: torch.dtype = torch.float32, damping_raise: float = 10.0,
                 min_damping: float = 1e-8, max_damping: float = 1e4,
                 batched: bool = True, triton_stats: bool | None = None,
                 generator: torch.Generator | None = None) -> None:
        lik = get_likelihood(likelihood)
        if eigh_dtype not in (torch.float32, torch.float64):
            raise ValueError("eigh_dtype must be torch.float32 or torch.float64")
        defaults = dict(lr=lr, momentum=momentum, damping=damping, weight_decay=weight_decay,
                        stat_decay=stat_decay, kl_clip=kl_clip, t_cov=t_cov, t_inv=t_inv,
                        fisher=fisher, rescale=rescale, adaptive_damping=adaptive_damping,
                        t_damping=t_damping, quad_batch=quad_batch, quad_every=quad_every)
        super().__init__([p for p in model.parameters() if p.requires_grad], defaults)
        self._check_group()
        self.model = model
        self.likelihood = lik
        self.eigh_dtype = eigh_dtype
        self.damping_raise = damping_raise
        self.min_damping, self.max_damping = min_damping, max_damping
        self.batched = batched
        self.generator = generator
        self.layers: list[KFACLayer] = []
        handled: set[int] = set()
        dev = None
        for name, module in model.named_modules():
            kind = layer_kind(module)
            if kind is None or not module.weight.requires_grad:
                continue
            w = module.weight
            dev = w.device
            factor_dtype = torch.float64 if w.dtype == torch.float64 else torch.float32
            layer = kind(name, module, factor_dtype)
            self.layers.append(layer)
            handled.update(id(p) for p in layer.params)
            module.register_forward_hook(self._make_hook(layer))
        self.other_params = [p for p in self.param_groups[0]["params"] if id(p) not in handled]
        self._grad_groups = self._make_grad_buffers() if batched else []
        self._plan = self._sequential_plan()
        if triton_stats is None:
            from ..device import use_triton
            triton_stats = dev is not None and use_triton(dev)
        self.triton_stats = bool(triton_stats)
        self.steps = 0                 # optimizer steps taken or skipped
        self.skipped = 0               # steps skipped for non-finite values or eigh failures
        self.events: list[str] = []    # one-line events since the caller last drained them
        self.last_kl = float("nan")
        self.last_alpha = float("nan")
        self.last_mu = float("nan")
        self.last_rho = float("nan")
        self._stats_done_at = -1
        self._capture_now = False
        self._inv_damping: float | None = None
        self._need_inverse = True
        self._batch: tuple[Any, Any, torch.Tensor] | None = None
        self._delta_prev: torch.Tensor | None = None     # the last update, flat
        self.fast_quadratic = True     # rescale=quadratic through _quadratic_fast where it applies
        self._quad: _QuadBuffers | None = None      # its buffers; D[1] is the last update when
        self._prev_in_quad = False                   # _prev_in_quad (then _delta_prev is None)
        self._groups: list = []
        self._group_buffers: list = []
        self._quad_curv: tuple[float, float, float] | None = None   # reused between fits (quad_every)
        self._quad_refit = True          # the next quadratic step fits (α, μ) whatever the schedule
        self.quad_fits = 0               # quadratic steps that evaluated the model (JVPs, 2x2 solve)

    def _make_grad_buffers(self) -> list[torch.Tensor]:
        """One (k, out, in) gradient buffer per group of same-shaped layers whose .grad
        tensors become its views: the batched preconditioning then reads the gradients
        without a copy (no cat, no stack). Conv layers with a bias keep their own grads."""
        groups: dict[tuple, list[KFACLayer]] = {}
        for layer in self.layers:
            w = layer.module.weight
            if not layer.shares_grad_buffer or w.dtype != layer.A.dtype:
                continue
            groups.setdefault((layer.d_out, layer.d_in, w.dtype, w.device), []).append(layer)
        buffers = []
        for (d_out, d_in, dtype, device), members in groups.items():
            buf = torch.zeros(len(members), d_out, d_in, dtype=dtype, device=device)
            for i, layer in enumerate(members):
                layer.grad_buf, layer.grad_group = buf[i], buf
                layer.attach_grads()
            buffers.append(buf)
        return buffers

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients; the K-FAC layers' gradient buffers are zeroed in place and
        re-attached (so ``set_to_none`` applies to the other parameters only)."""
        for buf in self._grad_groups:
            buf.zero_()
        for layer in self.layers:
            if layer.grad_buf is not None:
                if not layer.grads_attached():
                    layer.attach_grads()
            else:
                for p in layer.params:
                    if set_to_none:
                        p.grad = None
                    elif p.grad is not None:
                        p.grad.zero_()
        for p in self.other_params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    # -- hyper-parameters --------------------------------------------------------------
    @property
    def group(self) -> dict[str, Any]:
        return self.param_groups[0]

    @property
    def quad_every(self) -> int:
        """Fit (α, μ) every this many quadratic steps (1: every step)."""
        return int(self.group.get("quad_every", 1))

    @property
    def damping(self) -> float:
        return float(self.group["damping"])

    @damping.setter
    def damping(self, value: float) -> None:
        self.group["damping"] = float(min(max(value, self.min_damping), self.max_damping))

    def _check_group(self) -> None:
        g = self.param_groups[0]
        if g["fisher"] not in FISHERS:
            raise ValueError(f"fisher must be one of {'|'.join(FISHERS)}, got {g['fisher']!r}")
        if g["rescale"] not in RESCALES:
            raise ValueError(f"rescale must be one of {'|'.join(RESCALES)}, got {g['rescale']!r}")
        if g["damping"] <= 0:
            raise ValueError(f"damping must be > 0, got {g['damping']}")
        if int(g["t_cov"]) < 1 or int(g["t_inv"]) < 1:
            raise ValueError("t_cov and t_inv must be >= 1")
        if int(g.get("quad_every", 1)) < 1:
            raise ValueError(f"quad_every must be >= 1, got {g['quad_every']}")

    # -- statistics ------------------------------------------------------------------
    @property
    def stats_due(self) -> bool:
        """True when this step's forward pass feeds the factor statistics."""
        return self.steps % int(self.group["t_cov"]) == 0 and self._stats_done_at != self.steps

    def _make_hook(self, layer: KFACLayer) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if self._jvp_active or not (torch.is_grad_enabled() or self._capture_now):
                return
            if self._capture_now or self.stats_due:
                layer.a = inputs[0].detach()
                layer.s = output if output.requires_grad else None
            if self._plan is not None and self.group["rescale"] == "quadratic":
                # the training forward's activations, for the quadratic model's JVPs
                layer.a_last, layer.s_last = inputs[0].detach(), output.detach()
        return hook

    def _sequential_plan(self) -> list[tuple[str, Any]] | None:
        """For an ``nn.Sequential`` of Linear layers and elementwise activations: the
        recipe of its forward-mode JVP from the captured activations (None otherwise)."""
        if not isinstance(self.model, nn.Sequential) or self.other_params:
            return None
        by_module = {id(l.module): l for l in self.layers}
        plan: list[tuple[str, Any]] = []
        for m in self.model:
            layer = by_module.get(id(m))
            if isinstance(layer, LinearLayer):
                plan.append(("linear", layer))
            elif type(m) in _ACTIVATIONS:
                plan.append(("act", _ACTIVATIONS[type(m)]))
            else:
                return None
        return plan if plan and plan[0][0] == "linear" else None

    def _jvp_sequential(self, tangents: list[dict[int, torch.Tensor]], k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(f(x), [J v_t]) for several tangents at once, from the activations the training
        forward left behind (no new primal pass): per Linear layer
        dz = W dz_in + dW a + db, per activation dz = φ'(z) dz. None if not captured."""
        n_t = len(tangents)
        dz = cur = None
        for i, (kind, item) in enumerate(self._plan):
            if kind == "linear":
                layer = item
                if layer.a_last is None:
                    return None
                a = layer.a_last[:k]
                w = layer.module.weight
                d_w = torch.stack([t[id(w)] for t in tangents])                    # (T, out, in)
                contrib = torch.matmul(a, d_w.transpose(1, 2))                    # (T, N, out)
                if layer.has_bias:
                    d_b = torch.stack([t[id(layer.module.bias)] for t in tangents])
                    contrib = contrib + d_b[:, None, :]
                dz = contrib if dz is None else torch.matmul(dz, w.t()) + contrib
                cur = layer.s_last[:k]
            else:
                fn, deriv = item
                nxt = self._plan[i + 1] if i + 1 < len(self._plan) else None
                if nxt is not None and nxt[0] == "linear":
                    if nxt[1].a_last is None:
                        return None
                    cur = nxt[1].a_last[:k]       # φ(z) is the next Linear layer's captured input
                else:
                    cur = fn(cur)
                if deriv is not None:
                    dz = dz * deriv(cur)
        return cur, dz.reshape(n_t, *cur.shape)

    _jvp_active = False

    def update_stats(self, output: torch.Tensor, target: torch.Tensor | None = None) -> None:
        """Fold the batch whose forward produced ``output`` into A and G.

        G's labels: sampled from the model (fisher=true) or ``target`` (empirical). Uses
        ``torch.autograd.grad`` on the layer outputs, so parameter gradients are untouched;
        the graph is retained for the real loss's backward."""
        layers = [l for l in self.layers if l.a is not None and l.s is not None]
        if not layers:
            raise RuntimeError("update_stats: no layer input was captured; call it on the output "
                               "of a forward pass run while opt.stats_due (or inside opt.capture())")
        g = self.group
        if g["fisher"] == "true" or target is None:
            labels = self.likelihood.sample(output, self.generator)
        else:
            labels = target
        grads = torch.autograd.grad(self.likelihood.nll_sum(output, labels),
                                    [l.s for l in layers], retain_graph=True, allow_unused=True)
        n = output.shape[0]
        inv_d = 1.0 / self.likelihood.elements(output)
        decay = float(g["stat_decay"])
        with torch.no_grad():
            for layer, gs in zip(layers, grads):
                a = layer.activations().to(layer.A.dtype)
                d = 0.0 if layer.fresh else decay
                use_triton = self.triton_stats and a.dtype == torch.float32
                cov_ema(a, layer.A, d, (1.0 - d) / a.shape[0], ones=layer.has_bias,
                        triton_kernel=use_triton)
                if gs is None:
                    gs = torch.zeros_like(layer.s)
                go = layer.output_grads(gs).to(layer.G.dtype)
                # G of the loss: E_n[g gᵀ] / D (conv: Σ over positions, averaged over examples)
                cov_ema(go, layer.G, d, (1.0 - d) * inv_d / n, ones=False, triton_kernel=use_triton)
                layer.fresh = False
                layer.a = layer.s = None
        for layer in self.layers:
            layer.a = layer.s = None
        self._stats_done_at = self.steps

    class _Capture:
        def __init__(self, opt: "KFAC") -> None:
            self.opt = opt

        def __enter__(self) -> None:
            self.opt._capture_now = True

        def __exit__(self, *exc: Any) -> None:
            self.opt._capture_now = False

    def capture(self) -> "KFAC._Capture":
        """Context manager: record layer inputs in this forward pass whatever the step."""
        return KFAC._Capture(self)

    def backward(self, output: torch.Tensor, target: torch.Tensor,
                 inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Factor statistics when due (from this forward), then the mean loss's backward.
        ``inputs`` (the model's input) is needed by rescale=quadratic. Returns the loss."""
        if any(l.a is not None for l in self.layers) and (self.stats_due or self._capture_now):
            self.update_stats(output, target)
        loss = self.likelihood.mean_loss(output, target)
        loss.backward()
        self._batch = (inputs, target, loss.detach())
        return loss.detach()

    # -- inverses ------------------------------------------------------------------------
    def _decompose(self) -> str | None:
        """Eigendecompositions of every factor. Returns an error line, or None."""
        for layer in self.layers:
            if layer.fresh:
                continue
            try:
                if not (torch.isfinite(layer.A).all() and torch.isfinite(layer.G).all()):
                    layer.fresh = True
                    return f"non-finite factors in layer {layer.name}"
                dA, QA = torch.linalg.eigh(layer.A.to(self.eigh_dtype))
                dG, QG = torch.linalg.eigh(layer.G.to(self.eigh_dtype))
            except RuntimeError as exc:  # torch.linalg.LinAlgError is a RuntimeError
                layer.fresh = True
                return f"eigendecomposition failed in layer {layer.name}: {str(exc).splitlines()[0]}"
            layer.eig = (dA.clamp(min=0), QA, dG.clamp(min=0), QG)
        self._inv_damping = None
        return None

    def _build_inverses(self) -> None:
        """A_λ⁻¹, G_λ⁻¹ from the eigendecompositions and the current λ (π split)."""
        lam = self.damping
        sq = math.sqrt(lam)
        for layer in self.layers:
            if layer.eig is None:
                continue
            dA, QA, dG, QG = layer.eig
            ta = float(dA.sum()) / dA.numel()
            tg = float(dG.sum()) / dG.numel()
            layer.pi = math.sqrt(ta / tg) if ta > 0 and tg > 0 else 1.0
            dt = layer.A.dtype
            layer.A_inv = ((QA / (dA + layer.pi * sq)) @ QA.t()).to(dt)
            layer.G_inv = ((QG / (dG + sq / layer.pi)) @ QG.t()).to(dt)
        self._inv_damping = lam
        self._groups = self._shape_groups()

    def _shape_groups(self) -> list[tuple[list[KFACLayer], torch.Tensor | None, torch.Tensor | None]]:
        """Layers with inverses grouped by shape, with stacked inverses for batched bmm."""
        groups: dict[tuple[int, int], list[KFACLayer]] = {}
        for layer in self.layers:
            if layer.A_inv is not None:
                key = (layer.d_out, layer.d_in) if self.batched else (id(layer), 0)
                groups.setdefault(key, []).append(layer)
        out = []
        for members in groups.values():
            if len(members) > 1:
                out.append((members, torch.stack([l.G_inv for l in members]),
                            torch.stack([l.A_inv for l in members])))
            else:
                out.append((members, None, None))
        self._group_buffers = []
        for members, _, _ in out:
            buf = members[0].grad_group
            same = buf is not None and buf.shape[0] == len(members) and all(
                l.grad_group is buf and l.grad_buf.data_ptr() == buf[i].data_ptr() for i, l in enumerate(members))
            self._group_buffers.append(buf if same else None)
        return out

    def precondition(self, weight_decay: float = 0.0) -> tuple[list[tuple[KFACLayer, torch.Tensor, torch.Tensor]], torch.Tensor]:
        """[(layer, ∇W, V)] and Σ⟨V, ∇W⟩ over layers (a 0-d tensor, no host sync)."""
        results = []
        dots = []
        for (members, g_stack, a_stack), buf in zip(self._groups, self._group_buffers):
            if g_stack is None:
                layer = members[0]
                x = layer.grad_matrix(weight_decay)
                v = layer.G_inv @ x @ layer.A_inv
                results.append((layer, x, v))
                dots.append(torch.dot(v.reshape(-1), x.reshape(-1)))
            else:
                if buf is not None and not weight_decay and all(l.grads_attached() for l in members):
                    xs = buf                                   # the gradients, in place
                else:
                    xs = torch.stack([l.grad_matrix(weight_decay) for l in members])
                vs = torch.bmm(torch.bmm(g_stack, xs), a_stack)
                dots.append(torch.dot(vs.reshape(-1), xs.reshape(-1)))
                results.extend((l, xs[i], vs[i]) for i, l in enumerate(members))
        total = torch.stack(dots).sum() if dots else torch.zeros(())
        return results, total

    # -- the step ------------------------------------------------------------------------
    def _skip(self, why: str) -> None:
        self.skipped += 1
        self._quad_refit = True
        old = self.damping
        self.damping = old * self.damping_raise
        self.events.append(f"step {self.steps}: {why}; step skipped, damping {old:.3g} -> {self.damping:.3g}")
        self.steps += 1

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_group()
        g = self.group
        if self.steps % int(g["t_inv"]) == 0 or self._need_inverse:
            err = self._decompose()
            if err is not None:
                self._need_inverse = True
                self._skip(err)
                return loss
            self._need_inverse = any(l.eig is None for l in self.layers)
            self._quad_refit = True          # new factors: Δ's scale moves, so (α, μ) are refit
        if self._inv_damping != self.damping:
            self._build_inverses()
        if any(l.A_inv is None for l in self.layers):
            # no statistics yet (a caller that skipped update_stats): plain gradient step
            self._need_inverse = True
        if g["rescale"] == "quadratic" and self._fast_quadratic_applies():
            if self._quadratic_fast():
                self.steps += 1
            return loss
        results, vg = self.precondition(g["weight_decay"] if g["rescale"] == "quadratic" else 0.0)
        handled = {id(l) for l, _, _ in results}
        plain = [p for l in self.layers if id(l) not in handled for p in l.params] + self.other_params
        plain = [p for p in plain if p.grad is not None]
        if plain:
            vg = vg + sum((p.grad.float() * p.grad.float()).sum() for p in plain)
        vg_host = float(vg)
        if not math.isfinite(vg_host):
            self._skip("non-finite update")
            return loss
        updates: list[tuple[torch.Tensor, torch.Tensor]] = []
        for layer, _, v in results:
            updates.extend(zip(layer.params, layer.split(v)))
        updates.extend((p, p.grad) for p in plain)
        if g["rescale"] == "quadratic":
            ok = self._quadratic_step(updates, results, plain)
            if not ok:
                return loss
        else:
            self._sgd_step(updates, vg_host)
        self.steps += 1
        return loss

    def _sgd_step(self, updates: list[tuple[torch.Tensor, torch.Tensor]], vg: float) -> None:
        g = self.group
        lr, mom, wd, kl_clip = g["lr"], g["momentum"], g["weight_decay"], g["kl_clip"]
        nu = 1.0
        if g["rescale"] == "kl_clip" and kl_clip > 0 and vg > 0:
            nu = min(1.0, math.sqrt(kl_clip / (lr * lr * vg)))
        self.last_kl = lr * lr * nu * nu * vg
        params = [p for p, _ in updates]
        us = [u for _, u in updates]
        if wd:                                   # d = ν V + wd θ
            d = torch._foreach_mul(us, nu)
            torch._foreach_add_(d, params, alpha=wd)
        else:
            d, lr = us, lr * nu                  # d = V, the ν folded into the step size
        if mom:
            bufs = [self.state[p].get("momentum_buffer") for p in params]
            if any(b is None for b in bufs):
                scale = 1.0 if wd else nu
                for p, di in zip(params, d):
                    self.state[p]["momentum_buffer"] = di * scale
            else:
                torch._foreach_mul_(bufs, mom)
                torch._foreach_add_(bufs, d, alpha=1.0 if wd else nu)
            d, lr = [self.state[p]["momentum_buffer"] for p in params], g["lr"]
        torch._foreach_add_(params, d, alpha=-lr)

    # -- Martens & Grosse: exact quadratic model ---------------------------------------
    def _jvp(self, inputs: torch.Tensor, tangents: list[torch.Tensor],
             params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x), J v) for the model at its current parameters, by forward-mode AD
        (dual numbers through ``functional_call``; cheaper than a second backward)."""
        import torch.autograd.forward_ad as fwAD

        by_id = {id(p): t for p, t in zip(params, tangents)}
        self._jvp_active = True
        try:
            with fwAD.dual_level():
                duals = {}
                for name, p in self.model.named_parameters():
                    t = by_id.get(id(p))
                    duals[name] = fwAD.make_dual(p.detach(), t) if t is not None else p.detach()
                out = torch.func.functional_call(self.model, duals, (inputs,))
                primal, tangent = fwAD.unpack_dual(out)
        finally:
            self._jvp_active = False
        if tangent is None:
            tangent = torch.zeros_like(primal)
        return primal.detach(), tangent.detach()

    def _quadratic_step(self, updates: list[tuple[torch.Tensor, torch.Tensor]],
                        results: list, plain: list[torch.Tensor]) -> bool:
        g = self.group
        if self._batch is None or self._batch[0] is None:
            raise RuntimeError("rescale=quadratic needs opt.backward(output, target, inputs=x)")
        inputs, target, loss0 = self._batch
        params = [p for p, _ in updates]
        shapes = [p.shape for p in params]
        sizes = [p.numel() for p in params]
        wd = g["weight_decay"]

        def flat(ts: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat([t.reshape(-1) for t in ts])

        def unflat(v: torch.Tensor) -> list[torch.Tensor]:
            return [t.view(s) for t, s in zip(torch.split(v, sizes), shapes)]

        delta = -flat([u for _, u in updates])                            # Δ = -V
        if self._prev_in_quad:                   # the fast path's last update, as a flat vector
            self._delta_prev = flat(self._quad.step_views) if self._quad is not None else None
            self._prev_in_quad = False
        prev = self._delta_prev if self._delta_prev is not None and \
            self._delta_prev.numel() == delta.numel() else None
        lm_due = bool(g["adaptive_damping"]) and (self.steps + 1) % int(g["t_damping"]) == 0
        every = self.quad_every > 1
        full_grad = None
        if every:                                    # the whole batch's gradient, flat (wd included)
            full_grad = flat([gr for layer, x, _ in results for gr in layer.split(x)]
                             + [p.grad + wd * p.detach() if wd else p.grad for p in plain])
        if not self._quad_fit_due(lm_due):           # quad_every: a step between fits
            vg = float(-(full_grad @ delta))
            reuse = self._reuse_coefficients(
                vg, None if prev is None else float(full_grad @ prev), float(delta @ delta),
                0.0 if prev is None else float(-(delta @ prev)), 0.0 if prev is None else float(prev @ prev))
            if reuse is not None:
                for layer in self.layers:
                    layer.a_last = layer.s_last = None
                alpha, mu, kl = reuse
                step = alpha * delta if prev is None else alpha * delta + mu * prev
                self.last_alpha, self.last_mu, self.last_kl = alpha, mu, kl
                self._quad_curv = self._quad_curv[:2] + (kl, self._quad_curv[3])
                torch._foreach_add_(params, unflat(step))
                self._delta_prev = step
                return True
        k = int(g.get("quad_batch", 0) or 0)
        sub = 0 < k < inputs.shape[0]
        x_q = inputs[:k] if sub else inputs          # the quadratic model on a sub-batch
        grad = None
        if not sub:
            grads = [gr for layer, x, _ in results for gr in layer.split(x)]
            grads += [p.grad + wd * p.detach() if wd else p.grad for p in plain]
            grad = flat(grads)
        fast = None
        if self._plan is not None:
            dirs = [delta] if prev is None else [delta, prev]
            fast = self._jvp_sequential([{id(p): t for p, t in zip(params, unflat(d))} for d in dirs],
                                        x_q.shape[0])
        for layer in self.layers:       # used once: a later step needs its own forward's
            layer.a_last = layer.s_last = None
        if fast is not None:
            out, jvs = fast
            j_delta = jvs[0]
        else:
            out, j_delta = self._jvp(x_q, unflat(delta), params)
        scale = 1.0 / (out.shape[0] * self.likelihood.elements(out))
        lam = self.damping + wd
        if sub:
            # M's gradient term on the same sub-batch as its curvature: ∇L_kᵀv = Σ (∂L_k/∂f)·(J v)
            with torch.enable_grad():
                o = out.detach().requires_grad_(True)
                loss_q = self.likelihood.mean_loss(o, target[:k])
                (g_out,) = torch.autograd.grad(loss_q, o)
            theta0 = flat([p.detach() for p in params]) if wd else None
            loss0 = loss_q.detach()

            def g_dot(j: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                d = (g_out * j).sum()
                return d + wd * (theta0 @ v) if wd else d
        else:
            g_dot = lambda j, v: grad @ v
        fv = lambda j: scale * self.likelihood.fisher_matvec(out, j)      # the Fisher's metric on J v
        f_delta = fv(j_delta)
        c00 = (j_delta * f_delta).sum()
        if prev is not None:
            j_prev = jvs[1] if fast is not None else self._jvp(x_q, unflat(prev), params)[1]
            basis = torch.stack([delta, prev])
            c01 = (j_prev * f_delta).sum()
            c_f = torch.stack([torch.stack([c00, c01]),
                               torch.stack([c01, (j_prev * fv(j_prev)).sum()])]).double()
            C = c_f + lam * (basis @ basis.t()).double()
            b = torch.stack([g_dot(j_delta, delta), g_dot(j_prev, prev)]).double()
            try:
                sol = -torch.linalg.solve(C, b)
                alpha, mu = float(sol[0]), float(sol[1])
            except RuntimeError:
                alpha, mu = float("nan"), float("nan")
            if not (math.isfinite(alpha) and math.isfinite(mu)):
                alpha, mu = float(-b[0] / C[0, 0]), 0.0                   # Δ alone
        else:
            c_f = c00.double().reshape(1, 1)
            c11 = c00 + lam * (delta @ delta)
            b = torch.stack([g_dot(j_delta, delta), torch.zeros((), dtype=delta.dtype)]).double()
            alpha, mu = float(-b[0] / c11), 0.0
        if not (math.isfinite(alpha) and math.isfinite(mu)):
            self._skip("non-finite quadratic-model step")
            return False
        step = alpha * delta if prev is None else alpha * delta + mu * prev
        model_reduction = 0.5 * (alpha * float(b[0]) + mu * float(b[1]))  # M(δ) at the optimum
        # δᵀFδ = (α, μ) C_F (α, μ)ᵀ (exact Fisher on the batch, J linear in the tangent): the
        # kl_clip convention, from the 2x2 Fisher block already computed
        coef = torch.tensor([alpha, mu][: c_f.shape[0]], dtype=torch.float64)
        self.last_kl = float(coef @ c_f @ coef)
        self.last_alpha, self.last_mu = alpha, mu
        self._fitted(c_f.tolist(), float(-(full_grad @ delta)) if every else 0.0, prev is not None)
        torch._foreach_add_(params, unflat(step))
        self._delta_prev = step
        if lm_due and model_reduction < 0:
            self._jvp_active = True
            try:
                new_loss = float(self.likelihood.mean_loss(self.model(x_q), target[:k] if sub else target))
            finally:
                self._jvp_active = False
            if wd:
                # the regulariser's change, so ρ compares like with like
                theta = flat([p.detach() for p in params])
                new_loss += 0.5 * wd * float(theta @ theta - (theta - step) @ (theta - step))
            rho = (new_loss - float(loss0)) / model_reduction
            self._levenberg_marquardt(rho, g)
        return True

    def _quad_fit_due(self, lm_due: bool) -> bool:
        """Does this quadratic step fit (α, μ) to the model (the JVPs and the 2x2 solve)?
        Always at quad_every = 1; else when there is no curvature to reuse (the first
        step, after a skip or a new eigendecomposition, after a fit without δ_prev), on
        every LM step (ρ needs the model's predicted reduction) and every quad_every-th
        step (steps + 1 ≡ 0 mod quad_every, LM's own phase)."""
        e = self.quad_every
        return (e <= 1 or self._quad_curv is None or self._quad_refit or lm_due
                or (self.steps + 1) % e == 0)

    def _fitted(self, c_f: Any, vg: float, two_d: bool) -> None:
        """After a fit: keep what the steps until the next fit reuse (quad_every > 1): the
        ratio κ = ΔᵀFΔ / ΔᵀF̆_λΔ of the exact to the K-FAC curvature along Δ (ΔᵀF̆_λΔ =
        ⟨V, ∇W⟩), the correlation c01 / sqrt(c00 c11) of Δ and δ_prev under F, and δᵀFδ."""
        self.quad_fits += 1
        self._quad_refit = False
        self._quad_curv = None
        if self.quad_every <= 1 or not two_d:
            return
        c00, c01, c11 = c_f[0][0], c_f[0][1], c_f[1][1]
        if vg > 0 and c00 > 0 and c11 > 0 and math.isfinite(self.last_kl) and self.last_kl > 0:
            self._quad_curv = (c00 / vg, c01 / math.sqrt(c00 * c11), self.last_kl, self.last_kl)

    def _reuse_coefficients(self, vg: float, b1: float | None, q00: float, q01: float,
                            q11: float) -> tuple[float, float, float] | None:
        """(α, μ, δᵀFδ) for a step between fits (quad_every > 1), from the 2x2 model with
        the terms it can have without a Fisher product, exact: this step's gradient terms
        gᵀΔ = -⟨V, ∇W⟩ and gᵀδ_prev (whole batch, weight decay included) and the damping's
        Gram matrix of [Δ, δ_prev]; and its Fisher block estimated from the last fit:
        ΔᵀFΔ ≈ κ ⟨V, ∇W⟩, δ_prevᵀFδ_prev ≈ the last step's δᵀFδ, the cross term from the
        fit's correlation. The step is that model's minimiser when it has 0 ≤ μ < 1; else
        the minimiser on the line μ = 0 (for μ < 0) or μ = ``_REUSE_MU_MAX`` (for μ ≥ 1: no
        geometric growth of δ over the reused steps), α = (⟨V, ∇W⟩ - C01 μ) / C00 (a convex
        quadratic's minimum over a half-plane that does not hold its free minimiser lies on
        the edge). A step predicting δᵀFδ above ``_REUSE_KL_GROWTH`` times the last fit's is
        shortened to that bound along its own direction (s x for s ∈ (0, 1): the model
        along the ray, M(s x) = s (½ s xᵀCx + bᵀx) ≤ s M(x), stays a reduction). None (fit
        this step instead) unless the block is positive definite and the step finite, with
        α > 0 and a predicted reduction M(x) < 0."""
        kappa, corr, kl_prev, kl_fit = self._quad_curv
        lam = self.damping + self.group["weight_decay"]
        if not (math.isfinite(vg) and vg > 0):
            return None
        c00 = kappa * vg
        if b1 is None:                            # no δ_prev (a path switch): Δ alone
            alpha = vg / (c00 + lam * q00)
            mu, c01, c11 = 0.0, 0.0, 0.0
            reduction = -0.5 * alpha * vg
        else:
            c11 = kl_prev
            c01 = corr * math.sqrt(c00 * c11)
            c = [[c00 + lam * q00, c01 - lam * q01], [c01 - lam * q01, c11 + lam * q11]]
            if not (c[0][0] > 0 and c[0][0] * c[1][1] - c[0][1] * c[1][0] > 0):
                return None
            alpha, mu = _solve2(c, (-vg, b1))
            if not (math.isfinite(alpha) and math.isfinite(mu)):
                return None
            if not 0.0 <= mu < 1.0:               # the minimiser on the edge μ = 0 or μ = μ_max
                mu = 0.0 if mu < 0.0 else _REUSE_MU_MAX
                alpha = (vg - c[0][1] * mu) / c[0][0]
            # M(α, μ) = ½ xᵀCx + bᵀx, b = (-⟨V, ∇W⟩, gᵀδ_prev)
            reduction = 0.5 * (alpha * (c[0][0] * alpha + c[0][1] * mu) + mu * (c[1][0] * alpha + c[1][1] * mu)) \
                - alpha * vg + mu * b1
        kl = alpha * alpha * c00 + 2 * alpha * mu * c01 + mu * mu * c11
        if not (math.isfinite(alpha) and alpha > 0 and reduction < 0 and math.isfinite(kl) and kl > 0):
            return None
        cap = _REUSE_KL_GROWTH * kl_fit
        if kl > cap:
            shrink = math.sqrt(cap / kl)
            alpha, mu, kl = alpha * shrink, mu * shrink, cap
        return alpha, mu, kl

    def _levenberg_marquardt(self, rho: float, g: dict[str, Any]) -> None:
        """Martens & Grosse's damping rule from the reduction ratio ρ, applied every
        ``t_damping`` steps: λ ← λ/ω when ρ < 1/4 (or not finite), λ ← λω when ρ > 3/4,
        with ω = (19/20)^t_damping."""
        self.last_rho = rho
        omega = (19.0 / 20.0) ** int(g["t_damping"])
        if not math.isfinite(rho) or rho < 0.25:
            self.damping = self.damping / omega
        elif rho > 0.75:
            self.damping = self.damping * omega

    # -- the same model, fast: one stacked JVP, per-layer tensors, one host read ---------
    def _fast_quadratic_applies(self) -> bool:
        """_quadratic_fast covers an ``nn.Sequential`` of Linear layers and elementwise
        activations (``_sequential_plan``) whose every layer has its inverses and captured
        2-d activations, in the factors' dtype; anything else takes ``_quadratic_step``."""
        if not self.fast_quadratic or self._plan is None or self._batch is None or self._batch[0] is None:
            return False
        if self._fast_dtypes is None:            # one dtype for the factors and the weights
            dtype = self.layers[0].A.dtype
            self._fast_dtypes = all(l.A.dtype == dtype and l.weight.dtype == dtype for l in self.layers)
        if not self._fast_dtypes:
            return False
        n = self._batch[0].shape[0]
        k = int(self.group.get("quad_batch", 0) or 0)
        rows = k if 0 < k < n else n
        for layer in self.layers:
            a = layer.a_last
            if layer.A_inv is None or a is None or a.dim() != 2 or a.shape[0] < rows:
                return False
        return True

    _fast_dtypes: bool | None = None

    def _quad_buffers(self) -> "_QuadBuffers":
        key = tuple(tuple(id(l) for l in members) for members, _, _ in self._groups)
        q = self._quad
        if q is None or q.key != key:
            old = q
            q = _QuadBuffers(key, self._groups)
            if old is not None and self._prev_in_quad:
                prev = {id(p): v for p, v in zip(old.params, old.step_views)}
                torch._foreach_copy_(q.step_views, [prev[id(p)] for p in q.params])
            self._quad = q
        return q

    def _plan_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The Sequential's forward from its plan (F.linear and the activations, as the
        modules compute them), without the module-call and hook machinery."""
        for kind, item in self._plan:
            if kind == "linear":
                x = F.linear(x, item.weight, item.bias)
            else:
                x = item[0](x)
        return x

    def _quadratic_fast(self) -> bool:
        """``_quadratic_step`` for the Sequential MLPs with fewer, batched ops (the same
        numbers to rounding). Δ = -V is written by the preconditioning straight into row 0
        of one buffer D (2, P) whose row 1 is the last update δ_prev, both in the layers'
        [W | b] layout, so:
          * J Δ and J δ_prev are one forward-mode pass over the sub-batch with the two
            tangents stacked, from the activations the training forward captured
            (t_out = t_in Wᵀ + a Tᵀ + t_b per Linear layer, times φ'(z) per activation);
          * the 2x2 Fisher block, the gradient terms ∇L_kᵀ(J ·) (∂L_k/∂f in closed form)
            and the Gram matrix of the damping term are two matrix products;
          * all scalars come to the host in one read; the 2x2 system is solved there (LU
            with partial pivoting, as ``torch.linalg.solve``), and the step is applied as
            δ = αΔ + μ δ_prev in place in D[1] and one ``_foreach_add_`` on the parameters.
        The finiteness check of V is ‖V‖² from the Gram matrix (no Σ⟨V, ∇W⟩ to sync on).
        The LM ratio's forward (k examples) runs only on its ``t_damping`` steps."""
        g = self.group
        q = self._quad_buffers()
        wd = g["weight_decay"]
        every = self.quad_every > 1
        grads = [] if every else None            # quad_every: the gradients, for gᵀΔ and gᵀδ_prev
        for (members, g_stack, a_stack), buf, out in zip(self._groups, self._group_buffers, q.group_out):
            if g_stack is None:
                layer = members[0]
                xs = layer.grad_matrix(wd)
                torch.mm(layer.G_inv @ xs, layer.A_inv, out=out)
            else:
                if buf is not None and not wd and all(l.grads_attached() for l in members):
                    xs = buf
                else:
                    xs = torch.stack([l.grad_matrix(wd) for l in members])
                torch.bmm(torch.bmm(g_stack, xs), a_stack, out=out)
            if grads is not None:
                grads.append(xs)
        if self._delta_prev is not None and self._delta_prev.numel() == q.size:
            torch._foreach_copy_(q.step_views, [t.view(p.shape) for t, p in zip(
                torch.split(self._delta_prev, [p.numel() for p in q.params]), q.params)])
            self._prev_in_quad = True
        self._delta_prev = None
        has_prev = self._prev_in_quad
        lm_due = bool(g["adaptive_damping"]) and (self.steps + 1) % int(g["t_damping"]) == 0
        n_t = 2 if has_prev else 1
        # [⟨V, ∇W⟩, ⟨δ_prev, ∇W⟩] on the whole batch (wd included), rows of D against the gradients
        gd = sum(torch.mv(rows[:n_t], x.reshape(-1)) for rows, x in zip(q.group_rows, grads)) if every else None
        if not self._quad_fit_due(lm_due):
            done = self._quadratic_reuse(q, has_prev, gd)
            if done is not None:
                return done
        inputs, target, loss0 = self._batch
        n = inputs.shape[0]
        k = int(g.get("quad_batch", 0) or 0)
        sub = 0 < k < n
        if not sub:
            k = n
        # J [V, δ_prev] on the first k examples, from the captured activations
        dz = cur = a_next = None
        plan = self._plan
        for i, (kind, item) in enumerate(plan):
            if kind == "linear":
                a = item.a_last[:k] if a_next is None else a_next
                wt, bt = q.tangents[n_t][id(item)]          # (T, in, out), (T, 1, out) or None
                a = a.expand(n_t, *a.shape)
                if dz is None:
                    dz = torch.bmm(a, wt)
                else:                                       # (T·k, in) Wᵀ as one product
                    dz = F.linear(dz, item.weight).baddbmm_(a, wt)
                if bt is not None:
                    dz.add_(bt)
                cur, a_next = item.s_last, None
            else:
                fn, _ = item
                nxt = plan[i + 1] if i + 1 < len(plan) else None
                if nxt is not None and nxt[0] == "linear":    # φ(z) is the next layer's input
                    cur = a_next = nxt[1].a_last[:k]
                else:
                    cur = fn(cur[:k])
                mul = _TANGENT_MUL.get(fn)
                if mul is not None:
                    dz = mul(dz, cur)
        cur = cur[:k]
        for layer in self.layers:
            layer.a_last = layer.s_last = None
        y_q = target[:k] if sub else target
        h_j, g_out = self.likelihood.fisher_matvec_and_grad(cur, dz, y_q)
        jf = dz.reshape(n_t, -1)
        m = F.linear(torch.cat([h_j.reshape(n_t, -1), g_out.reshape(1, -1)]), jf)     # (T+1, T)
        d = q.D if has_prev else q.D0[None]
        parts = [m, F.linear(d, d)]                  # and D Dᵀ: rows of T columns each, stacked
        if wd:
            parts.append(torch.stack([(p.detach() * v).sum((-1, -2) if p.dim() == 2 else -1)
                                      for p, v in zip(q.params, q.param_tangents[n_t])]).sum(0, keepdim=True))
        if lm_due and sub:
            parts.append(self.likelihood.mean_loss(cur, y_q).expand(1, n_t))
        if every:
            parts.append(gd[None])
        rows = torch.cat(parts).tolist()
        vg = rows.pop()[0] if every else 0.0
        scale = 1.0 / (k * self.likelihood.elements(cur))
        # row 0 of D is V = -Δ: flip the signs of the Δ terms
        if has_prev:
            (m00, m01), (_, m11), (g0, g1), (q00, q01), (_, q11) = rows[:5]
            c_f = ((scale * m00, -scale * m01), (-scale * m01, scale * m11))
            gram = ((q00, -q01), (-q01, q11))
            rest = rows[5:]
        else:
            (m00,), (g0,), (q00,) = rows[:3]
            c_f, gram, g1, rest = ((scale * m00,),), ((q00,),), 0.0, rows[3:]
        b0, b1 = -g0, g1
        if wd:
            th0, th1 = (-rest[0][0], rest[0][1]) if has_prev else (-rest[0][0], 0.0)
            rest = rest[1:]
            b0, b1 = b0 + wd * th0, b1 + wd * th1
        rest = [r[0] for r in rest]
        lam = self.damping + wd
        if has_prev:
            c = [[c_f[i][j] + lam * gram[i][j] for j in range(2)] for i in range(2)]
            alpha, mu = _solve2(c, (b0, b1))
            if not (math.isfinite(alpha) and math.isfinite(mu)):
                alpha, mu = -b0 / c[0][0] if c[0][0] != 0 else float("nan"), 0.0   # Δ alone
        else:
            c11 = c_f[0][0] + lam * gram[0][0]
            alpha, mu = (-b0 / c11 if c11 != 0 else float("nan")), 0.0
        if not math.isfinite(q00):
            self._skip("non-finite update")
            return False
        if not (math.isfinite(alpha) and math.isfinite(mu)):
            self._skip("non-finite quadratic-model step")
            return False
        model_reduction = 0.5 * (alpha * b0 + mu * b1)
        if has_prev:
            self.last_kl = alpha * (c_f[0][0] * alpha + c_f[0][1] * mu) + mu * (c_f[1][0] * alpha + c_f[1][1] * mu)
        else:
            self.last_kl = alpha * c_f[0][0] * alpha
        self.last_alpha, self.last_mu = alpha, mu
        self._fitted(c_f, vg, has_prev)
        if has_prev:                                   # D[1] ← α Δ + μ δ_prev = μ δ_prev - α V
            q.D1.mul_(mu).add_(q.D0, alpha=-alpha)
        else:
            torch.mul(q.D0, -alpha, out=q.D1)
        self._prev_in_quad = True
        torch._foreach_add_(q.params, q.step_views)
        if lm_due and model_reduction < 0:
            self._jvp_active = True
            try:
                new_loss = float(self.likelihood.mean_loss(self._plan_forward(inputs[:k] if sub else inputs), y_q))
            finally:
                self._jvp_active = False
            if wd:
                # the regulariser's change ½ wd (‖θ + δ‖² - ‖θ‖²) = ½ wd (2 θᵀδ + ‖δ‖²)
                th_step = alpha * th0 + mu * th1
                st2 = alpha * alpha * gram[0][0] + (2 * alpha * mu * gram[0][1] + mu * mu * gram[1][1]
                                                    if has_prev else 0.0)
                new_loss += 0.5 * wd * (2.0 * th_step + st2)
            rho = (new_loss - (rest[0] if sub else float(loss0))) / model_reduction
            self._levenberg_marquardt(rho, g)
        return True

    def _quadratic_reuse(self, q: "_QuadBuffers", has_prev: bool, gd: torch.Tensor) -> bool | None:
        """A step between fits on the fast path (``_reuse_coefficients``): the gradient terms
        and the Gram matrix of D in one host read, then δ = αΔ + μ δ_prev in D[1] as after a
        fit. None: the estimate is unusable, fit this step instead."""
        d = q.D if has_prev else q.D0[None]
        vals = torch.cat([gd, F.linear(d, d).reshape(-1)]).tolist()
        if not all(math.isfinite(v) for v in vals):
            return None
        if has_prev:
            vg, b1, q00, q01, _, q11 = vals
        else:
            (vg, q00), b1, q01, q11 = vals, None, 0.0, 0.0
        reuse = self._reuse_coefficients(vg, b1, q00, q01, q11)
        if reuse is None:
            return None
        for layer in self.layers:
            layer.a_last = layer.s_last = None
        alpha, mu, kl = reuse
        if has_prev:
            q.D1.mul_(mu).add_(q.D0, alpha=-alpha)
        else:
            torch.mul(q.D0, -alpha, out=q.D1)
        self.last_alpha, self.last_mu, self.last_kl = alpha, mu, kl
        self._quad_curv = self._quad_curv[:2] + (kl, self._quad_curv[3])
        self._prev_in_quad = True
        torch._foreach_add_(q.params, q.step_views)
        return True

    # -- diagnostics ---------------------------------------------------------------------
    def condition_numbers(self, index: int) -> tuple[float, float]:
        """cond(A_λ), cond(G_λ) of layer ``index`` with the current damping (nan before
        the first decomposition)."""
        layer = self.layers[index]
        if layer.eig is None:
            return float("nan"), float("nan")
        dA, _, dG, _ = layer.eig
        sq = math.sqrt(self.damping)
        a = (dA + layer.pi * sq)
        gg = (dG + sq / layer.pi)
        return float(a.max() / a.min()), float(gg.max() / gg.min())

    def g_spectrum(self, index: int) -> torch.Tensor | None:
        """Eigenvalues of G (undamped) of layer ``index`` from the last decomposition."""
        layer = self.layers[index]
        return None if layer.eig is None else layer.eig[2]

    def drain_events(self) -> list[str]:
        ev, self.events = self.events, []
        return ev


def _solve2(c: list[list[float]], b: tuple[float, float]) -> tuple[float, float]:
    """-(c⁻¹ b) for a 2x2 c by LU with partial pivoting (LAPACK's getrf/getrs order), in
    Python floats; nan where c is singular."""
    (a00, a01), (a10, a11) = c
    b0, b1 = b
    if abs(a10) > abs(a00):                      # pivot: swap the rows
        a00, a01, a10, a11, b0, b1 = a10, a11, a00, a01, b1, b0
    if a00 == 0.0:
        return float("nan"), float("nan")
    l10 = a10 / a00
    u11 = a11 - l10 * a01
    if u11 == 0.0 or not math.isfinite(u11):
        return float("nan"), float("nan")
    x1 = (b1 - l10 * b0) / u11
    x0 = (b0 - a01 * x1) / a00
    return -x0, -x1


_aten = torch.ops.aten

# quad_every: a step between fits may predict at most this multiple of the last fit's δᵀFδ
_REUSE_KL_GROWTH = 2.0
# ... and where its estimated model's minimiser has μ ≥ 1, takes the minimiser at μ = this
_REUSE_MU_MAX = 0.9


def _tanh_tangent(dz: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dz · (1 - y²), y = tanh(z): one op (tanh's backward, which broadcasts y over T)."""
    return _aten.tanh_backward.default(dz, y)


def _sigmoid_tangent(dz: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dz · y (1 - y), y = σ(z)."""
    return _aten.sigmoid_backward.default(dz, y)


def _relu_tangent(dz: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dz where y = relu(z) > 0, else 0."""
    return _aten.threshold_backward.default(dz, y, 0)


# φ(z) -> how a stacked tangent passes through it given y = φ(z)
_TANGENT_MUL: dict[Callable, Callable] = {torch.tanh: _tanh_tangent, torch.sigmoid: _sigmoid_tangent,
                                          torch.relu: _relu_tangent}


class _QuadBuffers:
    """The fast quadratic step's buffer D (2, P): per layer a slot of out·(in+1) entries
    ([W | b] row-major, as grad_matrix), row 0 for V, row 1 for δ_prev; each shape group's
    slots are contiguous so its batched preconditioning writes there directly. Views made
    once: the groups' outputs, per layer the stacked tangents as (T, in, out) weight and
    (T, 1, out) bias views for T = 1, 2, and per parameter its part of D[1] (the step)."""

    def __init__(self, key: tuple, groups: list) -> None:
        self.key = key
        layers = [l for members, _, _ in groups for l in members]
        first = layers[0].weight
        self.size = sum(l.d_out * l.d_in for l in layers)
        self.D = torch.zeros(2, self.size, dtype=first.dtype, device=first.device)
        self.D0, self.D1 = self.D[0], self.D[1]
        self.group_out: list[torch.Tensor] = []
        self.group_rows: list[torch.Tensor] = []       # D[:, the group's slots]
        self.tangents: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor | None]]] = {1: {}, 2: {}}
        self.params: list[torch.Tensor] = []
        self.step_views: list[torch.Tensor] = []
        self.param_tangents: dict[int, list[torch.Tensor]] = {1: [], 2: []}
        off = 0
        for members, g_stack, _ in groups:
            n = sum(l.d_out * l.d_in for l in members)
            l0 = members[0]
            shape = (len(members), l0.d_out, l0.d_in) if g_stack is not None else (l0.d_out, l0.d_in)
            self.group_out.append(self.D[0, off:off + n].view(shape))
            self.group_rows.append(self.D[:, off:off + n])
            for layer in members:
                m = layer.d_out * layer.d_in
                slot = self.D[:, off:off + m].view(2, layer.d_out, layer.d_in)
                d_w = layer.d_in - int(layer.has_bias)
                for t in (1, 2):
                    st = slot[:t]
                    self.tangents[t][id(layer)] = (st[:, :, :d_w].transpose(1, 2),
                                                   st[:, :, d_w].unsqueeze(1) if layer.has_bias else None)
                    self.param_tangents[t].append(st[:, :, :d_w])
                    if layer.has_bias:
                        self.param_tangents[t].append(st[:, :, d_w])
                self.params.append(layer.weight)
                self.step_views.append(slot[1, :, :d_w])
                if layer.has_bias:
                    self.params.append(layer.bias)
                    self.step_views.append(slot[1, :, d_w])
                off += m


def kfac_layers(model: nn.Module) -> Iterable[str]:
    """Names of the modules K-FAC preconditions in ``model``."""
    for name, m in model.named_modules():
        if layer_kind(m) is not None:
            yield name
