"""The fast CPU twin compiles a new lattice size in the background: the steps run eagerly
meanwhile, the frame says so, and the switch to the compiled kernels changes no spin (the
same integer hash and float32 comparisons on both paths), so a run does not depend on when
the build finished."""

import os

import pytest
import torch

from mletui.engine.kernels import checkerboard as cb
from mletui.engine.topics.ising import TOPIC

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(os.environ.get("MLETUI_NO_COMPILE", "") not in ("", "0"),
                                 reason="compilation disabled")]


def _run(steps_before, steps_after, wait=None):
    p = TOPIC.resolve({"L": 256, "replicas": 1, "beta": 0.44, "burn_in": 0})
    state = TOPIC.init(p, torch.device("cpu"), seed=9)
    frames = []
    for _ in range(steps_before):
        TOPIC.step(state, p)
    frames.append(TOPIC.observe(state, p))
    if wait is not None:
        wait()
    for _ in range(steps_after):
        TOPIC.step(state, p)
    frames.append(TOPIC.observe(state, p))
    return state.replicas.spins.clone(), frames


def test_a_run_that_switches_to_compiled_kernels_mid_run_has_the_spins_of_an_eager_run(monkeypatch):
    monkeypatch.setattr(cb, "COMPILE_MIN_SITES", 1 << 40)
    eager_spins, eager_frames = _run(3, 3)

    builds = cb._Compiled()
    monkeypatch.setattr(cb, "_COMPILED", builds)
    monkeypatch.setattr(cb, "COMPILE_MIN_SITES", 1)
    spins, (during, after) = _run(3, 3, wait=lambda: builds.wait(timeout=600))
    assert builds.failed is None, builds.failed
    # the first three steps ran eagerly while the build went on, and the frame said so
    assert during.scalars["compiling"] == "compiling for L=256, first time only"
    assert any("compiling the CPU kernels for L=256" in n for n in during.notes)
    assert builds.compiled_calls > 0 and not builds.pending
    assert after.scalars["compiling"] is None
    assert any("ready: switched from eager" in n for n in after.notes)
    # the same spins and the same figures as the run that never compiled
    assert torch.equal(spins, eager_spins)
    for name in ("energy_per_spin", "magnetization_per_spin", "energy_mean", "specific_heat", "acceptance"):
        assert after.scalars[name] == eager_frames[1].scalars[name], name


def test_builds_are_keyed_without_the_replica_count_so_a_changing_population_needs_one():
    a = (torch.zeros(8, 16, 8, dtype=torch.int8), torch.zeros(2, 8, 1, 1, dtype=torch.int32), 0)
    b = (torch.zeros(9, 16, 8, dtype=torch.int8), torch.zeros(2, 9, 1, 1, dtype=torch.int32), 0)
    c = (torch.zeros(9, 32, 16, dtype=torch.int8), torch.zeros(2, 9, 1, 1, dtype=torch.int32), 0)
    assert cb._signature(b) == cb._signature((b[0][:7], b[1][:, :7].contiguous(), 0))
    assert cb._signature(b) != cb._signature(c)                  # another lattice size: another build
    assert cb._signature(a) != cb._signature(a[:2] + (1,))       # another method / flag: another build
