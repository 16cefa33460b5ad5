"""PyTorch and safetensors paths: skipped only where the package is missing."""

import json

import numpy as np
import pytest

import boltz


def _weights(rng, sizes):
    ws = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=o) * 0.1 for o in sizes[1:]]
    return ws, bs


def _numpy_mlp(ws, bs, acts, x):
    f = {"silu": lambda a: a / (1 + np.exp(-a)), "tanh": np.tanh, "none": lambda a: a}
    h = x
    for w, b, a in zip(ws, bs, acts):
        h = f[a](h @ w.T + b)
    return h[:, 0]


def test_safetensors_mlp_in_torch_layout(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    ws, bs = _weights(rng, [5, 16, 8, 1])
    acts = ["silu", "tanh", "none"]
    tensors = {}
    for i, (w, b) in enumerate(zip(ws, bs)):
        tensors[f"net.{2 * i}.weight"] = w.astype(np.float32)
        tensors[f"net.{2 * i}.bias"] = b.astype(np.float32)
    st.save_file(tensors, str(tmp_path / "energy.safetensors"))
    model = {
        "kind": "mlp",
        "x_dim": 2,
        "safetensors": "energy.safetensors",
        "layers": [
            {"weight": f"net.{2 * i}.weight", "bias": f"net.{2 * i}.bias", "activation": a}
            for i, a in enumerate(acts)
        ],
    }
    (tmp_path / "m.json").write_text(json.dumps(model))
    e = boltz.load_model(tmp_path / "m.json")
    assert (e.dim, e.x_dim, e.kind) == (3, 2, "mlp")
    x = rng.normal(size=(6, 2))
    y = rng.normal(size=(6, 3))
    en, g = e.energy_and_grad(y, x)
    ws32 = [w.astype(np.float32).astype(np.float64) for w in ws]
    bs32 = [b.astype(np.float32).astype(np.float64) for b in bs]
    ref = _numpy_mlp(ws32, bs32, acts, np.hstack([x, y]))
    np.testing.assert_allclose(en, ref, rtol=1e-12, atol=1e-12)
    # The gradient against finite differences of the reference.
    h = 1e-6
    for j in range(3):
        dy = np.zeros_like(y)
        dy[:, j] = h
        fd = (_numpy_mlp(ws32, bs32, acts, np.hstack([x, y + dy]))
              - _numpy_mlp(ws32, bs32, acts, np.hstack([x, y - dy]))) / (2 * h)
        np.testing.assert_allclose(g[:, j], fd, rtol=1e-5, atol=1e-7)
    # A missing tensor and a wrong layout are clear errors.
    model["layers"][0]["weight"] = "net.9.weight"
    (tmp_path / "bad.json").write_text(json.dumps(model))
    with pytest.raises(boltz.BoltzError, match="no tensor `net.9.weight`"):
        boltz.load_model(tmp_path / "bad.json")
    model["layers"][0]["weight"] = "net.0.weight"
    model["layout"] = "in_out"
    (tmp_path / "bad2.json").write_text(json.dumps(model))
    with pytest.raises(boltz.BoltzError):
        boltz.load_model(tmp_path / "bad2.json")


def _torch_mlp(torch, sizes, dtype=None):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.SiLU())
    net = torch.nn.Sequential(*layers)
    if dtype is not None:
        net = net.to(dtype)
    return net


def test_torch_energy_matches_native_mlp_from_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _torch_mlp(torch, [6, 32, 32, 1], torch.float64)
    te = boltz.torch_energy(net, dim=6)
    ne = boltz.mlp_from_torch(net)
    assert (te.dim, ne.dim) == (6, 6)
    y = np.random.default_rng(1).normal(size=(9, 6))
    e1, g1 = te.energy_and_grad(y)
    e2, g2 = ne.energy_and_grad(y)
    np.testing.assert_allclose(e1, e2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12)
    # The same from the state_dict with the activations named.
    ns = boltz.mlp_from_torch(net.state_dict(), ["silu", "silu", "none"])
    np.testing.assert_allclose(ns.energy_and_grad(y)[0], e2, rtol=0, atol=0)
    # And the same draws, to rounding, through both paths (a fixed-step
    # ULA run: no accept decisions or adaptation to amplify rounding).
    a, _ = boltz.sample(te, "ula", chains=4, warmup=0, draws=50, seed=3, step_size=1e-3)
    b, _ = boltz.sample(ne, "ula", chains=4, warmup=0, draws=50, seed=3, step_size=1e-3)
    assert np.max(np.abs(a - b)) < 1e-9


def test_torch_energy_float32_and_conditional():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = _torch_mlp(torch, [5, 16, 1])  # float32, input [x ; y], x_dim 2
    te = boltz.torch_energy(net, dim=3, x_dim=2)
    x = np.random.default_rng(2).normal(size=(4, 2))
    y = np.random.default_rng(3).normal(size=(4, 3))
    e, g = te.energy_and_grad(y, x)
    ne = boltz.mlp_from_torch(net, x_dim=2)
    e2, g2 = ne.energy_and_grad(y, x)
    np.testing.assert_allclose(e, e2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g, g2, rtol=1e-4, atol=1e-5)
    # The native MLP in f32, as the module computes in torch.
    n32 = boltz.mlp_from_torch(net, x_dim=2, precision="f32")
    assert n32.precision == "f32"
    e3, g3 = n32.energy_and_grad(y, x)
    np.testing.assert_allclose(e, e3, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g, g3, rtol=1e-4, atol=1e-5)
    neg = boltz.Negatives(te, steps=5, step_size=0.01)
    out = neg.sample(chains=4, context=x)
    assert out.shape == (4, 3) and np.all(np.isfinite(out))
    # Parameter gradients are not touched by sampling.
    assert all(p.grad is None for p in net.parameters())


def test_torch_energy_takes_results_of_another_dtype_than_its_input():
    # A float64 module (its buffer) whose forward ends in float32: the
    # energies are cast back to float64 for boltz, the gradient is float64.
    torch = pytest.importorskip("torch")

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("c", torch.tensor(0.5, dtype=torch.float64))

        def forward(self, y):
            return (self.c * (y * y).sum(1)).float()

    y = np.array([[0.5, -1.0], [2.0, 0.25]])
    e, g = boltz.torch_energy(Mixed(), 2).energy_and_grad(y)
    np.testing.assert_allclose(e, 0.5 * (y * y).sum(1), rtol=1e-7)
    np.testing.assert_allclose(g, y, rtol=1e-7)
    # under the caller's torch.no_grad() the gradient is still taken
    with torch.no_grad():
        e2, g2 = boltz.torch_energy(Mixed(), 2).energy_and_grad(y)
    np.testing.assert_array_equal(e2, e)
    np.testing.assert_array_equal(g2, g)


def test_torch_energy_calls_see_only_their_own_batch():
    # torch_energy reuses its leaf tensor over boltz's buffer and the
    # backward's seed of ones from call to call: every call's results are
    # still its batch's, across batch sizes, and after a custom backward
    # wrote to its incoming gradient in place (the seed is replaced).
    torch = pytest.importorskip("torch")

    class Triple(torch.autograd.Function):
        @staticmethod
        def forward(ctx, e):
            return e.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad.mul_(3.0)  # in place, into the seed

    class Quad(torch.nn.Module):
        def __init__(self, triple):
            super().__init__()
            self.triple = triple
            self.register_buffer("c", torch.tensor(0.5, dtype=torch.float64))

        def forward(self, y):
            e = self.c * (y * y).sum(1)
            return Triple.apply(e) if self.triple else e

    rng = np.random.default_rng(5)
    module = Quad(False)
    te = boltz.torch_energy(module, 3)
    for n, triple in [(4, False), (4, False), (7, False), (4, True), (4, True), (4, False), (7, False)]:
        module.triple = triple
        y = rng.normal(size=(n, 3))
        e, g = te.energy_and_grad(y)
        np.testing.assert_allclose(e, 0.5 * (y * y).sum(1), rtol=1e-14)
        np.testing.assert_allclose(g, (3.0 if triple else 1.0) * y, rtol=1e-14)
    # a module that hooks its input at every call (here: doubling its
    # gradient) gets a fresh tensor after such a call: hooks never pile up
    class Hooked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("c", torch.tensor(1.0, dtype=torch.float64))

        def forward(self, y):
            y.register_hook(lambda g: 2.0 * g)
            return self.c * (y * y).sum(1)

    th = boltz.torch_energy(Hooked(), 3)
    for _ in range(3):
        y = rng.normal(size=(4, 3))
        np.testing.assert_allclose(th.energy_and_grad(y)[1], 4.0 * y, rtol=1e-14)
    # and through a sampler (one buffer refilled every step): the draws of
    # the same run through a NumPy callback, bit for bit
    module.triple = False
    ce = boltz.CallbackEnergy(lambda y: (0.5 * (y * y).sum(1), y.copy()), 3)
    a, _ = boltz.sample(te, "mala", chains=4, warmup=20, draws=30, seed=2)
    b, _ = boltz.sample(ce, "mala", chains=4, warmup=20, draws=30, seed=2)
    np.testing.assert_array_equal(a, b)


def test_the_backwards_seed_is_each_threads_own():
    # one energy evaluated on two threads: each keeps its own seed of ones,
    # so a backward that writes its seed in place is seen by no other
    torch = pytest.importorskip("torch")
    import threading

    from boltz._torch import _ones

    seeds, e, got = threading.local(), torch.zeros(4, dtype=torch.float64), []
    first = _ones(e, seeds)
    assert _ones(e, seeds) is first  # reused on one thread
    t = threading.Thread(target=lambda: got.append(_ones(e, seeds)))
    t.start()
    t.join()
    assert got[0] is not first and torch.equal(got[0], first)


def test_torch_energy_compiled_gives_the_eager_values():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = _torch_mlp(torch, [5, 16, 1])
    y = np.random.default_rng(3).normal(size=(4, 3))
    x = np.random.default_rng(2).normal(size=(4, 2))
    eager = boltz.torch_energy(net, dim=3, x_dim=2).energy_and_grad(y, x)
    try:
        compiled = boltz.torch_energy(net, dim=3, x_dim=2, compile=True).energy_and_grad(y, x)
    except boltz.BoltzError as err:  # no C compiler for torch's inductor here
        pytest.skip(f"torch.compile unavailable: {err}")
    np.testing.assert_allclose(compiled[0], eager[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(compiled[1], eager[1], rtol=1e-4, atol=1e-6)


def test_mlp_from_torch_refuses_unsupported_modules():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU(), torch.nn.Linear(4, 1))
    with pytest.raises(boltz.BoltzError, match="GELU"):
        boltz.mlp_from_torch(net)
    with pytest.raises(boltz.BoltzError, match="activations"):
        boltz.mlp_from_torch(net.state_dict())


def test_tensors_in_tensors_out():
    # energy_and_grad and log_prob take torch tensors (with grad, float32)
    # and answer with tensors of the input's dtype and device (issue 28).
    torch = pytest.importorskip("torch")
    e = boltz.load_model("gmm-ring")
    y = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    en, g = e.energy_and_grad(y)
    assert isinstance(en, torch.Tensor) and isinstance(g, torch.Tensor)
    assert en.dtype == torch.float64 and g.shape == (2, 2)
    ref_e, ref_g = e.energy_and_grad(y.detach().numpy())
    np.testing.assert_array_equal(en.numpy(), ref_e)
    np.testing.assert_array_equal(g.numpy(), ref_g)
    e32, _ = e.energy_and_grad(y.detach().float())
    assert e32.dtype == torch.float32
    lp = boltz.log_prob("gmm-ring", y)
    assert isinstance(lp, torch.Tensor) and lp.shape == (1, 2)
    np.testing.assert_array_equal(lp.numpy(), boltz.log_prob("gmm-ring", y.detach().numpy()))


def test_tensors_of_any_dtype_strides_and_grad_are_read_never_modified():
    # Every call taking points takes CPU tensors of float32 or float64, of
    # any strides, with or without grad, reads them without touching them
    # and answers with the input's kind (issue 28).
    torch = pytest.importorskip("torch")
    e = boltz.load_model("gmm-ring")
    base = torch.tensor([[0.5, 2.0, -1.0, 1.5], [-1.0, 0.0, 0.3, -2.0]], dtype=torch.float64)
    views = {"transposed": base.T, "every other row": base.T[::2], "float32": base.T.float()}
    views["requires grad"] = base.T.clone().requires_grad_(True)
    for label, y in views.items():
        assert not y.is_contiguous() or label == "requires grad", label
        kept = y.detach().clone()
        want_e, want_g = e.energy_and_grad(y.detach().double().contiguous().numpy())
        en, g = e.energy_and_grad(y)
        assert isinstance(en, torch.Tensor) and en.dtype == y.dtype and not en.requires_grad, label
        np.testing.assert_array_equal(en.numpy(), want_e.astype(en.numpy().dtype))
        np.testing.assert_array_equal(g.numpy(), want_g.astype(g.numpy().dtype))
        assert torch.equal(y.detach(), kept) and y.grad is None, label
    # sample's starts and Negatives' positives: tensors in, tensors out
    init = base.T[:2]
    d, _ = boltz.sample(e, "mala", chains=2, warmup=10, draws=5, seed=3, init=init, diagnostics=False)
    ref, _ = boltz.sample(e, "mala", chains=2, warmup=10, draws=5, seed=3, init=init.numpy(), diagnostics=False)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float64
    np.testing.assert_array_equal(d.numpy(), ref)
    neg = boltz.Negatives(e, steps=3, step_size=0.01, seed=1)
    out = neg.sample(base.T.float())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (4, 2)


def test_tensors_on_another_device_are_refused():
    # boltz computes on the CPU: a tensor elsewhere is refused by name,
    # unless the energy runs there (CallbackEnergy's device, set by
    # torch_energy). "meta" tensors stand in for a GPU's here.
    torch = pytest.importorskip("torch")
    e = boltz.load_model("gmm-ring")
    assert e.device == "cpu"
    meta = torch.zeros((2, 2), device="meta")
    calls = {
        "y": lambda: e.energy_and_grad(meta),
        "points": lambda: boltz.log_prob(e, meta, particles=16, temps=4),
        "init": lambda: boltz.sample(e, "mala", chains=2, warmup=1, draws=1, init=meta),
        "data": lambda: boltz.Negatives(e, steps=1).sample(meta),
    }
    for what, call in calls.items():
        with pytest.raises(boltz.BoltzError, match=f"`{what}`: a torch tensor on meta, and the energy runs on cpu"):
            call()
    cb = boltz.CallbackEnergy(lambda y: (np.zeros(len(y)), np.zeros_like(y)), 2, device="cuda")
    assert cb.device == "cuda"
    with pytest.raises(boltz.BoltzError, match="on meta, and the energy runs on cuda"):
        cb.energy_and_grad(meta)
    te = boltz.torch_energy(torch.nn.Sequential(torch.nn.Linear(2, 1)), 2)
    assert te.device == "cpu"


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(
    not _cuda(),
    reason="no CUDA device here: a torch_energy on a GPU and its tensors are untested",
)
def test_torch_energy_on_a_gpu_takes_its_tensors():
    # The energy runs on the GPU: its tensors are taken (the batch crosses
    # to the CPU once a call) and answers come back on the device.
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    cpu, gpu = boltz.torch_energy(net, 2), boltz.torch_energy(net.to("cuda"), 2)
    assert gpu.device.startswith("cuda")
    y = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    en, g = gpu.energy_and_grad(y.to("cuda"))
    assert en.device.type == "cuda" and g.device.type == "cuda"
    want_e, want_g = cpu.energy_and_grad(y)
    np.testing.assert_allclose(en.cpu().numpy(), want_e.numpy(), rtol=1e-12)
    np.testing.assert_allclose(g.cpu().numpy(), want_g.numpy(), rtol=1e-12)
    d, r = boltz.sample(gpu, "nuts", chains=2, warmup=20, draws=10, seed=1, init=y.to("cuda"), diagnostics=False)
    assert d.device.type == "cuda" and d.shape == (2, 10, 2) and r["divergences"] == 0


@pytest.mark.parametrize("method", ["pcd", "short-run"])
def test_update_from_torch_keeps_the_negatives_chains_and_buffer(method):
    # Issue 31: a training loop refreshes the native MLP in place; the
    # sampler keeps its persistent chains, replay buffer and streams, and
    # its next call equals that of a sampler built on the new weights from
    # the state saved before the update (states follow the architecture).
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1)
    ).double()
    e = boltz.mlp_from_torch(net, l2=0.5)
    arch = e.architecture
    kw = dict(method=method, steps=5, step_size=0.01, seed=3)
    if method == "short-run":
        kw.update(buffer=64)
    neg = boltz.Negatives(e, **kw)
    neg.sample(chains=32)
    before = neg.state_dict()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    e.update_from_torch(net)
    assert e.architecture == arch
    y = np.random.default_rng(1).normal(size=(5, 6))
    want = net(torch.from_numpy(y)).detach().numpy()[:, 0] + 0.25 * (y * y).sum(1)
    np.testing.assert_allclose(e.energy_and_grad(y)[0], want, rtol=1e-12, atol=1e-12)
    # The update moved nothing: chains, buffer and streams as they were.
    assert neg.state_dict() == before
    s = before["state"]
    assert len(s["persistent"] if method == "pcd" else s["buffer"]) > 0
    x2 = neg.sample()
    fresh = boltz.Negatives(boltz.mlp_from_torch(net, l2=0.5), **kw)
    fresh.load_state_dict(before)
    np.testing.assert_array_equal(fresh.sample(), x2)
    # A network of another shape cannot take the weights.
    other = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.SiLU(), torch.nn.Linear(8, 1))
    with pytest.raises(boltz.BoltzError, match="shape"):
        e.update_from_torch(other)
    np.testing.assert_allclose(e.energy_and_grad(y)[0], want, rtol=1e-12, atol=1e-12)


def test_torch_energy_checks_its_input_width_and_warns_in_training_mode():
    # Issue 28: a 64-input module given dim=63 is refused when the energy
    # is made (not by torch's shape error at the first call); a module with
    # dropout in training mode warns, and in eval mode does not.
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.SiLU(), torch.nn.Linear(8, 1))
    with pytest.raises(boltz.BoltzError, match="takes 64 inputs"):
        boltz.torch_energy(net, 63)
    with pytest.raises(boltz.BoltzError, match="takes 64 inputs"):
        boltz.torch_energy(net, 64, x_dim=2)
    drop = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Dropout(0.1), torch.nn.SiLU(), torch.nn.Linear(8, 1)
    )
    e = boltz.torch_energy(drop, 4)
    y = np.zeros((3, 4))
    with pytest.warns(UserWarning, match="training mode with Dropout"):
        e.energy_and_grad(y)
    drop.eval()
    e = boltz.torch_energy(drop, 4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e.energy_and_grad(y)
