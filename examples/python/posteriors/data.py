"""The six posteriors' data, parameter names, transforms and reference draws."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

# posteriordb name -> (data name, parameters in Stan's order with their sizes,
# the parameters declared <lower=0>)
_SPECS = {
    "arma-arma11": ("arma", [("mu", 1), ("phi", 1), ("theta", 1), ("sigma", 1)], {"sigma"}),
    "gp_pois_regr-gp_regr": ("gp_pois_regr", [("rho", 1), ("alpha", 1), ("sigma", 1)], {"rho", "alpha", "sigma"}),
    "kidiq-kidscore_momhsiq": ("kidiq", [("beta", 3), ("sigma", 1)], {"sigma"}),
    "kilpisjarvi_mod-kilpisjarvi": ("kilpisjarvi_mod", [("alpha", 1), ("beta", 1), ("sigma", 1)], {"sigma"}),
    "nes2000-nes": ("nes2000", [("beta", 9), ("sigma", 1)], {"sigma"}),
    "sblri-blr": ("sblri", [("beta", 5), ("sigma", 1)], {"sigma"}),
}

#: The posteriors of W7, in the order results list them.
NAMES: List[str] = list(_SPECS)

#: Where the posteriors are looked for unless ``root`` is given: the
#: ``BOLTZ_POSTERIORDB`` environment variable, else the repository's
#: ``data/posteriordb`` (a copy of ``../shared/posteriordb``: posteriordb's
#: files for these six, BSD-3, its LICENCE.md beside them).
DEFAULT_ROOT = os.environ.get(
    "BOLTZ_POSTERIORDB",
    os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "data", "posteriordb")),
)


def _read_zip_json(path: str) -> Any:
    with zipfile.ZipFile(path) as z:
        (inner,) = z.namelist()
        return json.loads(z.read(inner))


@dataclass
class Posterior:
    """One posterior: its data (float64 arrays), the unconstrained
    coordinates' names (``beta[1]``, ..., Stan's order) and which of them are
    ``log`` of a positive parameter."""

    name: str
    data: Dict[str, np.ndarray]
    names: List[str]
    positive: np.ndarray  # bool per coordinate: the parameter is exp(u)
    root: str
    _reference: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def dim(self) -> int:
        """Unconstrained dimension."""
        return len(self.names)

    def constrain(self, u: np.ndarray) -> np.ndarray:
        """Unconstrained rows (..., dim) to the parameters (exp of the positive ones)."""
        u = np.asarray(u, dtype=np.float64)
        return np.where(self.positive, np.exp(np.where(self.positive, u, 0.0)), u)

    def unconstrain(self, p: np.ndarray) -> np.ndarray:
        """Parameters (..., dim) to unconstrained rows (log of the positive ones)."""
        p = np.asarray(p, dtype=np.float64)
        return np.where(self.positive, np.log(np.where(self.positive, p, 1.0)), p)

    def reference(self) -> np.ndarray:
        """posteriordb's reference draws, (10 chains, 1000 draws, dim), constrained."""
        if self._reference is None:
            chains = _read_zip_json(os.path.join(self.root, f"{self.name}.reference.json.zip"))
            self._reference = np.array(
                [[c[n] for n in self.names] for c in chains], dtype=np.float64
            ).transpose(0, 2, 1)
        return self._reference

    def log_density_jax(self):
        """The unconstrained log density of one row as a JAX function ``u -> log p(u)``."""
        from . import jax_densities

        return jax_densities.log_density(self)

    def log_density_torch(self):
        """The unconstrained log density as a float64 torch module, (n, dim) -> (n,)."""
        from . import torch_densities

        return torch_densities.LogDensity(self)

    def jax_energy(self, leapfrog=True):
        """``boltz.jax_energy`` of ``-log p(u)`` (float64: ``jax_enable_x64`` is set;
        ``leapfrog``: with its compiled integrator, as ``jax_energy`` has by default)."""
        import jax

        import boltz

        jax.config.update("jax_enable_x64", True)
        lp = self.log_density_jax()
        return boltz.jax_energy(lambda u: -lp(u), self.dim, name=f"{self.name}:jax", leapfrog=leapfrog)

    def torch_energy(self):
        """``boltz.torch_energy`` of ``-log p(u)`` (a float64 module)."""
        import boltz

        from . import torch_densities

        return boltz.torch_energy(torch_densities.Energy(self), self.dim, name=f"{self.name}:torch")

    def check(self, draws: np.ndarray, mean_z: float = 4.0, sd_rel: float = 0.10) -> List[Dict[str, Any]]:
        """Each parameter of constrained ``draws`` (chains, draws, dim) against
        the reference: the mean within ``mean_z`` combined Monte Carlo
        standard errors (ours and the reference's, ESS-based, ArviZ's
        definitions) and the sd within ``sd_rel`` of the reference's."""
        import boltz

        ours, ref = boltz.diagnose(draws), boltz.diagnose(self.reference())
        rows = []
        for i, n in enumerate(self.names):
            se = float(np.hypot(ours["mcse_mean"][i], ref["mcse_mean"][i]))
            z = float((ours["mean"][i] - ref["mean"][i]) / se)
            ratio = float(ours["sd"][i] / ref["sd"][i])
            rows.append(
                {
                    "param": n,
                    "mean": float(ours["mean"][i]),
                    "ref_mean": float(ref["mean"][i]),
                    "mcse": float(ours["mcse_mean"][i]),
                    "ref_mcse": float(ref["mcse_mean"][i]),
                    "z": z,
                    "sd": float(ours["sd"][i]),
                    "ref_sd": float(ref["sd"][i]),
                    "sd_ratio": ratio,
                    "ess_bulk": float(ours["ess_bulk"][i]),
                    "ok": bool(abs(z) <= mean_z and abs(ratio - 1.0) <= sd_rel),
                }
            )
        return rows


def load(name: str, root: Optional[str] = None) -> Posterior:
    """The posterior ``name`` (one of :data:`NAMES`) from posteriordb files under ``root``."""
    if name not in _SPECS:
        raise ValueError(f"unknown posterior {name!r}; known: {', '.join(NAMES)}")
    root = root or DEFAULT_ROOT
    data_name, params, positive = _SPECS[name]
    raw = _read_zip_json(os.path.join(root, f"{data_name}.data.json.zip"))
    data = {k: np.asarray(v, dtype=np.float64) for k, v in raw.items()}
    names, pos = [], []
    for p, size in params:
        for j in range(size):
            names.append(f"{p}[{j + 1}]" if size > 1 else p)
            pos.append(p in positive)
    return Posterior(name, data, names, np.array(pos), root)
