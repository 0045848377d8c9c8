"""Boltzmann machines learned by maximum likelihood, live, against ground truth.

Models (engine.models.boltzmann): the fully visible machine (``model=fvbm``, ±1 spins, dense
couplings or the L x L torus's bonds, ``graph``) and the restricted one (``model=rbm``, 0/1
units, ``hidden`` hidden units). Data (engine.boltzmann_data): a planted SK teacher, the planted
Ising lattice, bars and stripes, the binarised digits, a user's file. Methods
(engine.models.boltzmann_learning): exact, pcd, cd, pl, mpf; ``method=compare`` runs every
method that applies from one initialisation on the same mini-batches. One step is one
parameter update of every run.

Every ``eval_every`` updates (and at update 0) each run's parameters are snapshotted and ln Z
is taken three ways on that snapshot: exactly by enumeration where <= 20 units are enumerated,
by AIS and by population annealing over the same ladder (engine.models.boltzmann_annealing,
with the evaluation's own random stream); the log-likelihoods follow from the exact value
where there is one, else from AIS. An evaluation is a job (learning.evaluation: a generator
over its units of work: each chunk of 2^14 states of the exact enumeration, each AIS and
each PA ladder step) that ``step`` advances: with
``eval_slice = 0`` (the default, headless) all of it inside the update it is due at; with
``eval_slice = n`` (the app's setting, ``interactive``) n units per update, so the stream of
updates never stalls, the figures appearing some updates later with ``eval_update`` naming
their snapshot (an evaluation due while one is in progress is skipped, and counted). The
jobs draw the evaluation stream in the same order either way, so the figures are the same;
everything is decided in ``step`` and is reproducible for a seed; ``observe`` only reads.

Frame scalars, unsuffixed in a single-method run and suffixed ``_<method>`` in compare mode:
    log_likelihood, log_likelihood_heldout   mean log q(x) per sample, train / held out
    log_likelihood_stderr                    AIS's standard error, when ln Z is estimated
    log_likelihood_kind                      "exact" or "ais"
    log_z                                    the ln Z used (exact, else AIS)
    log_z_exact, log_z_ais, log_z_ais_stderr, log_z_pa, log_z_pa_stderr   on one snapshot
    pa_ess_fraction, pa_families_fraction    population annealing's mean ESS / R, families / R
    coupling_rmse, coupling_relative_error   learned vs teacher couplings over the allowed pairs
                                             (fvbm, planted data): RMSE and |J - J*| / |J*|
    kl_data_model                            KL(data || model), exact (enumerable models)
    reconstruction_error                     mean-field one-step reconstruction MSE (train)
    eval_update                              the update whose snapshot the figures above describe
    epochs, updates, wall_s                  passes over the training set, updates, update seconds
    chain_energy                             the chains' mean energy per unit now
    flip_rate, update_ms                     window: units flipped per unit per Gibbs step, ms per update
    (wall_s and update_ms are timings: listed in window_scalars, as throughput is)
Unsuffixed always: eval_progress, eval_running, evals_skipped (the evaluation in progress: the
fraction done, its snapshot's update or -1, evaluations skipped), log_likelihood_best (-H(data) when every row is distinct: bars and stripes),
log_likelihood_teacher (planted, where the teacher's ln Z is known), updates_per_s and
chain_sweeps_per_s (window).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .. import boltzmann_data as bdata
from ..exact import boltzmann as exact
from ..models import boltzmann_learning as learning
from ..models.boltzmann import FVBM, RBM, Stream
from ..models.ising import check_even
from ..params import Param, ParamError
from ..topic import Frame, Scalar, Topic, View

METHOD_CHOICES = learning.METHODS + ("compare",)
DTYPES = {"auto": None, "float64": torch.float64, "float32": torch.float32}
EVAL_HISTORY = 400
TRACE_HISTORY = 2000


# (name, label, unit, meaning) of each run's scalars: unsuffixed in a single-method run,
# suffixed _<method> in compare mode (described by the patterns NAME_*, longest first).
_RUN_SCALARS = (
    ("log_likelihood", "log-likelihood", "nats", "mean log q(x) per training sample (exact ln Z, else AIS)"),
    ("log_likelihood_heldout", "held-out log-likelihood", "nats", "mean log q(x) per held-out sample"),
    ("log_likelihood_stderr", "log-likelihood s.e.", "nats", "AIS's standard error, when ln Z is estimated"),
    ("log_likelihood_kind", "log-likelihood from", "", "exact (enumeration) or ais"),
    ("log_z", "ln Z", "", "the ln Z the log-likelihoods use: exact, else AIS"),
    ("log_z_exact", "ln Z exact", "", "ln Z by streaming enumeration (<= 20 enumerated units)"),
    ("log_z_ais", "ln Z (AIS)", "", "annealed importance sampling on the same parameter snapshot"),
    ("log_z_ais_stderr", "ln Z AIS s.e.", "", "sd(w) / (sqrt(R) mean w), carried to the log"),
    ("log_z_pa", "ln Z (PA)", "", "population annealing over the same ladder, same snapshot"),
    ("log_z_pa_stderr", "ln Z PA s.e.", "", "standard error from 8 independent populations"),
    ("pa_ess_fraction", "PA ESS / R", "", "mean over steps and populations of the weights' ESS / R"),
    ("pa_families_fraction", "PA families / R", "", "surviving beta = 0 ancestors per population / R"),
    ("coupling_rmse", "coupling RMSE", "", "learned vs teacher couplings over the allowed pairs (planted fvbm)"),
    ("coupling_relative_error", "coupling relative error", "", "|J - J*| / |J*| over the allowed pairs"),
    ("kl_data_model", "KL(data || model)", "nats", "exact, from the enumerated ln Z"),
    ("reconstruction_error", "reconstruction error", "", "MSE of the mean-field one-step reconstruction of the training set"),
    ("eval_update", "evaluated at update", "", "the update whose parameter snapshot the ln Z figures describe"),
    ("epochs", "epochs", "", "passes over the training set"),
    ("updates", "updates", "", "parameter updates of this run"),
    ("wall_s", "update time", "s", "seconds spent in this run's updates"),
    ("chain_energy", "chain energy", "", "the chains' mean E(s)/N (fvbm) or F(v)/nv (rbm)"),
    ("flip_rate", "flip rate", "", "window: units flipped per unit per Gibbs step of the chains"),
    ("update_ms", "update time", "ms", "mean milliseconds per update"),
)
_SCALARS = (
    tuple(Scalar(*row) for row in _RUN_SCALARS)
    + tuple(Scalar(f"{n}_*", f"{label} ({{}})", unit, text)
            for n, label, unit, text in sorted(_RUN_SCALARS, key=lambda r: -len(r[0])))
    + (Scalar("log_likelihood_best", "best log-likelihood", "nats", "-H(data) where every row is distinct (bars and stripes)"),
       Scalar("log_likelihood_teacher", "teacher's log-likelihood", "nats", "the planted teacher's own, where its ln Z is known"),
       Scalar("eval_progress", "evaluation progress", "", "fraction done of the ln Z evaluation in progress (1: none)"),
       Scalar("eval_running", "evaluating update", "", "the update whose snapshot is being evaluated (-1: none)"),
       Scalar("evals_skipped", "evaluations skipped", "", "evaluations due while the previous one was still running"),
       Scalar("updates_per_s", "updates/s", "1/s", "window: parameter updates per second, all runs"),
       Scalar("chain_sweeps_per_s", "chain-sweeps/s", "1/s", "window: chains x Gibbs steps per second, all runs"))
)


@dataclass
class State:
    data: bdata.BinaryData
    train_bits: torch.Tensor
    heldout_bits: torch.Tensor | None
    train: torch.Tensor                     # training rows in the model's units, on the device
    learners: list[learning.Learner]
    batch_gen: torch.Generator
    eval_stream: Stream
    base: FVBM | RBM                        # the initialisation every run started from
    device: torch.device
    shuffled: torch.Tensor | None = None    # the training rows in this epoch's order
    cursor: int = 0
    views: tuple[int, int, tuple[torch.Tensor, ...]] | None = None   # (size, first row, batches)
    updates: int = 0
    samples: int = 0
    teacher_theta: torch.Tensor | None = None   # teacher couplings over the learner's pairs
    rmse: dict = field(default_factory=dict)    # method -> [(update, wall_s, 0-d rmse tensor)]
    notes: list = field(default_factory=list)
    mark: tuple = (0.0, 0, 0.0)                 # (time, updates, chain sweeps) at the last frame
    sweeps: float = 0.0
    references: dict = field(default_factory=dict)  # log_likelihood_best / _teacher, fixed by the data
    jobs: list = field(default_factory=list)    # the evaluation in progress: [(learner, update, wall_s, job)]
    job_done: int = 0                           # its units of work done, of job_total
    job_total: int = 0
    eval_running: int = -1                      # the update it describes (-1: none in progress)
    evals_skipped: int = 0                      # evaluations due while one was still in progress


class BoltzmannTopic(Topic):
    name = "boltzmann"
    title = "Boltzmann machines"
    order = 80
    summary = "learning fvbm / rbm: exact gradient, PCD, CD-k, pseudo-likelihood, MPF; ln Z exact, AIS, PA"
    step_unit = "parameter update"
    params = (
        Param("model", "choice", "rbm", "fvbm (±1 spins) or rbm (0/1 visible and hidden)",
              choices=("fvbm", "rbm"), live=False),
        Param("graph", "choice", "dense", "fvbm couplings: every pair, or the L x L torus bonds",
              choices=("dense", "lattice"), live=False),
        Param("optimizer", "choice", "sgd", "SGD with momentum, or L-BFGS on the full batch (exact, pl, mpf)",
              choices=("sgd", "lbfgs"), live=False),
        Param("n_visible", "int", 16, "N of the planted fvbm teacher (other data sets fix the size)",
              lo=2, hi=4096, log=True, live=False),
        Param("hidden", "int", 16, "rbm hidden units", lo=1, hi=4096, log=True, live=False),
        Param("dataset", "choice", "bars_stripes", "the training data", choices=bdata.DATASETS, live=False),
        Param("data", "path", "", "a .npy / .npz / .csv of 0/1 or ±1 rows (implies dataset=file)", live=False),
        Param("n_samples", "int", 10_000, "planted: training samples drawn from the teacher",
              lo=10, hi=1_000_000, log=True, live=False),
        Param("teacher_beta", "float", 1.0, "planted: SK coupling scale beta, or the lattice's inverse temperature",
              lo=0.0, hi=5.0, step=0.1, live=False),
        Param("teacher_seed", "int", 0, "planted: the teacher's and its samples' seed", lo=0, hi=2**31 - 1, live=False),
        Param("method", "choice", "pcd", "learning rule; compare runs every one that applies",
              choices=METHOD_CHOICES),
        Param("k", "int", 1, "CD-k: Gibbs steps from the data", lo=1, hi=1000, log=True),
        Param("chains", "int", 100, "persistent chains (pcd; the sample view for every method)",
              lo=1, hi=1_000_000, log=True, live=False),
        Param("gibbs_steps", "int", 1, "Gibbs steps of the persistent chains per update", lo=1, hi=1000, log=True),
        Param("lr", "float", 0.05, "SGD learning rate", lo=1e-6, hi=100.0, log=True),
        Param("momentum", "float", 0.5, "SGD momentum", lo=0.0, hi=0.999, step=0.05),
        Param("weight_decay", "float", 0.0, "L2 decay of the couplings (J or W)", lo=0.0, hi=1.0, step=1e-4),
        Param("batch_size", "int", 100, "rows per update (>= the training set: full batch)",
              lo=1, hi=1_000_000, log=True),
        Param("eval_every", "int", 200, "updates between ln Z evaluations (exact, AIS, PA)",
              lo=1, hi=1_000_000, log=True),
        Param("eval_slice", "int", 0, "evaluation work per update, in AIS / PA ladder steps or chunks of "
              "2^14 enumerated states (0: the whole "
              "evaluation inside the update it is due at; the app uses 20)", lo=0, hi=1_000_000, log=False),
        Param("ais_runs", "int", 100, "AIS runs (population annealing: 8 populations of ais_runs/4)",
              lo=2, hi=100_000, log=True),
        Param("ais_betas", "int", 1000, "intermediate distributions of the AIS / PA ladder",
              lo=1, hi=100_000, log=True),
        Param("dtype", "choice", "auto", "parameters, chains and updates: auto is float32 on CUDA, float64 on "
              "the CPU (the ln Z evaluations are float64 whatever this is)", choices=tuple(DTYPES), live=False),
        Param("bas_size", "int", 3, "bars and stripes: n x n images (3: 14 patterns, 4: 30)", lo=2, hi=6,
              live=False),
        Param("L", "int", 4, "lattice side (graph=lattice, planted_lattice)", lo=4, hi=64, live=False,
              check=check_even),
    )
    views = (
        View("plot", "log-likelihood per sample (train, held out)", source="ll_curves"),
        View("table", "ln Z on one snapshot: exact, AIS, PA", source="log_z_table"),
        View("table", "methods", source="methods"),
        View("plot", "coupling RMSE vs update seconds", source="rmse_curves"),
        View("heatmap", "learned couplings | teacher (fvbm) or filters (rbm)", source="weights"),
        View("heatmap", "model samples (the chains)", source="samples"),
        View("plot", "<x_i x_j>: data vs model chains", source="correlations"),
        View("plot", "chain energy per unit", source="chain_energy"),
    )
    quick = {"eval_every": 5, "ais_runs": 16, "ais_betas": 40, "chains": 20, "batch_size": 7}
    interactive = {"eval_slice": 20}
    window_scalars = ("flip_rate*", "update_ms*", "wall_s*", "updates_per_s", "chain_sweeps_per_s")
    every = 50    # a frame (chain energy, flip rate, tables) ~ 4.5 updates at the defaults: ~8% (BENCHMARKS.md)
    scalars = _SCALARS

    # -- params ------------------------------------------------------------------------------
    def check(self, p: dict[str, Any], changed: Sequence[str] = ()) -> dict[str, Any]:
        if "data" in changed and p["data"]:
            p = {**p, "dataset": "file"}
        if p["dataset"] == "file" and not p["data"]:
            raise ParamError("dataset=file needs data=PATH (a .npy, .npz or .csv of 0/1 or ±1 rows)")
        n = bdata.units_of(p)
        if p["model"] == "fvbm" and p["graph"] == "lattice" and n != p["L"] ** 2:
            raise ParamError(f"graph=lattice needs L^2 units: the data have {n}, L = {p['L']} gives {p['L'] ** 2}")
        enumerated = n if p["model"] == "fvbm" else min(n, p["hidden"])
        if p["method"] == "exact" and enumerated > exact.MAX_UNITS:
            side = f"N = {n}" if p["model"] == "fvbm" else f"min(nv, hidden) = min({n}, {p['hidden']}) = {enumerated}"
            raise ParamError(f"method=exact enumerates at most {exact.MAX_UNITS} units; this {p['model']} has {side}")
        if p["optimizer"] == "lbfgs" and p["method"] in learning.SAMPLING:
            raise ParamError(f"optimizer=lbfgs needs a deterministic full-batch objective (exact, pl, mpf), "
                             f"not method={p['method']}")
        return p

    def run_methods(self, p: Mapping[str, Any], model: FVBM | RBM) -> list[str]:
        if p["method"] == "compare":
            return [m for m in learning.METHODS if learning.applies(m, model)]
        return [p["method"]]

    # -- contract ------------------------------------------------------------------------------
    def init(self, p: Mapping[str, Any], device: torch.device, seed: int) -> State:
        data = bdata.load(dict(p), seed)
        dtype = DTYPES[p["dtype"]] or (torch.float32 if device.type == "cuda" else torch.float64)
        gen = torch.Generator().manual_seed(int(seed))
        n = data.units
        if p["model"] == "rbm":
            base: FVBM | RBM = RBM.init(n, p["hidden"], gen, dtype, device)
        else:
            base = FVBM.zeros(n, p["graph"], p["L"] if p["graph"] == "lattice" else None, dtype, device)
        train_bits = data.train.to(device=device, dtype=dtype)
        heldout = data.heldout.to(device=device, dtype=dtype) if data.heldout is not None else None
        train = learning.to_units(base, train_bits)
        start = train[torch.randint(0, train.shape[0], (p["chains"],), generator=gen).to(device)]
        state = State(data, train_bits, heldout, train, [], gen, Stream.new(seed + 7919, device), base, device)
        for k, method in enumerate(self.run_methods(p, base)):
            state.learners.append(self._learner(method, base, start, p, Stream.new(seed * 64 + k + 1, device)))
        if data.teacher is not None and isinstance(base, FVBM):
            J = data.teacher.couplings_matrix()
            state.teacher_theta = J[base.iu.cpu(), base.ju.cpu()].to(device=device, dtype=dtype)
        state.references = _references(data)
        state.notes.append(f"data: {data.description}")
        self._start_evaluation(state, p)
        # the first evaluation is sliced like the others (in the app: a first frame at once,
        # not after a whole population-annealing run); headless (eval_slice 0) it ends here
        self._advance_evaluation(state, p["eval_slice"])
        state.mark = (time.perf_counter(), 0, 0.0)
        return state

    def _learner(self, method: str, model: FVBM | RBM, chains: torch.Tensor, p: Mapping[str, Any],
                 stream: Stream) -> learning.Learner:
        ln = learning.Learner(method, model.clone(), p["optimizer"], chains.clone(), stream)
        ln.build_optimizer(dict(p))
        return ln

    def on_edit(self, state: State, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        if "method" in changed:
            self._switch(state, p)
        for ln in state.learners:
            ln.set_hyper(dict(p))

    def _switch(self, state: State, p: Mapping[str, Any]) -> None:
        """A live method change: the runs that continue keep their parameters; a method new to
        the run starts from the current parameters of the first run (its chains too)."""
        wanted = self.run_methods(p, state.learners[0].model)
        have = {ln.method: ln for ln in state.learners}
        src = state.learners[0]
        new = []
        for k, method in enumerate(wanted):
            if method in have:
                new.append(have[method])
                continue
            if len(state.learners) == 1 and len(wanted) == 1:
                src.method = method          # the single run continues under the new rule
                src.build_optimizer(dict(p))
                new.append(src)
            else:
                ln = self._learner(method, src.model, src.chains, p, Stream.new(src.stream.seed * 31 + k + 1, state.device))
                ln.updates = src.updates
                new.append(ln)
        state.learners = new
        state.notes.append(f"method -> {p['method']}: runs {', '.join(ln.method for ln in new)}")

    def _batch(self, state: State, size: int) -> torch.Tensor:
        M = state.train.shape[0]
        if size >= M:
            state.samples += M
            return state.train
        if state.shuffled is None or state.cursor + size > M:   # a new epoch: one gather, then views
            order = torch.randperm(M, generator=state.batch_gen).to(state.device)
            state.shuffled = state.train.index_select(0, order)
            state.cursor = 0
            state.views = None
        if state.views is None or state.views[0] != size:
            # the epoch's remaining batches of this size as views, made in one call (a slice
            # an update cost ~2.5 us, 3 % of a small PCD update)
            n = (M - state.cursor) // size
            state.views = (size, state.cursor, state.shuffled.narrow(0, state.cursor, n * size).split(size))
        _, start, views = state.views
        batch = views[(state.cursor - start) // size]
        state.cursor += size
        state.samples += size
        return batch

    def step(self, state: State, p: Mapping[str, Any]) -> None:
        bs = p["batch_size"]
        pd = dict(p)
        # updates this small run on one thread, and so does the epoch's shuffle they start
        # with (a gather of the training set: on two threads beside a busy process it cost
        # ~10 ms an epoch, more than the epoch's 150 updates)
        rows = min(bs, state.train.shape[0])          # what _batch gives
        with learning.OneThread(all(ln.small(rows) for ln in state.learners)):
            X = self._batch(state, bs)
            for ln in state.learners:
                ln.update(state.train if ln.lbfgs else X, pd)
                if state.teacher_theta is not None:
                    d = ln.model.theta - state.teacher_theta
                    trace = state.rmse.setdefault(ln.method, [])
                    trace.append((ln.updates, ln.wall_s, torch.sqrt((d * d).mean())))
                    if len(trace) > TRACE_HISTORY:
                        del trace[1::2]
        state.updates += 1
        state.sweeps += p["chains"] * p["gibbs_steps"] * len(state.learners)
        if state.updates % p["eval_every"] == 0:
            if state.jobs:
                state.evals_skipped += 1
            else:
                self._start_evaluation(state, p)
        if state.jobs:
            self._advance_evaluation(state, p["eval_slice"])

    def _start_evaluation(self, state: State, p: Mapping[str, Any]) -> None:
        """Snapshot every run's parameters now (learning.evaluation) as one evaluation job;
        its results join the run's evaluations when the job ends."""
        state.jobs = [(ln, ln.updates, ln.wall_s,
                       learning.evaluation(ln.model, state.train_bits, state.heldout_bits, p["ais_runs"],
                                           p["ais_betas"], state.eval_stream))
                      for ln in state.learners]
        state.job_done = 0
        state.job_total = sum(learning.evaluation_units(ln.model, p["ais_betas"]) for ln in state.learners)
        state.eval_running = state.updates

    def _advance_evaluation(self, state: State, budget: int) -> None:
        """Up to ``budget`` units of the evaluation in progress (0: all of it). The jobs run
        one after another, so the evaluation stream is drawn in the same order whatever the
        budget: the figures do not depend on it, only the update at which they appear."""
        left = budget if budget > 0 else math.inf
        while state.jobs and left > 0:
            ln, update, wall_s, job = state.jobs[0]
            try:
                next(job)
                state.job_done += 1
                left -= 1
                continue
            except StopIteration as stop:
                ev = stop.value
            state.jobs.pop(0)
            ev["eval_update"] = update
            if ln.method == "cd" and ln.evals:
                self._cd_note(state, ln, ev, update)
            ln.evals.append((update, wall_s, ev))
            if len(ln.evals) > EVAL_HISTORY:
                del ln.evals[1::2]
        if not state.jobs:
            state.eval_running = -1

    def _cd_note(self, state: State, ln: learning.Learner, ev: dict, update: int) -> None:
        """The known CD failure, shown: the held-out log-likelihood falls while the
        reconstruction error keeps improving."""
        prev = ln.evals[-1][2]
        key = "log_likelihood_heldout" if "log_likelihood_heldout" in ev else "log_likelihood"
        if ev[key] < prev[key] - 1e-3 and ev["reconstruction_error"] < prev["reconstruction_error"]:
            state.notes.append(f"cd: {key.replace('_', ' ')} fell {prev[key]:.4f} -> {ev[key]:.4f} at update "
                               f"{update} while the reconstruction error improved "
                               f"{prev['reconstruction_error']:.4f} -> {ev['reconstruction_error']:.4f}")

    def observe(self, state: State, p: Mapping[str, Any]) -> Frame:
        frame = Frame()
        sc = frame.scalars
        frame.notes.extend(state.notes)
        state.notes.clear()
        compare = p["method"] == "compare"
        M = state.train.shape[0]
        for ln in state.learners:
            sfx = f"_{ln.method}" if compare else ""
            for k, v in (ln.evals[-1][2] if ln.evals else {}).items():   # none before the first ends
                if v is not None:
                    sc[k + sfx] = v
            sc["epochs" + sfx] = state.samples / M
            sc["updates" + sfx] = ln.updates
            sc["wall_s" + sfx] = ln.wall_s
            sc["chain_energy" + sfx] = float(learning.energy_per_unit(ln.model, ln.chains))
            if state.teacher_theta is not None:
                d = ln.model.theta - state.teacher_theta
                sc["coupling_rmse" + sfx] = float(torch.sqrt((d * d).mean()))
                sc["coupling_relative_error" + sfx] = float(d.norm() / state.teacher_theta.norm().clamp_min(1e-300))
            rate = ln.take_flip_rate()
            if rate is not None:
                sc["flip_rate" + sfx] = rate
            if ln.updates:
                sc["update_ms" + sfx] = 1000.0 * ln.wall_s / ln.updates
        sc.update(state.references)
        sc["eval_progress"] = state.job_done / state.job_total if state.jobs else 1.0
        sc["eval_running"] = state.eval_running
        sc["evals_skipped"] = state.evals_skipped
        now = time.perf_counter()
        t, u, s = state.mark
        if now > t and state.updates > u:
            sc["updates_per_s"] = (state.updates - u) * len(state.learners) / (now - t)
            sc["chain_sweeps_per_s"] = (state.sweeps - s) / (now - t)
        state.mark = (now, state.updates, state.sweeps)
        self._views(state, p, frame)
        return frame

    # -- views ---------------------------------------------------------------------------------
    def _views(self, state: State, p: Mapping[str, Any], frame: Frame) -> None:
        v = frame.views
        lines: dict = {}
        for ln in state.learners:
            if not ln.evals:
                continue
            xs = [e[0] for e in ln.evals]
            lines[f"{ln.method} train"] = (xs, [e[2]["log_likelihood"] for e in ln.evals])
            if "log_likelihood_heldout" in ln.evals[-1][2]:
                lines[f"{ln.method} held out"] = (xs, [e[2].get("log_likelihood_heldout") for e in ln.evals])
        for ref in ("log_likelihood_best", "log_likelihood_teacher"):
            if ref in frame.scalars:
                x_end = max(1, state.updates)
                lines[ref.replace("log_likelihood_", "")] = ([0, x_end], [frame.scalars[ref]] * 2)
        v["ll_curves"] = {"lines": lines, "xlabel": "update", "ylabel": "nats / sample"}
        rows = []
        for ln in state.learners:
            if not ln.evals:
                continue
            e = ln.evals[-1][2]
            rows.append([ln.method, e["eval_update"], e["log_z_exact"],
                         (e["log_z_ais"], e["log_z_ais_stderr"]),
                         (e.get("log_z_pa"), e.get("log_z_pa_stderr")),
                         e.get("pa_ess_fraction"), e.get("pa_families_fraction")])
        if state.jobs:      # the evaluation in progress: its snapshot's update, how far along
            rows.append([f"eval {100.0 * state.job_done / state.job_total:.0f}%", state.eval_running,
                         None, None, None, None, None])
        v["log_z_table"] = {"columns": ["method", "update", "exact", "AIS", "PA", "ESS/R", "families/R"],
                            "rows": rows}
        rows = []
        for ln in state.learners:
            e = ln.evals[-1][2] if ln.evals else {}
            ll = (e["log_likelihood"], e["log_likelihood_stderr"]) if "log_likelihood_stderr" in e else e.get("log_likelihood")
            rows.append([ln.method, ln.updates, round(state.samples / state.train.shape[0], 3), ll,
                         e.get("log_likelihood_heldout"), e.get("kl_data_model"), e.get("reconstruction_error"),
                         1000.0 * ln.wall_s / ln.updates if ln.updates else None])
        v["methods"] = {"columns": ["method", "updates", "epochs", "ll train", "ll held out", "KL", "recon", "ms/upd"],
                        "rows": rows, "caption": state.data.description}
        if state.teacher_theta is None:
            v["rmse_curves"] = {"lines": {}, "note": "no teacher: coupling RMSE needs an fvbm on planted data"}
        else:
            v["rmse_curves"] = {"lines": {m: ([t[1] for t in tr], [float(t[2]) for t in tr])
                                          for m, tr in state.rmse.items()},
                                "xlabel": "seconds in updates", "ylabel": "RMSE", "note": "no update yet"}
        first = state.learners[0]
        v["weights"] = _weights_image(first.model, state)
        v["samples"] = _tiles(learning.to_bits(first.model, first.chains[:16]).cpu().numpy(), 16)
        v["correlations"] = _correlations(first.model, state.train, first.chains)
        v["chain_energy"] = {"lines": {ln.method: ln.energy_trace() for ln in state.learners},
                             "xlabel": "update", "ylabel": "energy / unit"}

    def work_per_step(self, state: State, p: Mapping[str, Any]) -> float:
        return float(p["chains"] * p["gibbs_steps"] * len(state.learners))

    def work_unit(self) -> str:
        return "chain-sweeps"


def _references(data: bdata.BinaryData) -> dict:
    """The best possible mean log-likelihood -H(data) where every row is distinct (bars and
    stripes), and the teacher's own log-likelihood of the training data where its ln Z is known."""
    out = {}
    if data.teacher is None and torch.unique(data.train, dim=0).shape[0] == data.train.shape[0]:
        out["log_likelihood_best"] = -exact.empirical_entropy(data.train)
    if data.teacher is not None and data.teacher_log_z is not None:
        S = 2.0 * data.train - 1.0
        out["log_likelihood_teacher"] = float((-data.teacher.energy(S)).mean()) - data.teacher_log_z
    return out


def _tiles(rows: np.ndarray, limit: int) -> dict:
    """Heatmap data: rows of a square number of units as side x side images tiled in a
    grid with NaN gutters (counted as ``gutters``, so a NaN in the images themselves is
    still reported); other widths as the rows themselves."""
    rows = rows[:limit]
    n = rows.shape[1]
    side = int(round(math.sqrt(n)))
    if side * side != n or side < 2:
        return {"z": rows.tolist()}
    k = rows.shape[0]
    per = int(math.ceil(math.sqrt(k)))
    grid = np.full((per * (side + 1) - 1, per * (side + 1) - 1), np.nan)
    for t in range(k):
        r, c = divmod(t, per)
        grid[r * (side + 1):r * (side + 1) + side, c * (side + 1):c * (side + 1) + side] = rows[t].reshape(side, side)
    return {"z": grid.tolist(), "gutters": int(grid.size - k * n)}


def _weights_image(model: FVBM | RBM, state: State) -> dict:
    if isinstance(model, RBM):
        return _tiles(model.W.detach().T.cpu().numpy(), 16)
    J = model.couplings_matrix().detach().cpu().numpy()
    if state.data.teacher is None:
        return {"z": J.tolist()}
    T = state.data.teacher.couplings_matrix().numpy()
    gap = np.full((J.shape[0], 1), np.nan)
    return {"z": np.concatenate([J, gap, T], axis=1).tolist(), "gutters": int(J.shape[0])}


def _correlations(model: FVBM | RBM, train: torch.Tensor, chains: torch.Tensor, limit: int = 400) -> dict:
    """Data vs model (chains) second moments <x_i x_j>, i < j, in the model's units."""
    n = train.shape[1]
    iu = torch.triu_indices(n, n, offset=1, device=train.device)
    pick = torch.linspace(0, iu.shape[1] - 1, min(limit, iu.shape[1]), device=train.device).long()
    i, j = iu[0][pick], iu[1][pick]
    d = (train[:, i] * train[:, j]).mean(0).cpu().tolist()
    m = (chains[:, i] * chains[:, j]).mean(0).cpu().tolist()
    lo, hi = (-1.0, 1.0) if isinstance(model, FVBM) else (0.0, 1.0)
    return {"points": {"pairs": (d, m)}, "lines": {"y = x": ([lo, hi], [lo, hi])},
            "xlabel": "data", "ylabel": "model"}


TOPIC = BoltzmannTopic()
