#!/usr/bin/env python3
"""W8 side by side (issue 27): log Z of the trained digits EBMs and of the
digits Gaussian mixture by boltz's annealed SMC and by BlackJAX's adaptive
tempered SMC, seed by seed, in one sitting.

    python scripts/w8_blackjax.py [SEEDS] [OUT_DIR]

needs a Python with jax and blackjax (e.g. `pip install jax==0.10.2
jaxlib==0.10.2 blackjax==1.7.1`, the versions of ../shared/peers/setup.sh)
and target/release/boltz (build it first). Writes OUT_DIR (default
results/issue27)/w8_peers.jsonl (one line per run) and w8_peers.md.

Both sides get the same information: the digits the models were trained
on. boltz: `boltz logz --method smc --data digits.npy` (its defaults: 1024
particles, temperatures chosen by conditional ESS 0.99, 5 MALA moves per
temperature with steps re-tuned per temperature, 8 islands; the pilot that
fits its Gaussian base starts at the digits; for the mixture, which has an
exact answer, no data: the over-dispersed pilot). BlackJAX (the idiomatic
use, as ../shared/peers/jax_peers.py runs it on W4):
`adaptive_tempered_smc`, 1024 particles, target ESS 0.5 (the peers'
setting) and 0.9, systematic
resampling, MALA moves with one fixed step, from the prior N(m, diag(v +
0.01)) with m and v the digits' mean and variance (the data-fitted
Gaussian; 0.01 is the training noise 0.1 squared). Its MALA step is the
largest of a grid whose acceptance at the target (from 1024 digits, 100
steps; evaluations not counted) is at least 0.5, and its moves per
temperature are chosen so that its energy evaluations (N (1 + T (K + 2)):
the ESS solver's evaluation, the MALA init of the resampled particles and
K moves per temperature) are near boltz's median.

Error: against the exact 0 for the mixture; for the EBMs against the best
estimate we have, the pooled given estimates of `scripts/w8_logz.py` (the
default `check`, AIS + SMC twice + PT, with data) in w8.jsonl.
"""
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

import blackjax  # noqa: E402
from blackjax.smc import resampling  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOLTZ = os.path.join(ROOT, "target", "release", "boltz")
MODELS = os.path.join(ROOT, "examples", "models")
DATA = os.path.join(MODELS, "digits.npy")
N = 1024
# BlackJAX's target ESS per temperature: the peers' W4 setting and a gentler one.
TARGET_ESS = [0.5, 0.9]
STEPS = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2]

# (case, model, beta, boltz gets the data, w8.jsonl case for the best estimate)
CASES = [
    ("b10 at beta 10", "digits-ebm-b10", 10.0, True, "b10 at beta 10, data"),
    ("b1 at beta 1", "digits-ebm-b1", 1.0, True, "b1 at beta 1, data"),
    ("digits-gmm (exact 0)", "digits-gmm", 1.0, False, None),
]


def safetensors(path):
    """name -> float64 array (the format: u64 header length, JSON header, data)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8:8 + n])
    types = {"F32": np.float32, "F64": np.float64}
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], types[v["dtype"]]).reshape(v["shape"]).astype(np.float64)
    return out


def energy_of(model):
    """F(y) of one point, in JAX, from the model file."""
    d = os.path.join(MODELS, model)
    spec = json.load(open(os.path.join(d, "model.json")))
    if spec["kind"] == "mlp":
        t = safetensors(os.path.join(d, spec["safetensors"]))
        layers = [(jnp.asarray(t[l["weight"]]), jnp.asarray(t[l["bias"]]), l["activation"])
                  for l in spec["layers"]]
        l2 = spec.get("l2", 0.0)

        def F(y):
            h = y
            for w, b, act in layers:
                h = h @ w.T + b  # torch layout: (out, in)
                if act == "silu":
                    h = h * jax.nn.sigmoid(h)
            return h[0] + 0.5 * l2 * jnp.sum(y * y)
        return F
    w = np.load(os.path.join(d, spec["weights"]))
    mu = jnp.asarray(np.load(os.path.join(d, spec["means"])))
    L = jnp.asarray(np.load(os.path.join(d, spec["precision_cholesky"])))
    dim = mu.shape[1]
    # scikit-learn's convention: precision = L L^T, log N = sum log diag L - |(y - mu) L|^2 / 2 - d/2 log 2 pi.
    logc = jnp.log(jnp.asarray(w)) + jnp.sum(jnp.log(jnp.diagonal(L, axis1=1, axis2=2)), axis=1) \
        - 0.5 * dim * math.log(2 * math.pi)

    def F(y):
        z = jnp.einsum("kd,kde->ke", y[None, :] - mu, L)
        return -jax.scipy.special.logsumexp(logc - 0.5 * jnp.sum(z * z, axis=1))
    return F


def boltz_smc(model, beta, seed, data):
    args = [BOLTZ, "logz", "--quiet", "--json", "--method", "smc", "--model",
            os.path.join(MODELS, model, "model.json"), "--beta", str(beta), "--seed", str(seed)]
    if data:
        args += ["--data", DATA]
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    r = json.loads(out.stdout)
    return {"log_z": r["log_z"][0] if isinstance(r["log_z"], list) else r["log_z"],
            "stderr": r["stderr"][0] if isinstance(r["stderr"], list) else r["stderr"],
            "energy_evals": r["energy_evals"], "wall_s": wall, "warnings": r["warnings"]}


def choose_step(logdensity, start, key):
    """The largest step of STEPS whose MALA acceptance at the target, 100
    steps from `start`, is at least 0.5 (the smallest if none is)."""
    best = STEPS[0]
    for eps in STEPS:
        kernel = blackjax.mala(logdensity, eps)
        state = jax.vmap(kernel.init)(start)

        @jax.jit
        def run(state, key):
            def body(s, k):
                s, info = jax.vmap(kernel.step)(jax.random.split(k, start.shape[0]), s)
                return s, jnp.mean(info.acceptance_rate)
            return lax.scan(body, state, jax.random.split(key, 100))
        _, acc = run(state, key)
        if float(jnp.mean(acc[50:])) >= 0.5:
            best = eps
    return best


def blackjax_smc(F, beta, m, v, eps, k_moves, seed, target_ess):
    dim = m.shape[0]
    mean, var = jnp.asarray(m), jnp.asarray(v)
    logz0 = -0.5 * jnp.sum(jnp.log(2 * math.pi * var))
    logprior = lambda y: -0.5 * jnp.sum((y - mean) ** 2 / var) + logz0
    loglik = lambda y: -beta * F(y) - logprior(y)

    def mcmc_step(key, state, logdensity_fn, step_size):
        return blackjax.mala.build_kernel()(key, state, logdensity_fn, step_size)

    smc = blackjax.adaptive_tempered_smc(logprior, loglik, mcmc_step, blackjax.mala.init,
                                         {"step_size": jnp.full((1,), eps)}, resampling.systematic,
                                         target_ess=target_ess, num_mcmc_steps=k_moves)

    @jax.jit
    def run(key):
        k0, key = jax.random.split(key)
        st = smc.init(mean + jnp.sqrt(var) * jax.random.normal(k0, (N, dim)))

        def cond(c):
            return c[0].tempering_param < 1

        def body(c):
            st, k, lz, n, acc = c
            k, sub = jax.random.split(k)
            st, info = smc.step(sub, st)
            return st, k, lz + info.log_likelihood_increment, n + 1, acc + jnp.mean(info.update_info.acceptance_rate)
        st, _, lz, n, acc = lax.while_loop(cond, body, (st, key, jnp.zeros(()), 0, jnp.zeros(())))
        return lz, n, acc / n
    t0 = time.perf_counter()
    compiled = run.lower(jax.random.PRNGKey(seed)).compile()
    tc = time.perf_counter() - t0
    t0 = time.perf_counter()
    lz, n, acc = jax.block_until_ready(compiled(jax.random.PRNGKey(seed)))
    wall = time.perf_counter() - t0
    n = int(n)
    return {"log_z": float(lz), "temps": n, "acceptance": float(acc), "compile_s": tc, "wall_s": wall,
            "energy_evals": N * (1 + n * (k_moves + 2))}


def best_estimates(out_dir):
    """Pooled (inverse-variance) given estimates per w8.jsonl case."""
    best = {}
    path = os.path.join(out_dir, "w8.jsonl")
    rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    for case in {r["case"] for r in rows}:
        est = [(r["log_z"], r["stderr"]) for r in rows if r["case"] == case and r["log_z"] is not None]
        if est:
            w = sum(1 / s ** 2 for _, s in est)
            best[case] = (sum(l / s ** 2 for l, s in est) / w, w ** -0.5, len(est))
    return best


def main():
    argv = sys.argv[1:]
    seeds = int(argv[0]) if argv else 5
    out_dir = argv[1] if len(argv) > 1 else os.path.join(ROOT, "results", "issue27")
    best = best_estimates(out_dir)
    digits = np.load(DATA).astype(np.float64)
    m, v = digits.mean(0), digits.var(0) + 0.01
    rows = []
    for case, model, beta, data, ref_case in CASES:
        F = energy_of(model)
        ref = (0.0, 0.0, None) if ref_case is None else best[ref_case]
        b = [boltz_smc(model, beta, s, data) for s in range(seeds)]
        evals = sorted(r["energy_evals"] for r in b)[seeds // 2]
        logdensity = lambda y: -beta * F(y)
        start = jnp.asarray(digits[np.linspace(0, len(digits) - 1, N).astype(int)])
        eps = choose_step(logdensity, start, jax.random.PRNGKey(0))
        for ess in TARGET_ESS:
            # Moves per temperature: a first run with 10 gives the
            # temperatures T; then K with N (1 + T (K + 2)) nearest boltz's
            # median evaluations.
            probe = blackjax_smc(F, beta, m, v, eps, 10, 10_000, ess)
            k = max(1, round((evals / N - 1) / probe["temps"] - 2))
            print(f"{case}: boltz median {evals} evaluations; BlackJAX target ESS {ess}, step {eps}, "
                  f"{probe['temps']} temperatures at 10 moves, so {k} moves", file=sys.stderr, flush=True)
            for s in range(seeds):
                j = blackjax_smc(F, beta, m, v, eps, k, s, ess)
                j.update({"step_size": eps, "moves": k, "target_ess": ess})
                rows.append({"case": case, "peer": f"blackjax adaptive_tempered_smc (ESS {ess})", "seed": s,
                             "reference": ref[0], "reference_se": ref[1], "error": j["log_z"] - ref[0], **j})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        for s in range(seeds):
            rows.append({"case": case, "peer": "boltz smc", "seed": s, "reference": ref[0],
                         "reference_se": ref[1], "error": b[s]["log_z"] - ref[0], **b[s]})
    with open(os.path.join(out_dir, "w8_peers.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    lines = ["# W8 side by side: boltz SMC and BlackJAX adaptive tempered SMC", "",
             f"`python scripts/w8_blackjax.py {seeds}` (jax {jax.__version__}, blackjax "
             f"{blackjax.__version__}; settings in the script's docstring). Error: against 0 for the mixture,",
             "against the pooled `check` estimates of w8.md for the EBMs (reference se in brackets).",
             "rms z: root mean square of error / reported se (boltz; BlackJAX reports no se).", "",
             "| case | peer | reference | mean error | rms error | rms z | median energy evals | median wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for case, *_ in CASES:
        for peer in ["boltz smc"] + [f"blackjax adaptive_tempered_smc (ESS {e})" for e in TARGET_ESS]:
            rs = [r for r in rows if r["case"] == case and r["peer"] == peer]
            if not rs:
                continue
            err = [r["error"] for r in rs]
            z = [r["error"] / r["stderr"] for r in rs if r.get("stderr")]
            med = lambda key: sorted(r[key] for r in rs)[len(rs) // 2]
            lines.append(
                f"| {case} | {peer} | {rs[0]['reference']:.3f} ({rs[0]['reference_se']:.3f}) "
                f"| {sum(err) / len(err):+.3f} | {math.sqrt(sum(e * e for e in err) / len(err)):.3f} "
                f"| {math.sqrt(sum(x * x for x in z) / len(z)):.2f} | {med('energy_evals'):,} "
                f"| {med('wall_s'):.2f} |" if z else
                f"| {case} | {peer} | {rs[0]['reference']:.3f} ({rs[0]['reference_se']:.3f}) "
                f"| {sum(err) / len(err):+.3f} | {math.sqrt(sum(e * e for e in err) / len(err)):.3f} "
                f"| - | {med('energy_evals'):,} | {med('wall_s'):.2f} |")
    lines += ["", "## Every run", "", "| case | peer | seed | log Z | se | error | energy evals | wall s | notes |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        se = f"{r['stderr']:.3f}" if r.get("stderr") else "-"
        note = (f"ESS {r['target_ess']}, step {r['step_size']}, {r['moves']} moves, {r['temps']} temps, accept {r['acceptance']:.2f}, "
                f"compile {r['compile_s']:.1f} s" if "moves" in r else "; ".join(r.get("warnings", [])))
        lines.append(f"| {r['case']} | {r['peer']} | {r['seed']} | {r['log_z']:.3f} | {se} | {r['error']:+.3f} "
                     f"| {r['energy_evals']:,} | {r['wall_s']:.2f} | {note} |")
    with open(os.path.join(out_dir, "w8_peers.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
