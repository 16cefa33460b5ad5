"""Type stubs of boltz's native module (the Python layer in boltz/__init__.py
wraps the job functions with defaults and docstrings)."""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

class BoltzError(ValueError):
    """An error from boltz, with the command-line tool's one-line message."""

class Energy:
    """An energy boltz can sample (suite target, model file, native MLP, callback)."""

    @property
    def dim(self) -> int:
        """Dimension of a state y."""
    @property
    def x_dim(self) -> int:
        """Dimension of the context x (0: unconditional)."""
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str:
        """gaussian, mixture, funnel, ring, mlp, rbm or custom."""
    @property
    def precision(self) -> str:
        """The precision of the energy's arithmetic, ``f64`` or ``f32``."""
    def with_precision(self, precision: str) -> "Energy":
        """This energy computing in ``precision`` (``f64`` or ``f32``; f32
        only for ``mlp`` and ``rbm`` models)."""
    @property
    def binary(self) -> bool:
        """Whether states are binary vectors (0.0 / 1.0)."""
    @property
    def exact_log_z(self) -> Optional[float]:
        """Exact log Z at beta 1 where known."""
    @property
    def device(self) -> str:
        """The torch device the energy computes on (``cpu``, or a
        callback's ``device``): tensor arguments on another non-CPU device
        are refused."""
    def callback_stats(self) -> Optional[Tuple[int, float, float]]:
        """(calls, seconds inside fn, seconds of the whole evaluations) of a
        callback energy; None for native energies."""
    def energy_and_grad(self, y: Any, x: Optional[Any] = None) -> Tuple[Any, Any]:
        """(energies (n,), gradients dF/dy (n, dim)) of the rows of y (n, dim):
        numpy arrays of any real dtype, lists or torch tensors (tensors in,
        tensors out); non-finite points are refused."""

class CallbackEnergy(Energy):
    """An energy given by ``fn(y) -> (energies (n,), gradients (n, dim))``
    (``fn(y, x)`` when ``x_dim > 0``), called once per evaluation with all
    chains' positions as a C-contiguous float64 (n, dim) array. The array
    is a buffer boltz reuses: copy it if you keep it. Return float64 arrays
    of exactly those shapes; an exception, a wrong shape or dtype ends the
    run with an exception naming the problem; non-finite energies are
    divergences. ``binary=True``: states are 0/1 vectors (Gibbs).
    ``leapfrog(y, p, g, eps, inv_mass, h_max, steps) -> (ys, ps, gs, es)``: the
    energy's own integrator (NUTS and HMC call it once per trajectory
    segment instead of ``fn`` once per leapfrog step). ``device``: the
    torch device ``fn`` computes on (default ``cpu``; ``torch_energy``
    sets its module's), whose tensors calls then take."""

    def __init__(
        self,
        fn: Callable[..., Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]],
        dim: int,
        x_dim: int = 0,
        binary: bool = False,
        name: Optional[str] = None,
        leapfrog: Optional[Callable[..., Tuple[npt.NDArray[np.float64], ...]]] = None,
        device: Optional[str] = None,
    ) -> None: ...

class Negatives:
    settings: str
    last_report: Optional[str]
    def __init__(self, energy: Energy, job: str, init: Optional[str] = None) -> None: ...
    def sample(
        self,
        data: Optional[npt.NDArray[np.float64]] = None,
        context: Optional[npt.NDArray[np.float64]] = None,
        chains: Optional[int] = None,
    ) -> npt.NDArray[np.float64]: ...
    def state_json(self) -> Optional[str]: ...
    def load_state_json(self, state: Optional[str]) -> None: ...
    def save(self, path: str) -> None: ...
    @staticmethod
    def load(path: str, energy: Energy) -> "Negatives": ...

def load_model(spec: str) -> Energy: ...
def mlp_energy(
    weights: Sequence[npt.NDArray[np.float64]],
    biases: Sequence[npt.NDArray[np.float64]],
    activations: Sequence[str],
    x_dim: int = 0,
    l2: float = 0.0,
    name: Optional[str] = None,
) -> Energy: ...
def sample(
    energy: Energy,
    job: str,
    context: Optional[npt.NDArray[np.float64]],
    init: Optional[npt.NDArray[np.float64]],
    init_spec: Optional[str],
    progress: bool,
) -> Tuple[
    npt.NDArray[np.float64],
    str,
    Optional[npt.NDArray[np.float64]],
    Optional[Dict[str, npt.NDArray[Any]]],
]: ...
def check_memory(what: str, shape: List[int], bytes_each: int) -> None: ...
def logz(
    energy: Energy,
    job: str,
    context: Optional[npt.NDArray[np.float64]],
    data: Optional[npt.NDArray[np.float64]],
    points: Optional[npt.NDArray[np.float64]],
    paired: bool,
    progress: bool,
    reverse_from: Optional[npt.NDArray[np.float64]] = None,
) -> Tuple[Optional[npt.NDArray[np.float64]], str]: ...
def run_shard(
    energy: Energy,
    kind: str,
    job: str,
    settings: str,
    context: Optional[npt.NDArray[np.float64]],
    data: Optional[npt.NDArray[np.float64]],
    points: Optional[npt.NDArray[np.float64]],
    paired: bool,
    init_spec: Optional[str],
) -> bytes: ...
def merge_shards(
    paths: List[str],
) -> Tuple[str, Optional[npt.NDArray[np.float64]], Optional[npt.NDArray[np.float64]]]: ...
def diagnose(samples: npt.NDArray[np.float64]) -> str: ...
def compare(*args: Any) -> str: ...
def kernels_json() -> str: ...
def threads() -> int: ...
def is_suite_target(spec: str) -> bool: ...
def _panic_for_tests(in_pool: bool) -> None: ...
