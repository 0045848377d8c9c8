"""Gaussian-mixture mechanisms shared by the EM topic and its benchmark: the M-step, the
precision Cholesky factors, k-means++ seeding and the initial responsibilities, and gradient MLE
of the same model (scikit-learn's ``mixture/_gaussian_mixture.py`` is the shape followed: one
function per estimator step, scikit-learn's layouts and conventions, so parity checks are exact).

Model (natural log): p(x) = sum_k pi_k N(x | mu_k, Sigma_k), K components in D dimensions,
covariance ``full`` (Sigma_k any SPD matrix), ``diag`` or ``spherical`` (sigma_k^2 I).
Precision Cholesky factors P_k (P_k P_k^T = Sigma_k^-1, upper triangular for ``full``) are
scikit-learn's ``precisions_cholesky_``. The E-step itself lives with its kernel
(``engine/kernels/gmm_estep.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from .kernels.gmm_estep import EStepStats, log_prob_components
from .params import ParamError

INITS = ("kmeans++", "random")


# -- M-step and precisions ------------------------------------------------------------------------
def m_step(stats: EStepStats, reg_covar: float, covariance_type: str
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights, means, covariances) from the E-step's statistics, scikit-learn's estimator:
    N_k += 10 eps, mu = sx / N_k, Sigma = sxx / N_k - mu mu^T + reg_covar I
    (diag: the diagonal of that; spherical: its mean over dimensions)."""
    eps = 10.0 * torch.finfo(stats.nk.dtype).eps
    nk = stats.nk + eps
    means = stats.sx / nk[:, None]
    if covariance_type == "full":
        d = means.shape[1]
        cov = stats.sxx / nk[:, None, None] - means[:, :, None] * means[:, None, :]
        cov = 0.5 * (cov + cov.mT)
        cov = cov + reg_covar * torch.eye(d, dtype=cov.dtype, device=cov.device)
    elif covariance_type == "diag":
        cov = stats.sxx / nk[:, None] - means * means + reg_covar
    else:
        cov = (stats.sxx / nk[:, None] - means * means).mean(1) + reg_covar
    weights = nk / nk.sum()
    return weights, means, cov


def precision_cholesky(cov: torch.Tensor, covariance_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, ok): P P^T = Sigma^-1 with P upper triangular (scikit-learn's precisions_cholesky_),
    and ok (K,) bool, False where Sigma_k is not positive definite (no host sync)."""
    if covariance_type == "full" and cov.device.type == "cpu":
        return _precision_cholesky_numpy(cov)
    if covariance_type == "full":
        chol, info = torch.linalg.cholesky_ex(cov)
        ok = info == 0
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
        safe = torch.where(ok[:, None, None], chol, eye)
        prec = torch.linalg.solve_triangular(safe, eye, upper=False).mT
        ok = ok & torch.isfinite(prec).flatten(1).all(1)
        return prec, ok
    ok = (cov > 0).reshape(cov.shape[0], -1).all(1)
    prec = torch.rsqrt(torch.where(cov > 0, cov, torch.ones_like(cov)))
    ok = ok & torch.isfinite(prec).reshape(cov.shape[0], -1).all(1)
    return prec, ok


def _precision_cholesky_numpy(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU path of precision_cholesky through numpy's LAPACK: torch's batched Cholesky of tiny
    matrices pays an OpenMP fork (its internal tril) that costs milliseconds on a busy CPU."""
    c = cov.detach().numpy()
    k, d, _ = c.shape
    ok = np.isfinite(c).reshape(k, -1).all(1)
    eye = np.eye(d, dtype=c.dtype)
    safe = np.where(ok[:, None, None], c, eye)
    try:
        chol = np.linalg.cholesky(safe)
    except np.linalg.LinAlgError:
        chol = np.empty_like(safe)
        for j in range(k):
            try:
                chol[j] = np.linalg.cholesky(safe[j])
            except np.linalg.LinAlgError:
                ok[j] = False
                chol[j] = eye
    chol = np.where(ok[:, None, None], chol, eye)
    prec = np.linalg.solve(chol, np.broadcast_to(eye, chol.shape)).transpose(0, 2, 1)
    prec = np.triu(prec)  # exactly upper triangular, as solve_triangular gives it
    ok &= np.isfinite(prec).reshape(k, -1).all(1)
    return torch.from_numpy(np.ascontiguousarray(prec)), torch.from_numpy(ok)


def full_covariances(cov: torch.Tensor, covariance_type: str, d: int) -> torch.Tensor:
    """Any covariance layout -> (K, D, D)."""
    if covariance_type == "full":
        return cov
    if covariance_type == "diag":
        return torch.diag_embed(cov)
    return cov[:, None, None] * torch.eye(d, dtype=cov.dtype, device=cov.device)


def project_covariances(cov: torch.Tensor, old: str, new: str, d: int) -> torch.Tensor:
    """Change the covariance type: keep the diagonal (full -> diag), average it (-> spherical)."""
    full = full_covariances(cov, old, d)
    if new == "full":
        return full.clone()
    diag = torch.diagonal(full, dim1=-2, dim2=-1)
    return diag.clone() if new == "diag" else diag.mean(1)


def responsibility_stats(x: torch.Tensor, resp_of_chunk, k: int, covariance_type: str,
                         chunk: int = 1 << 15) -> EStepStats:
    """(nk, sx, sxx) in float64 for responsibilities given chunk by chunk (the initialisations)."""
    n, d = x.shape
    full = covariance_type == "full"
    acc = torch.float64
    nk = torch.zeros(k, dtype=acc, device=x.device)
    sx = torch.zeros(k, d, dtype=acc, device=x.device)
    sxx = torch.zeros(k, d * d if full else d, dtype=acc, device=x.device)
    for start in range(0, n, chunk):
        r = resp_of_chunk(start, x[start:start + chunk]).to(acc)
        xc = x[start:start + chunk].to(acc)
        nk += r.sum(0)
        sx += r.T @ xc
        feat = (xc[:, :, None] * xc[:, None, :]).reshape(len(xc), d * d) if full else xc * xc
        sxx += r.T @ feat
    return EStepStats(torch.empty(0, dtype=x.dtype, device=x.device), nk, sx,
                      sxx.view(k, d, d) if full else sxx)


def kmeans_plusplus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k centres by D^2 sampling (Arthur & Vassilvitskii), the uniforms from a CPU generator."""
    n = x.shape[0]
    u = torch.rand(k, generator=gen, dtype=torch.float64)
    first = min(int(u[0] * n), n - 1)
    centres = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(1)
    for j in range(1, k):
        cum = torch.cumsum(d2.to(torch.float64), 0)
        total = cum[-1]
        if not bool(total > 0):
            idx = min(int(u[j] * n), n - 1)
        else:
            idx = int(torch.searchsorted(cum, (u[j] * total).to(cum.device)).clamp(max=n - 1))
        centres.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    return torch.stack(centres)


def nearest_labels(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    d2 = (x * x).sum(1, keepdim=True) - 2.0 * x @ centres.T + (centres * centres).sum(1)
    return d2.argmin(1)


def initial_parameters(x: torch.Tensor, k: int, covariance_type: str, init: str, reg_covar: float,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Responsibilities from ``init`` -> one M-step (scikit-learn's way to initialise).
    kmeans++: hard assignment to D^2-sampled centres; random: uniform random
    responsibilities, normalised per point (scikit-learn's 'random')."""
    if init == "kmeans++":
        centres = kmeans_plusplus(x, k, gen)
        eye = torch.eye(k, dtype=x.dtype, device=x.device)

        def resp(start: int, xc: torch.Tensor) -> torch.Tensor:
            return eye[nearest_labels(xc, centres)]
    elif init == "random":
        def resp(start: int, xc: torch.Tensor) -> torch.Tensor:
            r = torch.rand(len(xc), k, generator=gen, dtype=torch.float64).to(x.device, x.dtype)
            return r / r.sum(1, keepdim=True)
    else:
        raise ParamError(f"init must be one of {'|'.join(INITS)}, got {init!r}")
    stats = responsibility_stats(x, resp, k, covariance_type)
    return m_step(stats, reg_covar, covariance_type)



# -- gradient MLE ---------------------------------------------------------------------------------
class GradientFit:
    """The mixture's mean log-likelihood maximised by a torch optimizer.

    Parameters (all unconstrained): softmax ``logits`` (K,), ``means`` (K, D) and the precision
    Cholesky factor with a log-parameterised diagonal: full -> strictly upper part + log diag
    (K, D); diag -> log p (K, D); spherical -> log p (K,). sigma = exp(-log p)."""

    def __init__(self, x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                 prec_chol: torch.Tensor, covariance_type: str, optimizer: str, lr: float,
                 chunk: int = 1 << 16) -> None:
        self.x = x
        self.covariance_type = covariance_type
        self.chunk = chunk
        weights, means, prec_chol = (t.detach().to(x.dtype) for t in (weights, means, prec_chol))
        self.logits = torch.log(weights).clone().requires_grad_(True)
        self.means = means.clone().requires_grad_(True)
        if covariance_type == "full":
            d = prec_chol.shape[-1]
            self.upper = torch.ones(d, d, dtype=prec_chol.dtype, device=prec_chol.device).triu(1)
            self.off = (prec_chol.detach() * self.upper).clone().requires_grad_(True)
            self.log_prec = torch.log(torch.diagonal(prec_chol.detach(), dim1=-2, dim2=-1)).clone() \
                .requires_grad_(True)
            self.tensors = [self.logits, self.means, self.off, self.log_prec]
        else:
            self.off = None
            self.log_prec = torch.log(prec_chol.detach()).clone().requires_grad_(True)
            self.tensors = [self.logits, self.means, self.log_prec]
        self.optimizer_name = optimizer
        self.lr = lr
        self.optimizer = self._make_optimizer()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "lbfgs":
            return torch.optim.LBFGS(self.tensors, lr=self.lr, max_iter=1, history_size=10,
                                     line_search_fn="strong_wolfe")
        return torch.optim.Adam(self.tensors, lr=self.lr)

    def set_optimizer(self, name: str, lr: float) -> None:
        if name != self.optimizer_name:
            self.optimizer_name, self.lr = name, lr
            self.optimizer = self._make_optimizer()
        elif lr != self.lr:
            self.lr = lr
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def prec_chol(self) -> torch.Tensor:
        if self.covariance_type == "full":
            return self.off * self.upper + torch.diag_embed(torch.exp(self.log_prec))
        return torch.exp(self.log_prec)

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits.detach(), 0)

    def covariances(self) -> torch.Tensor:
        with torch.no_grad():
            p = self.prec_chol()
            if self.covariance_type == "full":
                return torch.linalg.inv(p @ p.mT)
            return 1.0 / (p * p)

    def _loss_and_grad(self) -> torch.Tensor:
        """-mean log p(x), with the gradient accumulated chunk by chunk (memory O(chunk K D))."""
        for t in self.tensors:
            t.grad = None
        n = self.x.shape[0]
        total = torch.zeros((), dtype=self.x.dtype, device=self.x.device)
        with torch.enable_grad():
            log_w = torch.log_softmax(self.logits, 0)
            prec = self.prec_chol()
            for start in range(0, n, self.chunk):
                xc = self.x[start:start + self.chunk]
                lp = log_prob_components(xc, log_w, self.means, prec, self.covariance_type)
                loss = -torch.logsumexp(lp, 1).sum() / n
                last = start + self.chunk >= n
                loss.backward(retain_graph=not last)
                total = total + loss.detach()
        return total

    def snapshot(self) -> list[torch.Tensor]:
        return [t.detach().clone() for t in self.tensors]

    def restore(self, saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for t, s in zip(self.tensors, saved):
                t.copy_(s)
        self.optimizer = self._make_optimizer()

    def step(self) -> torch.Tensor:
        """One optimizer iteration; returns the mean log-likelihood *before* it."""
        if self.optimizer_name == "lbfgs":
            loss = self.optimizer.step(self._loss_and_grad)
        else:
            loss = self._loss_and_grad()
            self.optimizer.step()
        return -loss.detach()
