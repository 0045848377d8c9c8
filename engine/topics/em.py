"""EM for Gaussian mixtures, fitted live, beside gradient MLE on the same data and model.

p(x) = sum_k pi_k N(x | mu_k, Sigma_k), covariance full | tied | diag | spherical; the numerics
(scikit-learn's estimator, so parity checks are exact) are in ``engine/gmm.py``. One step = one
EM iteration (E-step, M-step) and/or one gradient iteration. ``log_likelihood`` is the mean
log p(x_i) of the step's E-step, under the parameters *before* its M-step (scikit-learn's
``lower_bound_``). A start ends when |change| < tol (``converged``, scikit-learn's rule) or
after ``max_iter``; ``n_init`` starts run one after another and then the state is the best's
(the highest final log-likelihood) and EM rests.

Re-seeding (``reseed``): a component explaining under half a point (N_k < 0.5) or with an
unusable covariance (``gmm.usable``: not positive definite, or too ill-conditioned for the
E-step) restarts on the worst-explained point with the data's covariance and weight 1/K, at
most once per component and start (one collapsing again is left alone, with a note); a floor
reg_covar > 0 keeps small components usable, so they stay, as in scikit-learn. An M-step that
leaves an unusable covariance is not taken: the start stops on the parameters whose
log-likelihood was just reported. So with reg_covar = 0 and re-seeding off the reported
log-likelihood never decreases (every step taken is an exact EM step).

Gradient MLE: the same log-likelihood by Adam or L-BFGS over softmax logits, means and
log-scaled precision Cholesky factors, from the first start; no floor, so a component can
collapse onto a point. The data are centred internally (``center``); reported means are not.
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
from ..gmm import COVARIANCE_TYPES, INIT_ALIASES, INITS, GradientFit, as_full, precision_cholesky
from ..params import Param, ParamError
from ..topic import Frame, Scalar, Topic, View

DATASETS = tuple(GENERATORS) + ("file",)
MODES = ("em", "gradient", "both")
OPTIMIZERS = ("adam", "lbfgs")
DTYPES = ("float64", "float32")
MIN_MASS = 0.5            # N_k below this (in points): the component explains nothing
HIST_BINS = 40
GRID_POINTS = 161
SCATTER_POINTS = 400
ELLIPSE_POINTS = 49
MAX_COMPONENT_LINES = 6
EM_EDITS = ("covariance", "reg_covar", "reseed", "tol", "max_iter")


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
    data_variance: float                 # trace(data_cov) / D (conditioning's scale)
    init_params: tuple                   # (weights, means, covariances, prec_chol) of the first start
    init_generator: torch.Generator      # draws every start's initialisation, one after another
    use_kernel: bool
    dataset: str
    n_init: int = 1
    iteration: int = 0
    em_iterations: int = 0               # over all starts
    # the current start
    init_index: int = 0
    n_iter: int = 0
    log_likelihood: torch.Tensor | None = None
    change: torch.Tensor | None = None
    converged: bool = False
    converged_at: int = -1
    reseeded_once: torch.Tensor | None = None     # (K,) bool: re-seeded in this start
    left_alone: set = field(default_factory=set)  # collapsed again after re-seeding (noted once)
    start_over: bool = False             # the current start ended; the next step begins the next
    finished: bool = False               # every start done: the state is the best start's
    resumed: bool = False                # EM went on after an edit: the current start is the last
    best: dict | None = None             # the best finished start: params, log_likelihood, index
    # cumulative counters (all starts)
    reseeded: int = 0
    singular: int = 0
    divergences: int = 0
    grad: GradientFit | None = None
    grad_iterations: int = 0
    grad_log_likelihood: torch.Tensor | None = None
    grad_divergences: int = 0
    grad_collapsed: set = field(default_factory=set)
    grad_stopped: bool = False
    notes: list = field(default_factory=list)
    hist_edges: np.ndarray | None = None
    hist_density: np.ndarray | None = None
    scatter: np.ndarray | None = None
    data_scale: float = 1.0

    n = property(lambda self: self.x.shape[0], doc="points")
    d = property(lambda self: self.x.shape[1], doc="dimensions")
    k = property(lambda self: self.means.shape[0], doc="components")


# -- the topic ------------------------------------------------------------------------------------
class EMTopic(Topic):
    name = "em"
    title = "EM mixtures"
    order = 50
    summary = "Gaussian mixtures fitted live by EM (Triton E-step), beside gradient MLE"
    step_unit = "EM iteration"
    quick = {"n_points": 400}
    window_scalars = ()        # every scalar describes the fit, none a window
    scalars = (
        Scalar("iteration", "iteration", "", "topic steps since init (EM and/or gradient iterations)"),
        Scalar("n_points", "points", "points", "data points fitted"),
        Scalar("D", "dimensions", "", "data dimensions"),
        Scalar("log_likelihood", "mean log-likelihood", "nats", "EM: mean log p(x_i) of the last E-step, before its M-step"),
        Scalar("log_likelihood_change", "log-likelihood change", "nats", "its change over the last iteration"),
        Scalar("converged", "converged", "", "|change| < tol in this start (scikit-learn's rule)"),
        Scalar("n_iter", "iterations this start", "", "EM iterations in the current start"),
        Scalar("init_index", "start", "", "which of the n_init starts is running (from 0)"),
        Scalar("n_init", "starts", "", "starts in all"),
        Scalar("fit_done", "fit done", "", "every start ended; the state is the best one's"),
        Scalar("bic", "BIC", "", "Bayesian information criterion of the fit (lower is better)"),
        Scalar("aic", "AIC", "", "Akaike information criterion of the fit (lower is better)"),
        Scalar("reseeded", "re-seeded components", "", "components restarted on a poorly explained point"),
        Scalar("singular_covariances", "unusable covariances", "", "M-steps refused for an unusable covariance"),
        Scalar("divergences", "EM divergences", "", "steps whose log-likelihood was not finite"),
        Scalar("best_log_likelihood", "best start's log-likelihood", "nats", "the highest final log-likelihood so far"),
        Scalar("log_likelihood_gradient", "gradient MLE log-likelihood", "nats", "mean log p(x_i) of the gradient fit"),
        Scalar("gradient_divergences", "gradient divergences", "", "gradient steps whose loss was not finite"),
    )
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
              help="full | tied (one shared) | diag | spherical; a live change projects the current fit"),
        Param("reg_covar", "float", 1e-6, lo=0.0, hi=100.0, log=True,
              help="covariance floor added to the diagonal in the M-step (0: EM's monotone guarantee)"),
        Param("init", "choice", "kmeans", choices=INITS + tuple(INIT_ALIASES), live=False,
              help="kmeans (Lloyd) | k-means++ (greedy centres) | random (responsibilities) | "
                   "random_from_data (K points as centres); kmeans++ is an alias of k-means++"),
        Param("init_file", "path", "", live=False,
              help=".npz with weights, means and precisions or covariances (scikit-learn's layouts): "
                   "the start, instead of init"),
        Param("n_init", "int", 1, lo=1, hi=100, live=False,
              help="starts fitted one after another; the best final log-likelihood is kept"),
        Param("max_iter", "int", 100, lo=1, hi=1_000_000, log=True,
              help="EM iterations per start before it ends unconverged"),
        Param("reseed", "bool", True,
              help="re-seed a component that explains no point or whose covariance is unusable "
                   "(once per component and start)"),
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
        p["init"] = INIT_ALIASES.get(p["init"], p["init"])
        k = int(p["K"])
        if p["dataset"] == "file":
            if not p.get("data"):
                raise ParamError("dataset=file needs data=PATH (.npy, .npz or CSV of floats)")
            n = load_points(p["data"]).shape[0]   # raises DataError on bad content
            if n < k:
                raise DataError(f"data: {n} points but K={k} components; need at least K points")
        elif p["n_points"] < k:
            raise ParamError(f"n_points must be >= K={k}, got {p['n_points']}")
        if p.get("init_file"):
            if int(p["n_init"]) != 1:
                raise ParamError(f"init_file gives the one start; n_init must be 1, got {p['n_init']}")
            d = (load_points(p["data"]) if p["dataset"] == "file"
                 else generate(p["dataset"], 2, p["data_seed"])).shape[1]
            gmm.load_init_file(p["init_file"], k, d, p["covariance"])   # one-line ParamError
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
        cov_type, k = p["covariance"], int(p["K"])
        data_cov = torch.as_tensor(np.atleast_2d(np.cov(pts, rowvar=False)), dtype=pdt).to(device)
        data_cov = data_cov + 1e-6 * torch.eye(d, dtype=pdt, device=device) * max(
            float(torch.diagonal(data_cov).mean()), 1e-12)
        gen = torch.Generator().manual_seed(int(seed))
        state = EMState(x=x, center=center, covariance_type=cov_type, weights=None, means=None,
                        covariances=None, prec_chol=None, data_cov=data_cov,
                        data_variance=float(torch.diagonal(data_cov).mean()), init_params=(),
                        init_generator=gen, use_kernel=use_triton(device), dataset=p["dataset"],
                        n_init=int(p["n_init"]))
        self._begin_start(state, p, index=0)
        state.init_params = tuple(t.clone() for t in (state.weights, state.means, state.covariances,
                                                      state.prec_chol))
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
        how = f"init_file {p['init_file']}" if p.get("init_file") else f"init {p['init']} (seed {seed})"
        state.notes.append(f"{how} on {n} points, D={d}, K={k}, {cov_type}"
                           + (f", {state.n_init} starts" if state.n_init > 1 else "")
                           + (", Triton E-step" if state.use_kernel else ", PyTorch E-step"))
        return state

    def _begin_start(self, state: EMState, p: Mapping[str, Any], index: int) -> None:
        """Start ``index``: initial parameters (from init_file, or drawn by ``init`` from the
        state's generator), per-start counters reset."""
        x, k, cov_type = state.x, int(p["K"]), state.covariance_type
        if p.get("init_file"):
            w, m, c = gmm.load_init_file(p["init_file"], k, state.d, cov_type)
            weights, means, cov = (torch.as_tensor(a, dtype=torch.float64, device=x.device)
                                   for a in (w, m - state.center, c))
        else:
            weights, means, cov = gmm.initial_parameters(x, k, cov_type, p["init"], p["reg_covar"],
                                                         state.init_generator)
        prec, ok = precision_cholesky(cov, cov_type)
        if not bool(ok.all()):  # a centre with too few points for a covariance: the data's instead
            fallback = gmm.project_covariances(state.data_cov[None].expand(k, state.d, state.d), "full",
                                               cov_type, weights, state.d)
            cov = fallback if cov_type == "tied" else torch.where(
                ok.view(-1, *([1] * (cov.dim() - 1))), cov, fallback)
            prec, _ = precision_cholesky(cov, cov_type)
        state.weights, state.means, state.covariances, state.prec_chol = weights, means, cov, prec
        state.init_index, state.n_iter = index, 0
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=x.device)
        state.log_likelihood, state.change = nan, nan.clone()
        state.converged, state.converged_at, state.start_over = False, -1, False
        state.reseeded_once = torch.zeros(k, dtype=torch.bool, device=x.device)
        state.left_alone = set()

    def _start_gradient(self, state: EMState, p: Mapping[str, Any]) -> None:
        """The gradient run starts from the first start (init_params follow covariance edits)."""
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
        """One EM iteration of the current start (E-step, M-step, re-seeding), and the decisions
        it leads to: end the start (converged, max_iter, an unusable covariance, a non-finite
        log-likelihood), begin the next, keep the best. One host sync (five flags)."""
        if state.start_over:
            self._begin_start(state, p, state.init_index + 1)
            state.notes.append(f"start {state.init_index + 1}/{state.n_init}: init {p['init']}")
        if state.finished:
            return
        cov_type, k = state.covariance_type, state.k
        stats = gmm.estep(state.x, torch.log(state.weights), state.means, state.prec_chol, cov_type,
                          use_kernel=state.use_kernel)
        ll = stats.log_prob_norm.mean(dtype=torch.float64)
        change = ll - state.log_likelihood
        weights, means, cov = gmm.m_step(stats, p["reg_covar"], cov_type)
        prec, ok = precision_cholesky(cov, cov_type)
        good = gmm.usable(cov, prec, ok, cov_type, state.data_variance)
        collapsed = (stats.nk < MIN_MASS) | ~torch.isfinite(means).all(1)
        if cov_type != "tied":
            collapsed = collapsed | ~good
        fire = collapsed & ~state.reseeded_once if p["reseed"] else torch.zeros_like(collapsed)
        again = collapsed & state.reseeded_once if p["reseed"] else torch.zeros_like(collapsed)
        if p["reseed"]:
            worst = torch.topk(torch.nan_to_num(stats.log_prob_norm, nan=-math.inf), min(k, state.n),
                               largest=False).indices
            order = (torch.cumsum(fire.to(torch.int64), 0) - 1).clamp(0, len(worst) - 1)
            seeds = state.x[worst[order]].to(means.dtype)
            weights, means, cov = gmm.reseed(fire, seeds, weights, means, cov, state.data_cov, cov_type)
            prec, ok = precision_cholesky(cov, cov_type)
            good = gmm.usable(cov, prec, ok, cov_type, state.data_variance)
        flags = torch.stack([t.to(torch.int64) for t in (torch.abs(change) < p["tol"], torch.isfinite(ll),
                                                          fire.any(), again.any(), (~good).sum())]).tolist()
        converged, finite, fired, collapsed_again = (bool(f) for f in flags[:4])
        n_bad = flags[4]
        state.log_likelihood, state.change = ll, change
        state.n_iter += 1
        state.em_iterations += 1
        if fired:
            where = (seeds.double().cpu().numpy() + state.center)
            for j in np.flatnonzero(fire.cpu().numpy()):
                state.notes.append(f"EM: component {j + 1} collapsed; re-seeded at the worst-explained point "
                                   f"x=({', '.join(f'{v:.3g}' for v in where[j][:4])})")
            state.reseeded += int(fire.sum())
            state.reseeded_once |= fire
        if collapsed_again:
            for j in np.flatnonzero(again.cpu().numpy()):
                if j not in state.left_alone:
                    state.left_alone.add(j)
                    state.notes.append(f"EM: component {j + 1} collapsed again after its re-seeding; "
                                       "left alone (no second re-seeding in this start)")
        if not finite:
            state.divergences += 1
            state.notes.append(f"EM: non-finite log-likelihood at iteration {state.n_iter}; not plotted")
            self._end_start(state, p, "stopped: non-finite log-likelihood")
        elif n_bad:
            # not an EM step any more: keep the parameters whose log-likelihood was just reported
            state.singular += n_bad
            state.notes.append(f"EM: {n_bad} covariance(s) singular after the M-step of iteration "
                               f"{state.n_iter} (a component on too few points; reg_covar="
                               f"{p['reg_covar']:g}); the step is not taken and this start stops")
            self._end_start(state, p, "stopped: singular covariance")
        else:
            state.weights, state.means, state.covariances, state.prec_chol = weights, means, cov, prec
            if converged and not fired:
                state.converged, state.converged_at = True, state.n_iter
                self._end_start(state, p, f"converged at iteration {state.n_iter} (|change| < tol={p['tol']:g})")
            elif state.n_iter >= int(p["max_iter"]):
                self._end_start(state, p, f"not converged after max_iter={p['max_iter']} iterations")

    def _end_start(self, state: EMState, p: Mapping[str, Any], how: str) -> None:
        """Keep the start if it is the best so far; after the last, the state becomes the best's."""
        ll = float(state.log_likelihood)
        keys = ("weights", "means", "covariances", "prec_chol", "log_likelihood", "change",
                "converged", "converged_at", "init_index", "n_iter")
        if state.best is None or (math.isfinite(ll) and not ll <= state.best["log_likelihood_value"]):
            state.best = {key: getattr(state, key) for key in keys}
            state.best["log_likelihood_value"] = ll
        label = f"start {state.init_index + 1}/{state.n_init}: " if state.n_init > 1 else ""
        state.notes.append(f"EM {label}{how}; log-likelihood {ll:.6g}")
        if not state.resumed and state.init_index + 1 < state.n_init:
            state.start_over = True
            return
        state.finished = True
        best = state.best
        for key in keys:
            setattr(state, key, best[key])
        if state.n_init > 1 and not state.resumed:
            state.notes.append(f"EM: {state.n_init} starts done; the best is start {best['init_index'] + 1} "
                               f"(log-likelihood {best['log_likelihood_value']:.6g})")

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
        sigma_min = g.min_scales()
        for j in (sigma_min < 1e-3 * state.data_scale).nonzero().flatten().tolist():
            if j not in state.grad_collapsed:
                state.grad_collapsed.add(j)
                state.notes.append(f"gradient: component {j + 1} collapsing onto a point "
                                   f"(scale {float(sigma_min[j]):.2g}): the likelihood is unbounded "
                                   "without a covariance floor")

    def on_edit(self, state: EMState, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        if "covariance" in changed and p["covariance"] != state.covariance_type:
            old, new, d = state.covariance_type, p["covariance"], state.d
            state.covariances = gmm.project_covariances(state.covariances, old, new, state.weights, d)
            state.prec_chol, _ = precision_cholesky(state.covariances, new)
            w, m, c, _ = state.init_params
            c = gmm.project_covariances(c, old, new, w, d)
            state.init_params = (w, m, c, precision_cholesky(c, new)[0])
            state.covariance_type = new
            state.log_likelihood = torch.full_like(state.log_likelihood, float("nan"))
            self._resume(state)
            if state.grad is not None:
                gc = gmm.project_covariances(state.grad.covariances(), old, new, state.grad.weights(), d)
                gp, _ = precision_cholesky(gc, new)
                state.grad = GradientFit(state.x, state.grad.weights(), state.grad.means.detach(), gp, new,
                                         p["gradient_optimizer"], p["lr"])
            state.notes.append(f"covariance {old} -> {new}: the current fit projected, EM continues")
        if state.finished and any(name in EM_EDITS for name in changed):
            self._resume(state)
            state.notes.append(f"EM resumes from the current fit after the edit of {', '.join(changed)}")
        if state.grad is not None and ("gradient_optimizer" in changed or "lr" in changed):
            state.grad.set_optimizer(p["gradient_optimizer"], p["lr"])
        if "mode" in changed and p["mode"] in ("gradient", "both") and state.grad is None:
            self._start_gradient(state, p)

    @staticmethod
    def _resume(state: EMState) -> None:
        """EM goes on from the current parameters as one more stretch of the current start, the
        last (a covariance edit, or an EM edit after the fit ended): no further starts."""
        state.finished = state.start_over = state.converged = False
        state.resumed, state.best, state.n_iter, state.converged_at = True, None, 0, -1

    # -- observe -------------------------------------------------------------------------------
    def observe(self, state: EMState, p: Mapping[str, Any]) -> Frame:
        mode = p["mode"]
        em_on = mode in ("em", "both") or state.em_iterations > 0
        ll, change = torch.stack([state.log_likelihood.double(), state.change.double()]).tolist()
        k, d, cov_type = state.k, state.d, state.covariance_type
        weights = state.weights.double().cpu().numpy()
        means = state.means.double().cpu().numpy() + state.center
        cov_full = as_full(state.covariances, cov_type, k, d).double().cpu().numpy()
        notes = list(state.notes)
        state.notes.clear()
        scalars: dict[str, Any] = {"iteration": state.iteration, "n_points": state.n, "D": d}
        arrays: dict[str, Any] = {}
        if em_on:
            finite = math.isfinite(ll)
            bic, aic = gmm.information_criteria(ll, state.n, k, d, cov_type) if finite else (None, None)
            scalars.update({
                "log_likelihood": ll if finite else None,
                "log_likelihood_change": change if math.isfinite(change) else None,
                "converged": state.converged, "n_iter": state.n_iter,
                "init_index": state.init_index, "n_init": state.n_init, "fit_done": state.finished,
                "bic": bic, "aic": aic,
                "reseeded": state.reseeded, "singular_covariances": state.singular,
                "divergences": state.divergences,
            })
            if state.best is not None and math.isfinite(state.best["log_likelihood_value"]):
                scalars["best_log_likelihood"] = state.best["log_likelihood_value"]
            arrays["weights"] = weights.tolist()
            arrays["means"] = means.tolist()
            arrays["variances"] = np.diagonal(cov_full, axis1=1, axis2=2).tolist()
            arrays["log_det_covariance"] = np.linalg.slogdet(cov_full)[1].tolist()
        fits = [("EM", weights, means, cov_full)] if em_on else []
        if state.grad is not None and mode in ("gradient", "both"):
            gll = None if state.grad_log_likelihood is None else float(state.grad_log_likelihood)
            scalars["log_likelihood_gradient"] = gll if gll is not None and math.isfinite(gll) else None
            scalars["gradient_divergences"] = state.grad_divergences
            g_weights = state.grad.weights().double().cpu().numpy()
            g_means = state.grad.means.detach().double().cpu().numpy() + state.center
            g_cov = as_full(state.grad.covariances(), cov_type, k, d).double().cpu().numpy()
            arrays["weights_gradient"] = g_weights.tolist()
            arrays["means_gradient"] = g_means.tolist()
            arrays["variances_gradient"] = np.diagonal(g_cov, axis1=1, axis2=2).tolist()
            fits.append(("gradient", g_weights, g_means, g_cov))
        views = {"density_1d": self._density_view(state, fits), "ellipses_2d": self._ellipse_view(state, fits),
                 "components": self._table_view(state, fits)}
        return Frame(scalars=scalars, arrays=arrays, views=views, notes=notes)

    @staticmethod
    def _density_view(state: EMState, fits: list) -> dict:
        edges = state.hist_edges
        grid = np.linspace(edges[0], edges[-1], GRID_POINTS)
        lines: dict[str, tuple] = {}
        for name, w, m, c in fits:
            each = gmm.weighted_densities_1d(grid, w, m, c)
            lines[f"{name} mixture"] = (grid.tolist(), each.sum(0).tolist())
            if name == "EM" and len(w) <= MAX_COMPONENT_LINES:
                for j in range(len(w)):
                    lines[f"EM {j + 1}"] = (grid.tolist(), each[j].tolist())
        return {"edges": edges.tolist(), "counts": state.hist_density.tolist(), "lines": lines}

    @staticmethod
    def _ellipse_view(state: EMState, fits: list) -> dict:
        if state.d < 2:
            return {"lines": {}, "points": {}, "note": "1-D data: see the histogram"}
        lines: dict[str, tuple] = {}
        for name, _, m, c in fits:
            for j in range(len(m)):
                pts = gmm.ellipse_2d(m[j, :2], c[j, :2, :2], ELLIPSE_POINTS)
                if pts is not None:
                    lines[f"{name} {j + 1}"] = (pts[0].tolist(), pts[1].tolist())
        points = {"data": (state.scatter[:, 0].tolist(), state.scatter[:, 1].tolist())}
        return {"lines": lines, "points": points, "xlabel": "x1", "ylabel": "x2"}

    @staticmethod
    def _table_view(state: EMState, fits: list) -> dict:
        d = state.d
        columns = ["", "pi", "mu", "sigma"] + (["rho"] if d == 2 else []) if d <= 2 \
            else ["", "pi", "mu", "sigma (diag)"]
        rows = [[f"{'EM' if name == 'EM' else 'grad'} {j + 1}", *summary]
                for name, w, m, c in fits for j, summary in enumerate(gmm.component_summary(w, m, c))]
        return {"columns": columns, "rows": rows}

    def work_per_step(self, state: EMState, p: Mapping[str, Any]) -> float:
        return float(state.n)

    def work_unit(self) -> str:
        return "points"


TOPIC = EMTopic()
