//! `boltz suite` and `boltz energy`, including every model-file kind and
//! malformed model files (exit code 2, one line naming the problem, no panic).

mod common;
use common::*;
use std::fs;

#[test]
fn suite_lists_every_target() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_ok(&boltz(dir.path(), &["suite"]));
    for name in boltz::suite::NAMES {
        assert!(out.contains(name), "{name} missing in {out}");
    }
    assert!(out.contains("62.797870862"));
    assert!(out.contains("-23.235401"));
}

#[test]
fn energy_of_every_suite_target() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for (name, d, n) in [
        ("gauss-ill", 100, 5),
        ("gmm-ring", 2, 5),
        ("gmm-far", 32, 5),
        ("funnel", 10, 5),
        ("ring", 2, 5),
        ("mlp", 32, 1024),
        ("rbm20", 64, 5),
        ("rbm500", 64, 5),
    ] {
        let data: Vec<f64> = (0..n * d).map(|i| (i % 2) as f64).collect();
        npy(&p.join("y.npy"), n, d, &data);
        assert_ok(&boltz(
            p,
            &[
                "energy", "--model", name, "--points", "y.npy", "--out", "e.npy", "--grad", "g.npy",
            ],
        ));
        let e = read(&p.join("e.npy"));
        let g = read(&p.join("g.npy"));
        assert_eq!(e.shape, vec![n]);
        assert_eq!(g.shape, vec![n, d]);
        assert!(e.data.iter().all(|v| v.is_finite()), "{name}");
    }
    // gauss-ill at the origin has zero energy.
    npy(&p.join("y.npy"), 1, 100, &[0.0; 100]);
    assert_ok(&boltz(
        p,
        &[
            "energy",
            "--model",
            "gauss-ill",
            "--points",
            "y.npy",
            "--out",
            "e.npy",
        ],
    ));
    assert_eq!(read(&p.join("e.npy")).data, vec![0.0]);
}

fn model_files(p: &std::path::Path) -> Vec<(&'static str, String, usize, usize)> {
    // (file, json, y_dim, x_dim)
    npy(
        &p.join("w0.npy"),
        3,
        4,
        &[
            0.1, -0.2, 0.3, 0.0, 0.5, 0.1, -0.1, 0.2, 0.0, 0.3, 0.2, -0.4,
        ],
    );
    boltz::io::write_npy(&p.join("b0.npy"), &[4], &[0.0, 0.1, -0.1, 0.2]).unwrap();
    vec![
        ("g.json", r#"{"kind": "gaussian", "mean": [0, 1], "std": [1, 0.5]}"#.into(), 2, 0),
        ("gp.json", r#"{"kind": "gaussian", "mean": [0, 1], "precision": [[2, 0.5], [0.5, 1]]}"#.into(), 2, 0),
        ("m.json", r#"{"kind": "mixture", "weights": [0.5, 0.5], "means": [[-2, 0], [2, 0]], "std": 0.5}"#.into(), 2, 0),
        ("m2.json", r#"{"kind": "mixture", "weights": [1, 2], "means": [[-2], [2]], "std": [0.5, 1.0]}"#.into(), 1, 0),
        ("f.json", r#"{"kind": "funnel", "dim": 4}"#.into(), 4, 0),
        ("r.json", r#"{"kind": "ring", "x_dim": 1, "y_dim": 3, "width": 0.1}"#.into(), 3, 1),
        ("mlp.json", r#"{"kind": "mlp", "x_dim": 1, "l2": 0.5, "layers": [{"weight": "w0.npy", "bias": "b0.npy", "activation": "tanh"}, {"weight": [[1], [0.5], [-1], [2]], "bias": [0.1], "activation": "none"}]}"#.into(), 2, 1),
        ("rbm.json", r#"{"kind": "rbm", "weights": [[0.1, -0.2], [0.3, 0.4], [0.0, 1.0]], "visible_bias": [0, 0.1, -0.1], "hidden_bias": [0.5, -0.5]}"#.into(), 3, 0),
    ]
}

#[test]
fn energy_of_every_model_file_kind() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for (file, json, d, x_dim) in model_files(p) {
        fs::write(p.join(file), json).unwrap();
        npy(&p.join("y.npy"), 2, d, &vec![0.25; 2 * d]);
        let mut args = vec![
            "energy", "--model", file, "--points", "y.npy", "--out", "e.npy", "--grad", "g.npy",
        ];
        if x_dim > 0 {
            npy(&p.join("x.npy"), 1, x_dim, &vec![0.5; x_dim]);
            args.extend(["--context", "x.npy"]);
        }
        let out = boltz(p, &args);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e = read(&p.join("e.npy"));
        assert_eq!(e.shape, vec![2], "{file}");
        assert!(e.data.iter().all(|v| v.is_finite()), "{file}");
    }
    // The diagonal Gaussian's value: 0.5 * (0.25^2 + (0.75 / 0.5)^2).
    fs::write(
        p.join("g.json"),
        r#"{"kind": "gaussian", "mean": [0, 1], "std": [1, 0.5]}"#,
    )
    .unwrap();
    npy(&p.join("y.npy"), 2, 2, &[0.25; 4]);
    assert_ok(&boltz(
        p,
        &[
            "energy", "--model", "g.json", "--points", "y.npy", "--out", "e.npy",
        ],
    ));
    assert!((read(&p.join("e.npy")).data[0] - 0.5 * (0.0625 + 2.25)).abs() < 1e-15);
}

#[test]
fn malformed_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("y.npy"), 2, 2, &[0.0; 4]);
    npy(&p.join("w_bad.npy"), 3, 4, &[f64::NAN; 12]);
    fs::write(
        p.join("trunc.npy"),
        &b"\x93NUMPY\x01\x00\x10\x00{'descr'"[..],
    )
    .unwrap();
    npy(&p.join("w0.npy"), 3, 4, &[0.1; 12]);
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "unknown kind",
            r#"{"kind": "banana"}"#,
            "unknown kind `banana`",
        ),
        (
            "missing key",
            r#"{"kind": "gaussian", "mean": [0, 0]}"#,
            "std",
        ),
        ("missing kind", r#"{"mean": [0, 0]}"#, "missing key `kind`"),
        (
            "unknown key",
            r#"{"kind": "funnel", "dim": 3, "colour": 1}"#,
            "unknown key `colour`",
        ),
        (
            "malformed json",
            r#"{"kind": "funnel", "dim": "#,
            "malformed JSON",
        ),
        ("wrong type", r#"{"kind": "funnel", "dim": "ten"}"#, "`dim`"),
        ("not an object", r#"[1, 2, 3]"#, "must be a JSON object"),
        (
            "shape mismatch std",
            r#"{"kind": "gaussian", "mean": [0, 0], "std": [1, 1, 1]}"#,
            "shape mismatch",
        ),
        (
            "negative std",
            r#"{"kind": "gaussian", "mean": [0, 0], "std": [1, -1]}"#,
            "std",
        ),
        (
            "ragged",
            r#"{"kind": "mixture", "weights": [1, 1], "means": [[0, 0], [1]], "std": 1}"#,
            "ragged",
        ),
        (
            "layer mismatch",
            r#"{"kind": "mlp", "x_dim": 1, "layers": [{"weight": "w0.npy", "bias": [0, 0, 0, 0], "activation": "silu"}, {"weight": [[1], [1], [1]], "bias": [0]}]}"#,
            "layers[1].weight",
        ),
        (
            "non-finite npy",
            r#"{"kind": "mlp", "x_dim": 1, "layers": [{"weight": "w_bad.npy", "bias": [0, 0, 0, 0]}]}"#,
            "non-finite",
        ),
        (
            "unreadable npy",
            r#"{"kind": "mlp", "x_dim": 1, "layers": [{"weight": "nothere.npy", "bias": [0]}]}"#,
            "nothere.npy",
        ),
        (
            "truncated npy",
            r#"{"kind": "rbm", "weights": "trunc.npy", "visible_bias": [0], "hidden_bias": [0]}"#,
            "truncated",
        ),
        (
            "bad activation",
            r#"{"kind": "mlp", "x_dim": 1, "layers": [{"weight": "w0.npy", "bias": [0, 0, 0, 0], "activation": "gelu2"}]}"#,
            "unknown activation",
        ),
        (
            "huge number",
            r#"{"kind": "funnel", "dim": 4, "scale": 1e999}"#,
            "malformed JSON",
        ),
        (
            "absurd dim",
            r#"{"kind": "funnel", "dim": 100000000000}"#,
            "absurdly large",
        ),
        (
            "rbm bias shape",
            r#"{"kind": "rbm", "weights": [[1, 2]], "visible_bias": [0, 0], "hidden_bias": [0, 0]}"#,
            "shape mismatch",
        ),
        (
            "precision not pd",
            r#"{"kind": "gaussian", "mean": [0, 0], "precision": [[1, 2], [2, 1]]}"#,
            "positive definite",
        ),
    ];
    for (what, json, needle) in cases {
        fs::write(p.join("bad.json"), json).unwrap();
        let out = boltz(
            p,
            &[
                "energy", "--model", "bad.json", "--points", "y.npy", "--out", "e.npy",
            ],
        );
        assert_fails(&out, 2, needle);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.json"), "{what}: the file is named: {err}");
    }
    // Not a file at all, and a directory.
    assert_fails(
        &boltz(
            p,
            &[
                "energy",
                "--model",
                "nope.json",
                "--points",
                "y.npy",
                "--out",
                "e.npy",
            ],
        ),
        2,
        "unknown model",
    );
    fs::create_dir(p.join("adir.json")).unwrap();
    assert_fails(
        &boltz(
            p,
            &[
                "energy",
                "--model",
                "adir.json",
                "--points",
                "y.npy",
                "--out",
                "e.npy",
            ],
        ),
        2,
        "directory",
    );
    // Points of the wrong width, and a missing points file.
    assert_fails(
        &boltz(
            p,
            &[
                "energy",
                "--model",
                "gauss-ill",
                "--points",
                "y.npy",
                "--out",
                "e.npy",
            ],
        ),
        2,
        "shape mismatch",
    );
    assert_fails(
        &boltz(
            p,
            &[
                "energy",
                "--model",
                "gauss-ill",
                "--points",
                "none.npy",
                "--out",
                "e.npy",
            ],
        ),
        2,
        "none.npy",
    );
    // Usage errors.
    assert_fails(
        &boltz(p, &["energy", "--model", "gauss-ill"]),
        2,
        "required",
    );
    assert_fails(&boltz(p, &["frobnicate"]), 2, "frobnicate");
}

#[test]
fn precision_f32_from_the_flag_or_the_model_file() {
    // `--precision f32` and a model file's `"dtype": "f32"` give the same
    // energies, within 1e-5 relative of f64 and not equal to them; the
    // other families refuse f32 with one error line.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (n, d) = (7, 3);
    let data: Vec<f64> = (0..n * d).map(|i| ((i * 7) % 5) as f64 / 5.0).collect();
    npy(&p.join("y.npy"), n, d, &data);
    let body = r#""weights": [[0.1, -0.2], [0.3, 0.4], [0.0, 1.0]], "visible_bias": [0, 0.1, -0.1], "hidden_bias": [0.5, -0.5]"#;
    fs::write(p.join("rbm.json"), format!(r#"{{"kind": "rbm", {body}}}"#)).unwrap();
    fs::write(
        p.join("rbm32.json"),
        format!(r#"{{"kind": "rbm", "dtype": "f32", {body}}}"#),
    )
    .unwrap();
    let run = |model: &str, extra: &[&str], out: &str| {
        let mut args = vec![
            "energy", "--model", model, "--points", "y.npy", "--out", out,
        ];
        args.extend_from_slice(extra);
        assert_ok(&boltz(p, &args));
        read(&p.join(out)).data
    };
    let e64 = run("rbm.json", &[], "a.npy");
    let flag = run("rbm.json", &["--precision", "f32"], "b.npy");
    let file = run("rbm32.json", &[], "c.npy");
    let back = run("rbm32.json", &["--precision", "f64"], "d.npy");
    assert_eq!(flag, file);
    assert_eq!(back, e64);
    assert_ne!(flag, e64);
    for (a, b) in e64.iter().zip(&flag) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
    for model in ["gauss-ill", "gmm-ring"] {
        let out = boltz(
            p,
            &[
                "energy",
                "--model",
                model,
                "--points",
                "y.npy",
                "--out",
                "e.npy",
                "--precision",
                "f32",
            ],
        );
        assert_fails(&out, 2, "mlp and rbm");
    }
    let out = boltz(
        p,
        &[
            "energy",
            "--model",
            "rbm.json",
            "--points",
            "y.npy",
            "--out",
            "e.npy",
            "--precision",
            "half",
        ],
    );
    assert_fails(&out, 2, "f64 or f32");
    fs::write(
        p.join("bad.json"),
        format!(r#"{{"kind": "rbm", "dtype": 32, {body}}}"#),
    )
    .unwrap();
    let out = boltz(
        p,
        &[
            "energy", "--model", "bad.json", "--points", "y.npy", "--out", "e.npy",
        ],
    );
    assert_fails(&out, 2, "dtype");
    fs::write(
        p.join("g.json"),
        r#"{"kind": "gaussian", "mean": [0, 0, 0], "std": [1, 1, 1], "dtype": "f32"}"#,
    )
    .unwrap();
    let out = boltz(
        p,
        &[
            "energy", "--model", "g.json", "--points", "y.npy", "--out", "e.npy",
        ],
    );
    assert_fails(&out, 2, "dtype");
}

/// A binary model's log P is of 0/1 points only: `prob` on rbm20 with 0.5
/// or 7 in a point exits 2 naming the row and column, and `energy` says
/// its values are the free energy's continuous extension (issue 32); an
/// RBM whose weights overflow the exact sum exits 2 instead of printing a
/// null log Z.
#[test]
fn binary_models_refuse_non_binary_points_and_overflowing_sums() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for v in [0.5, 7.0, -1.0] {
        let mut data = vec![1.0; 2 * 64];
        data[64 + 3] = v;
        npy(&p.join("y.npy"), 2, 64, &data);
        let out = boltz(
            p,
            &[
                "prob", "--model", "rbm20", "--points", "y.npy", "--out", "o.npy",
            ],
        );
        assert_fails(&out, 2, "row 1, column 3");
        let out = boltz(
            p,
            &[
                "energy", "--model", "rbm20", "--points", "y.npy", "--out", "o.npy", "--json",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&assert_ok(&out)).unwrap();
        let w = v["warnings"][0].as_str().unwrap_or_default();
        assert!(
            w.contains("row 1, column 3") && w.contains("continuous extension"),
            "{v}"
        );
    }
    npy(&p.join("y.npy"), 2, 64, &vec![1.0; 2 * 64]);
    assert_ok(&boltz(
        p,
        &[
            "energy", "--model", "rbm20", "--points", "y.npy", "--out", "o.npy",
        ],
    ));
    npy(&p.join("W.npy"), 10, 5, &[1e308; 50]);
    boltz::io::write_npy(&p.join("b.npy"), &[10], &[0.0; 10]).unwrap();
    boltz::io::write_npy(&p.join("c.npy"), &[5], &[0.0; 5]).unwrap();
    fs::write(
        p.join("m.json"),
        r#"{"kind": "rbm", "weights": "W.npy", "visible_bias": "b.npy", "hidden_bias": "c.npy"}"#,
    )
    .unwrap();
    assert_fails(&boltz(p, &["logz", "--model", "m.json"]), 2, "not finite");
}
