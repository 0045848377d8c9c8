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
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .. import gmm
from ..datasets import GENERATORS, MAX_FEATURES, DataError, generate, load_points
from ..device import use_triton
from ..gmm import (INITS, GradientFit, full_covariances, precision_cholesky, project_covariances)
from ..kernels.gmm_estep import COVARIANCE_TYPES, estep
from ..params import Param, ParamError
from ..topic import Frame, Topic, View

DATASETS = tuple(GENERATORS) + ("file",)
MODES = ("em", "gradient", "both")
OPTIMIZERS = ("adam", "lbfgs")
DTYPES = ("float64", "float32")
HIST_BINS = 40
GRID_POINTS = 161
SCATTER_POINTS = 400
ELLIPSE_POINTS = 49
MAX_COMPONENT_LINES = 6


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
    quick = {"n_points": 400}
    window_scalars = ()        # every scalar describes the fit, none a window
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
        weights, means, cov = gmm.initial_parameters(x, k, cov_type, p["init"], p["reg_covar"], gen)
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
        weights, means, cov = gmm.m_step(stats, p["reg_covar"], cov_type)
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


TOPIC = EMTopic()
