"""Likelihoods p(y | f) of a network's output f, one small class each.

Each class knows, for a batch of outputs ``f`` (N, K) and targets ``y``:
  * ``nll_sum``       Σ over the batch and output elements of -log p(y | f) (up to constants);
  * ``elements``      D, the output elements one example's loss is averaged over (1 for the
                      categorical, K for the element-wise Bernoulli and Gaussian);
  * ``sample``        one label per example drawn from the model's predictive p(y | f);
  * ``fisher_matvec`` H_n u_n per example, H_n = ∂²(-log p)/∂f² at f_n, the Fisher of the
                      likelihood in its natural parameters (these are canonical links, so the
                      Hessian equals its expectation over y ~ p): categorical diag(p) - ppᵀ
                      (the softmax), Bernoulli σ(1 - σ) (the sigmoid), Gaussian I (unit
                      variance); ``fisher_product`` is Σ_n u_nᵀ H_n v_n; ``u`` may carry extra
                      leading dims (several tangents at once), the output broadcasts over them;
  * ``loss_grad``     ∂ mean_loss / ∂f in closed form (for these canonical links the
                      residual: softmax - one-hot, σ - y, f - y, over N·D), and
                      ``fisher_matvec_and_grad`` both at once (one softmax or sigmoid);
  * ``fisher_sqrt``   R_n (K x C) with H_n = R_n R_nᵀ: categorical diag(√p) - p √pᵀ,
                      Bernoulli diag(√(σ(1-σ))), Gaussian I — the columns whose backward passes
                      give the exact Fisher's factors (BackPACK's "sqrt of the loss Hessian");
  * ``kl``            KL[p(·|f) ‖ p(·|f')] averaged over the batch and the D elements (so that
                      for a small change it is ½ δfᵀ H δf / D, the Fisher's quadratic form);
  * ``accuracy``      the fraction of argmax hits for a classifier, None otherwise.

The training loss of the kfac topic is ``mean_loss``: the NLL averaged over the batch and
the D output elements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Likelihood:
    """The interface; the subclasses below are the likelihoods the engine knows."""

    name = ""

    def nll_sum(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def elements(self, output: torch.Tensor) -> int:
        """D: the output elements one example's loss is averaged over."""
        n = output.shape[0]
        return max(1, output.numel() // n) if n else max(1, output[0].numel())

    def mean_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss: NLL averaged over the batch and over the D output elements."""
        return self.nll_sum(output, target) / (output.shape[0] * self.elements(output))

    def sample(self, output: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def fisher_matvec(self, output: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fisher_product(self, output: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u * self.fisher_matvec(output, v)).sum()

    def loss_grad(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """∂ mean_loss(f, y) / ∂f (by autograd here; the subclasses give the closed form)."""
        with torch.enable_grad():
            f = output.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.mean_loss(f, target), f)
        return grad

    def fisher_matvec_and_grad(self, output: torch.Tensor, u: torch.Tensor,
                               target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(H u, ∂ mean_loss / ∂f): the quadratic model's two output-space terms."""
        return self.fisher_matvec(output, u), self.loss_grad(output, target)

    def fisher_sqrt(self, output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def kl(self, output: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def accuracy(self, output: torch.Tensor, target: torch.Tensor) -> float | None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Categorical(Likelihood):
    """Softmax over K classes; the target is a class index. D = 1."""

    name = "categorical"

    def nll_sum(self, output, target):
        return F.cross_entropy(output, target, reduction="sum")

    def elements(self, output):
        return 1

    @torch.no_grad()
    def sample(self, output, generator=None):
        probs = torch.softmax(output.detach().float(), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def fisher_product(self, output, u, v):
        p = torch.softmax(output, dim=-1)
        return (p * u * v).sum() - ((p * u).sum(-1) * (p * v).sum(-1)).sum()

    def fisher_matvec(self, output, u):
        p = torch.softmax(output, dim=-1)
        return p * u - p * (p * u).sum(-1, keepdim=True)

    def loss_grad(self, output, target):
        return self._residual(torch.softmax(output, dim=-1), target)

    def fisher_matvec_and_grad(self, output, u, target):
        p = torch.softmax(output, dim=-1)
        pu = p * u
        return pu - p * pu.sum(-1, keepdim=True), self._residual(p, target)

    @staticmethod
    def _residual(p, target):
        """(softmax - one-hot) / N: class indices, or class probabilities shaped like p."""
        if target.dtype.is_floating_point and target.shape == p.shape:
            return (p - target) / p.shape[0]
        minus_one = p.new_full((p.shape[0], 1), -1.0)           # p - one-hot, without one_hot's checks
        return p.scatter_add(1, target.unsqueeze(1), minus_one) / p.shape[0]

    def fisher_sqrt(self, output):
        p = torch.softmax(output, dim=-1)
        sq = p.sqrt()
        return torch.diag_embed(sq) - p[:, :, None] * sq[:, None, :]

    def kl(self, output, other):
        logp, logq = torch.log_softmax(output, -1), torch.log_softmax(other, -1)
        return (logp.exp() * (logp - logq)).sum(-1).mean()

    @torch.no_grad()
    def accuracy(self, output, target):
        return float((output.argmax(-1) == target).float().mean())


class Bernoulli(Likelihood):
    """Independent Bernoulli per output element on logits (binary cross-entropy); the
    target may be a probability in [0, 1] (grey pixels)."""

    name = "bernoulli"

    def nll_sum(self, output, target):
        return F.binary_cross_entropy_with_logits(output, target, reduction="sum")

    @torch.no_grad()
    def sample(self, output, generator=None):
        return torch.bernoulli(torch.sigmoid(output.detach()), generator=generator)

    def fisher_product(self, output, u, v):
        s = torch.sigmoid(output)
        return (s * (1 - s) * u * v).sum()

    def fisher_matvec(self, output, u):
        s = torch.sigmoid(output)
        return s * (1 - s) * u

    def loss_grad(self, output, target):
        return (torch.sigmoid(output) - target) / output.numel()

    def fisher_matvec_and_grad(self, output, u, target):
        s = torch.sigmoid(output)      # σ(1 - σ) u in one op: the sigmoid's backward
        return torch.ops.aten.sigmoid_backward.default(u, s), (s - target) / output.numel()

    def fisher_sqrt(self, output):
        s = torch.sigmoid(output)
        return torch.diag_embed((s * (1 - s)).sqrt())

    def kl(self, output, other):
        # log σ(f) = -softplus(-f), log(1 - σ(f)) = -softplus(f)
        s = torch.sigmoid(output)
        d_pos = F.softplus(-other) - F.softplus(-output)
        d_neg = F.softplus(other) - F.softplus(output)
        return (s * d_pos + (1 - s) * d_neg).mean()


class Gaussian(Likelihood):
    """Unit-variance Gaussian around the output: -log p = ½ (y - f)² + const."""

    name = "gaussian"

    def nll_sum(self, output, target):
        return 0.5 * (output - target).pow(2).sum()

    @torch.no_grad()
    def sample(self, output, generator=None):
        out = output.detach()
        return out + torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)

    def fisher_product(self, output, u, v):
        return (u * v).sum()

    def fisher_matvec(self, output, u):
        return u

    def loss_grad(self, output, target):
        return (output - target) / output.numel()

    def fisher_matvec_and_grad(self, output, u, target):
        return u, (output - target) / output.numel()

    def fisher_sqrt(self, output):
        n, k = output.shape
        return torch.eye(k, dtype=output.dtype, device=output.device).expand(n, k, k)

    def kl(self, output, other):
        return 0.5 * (output - other).pow(2).mean()


LIKELIHOODS: dict[str, Likelihood] = {lik.name: lik for lik in (Categorical(), Bernoulli(), Gaussian())}


def get_likelihood(likelihood: str | Likelihood) -> Likelihood:
    """A Likelihood from its name (or itself); ValueError naming the known ones."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    try:
        return LIKELIHOODS[likelihood]
    except (KeyError, TypeError):
        raise ValueError(f"likelihood must be one of {'|'.join(LIKELIHOODS)}, got {likelihood!r}") from None


def mean_loss(likelihood: str | Likelihood, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss of ``likelihood``: NLL averaged over the batch and the D elements."""
    return get_likelihood(likelihood).mean_loss(output, target)
