"""Negative samples for contrastive training (:class:`Negatives`)."""

from __future__ import annotations

import json as _json
import os as _os
from typing import Any, Dict, Optional, Tuple, Union


from . import _native
from ._args import (
    _Array,
    _context,
    _count,
    _dumps,
    _energy,
    _f64_2d,
    _like,
    _opt_float,
    _pair,
    _with_kernel_names,
)
from ._native import BoltzError, Energy


@_with_kernel_names
class Negatives:
    """Negative samples for contrastive training, call after call.

    Each :meth:`sample` runs ``steps`` transitions of ``kernel`` on
    ``exp(-beta F)`` from the method's starts and returns the chains' ends:

    - ``method="short-run"``: from fresh noise every call (``init``), or,
      with ``buffer > 0``, from a replay buffer of past negatives (a fraction
      ``reinit`` from noise);
    - ``"cd"``: from the data given (contrastive divergence);
    - ``"pcd"``: from where the previous call ended (persistent CD).

    Args:
        energy: a :class:`Energy`; a :func:`torch_energy` sees the model's
            current weights at every call.
        kernel: a kernel of :func:`kernels` (KERNEL_NAMES; default ``ula``,
            ``gibbs`` for binary models), or ``pt``.
        steps, step_size, noise: transitions per call, step size, ULA noise
            scale (default the Langevin ``sqrt(2 step)``; a smaller one is the
            usual short-run EBM trick).
        grad_clip, clamp: clamp each gradient entry to ``[-C, C]``; clamp every
            coordinate to ``(lo, hi)`` after each step (e.g. pixel range).
        seed: chain ``i`` has its own ChaCha stream keyed by ``(seed, i)``.
        end_energies: evaluate the energies of the negatives returned and of
            ``data`` for the report (``energy_neg``, ``energy_pos``,
            ``energy_gap``, ``energies``; default True). False leaves them
            ``None`` and saves the evaluations a training loop makes anyway
            in its loss: a call of K ULA steps then costs exactly K gradient
            evaluations (the last move is not evaluated), MALA K + 1 (the
            starts, whose energies change with the weights, and K
            proposals), HMC with L leapfrog steps K L + 1; the report's
            ``stats.grad_evals`` says it per chain. The draws are the same.
        adapt_step: move the step from call to call towards the kernel's
            target acceptance (Metropolis kernels: mala, hmc, nuts, rwm, ...),
            ``log step += acceptance - target`` after each call, starting
            from ``step_size``; the step follows the model as it trains
            (a sampler frozen by a sharpening energy recovers) and is kept
            in the state. ``stats.step_size`` in the report is the call's.
            Default False: a fixed step, as IGEBM and JEM tune by hand.

    The state (chains, buffer, every random stream) round-trips bit for bit
    through :meth:`state_dict` / :meth:`load_state_dict` and
    :meth:`save` / :meth:`load`: a training run resumed from a checkpoint
    draws the same negatives as one never stopped.

    One object may be shared by several threads: their calls take turns
    (a call waits for the one in progress, without holding the interpreter
    lock), each continuing the state the previous one left; which thread
    goes first is not fixed, so use one object per thread where the order
    matters. :attr:`last_report` is the report of the last call to finish.
    """

    def __init__(
        self,
        energy: Union[Energy, str],
        method: str = "short-run",
        kernel: Optional[str] = None,
        steps: int = 100,
        step_size: float = 0.01,
        noise: Optional[float] = None,
        buffer: int = 0,
        reinit: float = 0.05,
        grad_clip: Optional[float] = None,
        clamp: Optional[Tuple[float, float]] = None,
        seed: int = 0,
        *,
        beta: float = 1.0,
        buffer_policy: str = "append",
        leapfrog: int = 16,
        jitter: float = 0.2,
        init: Optional[str] = None,
        end_energies: bool = True,
        adapt_step: bool = False,
        _native_obj: Any = None,
    ) -> None:
        self.energy = _energy(energy)
        if _native_obj is not None:
            self._n = _native_obj
        else:
            job = {
                "method": str(method),
                "kernel": kernel,
                "steps": _count(steps, "steps"),
                "step_size": float(step_size),
                "noise": _opt_float(noise),
                "grad_clip": _opt_float(grad_clip),
                "clamp": _pair(clamp, "clamp"),
                "leapfrog": _count(leapfrog, "leapfrog"),
                "jitter": float(jitter),
                "buffer": _count(buffer, "buffer"),
                "reinit": float(reinit),
                "buffer_policy": str(buffer_policy),
                "beta": float(beta),
                "seed": _count(seed, "seed"),
                "end_energies": bool(end_energies),
                "adapt_step": bool(adapt_step),
            }
            self._n = _native.Negatives(self.energy, _dumps(job), init)

    @property
    def settings(self) -> Dict[str, Any]:
        """The sampler's settings (method, kernel, steps, step size, ...)."""
        return _json.loads(self._n.settings)

    @property
    def last_report(self) -> Optional[Dict[str, Any]]:
        """The report of the last :meth:`sample` call: energies of positives
        and negatives and their gap, acceptance, divergences, distance moved,
        chains started fresh, buffer size, warnings."""
        r = self._n.last_report
        return None if r is None else _json.loads(r)

    def sample(
        self,
        data: Optional[_Array] = None,
        context: Optional[_Array] = None,
        chains: Optional[int] = None,
    ) -> Any:
        """One call: negatives of shape (chains, dim), float64 numpy, or a
        tensor of ``data``'s dtype and device when ``data`` is a torch
        tensor (on the CPU or the energy's ``device``).

        ``data`` (chains, dim): the positives (CD starts from them; every
        method reports the energy gap with them). ``chains`` defaults to the
        rows of ``data``, else to the last call's, and may change from call
        to call (a last, smaller batch): chain ``i`` always draws from
        stream ``(seed, i)``, a new one from its beginning, one a call does
        not use waits. ``pcd`` and ``pt`` keep the chains of their first
        call (another ``chains`` is refused; ``data`` of another size then
        only gives the energy gap). ``context``: for a conditional energy,
        one row or one per chain.
        """
        d = _f64_2d(data, "data", self.energy.dim, device=self.energy.device)
        c = _context(self.energy, context)
        return _like(self._n.sample(d, c, None if chains is None else _count(chains, "chains")), data)

    def state_dict(self) -> Dict[str, Any]:
        """The complete state as a dict of plain values (JSON-serialisable)."""
        s = self._n.state_json()
        return {
            "format": "boltz.Negatives",
            "version": 1,
            "settings": self.settings,
            "state": None if s is None else _json.loads(s),
        }

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        """Restores a state from :meth:`state_dict`: the same settings and a
        network of the same architecture (its weights may have changed
        since, as in training; see ``Energy.update_from_torch``)."""
        if not isinstance(d, dict) or d.get("format") != "boltz.Negatives":
            raise BoltzError("invalid negatives state: not a boltz.Negatives state_dict")
        if d.get("version") != 1:
            raise BoltzError(f"invalid negatives state: version {d.get('version')} (this boltz reads 1)")
        s = d.get("state")
        self._n.load_state_json(None if s is None else _json.dumps(s))

    def save(self, path: Union[str, "_os.PathLike[str]"]) -> None:
        """Saves the state (versioned, checksummed, written atomically)."""
        self._n.save(_os.fspath(path))

    @classmethod
    def load(cls, path: Union[str, "_os.PathLike[str]"], energy: Union[Energy, str]) -> "Negatives":
        """A sampler continuing the state saved at ``path`` on ``energy``
        (a network of the same architecture, any weights; settings come
        from the file)."""
        e = _energy(energy)
        n = _native.Negatives.load(_os.fspath(path), e)
        return cls(e, _native_obj=n)

    def __repr__(self) -> str:
        s = self.settings
        return f"boltz.Negatives(method={s['method']!r}, kernel={s['kernel']!r}, steps={s['steps']})"
