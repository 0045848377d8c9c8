"""Boltzmann machines: the fully visible machine (fvbm) and the restricted one (rbm).

fvbm, s in {-1,+1}^N (Ackley, Hinton & Sejnowski 1985):
    log q(s) = 1/2 s^T J s + h^T s - ln Z,  J symmetric with zero diagonal, so
    1/2 s^T J s = sum_{i<j} J_ij s_i s_j.  Energy E(s) = -(1/2 s^T J s + h^T s).
    Local field f_i = sum_j J_ij s_j + h_i; flipping s_i changes E by 2 s_i f_i.
    The couplings are a vector ``theta`` over the allowed pairs (i, j), i < j: every pair
    (graph=dense) or the L x L torus's nearest-neighbour bonds (graph=lattice: the L^2 "right"
    bonds (r, c)-(r, c+1) then the L^2 "down" bonds (r, c)-(r+1, c), so theta.view(2, L, L) is
    the checkerboard kernels' ``couplings`` layout). Gradients are taken with respect to theta
    (one number per pair), so d log q / d theta_ij = s_i s_j.
    Gibbs: P(s_i = +1 | rest) = sigma(2 f_i); dense J updates the sites one after another, in
    parallel over chains; the lattice updates a checkerboard colour at a time.

rbm, v in {0,1}^nv, z in {0,1}^nh (Smolensky 1986; scikit-learn's BernoulliRBM convention):
    log q(v, z) = v^T W z + b^T v + c^T z - ln Z,  W is nv x nh.
    Free energy -F(v) = b^T v + sum_j softplus(c_j + (v^T W)_j);  log q(v) = -F(v) - ln Z.
    Block Gibbs: p(z_j = 1 | v) = sigma(c_j + (v^T W)_j), p(v_i = 1 | z) = sigma(b_i + (W z)_i).

Objectives, all written as losses to minimise (mean over the M rows of a batch):
    exact, pcd, cd   the negative log-likelihood; its gradient is -(<stats>_data - <stats>_model),
                     the model term from enumeration (engine.exact.boltzmann) or from chains.
    pl               minus the pseudo-likelihood (Besag 1975): -(1/M) sum_m sum_i ln q(x_i | x_-i).
    mpf              minimum probability flow's K with single-flip connectivity (Sohl-Dickstein,
                     Battaglino & DeWeese 2011): (1/M) sum_m sum_i exp((E(x) - E(x^(i))) / 2),
                     x^(i) = x with unit i flipped, summed over all flips; for the rbm E is F(v).
    The rbm's pl and mpf use the free energy's flip differences dF_i = F(v^(i)) - F(v), so
    q(v_i | v_-i) = sigma(dF_i) and the mpf term is exp(-dF_i / 2).

AIS marginals (Salakhutdinov & Murray 2008; Neal 2001), beta in [0, 1], base model A:
    fvbm  log p*_beta(s) = (1 - beta) h_A^T s + beta (1/2 s^T J s + h^T s)   (linear in beta)
    rbm   log p*_beta(v) = (1 - beta) b_A^T v + beta b^T v + sum_j softplus(beta (c_j + (v^T W)_j))
    and the Gibbs moves below leave p_beta invariant when given ``beta`` and the base.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf

from ..kernels import boltzmann as kern
from ..kernels import checkerboard

GRAPHS = ("dense", "lattice")


@dataclass
class Stream:
    """The random stream of a set of chains: a torch generator for the CPU twins and the
    (seed, counter) pair the CUDA kernels key Philox with; each draw advances ``counter``.
    :meth:`uniform_` draws a block keyed by (seed, counter) from NumPy's PCG64 (the engine's
    data sets use it too): float64 uniforms written straight into a CPU buffer in one pass,
    faster than torch's mt19937 float32 draws plus a conversion (the CPU rbm's PCD chunks
    draw ~400 k at a time), and, being keyed, drawable ahead of time on another thread
    (:func:`uniforms_at`) without changing what any later draw gives."""

    generator: torch.Generator
    seed: int
    counter: int = 0

    @classmethod
    def new(cls, seed: int, device: torch.device | str) -> "Stream":
        return cls(torch.Generator(device=device).manual_seed(int(seed)), int(seed))

    def take(self) -> dict:
        c = self.counter
        self.counter += 1
        return {"seed": self.seed, "counter": c, "generator": self.generator}

    def rand(self, shape, dtype, device) -> torch.Tensor:
        self.counter += 1
        return torch.rand(shape, dtype=dtype, device=device, generator=self.generator)

    def uniform_(self, out: torch.Tensor) -> torch.Tensor:
        """Fill ``out`` with the block of uniforms keyed by (seed, counter), then advance
        the counter; returns ``out``."""
        uniforms_at(out, self.seed, self.counter)
        self.counter += 1
        return out


def uniforms_at(out: torch.Tensor, seed: int, counter: int) -> torch.Tensor:
    """Fill the contiguous CPU float32 / float64 tensor ``out`` with U[0, 1) draws, in
    row-major order, of PCG64 seeded by the sequence (seed, counter, 0x5EED) (NumPy's
    SeedSequence: distinct keys give independent streams); the GIL is released while it
    fills. Returns ``out``."""
    rng = np.random.default_rng([seed % 2**64, counter, 0x5EED])
    a = out.numpy()
    rng.random(out=a.reshape(-1), dtype=a.dtype)
    return out


def dense_pairs(n: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair i < j, in row-major upper-triangle order."""
    iu = torch.triu_indices(n, n, offset=1, device=device)
    return iu[0], iu[1]


def lattice_pairs(L: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The L x L torus's bonds: L^2 right bonds then L^2 down bonds (site index r * L + c)."""
    if L < 4 or L % 2:
        raise ValueError(f"the lattice graph needs an even L >= 4, got {L}")
    r, c = torch.meshgrid(torch.arange(L, device=device), torch.arange(L, device=device), indexing="ij")
    site = (r * L + c).reshape(-1)
    right = (r * L + (c + 1) % L).reshape(-1)
    down = (((r + 1) % L) * L + c).reshape(-1)
    return torch.cat([site, site]), torch.cat([right, down])


# -- fully visible ------------------------------------------------------------------------------
@dataclass
class FVBM:
    theta: torch.Tensor      # (P,) couplings of the allowed pairs
    h: torch.Tensor          # (N,) fields
    iu: torch.Tensor         # (P,) first site of each pair
    ju: torch.Tensor         # (P,) second site
    L: int | None = None     # lattice side when graph = lattice

    @classmethod
    def zeros(cls, n: int, graph: str = "dense", L: int | None = None, dtype=torch.float64,
              device: torch.device | str = "cpu") -> "FVBM":
        if graph == "lattice":
            L = int(L if L is not None else round(math.sqrt(n)))
            if L * L != n:
                raise ValueError(f"the lattice graph needs N = L^2 units, got N = {n}, L = {L}")
            iu, ju = lattice_pairs(L, device)
        else:
            iu, ju = dense_pairs(n, device)
            L = None
        return cls(torch.zeros(iu.numel(), dtype=dtype, device=device),
                   torch.zeros(n, dtype=dtype, device=device), iu, ju, L)

    @property
    def n(self) -> int:
        return self.h.numel()

    @property
    def graph(self) -> str:
        return "lattice" if self.L is not None else "dense"

    def parameters(self) -> list[torch.Tensor]:
        return [self.theta, self.h]

    def like(self, theta: torch.Tensor, h: torch.Tensor) -> "FVBM":
        return FVBM(theta, h, self.iu, self.ju, self.L)

    def clone(self, dtype=None) -> "FVBM":
        dtype = dtype or self.h.dtype
        return self.like(self.theta.detach().to(dtype).clone(), self.h.detach().to(dtype).clone())

    def couplings_matrix(self) -> torch.Tensor:
        """J (N, N), symmetric, zero diagonal."""
        J = torch.zeros(self.n, self.n, dtype=self.theta.dtype, device=self.theta.device)
        J.index_put_((self.iu, self.ju), self.theta, accumulate=True)
        return J + J.T

    def lattice_couplings(self) -> torch.Tensor:
        """theta as the checkerboard layout (2, L, L): [right bonds, down bonds]."""
        return self.theta.view(2, self.L, self.L)

    def fields(self, S: torch.Tensor, J: torch.Tensor | None = None) -> torch.Tensor:
        """F = S J + h, (M, N)."""
        J = self.couplings_matrix() if J is None else J
        return S @ J + self.h

    def _neighbours(self, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Lattice rows as (R, L, L) spins and their right and down neighbours (periodic)."""
        s = S.view(S.shape[0], self.L, self.L)
        return s, torch.roll(s, -1, dims=2), torch.roll(s, -1, dims=1)

    def energy(self, S: torch.Tensor) -> torch.Tensor:
        """E(s) = -(1/2 s^T J s + h^T s) per row, (M,): a matmul (dense) or the bonds (lattice)."""
        if self.L is not None:
            s, right, down = self._neighbours(S)
            c = self.lattice_couplings()
            pair = (s * (c[0] * right + c[1] * down)).sum(dim=(1, 2))
        else:
            pair = 0.5 * ((S @ self.couplings_matrix()) * S).sum(1)
        return -(pair + S @ self.h)

    def pair_sums(self, S: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """sum_r w_r s_ri s_rj over the allowed pairs, (P,), in theta's order."""
        if self.L is not None:
            s, right, down = self._neighbours(S)
            ws = w[:, None, None] * s
            return torch.cat([(ws * right).sum(0).reshape(-1), (ws * down).sum(0).reshape(-1)])
        return ((S * w[:, None]).T @ S)[self.iu, self.ju]

    def log_p_star(self, S: torch.Tensor, beta: float, h_base: torch.Tensor) -> torch.Tensor:
        """The AIS marginal (1 - beta) h_A^T s - beta E(s) (module docstring)."""
        return (1.0 - beta) * (S @ h_base) - beta * self.energy(S)

    def stats(self, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(<s_i s_j> over the allowed pairs (P,), <s_i> (N,)), means over the rows."""
        w = torch.full((S.shape[0],), 1.0 / S.shape[0], dtype=S.dtype, device=S.device)
        return self.pair_sums(S, w), S.mean(0)

    @staticmethod
    def ml_grad(data: tuple, model: tuple) -> list[torch.Tensor]:
        """Gradient of the negative log-likelihood from data and model statistics."""
        return [-(d - m) for d, m in zip(data, model)]

    def site_loss(self, X: torch.Tensor, method: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(loss, [d loss / d theta, d loss / d h]) of ``pl`` or ``mpf`` on the ±1 rows X,
        from the per-site terms of the field matrix F = X J + h (one kernel pass)."""
        M = X.shape[0]
        obj, A = kern.site_terms(X, self.fields(X), method)
        sign = -1.0 if method == "pl" else 1.0      # pl is maximised, K minimised
        G = A.T @ X                                  # G[i, j] = sum_m A_mi s_mj = d obj / d J_ij (i's field)
        g_theta = G[self.iu, self.ju] + G[self.ju, self.iu]
        return sign * obj / M, [sign * g_theta / M, sign * A.sum(0) / M]

    def gibbs(self, S: torch.Tensor, sweeps: int, stream: Stream, beta: float = 1.0,
              h_base: torch.Tensor | None = None, conditional=None) -> torch.Tensor:
        """``sweeps`` Gibbs sweeps of the ±1 chains S (R, N), in place; returns S. Fields
        f = beta (J s + h) + (1 - beta) h_base leave p*_beta invariant. Dense: sites in order;
        lattice: checkerboard colours 0 then 1. ``conditional`` maps fields to P(s_i = +1)
        (sigma(2 f) unless given; tests pass a wrong one to show the chi-square test bites)."""
        if self.L is not None:
            return self._checkerboard(S, sweeps, stream, beta, h_base, conditional)
        cond = conditional or (lambda f: torch.sigmoid(2.0 * f))
        J = self.couplings_matrix()
        R, N = S.shape
        for _ in range(sweeps):
            U = stream.rand((R, N), S.dtype, S.device)
            for i in range(N):
                f = beta * (S @ J[:, i] + self.h[i])
                if h_base is not None:
                    f = f + (1.0 - beta) * h_base[i]
                S[:, i] = torch.where(U[:, i] < cond(f), 1.0, -1.0)
        return S

    def _checkerboard(self, S, sweeps, stream, beta, h_base, cond) -> torch.Tensor:
        """Checkerboard heat bath. With the standard conditional and beta > 0 this is the
        Ising kernels' sweep (per-bond couplings, per-site field h + (1 - beta)/beta h_A, so that
        beta * field is the AIS fields above; Triton on CUDA, the fast twin on the CPU, two
        stream counters per sweep); otherwise a PyTorch twin with the given conditional."""
        L = self.L
        R = S.shape[0]
        if cond is None and beta > 0:
            field = self.h.view(L, L)
            if h_base is not None:
                field = field + ((1.0 - beta) / beta) * h_base.view(L, L)
            spins = S.view(R, L, L).to(torch.int8)
            coup = self.lattice_couplings().to(torch.float32)
            for _ in range(sweeps):
                counter = stream.counter
                stream.counter += 2
                checkerboard.sweep(spins, float(beta), field.to(torch.float32), "gibbs", seed=stream.seed,
                                   counter=counter, couplings=coup)
            S.copy_(spins.view(R, L * L))
            return S
        cond = cond or (lambda f: torch.sigmoid(2.0 * f))
        R = S.shape[0]
        coup = self.lattice_couplings()
        h_grid = self.h.view(L, L)
        base = None if h_base is None else (1.0 - beta) * h_base.view(L, L)
        s = S.view(R, L, L)
        masks = checkerboard.colour_masks(L, S.device)
        for _ in range(sweeps):
            for mask in masks:
                f = beta * checkerboard.local_field(s, coup, 0.0).to(S.dtype) + beta * h_grid
                if base is not None:
                    f = f + base
                u = stream.rand(s.shape, S.dtype, S.device)
                s.copy_(torch.where(mask, torch.where(u < cond(f), 1.0, -1.0), s))
        return S


def planted_teacher(n: int, beta: float, seed: int, graph: str = "dense", L: int | None = None,
                    field_sd: float = 0.1) -> FVBM:
    """The planted model, float64 on the CPU. dense: SK couplings J_ij ~ N(0, beta^2 / N)
    (i < j) and fields h_i ~ N(0, field_sd^2) (Sherrington & Kirkpatrick 1975); lattice: the
    L x L ferromagnet at inverse temperature beta (every bond = beta, h = 0)."""
    model = FVBM.zeros(n, graph, L)
    if graph == "lattice":
        model.theta.fill_(float(beta))
        return model
    g = torch.Generator().manual_seed(int(seed))
    model.theta.copy_(torch.randn(model.theta.shape, generator=g, dtype=torch.float64) * beta / math.sqrt(n))
    model.h.copy_(torch.randn(n, generator=g, dtype=torch.float64) * field_sd)
    return model


# -- restricted ---------------------------------------------------------------------------------
@dataclass
class RBM:
    W: torch.Tensor          # (nv, nh)
    b: torch.Tensor          # (nv,) visible biases
    c: torch.Tensor          # (nh,) hidden biases

    @classmethod
    def init(cls, nv: int, nh: int, generator: torch.Generator, dtype=torch.float64,
             device: torch.device | str = "cpu", scale: float = 0.01) -> "RBM":
        """W ~ N(0, scale^2) (scikit-learn's BernoulliRBM start), zero biases."""
        W = torch.randn(nv, nh, generator=generator, dtype=torch.float64) * scale
        return cls(W.to(device=device, dtype=dtype), torch.zeros(nv, dtype=dtype, device=device),
                   torch.zeros(nh, dtype=dtype, device=device))

    @property
    def nv(self) -> int:
        return self.b.numel()

    @property
    def nh(self) -> int:
        return self.c.numel()

    def parameters(self) -> list[torch.Tensor]:
        return [self.W, self.b, self.c]

    def clone(self, dtype=None) -> "RBM":
        dtype = dtype or self.W.dtype
        return RBM(*(t.detach().to(dtype).clone() for t in self.parameters()))

    def free_energy(self, V: torch.Tensor) -> torch.Tensor:
        """F(v) = -(b^T v + sum_j softplus(c_j + (v^T W)_j)), (M,)."""
        return -(V @ self.b + nnf.softplus(V @ self.W + self.c).sum(1))

    def log_p_star(self, V: torch.Tensor, beta: float, b_base: torch.Tensor) -> torch.Tensor:
        """The AIS marginal of the module docstring, (M,)."""
        return ((1.0 - beta) * (V @ b_base) + beta * (V @ self.b)
                + nnf.softplus(beta * (V @ self.W + self.c)).sum(1))

    def sample_hidden(self, V: torch.Tensor, stream: Stream, beta: float = 1.0,
                      stat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ p_beta(z | v) = sigma(beta (c + v^T W)): (samples, probabilities)."""
        pre = V @ self.W
        if beta != 1.0:
            return kern.sample_layer(beta * pre, beta * self.c, stat=stat, **stream.take())
        return kern.sample_layer(pre, self.c, stat=stat, **stream.take())

    def sample_visible(self, Z: torch.Tensor, stream: Stream, beta: float = 1.0,
                       b_base: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """v ~ p_beta(v | z) = sigma((1 - beta) b_A + beta (b + W z))."""
        pre = Z @ self.W.T
        if beta != 1.0 or b_base is not None:
            bias = beta * self.b + (0.0 if b_base is None else (1.0 - beta) * b_base)
            return kern.sample_layer(beta * pre, bias, **stream.take())
        return kern.sample_layer(pre, self.b, **stream.take())

    def gibbs(self, V: torch.Tensor, steps: int, stream: Stream, beta: float = 1.0,
              b_base: torch.Tensor | None = None) -> torch.Tensor:
        """``steps`` block-Gibbs steps v -> z -> v' of the chains V (R, nv); returns the new V."""
        for _ in range(steps):
            Z, _ = self.sample_hidden(V, stream, beta)
            V, _ = self.sample_visible(Z, stream, beta, b_base)
        return V

    def stats(self, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(<v p(z|v)^T>, <v>, <p(z|v)>), means over the rows (the hidden layer summed out)."""
        P = torch.sigmoid(V @ self.W + self.c)
        M = V.shape[0]
        return V.T @ P / M, V.mean(0), P.mean(0)

    @staticmethod
    def ml_grad(data: tuple, model: tuple) -> list[torch.Tensor]:
        return [-(d - m) for d, m in zip(data, model)]

    def flip_differences(self, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """dF = F(v^(i)) - F(v) (M, nv), with the pieces its gradient needs: the hidden
        probabilities at v (M, nh) and at each flipped v^(i) (M, nv, nh), and d = 1 - 2v."""
        a = V @ self.W + self.c
        d = 1.0 - 2.0 * V
        ap = a[:, None, :] + d[:, :, None] * self.W[None]
        dF = -(d * self.b) - (nnf.softplus(ap) - nnf.softplus(a)[:, None, :]).sum(2)
        return dF, torch.sigmoid(a), torch.sigmoid(ap), d

    def flip_loss(self, V: torch.Tensor, method: str, chunk_elems: int = 1 << 22
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(loss, [dW, db, dc]) of ``pl`` or ``mpf`` on the 0/1 rows V, in row chunks so the
        (rows, nv, nh) flipped pre-activations stay under ``chunk_elems`` numbers."""
        M = V.shape[0]
        rows = max(1, chunk_elems // max(1, self.nv * self.nh))
        obj = torch.zeros((), dtype=self.W.dtype, device=self.W.device)
        gW, gb, gc = torch.zeros_like(self.W), torch.zeros_like(self.b), torch.zeros_like(self.c)
        for start in range(0, M, rows):
            Vc = V[start:start + rows]
            dF, P, Pf, d = self.flip_differences(Vc)
            # With X = 1/2 the site-terms kernel's flip energy 2 X F is dF itself, its terms are
            # ln sigma(dF) (pl) or exp(-dF/2) (mpf) and its coefficients are d term / d dF.
            o, g = kern.site_terms(torch.full_like(dF, 0.5), dF, method)
            obj = obj + o
            D = Pf - P[:, None, :]                       # (m, nv, nh)
            gD = torch.einsum("mi,mij->mj", g, D)        # sum_i g_i D_ij
            gb -= (g * d).sum(0)
            gc -= gD.sum(0)
            gW -= Vc.T @ gD + torch.einsum("mk,mkj->kj", g * d, Pf)
        sign = -1.0 if method == "pl" else 1.0
        return sign * obj / M, [sign * gW / M, sign * gb / M, sign * gc / M]
