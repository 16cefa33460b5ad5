"""Sharded boltz runs on a Dask cluster: log Z, log P and sampling past one machine.

A run is split into ``shards`` pieces whose merge is exact: shard ``i``
anneals particles (or runs chains) ``[i N / M, (i + 1) N / M)`` with the
random streams they have in the whole run, so the merged result equals the
one-process run bit for bit (``boltz.logz(..., method="ais",
reverse=False)``, ``boltz.sample``). Each shard is one task on the
``dask.distributed`` client you pass (any cluster Dask reaches: local, SSH,
Kubernetes, Slurm through dask-jobqueue); the tasks return their shard
files' bytes, which are merged here with the checks of ``boltz merge``
(every shard once, all of one run).

``energy`` is a suite name or a JSON model file: workers load it themselves
(native energies are not pickled). A relative file path is made absolute
here, so it names the same file on workers started elsewhere (they must
see this file system). dask is an optional dependency: ``pip install
"./python[distributed]"`` (or ``"dask[distributed]"`` beside boltz).

Failures: a shard whose task raises is rerun up to ``retries`` times (a
shard is a pure function of its seed and settings, so a rerun gives the
same bytes); a shard whose worker dies is rescheduled by Dask's scheduler
(up to ``distributed.scheduler.allowed-failures`` times). A shard that
still fails ends the run with a ``BoltzError`` naming it and its rerun.

Example::

    from dask.distributed import Client, LocalCluster
    import boltz.distributed as bd
    with Client(LocalCluster(n_workers=2, threads_per_worker=1)) as client:
        r = bd.logz(client, "rbm20", shards=4, particles=1024, temps=1000)
        print(r["log_z"], r["stderr"])
"""

import hashlib as _hashlib
import json as _json
import os as _os
import tempfile as _tempfile
from typing import Any, Dict, Optional, Tuple

import numpy as _np

from . import BoltzError, _count, _f64_2d, _logz_arrays, _logz_job, _native, _report

__all__ = ["logz", "log_prob", "sample"]


def _run_shard(spec, kind, job, settings, context, data, points, paired, init_spec):
    """One shard on a worker: its shard file's bytes."""
    e = _native.load_model(spec)
    return _native.run_shard(e, kind, job, settings, context, data, points, paired, init_spec)


def _digest(*arrays: Optional[_np.ndarray]) -> str:
    h = _hashlib.sha256()
    for a in arrays:
        h.update(b"-" if a is None else repr(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def _spec(energy: Any) -> str:
    if isinstance(energy, (str, _os.PathLike)):
        spec = _os.fspath(energy)
        if not _native.is_suite_target(spec) and _os.path.exists(spec):
            return _os.path.abspath(spec)
        return spec
    raise BoltzError(
        "invalid value for `energy`: sharded runs take a suite name or a model file the "
        f"workers can read (native energies are not sent to workers), got {type(energy).__name__}"
    )


def _shards(shards: Any) -> int:
    m = _count(shards, "shards")
    if m < 1:
        raise BoltzError("invalid value for `shards`: must be >= 1")
    return m


def _retries(retries: Any) -> int:
    return _count(retries, "retries")


def _run(client, spec, kind, job, shards, context=None, data=None, points=None,
         paired=False, init_spec=None, workdir=None, retries=2):
    """Submits every shard, gathers their files and merges them."""
    settings = f"{kind} {spec} {_json.dumps(job, sort_keys=True)} {_digest(context, data, points)} paired={paired}"
    futures = []
    for i in range(shards):
        ji = dict(job, shard={"index": i, "count": shards})
        futures.append(client.submit(
            _run_shard, spec, kind, _json.dumps(ji), settings, context, data, points,
            paired, init_spec, pure=False, retries=retries,
            key=f"boltz-{kind}-shard-{i}-of-{shards}-{_os.urandom(4).hex()}",
        ))
    blobs = []
    try:
        for i, f in enumerate(futures):
            try:
                blobs.append(f.result())
            except BoltzError as e:
                # The run's own error (bad settings, memory budget): a rerun
                # gives it again, so it is not dressed as a lost shard.
                raise BoltzError(f"shard {i} of {shards}: {e}") from e
            except Exception as e:  # noqa: BLE001 (Dask's KilledWorker, a worker's OSError, ...)
                raise BoltzError(
                    f"shard {i} of {shards} failed after {retries} retries "
                    f"({type(e).__name__}: {e}); the other shards are cancelled. "
                    f"Rerun the call (a shard is a pure function of its seed: the result "
                    f"does not change), with more retries or on healthy workers"
                ) from e
    finally:
        client.cancel(futures)
    with _tempfile.TemporaryDirectory(dir=workdir) as d:
        paths = []
        for i, b in enumerate(blobs):
            p = _os.path.join(d, f"shard-{i}-of-{shards}.boltz")
            with open(p, "wb") as f:
                f.write(b)
            paths.append(p)
        return _native.merge_shards(paths)


def logz(
    client: Any,
    energy: str,
    shards: int = 2,
    particles: int = 1024,
    temps: int = 1000,
    seed: int = 0,
    context: Optional[Any] = None,
    *,
    schedule: str = "sigmoid",
    kernel: Optional[str] = None,
    steps_per_temp: int = 1,
    step_size: Optional[float] = None,
    beta: float = 1.0,
    resample: Optional[float] = None,
    base_scale: Optional[float] = None,
    data: Optional[Any] = None,
    workdir: Optional[str] = None,
    retries: int = 2,
) -> Dict[str, Any]:
    """AIS log Z in ``shards`` Dask tasks, merged: the dict of ``boltz.logz``
    (``log_z``, ``stderr``, ``ess`` arrays, ``warnings``, ...) plus ``shards``.

    Equal, bit for bit, to ``boltz.logz(energy, method="ais", reverse=False,
    ...)`` with the same settings. With ``resample`` (annealed SMC) the shards
    are independent islands and the merged Z is the mean of theirs (said in
    ``warnings``). ``retries``: reruns of a shard whose task raised.
    """
    spec = _spec(energy)
    e = _native.load_model(spec)
    job = _json.loads(_logz_job(
        method="ais", particles=particles, temps=temps, seed=seed, schedule=schedule,
        kernel=kernel, steps_per_temp=steps_per_temp, step_size=step_size, beta=beta,
        reverse=False, resample=resample, base_scale=base_scale,
    ))
    ctx = _f64_2d(context, "context", e.x_dim, device=e.device) if context is not None else None
    dat = _f64_2d(data, "data", e.dim, device=e.device)
    r, _, _ = _run(client, spec, "logz", job, _shards(shards), ctx, dat, workdir=workdir,
                   retries=_retries(retries))
    return _logz_arrays(_listify(_json.loads(r)))


def log_prob(
    client: Any,
    energy: str,
    points: Any,
    shards: int = 2,
    context: Optional[Any] = None,
    *,
    paired: bool = False,
    particles: int = 1024,
    temps: int = 1000,
    seed: int = 0,
    kernel: Optional[str] = None,
    beta: float = 1.0,
    base_scale: Optional[float] = None,
    workdir: Optional[str] = None,
    retries: int = 2,
) -> Tuple[_np.ndarray, Dict[str, Any]]:
    """log P(y|x) of ``points`` with AIS log Z in ``shards`` Dask tasks:
    ``(log_p, report)``, as ``boltz.log_prob(..., method="ais",
    return_report=True)`` without the reverse pass. ``retries``: reruns of a
    shard whose task raised."""
    spec = _spec(energy)
    e = _native.load_model(spec)
    job = _json.loads(_logz_job(
        method="ais", particles=particles, temps=temps, seed=seed, schedule="sigmoid",
        kernel=kernel, steps_per_temp=1, step_size=None, beta=beta, reverse=False,
        resample=None, base_scale=base_scale,
    ))
    ctx = _f64_2d(context, "context", e.x_dim, device=e.device) if context is not None else None
    pts = _f64_2d(points, "points", e.dim, device=e.device)
    r, _, lp = _run(client, spec, "logz", job, _shards(shards), ctx, None, pts, bool(paired),
                    workdir=workdir, retries=_retries(retries))
    lp = _np.asarray(lp)
    if lp.ndim == 1 and not paired:
        lp = lp.reshape(1, -1)
    return lp, _logz_arrays(_listify(_json.loads(r)))


def sample(
    client: Any,
    energy: str,
    sampler: str = "mala",
    shards: int = 2,
    chains: int = 4,
    warmup: int = 1000,
    draws: int = 1000,
    seed: int = 0,
    *,
    step_size: Optional[float] = None,
    beta: float = 1.0,
    thin: int = 1,
    init: Optional[str] = None,
    leapfrog: int = 16,
    max_depth: int = 10,
    target_accept: Optional[float] = None,
    replicas: int = 8,
    kernel: Optional[str] = None,
    ladder: str = "pooled",
    workdir: Optional[str] = None,
    retries: int = 2,
) -> Tuple[_np.ndarray, Dict[str, Any]]:
    """Chains in ``shards`` Dask tasks, merged: ``(draws, report)`` with the
    draws of all chains (chains, draws, dim) and their diagnostics.

    Each chain adapts its own step size and diagonal mass from its own
    warm-up, in the one-process run too, so any split gives the same draws
    as ``boltz.sample`` with the same settings. Parallel tempering
    (``sampler="pt"``, ``replicas``, ``kernel``) needs
    ``ladder="per-chain"`` (each chain its own ladder); its merged report
    has the stepping-stone ``log_z`` in ``report["pt"]``. ``retries``:
    reruns of a shard whose task raised.
    """
    spec = _spec(energy)
    _native.load_model(spec)  # a missing or broken model file is refused here, not on each worker
    job = {
        "sampler": str(sampler), "chains": _count(chains, "chains"),
        "warmup": _count(warmup, "warmup"), "draws": _count(draws, "draws"),
        "seed": _count(seed, "seed"), "step_size": None if step_size is None else float(step_size),
        "beta": float(beta), "thin": _count(thin, "thin"), "leapfrog": _count(leapfrog, "leapfrog"),
        "max_depth": _count(max_depth, "max_depth"),
        "target_accept": None if target_accept is None else float(target_accept),
        "replicas": _count(replicas, "replicas"), "kernel": None if kernel is None else str(kernel),
        "ladder": str(ladder),
    }
    r, s, _ = _run(client, spec, "sample", job, _shards(shards), init_spec=init, workdir=workdir,
                   retries=_retries(retries))
    return s, _report(r)


def _listify(r: Dict[str, Any]) -> Dict[str, Any]:
    """Per-context values as lists (the merge writes numbers for one context)."""
    for k in ("log_z", "stderr", "ess"):
        if k in r and not isinstance(r[k], list):
            r[k] = [r[k]]
    return r
