"""Langevin dynamics: ULA and MALA over many independent chains on 1-/2-D targets with exact
log-densities, and annealed Langevin with a score network trained live by denoising score
matching.

Conventions (see ``engine/kernels/langevin.py``): step size eps, proposal
y = x + (eps/2) grad log p(x) + sqrt(eps) z.  ULA takes every proposal (biased for finite eps:
on N(0, s^2) its stationary variance is s^2 / (1 - eps / (4 s^2))); MALA accepts with the
Metropolis-Hastings ratio (exact).  One engine step moves every chain ``substeps`` times (default
once) in one call; with compile=on (CPU) those substeps are one torch.compile'd graph, which is
what makes 10^3 chains cheap: an eager step of 10^3 chains is dozens of tiny ops, each paying
PyTorch's dispatch (see BENCHMARKS.md).  Rates (chain_steps_per_s, acceptance) count Langevin
steps, not engine steps; the ESS trace holds one row per Langevin step.

score=learned: a small MLP s_theta(x, sigma) = f_theta(x, log sigma) / sigma is trained by
denoising score matching on fresh exact samples, loss E |sigma s_theta(x + sigma z, sigma) + z|^2
(weight sigma^2) over a geometric ladder sigma_max -> sigma_min = 0.05 of ``levels`` levels.
Each step does ``train_iters`` Adam updates and one annealed-Langevin step of the chains:
x += (a/2) s_theta(x, sigma_l) + sqrt(a) z with a = step_size * sigma_l^2 (Song & Ermon's
a ∝ sigma^2), ``steps_per_level`` steps per level; a pass starts from N(centre, sigma_max^2 I)
and ends at sigma_min, where ``divergence_final`` is measured; then the next pass begins.
A learned score has no log-density, so MALA is refused with score=learned.

Chains that go non-finite (ULA with too large a step) are never re-seeded: they stay where
they went, are counted in ``diverged_chains`` and reported in a note, and every statistic
includes them (the KS statistic counts them at infinity, the sliced W1 and the variance ratio
become infinite, the histograms lose their mass). In learned mode each annealing pass starts
every chain afresh, and the chains that diverged in earlier passes stay counted.

Frame scalars (the JSONL schema):
    divergence        KS statistic vs the exact CDF (1-D) or sliced Wasserstein-1 vs exact
                      samples over 32 directions (2-D), on the first 2048 chains
    divergence_floor  its value for exact samples (the noise floor of the estimate)
    divergence_final  learned mode: the divergence at the end of the last annealing pass
    acceptance        MALA: accepted / proposed since the last frame
    variance_ratio    trace(cov of chains) / trace(exact cov): ULA's bias shows here
    ess_per_chain     multi-chain ESS (Stan's estimator, Geyer's initial monotone sequence) of
                      x[0] over the last ``TRACE_STEPS`` steps of up to 128 tracked chains, / chains
    ess_per_s         ess_per_chain / window * chain_steps_per_s (effective samples per second)
    chain_steps_per_s chains x steps per second since the last frame
    diverged_chains   chains whose position, log-density or score is not finite (learned mode:
                      plus those that diverged in finished passes); cumulative since init
    loss, sigma       learned mode: DSM loss (exponential moving average over Adam updates,
                      decay LOSS_DECAY, kept on the device) and the current noise level
Frame arrays: mean (D,), covariance (D x D), mean_exact, covariance_exact, and with ULA on a
single Gaussian covariance_ula: ULA's exact stationary covariance Sigma (I - (eps/4) Sigma^-1)^-1.
Moments use up to the first 2^20 chains (chains are exchangeable).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..diagnostics import KS_FLOOR, ks_statistic, multichain_ess, sliced_w1, sorted_projections
from ..exact.targets import NAMES, Target, make_target
from ..kernels import langevin as kern
from ..models.score import ScoreNet, dsm_loss
from ..params import Param, ParamError
from ..topic import Frame, Scalar, Topic, View

TRACE_STEPS = 1000        # device-side history of the tracked statistic x[0]
TRACE_CHAINS = 128        # chains tracked for the ESS
DIVERGENCE_CHAINS = 2048  # chains compared with the exact target per frame
MOMENT_CHAINS = 1 << 20
HEAT_BINS = (40, 20)      # (x bins, y bins) of the density heatmaps
HIST_BINS = 40
SIGMA_MIN = 0.05
TRAIN_BATCH = 512
LOSS_DECAY = 0.99         # per Adam update, the DSM loss's moving average
FUSED_MAX_DRAWS = 1 << 24  # compile=on: chains x substeps (the noise drawn up front: 128 MiB in 2-D)


# ------------------------------------------------------------------------------------------
# state
# ------------------------------------------------------------------------------------------
@dataclass
class LangevinState:
    target: Target
    packed: kern.PackedTarget
    device: torch.device
    seed: int
    x: torch.Tensor                 # float32 (D, N)
    logp: torch.Tensor              # float32 (N,)
    grad: torch.Tensor              # float32 (D, N)
    generator: torch.Generator      # the twin's / learned mode's stream, on the device
    host_generator: torch.Generator  # exact samples (references, training batches), CPU
    accept_count: torch.Tensor      # int64 (1,)
    trace: torch.Tensor             # float32 (TRACE_STEPS, M)
    reference: torch.Tensor         # exact samples (D, n_ref) for the divergence
    reference_sorted: torch.Tensor | None  # 2-D: their sorted projections (sliced W1)
    divergence_floor: float
    mean_exact: np.ndarray
    covariance_exact: np.ndarray
    counter: int = 0
    steps: int = 0
    trace_row: int = 0
    trace_filled: int = 0
    diverged_passes: int = 0        # learned mode: chains that diverged in finished passes
    diverged_seen: int = 0          # the count the last note reported (notes only)
    notes: list = field(default_factory=list)
    sampler_steps: int = 0          # Langevin steps of every chain (substeps per engine step)
    obs_steps: int = 0
    obs_time: float = 0.0
    obs_accepts: int = 0
    acceptance: float | None = None
    chain_steps_per_s: float | None = None
    exact_views: dict = field(default_factory=dict)
    # learned mode
    net: ScoreNet | None = None
    optimizer: torch.optim.Optimizer | None = None
    sigmas: torch.Tensor | None = None
    pass_step: int = 0
    passes: int = 0
    loss_ema: torch.Tensor | None = None    # device scalar, updated per Adam update in step
    divergence_final: float | None = None


def _mala_refused(method: str, score: str, changed: Sequence[str]) -> None:
    if method == "mala" and score == "learned":
        if "score" in changed and "method" not in changed:
            raise ParamError("score=learned needs method=ula: a learned score has no log-density "
                             "for MALA's accept step")
        raise ParamError("method=mala needs score=exact: a learned score has no log-density "
                         "for the accept step (use method=ula)")


class LangevinTopic(Topic):
    name = "langevin"
    title = "Langevin"
    order = 60
    summary = "ULA vs MALA on 1-/2-D targets; annealed Langevin with a learned score"
    step_unit = "Langevin step of every chain"
    quick = {"chains": 1000, "hidden": 16, "levels": 4, "steps_per_level": 4, "compile": "off"}
    window_scalars = ("acceptance", "chain_steps_per_s", "ess_per_s")
    every = 100   # a frame (ESS, KS, sliced W1, the density grids) ~ 7 steps at the defaults: ~6% (BENCHMARKS.md)
    scalars = (
        Scalar("divergence", "divergence from exact", "", "KS statistic (1-D) or sliced Wasserstein-1 (2-D) of the chains vs the target"),
        Scalar("divergence_floor", "noise floor", "", "the divergence of as many exact samples: the estimate's noise floor"),
        Scalar("divergence_name", "divergence measure", "", "which one: ks or sliced_w1"),
        Scalar("divergence_final", "last-pass divergence", "", "learned score: at the end of the last annealing pass"),
        Scalar("variance_ratio", "variance ratio", "", "trace cov(chains) / trace cov(target); ULA's bias shows here"),
        Scalar("diverged_chains", "diverged chains", "chains", "chains whose position, log-density or score is not finite"),
        Scalar("chain_steps_per_s", "chain steps", "/s", "chains x steps per second since the last frame"),
        Scalar("acceptance", "acceptance", "", "MALA: accepted / proposed since the last frame"),
        Scalar("ess_per_chain", "ESS per chain", "", "multi-chain effective sample size of x[0] (Stan's estimator) / chains"),
        Scalar("ess_window", "ESS window", "steps", "steps the ESS is computed over"),
        Scalar("ess_per_s", "ESS per second", "/s", "effective samples per second"),
        Scalar("loss", "score-matching loss", "", "learned score: denoising score-matching loss (moving average)"),
        Scalar("sigma", "noise level", "", "learned score: the current annealing noise level"),
        Scalar("passes", "annealing passes", "", "learned score: annealing passes finished"),
    )
    params = (
        Param("target", "choice", "gaussian", choices=NAMES, live=False,
              help="bimodal (1-D, 0.5 N(-3,1) + 0.5 N(3,1)) | bimodal2d | banana | ring | "
                   "gaussian (correlated 2-D) | modes (8 separated modes)"),
        Param("method", "choice", "mala", choices=("ula", "mala"),
              help="ula: unadjusted (biased for finite step) | mala: Metropolis-adjusted (exact)"),
        Param("step_size", "float", 0.2, lo=1e-4, hi=20.0, log=True,
              help="eps: y = x + (eps/2) grad log p + sqrt(eps) z (learned: eps sigma^2)"),
        Param("chains", "int", 10000, lo=1, hi=100_000_000, log=True, live=False,
              help="independent chains (millions on a GPU)"),
        Param("init", "choice", "uniform", choices=("uniform", "exact", "mode"), live=False,
              help="exact score: chains start uniform over the box | from exact samples | all at one mode "
                   "(learned: every annealing pass starts from N(centre, sigma_max^2))"),
        Param("score", "choice", "exact", choices=("exact", "learned"), live=False,
              help="exact: closed-form score | learned: MLP trained by denoising score matching"),
        Param("levels", "int", 10, lo=2, hi=50, live=False,
              help="learned: noise levels sigma_max -> 0.05 (geometric)"),
        Param("steps_per_level", "int", 20, lo=1, hi=10_000, log=True,
              help="learned: annealed Langevin steps per noise level"),
        Param("train_iters", "int", 2, lo=0, hi=64,
              help="learned: Adam updates of the score network per step (0 freezes it)"),
        Param("lr", "float", 2e-3, lo=1e-5, hi=1e-1, log=True, help="learned: Adam learning rate"),
        Param("hidden", "int", 64, lo=8, hi=1024, log=True, live=False,
              help="learned: width of the score network's two hidden layers"),
        Param("substeps", "int", 1, lo=1, hi=256, log=True, live=False,
              help="exact score: Langevin steps of every chain per engine step, run in one call "
                   "(with compile=on: one compiled graph)"),
        Param("compile", "choice", "off", choices=("off", "on"), live=False,
              help="exact score, CPU: on runs the substeps as one torch.compile'd graph (the first "
                   "step compiles, tens of seconds; a different noise stream from off) | CUDA: Triton either way"),
    )
    views = (
        View("heatmap", "chains (2-D density; 1-D: x over recent steps)", source="density_chains"),
        View("heatmap", "exact density", source="density_exact"),
        View("histogram", "marginal x (chains, exact line)", source="marginal_x"),
        View("histogram", "marginal y (1-D: tracked chains pooled over time)", source="marginal_y"),
        View("trace", "divergence from exact", series=("divergence", "divergence_final"),
             reference=("divergence_floor",), options={"logy": True}),
        View("trace", "acceptance, variance ratio", series=("acceptance", "variance_ratio")),
        View("trace", "ESS per chain", series=("ess_per_chain",)),
        View("trace", "training loss (learned score)", series=("loss",),
             when=lambda p: p["score"] == "learned"),
        View("table", "moments vs exact", source="moments"),
    )

    # -- params ------------------------------------------------------------------------------
    def check(self, p: dict[str, Any], changed: Sequence[str] = ()) -> dict[str, Any]:
        _mala_refused(p["method"], p["score"], changed)
        if p["compile"] == "on" and int(p["chains"]) * int(p["substeps"]) > FUSED_MAX_DRAWS:
            raise ParamError(f"compile=on draws the noise of all substeps at once: chains x substeps "
                             f"must be at most {FUSED_MAX_DRAWS:,} (use compile=off, or fewer substeps)")
        return p

    def work_per_step(self, state: LangevinState, p: Mapping[str, Any]) -> float:
        return float(state.x.shape[1]) * (int(p["substeps"]) if state.net is None else 1)

    def work_unit(self) -> str:
        return "chain-steps"

    # -- init ----------------------------------------------------------------------------------
    def init(self, p: Mapping[str, Any], device: torch.device, seed: int) -> LangevinState:
        target = make_target(p["target"])
        n, d = int(p["chains"]), target.dim
        host = torch.Generator().manual_seed(seed)
        gen = torch.Generator(device=device).manual_seed(seed + 1)
        packed = kern.pack_target(target, device)
        n_ref = min(DIVERGENCE_CHAINS, n)
        reference = target.sample(n_ref, host, device).T.contiguous()
        if d == 1:
            floor, ref_sorted = KS_FLOOR / math.sqrt(n_ref), None
        else:
            ref_sorted = sorted_projections(reference)
            other = target.sample(n_ref, host, device).T.contiguous()
            floor = sliced_w1(other, reference, b_sorted=ref_sorted)
        m = min(n, TRACE_CHAINS)
        state = LangevinState(
            target=target, packed=packed, device=device, seed=seed,
            x=torch.empty(d, n, device=device), logp=torch.empty(n, device=device),
            grad=torch.empty(d, n, device=device), generator=gen, host_generator=host,
            accept_count=torch.zeros(1, dtype=torch.int64, device=device),
            trace=torch.zeros(TRACE_STEPS, m, device=device),
            reference=reference, reference_sorted=ref_sorted, divergence_floor=floor,
            mean_exact=target.mean(), covariance_exact=target.covariance())
        if p["score"] == "learned":
            state.net = ScoreNet(d, int(p["hidden"])).to(device)
            state.optimizer = torch.optim.Adam(state.net.parameters(), lr=float(p["lr"]))
            state.sigmas = torch.exp(torch.linspace(math.log(target.sigma_max), math.log(SIGMA_MIN),
                                                    int(p["levels"]))).to(device)
            self._start_pass(state)
        else:
            self._initial_positions(state, p["init"])
        kern.refresh(state.x, state.logp, state.grad, packed)
        state.exact_views = self._exact_views(target)
        state.obs_time = time.perf_counter()
        return state

    def _initial_positions(self, state: LangevinState, how: str) -> None:
        t, n = state.target, state.x.shape[1]
        if how == "exact":
            state.x.copy_(t.sample(n, state.host_generator, state.device).T)
        elif how == "mode":
            state.x.copy_(torch.tensor(t.start, dtype=torch.float32, device=state.device)[:, None].expand(-1, n))
        else:
            lo = torch.tensor(t.box[0::2], dtype=torch.float32, device=state.device)[:, None]
            hi = torch.tensor(t.box[1::2], dtype=torch.float32, device=state.device)[:, None]
            u = torch.rand(state.x.shape, generator=state.generator, device=state.device)
            state.x.copy_(lo + (hi - lo) * u)

    def _box_centre(self, state: LangevinState) -> torch.Tensor:
        b = state.target.box
        return torch.tensor([(b[2 * i] + b[2 * i + 1]) / 2 for i in range(state.target.dim)],
                            dtype=torch.float32, device=state.device)[:, None]

    def _start_pass(self, state: LangevinState) -> None:
        z = torch.randn(state.x.shape, generator=state.generator, device=state.device)
        state.x.copy_(self._box_centre(state) + float(state.sigmas[0]) * z)
        state.pass_step = 0

    # -- step ----------------------------------------------------------------------------------
    def step(self, state: LangevinState, p: Mapping[str, Any]) -> None:
        if state.net is not None:
            self._learned_step(state, p)
            state.sampler_steps += 1
        else:
            k = int(p["substeps"])
            kern.langevin_steps(state.x, state.logp, state.grad, float(p["step_size"]), state.packed,
                                p["method"] == "mala", k, seed=state.seed, counter=state.counter,
                                accept_count=state.accept_count, trace=state.trace,
                                trace_row=state.trace_row, generator=state.generator,
                                fused=p["compile"] == "on")
            state.counter += k
            state.trace_row = (state.trace_row + k) % TRACE_STEPS
            state.trace_filled = min(state.trace_filled + k, TRACE_STEPS)
            state.sampler_steps += k
        state.steps += 1

    def _learned_step(self, state: LangevinState, p: Mapping[str, Any]) -> None:
        net, opt, t = state.net, state.optimizer, state.target
        levels = state.sigmas.numel()
        for group in opt.param_groups:
            group["lr"] = float(p["lr"])
        for _ in range(int(p["train_iters"])):
            x = t.sample(TRAIN_BATCH, state.host_generator, state.device)
            idx = torch.randint(0, levels, (TRAIN_BATCH,), generator=state.generator, device=state.device)
            sigma = state.sigmas[idx][:, None]
            z = torch.randn(x.shape, generator=state.generator, device=state.device)
            loss = dsm_loss(net, x, sigma, z)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if state.loss_ema is None:
                state.loss_ema = loss.detach().clone()
            else:
                state.loss_ema.mul_(LOSS_DECAY).add_(loss.detach(), alpha=1.0 - LOSS_DECAY)
        per_level = int(p["steps_per_level"])
        level = min(state.pass_step // per_level, levels - 1)
        sigma = float(state.sigmas[level])
        alpha = float(p["step_size"]) * sigma * sigma
        with torch.no_grad():
            n = state.x.shape[1]
            for s in range(0, n, kern.TWIN_CHUNK):
                e = min(n, s + kern.TWIN_CHUNK)
                xs = state.x[:, s:e]
                sig = torch.full((e - s, 1), sigma, device=state.device)
                score = net(xs.T, sig).T
                z = torch.randn(xs.shape, generator=state.generator, device=state.device)
                xs.add_(score, alpha=0.5 * alpha).add_(z, alpha=math.sqrt(alpha))
        state.trace[state.trace_row].copy_(state.x[0, :state.trace.shape[1]])
        state.pass_step += 1
        state.trace_row = (state.trace_row + 1) % TRACE_STEPS
        state.trace_filled = min(state.trace_filled + 1, TRACE_STEPS)
        if state.pass_step >= per_level * levels:
            state.divergence_final = self._divergence(state)
            state.passes += 1
            lost = int(self._diverged_now(state))
            state.diverged_passes += lost
            state.notes.append(f"annealing pass {state.passes} done: divergence {state.divergence_final:.4g} "
                               f"(floor {state.divergence_floor:.3g})"
                               + (f"; {lost} chain(s) diverged in it" if lost else ""))
            self._start_pass(state)

    @staticmethod
    def _diverged_now(state: LangevinState) -> torch.Tensor:
        """Chains whose position (exact score: or log-density, or score) is not finite (device)."""
        ok = torch.isfinite(state.x).all(0)
        if state.net is None:
            ok = ok & torch.isfinite(state.logp) & torch.isfinite(state.grad).all(0)
        return (~ok).sum()

    def on_edit(self, state: LangevinState, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        if "method" in changed or "step_size" in changed:
            # the chains now follow a different kernel: restart the ESS window and acceptance
            state.trace_filled = 0
            state.obs_accepts = int(state.accept_count)
            state.obs_steps = state.sampler_steps

    # -- observe -------------------------------------------------------------------------------
    def _divergence(self, state: LangevinState) -> float:
        n_ref = state.reference.shape[1]
        sub = state.x[:, :n_ref]
        if state.target.dim == 1:
            return ks_statistic(sub[0], state.target.cdf)
        return sliced_w1(sub, state.reference, b_sorted=state.reference_sorted)

    def observe(self, state: LangevinState, p: Mapping[str, Any]) -> Frame:
        t = state.target
        now = time.perf_counter()
        n, d = state.x.shape[1], t.dim
        if state.sampler_steps > state.obs_steps:
            dt = now - state.obs_time
            if dt > 0:
                state.chain_steps_per_s = n * (state.sampler_steps - state.obs_steps) / dt
            if state.net is None and p["method"] == "mala":
                total = int(state.accept_count)
                state.acceptance = (total - state.obs_accepts) / (n * (state.sampler_steps - state.obs_steps))
                state.obs_accepts = total
        state.obs_steps, state.obs_time = state.sampler_steps, now
        xs = state.x[:, :MOMENT_CHAINS].to(torch.float64)
        mean = xs.mean(1)
        cov = (xs - mean[:, None]) @ (xs - mean[:, None]).T / max(xs.shape[1] - 1, 1)
        mean_exact, cov_exact = state.mean_exact, state.covariance_exact
        diverged_now = int(self._diverged_now(state))
        diverged = state.diverged_passes + diverged_now
        moments_finite = bool(torch.isfinite(xs).all())
        scalars: dict[str, Any] = {
            "divergence": self._divergence(state),
            "divergence_floor": state.divergence_floor,
            "divergence_name": "ks" if d == 1 else "sliced_w1",
            # a chain at infinity makes the chains' variance infinite: said, not filtered out
            "variance_ratio": float(torch.diagonal(cov).sum()) / float(np.trace(cov_exact))
            if moments_finite else math.inf,
            "diverged_chains": diverged,
        }
        if diverged > state.diverged_seen:
            state.notes.append(
                f"{diverged} of {n} chains diverged (non-finite) by step {state.steps}"
                + (f": step_size {float(p['step_size']):.3g} too large for {p['method']}" if state.net is None else "")
                + "; they stay in every statistic (divergence, variance_ratio, histograms)")
            state.diverged_seen = diverged
        infinite = [name for name in ("divergence", "variance_ratio") if not math.isfinite(scalars[name])]
        if infinite and diverged:
            state.notes.append(f"{' and '.join(infinite)} infinite: {diverged} of {n} chains diverged")
        if state.chain_steps_per_s is not None:
            scalars["chain_steps_per_s"] = state.chain_steps_per_s
        # every series a view names is a scalar of every frame: None where it does not apply
        scalars.update(acceptance=None, ess_per_chain=None, ess_window=None, ess_per_s=None,
                       loss=None, divergence_final=None)
        if state.net is None:
            if p["method"] == "mala":
                scalars["acceptance"] = state.acceptance
            w = state.trace_filled
            if w >= 32:
                window = torch.roll(state.trace, -state.trace_row, 0)[TRACE_STEPS - w:]
                ess = multichain_ess(window)      # NaN (None) when a tracked chain diverged
                if math.isfinite(ess):
                    scalars["ess_per_chain"] = ess  # per chain, in the window of w steps
                    scalars["ess_window"] = w
                    if state.chain_steps_per_s:
                        scalars["ess_per_s"] = ess / w * state.chain_steps_per_s
        else:
            if state.loss_ema is not None:
                scalars["loss"] = float(state.loss_ema)
            per_level = int(p["steps_per_level"])
            level = min(state.pass_step // per_level, state.sigmas.numel() - 1)
            scalars["sigma"] = float(state.sigmas[level])
            scalars["passes"] = state.passes
            scalars["divergence_final"] = state.divergence_final
        arrays = {"mean": mean.tolist(), "covariance": cov.tolist(),
                  "mean_exact": mean_exact.tolist(), "covariance_exact": cov_exact.tolist()}
        cov_ula = t.ula_covariance(float(p["step_size"])) \
            if state.net is None and p["method"] == "ula" else None
        if cov_ula is not None:
            arrays["covariance_ula"] = cov_ula.tolist()
        frame = Frame(scalars=scalars, arrays=arrays,
                      views=self._views(state, mean.cpu().numpy(), cov.cpu().numpy(), cov_ula),
                      notes=state.notes)
        state.notes = []
        return frame

    # -- views ---------------------------------------------------------------------------------
    def _exact_views(self, t: Target) -> dict[str, Any]:
        nx, ny = HEAT_BINS
        x0, x1 = t.box[0], t.box[1]
        xc = x0 + (np.arange(nx) + 0.5) * (x1 - x0) / nx
        grid = np.linspace(x0, x1, 200)
        out: dict[str, Any] = {"line_x": (grid.tolist(), t.marginal(0, grid).tolist())}
        if t.dim == 2:
            y0, y1 = t.box[2], t.box[3]
            yc = y1 - (np.arange(ny) + 0.5) * (y1 - y0) / ny          # rows top to bottom
            pts = np.stack(np.meshgrid(xc, yc, indexing="xy"), axis=-1).reshape(-1, 2)
            out["density"] = {"z": t.density(pts).reshape(ny, nx).tolist(), "extent": (x0, x1, y0, y1)}
            gy = np.linspace(y0, y1, 200)
            out["line_y"] = (gy.tolist(), t.marginal(1, gy).tolist())
        else:
            row = t.density(xc[:, None]).tolist()
            out["density"] = {"z": [row] * ny, "extent": (x0, x1, -float(TRACE_STEPS), 0.0)}
            out["line_y"] = out["line_x"]
        return out

    def _views(self, state: LangevinState, mean: np.ndarray, cov: np.ndarray,
               cov_ula: np.ndarray | None) -> dict[str, Any]:
        t = state.target
        nx, ny = HEAT_BINS
        ex = state.exact_views
        x0, x1 = t.box[0], t.box[1]
        sub = state.x[:, :200_000]
        views: dict[str, Any] = {"density_exact": ex["density"]}
        views["marginal_x"] = _density_histogram(sub[0], x0, x1, HIST_BINS, {"exact": ex["line_x"]})
        if t.dim == 2:
            y0, y1 = t.box[2], t.box[3]
            ix = ((sub[0] - x0) * (nx / (x1 - x0))).floor().long()
            iy = ((y1 - sub[1]) * (ny / (y1 - y0))).floor().long()          # row 0 at the top
            ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
            flat = torch.where(ok, iy * nx + ix, nx * ny)
            counts = torch.bincount(flat, minlength=nx * ny + 1)[: nx * ny].to(torch.float64)
            area = (x1 - x0) * (y1 - y0) / (nx * ny)
            z = (counts / (sub.shape[1] * area)).view(ny, nx)
            views["density_chains"] = {"z": z.tolist(), "extent": (x0, x1, y0, y1)}
            views["marginal_y"] = _density_histogram(sub[1], y0, y1, HIST_BINS, {"exact": ex["line_y"]})
        else:
            w = max(state.trace_filled, 1)
            window = torch.roll(state.trace, -state.trace_row, 0)[TRACE_STEPS - w:]   # oldest first
            rows = []
            for chunk in torch.tensor_split(window.flip(0), ny):                     # newest row on top
                rows.append(_density_counts(chunk.reshape(-1), x0, x1, nx))
            views["density_chains"] = {"z": rows, "extent": (x0, x1, -float(w), 0.0)}
            views["marginal_y"] = _density_histogram(window.reshape(-1), x0, x1, HIST_BINS,
                                                     {"exact": ex["line_x"]})
        # one colour scale for the two densities, so equal colours mean equal densities
        hi = max(_finite_max(views["density_chains"]["z"]), _finite_max(ex["density"]["z"]))
        if hi > 0:
            views["density_chains"]["scale"] = (0.0, hi)
            views["density_exact"] = {**ex["density"], "scale": (0.0, hi)}
        names = ["x", "y"][: t.dim]
        rows = [[f"mean {names[i]}", float(mean[i]), float(state.mean_exact[i]),
                 float(state.mean_exact[i]) if cov_ula is not None else None] for i in range(t.dim)]
        ce = state.covariance_exact
        for i in range(t.dim):
            for j in range(i, t.dim):
                rows.append([f"cov {names[i]}{names[j]}", float(cov[i, j]), float(ce[i, j]),
                             float(cov_ula[i, j]) if cov_ula is not None else None])
        views["moments"] = {"columns": ["", "chains", "exact", "ULA limit"], "rows": rows}
        return views


def _finite_max(rows) -> float:
    z = np.asarray(rows, dtype=float)
    z = z[np.isfinite(z)]
    return float(z.max()) if z.size else 0.0


def _density_counts(values: torch.Tensor, lo: float, hi: float, bins: int) -> list[float]:
    ok = torch.isfinite(values) & (values >= lo) & (values < hi)
    idx = torch.where(ok, ((values - lo) * (bins / (hi - lo))).floor().long().clamp(0, bins - 1), bins)
    counts = torch.bincount(idx, minlength=bins + 1)[:bins].to(torch.float64)
    return (counts / max(values.numel(), 1) / ((hi - lo) / bins)).tolist()


def _density_histogram(values: torch.Tensor, lo: float, hi: float, bins: int,
                       lines: dict[str, Any]) -> dict[str, Any]:
    """Histogram whose ``counts`` are densities (fraction per unit length), so the exact density
    drawn from ``lines`` sits on the same axis."""
    edges = np.linspace(lo, hi, bins + 1).tolist()
    return {"edges": edges, "counts": _density_counts(values, lo, hi, bins), "lines": lines}


TOPIC = LangevinTopic()
