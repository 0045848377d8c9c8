"""The 2D Ising model sampled by checkerboard MCMC (Metropolis or heat bath), batched over
independent replicas, with Kaufman's finite-lattice and Onsager's infinite-lattice exact
values beside the measurements.

Conventions: J = 1, periodic L x L torus, E = -sum_<ij> s_i s_j - h sum_i s_i, natural log.
One step is one full sweep (both colours) of every replica; scalars are averages over the
replicas. Running means start after ``burn_in`` sweeps and restart after every live edit
(they describe a different distribution); their standard errors come from the spread
across replicas of each replica's own time average, which accounts for autocorrelation
because the replicas are independent -- provided they sample the same law. Replicas stuck
in different long-lived states (stripes beside an ordered lattice below T_c) each look
converged and their spread means nothing, so every sweep after the burn-in also records
each replica's e, m and |m| (thinned, engine.convergence.ChainDraws) and each frame carries
their rank-normalised split-R-hat (Vehtari et al. 2021). A standard error is reported only
while its R-hat is at most RHAT_MAX = 1.01; otherwise it is None, the table's cell is
(value, None), the table carries a note and ``equilibrated`` is False.

Frame scalars (the JSONL schema):
    energy_per_spin, magnetization_per_spin, abs_magnetization   current, replica average
    acceptance        spins flipped / spin updates attempted, over the sweeps since the last frame
    sweeps            sweeps done since init;  samples: sweeps in the running means
    energy_mean, energy_stderr, magnetization_mean, magnetization_stderr,
    abs_magnetization_mean, abs_magnetization_stderr          running means (None before any)
    specific_heat, specific_heat_stderr    beta^2 N var(E/N) per spin
    susceptibility, susceptibility_stderr  beta N var(|M|/N) per spin
    energy_rhat, magnetization_rhat, abs_magnetization_rhat   split-R-hat of the per-sweep e,
                      m, |m| across replicas (None with fewer than 8 recorded sweeps; +inf
                      when every replica is frozen, in different states); energy_rhat
                      governs energy_stderr and specific_heat_stderr (the specific heat's
                      inputs are e and e^2: the folded R-hat sees chains that differ in
                      spread), abs_magnetization_rhat governs abs_magnetization_stderr and
                      susceptibility_stderr, magnetization_rhat magnetization_stderr
                      (below T_c at h = 0 the replicas keep the sign they ordered with, so
                      it stays large: <m> is not sampled on any practical time scale)
    equilibrated      energy_rhat and abs_magnetization_rhat both <= RHAT_MAX (False
                      before there are enough sweeps to tell)
    energy_exact, specific_heat_exact      Kaufman, this L, h = 0 (None at h != 0)
    energy_onsager, magnetization_yang     L -> infinity, h = 0 (None at h != 0)
    bad_spins         spins not equal to +1/-1 (always 0 unless memory was corrupted)
    compiling         "compiling for L=1024, first time only" while the CPU kernels for this
                      size are built in the background (the sweeps run eagerly meanwhile,
                      with the same spins), else None
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ..convergence import RHAT_MAX, ChainDraws, split_rhat
from ..exact.ising import kaufman, onsager_energy, yang_magnetization
from ..models.ising import (COMPILING, LatticeState, LatticeTopic, Replicas, downsample, method_param, side_param,
                            uniform_spins)
from ..params import Param, ParamError
from ..topic import Frame, Scalar, View

LATTICE_VIEW_MAX = 128  # the lattice view is downsampled on the device to at most this size
M_BINS = 40             # bins of the per-replica magnetisation histogram over [-1, 1]


@dataclass
class IsingState(LatticeState):    # replicas: the R lattices (int8 (R, L, L)) and their stream
    sweeps: int = 0                # sweeps since init
    since_edit: int = 0            # sweeps since init or the last live edit
    samples: int = 0               # sweeps accumulated in the running sums
    window_sweeps: int = 0         # sweeps since the last observe (for the acceptance)
    window_flips: torch.Tensor | None = None   # int64 (R,) flips since the last observe
    # running sums over accumulated sweeps, float64 (R,) each, on the device
    sums: torch.Tensor | None = None           # (6, R): e, e^2, m, m^2, |m|, |m|^2
    draws: ChainDraws | None = None            # thinned per-sweep (e, m) of each replica, for R-hat
    m_counts: torch.Tensor | None = None       # int64 (M_BINS,): per-replica m of every accumulated sweep
    exact_cache: dict = field(default_factory=dict)


class IsingTopic(LatticeTopic):
    name = "ising"
    title = "Ising MCMC"
    order = 10
    summary = "2D Ising model, checkerboard Metropolis / heat bath, vs Kaufman and Onsager"
    step_unit = "sweep"
    finite = False
    params = (
        side_param(64, hi=8192, log=True),
        Param("beta", "float", 0.44, "inverse temperature (beta_c = 0.4407)", lo=0.0, hi=5.0,
              step=0.01),
        Param("h", "float", 0.0, "external field (exact values only at h = 0)", lo=-5.0, hi=5.0,
              step=0.05),
        method_param(),
        Param("replicas", "int", 8, "independent lattices updated in one batch", lo=1, hi=4096,
              log=True, live=False),
        Param("burn_in", "int", 100, "sweeps before running means start (after each edit too)",
              lo=0, hi=10_000_000, step=50),
        Param("start", "choice", "random", "initial spins: random (hot) or all up (cold)",
              choices=("random", "cold"), live=False),
    )
    views = (
        View("lattice", "spins (replica 0)", source="lattice"),
        View("histogram", "per-replica m, sweeps since burn-in",
             source="m_histogram", options={"xlabel": "m"}),
        View("trace", "energy per spin", series=("energy_per_spin", "energy_mean"),
             reference=("energy_exact",), x="sweeps"),
        View("table", "measured vs exact", source="measured_vs_exact"),
    )

    quick = {"L": 16, "replicas": 2, "burn_in": 2}
    # a frame (R-hat sorts up to 2^15 draws per quantity) costs about one sweep at the
    # defaults: every 50 sweeps keeps observing near 2% of a run (BENCHMARKS.md)
    every = 50
    # acceptance: flips over the sweeps since the last frame; compiling: wall-clock state
    window_scalars = ("acceptance", "compiling")

    scalars = (
        Scalar("energy_per_spin", "energy per spin", "J", "E/N of the current lattices, mean over the replicas"),
        Scalar("magnetization_per_spin", "magnetisation per spin", "", "M/N now, mean over the replicas"),
        Scalar("abs_magnetization", "|m| per spin", "", "|M|/N now, mean over the replicas"),
        Scalar("acceptance", "acceptance", "", "spins flipped / updates attempted since the last frame"),
        Scalar("sweeps", "sweeps", "sweeps", "sweeps since init"),
        Scalar("samples", "samples", "sweeps", "sweeps in the running means (since burn-in or the last edit)"),
        Scalar("energy_mean", "mean energy per spin", "J", "running mean of E/N"),
        Scalar("energy_stderr", "energy std. error", "J",
               "its standard error, from the spread across replicas; none while energy_rhat > 1.01"),
        Scalar("magnetization_mean", "mean magnetisation", "", "running mean of M/N"),
        Scalar("magnetization_stderr", "magnetisation std. error", "", "its standard error; none while magnetization_rhat > 1.01"),
        Scalar("abs_magnetization_mean", "mean |m|", "", "running mean of |M|/N"),
        Scalar("abs_magnetization_stderr", "|m| std. error", "", "its standard error; none while abs_magnetization_rhat > 1.01"),
        Scalar("specific_heat", "specific heat", "", "beta^2 N var(E/N), per spin (k_B = 1)"),
        Scalar("specific_heat_stderr", "specific heat std. error", "", "its standard error; none while energy_rhat > 1.01"),
        Scalar("susceptibility", "susceptibility", "", "beta N var(|M|/N), per spin"),
        Scalar("susceptibility_stderr", "susceptibility std. error", "", "its standard error; none while abs_magnetization_rhat > 1.01"),
        Scalar("energy_exact", "exact energy (Kaufman)", "J", "Kaufman's E/N for this L at h = 0 (none at h != 0)"),
        Scalar("specific_heat_exact", "exact specific heat (Kaufman)", "", "Kaufman's value for this L at h = 0"),
        Scalar("energy_onsager", "energy, L = inf (Onsager)", "J", "Onsager's E/N of the infinite lattice at h = 0"),
        Scalar("magnetization_yang", "|m|, L = inf (Yang)", "", "Yang's spontaneous magnetisation at h = 0"),
        Scalar("bad_spins", "bad spins", "spins", "spins not +1/-1 (0 unless memory was corrupted)"),
        Scalar("*_rhat", "{} R-hat", "", "rank-normalised split-R-hat across replicas (Vehtari et al. 2021); "
               "above 1.01: not equilibrated; none before 8 sweeps, inf when frozen apart"),
        Scalar("equilibrated", "equilibrated", "", "energy and |m| R-hat both <= 1.01 (standard errors shown only then)"),
        COMPILING,
    )

    MAX_SPINS = 1 << 31  # replicas * L^2: int8 spins, 2 GiB, plus the twin's temporaries

    def check(self, p: dict[str, Any], changed: Sequence[str] = ()) -> dict[str, Any]:
        spins = int(p["replicas"]) * int(p["L"]) ** 2
        if spins > self.MAX_SPINS:
            name = "replicas" if "replicas" in changed and "L" not in changed else "L"
            raise ParamError(f"{name}: replicas x L^2 = {spins:,} spins is more than 2^31; "
                             "lower L or replicas")
        return p

    # -- contract -------------------------------------------------------------------------
    def init(self, p: Mapping[str, Any], device: torch.device, seed: int) -> IsingState:
        L, R = int(p["L"]), int(p["replicas"])
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        if p.get("start", "random") == "cold":
            spins = torch.ones((R, L, L), dtype=torch.int8, device=device)
        else:
            spins = uniform_spins(R, L, gen)
        state = IsingState(replicas=Replicas(spins, seed=int(seed) & 0x7FFFFFFF))
        state.window_flips = torch.zeros(R, dtype=torch.int64, device=device)
        state.sums = torch.zeros(6, R, dtype=torch.float64, device=device)
        state.draws = ChainDraws(2, R, device)
        state.m_counts = torch.zeros(M_BINS, dtype=torch.int64, device=device)
        return state

    def step(self, state: IsingState, p: Mapping[str, Any]) -> None:
        flips = state.replicas.sweep(float(p["beta"]), p["method"], float(p["h"]))
        state.sweeps += 1
        state.since_edit += 1
        state.window_sweeps += 1
        state.window_flips += flips
        if state.since_edit > int(p["burn_in"]):
            energy, mag = state.replicas.measure(float(p["h"]))
            n = float(state.replicas.spins.shape[1] * state.replicas.spins.shape[2])
            e = energy.to(torch.float64) / n
            m = mag.to(torch.float64) / n
            am = m.abs()
            state.sums += torch.stack((e, e * e, m, m * m, am, am * am))
            state.draws.add(torch.stack((e, m)))
            state.m_counts += torch.bincount(m_bin(m), minlength=M_BINS)
            state.samples += 1

    def on_edit(self, state: IsingState, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        """A live edit changes the distribution: restart the running means and the burn-in."""
        state.sums.zero_()
        state.draws.reset()
        state.m_counts.zero_()
        state.samples = 0
        state.since_edit = 0

    def work_unit(self) -> str:
        # bare: the status bar picks the time prefix (flips/ns on a GPU, where the field
        # quotes it; "0.00672 flips/ns" on a CPU read worse than "6.72 flips/us")
        return "flips"

    def observe(self, state: IsingState, p: Mapping[str, Any]) -> Frame:
        spins = state.replicas.spins
        R, L, _ = spins.shape
        N = L * L
        beta, h = float(p["beta"]), float(p["h"])
        energy, mag = state.replicas.measure(h)
        bad = (spins.abs() != 1).sum()
        lattice = downsample(spins[0], LATTICE_VIEW_MAX)
        draws = state.draws.draws()
        rhat = split_rhat(torch.stack((draws[0], draws[1], draws[1].abs())))
        if rhat is None:
            rhat = torch.full((3,), math.nan, dtype=torch.float64, device=spins.device)
        # one device-to-host copy for everything (the lattice view rides along as float64)
        packed = torch.cat((energy.to(torch.float64) / N, mag.to(torch.float64) / N,
                            state.window_flips.to(torch.float64), bad.to(torch.float64).reshape(1),
                            state.sums.reshape(-1), rhat, state.m_counts.to(torch.float64),
                            lattice.reshape(-1).to(torch.float64))).cpu()
        e_now, m_now = packed[:R], packed[R:2 * R]
        flips = packed[2 * R:3 * R]
        n_bad = int(packed[3 * R])
        at = 3 * R + 1
        sums = packed[at:at + 6 * R].reshape(6, R)
        at += 6 * R
        rhats = [None if math.isnan(x) else x for x in packed[at:at + 3].tolist()]
        at += 3
        m_counts = [int(c) for c in packed[at:at + M_BINS].tolist()]
        lattice = packed[at + M_BINS:].to(torch.int8).reshape(lattice.shape)

        attempted = state.window_sweeps * R * N
        acceptance = float(flips.sum()) / attempted if attempted else None
        state.window_flips.zero_()
        state.window_sweeps = 0

        s: dict[str, Any] = {
            "energy_per_spin": float(e_now.mean()),
            "magnetization_per_spin": float(m_now.mean()),
            "abs_magnetization": float(m_now.abs().mean()),
            "acceptance": acceptance,
            "sweeps": state.sweeps,
            "samples": state.samples,
        }
        s.update(_running_stats(sums, state.samples, beta, N))
        s.update(_trusted(s, *rhats))
        s.update(self._exact(state, beta, h, L))
        s["bad_spins"] = n_bad
        if n_bad:
            state.notes.append(f"{n_bad} spins are not +1/-1: the lattice is corrupted")
        # the verdict goes with the table (and ``equilibrated`` with the scalars), not to the
        # event line: R-hat hovering at the threshold is no event
        verdict = _equilibration(s)
        frozen = [k for k in RHATS if s[k] == math.inf]
        if frozen:                                   # an infinite scalar is named in its own frame
            state.notes.append(f"{', '.join(frozen)} = inf: every replica is frozen, not all in "
                               "the same state")
        s["compiling"] = state.kernel_status()
        frame = Frame(scalars=s, notes=state.take_notes())
        frame.views["lattice"] = lattice.numpy()
        frame.views["m_histogram"] = {"edges": M_EDGES, "counts": m_counts}
        frame.views["measured_vs_exact"] = _table(s, L, verdict, R)
        return frame

    # -- exact values ------------------------------------------------------------------------
    def _exact(self, state: IsingState, beta: float, h: float, L: int) -> dict[str, Any]:
        key = (beta, h, L)
        got = state.exact_cache.get(key)
        if got is None:
            if h != 0.0:
                got = {"energy_exact": None, "specific_heat_exact": None,
                       "energy_onsager": None, "magnetization_yang": None}
            else:
                _, u, c = kaufman(beta, L)
                got = {"energy_exact": u, "specific_heat_exact": c,
                       "energy_onsager": onsager_energy(beta),
                       "magnetization_yang": yang_magnetization(beta)}
            state.exact_cache = {key: got}
        return dict(got)


M_EDGES = [-1.0 + 2.0 * i / M_BINS for i in range(M_BINS + 1)]
RHATS = ("energy_rhat", "magnetization_rhat", "abs_magnetization_rhat")
# which R-hat vouches for which standard error
GOVERNS = {"energy_rhat": ("energy_stderr", "specific_heat_stderr"),
           "magnetization_rhat": ("magnetization_stderr",),
           "abs_magnetization_rhat": ("abs_magnetization_stderr", "susceptibility_stderr")}


def m_bin(m: torch.Tensor) -> torch.Tensor:
    """Bin index of magnetisations per spin m in [-1, 1]: M_BINS equal bins, [-1, -1 + w)
    first, m = 1 in the last; int64, on m's device."""
    return ((m + 1.0) * (M_BINS / 2.0)).floor().clamp(0, M_BINS - 1).to(torch.int64)


def _trusted(s: Mapping[str, Any], energy_rhat: float | None, m_rhat: float | None,
             abs_m_rhat: float | None) -> dict[str, Any]:
    """The R-hat scalars, ``equilibrated``, and the standard errors each R-hat vouches for
    set to None where it does not (R-hat above RHAT_MAX, or too few sweeps to have one)."""
    out: dict[str, Any] = {"energy_rhat": energy_rhat, "magnetization_rhat": m_rhat,
                           "abs_magnetization_rhat": abs_m_rhat}
    for name, errors in GOVERNS.items():
        if out[name] is None or not out[name] <= RHAT_MAX:
            out.update({e: None for e in errors if s.get(e) is not None})
    out["equilibrated"] = all(out[k] is not None and out[k] <= RHAT_MAX
                              for k in ("energy_rhat", "abs_magnetization_rhat"))
    return out


def _equilibration(s: Mapping[str, Any]) -> str:
    """One line on whether the running means can be trusted, naming the R-hat behind it."""
    if not s["samples"]:
        return "burning in: no running means yet"
    if s["energy_rhat"] is None or s["abs_magnetization_rhat"] is None:
        return f"not equilibrated: {s['samples']} sweeps are too few for R-hat; no error bars yet"
    bad = [(k, s[k]) for k in ("energy_rhat", "abs_magnetization_rhat") if not s[k] <= RHAT_MAX]
    if not bad:
        return (f"equilibrated: energy R-hat {s['energy_rhat']:.3f}, |m| R-hat "
                f"{s['abs_magnetization_rhat']:.3f} (<= {RHAT_MAX})")
    named = ", ".join(f"{k} = {v:.3g}" for k, v in bad)
    return f"not equilibrated ({named} > {RHAT_MAX}): the replicas disagree, so their spread is no error bar"


def _running_stats(sums: torch.Tensor, n: int, beta: float, N: int) -> dict[str, Any]:
    """Running means (replica average of each replica's time average) with standard errors
    from the spread across replicas; specific heat and susceptibility from the fluctuations."""
    names = ("energy_mean", "energy_stderr", "magnetization_mean", "magnetization_stderr",
             "abs_magnetization_mean", "abs_magnetization_stderr", "specific_heat",
             "specific_heat_stderr", "susceptibility", "susceptibility_stderr")
    out: dict[str, Any] = {k: None for k in names}
    if n <= 0:
        return out
    R = sums.shape[1]
    avg = sums / n                               # per-replica time averages
    e, e2, m, _m2, am, am2 = avg
    c_r = beta * beta * N * (e2 - e * e)         # per-replica specific heat
    x_r = beta * N * (am2 - am * am)             # per-replica susceptibility of |m|

    def mean_err(x: torch.Tensor) -> tuple[float, float | None]:
        mean = float(x.mean())
        err = float(x.std(unbiased=True)) / math.sqrt(R) if R > 1 else None
        return mean, err

    out["energy_mean"], out["energy_stderr"] = mean_err(e)
    out["magnetization_mean"], out["magnetization_stderr"] = mean_err(m)
    out["abs_magnetization_mean"], out["abs_magnetization_stderr"] = mean_err(am)
    # pooled over replicas and time: the fluctuation formulas on all samples
    pooled = sums.sum(dim=1) / (n * R)
    out["specific_heat"] = float(beta * beta * N * (pooled[1] - pooled[0] ** 2))
    out["susceptibility"] = float(beta * N * (pooled[5] - pooled[4] ** 2))
    out["specific_heat_stderr"] = mean_err(c_r)[1]
    out["susceptibility_stderr"] = mean_err(x_r)[1]
    return out


def _measured_or_flagged(value: float | None, stderr: float | None, rhat_ok: bool,
                         replicas: int) -> float | tuple[float, float | None] | None:
    """A measured cell: (value, stderr); (value, None) when R-hat withholds the error bar;
    the value alone with one replica (no error bar to withhold); None before any sample."""
    if value is None:
        return None
    if stderr is not None:
        return (value, stderr)
    return value if replicas < 2 and rhat_ok else (value, None)


def _table(s: Mapping[str, Any], L: int, verdict: str, replicas: int = 2) -> dict[str, Any]:
    """Measured vs exact, with the R-hat behind each measured figure: cells are numbers,
    (value, stderr) pairs (stderr None: not equilibrated, no error bar) or None (no value);
    ``note`` says whether the running means are equilibrated. The UI formats them."""
    e_ok = s["energy_rhat"] is not None and s["energy_rhat"] <= RHAT_MAX
    m_ok = s["abs_magnetization_rhat"] is not None and s["abs_magnetization_rhat"] <= RHAT_MAX
    return {
        "columns": ["observable", "measured", "Rhat", f"exact L={L}", "L=inf"],
        "rows": [
            ["energy/spin", _measured_or_flagged(s["energy_mean"], s["energy_stderr"], e_ok, replicas),
             s["energy_rhat"], s["energy_exact"], s["energy_onsager"]],
            ["|m|", _measured_or_flagged(s["abs_magnetization_mean"], s["abs_magnetization_stderr"],
                                         m_ok, replicas),
             s["abs_magnetization_rhat"], None, s["magnetization_yang"]],
            ["C/spin", _measured_or_flagged(s["specific_heat"], s["specific_heat_stderr"], e_ok, replicas),
             s["energy_rhat"], s["specific_heat_exact"], None],
            ["acceptance", s["acceptance"], None, None, None],
        ],
        "note": verdict,
    }


TOPIC = IsingTopic()
