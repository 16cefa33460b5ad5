"""boltz.jax_energy: energies and gradients of a JAX row function, and
sampling through it (skipped without jax)."""

import numpy as np
import pytest

import boltz


def test_jax_energy_matches_the_function_and_samples_its_law():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    scale = np.array([1.0, 2.0, 0.5])

    def gauss(y):
        return 0.5 * jnp.sum((y / scale) ** 2)

    e = boltz.jax_energy(gauss, dim=3)
    y = np.random.default_rng(0).normal(size=(5, 3))
    en, g = e.energy_and_grad(y)
    np.testing.assert_allclose(en, 0.5 * ((y / scale) ** 2).sum(1), rtol=1e-5)
    np.testing.assert_allclose(g, y / scale**2, rtol=1e-5)
    draws, report = boltz.sample(e, "mala", chains=4, warmup=500, draws=2000, seed=3)
    assert report["warnings"] == [], report["warnings"]
    # Each coordinate's sd within 4 Monte Carlo standard errors of the law's
    # (the sd's standard error about sd / sqrt(2 ESS), ESS from the report's
    # smallest bulk ESS: a lower bound for each coordinate).
    sd = draws.reshape(-1, 3).std(0)
    se = scale / np.sqrt(2 * report["ess_bulk_min"])
    assert np.all(np.abs(sd - scale) < 4 * se), (sd, se)


def test_jax_energy_conditional_and_shape_checks():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def ring(y, x):
        return (jnp.sum(y**2) - x[0] ** 2) ** 2

    e = boltz.jax_energy(ring, dim=2, x_dim=1)
    y = np.array([[1.0, 0.0], [0.0, 2.0]])
    x = np.array([[0.5], [1.0]])
    en, g = e.energy_and_grad(y, x)
    r2 = (y**2).sum(1)
    np.testing.assert_allclose(en, (r2 - x[:, 0] ** 2) ** 2, rtol=1e-5)
    np.testing.assert_allclose(g, 4 * (r2 - x[:, 0] ** 2)[:, None] * y, rtol=1e-5)
    with pytest.raises(boltz.BoltzError, match="scalar"):
        boltz.jax_energy(lambda y: y * 2.0, dim=3)
    # A function written for 4 values, given dim 3: refused at construction.
    with pytest.raises(boltz.BoltzError, match="one row of dim 3"):
        boltz.jax_energy(lambda y: jnp.dot(y, jnp.ones(4)), dim=3)
