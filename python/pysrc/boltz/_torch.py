"""PyTorch helpers: a torch module as a boltz energy, and an MLP's weights
as boltz's native MLP. torch is imported only when these are called."""

from __future__ import annotations

import threading
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _native
from ._native import BoltzError, CallbackEnergy, Energy

# torch activation modules boltz's native MLP has, by class name.
_ACTIVATIONS = {
    "SiLU": "silu",
    "ReLU": "relu",
    "Tanh": "tanh",
    "Softplus": "softplus",
    "Identity": "none",
}


def torch_energy(
    module: Any,
    dim: int,
    x_dim: int = 0,
    *,
    device: Any = None,
    name: Optional[str] = None,
    compile: bool = False,
    leapfrog: bool = True,
) -> CallbackEnergy:
    """A torch module mapping (n, x_dim + dim) inputs ``[x ; y]`` to (n,) energies, as an energy.

    Gradients with respect to ``y`` come from autograd (the module's own
    parameter gradients are not touched). The module runs in its own dtype
    (its parameters', else its floating buffers', else float32; float32
    modules work: positions are cast in, energies and gradients cast back
    to float64) and on their device unless ``device`` is given. Every
    evaluation is one batched call for all chains; the module is read at
    each call, so an energy made once follows the weights as they train.
    A float64 module on the CPU reads the positions in place: successive
    calls of one batch size get the same leaf tensor, its values rewritten
    by boltz between calls (a module that keeps its input sees later
    positions; one that hooks it gets a fresh tensor at the next call).

    An ``nn.Sequential`` whose first layer is ``Linear`` is checked here:
    its ``in_features`` must be ``x_dim + dim``. A module with dropout or
    batch normalisation in training mode is sampled as it is (random
    dropout masks in every evaluation, batch-norm running statistics
    updated by every evaluation): a ``UserWarning`` says so at the first
    such evaluation; call ``module.eval()`` around sampling to avoid it.

    ``compile=True`` evaluates the module through ``torch.compile`` (its
    forward and backward compiled at the first call of each batch shape).
    Measured on a 2-core CPU (the W8 digits MLP, 1024 rows): 19.7 s to
    compile, then 3.21 ms per energy and gradient against 2.07 ms eager,
    so it is off by default; it pays where torch's compiler does (GPUs,
    larger modules). The fastest path for an ``nn.Sequential`` MLP stays
    :func:`mlp_from_torch` (no Python in the loop).

    ``leapfrog=True`` (a float64 module, ``x_dim`` 0): the energy also
    carries its own leapfrog loop in torch (``CallbackEnergy``'s
    ``leapfrog``), so NUTS crosses into Python once per doubling of a
    trajectory and HMC once per transition; each step is still one
    forward and backward of the module, the kernels' arithmetic done by
    torch op by op (the same draws as without it).
    """
    import torch  # imported only here

    # the module's dtype and device: its parameters', else its floating
    # buffers' (a density whose data are float64 buffers runs in float64)
    tensors = list(module.parameters()) or [b for b in module.buffers() if b.is_floating_point()]
    dtype = tensors[0].dtype if tensors else torch.float32
    dev = device if device is not None else (tensors[0].device if tensors else "cpu")
    first = next(iter(module.children()), None) if isinstance(module, torch.nn.Sequential) else None
    if isinstance(first, torch.nn.Linear) and first.in_features != x_dim + dim:
        raise BoltzError(
            f"invalid value for `dim`: the module's first Linear layer takes {first.in_features} "
            f"inputs, and x_dim + dim = {x_dim} + {dim} = {x_dim + dim}"
        )
    moded = [
        m
        for m in module.modules()
        if isinstance(m, (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm))
    ]
    warned = [False]
    run = torch.compile(module) if compile else module

    def check_mode() -> None:
        training = [type(m).__name__ for m in moded if m.training]
        if training:
            warned[0] = True
            import warnings

            warnings.warn(
                f"torch_energy: the module is in training mode with {', '.join(sorted(set(training)))}: "
                "every evaluation draws dropout masks and updates batch-norm running statistics, "
                "so the energy sampled is not the model's; call module.eval() around sampling",
                UserWarning,
                stacklevel=2,
            )

    def check() -> None:
        if moded and not warned[0]:  # once warned, nothing more to look at
            check_mode()

    # A float64 module on the CPU reads boltz's buffer, and float64 results
    # on the CPU go back without a conversion (a few us a call).
    host64 = torch.device(dev).type == "cpu" and dtype == torch.float64
    # host64: boltz refills one buffer for every call of a batch size, so
    # the leaf tensor over it (requiring grad) is made once and reused:
    # (buffer, tensor), replaced as one object (calls on other threads get
    # buffers of their own, each its own tensor).
    leaf: List[Any] = [None]
    seeds = threading.local()  # the backward's seed, one per thread

    def positions(y: np.ndarray) -> Any:
        if not host64:
            return tensor(y).requires_grad_(True)
        c = leaf[0]
        if c is not None and c[0] is y:
            return c[1]
        t = torch.from_numpy(y).requires_grad_(True)
        leaf[0] = (y, t)
        return t

    def tensor(a: np.ndarray) -> Any:
        t = torch.from_numpy(a)
        return t if host64 else t.to(device=dev, dtype=dtype)

    def array(t: Any) -> np.ndarray:
        if t.dtype is torch.float64 and t.is_cpu:
            return t.detach().numpy()
        return _np64(t)

    def call(y: np.ndarray, x: Optional[np.ndarray] = None):
        if moded:
            check()
        yt = positions(y)
        inp = yt if x is None else torch.cat([tensor(x), yt], dim=1)
        e, g = _energy_grad(run, inp, yt, seeds)
        if host64 and yt._backward_hooks:  # the module hooked its input:
            leaf[0] = None  # the next call gets a fresh tensor (hooks would pile up)
        # g is yt's gradient: no graph, and on the CPU in float64 already
        # when yt is (host64), so it goes back as it is
        return array(e), (g.numpy() if host64 else array(g))

    return CallbackEnergy(
        call if x_dim > 0 else (lambda y: call(y)),
        dim,
        x_dim=x_dim,
        name=name or type(module).__name__,
        device=str(torch.device(dev)),
        leapfrog=_leapfrog(run, dev, dtype, check) if leapfrog and x_dim == 0 and dtype == torch.float64 else None,
    )


def _energy_grad(run: Any, inp: Any, yt: Any, seeds: threading.local) -> Tuple[Any, Any]:
    """The module's energies (n,) at ``inp`` and their gradients in ``yt``
    (the rows of ``inp``'s positions, requiring grad); a result that is not
    one energy a row is a ``BoltzError``. ``seeds`` (a ``threading.local``)
    keeps the backward's seed from call to call (see :func:`_ones`)."""
    import torch

    if not torch.is_grad_enabled():  # under torch.no_grad(): turned on here
        with torch.enable_grad():
            return _energy_grad(run, inp, yt, seeds)
    e = run(inp)
    n = yt.shape[0]
    if e.numel() != n:
        raise BoltzError(
            f"torch_energy: the module returned shape {tuple(e.shape)} for {n} "
            "rows; expected (n,) or (n, 1) energies"
        )
    if e.dim() != 1:
        e = e.reshape(-1)
    # rows are independent: ones as the energies' gradient give each
    # row's (e.sum()'s backward, without the sum: ~8 us)
    (g,) = torch.autograd.grad(e, yt, grad_outputs=_ones(e, seeds))
    return e, g


def _ones(e: Any, seeds: threading.local) -> Any:
    """Ones of ``e``'s shape, dtype and device: the seed of a backward.
    The last one in ``seeds`` (a ``threading.local``: each thread its
    own, so no backward reads a seed another thread's backward writes to)
    is reused while it fits and its version counter says nothing
    wrote to it (a custom backward may write to its incoming gradient in
    place); a fresh ``ones_like`` costs 1-4 us a call."""
    import torch

    o = getattr(seeds, "ones", None)
    if (
        o is not None
        and o._version == 0
        and o.dtype is e.dtype
        and o.shape == e.shape
        and o.device == e.device
    ):
        return o
    o = seeds.ones = torch.ones_like(e)
    return o


def _leapfrog(run: Any, dev: Any, dtype: Any, check: Any) -> Any:
    """torch_energy's ``leapfrog(y, p, g, eps, inv_mass, h_max, steps)``
    (CallbackEnergy's protocol): the steps in torch, op by op, one forward
    and backward of ``run`` each; ``check()`` first (the training-mode
    warning)."""
    import torch

    seeds = threading.local()  # the backward's seed, kept across steps and calls

    def segment(y, p, g, eps, inv_mass, h_max, steps):
        check()
        steps = int(steps)
        y, p, g, eps, w, h_max = (
            torch.from_numpy(a).to(device=dev, dtype=dtype) for a in (y, p, g, eps, inv_mass, h_max)
        )
        half = (0.5 * eps)[:, None]  # the kernels' arithmetic: (0.5 e) g, (e W) p
        ew = eps[:, None] * w
        live = torch.ones(y.shape[0], dtype=torch.bool, device=dev)
        # each step's states and the rows live at its start, masked once at
        # the end (a masked store per array and step cost ~4 ops each)
        ys, ps, gs, es, lives = [], [], [], [], []
        for _ in range(steps):
            m = live[:, None]
            p1 = p - half * g
            y = torch.where(m, y + ew * p1, y)  # a stopped row is evaluated where it was
            yt = y.detach().requires_grad_(True)
            e, g = _energy_grad(run, yt, yt, seeds)
            e = e.detach()
            # a stopped row's momentum runs on (its states are NaN, and it
            # stays stopped): no masked update needed
            p = p1 - half * g
            for out, v in zip((ys, ps, gs, es, lives), (y, p, g, e, live)):
                out.append(v)
            live = live & (e + 0.5 * (p * p * w).sum(1) < h_max)
            if not bool(live.any()):
                break
        kept = torch.stack(lives)
        nan = torch.tensor(float("nan"), dtype=dtype, device=dev)
        result = []
        for parts in (ys, ps, gs, es):
            a = torch.stack(parts)
            a = torch.where(kept if a.dim() == 2 else kept[..., None], a, nan)
            if len(parts) < steps:  # all rows stopped early: NaN after
                a = torch.cat([a, nan.expand((steps - len(parts),) + tuple(a.shape[1:]))])
            result.append(_np64(a))
        return tuple(result)

    return segment


def _np64(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().to("cpu").double().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float64))


def _mlp_params(
    module_or_state_dict: Any,
    activations: Optional[Sequence[str]],
    need_activations: bool = True,
) -> Tuple[List[np.ndarray], List[np.ndarray], List[str]]:
    """A torch MLP's weights (in x out, float64), biases and activations."""
    weights, biases, acts = [], [], []
    if isinstance(module_or_state_dict, Mapping):
        sd = module_or_state_dict
        keys = [k for k in sd.keys() if k.endswith("weight") and len(tuple(sd[k].shape)) == 2]
        for k in keys:
            w = _np64(sd[k])
            bk = k[: -len("weight")] + "bias"
            b = _np64(sd[bk]) if bk in sd else np.zeros(w.shape[0])
            weights.append(np.ascontiguousarray(w.T))
            biases.append(b)
        if activations is None and need_activations:
            raise BoltzError(
                "invalid value for `activations`: a state_dict does not say its activations; "
                "give one per Linear layer (silu, relu, tanh, softplus, none)"
            )
        acts = list(activations or [])
    else:
        import torch  # noqa: F401

        mods = list(module_or_state_dict.children()) or [module_or_state_dict]
        inferred = []
        for m in mods:
            kind = type(m).__name__
            if kind == "Linear":
                weights.append(np.ascontiguousarray(_np64(m.weight).T))
                biases.append(
                    _np64(m.bias) if m.bias is not None else np.zeros(m.weight.shape[0])
                )
                inferred.append("none")
            elif kind in _ACTIVATIONS:
                if not inferred or inferred[-1] != "none":
                    raise BoltzError(
                        f"invalid value for `module`: activation {kind} must follow a Linear layer"
                    )
                if kind == "Softplus" and (getattr(m, "beta", 1) != 1):
                    raise BoltzError("invalid value for `module`: Softplus with beta != 1")
                inferred[-1] = _ACTIVATIONS[kind]
            else:
                raise BoltzError(
                    f"invalid value for `module`: {kind} is not a Linear layer or a supported "
                    f"activation ({', '.join(sorted(_ACTIVATIONS))})"
                )
        acts = list(activations) if activations is not None else inferred
    if not weights:
        raise BoltzError("invalid value for `module`: no Linear layers found")
    return weights, biases, acts


def _update_from_torch(self: Energy, module_or_state_dict: Any) -> None:
    """Loads a torch MLP's current weights into this native MLP, in place.

    For a training loop on the fast path: build the energy once with
    :func:`mlp_from_torch`, then after each optimiser step call
    ``energy.update_from_torch(model.net)`` (about the cost of copying the
    weights). A :class:`Negatives` on this energy keeps its persistent
    chains, replay buffer and random streams and sees the new weights from
    its next call; its saved states are tied to the architecture, not the
    weights, so they load into the same network at any point of training.
    The module (or its ``state_dict()``) must have the same layers and
    shapes as the one the energy was built from; activations, ``x_dim``,
    ``l2`` and precision are the energy's. (A :func:`torch_energy` needs no
    update: it calls the module as it is at every evaluation.)
    """
    weights, biases, _ = _mlp_params(module_or_state_dict, None, need_activations=False)
    self.load_weights(weights, biases)


Energy.update_from_torch = _update_from_torch  # type: ignore[attr-defined]


def mlp_from_torch(
    module_or_state_dict: Any,
    activations: Optional[Sequence[str]] = None,
    x_dim: int = 0,
    l2: float = 0.0,
    *,
    name: Optional[str] = None,
    precision: str = "f64",
) -> Energy:
    """boltz's native MLP energy from a torch MLP: full speed, no Python in the loop.

    ``precision="f32"`` computes in single precision, as the module does in
    torch (the weights are rounded to float32; sampler state stays float64).

    ``module_or_state_dict``: an ``nn.Sequential`` of ``Linear`` layers and
    activation modules (``SiLU``, ``ReLU``, ``Tanh``, ``Softplus``,
    ``Identity``), or its ``state_dict()`` (then ``activations`` is
    required: one name per Linear layer, ``silu``, ``relu``, ``tanh``,
    ``softplus`` or ``none``; the last is usually ``none``). Linear weights
    are in torch's (out, in) layout. The input is ``[x ; y]`` with ``x_dim``
    context columns; the last layer has one output. The energy is
    ``net([x ; y]) + 0.5 l2 |y|^2``. The weights are copied: after a
    training step, ``energy.update_from_torch(module)`` loads the new ones
    in place (a :class:`Negatives` on the energy keeps its chains and
    buffer).
    """
    weights, biases, acts = _mlp_params(module_or_state_dict, activations)
    e = _native.mlp_energy(weights, biases, [str(a) for a in acts], int(x_dim), float(l2), name)
    return e if precision == "f64" else e.with_precision(str(precision))
