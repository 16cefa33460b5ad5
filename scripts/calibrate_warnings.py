#!/usr/bin/env python3
"""How often each `boltz logz` warning fires when the estimate is right, and
how often it catches a real miss (issue 27).

Runs the CLI (target/release/boltz; build it first) over SEEDS seeds on
targets with a known log Z: correct cases (the suite's gauss-ill, gmm-ring,
gmm-far, rbm20 and the conditional ring, by AIS and by SMC, and the
separated-modes mixture with positives where its mass is, `--data`) and known
misses (the funnel's neck, the separated-modes mixture, a starved AIS
budget). A run is right when its error against the exact log Z is within 3
of its reported standard errors. The warning that compares against the
exact value itself is left out: users do not have it.

    python3 scripts/calibrate_warnings.py [SEEDS] [OUT_DIR] [--only TEXT]

writes OUT_DIR/warnings.jsonl (one line per run) and OUT_DIR/warnings.md.
With `--only TEXT` only the cases whose name contains TEXT run again; the
other cases' rows are kept from OUT_DIR/warnings.jsonl. Standard library
only.
"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

from case_rows import CaseRows, parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOLTZ = os.path.join(ROOT, "target", "release", "boltz")

# The kinds of log Z warnings, as the reports' `warning_kinds` name them
# (boltz::WarningKind), in the table's order.
KINDS = [
    "pilot-disagree",
    "pilot-regions-missed",
    "weight-ess",
    "forward-reverse-gap",
    "reverse-below",
    "non-finite",
    "smc-cap",
    "estimators-disagree",
    "estimators-too-few",
    "above-a-bound",
    "exact-value",
]


def save_npy(path, rows):
    n, d = len(rows), len(rows[0])
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }" % (n, d)
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        for r in rows:
            f.write(struct.pack("<%dd" % d, *r))


def logz(args):
    out = subprocess.run([BOLTZ, "logz", "--quiet", "--json"] + args,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def classify(report):
    """The kinds of a report's warnings (a kind this table does not list
    counts as "other")."""
    return {k if k in KINDS else "other" for k in report["warning_kinds"]}


def main():
    seeds, out_dir, only = parse_args(sys.argv[1:], 20, os.path.join(ROOT, "results", "issue27"))
    tmp = tempfile.mkdtemp()
    ctx = os.path.join(tmp, "ctx.npy")
    save_npy(ctx, [[i * 0.1] for i in range(8)])
    exact_ring = logz(["--model", "ring", "--context", ctx, "--method", "exact"])["log_z"]
    sep = os.path.join(ROOT, "examples", "models", "separated-modes.json")
    # Positives of the separated-modes mixture (exact draws: 0.8 at +8 with
    # sd 0.5, 0.2 at -8 with sd 1), where `--data` starts the pilot.
    rng = random.Random(0)
    sep_data = os.path.join(tmp, "sep.npy")
    save_npy(sep_data, [[rng.gauss(8, 0.5) if narrow else rng.gauss(-8, 1.0) for _ in range(5)]
                        for narrow in (rng.random() < 0.8 for _ in range(200))])
    cases = [
        # (case, expected, args)
        ("gauss-ill ais", "right", ["--model", "gauss-ill", "--method", "ais"]),
        ("gmm-ring ais", "right", ["--model", "gmm-ring", "--method", "ais"]),
        ("gmm-far ais", "right", ["--model", "gmm-far", "--method", "ais"]),
        ("rbm20 ais", "right", ["--model", "rbm20", "--method", "ais"]),
        ("gauss-ill smc", "right", ["--model", "gauss-ill", "--method", "smc"]),
        ("gmm-ring smc", "right", ["--model", "gmm-ring", "--method", "smc"]),
        ("gmm-far smc", "right", ["--model", "gmm-far", "--method", "smc"]),
        ("rbm20 smc", "right", ["--model", "rbm20", "--method", "smc"]),
        ("ring x8 smc", "right", ["--model", "ring", "--context", ctx, "--method", "smc"]),
        ("gmm-far ais, no reverse", "right", ["--model", "gmm-far", "--method", "ais", "--no-reverse"]),
        ("gmm-ring check", "right", ["--model", "gmm-ring", "--method", "check"]),
        ("gmm-far check", "right", ["--model", "gmm-far", "--method", "check"]),
        ("gauss-ill check", "right", ["--model", "gauss-ill", "--method", "check"]),
        ("funnel ais", "miss", ["--model", "funnel", "--method", "ais"]),
        ("funnel smc", "miss", ["--model", "funnel", "--method", "smc"]),
        ("separated-modes ais", "miss", ["--model", sep, "--method", "ais"]),
        ("separated-modes ais, no reverse", "miss", ["--model", sep, "--method", "ais", "--no-reverse"]),
        ("separated-modes smc", "miss", ["--model", sep, "--method", "smc"]),
        ("separated-modes check", "miss", ["--model", sep, "--method", "check"]),
        ("separated-modes smc, data", "right", ["--model", sep, "--method", "smc", "--data", sep_data]),
        ("separated-modes check, data", "right", ["--model", sep, "--method", "check", "--data", sep_data]),
        ("funnel check", "miss", ["--model", "funnel", "--method", "check"]),
        ("gmm-far ais, 64 x 10", "miss", ["--model", "gmm-far", "--method", "ais", "--particles", "64", "--temps", "10"]),
    ]
    with CaseRows(os.path.join(out_dir, "warnings.jsonl"), only) as out:
        rows = out.rows
        for case, expected, args in cases:
            if not out.run(case):
                continue
            for seed in range(seeds):
                r = logz(args + ["--seed", str(seed)])
                lz = r["log_z"] if isinstance(r["log_z"], list) else [r["log_z"]]
                se = r["stderr"] if isinstance(r["stderr"], list) else [r["stderr"]]
                ex = exact_ring if "ring x8" in case else [r["exact_log_z"]]
                # `check` gives no estimate (null) where its estimators
                # disagree: on a right case that is a false alarm, on a
                # miss a detection.
                withheld = any(a is None for a in lz)
                z = float("nan") if withheld else max(
                    abs(a - b) / s if s and s > 0 else float("inf")
                    for a, b, s in zip(lz, ex, se))
                kinds = sorted(classify(r))
                row = {"case": case, "expected": expected, "seed": seed,
                       "max_abs_z": None if withheld else z,
                       "right": (expected == "right") if withheld else z <= 3.0,
                       "withheld": withheld, "warnings": kinds,
                       "energy_evals": r["energy_evals"], "wall_s": r["wall_s"]}
                out.add(row)
            done = [x for x in rows if x["case"] == case]
            print(f"{case}: right {sum(x['right'] for x in done)}/{len(done)}, "
                  f"warned {sum(bool(set(x['warnings']) - {'exact-value'}) for x in done)}",
                  file=sys.stderr, flush=True)
    write_table(rows, seeds, os.path.join(out_dir, "warnings.md"))


def write_table(rows, seeds, path):
    kinds = [k for k in KINDS if k != "exact-value"] + ["other"]
    # False alarms: right runs of the cases set up to be right. Right runs
    # of the miss cases (an estimate that landed within 3 standard errors
    # by chance, or a starved budget whose error bar is wide) are counted
    # apart: a warning there is not a false alarm.
    right = [r for r in rows if r["right"] and r["expected"] == "right"]
    lucky = [r for r in rows if r["right"] and r["expected"] == "miss"]
    wrong = [r for r in rows if not r["right"]]
    lines = [
        "# How often each `boltz logz` warning fires (issue 27)",
        "",
        f"`python3 scripts/calibrate_warnings.py {seeds}`: {seeds} seeds per case. A run",
        "is right when its error against the exact log Z is within 3 of its",
        "reported standard errors (for the conditional ring: every context's);",
        "a `check` run that withholds its estimate (its estimators disagree)",
        "counts as right on a right case (its warning a false alarm) and as",
        "wrong on a miss (its warning a detection).",
        "The warning against the exact value is left out (users do not have it).",
        "",
        "## Per warning",
        "",
        f"Right runs of the right cases: {len(right)}; wrong runs (real misses):",
        f"{len(wrong)}; right runs of the miss cases: {len(lucky)}.",
        "",
        "| warning | right runs (false alarms) | wrong runs (detections) | miss cases' right runs |",
        "|---|---|---|---|",
    ]

    def rate(k, rs):
        n = sum(k in r["warnings"] for r in rs) if k != "any" else sum(
            bool(set(r["warnings"]) - {"exact-value"}) for r in rs)
        return f"{n}/{len(rs)} ({100 * n / max(len(rs), 1):.0f}%)"

    for k in kinds + ["any"]:
        lines.append(f"| {k} | {rate(k, right)} | {rate(k, wrong)} | {rate(k, lucky)} |")
    lines += ["", "## Per case", "",
              "| case | runs right | warned (any) | warnings seen | median energy evals |",
              "|---|---|---|---|---|"]
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]
        seen = sorted({k for r in rs for k in r["warnings"] if k != "exact-value"})
        warned = sum(bool(set(r["warnings"]) - {"exact-value"}) for r in rs)
        evals = sorted(r["energy_evals"] for r in rs)[len(rs) // 2]
        lines.append(f"| {case} | {sum(r['right'] for r in rs)}/{len(rs)} | {warned}/{len(rs)} "
                     f"| {', '.join(seen) or '-'} | {evals:,} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
