#!/usr/bin/env python3
"""W9: training an EBM from PyTorch, boltz's native path against the same
loop in torch, interleaved iteration by iteration on one thread (issue 31).

Both models are the W8 energy, ``E(y) = net(y) + 0.5 |y|^2`` with ``net`` an
MLP 64 -> 128 -> 128 -> 1 (SiLU, float32), trained on the 8x8 digits
(``examples/models/digits.npy``, dequantised; 1500 training and 297 held-out
images) by Adam on the IGEBM loss ``E(pos) - E(neg) + 0.1 (E(pos)^2 +
E(neg)^2)``, batch 128, with 128 negatives per iteration drawn by 40 ULA
steps ``y <- y - 0.05 grad E(y) + 0.1 N(0, I)`` (so ``beta = 2 e / s^2 =
10``) from a replay buffer of 10,000 that starts as uniform noise, 5% of the
chains restarted from fresh noise and every negative written back to its
slot (JEM's buffer):

- **torch**: the SGLD loop of EBM practice in torch (``autograd.grad`` per
  step), the buffer a torch tensor, as ``scripts/train_digits_ebm.py``;
- **boltz native**: ``boltz.Negatives`` (``buffer_policy="write-back"``,
  ``end_energies=False``: 40 gradient evaluations per call) on
  ``boltz.mlp_from_torch(model.net, l2=1, precision="f32")``, the native
  MLP refreshed after every optimiser step by
  ``energy.update_from_torch(model.net)``; the loss and its gradient in
  torch.

Each path is trained ``--seeds`` times (3; seeds 0, 1, 2: other random
numbers, the same initial weights), all the runs in one process, one
iteration of each in turn (so a change in the machine's load falls on
all), torch and boltz each on one thread
(``torch.set_num_threads(1)``, ``RAYON_NUM_THREADS=1``); each iteration's
wall time is kept. After training, each model's held-out log-likelihood at
beta 10 (compared between the paths by the means over their runs: two runs
of one path differ by chance far more than one estimate's Monte Carlo
error), ``-10 E(y) - log Z(10)``, with ``log Z`` from ``boltz.logz`` (the
default method with the training digits as ``data``, as W8 recommends) and
its standard error and warnings.

    python scripts/w9_training.py [--iters 3000] [--out results/python]

writes OUT/w9.json (settings, per-iteration times, losses, held-out
figures) and OUT/w9.md (the table). Needs torch and the package
(``pip install ./python torch``); about 10 minutes on one core.
"""
from __future__ import annotations

import os

# One thread each: boltz's pool, torch, and numpy's BLAS (whose idle
# threads would otherwise spin beside them).
for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import boltz  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "examples", "models", "digits.npy")
L2 = 1.0


class Energy(torch.nn.Module):
    def __init__(self, dim: int = 64, hidden: int = 128):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, 1))

    def forward(self, y):
        return self.net(y)[:, 0] + 0.5 * L2 * (y * y).sum(1)


def digits(seed: int):
    x = np.load(DIGITS).astype(np.float64)
    rng = np.random.default_rng(seed)
    x = np.clip(x + rng.uniform(-1 / 32, 1 / 32, size=x.shape), 0.0, 1.0)
    idx = rng.permutation(len(x))
    return x[idx[:1500]], x[idx[1500:]]


def loss_of(model, pos, neg, alpha):
    e_pos, e_neg = model(pos), model(neg)
    loss = e_pos.mean() - e_neg.mean() + alpha * (e_pos**2 + e_neg**2).mean()
    return loss, e_pos.mean().item(), e_neg.mean().item()


class TorchLoop:
    """The replay-buffer SGLD loop in torch."""

    def __init__(self, args, model):
        self.a, self.model = args, model
        self.opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.0, 0.999))
        self.gen = torch.Generator().manual_seed(args.seed)
        self.buffer = torch.rand(args.buffer, 64, generator=self.gen)

    def negatives(self):
        a, g = self.a, self.gen
        idx = torch.randint(0, a.buffer, (a.batch,), generator=g)
        y = self.buffer[idx]
        fresh = torch.rand(a.batch, generator=g) < a.reinit
        y[fresh] = torch.rand(int(fresh.sum()), 64, generator=g)
        for _ in range(a.steps):
            y = y.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.model(y).sum(), y)
            y = y - a.step_size * grad + a.noise * torch.randn(y.shape, generator=g)
        y = y.detach()
        self.buffer[idx] = y
        return y

    def iteration(self, pos):
        neg = self.negatives()
        loss, e_pos, e_neg = loss_of(self.model, pos, neg, self.a.alpha)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item(), e_pos, e_neg


class NativeLoop:
    """The same loop with negatives from boltz's native MLP."""

    def __init__(self, args, model):
        self.a, self.model = args, model
        self.opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.0, 0.999))
        self.energy = boltz.mlp_from_torch(model.net, l2=L2, precision="f32")
        self.neg = boltz.Negatives(
            self.energy, method="short-run", kernel="ula", steps=args.steps,
            step_size=args.step_size, noise=args.noise, buffer=args.buffer,
            reinit=args.reinit, buffer_policy="write-back", init="uniform:0,1",
            seed=args.seed, end_energies=False)
        self.warnings = []

    def iteration(self, pos):
        neg = torch.from_numpy(self.neg.sample(chains=self.a.batch)).float()
        self.warnings.extend(self.neg.last_report["warnings"])
        loss, e_pos, e_neg = loss_of(self.model, pos, neg, self.a.alpha)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.energy.update_from_torch(self.model.net)
        return loss.item(), e_pos, e_neg


def held_out(model, train_x, test_x, args):
    """Held-out log-likelihood at beta (nats per image) with log Z's error bar."""
    energy = boltz.mlp_from_torch(model.net, l2=L2)
    e = energy.energy_and_grad(test_x)[0]
    z = boltz.logz(energy, beta=args.beta, data=train_x, seed=args.seed)
    def first(key):  # None where the estimate was withheld
        v = z.get(key)
        return None if v is None or not np.isfinite(v[0]) else float(v[0])

    log_z = first("log_z")
    out = {
        "log_z": log_z,
        "log_z_stderr": first("stderr"),
        "log_z_method": z.get("method"),
        "log_z_warnings": z["warnings"],
        "log_z_wall_s": z.get("wall_s"),
        "log_lik_se_over_images": float((-args.beta * e).std(ddof=1) / math.sqrt(len(e))),
        "energy_test_mean": float(e.mean()),
    }
    out["log_lik_mean"] = None if log_z is None else float(-args.beta * e.mean() - log_z)
    return out


def summary(times):
    t = np.asarray(times) * 1e3
    return {"ms_median": float(np.median(t)), "ms_mean": float(t.mean()),
            "ms_p10": float(np.percentile(t, 10)), "ms_p90": float(np.percentile(t, 90))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--step-size", type=float, default=0.05)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--buffer", type=int, default=10000)
    ap.add_argument("--reinit", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=3, help="training runs per path (seeds seed, seed + 1, ...)")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "python"))
    args = ap.parse_args()
    args.beta = 2 * args.step_size / args.noise**2
    torch.set_num_threads(1)
    train_x, test_x = digits(args.seed)
    torch.manual_seed(args.seed)
    init = Energy()
    paths = {"torch": TorchLoop, "boltz_native": NativeLoop}
    loops = {}
    for k in range(args.seeds):
        for path, cls in paths.items():
            model = Energy()
            model.load_state_dict(init.state_dict())  # the same initial weights
            loops[(path, args.seed + k)] = cls(argparse.Namespace(**dict(vars(args), seed=args.seed + k)), model)
    times = {p: [] for p in paths}
    logs = {k: [] for k in loops}
    rng = np.random.default_rng(args.seed)
    for it in range(args.iters):
        pos = torch.from_numpy(train_x[rng.integers(0, len(train_x), args.batch)]).float()
        order = list(loops) if it % 2 == 0 else list(reversed(loops))
        for key in order:
            t0 = time.perf_counter()
            loss, e_pos, e_neg = loops[key].iteration(pos)
            times[key[0]].append(time.perf_counter() - t0)
            if it % 100 == 0 or it == args.iters - 1:
                logs[key].append({"iter": it, "loss": loss, "energy_pos": e_pos, "energy_neg": e_neg})
        if it % 500 == 0:
            print(f"{it}: " + ", ".join(f"{k} {1e3 * np.median(v):.1f} ms" for k, v in times.items()), flush=True)

    res = {"settings": vars(args), "torch": torch.__version__, "boltz": boltz.__version__,
           "threads": {"torch": torch.get_num_threads(), "boltz": boltz.threads()},
           "runs": [], "paths": {}}
    for (path, seed), loop in loops.items():
        h = held_out(loop.model, train_x, test_x, args)
        run = {"path": path, "seed": seed, "held_out": h, "log": logs[(path, seed)]}
        if path == "boltz_native":
            run["negatives_warnings"] = sorted(set(loop.warnings))
        res["runs"].append(run)
    for path in paths:
        lls = [r["held_out"]["log_lik_mean"] for r in res["runs"] if r["path"] == path]
        given = [v for v in lls if v is not None]
        res["paths"][path] = {
            "per_iteration": summary(times[path]),
            "log_lik_runs": lls,
            "log_lik_mean": float(np.mean(given)) if given else None,
            "log_lik_sd_over_runs": float(np.std(given, ddof=1)) if len(given) > 1 else None,
        }
    pt, pn = res["paths"]["torch"], res["paths"]["boltz_native"]
    res["speedup_median"] = pt["per_iteration"]["ms_median"] / pn["per_iteration"]["ms_median"]
    if pt["log_lik_sd_over_runs"] is not None and pn["log_lik_sd_over_runs"] is not None:
        # Training runs differ by chance far more than the Monte Carlo error
        # of one run's estimate: the difference of the paths' means over
        # runs, with the standard error of that difference over runs.
        k_t, k_n = len([v for v in pt["log_lik_runs"] if v is not None]), len([v for v in pn["log_lik_runs"] if v is not None])
        res["difference_native_minus_torch"] = {
            "mean": pn["log_lik_mean"] - pt["log_lik_mean"],
            "se_over_runs": math.sqrt(pt["log_lik_sd_over_runs"] ** 2 / k_t + pn["log_lik_sd_over_runs"] ** 2 / k_n),
        }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "w9.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    rows = ["| run | held-out log-lik (nats/image) | log Z(10) | warnings |", "|---|---|---|---|"]
    for r in res["runs"]:
        h = r["held_out"]
        ll = "-" if h["log_lik_mean"] is None else (
            f"{h['log_lik_mean']:.2f} +- {h['log_z_stderr']:.2f} (log Z) +- {h['log_lik_se_over_images']:.2f} (images)")
        lz = "-" if h["log_z"] is None else f"{h['log_z']:.2f} +- {h['log_z_stderr']:.2f}"
        rows.append(f"| {r['path']}, seed {r['seed']} | {ll} | {lz} | {len(h['log_z_warnings'])} |")
    rows += ["", "| path | ms per iteration (median, p10-p90) | held-out log-lik, mean +- sd over runs |", "|---|---|---|"]
    for path, p in res["paths"].items():
        q = p["per_iteration"]
        ll = "-" if p["log_lik_mean"] is None else f"{p['log_lik_mean']:.2f} +- {p['log_lik_sd_over_runs'] or 0:.2f}"
        rows.append(f"| {path} | {q['ms_median']:.1f} ({q['ms_p10']:.1f}-{q['ms_p90']:.1f}) | {ll} |")
    text = "\n".join(rows) + f"\n\nnative speed-up (median per iteration): {res['speedup_median']:.2f}x\n"
    d = res.get("difference_native_minus_torch")
    if d is not None:
        text += (f"held-out log-lik, boltz_native - torch (means over {args.seeds} runs each): "
                 f"{d['mean']:+.2f} +- {d['se_over_runs']:.2f} nats/image\n")
    with open(os.path.join(args.out, "w9.md"), "w") as f:
        f.write(text)
    print(text)
    for r in res["runs"]:
        for w in r["held_out"]["log_z_warnings"]:
            print(f"{r['path']} seed {r['seed']}: warning: {w}")


if __name__ == "__main__":
    main()
