"""Exact results for small Boltzmann machines by streaming enumeration, in float64.

The 2^n states of the enumerated side are visited in chunks of ``CHUNK`` rows (state k has
unit i = bit i of k; ±1 spins for the fvbm), never as one dense tensor, and reduced with a
running log-sum-exp (the sums are rescaled whenever the running maximum of the log-weights
grows), so the results are exact to float64 rounding for n up to MAX_UNITS = 20.

fvbm: ln Z = logsumexp_s [1/2 s^T J s + h^T s]; model moments <s_i s_j> (the allowed pairs)
and <s_i>.
rbm, enumerating the smaller side and summing the other analytically:
    over z:  ln Z = logsumexp_z [c^T z + sum_i softplus(b_i + (W z)_i)],
             <v z^T> = sum_z p(z) sigma(b + W z) z^T, <v> = sum_z p(z) sigma(b + W z), <z> = sum_z p(z) z
    over v:  ln Z = logsumexp_v [b^T v + sum_j softplus(c_j + (v^T W)_j)],
             <v z^T> = sum_v p(v) v sigma(c + v^T W)^T, ...
The log-likelihood of data is mean(log q*(x)) - ln Z, and KL(data || model) =
-H(data) - mean log q(x) with H the empirical entropy of the (possibly repeated) rows.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Iterator

import torch
import torch.nn.functional as nnf

from ..models.boltzmann import FVBM, RBM

MAX_UNITS = 20
CHUNK = 1 << 14
CACHED_UNITS = 16


def enumerated_units(model: FVBM | RBM) -> int:
    """The number of units enumeration visits: N for the fvbm, min(nv, nh) for the rbm."""
    return model.n if isinstance(model, FVBM) else min(model.nv, model.nh)


def enumerable(model: FVBM | RBM) -> bool:
    return enumerated_units(model) <= MAX_UNITS


def _require(model: FVBM | RBM) -> None:
    n = enumerated_units(model)
    if n > MAX_UNITS:
        kind = "fvbm with N" if isinstance(model, FVBM) else "rbm with min(nv, nh)"
        raise ValueError(f"exact enumeration needs <= {MAX_UNITS} units, the {kind} = {n}")


def state_chunks(n: int, spins: bool = False, device: torch.device | str = "cpu",
                 chunk: int | None = None, dtype=torch.float64) -> Iterator[torch.Tensor]:
    """All 2^n states of n units, (rows, n) chunks in index order: {0,1} or ±1 (``spins``)."""
    if chunk is None and n <= CACHED_UNITS:
        yield from _cached_chunks(n, spins, str(device), dtype, CHUNK)
        return
    yield from _make_chunks(n, spins, device, chunk or CHUNK, dtype)


@lru_cache(maxsize=4)
def _cached_chunks(n: int, spins: bool, device: str, dtype, chunk: int) -> tuple[torch.Tensor, ...]:
    """The chunks of up to 2^16 states, kept (8 MiB at n = 16): fits re-enumerate every update."""
    return tuple(_make_chunks(n, spins, device, chunk, dtype))


def _make_chunks(n: int, spins: bool, device, chunk: int, dtype) -> Iterator[torch.Tensor]:
    shifts = torch.arange(n, device=device)
    for start in range(0, 1 << n, chunk):
        idx = torch.arange(start, min(start + chunk, 1 << n), device=device)
        bits = ((idx[:, None] >> shifts) & 1).to(dtype)
        yield 2.0 * bits - 1.0 if spins else bits


class _LogSum:
    """Running sum_k exp(a_k) f_k over chunks, kept as exp(m) * (z, sums) with m the largest a."""

    def __init__(self) -> None:
        self.m = -math.inf
        self.z: torch.Tensor | float = 0.0
        self.sums: list[torch.Tensor] | None = None

    def add(self, log_w: torch.Tensor, terms: Callable[[torch.Tensor], list[torch.Tensor]] | None = None) -> None:
        m_new = max(self.m, float(log_w.max()))
        scale = math.exp(self.m - m_new) if math.isfinite(self.m) else 0.0
        w = torch.exp(log_w - m_new)
        self.z = self.z * scale + w.sum()
        if terms is not None:
            new = terms(w)
            self.sums = new if self.sums is None else [s * scale + t for s, t in zip(self.sums, new)]
        self.m = m_new

    @property
    def log_z(self) -> float:
        return self.m + math.log(float(self.z))

    def means(self) -> list[torch.Tensor]:
        return [s / self.z for s in self.sums]


def _f64(model: FVBM | RBM) -> FVBM | RBM:
    return model.clone(torch.float64)


def log_z(model: FVBM | RBM) -> float:
    """Exact ln Z (float64)."""
    job = log_z_steps(model)
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def log_z_steps(model: FVBM | RBM):
    """:func:`log_z` as a generator that yields after each chunk of states (``chunks`` of
    them) and returns ln Z; the parameters are copied at the call."""
    _require(model)
    return _log_z_steps(_f64(model))


def chunks(model: FVBM | RBM) -> int:
    """The number of state chunks enumeration visits."""
    return -(-(1 << enumerated_units(model)) // CHUNK)


def _log_z_steps(m: FVBM | RBM):
    acc = _LogSum()
    for log_w, _ in _weighted_states(m):
        acc.add(log_w)
        yield
    return acc.log_z


def _weighted_states(m: FVBM | RBM):
    """(log-weight, state chunk) over the enumerated side (the other side summed out)."""
    if isinstance(m, FVBM):
        for S in state_chunks(m.n, spins=True, device=m.h.device):
            yield -m.energy(S), S
    elif m.nh <= m.nv:
        for Z in state_chunks(m.nh, device=m.W.device):
            yield Z @ m.c + nnf.softplus(Z @ m.W.T + m.b).sum(1), Z
    else:
        for V in state_chunks(m.nv, device=m.W.device):
            yield V @ m.b + nnf.softplus(V @ m.W + m.c).sum(1), V


def moments(model: FVBM | RBM) -> tuple[float, tuple[torch.Tensor, ...]]:
    """(ln Z, the model statistics in the layout of ``model.stats``), exactly, float64."""
    _require(model)
    m = _f64(model)
    acc = _LogSum()
    if isinstance(m, FVBM):
        for log_w, S in _weighted_states(m):
            acc.add(log_w, lambda w, S=S: [m.pair_sums(S, w), w @ S])
    elif m.nh <= m.nv:
        for log_w, Z in _weighted_states(m):
            P = torch.sigmoid(Z @ m.W.T + m.b)          # p(v = 1 | z), (rows, nv)
            acc.add(log_w, lambda w, P=P, Z=Z: [(P * w[:, None]).T @ Z, w @ P, w @ Z])
    else:
        for log_w, V in _weighted_states(m):
            P = torch.sigmoid(V @ m.W + m.c)            # p(z = 1 | v), (rows, nh)
            acc.add(log_w, lambda w, P=P, V=V: [(V * w[:, None]).T @ P, w @ V, w @ P])
    return acc.log_z, tuple(acc.means())


def log_unnormalised(model: FVBM | RBM, X: torch.Tensor) -> torch.Tensor:
    """log q*(x) per row: -E(s) for the fvbm, -F(v) for the rbm."""
    if isinstance(model, FVBM):
        return -model.energy(X)
    return -model.free_energy(X)


def log_likelihood(model: FVBM | RBM, X: torch.Tensor, log_z_value: float) -> float:
    """Mean log q(x) over the rows of X, given ln Z."""
    m = _f64(model)
    return float(log_unnormalised(m, X.to(torch.float64)).mean()) - log_z_value


def empirical_entropy(X: torch.Tensor) -> float:
    """H of the empirical distribution of the rows of X (repeated rows weigh more), nats."""
    _, counts = torch.unique(X.cpu(), dim=0, return_counts=True)
    p = counts.to(torch.float64) / X.shape[0]
    return float(-(p * torch.log(p)).sum())


def kl_data_model(model: FVBM | RBM, X: torch.Tensor, log_z_value: float) -> float:
    """KL(data || model) = -H(data) - mean log q(x), exact given ln Z."""
    return -empirical_entropy(X) - log_likelihood(model, X, log_z_value)


def probabilities(model: FVBM | RBM) -> torch.Tensor:
    """The whole law, float64, for tests on tiny models: the fvbm's q(s) over 2^N states (index
    k <-> bits of k, as ``state_chunks``), the rbm's joint q(v, z) over 2^(nv + nh) states with
    v the low nv bits."""
    m = _f64(model)
    if isinstance(m, FVBM):
        S = torch.cat(list(state_chunks(m.n, spins=True)))
        log_q = -m.energy(S)
    else:
        X = torch.cat(list(state_chunks(m.nv + m.nh)))
        V, Z = X[:, :m.nv], X[:, m.nv:]
        log_q = ((V @ m.W) * Z).sum(1) + V @ m.b + Z @ m.c
    return torch.softmax(log_q, 0)


def sample(model: FVBM, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` exact independent samples of a small fvbm (±1, float64 (count, N)), by inverse
    CDF over the streamed states: sorted uniforms are matched chunk by chunk against the
    running cumulative probability, then shuffled."""
    _require(model)
    m = _f64(model)
    lz = log_z(m)
    u, _ = torch.sort(torch.rand(count, dtype=torch.float64, generator=generator))
    out = torch.empty(count, m.n, dtype=torch.float64)
    done, cum, seen = 0, 0.0, 0
    for S in state_chunks(m.n, spins=True):
        seen += S.shape[0]
        cdf = cum + torch.cumsum(torch.exp(-m.energy(S) - lz), 0)
        # the uniforms below this chunk's top; the last chunk takes any rounding tail
        top = count if seen == 1 << m.n else int(torch.searchsorted(u, cdf[-1:], right=False)[0])
        if top > done:
            idx = torch.searchsorted(cdf, u[done:top], right=True).clamp_(max=S.shape[0] - 1)
            out[done:top] = S[idx]
            done = top
        cum = float(cdf[-1])
    return out[torch.randperm(count, generator=generator)]
