//! Reliability, round two: hostile counts, special files, output
//! transactions, kill -9 on AIS and prob, concurrent state, edited inputs
//! and checkpoints. Each case was a crash, a hang, a silent wrong result
//! or a lost update before.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn npy_raw(path: &Path, header: &str, body: &[u8]) {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(body);
    std::fs::write(path, b).unwrap();
}

fn boltz_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_boltz"));
    c.args(args)
        .current_dir(dir)
        .env_remove("RAYON_NUM_THREADS");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Counts that imply absurd memory or overflow are refused with exit 2 and
/// a message that says what they would need; no abort, no panic.
#[test]
fn hostile_counts_are_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("d.npy"), 4, 2, &[0.0; 8]);
    npy_raw(
        &p.join("empty.npy"),
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 0), }",
        &[],
    );
    npy(&p.join("x.npy"), 1, 1, &[0.3]);
    std::fs::write(p.join("a-file"), b"").unwrap();
    let max = u64::MAX.to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // Issue 34: an --out directory that is a file was found after the
        // whole comparison ran (exit 1).
        (
            vec!["compare", "--model", "gmm-ring", "--out", "a-file"],
            "not a directory",
        ),
        (
            vec!["bench", "--workloads", "W1", "--quick", "--out", "a-file"],
            "not a directory",
        ),
        // Issue 32: a reference no replica can bridge (its variance
        // underflows) gave log Z -1378 on a standard Gaussian, unwarned.
        (
            vec![
                "logz",
                "--model",
                "gmm-ring",
                "--method",
                "pt",
                "--base-scale",
                "1e-300",
            ],
            "--base-scale",
        ),
        // Issue 34: conditional AIS (and its shards) went past the budget
        // and aborted on allocation.
        (
            vec![
                "logz",
                "--model",
                "ring",
                "--method",
                "ais",
                "--context",
                "x.npy",
                "--particles",
                "1073741824",
                "--temps",
                "5",
            ],
            "would need",
        ),
        (
            vec![
                "logz",
                "--model",
                "ring",
                "--method",
                "ais",
                "--context",
                "x.npy",
                "--particles",
                "1073741824",
                "--temps",
                "5",
                "--shard",
                "0/2",
                "--shard-out",
                "s",
            ],
            "would need",
        ),
        (
            vec![
                "negatives",
                "--model",
                "gmm-ring",
                "--data",
                "empty.npy",
                "--out",
                "n.npy",
            ],
            "would need",
        ),
        (
            vec![
                "negatives",
                "--model",
                "gmm-ring",
                "--data",
                "d.npy",
                "--chains",
                "1000000000000",
                "--out",
                "n.npy",
            ],
            "would need",
        ),
        (
            vec![
                "logz",
                "--model",
                "gmm-ring",
                "--method",
                "ais",
                "--bootstrap",
                "1000000000000",
            ],
            "bootstrap",
        ),
        (
            vec![
                "logz", "--model", "gmm-ring", "--method", "ais", "--temps", &max,
            ],
            "temps",
        ),
        (
            vec![
                "logz",
                "--model",
                "gmm-ring",
                "--method",
                "ais",
                "--temps",
                "4000000000",
            ],
            "temps",
        ),
        (
            vec![
                "logz",
                "--model",
                "gmm-ring",
                "--method",
                "ais",
                "--repeats",
                "1000000000",
            ],
            "repeats",
        ),
        (
            vec![
                "logz",
                "--model",
                "gmm-ring",
                "--method",
                "ais",
                "--steps-per-temp",
                "1000000000",
            ],
            "steps per temperature",
        ),
        (
            vec![
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "hmc",
                "--leapfrog",
                "4000000000",
                "--out",
                "s.npy",
            ],
            "leapfrog",
        ),
        (
            vec![
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--chains",
                "1000000000000",
                "--out",
                "s.npy",
            ],
            "would need",
        ),
        (
            vec![
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--thin",
                &max,
                "--draws",
                "2",
                "--out",
                "s.npy",
            ],
            "overflows",
        ),
        (
            vec![
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--warmup",
                &max,
                "--out",
                "s.npy",
            ],
            "overflows",
        ),
        (
            vec![
                "negatives",
                "--model",
                "gmm-ring",
                "--data",
                "d.npy",
                "--buffer",
                "1000000000000000",
                "--out",
                "n.npy",
            ],
            "would need",
        ),
        (
            vec![
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--beta",
                "1e308",
                "--out",
                "s.npy",
            ],
            "beta",
        ),
        (vec!["--threads", "100000", "suite"], "--threads"),
    ];
    for (args, needle) in cases {
        assert_fails(&boltz(p, &args), 2, needle);
    }
    // An npy whose float64 form would not fit the memory budget.
    npy_raw(
        &p.join("u1.npy"),
        "{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 2), }",
        &vec![1u8; 200_000],
    );
    let out = boltz_env(
        p,
        &[
            "energy", "--model", "gmm-ring", "--points", "u1.npy", "--out", "e.npy",
        ],
        &[("BOLTZ_MAX_MEMORY", "1000000")],
    );
    assert_fails(&out, 2, "would need");
}

/// Inputs that are not what they claim: devices, FIFOs, NaN rows,
/// duplicate keys, a header with a decoy 'descr'.
#[test]
fn bad_inputs_are_exit_2_and_never_hang() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("d.npy"), 2, 2, &[0.0, f64::NAN, 1.0, 1.0]);
    npy(&p.join("y.npy"), 1, 2, &[0.5, 0.1]);
    npy(&p.join("x.npy"), 2, 1, &[f64::INFINITY, 0.1]);
    std::fs::write(
        p.join("dup.json"),
        r#"{"kind": "gaussian", "mean": [0], "std": [1], "std": [2]}"#,
    )
    .unwrap();
    let fifo = p.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let t0 = Instant::now();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "energy",
                "--model",
                "gmm-ring",
                "--points",
                "/dev/zero",
                "--out",
                "e.npy",
            ],
            "not a regular file",
        ),
        (vec!["logz", "--model", "/dev/zero"], "not a regular file"),
        (
            vec![
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--out",
                "s.npy",
                "--resume",
                "/dev/zero",
            ],
            "not a regular file",
        ),
        (
            vec![
                "energy", "--model", "gmm-ring", "--points", "fifo", "--out", "e.npy",
            ],
            "not a regular file",
        ),
        (
            vec![
                "negatives",
                "--model",
                "gmm-ring",
                "--data",
                "d.npy",
                "--out",
                "n.npy",
            ],
            "not finite",
        ),
        (
            vec![
                "prob",
                "--model",
                "ring",
                "--context",
                "x.npy",
                "--points",
                "y.npy",
                "--out",
                "p.npy",
            ],
            "not finite",
        ),
        (vec!["logz", "--model", "dup.json"], "appears twice"),
    ];
    for (args, needle) in cases {
        assert_fails(&boltz(p, &args), 2, needle);
    }
    assert!(t0.elapsed() < Duration::from_secs(30), "an input hung");
    // A decoy 'descr' inside a string value: the real dtype is f8.
    let mut body = Vec::new();
    for v in [3.0f64, 4.0] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    npy_raw(
        &p.join("decoy.npy"),
        "{'note': \"'descr': '|u1', \", 'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }",
        &body,
    );
    assert_ok(&boltz(
        p,
        &[
            "energy",
            "--model",
            "gmm-ring",
            "--points",
            "decoy.npy",
            "--out",
            "e.npy",
        ],
    ));
    npy_raw(
        &p.join("twice.npy"),
        "{'descr': '<f8', 'descr': '|u1', 'fortran_order': False, 'shape': (1, 2), }",
        &body,
    );
    assert_fails(
        &boltz(
            p,
            &[
                "energy",
                "--model",
                "gmm-ring",
                "--points",
                "twice.npy",
                "--out",
                "e.npy",
            ],
        ),
        2,
        "appears twice",
    );
}

/// Loops that used to ignore the first signal (negatives' steps, compare,
/// bench) stop within a second of their own work (CPU time per core after
/// the signal: a loaded machine stretches the wall time, not the work).
#[test]
fn every_loop_stops_within_a_second_of_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("d.npy"), 64, 2, &vec![0.1; 128]);
    let max = u64::MAX.to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "negatives",
            "--model",
            "gmm-ring",
            "--data",
            "d.npy",
            "--steps",
            &max,
            "--out",
            "n.npy",
            "--state",
            "st",
        ],
        vec![
            "compare",
            "--model",
            "gauss-ill",
            "--draws",
            "1000000",
            "--warmup",
            "1000000",
        ],
        vec![
            "sample",
            "--model",
            "gmm-ring",
            "--sampler",
            "mala",
            "--draws",
            "1000000",
            "--thin",
            "1000",
            "--out",
            "s.npy",
            "--quiet",
        ],
        vec![
            "logz", "--model", "gmm-ring", "--method", "ais", "--temps", "5000000",
        ],
    ];
    for args in cases {
        let child = Command::new(env!("CARGO_BIN_EXE_boltz"))
            .args(&args)
            .current_dir(p)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let (out, wall, cpu) = stop_with(child, "TERM");
        assert_stopped_soon(args[0], wall, cpu);
        assert_eq!(
            out.status.code(),
            Some(143),
            "{}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !p.join("st").exists(),
        "a stopped negatives call writes no state"
    );
}

/// Outputs: special files are written through, links followed, never
/// replaced; a failing secondary output replaces nothing; one path for two
/// outputs (or an input) is refused; stale temporaries of dead runs are
/// cleaned; long names work.
#[test]
fn outputs_are_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("y.npy"), 2, 2, &[0.0, 1.0, 2.0, 3.0]);
    let sample = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "sample",
            "--model",
            "gmm-ring",
            "--sampler",
            "mala",
            "--draws",
            "20",
            "--warmup",
            "20",
            "--quiet",
            "--out",
            out,
        ];
        a.extend(extra);
        boltz(p, &a)
    };
    // Special files.
    assert_ok(&sample("/dev/null", &[]));
    let out = sample("/dev/full", &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for dev in ["/dev/null", "/dev/full"] {
        let m = std::fs::metadata(dev).unwrap();
        assert!(!m.is_file(), "{dev} was replaced by a regular file");
    }
    // A link is followed, not replaced.
    std::fs::write(p.join("real.npy"), b"old").unwrap();
    std::os::unix::fs::symlink("real.npy", p.join("link.npy")).unwrap();
    assert_ok(&sample("link.npy", &[]));
    assert!(
        std::fs::symlink_metadata(p.join("link.npy"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(read(&p.join("real.npy")).shape, vec![4, 20, 2]);
    // A failing secondary output replaces nothing.
    std::fs::write(p.join("s.npy"), b"previous").unwrap();
    std::fs::create_dir(p.join("adir")).unwrap();
    for extra in [
        &["--report", "adir"][..],
        &["--energies", "missing/e.npy"][..],
    ] {
        let out = sample("s.npy", extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert_eq!(
            std::fs::read(p.join("s.npy")).unwrap(),
            b"previous",
            "{extra:?}"
        );
    }
    assert_fails(
        &boltz(
            p,
            &[
                "prob", "--model", "gmm-ring", "--points", "y.npy", "--out", "lp.npy", "--report",
                "adir",
            ],
        ),
        2,
        "folder",
    );
    assert!(!p.join("lp.npy").exists());
    // One path, two outputs; an output that is an input.
    assert_fails(&sample("s.npy", &["--energies", "s.npy"]), 2, "same file");
    assert_fails(
        &boltz(
            p,
            &[
                "energy", "--model", "gmm-ring", "--points", "y.npy", "--out", "e.npy", "--grad",
                "e.npy",
            ],
        ),
        2,
        "same file",
    );
    assert_fails(
        &boltz(
            p,
            &[
                "energy", "--model", "gmm-ring", "--points", "y.npy", "--out", "y.npy",
            ],
        ),
        2,
        "input",
    );
    // A stale temporary of a dead process is cleaned.
    let stale = p.join(".s.npy.tmp-999999999");
    std::fs::write(&stale, vec![0u8; 1000]).unwrap();
    assert_ok(&sample("s.npy", &[]));
    assert!(!stale.exists(), "stale temporary left");
    // A 245-character name.
    let long = format!("{}.npy", "n".repeat(241));
    assert_ok(&sample(&long, &[]));
    assert_eq!(read(&p.join(&long)).shape, vec![4, 20, 2]);
}

/// Ten concurrent calls twice on one state: every update kept (21 calls
/// after one more).
#[test]
fn concurrent_negatives_on_one_state_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("d.npy"), 16, 2, &vec![0.1; 32]);
    let args = [
        "negatives",
        "--model",
        "gmm-ring",
        "--data",
        "d.npy",
        "--steps",
        "20",
        "--out",
        "n.npy",
        "--state",
        "st",
        "--method",
        "pcd",
    ];
    for _ in 0..2 {
        let kids: Vec<_> = (0..10)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_boltz"))
                    .args(args)
                    .current_dir(p)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().unwrap().success());
        }
    }
    let mut a = args.to_vec();
    a.push("--json");
    let out = assert_ok(&boltz(p, &a));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["call"], 21, "{v}");
}

/// A model edited between checkpoint and resume, and a state used with
/// another model, are refused.
#[test]
fn edited_models_are_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("m.json"),
        r#"{"kind": "gaussian", "mean": [0, 0], "std": [1, 1]}"#,
    )
    .unwrap();
    let base = [
        "sample",
        "--model",
        "m.json",
        "--sampler",
        "mala",
        "--draws",
        "50",
        "--warmup",
        "50",
        "--out",
        "s.npy",
        "--quiet",
        "--checkpoint",
        "ck",
        "--checkpoint-every",
        "10",
    ];
    assert_ok(&boltz(p, &base));
    assert!(p.join("ck").exists());
    std::fs::write(
        p.join("m.json"),
        r#"{"kind": "gaussian", "mean": [0, 0], "std": [1, 2]}"#,
    )
    .unwrap();
    let mut r = base.to_vec();
    r.extend(["--resume", "ck"]);
    assert_fails(&boltz(p, &r), 2, "other settings");
    npy(&p.join("d.npy"), 4, 2, &[0.0; 8]);
    let neg = |model: &str| {
        boltz(
            p,
            &[
                "negatives",
                "--model",
                model,
                "--data",
                "d.npy",
                "--out",
                "n.npy",
                "--state",
                "st",
                "--method",
                "pcd",
            ],
        )
    };
    assert_ok(&neg("m.json"));
    assert_fails(&neg("gmm-ring"), 2, "other settings");
}

/// Reads a checkpoint's parts: kind, settings, state (JSON) and data.
fn open_ck(path: &Path) -> (Value, Vec<u8>) {
    let b = std::fs::read(path).unwrap();
    let hlen = u64::from_le_bytes(b[12..20].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&b[20..20 + hlen]).unwrap();
    (header, b[20 + hlen..b.len() - 8].to_vec())
}

/// Writes a checkpoint back with a valid checksum (what a careful editor
/// would do): only the range checks stand between it and a wrong run.
fn write_ck(path: &Path, header: &Value, rest: &[u8]) {
    let h = serde_json::to_vec(header).unwrap();
    let mut b = b"BOLTZCKP".to_vec();
    b.extend_from_slice(&boltz::io::CHECKPOINT_VERSION.to_le_bytes());
    b.extend_from_slice(&(h.len() as u64).to_le_bytes());
    b.extend_from_slice(&h);
    b.extend_from_slice(rest);
    let sum = boltz::io::fnv1a(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

/// Hand-edited checkpoints are refused (exit 2), never used; a flipped
/// byte fails the checksum; the wrong kind says so.
#[test]
fn edited_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let s = [
        "sample",
        "--model",
        "gmm-ring",
        "--sampler",
        "mala",
        "--draws",
        "100",
        "--warmup",
        "100",
        "--out",
        "s.npy",
        "--quiet",
        "--checkpoint",
        "ck",
        "--checkpoint-every",
        "150",
    ];
    assert_ok(&boltz(p, &s));
    let (h, rest) = open_ck(&p.join("ck"));
    let mut resume = s.to_vec();
    resume.extend(["--resume", "bad"]);
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "draws 2^62",
            Box::new(|v| v["state"]["run"]["config"]["draws"] = Value::from(1u64 << 62)),
        ),
        (
            "draws 4e12",
            Box::new(|v| v["state"]["run"]["config"]["draws"] = Value::from(4_000_000_000_000u64)),
        ),
        (
            "thin 0",
            Box::new(|v| v["state"]["run"]["config"]["thin"] = Value::from(0)),
        ),
        (
            "t - 50",
            Box::new(|v| {
                let t = v["state"]["engine"]["t"].as_u64().unwrap();
                v["state"]["engine"]["t"] = Value::from(t - 50);
            }),
        ),
        (
            "t beyond",
            Box::new(|v| v["state"]["engine"]["t"] = Value::from(1u64 << 40)),
        ),
    ];
    for (what, edit) in edits {
        let mut e = h.clone();
        edit(&mut e);
        write_ck(&p.join("bad"), &e, &rest);
        let out = boltz(p, &resume);
        assert_fails(&out, 2, "checkpoint");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{what}"
        );
    }
    // Flipped bytes anywhere: the checksum.
    let good = std::fs::read(p.join("ck")).unwrap();
    for k in 0..10 {
        let mut b = good.clone();
        let i = 20 + (k * 7919) % (b.len() - 28);
        b[i] ^= 0x10;
        std::fs::write(p.join("bad"), &b).unwrap();
        assert_fails(&boltz(p, &resume), 2, "checkpoint");
    }
    // The wrong kind.
    let l = [
        "logz", "--model", "gmm-ring", "--method", "ais", "--resume", "ck",
    ];
    assert_fails(&boltz(p, &l), 2, "a sample checkpoint, not a ais one");
    // AIS: a temperature index out of range.
    let a = [
        "logz",
        "--model",
        "gmm-ring",
        "--method",
        "ais",
        "--temps",
        "200",
        "--checkpoint",
        "ack",
        "--checkpoint-every",
        "50",
        "--json",
    ];
    assert_ok(&boltz(p, &a));
    let (h, rest) = open_ck(&p.join("ack"));
    let mut e = h.clone();
    e["state"]["tally"]["k"] = Value::from(1_000_000_000u64);
    write_ck(&p.join("ack"), &e, &rest);
    let mut r = a.to_vec();
    r.extend(["--resume", "ack"]);
    assert_fails(&boltz(p, &r), 2, "out of range");
}

/// kill -9 at random moments, then resume: the whole JSON output equals
/// the uninterrupted run's (wall time aside), for logz and prob.
#[test]
fn ais_and_prob_killed_resume_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("x.npy"), 3, 1, &[0.0, 0.5, 0.9]);
    npy(&p.join("y.npy"), 2, 2, &[0.3, 0.1, -0.2, 0.8]);
    let runs: Vec<Vec<&str>> = vec![
        vec![
            "logz",
            "--model",
            "gmm-far",
            "--method",
            "ais",
            "--particles",
            "512",
            "--temps",
            "3000",
            "--json",
        ],
        vec![
            "prob",
            "--model",
            "ring",
            "--context",
            "x.npy",
            "--points",
            "y.npy",
            "--method",
            "ais",
            "--particles",
            "512",
            "--temps",
            "3000",
            "--out",
            "lp.npy",
            "--json",
        ],
    ];
    for base in runs {
        let strip = |t: &str| {
            let mut v: Value = serde_json::from_str(t).unwrap();
            v.as_object_mut().unwrap().remove("wall_s");
            v
        };
        let full = strip(&assert_ok(&boltz(p, &base)));
        for delay_ms in [150u64, 400] {
            let _ = std::fs::remove_file(p.join("ck"));
            let mut args = base.clone();
            args.extend(["--checkpoint", "ck", "--checkpoint-every", "100"]);
            let mut child = Command::new(env!("CARGO_BIN_EXE_boltz"))
                .args(&args)
                .current_dir(p)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            let _ = child.kill();
            let _ = child.wait();
            if !p.join("ck").exists() {
                continue;
            }
            let mut r = args.clone();
            r.extend(["--resume", "ck"]);
            let res = strip(&assert_ok(&boltz(p, &r)));
            assert_eq!(full, res, "{} resumed after {delay_ms} ms", base[0]);
        }
    }
}

/// Two runs writing the same output set at once: each run's outputs land
/// together (issue 34: 3 of 30 trials left one run's --out beside the
/// other's --energies and --report).
#[test]
fn two_runs_writing_one_output_set_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let args = |seed: &str, into: &str| -> Vec<String> {
        [
            "sample",
            "--model",
            "gmm-ring",
            "--sampler",
            "mala",
            "--chains",
            "4",
            "--warmup",
            "30",
            "--draws",
            "40",
            "--quiet",
            "--seed",
            seed,
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("{into}/s.npy"),
            "--energies".into(),
            format!("{into}/e.npy"),
            "--report".into(),
            format!("{into}/r.json"),
        ])
        .collect()
    };
    let mut reference = std::collections::HashMap::new();
    for seed in ["1", "2"] {
        let into = format!("ref{seed}");
        std::fs::create_dir(p.join(&into)).unwrap();
        let a = args(seed, &into);
        assert_ok(&boltz(p, &a.iter().map(String::as_str).collect::<Vec<_>>()));
        let read = |f: &str| std::fs::read(p.join(&into).join(f)).unwrap();
        reference.insert(seed.to_string(), (read("s.npy"), read("e.npy")));
    }
    std::fs::create_dir(p.join("both")).unwrap();
    for trial in 0..20 {
        let kids: Vec<_> = ["1", "2"]
            .iter()
            .map(|seed| {
                Command::new(env!("CARGO_BIN_EXE_boltz"))
                    .args(args(seed, "both"))
                    .current_dir(p)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().unwrap().success());
        }
        let r: Value =
            serde_json::from_slice(&std::fs::read(p.join("both/r.json")).unwrap()).unwrap();
        let seed = r["seed"].to_string();
        let (s, e) = &reference[&seed];
        assert!(
            std::fs::read(p.join("both/s.npy")).unwrap() == *s
                && std::fs::read(p.join("both/e.npy")).unwrap() == *e,
            "trial {trial}: the report is seed {seed}'s, the draws or energies are not"
        );
    }
}

/// `merge --out A --report B` with B on a full disk (S088): exit 1, and A
/// keeps its older contents (the outputs are one transaction).
#[test]
fn a_merge_whose_report_cannot_be_written_replaces_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for i in 0..2 {
        let shard = format!("{i}/2");
        let out = format!("s{i}.boltz");
        assert_ok(&boltz(
            p,
            &[
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--chains",
                "4",
                "--warmup",
                "30",
                "--draws",
                "20",
                "--quiet",
                "--shard",
                &shard,
                "--shard-out",
                &out,
            ],
        ));
    }
    std::fs::write(p.join("A.npy"), b"older").unwrap();
    let out = boltz(
        p,
        &[
            "merge",
            "s0.boltz",
            "s1.boltz",
            "--out",
            "A.npy",
            "--report",
            "/dev/full",
        ],
    );
    assert_fails(&out, 1, "No space left");
    assert_eq!(std::fs::read(p.join("A.npy")).unwrap(), b"older");
}
