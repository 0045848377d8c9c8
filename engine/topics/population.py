"""Population annealing of the 2D Ising ferromagnet, with free energies (Jarzynski / SMC).

Conventions: J = 1, h = 0, periodic L x L torus, N = L^2, natural log, k_B = 1.
R0 = ``replicas`` lattices start uniform at beta = 0, where ln Z(0) = N ln 2 exactly. One step
raises beta to beta' = beta + dbeta and
  1. reweights each replica by w_j = exp(-dbeta E_j), E_j its energy *before* any move at
     beta', and accumulates ln Z(beta') = ln Z(beta) + ln Q, Q = (1/R) sum_j w_j, in float64
     log space shifted by the minimum energy (R the current population size);
  2. resamples to the target size R0 (``resampling`` = nearest: floor(tau) + Bernoulli,
     size fluctuating around R0; multinomial: exactly R0 draws), all on the device;
  3. runs ``sweeps_per_step`` checkerboard sweeps of every replica at beta' (one batched
     kernel launch per half-sweep, engine.kernels.checkerboard).
With ``adaptive`` on, dbeta is the largest step (up to ``dbeta``) keeping the weights'
ESS / R >= ``ess_target``, found by bisection on the device. The run ends at ``beta_max``.

Population buffers: spins live in two int8 (capacity, L, L) buffers (the current one and
the one resampling writes into) with capacity 1.25 R0 per shard, grown by 1.25x if a
nearest-resampling fluctuation ever exceeds it; the live size is a host int. One host sync
per step: the new population size (and the adaptive dbeta) once resampling has counted.

Shards: launched by ``torchrun --nproc_per_node W``, each rank holds ~R/W replicas
(engine.distributed): ln Q from an all-reduce of the shifted weight sums (after an
all-reduce of the minimum energy), copy counts from the global normaliser, a global prefix
sum of the children counts (all-gather), and a rebalancing exchange so shards stay even.
Multinomial resampling across shards draws each shard's count from the multinomial over
shard weights (the same host draw on every rank) and then draws within the shard: the
same law as R0 global draws. Rank 0 writes output (engine.distributed.is_writer()).

Frame scalars (the JSONL schema):
    beta, dbeta                 current inverse temperature, the last step's increment
    log_z, log_z_exact          ln Z(beta) estimated; Kaufman's exact value (L x L torus)
    log_z_per_spin, log_z_exact_per_spin, log_z_error_per_spin   the same / N, and their difference
    ess_fraction                ESS / R = (sum w)^2 / (R sum w^2) of the last reweighting
    families, families_fraction distinct surviving beta = 0 ancestors (and / R0)
    population                  current number of replicas (fluctuates with `nearest`)
    energy_per_spin, energy_exact          population mean of E / N; Kaufman
    specific_heat, specific_heat_exact     beta^2 var(E) / N over the population; Kaufman
    acceptance                  spins flipped / spin updates attempted since the last frame
    steps, sweeps               annealing steps and sweeps per replica done since init
    nonfinite_steps             steps whose ln Q was not finite (skipped; a note says when)
    compiling                   "compiling for L=..., first time only" while the CPU kernels
                                for a new size are built in the background, else None
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from .. import distributed as shards
from ..annealing import CAPACITY_FACTOR, ReplicaBuffers, copy_counts, reweight
from ..exact.ising import kaufman
from ..kernels import resampling as rs
from ..models.ising import (COMPILING, LatticeState, LatticeTopic, Replicas, downsample, method_param, side_param,
                            uniform_spins)
from ..params import Param, ParamError
from ..topic import Frame, Scalar, View

LATTICE_VIEW_MAX = 64      # the one-replica lattice view is downsampled to at most this side
HISTOGRAM_BINS = 40


@dataclass
class PopulationState(LatticeState):
    # replicas: this shard's n lattices (spins: a view of a buffer) and this rank's random
    # stream (differs between ranks)
    L: int
    target: int                    # R0, the global target population size
    ancestors: torch.Tensor        # int64 (n,): global id of each replica's beta = 0 ancestor
    energy: torch.Tensor           # float32 (n,): energy of each replica now
    buffers: ReplicaBuffers        # [spins, ancestors] rows: the live pair and the spare one
    log_z: torch.Tensor            # float64 0-d on the device: ln Z(beta) estimate
    generator: torch.Generator
    run_seed: int = 0              # the run's seed (the same on every rank)
    beta: float = 0.0
    dbeta: float = 0.0
    population: int = 0            # global size (host)
    sizes: list = field(default_factory=list)   # per-shard sizes (host)
    ess_fraction: torch.Tensor | None = None
    steps: int = 0
    sweeps: int = 0
    window_flips: torch.Tensor | None = None
    window_updates: int = 0
    nonfinite_steps: int = 0
    device: torch.device | None = None


class PopulationTopic(LatticeTopic):
    name = "population"
    title = "Population annealing"
    order = 40
    summary = "population annealing of the 2D Ising model: ln Z(beta) vs Kaufman, ESS, families"
    step_unit = "annealing step"
    finite = True
    params = (
        side_param(16, log=True),
        Param("replicas", "int", 4096, "target population size R0 (split over torchrun ranks)",
              lo=2, hi=1 << 22, log=True, live=False),
        Param("beta_max", "float", 1.0, "anneal from beta = 0 up to here (beta_c = 0.4407)",
              lo=0.001, hi=5.0, step=0.05),
        Param("dbeta", "float", 0.005, "beta step (the largest step when adaptive)",
              lo=1e-5, hi=1.0, log=True),
        Param("sweeps_per_step", "int", 10, "MCMC sweeps per replica after each resampling",
              lo=1, hi=10_000, log=True),
        method_param(),
        Param("resampling", "choice", "nearest",
              "nearest: floor(tau)+Bernoulli (size fluctuates); multinomial: exactly R0 draws",
              choices=rs.RESAMPLING),
        Param("adaptive", "bool", False, "choose dbeta to keep ESS / R >= ess_target"),
        Param("ess_target", "float", 0.9, "ESS fraction kept by the adaptive step",
              lo=0.05, hi=0.999, step=0.05),
    )
    quick = {"L": 8, "replicas": 64, "dbeta": 0.05, "sweeps_per_step": 2}
    # acceptance: flips over the sweeps since the last frame; compiling: wall-clock state
    window_scalars = ("acceptance", "compiling")
    every = 1     # a step (10 sweeps of 4096 lattices) dwarfs a frame: ~2% (BENCHMARKS.md)
    scalars = (
        Scalar("beta", "beta", "", "the inverse temperature reached"),
        Scalar("dbeta", "beta step", "", "the last step's increment"),
        Scalar("log_z", "ln Z", "", "ln Z(β) estimated, ln Z(0) + sum of ln Q"),
        Scalar("log_z_exact", "exact ln Z (Kaufman)", "", "Kaufman's ln Z(β) for this L"),
        Scalar("log_z_per_spin", "ln Z / N", "", "the estimate per spin"),
        Scalar("log_z_exact_per_spin", "exact ln Z / N", "", "Kaufman's per spin"),
        Scalar("log_z_error_per_spin", "ln Z / N error", "", "estimate minus exact, per spin"),
        Scalar("ess_fraction", "ESS / R", "", "effective sample size of the last reweighting over the population"),
        Scalar("families", "families", "", "distinct surviving β = 0 ancestors"),
        Scalar("families_fraction", "families / R0", "", "the same over the target population"),
        Scalar("population", "population", "replicas", "replicas now (fluctuates with nearest resampling)"),
        Scalar("energy_per_spin", "energy per spin", "J", "population mean of E/N"),
        Scalar("energy_exact", "exact energy (Kaufman)", "J", "Kaufman's E/N at this β"),
        Scalar("specific_heat", "specific heat", "", "β² var(E) / N over the population"),
        Scalar("specific_heat_exact", "exact specific heat", "", "Kaufman's at this β"),
        Scalar("acceptance", "acceptance", "", "spins flipped / updates attempted since the last frame"),
        Scalar("steps", "annealing steps", "", "β steps since init"),
        Scalar("sweeps", "sweeps", "sweeps", "sweeps per replica since init"),
        Scalar("nonfinite_steps", "non-finite steps", "", "steps whose ln Q was not finite (skipped)"),
        COMPILING,
    )
    views = (
        View("trace", "ln Z / N: estimate vs Kaufman", series=("log_z_per_spin",),
             reference=("log_z_exact_per_spin",), x="beta"),
        View("trace", "error in ln Z / N", series=("log_z_error_per_spin",), x="beta"),
        View("histogram", "population energy per spin", source="energy_histogram"),
        View("trace", "ESS fraction, surviving families / R0", series=("ess_fraction", "families_fraction"),
             x="beta"),
        View("lattice", "spins (one replica)", source="lattice"),
    )

    # -- contract -------------------------------------------------------------------------
    def init(self, p: Mapping[str, Any], device: torch.device, seed: int) -> PopulationState:
        device = shards.ensure_process_group(device)
        world, me = shards.world_size(), shards.rank() if shards.world_size() > 1 else 0
        L, R0 = int(p["L"]), int(p["replicas"])
        if R0 < world:
            raise ParamError(f"replicas must be >= the number of processes ({world}), got {R0}")
        bounds = shards.even_bounds(R0, world)
        n = bounds[me + 1] - bounds[me]
        cap = max(int(math.ceil(CAPACITY_FACTOR * (R0 / world))) + 8, n)
        gen = torch.Generator(device=device)
        rank_seed = (int(seed) * 1_000_003 + 7919 * me) & 0x7FFFFFFFFFFF
        gen.manual_seed(rank_seed)
        spins = uniform_spins(n, L, gen)
        ancestors = torch.arange(bounds[me], bounds[me + 1], device=device)
        buffers = ReplicaBuffers([spins, ancestors], cap)
        spins, ancestors = buffers.live(n)
        replicas = Replicas(spins, seed=rank_seed & 0x7FFFFFFF)
        energy, _ = replicas.measure()
        state = PopulationState(
            L=L, target=R0, replicas=replicas, ancestors=ancestors, energy=energy, buffers=buffers,
            log_z=torch.tensor(L * L * math.log(2.0), dtype=torch.float64, device=device),
            generator=gen, run_seed=int(seed) & 0x7FFFFFFF, population=R0,
            sizes=[bounds[k + 1] - bounds[k] for k in range(world)], device=device)
        state.ess_fraction = torch.tensor(1.0, dtype=torch.float64, device=device)
        state.window_flips = torch.zeros((), dtype=torch.int64, device=device)
        return state

    def step(self, state: PopulationState, p: Mapping[str, Any]) -> None:
        if state.beta >= float(p["beta_max"]):
            return
        self.reweight_and_resample(state, p)
        self.move(state, p)

    def reweight_and_resample(self, state: PopulationState, p: Mapping[str, Any]) -> None:
        """Steps 1 and 2: raise beta, add ln Q to ln Z, resample to R0 (rebalancing the shards)."""
        beta_max = float(p["beta_max"])
        dev = state.device
        world = shards.world_size()
        me = shards.rank() if world > 1 else 0
        energy = state.energy
        local_min = energy.min().to(torch.float64) if energy.numel() else \
            torch.tensor(math.inf, dtype=torch.float64, device=dev)
        e_min = shards.all_reduce(local_min.reshape(1), "min")[0]
        step_cap = min(float(p["dbeta"]), beta_max - state.beta)
        if p["adaptive"]:
            dbeta: float | torch.Tensor = rs.adaptive_dbeta(
                energy, e_min, float(p["ess_target"]), step_cap,
                reduce=lambda t: shards.all_reduce(t, "sum"))
        else:
            dbeta = step_cap
        # log-ratio of replica j: -dbeta E_j, at the energy before any move at the new beta
        rw = reweight(rs.shifted_log_weights(energy, dbeta, e_min), -dbeta * e_min)
        state.ess_fraction = rw.ess_fraction
        counts = copy_counts(rw, state.target, p["resampling"], state.generator,
                             key=(state.run_seed, state.steps))
        db = dbeta if isinstance(dbeta, torch.Tensor) else torch.tensor(dbeta, dtype=torch.float64, device=dev)
        info = torch.stack([counts.sum().to(torch.float64), db.to(torch.float64), rw.log_q])
        rows = shards.all_gather(info).tolist()          # the one host sync of the step
        sizes = [int(r[0]) for r in rows]
        step_db, ln_q_host = rows[0][1], rows[0][2]
        if not math.isfinite(ln_q_host) or sum(sizes) == 0:
            state.nonfinite_steps += 1
            what = "ln Q is not finite" if not math.isfinite(ln_q_host) else "the population died out"
            state.notes.append(f"step {state.steps + 1} at beta={state.beta:.5g}: {what}; "
                               "resampling skipped, ln Z no longer valid")
            state.beta = min(beta_max, state.beta + step_db)
            state.dbeta = step_db
            return
        state.log_z = state.log_z + rw.log_q
        parents = rs.parents(counts, sizes[me])
        state.replicas.spins, state.ancestors = state.buffers.resample(
            [state.replicas.spins, state.ancestors], parents, sizes)
        state.sizes = sizes
        state.population = sum(sizes)
        state.dbeta = step_db
        new_beta = state.beta + step_db
        state.beta = beta_max if beta_max - new_beta < 1e-12 else new_beta

    def move(self, state: PopulationState, p: Mapping[str, Any]) -> None:
        """Step 3: ``sweeps_per_step`` sweeps of every replica at the new beta, then the energies."""
        n_sweeps = int(p["sweeps_per_step"])
        for _ in range(n_sweeps):
            # (seed, counter) streams keyed by replica row: a parent's copies draw different numbers
            flips = state.replicas.sweep(state.beta, p["method"])
            state.window_flips += flips.sum(dtype=torch.int64)
        state.sweeps += n_sweeps
        state.window_updates += n_sweeps * state.replicas.spins.shape[0] * state.L * state.L
        state.energy, _ = state.replicas.measure()
        state.steps += 1

    def observe(self, state: PopulationState, p: Mapping[str, Any]) -> Frame:
        L, N = state.L, state.L * state.L
        dev = state.device
        e = state.energy.to(torch.float64)
        n_local = float(e.numel())
        big = torch.tensor(1e300, dtype=torch.float64, device=dev)
        ext = torch.stack([(-e).max() if e.numel() else -big, e.max() if e.numel() else -big])
        moments = torch.stack([e.sum(), (e * e).sum(),
                               torch.tensor(n_local, dtype=torch.float64, device=dev),
                               state.window_flips.to(torch.float64),
                               torch.tensor(float(state.window_updates), dtype=torch.float64, device=dev)])
        shards.all_reduce(moments, "sum")
        shards.all_reduce(ext, "max")
        present = torch.zeros(state.target, dtype=torch.uint8, device=dev)
        present[state.ancestors] = 1
        if shards.world_size() > 1:
            shards.all_reduce(present, "max")
        families_t = present.sum()
        e_lo, e_hi = float(-ext[0]) / N, float(ext[1]) / N
        if e_hi - e_lo < 1e-9:
            e_lo, e_hi = e_lo - 0.05, e_hi + 0.05
        counts = torch.histc((e / N).to(torch.float32), bins=HISTOGRAM_BINS, min=e_lo, max=e_hi)
        counts = shards.all_reduce(counts, "sum")
        m = moments.tolist()
        log_z = float(state.log_z)
        ess = float(state.ess_fraction)
        families = int(families_t)
        r = max(m[2], 1.0)
        mean_e = m[0] / r
        var_e = max(m[1] / r - mean_e * mean_e, 0.0)
        beta = state.beta
        exact_log_z, exact_u, exact_c = kaufman(float(beta), L)
        acceptance = m[3] / m[4] if m[4] > 0 else None
        state.window_flips.zero_()
        state.window_updates = 0
        valid = state.nonfinite_steps == 0
        scalars: dict[str, Any] = {
            "beta": beta,
            "dbeta": state.dbeta,
            "log_z": log_z if valid else None,
            "log_z_exact": exact_log_z,
            "log_z_per_spin": log_z / N if valid else None,
            "log_z_exact_per_spin": exact_log_z / N,
            "log_z_error_per_spin": (log_z - exact_log_z) / N if valid else None,
            "ess_fraction": ess,
            "families": families,
            "families_fraction": families / state.target,
            "population": state.population,
            "energy_per_spin": mean_e / N,
            "energy_exact": exact_u,
            "specific_heat": beta * beta * var_e / N,
            "specific_heat_exact": exact_c,
            "acceptance": acceptance,
            "steps": state.steps,
            "sweeps": state.sweeps,
            "nonfinite_steps": state.nonfinite_steps,
        }
        edges = torch.linspace(e_lo, e_hi, HISTOGRAM_BINS + 1).tolist()
        views: dict[str, Any] = {"energy_histogram": {
            "edges": edges, "counts": counts.tolist(),
            "lines": {"exact <E>/N": ([exact_u, exact_u], [0.0, float(counts.max())])}}}
        if state.replicas.spins.shape[0] > 0:
            views["lattice"] = downsample(state.replicas.spins[0], LATTICE_VIEW_MAX).tolist()
        scalars["compiling"] = state.kernel_status()
        return Frame(scalars=scalars, views=views, notes=state.take_notes(),
                     done=state.beta >= float(p["beta_max"]))

    def is_done(self, state: PopulationState, p: Mapping[str, Any]) -> bool:
        return state.beta >= float(p["beta_max"])

    def work_per_step(self, state: PopulationState, p: Mapping[str, Any]) -> float:
        return float(state.population * state.L * state.L * int(p["sweeps_per_step"]))


TOPIC = PopulationTopic()
