"""An energy's own leapfrog integrator (CallbackEnergy's ``leapfrog``,
built by jax_energy): NUTS and HMC call it once per trajectory segment,
with the same draws as one call of ``fn`` per step."""

import numpy as np
import pytest

import boltz

SCALE = np.array([1.0, 2.0, 0.5])


def gauss(y):
    return 0.5 * ((y / SCALE) ** 2).sum(1), y / SCALE**2


def numpy_leapfrog(fn):
    """The protocol in NumPy, the kernels' arithmetic step by step (no
    contraction): a row stops once its Hamiltonian reaches h_max, its later
    states NaN."""
    segments = []

    def leapfrog(y, p, g, eps, inv_mass, h_max, steps):
        segments.append(steps)
        half = (0.5 * eps)[:, None]
        ew = eps[:, None] * inv_mass
        out = [np.full((steps,) + y.shape, np.nan) for _ in range(3)] + [np.full((steps, len(y)), np.nan)]
        live = np.ones(len(y), dtype=bool)
        with np.errstate(all="ignore"):
            for k in range(steps):
                p1 = p - half * g
                y1 = np.where(live[:, None], y + ew * p1, y)
                e, g1 = fn(y1)
                p1 = p1 - half * g1
                for a, v in zip(out, (y1, p1, g1, e)):
                    a[k][live] = v[live]
                y, p, g = (np.where(live[:, None], new, old) for new, old in ((y1, y), (p1, p), (g1, g)))
                live &= e + 0.5 * (p1 * p1 * inv_mass).sum(1) < h_max
        return tuple(out)

    return leapfrog, segments


@pytest.mark.parametrize("sampler,settings", [("nuts", {}), ("hmc", {"leapfrog": 7})])
def test_an_exact_integrator_gives_the_same_draws_as_fn_alone(sampler, settings):
    plain = boltz.CallbackEnergy(gauss, 3)
    lf, segments = numpy_leapfrog(gauss)
    own = boltz.CallbackEnergy(gauss, 3, leapfrog=lf)
    kw = dict(chains=4, warmup=200, draws=200, seed=5, **settings)
    a, ra = boltz.sample(plain, sampler, **kw)
    b, rb = boltz.sample(own, sampler, **kw)
    np.testing.assert_array_equal(a, b)
    assert ra["divergences"] == rb["divergences"]
    # One call per segment: HMC's whole trajectory, NUTS's subtrees (the
    # first few steps of warm-up's first transitions aside).
    calls_plain, calls_own = plain.callback_stats()[0], own.callback_stats()[0]
    if sampler == "hmc":
        # every transition (warm-up's step search too) is one call
        assert set(segments) == {7} and len(segments) >= 400
    assert calls_own < calls_plain / 2, (calls_own, calls_plain)


def test_a_bad_integrator_is_refused_or_named():
    lf, _ = numpy_leapfrog(gauss)
    with pytest.raises(boltz.BoltzError, match="`leapfrog`: must be callable"):
        boltz.CallbackEnergy(gauss, 3, leapfrog=3)
    with pytest.raises(boltz.BoltzError, match="`leapfrog`: it must take 7 arguments"):
        boltz.CallbackEnergy(gauss, 3, leapfrog=lambda y, p: None)
    with pytest.raises(boltz.BoltzError, match="only an unconditional"):
        boltz.CallbackEnergy(lambda y, x: gauss(y), 3, x_dim=1, leapfrog=lf)

    def short(y, p, g, eps, inv_mass, h_max, steps):
        ys, ps, gs, es = lf(y, p, g, eps, inv_mass, h_max, steps)
        return ys[:-1], ps, gs, es

    with pytest.raises(boltz.BoltzError, match="leapfrog positions have shape"):
        boltz.sample(boltz.CallbackEnergy(gauss, 3, leapfrog=short), "hmc", chains=2, warmup=0, draws=5)
    with pytest.raises(boltz.BoltzError, match="leapfrog must return four arrays"):
        boltz.sample(
            boltz.CallbackEnergy(gauss, 3, leapfrog=lambda y, p, g, e, w, h, s: y),
            "nuts",
            chains=2,
            warmup=0,
            draws=5,
        )


def compare_segments(seg, batch, exact):
    """An integrator ``seg`` against the NumPy protocol on ``batch``'s
    energy, for the segment lengths NUTS asks (1, 2, 4, ...) and one past a
    bucket: bit for bit when ``exact``, else up to XLA's rounding
    (contracted multiply-adds). Five rows; row 2 stands (eps 0), row 4's big
    steps miss its energy by more than its bound of 1e-3 within a few
    steps: it stops there, NaN after; the others never stop. Returns the
    start (y, p, g, w, h0)."""
    ref, _ = numpy_leapfrog(batch)
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    g = batch(y)[1]
    eps = np.array([0.1, -0.1, 0.0, 0.05, -0.8])
    w = rng.uniform(0.5, 2.0, (5, 3))
    h0 = batch(y)[0] + 0.5 * (p * p * w).sum(1)
    h_max = np.where(np.arange(5) == 4, h0[4] + 1e-3, np.inf)
    for steps in (1, 2, 4, 9, 64):
        got, want = seg(y, p, g, eps, w, h_max, steps), ref(y, p, g, eps, w, h_max, steps)
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.dtype == np.float64
            if exact:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
        np.testing.assert_array_equal(got[0][:, 2], np.broadcast_to(y[2], (steps, 3)))
    stopped = np.isnan(got[3][:, 4])
    assert 0 < stopped.sum() < 64 and not np.isnan(got[3][:, :4]).any()
    return y, p, g, w, h0


@pytest.fixture
def x64():
    jax = pytest.importorskip("jax")
    before = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", before)


def test_jax_integrator_follows_the_kernels_arithmetic(x64):
    # The compiled loop against the NumPy steps, up to XLA's rounding.
    from boltz._jax import _leapfrog

    jnp = x64.numpy

    def row(y):
        return 0.5 * jnp.sum((y / SCALE) ** 2) + 0.1 * jnp.sum(y**4)

    def batch(y):
        return 0.5 * ((y / SCALE) ** 2).sum(1) + 0.1 * (y**4).sum(1), y / SCALE**2 + 0.4 * y**3

    compare_segments(_leapfrog(x64.vmap(x64.value_and_grad(row))), batch, exact=False)


def test_jax_energy_nuts_with_its_integrator_samples_the_law(x64):
    jnp = x64.numpy

    def row(y):
        return 0.5 * jnp.sum((y / SCALE) ** 2)

    e = boltz.jax_energy(row, 3)
    draws, report = boltz.sample(e, "nuts", chains=4, warmup=300, draws=1000, seed=2)
    assert report["warnings"] == [], report["warnings"]
    calls = e.callback_stats()[0]
    # trees of depth 2-3 here: 1 + 1 + 2 (+ 4) steps in 3 (4) calls
    assert calls < report["grad_evals"] / 4 / 2, (calls, report["grad_evals"])
    sd = draws.reshape(-1, 3).std(0)
    se = SCALE / np.sqrt(2 * report["ess_bulk_min"])
    assert np.all(np.abs(sd - SCALE) < 4 * se), (sd, se)
    mean = draws.reshape(-1, 3).mean(0)
    assert np.all(np.abs(mean) < 4 * SCALE / np.sqrt(report["ess_bulk_min"])), mean
    # leapfrog=False: one call per step.
    plain = boltz.jax_energy(row, 3, leapfrog=False)
    _, r2 = boltz.sample(plain, "nuts", chains=4, warmup=300, draws=1000, seed=2)
    assert plain.callback_stats()[0] >= r2["grad_evals"] / 4


def test_torch_integrator_follows_the_kernels_arithmetic():
    # torch's loop against the NumPy steps, bit for bit; and a segment
    # that every row leaves before its end (NaN after).
    torch = pytest.importorskip("torch")
    from boltz._torch import _leapfrog

    class Quartic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("s", torch.tensor(SCALE))  # float64

        def forward(self, y):
            return 0.5 * ((y / self.s) ** 2).sum(1) + 0.1 * (y**4).sum(1)

    # the reference steps take the same module's energies and gradients
    # (autograd's rounding), through the per-step path
    batch = boltz.torch_energy(Quartic(), 3, leapfrog=False).energy_and_grad
    seg = _leapfrog(Quartic(), "cpu", torch.float64, lambda: None)
    y, p, g, w, h0 = compare_segments(seg, batch, exact=True)
    ref, _ = numpy_leapfrog(batch)
    # every row stops within a few steps of a 9-step segment
    tight, big = h0 + 1e-9, np.array([0.8, -0.8, 0.8, 0.4, -0.8])
    got, want = seg(y, p, g, big, w, tight, 9), ref(y, p, g, big, w, tight, 9)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(got[3][-1]).all()


@pytest.mark.parametrize("sampler", ["nuts", "hmc"])
def test_torch_energy_integrator_gives_the_same_draws(sampler):
    # torch's loop does the kernels' arithmetic op by op: the draws equal
    # the per-step path's bit for bit, in far fewer crossings.
    torch = pytest.importorskip("torch")

    class Quartic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("s", torch.tensor(SCALE))

        def forward(self, y):
            return 0.5 * ((y / self.s) ** 2).sum(1) + 0.1 * (y**4).sum(1)

    m = Quartic()
    own, plain = boltz.torch_energy(m, 3), boltz.torch_energy(m, 3, leapfrog=False)
    kw = dict(chains=4, warmup=100, draws=100, seed=9)
    a, ra = boltz.sample(own, sampler, **kw)
    b, rb = boltz.sample(plain, sampler, **kw)
    np.testing.assert_array_equal(a, b)
    assert own.callback_stats()[0] < plain.callback_stats()[0] / 2


def test_jax_integrator_divergences_are_quiet(x64):
    # A trajectory that overflows is a divergence the kernel counts, not a
    # NumPy RuntimeWarning from the short path's arithmetic.
    import warnings

    jnp = x64.numpy
    e = boltz.jax_energy(lambda y: jnp.exp(20.0 * jnp.sum(y**2)), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, r = boltz.sample(e, "nuts", chains=2, warmup=0, draws=5, step_size=3.0, seed=1, init=np.full((2, 2), 0.3))
    assert r["divergences"] > 0
