"""Simulated annealing of the 2D Ising model, with Jarzynski / AIS work.

Many independent replicas (one batch, one checkerboard launch per half-sweep) follow
an inverse-temperature schedule beta_0 = beta_start < beta_1 < ... < beta_T = beta_end,
T = ``anneal_sweeps``.  Step t (1 <= t <= T) does, for every replica at once:

    W += (beta_t - beta_{t-1}) * E(s_{t-1})     # the jump in beta at fixed state: work
    one sweep at beta_t                          # Metropolis or heat bath moves
    E(s_t) measured and cached for step t+1

so the work uses the energy *before* the moves at the new beta (ALGORITHMS.md; the
energy after them biases the estimate).  Jarzynski / Neal's annealed importance sampling:

    <exp(-W)> = Z(beta_t) / Z(beta_0)   =>   ln Z(beta_t) ~ ln Z(0) + ln mean_r exp(-W_r)

computed in log space (a log-sum-exp over replicas).  It needs exact samples of beta_0
at the start: the replicas start from uniform spins, which are exact only at beta = 0
(ln Z(0) = N ln 2), so a schedule from ``beta_start`` > 0 gives no ln Z estimate.
Jensen gives the second law <W> >= -ln(Z_t / Z_0); the gap shrinks as the schedule slows.

Schedules (T steps, engine.annealing.beta_schedule): linear or geometric in beta; a
geometric schedule from beta_start = 0 takes its first step to beta_end / T.

Models (engine.models.ising; periodic L x L torus, J = 1 units, h = 0, natural log): the
ferromagnet (exact ln Z from Kaufman) and the 2D +-J Edwards-Anderson spin glass, whose
bonds are drawn from ``disorder_seed`` (the same disorder for every replica).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..annealing import SCHEDULES, ais_estimate, beta_schedule
from ..models.ising import (COMPILING, GROUND_STATE_FERROMAGNET, LatticeState, LatticeTopic, Replicas, disorder_seed_param,
                            exact_energy_per_spin, exact_log_z, method_param, model_couplings,
                            model_param, side_param, uniform_spins)
from ..params import Param, ParamError
from ..topic import Frame, Scalar, View, finite_or_none

@dataclass
class AnnealState(LatticeState):   # replicas: the R lattices, their couplings and random stream
    betas: np.ndarray              # the schedule beta_0 .. beta_T (host)
    work: torch.Tensor             # float64 (R,): accumulated Jarzynski work
    energy: torch.Tensor           # float32 (R,): E(s_t), cached for the next step's work
    best_energy: torch.Tensor      # float32 (R,): lowest energy each replica has visited
    flips: torch.Tensor            # int64 (R,): spins flipped during the last sweep
    t: int = 0                     # steps done; beta_t = betas[t]
    exact_log_z0: float | None = None
    warned_nonfinite: bool = False


class AnnealingTopic(LatticeTopic):
    name = "annealing"
    title = "Annealing"
    order = 20
    summary = "simulated annealing of the Ising ferromagnet / +-J spin glass, with Jarzynski (AIS) ln Z"
    finite = True
    step_unit = "sweep"
    quick = {"L": 8, "replicas": 32, "anneal_sweeps": 20}
    window_scalars = ("compiling",)    # wall-clock state: a kernel build under way
    every = 10    # a frame (histogram, AIS, Kaufman at the new beta) ~ 0.4 steps: ~4% (BENCHMARKS.md)
    scalars = (
        Scalar("sweep", "sweep", "sweeps", "schedule steps done (one sweep each)"),
        Scalar("beta", "beta", "", "the inverse temperature reached"),
        Scalar("energy_per_spin", "energy per spin", "J", "E/N, mean over the replicas"),
        Scalar("energy_per_spin_exact", "exact energy at beta (Kaufman)", "J", "equilibrium E/N at this β (ferromagnet)"),
        Scalar("best_energy_per_spin", "best energy per spin", "J", "lowest E/N any replica has visited"),
        Scalar("ground_state_energy_per_spin", "ground-state energy", "J", "-2 for the ferromagnet; none for a spin glass"),
        Scalar("flip_rate", "flip rate", "", "spins flipped / spins in the last sweep"),
        Scalar("log_z", "ln Z (AIS)", "", "ln Z(β) by annealed importance sampling, ln Z(0) + ln mean exp(-W)"),
        Scalar("log_z_stderr", "ln Z std. error", "", "its standard error"),
        Scalar("log_z_exact", "exact ln Z (Kaufman)", "", "Kaufman's ln Z(β) for this L"),
        Scalar("log_z_error", "ln Z error", "", "estimate minus exact"),
        Scalar("ais_ess_fraction", "AIS ESS / R", "", "effective sample size of the weights exp(-W) over the replicas"),
        Scalar("mean_work", "mean work <W>", "", "Jarzynski work, mean over the replicas (in units of kT)"),
        Scalar("minus_delta_log_z", "-ln(Z_t/Z_0) (AIS)", "", "the free-energy change estimated"),
        Scalar("minus_delta_log_z_exact", "-ln(Z_t/Z_0) exact", "", "the same from Kaufman's ln Z"),
        Scalar("dissipated_work", "dissipated work", "", "<W> + ln(Z_t/Z_0), >= 0 by Jensen"),
        Scalar("nonfinite_work", "non-finite work", "replicas", "replicas whose work is not finite"),
        COMPILING,
    )

    params = (
        model_param(),
        side_param(16),
        Param("replicas", "int", 512, lo=1, hi=1 << 20, log=True, live=False,
              help="independent annealing chains, one batch"),
        Param("schedule", "choice", "linear", choices=SCHEDULES, live=False,
              help="linear or geometric in beta (geometric from 0: first step to beta_end/T)"),
        Param("beta_start", "float", 0.0, lo=0.0, hi=10.0, step=0.05, live=False,
              help="initial inverse temperature; ln Z is estimated only from 0 (uniform spins)"),
        Param("beta_end", "float", 1.0, lo=0.0, hi=10.0, step=0.05, live=False,
              help="final inverse temperature"),
        Param("anneal_sweeps", "int", 1000, lo=1, hi=10_000_000, log=True, live=False,
              help="number of beta steps T, one sweep each"),
        method_param(),
        disorder_seed_param(),
        Param("bins", "int", 40, lo=4, hi=200, help="bins of the energy histogram"),
    )

    views = (
        View("trace", "energy per spin vs beta", series=("energy_per_spin",),
             reference=("energy_per_spin_exact", "ground_state_energy_per_spin"), x="beta",
             options={"ylabel": "E/N"}),
        View("trace", "best energy per spin found", series=("best_energy_per_spin",),
             reference=("ground_state_energy_per_spin",), x="beta", options={"ylabel": "min E/N"}),
        View("histogram", "energies per spin across replicas", source="energy_histogram",
             options={"xlabel": "E/N"}),
        View("trace", "ln Z (AIS) vs exact", series=("log_z",), reference=("log_z_exact",),
             x="beta", options={"ylabel": "ln Z"}),
        View("trace", "<W> vs -ln(Z_t/Z_0)", series=("mean_work", "minus_delta_log_z"),
             reference=("minus_delta_log_z_exact",), x="beta", options={"ylabel": "work"}),
    )

    # -- validation ------------------------------------------------------------------------
    def check(self, p: dict[str, Any], changed: Sequence[str] = ()) -> dict[str, Any]:
        if p["beta_end"] <= p["beta_start"]:
            raise ParamError(f"beta_end must be > beta_start ({p['beta_start']:g}), got {p['beta_end']:g}")
        return p

    # -- the contract ----------------------------------------------------------------------
    def init(self, p: Mapping[str, Any], device: torch.device, seed: int) -> AnnealState:
        L, r = int(p["L"]), int(p["replicas"])
        gen = torch.Generator(device=device).manual_seed(int(seed))
        # uniform spins: exact samples of beta = 0
        replicas = Replicas(uniform_spins(r, L, gen),
                            model_couplings(p["model"], L, int(p["disorder_seed"]), device),
                            seed=int(seed), generator=gen)
        energy, _ = replicas.measure()
        betas = beta_schedule(p["schedule"], float(p["beta_start"]), float(p["beta_end"]),
                              int(p["anneal_sweeps"]))
        state = AnnealState(
            replicas=replicas, betas=betas,
            work=torch.zeros(r, dtype=torch.float64, device=device),
            energy=energy, best_energy=energy.clone(),
            flips=torch.zeros(r, dtype=torch.int64, device=device),
            exact_log_z0=exact_log_z(p["model"], L, float(betas[0])),
        )
        if betas[0] > 0:
            state.notes.append(f"no ln Z estimate: beta_start = {betas[0]:g} > 0, and uniform "
                               "spins are exact samples only at beta = 0")
        return state

    def step(self, state: AnnealState, p: Mapping[str, Any]) -> None:
        if state.t >= len(state.betas) - 1:
            return  # the schedule has ended
        beta_prev, beta = float(state.betas[state.t]), float(state.betas[state.t + 1])
        # work of the jump beta_{t-1} -> beta_t at fixed state: energy BEFORE the moves
        state.work += (beta - beta_prev) * state.energy.double()
        state.flips = state.replicas.sweep(beta, p["method"]).to(torch.int64)
        state.energy, _ = state.replicas.measure()
        torch.minimum(state.best_energy, state.energy, out=state.best_energy)
        state.t += 1

    def is_done(self, state: AnnealState, p: Mapping[str, Any]) -> bool:
        return state.t >= len(state.betas) - 1

    def observe(self, state: AnnealState, p: Mapping[str, Any]) -> Frame:
        L = state.replicas.spins.shape[-1]
        n = L * L
        model = p["model"]
        beta = float(state.betas[state.t])
        compiling = state.kernel_status()
        frame = Frame(notes=state.take_notes())

        energy = state.energy.double() / n
        nonfinite = int((~torch.isfinite(state.work)).sum().item())
        mean_work = state.work.mean().item() if nonfinite == 0 else float("nan")
        if nonfinite and not state.warned_nonfinite:
            state.warned_nonfinite = True
            frame.notes.append(f"{nonfinite} replicas have a non-finite work at beta={beta:g}: "
                               "ln Z estimate withheld")

        log_z = log_z_stderr = ess = minus_delta = None
        if state.betas[0] == 0.0 and nonfinite == 0:
            ais = ais_estimate(-state.work)  # the log-weight of a chain is minus its work
            log_z = n * math.log(2.0) + ais.log_mean_weight
            log_z_stderr, ess = ais.stderr, ais.ess_fraction
            minus_delta = -ais.log_mean_weight
        log_z_exact = exact_log_z(model, L, beta)
        minus_delta_exact = None
        if log_z_exact is not None and state.exact_log_z0 is not None:
            minus_delta_exact = -(log_z_exact - state.exact_log_z0)

        # the second law's gap <W> - (-ln Z_t/Z_0) >= 0: against the exact value when there
        # is one, else against the AIS estimate
        reference = minus_delta_exact if minus_delta_exact is not None else minus_delta
        dissipated = (mean_work - reference) if reference is not None else None

        frame.scalars = {
            "sweep": state.t,
            "beta": beta,
            "energy_per_spin": energy.mean().item(),
            "energy_per_spin_exact": exact_energy_per_spin(model, L, beta),
            "best_energy_per_spin": state.best_energy.min().item() / n,
            "ground_state_energy_per_spin": GROUND_STATE_FERROMAGNET if model == "ferromagnet" else None,
            "flip_rate": state.flips.double().mean().item() / n,
            "log_z": finite_or_none(log_z),
            "log_z_stderr": finite_or_none(log_z_stderr),
            "log_z_exact": log_z_exact,
            "log_z_error": (log_z - log_z_exact) if (log_z is not None and log_z_exact is not None) else None,
            "ais_ess_fraction": finite_or_none(ess),
            "mean_work": finite_or_none(mean_work),
            "minus_delta_log_z": finite_or_none(minus_delta),
            "minus_delta_log_z_exact": minus_delta_exact,
            "dissipated_work": finite_or_none(dissipated),
            "nonfinite_work": nonfinite,
            "compiling": compiling,
        }

        lo, hi = energy.min().item(), energy.max().item()
        if hi - lo < 4.0 / n:  # one energy level: widen so the bar shows
            lo, hi = lo - 2.0 / n, hi + 2.0 / n
        bins = int(p["bins"])
        counts = torch.histc(energy, bins=bins, min=lo, max=hi)
        edges = np.linspace(lo, hi, bins + 1).tolist()
        hist = {"edges": edges, "counts": [int(c) for c in counts.tolist()], "lines": {}}
        if model == "ferromagnet":
            hist["lines"]["ground state"] = ([GROUND_STATE_FERROMAGNET] * 2, [0, max(hist["counts"])])
        frame.views["energy_histogram"] = hist
        if self.is_done(state, p):
            frame.arrays["final_energy_edges"] = edges
            frame.arrays["final_energy_counts"] = hist["counts"]
        return frame


TOPIC = AnnealingTopic()
