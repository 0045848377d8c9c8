"""K-FAC with the quadratic model and LM damping against SGD (issue 14): steps to each seed's SGD
final loss, then the per-step cost ratios of one interleaved run (engine/bench/timing.py through
``kfac_study.step_costs``), for the whole-batch model and sub-batches of 64 and 32 (the MLPs take
KFAC._quadratic_fast), the sub-batch of 64 with (α, μ) fitted every 5 steps (``quad_every=5``,
the LM steps' phase; the steps between on the estimated model), the same with a sub-batch of 32,
and the sub-batch of 64 through the general path (``fast_quadratic=False``).

    .venv/bin/python tests/benchmarks/kfac_quadratic_cost.py --task digits_autoencoder
    .venv/bin/python tests/benchmarks/kfac_quadratic_cost.py --task digits_mlp
"""

from __future__ import annotations

import argparse

import torch

from mletui.engine.bench.kfac_study import Config, step_costs, train_curve
from mletui.engine.bench.timing import load_average


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="digits_autoencoder", choices=("digits_autoencoder", "digits_mlp"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--no-steps", action="store_true", help="only the per-step costs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ae = args.task == "digits_autoencoder"
    steps, lr_sgd = (1500, 3.0) if ae else (800, 0.3)
    q = {"fisher": "true", "lr": 0.3, "damping": 1e-2, "rescale": "quadratic", "adaptive_damping": True}
    quads = {f"quadratic+LM quad_batch={k}": Config(f"q{k}", "kfac", dict(q, quad_batch=k, quad_every=1))
             for k in (0, 64, 32)}
    quads["quadratic+LM quad_batch=64 quad_every=5"] = Config("q64e5", "kfac", dict(q, quad_batch=64, quad_every=5))
    quads["quadratic+LM quad_batch=32 quad_every=5"] = Config("q32e5", "kfac", dict(q, quad_batch=32, quad_every=5))
    sgd = Config("sgd", "sgd", {"lr_sgd": lr_sgd})
    if not args.no_steps:
        reach: dict[str, list] = {"sgd": [], **{k: [] for k in quads}}
        for seed in range(args.seeds):
            base = train_curve(args.task, sgd, seed, steps, torch.device("cpu"))
            reach["sgd"].append(base.first_reach(base.final)[0])
            for name, cfg in quads.items():
                reach[name].append(train_curve(args.task, cfg, seed, steps, torch.device("cpu")).first_reach(base.final)[0])
        sgd_mean = sum(reach["sgd"]) / len(reach["sgd"])
        for name, r in reach.items():
            ok = [s for s in r if s is not None]
            mean = sum(ok) / len(ok) if ok else None
            print(f"{name:40s} steps to SGD's final {r}  mean {mean}  "
                  f"x SGD {sgd_mean / mean if mean else float('nan'):.2f}  ({len(ok)}/{len(r)} seeds)")
    cfgs = {"sgd": sgd, "kfac_true (kl_clip)": Config("kfac", "kfac", {"fisher": "true", "lr": 0.3, "damping": 1e-2}),
            **quads,
            # the same model through KFAC._quadratic_step (flat vectors, autograd), for the before/after
            "quadratic+LM quad_batch=64 general": Config("q64g", "kfac", dict(q, quad_batch=64, quad_every=1,
                                                                              fast_quadratic=False))}
    l0 = load_average()
    cost = step_costs(args.task, cfgs, rounds=args.rounds)
    print(f"{args.task}: load average {l0:.2f} -> {load_average():.2f}, 1 torch thread, "
          f"{args.rounds} interleaved rounds of 100 steps")
    for name, ms in cost.items():
        print(f"  {name:42s} {ms:7.3f} ms/step  {ms / cost['sgd']:5.2f}x SGD")


if __name__ == "__main__":
    main()
