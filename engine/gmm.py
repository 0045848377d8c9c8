"""Gaussian-mixture mechanisms shared by the EM topic and its benchmark: the E- and M-steps,
the precision Cholesky factors and their conditioning, the initialisers (Lloyd's k-means,
greedy k-means++, random responsibilities, random data points, a user's file), BIC / AIC, and
gradient MLE of the same model. scikit-learn's ``mixture/_gaussian_mixture.py`` is the shape
followed: one function per estimator step, scikit-learn's layouts and conventions, so parity
checks are exact.

Model (natural log): p(x) = sum_k pi_k N(x | mu_k, Sigma_k), K components in D dimensions.
Covariance types and their layouts (scikit-learn's):
    full       Sigma_k any SPD matrix           (K, D, D)
    tied       one SPD matrix shared by all     (D, D)
    diag       diagonal Sigma_k                 (K, D)
    spherical  sigma_k^2 I                      (K,)
Precision Cholesky factors P (P P^T = Sigma^-1, upper triangular for full and tied) are
scikit-learn's ``precisions_cholesky_`` in the same layouts. The E-step kernel
(``engine/kernels/gmm_estep.py``) knows full, diag and spherical; a tied mixture runs through
it as a full one whose K factors are the same matrix.
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np
import torch

from .kernels import gmm_estep
from .kernels.gmm_estep import EStepStats, log_prob_components
from .params import ParamError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INITS = ("kmeans", "k-means++", "random", "random_from_data")
INIT_ALIASES = {"kmeans++": "k-means++"}
# A covariance is unusable when its Cholesky factorisation fails or when
# lambda_min / max(lambda_max, mean data variance) < RCOND: the E-step's quadratic forms would
# keep fewer than 3 significant digits (float64 parameters and statistics).
RCOND = 1e3 * float(np.finfo(np.float64).eps)
KMEANS_MAX_ITER = 300          # scikit-learn's KMeans defaults: max_iter=300, tol=1e-4
KMEANS_TOL = 1e-4
CHUNK = 1 << 15


def _kernel_layout(prec_chol: torch.Tensor, covariance_type: str, k: int) -> tuple[torch.Tensor, str]:
    """(precision factors, type) as the E-step kernel takes them: tied -> K copies, full."""
    if covariance_type == "tied":
        return prec_chol.expand(k, *prec_chol.shape).contiguous(), "full"
    return prec_chol, covariance_type


def estep(x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor, prec_chol: torch.Tensor,
          covariance_type: str, use_kernel: bool | None = None) -> EStepStats:
    """The E-step's log p(x_i) and statistics (``kernels.gmm_estep.estep``), any covariance type;
    sxx is (K, D, D) for full and tied."""
    prec, kind = _kernel_layout(prec_chol, covariance_type, means.shape[0])
    return gmm_estep.estep(x, log_weights, means, prec, kind, use_kernel=use_kernel)


def component_log_prob(x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor,
                       prec_chol: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """log pi_k + log N(x_i | mu_k, Sigma_k), (n, K), differentiable, any covariance type."""
    prec, kind = _kernel_layout(prec_chol, covariance_type, means.shape[0])
    return log_prob_components(x, log_weights, means, prec, kind)


# -- M-step and precisions ------------------------------------------------------------------------
def m_step(stats: EStepStats, reg_covar: float, covariance_type: str
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights, means, covariances) from the E-step's statistics, scikit-learn's estimator:
    N_k += 10 eps, mu = sx / N_k, Sigma = sxx / N_k - mu mu^T + reg_covar I
    (diag: the diagonal of that; spherical: its mean over dimensions; tied:
    (sum_k sxx_k - sum_k N_k mu_k mu_k^T) / sum_k N_k + reg_covar I, i.e. (X^T X - ...) / N)."""
    eps = 10.0 * torch.finfo(stats.nk.dtype).eps
    nk = stats.nk + eps
    means = stats.sx / nk[:, None]
    d = means.shape[1]
    if covariance_type in ("full", "tied"):
        eye = torch.eye(d, dtype=stats.sxx.dtype, device=stats.sxx.device)
        if covariance_type == "full":
            cov = stats.sxx / nk[:, None, None] - means[:, :, None] * means[:, None, :]
        else:
            cov = (stats.sxx.sum(0) - (nk[:, None] * means).T @ means) / nk.sum()
        cov = 0.5 * (cov + cov.mT)
        cov = cov + reg_covar * eye
    elif covariance_type == "diag":
        cov = stats.sxx / nk[:, None] - means * means + reg_covar
    else:
        cov = (stats.sxx / nk[:, None] - means * means).mean(1) + reg_covar
    weights = nk / nk.sum()
    return weights, means, cov


def precision_cholesky(cov: torch.Tensor, covariance_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, ok): P P^T = Sigma^-1 with P upper triangular (scikit-learn's precisions_cholesky_),
    and ok, False where Sigma is not positive definite (no host sync): (K,) per component, (1,)
    for tied."""
    if covariance_type == "tied":
        prec, ok = precision_cholesky(cov[None], "full")
        return prec[0], ok
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


def usable(cov: torch.Tensor, prec_chol: torch.Tensor, ok: torch.Tensor, covariance_type: str,
           data_variance: float) -> torch.Tensor:
    """ok and numerically well-conditioned: lambda_min / max(lambda_max, data_variance) >= RCOND,
    with lambda_min >= 1 / |P|_F^2 and lambda_max <= |Sigma|_F (full, tied; bounds within a
    factor D) or the exact extremes (diag, spherical). (K,) per component, (1,) for tied.
    A floor reg_covar > 0 on data of unit variance keeps every component usable."""
    if covariance_type in ("full", "tied"):
        c = cov if covariance_type == "full" else cov[None]
        p = prec_chol if covariance_type == "full" else prec_chol[None]
        lam_max = torch.linalg.matrix_norm(c)
        lam_min = 1.0 / torch.linalg.matrix_norm(p).square()
    elif covariance_type == "diag":
        lam_max, lam_min = cov.max(1).values, cov.min(1).values
    else:
        lam_max = lam_min = cov
    ratio = lam_min / torch.clamp(lam_max, min=data_variance)
    return ok & torch.isfinite(ratio) & (ratio >= RCOND)


def as_full(cov: torch.Tensor, covariance_type: str, k: int, d: int) -> torch.Tensor:
    """Any covariance layout -> (K, D, D) (tied: K views of the shared matrix)."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return cov.expand(k, d, d)
    if covariance_type == "diag":
        return torch.diag_embed(cov)
    return cov[:, None, None] * torch.eye(d, dtype=cov.dtype, device=cov.device)


def project_covariances(cov: torch.Tensor, old: str, new: str, weights: torch.Tensor, d: int) -> torch.Tensor:
    """Change the covariance type: keep the diagonal (-> diag), average it (-> spherical), pool
    the components weighted by pi_k (-> tied: sum_k pi_k Sigma_k), broadcast (tied -> full)."""
    full = as_full(cov, old, weights.shape[0], d)
    if new == "full":
        return full.clone()
    if new == "tied":
        w = (weights / weights.sum()).to(full.dtype)
        return torch.einsum("k,kij->ij", w, full)
    diag = torch.diagonal(full, dim1=-2, dim2=-1)
    return diag.clone() if new == "diag" else diag.mean(1)


def reseed(collapsed: torch.Tensor, seeds: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
           cov: torch.Tensor, data_cov: torch.Tensor, covariance_type: str
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Components flagged in ``collapsed`` (K,) restart at ``seeds`` (K, D) with the data's
    covariance (tied: the shared covariance is kept) and weight 1/K, the weights renormalised."""
    k, d = means.shape
    means = torch.where(collapsed[:, None], seeds.to(means.dtype), means)
    if covariance_type != "tied":
        fallback = project_covariances(data_cov[None].expand(k, d, d), "full", covariance_type,
                                       torch.ones(k, dtype=weights.dtype, device=weights.device), d)
        cov = torch.where(collapsed.view((-1,) + (1,) * (cov.dim() - 1)), fallback, cov)
    weights = torch.where(collapsed, torch.full_like(weights, 1.0 / k), weights)
    return weights / weights.sum(), means, cov


# -- model selection ------------------------------------------------------------------------------
def n_parameters(k: int, d: int, covariance_type: str) -> int:
    """Free parameters of the mixture (scikit-learn's ``_n_parameters``): K D means, K - 1
    weights and K D (D+1)/2 (full), D (D+1)/2 (tied), K D (diag) or K (spherical) covariances."""
    cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d, "spherical": k}
    return cov[covariance_type] + k * d + k - 1


def information_criteria(mean_log_likelihood: float, n: int, k: int, d: int,
                         covariance_type: str) -> tuple[float, float]:
    """(BIC, AIC) = (-2 N l + p ln N, -2 N l + 2 p), l the mean log-likelihood per point, p the
    free parameters (Schwarz 1978; Akaike 1974; scikit-learn's ``bic`` / ``aic``): lower is better."""
    p = n_parameters(k, d, covariance_type)
    total = -2.0 * n * mean_log_likelihood
    return total + p * math.log(n), total + 2.0 * p


# -- initialisation -------------------------------------------------------------------------------
def responsibility_stats(x: torch.Tensor, resp_of_chunk, k: int, covariance_type: str,
                         chunk: int = CHUNK) -> EStepStats:
    """(nk, sx, sxx) in float64 for responsibilities given chunk by chunk (the initialisations)."""
    n, d = x.shape
    full = covariance_type in ("full", "tied")
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


def _squared_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """|x_i - c_j|^2, (n, m), in float64, clamped at 0."""
    x = x.to(torch.float64)
    c = centres.to(torch.float64)
    return ((x * x).sum(1, keepdim=True) - 2.0 * x @ c.T + (c * c).sum(1)).clamp_(min=0.0)


def nearest(x: torch.Tensor, centres: torch.Tensor, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(label, squared distance) of each point's nearest centre, chunk by chunk."""
    labels, dist = [], []
    for start in range(0, x.shape[0], chunk):
        d2 = _squared_distances(x[start:start + chunk], centres)
        best = d2.min(1)
        labels.append(best.indices)
        dist.append(best.values)
    return torch.cat(labels), torch.cat(dist)


def _potentials(x: torch.Tensor, closest: torch.Tensor, candidates: torch.Tensor,
                chunk: int = CHUNK) -> torch.Tensor:
    """sum_i min(closest_i, |x_i - c|^2) for each candidate centre c, (m,), chunk by chunk."""
    pots = torch.zeros(len(candidates), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        d2 = _squared_distances(x[start:start + chunk], candidates)
        pots += torch.minimum(d2, closest[start:start + chunk, None]).sum(0)
    return pots


def _closer(x: torch.Tensor, closest: torch.Tensor, centre: torch.Tensor, chunk: int = CHUNK) -> None:
    """closest_i <- min(closest_i, |x_i - centre|^2), in place, chunk by chunk."""
    for start in range(0, x.shape[0], chunk):
        d2 = _squared_distances(x[start:start + chunk], centre[None])[:, 0]
        torch.minimum(closest[start:start + chunk], d2, out=closest[start:start + chunk])


def kmeans_plusplus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k centres by greedy k-means++ (Arthur & Vassilvitskii 2007, as scikit-learn seeds KMeans):
    the first uniformly at random; each next one the best of 2 + floor(ln k) candidates drawn
    with probability proportional to D^2 (the squared distance to the nearest centre so far),
    best meaning the smallest potential sum_i D^2 afterwards. Uniforms from a CPU generator;
    memory O(N)."""
    n = x.shape[0]
    trials = 2 + int(math.log(k)) if k > 1 else 1
    ids = [int(torch.randint(n, (1,), generator=gen))]
    closest = torch.full((n,), math.inf, dtype=torch.float64, device=x.device)
    _closer(x, closest, x[ids[0]])
    potential = closest.sum()
    for _ in range(1, k):
        u = torch.rand(trials, generator=gen, dtype=torch.float64).to(x.device)
        cand = torch.searchsorted(torch.cumsum(closest, 0), u * potential).clamp_(max=n - 1)
        pots = _potentials(x, closest, x[cand])
        best = int(torch.argmin(pots))
        ids.append(int(cand[best]))
        _closer(x, closest, x[ids[-1]])
        potential = pots[best]
    return x[torch.tensor(ids, device=x.device)]


def kmeans(x: torch.Tensor, k: int, gen: torch.Generator, max_iter: int = KMEANS_MAX_ITER,
           tol: float = KMEANS_TOL, chunk: int = CHUNK) -> torch.Tensor:
    """Lloyd's k-means from greedy k-means++ centres, with scikit-learn's stopping rules (labels
    unchanged, or a total squared centre shift <= tol x the mean variance of the features) and
    its repair of an empty cluster (moved to the point farthest from its centre). Returns each
    point's label for the final centres."""
    n, d = x.shape
    centres = kmeans_plusplus(x, k, gen).to(torch.float64)
    s1 = torch.zeros(d, dtype=torch.float64, device=x.device)
    s2 = torch.zeros(d, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk):
        xc = x[start:start + chunk].to(torch.float64)
        s1 += xc.sum(0)
        s2 += (xc * xc).sum(0)
    threshold = tol * float((s2 / n - (s1 / n) ** 2).mean())
    labels, dist = nearest(x, centres)
    for _ in range(max_iter):
        counts = torch.bincount(labels, minlength=k).to(torch.float64)
        sums = torch.zeros_like(centres)
        for start in range(0, n, chunk):
            sums.index_add_(0, labels[start:start + chunk], x[start:start + chunk].to(torch.float64))
        new = sums / counts.clamp(min=1.0)[:, None]
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            new[empty] = x[torch.topk(dist, len(empty)).indices].to(torch.float64)
        shift = float(((new - centres) ** 2).sum())
        centres = new
        new_labels, dist = nearest(x, centres)
        same = bool(torch.equal(new_labels, labels))
        labels = new_labels
        if same or shift <= threshold:
            break
    return labels


def initial_parameters(x: torch.Tensor, k: int, covariance_type: str, init: str, reg_covar: float,
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Responsibilities from ``init`` -> one M-step (scikit-learn's ``_initialize``).
    kmeans: Lloyd's labels (scikit-learn's default); k-means++: greedy k-means++ centres;
    random_from_data: K distinct data points; random: uniform random responsibilities,
    normalised per point. The centre-based ones assign every point to its nearest centre
    (scikit-learn gives the centre's own point alone a responsibility, a reg_covar-wide start
    whose first E-step is that same hard assignment)."""
    init = INIT_ALIASES.get(init, init)
    eye = torch.eye(k, dtype=x.dtype, device=x.device)
    if init == "random":
        def resp(start: int, xc: torch.Tensor) -> torch.Tensor:
            r = torch.rand(len(xc), k, generator=gen, dtype=torch.float64).to(x.device, x.dtype)
            return r / r.sum(1, keepdim=True)
    elif init == "kmeans":
        labels = kmeans(x, k, gen)

        def resp(start: int, xc: torch.Tensor) -> torch.Tensor:
            return eye[labels[start:start + len(xc)]]
    elif init in ("k-means++", "random_from_data"):
        if init == "k-means++":
            centres = kmeans_plusplus(x, k, gen)
        else:
            centres = x[torch.randperm(x.shape[0], generator=gen)[:k].to(x.device)]

        def resp(start: int, xc: torch.Tensor) -> torch.Tensor:
            return eye[nearest(xc, centres)[0]]
    else:
        raise ParamError(f"init must be one of {'|'.join(INITS)}, got {init!r}")
    stats = responsibility_stats(x, resp, k, covariance_type)
    return m_step(stats, reg_covar, covariance_type)


def load_init_file(path: str, k: int, d: int, covariance_type: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights (K,), means (K, D), covariances in the type's layout), float64, from an .npz
    holding ``weights``, ``means`` and ``precisions`` or ``covariances`` (scikit-learn's
    ``weights_init``, ``means_init``, ``precisions_init`` layouts; never unpickled). Refused
    with one line (ParamError) when a key is missing, a shape disagrees with K, D and the
    covariance type, the weights are not a distribution or a matrix is not positive definite."""
    name = os.path.basename(str(path))
    try:
        with np.load(os.path.expanduser(str(path)), allow_pickle=False) as archive:
            arrays = {key: np.asarray(archive[key]) for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ParamError(f"init_file: {name} is not a readable .npz of float arrays "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    which = "precisions" if "precisions" in arrays else "covariances"
    missing = [key for key in ("weights", "means", which) if key not in arrays]
    if missing:
        raise ParamError(f"init_file: {name} lacks {', '.join(missing)} (needs weights, means and "
                         f"precisions or covariances; holds {', '.join(sorted(arrays)) or 'nothing'})")
    shapes = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
    want = {"weights": (k,), "means": (k, d), which: shapes[covariance_type]}
    for key, shape in want.items():
        a = arrays[key]
        if a.dtype.kind not in "fiu":
            raise ParamError(f"init_file: {key} in {name} holds {a.dtype} values, expected floats")
        if a.shape != shape:
            raise ParamError(f"init_file: {key} in {name} has shape {a.shape}, expected {shape} "
                             f"(K={k}, D={d}, covariance={covariance_type})")
        if not np.isfinite(a).all():
            raise ParamError(f"init_file: {key} in {name} holds NaN/inf values")
    w = arrays["weights"].astype(np.float64)
    if (w < 0).any() or abs(w.sum() - 1.0) > 1e-6:
        raise ParamError(f"init_file: weights in {name} must be >= 0 and sum to 1, got sum {w.sum():.6g}")
    mat = arrays[which].astype(np.float64)
    if covariance_type in ("full", "tied"):
        m = mat[None] if covariance_type == "tied" else mat
        if not np.allclose(m, np.swapaxes(m, -1, -2)) or (np.linalg.eigvalsh(m).min(-1) <= 0).any():
            raise ParamError(f"init_file: {which} in {name} must be symmetric positive definite")
        cov = np.linalg.inv(mat) if which == "precisions" else mat
    else:
        if (mat <= 0).any():
            raise ParamError(f"init_file: {which} in {name} must be positive")
        cov = 1.0 / mat if which == "precisions" else mat
    return w, arrays["means"].astype(np.float64), cov


# -- gradient MLE ---------------------------------------------------------------------------------
class GradientFit:
    """The mixture's mean log-likelihood maximised by a torch optimizer.

    Parameters (all unconstrained): softmax ``logits`` (K,), ``means`` (K, D) and the precision
    Cholesky factor with a log-parameterised diagonal: full -> strictly upper part + log diag
    (K, D); tied -> the same for the one shared factor (D, D) + (D,); diag -> log p (K, D);
    spherical -> log p (K,). sigma = exp(-log p)."""

    def __init__(self, x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                 prec_chol: torch.Tensor, covariance_type: str, optimizer: str, lr: float,
                 chunk: int = 1 << 16) -> None:
        self.x = x
        self.covariance_type = covariance_type
        self.chunk = chunk
        weights, means, prec_chol = (t.detach().to(x.dtype) for t in (weights, means, prec_chol))
        self.logits = torch.log(weights).clone().requires_grad_(True)
        self.means = means.clone().requires_grad_(True)
        if covariance_type in ("full", "tied"):
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
        if self.off is not None:
            return self.off * self.upper + torch.diag_embed(torch.exp(self.log_prec))
        return torch.exp(self.log_prec)

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits.detach(), 0)

    def covariances(self) -> torch.Tensor:
        with torch.no_grad():
            p = self.prec_chol()
            if self.off is not None:
                return torch.linalg.inv(p @ p.mT)
            return 1.0 / (p * p)

    def min_scales(self) -> torch.Tensor:
        """Each component's smallest scale 1 / P_dd (K,): a collapse drives it to 0."""
        with torch.no_grad():
            sigma = torch.exp(-self.log_prec.detach())
            k = self.means.shape[0]
            if self.covariance_type == "tied":
                return sigma.min().expand(k)
            return sigma.min(1).values if sigma.dim() > 1 else sigma

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
                lp = component_log_prob(xc, log_w, self.means, prec, self.covariance_type)
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


# -- what the pane draws of a fit (host-side, small) -------------------------------------------

def weighted_densities_1d(grid: np.ndarray, weights: np.ndarray, means: np.ndarray,
                          covariances: np.ndarray) -> np.ndarray:
    """π_k N(x | μ_k, σ_k²) of each component on ``grid`` (1-D data): shape (K, len(grid))."""
    sd = np.sqrt(np.maximum(covariances[:, 0, 0], 1e-300))
    z = (grid[None, :] - means[:, 0, None]) / sd[:, None]
    return weights[:, None] * np.exp(-0.5 * z * z) / (sd[:, None] * math.sqrt(2 * math.pi))


def ellipse_2d(mean: np.ndarray, covariance: np.ndarray, points: int) -> np.ndarray | None:
    """The 2σ ellipse {μ + 2 L u : |u| = 1} of a 2-D Gaussian (L the Cholesky factor of Σ), as
    (2, points) coordinates; None when Σ is not positive definite."""
    t = np.linspace(0.0, 2.0 * np.pi, points)
    try:
        chol = np.linalg.cholesky(0.5 * (covariance + covariance.T))
    except np.linalg.LinAlgError:
        return None
    return mean[:, None] + 2.0 * chol @ np.stack([np.cos(t), np.sin(t)])


def component_summary(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> list[list]:
    """Per component: [π, μ, σ] and, for 2-D data, the correlation ρ; μ and σ are numbers for
    1-D data and lists (σ the square roots of Σ's diagonal) otherwise."""
    d = means.shape[1]
    rows = []
    for j in range(len(weights)):
        sd = np.sqrt(np.maximum(np.diagonal(covariances[j]), 0.0))
        if d == 1:
            rows.append([float(weights[j]), float(means[j, 0]), float(sd[0])])
            continue
        row = [float(weights[j]), [float(v) for v in means[j]], [float(v) for v in sd]]
        if d == 2:
            row.append(float(covariances[j, 0, 1] / max(sd[0] * sd[1], 1e-300)))
        rows.append(row)
    return rows
