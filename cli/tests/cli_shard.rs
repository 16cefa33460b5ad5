//! Sharded runs merge exactly: `logz --shard I/M` (AIS, unconditional, RBM
//! parameter path, conditional with contexts) and `sample --shard I/M` split
//! into M = 1, 2, 3, 7 shards and joined by `boltz merge` give the
//! one-process run's log Z, standard error and ESS bit for bit, and its
//! draws byte for byte; annealed SMC merges as islands and says so; shards
//! of different runs, missing or repeated shards are clear errors.

mod common;
use common::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn logz_shards_merge_to_the_one_process_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("ctx.npy"), 3, 1, &[0.0, 0.5, 1.2]);
    for (model, extra) in [
        ("gmm-ring", vec![]),
        ("rbm20", vec![]),
        ("ring", vec!["--context", "ctx.npy"]),
    ] {
        let mut base = vec![
            "logz",
            "--model",
            model,
            "--method",
            "ais",
            "--no-reverse",
            "--particles",
            "70",
            "--temps",
            "60",
            "--seed",
            "3",
        ];
        base.extend(&extra);
        let mut one = base.clone();
        one.push("--json");
        let whole = json(&assert_ok(&boltz(p, &one)));
        for m in [1usize, 2, 3, 7] {
            let mut files = Vec::new();
            for i in 0..m {
                let (shard, file) = (format!("{i}/{m}"), format!("{model}-{i}-{m}.shard"));
                let mut a = base.clone();
                a.extend(["--shard", &shard, "--shard-out", &file, "--quiet", "--json"]);
                let r = json(&assert_ok(&boltz(p, &a)));
                // A shard's report counts its own particles (issue 33).
                let own = (i + 1) * 70 / m - i * 70 / m;
                assert_eq!(r["particles"], own, "{model} shard {shard}");
                files.push(file);
            }
            let mut a = vec!["merge"];
            a.extend(files.iter().rev().map(String::as_str));
            a.push("--json");
            let merged = json(&assert_ok(&boltz(p, &a)));
            same_report(&merged, &whole, &format!("{model}, {m} shards"));
            assert_eq!(merged["shards"], m);
            assert!(merged["warnings"].is_array());
        }
    }
}

/// A merged log Z report is the one-process run's in every field (issue
/// 33: acceptance and contexts_done included; the acceptance is summed in
/// integer units, so any split gives the same bits), but the wall time,
/// the number of shards and the work the shards did together (each
/// reruns the pilot that the one-process run does once).
fn same_report(merged: &serde_json::Value, whole: &serde_json::Value, what: &str) {
    let (m, w) = (merged.as_object().unwrap(), whole.as_object().unwrap());
    let extra = ["wall_s", "shards", "energy_evals_all_shards"];
    for key in m.keys().chain(w.keys()) {
        if !extra.contains(&key.as_str()) {
            assert_eq!(m.get(key), w.get(key), "{what}: {key}");
        }
    }
    assert!(w.contains_key("acceptance") && w.contains_key("contexts_done"));
    assert!(m["energy_evals_all_shards"].as_u64() >= m["energy_evals"].as_u64());
}

/// Contexts `0, 1.2/n, ..., 1.2 (n-1)/n` of `ring` in `ctx.npy`, and the
/// `logz` arguments of an AIS run over them with `extra` settings.
fn ring_contexts<'a>(p: &std::path::Path, n: usize, extra: &[&'a str]) -> Vec<&'a str> {
    let ctx: Vec<f64> = (0..n).map(|i| 1.2 * i as f64 / n as f64).collect();
    npy(&p.join("ctx.npy"), n, 1, &ctx);
    let mut base = vec![
        "logz",
        "--model",
        "ring",
        "--context",
        "ctx.npy",
        "--method",
        "ais",
        "--no-reverse",
    ];
    base.extend(extra);
    base
}

/// Runs the `m` shards of the command `base` into `STEM-I-M.shard`; returns
/// the file names.
fn write_shards(p: &std::path::Path, base: &[&str], m: usize, stem: &str) -> Vec<String> {
    (0..m)
        .map(|i| {
            let (s, f) = (format!("{i}/{m}"), format!("{stem}-{i}-{m}.shard"));
            let mut a = base.to_vec();
            a.extend(["--shard", &s, "--shard-out", &f, "--quiet"]);
            assert_ok(&boltz(p, &a));
            f
        })
        .collect()
}

/// The log Z merge streams (issue 29): it holds one shard's log-weights at a
/// time, so a run whose log-weights (64 contexts x 1024 particles, 512 KiB)
/// are larger than the memory it is allowed merges from 8 shards of 64 KiB,
/// to the one-process run's report. (The merge held every shard's values
/// and as much again, 1 MiB, and was refused.)
#[test]
fn log_z_merge_holds_one_shard_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let base = ring_contexts(p, 64, &["--temps", "5"]);
    let mut one = base.to_vec();
    one.push("--json");
    let whole = json(&assert_ok(&boltz(p, &one)));
    let files = write_shards(p, &base, 8, "f");
    let header = boltz::shard::read_shard(&p.join(&files[0])).unwrap().0;
    assert!(header.context_range.is_none(), "a split of particles");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_boltz"))
        .arg("merge")
        .args(&files)
        .arg("--json")
        .current_dir(p)
        .env("BOLTZ_MAX_MEMORY", "300000")
        .output()
        .unwrap();
    let merged = json(&assert_ok(&out));
    same_report(&merged, &whole, "8 shards under 300 kB");
}

/// Many contexts: a run in several batches of contexts is split into whole
/// batches when there are at least as many batches as shards (no pilot is
/// run twice), else into particles; both merge to the one-process run.
#[test]
fn many_contexts_split_by_batches_or_particles() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // 300 contexts x 256 particles: 3 batches of at most 128 contexts.
    let base = ring_contexts(p, 300, &["--particles", "256", "--temps", "20"]);
    let mut one = base.to_vec();
    one.push("--json");
    let whole = json(&assert_ok(&boltz(p, &one)));
    for m in [2usize, 3, 4] {
        let files = write_shards(p, &base, m, "b");
        let mut a = vec!["merge"];
        a.extend(files.iter().map(String::as_str));
        a.push("--json");
        let merged = json(&assert_ok(&boltz(p, &a)));
        same_report(&merged, &whole, &format!("{m} shards"));
        let header = boltz::shard::read_shard(&p.join(&files[0])).unwrap().0;
        assert_eq!(header.context_range.is_some(), m <= 3, "{m} shards");
    }
}

#[test]
fn prob_shards_merge_to_the_one_process_log_p() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("ctx.npy"), 3, 1, &[0.0, 0.5, 0.9]);
    npy(&p.join("pts.npy"), 3, 2, &[0.1, 0.9, -0.5, 0.3, 0.0, 0.0]);
    for (model, extra) in [
        ("ring", vec!["--context", "ctx.npy"]),
        ("ring", vec!["--context", "ctx.npy", "--paired"]),
        ("gmm-ring", vec![]),
    ] {
        let mut base = vec![
            "prob",
            "--model",
            model,
            "--points",
            "pts.npy",
            "--method",
            "ais",
            "--no-reverse",
            "--particles",
            "40",
            "--temps",
            "30",
            "--quiet",
        ];
        base.extend(&extra);
        let mut one = base.clone();
        one.extend(["--out", "one.npy"]);
        assert_ok(&boltz(p, &one));
        for m in [1usize, 3] {
            let mut files = Vec::new();
            for i in 0..m {
                let (s, f) = (format!("{i}/{m}"), format!("p{i}.shard"));
                let mut a = base.clone();
                a.extend(["--out", "unused.npy", "--shard", &s, "--shard-out", &f]);
                assert_ok(&boltz(p, &a));
                files.push(f);
            }
            let mut a = vec!["merge"];
            a.extend(files.iter().map(String::as_str));
            a.extend(["--out", "merged.npy"]);
            assert_ok(&boltz(p, &a));
            assert_eq!(
                std::fs::read(p.join("one.npy")).unwrap(),
                std::fs::read(p.join("merged.npy")).unwrap(),
                "{model} {extra:?}, {m} shards"
            );
            assert!(!p.join("unused.npy").exists());
        }
    }
}

#[test]
fn sample_shards_merge_to_the_plain_one_process_draws() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // Chains with a context each (issue 29): a shard takes its chains' rows.
    let ctx: Vec<f64> = (0..7).map(|i| -0.8 + 0.25 * i as f64).collect();
    npy(&p.join("ctx7.npy"), 7, 1, &ctx);
    for (sampler, model, extra) in [
        ("mala", "gmm-far", &[][..]),
        ("nuts", "gmm-far", &[][..]),
        ("hmc", "gmm-far", &[][..]),
        ("mala", "ring", &["--context", "ctx7.npy"][..]),
        // Tempering (issue 29): each chain adapts its own ladder.
        ("pt", "gmm-far", &["--ladder", "per-chain"][..]),
        (
            "pt",
            "rbm20",
            &["--ladder", "per-chain", "--replicas", "5"][..],
        ),
    ] {
        let mut base = vec![
            "sample",
            "--model",
            model,
            "--sampler",
            sampler,
            "--chains",
            "7",
            "--warmup",
            "100",
            "--draws",
            "60",
            "--seed",
            "5",
            "--quiet",
        ];
        base.extend(extra);
        // The plain one-process run: each chain adapts its own step and
        // mass in both, so any split gives its bytes.
        let mut one = base.to_vec();
        one.extend(["--report", "one.json"]);
        one.extend(["--out", "one.npy", "--energies", "one-e.npy"]);
        assert_ok(&boltz(p, &one));
        for m in [1usize, 2, 3, 7] {
            let mut files = Vec::new();
            for i in 0..m {
                let (shard, file) = (format!("{i}/{m}"), format!("s-{i}-{m}.shard"));
                let mut a = base.to_vec();
                a.extend(["--shard", &shard, "--shard-out", &file]);
                assert_ok(&boltz(p, &a));
                files.push(file);
            }
            let mut a = vec!["merge"];
            a.extend(files.iter().map(String::as_str));
            a.extend(["--out", "m.npy", "--energies", "m-e.npy", "--json"]);
            let r = json(&assert_ok(&boltz(p, &a)));
            let same = |x: &str, y: &str| {
                std::fs::read(p.join(x)).unwrap() == std::fs::read(p.join(y)).unwrap()
            };
            assert!(
                same("one.npy", "m.npy"),
                "{sampler}, {m} shards: draws differ"
            );
            assert!(
                same("one-e.npy", "m-e.npy"),
                "{sampler}, {m} shards: energies differ"
            );
            assert_eq!(r["chains"], 7);
            assert_eq!(r["acceptance_per_chain"].as_array().unwrap().len(), 7);
            let plain: Value = json(&std::fs::read_to_string(p.join("one.json")).unwrap());
            // Every figure of tempering (ladders, swaps, round trips, the
            // stepping-stone log Z and its error) and the acceptance.
            assert_eq!(r["pt"], plain["pt"], "{sampler}, {m} shards");
            assert_eq!(r["acceptance_per_chain"], plain["acceptance_per_chain"]);
            assert_eq!(r["energy_evals"], plain["energy_evals"]);
            if sampler == "pt" {
                assert!(r["pt"]["log_z"].is_f64(), "{r}");
                assert_eq!(r["pt"]["betas_per_chain"].as_array().unwrap().len(), 7);
            }
            for key in ["rhat_max", "ess_bulk_min", "warnings"] {
                assert!(r.get(key).is_some(), "{key}");
            }
            if model == "ring" {
                // Chains of different laws: no R-hat or ESS warning across
                // them, in the plain run or the merge.
                assert_eq!(plain["warnings"], serde_json::json!([]), "{plain}");
                assert_eq!(r["warnings"], plain["warnings"], "{m} shards");
            }
        }
    }
    // A mass pooled over all chains ties each chain to the others: refused.
    let out = boltz(
        p,
        &[
            "sample",
            "--model",
            "gmm-far",
            "--sampler",
            "mala",
            "--chains",
            "4",
            "--pooled-mass",
            "--shard",
            "0/2",
            "--shard-out",
            "x.shard",
        ],
    );
    assert_fails(&out, 2, "pooled");
    // So does tempering's pooled ladder (the default).
    let out = boltz(
        p,
        &[
            "sample",
            "--model",
            "gmm-ring",
            "--sampler",
            "pt",
            "--chains",
            "4",
            "--shard",
            "0/2",
            "--shard-out",
            "x.shard",
        ],
    );
    assert_fails(&out, 2, "--ladder per-chain");
}

#[test]
fn smc_shards_merge_as_islands() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let base = [
        "logz",
        "--model",
        "gmm-ring",
        "--method",
        "ais",
        "--particles",
        "200",
        "--temps",
        "100",
        "--resample",
        "0.5",
        "--quiet",
    ];
    for i in 0..2 {
        let (s, f) = (format!("{i}/2"), format!("i{i}.shard"));
        let mut a = base.to_vec();
        a.extend(["--shard", &s, "--shard-out", &f]);
        assert_ok(&boltz(p, &a));
    }
    let r = json(&assert_ok(&boltz(
        p,
        &["merge", "i0.shard", "i1.shard", "--json"],
    )));
    let (lz, se) = (r["log_z"].as_f64().unwrap(), r["stderr"].as_f64().unwrap());
    assert!(lz.is_finite() && se > 0.0);
    assert!((lz - 1.509373).abs() < 4.0 * se + 0.05, "{lz} +- {se}");
    let w: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert!(w.iter().any(|w| w.contains("islands")), "{w:?}");
}

#[test]
fn shards_of_different_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let shard = |seed: &str, i: usize, m: usize, file: &str| {
        let (s, f) = (format!("{i}/{m}"), file.to_string());
        assert_ok(&boltz(
            p,
            &[
                "logz",
                "--model",
                "gmm-ring",
                "--particles",
                "20",
                "--temps",
                "10",
                "--no-reverse",
                "--seed",
                seed,
                "--shard",
                &s,
                "--shard-out",
                &f,
                "--quiet",
            ],
        ));
    };
    shard("0", 0, 3, "a0");
    shard("0", 1, 3, "a1");
    shard("0", 2, 3, "a2");
    shard("1", 2, 3, "b2");
    shard("0", 1, 2, "c1");
    assert_fails(&boltz(p, &["merge", "a0", "a1"]), 2, "shards missing: 2/3");
    assert_fails(
        &boltz(p, &["merge", "a0", "a1", "a1", "a2"]),
        2,
        "given twice",
    );
    assert_fails(&boltz(p, &["merge", "a0", "a1", "b2"]), 2, "settings");
    assert_fails(&boltz(p, &["merge", "a0", "a1", "c1"]), 2, "shard counts");
    assert_fails(
        &boltz(p, &["merge", "a0", "a1", "a2", "--out", "x.npy"]),
        2,
        "log Z shards",
    );
    assert_ok(&boltz(p, &["merge", "a2", "a0", "a1"]));
    // A damaged shard file is refused by its checksum.
    let mut bytes = std::fs::read(p.join("a1")).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(p.join("a1"), bytes).unwrap();
    assert_fails(&boltz(p, &["merge", "a0", "a1", "a2"]), 2, "a1");
    // Settings that cannot be sharded.
    let base = [
        "logz",
        "--model",
        "gmm-ring",
        "--particles",
        "20",
        "--temps",
        "10",
    ];
    for (extra, needle) in [
        (&["--shard", "2/2", "--shard-out", "x"][..], "0 <= I < M"),
        (&["--shard", "0/21", "--shard-out", "x"][..], "empty"),
        (
            &["--shard", "0/2", "--shard-out", "x", "--repeats", "2"][..],
            "merged weights",
        ),
        (
            &["--shard", "0/2", "--shard-out", "x", "--method", "exact"][..],
            "--method ais",
        ),
        (&["--shard", "a/b", "--shard-out", "x"][..], "I/M"),
    ] {
        let mut a = base.to_vec();
        a.extend(extra);
        assert_fails(&boltz(p, &a), 2, needle);
    }
}

/// Runs scripts/slurm/logz-array.sh in `p` with `args` and `env` (the
/// binary is this build's; `BOLTZ_LOCAL` unset unless given) and checks
/// that it succeeded.
fn slurm_script(p: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/slurm/logz-array.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .current_dir(p)
        .env("BOLTZ", env!("CARGO_BIN_EXE_boltz"))
        .env_remove("BOLTZ_LOCAL")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The Slurm job-array script, its task commands run here one after
/// another (`BOLTZ_LOCAL=1`): the merged log Z is the one-process run's.
#[test]
fn slurm_array_script_runs_its_shards_and_merge_locally() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    slurm_script(
        p,
        &[
            "3",
            "run",
            "--",
            "--model",
            "rbm20",
            "--particles",
            "90",
            "--temps",
            "50",
        ],
        &[("BOLTZ_LOCAL", "1")],
    );
    let merged = json(&std::fs::read_to_string(p.join("run/logz.json")).unwrap());
    let one = json(&assert_ok(&boltz(
        p,
        &[
            "logz",
            "--model",
            "rbm20",
            "--method",
            "ais",
            "--no-reverse",
            "--particles",
            "90",
            "--temps",
            "50",
            "--json",
        ],
    )));
    for key in ["log_z", "stderr", "ess"] {
        assert_eq!(merged[key], one[key], "{key}");
    }
    assert_eq!(merged["shards"], 3);
    // A lost shard is named by the merge.
    std::fs::remove_file(p.join("run/shard-1.boltz")).unwrap();
    let files = ["merge", "run/shard-0.boltz", "run/shard-2.boltz"];
    assert_fails(&boltz(p, &files), 2, "shards missing: 1/3");
}

/// A particle shard stopped at a checkpoint and resumed gives the same
/// log-weights; a checkpoint of one shard is refused by another.
#[test]
fn a_shard_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let base = [
        "logz",
        "--model",
        "gmm-ring",
        "--method",
        "ais",
        "--no-reverse",
        "--particles",
        "60",
        "--temps",
        "90",
        "--quiet",
    ];
    let run = |shard: &str, out: &str, extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend(["--shard", shard, "--shard-out", out]);
        a.extend(extra);
        boltz(p, &a)
    };
    assert_ok(&run("0/2", "s0", &[]));
    assert_ok(&run("1/2", "full", &[]));
    assert_ok(&run(
        "1/2",
        "first",
        &["--checkpoint", "ck", "--checkpoint-every", "30"],
    ));
    assert_ok(&run("1/2", "resumed", &["--resume", "ck"]));
    assert_fails(&run("0/2", "x", &["--resume", "ck"]), 2, "other settings");
    // A shard is a pure function of its seed and settings: rerun, or
    // resumed from its checkpoint, it is the same file byte for byte.
    assert_ok(&run("1/2", "again", &[]));
    let bytes = |f: &str| std::fs::read(p.join(f)).unwrap();
    assert!(bytes("again") == bytes("full"), "a rerun shard differs");
    assert!(bytes("resumed") == bytes("full"), "a resumed shard differs");
    let merged = |f: &str| json(&assert_ok(&boltz(p, &["merge", "s0", f, "--json"])));
    let (a, b) = (merged("full"), merged("resumed"));
    for key in ["log_z", "stderr", "ess"] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

/// Rewrites a shard file as a careful forger would: its header (the
/// container's `state`) and values edited, the checksum recomputed.
fn forge(src: &std::path::Path, dst: &std::path::Path, edit: &dyn Fn(&mut Value, &mut Vec<f64>)) {
    let b = std::fs::read(src).unwrap();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let hlen = word(12);
    let mut head: Value = serde_json::from_slice(&b[20..20 + hlen]).unwrap();
    let n = word(20 + hlen);
    let mut vals: Vec<f64> = (0..n)
        .map(|i| f64::from_le_bytes(b[28 + hlen + 8 * i..36 + hlen + 8 * i].try_into().unwrap()))
        .collect();
    edit(&mut head["state"], &mut vals);
    let h = serde_json::to_vec(&head).unwrap();
    let mut out = b[..12].to_vec();
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&(vals.len() as u64).to_le_bytes());
    for v in &vals {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let sum = boltz::io::fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    std::fs::write(dst, out).unwrap();
}

/// Issue 30's forged shard files (S073-S085; checksums recomputed): every
/// one is refused by the merge with one `error:` line and exit 2, before
/// anything is allocated from its header, and never merged into a number.
#[test]
fn forged_shard_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("pts.npy"), 2, 2, &[0.1, 0.9, -0.5, 0.3]);
    for (kind, args) in [
        (
            "logz",
            &[
                "logz",
                "--model",
                "gmm-ring",
                "--particles",
                "40",
                "--temps",
                "10",
                "--no-reverse",
            ][..],
        ),
        (
            "prob",
            &[
                "prob",
                "--model",
                "gmm-ring",
                "--points",
                "pts.npy",
                "--method",
                "ais",
                "--particles",
                "40",
                "--temps",
                "10",
                "--no-reverse",
            ][..],
        ),
        (
            "sample",
            &[
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--chains",
                "4",
                "--warmup",
                "20",
                "--draws",
                "10",
                "--energies",
                "e.npy",
            ][..],
        ),
    ] {
        for i in 0..2 {
            let mut a = args.to_vec();
            let (s, f) = (format!("{i}/2"), format!("{kind}{i}"));
            a.extend(["--shard", &s, "--shard-out", &f, "--quiet"]);
            assert_ok(&boltz(p, &a));
        }
        assert_ok(&boltz(
            p,
            &["merge", &format!("{kind}0"), &format!("{kind}1")],
        ));
    }
    type Edit = Box<dyn Fn(&mut Value, &mut Vec<f64>)>;
    let set = |path: &'static [&'static str], v: Value| -> Edit {
        Box::new(move |h: &mut Value, _: &mut Vec<f64>| {
            let mut at = h;
            for k in path {
                at = &mut at[*k];
            }
            *at = v.clone();
        })
    };
    let big = |e: u32| Value::from(1u64 << e);
    let cases: Vec<(&str, &str, Edit, &str)> = vec![
        (
            "S073",
            "logz",
            Box::new(|_, v| v.iter_mut().for_each(|x| *x = f64::NAN)),
            "NaN",
        ),
        (
            "S074",
            "logz",
            Box::new(|_, v| v.iter_mut().for_each(|x| *x = f64::INFINITY)),
            "inf",
        ),
        (
            "S075",
            "logz",
            set(&["figures", "logz", "log_z0"], 1e308.into()),
            "starts at log Z",
        ),
        (
            "S076",
            "logz",
            set(&["figures", "logz", "log_z0"], "x".into()),
            "logz1",
        ),
        (
            "S077",
            "logz",
            set(&["report"], Value::Null),
            "not an object",
        ),
        (
            "S078",
            "logz",
            set(&["figures", "logz", "energy_evals"], (-5).into()),
            "logz1",
        ),
        (
            "weights",
            "logz",
            Box::new(|_, v| v[0] += 1.0),
            "log-weights give",
        ),
        (
            "estimate",
            "logz",
            set(&["figures", "logz", "log_z"], serde_json::json!([9.0])),
            "log-weights give",
        ),
        (
            "acceptance",
            "logz",
            set(&["figures", "logz", "acceptance"], 7.0.into()),
            "acceptance",
        ),
        ("contexts", "logz", set(&["contexts"], big(62)), "logz1"),
        ("particles", "logz", set(&["total"], big(62)), "logz1"),
        (
            "S079",
            "prob",
            set(
                &["figures", "logz", "prob", "shape"],
                serde_json::json!([1u64 << 32, 1u64 << 32]),
            ),
            "prob1",
        ),
        ("S082", "sample", set(&["draws"], big(31)), "sample1"),
        ("S083", "sample", set(&["draws"], big(40)), "sample1"),
        ("S084", "sample", set(&["dim"], big(62)), "sample1"),
        ("S085", "sample", set(&["total"], big(62)), "sample1"),
        ("draws", "sample", Box::new(|_, v| v[3] = f64::NAN), "NaN"),
        (
            "chains",
            "sample",
            set(
                &["figures", "sample", "acceptance_per_chain"],
                serde_json::json!([0.5]),
            ),
            "chains",
        ),
        (
            "kind",
            "sample",
            set(&["figures"], serde_json::json!({"logz": null})),
            "sample1",
        ),
    ];
    for (id, kind, edit, needle) in cases {
        let f = format!("{kind}1");
        forge(&p.join(&f), &p.join("forged"), edit.as_ref());
        std::fs::rename(p.join(&f), p.join("keep")).unwrap();
        std::fs::rename(p.join("forged"), p.join(&f)).unwrap();
        let out = boltz(p, &["merge", &format!("{kind}0"), &f, "--json"]);
        std::fs::rename(p.join("keep"), p.join(&f)).unwrap();
        eprintln!("{id}: {}", String::from_utf8_lossy(&out.stderr).trim());
        assert_fails(&out, 2, needle);
    }
}

/// The Slurm script's submission path, with a stand-in `sbatch` that logs
/// its arguments: the merge job is cancelled if a task fails
/// (`--kill-on-invalid-dep=yes`), and the printed by-hand rerun of a task
/// that failed, then the printed merge, give the one-process log Z.
#[test]
fn slurm_array_script_prints_the_rerun_and_merge_of_a_failed_task() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let bin = p.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("sbatch");
    std::fs::write(
        &fake,
        "#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" >> \"$SBATCH_LOG\"\necho ---- >> \"$SBATCH_LOG\"\necho $((RANDOM + 100))\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let logz = ["--model", "rbm20", "--particles", "60", "--temps", "40"];
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let log_path = p.join("sbatch.log");
    let mut args = vec!["2", "run", "--"];
    args.extend(logz);
    let out = slurm_script(
        p,
        &args,
        &[("PATH", &path), ("SBATCH_LOG", log_path.to_str().unwrap())],
    );
    let log = std::fs::read_to_string(p.join("sbatch.log")).unwrap();
    let jobs: Vec<&str> = log.split("----\n").filter(|j| !j.is_empty()).collect();
    assert_eq!(jobs.len(), 2, "{log}");
    assert!(jobs[0].contains("--array=0-1"), "{}", jobs[0]);
    assert!(jobs[1].contains("--kill-on-invalid-dep=yes"), "{}", jobs[1]);
    let text = String::from_utf8_lossy(&out.stdout);
    let by_hand = text
        .lines()
        .skip_while(|l| *l != "or by hand, here:")
        .nth(1)
        .unwrap_or_else(|| panic!("no by-hand rerun in:\n{text}"))
        .trim();
    assert!(text.contains("sbatch --array=I"), "{text}");
    // Task 0 ran; task 1 failed: its printed rerun, then the printed merge.
    let wrap = jobs[0]
        .lines()
        .skip_while(|l| *l != "--wrap")
        .nth(1)
        .unwrap();
    let run = |cmd: &str, task: &str| {
        let o = std::process::Command::new("bash")
            .args(["-c", cmd])
            .current_dir(p)
            .env("BOLTZ", env!("CARGO_BIN_EXE_boltz"))
            .env("SLURM_ARRAY_TASK_ID", task)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&format!("{wrap} > run/shard-0.json"), "0");
    run(
        &by_hand.replace("=I ", "=1 ").replace("shard-I", "shard-1"),
        "",
    );
    let merged = json(&std::fs::read_to_string(p.join("run/logz.json")).unwrap());
    let mut one = vec!["logz", "--method", "ais", "--no-reverse", "--json"];
    one.extend(logz);
    let one = json(&assert_ok(&boltz(p, &one)));
    for key in ["log_z", "stderr", "ess"] {
        assert_eq!(merged[key], one[key], "{key}");
    }
}

/// The Slurm array script under a real single-node Slurm (issue 29), run
/// only with `BOLTZ_TEST_SLURM=1` (it starts slurmctld, slurmd and, if
/// needed, munged as root: `apt-get install slurm-wlm munge`): task 1 of
/// 3 fails once, Slurm cancels the merge job, the printed rerun and
/// re-merge give the one-process run's log Z, se, ESS and acceptance.
#[test]
fn real_slurm_runs_the_array_a_failed_task_and_its_rerun() {
    if std::env::var("BOLTZ_TEST_SLURM").as_deref() != Ok("1") {
        eprintln!("skipped: set BOLTZ_TEST_SLURM=1 to run under a real Slurm");
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/slurm/test-real-slurm.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .env("BOLTZ", env!("CARGO_BIN_EXE_boltz"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
