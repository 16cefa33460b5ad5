"""JAX energies: a per-row function compiled once (``jit`` of ``vmap`` of
``value_and_grad``), called once per batched evaluation."""

from typing import Any, Callable, Optional

import numpy as np

from ._native import BoltzError, CallbackEnergy


def jax_energy(
    fn: Callable[..., Any],
    dim: int,
    x_dim: int = 0,
    *,
    name: Optional[str] = None,
    leapfrog: bool = True,
) -> CallbackEnergy:
    """A JAX function of one row, ``fn(y) -> F`` (or ``fn(y, x) -> F`` with
    ``x_dim > 0``, as :class:`CallbackEnergy` takes its arguments), as an
    energy.

    ``fn`` takes ``y`` of shape (dim,) (and ``x`` of shape (x_dim,)) and
    returns a scalar. boltz compiles ``jax.jit(jax.vmap(jax.value_and_grad(
    fn)))`` once per batch shape (a run's batches keep one shape: one
    compilation) and calls it once per evaluation with all chains' rows:
    one Python call per batch, never per row. The arithmetic is JAX's
    default precision (float32 unless ``jax_enable_x64`` is set);
    energies and gradients are handed back as float64. Inputs cross as
    NumPy arrays (on the CPU, JAX reads and returns host buffers without
    a copy where their layout allows).

    Checked here: ``fn`` is traced once at a zero row, and must give a
    scalar (a shape error names ``dim``).

    ``leapfrog=True`` (an unconditional energy with ``jax_enable_x64``
    set): the energy also carries its own leapfrog integrator, a
    ``lax.fori_loop`` of leapfrog steps compiled with the function
    (``CallbackEnergy``'s ``leapfrog``; about 0.4 s of compilation for
    each power of 8 of steps a run needs: three for NUTS to depth 10),
    so NUTS makes one Python call per doubling of its trajectory and HMC
    one per transition instead of one per leapfrog step: on small
    posteriors, where the call costs more than the arithmetic, that is
    the difference (W7: kilpisjarvi's NUTS run took 11.9 s against
    98.7 s with one call per step, 1.8 M calls). The steps are the kernels' own
    arithmetic; XLA may contract ``a + b c`` into one rounding, so draws
    can differ from the per-step path's in the last bits. Other kernels,
    and float32 JAX, evaluate ``fn`` per step.
    """
    import jax
    import jax.numpy as jnp

    if dim < 1 or x_dim < 0:
        raise BoltzError(f"invalid value for `dim`: need dim >= 1 and x_dim >= 0, got {dim}, {x_dim}")
    if x_dim > 0:
        row = jax.value_and_grad(fn)  # the gradient in y, the first argument
        batched = jax.jit(jax.vmap(row, in_axes=(0, 0)))
        probe = (jnp.zeros((1, dim)), jnp.zeros((1, x_dim)))
    else:
        batched = jax.jit(jax.vmap(jax.value_and_grad(fn)))
        probe = (jnp.zeros((1, dim)),)
    try:
        e, g = jax.eval_shape(batched, *probe)
    except Exception as err:  # noqa: BLE001 (JAX raises many kinds at tracing)
        raise BoltzError(
            f"jax_energy: fn could not be traced at one row of dim {dim}"
            + (f" and x_dim {x_dim}" if x_dim else "")
            + f": {type(err).__name__}: {err}"
        ) from err
    if e.shape != (1,) or g.shape != (1, dim):
        raise BoltzError(
            f"invalid value for `dim`: fn must return a scalar for a row of {dim} values, "
            f"got shape {e.shape[1:]}"
        )

    def out(e: Any, g: Any):
        return (
            np.ascontiguousarray(np.asarray(e), dtype=np.float64),
            np.ascontiguousarray(np.asarray(g), dtype=np.float64),
        )

    if x_dim > 0:

        def call(y: np.ndarray, x: np.ndarray):
            return out(*batched(y, x))

    else:

        def call(y: np.ndarray):
            return out(*batched(y))

    own = None
    if leapfrog and x_dim == 0 and jax.config.read("jax_enable_x64"):
        own = _leapfrog(jax.vmap(jax.value_and_grad(fn)))
    return CallbackEnergy(
        call, dim, x_dim=x_dim, name=name or getattr(fn, "__name__", "jax"), leapfrog=own
    )


def _leapfrog(value_and_grad: Callable[..., Any]) -> Callable[..., Any]:
    """CallbackEnergy's ``leapfrog(y, p, g, eps, inv_mass, h_max, steps)``
    for a batched JAX ``value_and_grad``: ``steps`` leapfrog steps in one
    compiled loop (output buffers sized to the next power of 8, one
    compilation each: NUTS to depth 10 needs three), every step's state
    returned, a row stopping once its Hamiltonian reaches ``h_max``. The
    four outputs leave XLA as one array (one host transfer a call, where
    four cost about 25 us more on a 2-core CPU); even a single step goes
    through the loop, whose fixed cost (~50-70 us on a 2-core CPU, W7's
    kidiq) is below one step's NumPy arithmetic around the plain function
    (~150 us)."""
    from functools import partial

    import jax
    import jax.numpy as jnp
    from jax import lax

    @partial(jax.jit, static_argnums=(6,))
    def run(y, p, g, eps, inv_mass, h_max, bucket, steps):
        n, d = y.shape
        half = (0.5 * eps)[:, None]  # the kernels' arithmetic: (0.5 e) g, (e W) p
        ew = eps[:, None] * inv_mass

        def body(k, c):
            y, p, g, live, out = c
            m = live[:, None]
            p1 = p - half * g
            y1 = jnp.where(m, y + ew * p1, y)  # a stopped row is evaluated where it was
            e, g1 = value_and_grad(y1)
            p1 = p1 - half * g1
            h = e + 0.5 * jnp.sum(p1 * p1 * inv_mass, axis=1)
            state = jnp.concatenate([y1, p1, g1, e[:, None]], axis=1)
            out = out.at[k].set(jnp.where(m, state, jnp.nan))
            y, p, g = jnp.where(m, y1, y), jnp.where(m, p1, p), jnp.where(m, g1, g)
            return y, p, g, live & (h < h_max), out

        out = jnp.zeros((bucket, n, 3 * d + 1), y.dtype)
        live = jnp.ones(n, dtype=bool)
        return lax.fori_loop(0, steps, body, (y, p, g, live, out))[4]

    def segment(y, p, g, eps, inv_mass, h_max, steps):
        steps = int(steps)
        bucket = 8
        while bucket < steps:
            bucket *= 8
        out = np.asarray(run(y, p, g, eps, inv_mass, h_max, bucket, steps), dtype=np.float64)[:steps]
        d = y.shape[1]
        return out[..., :d], out[..., d : 2 * d], out[..., 2 * d : 3 * d], out[..., 3 * d]

    return segment
