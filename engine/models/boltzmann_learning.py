"""Learning a Boltzmann machine by maximum likelihood and its stand-ins, one update at a time.

Methods (the loss each minimises is in engine.models.boltzmann):
    exact  the log-likelihood gradient <stats>_data - <stats>_model with the model term by
           enumeration (engine.exact.boltzmann; <= 20 enumerated units).
    pcd    persistent contrastive divergence (Tieleman 2008): ``chains`` chains kept across
           updates, ``gibbs_steps`` Gibbs steps (block Gibbs for the rbm, sequential or
           checkerboard for the fvbm) before each update; the model term from them.
    cd     CD-k (Hinton 2002): chains started at the mini-batch, k Gibbs steps (biased).
    pl     pseudo-likelihood (Besag 1975), exact gradient, no sampling.
    mpf    minimum probability flow, single-flip connectivity (Sohl-Dickstein et al. 2011).
The rbm's model term uses the Rao-Blackwellised hidden statistics p(z | v) of the chains, as
scikit-learn's BernoulliRBM does. Optimisers: SGD with momentum (weight decay on the couplings
only, torch.optim.SGD's convention: buf = mu buf + g + wd theta, theta -= lr buf) for every
method, or L-BFGS with a strong-Wolfe line search on the full-batch objective (exact, pl,
mpf), one iteration per update (up to 25 line-search evaluations: torch caps the
search at max_eval, which defaults to 1 for max_iter = 1), weight decay added as wd/2 |couplings|^2.

On the CPU the rbm's sampling methods under SGD take a fused update: ``pcd`` through
:class:`PCDChunk` (8-10 BLAS / elementwise calls per update on preallocated buffers,
three of them matrix products; Gibbs draws against a chunk's logistic noise drawn at once,
ahead, on a helper thread; one intra-op thread for small updates), ``cd`` through
:func:`rbm_sgd_update`; both are the generic Gibbs + SGD step to rounding, given the same
uniforms (tests). The evaluations are jobs (:func:`evaluation`) a caller may spread over calls.

Every learner also keeps ``chains`` chains for display and chain health (for pcd they are the
training chains; for the others they advance ``gibbs_steps`` steps per update, outside the
timed update): their mean energy per unit (F(v) / nv for the rbm) each update in a ring
buffer on the device, and their flip rate (units changed per unit per step) in a window.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from ..exact import boltzmann as exact
from ..kernels import boltzmann as kern
from . import boltzmann_annealing as annealing
from .boltzmann import FVBM, RBM, Stream, uniforms_at

METHODS = ("exact", "pcd", "cd", "pl", "mpf")
SAMPLING = ("pcd", "cd")
FULL_BATCH = ("exact", "pl", "mpf")
ENERGY_HISTORY = 256


def applies(method: str, model: FVBM | RBM) -> bool:
    return method != "exact" or exact.enumerable(model)


def to_units(model: FVBM | RBM, bits: torch.Tensor) -> torch.Tensor:
    """0/1 rows -> the model's units: ±1 spins for the fvbm, 0/1 for the rbm."""
    return 2.0 * bits - 1.0 if isinstance(model, FVBM) else bits


def to_bits(model: FVBM | RBM, X: torch.Tensor) -> torch.Tensor:
    return (X + 1.0) / 2.0 if isinstance(model, FVBM) else X


def couplings(model: FVBM | RBM) -> torch.Tensor:
    return model.theta if isinstance(model, FVBM) else model.W


def energy_per_unit(model: FVBM | RBM, X: torch.Tensor) -> torch.Tensor:
    """Mean over chains of E(s) / N (fvbm) or F(v) / nv (rbm), 0-d on the device."""
    if isinstance(model, FVBM):
        return model.energy(X).mean() / model.n
    return model.free_energy(X).mean() / model.nv


def reconstruction_error(model: FVBM | RBM, bits: torch.Tensor) -> float:
    """Mean squared error of the mean-field one-step reconstruction of 0/1 rows: the rbm's
    sigma(b + W sigma(c + v^T W)), the fvbm's E[x_i | x_-i] = (1 + tanh f_i) / 2."""
    X = to_units(model, bits)
    if isinstance(model, RBM):
        rec = torch.sigmoid(torch.sigmoid(X @ model.W + model.c) @ model.W.T + model.b)
    else:
        rec = (1.0 + torch.tanh(model.fields(X))) / 2.0
    return float(((bits - rec) ** 2).mean())


@dataclass
class Learner:
    """One method's model, optimiser, chains and counters."""

    method: str
    model: FVBM | RBM
    optimizer_name: str
    chains: torch.Tensor            # (R, n) in the model's units
    stream: Stream
    updates: int = 0
    wall_s: float = 0.0             # seconds spent in updates
    energy_ring: torch.Tensor | None = None
    flip_sum: torch.Tensor | None = None
    flip_steps: int = 0
    opt: torch.optim.Optimizer | None = None
    bufs: list | None = None        # the fused rbm update's momentum buffers
    block: tuple | None = None      # (Wa, bWa): the augmented parameters and buffers (PCDChunk)
    chunk: "PCDChunk | None" = None
    pending: list = field(default_factory=list)  # (first update, pre-activations, chunk, slot): energies not yet in the ring
    chunked: bool = False           # PCD on the CPU rbm under SGD: the PCDChunk path (set by build_optimizer)
    hidden: tuple | None = None     # (chains, their hidden units z): PCDChunk's chain state besides the chains
    last_loss: torch.Tensor | None = None
    evals: list = field(default_factory=list)    # (update, wall_s, scalars) per evaluation

    def __post_init__(self) -> None:
        dev, dt = self.chains.device, self.chains.dtype
        self.energy_ring = torch.full((ENERGY_HISTORY,), math.nan, dtype=dt, device=dev)
        self.flip_sum = torch.zeros((), dtype=dt, device=dev)

    def build_optimizer(self, p: dict) -> None:
        params = self.model.parameters()
        if self.optimizer_name == "lbfgs" and self.method in FULL_BATCH:
            self.opt = torch.optim.LBFGS(params, lr=1.0, max_iter=1, max_eval=26, history_size=20,
                                         line_search_fn="strong_wolfe")
        else:
            self.opt = torch.optim.SGD([{"params": params[:1], "weight_decay": p["weight_decay"]},
                                        {"params": params[1:], "weight_decay": 0.0}],
                                       lr=p["lr"], momentum=p["momentum"])
        self.chunked = self.fused() and self.method == "pcd"

    def small(self, batch: int) -> bool:
        """An update on ``batch`` rows is a PCDChunk update small enough for one thread
        (:class:`OneThread`)."""
        return self.chunked and (batch + self.chains.shape[0]) * self.model.nv * self.model.nh < SMALL_UPDATE

    @property
    def lbfgs(self) -> bool:
        return isinstance(self.opt, torch.optim.LBFGS)

    def set_hyper(self, p: dict) -> None:
        """Live edits of lr, momentum and weight decay."""
        if self.lbfgs:
            return
        for k, grp in enumerate(self.opt.param_groups):
            grp.update(lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"] if k == 0 else 0.0)

    def loss_and_grads(self, X: torch.Tensor, p: dict) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """(the batch loss where the method has one, the loss gradient) at the current model."""
        m, meth = self.model, self.method
        if meth in ("pl", "mpf"):
            return m.site_loss(X, meth) if isinstance(m, FVBM) else m.flip_loss(X, meth)
        data = m.stats(X)
        if meth == "exact":
            ln_z, model_stats = exact.moments(m)
            model_stats = tuple(t.to(X.dtype) for t in model_stats)
            loss = energy_free(m, X).mean() + ln_z
            return loss, m.ml_grad(data, model_stats)
        if meth == "pcd":
            self.chains = self._advance(self.chains, p["gibbs_steps"])
            return None, m.ml_grad(data, m.stats(self.chains))
        neg = m.gibbs(X.clone(), p["k"], self.stream)
        return None, m.ml_grad(data, m.stats(neg))

    def fused(self) -> bool:
        """The rbm's sampling methods under SGD on the CPU take one fused update (fewer ops:
        per-update dispatch is what costs at small batches); CUDA keeps the kernel path."""
        return (isinstance(self.model, RBM) and self.method in SAMPLING and not self.lbfgs
                and self.model.W.device.type == "cpu")

    def _fused_update(self, X: torch.Tensor, p: dict) -> None:
        """CD-k on the CPU rbm: one :func:`rbm_sgd_update` from the batch (pcd takes
        :class:`PCDChunk`)."""
        m = self.model
        if self.bufs is None:
            self.bufs = [torch.zeros_like(t) for t in m.parameters()]
        steps, R = p["k"], X.shape[0]
        uh = self.stream.rand((steps, R, m.nh), torch.float32, X.device)
        uv = self.stream.rand((steps, R, m.nv), torch.float32, X.device)
        rbm_sgd_update(m.W, m.b, m.c, *self.bufs, X, X, uh, uv, p["lr"], p["momentum"], p["weight_decay"])

    def _chunk_update(self, X: torch.Tensor, p: dict) -> None:
        """PCD through :class:`PCDChunk` (the chains' flips are accounted for when the chunk
        is flushed: at its end, or when a frame reads them; their energies when a frame
        reads them, or before the history holding them is reused)."""
        m, ch = self.model, self.chunk
        if self.bufs is None:
            self.bufs = [torch.zeros_like(t) for t in m.parameters()]
        if self.block is None or m.W.data_ptr() != self.block[0].data_ptr():
            self.flush()
            self.settle()           # nothing pending keeps a dropped chunk's buffers alive
            self.block, self.chunk = PCDChunk.block(m, self.bufs), None
            ch = None
        steps = p["gibbs_steps"]
        if ch is not None and (ch.pos == ch.C or ch.M != X.shape[0] or ch.steps != steps
                               or ch.R != self.chains.shape[0]):
            self.flush()
            if ch.shape == (self.chains.shape[0], X.shape[0], steps):
                self.settle(ch, ch.next_slot())
                ch.rollover()
            else:
                self.settle()
                ch = None
        if ch is None:
            z = self.hidden
            if z is None or z[0] is not self.chains:     # chains from elsewhere: draw their z
                u = self.stream.uniform_(torch.empty(self.chains.shape[0], m.nh, dtype=self.chains.dtype))
                z = (self.chains, kern.sample_layer_torch(self.chains @ m.W, m.c, uniforms=u, want_probs=False)[0])
            ch = self.chunk = PCDChunk(m, self.bufs, self.chains, X.shape[0], steps, self.block, z[1])
        self.chains = ch.update(X, p["lr"], p["momentum"], p["weight_decay"], self.stream)
        self.hidden = (self.chains, ch.z)

    def flush(self) -> None:
        """Account for the chunk's pending updates: flips into the window now; their
        energies join :attr:`pending` (computed by :meth:`settle`)."""
        if self.chunk is None:
            return
        out = self.chunk.flush()
        if out is None:
            return
        A, flips, n = out
        R, _, steps = self.chunk.shape
        self.pending.append((self.updates - n, A, self.chunk, self.chunk.slot))
        self.flip_sum += flips.to(self.flip_sum.dtype) / (R * self.model.nv * steps)
        self.flip_steps += n

    def settle(self, chunk: "PCDChunk | None" = None, slot: int | None = None) -> None:
        """Pending energies into the ring, oldest first: all of them, or (``chunk``, ``slot``)
        those whose history that chunk is about to overwrite. Updates the ring no longer
        holds (older than the last ENERGY_HISTORY) are skipped, not computed: the ring would
        have overwritten them anyway."""
        keep = []
        for item in self.pending:
            first, A, ch, s = item
            if chunk is not None and (ch is not chunk or s != slot):
                keep.append(item)
                continue
            lo = max(first, self.updates - ENERGY_HISTORY)
            if lo < first + A.shape[0]:
                energy = PCDChunk.energies(A[lo - first:], self.model.nv)
                idx = torch.arange(lo, first + A.shape[0], device=energy.device) % ENERGY_HISTORY
                self.energy_ring.index_copy_(0, idx, energy.to(self.energy_ring.dtype))
        self.pending = keep

    def update(self, X: torch.Tensor, p: dict) -> None:
        """One parameter update on the batch X (model units); then the display chains move.
        The caller chooses the intra-op threads: the topic's step runs a step of
        :meth:`small` updates, its batch included, inside :class:`OneThread`."""
        t0 = time.perf_counter()
        if self.chunked:
            self._chunk_update(X, p)
            self.wall_s += time.perf_counter() - t0
            self.updates += 1
            return
        params = self.model.parameters()
        energy = None
        self.flush()
        self.settle()
        self.chunk = None
        if self.fused():
            self._fused_update(X, p)
        elif self.lbfgs:
            wd = p["weight_decay"]

            def closure():
                loss, grads = self.loss_and_grads(X, p)
                for t, g in zip(params, grads):
                    t.grad = g
                if wd:
                    c = params[0]
                    loss = loss + 0.5 * wd * (c * c).sum()
                    c.grad = c.grad + wd * c
                return loss

            self.last_loss = self.opt.step(closure)
        else:
            loss, grads = self.loss_and_grads(X, p)
            for t, g in zip(params, grads):
                t.grad = g
            self.opt.step()
            self.last_loss = loss
        self.wall_s += time.perf_counter() - t0
        if self.method != "pcd":
            self.chains = self._advance(self.chains, p["gibbs_steps"])
        if energy is None:
            energy = energy_per_unit(self.model, self.chains)
        self.energy_ring[self.updates % ENERGY_HISTORY] = energy
        self.updates += 1

    def _advance(self, chains: torch.Tensor, steps: int) -> torch.Tensor:
        before = chains.clone()
        chains = self.model.gibbs(chains, steps, self.stream)
        self.flip_sum += (chains != before).to(chains.dtype).mean() / max(steps, 1)
        self.flip_steps += 1
        return chains

    def take_flip_rate(self) -> float | None:
        """The window's mean flip rate, then a fresh window (observe's reduction)."""
        self.flush()
        if not self.flip_steps:
            return None
        rate = float(self.flip_sum) / self.flip_steps
        self.flip_sum.zero_()
        self.flip_steps = 0
        return rate

    def energy_trace(self) -> tuple[list[int], list[float]]:
        """(update, energy per unit) of the last ENERGY_HISTORY updates, oldest first."""
        self.flush()
        self.settle()
        n = min(self.updates, ENERGY_HISTORY)
        ring = self.energy_ring.tolist()
        first = self.updates - n
        return list(range(first + 1, self.updates + 1)), [ring[u % ENERGY_HISTORY] for u in range(first, self.updates)]


class OneThread:
    """``with OneThread(on):`` runs its block on one intra-op thread when ``on`` (and the
    calling thread has more), then restores the count. For updates too small to share: a
    tiny product or a gather on an OpenMP/MKL team costs more than it computes, and far more
    when the other cores are busy, as the team waits for a descheduled thread (measured on
    the 2-core machine, a 20 x 65 by 65 x 257 float64 product: 19 us on one thread, 39 us on
    two under the engine's PASSIVE wait policy, 750 us on two beside a busy process under
    libgomp's default spinning one). A class, not a generator context manager: it is
    entered once a step."""

    __slots__ = ("on", "threads")

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads() if self.on else 1
        if self.threads > 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.threads > 1:
            torch.set_num_threads(self.threads)


def rbm_sgd_update(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, bW: torch.Tensor,
                   bb: torch.Tensor, bc: torch.Tensor, vd: torch.Tensor, v0: torch.Tensor,
                   uh: torch.Tensor, uv: torch.Tensor, lr: float, mom: float, wd: float,
                   z0: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One fused PCD / CD update of an rbm, in place: len(uh) block-Gibbs steps with the
    given uniforms, then SGD with momentum on the loss gradient <.>_chains - <.>_data
    (Rao-Blackwellised hidden statistics p(z | v) at the new visible units), torch.optim.SGD's
    convention.

    Without ``z0`` (CD-k, started at the batch) each step is z = u < sigma(c + v W), then
    v = u < sigma(b + W z), from the visible units v0. With ``z0``, the persistent chains'
    hidden units from the last update (the CPU PCD chain, scikit-learn's BernoulliRBM's),
    each step is v = u < sigma(b + W z), then z = u < sigma(c + v W): the last step's hidden
    probabilities are the statistics' p(z | v'), and its draw is the chains' next z, at the
    parameters before this update. Either is a full Gibbs sweep per step.

    Means over rows are matrix-vector products (one BLAS call each: at batch 10 every op's
    dispatch is what costs). Returns the new visible units, the number of them that flipped
    from v0 (0-d), their mean free energy per unit F(v)/nv at the parameters before the
    update (0-d), and the new hidden units (None without ``z0``)."""
    dt = W.dtype
    v, z = v0, z0
    for k in range(uh.shape[0]):
        if z0 is None:
            h = (uh[k] < torch.sigmoid(torch.addmm(c, v, W))).to(dt)
            v = (uv[k] < torch.sigmoid(torch.addmm(b, h, W.T))).to(dt)
        else:
            v = (uv[k] < torch.sigmoid(torch.addmm(b, z, W.T))).to(dt)
            z = (uh[k] < torch.sigmoid(torch.addmm(c, v, W))).to(dt)
    flips = torch.ne(v, v0).sum()
    R, M = v.shape[0], vd.shape[0]
    wr = torch.full((R,), 1.0 / R, dtype=dt, device=v.device)
    wm = torch.full((M,), 1.0 / M, dtype=dt, device=v.device)
    an = torch.addmm(c, v, W)
    pd = torch.sigmoid(torch.addmm(c, vd, W))
    pn = torch.sigmoid(an)
    energy = -(torch.dot(torch.mv(v.T, wr), b) + torch.nn.functional.softplus(an).sum() / R) / W.shape[0]
    gW = torch.addmm(torch.mm(vd.T, pd), v.T, pn, beta=-1.0 / M, alpha=1.0 / R)
    if wd:
        gW.add_(W, alpha=wd)
    bW.mul_(mom).add_(gW)
    bb.mul_(mom).add_(torch.addmv(torch.mv(vd.T, wm), v.T, wr, beta=-1.0))
    bc.mul_(mom).add_(torch.addmv(torch.mv(pd.T, wm), pn.T, wr, beta=-1.0))
    W.sub_(bW, alpha=lr)
    b.sub_(bb, alpha=lr)
    c.sub_(bc, alpha=lr)
    return v, flips, energy, z


SMALL_UPDATE = 1 << 21           # multiply-adds of a PCDChunk update below which it runs on one thread
CHUNK_UPDATES = 128              # updates per chunk of the CPU rbm PCD path (<= ENERGY_HISTORY)
CHUNK_ELEMS = 1 << 22            # cap on a chunk's history buffers, in numbers
SLOTS = 3                        # pre-activation histories a chunk cycles through (lazy energies)
PREFETCH = True                  # draw the next chunk's noise on a helper thread while this one runs
_POOL: tuple[int, ThreadPoolExecutor] | None = None     # (pid, one-thread pool) of the noise draws


def _noise_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="pcd-noise"))
    return _POOL[1]


NOISE_PIECE = 1 << 15            # elements per logit_ call of a noise block: torch's grain size, so each runs on one thread


def logistic_noise_(out: torch.Tensor, seed: int, counter: int) -> torch.Tensor:
    """logit(u) = ln(u / (1 - u)) of the uniforms u of the (seed, counter) block
    (:func:`uniforms_at`), in place: a Bernoulli draw u < sigma(a) is then one compare,
    a > logit(u) (logistic noise). The logit goes in pieces of NOISE_PIECE elements, each
    below the size at which torch splits an op over threads: the helper thread that draws
    a block runs beside the updates, and a thread team of its own would take their core."""
    for piece in uniforms_at(out, seed, counter).view(-1).split(NOISE_PIECE):
        piece.logit_()
    return out


def _softplus_sums(A: torch.Tensor) -> torch.Tensor:
    """mean over dim 1 of sum over dim 2 of softplus(A) = ln(1 + e^A), as ln(1 + e^min(A, 30))
    (vectorised exp and log: torch's float64 softplus is several times slower) plus
    max(A - 30, 0) where any entry exceeds 30; absolute error <= 1e-13 per entry."""
    z = A.clamp(max=30.0)
    big = bool(z.max() >= 30.0) if z.numel() else False
    s = z.exp_().add_(1.0).log_().sum(2)
    if big:
        s += (A - 30.0).clamp_(min=0.0).sum(2)
    return s.mean(1)


class PCDChunk:
    """The CPU rbm's PCD update as few BLAS / elementwise calls on preallocated buffers, with
    the random numbers of a chunk of updates drawn up front.

    At batch 10 an update is ~1 M multiply-adds, and each eager PyTorch call costs several
    microseconds: what costs is the number of calls. The parameters live in one augmented
    matrix Wa = [[W, b], [c^T, 0]] ((nv + 1) x (nh + 1); the model's W, b, c and the momentum
    buffers become views of it and of its twin bWa), and the rows carry a constant 1 in a last
    column, so [v, 1] Wa[:, :nh] = c + v W, [z, 1] Wa[:nv, :]^T = b + W z, and one matrix
    product [x, 1]^T [p w, w] gives the gradients of W, b and c together.

    The chains carry their hidden units z from one update to the next, as scikit-learn's
    BernoulliRBM does: an update's Gibbs step is z -> v' -> z', and its last half shares the
    statistics' product. Per update (one Gibbs step): v' from z (mm, compare); one mm of the
    new chains stacked on the batch, [v', 1; x, 1] Wa, which gives the chains' next z' (one
    compare: z' ~ p(z | v') at the parameters before the update) and, through one sigmoid
    and a row weighting (+1/R, -1/M: <.>_chains - <.>_data, the Rao-Blackwellised
    statistics), the gradient's right factor; then torch.optim.SGD's step, buf = mom buf +
    g + wd W, theta -= lr buf, as :func:`rbm_sgd_update` with ``z0``: one addmm into the
    momentum buffer and one subtraction, or, with no momentum and no weight decay
    (scikit-learn's BernoulliRBM), one addmm straight into the parameters (theta -= lr g; the
    buffer is then kept at zero, so a momentum switched on later starts from buf = g, as
    torch.optim.SGD's lazily created buffer does). Three products an update, where a chain
    that keeps only v (z -> v' after v -> z at the new parameters) needs four; each half is
    still a Gibbs kernel of the current model, so the chain's law is unchanged. Chains that
    arrive without z (new chains, or from another path) draw it once from p(z | v).

    The Gibbs steps draw z_j = [u_j < sigma(a_j)] as [a_j > logit(u_j)]: each chunk holds
    logit(u) of its ``updates`` updates' uniforms (one block of the learner's stream, keyed
    by its counter: :meth:`Stream.uniform_`), and one compare of the product with it gives
    the units, with no sigmoid. The block is only read (the product goes to a small buffer
    of its own: the block was written by the helper thread below, and writing over it
    would take its cache lines from the other core). The block of the next chunk is drawn
    and transformed on that helper thread while this chunk runs (``PREFETCH``; the key fixes
    the numbers, so a block drawn ahead and not used changes nothing), so the draws depend
    only on the update count. Each update's views come as one tuple made at construction
    (:attr:`plans`). The chains after each update stay in the chunk's history, from which
    :meth:`flush` counts the flips in one call; the chains' pre-activations of each update
    stay in one of ``SLOTS`` histories the chunks cycle through, from which :meth:`energies`
    gives the chains' free energies per unit (at the parameters before each update) in a few
    batched calls, when they are asked for (a frame) or before the history is reused (by then, at
    128 updates a chunk, they are older than the ring of ENERGY_HISTORY keeps, and skipped;
    where the cap on the buffers makes chunks too short for that, one history, reused
    after its energies are computed).

    The histories are overlapped: update t's rows [chains; batch] start R rows after update
    t - 1's, so its batch rows lie where the next updates' chains will be written. The batch's
    rows and products are used within their update, and only the chains' are kept, so an
    update writes R new rows of each history, not R + M: half the memory an update walks
    through at batch = chains (measured: 3-6 us of a ~60 us update, on the 2-core machine).
    """

    def __init__(self, model: RBM, bufs: list[torch.Tensor], chains: torch.Tensor, batch: int,
                 steps: int, block: tuple[torch.Tensor, torch.Tensor], hidden: torch.Tensor) -> None:
        nv, nh = model.nv, model.nh
        R, M = chains.shape[0], batch
        dt, dev = chains.dtype, chains.device
        self.shape = (R, M, steps)
        self.R, self.M, self.steps = R, M, steps
        def updates(slots: int) -> int:     # per chunk, under the cap on its buffers
            per = R * (nv + 1) + slots * R * (nh + 1) + 2 * steps * R * (nv + nh)
            return max(1, min(CHUNK_UPDATES, CHUNK_ELEMS // per))

        slots, C = SLOTS, updates(SLOTS)
        if (slots - 1) * C < ENERGY_HISTORY:    # too short to outlast the ring: one history
            slots, C = 1, updates(1)
        self.C = C
        self.Wa, self.bWa = Wa, bWa = block
        # Histories with a stride of R rows an update (see "overlapped" above): update t's rows
        # [chains; batch, 1] are HB[(t + 1) R : (t + 2) R + M], its products A[k, t R : t R + R + M]
        self.HB = torch.ones((C + 1) * R + M, nv + 1, dtype=dt, device=dev)
        self.HB[:R, :nv] = chains
        self.chain_history = self.HB[:(C + 1) * R].view(C + 1, R, nv + 1)    # the chains after each update
        self.slots = slots
        self.A = torch.empty(slots, C * R + M, nh + 1, dtype=dt, device=dev)
        self.pre_history = self.A[:, :C * R].view(slots, C, R, nh + 1)        # the chains' [c + v W, v.b]
        self.slot = 0
        self.w = torch.cat([torch.full((R, 1), 1.0 / R, dtype=dt, device=dev),
                            torch.full((M, 1), -1.0 / M, dtype=dt, device=dev)])
        self.P = self.w.repeat(1, nh + 1)                                    # [w p(z|x), w]
        self.nv = nv
        self.Us = [torch.empty(C, steps, R, nh + nv, dtype=dt, device=dev) for _ in range(2)]  # logit(u)
        self.cur = 0            # Us[cur] holds this chunk's noise, Us[1 - cur] the next one's
        self.next: tuple[int, Future | None] | None = None                   # (its counter, its draw)
        self.ha = torch.ones(R, nh + 1, dtype=dt, device=dev)                 # [z, 1] of the chains
        self.ha[:, :nh] = hidden
        self.tmp = torch.ones(R, nv + 1, dtype=dt, device=dev)                # [v, 1] inside a sweep
        self.tmp_bits = self.tmp[:, :nv]
        self.sv = torch.empty(R, nv, dtype=dt, device=dev)                   # b + W z, the chains
        self.sz = torch.empty(R, nh, dtype=dt, device=dev)                   # c + v W inside a sweep
        self.pos = 0            # updates done in this chunk
        self.flushed = 0        # of which flush has accounted for
        self.buf_zero = False   # bWa known to be zero (no-momentum updates go straight into Wa)
        # the views each update uses, made once (a slice is a dispatch too, and so is an
        # attribute or list lookup's share of an update this small)
        self.Wh, self.WvT, self.W = Wa[:, :nh], Wa[:nv, :].T, Wa[:nv, :nh]
        self.bW = bWa[:nv, :nh]
        self.z, self.Pz = self.ha[:, :nh], self.P[:, :nh]
        rows = [self.HB[t * R:(t + 1) * R + M] for t in range(C + 1)]
        pres = [[self.A[k, t * R:(t + 1) * R + M] for t in range(C)] for k in range(slots)]
        noise = [[([(U[t, s, :, :nh], U[t, s, :, nh:]) for s in range(steps - 1)], U[t, -1, :, nh:],
                   U[t, -1, :, :nh]) for t in range(C)] for U in self.Us]
        # plans[slot][cur][t], update t's views in the order update() unpacks them: the batch's
        # bits and the chains' bits in the rows after it, those rows [x, 1] and their
        # transpose; of the rows' products [c + x W, x.b] (pres[slot][t], in A), the chains'
        # c + v W, all rows' c + x W, and the whole of it; from the noise block
        # Us[cur], (uz, uv) of each of the steps - 1 whole sweeps, then uv and uz of the last
        self.plans = [[[(rows[t + 1][R:, :nv], rows[t + 1][:R, :nv], rows[t + 1], rows[t + 1].T,
                         pres[k][t][:R, :nh], pres[k][t][:, :nh], pres[k][t]) + noise[j][t]
                        for t in range(C)] for j in range(2)] for k in range(slots)]
        self.plan = self.plans[0][0]

    def _draw(self, stream: Stream) -> None:
        """This chunk's noise: the block prefetched for the stream's counter if there is one,
        else drawn now; then the next block is started on the helper thread."""
        c = stream.counter
        if self.next is not None and self.next[0] == c:
            if self.next[1] is not None:
                self.next[1].result()
            self.cur = 1 - self.cur
        else:
            if self.next is not None and self.next[1] is not None:
                self.next[1].result()           # never write a buffer a draw is filling
            logistic_noise_(self.Us[self.cur], stream.seed, c)
        self.plan = self.plans[self.slot][self.cur]
        stream.counter = c + 1
        if PREFETCH:
            self.next = (c + 1, _noise_pool().submit(logistic_noise_, self.Us[1 - self.cur], stream.seed, c + 1))
        else:
            self.next = None

    @staticmethod
    def block(model: RBM, bufs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Move the model's W, b, c and the momentum buffers into augmented matrices (copies),
        and make the model's and the buffers' tensors views of them."""
        nv, nh = model.nv, model.nh
        pair = []
        for ts in (model.parameters(), bufs):
            A = torch.zeros(nv + 1, nh + 1, dtype=model.W.dtype, device=model.W.device)
            A[:nv, :nh], A[:nv, nh], A[nv, :nh] = ts[0], ts[1], ts[2]
            pair.append(A)
        Wa, bWa = pair
        model.W, model.b, model.c = Wa[:nv, :nh], Wa[:nv, nh], Wa[nv, :nh]
        bufs[:] = [bWa[:nv, :nh], bWa[:nv, nh], bWa[nv, :nh]]
        return Wa, bWa

    def next_slot(self) -> int:
        return (self.slot + 1) % self.slots

    def rollover(self) -> None:
        """Start the next chunk from the last chains, in the next pre-activation history
        (call after :meth:`flush`, and after settling the energies that history holds)."""
        self.chain_history[0].copy_(self.chain_history[self.C])
        self.pos = self.flushed = 0
        self.slot = self.next_slot()
        self.plan = self.plans[self.slot][self.cur]

    def update(self, X: torch.Tensor, lr: float, mom: float, wd: float, stream: Stream) -> torch.Tensor:
        """One PCD update on the batch X (M, nv); returns the new chains (a view)."""
        t = self.pos
        if t == 0:
            self._draw(stream)
        data, chain, rows, rows_T, pre_z, pre_all, pre, sweeps, uv, uz = self.plan[t]
        gt, mm, ha, WvT, sv, z = torch.gt, torch.mm, self.ha, self.WvT, self.sv, self.z
        data.copy_(X)
        for uz_s, uv_s in sweeps:               # gibbs_steps - 1 whole sweeps z -> v -> z
            gt(mm(ha, WvT, out=sv), uv_s, out=self.tmp_bits)
            gt(mm(self.tmp, self.Wh, out=self.sz), uz_s, out=z)
        gt(mm(ha, WvT, out=sv), uv, out=chain)  # z -> v', then the product below gives z
        mm(rows, self.Wa, out=pre)
        gt(pre_z, uz, out=z)                    # the chains' next z ~ p(z | v'), this update's parameters
        torch.sigmoid(pre_all, out=self.Pz).mul_(self.w)
        if mom == 0.0 and not wd:
            if not self.buf_zero:
                self.bWa.zero_()
                self.buf_zero = True
            self.Wa.addmm_(rows_T, self.P, alpha=-lr)
        else:
            self.buf_zero = False
            self.bWa.addmm_(rows_T, self.P, beta=mom)
            if wd:
                self.bW.add_(self.W, alpha=wd)
            self.Wa.sub_(self.bWa, alpha=lr)
        self.pos = t + 1
        return chain

    def flush(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """(the chains' pre-activations of each update not yet accounted for, at the
        parameters before it, (n, R, nh + 1), a view of this slot's history for
        :meth:`energies`; units they flipped in those updates, 0-d; n), or None when there
        is none."""
        f, t = self.flushed, self.pos
        if t == f:
            return None
        H, nv = self.chain_history, self.nv
        flips = torch.ne(H[f + 1:t + 1, :, :nv], H[f:t, :, :nv]).sum()
        self.flushed = t
        return self.pre_history[self.slot, f:t], flips, t - f

    @staticmethod
    def energies(A: torch.Tensor, nv: int) -> torch.Tensor:
        """Mean free energy per unit F(v) / nv over the chains, per update, from their
        pre-activations A (n, R, nh + 1) = [c + v W, v.b]: F(v) = -v.b - sum softplus(c + v W)."""
        return -(A[..., -1].mean(1) + _softplus_sums(A[..., :-1])) / nv


def energy_free(model: FVBM | RBM, X: torch.Tensor) -> torch.Tensor:
    """E(s) for the fvbm, F(v) for the rbm, per row."""
    return model.energy(X) if isinstance(model, FVBM) else model.free_energy(X)


def evaluation(model: FVBM | RBM, train_bits: torch.Tensor, heldout_bits: torch.Tensor | None,
               runs: int, steps: int, stream: Stream, with_pa: bool = True):
    """:func:`evaluate` as a job: a generator that yields after each unit of work (each chunk
    of the exact enumeration, each AIS and each population-annealing ladder step, the
    log-likelihoods) and
    returns the scalars. The parameters are snapshotted at this call, so the job describes
    them however late it runs; its random draws come from ``stream`` in the same order as
    :func:`evaluate`'s, so spreading it over calls changes no number. ``evaluation_units``
    says how many yields it makes."""
    snap = model.clone(torch.float64)
    train = train_bits.to(device=snap.parameters()[0].device, dtype=torch.float64)
    return _evaluation(snap, train, heldout_bits, runs, steps, stream, with_pa)


def evaluation_units(model: FVBM | RBM, steps: int, with_pa: bool = True) -> int:
    """The number of yields of an :func:`evaluation` of ``model`` over ``ladder(steps)``:
    one per chunk of the exact enumeration (where enumerable), one per AIS and per PA
    ladder step, one for the log-likelihoods."""
    K = len(annealing.ladder(steps)) - 1
    return (exact.chunks(model) if exact.enumerable(model) else 0) + K * (2 if with_pa else 1) + 1


def _evaluation(snap: FVBM | RBM, train: torch.Tensor, heldout_bits: torch.Tensor | None, runs: int,
                steps: int, stream: Stream, with_pa: bool):
    out: dict = {"log_z_exact": None}
    if exact.enumerable(snap):
        out["log_z_exact"] = yield from exact.log_z_steps(snap)
    out["log_z_ais"], out["log_z_ais_stderr"] = yield from annealing.ais_steps(snap, train, runs, steps, stream)
    if with_pa:
        pa = yield from annealing.population_annealing_steps(snap, train, max(2, runs // 4), steps, stream)
        out.update(log_z_pa=pa.log_z, log_z_pa_stderr=pa.stderr, pa_ess_fraction=pa.ess_fraction,
                   pa_families_fraction=pa.families_fraction)
    known = out["log_z_exact"] is not None
    out["log_likelihood_kind"] = "exact" if known else "ais"
    lz = out["log_z_exact"] if known else out["log_z_ais"]
    out["log_z"] = lz
    out["log_likelihood"] = exact.log_likelihood(snap, to_units(snap, train), lz)
    if heldout_bits is not None and heldout_bits.shape[0]:
        held = heldout_bits.to(device=train.device, dtype=torch.float64)
        out["log_likelihood_heldout"] = exact.log_likelihood(snap, to_units(snap, held), lz)
    if not known:
        out["log_likelihood_stderr"] = out["log_z_ais_stderr"]
    else:
        out["kl_data_model"] = exact.kl_data_model(snap, to_units(snap, train), lz)
    out["reconstruction_error"] = reconstruction_error(snap, train)
    yield
    return out


def evaluate(model: FVBM | RBM, train_bits: torch.Tensor, heldout_bits: torch.Tensor | None,
             runs: int, steps: int, stream: Stream, with_pa: bool = True) -> dict:
    """ln Z three ways on one parameter snapshot (exact where enumerable, AIS, population
    annealing), and from it the mean log-likelihoods, KL(data || model) (exact only) and the
    reconstruction error. Float64 throughout; values are host floats (None where absent)."""
    return annealing.drain(evaluation(model, train_bits, heldout_bits, runs, steps, stream, with_pa))
