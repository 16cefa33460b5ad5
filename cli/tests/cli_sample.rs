//! `boltz sample` and `boltz diagnose` from the outside: every suite target
//! they fit, the report's keys, byte-identical output for 1 and 2 threads,
//! and clear errors for impossible settings.

mod common;
use common::*;

#[test]
fn sample_every_suite_target() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for (model, sampler, extra) in [
        ("gauss-ill", "mala", vec![]),
        ("gmm-ring", "hmc", vec![]),
        ("gmm-far", "rwm", vec![]),
        ("funnel", "hmc", vec![]),
        ("ring", "mala", vec![]),
        ("ring:1:3", "ula", vec!["--step-size", "0.001"]),
        ("rbm20", "gibbs", vec![]),
        ("rbm500", "gibbs", vec![]),
    ] {
        let mut args = vec![
            "sample",
            "--model",
            model,
            "--sampler",
            sampler,
            "--chains",
            "4",
            "--warmup",
            "100",
            "--draws",
            "50",
            "--out",
            "s.npy",
            "--report",
            "r.json",
            "--energies",
            "e.npy",
            "--quiet",
        ];
        args.extend(extra);
        let out = assert_ok(&boltz(p, &args));
        assert!(out.contains("ess bulk min"), "{model}: {out}");
        let s = read(&p.join("s.npy"));
        assert_eq!(&s.shape[..2], &[4, 50], "{model}");
        assert!(s.data.iter().all(|v| v.is_finite()));
        assert_eq!(read(&p.join("e.npy")).shape, vec![4, 50]);
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("r.json")).unwrap()).unwrap();
        for key in [
            "acceptance",
            "divergences",
            "ess_bulk_min",
            "ess_tail_min",
            "rhat_max",
            "wall_s",
            "warnings",
        ] {
            assert!(r.get(key).is_some(), "{model}: report lacks {key}");
        }
        // Gibbs has no step size and no gradients: its report says neither.
        let gibbs = r["sampler"] == "gibbs";
        for key in ["step_size", "grad_evals"] {
            assert_eq!(r.get(key).is_some(), !gibbs, "{model}: {key} in report");
        }
        assert_eq!(out.contains("step size"), !gibbs, "{model}: {out}");
    }
    // mlp: one chain per bundled context.
    assert_ok(&boltz(
        p,
        &[
            "sample",
            "--model",
            "mlp",
            "--sampler",
            "ula",
            "--step-size",
            "0.01",
            "--chains",
            "1024",
            "--warmup",
            "0",
            "--draws",
            "5",
            "--out",
            "s.npy",
            "--quiet",
        ],
    ));
    assert_eq!(read(&p.join("s.npy")).shape, vec![1024, 5, 32]);
}

#[test]
fn sample_output_is_byte_identical_for_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for (model, sampler) in [
        ("gauss-ill", "hmc"),
        ("rbm500", "gibbs"),
        ("funnel", "mala"),
    ] {
        let mut files = Vec::new();
        for threads in ["1", "2"] {
            let name = format!("s{threads}.npy");
            let out = boltz_threads(
                p,
                &[
                    "sample",
                    "--model",
                    model,
                    "--sampler",
                    sampler,
                    "--chains",
                    "37",
                    "--warmup",
                    "60",
                    "--draws",
                    "40",
                    "--seed",
                    "5",
                    "--out",
                    &name,
                    "--quiet",
                ],
                Some(threads),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            files.push(std::fs::read(p.join(&name)).unwrap());
        }
        assert_eq!(
            files[0], files[1],
            "{model} {sampler}: output differs between 1 and 2 threads"
        );
        // And --threads gives the same bytes too.
        assert_ok(&boltz(
            p,
            &[
                "--threads",
                "1",
                "sample",
                "--model",
                model,
                "--sampler",
                sampler,
                "--chains",
                "37",
                "--warmup",
                "60",
                "--draws",
                "40",
                "--seed",
                "5",
                "--out",
                "t.npy",
                "--quiet",
            ],
        ));
        assert_eq!(std::fs::read(p.join("t.npy")).unwrap(), files[0]);
    }
}

#[test]
fn diagnose_reads_any_samples_array() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // Two chains of a deterministic pseudo-random sequence.
    let data: Vec<f64> = (0..2 * 400 * 3)
        .map(|i| ((i * 7919 % 1009) as f64 / 1009.0) - 0.5)
        .collect();
    boltz::io::write_npy(&p.join("x.npy"), &[2, 400, 3], &data).unwrap();
    let out = assert_ok(&boltz(p, &["diagnose", "--samples", "x.npy", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["dim"], 3);
    assert!(v["ess_bulk_min"].as_f64().unwrap() > 100.0);
    assert_eq!(v["coordinates"].as_array().unwrap().len(), 3);
    let out = assert_ok(&boltz(p, &["diagnose", "--samples", "x.npy"]));
    assert!(out.contains("rhat_max"));
    npy(&p.join("flat.npy"), 2, 400, &data[..800]);
    assert_ok(&boltz(
        p,
        &[
            "diagnose",
            "--samples",
            "flat.npy",
            "--matrix",
            "chains-draws",
        ],
    ));
    // Read as one chain of 2 draws: too few for diagnostics.
    assert_fails(
        &boltz(p, &["diagnose", "--samples", "flat.npy"]),
        2,
        "draws >= 4",
    );
    boltz::io::write_npy(&p.join("v.npy"), &[10], &data[..10]).unwrap();
    assert_fails(
        &boltz(p, &["diagnose", "--samples", "v.npy"]),
        2,
        "shape mismatch",
    );
}

#[test]
fn impossible_settings_are_refused_before_work() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let base = [
        "sample",
        "--model",
        "gauss-ill",
        "--out",
        "s.npy",
        "--quiet",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--sampler", "mala", "--chains", "0"], "chains"),
        (vec!["--sampler", "mala", "--draws", "0"], "draws"),
        (vec!["--sampler", "mala", "--thin", "0"], "thin"),
        (vec!["--sampler", "mala", "--step-size", "-1"], "step-size"),
        (vec!["--sampler", "mala", "--step-size", "NaN"], "step-size"),
        (
            vec!["--sampler", "mala", "--step-size", "fast"],
            "step-size",
        ),
        (vec!["--sampler", "mala", "--beta", "0"], "beta"),
        (vec!["--sampler", "hmc", "--leapfrog", "0"], "n_steps"),
        (vec!["--sampler", "hmc", "--jitter", "1.5"], "jitter"),
        (
            vec!["--sampler", "ula", "--step-size", "0.1", "--clamp", "1,0"],
            "clamp",
        ),
        (vec!["--sampler", "gibbs"], "binary"),
        (
            vec!["--sampler", "mala", "--draws", "100000000000"],
            "memory",
        ),
        (
            vec!["--sampler", "mala", "--target-accept", "1.5"],
            "target-accept",
        ),
        (vec!["--sampler", "slice"], "slice"),
        (vec!["--sampler", "nuts", "--max-depth", "0"], "--max-depth"),
        (
            vec!["--sampler", "nuts", "--max-depth", "17"],
            "--max-depth",
        ),
    ];
    for (extra, needle) in cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra.iter());
        assert_fails(&boltz(p, &args), 2, needle);
    }
    assert!(
        !p.join("s.npy").exists(),
        "nothing written for refused runs"
    );
    assert_fails(
        &boltz(
            p,
            &[
                "sample",
                "--model",
                "mlp",
                "--sampler",
                "mala",
                "--chains",
                "4",
                "--out",
                "s.npy",
            ],
        ),
        2,
        "1024 contexts",
    );
}

#[test]
fn drifting_chains_and_overflowing_energies_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // F(y) = y_1 + y_2: not normalisable, ULA runs off to -infinity.
    std::fs::write(p.join("lin.json"), r#"{"kind": "mlp", "x_dim": 0, "layers": [{"weight": [[1.0], [1.0]], "bias": [0], "activation": "none"}]}"#).unwrap();
    let out = assert_ok(&boltz(
        p,
        &[
            "sample",
            "--model",
            "lin.json",
            "--sampler",
            "ula",
            "--step-size",
            "0.5",
            "--warmup",
            "0",
            "--draws",
            "2000",
            "--out",
            "d.npy",
            "--quiet",
        ],
    ));
    assert!(out.contains("drift off"), "{out}");
    // Huge weights: energies overflow to inf; proposals there are divergences, outputs stay finite.
    std::fs::write(
        p.join("huge.json"),
        r#"{"kind": "mixture", "weights": [1e300], "means": [[0.0, 0.0]], "std": [1e-150]}"#,
    )
    .unwrap();
    let out = boltz(
        p,
        &[
            "sample",
            "--model",
            "huge.json",
            "--sampler",
            "mala",
            "--chains",
            "4",
            "--warmup",
            "20",
            "--draws",
            "20",
            "--out",
            "h.npy",
            "--report",
            "r.json",
            "--quiet",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    if out.status.success() {
        let s = read(&p.join("h.npy"));
        assert!(s.data.iter().all(|v| v.is_finite()));
    } else {
        assert!(err.starts_with("error: "), "{err}");
    }
}
