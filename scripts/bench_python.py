"""W3 (ULA on `mlp`) through the Python package, next to the CLI in one run.

Chain-steps per second of 1024 chains x 100 ULA steps (step 0.01, noise
sqrt(0.02), y0 ~ N(0, I), one context row per chain; SUITE.md's W3) through
  (a) the native MLP loaded from Python (boltz.load_model("mlp")),
  (b) a NumPy callback computing the same energy and gradient,
  (c) a torch callback (boltz.torch_energy, float64; skipped without torch),
next to `boltz bench --workloads W3` (the CLI) run in the same process
tree, alternating repeats. For the callbacks, the per-step overhead of the
callback path beyond the time inside fn (lock, copying positions in and
results out, checks) is measured inside the evaluations themselves.
With torch, two more figures: the torch boundary (a trivial module,
0.5 |y|^2 at 1024 x 32, through torch_energy: the whole evaluation less
the module's forward and torch.autograd.grad's backward timed inside the
same calls; the module timed alone in torch, back to back, is given too)
and W3's ULA step
written in torch (autograd through the same module) against the same
step through torch_energy.

    python scripts/bench_python.py [--repeats 5] [--out results/python/bench_python.json]

Needs the package installed (pip install ./python) and the CLI built
(cargo build --release).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np

import boltz

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
N, STEPS, STEP = 1024, 100, 0.01


def mlp_weights():
    d = os.path.join(ROOT, "data", "mlp")
    w = [np.load(os.path.join(d, f"w{i}.npy")).astype(np.float64) for i in range(3)]
    b = [np.load(os.path.join(d, f"b{i}.npy")).astype(np.float64) for i in range(3)]
    ctx = np.load(os.path.join(d, "context.npy")).astype(np.float64)
    reps = -(-N // len(ctx))
    return w, b, np.ascontiguousarray(np.tile(ctx, (reps, 1))[:N])


def numpy_energy(w, b):
    """F(x, y) = silu(silu([x ; y] w0 + b0) w1 + b1) w2 + b2 + 0.5 |y|^2 and dF/dy."""
    x_dim = w[0].shape[0] - 32

    def fn(y, x):
        a0 = np.concatenate([x, y], axis=1) @ w[0] + b[0]
        s0 = 1.0 / (1.0 + np.exp(-a0))
        h0 = a0 * s0
        a1 = h0 @ w[1] + b[1]
        s1 = 1.0 / (1.0 + np.exp(-a1))
        h1 = a1 * s1
        e = (h1 @ w[2] + b[2])[:, 0] + 0.5 * np.einsum("ij,ij->i", y, y)
        d1 = w[2][:, 0] * (s1 * (1.0 + a1 * (1.0 - s1)))
        d0 = (d1 @ w[1].T) * (s0 * (1.0 + a0 * (1.0 - s0)))
        g = d0 @ w[0][x_dim:].T + y
        return e, g

    return fn


def torch_module(w, b):
    import torch

    net = torch.nn.Sequential(
        torch.nn.Linear(w[0].shape[0], w[0].shape[1]),
        torch.nn.SiLU(),
        torch.nn.Linear(w[1].shape[0], w[1].shape[1]),
        torch.nn.SiLU(),
        torch.nn.Linear(w[2].shape[0], 1),
    ).double()
    with torch.no_grad():
        for lin, wi, bi in zip([net[0], net[2], net[4]], w, b):
            lin.weight.copy_(torch.from_numpy(wi.T))
            lin.bias.copy_(torch.from_numpy(bi))

    class Energy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, xy):
            y = xy[:, -32:]
            return self.net(xy)[:, 0] + 0.5 * (y * y).sum(1)

    return Energy()


def torch_ula_seconds(module, ctx, seed):
    """The W3 step written in torch (the yardstick for torch_energy): 1024
    chains x 100 ULA steps of y -= step grad + sqrt(2 step) noise, the
    gradient by autograd through the same module, float64."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(ctx)
    y = torch.randn(N, 32, generator=gen, dtype=torch.float64)
    noise = (2.0 * STEP) ** 0.5
    t = time.perf_counter()
    for _ in range(STEPS):
        y.requires_grad_(True)
        e = module(torch.cat([x, y], dim=1))
        (g,) = torch.autograd.grad(e.sum(), y)
        with torch.no_grad():
            y = y - STEP * g + noise * torch.randn(N, 32, generator=gen, dtype=torch.float64)
    wall = time.perf_counter() - t
    assert bool(torch.isfinite(y).all())
    return wall


def torch_module_seconds(module, y, reps=200):
    """Seconds per forward and backward of `module` alone on the batch `y`
    (a float64 tensor), as a torch program calls it: the user's function
    inside a torch_energy call."""
    import torch

    def once():
        yt = y.detach().requires_grad_(True)
        e = module(yt)
        (g,) = torch.autograd.grad(e.sum(), yt)
        return g

    for _ in range(20):
        once()
    t = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - t) / reps


class TimedTorch:
    """The user's function as torch runs it, timed inside each call of a
    torch_energy: the module's forward (its ``forward`` run inside a
    wrapper module's, so one module call is made, as without the timer,
    and counted outside) and its backward (``torch.autograd.grad``,
    wrapped while the timer is entered). ``total()`` is (seconds, forward
    calls)."""

    def __init__(self, inner):
        import torch

        timer = self

        class Timed(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = inner

            def forward(self, y):
                t = time.perf_counter()
                out = self.inner.forward(y)
                timer.seconds += time.perf_counter() - t
                timer.calls += 1
                return out

        self.module, self.seconds, self.calls = Timed(), 0.0, 0
        self._grad = None

    def __enter__(self):
        import torch

        self._grad = grad = torch.autograd.grad

        def timed_grad(*a, **k):
            t = time.perf_counter()
            try:
                return grad(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t

        torch.autograd.grad = timed_grad
        return self

    def __exit__(self, *exc):
        import torch

        torch.autograd.grad = self._grad

    def total(self):
        return self.seconds, self.calls


def run_python(energy, ctx, seed):
    neg = boltz.Negatives(energy, kernel="ula", steps=STEPS, step_size=STEP, seed=seed)
    t = time.perf_counter()
    out = neg.sample(chains=N, context=ctx) if ctx is not None else neg.sample(chains=N)
    wall = time.perf_counter() - t
    r = neg.last_report
    assert np.all(np.isfinite(out)) and r["stats"]["divergences"] == 0
    return wall, r["stats"]["energy_neg"]


def run_cli(exe, out_dir):
    p = subprocess.run(
        [exe, "bench", "--workloads", "W3", "--repeats", "1", "--out", out_dir, "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    v = json.loads(p.stdout)
    m = [r for r in v["measurements"] if r["workload"] == "W3"][0]
    return m["wall_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "python", "bench_python.json"))
    ap.add_argument("--cli", default=os.path.join(ROOT, "target", "release", "boltz"))
    args = ap.parse_args()
    w, b, ctx = mlp_weights()
    paths = {"native": boltz.load_model("mlp"), "numpy": boltz.CallbackEnergy(numpy_energy(w, b), 32, x_dim=16, name="numpy-mlp")}
    try:
        torch_w3 = torch_module(w, b)
        paths["torch"] = boltz.torch_energy(torch_w3, dim=32, x_dim=16)
        import torch

        torch_version = torch.__version__
        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_version = None
        torch_threads = None
    # The three paths compute the same energy: check it first.
    y = np.random.default_rng(0).normal(size=(8, 32))
    ref = paths["native"].energy_and_grad(y, ctx[:8])
    for name, e in paths.items():
        got = e.energy_and_grad(y, ctx[:8])
        assert np.allclose(got[0], ref[0], rtol=1e-9, atol=1e-9), name
        assert np.allclose(got[1], ref[1], rtol=1e-8, atol=1e-8), name
    walls = {k: [] for k in ["cli", *paths]}
    # One untimed run per path first (thread pool, caches), as the CLI's bench does.
    for e in paths.values():
        run_python(e, ctx, seed=1000)
    before = {name: e.callback_stats() for name, e in paths.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            walls["cli"].append(run_cli(args.cli, tmp))
            for name, e in paths.items():
                walls[name].append(run_python(e, ctx, seed=rep)[0])
    rates = {k: [N * STEPS / s for s in v] for k, v in walls.items()}
    table = {}
    for name, e in paths.items():
        row = {
            "chain_steps_per_s_median": statistics.median(rates[name]),
            "chain_steps_per_s_all": rates[name],
            "ratio_to_cli": statistics.median(rates[name]) / statistics.median(rates["cli"]),
            "ratio_to_cli_best_of": max(rates[name]) / max(rates["cli"]),
            "us_per_step_median": statistics.median(walls[name]) / STEPS * 1e6,
        }
        after = e.callback_stats()
        if after is not None:
            # Over all the timed repeats.
            b = before[name]
            calls = after[0] - b[0]
            inside = after[1] - b[1]
            total = after[2] - b[2]
            row["callback_calls"] = calls
            row["us_inside_fn_per_call"] = inside / calls * 1e6
            row["us_overhead_per_call"] = (total - inside) / calls * 1e6
        table[name] = row
    # The callback path alone: a function that returns preallocated arrays
    # (1024 chains x 32 dims, no contexts), so the copies run on warm caches.
    E0, G0 = np.zeros(N), np.zeros((N, 32))
    trivial = boltz.CallbackEnergy(lambda y: (E0, G0), 32, name="trivial")
    run_python(trivial, None, seed=1000)
    before = trivial.callback_stats()
    tw = statistics.median([run_python(trivial, None, seed=r)[0] for r in range(args.repeats)])
    after = trivial.callback_stats()
    calls = after[0] - before[0]
    table["trivial_callback"] = {
        "note": "fn returns preallocated zeros: the cost of the callback path itself, 1024 x 32, no contexts",
        "us_per_step_median": tw / STEPS * 1e6,
        "callback_calls": calls,
        "us_inside_fn_per_call": (after[1] - before[1]) / calls * 1e6,
        "us_overhead_per_call": (after[2] - before[2] - (after[1] - before[1])) / calls * 1e6,
    }
    if "torch" in paths:
        import torch

        # The torch boundary alone: a trivial module (0.5 |y|^2, 1024 x 32)
        # through torch_energy; its overhead is the whole evaluation (boltz's
        # side and torch_energy's own tensor handling) less the module's
        # forward and backward timed inside the same calls (timed alone in
        # torch, back to back, it varies from run to run by more than the
        # overhead: given apart).
        class Quadratic(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("c", torch.tensor(0.5, dtype=torch.float64))

            def forward(self, y):
                return self.c * (y * y).sum(1)

        quad = Quadratic()
        timed = TimedTorch(quad)
        te = boltz.torch_energy(timed.module, dim=32)
        run_python(te, None, seed=1000)
        zeros = torch.zeros(N, 32, dtype=torch.float64)
        per_call, inside, alone, walls_q = [], [], [], []
        for r in range(args.repeats):
            before, t0 = te.callback_stats(), timed.total()
            with timed:
                walls_q.append(run_python(te, None, seed=r)[0])
            after, t1 = te.callback_stats(), timed.total()
            calls = after[0] - before[0]
            per_call.append((after[2] - before[2]) / calls)
            inside.append((t1[0] - t0[0]) / (t1[1] - t0[1]))
            alone.append(torch_module_seconds(quad, zeros))
        table["trivial_torch"] = {
            "note": "torch_energy of 0.5 |y|^2 (1024 x 32): overhead = whole evaluation less the module's forward and torch.autograd.grad's backward timed inside the same calls (a wrapper module, grad wrapped during the run); medians over repeats. The module alone back to back in torch is given apart: its time varies from run to run by more than the overhead",
            "us_per_step_median": statistics.median(walls_q) / STEPS * 1e6,
            "us_per_call": statistics.median(per_call) * 1e6,
            "us_module_in_call": statistics.median(inside) * 1e6,
            "us_overhead_per_call": statistics.median(a - b for a, b in zip(per_call, inside)) * 1e6,
            "us_module_alone_per_call": statistics.median(alone) * 1e6,
            "us_overhead_against_module_alone": statistics.median(a - b for a, b in zip(per_call, alone)) * 1e6,
        }
        # The W3 step written in torch against torch_energy's (the same
        # module, alternating repeats).
        written, through = [], []
        for rep in range(args.repeats):
            written.append(torch_ula_seconds(torch_w3, ctx, rep))
            through.append(run_python(paths["torch"], ctx, seed=rep)[0])
        table["torch_written"] = {
            "note": "W3's ULA step written in torch (autograd through the same module), against torch_energy's through boltz",
            "us_per_step_median": statistics.median(written) / STEPS * 1e6,
            "torch_energy_us_per_step_median": statistics.median(through) / STEPS * 1e6,
            "ratio": statistics.median(through) / statistics.median(written),
        }
    table["cli"] = {
        "chain_steps_per_s_median": statistics.median(rates["cli"]),
        "chain_steps_per_s_all": rates["cli"],
        "ratio_to_cli": 1.0,
        "ratio_to_cli_best_of": 1.0,
        "us_per_step_median": statistics.median(walls["cli"]) / STEPS * 1e6,
    }
    out = {
        "workload": "W3: ULA on mlp, 1024 chains x 100 steps, step 0.01",
        "repeats": args.repeats,
        "threads": boltz.threads(),
        "torch": torch_version,
        "torch_threads": torch_threads,
        "numpy": np.__version__,
        "results": table,
        "targets": {
            "native within 5% of the CLI (median)": table["native"]["ratio_to_cli"] >= 0.95,
            "native within 5% of the CLI (best of)": table["native"]["ratio_to_cli_best_of"] >= 0.95,
            "callback overhead <= 20 us per step (numpy MLP, W3)": table["numpy"]["us_overhead_per_call"] <= 20,
            "callback overhead <= 20 us per step (trivial fn, 1024 x 32)": table["trivial_callback"]["us_overhead_per_call"] <= 20,
        },
    }
    if "trivial_torch" in table:
        out["targets"]["torch overhead <= 50 us per call (trivial module, 1024 x 32)"] = (
            table["trivial_torch"]["us_overhead_per_call"] <= 50
        )
        out["targets"]["torch_energy ULA step within 1.2x of the step written in torch (W3)"] = (
            table["torch_written"]["ratio"] <= 1.2
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"| path | chain-steps/s (median of {args.repeats}) | vs CLI (median) | vs CLI (best) | us per step | us inside fn per call | overhead us per call |")
    print("|---|---|---|---|---|---|---|")
    for name in ["cli", *paths, "trivial_callback"]:
        r = table[name]
        rate = r.get("chain_steps_per_s_median")
        print(
            f"| {name} | {'-' if rate is None else f'{rate:,.0f}'} | {r.get('ratio_to_cli', float('nan')):.3f} | "
            f"{r.get('ratio_to_cli_best_of', float('nan')):.3f} | {r['us_per_step_median']:.0f} | "
            f"{r.get('us_inside_fn_per_call', float('nan')):.0f} | {r.get('us_overhead_per_call', float('nan')):.1f} |"
        )
    if "trivial_torch" in table:
        t, w = table["trivial_torch"], table["torch_written"]
        print(
            f"torch boundary (trivial module): {t['us_per_call']:.1f} us a call, the module inside it "
            f"{t['us_module_in_call']:.1f}, overhead {t['us_overhead_per_call']:.1f} us (module alone "
            f"{t['us_module_alone_per_call']:.1f}, overhead against it {t['us_overhead_against_module_alone']:.1f})"
        )
        print(
            f"W3 ULA step: written in torch {w['us_per_step_median']:.0f} us, through torch_energy "
            f"{w['torch_energy_us_per_step_median']:.0f} us ({w['ratio']:.3f}x)"
        )
    print(json.dumps(out["targets"]))


if __name__ == "__main__":
    main()
