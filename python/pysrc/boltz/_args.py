"""Arguments from Python to the native module: arrays and tensors as
float64, counts and settings checked (errors name the Python parameter),
settings as JSON, reports back as dicts. Private to the package."""

from __future__ import annotations

import json as _json
import os as _os
from typing import Any, Callable, Dict, List, Optional

import numpy as _np

from . import _native
from ._native import BoltzError, Energy

_Array = Any  # numpy.ndarray (or anything numpy.asarray takes)


def _is_tensor(a: Any) -> bool:
    """Whether ``a`` is a torch tensor (without importing torch)."""
    return type(a).__module__.split(".")[0] == "torch" and hasattr(a, "detach")


def _on_device(t: Any, device: str) -> bool:
    """Whether tensor ``t`` is on the CPU or on ``device`` (torch's name:
    ``cuda`` for the current CUDA device matches any index)."""
    import torch

    if t.device.type == "cpu":
        return True
    dev = torch.device(device)
    return t.device.type == dev.type and (dev.index is None or t.device.index == dev.index)


def _f64_array(a: _Array, what: str, device: str = "cpu") -> _np.ndarray:
    """``a`` (an array, a torch tensor on the CPU or ``device``, with or
    without grad, any strides, nested lists, any real dtype) as a
    C-contiguous float64 array (a tensor is read, never modified); anything
    else is a ``BoltzError`` naming ``what``, a tensor on another device
    too: boltz computes on the CPU, and moves a batch there only for an
    energy that itself runs on that device (``Energy.device``)."""
    if _is_tensor(a):
        if not _on_device(a, device):
            raise BoltzError(
                f"invalid value for `{what}`: a torch tensor on {a.device}, and the energy runs on "
                f"{device}: pass `{what}.cpu()` (only an energy that runs on {a.device}, "
                "a torch_energy of a module there, takes its tensors)"
            )
        a = a.detach().cpu().double().numpy()
    try:
        dims: Optional[List[int]] = [int(n) for n in getattr(a, "shape")]
    except (AttributeError, TypeError, ValueError):
        dims = None
    if dims is not None:
        # Before numpy copies it (a broadcast view of 10^12 rows is cheap
        # until then).
        _native.check_memory(what, dims, 8)
    if isinstance(a, (str, bytes)):
        raise BoltzError(f"invalid value for `{what}`: not an array of numbers (a string)")
    try:
        arr = _np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"its values are {arr.dtype}, not real numbers")
        return _np.ascontiguousarray(arr, dtype=_np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise BoltzError(f"invalid value for `{what}`: not an array of numbers ({e})") from None


def _f64_2d(
    a: Optional[_Array],
    what: str,
    cols: Optional[int] = None,
    finite: bool = False,
    device: str = "cpu",
) -> Optional[_np.ndarray]:
    """A C-contiguous float64 (n, cols) copy or view of ``a`` (tensors on
    the CPU or ``device``); 1-D becomes one row. ``finite``: NaN or
    infinite values are refused, as the CLI refuses them in ``--points``."""
    if a is None:
        return None
    arr = _f64_array(a, what, device)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise BoltzError(f"shape mismatch in {what}: expected a 2-D array, got shape {arr.shape}")
    if cols is not None and arr.shape[1] != cols:
        raise BoltzError(
            f"shape mismatch in {what}: expected (n, {cols}), got {arr.shape}"
        )
    if finite and not _np.isfinite(arr).all():
        i, j = (int(k) for k in _np.argwhere(~_np.isfinite(arr))[0])
        raise BoltzError(
            f"invalid value for `{what}`: row {i}, column {j} is {arr[i, j]}: "
            "every value must be finite"
        )
    return arr


def _like(out: _np.ndarray, given: Any) -> Any:
    """``out`` as a torch tensor on ``given``'s device and dtype when
    ``given`` is a tensor (tensors in, tensors out), else as it is."""
    if not _is_tensor(given):
        return out
    import torch

    return torch.from_numpy(_np.ascontiguousarray(out)).to(device=given.device, dtype=given.dtype)


def _context(e: Energy, context: Optional[_Array]) -> Optional[_np.ndarray]:
    """Contexts for a conditional energy, (k, x_dim) float64."""
    if context is None:
        return None
    if e.x_dim == 0:
        raise BoltzError(f"invalid value for `context`: model `{e.name}` is not conditional")
    return _f64_2d(context, "context", e.x_dim, device=e.device)


def _energy(energy: Any) -> Energy:
    if isinstance(energy, Energy):
        return energy
    if isinstance(energy, (str, _os.PathLike)):
        return _native.load_model(_os.fspath(energy))
    raise BoltzError(
        "invalid value for `energy`: expected a boltz.Energy (load_model, CallbackEnergy, "
        f"torch_energy, mlp_from_torch) or a model name, got {type(energy).__name__}"
    )


def _pair(v: Any, what: str) -> Optional[List[float]]:
    """``(lo, hi)`` as two floats, or None."""
    if v is None:
        return None
    try:
        lo, hi = (float(t) for t in v)
    except (TypeError, ValueError) as e:
        raise BoltzError(f"invalid value for `{what}`: expected (lo, hi), got {v!r} ({e})") from None
    return [lo, hi]


def _count(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, _np.integer)):
        raise BoltzError(f"invalid value for `{what}`: expected an integer, got {v!r}")
    if v < 0:
        raise BoltzError(f"invalid value for `{what}`: must be >= 0, got {v}")
    if v >= 2**63:
        raise BoltzError(f"invalid value for `{what}`: absurdly large ({v})")
    return int(v)


def _kernel_names() -> str:
    return ", ".join("``%s``" % k["name"] for k in _json.loads(_native.kernels_json()))


_KERNEL_NAMES = _kernel_names()


def _with_kernel_names(f: Callable[..., Any]) -> Callable[..., Any]:
    """Writes the registry's kernel names into ``f``'s docstring."""
    if f.__doc__:
        f.__doc__ = f.__doc__.replace("KERNEL_NAMES", _KERNEL_NAMES)
    return f


def _opt_float(v: Optional[float]) -> Optional[float]:
    return None if v is None else float(v)


def _logz_job(**kw: Any) -> str:
    """A LogzJob as JSON (the library's settings, with the CLI's defaults)."""
    job = {
        "method": kw["method"],
        "particles": _count(kw["particles"], "particles"),
        "temps": _count(kw["temps"], "temps"),
        "seed": _count(kw["seed"], "seed"),
        "schedule": str(kw["schedule"]),
        "kernel": kw["kernel"],
        "steps_per_temp": (
            None if kw["steps_per_temp"] is None
            else _count(kw["steps_per_temp"], "steps_per_temp")
        ),
        "cess": _opt_float(kw.get("cess")),
        "islands": None if kw.get("islands") is None else _count(kw["islands"], "islands"),
        "target_se": _opt_float(kw.get("target_se")),
        "max_seconds": _opt_float(kw.get("max_seconds")),
        "step_size": _opt_float(kw["step_size"]),
        "beta": float(kw["beta"]),
        "reverse": kw["reverse"] is True,
        "no_reverse": kw["reverse"] is False,
        "resample": _opt_float(kw.get("resample")),
        "base_scale": _opt_float(kw.get("base_scale")),
    }
    for key in ("replicas", "chains", "warmup", "draws"):
        if key in kw:
            job[key] = _count(kw[key], key)
    return _dumps(job)


def _dumps(job: Dict[str, Any]) -> str:
    """Settings as JSON for the native module: finite numbers only."""
    try:
        return _json.dumps(job, allow_nan=False)
    except ValueError:
        raise BoltzError(
            "invalid value: settings must be finite numbers (got NaN or infinity)"
        ) from None


def _report(s: str) -> Dict[str, Any]:
    r = _json.loads(s)
    # JSON has no NaN: the library writes null; give numbers back as NaN.
    for k in ("ess_bulk_min", "ess_tail_min", "rhat_max", "acceptance"):
        if k in r and r[k] is None:
            r[k] = float("nan")
    return r


def _logz_arrays(r: Dict[str, Any]) -> Dict[str, Any]:
    for k in ("log_z", "stderr", "ess", "log_z_upper", "stderr_upper", "bootstrap_stderr"):
        if k in r and r[k] is not None:
            r[k] = _np.array([_np.nan if v is None else v for v in r[k]], dtype=_np.float64)
    return r


def _sample_job(**kw: Any) -> Dict[str, Any]:
    """A SampleJob's settings from ``sample``'s arguments, each checked."""
    job = {
        "sampler": str(kw["sampler"]),
        "chains": _count(kw["chains"], "chains"),
        "warmup": _count(kw["warmup"], "warmup"),
        "draws": _count(kw["draws"], "draws"),
        "seed": _count(kw["seed"], "seed"),
        "step_size": _opt_float(kw["step_size"]),
        "beta": float(kw["beta"]),
        "thin": _count(kw["thin"], "thin"),
        "leapfrog": _count(kw["leapfrog"], "leapfrog"),
        "max_depth": _count(kw["max_depth"], "max_depth"),
        "jitter": float(kw["jitter"]),
        "noise": _opt_float(kw["noise"]),
        "grad_clip": _opt_float(kw["grad_clip"]),
        "clamp": _pair(kw["clamp"], "clamp"),
        "target_accept": _opt_float(kw["target_accept"]),
        "shared_step": bool(kw["shared_step"]),
        "adapt_mass": bool(kw["adapt_mass"]),
        "pooled_mass": bool(kw["pooled_mass"]),
        "dense_mass": bool(kw["dense_mass"]),
        "mass_windows": str(kw["mass_windows"]),
        "replicas": _count(kw["replicas"], "replicas"),
        "kernel": None if kw["kernel"] is None else str(kw["kernel"]),
        "ladder": str(kw["ladder"]),
        "diagnostics": bool(kw["diagnostics"]),
        "record_draw_stats": bool(kw["sample_stats"]),
    }
    if job["record_draw_stats"] and job["sampler"] == "pt":
        raise BoltzError(
            "invalid value for `sample_stats`: parallel tempering records no per-draw "
            "transition statistics (its draws come from swaps as well as the kernel's moves)"
        )
    return job


def _sample_stats(
    report: Dict[str, Any], energies: Optional[_np.ndarray], stats: Optional[Dict[str, Any]]
) -> Dict[str, Any]:
    """``report`` with ``sample_stats`` (ArviZ's names, (chains, draws)
    each): the transition statistics the run recorded, named by the native
    module, and ``lp`` from the draws' energies."""
    if stats is not None:
        out = dict(stats)
        if energies is not None:
            out["lp"] = -float(report.get("beta", 1.0) or 1.0) * energies
        report["sample_stats"] = out
    return report
