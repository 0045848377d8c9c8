"""What one frame costs against one step, for every topic at its defaults, and
the smallest ``every`` that keeps observing under 10% of a run (Topic.every, the default of
``mletui run --every``).

For each topic, one step and one observe alternate (engine.bench.timing.interleaved: each
figure the median over the rounds, so a load that comes and goes hits both). The state is
first advanced to where observing costs the most: past the burn-in with the ising topic's
R-hat buffer full (its frames sort those draws), and, for the annealing topics, every
observe sees a new beta (a new Kaufman value to compute), as in a run; the other topics are
stepped a few times first (their frames cost the same at any step). CPU kernel builds are
waited for before timing (the compiled kernels are what a long run steps with). With t_step
and t_obs the medians, observing every k steps costs t_obs / (k t_step + t_obs) of the run;
the script prints k_min = 9 t_obs / t_step (10%) and that share at the topic's ``every``.
Usage:

    .venv/bin/python tests/benchmarks/observe_cost.py [--rounds 30] [--threads N]
"""

from __future__ import annotations

import argparse
import math

import mletui.engine  # noqa: F401  (before torch: sets the OpenMP wait policy)
import torch

from mletui.engine.bench import timing
from mletui.engine.kernels import checkerboard
from mletui.engine.topics import all_topics

TOPICS = tuple(all_topics())


def advanced_state(topic, p):
    """A state past the point where a frame costs the most (see the module docstring)."""
    state = topic.init(p, torch.device("cpu"), seed=1)
    if topic.name == "ising":
        ahead = int(p["burn_in"]) + 2 * state.draws.capacity - 1     # buffer about to compact
    else:
        ahead = 5
    for _ in range(ahead):
        topic.step(state, p)
    checkerboard._COMPILED.wait()
    for _ in range(2):
        topic.step(state, p)
    return state


def measure(name: str, rounds: int) -> dict:
    topic = all_topics()[name]
    p = topic.resolve({})
    state = advanced_state(topic, p)
    m = timing.interleaved([lambda: topic.step(state, p), lambda: topic.observe(state, p)],
                           "cpu", rounds=rounds)
    t_step, t_obs = m.timings[0].median, m.timings[1].median
    every = int(getattr(topic, "every", 1))
    return {"topic": name, "t_step_ms": 1e3 * t_step, "t_obs_ms": 1e3 * t_obs,
            "k_min": math.ceil(9.0 * t_obs / t_step), "every": every,
            "share_at_every": t_obs / (every * t_step + t_obs), "load": m.load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("topics", nargs="*", default=list(TOPICS))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {timing.load_average()}")
    print("| topic | step (ms) | observe (ms) | every for < 10% | Topic.every | observing at Topic.every |")
    print("|---|---|---|---|---|---|")
    for name in args.topics:
        r = measure(name, args.rounds)
        print(f"| {r['topic']} | {r['t_step_ms']:.3g} | {r['t_obs_ms']:.3g} | {r['k_min']} | {r['every']} "
              f"| {100 * r['share_at_every']:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
