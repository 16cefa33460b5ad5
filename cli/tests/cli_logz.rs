//! `boltz logz` and `boltz prob` from the outside.

mod common;
use common::*;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&assert_ok(out)).unwrap()
}

#[test]
fn logz_json_keys_exact_and_ais() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let v = json(&boltz(p, &["logz", "--model", "rbm20", "--json"]));
    assert_eq!(v["method"], "exact");
    assert!((v["log_z"].as_f64().unwrap() - 62.797870862).abs() < 1e-8);
    let v = json(&boltz(
        p,
        &[
            "logz",
            "--model",
            "gmm-ring",
            "--method",
            "ais",
            "--particles",
            "256",
            "--temps",
            "200",
            "--reverse",
            "--json",
        ],
    ));
    for key in ["log_z", "stderr", "ess", "method", "wall_s", "log_z_upper"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    let (lz, se, up) = (
        v["log_z"].as_f64().unwrap(),
        v["stderr"].as_f64().unwrap(),
        v["log_z_upper"].as_f64().unwrap(),
    );
    assert!((lz - 1.509373).abs() < 4.0 * se + 1e-3, "{lz} +- {se}");
    let se_up = v["stderr_upper"].as_f64().unwrap();
    // Both bounds are stochastic: the upper one sits above the lower one up to MC error.
    assert!(
        up > lz - 3.0 * (se + se_up),
        "upper {up} +- {se_up} vs lower {lz} +- {se}"
    );
    // Contexts: arrays of length k.
    npy(&p.join("x.npy"), 3, 1, &[0.0, 0.5, 1.2]);
    let v = json(&boltz(
        p,
        &[
            "logz",
            "--model",
            "ring:1:2",
            "--context",
            "x.npy",
            "--method",
            "ais",
            "--particles",
            "256",
            "--temps",
            "200",
            "--json",
        ],
    ));
    for key in ["log_z", "stderr", "ess"] {
        assert_eq!(v[key].as_array().unwrap().len(), 3, "{key}");
    }
    let v = json(&boltz(
        p,
        &[
            "logz",
            "--model",
            "ring:1:2",
            "--context",
            "x.npy",
            "--json",
        ],
    ));
    assert_eq!(v["method"], "exact");
    assert_eq!(v["log_z"].as_array().unwrap().len(), 3);
}

#[test]
fn logz_is_byte_identical_for_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for model in ["gmm-far", "rbm20"] {
        let mut outs = Vec::new();
        for threads in ["1", "2"] {
            let out = boltz_threads(
                p,
                &[
                    "logz",
                    "--model",
                    model,
                    "--method",
                    "ais",
                    "--particles",
                    "100",
                    "--temps",
                    "50",
                    "--json",
                ],
                Some(threads),
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            outs.push((
                v["log_z"].as_f64().unwrap().to_bits(),
                v["stderr"].as_f64().unwrap().to_bits(),
            ));
        }
        assert_eq!(outs[0], outs[1], "{model}");
    }
}

#[test]
fn prob_writes_log_p_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("x.npy"), 2, 1, &[0.0, 0.5]);
    let pts: Vec<f64> = (0..30).map(|i| (i as f64 / 10.0) - 1.5).collect();
    npy(&p.join("y.npy"), 10, 3, &pts);
    assert_ok(&boltz(
        p,
        &[
            "prob",
            "--model",
            "ring:1:3",
            "--context",
            "x.npy",
            "--points",
            "y.npy",
            "--out",
            "lp.npy",
            "--report",
            "r.json",
        ],
    ));
    let lp = read(&p.join("lp.npy"));
    assert_eq!(lp.shape, vec![2, 10]);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("r.json")).unwrap()).unwrap();
    assert_eq!(r["log_z"].as_array().unwrap().len(), 2);
    assert_ok(&boltz(
        p,
        &[
            "prob",
            "--model",
            "ring:1:3",
            "--context",
            "x.npy",
            "--points",
            "y.npy",
            "--out",
            "lp2.npy",
            "--method",
            "ais",
            "--particles",
            "512",
            "--temps",
            "300",
            "--report",
            "r2.json",
        ],
    ));
    let lp2 = read(&p.join("lp2.npy"));
    let r2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("r2.json")).unwrap()).unwrap();
    let se: Vec<f64> = r2["stderr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // log P(y|x) differs from the exact one by the log Z(x) error alone:
    // within 3.5 reported standard errors of that context's AIS run (two
    // contexts, so a false alarm has probability below 0.1%).
    for (k, s) in se.iter().enumerate() {
        for i in 0..10 {
            let err = (lp.data[k * 10 + i] - lp2.data[k * 10 + i]).abs();
            assert!(
                err <= 3.5 * s,
                "context {k}: AIS vs radial quadrature {err} > 3.5 se ({s})"
            );
        }
    }
}

#[test]
fn logz_refuses_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", "gmm-ring", "--method", "ais", "--particles", "0"],
            "particles",
        ),
        (
            vec!["--model", "gmm-ring", "--method", "ais", "--temps", "0"],
            "temps",
        ),
        (
            vec![
                "--model",
                "gmm-ring",
                "--method",
                "ais",
                "--step-size",
                "-1",
            ],
            "step-size",
        ),
        (
            vec!["--model", "gmm-ring", "--method", "ais", "--beta", "0"],
            "beta",
        ),
        (
            vec![
                "--model",
                "gmm-ring",
                "--method",
                "ais",
                "--schedule",
                "cubic",
            ],
            "cubic",
        ),
        (
            vec![
                "--model", "gmm-ring", "--method", "ais", "--kernel", "gibbs",
            ],
            "binary",
        ),
        (
            vec!["--model", "rbm20", "--method", "ais", "--kernel", "mala"],
            "gibbs",
        ),
        (
            vec!["--model", "gmm-ring", "--method", "ais", "--resample", "2"],
            "resample",
        ),
        (vec!["--model", "mlp", "--method", "exact"], "no exact"),
        (
            vec!["--model", "gauss-ill", "--method", "quadrature"],
            "dimension",
        ),
        (vec!["--model", "gmm-ring", "--method", "magic"], "magic"),
        (
            vec!["--model", "gmm-ring", "--context", "nothere.npy"],
            "nothere.npy",
        ),
    ];
    for (args, needle) in cases {
        let mut a = vec!["logz"];
        a.extend(args);
        assert_fails(&boltz(p, &a), 2, needle);
    }
    // Positives start the pilot of an unconditional model's base: not
    // with a base given, not for a conditional model, not of another width.
    npy(&p.join("d2.npy"), 3, 2, &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    npy(&p.join("d3.npy"), 2, 3, &[0.0; 6]);
    for (args, needle) in [
        (
            &[
                "--model",
                "gmm-ring",
                "--method",
                "ais",
                "--base-scale",
                "2",
                "--data",
                "d2.npy",
            ][..],
            "base_scale gives the base",
        ),
        (
            &["--model", "ring", "--method", "ais", "--data", "d2.npy"][..],
            "one chain per context",
        ),
        (
            &["--model", "gmm-ring", "--method", "smc", "--data", "d3.npy"][..],
            "(n >= 1, 2)",
        ),
    ] {
        let mut a = vec!["logz"];
        a.extend(args);
        assert_fails(&boltz(p, &a), 2, needle);
    }
    assert_fails(
        &boltz(
            p,
            &[
                "prob", "--model", "gmm-ring", "--points", "y.npy", "--out", "o.npy",
            ],
        ),
        2,
        "--points: y.npy",
    );
    assert_fails(
        &boltz(
            p,
            &[
                "prob", "--model", "gmm-ring", "--points", "y.npy", "--out", "o.npy", "--paired",
            ],
        ),
        2,
        "not conditional",
    );
}

/// A conditional model file without contexts is refused with one error
/// line naming the flag (it used to panic, exit 101).
#[test]
fn logz_of_a_conditional_model_without_contexts_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("m.json"),
        r#"{"kind": "mlp", "x_dim": 1, "l2": 1.0, "layers": [
            {"weight": [[0.5], [-0.3]], "bias": [0.1], "activation": "none"}]}"#,
    )
    .unwrap();
    assert_fails(
        &boltz(
            p,
            &[
                "logz", "--model", "m.json", "--method", "ais", "--temps", "5",
            ],
        ),
        2,
        "--context",
    );
}

#[test]
fn contexts_of_the_wrong_width_are_refused_by_every_method() {
    // ring has x_dim 1: a (6, 2) context file was read as 6 contexts of
    // its first column by `--method exact` (silently), and AIS named the
    // shape of the rows it built (48 x 2), not the file's.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("ctx.npy"), 6, 2, &[0.5; 12]);
    for method in ["exact", "quadrature", "ais", "pt"] {
        let out = boltz(
            p,
            &[
                "logz",
                "--model",
                "ring",
                "--context",
                "ctx.npy",
                "--method",
                method,
            ],
        );
        assert_fails(&out, 2, "expected (k >= 1, 1), got [6, 2]");
    }
}
