"""K-FAC natural-gradient training, live: true vs empirical Fisher vs SGD and Adam.

Tasks (train/validation split seeded by the run's seed):
  digits_autoencoder  scikit-learn's bundled ``digits`` (1797 8x8 images, pixels scaled
                      to [0, 1]); a deep autoencoder 64-w1-…-wk-…-w1-64 (``widths`` is the
                      encoder, mirrored), tanh hidden units, sigmoid output with binary
                      cross-entropy averaged over the 64 pixels (its floor on digits is the
                      pixels' own entropy, about 0.2134, since pixels are not binary).
  digits_mlp          the same images, 10 classes, an MLP 64-widths-10 (tanh), softmax
                      cross-entropy; reports validation accuracy.
  teacher_student     x ~ N(0, I_16); a fixed random tanh teacher 16-32-4 plus noise of
                      s.d. 0.1 gives y; the student 16-widths-4 fits it by ½ squared error
                      averaged over the 4 outputs (a unit-variance Gaussian likelihood).

``optimizer=compare`` trains the same initial network with K-FAC (true Fisher), K-FAC
(empirical Fisher), SGD with momentum and Adam, each one step per frame on the same
batch. Frame names carry the run: ``loss_kfac_true``, ``loss_kfac_empirical``,
``loss_sgd``, ``loss_adam`` (the mean training loss of the batches since the last
frame), ``val_loss_*``, ``val_accuracy_*`` (digits_mlp), ``step_time_*`` (ms per
step, a running mean), and per K-FAC run ``damping_*``, ``kl_*`` (the predicted KL of
the last update in the kl_clip convention, see engine.kfac) and ``skipped_*``. A
single-optimizer run uses the same names (optimizer=kfac, fisher=true writes
``loss_kfac_true``). A run whose loss turns non-finite is stopped and reported
(``diverged_*`` true and a note); its loss is then omitted, never plotted as NaN.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..kfac import KFAC, mean_loss
from ..params import Param, ParamError, int_list
from ..topic import Frame, Topic, View

TASKS = ("digits_autoencoder", "digits_mlp", "teacher_student")
OPTIMIZERS = ("kfac", "sgd", "adam", "compare")
RUN_NAMES = ("kfac_true", "kfac_empirical", "sgd", "adam")
LIKELIHOOD = {"digits_autoencoder": "bernoulli", "digits_mlp": "categorical",
              "teacher_student": "gaussian"}


def _widths(text: str) -> tuple[int, ...]:
    return int_list(text, lo=1, hi=4096)


# -- data and models -----------------------------------------------------------------------
@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def load_data(task: str, seed: int, device: torch.device, val_fraction: float = 0.2) -> Data:
    """The task's train/validation split, seeded, as tensors on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    if task in ("digits_autoencoder", "digits_mlp"):
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        y = x if task == "digits_autoencoder" else labels
    elif task == "teacher_student":
        n = 5120
        x = torch.randn(n, 16, generator=gen)
        teacher = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
        with torch.no_grad():
            for m in teacher:
                if isinstance(m, nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 1.5 / math.sqrt(m.in_features))
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            y = teacher(x) + 0.1 * torch.randn(n, 4, generator=gen)
    else:
        raise ParamError(f"task must be one of {'|'.join(TASKS)}, got {task!r}")
    perm = torch.randperm(x.shape[0], generator=gen)
    n_val = int(round(val_fraction * x.shape[0]))
    val, train = perm[:n_val], perm[n_val:]
    return Data(x[train].to(device), y[train].to(device), x[val].to(device), y[val].to(device))


def build_model(task: str, widths: Sequence[int], seed: int, device: torch.device) -> nn.Sequential:
    """The task's network, initialised from ``seed`` (PyTorch's default Linear init)."""
    if task == "digits_autoencoder":
        sizes = [64, *widths, *reversed(widths[:-1]), 64]
    elif task == "digits_mlp":
        sizes = [64, *widths, 10]
    else:
        sizes = [16, *widths, 4]
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    torch.random.set_rng_state(gen_state)
    return nn.Sequential(*layers).to(device)


# -- runs ----------------------------------------------------------------------------------
@dataclass
class Run:
    name: str
    model: nn.Module
    opt: torch.optim.Optimizer
    loss_sum: torch.Tensor
    count: int = 0
    time_sum: float = 0.0
    time_count: int = 0
    step_ms: float = float("nan")
    diverged: bool = False
    reported: bool = False
    skipped_seen: int = 0
    last_loss: float = float("nan")
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


def run_names(p: Mapping[str, Any]) -> tuple[str, ...]:
    if p["optimizer"] == "compare":
        return RUN_NAMES
    if p["optimizer"] == "kfac":
        return (f"kfac_{p['fisher']}",)
    return (p["optimizer"],)


def make_optimizer(name: str, model: nn.Module, likelihood: str, p: Mapping[str, Any],
                   fisher: str | None = None) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=p["lr_sgd"], momentum=p["momentum"],
                               weight_decay=p["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=p["lr_adam"], weight_decay=p["weight_decay"])
    return KFAC(model, likelihood=likelihood, lr=p["lr"], momentum=p["momentum"],
                damping=p["damping"], weight_decay=p["weight_decay"], stat_decay=p["stat_decay"],
                kl_clip=p["kl_clip"], t_cov=p["t_cov"], t_inv=p["t_inv"],
                fisher=fisher or p["fisher"], rescale=p["rescale"],
                adaptive_damping=p["adaptive_damping"], quad_batch=p["quad_batch"],
                min_damping=p["min_damping"], batched=p.get("batched", True))


def apply_params(run: Run, p: Mapping[str, Any], changed: Sequence[str] = ()) -> None:
    """Live edits: copy the params into the run's optimizer."""
    g = run.opt.param_groups
    if run.name == "sgd":
        for grp in g:
            grp.update(lr=p["lr_sgd"], momentum=p["momentum"], weight_decay=p["weight_decay"])
    elif run.name == "adam":
        for grp in g:
            grp.update(lr=p["lr_adam"], weight_decay=p["weight_decay"])
    else:
        grp = g[0]
        grp.update(lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"],
                   stat_decay=p["stat_decay"], kl_clip=p["kl_clip"], t_cov=p["t_cov"],
                   t_inv=p["t_inv"], rescale=p["rescale"], adaptive_damping=p["adaptive_damping"],
                   quad_batch=p["quad_batch"])
        run.opt.min_damping = p["min_damping"]
        if "damping" in changed:
            grp["damping"] = p["damping"]


def train_step(run: Run, likelihood: str, x: torch.Tensor, y: torch.Tensor,
               x_stats: torch.Tensor | None = None, y_stats: torch.Tensor | None = None) -> torch.Tensor:
    """One optimizer step of ``run`` on the batch (x, y); returns the batch loss (0-d, on
    the device). K-FAC takes its factor statistics from (x_stats, y_stats) when given."""
    opt = run.opt
    opt.zero_grad(set_to_none=True)
    if isinstance(opt, KFAC):
        if x_stats is not None and opt.stats_due:
            opt.update_stats(run.model(x_stats), y_stats)
        out = run.model(x)
        loss = opt.backward(out, y, inputs=x)
        opt.step()
        return loss
    loss = mean_loss(likelihood, run.model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


@torch.no_grad()
def evaluate(run: Run, likelihood: str, data: Data) -> tuple[float, float | None]:
    """(validation loss, validation accuracy or None)."""
    out = run.model(data.x_val)
    loss = float(mean_loss(likelihood, out, data.y_val))
    acc = None
    if likelihood == "categorical":
        acc = float((out.argmax(-1) == data.y_val).float().mean())
    return loss, acc


def _fmt(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.3g}"


class KFACTopic(Topic):
    name = "kfac"
    title = "K-FAC"
    order = 70
    summary = "natural-gradient training: K-FAC (true vs empirical Fisher) vs SGD and Adam"
    step_unit = "minibatch step"
    params = (
        Param("task", "choice", "digits_autoencoder", choices=TASKS, live=False,
              help="digits autoencoder (BCE), digits MLP classifier, or teacher-student regression"),
        Param("optimizer", "choice", "compare", choices=OPTIMIZERS, live=False,
              help="one optimizer, or compare: K-FAC true + empirical, SGD and Adam from the same weights"),
        Param("widths", "text", (128, 64, 16), parse_text=_widths, live=False,
              help="hidden widths, e.g. 128,64,16 (the autoencoder mirrors them)"),
        Param("lr", "float", 0.3, lo=1e-6, hi=100.0, log=True,
              help="K-FAC learning rate (ignored by rescale=quadratic)"),
        Param("lr_sgd", "float", 3.0, lo=1e-6, hi=100.0, log=True, help="SGD learning rate"),
        Param("lr_adam", "float", 5e-3, lo=1e-7, hi=1.0, log=True, help="Adam learning rate"),
        Param("momentum", "float", 0.9, lo=0.0, hi=0.999, help="momentum of SGD and K-FAC"),
        Param("damping", "float", 1e-2, lo=1e-8, hi=1e4, log=True,
              help="Tikhonov damping λ (π-split between A and G)"),
        Param("t_cov", "int", 10, lo=1, hi=10000, log=True, help="steps between factor updates"),
        Param("t_inv", "int", 100, lo=1, hi=100000, log=True, help="steps between eigendecompositions"),
        Param("kl_clip", "float", 1e-3, lo=0.0, hi=10.0, log=True,
              help="KL bound of the update (reference convention); 0 = off"),
        Param("stat_decay", "float", 0.95, lo=0.0, hi=0.9999, help="running-average weight of old factors"),
        Param("batch_size", "int", 256, lo=1, hi=100000, log=True, help="examples per gradient step"),
        Param("stats_batch", "int", 0, lo=0, hi=100000, log=True,
              help="examples for the factor statistics (0 = the gradient's batch)"),
        Param("fisher", "choice", "true", choices=("true", "empirical"),
              help="G from labels sampled from the model (true) or the observed ones (empirical); compare runs both"),
        Param("rescale", "choice", "kl_clip", choices=("kl_clip", "quadratic", "none"),
              help="update scaling: kl_clip rule, exact quadratic model (α, μ), or none"),
        Param("adaptive_damping", "bool", False,
              help="Levenberg-Marquardt damping from the reduction ratio (rescale=quadratic)"),
        Param("min_damping", "float", 1e-4, lo=1e-10, hi=1.0, log=True,
              help="floor of the adaptive damping (LM drives λ down while ρ ≈ 1 on the batch)"),
        Param("quad_batch", "int", 0, lo=0, hi=100000, log=True,
              help="examples for the quadratic model's Fisher-vector products (0 = the whole batch)"),
        Param("weight_decay", "float", 0.0, lo=0.0, hi=1.0, help="L2 weight decay of every optimizer"),
        Param("layer", "int", 0, lo=0, hi=64, help="the layer whose K-FAC state the table shows"),
    )
    views = (
        View("trace", "training loss", series=tuple(f"loss_{n}" for n in RUN_NAMES),
             options={"logy": True}),
        View("trace", "validation accuracy", series=tuple(f"val_accuracy_{n}" for n in RUN_NAMES)),
        View("bars", "step time (ms)", source="step_times"),
        View("table", "K-FAC state", source="kfac_state"),
        View("histogram", "spectrum of G (log10 eigenvalues)", source="g_spectrum"),
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
        return State(task, likelihood, data, runs, gen, device)

    def on_edit(self, state: State, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        if "fisher" in changed and p["optimizer"] == "kfac":
            for run in state.runs:
                if run.kfac:
                    run.opt.group["fisher"] = p["fisher"]
                    run.name = f"kfac_{p['fisher']}"
                    state.notes.append(f"fisher -> {p['fisher']}: the run continues as {run.name}")
        for run in state.runs:
            apply_params(run, p, changed)

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
        for run in state.runs:
            if run.diverged:
                continue
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            else:
                t0 = time.perf_counter()
            loss = train_step(run, state.likelihood, x, y, xs, ys)
            run.loss_sum += loss
            run.count += 1
            if cuda:
                end.record()
                run.cuda_events.append((start, end))
            else:
                run.time_sum += time.perf_counter() - t0
                run.time_count += 1
        state.steps += 1

    def observe(self, state: State, p: Mapping[str, Any]) -> Frame:
        frame = Frame()
        sc = frame.scalars
        notes = frame.notes
        notes.extend(state.notes)
        state.notes.clear()
        bars_labels, bars_values = [], []
        for run in state.runs:
            n = run.name
            if run.cuda_events:
                torch.cuda.synchronize(state.device)
                for s, e in run.cuda_events:
                    run.time_sum += s.elapsed_time(e) / 1000.0
                    run.time_count += 1
                run.cuda_events.clear()
            if run.time_count:
                ms = 1000.0 * run.time_sum / run.time_count
                run.step_ms = ms if not math.isfinite(run.step_ms) else 0.8 * run.step_ms + 0.2 * ms
                run.time_sum, run.time_count = 0.0, 0
            if run.count:
                run.last_loss = float(run.loss_sum) / run.count
                run.loss_sum.zero_()
                run.count = 0
                if not math.isfinite(run.last_loss) and not run.diverged:
                    run.diverged = True
                    hint = {"sgd": "lr_sgd", "adam": "lr_adam"}.get(n, "lr or damping")
                    notes.append(f"{n}: non-finite training loss at step {state.steps}; run stopped (lower {hint})")
            sc[f"diverged_{n}"] = run.diverged
            if not run.diverged:
                if math.isfinite(run.last_loss):       # none before the first step
                    sc[f"loss_{n}"] = run.last_loss
                val_loss, val_acc = evaluate(run, state.likelihood, state.data)
                if math.isfinite(val_loss):
                    sc[f"val_loss_{n}"] = val_loss
                if val_acc is not None:
                    sc[f"val_accuracy_{n}"] = val_acc
            if math.isfinite(run.step_ms):
                sc[f"step_time_{n}"] = run.step_ms
                bars_labels.append(n)
                bars_values.append(run.step_ms)
            if run.kfac:
                opt: KFAC = run.opt
                sc[f"damping_{n}"] = opt.damping
                if math.isfinite(opt.last_kl):          # none before the first update
                    sc[f"kl_{n}"] = opt.last_kl
                sc[f"skipped_{n}"] = opt.skipped
                for ev in opt.drain_events():
                    notes.append(f"{n}: {ev}")
        frame.views["step_times"] = {"labels": bars_labels, "values": bars_values}
        kfac_runs = [r for r in state.runs if r.kfac]
        if kfac_runs:
            self._kfac_views(frame, kfac_runs, p)
        return frame

    def _kfac_views(self, frame: Frame, runs: list[Run], p: Mapping[str, Any]) -> None:
        layer = min(p["layer"], len(runs[0].opt.layers) - 1)
        rows = []
        for run in runs:
            opt: KFAC = run.opt
            ca, cg = opt.condition_numbers(layer)
            rows.append([run.name, _fmt(opt.damping), _fmt(ca), _fmt(cg), _fmt(opt.last_kl), opt.skipped])
        lname = runs[0].opt.layers[layer]
        frame.views["kfac_state"] = {
            "columns": ["run", "damping", f"cond A[{layer}]", f"cond G[{layer}]", "kl", "skipped"],
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

    def bench(self, device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
        from ..kfac_study import bench_rows

        yield from bench_rows(device, quick=quick)


TOPIC = KFACTopic()
