"""Train an energy-based model of the 8x8 digits with negatives from boltz.

The energy is a small torch MLP plus a Gaussian confinement,
``E(y) = net(y) + 0.5 |y|^2`` on images ``y`` in [0, 1]^64 (scikit-learn's
digits, scaled and dequantised; no download). Two models are trained with
the same network, optimiser, seed and number of steps:

- **contrastive**: the loss pushes the energy down on data and up on
  negatives drawn by ``boltz.Negatives`` (short-run ULA, 60 steps of step
  0.05 with noise 0.1, from a replay buffer with 5% fresh noise) on the
  native MLP ``boltz.mlp_from_torch(model.net, l2=1)``: no Python in the
  sampling loop, the weights refreshed in place after every optimiser step
  by ``energy.update_from_torch(model.net)`` (the buffer and the chains'
  streams carry on), ``end_energies=False`` (the loss evaluates the
  negatives itself, so each call costs its 60 gradient evaluations and no
  more). ``--torch-energy`` samples through ``boltz.torch_energy(model)``
  instead (the module called from Rust at every step: slower, any
  module);
- **positives only**: the same loss without the negative term. Nothing
  pushes the energy up anywhere, so it falls everywhere and the model
  learns nothing about where the data are not.

ULA with step e and noise s samples (to O(e)) ``exp(-beta E)`` with
``beta = 2 e / s^2`` (here 10): that is the density training fits, so both
models are scored on held-out digits by ``log p(y) = -beta E(y) - log Z(beta)``
with ``log Z(beta)`` from ``boltz.logz`` (its default method with the
training digits as ``data``, on the native MLP) and its standard error and
warnings, next to a diagonal Gaussian fitted to the training digits
(exact). The negatives are not clamped to the pixel box: a density on R^64
must be trained where its mass can go (with ``--clamp`` the energy outside
the box is never pushed up and the held-out likelihood collapses). Figures
go to results/python/train_digits.json, the negatives next to data to
results/python/digits_negatives.png and the losses to
results/python/digits_training.png.

    pip install ./python torch scikit-learn matplotlib
    python examples/python/train_digits.py            # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch

import boltz

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "results", "python")
L2 = 1.0  # the confinement 0.5 L2 |y|^2 (a N(0, 1) prior per pixel)


def digits(seed: int):
    from sklearn.datasets import load_digits

    x = load_digits().data / 16.0  # (1797, 64) in [0, 1], 17 grey levels
    rng = np.random.default_rng(seed)
    x = np.clip(x + rng.uniform(-1 / 32, 1 / 32, size=x.shape), 0.0, 1.0)  # dequantise
    idx = rng.permutation(len(x))
    return x[idx[:1500]], x[idx[1500:]]


class Energy(torch.nn.Module):
    """net(y) + 0.5 L2 |y|^2, with net an nn.Sequential boltz can read natively."""

    def __init__(self, dim: int = 64, hidden: int = 128):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, 1),
        )

    def forward(self, y):
        return self.net(y)[:, 0] + 0.5 * L2 * (y * y).sum(1)


def train(contrastive: bool, train_x, args):
    torch.manual_seed(args.seed)
    model = Energy().double()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.0, 0.999))
    if args.torch_energy:
        energy = boltz.torch_energy(model, dim=64)  # follows the module by itself
    else:
        energy = boltz.mlp_from_torch(model.net, l2=L2)
    neg = boltz.Negatives(
        energy,
        method="short-run",
        kernel="ula",
        steps=args.steps,
        step_size=args.step_size,
        noise=args.noise,
        buffer=args.buffer,
        reinit=0.05,
        clamp=(0.0, 1.0) if args.clamp else None,
        seed=args.seed,
        init="uniform:0,1",
        end_energies=False,
    )
    rng = np.random.default_rng(args.seed)
    log = []
    t0 = time.time()
    sampling_s = 0.0
    for it in range(args.iters):
        batch = train_x[rng.integers(0, len(train_x), args.batch)]
        pos = torch.from_numpy(batch)
        e_pos = model(pos)
        if contrastive:
            ts = time.time()
            y = neg.sample(batch)
            sampling_s += time.time() - ts
            e_neg = model(torch.from_numpy(y))
            loss = e_pos.mean() - e_neg.mean() + args.alpha * (e_pos**2 + e_neg**2).mean()
        else:
            e_neg = torch.zeros(1, dtype=pos.dtype)
            loss = e_pos.mean() + args.alpha * (e_pos**2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if not args.torch_energy:
            energy.update_from_torch(model.net)  # new weights, same chains and buffer
        if it % 25 == 0 or it == args.iters - 1:
            log.append(
                {
                    "iter": it,
                    "loss": loss.item(),
                    "energy_pos": e_pos.mean().item(),
                    "energy_neg": e_neg.mean().item() if contrastive else None,
                }
            )
    return model, neg, log, time.time() - t0, sampling_s


def held_out(model, train_x, test_x, args):
    """Mean held-out log-likelihood (nats per image) with its standard error."""
    native = boltz.mlp_from_torch(model.net, l2=L2)
    # The native MLP is the torch energy: check it on the test digits.
    e_native = native.energy_and_grad(test_x)[0]
    e_torch = model(torch.from_numpy(test_x)).detach().numpy()
    assert np.allclose(e_native, e_torch, rtol=1e-9, atol=1e-9)
    beta = args.beta
    # The training digits start the pilot in the model's wells (without
    # them a pilot from noise can miss the wells: README, workload W8).
    z = boltz.logz(native, data=train_x, seed=args.seed, beta=beta)
    ll = -beta * e_native - z["log_z"][0]
    return {
        "beta": beta,
        "log_lik_mean": float(ll.mean()),
        "log_lik_se_from_log_z": float(z["stderr"][0]),
        "log_lik_se_over_images": float(ll.std(ddof=1) / math.sqrt(len(ll))),
        "log_z": float(z["log_z"][0]),
        "log_z_stderr": float(z["stderr"][0]),
        "log_z_method": z["method"],
        "log_z_warnings": z["warnings"],
        "pilot_rhat": z.get("pilot_rhat"),
    }


def gaussian_baseline(train_x, test_x):
    m, v = train_x.mean(0), train_x.var(0) + 1e-4
    ll = -0.5 * (((test_x - m) ** 2) / v + np.log(2 * math.pi * v)).sum(1)
    return {"log_lik_mean": float(ll.mean()), "log_lik_se_over_images": float(ll.std(ddof=1) / math.sqrt(len(ll)))}


def grid(images, rows, cols):
    g = np.ones((rows * 9 + 1, cols * 9 + 1))
    for k, im in enumerate(images[: rows * cols]):
        r, c = divmod(k, cols)
        g[1 + 9 * r : 9 + 9 * r, 1 + 9 * c : 9 + 9 * c] = im.reshape(8, 8)
    return g


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--step-size", type=float, default=0.05)
    ap.add_argument("--noise", type=float, default=0.1, help="ULA noise std; a negative value: the Langevin sqrt(2 step)")
    ap.add_argument("--clamp", action="store_true", help="keep negatives in the [0, 1] box (the density then is not trained outside it)")
    ap.add_argument("--buffer", type=int, default=10000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-energy", action="store_true", help="sample through boltz.torch_energy(model) instead of the native MLP")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    if args.noise < 0:
        args.noise = None
    # ULA with noise s and step e samples exp(-beta E) with beta = 2 e / s^2
    # (its stationary law, to O(e)): the model training fits is the EBM at
    # that beta, so log-likelihoods are of p_beta(y) = exp(-beta E(y)) / Z(beta).
    args.beta = 1.0 if args.noise is None else 2 * args.step_size / args.noise**2
    os.makedirs(args.out, exist_ok=True)
    train_x, test_x = digits(args.seed)

    results = {"settings": vars(args), "train_images": len(train_x), "test_images": len(test_x)}
    samples = {}
    for name, contrastive in (("contrastive", True), ("positives_only", False)):
        model, neg, log, wall, sampling_s = train(contrastive, train_x, args)
        # Negatives of the final model (fresh short-run chains from noise, more steps).
        final = boltz.Negatives(
            boltz.mlp_from_torch(model.net, l2=L2), kernel="ula", steps=4 * args.steps,
            step_size=args.step_size, noise=args.noise,
            clamp=(0.0, 1.0) if args.clamp else None, seed=1,
            init="uniform:0,1",
        ).sample(chains=64)
        samples[name] = final
        with torch.no_grad():
            e_test = model(torch.from_numpy(test_x)).mean().item()
            noise = np.random.default_rng(5).uniform(0, 1, size=test_x.shape)
            e_noise = model(torch.from_numpy(noise)).mean().item()
        results[name] = {
            "train_wall_s": wall,
            "negatives_wall_s": sampling_s,
            "energy_test_mean": e_test,
            "energy_uniform_noise_mean": e_noise,
            "energy_gap_noise_minus_test": e_noise - e_test,
            "held_out": held_out(model, train_x, test_x, args),
            "log": log,
        }
        print(
            f"{name}: {wall:.1f} s ({sampling_s:.1f} s in boltz.Negatives); "
            f"E(test) {e_test:.2f}, E(noise) {e_noise:.2f}; held-out log-lik "
            f"{results[name]['held_out']['log_lik_mean']:.2f} "
            f"+- {results[name]['held_out']['log_lik_se_from_log_z']:.2f} (log Z) "
            f"+- {results[name]['held_out']['log_lik_se_over_images']:.2f} (images) nats/image"
        )
        for w in results[name]["held_out"]["log_z_warnings"]:
            print(f"  warning: {w}")
    results["diagonal_gaussian"] = gaussian_baseline(train_x, test_x)
    print(f"diagonal Gaussian: held-out log-lik {results['diagonal_gaussian']['log_lik_mean']:.2f} nats/image")
    results["boltz_version"] = boltz.__version__
    results["threads"] = boltz.threads()
    with open(os.path.join(args.out, "train_digits.json"), "w") as f:
        json.dump(results, f, indent=1)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    panels = [
        ("held-out data", test_x),
        ("negatives, contrastive EBM", samples["contrastive"]),
        ("negatives, positives-only EBM", samples["positives_only"]),
    ]
    for ax, (title, ims) in zip(axes, panels):
        ax.imshow(grid(ims, 8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "digits_negatives.png"), dpi=100)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("contrastive", "positives_only"):
        lg = results[name]["log"]
        ax.plot([r["iter"] for r in lg], [r["energy_pos"] for r in lg], label=f"{name}: E(data)")
    lg = results["contrastive"]["log"]
    ax.plot([r["iter"] for r in lg], [r["energy_neg"] for r in lg], "--", label="contrastive: E(negatives)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean energy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "digits_training.png"), dpi=100)
    print(f"wrote {args.out}/train_digits.json, digits_negatives.png, digits_training.png")


if __name__ == "__main__":
    main()
