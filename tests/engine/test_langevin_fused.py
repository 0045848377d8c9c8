"""Several Langevin steps per call: the compiled graph of ``n_steps`` unrolled steps
(``kern.langevin_steps(..., fused=True)``) against the twin stepped one by one on the same
noise, and the topic's ``substeps``: k steps per engine step are k single steps."""

import pytest
import torch

from mletui.engine.exact.targets import make_target
from mletui.engine.kernels import langevin as kern
from mletui.engine.runner import run
from mletui.engine.topics.langevin import TOPIC, TRACE_CHAINS

N, K = 1000, 3   # the topic's quick chain count, so the topic test below reuses the compiled graph


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _chains(name, seed):
    t = make_target(name)
    g = torch.Generator().manual_seed(seed)
    x = (t.sample(N, g) * 1.3).T.contiguous()
    logp, grad = torch.empty(N), torch.empty_like(x)
    packed = kern.pack_target(t)
    kern.refresh(x, logp, grad, packed)
    return x, logp, grad, packed


@pytest.mark.parametrize("name,step,mala", [("bimodal", 1.5, True), ("banana", 0.05, False)])
def test_fused_steps_equal_the_twin_step_by_step_given_the_same_noise(name, step, mala):
    x, logp, grad, packed = _chains(name, 5)
    a = [x.clone(), logp.clone(), grad.clone()]
    b = [x.clone(), logp.clone(), grad.clone()]
    g = torch.Generator().manual_seed(6)
    z = torch.randn(K, packed.dim, N, generator=g)
    u = torch.rand(K, N, generator=g)
    acc_a, acc_b = torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    # a ring buffer of 4 rows written from row 2: the three steps land in rows 2, 3, 0
    tr_a, tr_b = torch.full((4, TRACE_CHAINS), -7.0), torch.full((4, TRACE_CHAINS), -7.0)
    kern.langevin_steps(*a, step, packed, mala, K, noise=z, uniforms=u if mala else None,
                        accept_count=acc_a, trace=tr_a, trace_row=2, fused=True)
    for i in range(K):
        kern.langevin_step_torch(*b, step, packed, mala, noise=z[i], uniforms=u[i],
                                 accept_count=acc_b, trace=tr_b, trace_row=(2 + i) % 4)
    for p, q in zip(a, b):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-5)
    assert torch.allclose(tr_a, tr_b, rtol=1e-5, atol=1e-5)
    assert torch.equal(tr_a[1], torch.full((TRACE_CHAINS,), -7.0))      # the row not written
    assert torch.allclose(tr_a[0], a[0][0, :TRACE_CHAINS])              # the last step's row
    assert acc_a.item() == acc_b.item()
    if mala:
        assert 0 < acc_a.item() < K * N
    else:
        assert not torch.equal(a[0], x)


def test_substeps_are_single_steps_in_one_call_and_rates_count_langevin_steps():
    base = {"target": "bimodal", "method": "mala", "step_size": 1.5, "chains": N, "init": "exact"}
    one = list(run(TOPIC, 40, {**base, "substeps": 1}, seed=3, every=40))[-1]
    four = list(run(TOPIC, 10, {**base, "substeps": 4}, seed=3, every=10))[-1]
    assert one.arrays["mean"] == four.arrays["mean"]          # same stream, same moves: exact
    assert one.arrays["covariance"] == four.arrays["covariance"]
    for name in ("divergence", "acceptance", "ess_per_chain", "ess_window"):
        assert one.scalars[name] == four.scalars[name], name
    assert four.scalars["ess_window"] == 40                   # one trace row per Langevin step
    p = TOPIC.resolve({**base, "substeps": 4})
    state = TOPIC.init(p, torch.device("cpu"), 3)
    assert TOPIC.work_per_step(state, p) == 4 * N


def test_compiled_substeps_keep_the_every_invariance_and_mala_acceptance():
    params = {"target": "bimodal", "method": "mala", "step_size": 1.5, "chains": N, "init": "exact",
              "substeps": K, "compile": "on"}
    by_one = {f.step: f for f in run(TOPIC, 6, params, seed=4, every=1)}
    for f in run(TOPIC, 6, params, seed=4, every=3):
        ref = by_one[f.step]
        assert f.arrays["mean"] == ref.arrays["mean"]
        assert f.scalars["divergence"] == ref.scalars["divergence"]
    last = by_one[6].scalars
    # BlackJAX's acceptance on this problem is 0.856 (BENCHMARKS.md): the compiled graph is MALA
    big = list(run(TOPIC, 40, params, seed=4, every=40))[-1].scalars
    assert 0.82 < big["acceptance"] < 0.89


def test_compile_on_refuses_more_noise_than_it_draws_at_once_with_one_line():
    from mletui.engine.params import ParamError
    from mletui.engine.topics.langevin import FUSED_MAX_DRAWS

    p = TOPIC.resolve({"compile": "on", "substeps": 16, "chains": FUSED_MAX_DRAWS // 16})
    assert TOPIC.check(dict(p)) == p
    with pytest.raises(ParamError) as err:
        TOPIC.check(dict(p, chains=FUSED_MAX_DRAWS // 16 + 1))
    assert "\n" not in str(err.value) and "compile=on" in str(err.value)
    assert TOPIC.check(dict(p, chains=FUSED_MAX_DRAWS, compile="off"))["chains"] == FUSED_MAX_DRAWS
