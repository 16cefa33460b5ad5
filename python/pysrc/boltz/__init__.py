"""boltz: sampling from energy-based models, from Python.

An energy ``F(x, y)`` scores a state ``y`` (and a context ``x``); at inverse
temperature ``beta`` the target is ``exp(-beta F(x, y)) / Z(x)``. boltz runs
Langevin, MALA, HMC, random-walk Metropolis and Gibbs chains, annealed
importance sampling of ``log Z``, negatives for contrastive training and
diagnostics in Rust, on all cores, with the interpreter lock released.

Energies:

- :func:`load_model`: a suite target (``"gauss-ill"``, ``"gmm-ring"``,
  ``"funnel"``, ``"mlp"``, ``"rbm20"``, ...) or a JSON model file;
- :class:`CallbackEnergy`: your own function ``fn(y) -> (energies, gradients)``
  evaluated for all chains at once;
- :func:`torch_energy`: a torch module, gradients by autograd;
- :func:`jax_energy`: a JAX function of one row, compiled once (``jit`` of
  ``vmap`` of ``value_and_grad``) and called once per batch;
- :func:`mlp_from_torch`: an ``nn.Sequential`` MLP as boltz's native MLP.

Jobs: :func:`sample`, :func:`logz`, :func:`log_prob`, :class:`Negatives`,
:func:`diagnose`, :func:`compare`. Errors are :class:`BoltzError` (a
``ValueError``); Ctrl-C stops any job with ``KeyboardInterrupt`` (a
Python energy's call in progress is not cut short: no further call starts,
and the job raises at most 2 s later while that call finishes in the
background).

Example::

    import numpy as np, boltz

    def quartic(y):                      # F(y) = |y|^2 / 2 + y_0^4 / 4
        e = 0.5 * (y ** 2).sum(1) + 0.25 * y[:, 0] ** 4
        g = y.copy(); g[:, 0] += y[:, 0] ** 3
        return e, g

    energy = boltz.CallbackEnergy(quartic, dim=3)
    draws, report = boltz.sample(energy, "mala", chains=4, warmup=500, draws=500)
    z = boltz.logz(energy, particles=256, temps=200)
    print(draws.shape, report["rhat_max"], z["log_z"], z["stderr"])
"""

from __future__ import annotations

import json as _json
import os as _os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as _np

from . import _native
from ._args import (  # noqa: F401 (distributed imports some from here)
    _Array,
    _context,
    _count,
    _dumps,
    _energy,
    _f64_2d,
    _f64_array,
    _like,
    _logz_arrays,
    _logz_job,
    _report,
    _sample_job,
    _sample_stats,
    _with_kernel_names,
)
from ._native import BoltzError, CallbackEnergy, Energy
from ._negatives import Negatives

__version__ = _native.__version__

__all__ = [
    "BoltzError",
    "CallbackEnergy",
    "Energy",
    "Negatives",
    "compare",
    "diagnose",
    "jax_energy",
    "kernels",
    "load_model",
    "log_prob",
    "logz",
    "mlp_from_torch",
    "sample",
    "threads",
    "to_inference_data",
    "torch_energy",
]

_native_energy_and_grad = Energy.energy_and_grad


def _energy_and_grad(self: Energy, y: _Array, x: Optional[_Array] = None) -> Tuple[Any, Any]:
    """``(energies (n,), gradients (n, dim))`` of the rows of ``y`` (n, dim).

    ``y`` may be a numpy array of any real dtype, nested lists or a torch
    tensor (any dtype and strides, with or without grad: read, never
    modified; the result then comes back as tensors of ``y``'s dtype and
    device) on the CPU or the energy's :attr:`device` (a tensor on another
    device is refused); one point may be 1-D. A
    conditional energy takes contexts ``x`` (n or 1 rows, ``x_dim``
    columns). Non-finite points are refused (``BoltzError``).
    """
    yy = _f64_2d(y, "y", self.dim, finite=True, device=self.device)
    xx = None if x is None else _f64_2d(x, "x", None, finite=True, device=self.device)
    e, g = _native_energy_and_grad(self, yy, xx)
    return _like(e, y), _like(g, y)


Energy.energy_and_grad = _energy_and_grad  # type: ignore[method-assign]


def load_model(
    name_or_path: Union[str, "_os.PathLike[str]"], precision: Optional[str] = None
) -> Energy:
    """Load a suite target or a JSON model file, as the CLI's ``--model`` does.

    Suite targets: ``gauss-ill``, ``gmm-ring``, ``gmm-far``, ``funnel``,
    ``ring``, ``ring:N:M``, ``mlp``, ``rbm20``, ``rbm500``. A model file is
    JSON (see the README's model-file table); arrays are inline, ``.npy``
    paths, or tensors of a ``.safetensors`` file named by the model's
    ``safetensors`` key.

    ``precision``: ``"f32"`` computes an ``mlp`` or ``rbm`` energy in single
    precision (as the CLI's ``--precision``; sampler state and estimates
    stay float64); default the model file's ``dtype``, else ``"f64"``.
    """
    if not isinstance(name_or_path, (str, _os.PathLike)):
        raise BoltzError(
            "invalid value for `name_or_path`: expected a suite target name or a model "
            f"file path, got {type(name_or_path).__name__}"
        )
    e = _native.load_model(_os.fspath(name_or_path))
    return e if precision is None else e.with_precision(str(precision))


def kernels() -> List[Dict[str, Any]]:
    """Every kernel boltz offers, from its registry (as ``boltz kernels``):
    for each a dict with ``name``, ``about``, ``space`` (``continuous`` or
    ``binary``), ``invariance`` (the invariance test it is held to) and
    ``settings``: the keyword arguments it reads (``step_size``,
    ``leapfrog``, ``max_depth``, ...), each with ``about`` and ``default``.
    """
    return _json.loads(_native.kernels_json())


def threads() -> int:
    """Worker threads boltz computes on (``RAYON_NUM_THREADS`` sets it).
    Jobs on a Python callback energy (``CallbackEnergy``, ``jax_energy``,
    ``torch_energy``) run on one: their time is the callback's, which has
    threads of its own, and a second thread would only spin beside it.
    The draws do not depend on the thread count."""
    return _native.threads()


@_with_kernel_names
def sample(
    energy: Union[Energy, str],
    sampler: str = "mala",
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 0,
    step_size: Optional[float] = None,
    beta: float = 1.0,
    context: Optional[_Array] = None,
    init: Union[None, str, _Array] = None,
    thin: int = 1,
    *,
    leapfrog: int = 16,
    max_depth: int = 10,
    jitter: float = 0.2,
    noise: Optional[float] = None,
    grad_clip: Optional[float] = None,
    clamp: Optional[Tuple[float, float]] = None,
    target_accept: Optional[float] = None,
    shared_step: bool = False,
    adapt_mass: bool = True,
    pooled_mass: bool = False,
    dense_mass: bool = False,
    mass_windows: str = "proportional",
    replicas: int = 8,
    kernel: Optional[str] = None,
    ladder: str = "pooled",
    progress: bool = False,
    diagnostics: bool = True,
    sample_stats: bool = False,
) -> Tuple[Any, Dict[str, Any]]:
    """Draw from ``exp(-beta F(y)) / Z`` with MCMC; the CLI's ``boltz sample``.

    Args:
        energy: a :class:`Energy` (or a suite name / model file).
        sampler: a kernel of :func:`kernels` (KERNEL_NAMES; default
            ``mala``, ``gibbs`` for binary models), or ``pt``: non-reversible parallel tempering for targets
            with separated modes, ``replicas`` replicas per chain from the
            AIS base to the target, ``kernel`` their local move (default
            ``mala``; ``gibbs`` for binary models); its report has a ``pt``
            dict (temperatures, swap acceptance, ``lambda``, round trips,
            stepping-stone ``log_z``); ``ladder``: ``"pooled"`` (one
            ladder for all chains, the lower stepping-stone error) or
            ``"per-chain"`` (each chain its own: a chain depends on no
            other, as shards need). ``leapfrog``: HMC's (and AutoStep
            HMC's) leapfrog steps; ``max_depth``: NUTS's most trajectory
            doublings; :func:`kernels` says which kernel reads which
            setting and its default.
        chains, warmup, draws, thin: chains, warm-up steps (step size and
            diagonal mass adapted), draws kept per chain, steps per draw.
        shared_step, adapt_mass, pooled_mass: warm-up adapts each chain's
            step and diagonal mass from its own draws (as Stan and nutpie
            do; a run split into shards then gives the same draws);
            ``shared_step`` adapts one step on the chains' mean acceptance,
            ``pooled_mass`` one mass from all chains' draws (more draws
            behind it when every chain is in one mode), ``dense_mass`` one
            dense mass from the chains' draws and gradients (for
            strongly correlated posteriors; O(dim^2) per evaluation),
            ``adapt_mass=False`` none. ``mass_windows``: ``"proportional"`` (two windows,
            15%-40% and 40%-90% of warm-up) or ``"expanding"`` (Stan's: 75
            steps, then windows of 25, 50, 100, ... steps, the last 50 for
            the step alone: an early mass for NUTS on ill-conditioned
            posteriors; on W7's kidiq 0.67 M gradients against 1.61 M).
        seed: chain ``i`` draws from the ChaCha stream ``(seed, i)``, for
            any thread count. step_size: a fixed step; ``None`` adapts it
            in warm-up (ULA takes the step a MALA warm-up adapts to).
        beta: inverse temperature.
        context: for a conditional energy, contexts ``x``: one row for all
            chains or one row per chain, shape (k, x_dim).
        init: ``None`` (over-dispersed starts, ``dispersed:2,20``), a spec
            (``gaussian:STD``, ``uniform:LO,HI``, ``dispersed:MIN,MAX``,
            ``coins``) or starting positions (chains, dim): an array or a
            torch tensor (then the draws come back as one).
        progress: show progress on stderr.
        diagnostics: compute R-hat, ESS and the check against exact draws
            (and their warnings; for 1024 x 200 draws x 64 dims ~10 CPU s);
            ``False`` skips them (``ess_*`` and ``rhat_max`` are then NaN
            and no warning can see unconverged chains).
        sample_stats: ``report["sample_stats"]``: each draw's ``lp``,
            ``acceptance_rate``, ``diverging``, ``n_steps``, ``step_size``,
            ``tree_depth`` (NUTS; ``n_steps`` counts evaluations: on a
            batch energy, whose chains step in lockstep, the batch's longest
            trajectory): (chains, draws) arrays, which
            :func:`to_inference_data` takes.

    Returns:
        ``(draws, report)``: draws of shape (chains, draws, dim), float64
        (a tensor of ``init``'s dtype and device when ``init`` is one),
        and the CLI's report as a dict (``acceptance``, ``divergences``,
        ``step_size``, ``ess_bulk_min``, ``ess_tail_min``, ``rhat_max``,
        ``grad_evals``, ``warnings``, ...; ``wall_s`` is the whole call,
        ``sampling_s`` and ``diagnostics_s`` its parts; ``init`` the start
        used). Read the warnings:
        they say when the draws cannot be trusted (R-hat, low ESS, modes
        missed against exact draws); ``warning_kinds`` names each one's
        kind in the same order (``"rhat"``, ``"low-ess"``,
        ``"exact-mismatch"``, ...; every report has both).
    """
    e = _energy(energy)
    init_rows = init_spec = None
    if isinstance(init, str):
        init_spec = init
    elif init is not None:
        init_rows = _f64_2d(init, "init", e.dim, device=e.device)
    ctx = _context(e, context)
    job = _sample_job(
        sampler=sampler, chains=chains, warmup=warmup, draws=draws, seed=seed,
        step_size=step_size, beta=beta, thin=thin, leapfrog=leapfrog,
        max_depth=max_depth, jitter=jitter, noise=noise, grad_clip=grad_clip,
        clamp=clamp, target_accept=target_accept, shared_step=shared_step,
        adapt_mass=adapt_mass, pooled_mass=pooled_mass, dense_mass=dense_mass,
        mass_windows=mass_windows,
        replicas=replicas, kernel=kernel, ladder=ladder, diagnostics=diagnostics,
        sample_stats=sample_stats,
    )
    samples, report, energies, stats = _native.sample(
        e, _dumps(job), ctx, init_rows, init_spec, bool(progress)
    )
    return _like(samples, init), _sample_stats(_report(report), energies, stats)


def to_inference_data(
    draws: _Array,
    report: Optional[Dict[str, Any]] = None,
    *,
    var_name: str = "y",
    energies: Optional[_Array] = None,
) -> Any:
    """The draws of :func:`sample` (or any (chains, draws, dim) array) as an
    ArviZ ``InferenceData``, so that ArviZ's summaries and plots take them.

    ``posterior[var_name]`` has dims ``(chain, draw, {var_name}_dim_0)``.
    With ``energies`` (chains, draws), the energies ``F(y)`` of the draws
    (``boltz sample --energies``), ``sample_stats["lp"]`` is the log density
    up to its constant, ``-beta F`` (``beta`` from ``report``, else 1).
    A report from ``sample(..., sample_stats=True)`` brings each draw's
    ``lp``, ``acceptance_rate``, ``diverging``, ``n_steps``, ``step_size``
    and ``tree_depth`` into ``sample_stats`` (``energies`` replaces its
    ``lp``). ``report`` (the second value :func:`sample` returns) goes
    into the posterior's attributes: the sampler, its settings and figures
    (acceptance, step size, divergences, evaluations, seed), and the
    warnings and their kinds, as strings or numbers (``inference_library="boltz"``).
    ArviZ's own ``ess`` and ``rhat`` on it equal :func:`diagnose`'s.

    Needs ``arviz`` (``pip install "./python[arviz]"``).
    """
    try:
        import arviz as _az
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("to_inference_data needs arviz: pip install arviz") from e
    a = _f64_array(draws, "draws")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise BoltzError(f"shape mismatch in draws: expected (chains, draws, dim), got {a.shape}")
    stats: Dict[str, Any] = dict((report or {}).get("sample_stats") or {})
    beta = float((report or {}).get("beta", 1.0) or 1.0)
    if energies is not None:
        en = _f64_array(energies, "energies")
        if en.shape != a.shape[:2]:
            raise BoltzError(
                f"shape mismatch in energies: expected {a.shape[:2]} (chains, draws), got {en.shape}"
            )
        stats["lp"] = -beta * en
    attrs: Dict[str, Any] = {"inference_library": "boltz"}
    for k, v in (report or {}).items():
        if isinstance(v, (bool, int, float, str)):
            attrs[k] = v
        elif k in ("warnings", "warning_kinds"):
            attrs[k] = "; ".join(map(str, v))
    idata = _az.from_dict(
        posterior={var_name: a},
        sample_stats=stats or None,
        dims={var_name: [f"{var_name}_dim_0"]},
    )
    for group in ("posterior", "sample_stats"):
        if group in idata.groups():
            idata[group].attrs.update(attrs)
    return idata


@_with_kernel_names
def logz(
    energy: Union[Energy, str],
    method: Optional[str] = None,
    particles: int = 1024,
    temps: int = 1000,
    seed: int = 0,
    context: Optional[_Array] = None,
    *,
    schedule: str = "sigmoid",
    kernel: Optional[str] = None,
    steps_per_temp: Optional[int] = None,
    step_size: Optional[float] = None,
    beta: float = 1.0,
    reverse: Optional[bool] = None,
    resample: Optional[float] = None,
    cess: Optional[float] = None,
    islands: Optional[int] = None,
    target_se: Optional[float] = None,
    max_seconds: Optional[float] = None,
    base_scale: Optional[float] = None,
    data: Optional[_Array] = None,
    replicas: int = 16,
    chains: int = 16,
    warmup: int = 2000,
    draws: int = 8000,
    progress: bool = False,
    reverse_from: Optional[_Array] = None,
) -> Dict[str, Any]:
    """Estimate ``log Z = log integral exp(-beta F(y)) dy``; the CLI's ``boltz logz``.

    Args:
        method: ``exact`` (enumeration, closed forms), ``quadrature`` (1-2
            dims), ``ais``, ``smc`` (annealed SMC with resample-move: each
            temperature chosen by its conditional ESS ``cess``, default
            0.99, resampling below ESS/N ``resample``, default 0.5,
            ``steps_per_temp`` moves, default 5, with steps re-tuned at
            every temperature; Lee & Whiteley standard error) or ``pt``
            (the stepping-stone estimate of a parallel-tempering run:
            ``chains`` chains of ``replicas`` replicas, ``warmup`` then
            ``draws`` steps) or ``check`` (AIS, SMC and PT, each with its
            own seed and pilot, held against each other: an estimate only
            where they agree); ``None``: exact where the model allows, else
            ``check``, or AIS for a conditional energy or with an option
            only AIS has (``reverse=True``, ``resample``, ``schedule``).
        particles, temps: AIS particles (per context) and temperatures
            (SMC: the most temperatures it may choose).
        steps_per_temp: transitions per temperature (default 1; SMC 5).
        cess: target conditional ESS per temperature (SMC 0.99; the
            ``adaptive`` schedule's pilot 0.995).
        islands: SMC: independent islands the particles are split into
            (default 8); ``report["smc"]`` has both standard errors.
        target_se, max_seconds: ``method="check"`` (AIS, SMC and PT held
            against each other; ``report["check"]["verdict"]``): double the
            particles each round until the estimators agree within this
            standard error, starting no round past ``max_seconds``.
        context: for a conditional energy, (k, x_dim) contexts: one log Z(x)
            per row.
        schedule: ``linear``, ``geometric``, ``sigmoid``, ``piecewise`` or
            ``adaptive``.
        kernel: AIS transition, a kernel of :func:`kernels` (KERNEL_NAMES;
            default ``mala``, ``gibbs`` for binary models).
        reverse: ``True`` requires reverse AIS from exact draws (an upper
            bound), ``False`` skips it; ``None`` runs it where exact draws exist.
        data: positives (n, dim), the data the model was trained on. Binary
            models: their base-rate model is the AIS base; continuous
            models: the pilot that fits the base starts its chains at them
            (a trained EBM's mass can sit in wells around its data that
            chains from elsewhere never find: give them).
        reverse_from: draws of the target (n, dim), e.g. from
            :func:`sample`, for reverse AIS where the model has no exact
            draws: an upper bound on log Z (``report["log_z_upper"]``), as
            the warnings of a run without one recommend.

    Returns:
        a dict with ``log_z``, ``stderr``, ``ess`` (numpy arrays of length k,
        k = 1 without contexts), ``method``, ``wall_s``, ``warnings`` and
        the rest of the CLI's report (``log_z_upper``, ``exact_log_z``, ...).
    """
    e = _energy(energy)
    job = _logz_job(
        method=method, particles=particles, temps=temps, seed=seed, schedule=schedule,
        kernel=kernel, steps_per_temp=steps_per_temp, step_size=step_size, beta=beta,
        reverse=reverse, resample=resample, base_scale=base_scale, cess=cess,
        islands=islands, target_se=target_se, max_seconds=max_seconds,
        replicas=replicas, chains=chains, warmup=warmup, draws=draws,
    )
    _, r = _native.logz(
        e, job, _context(e, context), _f64_2d(data, "data", e.dim, device=e.device), None, False,
        bool(progress), _f64_2d(reverse_from, "reverse_from", e.dim, finite=True, device=e.device),
    )
    return _logz_arrays(_json.loads(r))


def log_prob(
    energy: Union[Energy, str],
    points: _Array,
    context: Optional[_Array] = None,
    *,
    paired: bool = False,
    method: Optional[str] = None,
    particles: int = 1024,
    temps: int = 1000,
    seed: int = 0,
    schedule: str = "sigmoid",
    kernel: Optional[str] = None,
    steps_per_temp: Optional[int] = None,
    step_size: Optional[float] = None,
    beta: float = 1.0,
    reverse: Optional[bool] = None,
    progress: bool = False,
    return_report: bool = False,
) -> Union[_np.ndarray, Tuple[_np.ndarray, Dict[str, Any]]]:
    """``log P(y|x) = -beta F(x, y) - log Z(x)`` of points; the CLI's ``boltz prob``.

    ``points`` is (N, dim). Returns a (k, N) array: row ``i`` is every
    point under context ``i`` (k = 1 for an unconditional energy); with
    ``paired=True`` (as many contexts as points) an (N,) array, each point
    under its own context. ``log Z`` comes from :func:`logz` with the same
    settings; ``return_report=True`` also returns its report.
    """
    e = _energy(energy)
    if points is None:
        raise BoltzError("invalid value for `points`: give the points, (N, dim)")
    pts = _f64_2d(points, "points", e.dim, finite=True, device=e.device)
    if pts.shape[0] == 0:
        raise BoltzError("invalid value for `points`: no points (0 rows)")
    job = _logz_job(
        method=method, particles=particles, temps=temps, seed=seed, schedule=schedule,
        kernel=kernel, steps_per_temp=steps_per_temp, step_size=step_size, beta=beta,
        reverse=reverse,
    )
    lp, r = _native.logz(e, job, _context(e, context), None, pts, bool(paired), bool(progress))
    lp = _np.asarray(lp)
    if lp.ndim == 1 and not paired:
        lp = lp.reshape(1, -1)
    lp = _like(lp, points)
    if return_report:
        return lp, _logz_arrays(_json.loads(r))
    return lp


def diagnose(samples: _Array) -> Dict[str, Any]:
    """Per-coordinate diagnostics of a (chains, draws, dim) array (ArviZ's definitions).

    Returns a dict of numpy arrays ``ess_bulk``, ``ess_tail``, ``rhat``,
    ``mcse_mean``, ``mean``, ``sd`` (one entry per coordinate), the minima
    and maximum over coordinates (``ess_bulk_min``, ``ess_tail_min``,
    ``rhat_max``), ``notes``, ``warnings`` and their kinds
    (``warning_kinds``): the CLI's ``boltz diagnose``
    report, from the same library job. A (chains, draws) array is one
    coordinate. Non-finite draws are refused (``BoltzError``).
    """
    a = _f64_array(samples, "samples")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise BoltzError(
            f"shape mismatch in samples: expected (chains, draws, dim), got {a.shape}"
        )
    r = _json.loads(_native.diagnose(_np.ascontiguousarray(a)))
    coords = r.pop("coordinates")
    out: Dict[str, Any] = {}
    for k in ("ess_bulk", "ess_tail", "rhat", "mcse_mean", "mean", "sd"):
        out[k] = _np.array(
            [_np.nan if c[k] is None else c[k] for c in coords], dtype=_np.float64
        )
    for k in ("ess_bulk_min", "ess_tail_min", "rhat_max"):
        out[k] = float("nan") if r[k] is None else r[k]
    out["notes"] = r["notes"]
    out["warnings"] = r["warnings"]
    out["warning_kinds"] = r["warning_kinds"]
    return out


def compare(
    energy: Union[Energy, str],
    samplers: Optional[Sequence[str]] = None,
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 0,
    *,
    ula_step: Optional[float] = None,
    beta: float = 1.0,
    context: Optional[_Array] = None,
) -> List[Dict[str, Any]]:
    """Several samplers on one energy with the same seed; the CLI's ``boltz compare``.

    Returns one dict per sampler (the CLI's table): ``sampler``, ``wall_s``,
    ``grad_evals``, ``ess_bulk_min``, ``ess_tail_min``, ``ess_bulk_per_s``,
    ``ess_bulk_per_eval``, ``acceptance``, ``divergences``, ``rhat_max``,
    ``step_size``, the errors against exact moments where known
    (``mean_error``, ``mean_error_z``, ``var_error``, ``var_error_z``) and
    ``warnings`` (a mean or variance further from the exact one than Monte
    Carlo error allows is one). Rank by ``ess_bulk_per_s`` only the rows
    without warnings: the CLI's ranking does.
    Default samplers: mala, hmc, rwm, ula (gibbs for binary models).
    """
    e = _energy(energy)
    r = _json.loads(
        _native.compare(
            e,
            None if samplers is None else [str(s) for s in samplers],
            _count(chains, "chains"),
            _count(warmup, "warmup"),
            _count(draws, "draws"),
            _count(seed, "seed"),
            None if ula_step is None else float(ula_step),
            float(beta),
            _context(e, context),
        )
    )
    return r["rows"]


from ._jax import jax_energy  # noqa: E402
from ._torch import mlp_from_torch, torch_energy  # noqa: E402
