"""Simulated tempering of the 2D Ising model, with weights learned online.

The inverse temperature is a random variable on a ladder beta_0 < ... < beta_{K-1}
(``rungs`` = K, ``spacing`` linear or geometric between ``beta_min`` and ``beta_max``):

    P(s, k)  proportional to  exp(-beta_k E(s) + g_k).

With g_k = -ln Z(beta_k) + const the marginal P(k) is uniform. ``replicas`` independent
chains run in one batch, each carrying its rung k. One step, for all chains at once:

    1. a sweep of every chain at its own beta_k (a per-replica beta tensor, one launch);
    2. E(s) measured; after ``burn_in`` sweeps it is added to the running mean energy of
       the chain's rung (conditional on k, s is Boltzmann at beta_k whatever g is, so these
       means are unbiased once equilibrated);
    3. when ``learn_weights`` is on, g is recomputed by the trapezoid rule
           g_0 = 0,  g_{k+1} = g_k + (<E>_{k+1} + <E>_k) (beta_{k+1} - beta_k) / 2
       (d(-ln Z)/d beta = <E>); rungs not yet measured borrow the nearest measured mean;
    4. a rung move: k' = k +- 1 (1/2 each; off the ladder = rejected), accepted with
       min(1, exp(-(beta_k' - beta_k) E + g_k' - g_k)); a NaN log ratio is a rejection.

During the ``burn_in`` sweeps the chains stay on their starting rungs, spread evenly over
the ladder (chain r on rung r mod K), so every rung is measured as soon as learning starts.
Rung moves are counted per edge (k, k+1) for the acceptance bars; the rung histogram counts
each chain's rung after every step since rung moves began. Toggling ``learn_weights``
restarts the histogram and the acceptance counts (freeze the weights, then watch it flatten).

Exact reference (ferromagnet): g_exact_k = -ln Z(beta_k) + ln Z(beta_0) (Kaufman), shifted
to agree with the learned g at the first rung. Units: J = 1, h = 0, natural log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from ..annealing import SPACINGS, beta_ladder, fill_unmeasured, trapezoid_log_z_differences
from ..models.ising import (COMPILING, LatticeState, LatticeTopic, Replicas, disorder_seed_param, exact_log_z,
                            method_param, model_couplings, model_param, side_param, uniform_spins)
from ..params import Param, ParamError
from ..topic import Frame, Scalar, View, finite_or_none

@dataclass
class TemperState(LatticeState):    # replicas: the R chains' lattices, couplings and random stream
    betas: torch.Tensor             # float64 (K,) the ladder, on the device
    betas32: torch.Tensor           # float32 (K,) for the sweep kernel
    rung: torch.Tensor              # int64 (R,) each chain's rung k
    g: torch.Tensor                 # float64 (K,) weights
    energy: torch.Tensor            # float32 (R,) E(s) after the last sweep
    energy_sum: torch.Tensor        # float64 (K,) sum of E measured at each rung (after burn-in)
    energy_count: torch.Tensor      # float64 (K,)
    visits: torch.Tensor            # float64 (K,) rung histogram
    attempts: torch.Tensor          # float64 (K-1,) rung moves proposed across edge (k, k+1)
    accepts: torch.Tensor           # float64 (K-1,)
    end_seen: torch.Tensor          # int8 (R,): 0 none, -1 last end was the bottom, +1 the top
    round_trips: torch.Tensor       # int64 () bottom -> top -> bottom trips completed
    generator: torch.Generator      # the rung moves' uniforms (the same one the sweeps draw from)
    g_exact: list[float] | None
    t: int = 0
    warned_nonfinite: bool = False


class TemperingTopic(LatticeTopic):
    name = "tempering"
    title = "Tempering"
    order = 21
    summary = "simulated tempering on a beta ladder, weights g_k learned by the trapezoid rule"
    finite = False
    step_unit = "sweep + rung move"
    quick = {"L": 4, "replicas": 8, "rungs": 4, "burn_in": 5}
    window_scalars = ("compiling",)    # wall-clock state: a kernel build under way
    every = 10    # a frame ~ 0.15 steps at the defaults: ~1.5% of a run (BENCHMARKS.md)
    scalars = (
        Scalar("sweep", "sweep", "sweeps", "sweeps since init"),
        Scalar("chain0_rung", "chain 0 rung", "", "the rung k chain 0 is on"),
        Scalar("chain0_beta", "chain 0 beta", "", "β_k of that rung"),
        Scalar("chain0_energy_per_spin", "chain 0 energy per spin", "J", "E/N of chain 0"),
        Scalar("rung_acceptance_rate", "rung-move acceptance", "", "accepted / attempted rung moves, all edges"),
        Scalar("rung_flatness", "rung flatness", "", "min / max of the rung visit fractions (1: flat)"),
        Scalar("g_max_error", "max |g - g exact|", "", "largest error of the learned weights (ferromagnet)"),
        Scalar("round_trips", "round trips", "", "chain passages from the lowest rung to the highest and back"),
        Scalar("nonfinite_weights", "non-finite weights", "rungs", "weights g_k that are not finite"),
        COMPILING,
    )

    params = (
        model_param(),
        side_param(8),
        Param("replicas", "int", 64, lo=1, hi=1 << 20, log=True, live=False,
              help="independent tempering chains, one batch"),
        Param("beta_min", "float", 0.2, lo=1e-3, hi=10.0, step=0.05, live=False,
              help="lowest rung's inverse temperature"),
        Param("beta_max", "float", 0.6, lo=1e-3, hi=10.0, step=0.05, live=False,
              help="highest rung's inverse temperature"),
        Param("rungs", "int", 16, lo=2, hi=256, live=False, help="number of rungs K on the ladder"),
        Param("spacing", "choice", "linear", choices=SPACINGS, live=False,
              help="rungs evenly spaced in beta (linear) or in ln beta (geometric)"),
        method_param(),
        Param("learn_weights", "bool", True,
              help="update g from the rungs' mean energies; off freezes g (restarts the histogram)"),
        Param("burn_in", "int", 200, lo=0, hi=10_000_000, log=True, live=False,
              help="sweeps at fixed rungs before rung moves and energy averaging begin"),
        disorder_seed_param(),
    )

    views = (
        View("bars", "rungs visited (flat when g is right)", source="rung_bars"),
        View("plot", "g learned vs -ln Z exact", source="g_plot"),
        View("bars", "rung move acceptance per edge", source="acceptance_bars"),
        View("trace", "chain 0 rung", series=("chain0_rung",), options={"ylabel": "k"}),
    )

    def check(self, p: dict[str, Any], changed: Sequence[str] = ()) -> dict[str, Any]:
        if p["beta_max"] <= p["beta_min"]:
            raise ParamError(f"beta_max must be > beta_min ({p['beta_min']:g}), got {p['beta_max']:g}")
        return p

    # -- the contract ------------------------------------------------------------------
    def init(self, p: Mapping[str, Any], device: torch.device, seed: int) -> TemperState:
        L, r, k = int(p["L"]), int(p["replicas"]), int(p["rungs"])
        gen = torch.Generator(device=device).manual_seed(int(seed))
        replicas = Replicas(uniform_spins(r, L, gen),
                            model_couplings(p["model"], L, int(p["disorder_seed"]), device),
                            seed=int(seed), generator=gen)
        ladder = beta_ladder(p["spacing"], float(p["beta_min"]), float(p["beta_max"]), k)
        betas = torch.tensor(ladder, dtype=torch.float64, device=device)
        energy, _ = replicas.measure()
        g_exact = None
        if p["model"] == "ferromagnet":
            log_z = [exact_log_z("ferromagnet", L, float(b)) for b in ladder]
            if all(v is not None for v in log_z):
                g_exact = [-(v - log_z[0]) for v in log_z]
        zeros = lambda n: torch.zeros(n, dtype=torch.float64, device=device)  # noqa: E731
        state = TemperState(
            replicas=replicas, betas=betas, betas32=betas.to(torch.float32),
            rung=torch.arange(r, device=device) % k, g=zeros(k), energy=energy,
            energy_sum=zeros(k), energy_count=zeros(k), visits=zeros(k),
            attempts=zeros(k - 1), accepts=zeros(k - 1),
            end_seen=torch.zeros(r, dtype=torch.int8, device=device),
            round_trips=torch.zeros((), dtype=torch.int64, device=device),
            generator=gen, g_exact=g_exact,
        )
        if r < k:
            state.notes.append(f"{r} chains for {k} rungs: unvisited rungs borrow their "
                               "neighbours' mean energy until a chain reaches them")
        return state

    def step(self, state: TemperState, p: Mapping[str, Any]) -> None:
        k = state.betas.numel()
        # 1. a sweep of every chain at its own beta_k
        beta_r = state.betas32[state.rung]
        state.replicas.sweep(beta_r, p["method"])
        state.energy, _ = state.replicas.measure()
        state.t += 1
        if state.t <= int(p["burn_in"]):
            return
        # 2. running mean energy at each rung
        e = state.energy.double()
        state.energy_sum.index_add_(0, state.rung, e)
        state.energy_count.index_add_(0, state.rung, torch.ones_like(e))
        # 3. weights by the trapezoid rule
        if p["learn_weights"]:
            measured = state.energy_count > 0
            mean = state.energy_sum / state.energy_count.clamp(min=1.0)
            state.g = trapezoid_log_z_differences(state.betas, fill_unmeasured(mean, measured))
        # 4. rung moves k -> k +- 1
        u = torch.rand((2,) + state.rung.shape, device=state.rung.device, generator=state.generator,
                       dtype=torch.float64)
        proposal = state.rung + torch.where(u[0] < 0.5, -1, 1)
        on_ladder = (proposal >= 0) & (proposal < k)
        target = proposal.clamp(0, k - 1)
        log_ratio = -(state.betas[target] - state.betas[state.rung]) * e + state.g[target] - state.g[state.rung]
        log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
        accept = on_ladder & (torch.log(u[1]) < log_ratio)
        edge = torch.minimum(state.rung, target).clamp(max=max(k - 2, 0))
        if k > 1:
            state.attempts.index_add_(0, edge, on_ladder.double())
            state.accepts.index_add_(0, edge, accept.double())
        state.rung = torch.where(accept, target, state.rung)
        state.visits.index_add_(0, state.rung, torch.ones_like(e))
        # round trips: bottom -> top -> bottom
        at_bottom, at_top = state.rung == 0, state.rung == k - 1
        state.round_trips += (at_bottom & (state.end_seen == 1)).sum()
        state.end_seen = torch.where(at_bottom, -1, torch.where(at_top, 1, state.end_seen)).to(torch.int8)

    def on_edit(self, state: TemperState, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        if "learn_weights" in changed:
            state.visits.zero_()
            state.attempts.zero_()
            state.accepts.zero_()
            state.notes.append("learn_weights " + ("on" if p["learn_weights"] else "off: g frozen")
                               + "; rung histogram and acceptance restarted")

    def observe(self, state: TemperState, p: Mapping[str, Any]) -> Frame:
        L = state.replicas.spins.shape[-1]
        n = L * L
        compiling = state.kernel_status()
        frame = Frame(notes=state.take_notes())
        betas = state.betas.tolist()
        g = state.g.tolist()
        visits = state.visits.tolist()
        attempts, accepts = state.attempts.tolist(), state.accepts.tolist()
        counts = state.energy_count.tolist()
        sums = state.energy_sum.tolist()
        mean_energy = [s / c / n if c > 0 else None for s, c in zip(sums, counts)]
        acceptance = [a / t if t > 0 else None for a, t in zip(accepts, attempts)]
        rung0 = int(state.rung[0].item())

        nonfinite = sum(1 for x in g if not math.isfinite(x))
        if nonfinite and not state.warned_nonfinite:
            state.warned_nonfinite = True
            frame.notes.append(f"{nonfinite} weights g_k are not finite at sweep {state.t}")

        total = sum(visits)
        flatness = None
        if total > 0:
            frac = [v / total for v in visits]
            flatness = min(frac) / max(frac) if max(frac) > 0 else None
        g_error = None
        if state.g_exact is not None and state.t > int(p["burn_in"]) and nonfinite == 0:
            g_error = max(abs(a - b) for a, b in zip(g, state.g_exact))
        tot_att = sum(attempts)
        frame.scalars = {
            "sweep": state.t,
            "chain0_rung": rung0,
            "chain0_beta": betas[rung0],
            "chain0_energy_per_spin": float(state.energy[0].item()) / n,
            "rung_acceptance_rate": (sum(accepts) / tot_att) if tot_att > 0 else None,
            "rung_flatness": flatness,
            "g_max_error": g_error,
            "round_trips": int(state.round_trips.item()),
            "nonfinite_weights": nonfinite,
            "compiling": compiling,
        }
        frame.arrays = {
            "betas": betas,
            "g": [finite_or_none(x) for x in g],
            "g_exact": state.g_exact,
            "rung_histogram": [int(v) for v in visits],
            "rung_acceptance": acceptance,
            "mean_energy_per_spin": mean_energy,
        }
        labels = [f"{b:.3g}" for b in betas]
        frame.views["rung_bars"] = {"labels": labels, "values": [int(v) for v in visits]}
        series = {"g learned": [finite_or_none(x) for x in g]}
        if state.g_exact is not None:
            series["-ln Z exact (shifted)"] = state.g_exact
        frame.views["g_plot"] = {"x": betas, "series": series, "xlabel": "beta", "ylabel": "g"}
        frame.views["acceptance_bars"] = {
            "labels": [f"{labels[i]}-{labels[i + 1]}" for i in range(len(acceptance))],
            "values": [a if a is not None else 0.0 for a in acceptance]}
        return frame


TOPIC = TemperingTopic()
