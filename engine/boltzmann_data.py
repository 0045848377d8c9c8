"""The data sets Boltzmann machines learn from, as 0/1 rows (the fvbm reads s = 2x - 1).

planted          M samples of a planted fvbm (engine.models.boltzmann.planted_teacher: SK
                 couplings J_ij ~ N(0, beta^2 / N), fields h_i ~ N(0, 0.1^2)), plus a held-out
                 set of M / 5 more. Exact independent draws by enumeration for N <= 20;
                 otherwise GIBBS_CHAINS sequential-Gibbs chains from uniform spins, GIBBS_BURN_IN
                 sweeps of burn-in and one sample every GIBBS_THIN sweeps per chain.
planted_lattice  the same from the L x L Ising ferromagnet at inverse temperature beta (every
                 bond beta, h = 0; Kaufman 1949 gives its exact ln Z), checkerboard Gibbs.
bars_stripes     the distinct n x n bars-and-stripes patterns once each (no held-out set):
                 the best mean log-likelihood is -ln(number of patterns).
digits           scikit-learn's bundled 8 x 8 digits binarised at >= 8: 1500 train, 297 held out.
file             a user's 0/1 or ±1 rows (engine.datasets.load_binary); the last 15% are held
                 out when there are at least 20 rows.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from . import datasets
from .exact import boltzmann as exact
from .exact.ising import kaufman_log_z
from .models.boltzmann import FVBM, Stream, planted_teacher

DATASETS = ("planted", "planted_lattice", "bars_stripes", "digits", "file")
GIBBS_CHAINS = 1000
GIBBS_BURN_IN = 500
GIBBS_THIN = 10
HELDOUT_FRACTION = 0.15


@dataclass
class BinaryData:
    train: torch.Tensor                 # float64 0/1 (M, D), on the CPU
    heldout: torch.Tensor | None        # float64 0/1 or None
    description: str                    # how it was made (shown on the pane)
    teacher: FVBM | None = None         # the planted model
    teacher_log_z: float | None = None  # its exact ln Z where known

    @property
    def units(self) -> int:
        return self.train.shape[1]


def units_of(p: dict) -> int:
    """The number of visible units the params' data set has (file: read from the file)."""
    name = p["dataset"]
    if name == "planted":
        return int(p["n_visible"])
    if name == "planted_lattice":
        return int(p["L"]) ** 2
    if name == "bars_stripes":
        return int(p["bas_size"]) ** 2
    if name == "digits":
        return 64
    return datasets.load_binary(p["data"]).shape[1] if p["data"] else 0


def teacher_samples(teacher: FVBM, count: int, seed: int) -> tuple[torch.Tensor, str]:
    """``count`` ±1 samples of the teacher and a line saying how they were drawn."""
    g = torch.Generator().manual_seed(int(seed))
    if exact.enumerable(teacher):
        return exact.sample(teacher, count, g), f"{count} exact draws (enumeration of 2^{teacher.n})"
    chains = min(count, GIBBS_CHAINS)
    per_chain = -(-count // chains)
    stream = Stream.new(seed, "cpu")
    S = torch.randint(0, 2, (chains, teacher.n), generator=g).to(torch.float64) * 2 - 1
    teacher.gibbs(S, GIBBS_BURN_IN, stream)
    draws = []
    for _ in range(per_chain):
        teacher.gibbs(S, GIBBS_THIN, stream)
        draws.append(S.clone())
    out = torch.cat(draws)[:count]
    return out[torch.randperm(out.shape[0], generator=g)], (
        f"{count} Gibbs draws: {chains} chains, burn-in {GIBBS_BURN_IN} sweeps, thinning {GIBBS_THIN}")


KEYS = ("dataset", "n_visible", "L", "teacher_beta", "teacher_seed", "n_samples", "bas_size", "data")


def load(p: dict, seed: int = 0) -> BinaryData:
    """The data set the params name (the run's ``seed`` plays no part: planted data depend on
    teacher_seed). Cached on the params that matter, so a re-init does not redraw; the
    tensors are shared and must not be modified."""
    key = tuple((k, p[k]) for k in KEYS)
    if p["dataset"] == "file":                  # a rewritten file is a new data set
        st = os.stat(os.path.expanduser(str(p["data"])))
        key += (("stat", st.st_size, st.st_mtime_ns),)
    return _load(key)


@lru_cache(maxsize=4)
def _load(key: tuple) -> BinaryData:
    p = dict(k for k in key if k[0] != "stat")
    name = p["dataset"]
    if name in ("planted", "planted_lattice"):
        lattice = name == "planted_lattice"
        n = int(p["L"]) ** 2 if lattice else int(p["n_visible"])
        teacher = planted_teacher(n, p["teacher_beta"], p["teacher_seed"],
                                  "lattice" if lattice else "dense", int(p["L"]) if lattice else None)
        m = int(p["n_samples"])
        X, how = teacher_samples(teacher, m + max(1, m // 5), p["teacher_seed"] + 1)
        bits = (X + 1) / 2
        lz = None
        if lattice:
            lz = kaufman_log_z(p["teacher_beta"], int(p["L"])) if p["teacher_beta"] > 0 else n * math.log(2)
        elif exact.enumerable(teacher):
            lz = exact.log_z(teacher)
        kind = f"{int(p['L'])}x{int(p['L'])} Ising at beta={p['teacher_beta']:g}" if lattice else \
            f"SK teacher N={n} beta={p['teacher_beta']:g} seed={p['teacher_seed']}"
        return BinaryData(bits[:m], bits[m:], f"{kind}: {how}", teacher, lz)
    if name == "bars_stripes":
        x = torch.from_numpy(datasets.bars_and_stripes(int(p["bas_size"])))
        return BinaryData(x, None, f"{x.shape[0]} distinct {p['bas_size']}x{p['bas_size']} bars and stripes")
    if name == "digits":
        tr, ho = datasets.binary_digits()
        return BinaryData(torch.from_numpy(tr), torch.from_numpy(ho),
                          "digits >= 8: first 1500 train, last 297 held out")
    x = datasets.load_binary(p["data"])
    n_ho = int(round(HELDOUT_FRACTION * x.shape[0])) if x.shape[0] >= 20 else 0
    t = torch.from_numpy(np.ascontiguousarray(x))
    heldout = t[x.shape[0] - n_ho:] if n_ho else None
    return BinaryData(t[:x.shape[0] - n_ho], heldout,
                      f"{x.shape[0]} rows of {x.shape[1]} from {p['data']}" + (f", last {n_ho} held out" if n_ho else ""))
