"""The 2D Ising model and the Edwards-Anderson spin glass on the periodic L x L torus.

One model for the topics that sample it (ising, annealing, tempering, population):

    E(s) = - sum_<ij> J_ij s_i s_j - h sum_i s_i,   s_i in {-1, +1},   P(s) = exp(-beta E(s)) / Z(beta)

Conventions: J = 1 units, k_B = 1, natural log, periodic boundaries, L even (the
checkerboard's two sublattices). Models:
    ferromagnet  J_ij = 1; ground state -2 per spin; exact ln Z from Kaufman (1949).
    spinglass    2D +-J Edwards-Anderson: each bond +1 or -1 with probability 1/2, drawn from
                 a disorder seed (the same disorder for every replica); no exact value.

:class:`Replicas` is a batch of R lattices moved by the checkerboard kernels
(engine.kernels.checkerboard) with the random stream that moves them; :class:`LatticeTopic`
and :class:`LatticeState` are the base of the topics whose state holds one. The knobs every
topic of the model shares (``L``, ``model``, ``method``, ``disorder_seed``) are made here
so they read and validate alike everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ..exact.ising import kaufman
from ..kernels import checkerboard
from ..params import Param, ParamError
from ..topic import Topic, finite_or_none
from ..views import Scalar

MODELS = ("ferromagnet", "spinglass")
GROUND_STATE_FERROMAGNET = -2.0  # energy per spin of the all-up / all-down state


def check_even(L: int) -> None:
    """The lattice side must be even: the checkerboard splits the torus into two sublattices."""
    if L % 2:
        raise ParamError(f"L must be even (checkerboard sublattices), got {L}")


# -- the knobs ---------------------------------------------------------------------------
def side_param(default: int, hi: int = 1024, log: bool = False) -> Param:
    """``L``, the lattice side (even, not live: a new side re-initialises the run)."""
    return Param("L", "int", default, "lattice side (even; periodic L x L)", lo=4, hi=hi,
                 log=log, step=None if log else 2, live=False, check=check_even)


def model_param() -> Param:
    return Param("model", "choice", "ferromagnet", choices=MODELS, live=False,
                 help="ferromagnet (J = 1, exact ln Z from Kaufman) or 2D +-J Edwards-Anderson spin glass")


def method_param() -> Param:
    return Param("method", "choice", "metropolis", choices=checkerboard.METHODS,
                 help="single-spin moves: metropolis or gibbs (heat bath)")


def disorder_seed_param() -> Param:
    return Param("disorder_seed", "int", 1, lo=0, hi=2**31 - 1, live=False,
                 help="seed of the spin glass's +-J bonds")


# -- couplings ---------------------------------------------------------------------------
def edwards_anderson_couplings(L: int, disorder_seed: int,
                               device: torch.device | str = "cpu") -> torch.Tensor:
    """+-J couplings of the 2D Edwards-Anderson spin glass, float32 (2, L, L) in the
    checkerboard layout (``[0]`` right bonds, ``[1]`` down bonds), each +1 or -1 with
    probability 1/2, a function of (L, disorder_seed) only (drawn on the CPU)."""
    gen = torch.Generator(device="cpu").manual_seed(int(disorder_seed))
    signs = torch.randint(0, 2, (2, L, L), generator=gen, dtype=torch.int64) * 2 - 1
    return signs.to(device=device, dtype=torch.float32)


def model_couplings(model: str, L: int, disorder_seed: int,
                    device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The ``couplings`` argument of the checkerboard kernels: None (uniform J = 1) for
    the ferromagnet, the seeded +-J bonds for the spin glass."""
    if model == "ferromagnet":
        return None
    if model == "spinglass":
        return edwards_anderson_couplings(L, disorder_seed, device)
    raise ParamError(f"model must be one of {'|'.join(MODELS)}, got {model!r}")


# -- exact values ------------------------------------------------------------------------
def exact_log_z(model: str, L: int, beta: float) -> float | None:
    """ln Z(beta) of the L x L torus (J = 1, h = 0): Kaufman's closed form for the
    ferromagnet, None for the spin glass (no exact value)."""
    if model != "ferromagnet":
        return None
    return finite_or_none(kaufman(float(beta), int(L))[0])


def exact_energy_per_spin(model: str, L: int, beta: float) -> float | None:
    """Equilibrium <E>/N = -d ln Z / d beta / N from Kaufman (ferromagnet), else None."""
    if model != "ferromagnet":
        return None
    return finite_or_none(kaufman(float(beta), int(L))[1])


# -- lattices ----------------------------------------------------------------------------
def uniform_spins(replicas: int, L: int, generator: torch.Generator) -> torch.Tensor:
    """int8 (replicas, L, L) of independent uniform +-1 spins, on the generator's device:
    exact samples of beta = 0, where ln Z(0) = L^2 ln 2."""
    bits = torch.randint(0, 2, (replicas, L, L), generator=generator, device=generator.device,
                         dtype=torch.int8)
    return bits * 2 - 1


def downsample(lattice: torch.Tensor, size: int) -> torch.Tensor:
    """(L, L) int8 spins -> at most (size, size) int8 +1/-1, by the sign of block sums over
    k x k blocks, k = ceil(L / size) (ties go to +1; the last L mod k rows and columns are
    left out), computed on the device. A lattice no larger than ``size`` is returned as is
    (a copy)."""
    L = lattice.shape[0]
    if L <= size:
        return lattice.clone()
    k = -(-L // size)
    rows = L // k
    block = lattice[: rows * k, : rows * k].to(torch.float32).reshape(rows, k, rows, k).sum(dim=(1, 3))
    return torch.where(block >= 0, 1, -1).to(torch.int8)


@dataclass
class Replicas:
    """R independent lattices of one model, moved by checkerboard sweeps.

    spins      int8 (R, L, L), +1/-1, updated in place (a topic may replace the tensor, e.g.
               after resampling).
    couplings  None (ferromagnet, J = 1) or float32 (2, L, L) shared by all replicas.
    seed, counter  the kernels' random stream: a sweep uses counters ``counter`` and
               ``counter + 1`` and advances ``counter`` by 2.
    generator  when given, the CPU path is the reference twin drawing from it (torch.rand);
               on CUDA the stream is always (seed, counter).
    """

    spins: torch.Tensor
    couplings: torch.Tensor | None = None
    seed: int = 0
    counter: int = 0
    generator: torch.Generator | None = None

    def sweep(self, beta: float | torch.Tensor, method: str, h: float = 0.0) -> torch.Tensor:
        """One full sweep of every replica at ``beta`` (a float, or float32 (R,) for one beta
        per replica) and field ``h``; returns the spins flipped per replica, int32 (R,)."""
        flips = checkerboard.sweep(self.spins, beta, h, method, self.seed, self.counter,
                                   self.couplings, self.generator)
        self.counter += 2
        return flips

    def measure(self, h: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Total energy E(s) (with field ``h``) and magnetisation sum_i s_i of each replica,
        float32 (R,) each, on the device."""
        return checkerboard.measure(self.spins, self.couplings, h)


@dataclass(kw_only=True)
class LatticeState:
    """What the state of every :class:`LatticeTopic` holds: its lattices and the one-line
    notes for the next frame."""

    replicas: Replicas
    notes: list[str] = field(default_factory=list)
    builds_seen: tuple[str, ...] = ()      # the kernel builds the last frame reported

    def take_notes(self) -> list[str]:
        """The notes made since the last frame (the window of events), and a fresh list."""
        notes, self.notes = self.notes, []
        return notes

    def kernel_status(self) -> str | None:
        """The ``compiling`` scalar of a frame: while the CPU kernels for a new lattice size
        are built in the background (checkerboard.compiling; the steps run the eager twin
        meanwhile, with the same spins) a line such as "compiling for L=1024, first time
        only", else None. A note when a build starts and when the compiled kernels take over.
        Call before :meth:`take_notes`. Wall-clock state: a topic lists ``compiling`` in its
        ``window_scalars``."""
        sizes = checkerboard.compiling()
        if sizes != self.builds_seen:
            if sizes:
                self.notes.append(f"compiling the CPU kernels for {', '.join(sizes)} (first time "
                                  "only); stepping eagerly meanwhile")
            else:
                self.notes.append(f"compiled CPU kernels for {', '.join(self.builds_seen)} ready: "
                                  "switched from eager (same spins)")
            self.builds_seen = sizes
        return f"compiling for {', '.join(sizes)}, first time only" if sizes else None


# The ``compiling`` scalar every lattice topic reports (a window scalar: wall-clock state).
COMPILING = Scalar("compiling", "compiling", "",
                   "a CPU kernel build for this lattice size under way (stepping eagerly meanwhile)")


class LatticeTopic(Topic):
    """Base of the topics whose state is a :class:`LatticeState` and that sweep each of its
    lattices once per step: a step is R L^2 spin updates."""

    def work_per_step(self, state: Any, p: Mapping[str, Any]) -> float:
        return float(state.replicas.spins.numel())

    def work_unit(self) -> str:
        return "spin updates"
