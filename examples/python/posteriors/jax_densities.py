"""The posteriors' unconstrained log densities in JAX, one row at a time
(``boltz.jax_energy`` vmaps them). Each follows its Stan model in
``data/posteriordb/MODEL.stan`` line by line; a positive parameter is
``exp(u)`` with log-Jacobian ``u``."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def normal_lpdf(x, mu, sigma):
    """Sum of log N(x | mu, sigma) over all entries."""
    z = (x - mu) / sigma
    return jnp.sum(-_LOG_SQRT_2PI - jnp.log(sigma) - 0.5 * z * z)


def half_cauchy_lpdf(x, scale):
    """log of Cauchy(0, scale) truncated to x > 0."""
    return math.log(2.0 / math.pi) - jnp.log(scale) - jnp.log1p((x / scale) ** 2)


def half_normal_lpdf(x, scale):
    """log of N(0, scale) truncated to x > 0."""
    return math.log(2.0) + normal_lpdf(x, 0.0, scale)


def gamma_lpdf(x, shape, rate):
    """log Gamma(x | shape, rate)."""
    return shape * math.log(rate) - math.lgamma(shape) + (shape - 1.0) * jnp.log(x) - rate * x


def arma11(d) -> Callable:
    y = jnp.asarray(d["y"])

    def lp(u):
        mu, phi, theta, sigma = u[0], u[1], u[2], jnp.exp(u[3])
        # err[1] = y[1] - (mu + phi mu); err[t] = y[t] - mu - phi y[t-1] - theta err[t-1]
        err1 = y[0] - (mu + phi * mu)

        def step(err_prev, yt):
            y_prev, y_now = yt
            e = y_now - mu - phi * y_prev - theta * err_prev
            return e, e

        _, rest = jax.lax.scan(step, err1, (y[:-1], y[1:]))
        err = jnp.concatenate([err1[None], rest])
        return (
            normal_lpdf(mu, 0.0, 10.0)
            + normal_lpdf(phi, 0.0, 2.0)
            + normal_lpdf(theta, 0.0, 2.0)
            + half_cauchy_lpdf(sigma, 2.5)
            + normal_lpdf(err, 0.0, sigma)
            + u[3]
        )

    return lp


def gp_regr(d) -> Callable:
    x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
    sq = (x[:, None] - x[None, :]) ** 2
    n = x.shape[0]

    def lp(u):
        rho, alpha, sigma = jnp.exp(u[0]), jnp.exp(u[1]), jnp.exp(u[2])
        # gp_exp_quad_cov(x, alpha, rho) + diag_matrix(rep_vector(sigma, N)): sigma, not sigma^2
        cov = alpha**2 * jnp.exp(-sq / (2.0 * rho**2)) + sigma * jnp.eye(n)
        chol = jnp.linalg.cholesky(cov)
        w = solve_triangular(chol, y, lower=True)
        mvn = -n * _LOG_SQRT_2PI - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * jnp.dot(w, w)
        return (
            gamma_lpdf(rho, 25.0, 4.0)
            + half_normal_lpdf(alpha, 2.0)
            + half_normal_lpdf(sigma, 1.0)
            + mvn
            + u[0]
            + u[1]
            + u[2]
        )

    return lp


def kidscore_momhsiq(d) -> Callable:
    score, hs, iq = jnp.asarray(d["kid_score"]), jnp.asarray(d["mom_hs"]), jnp.asarray(d["mom_iq"])

    def lp(u):
        sigma = jnp.exp(u[3])
        mu = u[0] + u[1] * hs + u[2] * iq
        return half_cauchy_lpdf(sigma, 2.5) + normal_lpdf(score, mu, sigma) + u[3]

    return lp


def kilpisjarvi(d) -> Callable:
    x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
    pmualpha, psalpha = float(d["pmualpha"]), float(d["psalpha"])
    pmubeta, psbeta = float(d["pmubeta"]), float(d["psbeta"])

    def lp(u):
        alpha, beta, sigma = u[0], u[1], jnp.exp(u[2])
        # sigma has no prior statement: flat on (0, inf)
        return (
            normal_lpdf(alpha, pmualpha, psalpha)
            + normal_lpdf(beta, pmubeta, psbeta)
            + normal_lpdf(y, alpha + beta * x, sigma)
            + u[2]
        )

    return lp


def nes(d) -> Callable:
    age = d["age_discrete"]
    cols = [
        d["real_ideo"],
        d["race_adj"],
        (age == 2).astype(float),
        (age == 3).astype(float),
        (age == 4).astype(float),
        d["educ1"],
        d["gender"],
        d["income"],
    ]
    X = jnp.asarray(cols).T  # (N, 8); beta[1] is the intercept
    y = jnp.asarray(d["partyid7"])

    def lp(u):
        sigma = jnp.exp(u[9])
        # no priors: beta and sigma flat
        return normal_lpdf(y, u[0] + X @ u[1:9], sigma) + u[9]

    return lp


def blr(d) -> Callable:
    X, y = jnp.asarray(d["X"]), jnp.asarray(d["y"])
    D = X.shape[1]

    def lp(u):
        beta, sigma = u[:D], jnp.exp(u[D])
        return (
            normal_lpdf(beta, 0.0, 10.0)
            + normal_lpdf(sigma, 0.0, 10.0)  # truncation to sigma > 0 is a constant
            + normal_lpdf(y, X @ beta, sigma)
            + u[D]
        )

    return lp


_BY_NAME = {
    "arma-arma11": arma11,
    "gp_pois_regr-gp_regr": gp_regr,
    "kidiq-kidscore_momhsiq": kidscore_momhsiq,
    "kilpisjarvi_mod-kilpisjarvi": kilpisjarvi,
    "nes2000-nes": nes,
    "sblri-blr": blr,
}


def log_density(post) -> Callable:
    """The unconstrained log density of ``post`` as a function of one row."""
    return _BY_NAME[post.name](post.data)
