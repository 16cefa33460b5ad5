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

    return CallbackEnergy(call, dim, x_dim=x_dim, name=name or getattr(fn, "__name__", "jax"))
