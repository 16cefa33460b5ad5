//! Nothing lost, nothing crashes: kill-and-resume, interrupts, a table of
//! bad invocations, fuzzing of the file parsers, and determinism of every
//! command across thread counts.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_boltz"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `path` exists (a checkpoint was written) or the child ends.
fn wait_for(path: &Path, child: &mut std::process::Child) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if path.exists() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return path.exists();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

const SAMPLE: [&str; 14] = [
    "sample",
    "--model",
    "gauss-ill",
    "--sampler",
    "hmc",
    "--chains",
    "8",
    "--warmup",
    "500",
    "--draws",
    "3000",
    "--seed",
    "4",
    "--quiet",
];

#[test]
fn sample_killed_after_a_checkpoint_resumes_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let mut full = SAMPLE.to_vec();
    full.extend(["--out", "full.npy"]);
    assert_ok(&boltz(p, &full));
    let mut args = SAMPLE.to_vec();
    args.extend([
        "--out",
        "part.npy",
        "--checkpoint",
        "ck.bin",
        "--checkpoint-every",
        "400",
    ]);
    let mut child = spawn(p, &args);
    assert!(
        wait_for(&p.join("ck.bin"), &mut child),
        "a checkpoint appears"
    );
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    assert!(
        !p.join("part.npy").exists()
            || std::fs::read(p.join("part.npy")).unwrap()
                == std::fs::read(p.join("full.npy")).unwrap()
    );
    let mut resume = args.clone();
    resume.extend(["--resume", "ck.bin"]);
    assert_ok(&boltz(p, &resume));
    assert_eq!(
        std::fs::read(p.join("part.npy")).unwrap(),
        std::fs::read(p.join("full.npy")).unwrap()
    );
    // Other settings are refused.
    let mut other: Vec<&str> = SAMPLE
        .iter()
        .map(|a| if *a == "4" { "5" } else { a })
        .collect();
    other.extend(["--out", "x.npy", "--resume", "ck.bin"]);
    assert_fails(&boltz(p, &other), 2, "other settings");
}

#[test]
fn sigint_and_sigterm_stop_with_a_checkpoint_and_partial_output() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // 20,000 sampling steps (thinned to 2,000 draws): long enough to be
    // interrupted after the first checkpoint, small enough to diagnose fast.
    let mut long: Vec<&str> = SAMPLE
        .iter()
        .map(|a| if *a == "3000" { "2000" } else { a })
        .collect();
    long.extend(["--thin", "10"]);
    let mut full = long.clone();
    full.extend(["--out", "full.npy"]);
    assert_ok(&boltz(p, &full));
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let _ = std::fs::remove_file(p.join("ck.bin"));
        let mut args = long.clone();
        args.extend([
            "--out",
            "part.npy",
            "--report",
            "r.json",
            "--checkpoint",
            "ck.bin",
            "--checkpoint-every",
            "2000",
        ]);
        let mut child = spawn(p, &args);
        assert!(wait_for(&p.join("ck.bin"), &mut child));
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("r.json")).unwrap()).unwrap();
        assert_eq!(
            r["partial"], true,
            "{signal}: report marks the output partial"
        );
        let mut resume = args.clone();
        resume.extend(["--resume", "ck.bin"]);
        let out = boltz(p, &resume);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(p.join("part.npy")).unwrap(),
            std::fs::read(p.join("full.npy")).unwrap(),
            "{signal}"
        );
    }
}

#[test]
fn ais_killed_after_a_checkpoint_resumes_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let base = [
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
    ];
    let full: serde_json::Value = serde_json::from_str(&assert_ok(&boltz(p, &base))).unwrap();
    let mut args = base.to_vec();
    args.extend(["--checkpoint", "ais.json", "--checkpoint-every", "200"]);
    let mut child = spawn(p, &args);
    assert!(wait_for(&p.join("ais.json"), &mut child));
    let _ = child.kill();
    let _ = child.wait();
    let mut resume = args.clone();
    resume.extend(["--resume", "ais.json"]);
    let res: serde_json::Value = serde_json::from_str(&assert_ok(&boltz(p, &resume))).unwrap();
    for key in ["log_z", "stderr", "ess"] {
        assert_eq!(
            full[key].as_f64().unwrap().to_bits(),
            res[key].as_f64().unwrap().to_bits(),
            "{key}"
        );
    }
    let mut other: Vec<&str> = base
        .iter()
        .map(|a| if *a == "512" { "256" } else { a })
        .collect();
    other.extend(["--resume", "ais.json"]);
    assert_fails(&boltz(p, &other), 2, "other settings");
}

#[test]
fn negatives_loop_killed_mid_call_continues_identically() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let pos: Vec<f64> = (0..256 * 100).map(|i| 0.01 * ((i % 11) as f64)).collect();
    npy(&p.join("pos.npy"), 256, 100, &pos);
    let args = |state: &str, steps: &str| -> Vec<String> {
        [
            "negatives",
            "--model",
            "gauss-ill",
            "--data",
            "pos.npy",
            "--buffer",
            "1000",
            "--steps",
            steps,
            "--state",
            state,
            "--out",
            &format!("{state}.npy"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run =
        |a: Vec<String>| assert_ok(&boltz(p, &a.iter().map(String::as_str).collect::<Vec<_>>()));
    for _ in 0..3 {
        run(args("a", "200"));
    }
    run(args("b", "200"));
    // The second call is killed while it runs: its state file is untouched.
    let before = std::fs::read(p.join("b")).unwrap();
    let a2 = args("b", "200");
    let mut child = spawn(p, &a2.iter().map(String::as_str).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(30));
    let _ = child.kill();
    let _ = child.wait();
    let after = std::fs::read(p.join("b")).unwrap();
    assert!(
        after == before || after == std::fs::read(p.join("a")).map(|_| after.clone()).unwrap(),
        "state is either the old one or a complete new one"
    );
    if after == before {
        run(args("b", "200"));
    }
    run(args("b", "200"));
    assert_eq!(
        std::fs::read(p.join("a.npy")).unwrap(),
        std::fs::read(p.join("b.npy")).unwrap()
    );
}

#[test]
fn table_of_bad_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("y.npy"), 3, 2, &[0.0; 6]);
    npy(&p.join("y100.npy"), 3, 100, &[0.0; 300]);
    std::fs::write(p.join("trunc.npy"), &b"\x93NUMPY\x01\x00\x46\x00{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }      \n\x00\x00"[..]).unwrap();
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000000, 2), }\n";
    let mut huge = b"\x93NUMPY\x01\x00".to_vec();
    huge.extend_from_slice(&(header.len() as u16).to_le_bytes());
    huge.extend_from_slice(header.as_bytes());
    std::fs::write(p.join("huge.npy"), huge).unwrap();
    let i4 = "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }\n";
    let mut be = b"\x93NUMPY\x01\x00".to_vec();
    be.extend_from_slice(&(i4.len() as u16).to_le_bytes());
    be.extend_from_slice(i4.as_bytes());
    be.extend_from_slice(&[0; 8]);
    std::fs::write(p.join("bigendian.npy"), be).unwrap();
    std::fs::write(p.join("text.npy"), "hello").unwrap();
    std::fs::create_dir(p.join("adir")).unwrap();
    std::fs::write(
        p.join("m.json"),
        r#"{"kind": "gaussian", "mean": [0, 0], "std": [1, 1]}"#,
    )
    .unwrap();
    std::fs::write(p.join("neg.json"), r#"{"kind": "funnel", "dim": -3}"#).unwrap();
    std::fs::write(
        p.join("nan.json"),
        r#"{"kind": "gaussian", "mean": [0, NaN], "std": [1, 1]}"#,
    )
    .unwrap();
    std::fs::write(
        p.join("deep.json"),
        format!("{}{}", "[".repeat(10000), "]".repeat(10000)),
    )
    .unwrap();
    std::fs::write(
        p.join("type.json"),
        r#"{"kind": "ring", "x_dim": 1, "y_dim": 2, "width": "wide"}"#,
    )
    .unwrap();
    std::fs::write(p.join("empty.json"), "").unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec![], 2, "usage"),
        (vec!["nonsense"], 2, "nonsense"),
        (
            vec![
                "energy",
                "--model",
                "m.json",
                "--points",
                "trunc.npy",
                "--out",
                "e.npy",
            ],
            2,
            "truncated",
        ),
        (
            vec![
                "energy", "--model", "m.json", "--points", "huge.npy", "--out", "e.npy",
            ],
            2,
            "too large",
        ),
        (
            vec![
                "energy",
                "--model",
                "m.json",
                "--points",
                "bigendian.npy",
                "--out",
                "e.npy",
            ],
            2,
            "unsupported dtype",
        ),
        (
            vec![
                "energy", "--model", "m.json", "--points", "text.npy", "--out", "e.npy",
            ],
            2,
            "not an npy file",
        ),
        (
            vec![
                "energy", "--model", "m.json", "--points", "adir", "--out", "e.npy",
            ],
            2,
            "directory",
        ),
        (
            vec![
                "energy",
                "--model",
                "m.json",
                "--points",
                "missing.npy",
                "--out",
                "e.npy",
            ],
            2,
            "missing.npy",
        ),
        (
            vec![
                "energy", "--model", "m.json", "--points", "y100.npy", "--out", "e.npy",
            ],
            2,
            "shape mismatch",
        ),
        (
            vec![
                "energy", "--model", "neg.json", "--points", "y.npy", "--out", "e.npy",
            ],
            2,
            "dim",
        ),
        (
            vec![
                "energy", "--model", "nan.json", "--points", "y.npy", "--out", "e.npy",
            ],
            2,
            "malformed JSON",
        ),
        (
            vec![
                "energy",
                "--model",
                "deep.json",
                "--points",
                "y.npy",
                "--out",
                "e.npy",
            ],
            2,
            "malformed JSON",
        ),
        (
            vec![
                "energy",
                "--model",
                "type.json",
                "--points",
                "y.npy",
                "--out",
                "e.npy",
            ],
            2,
            "width",
        ),
        (
            vec![
                "energy",
                "--model",
                "empty.json",
                "--points",
                "y.npy",
                "--out",
                "e.npy",
            ],
            2,
            "malformed JSON",
        ),
        (
            vec![
                "energy", "--model", "adir", "--points", "y.npy", "--out", "e.npy",
            ],
            2,
            "directory",
        ),
        (
            vec![
                "energy", "--model", "m.json", "--points", "y.npy", "--out", "adir",
            ],
            2,
            "adir",
        ),
        (
            vec![
                "energy",
                "--model",
                "m.json",
                "--points",
                "y.npy",
                "--out",
                "nodir/e.npy",
            ],
            2,
            "nodir",
        ),
        (
            vec![
                "energy", "--model", "ring:x:y", "--points", "y.npy", "--out", "e.npy",
            ],
            2,
            "ring:N:M",
        ),
        (
            vec![
                "sample",
                "--model",
                "m.json",
                "--sampler",
                "mala",
                "--chains",
                "-3",
                "--out",
                "s.npy",
            ],
            2,
            "-3",
        ),
        (
            vec![
                "sample",
                "--model",
                "m.json",
                "--sampler",
                "mala",
                "--chains",
                "0",
                "--out",
                "s.npy",
            ],
            2,
            "chains",
        ),
        (
            vec![
                "sample",
                "--model",
                "m.json",
                "--sampler",
                "mala",
                "--beta",
                "inf",
                "--out",
                "s.npy",
            ],
            2,
            "beta",
        ),
        (
            vec![
                "sample",
                "--model",
                "m.json",
                "--sampler",
                "mala",
                "--beta",
                "-1",
                "--out",
                "s.npy",
            ],
            2,
            "beta",
        ),
        (
            vec![
                "sample",
                "--model",
                "m.json",
                "--sampler",
                "mala",
                "--init",
                "y100.npy",
                "--out",
                "s.npy",
            ],
            2,
            "shape",
        ),
        (
            vec![
                "sample",
                "--model",
                "m.json",
                "--sampler",
                "mala",
                "--resume",
                "y.npy",
                "--out",
                "s.npy",
            ],
            2,
            "checkpoint",
        ),
        (
            vec![
                "sample",
                "--model",
                "m.json",
                "--sampler",
                "mala",
                "--draws",
                "18446744073709551615",
                "--out",
                "s.npy",
            ],
            2,
            "overflows",
        ),
        (vec!["diagnose", "--samples", "trunc.npy"], 2, "truncated"),
        (
            vec![
                "logz", "--model", "m.json", "--method", "ais", "--temps", "0",
            ],
            2,
            "temps",
        ),
        (
            vec![
                "logz",
                "--model",
                "m.json",
                "--method",
                "ais",
                "--particles",
                "0",
            ],
            2,
            "particles",
        ),
        (
            vec![
                "logz",
                "--model",
                "m.json",
                "--method",
                "ais",
                "--base-scale",
                "0",
            ],
            2,
            "base-scale",
        ),
        (
            vec![
                "logz",
                "--model",
                "m.json",
                "--method",
                "ais",
                "--cess",
                "1.5",
                "--schedule",
                "adaptive",
            ],
            2,
            "cess",
        ),
        (
            vec![
                "prob",
                "--model",
                "ring",
                "--context",
                "y.npy",
                "--points",
                "y.npy",
                "--out",
                "p.npy",
            ],
            2,
            "context",
        ),
        (
            vec![
                "negatives",
                "--model",
                "m.json",
                "--data",
                "y.npy",
                "--reinit",
                "-0.1",
                "--buffer",
                "5",
                "--out",
                "n.npy",
            ],
            2,
            "reinit",
        ),
        (
            vec![
                "negatives",
                "--model",
                "m.json",
                "--data",
                "y.npy",
                "--steps",
                "3",
                "--state",
                "adir",
                "--out",
                "n.npy",
            ],
            2,
            "adir",
        ),
        (vec!["--threads", "0", "suite"], 2, "threads"),
        (
            vec![
                "logz",
                "--model",
                "gauss-ill",
                "--method",
                "ais",
                "--particles",
                "100000000000",
            ],
            2,
            "GiB",
        ),
        (
            vec![
                "negatives",
                "--model",
                "m.json",
                "--data",
                "y.npy",
                "--buffer",
                "1000000000000",
                "--out",
                "n.npy",
            ],
            2,
            "GiB",
        ),
    ];
    assert!(cases.len() >= 30);
    for (args, code, needle) in cases {
        let out = boltz(p, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if args.is_empty() {
            assert_eq!(out.status.code(), Some(2), "no arguments: usage");
            continue;
        }
        assert_fails(&out, code, needle);
    }
}

#[test]
fn every_command_is_deterministic_across_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(
        &p.join("pos.npy"),
        40,
        100,
        &(0..4000)
            .map(|i| 0.01 * ((i % 9) as f64))
            .collect::<Vec<_>>(),
    );
    npy(&p.join("x.npy"), 3, 1, &[0.0, 0.5, 1.2]);
    npy(
        &p.join("y.npy"),
        5,
        2,
        &[0.1, 0.9, -0.5, 0.5, 1.0, 0.0, 0.2, -0.2, 0.0, 0.0],
    );
    let cmds: Vec<Vec<&str>> = vec![
        vec![
            "sample",
            "--model",
            "funnel",
            "--sampler",
            "mala",
            "--chains",
            "20",
            "--warmup",
            "50",
            "--draws",
            "20",
            "--out",
            "o.npy",
            "--quiet",
        ],
        vec![
            "negatives",
            "--model",
            "gauss-ill",
            "--data",
            "pos.npy",
            "--buffer",
            "100",
            "--steps",
            "10",
            "--out",
            "o.npy",
        ],
        vec![
            "negatives",
            "--model",
            "gauss-ill",
            "--data",
            "pos.npy",
            "--method",
            "cd",
            "--kernel",
            "mala",
            "--step-size",
            "0.001",
            "--steps",
            "10",
            "--out",
            "o.npy",
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
            "64",
            "--temps",
            "40",
            "--out",
            "o.npy",
        ],
    ];
    for cmd in cmds {
        let mut outs = Vec::new();
        for threads in ["1", "2"] {
            let out = boltz_threads(p, &cmd, Some(threads));
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            outs.push(std::fs::read(p.join("o.npy")).unwrap());
        }
        assert_eq!(outs[0], outs[1], "{cmd:?}");
    }
}
