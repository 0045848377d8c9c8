"""The E-step of a Gaussian mixture, reduced to its sufficient statistics.

Model (natural log):  p(x) = sum_k pi_k N(x | mu_k, Sigma_k).
Per point and component, from the precision Cholesky factor P_k (P_k P_k^T = Sigma_k^-1,
scikit-learn's ``precisions_cholesky_`` convention: upper triangular for ``full``):

    log_prob[i, k] = log pi_k + sum_d log P_k[d, d] - D/2 log(2 pi) - 1/2 || (x_i - mu_k)^T P_k ||^2
    log_prob_norm[i] = logsumexp_k log_prob[i, k]              (never exp before the logsumexp)
    r[i, k] = exp(log_prob[i, k] - log_prob_norm[i])            (the responsibilities)

and the statistics the M-step needs:

    nk[k]     = sum_i r[i, k]                                   (K,)
    sx[k]     = sum_i r[i, k] x_i                               (K, D)
    sxx[k]    = sum_i r[i, k] x_i x_i^T                         (K, D, D)  for ``full``
              = sum_i r[i, k] x_i * x_i  (elementwise)          (K, D)     for ``diag`` / ``spherical``

Layouts shared by the Triton kernel and its PyTorch twin:
    x             (N, D) float32 or float64, contiguous. Centre the data first (subtract its
                  mean): sxx is uncentred, and the M-step's sxx/nk - mu mu^T loses digits
                  when the data sit far from the origin.
    log_weights   (K,) log pi_k.
    means         (K, D).
    prec_chol     (K, D, D) full | (K, D) diag | (K,) spherical  (scikit-learn's shapes).
Returns :class:`EStepStats` on x's device: log_prob_norm in x's dtype, the statistics always
in float64 (an M-step's sxx / nk - mu mu^T cancels |mu|^2 down to sigma^2: float32 sums lose
whole digits of a narrow component's covariance). Nothing of size N x K x D is built: the
twin works on chunks of points, the kernel on tiles of BLOCK_N points with K partial sums
per program (memory O(N D + programs K D^2)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from . import tl, triton  # None where Triton is absent (the CPU path never needs it)

COVARIANCE_TYPES = ("full", "diag", "spherical")
LOG_2PI = math.log(2.0 * math.pi)


class EStepStats(NamedTuple):
    log_prob_norm: torch.Tensor  # (N,) log p(x_i) under the parameters given
    nk: torch.Tensor             # (K,)
    sx: torch.Tensor             # (K, D)
    sxx: torch.Tensor            # (K, D, D) full, (K, D) diag / spherical


def log_det_prec_chol(prec_chol: torch.Tensor, covariance_type: str, n_features: int) -> torch.Tensor:
    """sum_d log P_k[d, d]  (= -1/2 log det Sigma_k), shape (K,)."""
    if covariance_type == "full":
        return torch.log(torch.diagonal(prec_chol, dim1=-2, dim2=-1)).sum(-1)
    if covariance_type == "diag":
        return torch.log(prec_chol).sum(-1)
    if covariance_type == "spherical":
        return n_features * torch.log(prec_chol)
    raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")


def log_prob_components(x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor,
                        prec_chol: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """log pi_k + log N(x_i | mu_k, Sigma_k) for a chunk of points, (n, K), in matmul form.

    full: Y = X [P_1 ... P_K] - [mu_1 P_1 ... mu_K P_K] as one (n, D) x (D, K D) product, then
    the squared norm of each D-block; diag / spherical: the expansion
    sum_d p^2 x^2 - 2 x (mu p^2) + sum_d (mu p)^2 as two (n, D) x (D, K) products (scikit-learn's
    form). Differentiable (the gradient-MLE path uses it under autograd)."""
    n, d = x.shape
    k = means.shape[0]
    log_det = log_det_prec_chol(prec_chol, covariance_type, d)
    if covariance_type == "full":
        p_cat = prec_chol.permute(1, 0, 2).reshape(d, k * d)            # [P_1 ... P_K]
        shift = torch.einsum("kd,kde->ke", means, prec_chol).reshape(1, k * d)
        y = torch.addmm(-shift, x, p_cat) if not torch.is_grad_enabled() else x @ p_cat - shift
        if torch.is_grad_enabled():
            maha = y.square().view(n, k, d).sum(-1)
        else:
            maha = y.square_().view(n, k, d).sum(-1)
    else:
        if covariance_type == "spherical":
            prec = (prec_chol ** 2)[:, None].expand(k, d)               # (K, D)
        else:
            prec = prec_chol ** 2
        maha = (x * x) @ prec.T - 2.0 * (x @ (means * prec).T) + (means ** 2 * prec).sum(1)
    return log_weights + log_det - 0.5 * (d * LOG_2PI) - 0.5 * maha


def default_chunk(n_features: int, n_components: int) -> int:
    """Points per chunk of the twin: about 2^20 elements in its feature buffer."""
    width = n_features * n_features + n_features + 1 + n_components
    return max(1024, min(1 << 17, (1 << 20) // width))


def _weights_matrix(log_weights: torch.Tensor, means: torch.Tensor, prec_chol: torch.Tensor,
                    covariance_type: str) -> torch.Tensor:
    """W with log_prob = F W for the features F = [x (x) x, x, 1] (full) or [x*x, x, 1]:
    log N = const_k - 1/2 x^T L_k x + x^T L_k mu_k - 1/2 mu_k^T L_k mu_k, L_k = P_k P_k^T."""
    k, d = means.shape
    log_det = log_det_prec_chol(prec_chol, covariance_type, d)
    if covariance_type == "full":
        prec = prec_chol @ prec_chol.mT                                   # (K, D, D) precisions
        quad = prec.reshape(k, d * d)
    elif covariance_type == "diag":
        prec = prec_chol ** 2
        quad = prec
    else:
        prec = (prec_chol ** 2)[:, None].expand(k, d)
        quad = prec
    if covariance_type == "full":
        lin = torch.einsum("kde,ke->kd", prec, means)                    # L_k mu_k
    else:
        lin = prec * means
    const = log_weights + log_det - 0.5 * d * LOG_2PI - 0.5 * (lin * means).sum(1)
    return torch.cat([-0.5 * quad, lin, const[:, None]], dim=1).T.contiguous()


@torch.no_grad()
def estep_torch(x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor,
                prec_chol: torch.Tensor, covariance_type: str,
                chunk: int | None = None) -> EStepStats:
    """PyTorch twin of :func:`estep_triton` (the CPU path, the test reference, the benchmark's
    neighbour), as two matrix products per chunk of points. With the features
    F = [x (x) x, x, 1] (full; [x*x, x, 1] for diag / spherical), the component log-densities
    are one product F W (the expanded quadratic form x^T L x - 2 x^T L mu + mu^T L mu, as
    scikit-learn writes it for diag), and after the logsumexp all statistics are one product
    r^T F = [sxx | sx | nk]. Memory O(N D + chunk (D^2 + K) + K D^2); nothing N x K x D.
    The expanded form loses ~eps |x|^2_L / |x - mu|^2_L relative digits: centre x first; the
    products run in float64."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    n, d = x.shape
    k = means.shape[0]
    chunk = min(chunk or default_chunk(d, k), max(n, 1))
    full = covariance_type == "full"
    q = d * d if full else d
    # The features and products run in float64 whatever x's dtype (float32 x is only storage on
    # the CPU): the expanded quadratic form and the uncentred sums both cancel digits.
    acc = torch.float64
    w = _weights_matrix(log_weights.to(acc), means.to(acc), prec_chol.to(acc), covariance_type)
    log_prob_norm = torch.empty(n, dtype=x.dtype, device=x.device)
    stats = torch.zeros(k, q + d + 1, dtype=acc, device=x.device)
    feats = torch.empty(chunk, q + d + 1, dtype=acc, device=x.device)
    feats[:, -1] = 1.0
    for start in range(0, n, chunk):
        xc = x[start:start + chunk].to(acc)
        m = xc.shape[0]
        f = feats[:m]
        if full:
            torch.mul(xc[:, :, None], xc[:, None, :], out=f[:, :q].view(m, d, d))   # x (x) x
        else:
            torch.mul(xc, xc, out=f[:, :q])
        f[:, q:q + d] = xc
        lp = f @ w                                                        # (m, K)
        lpn = torch.logsumexp(lp, dim=1)
        log_prob_norm[start:start + m] = lpn
        r = lp.sub_(lpn[:, None]).exp_()                                  # responsibilities
        stats.addmm_(r.T, f)
    sxx = stats[:, :q]
    sx = stats[:, q:q + d]
    nk = stats[:, -1]
    if full:
        sxx = sxx.reshape(k, d, d)
    return EStepStats(log_prob_norm, nk.contiguous(), sx.contiguous(), sxx.contiguous())


# ---------------------------------------------------------------------------------------------
# Triton kernel: one program walks tiles pid, pid + G, pid + 2G, ... of BLOCK_N points. Per tile:
# pass 1 computes log_prob_norm by an online logsumexp over the K components; pass 2 recomputes
# each component's log-probability, turns it into responsibilities and adds the tile's
# (nk, sx, sxx) to this program's own partial sums (no atomics: deterministic). The host sums the
# G partials. Nothing of size N x K is stored; the (BLOCK_N, D, D) temporaries live in registers.
if triton is not None:

    @triton.jit
    def _component_log_prob(x, offs_d, dmask, k, log_w_ptr, log_det_ptr, mean_ptr, prec_ptr,
                            D, half_d_log_2pi, FULL: tl.constexpr):
        mu = tl.load(mean_ptr + k * D + offs_d, mask=dmask, other=0.0)
        diff = x - mu[None, :]
        if FULL:
            pmask = dmask[:, None] & dmask[None, :]
            p = tl.load(prec_ptr + k * D * D + offs_d[:, None] * D + offs_d[None, :], mask=pmask, other=0.0)
            y = tl.sum(diff[:, :, None] * p[None, :, :], axis=1)     # (BLOCK_N, BLOCK_D)
        else:
            p = tl.load(prec_ptr + k * D + offs_d, mask=dmask, other=0.0)
            y = diff * p[None, :]
        maha = tl.sum(y * y, axis=1)
        return tl.load(log_w_ptr + k) + tl.load(log_det_ptr + k) - half_d_log_2pi - 0.5 * maha

    @triton.jit
    def _estep_kernel(x_ptr, log_w_ptr, log_det_ptr, mean_ptr, prec_ptr,
                      lpn_ptr, nk_ptr, sx_ptr, sxx_ptr,
                      N, D, K, n_tiles, half_d_log_2pi,
                      FULL: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
        pid = tl.program_id(0)
        n_programs = tl.num_programs(0)
        offs_d = tl.arange(0, BLOCK_D)
        dmask = offs_d < D
        for t in range(pid, n_tiles, n_programs):
            offs_n = t * BLOCK_N + tl.arange(0, BLOCK_N)
            nmask = offs_n < N
            x = tl.load(x_ptr + offs_n[:, None] * D + offs_d[None, :],
                        mask=nmask[:, None] & dmask[None, :], other=0.0)
            # pass 1: log_prob_norm by an online logsumexp (max-shifted, never exp first)
            m = _component_log_prob(x, offs_d, dmask, 0, log_w_ptr, log_det_ptr, mean_ptr, prec_ptr,
                                    D, half_d_log_2pi, FULL)
            s = tl.exp(m - m)
            for k in range(1, K):
                lp = _component_log_prob(x, offs_d, dmask, k, log_w_ptr, log_det_ptr, mean_ptr,
                                         prec_ptr, D, half_d_log_2pi, FULL)
                m_new = tl.maximum(m, lp)
                s = s * tl.exp(m - m_new) + tl.exp(lp - m_new)
                m = m_new
            lpn = m + tl.log(s)
            tl.store(lpn_ptr + offs_n, lpn, mask=nmask)
            # pass 2: responsibilities -> this program's partial sufficient statistics
            for k in range(0, K):
                lp = _component_log_prob(x, offs_d, dmask, k, log_w_ptr, log_det_ptr, mean_ptr,
                                         prec_ptr, D, half_d_log_2pi, FULL)
                r = tl.where(nmask, tl.exp(lp - lpn), 0.0)
                rx = r[:, None] * x
                base = pid * K + k
                nk_old = tl.load(nk_ptr + base)
                tl.store(nk_ptr + base, nk_old + tl.sum(r, axis=0).to(tl.float64))
                sx_p = sx_ptr + base * D + offs_d
                tl.store(sx_p, tl.load(sx_p, mask=dmask, other=0.0) + tl.sum(rx, axis=0).to(tl.float64),
                         mask=dmask)
                if FULL:
                    pmask = dmask[:, None] & dmask[None, :]
                    sxx_p = sxx_ptr + base * D * D + offs_d[:, None] * D + offs_d[None, :]
                    add = tl.sum(rx[:, :, None] * x[:, None, :], axis=0).to(tl.float64)
                    tl.store(sxx_p, tl.load(sxx_p, mask=pmask, other=0.0) + add, mask=pmask)
                else:
                    sxx_p = sxx_ptr + base * D + offs_d
                    tl.store(sxx_p, tl.load(sxx_p, mask=dmask, other=0.0)
                             + tl.sum(rx * x, axis=0).to(tl.float64), mask=dmask)


def _tile_sizes(n_features: int, full: bool) -> tuple[int, int]:
    block_d = max(2, 1 << max(0, (n_features - 1).bit_length()))
    per_point = block_d * block_d if full else block_d
    block_n = max(16, min(256, 4096 // per_point))
    return block_n, block_d


def estep_triton(x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor,
                 prec_chol: torch.Tensor, covariance_type: str,
                 programs: int | None = None, block_n: int | None = None) -> EStepStats:
    """The E-step as one Triton kernel (CUDA, or CPU tensors under TRITON_INTERPRET=1).

    ``programs`` caps the grid (default: 4 per SM on CUDA, 4 under the interpreter);
    ``block_n`` overrides the tile height (a power of two)."""
    if triton is None:
        raise RuntimeError("triton is not installed; use estep_torch")
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    x = x.contiguous()
    n, d = x.shape
    k = means.shape[0]
    full = covariance_type == "full"
    if covariance_type == "spherical":
        prec = prec_chol[:, None].expand(k, d).contiguous()
    else:
        prec = prec_chol.contiguous()
    log_det = log_det_prec_chol(prec_chol.to(torch.float64), covariance_type, d).to(x.dtype).contiguous()
    bn, bd = _tile_sizes(d, full)
    if block_n is not None:
        bn = block_n
    n_tiles = triton.cdiv(n, bn)
    if programs is None:
        if x.is_cuda:
            programs = 4 * torch.cuda.get_device_properties(x.device).multi_processor_count
        else:
            programs = 4
    g = max(1, min(programs, n_tiles))
    log_prob_norm = torch.empty(n, dtype=x.dtype, device=x.device)
    # per-program partial sums in float64 (tile sums of BLOCK_N points are formed in x's dtype)
    acc = torch.float64
    nk = torch.zeros(g, k, dtype=acc, device=x.device)
    sx = torch.zeros(g, k, d, dtype=acc, device=x.device)
    sxx = torch.zeros((g, k, d, d) if full else (g, k, d), dtype=acc, device=x.device)
    _estep_kernel[(g,)](x, log_weights.to(x.dtype).contiguous(), log_det, means.to(x.dtype).contiguous(),
                        prec.to(x.dtype), log_prob_norm, nk, sx, sxx,
                        n, d, k, n_tiles, 0.5 * d * LOG_2PI,
                        FULL=full, BLOCK_N=bn, BLOCK_D=bd)
    return EStepStats(log_prob_norm, nk.sum(0), sx.sum(0), sxx.sum(0))


def estep(x: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor, prec_chol: torch.Tensor,
          covariance_type: str, use_kernel: bool | None = None) -> EStepStats:
    """Dispatch: the Triton kernel on CUDA (when triton is present), the twin elsewhere."""
    if use_kernel is None:
        use_kernel = x.is_cuda and triton is not None
    if use_kernel:
        return estep_triton(x, log_weights, means, prec_chol, covariance_type)
    return estep_torch(x, log_weights, means, prec_chol, covariance_type)


# -- representative launches: what engine/kernels/aot.py builds for sm_90 / sm_80 ---------------
# Each calls estep_triton on placeholder tensors (the EM topic's shapes and dtypes: data in float32
# or float64, parameters in float64), so a build uses the signature the launch site passes.
# _tile_sizes makes BLOCK_D the power of two >= D and BLOCK_N = 4096 / BLOCK_D^2 (full) or
# 4096 / BLOCK_D (diag, spherical) within [16, 256]: the smallest tile is D=1, the EM topic's
# default (bimodal) is D=1 K=2 full float64, the largest is D=64 (datasets.MAX_FEATURES) full.
# K=1 and D=1 are constexprs at a launch (Triton specialises an integer argument equal to 1).
# Spherical runs the diag kernel on expanded precisions: the same build as diag.
from . import Launch, placeholder  # noqa: E402

ESTEP_FEATURES = (1, 2, 3, 4, 8, 16, 32, 64)
# Register spills the compile gate found (local memory, STL/LDL in the SASS), tolerated until the
# kernel is fixed; the gate fails once one is gone, so the note goes with it. Full covariances at
# D >= 32 hold (BLOCK_N, BLOCK_D, BLOCK_D) products in registers: 0.4-0.5 KB a thread at D=32 in
# float64, 9.6-11.6 KB at D=64 (the compiler gives up and keeps 32 registers). The fix: tl.dot
# tiles for y = (x - mu) P and for sum r x x^T once BLOCK_D >= 16. The 8-16 byte ones are one value
# that ptxas parks across the K loop.
_BOTH = ("sm_90", "sm_80")
ESTEP_SPILLS = {
    "D=64 K=64 full float64": _BOTH, "D=64 K=1 full float64": _BOTH, "D=64 K=8 full float64": _BOTH,
    "D=32 K=1 full float64": _BOTH, "D=32 K=8 full float64": _BOTH, "D=64 K=8 full float32": _BOTH,
    "D=64 K=1 full float32": ("sm_90",), "D=3 K=8 diag float64": ("sm_90",),
    "D=1 K=2 full float64": ("sm_80",), "D=3 K=1 diag float32": ("sm_80",),
    "D=8 K=8 diag float32": ("sm_80",), "D=64 K=8 diag float32": ("sm_80",),
}


def _estep_launch(d: int, k: int, covariance_type: str, dtype: torch.dtype, n: int = 2000,
                  default: bool = False) -> Launch:
    prec = {"full": (k, d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]

    def call() -> EStepStats:
        f64 = torch.float64
        return estep_triton(placeholder(n, d, dtype=dtype), placeholder(k, dtype=f64),
                            placeholder(k, d, dtype=f64), placeholder(*prec, dtype=f64), covariance_type)
    label = f"D={d} K={k} {covariance_type} {str(dtype).removeprefix('torch.')}"
    archs = ESTEP_SPILLS.get(label, ())
    return Launch(label, call, default, known="register spill (see ESTEP_SPILLS)" if archs else "",
                  known_archs=archs)


LAUNCHES = (
    _estep_launch(1, 2, "full", torch.float64, default=True),
    _estep_launch(2, 3, "full", torch.float32),
    _estep_launch(64, 64, "full", torch.float64, default=True),
    *(_estep_launch(d, k, c, t, default=(d, k, c, t) == (8, 1, "diag", torch.float32))
      for d in ESTEP_FEATURES for c in ("full", "diag", "spherical")
      for t in (torch.float32, torch.float64) for k in (1, 8)),
)
