"""EM for Gaussian mixtures, fitted live, beside gradient MLE on the same data and model.

Model (natural log): p(x) = sum_k pi_k N(x | mu_k, Sigma_k), K components in D dimensions,
covariance ``full`` (Sigma_k any SPD matrix), ``diag`` or ``spherical`` (sigma_k^2 I).

One step = one EM iteration (an E-step, then an M-step) and/or one gradient iteration:
  E-step  log r_ik = log pi_k + log N(x_i | mu_k, Sigma_k) - logsumexp_k(...), reduced at once
          to the sufficient statistics N_k, sum_i r_ik x_i, sum_i r_ik x_i x_i^T
          (engine/kernels/gmm_estep.py: a Triton kernel on CUDA, its matmul twin elsewhere).
  M-step  pi_k = N_k / N, mu_k = sum r x / N_k, Sigma_k = sum r x x^T / N_k - mu_k mu_k^T + reg_covar I
          (scikit-learn's estimator, N_k += 10 eps included, so parity checks are exact).
``log_likelihood`` is the mean log p(x_i) computed in the step's E-step, i.e. under the
parameters *before* that step's M-step (scikit-learn's ``lower_bound_``); ``converged`` is
|change| < tol, as scikit-learn decides it. With reg_covar = 0 and re-seeding off the
log-likelihood never decreases; the floor and re-seeding give up that guarantee.

A component whose responsibility mass N_k falls below D + 1 points (full; 2 otherwise; N / 2K
on tiny data sets), or
whose covariance stops being positive definite, is re-seeded on the worst-explained point
(the smallest log p(x_i)) with the data's covariance and weight 1/K (``reseed``), and the pane
says so. With ``reseed`` off a singular covariance keeps its previous value and is counted.

Gradient MLE: the same log-likelihood maximised by Adam or L-BFGS over softmax logits, means
and the precision Cholesky factors with log-parameterised diagonals (scales), from the same
initialisation; no covariance floor, so a component can collapse onto one point.

Internally the data are centred (their mean subtracted, kept in ``center``); every reported
mean is in the data's own coordinates.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..datasets import GENERATORS, MAX_FEATURES, DataError, generate, load_points
from ..device import use_triton
from ..kernels.gmm_estep import COVARIANCE_TYPES, EStepStats, estep, log_prob_components
from ..params import Param, ParamError
from ..topic import Frame, Topic, View

DATASETS = tuple(GENERATORS) + ("file",)
INITS = ("kmeans++", "random")
MODES = ("em", "gradient", "both")
OPTIMIZERS = ("adam", "lbfgs")
DTYPES = ("float64", "float32")
HIST_BINS = 40
GRID_POINTS = 161
SCATTER_POINTS = 400
ELLIPSE_POINTS = 49
MAX_COMPONENT_LINES = 6


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


# -- state ----------------------------------------------------------------------------------------
@dataclass
class EMState:
    x: torch.Tensor                      # (N, D) centred data, on the device
    center: np.ndarray                   # (D,) float64, the data mean (added back for display)
    covariance_type: str
    weights: torch.Tensor
    means: torch.Tensor                  # centred coordinates
    covariances: torch.Tensor
    prec_chol: torch.Tensor
    data_cov: torch.Tensor               # (D, D) covariance of the data (re-seeding)
    init_params: tuple                   # (weights, means, covariances, prec_chol) at init
    use_kernel: bool
    dataset: str
    iteration: int = 0
    em_iterations: int = 0
    log_likelihood: torch.Tensor | None = None
    change: torch.Tensor | None = None
    converged: torch.Tensor | None = None
    converged_at: torch.Tensor | None = None      # first EM iteration with |change| < tol, or -1
    reseeded: torch.Tensor | None = None          # cumulative count (device)
    singular: torch.Tensor | None = None          # cumulative count (device)
    divergences: torch.Tensor | None = None       # cumulative count of non-finite EM log-likelihoods
    reseed_events: torch.Tensor | None = None     # (K,) bool since the last observe
    reseed_points: torch.Tensor | None = None     # (K, D) where they were re-seeded
    grad: GradientFit | None = None
    grad_iterations: int = 0
    grad_log_likelihood: torch.Tensor | None = None
    grad_divergences: int = 0
    grad_collapsed: set = field(default_factory=set)
    grad_stopped: bool = False
    notes: list = field(default_factory=list)
    seen: dict = field(default_factory=dict)      # counters already reported in notes
    hist_edges: np.ndarray | None = None
    hist_density: np.ndarray | None = None
    scatter: np.ndarray | None = None
    data_scale: float = 1.0

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def d(self) -> int:
        return self.x.shape[1]

    @property
    def k(self) -> int:
        return self.means.shape[0]


# -- the topic ------------------------------------------------------------------------------------
class EMTopic(Topic):
    name = "em"
    title = "EM mixtures"
    order = 50
    summary = "Gaussian mixtures fitted live by EM (Triton E-step), beside gradient MLE"
    step_unit = "EM iteration"
    params = (
        Param("dataset", "choice", "bimodal", choices=DATASETS, live=False,
              help="built-in data (bimodal: .5N(-3,1)+.5N(3,1); bimodal_unequal: .4N(-2,1)+.6N(3,.7^2); "
                   "blobs: 3 correlated 2-D blobs; ring) or file (set data=PATH)"),
        Param("data", "path", "", live=False,
              help="a .npy, .npz or CSV of floats, N rows x D columns; implies dataset=file"),
        Param("n_points", "int", 2000, lo=10, hi=20_000_000, log=True, live=False,
              help="points drawn from a built-in dataset"),
        Param("data_seed", "int", 0, lo=0, hi=2**31 - 1, live=False,
              help="seed of the built-in data (a reset keeps the data, draws a new initialisation)"),
        Param("K", "int", 2, lo=1, hi=64, live=False, help="number of mixture components"),
        Param("covariance", "choice", "full", choices=COVARIANCE_TYPES,
              help="covariance type; a live change projects the current fit"),
        Param("reg_covar", "float", 1e-6, lo=0.0, hi=100.0, log=True,
              help="covariance floor added to the diagonal in the M-step (0: EM's monotone guarantee)"),
        Param("init", "choice", "kmeans++", choices=INITS, live=False,
              help="kmeans++ centres with hard assignments, or random responsibilities"),
        Param("reseed", "bool", True, help="re-seed a collapsed component on the worst-explained point"),
        Param("tol", "float", 1e-3, lo=0.0, hi=10.0, log=True,
              help="converged when |change of the mean log-likelihood| < tol (scikit-learn's rule)"),
        Param("mode", "choice", "both", choices=MODES, help="EM, gradient MLE, or both side by side"),
        Param("gradient_optimizer", "choice", "adam", choices=OPTIMIZERS,
              help="optimizer of the gradient MLE run"),
        Param("lr", "float", 0.05, lo=1e-5, hi=10.0, log=True, help="learning rate of the gradient run"),
        Param("dtype", "choice", "float64", choices=DTYPES, live=False,
              help="precision of the data and the E-step (statistics and parameters stay float64)"),
    )
    views = (
        View("histogram", "Data and fitted density (x1)", source="density_1d",
             options={"xlabel": "x1", "ylabel": "density"}),
        View("plot", "Components, 2-sigma ellipses (x1, x2)", source="ellipses_2d",
             options={"scatter": ("data",)}),
        View("trace", "Mean log-likelihood per point", series=("log_likelihood", "log_likelihood_gradient")),
        View("table", "Components", source="components"),
    )

    # -- parameters ----------------------------------------------------------------------------
    def check(self, p: dict[str, Any], changed: Sequence[str] = ()) -> dict[str, Any]:
        p = dict(p)
        if "data" in changed and p.get("data"):
            if "dataset" in changed and p.get("dataset") != "file":
                raise ParamError(f"data=PATH implies dataset=file, got dataset={p['dataset']}")
            p["dataset"] = "file"
        k = int(p["K"])
        if p["dataset"] == "file":
            if not p.get("data"):
                raise ParamError("dataset=file needs data=PATH (.npy, .npz or CSV of floats)")
            n = load_points(p["data"]).shape[0]   # raises DataError on bad content
            if n < k:
                raise DataError(f"data: {n} points but K={k} components; need at least K points")
        elif p["n_points"] < k:
            raise ParamError(f"n_points must be >= K={k}, got {p['n_points']}")
        return p

    def points(self, p: Mapping[str, Any]) -> np.ndarray:
        """The data set the params name, float64 (N, D)."""
        if p["dataset"] == "file":
            return load_points(p["data"])
        return generate(p["dataset"], p["n_points"], p["data_seed"])

    # -- init ----------------------------------------------------------------------------------
    def init(self, p: Mapping[str, Any], device: torch.device, seed: int) -> EMState:
        p = self.check(dict(p))
        return self.state_from_points(self.points(p), p, device, seed)

    def state_from_points(self, pts: np.ndarray, p: Mapping[str, Any], device: torch.device,
                          seed: int) -> EMState:
        """A fresh fit of ``pts`` (float64 (N, D)) with the params ``p``, initialised from ``seed``."""
        dtype = torch.float64 if p["dtype"] == "float64" else torch.float32
        pdt = torch.float64  # parameters and statistics: float64 whatever the data's dtype
        n, d = pts.shape
        if d > MAX_FEATURES:
            raise ParamError(f"data: {d} dimensions, at most {MAX_FEATURES} supported")
        center = pts.mean(0)
        x = torch.as_tensor(pts - center, dtype=dtype).to(device)
        cov_type = p["covariance"]
        k = int(p["K"])
        data_cov = torch.as_tensor(np.atleast_2d(np.cov(pts, rowvar=False)), dtype=pdt).to(device)
        data_cov = data_cov + 1e-6 * torch.eye(d, dtype=pdt, device=device) * max(
            float(torch.diagonal(data_cov).mean()), 1e-12)
        gen = torch.Generator().manual_seed(int(seed))
        weights, means, cov = self.initial_parameters(x, k, cov_type, p["init"], p["reg_covar"], gen)
        prec, ok = precision_cholesky(cov, cov_type)
        if not bool(ok.all()):  # a centre with too few points for a covariance: the data's instead
            fallback = project_covariances(data_cov[None].expand(k, d, d), "full", cov_type, d)
            cov = torch.where(ok.view(-1, *([1] * (cov.dim() - 1))), cov, fallback)
            prec, _ = precision_cholesky(cov, cov_type)
        state = EMState(x=x, center=center, covariance_type=cov_type, weights=weights, means=means,
                        covariances=cov, prec_chol=prec, data_cov=data_cov,
                        init_params=(weights.clone(), means.clone(), cov.clone(), prec.clone()),
                        use_kernel=use_triton(device), dataset=p["dataset"])
        self._reset_counters(state)
        state.data_scale = float(np.sqrt(np.mean(np.var(pts, axis=0)))) or 1.0
        lo, hi = np.percentile(pts[:, 0], [0.2, 99.8])
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        counts, edges = np.histogram(pts[:, 0], bins=HIST_BINS, range=(lo - pad, hi + pad))
        state.hist_edges = edges
        state.hist_density = counts / (n * np.diff(edges))
        if d >= 2:
            rng = np.random.default_rng(int(p["data_seed"]))
            pick = rng.choice(n, size=min(n, SCATTER_POINTS), replace=False)
            state.scatter = pts[pick, :2]
        if p["mode"] in ("gradient", "both"):
            self._start_gradient(state, p)
        state.notes.append(f"init {p['init']} (seed {seed}) on {n} points, D={d}, K={k}, {cov_type}"
                           + (", Triton E-step" if state.use_kernel else ", PyTorch E-step"))
        return state

    @staticmethod
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

    def _reset_counters(self, state: EMState) -> None:
        dev, dt = state.x.device, torch.float64
        state.log_likelihood = torch.tensor(float("nan"), dtype=dt, device=dev)
        state.change = torch.tensor(float("nan"), dtype=dt, device=dev)
        state.converged = torch.tensor(False, device=dev)
        state.converged_at = torch.tensor(-1, dtype=torch.int64, device=dev)
        state.reseeded = torch.zeros((), dtype=torch.int64, device=dev)
        state.singular = torch.zeros((), dtype=torch.int64, device=dev)
        state.divergences = torch.zeros((), dtype=torch.int64, device=dev)
        state.reseed_events = torch.zeros(state.k, dtype=torch.bool, device=dev)
        state.reseed_points = torch.zeros(state.k, state.d, dtype=dt, device=dev)
        state.seen = {"reseeded": 0, "singular": 0, "divergences": 0, "converged": False}

    def _start_gradient(self, state: EMState, p: Mapping[str, Any]) -> None:
        """The gradient run starts from EM's initialisation (init_params follow covariance edits)."""
        w, m, _, prec = state.init_params
        state.grad = GradientFit(state.x, w, m, prec, state.covariance_type, p["gradient_optimizer"], p["lr"])
        state.grad_log_likelihood = None
        state.grad_stopped = False
        state.grad_collapsed = set()

    # -- step ----------------------------------------------------------------------------------
    def step(self, state: EMState, p: Mapping[str, Any]) -> None:
        mode = p["mode"]
        if mode in ("em", "both"):
            self.em_step(state, p)
        if mode in ("gradient", "both"):
            self.gradient_step(state, p)
        state.iteration += 1

    def em_step(self, state: EMState, p: Mapping[str, Any]) -> None:
        """One E-step + M-step, on the device, without a host sync."""
        cov_type = state.covariance_type
        stats = estep(state.x, torch.log(state.weights), state.means, state.prec_chol, cov_type,
                      use_kernel=state.use_kernel)
        ll = stats.log_prob_norm.mean(dtype=torch.float64)
        state.change = ll - state.log_likelihood
        state.log_likelihood = ll
        state.converged = torch.abs(state.change) < p["tol"]
        state.converged_at = torch.where(state.converged & (state.converged_at < 0),
                                         state.em_iterations + 1, state.converged_at)
        state.divergences = state.divergences + (~torch.isfinite(ll)).to(torch.int64)
        weights, means, cov = m_step(stats, p["reg_covar"], cov_type)
        prec, ok = precision_cholesky(cov, cov_type)
        k, d = state.k, state.d
        shape = (-1,) + (1,) * (cov.dim() - 1)
        if p["reseed"]:
            # fewer points than a covariance needs (D + 1 for full, 2 otherwise); on tiny data
            # sets (under 2 such per component) the bar drops to N / 2K
            min_points = min(d + 1 if cov_type == "full" else 2, state.n / (2 * k))
            collapsed = (stats.nk < min_points) | ~ok | ~torch.isfinite(means).all(1)
            worst = torch.topk(torch.nan_to_num(stats.log_prob_norm, nan=-math.inf), min(k, state.n),
                               largest=False).indices
            order = (torch.cumsum(collapsed.to(torch.int64), 0) - 1).clamp(0, len(worst) - 1)
            seeds = state.x[worst[order]].to(means.dtype)
            means = torch.where(collapsed[:, None], seeds, means)
            fallback = project_covariances(state.data_cov[None].expand(k, d, d), "full", cov_type, d)
            cov = torch.where(collapsed.view(shape), fallback, cov)
            weights = torch.where(collapsed, torch.full_like(weights, 1.0 / k), weights)
            weights = weights / weights.sum()
            prec, ok = precision_cholesky(cov, cov_type)
            state.reseeded = state.reseeded + collapsed.sum()
            state.reseed_events = state.reseed_events | collapsed
            state.reseed_points = torch.where(collapsed[:, None], seeds, state.reseed_points)
        # a covariance that is still not positive definite keeps its previous value
        state.singular = state.singular + (~ok).sum()
        state.covariances = torch.where(ok.view(shape), cov, state.covariances)
        state.prec_chol = torch.where(ok.view((-1,) + (1,) * (prec.dim() - 1)), prec, state.prec_chol)
        state.weights = weights
        state.means = means
        state.em_iterations += 1

    def gradient_step(self, state: EMState, p: Mapping[str, Any]) -> None:
        if state.grad is None:
            self._start_gradient(state, p)
        g = state.grad
        if state.grad_stopped:
            return
        saved = g.snapshot()
        ll = g.step()
        bad = not bool(torch.isfinite(ll)) or not all(bool(torch.isfinite(t).all()) for t in g.tensors)
        state.grad_iterations += 1
        if bad:
            g.restore(saved)
            state.grad_divergences += 1
            state.notes.append(f"gradient: non-finite log-likelihood at iteration {state.grad_iterations} "
                               f"(lr={g.lr:g} too large, or a collapse); previous parameters restored")
            if state.grad_divergences >= 5:
                state.grad_stopped = True
                state.notes.append("gradient: stopped after 5 divergences; lower lr and press r")
            return
        state.grad_log_likelihood = ll
        # a component collapsing onto a point: its scale far below the data's
        with torch.no_grad():
            sigma_min = torch.exp(-g.log_prec.detach())
            if sigma_min.dim() > 1:
                sigma_min = sigma_min.min(1).values
            small = (sigma_min < 1e-3 * state.data_scale).nonzero().flatten().tolist()
        for j in small:
            if j not in state.grad_collapsed:
                state.grad_collapsed.add(j)
                state.notes.append(f"gradient: component {j + 1} collapsing onto a point "
                                   f"(scale {float(sigma_min[j]):.2g}): the likelihood is unbounded "
                                   "without a covariance floor")

    def on_edit(self, state: EMState, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        if "covariance" in changed and p["covariance"] != state.covariance_type:
            old, new, d = state.covariance_type, p["covariance"], state.d
            state.covariances = project_covariances(state.covariances, old, new, d)
            state.prec_chol, ok = precision_cholesky(state.covariances, new)
            w, m, c, pr = state.init_params
            c = project_covariances(c, old, new, d)
            pr, _ = precision_cholesky(c, new)
            state.init_params = (w, m, c, pr)
            state.covariance_type = new
            state.log_likelihood = torch.full_like(state.log_likelihood, float("nan"))
            if state.grad is not None:
                gc = project_covariances(state.grad.covariances(), old, new, d)
                gp, _ = precision_cholesky(gc, new)
                state.grad = GradientFit(state.x, state.grad.weights(), state.grad.means.detach(), gp, new,
                                         p["gradient_optimizer"], p["lr"])
            state.notes.append(f"covariance {old} -> {new}: the current fit projected, EM continues")
        if state.grad is not None and ("gradient_optimizer" in changed or "lr" in changed):
            state.grad.set_optimizer(p["gradient_optimizer"], p["lr"])
        if "mode" in changed and p["mode"] in ("gradient", "both") and state.grad is None:
            self._start_gradient(state, p)

    # -- observe -------------------------------------------------------------------------------
    def observe(self, state: EMState, p: Mapping[str, Any]) -> Frame:
        mode = p["mode"]
        em_on = mode in ("em", "both") or state.em_iterations > 0
        dev_scalars = torch.stack([
            state.log_likelihood.double(), state.change.double(), state.converged.double(),
            state.reseeded.double(), state.singular.double(), state.divergences.double(),
            state.converged_at.double()]).tolist()
        ll, change, converged, reseeded, singular, divergences, converged_at = dev_scalars
        reseeded, singular, divergences = int(reseeded), int(singular), int(divergences)
        converged = bool(converged)
        weights = state.weights.double().cpu().numpy()
        means = state.means.double().cpu().numpy() + state.center
        cov_full = full_covariances(state.covariances, state.covariance_type, state.d).double().cpu().numpy()
        notes = list(state.notes)
        state.notes.clear()
        if reseeded > state.seen["reseeded"]:
            events = state.reseed_events.cpu().numpy()
            where = state.reseed_points.double().cpu().numpy() + state.center
            for j in np.flatnonzero(events):
                notes.append(f"EM: component {j + 1} collapsed; re-seeded at the worst-explained point "
                             f"x=({', '.join(f'{v:.3g}' for v in where[j][:4])})")
            state.reseed_events.zero_()
            state.seen["reseeded"] = reseeded
        if singular > state.seen["singular"]:
            notes.append(f"EM: {singular - state.seen['singular']} singular covariance(s) kept their "
                         "previous value (reg_covar=0 and a collapsed component?)")
            state.seen["singular"] = singular
        if divergences > state.seen["divergences"]:
            notes.append(f"EM: non-finite log-likelihood ({divergences} so far); not plotted")
            state.seen["divergences"] = divergences
        if converged and not state.seen["converged"]:
            notes.append(f"EM converged at iteration {int(converged_at)} (|change| < tol={p['tol']:g})")
        state.seen["converged"] = converged
        scalars: dict[str, Any] = {
            "iteration": state.iteration,
            "n_points": state.n,
            "D": state.d,
        }
        arrays: dict[str, Any] = {}
        if em_on:
            finite = math.isfinite(ll)
            scalars["log_likelihood"] = ll if finite else None
            scalars["log_likelihood_change"] = change if math.isfinite(change) else None
            scalars["converged"] = converged
            scalars["reseeded"] = reseeded
            scalars["singular_covariances"] = singular
            scalars["divergences"] = divergences
            arrays["weights"] = weights.tolist()
            arrays["means"] = means.tolist()
            arrays["variances"] = np.diagonal(cov_full, axis1=1, axis2=2).tolist()
            arrays["log_det_covariance"] = np.linalg.slogdet(cov_full)[1].tolist()
        g_weights = g_means = g_cov = None
        if state.grad is not None and mode in ("gradient", "both"):
            gll = None if state.grad_log_likelihood is None else float(state.grad_log_likelihood)
            scalars["log_likelihood_gradient"] = gll if gll is not None and math.isfinite(gll) else None
            scalars["gradient_divergences"] = state.grad_divergences
            g_weights = state.grad.weights().double().cpu().numpy()
            g_means = state.grad.means.detach().double().cpu().numpy() + state.center
            g_cov = full_covariances(state.grad.covariances(), state.covariance_type,
                                     state.d).double().cpu().numpy()
            arrays["weights_gradient"] = g_weights.tolist()
            arrays["means_gradient"] = g_means.tolist()
            arrays["variances_gradient"] = np.diagonal(g_cov, axis1=1, axis2=2).tolist()
        views = {
            "density_1d": self._density_view(state, weights if em_on else None, means, cov_full,
                                             g_weights, g_means, g_cov),
            "ellipses_2d": self._ellipse_view(state, weights if em_on else None, means, cov_full,
                                              g_weights, g_means, g_cov),
            "components": self._table_view(state, weights if em_on else None, means, cov_full,
                                           g_weights, g_means, g_cov),
        }
        return Frame(scalars=scalars, arrays=arrays, views=views, notes=notes)

    @staticmethod
    def _density_view(state, weights, means, cov, g_weights, g_means, g_cov) -> dict:
        edges = state.hist_edges
        grid = np.linspace(edges[0], edges[-1], GRID_POINTS)
        lines: dict[str, tuple] = {}

        def comps(w, m, c):
            sd = np.sqrt(np.maximum(c[:, 0, 0], 1e-300))
            z = (grid[None, :] - m[:, 0, None]) / sd[:, None]
            return w[:, None] * np.exp(-0.5 * z * z) / (sd[:, None] * math.sqrt(2 * math.pi))

        if weights is not None:
            each = comps(weights, means, cov)
            lines["EM mixture"] = (grid.tolist(), each.sum(0).tolist())
            if len(weights) <= MAX_COMPONENT_LINES:
                for j in range(len(weights)):
                    lines[f"EM {j + 1}"] = (grid.tolist(), each[j].tolist())
        if g_weights is not None:
            lines["gradient mixture"] = (grid.tolist(), comps(g_weights, g_means, g_cov).sum(0).tolist())
        return {"edges": edges.tolist(), "counts": state.hist_density.tolist(), "lines": lines}

    @staticmethod
    def _ellipse_view(state, weights, means, cov, g_weights, g_means, g_cov) -> dict:
        if state.d < 2:
            return {"lines": {}, "points": {}, "note": "1-D data: see the histogram"}
        t = np.linspace(0.0, 2.0 * np.pi, ELLIPSE_POINTS)
        circle = np.stack([np.cos(t), np.sin(t)])            # (2, T)
        lines: dict[str, tuple] = {}

        def add(prefix, m, c):
            for j in range(len(m)):
                c2 = c[j, :2, :2]
                try:
                    chol = np.linalg.cholesky(0.5 * (c2 + c2.T))
                except np.linalg.LinAlgError:
                    continue
                pts = m[j, :2, None] + 2.0 * chol @ circle
                lines[f"{prefix} {j + 1}"] = (pts[0].tolist(), pts[1].tolist())

        if weights is not None:
            add("EM", means, cov)
        if g_weights is not None:
            add("gradient", g_means, g_cov)
        points = {"data": (state.scatter[:, 0].tolist(), state.scatter[:, 1].tolist())}
        return {"lines": lines, "points": points, "xlabel": "x1", "ylabel": "x2"}

    @staticmethod
    def _table_view(state, weights, means, cov, g_weights, g_means, g_cov) -> dict:
        d = state.d
        if d == 1:
            columns = ["", "pi", "mu", "sigma"]
        elif d == 2:
            columns = ["", "pi", "mu", "sigma", "rho"]
        else:
            columns = ["", "pi", "mu", "sigma (diag)"]
        rows = []

        def add(prefix, w, m, c):
            for j in range(len(w)):
                sd = np.sqrt(np.maximum(np.diagonal(c[j]), 0.0))
                row = [f"{prefix}{j + 1}", float(w[j])]
                if d == 1:
                    row += [float(m[j, 0]), float(sd[0])]
                else:
                    row += [[float(v) for v in m[j]], [float(v) for v in sd]]
                    if d == 2:
                        row.append(float(c[j, 0, 1] / max(sd[0] * sd[1], 1e-300)))
                rows.append(row)

        if weights is not None:
            add("EM ", weights, means, cov)
        if g_weights is not None:
            add("grad ", g_weights, g_means, g_cov)
        return {"columns": columns, "rows": rows}

    def work_per_step(self, state: EMState, p: Mapping[str, Any]) -> float:
        return float(state.n)

    def work_unit(self) -> str:
        return "points"

    # -- benchmark ------------------------------------------------------------------------------
    def bench(self, device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
        """Seconds per EM iteration against scikit-learn's GaussianMixture on the same data and
        initial parameters, same run: N=200,000, D=8, K=16, full, float32 and float64 (quick:
        N=20,000); on CUDA also N=10^6 and 10^7 (scikit-learn timed at 10^6 and scaled linearly).
        Iterations alternate between the two sides (scikit-learn's loop body, _e_step + _m_step)
        and the medians are compared, so a load burst on a shared machine hits both.
        The log-likelihoods after the same number of iterations are reported beside."""
        cases = [(20_000 if quick else 200_000, torch.float32), (20_000 if quick else 200_000, torch.float64)]
        if device.type == "cuda" and not quick:
            cases += [(1_000_000, torch.float32), (10_000_000, torch.float32)]
        iters = 3 if quick else 9
        for n, dtype in cases:
            yield self._bench_case(device, n, 8, 16, dtype, iters)

    def _bench_case(self, device: torch.device, n: int, d: int, k: int, dtype: torch.dtype,
                    iters: int) -> dict[str, Any]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        rng = np.random.default_rng(0)
        true_means = rng.normal(0.0, 4.0, (k, d))
        mix = np.eye(d) + rng.normal(0.0, 0.4, (k, d, d))
        labels = rng.integers(0, k, n)
        pts = true_means[labels] + np.einsum("nij,nj->ni", mix[labels], rng.standard_normal((n, d)))
        name = "float64" if dtype == torch.float64 else "float32"
        p = self.default_params()
        p.update(K=k, covariance="full", dtype=name, mode="em", init="kmeans++", reseed=True,
                 dataset="blobs", n_points=n)
        state = self.state_from_points(pts, p, device, seed=0)
        w0, m0, c0, _ = (t.double().cpu().numpy() for t in state.init_params)
        m0 = m0 + state.center

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.em_step(state, p)                     # warm-up (kernel compilation)
        sync()
        # scikit-learn on the same data and initial parameters (on at most 10^6 points, scaled).
        sk_n = min(n, 1_000_000)
        xs = pts[:sk_n].astype(np.float64 if name == "float64" else np.float32)
        gm = GaussianMixture(n_components=k, covariance_type="full", tol=0.0, reg_covar=p["reg_covar"],
                             weights_init=w0, means_init=m0, precisions_init=np.linalg.inv(c0),
                             init_params="random", random_state=0, max_iter=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(xs)                             # initialisation + one iteration, like ours
        # Interleaved, one iteration at a time (scikit-learn's own loop body: _e_step then
        # _m_step), so both sides see the same machine load; medians.
        ours_t, sk_t = [], []
        for _ in range(iters):
            t0 = time.perf_counter()
            self.em_step(state, p)
            sync()
            ours_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            log_prob_norm, log_resp = gm._e_step(xs)
            gm._m_step(xs, log_resp)
            sk_t.append(time.perf_counter() - t0)
        ours = float(np.median(ours_t))
        sk_time = float(np.median(sk_t))
        ours_ll, sk_ll = float(state.log_likelihood), float(log_prob_norm)
        sk_scaled = sk_time * n / sk_n
        row = {
            "case": f"EM iteration N={n} D={d} K={k} full {name}",
            "value": ours,
            "unit": "s/iter",
            "baseline": "scikit-learn GaussianMixture (CPU)" + (
                f", measured at N={sk_n} and scaled x{n // sk_n}" if sk_n != n else ""),
            "baseline_value": sk_scaled,
            "ratio": sk_scaled / ours if ours > 0 else float("inf"),
            "engine": "triton" if state.use_kernel else "torch twin",
            "device": str(device),
        }
        if sk_n == n:
            row["log_likelihood"] = ours_ll
            row["log_likelihood_sklearn"] = sk_ll
        if device.type == "cuda":
            row["peak_device_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        return row


TOPIC = EMTopic()
