"""Fused Langevin steps (ULA and MALA) for many independent chains, one kernel per target family.

Conventions:
    x        float32 (D, N): chain positions, coordinate-major (row d = coordinate d), D in {1, 2}.
    logp     float32 (N,): cached log p(x) (natural log, normalised).
    grad     float32 (D, N): cached score grad log p(x).
    step     the step size eps:  proposal y = x + (eps/2) grad log p(x) + sqrt(eps) z,  z ~ N(0, I).
    ULA      takes y.  MALA accepts y with probability min(1, alpha),
             log alpha = log p(y) - log p(x) + log q(x|y) - log q(y|x),
             log q(y|x) = -|z|^2 / 2,  log q(x|y) = -|x - y - (eps/2) grad log p(y)|^2 / (2 eps)
             (the shared constant cancels); the state caches (x, log p, grad) as BlackJAX's MALA
             does, so nothing is computed twice, and a NaN log alpha is a rejection.
    noise    None, or float32 (D, N) standard normals z;  uniforms: None, or float32 (N,) in [0, 1)
             for the accept test log u < log alpha.  Given the same noise and uniforms the Triton
             kernel and its twin make the same moves.  Without them the kernel draws in-kernel from
             Philox keyed by ``seed`` with counter (chain index, ``counter``): callers advance
             ``counter`` by one per step; the twin draws from ``generator`` instead.
    accept_count  None or int64 (1,): MALA adds the number of accepted proposals (on the device).
    trace    None or float32 (T, M): row ``trace_row`` receives x[0, :M] after the step (a bounded
             device-side history of a tracked statistic for the ESS estimate).
Targets (``engine/exact/targets.py``) are packed by :func:`pack_target` into a family, dimension,
number of components and a small coefficient vector.  Nothing here syncs with the host.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ..device import use_triton
from ..exact.targets import Target

from . import tl, triton  # None where Triton is absent (the CPU path never needs it)

FAMILY_IDS = {"mixture": 0, "banana": 1, "ring": 2}
TWIN_GRAIN = 32768  # at::internal::GRAIN_SIZE: ops on at most this many elements run inline
TWIN_CHUNK = 1 << 16  # chains per chunk where the twin's chunking is only about memory
_POOL: ThreadPoolExecutor | None = None
_POOL_WORKERS = 0


@dataclass(frozen=True)
class PackedTarget:
    """What a kernel needs of a target: family, D, K (mixture components) and coefficients.

    mixture: K rows (mu0, mu1, P00, P01, P11, log c) with P = Sigma^-1, log c = log w
             - (D/2) log 2 pi - (1/2) log det Sigma (unused entries 0 when D = 1);
    banana:  (a, b, s);   ring: (R, w, log Z).
    ``values`` are Python floats (the twin's constants); ``coeffs`` the same on the device."""

    family: str
    dim: int
    k: int
    values: tuple[float, ...]
    coeffs: torch.Tensor


def pack_target(target: Target, device: torch.device | str = "cpu") -> PackedTarget:
    if target.family == "mixture":
        rows = target.mixture_coeffs()
        values = tuple(float(v) for v in rows.reshape(-1))
        k = rows.shape[0]
    elif target.family == "banana":
        values, k = (target.a, target.b, target.s), 1
    elif target.family == "ring":
        values, k = (target.radius, target.width, target.ring_log_z()), 1
    else:
        raise ValueError(f"unknown family {target.family!r}")
    coeffs = torch.tensor(values, dtype=torch.float32, device=device)
    return PackedTarget(target.family, target.dim, k, values, coeffs)


# ---------------------------------------------------------------------------------------------
# PyTorch twin: the CPU path, the test reference, the benchmark baseline's neighbour.
# ---------------------------------------------------------------------------------------------
def log_density_and_score_torch(packed: PackedTarget, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p (B,), score (D, B)) at positions y (D, B), the same formulas as the kernel."""
    v = packed.values
    if packed.family == "mixture":
        if packed.k == 1:
            mu0, mu1, p00, p01, p11, lc = v
            if packed.dim == 1:
                d0 = y[0] - mu0
                h0 = d0 * p00
                logp = (d0 * h0).mul_(-0.5).add_(lc)
                return logp, h0.neg_().unsqueeze(0)
            d0 = y[0] - mu0
            d1 = y[1] - mu1
            h0 = d0 * p00 + d1 * p01
            h1 = d0 * p01 + d1 * p11
            logp = (d0 * h0).add_(d1 * h1).mul_(-0.5).add_(lc)
            return logp, torch.stack((h0.neg_(), h1.neg_()))
        c = packed.coeffs.to(y.device).view(packed.k, 6)
        mu0, mu1, p00, p01, p11, lc = (c[:, j:j + 1] for j in range(6))
        d0 = y[0][None] - mu0                                   # (K, B)
        if packed.dim == 1:
            h0 = d0 * p00
            logits = lc - 0.5 * d0 * h0
            logp = torch.logsumexp(logits, dim=0)
            r = torch.exp((logits - logp).clamp_min_(-80.0))  # no denormals: they are slow on CPUs
            return logp, -(r * h0).sum(0, keepdim=True)
        d1 = y[1][None] - mu1
        h0 = d0 * p00 + d1 * p01
        h1 = d0 * p01 + d1 * p11
        logits = lc - 0.5 * (d0 * h0 + d1 * h1)
        logp = torch.logsumexp(logits, dim=0)
        r = torch.exp((logits - logp).clamp_min_(-80.0))  # no denormals: they are slow on CPUs
        return logp, torch.stack((-(r * h0).sum(0), -(r * h1).sum(0)))
    if packed.family == "banana":
        a, b, s = v
        x1, x2 = y[0], y[1]
        r = (x2 - b * (x1 * x1 - a * a)) / (s * s)
        logp = -0.5 * x1 * x1 / (a * a) - 0.5 * (s * s) * r * r - (math.log(2 * math.pi) + math.log(a * s))
        return logp, torch.stack((x1 * (2.0 * b * r - 1.0 / (a * a)), -r))
    if packed.family == "ring":
        R, w, log_z = v
        rho = torch.sqrt(y[0] * y[0] + y[1] * y[1]).clamp_min_(1e-20)
        dev = rho - R
        logp = -0.5 * dev * dev / (w * w) - log_z
        f = -dev / ((w * w) * rho)
        return logp, torch.stack((f * y[0], f * y[1]))
    raise ValueError(f"unknown family {packed.family!r}")


def twin_chunk(packed: PackedTarget) -> int:
    """Chains per chunk of the twin: the largest temporary (K or D rows) stays at or below
    PyTorch's parallel grain (32768 elements), so each op runs inline in its thread, in cache,
    without an OpenMP fork/join; the chunks themselves are spread over a thread pool."""
    return max(2048, TWIN_GRAIN // max(packed.k if packed.family == "mixture" else 1, packed.dim))


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS != workers:
        if _POOL is not None:
            _POOL.shutdown(wait=False)
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="langevin-twin")
        _POOL_WORKERS = workers
    return _POOL


def _chunked(n: int, chunk: int, body, threads: int) -> None:
    """Run body(s, e) over [0, n) in chunks on ``threads`` threads (torch ops release the GIL).
    Chunks are independent, so the result does not depend on the order."""
    spans = [(s, min(n, s + chunk)) for s in range(0, n, chunk)]
    workers = min(threads, len(spans))
    if workers <= 1:
        for s, e in spans:
            body(s, e)
        return
    per = -(-len(spans) // workers)
    groups = [spans[i:i + per] for i in range(0, len(spans), per)]

    def run(group):
        for s, e in group:
            body(s, e)

    for f in [_pool(workers).submit(run, g) for g in groups]:
        f.result()


def langevin_step_torch(x: torch.Tensor, logp: torch.Tensor, grad: torch.Tensor, step: float,
                        packed: PackedTarget, mala: bool, seed: int = 0, counter: int = 0,
                        noise: torch.Tensor | None = None, uniforms: torch.Tensor | None = None,
                        accept_count: torch.Tensor | None = None, trace: torch.Tensor | None = None,
                        trace_row: int = 0, generator: torch.Generator | None = None) -> None:
    """Twin of the fused kernel: one ULA or MALA step of every chain, in place (see the module
    docstring). Draws all its noise first (one call each, so a seeded run is reproducible
    whatever the threading), then works through the chains in cache-sized chunks spread over
    ``torch.get_num_threads()`` threads, with PyTorch's intra-op threads set to 1 meanwhile:
    dozens of small ops per chunk would otherwise each fork/join an OpenMP team, which on a
    loaded machine costs milliseconds per op (measured: 20-80x slower at 2 threads)."""
    d, n = x.shape
    eps = float(step)
    half, root = 0.5 * eps, math.sqrt(eps)
    if noise is None:
        noise = torch.randn((d, n), generator=generator, device=x.device)
    if mala and uniforms is None:
        uniforms = torch.rand(n, generator=generator, device=x.device)
    counts: list[torch.Tensor] = []
    threads = torch.get_num_threads() if x.device.type == "cpu" else 1

    def body(s: int, e: int) -> None:
        xs, gs, ls, z = x[:, s:e], grad[:, s:e], logp[s:e], noise[:, s:e]
        y = torch.add(xs, gs, alpha=half).add_(z, alpha=root)
        lp_y, g_y = log_density_and_score_torch(packed, y)
        if not mala:
            xs.copy_(y)
            gs.copy_(g_y)
            ls.copy_(lp_y)
            return
        back = torch.sub(xs, y).sub_(g_y, alpha=half)
        log_alpha = (lp_y - ls).sub_((back * back).sum(0), alpha=1.0 / (2.0 * eps)).add_((z * z).sum(0), alpha=0.5)
        accept = torch.log(uniforms[s:e]) < log_alpha  # NaN log alpha compares False: a rejection
        xs.copy_(torch.where(accept, y, xs))
        gs.copy_(torch.where(accept, g_y, gs))
        ls.copy_(torch.where(accept, lp_y, ls))
        if accept_count is not None:
            counts.append(accept.sum())

    if threads > 1:
        torch.set_num_threads(1)
    try:
        _chunked(n, twin_chunk(packed) if x.device.type == "cpu" else n, body, threads)
    finally:
        if threads > 1:
            torch.set_num_threads(threads)
    if counts:
        accept_count += torch.stack(counts).sum()
    if trace is not None:
        m = trace.shape[1]
        trace[trace_row].copy_(x[0, :m])


def langevin_step_eager(target: Target, points: torch.Tensor, logp: torch.Tensor, score: torch.Tensor,
                        step: float, mala: bool, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The benchmarks' baseline: the same step written plainly in eager PyTorch on points (N, D),
    with the target's broadcasting formulas and fresh tensors at every op. Returns
    (points, logp, score, accepted) after the step."""
    eps = float(step)
    z = torch.randn(points.shape, generator=generator, device=points.device)
    y = points + 0.5 * eps * score + math.sqrt(eps) * z
    lp_y, s_y = target.log_density_and_score(y)
    if not mala:
        return y, lp_y, s_y, torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    log_q_back = -((points - y - 0.5 * eps * s_y) ** 2).sum(1) / (2 * eps)
    log_q_fwd = -(z ** 2).sum(1) / 2
    log_alpha = lp_y - logp + log_q_back - log_q_fwd
    log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf)
    accept = torch.log(torch.rand(points.shape[0], generator=generator, device=points.device)) < log_alpha
    return (torch.where(accept[:, None], y, points), torch.where(accept, lp_y, logp),
            torch.where(accept[:, None], s_y, score), accept)


# ---------------------------------------------------------------------------------------------
# Triton: score + proposal + MALA log-accept + accept/reject fused in one kernel per family.
# ---------------------------------------------------------------------------------------------
if triton is not None:

    @triton.jit
    def _mixture_logp_score(y0, y1, coef_ptr, K: tl.constexpr):
        # online logsumexp over the K components, carrying the responsibility-weighted -P d
        m = tl.full(y0.shape, float("-inf"), tl.float32)
        s = tl.zeros(y0.shape, tl.float32)
        a0 = tl.zeros(y0.shape, tl.float32)
        a1 = tl.zeros(y0.shape, tl.float32)
        for k in tl.static_range(K):
            mu0 = tl.load(coef_ptr + 6 * k + 0)
            mu1 = tl.load(coef_ptr + 6 * k + 1)
            p00 = tl.load(coef_ptr + 6 * k + 2)
            p01 = tl.load(coef_ptr + 6 * k + 3)
            p11 = tl.load(coef_ptr + 6 * k + 4)
            lc = tl.load(coef_ptr + 6 * k + 5)
            d0 = y0 - mu0
            d1 = y1 - mu1
            h0 = p00 * d0 + p01 * d1
            h1 = p01 * d0 + p11 * d1
            logit = lc - 0.5 * (d0 * h0 + d1 * h1)
            m_new = tl.maximum(m, logit)
            scale = tl.exp(m - m_new)
            e = tl.exp(logit - m_new)
            s = s * scale + e
            a0 = a0 * scale - e * h0
            a1 = a1 * scale - e * h1
            m = m_new
        return m + tl.log(s), a0 / s, a1 / s

    @triton.jit
    def _banana_logp_score(y0, y1, coef_ptr):
        a = tl.load(coef_ptr + 0)
        b = tl.load(coef_ptr + 1)
        sd = tl.load(coef_ptr + 2)
        r = (y1 - b * (y0 * y0 - a * a)) / (sd * sd)
        logp = -0.5 * y0 * y0 / (a * a) - 0.5 * (sd * sd) * r * r - (1.8378770664093453 + tl.log(a * sd))
        return logp, y0 * (2.0 * b * r - 1.0 / (a * a)), -r

    @triton.jit
    def _ring_logp_score(y0, y1, coef_ptr):
        R = tl.load(coef_ptr + 0)
        w = tl.load(coef_ptr + 1)
        log_z = tl.load(coef_ptr + 2)
        rho = tl.maximum(tl.sqrt(y0 * y0 + y1 * y1), 1e-20)
        dev = rho - R
        f = -dev / ((w * w) * rho)
        return -0.5 * dev * dev / (w * w) - log_z, f * y0, f * y1

    # seed, counter and trace_row change from step to step: never specialise on their values
    # (Triton would build a new kernel when one equals 1 or turns divisible by 16)
    @triton.jit(do_not_specialize=["seed", "counter", "trace_row"])
    def _langevin_step_kernel(x_ptr, logp_ptr, grad_ptr, coef_ptr, noise_ptr, unif_ptr, acc_ptr,
                              trace_ptr, n, step, seed, counter, trace_row, trace_m,
                              FAMILY: tl.constexpr, D: tl.constexpr, K: tl.constexpr,
                              MALA: tl.constexpr, HAS_NOISE: tl.constexpr, HAS_ACC: tl.constexpr,
                              HAS_TRACE: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        idx = pid * BLOCK + tl.arange(0, BLOCK)
        mask = idx < n
        x0 = tl.load(x_ptr + idx, mask=mask, other=0.0)
        g0 = tl.load(grad_ptr + idx, mask=mask, other=0.0)
        if D == 2:
            x1 = tl.load(x_ptr + n + idx, mask=mask, other=0.0)
            g1 = tl.load(grad_ptr + n + idx, mask=mask, other=0.0)
        else:
            x1 = tl.zeros(x0.shape, tl.float32)
            g1 = tl.zeros(x0.shape, tl.float32)
        if HAS_NOISE:
            z0 = tl.load(noise_ptr + idx, mask=mask, other=0.0)
            if D == 2:
                z1 = tl.load(noise_ptr + n + idx, mask=mask, other=0.0)
            else:
                z1 = tl.zeros(x0.shape, tl.float32)
            u = tl.load(unif_ptr + idx, mask=mask, other=0.5)
        else:
            # Philox: key = seed, counter = (chain index, step counter, 0, 0) -> four uint32
            r0, r1, r2, r3 = tl.philox(seed, idx, counter + tl.zeros_like(idx), tl.zeros_like(idx),
                                       tl.zeros_like(idx))
            z0, z1 = tl.pair_uniform_to_normal(tl.uint_to_uniform_float(r0), tl.uint_to_uniform_float(r1))
            if D == 1:
                z1 = tl.zeros(x0.shape, tl.float32)
            u = tl.uint_to_uniform_float(r2)
        half = 0.5 * step
        root = tl.sqrt(step)
        y0 = x0 + half * g0 + root * z0
        y1 = x1 + half * g1 + root * z1
        if FAMILY == 0:
            lp_y, gy0, gy1 = _mixture_logp_score(y0, y1, coef_ptr, K)
        elif FAMILY == 1:
            lp_y, gy0, gy1 = _banana_logp_score(y0, y1, coef_ptr)
        else:
            lp_y, gy0, gy1 = _ring_logp_score(y0, y1, coef_ptr)
        if MALA:
            lp_x = tl.load(logp_ptr + idx, mask=mask, other=0.0)
            b0 = x0 - y0 - half * gy0
            b1 = x1 - y1 - half * gy1
            log_alpha = lp_y - lp_x - (b0 * b0 + b1 * b1) / (2.0 * step) + 0.5 * (z0 * z0 + z1 * z1)
            accept = tl.log(u) < log_alpha  # NaN compares False: a rejection
            y0 = tl.where(accept, y0, x0)
            y1 = tl.where(accept, y1, x1)
            gy0 = tl.where(accept, gy0, g0)
            gy1 = tl.where(accept, gy1, g1)
            lp_y = tl.where(accept, lp_y, lp_x)
            if HAS_ACC:
                tl.atomic_add(acc_ptr, tl.sum((accept & mask).to(tl.int64), axis=0))
        tl.store(x_ptr + idx, y0, mask=mask)
        tl.store(grad_ptr + idx, gy0, mask=mask)
        tl.store(logp_ptr + idx, lp_y, mask=mask)
        if D == 2:
            tl.store(x_ptr + n + idx, y1, mask=mask)
            tl.store(grad_ptr + n + idx, gy1, mask=mask)
        if HAS_TRACE:
            tl.store(trace_ptr + trace_row * trace_m + idx, y0, mask=mask & (idx < trace_m))


TRITON_BLOCK = 1024


def langevin_step_triton(x: torch.Tensor, logp: torch.Tensor, grad: torch.Tensor, step: float,
                         packed: PackedTarget, mala: bool, seed: int = 0, counter: int = 0,
                         noise: torch.Tensor | None = None, uniforms: torch.Tensor | None = None,
                         accept_count: torch.Tensor | None = None, trace: torch.Tensor | None = None,
                         trace_row: int = 0, generator: torch.Generator | None = None,
                         block: int = TRITON_BLOCK) -> None:
    """The fused Triton step (same signature and semantics as :func:`langevin_step_torch`;
    ``generator`` is ignored: without ``noise`` the kernel draws from Philox(seed, counter))."""
    if triton is None:  # pragma: no cover
        raise RuntimeError("triton is not installed")
    d, n = x.shape
    if (noise is None) != (uniforms is None):
        raise ValueError("give both noise and uniforms, or neither")
    dummy = logp
    coeffs = packed.coeffs if packed.coeffs.device == x.device else packed.coeffs.to(x.device)
    grid = (triton.cdiv(n, block),)
    _langevin_step_kernel[grid](
        x, logp, grad, coeffs,
        noise if noise is not None else dummy, uniforms if uniforms is not None else dummy,
        accept_count if accept_count is not None else dummy,
        trace if trace is not None else dummy,
        n, float(step), int(seed) & 0x7FFFFFFFFFFFFFFF, int(counter) & 0x7FFFFFFF, int(trace_row),
        int(trace.shape[1]) if trace is not None else 0,
        FAMILY=FAMILY_IDS[packed.family], D=d, K=packed.k, MALA=bool(mala),
        HAS_NOISE=noise is not None, HAS_ACC=accept_count is not None and bool(mala),
        HAS_TRACE=trace is not None, BLOCK=block, num_warps=4)


def langevin_step(x: torch.Tensor, logp: torch.Tensor, grad: torch.Tensor, step: float,
                  packed: PackedTarget, mala: bool, seed: int = 0, counter: int = 0,
                  noise: torch.Tensor | None = None, uniforms: torch.Tensor | None = None,
                  accept_count: torch.Tensor | None = None, trace: torch.Tensor | None = None,
                  trace_row: int = 0, generator: torch.Generator | None = None) -> None:
    """One step of every chain: the Triton kernel on CUDA, the twin elsewhere."""
    if use_triton(x.device):
        langevin_step_triton(x, logp, grad, step, packed, mala, seed, counter, noise, uniforms,
                             accept_count, trace, trace_row)
    else:
        langevin_step_torch(x, logp, grad, step, packed, mala, seed, counter, noise, uniforms,
                            accept_count, trace, trace_row, generator)


# ---------------------------------------------------------------------------------------------
# Several steps per call: the Triton kernel in a loop on CUDA; on the CPU either the twin in a
# loop or one torch.compile'd graph of ``n_steps`` unrolled steps (fused: one pass over the
# chains per block, no per-op dispatch, which is what a step of 10^3 chains costs in eager mode).
# ---------------------------------------------------------------------------------------------
_FUSED: dict[tuple, object] = {}


def fused_body(packed: PackedTarget, mala: bool, n_steps: int, trace_m: int):
    """The plain function :func:`langevin_steps` compiles: ``n_steps`` twin steps, unrolled, on
    (x, logp, grad) with the noise (n_steps, D, N) and uniforms (n_steps, N) given and the step
    as a tensor (half, root, 1 / (2 eps)) so a new step size does not recompile. Returns
    (x, logp, grad, accepted proposals (0-d int64), trace rows (n_steps, trace_m))."""
    def body(x, logp, grad, noise, uniforms, consts):
        half, root, inv2 = consts[0], consts[1], consts[2]
        accepted = torch.zeros((), dtype=torch.int64, device=x.device)
        rows = []
        for i in range(n_steps):
            z = noise[i]
            y = x + half * grad + root * z
            lp_y, g_y = log_density_and_score_torch(packed, y)
            if mala:
                back = x - y - half * g_y
                log_alpha = lp_y - logp - inv2 * (back * back).sum(0) + 0.5 * (z * z).sum(0)
                accept = torch.log(uniforms[i]) < log_alpha  # NaN compares False: a rejection
                x = torch.where(accept, y, x)
                grad = torch.where(accept, g_y, grad)
                logp = torch.where(accept, lp_y, logp)
                accepted = accepted + accept.sum()
            else:
                x, logp, grad = y, lp_y, g_y
            if trace_m:
                rows.append(x[0, :trace_m])
        trace_rows = torch.stack(rows) if rows else x.new_empty((0, 0))
        return x, logp, grad, accepted, trace_rows
    return body


def _fused(packed: PackedTarget, mala: bool, n_steps: int, trace_m: int):
    key = (packed.family, packed.dim, packed.k, packed.values, bool(mala), int(n_steps), int(trace_m))
    fn = _FUSED.get(key)
    if fn is None:
        fn = torch.compile(fused_body(packed, mala, n_steps, trace_m), dynamic=False, fullgraph=True)
        _FUSED[key] = fn
    return fn


def langevin_steps(x: torch.Tensor, logp: torch.Tensor, grad: torch.Tensor, step: float,
                   packed: PackedTarget, mala: bool, n_steps: int, seed: int = 0, counter: int = 0,
                   noise: torch.Tensor | None = None, uniforms: torch.Tensor | None = None,
                   accept_count: torch.Tensor | None = None, trace: torch.Tensor | None = None,
                   trace_row: int = 0, generator: torch.Generator | None = None,
                   fused: bool = False) -> None:
    """``n_steps`` steps of every chain, in place. Trace rows trace_row, trace_row + 1, ...
    (modulo the trace's length, a ring buffer) receive x[0, :M] after each step. On CUDA: the
    Triton kernel with counters counter ... counter + n_steps - 1. On the CPU without ``fused``:
    the twin, step by step. With ``fused`` (CPU): one compiled call (torch.compile, Inductor's
    C++ backend; the first call for a target, method, n_steps and chain count compiles, tens of
    seconds) on noise drawn up front from ``generator`` as randn(n_steps, D, N) then
    rand(n_steps, N) (MALA) — a different stream from the twin's per-step draws, so the chains
    differ from the unfused run's, but the same given ``noise`` (n_steps, D, N) and ``uniforms``
    (n_steps, N). Nothing syncs with the host."""
    n_steps = int(n_steps)
    if n_steps < 1:
        raise ValueError("n_steps must be at least 1")
    t_len = trace.shape[0] if trace is not None else 1
    if use_triton(x.device) or not fused:
        for i in range(n_steps):
            langevin_step(x, logp, grad, step, packed, mala, seed, counter + i,
                          None if noise is None else noise[i], None if uniforms is None else uniforms[i],
                          accept_count, trace, (trace_row + i) % t_len, generator)
        return
    d, n = x.shape
    if noise is None:
        noise = torch.randn((n_steps, d, n), generator=generator, device=x.device)
        uniforms = torch.rand((n_steps, n), generator=generator, device=x.device) if mala else None
    if uniforms is None:
        uniforms = noise.new_empty((n_steps, 0))
    eps = float(step)
    consts = torch.tensor([0.5 * eps, math.sqrt(eps), 1.0 / (2.0 * eps)], dtype=x.dtype, device=x.device)
    m = trace.shape[1] if trace is not None else 0
    nx, nl, ng, accepted, rows = _fused(packed, mala, n_steps, m)(x, logp, grad, noise, uniforms, consts)
    x.copy_(nx)
    logp.copy_(nl)
    grad.copy_(ng)
    if accept_count is not None and mala:
        accept_count += accepted
    if trace is not None:
        idx = torch.arange(trace_row, trace_row + n_steps, device=x.device) % t_len
        trace.index_copy_(0, idx, rows)


def refresh(x: torch.Tensor, logp: torch.Tensor, grad: torch.Tensor, packed: PackedTarget) -> None:
    """Recompute the cached log p and score at x (after an init, a re-seed or a target change)."""
    for s in range(0, x.shape[1], TWIN_CHUNK):
        e = min(x.shape[1], s + TWIN_CHUNK)
        lp, g = log_density_and_score_torch(packed, x[:, s:e])
        logp[s:e].copy_(lp)
        grad[:, s:e].copy_(g)


# -- representative launches: what engine/kernels/aot.py builds for sm_90 / sm_80 ---------------
# Each calls langevin_step_triton on placeholder tensors for one of the Langevin topic's targets
# (FAMILY, D and K follow from the target), so a build uses the signature the launch site passes.
# The topic passes an acceptance counter and a trace (HAS_ACC with MALA, HAS_TRACE) and draws in
# the kernel; the tests pass noise and uniforms (HAS_NOISE). BLOCK is fixed (TRITON_BLOCK).
from . import Launch, placeholder  # noqa: E402

# Register spills the compile gate found on sm_80 (local memory, STL/LDL in the SASS), tolerated
# until fixed (the gate fails once one is gone): 8 bytes where MALA keeps x, score and log p of
# both points live across the target's score; 160 bytes for the 8-component mixture, whose
# unrolled online logsumexp runs into the 255-register ceiling. sm_90 builds do not spill.
STEP_SPILLS = {"bimodal2d MALA": ("sm_80",), "banana MALA": ("sm_80",), "ring MALA": ("sm_80",),
               "modes MALA": ("sm_80",), "modes MALA noise": ("sm_80",)}


def _step_launch(target: str, mala: bool, noise: bool = False, chains: int = 10_000,
                 default: bool = False) -> Launch:
    def call() -> None:
        from ..exact.targets import make_target

        packed = pack_target(make_target(target), "meta")
        d = packed.dim
        langevin_step_triton(placeholder(d, chains), placeholder(chains), placeholder(d, chains), 0.1,
                             packed, mala, seed=12345, counter=7,
                             noise=placeholder(d, chains) if noise else None,
                             uniforms=placeholder(chains) if noise else None,
                             accept_count=placeholder(1, dtype=torch.int64),
                             trace=placeholder(64, 256), trace_row=5)
    label = f"{target} {'MALA' if mala else 'ULA'}" + " noise" * noise
    archs = STEP_SPILLS.get(label, ())
    return Launch(label, call, default, known="register spill (see STEP_SPILLS)" if archs else "",
                  known_archs=archs)


# default set: the topic's default target, and the largest K (the 8-mode mixture)
DEFAULT_STEPS = {("gaussian", True, False), ("modes", False, False)}

LAUNCHES = tuple(_step_launch(t, m, z, default=(t, m, z) in DEFAULT_STEPS)
                 for t in ("bimodal", "bimodal2d", "banana", "ring", "gaussian", "modes")
                 for m in (True, False) for z in (False, True))
