"""The CPU path against its baselines, quiet and beside a defined synthetic load (issue 14).

The synthetic load is two busy processes (pure-Python spin loops, one per core of the
2-core machine) started before a measurement and killed after it. Each measurement is a
fresh child process, because libgomp reads ``OMP_WAIT_POLICY`` once, when torch loads it:
the child sets the arm's environment, imports torch *before* mletui (so mletui's own
``setdefault`` cannot change the arm), then times with :func:`engine.bench.timing.interleaved`,
engine and baseline alternating call by call, and prints ratios as JSON lines.

Arms:  default    OMP_WAIT_POLICY unset (libgomp spins ~300k iterations, then sleeps)
       passive    OMP_WAIT_POLICY=PASSIVE (an idle OpenMP thread sleeps at once)
       threads1   OMP_WAIT_POLICY unset, torch.set_num_threads(1)

Cases (each engine side against its baseline in the same process):
  ising sweep   checkerboard.sweep L=512 metropolis (compiled fast twin) vs the naive eager
                checkerboard (what `mletui bench ising` reports, at a size this shared
                2-core machine can time in seconds)
  ising run     the `mletui run ising` loop: 10 topic steps then one observe, L=512, vs 10
                naive sweeps
  em iteration  TOPIC.em_step vs scikit-learn's _e_step + _m_step, N=5,000 D=8 K=16 full
                float64 (`mletui bench em`'s case, smaller)
  em run        the `mletui run em` loop: 5 x (TOPIC.step + observe) vs 5 scikit-learn iterations

Rounds cycle quiet / loaded and rotate the arm order, so a change of the machine's own load
hits every arm. Usage:

    .venv/bin/python tests/benchmarks/under_load.py [--reps 2] [--arms default,passive,threads1]
        [--cases ising_sweep,ising_run,em_iter,em_run] [--conditions quiet,loaded] [--busy 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ARMS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "threads1": {}}
SPIN = "while True:\n    pass\n"


def child(arm: str, cases: list[str]) -> None:
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")   # what libgomp reads (mletui sets it later)
    import torch                                   # first: libgomp reads the arm's policy now

    if arm == "threads1":
        torch.set_num_threads(1)
    import warnings

    import numpy as np

    from mletui.engine.bench import timing
    from mletui.engine.bench.em import _blobs
    from mletui.engine.kernels import checkerboard
    from mletui.engine.models.ising import uniform_spins
    from mletui.engine.topics.em import TOPIC as EM
    from mletui.engine.topics.ising import TOPIC as ISING

    cpu = torch.device("cpu")
    out = {"arm": arm, "policy": policy,
           "threads": torch.get_num_threads()}

    def emit(case: str, m: timing.Measurement) -> None:
        e, b = m.timings[0].median, m.timings[1].median
        print(json.dumps({**out, "case": case, "engine_s": e, "baseline_s": b, "ratio": b / e,
                          "load": m.load}), flush=True)

    if any(c.startswith("ising") for c in cases):
        L, beta = 512, 0.44
        with checkerboard.foreground_builds():
            spins = uniform_spins(1, L, torch.Generator().manual_seed(0))
            naive_s = {"s": spins.to(torch.float32)}
            masks = checkerboard.colour_masks(L, cpu)
            ctr = [0]

            def sweep() -> None:
                checkerboard.sweep(spins, beta, 0.0, "metropolis", seed=1, counter=ctr[0])
                ctr[0] += 2

            def naive(n: int = 1) -> None:
                for _ in range(n):
                    naive_s["s"] = checkerboard.sweep_naive(naive_s["s"], beta, 0.0, "metropolis", masks)

            if "ising_sweep" in cases:
                emit("ising sweep L=512", timing.interleaved([sweep, naive], cpu, rounds=10, min_time=1.5))
            if "ising_run" in cases:
                p = ISING.resolve({"L": L, "replicas": 1, "burn_in": 0})
                st = ISING.init(p, cpu, seed=1)
                ISING.step(st, p)

                def run10() -> None:
                    for _ in range(10):
                        ISING.step(st, p)
                    ISING.observe(st, p)

                emit("ising run L=512 (10 steps + observe)",
                     timing.interleaved([run10, lambda: naive(10)], cpu, rounds=3, min_time=1.5))

    if any(c.startswith("em") for c in cases):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        n, d, k = 5_000, 8, 16
        pts = _blobs(n, d, k)
        p = EM.default_params()
        p.update(K=k, covariance="full", dtype="float64", mode="em", init="kmeans++", reseed=True,
                 dataset="blobs", n_points=n, tol=0.0, max_iter=10**6)
        st = EM.state_from_points(pts, p, cpu, seed=0)
        w0, m0, c0, _ = (t.double().cpu().numpy() for t in st.init_params)
        gm = GaussianMixture(n_components=k, covariance_type="full", tol=0.0, reg_covar=p["reg_covar"],
                             weights_init=w0, means_init=m0 + st.center, precisions_init=np.linalg.inv(c0),
                             init_params="random", random_state=0, max_iter=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(pts)

        def sk(reps: int = 1) -> None:
            for _ in range(reps):
                _, log_resp = gm._e_step(pts)
                gm._m_step(pts, log_resp)

        def run5() -> None:
            for _ in range(5):
                EM.step(st, p)
                EM.observe(st, p)

        if "em_iter" in cases:
            emit("em iteration N=5000 K=16 float64",
                 timing.interleaved([lambda: EM.em_step(st, p), sk], cpu, rounds=6, min_time=1.5))
        if "em_run" in cases:
            emit("em run N=5000 K=16 float64 (5 x step + observe)",
                 timing.interleaved([run5, lambda: sk(5)], cpu, rounds=3, min_time=1.5))


def spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", metavar="ARM")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--arms", default="default,passive,threads1")
    ap.add_argument("--cases", default="ising_sweep,ising_run,em_iter,em_run")
    ap.add_argument("--busy", type=int, default=2, help="busy processes in the loaded rounds")
    ap.add_argument("--conditions", default="quiet,loaded", help="quiet and/or loaded rounds")
    args = ap.parse_args()
    cases = args.cases.split(",")
    if args.child:
        child(args.child, cases)
        return
    arms = args.arms.split(",")
    rows = []
    for rep in range(args.reps):
        for loaded in [c == "loaded" for c in args.conditions.split(",")]:
            procs = spinners(args.busy) if loaded else []
            try:
                time.sleep(2.0 if loaded else 0.0)
                order = arms[rep % len(arms):] + arms[:rep % len(arms)]
                for arm in order:
                    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
                    env.update(ARMS[arm])
                    la0 = os.getloadavg()[0]
                    res = subprocess.run([sys.executable, __file__, "--child", arm, "--cases", args.cases],
                                         env=env, capture_output=True, text=True, check=True)
                    for line in res.stdout.splitlines():
                        row = {**json.loads(line), "loaded": loaded, "rep": rep,
                               "load_start": la0, "load_end": os.getloadavg()[0]}
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
            finally:
                stop(procs)
    print("ratios and seconds per call, one value per rep (median in brackets)\n")
    print("| case | arm | quiet ratio | loaded ratio | quiet engine s | loaded engine s | "
          "quiet baseline s | loaded baseline s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for case in dict.fromkeys(r["case"] for r in rows):
        for arm in arms:
            def cell(loaded: bool, key: str, fmt: str) -> str:
                vals = [r[key] for r in rows if r["case"] == case and r["arm"] == arm and r["loaded"] == loaded]
                if not vals:
                    return "-"
                return " / ".join(format(v, fmt) for v in vals) + f" ({format(statistics.median(vals), fmt)})"
            print(f"| {case} | {arm} | {cell(False, 'ratio', '.2f')} | {cell(True, 'ratio', '.2f')} | "
                  f"{cell(False, 'engine_s', '.4f')} | {cell(True, 'engine_s', '.4f')} | "
                  f"{cell(False, 'baseline_s', '.4f')} | {cell(True, 'baseline_s', '.4f')} |")
    loads = [(r["load_start"], r["load_end"]) for r in rows]
    print(f"\nload average (1 min) over the run: {min(min(x) for x in loads):.1f}-{max(max(x) for x in loads):.1f}")


if __name__ == "__main__":
    main()
