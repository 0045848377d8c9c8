"""K-FAC natural-gradient training, live: true vs empirical Fisher vs SGD and Adam, beside
the exact natural gradient it approximates.

Tasks (engine/models/supervised.py; the train/validation split is seeded by the run's
seed): ``digits_autoencoder`` (Bernoulli pixels), ``digits_mlp`` (10 classes, reports
validation accuracy), ``teacher_student`` (Gaussian regression).

``optimizer=compare`` trains the same initial network with K-FAC (true Fisher), K-FAC
(empirical Fisher), SGD with momentum, Adam and — on models of at most 20,000 parameters
— the exact natural gradient ``ngd`` (engine/optim/ngd.py): every topic step is one
optimizer step of each on the same batch. Frame names carry the run: ``loss_kfac_true``, ``loss_kfac_empirical``,
``loss_sgd``, ``loss_adam`` (the mean training loss of the batches since the last
frame), ``val_loss_*``, ``val_accuracy_*`` (digits_mlp), ``step_time_*`` (ms per
step, the mean over the steps since the last frame), and per K-FAC run ``damping_*``,
``kl_*`` (the predicted KL of the last update in the kl_clip convention, see
engine.optim.kfac) and ``skipped_*``. A single-optimizer run uses the same names
(optimizer=kfac, fisher=true writes ``loss_kfac_true``). A run whose batch loss turns
non-finite is stopped in the step that saw it and reported (``diverged_*`` true and a
note); its loss is then None, never plotted as NaN. Every series a view names is in every
frame, None where it does not apply (accuracy of a regression, a run that is absent).

Per run and step, ``kl_step_*`` is the KL actually moved: between the model's predictive
distributions before and after the step on the step's batch (per example and output
element), beside ``kl_budget`` ε of ``ngd``. Every ``t_inv`` steps (at steps 1, 1 + t_inv,
…), each K-FAC run's undamped A ⊗ G is compared with the exact Fisher of the first
``fisher_batch`` examples of the step's batch (engine/optim/fisher.py), per layer block:
``fisher_error_<run>_<l>`` = ‖A ⊗ G − F_l‖ / ‖F_l‖ and ``fisher_error_<run>`` over all
blocks; the heatmap shows |F_l| beside |A ⊗ G| on the chosen layer's first units.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..models.supervised import LIKELIHOOD, TASKS, WIDTHS, Data, build_model, evaluate, load_data, \
    parameter_count
from ..optim.fisher import block_heatmaps, kfac_block_error, layer_jacobians
from ..optim.kfac import KFAC
from ..optim.likelihoods import get_likelihood
from ..optim.ngd import NaturalGradient
from ..optim.training import DEFAULTS, apply_params, make_optimizer, train_step
from ..params import Param, ParamError, int_list
from ..topic import Frame, Scalar, Topic, View, finite_or_none

OPTIMIZERS = ("kfac", "sgd", "adam", "ngd", "compare")
RUN_NAMES = ("kfac_true", "kfac_empirical", "sgd", "adam", "ngd")
NGD_MAX_PARAMS = 20_000         # compare runs the exact natural gradient up to this size
D = DEFAULTS


def _widths(text: str) -> tuple[int, ...]:
    return int_list(text, lo=1, hi=4096)


@dataclass
class Run:
    """One optimizer's training run and the window of per-step figures since the last frame."""

    name: str
    model: nn.Module
    opt: torch.optim.Optimizer
    loss_sum: torch.Tensor              # Σ of the window's batch losses (on the device)
    count: int = 0
    time_sum: float = 0.0
    time_count: int = 0
    step_ms: float = float("nan")       # the last window's mean step time
    diverged: bool = False              # decided in step: the run stopped at a non-finite loss
    last_loss: float = float("nan")     # the last window's mean batch loss
    kl_step: torch.Tensor | None = None  # KL moved by the last step (on the device)
    fisher_errors: list[float] = field(default_factory=list)   # per layer block, every t_inv steps
    fisher_error: float = float("nan")  # over all blocks
    cuda_events: list = field(default_factory=list)

    @property
    def kfac(self) -> bool:
        return isinstance(self.opt, KFAC)


@dataclass
class State:
    task: str
    likelihood: str
    data: Data
    runs: list[Run]
    gen: torch.Generator
    device: torch.device
    steps: int = 0
    notes: list[str] = field(default_factory=list)
    fisher_blocks: dict[str, Any] | None = None     # the heatmap's data, every t_inv steps


def run_names(p: Mapping[str, Any]) -> tuple[str, ...]:
    if p["optimizer"] == "compare":
        small = parameter_count(p["task"], p["widths"]) <= NGD_MAX_PARAMS
        return RUN_NAMES if small else RUN_NAMES[:-1]
    if p["optimizer"] == "kfac":
        return (f"kfac_{p['fisher']}",)
    return (p["optimizer"],)


class KFACTopic(Topic):
    name = "kfac"
    title = "K-FAC"
    order = 70
    summary = "natural-gradient training: K-FAC (true vs empirical Fisher) vs SGD, Adam and the exact natural gradient"
    step_unit = "minibatch step"
    params = (
        Param("task", "choice", "digits_autoencoder", choices=TASKS, live=False,
              help="digits autoencoder (BCE), digits MLP classifier, or teacher-student regression"),
        Param("optimizer", "choice", "compare", choices=OPTIMIZERS, live=False,
              help="one optimizer, or compare: K-FAC true + empirical, SGD, Adam (and ngd up to "
                   "20,000 parameters) from the same weights"),
        Param("widths", "text", WIDTHS, parse_text=_widths, live=False,
              help="hidden widths, e.g. 128,64,16 (the autoencoder mirrors them)"),
        Param("lr", "float", D["lr"], lo=1e-6, hi=100.0, log=True,
              help="K-FAC learning rate (ignored by rescale=quadratic)"),
        Param("lr_sgd", "float", D["lr_sgd"], lo=1e-6, hi=100.0, log=True, help="SGD learning rate"),
        Param("lr_adam", "float", D["lr_adam"], lo=1e-7, hi=1.0, log=True, help="Adam learning rate"),
        Param("momentum", "float", D["momentum"], lo=0.0, hi=0.999, help="momentum of SGD and K-FAC"),
        Param("damping", "float", D["damping"], lo=1e-8, hi=1e4, log=True,
              help="Tikhonov damping λ (π-split between A and G)"),
        Param("t_cov", "int", D["t_cov"], lo=1, hi=10000, log=True, help="steps between factor updates"),
        Param("t_inv", "int", D["t_inv"], lo=1, hi=100000, log=True, help="steps between eigendecompositions"),
        Param("kl_clip", "float", D["kl_clip"], lo=0.0, hi=10.0, log=True,
              help="KL bound of the update (reference convention); 0 = off"),
        Param("stat_decay", "float", D["stat_decay"], lo=0.0, hi=0.9999,
              help="running-average weight of old factors"),
        Param("batch_size", "int", D["batch_size"], lo=1, hi=100000, log=True, help="examples per gradient step"),
        Param("stats_batch", "int", D["stats_batch"], lo=0, hi=100000, log=True,
              help="examples for the factor statistics (0 = the gradient's batch)"),
        Param("fisher", "choice", D["fisher"], choices=("true", "empirical"),
              help="G from labels sampled from the model (true) or the observed ones (empirical); compare runs both"),
        Param("rescale", "choice", D["rescale"], choices=("kl_clip", "quadratic", "none"),
              help="update scaling: kl_clip rule, exact quadratic model (α, μ), or none"),
        Param("adaptive_damping", "bool", D["adaptive_damping"],
              help="Levenberg-Marquardt damping from the reduction ratio (rescale=quadratic)"),
        Param("min_damping", "float", D["min_damping"], lo=1e-10, hi=1.0, log=True,
              help="floor of the adaptive damping (LM drives λ down while ρ ≈ 1 on the batch)"),
        Param("quad_batch", "int", D["quad_batch"], lo=0, hi=100000, log=True,
              help="rescale=quadratic: examples for the whole quadratic model (its two Fisher-vector "
                   "products, gradient term and reduction ratio; 0 = the whole batch)"),
        Param("quad_every", "int", D["quad_every"], lo=1, hi=1000, log=True,
              help="rescale=quadratic: fit (α, μ) by the Fisher-vector products every this many "
                   "steps and on every LM step; between fits the model's Fisher block is "
                   "estimated from the last fit (1 = every step)"),
        Param("weight_decay", "float", D["weight_decay"], lo=0.0, hi=1.0, help="L2 weight decay of every optimizer"),
        Param("kl_budget", "float", D["kl_budget"], lo=1e-8, hi=1.0, log=True,
              help="ngd: KL budget ε of a step (½ dᵀFd ≤ ε, F the exact Fisher of the batch)"),
        Param("ngd_damping", "float", D["ngd_damping"], lo=1e-8, hi=1e4, log=True,
              help="ngd: damping λ of the solve (F + λI)Δ = g"),
        Param("cg_iters", "int", D["cg_iters"], lo=1, hi=10000, log=True,
              help="ngd: conjugate-gradient iterations at most per step"),
        Param("fisher_batch", "int", 64, lo=1, hi=100000, log=True,
              help="examples of the step's batch for K-FAC's error against the exact Fisher"),
        Param("layer", "int", 0, lo=0, hi=64,
              help="the layer whose K-FAC state the table and the Fisher heatmap show"),
    )
    views = (
        View("trace", "training loss", series=tuple(f"loss_{n}" for n in RUN_NAMES),
             options={"logy": True}),
        View("trace", "validation accuracy", series=tuple(f"val_accuracy_{n}" for n in RUN_NAMES),
             when=lambda p: p["task"] == "digits_mlp"),   # the only task with classes
        View("bars", "step time (ms)", source="step_times"),
        View("table", "K-FAC state", source="kfac_state"),
        View("histogram", "spectrum of G (log10 eigenvalues)", source="g_spectrum"),
        View("trace", "KL moved per step", series=tuple(f"kl_step_{n}" for n in RUN_NAMES),
             reference=("kl_budget",), options={"logy": True}),
        View("trace", "K-FAC vs exact Fisher (relative error)",
             series=("fisher_error_kfac_true", "fisher_error_kfac_empirical")),
        View("heatmap", "log10 |F| (left) and |A⊗G| (right)", source="fisher_blocks"),
    )
    quick = {"widths": (16, 4), "batch_size": 32, "t_cov": 1, "t_inv": 5, "cg_iters": 20}
    # the training loss is a mean over the steps since the last frame; step times are throughput
    window_scalars = ("loss_*", "step_time_*")
    every = 5     # a frame (validation loss and accuracy per method) costs 0.1-0.2 steps: 2-4% (BENCHMARKS.md)
    # per run (kfac_true, kfac_empirical, sgd, adam, ngd): the run's name fills the {}
    scalars = (
        Scalar("kl_budget", "KL budget (ngd)", "nats", "the natural gradient's trust region epsilon"),
        Scalar("diverged_*", "diverged ({})", "", "the run's batch loss turned non-finite and it stopped"),
        Scalar("loss_*", "training loss ({})", "", "mean batch loss over the steps since the last frame"),
        Scalar("val_loss_*", "validation loss ({})", "", "loss on the validation split"),
        Scalar("val_accuracy_*", "validation accuracy ({})", "", "digits_mlp: fraction of validation digits right"),
        Scalar("step_time_*", "step time ({})", "ms", "mean time of one optimizer step since the last frame"),
        Scalar("kl_step_*", "KL moved ({})", "nats", "KL between the predictive distributions before and after the step"),
        Scalar("fisher_error_*", "Fisher error ({})", "", "||A (x) G - F|| / ||F|| against the exact Fisher (per layer with _l)"),
        Scalar("damping_*", "damping ({})", "", "the run's current damping"),
        Scalar("kl_*", "predicted KL ({})", "nats", "the predicted KL of the last update (kl_clip convention)"),
        Scalar("skipped_*", "skipped updates ({})", "", "updates refused as non-finite"),
        Scalar("cg_iterations_*", "CG iterations ({})", "", "conjugate-gradient iterations of the last step"),
        Scalar("cg_residual_*", "CG residual ({})", "", "relative residual of the last conjugate-gradient solve"),
    )

    def check(self, p: dict[str, Any], changed: Sequence[str] = ()) -> dict[str, Any]:
        if p["adaptive_damping"] and p["rescale"] != "quadratic" and \
                ("adaptive_damping" in changed or "rescale" in changed):
            raise ParamError("adaptive_damping needs rescale=quadratic (the reduction ratio uses its model)")
        return p

    # -- contract ------------------------------------------------------------------------
    def init(self, p: Mapping[str, Any], device: torch.device, seed: int) -> State:
        task = p["task"]
        likelihood = LIKELIHOOD[task]
        data = load_data(task, seed, device)
        base = build_model(task, p["widths"], seed, device)
        runs = []
        for name in run_names(p):
            model = copy.deepcopy(base)
            fisher = name.split("_", 1)[1] if name.startswith("kfac") else None
            opt = make_optimizer("kfac" if fisher else name, model, likelihood, p, fisher=fisher)
            runs.append(Run(name, model, opt, torch.zeros((), device=device)))
        gen = torch.Generator(device="cpu").manual_seed(seed + 1)
        state = State(task, likelihood, data, runs, gen, device)
        size = parameter_count(task, p["widths"])
        if p["optimizer"] == "compare" and size > NGD_MAX_PARAMS:
            state.notes.append(f"ngd left out of compare: the model has {size:,} parameters (> "
                               f"{NGD_MAX_PARAMS:,}); its exact Fisher solve per step would dominate the run")
        return state

    def on_edit(self, state: State, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        if "fisher" in changed and p["optimizer"] == "kfac":
            for run in state.runs:
                if run.kfac:
                    run.opt.group["fisher"] = p["fisher"]
                    run.name = f"kfac_{p['fisher']}"
                    state.notes.append(f"fisher -> {p['fisher']}: the run continues as {run.name}")
        for run in state.runs:
            apply_params(run.opt, p, changed)

    def batch_indices(self, state: State, n: int) -> torch.Tensor:
        n_train = state.data.x_train.shape[0]
        idx = torch.randint(0, n_train, (min(n, n_train),), generator=state.gen)
        return idx.to(state.device)

    def step(self, state: State, p: Mapping[str, Any]) -> None:
        data = state.data
        idx = self.batch_indices(state, p["batch_size"])
        x, y = data.x_train[idx], data.y_train[idx]
        xs = ys = None
        if p["stats_batch"] > 0 and any(r.kfac and r.opt.stats_due for r in state.runs):
            sidx = self.batch_indices(state, p["stats_batch"])
            xs, ys = data.x_train[sidx], data.y_train[sidx]
        cuda = state.device.type == "cuda"
        stepped: list[tuple[Run, torch.Tensor]] = []
        for run in state.runs:
            if run.diverged:
                continue
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            else:
                t0 = time.perf_counter()
            loss, out = train_step(run.model, run.opt, state.likelihood, x, y, xs, ys)
            if cuda:
                end.record()
                run.cuda_events.append((start, end))
            else:
                run.time_sum += time.perf_counter() - t0
                run.time_count += 1
            stepped.append((run, loss))
            with torch.no_grad():
                run.kl_step = get_likelihood(state.likelihood).kl(out, run.model(x))
        state.steps += 1
        if (state.steps - 1) % p["t_inv"] == 0:
            self._compare_with_exact_fisher(state, p, x[:p["fisher_batch"]])
        if not stepped:
            return
        # one host sync for every run: a non-finite batch loss stops that run here
        finite = torch.isfinite(torch.stack([loss.float() for _, loss in stepped])).tolist()
        for (run, loss), ok in zip(stepped, finite):
            if ok:
                run.loss_sum += loss
                run.count += 1
                continue
            run.diverged = True
            hint = {"sgd": "lr_sgd", "adam": "lr_adam"}.get(run.name, "lr or damping")
            state.notes.append(f"{run.name}: non-finite training loss at step {state.steps}; "
                               f"run stopped (lower {hint})")

    def _compare_with_exact_fisher(self, state: State, p: Mapping[str, Any], x: torch.Tensor) -> None:
        """Each K-FAC run's undamped A ⊗ G against the exact Fisher of ``x`` per layer block;
        the heatmap of the chosen layer from the first K-FAC run."""
        for run in state.runs:
            if not run.kfac or run.diverged or any(l.fresh for l in run.opt.layers):
                continue
            jacs = layer_jacobians(run.model, state.likelihood, x)
            errs, norms = zip(*(kfac_block_error(l.A, l.G, j) for l, j in zip(run.opt.layers, jacs)))
            run.fisher_errors = list(errs)
            total = sum(n * n for n in norms)
            run.fisher_error = (sum((e * n) ** 2 for e, n in zip(errs, norms)) / total) ** 0.5 if total else float("nan")
            if state.fisher_blocks is None or state.fisher_blocks["run"] == run.name:
                i = min(p["layer"], len(jacs) - 1)
                exact, approx, k, m = block_heatmaps(run.opt.layers[i].A, run.opt.layers[i].G, jacs[i])
                gap = torch.full((exact.shape[0], 1), float("nan"), dtype=exact.dtype)
                state.fisher_blocks = {
                    "z": torch.cat([exact, gap, approx], 1).float().tolist(), "run": run.name,
                    "gutters": int(exact.shape[0]),
                    "caption": f"{run.name} layer {i}, units 0-{k - 1} x inputs 0-{m - 1}, "
                               f"{x.shape[0]} examples, step {state.steps}"}

    def observe(self, state: State, p: Mapping[str, Any]) -> Frame:
        """A read of the state: the window means (loss, step time) are reduced and reset;
        nothing here changes what the runs do."""
        frame = Frame()
        sc = frame.scalars
        frame.notes.extend(state.notes)
        state.notes.clear()
        bars_labels, bars_values = [], []
        for run in state.runs:
            n = run.name
            self._reduce_window(run, state.device)
            sc[f"diverged_{n}"] = run.diverged
            if not run.diverged:
                if finite_or_none(run.last_loss) is not None:     # none before the first step
                    sc[f"loss_{n}"] = run.last_loss
                val_loss, val_acc = evaluate(run.model, state.likelihood, state.data)
                if finite_or_none(val_loss) is not None:
                    sc[f"val_loss_{n}"] = val_loss
                if val_acc is not None:
                    sc[f"val_accuracy_{n}"] = val_acc
            if finite_or_none(run.step_ms) is not None:
                sc[f"step_time_{n}"] = run.step_ms
                bars_labels.append(n)
                bars_values.append(run.step_ms)
            if run.kl_step is not None and finite_or_none(float(run.kl_step)) is not None:
                sc[f"kl_step_{n}"] = float(run.kl_step)
            if isinstance(run.opt, NaturalGradient):
                ngd: NaturalGradient = run.opt
                sc["kl_budget"] = float(ngd.param_groups[0]["kl_budget"])
                sc[f"damping_{n}"] = float(ngd.param_groups[0]["damping"])
                sc[f"cg_iterations_{n}"] = ngd.last_cg_iterations
                if finite_or_none(ngd.last_cg_residual) is not None:
                    sc[f"cg_residual_{n}"] = ngd.last_cg_residual
                sc[f"skipped_{n}"] = ngd.skipped
                frame.notes.extend(f"{n}: {ev}" for ev in ngd.drain_events())
            if run.kfac:
                opt: KFAC = run.opt
                if finite_or_none(run.fisher_error) is not None:
                    sc[f"fisher_error_{n}"] = run.fisher_error
                for i, err in enumerate(run.fisher_errors):
                    if finite_or_none(err) is not None:
                        sc[f"fisher_error_{n}_{i}"] = err
                sc[f"damping_{n}"] = opt.damping
                if finite_or_none(opt.last_kl) is not None:     # none before the first update
                    sc[f"kl_{n}"] = opt.last_kl
                sc[f"skipped_{n}"] = opt.skipped
                frame.notes.extend(f"{n}: {ev}" for ev in opt.drain_events())
        frame.views["step_times"] = {"labels": bars_labels, "values": bars_values}
        kfac_runs = [r for r in state.runs if r.kfac]
        if kfac_runs:
            self._kfac_views(frame, kfac_runs, p)
        if state.fisher_blocks is not None:
            frame.views["fisher_blocks"] = {k: v for k, v in state.fisher_blocks.items() if k != "run"}
        for view in self.views:          # a series that does not apply here is None, never NaN
            for name in (*view.series, *view.reference):
                sc.setdefault(name, None)
        return frame

    @staticmethod
    def _reduce_window(run: Run, device: torch.device) -> None:
        """The window since the last frame -> its mean loss and step time (then reset)."""
        if run.cuda_events:
            torch.cuda.synchronize(device)
            for s, e in run.cuda_events:
                run.time_sum += s.elapsed_time(e) / 1000.0
                run.time_count += 1
            run.cuda_events.clear()
        if run.time_count:
            run.step_ms = 1000.0 * run.time_sum / run.time_count
            run.time_sum, run.time_count = 0.0, 0
        if run.count:
            run.last_loss = float(run.loss_sum) / run.count
            run.loss_sum.zero_()
            run.count = 0

    def _kfac_views(self, frame: Frame, runs: list[Run], p: Mapping[str, Any]) -> None:
        layer = min(p["layer"], len(runs[0].opt.layers) - 1)
        rows = []
        for run in runs:
            opt: KFAC = run.opt
            ca, cg = opt.condition_numbers(layer)
            err = run.fisher_errors[layer] if layer < len(run.fisher_errors) else None
            rows.append([run.name, finite_or_none(opt.damping), finite_or_none(ca), finite_or_none(cg),
                         finite_or_none(opt.last_kl), finite_or_none(err), opt.skipped])
        lname = runs[0].opt.layers[layer]
        frame.views["kfac_state"] = {
            "columns": ["run", "damping", f"cond A[{layer}]", f"cond G[{layer}]", "kl", f"F err[{layer}]",
                        "skipped"],
            "rows": rows,
            "caption": f"layer {layer}: {lname.d_out}x{lname.d_in}",
        }
        spec = runs[0].opt.g_spectrum(layer)
        if spec is not None:
            logs = torch.log10(spec.clamp(min=1e-12)).float().cpu()
            lo, hi = float(logs.min()), float(logs.max())
            hi = hi if hi > lo else lo + 1.0
            counts = torch.histc(logs, bins=20, min=lo, max=hi)
            edges = torch.linspace(lo, hi, 21)
            frame.views["g_spectrum"] = {"edges": edges.tolist(), "counts": counts.tolist()}
            frame.arrays["g_spectrum_log10"] = [round(v, 4) for v in logs.tolist()]

    def work_per_step(self, state: State, p: Mapping[str, Any]) -> float:
        return float(p["batch_size"] * len(state.runs))

    def work_unit(self) -> str:
        return "examples"


TOPIC = KFACTopic()
