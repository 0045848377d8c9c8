"""Target densities for Langevin sampling, each with its exact log-density, score and sampler.

Every target is a normalised density p on R^D (D = 1 or 2) known in closed form:
``log_density`` (natural log, normalised), ``score`` = grad log p, ``sample`` (exact, i.i.d.),
exact mean and covariance, exact marginals, and for D = 1 the CDF.  Points are (N, D)
tensors here (one row per point); the Langevin kernels keep positions coordinate-major
as (D, N) and convert at their edges.

Families (one fused Triton kernel each, see ``engine/kernels/langevin.py``):
    mixture   sum_k w_k N(mu_k, Sigma_k): bimodal, bimodal2d, gaussian, modes
    banana    x1 ~ N(0, a^2), x2 | x1 ~ N(b (x1^2 - a^2), s^2)   (Rosenbrock-like)
    ring      p(x) ∝ exp(-(|x| - R)^2 / (2 w^2))
Each target also carries the plotting box used by the pane and the largest noise level
``sigma_max`` of the learned-score ladder (about the target's diameter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

FAMILIES = ("mixture", "banana", "ring")
NAMES = ("bimodal", "bimodal2d", "banana", "ring", "gaussian", "modes")
LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Target:
    """A target density. Mixture fields: ``weights`` (K,), ``means`` (K, D), ``covs`` (K, D, D).
    Banana fields: ``a``, ``b``, ``s``. Ring fields: ``radius``, ``width``.
    ``box`` = (x0, x1) for D = 1, (x0, x1, y0, y1) for D = 2: the pane's window.
    ``start``: one point (D,) used by ``init=mode`` (all chains start there)."""

    name: str
    family: str
    dim: int
    box: tuple[float, ...]
    start: tuple[float, ...]
    sigma_max: float
    weights: tuple[float, ...] = ()
    means: tuple[tuple[float, ...], ...] = ()
    covs: tuple[tuple[tuple[float, ...], ...], ...] = ()
    a: float = 0.0
    b: float = 0.0
    s: float = 0.0
    radius: float = 0.0
    width: float = 0.0
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    # -- closed forms -------------------------------------------------------------
    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for points x (N, D); natural log, normalised."""
        return self.log_density_and_score(x)[0]

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p(x), (N, D)."""
        return self.log_density_and_score(x)[1]

    def log_density_and_score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p (N,), score (N, D)) written plainly with broadcasting: the exact reference
        and the eager baseline of the benchmarks."""
        if self.family == "mixture":
            key = (x.dtype, x.device)
            if key not in self._cache:  # constants built once per dtype and device
                self._cache[key] = (
                    torch.tensor(self.means, dtype=x.dtype, device=x.device),                     # (K, D)
                    torch.linalg.inv(torch.tensor(self.covs, dtype=torch.float64)).to(x.dtype).to(x.device),
                    torch.tensor(self.log_norms(), dtype=x.dtype, device=x.device))               # (K,)
            mu, prec, logc = self._cache[key]
            d = x[:, None, :] - mu[None]                                             # (N, K, D)
            pd = torch.einsum("kij,nkj->nki", prec, d)                               # (N, K, D)
            logits = logc[None] - 0.5 * (d * pd).sum(-1)                             # (N, K)
            logp = torch.logsumexp(logits, dim=1)
            resp = torch.softmax(logits, dim=1)
            return logp, -(resp[..., None] * pd).sum(1)
        if self.family == "banana":
            x1, x2 = x[:, 0], x[:, 1]
            r = (x2 - self.b * (x1 * x1 - self.a ** 2)) / self.s ** 2
            logp = (-0.5 * x1 * x1 / self.a ** 2 - 0.5 * r * r * self.s ** 2
                    - LOG_2PI - math.log(self.a * self.s))
            g = torch.stack((-x1 / self.a ** 2 + 2.0 * self.b * x1 * r, -r), dim=1)
            return logp, g
        if self.family == "ring":
            rho = torch.sqrt((x * x).sum(1)).clamp_min(1e-20)
            dev = rho - self.radius
            logp = -0.5 * dev * dev / self.width ** 2 - self.ring_log_z()
            g = (-dev / (self.width ** 2 * rho))[:, None] * x
            return logp, g
        raise ValueError(f"unknown family {self.family!r}")

    def log_norms(self) -> list[float]:
        """Mixture: log w_k - (D/2) log 2 pi - (1/2) log det Sigma_k for each component."""
        out = []
        for w, c in zip(self.weights, self.covs):
            det = float(np.linalg.det(np.array(c, dtype=np.float64)))
            out.append(math.log(w) - 0.5 * self.dim * LOG_2PI - 0.5 * math.log(det))
        return out

    def ring_log_z(self) -> float:
        """log of Z = 2 pi [w^2 exp(-R^2 / 2w^2) + R w sqrt(2 pi) Phi(R / w)]."""
        R, w = self.radius, self.width
        phi = 0.5 * math.erfc(-R / (w * math.sqrt(2.0)))
        return math.log(2.0 * math.pi * (w * w * math.exp(-R * R / (2 * w * w))
                                         + R * w * math.sqrt(2.0 * math.pi) * phi))

    # -- exact samples ------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """n exact i.i.d. samples, (n, D). Drawn on the CPU with ``generator``, then moved."""
        g = generator
        if self.family == "mixture":
            w = torch.tensor(self.weights, dtype=torch.float64)
            k = torch.multinomial(w, n, replacement=True, generator=g)
            mu = torch.tensor(self.means, dtype=torch.float64)
            chol = torch.linalg.cholesky(torch.tensor(self.covs, dtype=torch.float64))
            z = torch.randn(n, self.dim, generator=g, dtype=torch.float64)
            x = mu[k] + torch.einsum("nij,nj->ni", chol[k], z)
        elif self.family == "banana":
            z = torch.randn(n, 2, generator=g, dtype=torch.float64)
            x1 = self.a * z[:, 0]
            x = torch.stack((x1, self.b * (x1 * x1 - self.a ** 2) + self.s * z[:, 1]), dim=1)
        elif self.family == "ring":
            x = self._ring_sample(n, g)
        else:
            raise ValueError(f"unknown family {self.family!r}")
        return x.to(device=device, dtype=dtype)

    def _ring_sample(self, n: int, g: torch.Generator | None) -> torch.Tensor:
        """Radius density f(rho) ∝ rho phi((rho - R)/w) on rho > 0, by rejection from the
        envelope rho phi(u) <= (R + w|u|) phi(u) = R phi(u) + w |u| phi(u), u = (rho - R)/w:
        a two-part mixture (Gaussian u with weight R, Rayleigh |u| with random sign with
        weight 2 w / sqrt(2 pi)); accept with rho / (R + w|u|). Exact; angle uniform."""
        R, w = self.radius, self.width
        p_gauss = R / (R + 2.0 * w / math.sqrt(2.0 * math.pi))
        out: list[torch.Tensor] = []
        have = 0
        while have < n:
            m = max(64, int(1.3 * (n - have)) + 16)
            pick = torch.rand(m, generator=g, dtype=torch.float64) < p_gauss
            gauss = torch.randn(m, generator=g, dtype=torch.float64)
            rayl = torch.sqrt(-2.0 * torch.log1p(-torch.rand(m, generator=g, dtype=torch.float64)))
            sign = torch.where(torch.rand(m, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
            u = torch.where(pick, gauss, sign * rayl)
            rho = R + w * u
            accept = (rho > 0) & (torch.rand(m, generator=g, dtype=torch.float64) * (R + w * u.abs()) < rho)
            rho = rho[accept]
            out.append(rho)
            have += rho.numel()
        rho = torch.cat(out)[:n]
        theta = 2.0 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
        return torch.stack((rho * torch.cos(theta), rho * torch.sin(theta)), dim=1)

    # -- exact moments and marginals ---------------------------------------------------
    def mean(self) -> np.ndarray:
        if self.family == "mixture":
            return np.einsum("k,kd->d", np.array(self.weights), np.array(self.means))
        return np.zeros(self.dim)

    def covariance(self) -> np.ndarray:
        """Exact covariance (D, D). Mixture: sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T.
        Banana: diag(a^2, 2 a^4 b^2 + s^2). Ring: E[rho^2] / 2 I, E[rho^2] by quadrature of
        the radial density (1e-12 accurate)."""
        if self.family == "mixture":
            w = np.array(self.weights)
            mu = np.array(self.means)
            second = np.einsum("k,kij->ij", w, np.array(self.covs)) + np.einsum("k,ki,kj->ij", w, mu, mu)
            m = self.mean()
            return second - np.outer(m, m)
        if self.family == "banana":
            return np.diag([self.a ** 2, 2.0 * self.a ** 4 * self.b ** 2 + self.s ** 2])
        rho = np.linspace(0.0, self.radius + 40.0 * self.width, 200001)
        f = rho * np.exp(-0.5 * ((rho - self.radius) / self.width) ** 2)
        e2 = np.trapezoid(rho * rho * f, rho) / np.trapezoid(f, rho)
        return np.eye(2) * e2 / 2.0

    def ula_covariance(self, step: float) -> np.ndarray | None:
        """ULA's exact stationary covariance on a single Gaussian N(mu, Sigma): with
        A = I - (eps/2) Sigma^-1, C = A C A^T + eps I solves to C = Sigma (I - (eps/4) Sigma^-1)^-1
        (per eigenvalue l: l / (1 - eps / (4 l))); its mean stays mu. None for other targets, or
        when eps >= 4 l_min (ULA diverges)."""
        if self.family != "mixture" or len(self.weights) != 1:
            return None
        sigma = np.array(self.covs[0], dtype=np.float64)
        if step >= 4.0 * float(np.linalg.eigvalsh(sigma).min()):
            return None
        return sigma @ np.linalg.inv(np.eye(self.dim) - 0.25 * step * np.linalg.inv(sigma))

    def density(self, points: np.ndarray) -> np.ndarray:
        """p at points (N, D), float64 numpy."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(points, dtype=np.float64))
            return torch.exp(self.log_density(x)).numpy()

    def marginal(self, axis: int, grid: np.ndarray) -> np.ndarray:
        """Exact marginal density of coordinate ``axis`` at ``grid``. Closed form for
        mixtures and the banana's x1; quadrature over the other coordinate otherwise."""
        grid = np.asarray(grid, dtype=np.float64)
        if self.family == "mixture":
            out = np.zeros_like(grid)
            for w, mu, c in zip(self.weights, self.means, self.covs):
                var = c[axis][axis]
                out += w * np.exp(-0.5 * (grid - mu[axis]) ** 2 / var) / math.sqrt(2 * math.pi * var)
            return out
        if self.family == "banana" and axis == 0:
            return np.exp(-0.5 * grid ** 2 / self.a ** 2) / math.sqrt(2 * math.pi * self.a ** 2)
        lo, hi = self._quadrature_range(1 - axis)
        other = np.linspace(lo, hi, 4001)
        pts = np.empty((grid.size, other.size, 2))
        pts[..., axis] = grid[:, None]
        pts[..., 1 - axis] = other[None, :]
        dens = self.density(pts.reshape(-1, 2)).reshape(grid.size, other.size)
        return np.trapezoid(dens, other, axis=1)

    def _quadrature_range(self, axis: int) -> tuple[float, float]:
        if self.family == "banana":  # x2 given x1 within 12 sd of x1: x2 in [-b a^2 - 12 s, b (12 a)^2]
            return (-self.b * self.a ** 2 - 12 * self.s, self.b * (12 * self.a) ** 2 + 12 * self.s) \
                if axis == 1 else (-12 * self.a, 12 * self.a)
        span = self.radius + 12 * self.width
        return -span, span

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """D = 1 mixtures: F(x) = sum_k w_k Phi((x - mu_k) / sigma_k), any shape."""
        if self.dim != 1 or self.family != "mixture":
            raise ValueError("cdf is defined for 1-D mixture targets")
        out = torch.zeros_like(x)
        for w, mu, c in zip(self.weights, self.means, self.covs):
            sd = math.sqrt(c[0][0])
            out = out + w * 0.5 * torch.erfc(-(x - mu[0]) / (sd * math.sqrt(2.0)))
        return out

    def mixture_coeffs(self) -> np.ndarray:
        """Packed mixture parameters for the kernels: (K, 6) rows
        (mu0, mu1, P00, P01, P11, log c) with P = Sigma^-1 and log c from ``log_norms``;
        for D = 1 the unused entries are 0 (so the 2-D formula reduces to the 1-D one)."""
        rows = []
        for mu, c, lc in zip(self.means, self.covs, self.log_norms()):
            p = np.linalg.inv(np.array(c, dtype=np.float64))
            if self.dim == 1:
                rows.append([mu[0], 0.0, p[0, 0], 0.0, 0.0, lc])
            else:
                rows.append([mu[0], mu[1], p[0, 0], p[0, 1], p[1, 1], lc])
        return np.array(rows, dtype=np.float64)


def mixture(name: str, weights, means, covs, box, sigma_max: float, start=None) -> Target:
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()
    means = np.asarray(means, dtype=np.float64)
    dim = means.shape[1]
    covs = np.asarray(covs, dtype=np.float64).reshape(len(weights), dim, dim)
    start = tuple(means[0]) if start is None else tuple(float(v) for v in start)
    return Target(name=name, family="mixture", dim=dim, box=tuple(float(b) for b in box),
                  start=tuple(float(v) for v in start), sigma_max=float(sigma_max),
                  weights=tuple(float(w) for w in weights),
                  means=tuple(tuple(float(v) for v in m) for m in means),
                  covs=tuple(tuple(tuple(float(v) for v in row) for row in c) for c in covs))


def gaussian(mean, cov, name: str = "gaussian", box=None, sigma_max: float | None = None) -> Target:
    """A single Gaussian N(mean, cov) (1-D when ``mean`` has one entry)."""
    mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    cov = np.asarray(cov, dtype=np.float64).reshape(mean.size, mean.size)
    sd = np.sqrt(np.diag(cov))
    if box is None:
        box = tuple(v for m, s in zip(mean, sd) for v in (m - 4 * s, m + 4 * s))
    return mixture(name, [1.0], [mean], [cov], box, sigma_max or 3.0 * float(sd.max()))


def _modes_target() -> Target:
    k = 8
    angles = 2 * math.pi * np.arange(k) / k
    means = np.stack((4.0 * np.cos(angles), 4.0 * np.sin(angles)), axis=1)
    covs = np.tile(np.eye(2) * 0.4 ** 2, (k, 1, 1))
    return mixture("modes", np.arange(1, k + 1), means, covs, (-5.5, 5.5, -5.5, 5.5), 8.0)


def make_target(name: str) -> Target:
    """The named targets of the ``langevin`` topic."""
    if name == "bimodal":
        return mixture("bimodal", [0.5, 0.5], [[-3.0], [3.0]], [[[1.0]], [[1.0]]], (-7.0, 7.0), 6.0)
    if name == "bimodal2d":
        return mixture("bimodal2d", [0.5, 0.5], [[-2.5, -2.5], [2.5, 2.5]], [np.eye(2), np.eye(2)],
                       (-6.0, 6.0, -6.0, 6.0), 7.0)
    if name == "gaussian":
        cov = [[1.0, 1.2], [1.2, 2.25]]  # sd 1 and 1.5, correlation 0.8
        return gaussian([0.5, -0.5], cov, box=(-3.5, 4.5, -6.5, 5.5), sigma_max=4.0)
    if name == "modes":
        return _modes_target()
    if name == "banana":
        a, b, s = 1.25, 0.6, 0.6
        return Target(name="banana", family="banana", dim=2, box=(-4.5, 4.5, -2.5, 8.0),
                      start=(0.0, -b * a * a), sigma_max=5.0, a=a, b=b, s=s)
    if name == "ring":
        return Target(name="ring", family="ring", dim=2, box=(-4.5, 4.5, -4.5, 4.5),
                      start=(3.0, 0.0), sigma_max=6.0, radius=3.0, width=0.35)
    raise ValueError(f"unknown target {name!r} (known: {', '.join(NAMES)})")
