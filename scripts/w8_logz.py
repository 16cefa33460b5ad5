#!/usr/bin/env python3
"""log Z of the trained digits EBMs (workload W8, issue 27) by the default
`boltz logz` over seeds, with and without the data they were trained on.

The models (examples/models/digits-ebm-b10 and digits-ebm-b1, trained by
scripts/train_digits_ebm.py at beta 10 and beta 1) have no exact log Z:
what can be asked is that estimates over seeds agree within their error
bars (the z-scores of the estimates against their inverse-variance pooled
mean have sd <= 1.5) and that a run which cannot give a trustworthy
estimate says so (no `log_z`, a warning) instead of giving one.

    python3 scripts/w8_logz.py [SEEDS] [OUT_DIR] [--only TEXT]

writes OUT_DIR (default results/issue27)/w8.jsonl (one line per run) and
w8.md (wall times are in w8.jsonl, not the table: they depend on what
else the machine does); with `--only TEXT` only the cases whose name
contains TEXT run again, the others' rows kept from w8.jsonl (a TEXT no
case has rewrites the table). The digits GMM
(examples/models/digits-gmm, log Z exactly 0) is run by `--method check`
beside them, the hard target with a known answer. Runs target/release/boltz (build it first); standard library only.
"""
import json
import math
import os
import subprocess
import sys

from case_rows import CaseRows, parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOLTZ = os.path.join(ROOT, "target", "release", "boltz")
MODELS = os.path.join(ROOT, "examples", "models")
DATA = os.path.join(MODELS, "digits.npy")

# (case, model, beta, extra args)
CASES = [
    ("b10 at beta 10, data", "digits-ebm-b10", 10, ["--data", DATA]),
    ("b10 at beta 10, no data", "digits-ebm-b10", 10, []),
    ("b1 at beta 1, data", "digits-ebm-b1", 1, ["--data", DATA]),
    ("b1 at beta 1, no data", "digits-ebm-b1", 1, []),
    ("b10 at beta 1, data", "digits-ebm-b10", 1, ["--data", DATA]),
    # A hard target with a known answer (log Z = 0): the default would be
    # the exact value, so the check is asked for.
    ("digits-gmm (exact 0) by check", "digits-gmm", 1, ["--method", "check"]),
]


def run(model, beta, seed, extra):
    args = [BOLTZ, "logz", "--quiet", "--json", "--model",
            os.path.join(MODELS, model, "model.json"), "--beta", str(beta),
            "--seed", str(seed)] + extra
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def pooled(rows):
    """Inverse-variance pooled mean of the given estimates and the sd of
    their z-scores against it (None with fewer than two)."""
    est = [(r["log_z"], r["stderr"]) for r in rows if r["log_z"] is not None]
    if len(est) < 2:
        return None, None
    w = sum(1 / s**2 for _, s in est)
    m = sum(l / s**2 for l, s in est) / w
    z = [(l - m) / s for l, s in est]
    sd = math.sqrt(sum(v * v for v in z) / (len(z) - 1))
    return m, sd


def main():
    seeds, out_dir, only = parse_args(sys.argv[1:], 5, os.path.join(ROOT, "results", "issue27"))
    with CaseRows(os.path.join(out_dir, "w8.jsonl"), only) as out:
        rows = out.rows
        for case, model, beta, extra in CASES:
            if not out.run(case):
                continue
            for seed in range(seeds):
                r = run(model, beta, seed, extra)
                c = r.get("check") or {}
                row = {
                    "case": case, "seed": seed, "method": r["method"],
                    "log_z": r["log_z"], "stderr": r["stderr"],
                    "verdict": c.get("verdict"),
                    "estimators": {k: {"log_z": v["log_z"][0], "stderr": v["stderr"][0],
                                       "excluded": v["excluded"]}
                                   for k, v in (c.get("estimators") or {}).items()},
                    "exact_log_z": r.get("exact_log_z"),
                    "warnings": r["warnings"], "energy_evals": r["energy_evals"],
                    "wall_s": r["wall_s"],
                }
                out.add(row)
                print(f"{case} seed {seed}: {row['log_z']} +- {row['stderr']} "
                      f"({row['verdict']}, {len(row['warnings'])} warnings)", file=sys.stderr, flush=True)
    lines = [
        "# log Z of the trained digits EBMs (W8, issue 27)",
        "",
        f"`python3 scripts/w8_logz.py {seeds}`: the default `boltz logz` (`check`:",
        "AIS, SMC twice and parallel tempering, each with its own seed and",
        "pilot) on the models of `scripts/train_digits_ebm.py`, seeds 0 to",
        f"{seeds - 1}; `data`: `--data examples/models/digits.npy`, the digits",
        "the models were trained on, where the pilot starts. `sd(z)`: sd of",
        "the given estimates' z-scores against their pooled mean.",
        "",
        "| case | estimates given | pooled log Z | sd(z) | max abs z vs exact | runs warned | median energy evals |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, *_ in CASES:
        rs = [r for r in rows if r["case"] == case]
        if not rs:
            continue
        given = [r for r in rs if r["log_z"] is not None]
        m, sd = pooled(given)
        evals = sorted(r["energy_evals"] for r in rs)[len(rs) // 2]
        ex = [abs(r["log_z"] - r["exact_log_z"]) / r["stderr"] for r in given
              if r.get("exact_log_z") is not None]
        lines.append(
            f"| {case} | {len(given)}/{len(rs)} | {'-' if m is None else f'{m:.3f}'} "
            f"| {'-' if sd is None else f'{sd:.2f}'} | {f'{max(ex):.2f}' if ex else '-'} "
            f"| {sum(bool(r['warnings']) for r in rs)}/{len(rs)} "
            f"| {evals:,} |")
    lines += ["", "## Every run", "",
              "| case | seed | log Z | stderr | verdict | estimators (x: left out of the test) |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        est = ", ".join(f"{k} {v['log_z']:.2f} +- {v['stderr']:.2f}{' x' if v['excluded'] else ''}"
                        for k, v in r["estimators"].items())
        lz = "-" if r["log_z"] is None else f"{r['log_z']:.3f}"
        se = "-" if r["stderr"] is None else f"{r['stderr']:.3f}"
        lines.append(f"| {r['case']} | {r['seed']} | {lz} | {se} | {r['verdict']} | {est} |")
    with open(os.path.join(out_dir, "w8.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
