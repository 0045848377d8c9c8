"""The kfac topic: one schema for every run, identical starts in compare, divergence
reported (never plotted), live edits reach the optimizers."""

import math

import pytest
import torch

from mletui.engine.runner import run
from mletui.engine.topics import get_topic
from mletui.engine.models.supervised import load_data
from mletui.engine.topics.kfac import TOPIC

SMALL = {"widths": (16, 4), "batch_size": 32, "cg_iters": 20}


def test_kfac_is_registered_and_every_view_source_is_produced():
    assert get_topic("kfac") is TOPIC
    frames = list(run(TOPIC, 3, params=dict(SMALL, t_inv=1, t_cov=1), seed=0, device="cpu"))
    last = frames[-1]
    for view in TOPIC.views:
        if view.source:
            assert view.source in last.views, view.source
        for name in view.series:
            if not name.startswith("val_accuracy"):    # accuracy only for classification
                assert name in last.scalars, name


def test_compare_runs_start_from_identical_weights_and_see_the_same_batches():
    p = TOPIC.resolve(dict(SMALL, task="digits_mlp"))
    state = TOPIC.init(p, torch.device("cpu"), seed=3)
    names = [r.name for r in state.runs]
    assert names == ["kfac_true", "kfac_empirical", "sgd", "adam", "ngd"]    # ngd: 1,158 parameters
    ref = state.runs[0].model.state_dict()
    for r in state.runs[1:]:
        for k, v in r.model.state_dict().items():
            assert torch.equal(v, ref[k])
            assert v.data_ptr() != ref[k].data_ptr()         # copies, not shared tensors
    # the first step's loss is taken before any update: equal weights + equal batch => equal losses
    TOPIC.step(state, p)
    frame = TOPIC.observe(state, p)
    losses = [frame.scalars[f"loss_{n}"] for n in names]
    assert max(losses) - min(losses) < 1e-6
    TOPIC.step(state, p)
    frame = TOPIC.observe(state, p)
    assert len({round(frame.scalars[f"loss_{n}"], 6) for n in names}) == 5   # then they part


def test_single_optimizer_run_uses_the_compare_schema_and_fisher_switches_live():
    frames = list(run(TOPIC, 2, params=dict(SMALL, optimizer="kfac", fisher="true"), seed=1, device="cpu"))
    keys = {k for k, v in frames[-1].scalars.items() if v is not None}
    assert {"loss_kfac_true", "val_loss_kfac_true", "step_time_kfac_true", "damping_kfac_true",
            "kl_kfac_true", "skipped_kfac_true"} <= keys
    assert not any(k.endswith(("_sgd", "_adam", "_empirical", "_ngd")) for k in keys)   # only None there
    p = TOPIC.resolve(dict(SMALL, optimizer="kfac"))
    state = TOPIC.init(p, torch.device("cpu"), seed=1)
    TOPIC.step(state, p)
    p["fisher"] = "empirical"
    TOPIC.on_edit(state, p, ["fisher"])
    TOPIC.step(state, p)
    frame = TOPIC.observe(state, p)
    assert state.runs[0].opt.group["fisher"] == "empirical"
    assert frame.scalars["loss_kfac_empirical"] > 0 and frame.scalars["loss_kfac_true"] is None


def test_live_edits_reach_every_optimizer():
    p = TOPIC.resolve(SMALL)
    state = TOPIC.init(p, torch.device("cpu"), seed=2)
    p.update(lr=0.05, lr_sgd=0.7, lr_adam=1e-4, damping=0.3, t_inv=7)
    TOPIC.on_edit(state, p, ["lr", "lr_sgd", "lr_adam", "damping", "t_inv"])
    by = {r.name: r.opt for r in state.runs}
    assert by["sgd"].param_groups[0]["lr"] == 0.7 and by["adam"].param_groups[0]["lr"] == 1e-4
    for n in ("kfac_true", "kfac_empirical"):
        assert by[n].group["lr"] == 0.05 and by[n].damping == 0.3 and by[n].group["t_inv"] == 7


def test_divergence_is_reported_and_the_loss_never_plotted_as_nan():
    frames = list(run(TOPIC, 20, params=dict(SMALL, task="teacher_student", lr_sgd=100.0, momentum=0.99),
                      seed=0, device="cpu", every=1))
    last = frames[-1]
    assert last.scalars["diverged_sgd"] is True
    assert last.scalars["loss_sgd"] is None
    assert any("sgd: non-finite training loss" in n for f in frames for n in f.notes)
    for f in frames:
        for k, v in f.scalars.items():
            if isinstance(v, float):
                assert math.isfinite(v), k
    assert last.scalars["diverged_kfac_true"] is False and math.isfinite(last.scalars["loss_kfac_true"])


def test_data_split_is_seeded_and_disjoint():
    a, b = load_data("digits_mlp", 5, torch.device("cpu")), load_data("digits_mlp", 5, torch.device("cpu"))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert a.x_train.shape[0] + a.x_val.shape[0] == 1797
    train = {tuple(r.tolist()) + (int(l),) for r, l in zip(a.x_train, a.y_train)}
    val = {tuple(r.tolist()) + (int(l),) for r, l in zip(a.x_val, a.y_val)}
    assert len(val - train) > 0.9 * len(val)    # (digits has a few duplicate images)


def test_the_frame_before_any_step_reports_no_loss_and_no_divergence():
    p = TOPIC.resolve(SMALL)
    state = TOPIC.init(p, torch.device("cpu"), seed=0)
    frame = TOPIC.observe(state, p)               # the runner publishes this one at init
    assert not any(frame.scalars[f"diverged_{n}"] for n in ("kfac_true", "kfac_empirical", "sgd", "adam"))
    assert frame.scalars["loss_sgd"] is None
    TOPIC.step(state, p)
    frame = TOPIC.observe(state, p)
    assert math.isfinite(frame.scalars["loss_sgd"]) and not frame.scalars["diverged_sgd"]


def test_divergence_is_decided_in_the_step_that_sees_it_and_observe_changes_nothing():
    p = TOPIC.resolve(dict(SMALL, task="teacher_student", lr_sgd=100.0, momentum=0.99))
    state = TOPIC.init(p, torch.device("cpu"), seed=0)
    sgd = next(r for r in state.runs if r.name == "sgd")
    for _ in range(20):                       # no observe in between
        TOPIC.step(state, p)
        if sgd.diverged:
            break
    assert sgd.diverged and state.steps < 20
    at = state.steps
    assert state.notes == [f"sgd: non-finite training loss at step {at}; run stopped (lower lr_sgd)"]
    params = [t.clone() for t in sgd.model.parameters()]
    for _ in range(3):
        TOPIC.step(state, p)                  # a stopped run is not stepped again
    assert all(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True) for a, b in zip(params, sgd.model.parameters()))
    first, second = TOPIC.observe(state, p), TOPIC.observe(state, p)
    state_names = [k for k in first.scalars if not k.startswith(("loss_", "step_time_"))]
    assert state_names and {k: first.scalars[k] for k in state_names} == {k: second.scalars[k] for k in state_names}
    assert first.scalars["diverged_sgd"] is True and not second.notes


def test_state_table_cells_are_numbers_or_none_never_preformatted_text():
    p = TOPIC.resolve(dict(SMALL, t_inv=3))
    state = TOPIC.init(p, torch.device("cpu"), seed=0)
    before = TOPIC.observe(state, p).views["kfac_state"]["rows"]
    # before the first eigendecomposition: no condition number and no KL, as None
    assert [row[2:5] for row in before] == [[None, None, None]] * 2
    for _ in range(4):
        TOPIC.step(state, p)
    after = TOPIC.observe(state, p).views["kfac_state"]["rows"]
    for row in before + after:
        assert isinstance(row[0], str)
        assert all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in row[1:]), row
    assert all(isinstance(v, float) and v >= 1.0 for row in after for v in row[2:4])    # condition numbers


def test_compare_runs_ngd_up_to_20000_parameters_and_says_why_it_is_absent_above():
    from mletui.engine.models.supervised import parameter_count

    assert parameter_count("digits_mlp", (128, 64, 16)) == 17_786
    assert parameter_count("digits_autoencoder", (128, 64, 16)) == 35_280
    mlp = TOPIC.init(TOPIC.resolve({"task": "digits_mlp"}), torch.device("cpu"), seed=0)
    assert [r.name for r in mlp.runs][-1] == "ngd" and not mlp.notes
    assert sum(p.numel() for p in mlp.runs[-1].model.parameters()) == 17_786
    ae = TOPIC.init(TOPIC.resolve({}), torch.device("cpu"), seed=0)
    assert "ngd" not in [r.name for r in ae.runs]
    assert ae.notes == ["ngd left out of compare: the model has 35,280 parameters (> 20,000); "
                        "its exact Fisher solve per step would dominate the run"]
    alone = TOPIC.init(TOPIC.resolve({"optimizer": "ngd"}), torch.device("cpu"), seed=0)
    assert [r.name for r in alone.runs] == ["ngd"]                     # asked for: it runs


def test_every_run_reports_the_kl_it_moved_and_ngd_moves_its_budget():
    p = TOPIC.resolve(dict(SMALL, task="digits_mlp", kl_budget=1e-5, cg_iters=200))
    state = TOPIC.init(p, torch.device("cpu"), seed=4)
    for _ in range(3):
        TOPIC.step(state, p)
        frame = TOPIC.observe(state, p)
        assert frame.scalars["kl_step_ngd"] == pytest.approx(1e-5, rel=0.1)
        assert frame.scalars["kl_budget"] == 1e-5 and frame.scalars["cg_iterations_ngd"] >= 1
        for n in ("kfac_true", "kfac_empirical", "sgd", "adam"):
            assert frame.scalars[f"kl_step_{n}"] > 0
    # the KL reported is the one between the predictive distributions around the last step
    from mletui.engine.optim.likelihoods import get_likelihood

    gen = torch.Generator().manual_seed(0)
    gen.set_state(state.gen.get_state())                  # the batch the next step draws
    idx = torch.randint(0, state.data.x_train.shape[0], (p["batch_size"],), generator=gen)
    x = state.data.x_train[idx]
    with torch.no_grad():
        before = {r.name: r.model(x) for r in state.runs}
    TOPIC.step(state, p)
    frame = TOPIC.observe(state, p)
    for r in state.runs:
        with torch.no_grad():
            moved = float(get_likelihood("categorical").kl(before[r.name], r.model(x)))
        assert frame.scalars[f"kl_step_{r.name}"] == pytest.approx(moved, rel=1e-5), r.name


def test_fisher_error_is_refreshed_every_t_inv_steps_in_the_step():
    p = TOPIC.resolve(dict(SMALL, task="digits_mlp", optimizer="kfac", t_cov=1, t_inv=3, fisher_batch=16))
    frames = list(run(TOPIC, 7, params=p, seed=0, device="cpu", every=1))
    errs = [f.scalars["fisher_error_kfac_true"] for f in frames]
    assert errs[0] == errs[1] == errs[2] != errs[3] == errs[4] == errs[5] != errs[6]   # steps 1, 4, 7
    assert all(0 < e < 10 for e in errs)
    per_layer = [k for k in frames[-1].scalars if k.startswith("fisher_error_kfac_true_")]
    assert per_layer == [f"fisher_error_kfac_true_{i}" for i in range(3)]
    blocks = frames[-1].views["fisher_blocks"]
    z = blocks["z"]
    assert len(z) == 48 and len(z[0]) == 2 * 48 + 1 and all(math.isnan(row[48]) for row in z)
    assert blocks["gutters"] == sum(math.isnan(v) for row in z for v in row) == 48   # the gap is layout
    assert "step 7" in blocks["caption"] and "16 examples" in blocks["caption"]
