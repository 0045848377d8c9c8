"""ESS per second of MALA on the 1-D bimodal target (0.5 N(-3,1) + 0.5 N(3,1)): mletui's fused
step (the PyTorch twin on the CPU) against BlackJAX's MALA (jit + vmap over chains) on the CPU.

Two phases, because BlackJAX needs JAX and mletui's venv stays JAX-free:
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


def run_blackjax(chains: int, steps: int, seed: int, out: str) -> None:
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
    x0 = side + jax.random.normal(k_init, (chains,))
    states = jax.vmap(mala.init)(x0)

    @jax.jit
    def sample(states, key):
        def one(states, k):
            keys = jax.random.split(k, chains)
            states, info = jax.vmap(mala.step)(keys, states)
            return states, (states.position[:TRACKED], info.is_accepted.mean())
        return jax.lax.scan(one, states, jax.random.split(key, steps))

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
    c = sub.add_parser("compare")
    c.add_argument("--blackjax", default="/tmp/langevin_blackjax.npz")
    c.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "blackjax":
        run_blackjax(args.chains, args.steps, args.seed, args.out)
    else:
        compare(args.blackjax, args.seed)


if __name__ == "__main__":
    main()
