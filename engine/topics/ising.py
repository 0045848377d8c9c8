"""The 2D Ising model sampled by checkerboard MCMC (Metropolis or heat bath), batched over
independent replicas, with Kaufman's finite-lattice and Onsager's infinite-lattice exact
values beside the measurements.

Conventions: J = 1, periodic L x L torus, E = -sum_<ij> s_i s_j - h sum_i s_i, natural log.
One step is one full sweep (both colours) of every replica; scalars are averages over the
replicas. Running means start after ``burn_in`` sweeps and restart after every live edit
(they describe a different distribution); their standard errors come from the spread
across replicas of each replica's own time average, which accounts for autocorrelation
because the replicas are independent.

Frame scalars (the JSONL schema):
    energy_per_spin, magnetization_per_spin, abs_magnetization   current, replica average
    acceptance        spins flipped / spin updates attempted, over the sweeps since the last frame
    sweeps            sweeps done since init;  samples: sweeps in the running means
    energy_mean, energy_stderr, magnetization_mean, magnetization_stderr,
    abs_magnetization_mean, abs_magnetization_stderr          running means (None before any)
    specific_heat, specific_heat_stderr    beta^2 N var(E/N) per spin
    susceptibility, susceptibility_stderr  beta N var(|M|/N) per spin
    energy_exact, specific_heat_exact      Kaufman, this L, h = 0 (None at h != 0)
    energy_onsager, magnetization_yang     L -> infinity, h = 0 (None at h != 0)
    bad_spins         spins not equal to +1/-1 (always 0 unless memory was corrupted)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ..exact.ising import kaufman, onsager_energy, yang_magnetization
from ..models.ising import (LatticeState, LatticeTopic, Replicas, downsample, method_param, side_param,
                            uniform_spins)
from ..params import Param, ParamError
from ..topic import Frame, View

LATTICE_VIEW_MAX = 128  # the lattice view is downsampled on the device to at most this size


@dataclass
class IsingState(LatticeState):    # replicas: the R lattices (int8 (R, L, L)) and their stream
    sweeps: int = 0                # sweeps since init
    since_edit: int = 0            # sweeps since init or the last live edit
    samples: int = 0               # sweeps accumulated in the running sums
    window_sweeps: int = 0         # sweeps since the last observe (for the acceptance)
    window_flips: torch.Tensor | None = None   # int64 (R,) flips since the last observe
    # running sums over accumulated sweeps, float64 (R,) each, on the device
    sums: torch.Tensor | None = None           # (6, R): e, e^2, m, m^2, |m|, |m|^2
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
        View("histogram", "magnetization per spin", series=("magnetization_per_spin",),
             options={"bins": 40, "range": (-1.0, 1.0)}),
        View("trace", "energy per spin", series=("energy_per_spin", "energy_mean"),
             reference=("energy_exact",), x="sweeps"),
        View("table", "measured vs exact", source="measured_vs_exact"),
    )

    quick = {"L": 16, "replicas": 2, "burn_in": 2}
    window_scalars = ("acceptance",)   # flips over the sweeps since the last frame

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
            state.samples += 1

    def on_edit(self, state: IsingState, p: Mapping[str, Any], changed: Sequence[str]) -> None:
        """A live edit changes the distribution: restart the running means and the burn-in."""
        state.sums.zero_()
        state.samples = 0
        state.since_edit = 0

    def work_unit(self) -> str:
        return "flips/ns"

    def observe(self, state: IsingState, p: Mapping[str, Any]) -> Frame:
        spins = state.replicas.spins
        R, L, _ = spins.shape
        N = L * L
        beta, h = float(p["beta"]), float(p["h"])
        energy, mag = state.replicas.measure(h)
        bad = (spins.abs() != 1).sum()
        lattice = downsample(spins[0], LATTICE_VIEW_MAX)
        # one device-to-host copy for everything (the lattice view rides along as float64)
        packed = torch.cat((energy.to(torch.float64) / N, mag.to(torch.float64) / N,
                            state.window_flips.to(torch.float64), bad.to(torch.float64).reshape(1),
                            state.sums.reshape(-1), lattice.reshape(-1).to(torch.float64))).cpu()
        e_now, m_now = packed[:R], packed[R:2 * R]
        flips = packed[2 * R:3 * R]
        n_bad = int(packed[3 * R])
        sums = packed[3 * R + 1:9 * R + 1].reshape(6, R)
        lattice = packed[9 * R + 1:].to(torch.int8).reshape(lattice.shape)

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
        s.update(self._exact(state, beta, h, L))
        s["bad_spins"] = n_bad
        if n_bad:
            state.notes.append(f"{n_bad} spins are not +1/-1: the lattice is corrupted")
        frame = Frame(scalars=s, notes=state.take_notes())
        frame.views["lattice"] = lattice.numpy()
        frame.views["measured_vs_exact"] = _table(s, L)
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


def _measured(value: float | None, stderr: float | None) -> float | tuple[float, float] | None:
    """A table cell: (value, stderr), the value alone when it has no error bar, None for none."""
    if value is None or stderr is None:
        return value
    return (value, stderr)


def _table(s: Mapping[str, Any], L: int) -> dict[str, Any]:
    """Measured vs exact: cells are numbers, (value, stderr) pairs or None (no value); the
    UI formats them."""
    return {
        "columns": ["observable", "measured", f"exact L={L}", "L=inf"],
        "rows": [
            ["energy/spin", _measured(s["energy_mean"], s["energy_stderr"]), s["energy_exact"],
             s["energy_onsager"]],
            ["|m|", _measured(s["abs_magnetization_mean"], s["abs_magnetization_stderr"]), None,
             s["magnetization_yang"]],
            ["C/spin", _measured(s["specific_heat"], s["specific_heat_stderr"]),
             s["specific_heat_exact"], None],
            ["acceptance", s["acceptance"], None, None],
        ],
    }


TOPIC = IsingTopic()
