#!/usr/bin/env python3
"""Trains the digits EBMs of workload W8 (issue 27) with the standard
replay-buffer SGLD loop of EBM practice, in plain PyTorch (no boltz), and
writes each as a boltz model file with safetensors weights.

The energy is ``E(y) = net(y) + 0.5 |y|^2`` (the confinement keeps
``exp(-beta E)`` normalisable on R^64), ``net`` an MLP 64 -> 128 -> 128 -> 1
with SiLU; images are scikit-learn's 8x8 digits scaled to [0, 1] and
dequantised. Each iteration draws 128 negatives by 40 SGLD steps
``y <- y - e grad E(y) + s N(0, I)`` started from a replay buffer of 10,000
(5% fresh uniform noise), and takes one Adam step on the IGEBM loss
``E(pos) - E(neg) + 0.1 (E(pos)^2 + E(neg)^2)``; 3000 iterations. SGLD with
step e and noise s samples ``exp(-beta E)`` with ``beta = 2 e / s^2``, the
density training fits:

- ``digits-ebm-b10``: e = 0.05, s = 0.1 (beta 10, the noise EBM code uses);
- ``digits-ebm-b1``: e = 0.005, s = 0.1 (beta 1, Langevin's own noise).

    python3 -m venv /tmp/v && /tmp/v/bin/pip install torch numpy scikit-learn safetensors
    /tmp/v/bin/python scripts/train_digits_ebm.py [OUT_DIR]     # ~3 minutes a model, 1 thread

writes OUT_DIR (default examples/models)/digits-ebm-b{10,1}/ model.json,
energy.safetensors (float32, as trained) and train.json (settings, losses,
wall time), and OUT_DIR/digits.npy (the 1797 digits scaled to [0, 1],
float32: the positives `boltz logz --data` starts its pilot at). The weights depend on the torch version's kernels; the files
shipped are the benchmark, the script says how they were made.
"""
import json
import os
import sys
import time

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "digits-ebm-b10": {"step": 0.05, "noise": 0.1},
    "digits-ebm-b1": {"step": 0.005, "noise": 0.1},
}
SETTINGS = {"iters": 3000, "batch": 128, "steps": 40, "buffer": 10000, "reinit": 0.05,
            "lr": 1e-3, "alpha": 0.1, "l2": 1.0, "hidden": 128, "seed": 0}


class Energy(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, 1))

    def forward(self, y):
        return self.net(y)[:, 0] + 0.5 * SETTINGS["l2"] * (y * y).sum(1)


def sgld(model, y, step, noise, steps):
    for _ in range(steps):
        y = y.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(y).sum(), y)
        y = y - step * g + noise * torch.randn_like(y)
    return y.detach()


def train(name, step, noise, out):
    s = SETTINGS
    torch.manual_seed(s["seed"])
    rng = np.random.default_rng(s["seed"])
    x = load_digits().data / 16.0
    x = np.clip(x + rng.uniform(-1 / 32, 1 / 32, size=x.shape), 0.0, 1.0)
    data = torch.from_numpy(x).float()
    model = Energy(64, s["hidden"])
    opt = torch.optim.Adam(model.parameters(), lr=s["lr"], betas=(0.0, 0.999))
    buffer = torch.rand(s["buffer"], 64)
    log, t0 = [], time.time()
    for it in range(s["iters"]):
        pos = data[torch.randint(0, len(data), (s["batch"],))]
        idx = torch.randint(0, s["buffer"], (s["batch"],))
        y0 = buffer[idx]
        fresh = torch.rand(s["batch"]) < s["reinit"]
        y0[fresh] = torch.rand(int(fresh.sum()), 64)
        neg = sgld(model, y0, step, noise, s["steps"])
        buffer[idx] = neg
        e_pos, e_neg = model(pos), model(neg)
        loss = e_pos.mean() - e_neg.mean() + s["alpha"] * (e_pos**2 + e_neg**2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 100 == 0 or it == s["iters"] - 1:
            log.append({"iter": it, "loss": loss.item(), "energy_pos": e_pos.mean().item(),
                        "energy_neg": e_neg.mean().item()})
            print(f"{name} {it}: loss {loss.item():.3f}, E(pos) {e_pos.mean().item():.2f}, "
                  f"E(neg) {e_neg.mean().item():.2f}", file=sys.stderr)
    wall = time.time() - t0
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              os.path.join(d, "energy.safetensors"))
    layers = [{"weight": f"net.{i}.weight", "bias": f"net.{i}.bias", "activation": a}
              for i, a in ((0, "silu"), (2, "silu"), (4, "none"))]
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump({"kind": "mlp", "x_dim": 0, "l2": s["l2"], "safetensors": "energy.safetensors",
                   "layers": layers}, f)
        f.write("\n")
    with open(os.path.join(d, "train.json"), "w") as f:
        json.dump({"settings": dict(s, step=step, noise=noise, beta=2 * step / noise**2),
                   "torch": torch.__version__, "wall_s": round(wall, 1), "log": log}, f, indent=1)
        f.write("\n")
    print(f"{name}: {wall:.0f} s, beta {2 * step / noise**2:g}, wrote {d}", file=sys.stderr)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "examples", "models")
    torch.set_num_threads(1)
    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "digits.npy"), (load_digits().data / 16.0).astype(np.float32))
    for name, m in MODELS.items():
        train(name, m["step"], m["noise"], out)


if __name__ == "__main__":
    main()
