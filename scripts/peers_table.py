"""Side-by-side table of boltz and the peers (results/peers.md).

usage: python3 scripts/peers_table.py BOLTZ.jsonl PEERS.jsonl [--machine M] [--commit C]
                                      [--date D] [--workloads "W1 W3 ..."] [--gemm GEMM.json]

BOLTZ.jsonl holds `boltz bench --jsonl` lines, PEERS.jsonl the peer scripts' lines
(../shared/peers), both from one run of scripts/compare-peers.sh. Throughputs
(W1, W3, W5) and ESS/s (W2) are compared as boltz / peer (above 1: boltz is
faster); AIS (W4) as boltz wall / peer wall at the peers' settings (below 1:
boltz is faster) with both errors and standard errors.
"""
import json
import re
import sys


def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip().startswith("{")]


def arg(name, default=""):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def fmt(x, digits=4):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def dtype_of(r):
    return r.get("dtype") or ("f32" if "f32" in r["peer"] else "f64")


def se_of(r):
    if r.get("se") is not None:
        return r["se"]
    m = re.search(r"reported se ([0-9.eE+-]+)", r.get("notes", ""))
    return float(m.group(1)) if m else None


def excerpt(notes, pattern):
    m = re.search(pattern, notes or "")
    return m.group(0) if m else ""


def throughput(out, w, title, boltz, peers, targets, extra=None):
    """targets: (peer name, peer dtype, wanted ratio, boltz dtype) per target."""
    out.append(f"## {w}: {title}\n")
    b = [r for r in boltz if r["workload"] == w]
    p = [r for r in peers if r["workload"] == w]
    if not b or not p:
        out.append("(not measured in this run)\n")
        return
    by_dtype = {}
    for r in b:
        by_dtype.setdefault(dtype_of(r), r)
    dts = [d for d in ("f64", "f32") if d in by_dtype]
    for d in dts:
        bb = by_dtype[d]
        out.append(f"boltz ({d}, {bb['threads']} threads): **{fmt(bb['value'])}** {bb['figure']}, "
                   f"checks {'passed' if bb['ok'] else 'FAILED'}.\n")
    if extra:
        out.append(extra + "\n")
    out.append("| peer | dtype | peer figure | " + " | ".join(f"boltz {d} / peer" for d in dts) + " | target |")
    out.append("|---|---|---|" + "---|" * len(dts) + "---|")
    for r in sorted(p, key=lambda r: -r["value"]):
        ratios = {d: (by_dtype[d]["value"] / r["value"] if r["value"] else None) for d in dts}
        t = ""
        for (name, dt, want, bdt) in targets:
            if name in r["peer"] and dtype_of(r) == dt and bdt in ratios:
                ratio = ratios[bdt]
                ok = ratio and ratio >= want and by_dtype[bdt]["ok"]
                t = f"boltz {bdt} >= {want}x: {'met' if ok else 'NOT met'}"
        cells = " | ".join(fmt(ratios[d], 3) for d in dts)
        out.append(f"| {r['peer']} | {dtype_of(r)} | {fmt(r['value'])} | {cells} | {t} |")
    out.append("")


def w2(out, boltz, peers):
    out.append("## W2: min bulk ESS per second (64 chains x 2000 draws after 1000 warm-up)\n")
    b = [r for r in boltz if r["workload"] == "W2"]
    p = [r for r in peers if r["workload"] == "W2"]
    if not b or not p:
        out.append("(not measured in this run)\n")
        return
    for target in ["gauss-ill", "funnel", "funnel (long)"]:
        bt = [r for r in b if r["target"] == target]
        pt = [r for r in p if r["target"] == target]
        if not bt:
            continue
        out.append(f"### {target}\n")
        if target == "funnel (long)":
            out.append("boltz only (the peers run the suite's size): " + excerpt(bt[0]["notes"], r"\d+ chains x [^;]*warm-up") + ".\n")
        out.append("A run that fails its check gets no ESS figure (-): its draws are biased or not mixed. "
                   "ESS per gradient: boltz counts warm-up's gradients too; the peers' from their "
                   "sampling-phase leapfrog steps per draw where they report them.\n")
        out.append("| who | dtype | min bulk ESS/s | min bulk ESS per gradient | check of what was sampled |")
        out.append("|---|---|---|---|---|")
        pat = r"v mean [^;]*P\(v<-3\)[^;]*|pooled var/s\^2 in \[[^\]]*\]" if target == "funnel" else r"pooled var/s\^2 in \[[^\]]*\]"
        for r in sorted(bt, key=lambda r: -r["value"]):
            label = excerpt(r["notes"], r"boltz \w+ \(target accept [0-9.]+\)")
            chk = excerpt(r["notes"], r"var\(v\) [^;]*?\)|pooled var/s\^2 in \[[^\]]*\]")
            chk += "; worst R-hat " + excerpt(r["notes"], r"(?<=worst R-hat )[0-9.]+")
            label = label or excerpt(r["notes"], r"boltz \w+ \(step chosen per step\)")
            per = excerpt(r["notes"], r"(?<=min bulk ESS per )(gradient|energy) evaluation [0-9.e+-]+")
            per = per.split(" ")[-1] + (" (energy evals)" if per.startswith("energy") else "") if per else "-"
            ok = r["ok"]
            out.append(f"| {label} | f64 | {fmt(r['value']) if ok else '-'} | {per if ok else '-'} | {chk}; {'unbiased within MC error' if ok else 'FAILED its check (biased or not mixed)'} |")
        for r in sorted(pt, key=lambda r: -r["value"]):
            m = re.search(r"mean leapfrog steps/draw ([0-9.]+)", r["notes"])
            size = r.get("size") or [0, 0, 0]
            per = (f"{r['ess'] / (size[0] * size[1] * float(m.group(1))):.3e}"
                   if m and r.get("ess") and size[0] and size[1] else "-")
            out.append(f"| {r['peer']} | {dtype_of(r)} | {fmt(r['value'])} | {per} | {excerpt(r['notes'], pat)} |")
        ok = [r for r in bt if r["ok"]]
        best_b = max(ok, key=lambda r: r["value"]) if ok else None
        best_p = max(pt, key=lambda r: r["value"]) if pt else None
        if best_b and best_p:
            ratio = best_b["value"] / best_p["value"]
            out.append(f"\nBest boltz run that passed its check / best peer ({best_p['peer']}): **{fmt(ratio, 3)}**"
                       + (f" (target >= 3x: {'met' if ratio >= 3 else 'NOT met'})" if target == "gauss-ill" else "")
                       + "\n")
        elif not ok:
            out.append("\nNo boltz run passed its check here: no ratio is claimed.\n")
    out.append("")


def w4(out, boltz, peers):
    out.append("## W4: AIS log Z, 1024 particles x 1000 temperatures\n")
    b = [r for r in boltz if r["workload"] == "W4"]
    p = [r for r in peers if r["workload"] == "W4"]
    if not b or not p:
        out.append("(not measured in this run)\n")
        return
    out.append("Wall ratio: boltz at the peers' settings (linear grid, N(0, 16 I) base, fixed MALA step; "
               "rbm20: base-rate model, 1 Gibbs sweep) over the hand-written JAX AIS in f64 (target <= 0.5). "
               "Errors: |log Z_hat - log Z| with the reported standard error.\n")
    out.append("| target | boltz, peers' settings: err (se), wall s | JAX AIS f64: err (se), wall s | wall ratio | boltz defaults: err (se), wall s | peer with the smallest err: err (se) | defaults / that peer: err, se |")
    out.append("|---|---|---|---|---|---|---|")
    for target in ["gmm-ring", "gmm-far", "funnel", "rbm20"]:
        bp = next((r for r in b if r["target"] == f"{target} (peers)"), None)
        bd = next((r for r in b if r["target"] == f"{target} (boltz)"), None)
        jx = next((r for r in p if r["target"] == target and "hand-written AIS (f64)" in r["peer"] and "jax" in r["peer"]), None)
        pt = [r for r in p if r["target"] == target]
        best = min(pt, key=lambda r: r["value"]) if pt else None
        cell = lambda r: f"{fmt(r['value'], 3)} ({fmt(se_of(r), 2)}), {fmt(r['wall_s'], 3)}" if r else "-"
        ratio = bp["wall_s"] / jx["wall_s"] if bp and jx else None
        cmp = ""
        if bd and best:
            se_b, se_p = se_of(bd), se_of(best)
            cmp = f"{fmt(bd['value'] / best['value'], 3)}, " + (f"{fmt(se_b / se_p, 3)}" if se_b and se_p else "- (no se reported)")
        out.append(f"| {target} | {cell(bp)} | {cell(jx)} | {fmt(ratio, 3)} | {cell(bd)} | "
                   f"{best['peer'] + ': ' + fmt(best['value'], 3) + ' (' + fmt(se_of(best), 2) + ')' if best else '-'} | {cmp} |")
    pts = [r for r in b if r["target"].endswith("(pt)")]
    if pts:
        out.append("\nParallel tempering (boltz, stepping stone) at AIS's number of energy evaluations, "
                   "beside boltz's AIS defaults and the peers' tempered SMC (BlackJAX, f64):\n")
        out.append("| target | boltz PT: err (se), wall s | boltz AIS defaults: err (se), wall s | BlackJAX tempered SMC: err (se), wall s | BlackJAX adaptive tempered SMC: err (se), wall s |")
        out.append("|---|---|---|---|---|")
        for target in ["gmm-ring", "gmm-far", "funnel", "rbm20"]:
            bt = next((r for r in pts if r["target"] == f"{target} (pt)"), None)
            bd = next((r for r in b if r["target"] == f"{target} (boltz)"), None)
            smc = next((r for r in p if r["target"] == target and "tempered_smc (f64)" in r["peer"] and "adaptive" not in r["peer"]), None)
            asmc = next((r for r in p if r["target"] == target and "adaptive_tempered_smc (f64)" in r["peer"]), None)
            cell = lambda r: f"{fmt(r['value'], 3)} ({fmt(se_of(r), 2)}), {fmt(r['wall_s'], 3)}" + ("" if r.get("ok", True) else " (fails its check)") if r else "-"
            out.append(f"| {target} | {cell(bt)} | {cell(bd)} | {cell(smc)} | {cell(asmc)} |")
    out.append("\nAll peer W4 rows:\n")
    out.append("| peer | target | err | se | wall s |")
    out.append("|---|---|---|---|---|")
    for r in sorted(p, key=lambda r: (r["target"], r["peer"])):
        out.append(f"| {r['peer']} | {r['target']} | {fmt(r['value'], 3)} | {fmt(se_of(r), 2)} | {fmt(r['wall_s'], 3)} |")
    out.append("")


def main():
    files = [a for a in sys.argv[1:] if not a.startswith("--")]
    # drop option values
    vals = {arg(o) for o in ["--machine", "--commit", "--date", "--workloads", "--gemm"]}
    files = [f for f in files if f not in vals]
    boltz, peers = load(files[0]), load(files[1])
    out = ["# boltz and the peers, side by side\n",
           f"One run of `scripts/compare-peers.sh {arg('--workloads')}` on {arg('--machine', 'this machine')}, "
           f"boltz commit {arg('--commit', '?')}, {arg('--date', '?')}. Each workload ran boltz first, then the peers "
           "(`../shared/peers/run.sh`), never two at once; every figure is a median of timed repeats after a warm-up "
           "run (JAX compile time excluded, as the peers' scripts report it). boltz computes in f64, and "
           "in f32 in the rows that say so (W3 `mlp` and W5 `rbm500` run both: `--precision f32`, sampler "
           "state and accumulations still f64). Raw lines: `results/peers-run/`.\n"]
    w1_notes = next((r["notes"] for r in boltz if r["workload"] == "W1"), "")
    rng = excerpt(w1_notes, r"ChaCha8 alone[^;]*")
    throughput(out, "W1", "MALA on gauss-ill, gradient evaluations per second (1024 chains x 1000 steps)", boltz, peers,
               [("blackjax.mala", "f32", 4.0, "f64")], rng or None)
    w2(out, boltz, peers)
    gemm = ""
    try:
        with open(arg("--gemm")) as f:
            g = json.load(f)
        w3f = {dtype_of(r): r for r in boltz if r["workload"] == "W3"}
        parts = []
        for d in ("f64", "f32"):
            if d in w3f and d in g:
                gf = float(excerpt(w3f[d]["notes"], r"[0-9.]+(?= GFLOP/s in the matrix products)") or "nan")
                parts.append(f"{d}: boltz {gf:.1f} GFLOP/s in W3's products, numpy's {d} GEMM "
                             f"(n = 1024, same threads) {g[d]:.1f} GFLOP/s, {gf / g[d]:.0%} of it")
        gemm = "GFLOP/s against numpy on this machine: " + "; ".join(parts) + "." if parts else ""
    except (OSError, ValueError, KeyError):
        gemm = ""
    throughput(out, "W3", "ULA negatives on mlp, chain-steps per second (1024 chains x 100 steps)", boltz, peers,
               [("jax ULA", "f64", 1.2, "f64"), ("jax ULA", "f32", 1.2, "f32")], gemm or None)
    w4(out, boltz, peers)
    throughput(out, "W5", "block Gibbs on rbm500, chain-sweeps per second (1024 chains x 1000 sweeps)", boltz, peers,
               [("jax block Gibbs", "f32", 2.0, "f32")])
    print("\n".join(out))


if __name__ == "__main__":
    main()
