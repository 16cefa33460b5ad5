"""W7: six real posteriors (posteriordb) through the Python package, next to
NumPyro's NUTS on the same JAX density, in one run.

For each posterior of examples/python/posteriors (its log density written
in JAX and in torch, unconstrained as Stan samples it):
  - boltz NUTS and AutoStep HMC on ``post.jax_energy()`` (float64; NUTS
    through the energy's compiled leapfrog loop: one Python call per
    doubling, a diagonal mass as NumPyro's; AutoStep HMC with a dense
    mass, ``dense_mass=True``: its fixed 16-step trajectories cannot
    cross kilpisjarvi's ridge otherwise; warm-up with Stan's expanding
    mass windows, as NumPyro's),
    each run twice as NumPyro is: the first (seed + 1000) compiles the
    energy's functions (the plain one and a loop per power of 8 of
    steps), the second's time is the figure compared,
  - boltz NUTS on ``post.torch_energy()`` (float64; ``--torch-kernels``
    adds ``autohmc``; torch's per-call cost makes it the slow path),
  - NumPyro NUTS (``potential_fn`` = the same JAX function, diagonal mass,
    target acceptance 0.8), its chains run one after another
    (``sequential``) and together (``vectorized``), each run twice: the
    second run's wall time is the compiled sampler alone (the figure
    compared), the first includes JIT. "vs NumPyro" divides by the better
    of the two.
Every run: 4 chains, 1000 warm-up + 1000 draws, starts uniform(-2, 2) in
the unconstrained space (Stan's and NumPyro's default), then each
parameter's mean is held against the reference draws' (within 4 combined
MCSE) and its sd (within 10%); min bulk ESS of the constrained parameters
(ArviZ's definition, boltz.diagnose for every sampler) per second of
sampling. The per-call cost of the callback path is measured apart:
boltz's side (an energy returning zeros, HMC with one leapfrog step) and
the compiled JAX function alone, both on 4 rows.

    pip install "./python[jax]" torch numpyro
    python scripts/w7.py [--posteriors NAME ...] [--out results/python/w7]   # ~70 min on 2 cores

Writes OUT.json (every figure and check) and OUT.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "examples", "python"))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import boltz  # noqa: E402
from posteriors import NAMES, load  # noqa: E402

CHAINS, WARMUP, DRAWS = 4, 1000, 1000


def summarise(post, draws_u, wall_s, grads, extra):
    """Checks and figures of unconstrained draws (chains, draws, dim)."""
    draws = post.constrain(draws_u)
    rows = post.check(draws)
    ess = min(r["ess_bulk"] for r in rows)
    return {
        "wall_s": wall_s,
        "grad_evals": int(grads),
        "ess_bulk_min": ess,
        "ess_per_s": ess / wall_s,
        "checks_pass": all(r["ok"] for r in rows),
        "max_abs_z": max(abs(r["z"]) for r in rows),
        "max_sd_dev": max(abs(r["sd_ratio"] - 1.0) for r in rows),
        "params": rows,
        **extra,
    }


MASS_WINDOWS = "expanding"


def run_boltz(post, energy, kernel, seed, compiled, dense=False):
    """One boltz run; ``compiled`` (a JAX energy): run twice, as NumPyro is,
    the first (seed + 1000) compiling the energy's functions, the second
    (``seed``) the figure compared."""
    first = None
    if compiled:
        init = np.random.default_rng(seed + 1000).uniform(-2.0, 2.0, (CHAINS, post.dim))
        _, r = boltz.sample(
            energy, sampler=kernel, chains=CHAINS, warmup=WARMUP, draws=DRAWS, seed=seed + 1000,
            init=init, mass_windows=MASS_WINDOWS, dense_mass=dense, diagnostics=False,
        )
        first = r["sampling_s"]
    init = np.random.default_rng(seed).uniform(-2.0, 2.0, (CHAINS, post.dim))
    calls0 = energy.callback_stats()[0]
    d, r = boltz.sample(
        energy, sampler=kernel, chains=CHAINS, warmup=WARMUP, draws=DRAWS, seed=seed, init=init,
        mass_windows=MASS_WINDOWS, dense_mass=dense,
    )
    return summarise(
        post,
        d,
        r["sampling_s"],
        r["grad_evals"],
        {
            "warnings": r["warnings"],
            "divergences": r.get("divergences"),
            "step_size": r.get("step_size"),
            "python_calls": energy.callback_stats()[0] - calls0,
            "wall_s_with_jit": first,
        },
    )


def run_numpyro(post, seed, method):
    import numpyro
    from numpyro.infer import MCMC, NUTS

    lp = post.log_density_jax()
    out = {}
    for attempt in ("first", "second"):
        s = seed if attempt == "first" else seed + 1000
        init = np.random.default_rng(s).uniform(-2.0, 2.0, (CHAINS, post.dim))
        mcmc = MCMC(
            NUTS(potential_fn=lambda u: -lp(u), target_accept_prob=0.8),
            num_warmup=WARMUP,
            num_samples=DRAWS,
            num_chains=CHAINS,
            chain_method=method,
            progress_bar=False,
        )
        t = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(s), init_params=jax.numpy.asarray(init), extra_fields=("num_steps", "diverging"))
        samples = np.asarray(mcmc.get_samples(group_by_chain=True))
        wall = time.perf_counter() - t
        ex = mcmc.get_extra_fields(group_by_chain=True)
        out[attempt] = (samples, wall, int(np.sum(ex["num_steps"])), int(np.sum(ex["diverging"])))
    samples, wall, steps, div = out["second"]
    res = summarise(post, samples, wall, steps, {"divergences": div, "wall_s_with_jit": out["first"][1]})
    res["numpyro"] = numpyro.__version__
    return res


def per_call_costs(post):
    """Microseconds per evaluation of 4 rows: boltz's side and the compiled JAX function alone."""
    calls = [0]

    def zeros(y):
        calls[0] += 1
        return np.zeros(len(y)), np.zeros_like(y)

    steps = 20000
    _, r = boltz.sample(
        boltz.CallbackEnergy(zeros, post.dim), sampler="hmc", chains=CHAINS, warmup=0, draws=steps,
        step_size=0.01, leapfrog=1, diagnostics=False,
    )
    lp = post.log_density_jax()
    f = jax.jit(jax.vmap(jax.value_and_grad(lambda u: -lp(u))))
    y = np.random.default_rng(0).uniform(-2, 2, (CHAINS, post.dim))
    for _ in range(100):
        [np.asarray(a) for a in f(y)]
    n = 5000
    t = time.perf_counter()
    for _ in range(n):
        [np.asarray(a) for a in f(y)]
    return {"boltz_side_us": r["sampling_s"] / calls[0] * 1e6, "jax_call_us": (time.perf_counter() - t) / n * 1e6}


def table(res):
    lines = [
        "| posterior | dim | sampler | sampling s | grad evals | Python calls | min bulk ESS | ESS/s | vs NumPyro | checks (max abs z, max sd dev) | warnings |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per in res["posteriors"].items():
        ref = max(r["ess_per_s"] for k, r in per["runs"].items() if k.startswith("numpyro"))
        for label, r in per["runs"].items():
            lines.append(
                f"| {name} | {per['dim']} | {label} | {r['wall_s']:.2f} | {r['grad_evals']} | {r.get('python_calls', '-')} | "
                f"{r['ess_bulk_min']:.0f} | {r['ess_per_s']:.1f} | {r['ess_per_s'] / ref:.2f}x | "
                f"{'pass' if r['checks_pass'] else 'FAIL'} ({r['max_abs_z']:.2f}, {r['max_sd_dev']:.3f}) | "
                f"{len(r.get('warnings', []))} |"
            )
    lines.append("")
    lines.append(
        "grad evals: boltz's whole run (warm-up and draws; rows evaluated, 4 a call or a leapfrog step); "
        "Python calls: of the energy's function or its leapfrog loop; "
        "NumPyro's leapfrog steps after warm-up (its warm-up's are not reported). "
        "ESS/s: min bulk ESS of the constrained parameters per second of sampling "
        "(NumPyro and boltz on JAX: the second run, JIT compiled before it; torch runs eagerly, once). "
        "vs NumPyro: ESS/s over "
        "the better NumPyro row. checks: every parameter's mean within 4 combined MCSE of "
        "the reference draws' and its sd within 10%."
    )
    lines.append("")
    lines.append("| posterior | boltz side of a call (us, 4 rows) | compiled JAX call alone (us) |")
    lines.append("|---|---|---|")
    for name, per in res["posteriors"].items():
        c = per["per_call"]
        lines.append(f"| {name} | {c['boltz_side_us']:.1f} | {c['jax_call_us']:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posteriors", nargs="*", default=NAMES)
    ap.add_argument("--torch-kernels", nargs="*", default=["nuts"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "python", "w7"))
    ap.add_argument("--table-only", action="store_true", help="rewrite OUT.md from OUT.json, run nothing")
    ap.add_argument("--mass-windows", default="expanding", choices=["proportional", "expanding"],
                    help="boltz's warm-up mass windows (default: Stan's, as NumPyro's warm-up has them)")
    a = ap.parse_args()
    global MASS_WINDOWS
    MASS_WINDOWS = a.mass_windows
    if a.table_only:
        with open(a.out + ".json") as f, open(a.out + ".md", "w") as g:
            g.write(table(json.load(f)))
        return
    res = {
        "workload": "W7",
        "chains": CHAINS,
        "warmup": WARMUP,
        "draws": DRAWS,
        "seed": a.seed,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "boltz_threads": boltz.threads(),
        "mass_windows": MASS_WINDOWS,
        "jax": jax.__version__,
        "posteriors": {},
    }
    for name in a.posteriors:
        post = load(name)
        runs = {}
        for k, label in (("nuts", "boltz nuts (jax)"), ("autohmc", "boltz autohmc (jax, dense mass)")):
            runs[label] = run_boltz(post, post.jax_energy(), k, a.seed, compiled=True, dense=k == "autohmc")
            print(name, label, f"{runs[label]['wall_s']:.1f} s", flush=True)
        for k in a.torch_kernels:
            runs[f"boltz {k} (torch)"] = run_boltz(post, post.torch_energy(), k, a.seed, compiled=False)
            print(name, k, "torch", f"{runs[f'boltz {k} (torch)']['wall_s']:.1f} s", flush=True)
        for method in ("sequential", "vectorized"):
            runs[f"numpyro nuts ({method})"] = r = run_numpyro(post, a.seed, method)
            print(name, "numpyro", method, f"{r['wall_s']:.1f} s", flush=True)
        res["posteriors"][name] = {"dim": post.dim, "runs": runs, "per_call": per_call_costs(post)}
        with open(a.out + ".json", "w") as f:
            json.dump(res, f, indent=1)
    with open(a.out + ".md", "w") as f:
        f.write(table(res))
    print(table(res))


if __name__ == "__main__":
    main()
