"""ESS per second of MALA on the 1-D bimodal target (0.5 N(-3,1) + 0.5 N(3,1)): mletui's fused
step (the PyTorch twin on the CPU) against BlackJAX's MALA (jit + vmap over chains) on the CPU.

BlackJAX needs JAX and mletui's venv stays JAX-free, so BlackJAX runs in its own interpreter.
In one run, timed in interleaved rounds by engine/bench/timing.py (BlackJAX as a subprocess
that runs one compiled ``sample`` call per request):
    .venv/bin/python tests/benchmarks/langevin_blackjax.py interleaved --jax-python /tmp/jaxenv/bin/python
Or in two phases (each timed once):
    /tmp/jaxenv/bin/python tests/benchmarks/langevin_blackjax.py blackjax --out /tmp/bj.npz
    .venv/bin/python tests/benchmarks/langevin_blackjax.py compare --blackjax /tmp/bj.npz
Both run ``chains`` chains for ``steps`` steps from exact samples with the same step
(mletui eps = 1.5; BlackJAX's step_size h = eps / 2, since its proposal is
x + h grad log p + sqrt(2h) z), record x of the first 128 chains at every step, and time the
steps only (BlackJAX: the second call of a compiled function). ESS comes from the same
estimator for both (``engine.diagnostics.multichain_ess``): ESS/s = ESS per tracked chain
x chains / seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

EPS = 1.5
TRACKED = 128


def _blackjax_sampler(chains: int, steps: int, seed: int):
    """(sample, states, key): BlackJAX's MALA vmapped over chains, ``steps`` steps in lax.scan."""
    import blackjax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platform_name", "cpu")

    def logdensity(x):
        return jnp.logaddexp(-0.5 * (x - 3.0) ** 2, -0.5 * (x + 3.0) ** 2) - jnp.log(2.0) - 0.5 * jnp.log(2 * jnp.pi)

    mala = blackjax.mala(logdensity, step_size=EPS / 2)
    key = jax.random.PRNGKey(seed)
    k_side, k_init, key = jax.random.split(key, 3)
    side = jnp.where(jax.random.uniform(k_side, (chains,)) < 0.5, -3.0, 3.0)
    states = jax.vmap(mala.init)(side + jax.random.normal(k_init, (chains,)))

    @jax.jit
    def sample(states, key):
        def one(states, k):
            keys = jax.random.split(k, chains)
            states, info = jax.vmap(mala.step)(keys, states)
            return states, (states.position[:TRACKED], info.is_accepted.mean())
        return jax.lax.scan(one, states, jax.random.split(key, steps))
    return sample, states, key


def serve_blackjax(chains: int, steps: int, seed: int) -> None:
    """Line protocol on stdin/stdout for ``interleaved``: prints ``ready`` once compiled (after
    a first untimed run); each ``run`` line runs ``steps`` more steps of the same chains and
    prints ``done``; ``dump PATH`` saves every timed run's trace and acceptance, prints ``saved``."""
    import sys

    import blackjax
    import jax

    sample, states, key = _blackjax_sampler(chains, steps, seed)
    states, (trace, acc) = sample(states, key)
    jax.block_until_ready(trace)
    traces, accs, i = [], [], 0
    print("ready", blackjax.__version__, jax.__version__, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "run":
            i += 1
            states, (trace, acc) = sample(states, jax.random.fold_in(key, i))
            jax.block_until_ready(trace)
            traces.append(trace)
            accs.append(acc)
            print("done", flush=True)
        elif cmd[0] == "dump":
            np.savez(cmd[1], traces=np.stack([np.asarray(t) for t in traces]),
                     acceptance=float(np.mean([np.asarray(a).mean() for a in accs])))
            print("saved", flush=True)
        else:
            break


def interleaved_compare(jax_python: str, chains: int, steps: int, seed: int, rounds: int,
                        substeps: int) -> None:
    """ESS/s of mletui's compiled ``substeps``-step graph, of the eager twin (one step per
    call, the path before it) and of BlackJAX, timed in interleaved rounds in one run; each
    timed call runs ``steps`` steps of the same (continuing) chains."""
    import os
    import subprocess
    import tempfile

    import torch

    from mletui.engine.bench.timing import interleaved
    from mletui.engine.diagnostics import multichain_ess
    from mletui.engine.exact.targets import make_target
    from mletui.engine.kernels import langevin as kern

    target = make_target("bimodal")
    packed = kern.pack_target(target)
    g = torch.Generator().manual_seed(seed)
    runs = {}
    for name in ("fused", "twin"):
        x = target.sample(chains, g).T.contiguous()
        logp, grad = torch.empty(chains), torch.empty_like(x)
        kern.refresh(x, logp, grad, packed)
        runs[name] = (x, logp, grad, torch.zeros(1, dtype=torch.int64), [])
    if steps % substeps:
        raise SystemExit("steps must be a multiple of substeps")

    def ours(name: str, k: int, fused: bool):
        x, logp, grad, acc, traces = runs[name]

        def fn() -> None:
            trace = torch.empty(steps, TRACKED)
            for i in range(0, steps, k):
                kern.langevin_steps(x, logp, grad, EPS, packed, True, k, accept_count=acc, trace=trace,
                                    trace_row=i, generator=g, fused=fused)
            traces.append(trace)
        return fn

    fused, twin = ours("fused", substeps, True), ours("twin", 1, False)
    t0 = time.perf_counter()
    fused()                 # compile (or the compile cache) and warm-up, untimed
    first_s = time.perf_counter() - t0
    twin()
    for name in runs:
        runs[name][3].zero_()
        runs[name][4].clear()
    proc = subprocess.Popen([jax_python, os.path.abspath(__file__), "serve", "--chains", str(chains),
                             "--steps", str(steps), "--seed", str(seed)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = proc.stdout.readline().split()
    if not ready or ready[0] != "ready":
        raise SystemExit(f"the BlackJAX server did not start: {ready}")

    def theirs() -> None:
        proc.stdin.write("run\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"

    m = interleaved([fused, twin, theirs], rounds=rounds, warmup=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bj.npz")
        proc.stdin.write(f"dump {path}\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "saved"
        bj = np.load(path)
        bj_traces, bj_acc = bj["traces"], float(bj["acceptance"])
    proc.stdin.write("quit\n")
    proc.stdin.flush()
    proc.wait(timeout=30)
    ess = {name: float(np.mean([multichain_ess(t) for t in runs[name][4]])) * chains for name in runs}
    ess["blackjax"] = float(np.mean([multichain_ess(torch.as_tensor(t, dtype=torch.float64))
                                     for t in bj_traces])) * chains
    acc = {name: runs[name][3].item() / (chains * steps * rounds) for name in runs}
    acc["blackjax"] = bj_acc
    print(f"chains={chains} steps/call={steps} eps={EPS} rounds={len(m.timings[0].times)} "
          f"torch threads={torch.get_num_threads()} substeps={substeps} "
          f"blackjax {ready[1]} jax {ready[2]} load average {m.load_before:.2f} -> {m.load_after:.2f}")
    print(f"fused: first call (compile or compile cache + {steps} steps) {first_s:.1f} s")
    rate = {}
    for name, t in zip(("fused", "twin", "blackjax"), m.timings):
        rate[name] = ess[name] / t.median
        print(f"{name:9s} median {t.median:7.3f} s (min {t.min:.3f}, max {t.max:.3f})  "
              f"{t.median / steps * 1e6:7.1f} us/step  acceptance {acc[name]:.3f}  "
              f"ESS/round {ess[name]:8.1f}  ESS/s {rate[name]:9.1f}")
    tb = m.timings[2].median
    for name, t in zip(("fused", "twin"), m.timings):
        print(f"ratio {name} / blackjax: time per step {tb / t.median:.2f}x faster, "
              f"ESS/s {rate[name] / rate['blackjax']:.2f}x")


def run_blackjax(chains: int, steps: int, seed: int, out: str) -> None:
    import blackjax
    import jax

    sample, states, key = _blackjax_sampler(chains, steps, seed)
    out_states, (trace, acc) = sample(states, key)   # compile + first run
    jax.block_until_ready(trace)
    t0 = time.perf_counter()
    out_states, (trace, acc) = sample(out_states, jax.random.fold_in(key, 1))
    jax.block_until_ready(trace)
    seconds = time.perf_counter() - t0
    np.savez(out, trace=np.asarray(trace), seconds=seconds, chains=chains, steps=steps,
             acceptance=float(np.asarray(acc).mean()),
             versions=json.dumps({"blackjax": blackjax.__version__, "jax": jax.__version__}))
    print(f"blackjax {blackjax.__version__} jax {jax.__version__}: {steps} steps x {chains} chains "
          f"in {seconds:.3f} s, acceptance {float(np.asarray(acc).mean()):.3f}")


def compare(path: str, seed: int) -> None:
    import torch

    from mletui.engine.exact.targets import make_target
    from mletui.engine.kernels import langevin as kern
    from mletui.engine.diagnostics import multichain_ess

    bj = np.load(path)
    chains, steps = int(bj["chains"]), int(bj["steps"])
    target = make_target("bimodal")
    packed = kern.pack_target(target)
    g = torch.Generator().manual_seed(seed)
    x = target.sample(chains, g).T.contiguous()
    logp, grad = torch.empty(chains), torch.empty_like(x)
    kern.refresh(x, logp, grad, packed)
    trace = torch.empty(steps, TRACKED)
    acc = torch.zeros(1, dtype=torch.int64)
    for i in range(50):  # warm-up, as BlackJAX's timed run follows a first run
        kern.langevin_step(x, logp, grad, EPS, packed, True, generator=g)
    t0 = time.perf_counter()
    for i in range(steps):
        kern.langevin_step(x, logp, grad, EPS, packed, True, accept_count=acc, trace=trace, trace_row=i,
                           generator=g)
    ours_s = time.perf_counter() - t0
    ours_ess = multichain_ess(trace) * chains
    theirs_ess = multichain_ess(torch.as_tensor(bj["trace"], dtype=torch.float64)) * chains
    theirs_s = float(bj["seconds"])
    versions = json.loads(str(bj["versions"]))
    print(f"chains={chains} steps={steps} eps={EPS} torch threads={torch.get_num_threads()}")
    print(f"mletui twin : {ours_s:8.3f} s  acceptance {acc.item() / (chains * steps):.3f}  "
          f"ESS {ours_ess:10.1f}  ESS/s {ours_ess / ours_s:10.1f}")
    print(f"blackjax {versions['blackjax']} (jax {versions['jax']}): {theirs_s:8.3f} s  acceptance "
          f"{float(bj['acceptance']):.3f}  ESS {theirs_ess:10.1f}  ESS/s {theirs_ess / theirs_s:10.1f}")
    print(f"ratio (ESS/s mletui / blackjax): {(ours_ess / ours_s) / (theirs_ess / theirs_s):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("blackjax")
    b.add_argument("--chains", type=int, default=1000)
    b.add_argument("--steps", type=int, default=4000)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", default="/tmp/langevin_blackjax.npz")
    v = sub.add_parser("serve")
    v.add_argument("--chains", type=int, default=1000)
    v.add_argument("--steps", type=int, default=4000)
    v.add_argument("--seed", type=int, default=0)
    i = sub.add_parser("interleaved")
    i.add_argument("--jax-python", default="/tmp/jaxenv/bin/python")
    i.add_argument("--chains", type=int, default=1000)
    i.add_argument("--steps", type=int, default=4000)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--rounds", type=int, default=5)
    i.add_argument("--substeps", type=int, default=16)
    c = sub.add_parser("compare")
    c.add_argument("--blackjax", default="/tmp/langevin_blackjax.npz")
    c.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "blackjax":
        run_blackjax(args.chains, args.steps, args.seed, args.out)
    elif args.cmd == "serve":
        serve_blackjax(args.chains, args.steps, args.seed)
    elif args.cmd == "interleaved":
        interleaved_compare(args.jax_python, args.chains, args.steps, args.seed, args.rounds, args.substeps)
    else:
        compare(args.blackjax, args.seed)


if __name__ == "__main__":
    main()
