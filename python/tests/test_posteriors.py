"""W7's posteriors (examples/python/posteriors): the JAX and torch log
densities agree, and boltz's NUTS on one of them matches posteriordb's
reference draws. Skipped without jax (and, for the torch parts, torch)."""

import os
import sys

import numpy as np
import pytest

import boltz

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))
from posteriors import NAMES, load  # noqa: E402


def _rows(post):
    """Reference draws (unconstrained) and points around them."""
    u = post.unconstrain(post.reference()[:, ::200].reshape(-1, post.dim))
    return np.concatenate([u, u + 0.1 * np.random.default_rng(3).standard_normal(u.shape)])


@pytest.mark.parametrize("name", NAMES)
def test_jax_and_torch_densities_agree(name):
    torch = pytest.importorskip("torch")
    post = load(name)
    u = _rows(post)
    e_jax = post.jax_energy()
    e_torch = post.torch_energy()
    ej, gj = e_jax.energy_and_grad(u)
    et, gt = e_torch.energy_and_grad(u)
    assert np.all(np.isfinite(ej)) and np.all(np.isfinite(gj))
    # float64 on both sides: equal to rounding of sums over up to 476 rows
    scale = np.maximum(1.0, np.abs(ej))
    assert np.max(np.abs(ej - et) / scale) < 1e-10
    gscale = np.maximum(1.0, np.abs(gj))
    assert np.max(np.abs(gj - gt) / gscale) < 1e-8
    # the gradient is the energy's: a central difference along a random direction
    d = np.random.default_rng(5).standard_normal(u.shape)
    h = 1e-6
    fd = (e_jax.energy_and_grad(u + h * d)[0] - e_jax.energy_and_grad(u - h * d)[0]) / (2 * h)
    assert np.allclose(fd, np.sum(gj * d, axis=1), rtol=1e-5, atol=1e-4 * np.max(np.abs(gj)))
    del torch


def test_blr_density_is_the_stan_model():
    # sblri-blr written out in NumPy from blr.stan: the JAX energy equals it
    post = load("sblri-blr")
    X, y = post.data["X"], post.data["y"]
    u = _rows(post)
    beta, sigma = u[:, :5], np.exp(u[:, 5])

    def lnorm(x, m, s):
        return -0.5 * np.log(2 * np.pi) - np.log(s) - 0.5 * ((x - m) / s) ** 2

    lp = (
        lnorm(beta, 0, 10).sum(1)
        + lnorm(sigma, 0, 10)
        + lnorm(y[None, :], beta @ X.T, sigma[:, None]).sum(1)
        + u[:, 5]  # log-Jacobian of sigma = exp(u)
    )
    assert np.allclose(post.jax_energy().energy_and_grad(u)[0], -lp, rtol=1e-12, atol=1e-9)


def test_nuts_on_blr_matches_the_reference_draws():
    # every parameter's mean within 4 combined MCSE of the reference's, sd within 10%
    post = load("sblri-blr")
    init = np.random.default_rng(1).uniform(-2, 2, (4, post.dim))
    draws, report = boltz.sample(post.jax_energy(), sampler="nuts", chains=4, warmup=1000, draws=1000, seed=1, init=init)
    assert report["warnings"] == []
    rows = post.check(post.constrain(draws))
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]


def test_constrain_round_trips_and_names_match_the_reference():
    for name in NAMES:
        post = load(name)
        ref = post.reference()
        assert ref.shape == (10, 1000, post.dim)
        assert np.allclose(post.constrain(post.unconstrain(ref)), ref)
