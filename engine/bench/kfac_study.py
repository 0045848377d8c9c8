"""The K-FAC study behind BENCHMARKS.md: steps and wall-clock to SGD's final loss.

For a task (digits autoencoder or digits MLP), every optimizer starts from the same
initial network (per seed) and is fed the same minibatches (per seed). Learning rates
(and K-FAC's damping) are tuned on a small grid by the final full-training-set loss of
the tuning seed; the tuned settings then run on every seed. The target is tuned SGD's
final training loss on the same seed; for each method we report the mean number of steps
to first reach it (full-training-set loss evaluated every 20 steps) over the seeds that
reach it, the wall-clock to it (those steps x the method's per-step cost, measured
round-robin in the same run, under a lock when asked), and the ratios SGD/method and
Adam/method (> 1: the method is faster).
The K-FAC levers (the quadratic-model rescale, Levenberg-Marquardt damping, statistics
from a larger batch, batched preconditioning) are switched on one at a time.
With ``ngd`` the exact natural gradient (engine/optim/ngd.py) joins on the digits MLP: its
KL budget and damping are tuned by the steps to tuned SGD's final loss on the tuning seed
(a run stops at that target: its steps cost seconds), and on every seed it runs until it
reaches that seed's targets (tuned SGD's and Adam's final losses).

Every time is taken with engine/bench/timing.py (a synchronised call per training step in
the study, interleaved rounds for the per-step costs).

Run:  python -m mletui.engine.bench.kfac_study --task digits_autoencoder --steps 1000 --seeds 3
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models.supervised import LIKELIHOOD, WIDTHS, build_model, load_data
from ..optim.kfac import KFAC
from ..optim.likelihoods import mean_loss
from ..optim.training import DEFAULTS, make_optimizer, train_step
from .timing import interleaved, time_once


@contextlib.contextmanager
def bench_lock(path: str | None):
    """Hold an exclusive flock on ``path`` (None: no lock) while timing, so timings of
    several benchmarks sharing a machine do not overlap."""
    if not path:
        yield
        return
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Config:
    label: str
    optimizer: str                      # kfac | sgd | adam
    params: dict[str, Any] = field(default_factory=dict)
    batched: bool = True

    def with_(self, label: str, **params: Any) -> "Config":
        batched = params.pop("batched", self.batched)
        return Config(label, self.optimizer, {**self.params, **params}, batched)


@dataclass
class Curve:
    steps: list[int]
    losses: list[float]
    seconds: list[float]                # cumulative step time at each evaluation
    skipped: int = 0

    @property
    def final(self) -> float:
        return self.losses[-1]

    def first_reach(self, target: float) -> tuple[int | None, float | None]:
        for s, l, t in zip(self.steps, self.losses, self.seconds):
            if l <= target:
                return s, t
        return None, None


def train_curve(task: str, cfg: Config, seed: int, steps: int, device: torch.device,
                batch_size: int = 256, eval_every: int = 20, widths: tuple[int, ...] = WIDTHS,
                stop_below: float | None = None) -> Curve:
    """Train one configuration; full-training-set loss every ``eval_every`` steps. With
    ``stop_below`` the run ends at the first evaluation at or below it (the exact natural
    gradient, whose steps cost seconds, is run only to the study's target)."""
    p = dict(DEFAULTS, widths=widths, batch_size=batch_size)
    p.update(cfg.params)
    likelihood = LIKELIHOOD[task]
    data = load_data(task, seed, device)
    model = copy.deepcopy(build_model(task, widths, seed, device))
    p["batched"] = cfg.batched
    opt = make_optimizer(cfg.optimizer, model, likelihood, p)
    gen = torch.Generator().manual_seed(seed + 1)          # the gradient batches: shared by all
    stats_gen = torch.Generator().manual_seed(seed + 2)    # statistics batches (stats_batch > 0)
    n_train = data.x_train.shape[0]
    sb = int(p.get("stats_batch", 0) or 0)
    curve = Curve([], [], [])
    elapsed = 0.0

    def evaluate(step: int) -> None:
        with torch.no_grad():
            loss = float(mean_loss(likelihood, model(data.x_train), data.y_train))
        curve.steps.append(step)
        curve.losses.append(loss if math.isfinite(loss) else float("inf"))
        curve.seconds.append(elapsed)

    torch.manual_seed(seed + 3)                            # K-FAC's sampled labels
    evaluate(0)
    for i in range(1, steps + 1):
        idx = torch.randint(0, n_train, (batch_size,), generator=gen).to(device)
        xs = ys = None
        if sb and isinstance(opt, KFAC) and opt.stats_due:
            sidx = torch.randint(0, n_train, (min(sb, n_train),), generator=stats_gen).to(device)
            xs, ys = data.x_train[sidx], data.y_train[sidx]
        x, y = data.x_train[idx], data.y_train[idx]
        elapsed += time_once(lambda: train_step(model, opt, likelihood, x, y, xs, ys), device)
        if i % eval_every == 0 or i == steps:
            evaluate(i)
            if not math.isfinite(curve.losses[-1]):
                break
            if stop_below is not None and curve.losses[-1] <= stop_below:
                break
    curve.skipped = getattr(opt, "skipped", 0)
    return curve


def base_configs(ngd: bool = False) -> dict[str, Config]:
    configs = {
        "sgd": Config("sgd", "sgd"),
        "adam": Config("adam", "adam"),
        "kfac_true": Config("kfac_true", "kfac", {"fisher": "true"}),
        "kfac_empirical": Config("kfac_empirical", "kfac", {"fisher": "empirical"}),
    }
    if ngd:
        configs["ngd"] = Config("ngd", "ngd")
    return configs


GRIDS = {
    "sgd": [{"lr_sgd": v} for v in (0.3, 1.0, 3.0, 10.0)],
    "adam": [{"lr_adam": v} for v in (1e-3, 3e-3, 1e-2, 3e-2)],
    "kfac": [{"lr": lr, "damping": d} for lr in (0.1, 0.3, 1.0) for d in (1e-3, 1e-2, 1e-1)],
}
GRIDS_MLP = {
    "sgd": [{"lr_sgd": v} for v in (0.03, 0.1, 0.3, 1.0)],
    "adam": [{"lr_adam": v} for v in (1e-3, 3e-3, 1e-2, 3e-2)],
    "kfac": [{"lr": lr, "damping": d} for lr in (0.03, 0.1, 0.3) for d in (1e-3, 1e-2, 1e-1)],
    "ngd": [{"kl_budget": e, "ngd_damping": d} for e in (1e-2, 3e-2, 1e-1) for d in (1e-3, 1e-2)],
}


def tune(task: str, cfg: Config, grid: list[dict[str, Any]], seed: int, steps: int,
         device: torch.device, log, stop_below: float | None = None) -> Config:
    """The grid point with the lowest final loss; with ``stop_below``, the one that first
    reaches it (then the lowest final loss among those that do not)."""
    best, best_key = None, (math.inf, math.inf)
    for g in grid:
        c = cfg.with_(cfg.label, **g)
        curve = train_curve(task, c, seed, steps, device, stop_below=stop_below)
        reached = curve.first_reach(stop_below)[0] if stop_below is not None else None
        key = (math.inf if reached is None else reached, curve.final)
        log(f"  tune {cfg.label} {g}: final {curve.final:.4f}" + ("" if stop_below is None else f", reached at {reached}"))
        if key < best_key:
            best, best_key = c, key
    return best


def study(task: str = "digits_autoencoder", steps: int = 1000, seeds: int = 3,
          device: torch.device | str = "cpu", tune_steps: int | None = None,
          levers: bool = True, log=print, timing: dict[str, float] | None = None,
          timing_rounds: int = 5, lock: str | None = None, timing_steps: int = 100,
          ngd: bool = False) -> dict[str, Any]:
    """Tune, run every method on every seed, and compare with tuned SGD and Adam."""
    device = torch.device(device)
    grids = GRIDS if task == "digits_autoencoder" else GRIDS_MLP
    tune_steps = tune_steps or steps
    configs = base_configs(ngd)
    tuned: dict[str, Config] = {}
    for name, cfg in configs.items():
        stop = None
        if cfg.optimizer == "ngd":          # to tuned SGD's final loss on the tuning seed
            stop = train_curve(task, tuned["sgd"], 0, tune_steps, device).final
        tuned[name] = tune(task, cfg, grids[cfg.optimizer], 0, tune_steps, device, log, stop_below=stop)
        log(f"tuned {name}: {tuned[name].params}")
    if levers:
        kt = tuned["kfac_true"]
        tuned["kfac_true unbatched"] = kt.with_("kfac_true unbatched", batched=False)
        tuned["kfac_true stats_batch=1024"] = kt.with_("kfac_true stats_batch=1024", stats_batch=1024)
        # the quadratic-model rows on the whole batch (quad_batch=0), then on 64 examples, (α, μ)
        # fitted every step (quad_every=1, the rows of the first tables in BENCHMARKS.md)
        tuned["kfac_true quadratic"] = kt.with_("kfac_true quadratic", rescale="quadratic", quad_batch=0,
                                                quad_every=1)
        tuned["kfac_true quadratic+LM"] = kt.with_("kfac_true quadratic+LM", rescale="quadratic",
                                                   adaptive_damping=True, quad_batch=0, quad_every=1)
        tuned["kfac_true quadratic+LM quad_batch=64"] = kt.with_(
            "kfac_true quadratic+LM quad_batch=64", rescale="quadratic", adaptive_damping=True, quad_batch=64,
            quad_every=1)
        # and (α, μ) fitted every 5 steps (the LM steps), the steps between on the estimated model
        # (on 64 examples: the topic's defaults), and the same on 32
        tuned["kfac_true quadratic+LM quad_batch=64 quad_every=5"] = kt.with_(
            "kfac_true quadratic+LM quad_batch=64 quad_every=5", rescale="quadratic", adaptive_damping=True,
            quad_batch=64, quad_every=5)
        tuned["kfac_true quadratic+LM quad_batch=32 quad_every=5"] = kt.with_(
            "kfac_true quadratic+LM quad_batch=32 quad_every=5", rescale="quadratic", adaptive_damping=True,
            quad_batch=32, quad_every=5)
        tuned["kfac_empirical quadratic+LM"] = tuned["kfac_empirical"].with_(
            "kfac_empirical quadratic+LM", rescale="quadratic", adaptive_damping=True, quad_batch=0,
            quad_every=1)
        tuned["kfac_true all levers"] = kt.with_("kfac_true all levers", rescale="quadratic",
                                                 adaptive_damping=True, stats_batch=1024, quad_batch=0,
                                                 quad_every=1)
    curves: dict[str, list[Curve]] = {k: [] for k in tuned}
    for seed in range(seeds):
        for name, cfg in tuned.items():
            # the exact natural gradient: until it reaches both baselines' targets on this seed
            stop = min(curves["sgd"][seed].final, curves["adam"][seed].final) if cfg.optimizer == "ngd" else None
            curves[name].append(train_curve(task, cfg, seed, steps, device, stop_below=stop))
            c = curves[name][-1]
            log(f"  seed {seed} {name}: final {c.final:.4f}, {1000 * c.seconds[-1] / c.steps[-1]:.2f} ms/step")
    if timing is None:
        log("timing (round-robin) ...")
        with bench_lock(lock):
            timing = step_costs(task, tuned, device, rounds=timing_rounds, steps_per_round=timing_steps)
    # per seed, the target is the baseline's (tuned SGD's, tuned Adam's) own final training
    # loss on that seed; a method's steps to it are compared with the baseline's steps to it
    rows: dict[str, dict[str, Any]] = {}
    for name, cs in curves.items():
        rows[name] = {
            "final": sum(c.final for c in cs) / seeds,
            "ms_per_step": timing[name],
            "ms_per_step_in_study": 1000 * sum(c.seconds[-1] for c in cs) / sum(c.steps[-1] for c in cs),
            "skipped": sum(c.skipped for c in cs),
            "params": tuned[name].params,
        }
    for base in ("sgd", "adam"):
        targets = [c.final for c in curves[base]]
        for name, cs in curves.items():
            r = rows[name]
            got = [s for s, _ in (c.first_reach(t) for c, t in zip(cs, targets)) if s is not None]
            r[f"reached_{base}_final"] = len(got)
            r[f"steps_to_{base}_final"] = sum(got) / len(got) if got else None
        b = rows[base][f"steps_to_{base}_final"]
        for name, r in rows.items():
            m = r[f"steps_to_{base}_final"]
            r[f"steps_ratio_vs_{base}"] = b / m if b and m else None
            # wall-clock: steps x the round-robin per-step cost
            r[f"wall_ratio_vs_{base}"] = (b * rows[base]["ms_per_step"]) / (m * r["ms_per_step"]) if b and m else None
            r[f"step_cost_vs_{base}"] = r["ms_per_step"] / rows[base]["ms_per_step"]
    return {"task": task, "steps": steps, "seeds": seeds,
            "sgd_final": rows["sgd"]["final"], "adam_final": rows["adam"]["final"],
            "tuned": {k: c.params for k, c in tuned.items()},
            "device": str(device), "threads": torch.get_num_threads(), "rows": rows,
            "curves": {k: [{"steps": c.steps, "losses": c.losses} for c in cs] for k, cs in curves.items()}}


def retime(res: dict[str, Any], device: torch.device | str = "cpu", rounds: int = 7,
           lock: str | None = None) -> dict[str, Any]:
    """Measure the per-step costs of a finished study's tuned configurations again (on a
    quieter machine) and recompute its wall-clock ratios; steps are deterministic."""
    configs = {}
    for name, params in res["tuned"].items():
        opt = name if name in ("sgd", "adam", "ngd") else "kfac"
        configs[name] = Config(name, opt, dict(params), batched="unbatched" not in name)
    with bench_lock(lock):
        timing = step_costs(res["task"], configs, device, rounds=rounds)
    rows = res["rows"]
    for name, r in rows.items():
        r["ms_per_step"] = timing[name]
    for base in ("sgd", "adam"):
        b = rows[base][f"steps_to_{base}_final"]
        for name, r in rows.items():
            m = r[f"steps_to_{base}_final"]
            r[f"wall_ratio_vs_{base}"] = (b * rows[base]["ms_per_step"]) / (m * r["ms_per_step"]) if b and m else None
            r[f"step_cost_vs_{base}"] = r["ms_per_step"] / rows[base]["ms_per_step"]
    return res


def step_costs(task: str, configs: dict[str, Config], device: torch.device | str = "cpu",
               rounds: int = 5, steps_per_round: int = 100, seed: int = 0,
               batch_size: int = 256) -> dict[str, float]:
    """Milliseconds per training step of each configuration, measured round-robin (every
    configuration runs ``steps_per_round`` steps in turn, ``rounds`` times) so that a
    change of machine load hits all of them alike; the median round is reported.
    With t_cov=10 and t_inv=100, 100 steps per round include their amortised share of
    factor updates (10) and of eigendecompositions (1). The exact natural gradient, whose
    steps cost seconds, runs a tenth of them per round."""
    device = torch.device(device)
    likelihood = LIKELIHOOD[task]
    data = load_data(task, seed, device)
    n_train = data.x_train.shape[0]
    runs = {}
    for name, cfg in configs.items():
        p = dict(DEFAULTS, batch_size=batch_size)
        p.update(cfg.params)
        model = build_model(task, WIDTHS, seed, device)
        p["batched"] = cfg.batched
        opt = make_optimizer(cfg.optimizer, model, likelihood, p)
        runs[name] = (model, opt, int(p.get("stats_batch", 0) or 0))
    gen = torch.Generator().manual_seed(seed)

    def one(model: torch.nn.Module, opt: torch.optim.Optimizer, sb: int) -> None:
        idx = torch.randint(0, n_train, (batch_size,), generator=gen).to(device)
        xs = ys = None
        if sb and isinstance(opt, KFAC) and opt.stats_due:
            sidx = torch.randint(0, n_train, (min(sb, n_train),), generator=gen).to(device)
            xs, ys = data.x_train[sidx], data.y_train[sidx]
        train_step(model, opt, likelihood, data.x_train[idx], data.y_train[idx], xs, ys)

    for run in runs.values():                        # warm-up, incl. the first eigendecomposition
        for _ in range(5):
            one(*run)

    per_round = {k: max(1, steps_per_round // 10) if configs[k].optimizer == "ngd" else steps_per_round
                 for k in runs}

    def steps_of(run: tuple, n: int) -> Any:
        def fn() -> None:
            for _ in range(n):
                one(*run)
        return fn

    m = interleaved([steps_of(run, per_round[k]) for k, run in runs.items()], device, rounds=rounds, warmup=0)
    return {k: 1000 * t.median / per_round[k] for k, t in zip(runs, m.timings)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="digits_autoencoder", choices=("digits_autoencoder", "digits_mlp"))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--tune-steps", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-levers", action="store_true")
    ap.add_argument("--ngd", action="store_true", help="add the exact natural gradient (seconds per step)")
    ap.add_argument("--json", default=None, help="write the result here")
    ap.add_argument("--retime", default=None, metavar="JSON",
                    help="re-measure the step costs of a finished study (its --json) and print it again")
    ap.add_argument("--lock", default=None, help="flock this file while timing (e.g. /tmp/mletui-bench.lock)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.retime:
        with open(args.retime) as fh:
            res = retime(json.load(fh), args.device, lock=args.lock)
        args.seeds = res["seeds"]
    else:
        res = study(args.task, args.steps, args.seeds, args.device, args.tune_steps, not args.no_levers,
                    lock=args.lock, ngd=args.ngd)
    print(f"targets: each seed's final training loss of tuned SGD (mean {res['sgd_final']:.4f}) "
          f"and of tuned Adam (mean {res['adam_final']:.4f}); {args.seeds} seeds")
    print(f"{'method':<38}{'final':>7}{'ms/step':>8}{'cost':>6} | {'to SGD final':>12}{'xSGD':>6}{'wall':>6}"
          f" | {'to Adam final':>13}{'xAdam':>6}{'wall':>6}")
    f = lambda v, fmt: "-" if v is None else format(v, fmt)
    for name, r in res["rows"].items():
        print(f"{name:<38}{r['final']:>7.4f}{r['ms_per_step']:>8.2f}{r['step_cost_vs_sgd']:>6.2f} | "
              f"{f(r['steps_to_sgd_final'], '.0f'):>7} ({r['reached_sgd_final']}/{args.seeds})"
              f"{f(r['steps_ratio_vs_sgd'], '.2f'):>6}{f(r['wall_ratio_vs_sgd'], '.2f'):>6} | "
              f"{f(r['steps_to_adam_final'], '.0f'):>8} ({r['reached_adam_final']}/{args.seeds})"
              f"{f(r['steps_ratio_vs_adam'], '.2f'):>6}{f(r['wall_ratio_vs_adam'], '.2f'):>6}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
