"""The posteriors' unconstrained log densities in torch, batched: a module
maps (n, dim) rows to (n,) log densities, in float64 (the data are float64
buffers, so ``boltz.torch_energy`` runs the module in float64). Each
follows its Stan model in ``data/posteriordb/MODEL.stan`` and equals
:mod:`posteriors.jax_densities` (tests/test_posteriors.py checks it)."""

from __future__ import annotations

import math

import numpy as np
import torch

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _n(x, mu, sigma):
    """log N(x | mu, sigma) entrywise, for a fixed sigma."""
    z = (x - mu) / sigma
    return -_LOG_SQRT_2PI - math.log(sigma) - 0.5 * z * z


def residual_lpdf(resid, log_sigma):
    """sum over a row of log N(resid | 0, sigma), sigma = exp(log_sigma) per row: (n, N) -> (n,)."""
    z = resid / torch.exp(log_sigma)[:, None]
    return (-_LOG_SQRT_2PI - log_sigma[:, None] - 0.5 * z * z).sum(1)


def half_cauchy_lpdf(x, scale):
    """log of Cauchy(0, scale) truncated to x > 0."""
    return math.log(2.0 / math.pi) - math.log(scale) - torch.log1p((x / scale) ** 2)


def gamma_lpdf(x, shape, rate):
    """log Gamma(x | shape, rate)."""
    return shape * math.log(rate) - math.lgamma(shape) + (shape - 1.0) * torch.log(x) - rate * x


class LogDensity(torch.nn.Module):
    """log p(u) of a posterior's unconstrained rows, (n, dim) -> (n,)."""

    def __init__(self, post):
        super().__init__()
        self.kind = post.name
        d = post.data
        t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
        if self.kind == "arma-arma11":
            y = t(d["y"])
            T = y.shape[0]
            self.register_buffer("y", y)
            k = torch.arange(T)
            # err_t = sum_{s <= t} (-theta)^(t - s) r_s: the recursion as one
            # lower-triangular (Toeplitz) product, so a batch needs no loop over t
            self.register_buffer("lag", (k[:, None] - k[None, :]).clamp(min=0))
            self.register_buffer("lower", (k[:, None] >= k[None, :]).to(torch.float64))
        elif self.kind == "gp_pois_regr-gp_regr":
            x = t(d["x"])
            self.register_buffer("y", t(d["y"]))
            self.register_buffer("sq", (x[:, None] - x[None, :]) ** 2)
        elif self.kind == "kidiq-kidscore_momhsiq":
            self.register_buffer("y", t(d["kid_score"]))
            self.register_buffer("X", torch.stack([torch.ones(len(d["mom_hs"]), dtype=torch.float64), t(d["mom_hs"]), t(d["mom_iq"])], 1))
        elif self.kind == "kilpisjarvi_mod-kilpisjarvi":
            self.register_buffer("x", t(d["x"]))
            self.register_buffer("y", t(d["y"]))
            self.prior = tuple(float(d[k]) for k in ("pmualpha", "psalpha", "pmubeta", "psbeta"))
        elif self.kind == "nes2000-nes":
            age = d["age_discrete"]
            cols = [
                d["real_ideo"] * 0.0 + 1.0,
                d["real_ideo"],
                d["race_adj"],
                (age == 2) * 1.0,
                (age == 3) * 1.0,
                (age == 4) * 1.0,
                d["educ1"],
                d["gender"],
                d["income"],
            ]
            self.register_buffer("X", t(np.array(cols)).T.contiguous())
            self.register_buffer("y", t(d["partyid7"]))
        elif self.kind == "sblri-blr":
            self.register_buffer("X", t(d["X"]))
            self.register_buffer("y", t(d["y"]))
        else:
            raise ValueError(f"no torch density for {self.kind}")

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return getattr(self, "_" + self.kind.split("-")[1])(u)

    def _arma11(self, u):
        mu, phi, theta, ls = u[:, 0:1], u[:, 1:2], u[:, 2:3], u[:, 3]
        sigma = torch.exp(ls)
        y = self.y
        r = torch.cat([y[:1] - (mu + phi * mu), y[1:] - mu - phi * y[:-1]], dim=1)  # (n, T)
        ones = torch.ones_like(theta)
        powers = torch.cumprod(torch.cat([ones, (-theta).expand(-1, y.shape[0] - 1)], dim=1), dim=1)
        err = torch.einsum("nts,ns->nt", powers[:, self.lag] * self.lower, r)
        lik = residual_lpdf(err, ls)
        return (
            _n(mu[:, 0], 0.0, 10.0)
            + _n(phi[:, 0], 0.0, 2.0)
            + _n(theta[:, 0], 0.0, 2.0)
            + half_cauchy_lpdf(sigma, 2.5)
            + lik
            + ls
        )

    def _gp_regr(self, u):
        rho, alpha, sigma = torch.exp(u[:, 0]), torch.exp(u[:, 1]), torch.exp(u[:, 2])
        n = self.y.shape[0]
        eye = torch.eye(n, dtype=u.dtype, device=u.device)
        cov = alpha[:, None, None] ** 2 * torch.exp(-self.sq / (2.0 * rho[:, None, None] ** 2)) + sigma[:, None, None] * eye
        # A covariance whose float64 factorisation fails (far out, where JAX's
        # Cholesky gives NaN) has log density -inf there, a divergence, not
        # torch's exception.
        chol, info = torch.linalg.cholesky_ex(cov)
        w = torch.linalg.solve_triangular(chol, self.y.expand(u.shape[0], n)[:, :, None], upper=False)[:, :, 0]
        mvn = -n * _LOG_SQRT_2PI - torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1) - 0.5 * (w * w).sum(1)
        lp = (
            gamma_lpdf(rho, 25.0, 4.0)
            + math.log(2.0) + _n(alpha, 0.0, 2.0)
            + math.log(2.0) + _n(sigma, 0.0, 1.0)
            + mvn
            + u[:, 0] + u[:, 1] + u[:, 2]
        )
        return torch.where(info == 0, lp, torch.full_like(lp, -math.inf))

    def _linear(self, u, beta, ls):
        return residual_lpdf(self.y - beta @ self.X.T, ls)

    def _kidscore_momhsiq(self, u):
        ls = u[:, 3]
        return half_cauchy_lpdf(torch.exp(ls), 2.5) + self._linear(u, u[:, :3], ls) + ls

    def _kilpisjarvi(self, u):
        pma, psa, pmb, psb = self.prior
        alpha, beta, ls = u[:, 0], u[:, 1], u[:, 2]
        lik = residual_lpdf(self.y - alpha[:, None] - beta[:, None] * self.x, ls)
        return _n(alpha, pma, psa) + _n(beta, pmb, psb) + lik + ls

    def _nes(self, u):
        ls = u[:, 9]
        return self._linear(u, u[:, :9], ls) + ls

    def _blr(self, u):
        D = self.X.shape[1]
        ls = u[:, D]
        return _n(u[:, :D], 0.0, 10.0).sum(1) + _n(torch.exp(ls), 0.0, 10.0) + self._linear(u, u[:, :D], ls) + ls


class Energy(torch.nn.Module):
    """F(u) = -log p(u), (n, dim) -> (n,): what ``boltz.torch_energy`` takes."""

    def __init__(self, post):
        super().__init__()
        self.log_density = LogDensity(post)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return -self.log_density(u)
