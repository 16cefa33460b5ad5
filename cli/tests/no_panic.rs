//! No panic reachable from the command line: every subcommand on every
//! suite target and on a model file of every family, with default settings
//! (sizes cut down where a default run would take minutes: particles,
//! temperatures, draws; nothing else), exits 0, 1 or 2 and never 101 (a
//! panic) or 134 (an abort). Errors must be one `error:` line.

mod common;
use common::{boltz, npy};
use std::path::Path;

/// Model files of every family (and both mixture forms, both Gaussian
/// forms, an mlp with and without a context), with their y and x dims.
fn model_files(p: &Path) -> Vec<(String, usize, usize)> {
    let files = [
        (
            "g.json",
            r#"{"kind": "gaussian", "mean": [0, 1], "std": [1, 0.5]}"#,
            2,
            0,
        ),
        (
            "gp.json",
            r#"{"kind": "gaussian", "mean": [0, 0], "precision": [[2, 0.5], [0.5, 1]]}"#,
            2,
            0,
        ),
        (
            "mw.json",
            r#"{"kind": "mixture", "weights": [0.8, 0.2], "means": [[3, 3], [-3, -3]], "std": [0.5, 1]}"#,
            2,
            0,
        ),
        (
            "ma.json",
            r#"{"kind": "mixture", "amplitudes": [1, 1], "means": [[3], [-3]], "std": 1}"#,
            1,
            0,
        ),
        ("f.json", r#"{"kind": "funnel", "dim": 4}"#, 4, 0),
        (
            "r.json",
            r#"{"kind": "ring", "x_dim": 1, "y_dim": 2, "width": 0.1}"#,
            2,
            1,
        ),
        (
            "m0.json",
            r#"{"kind": "mlp", "x_dim": 0, "l2": 1.0, "layers": [{"weight": [[0.5, -0.3], [0.1, 0.4]], "bias": [0.1, 0], "activation": "tanh"}, {"weight": [[1.0], [-0.5]], "bias": [0], "activation": "none"}]}"#,
            2,
            0,
        ),
        (
            "m1.json",
            r#"{"kind": "mlp", "x_dim": 1, "layers": [{"weight": [[0.5, -0.3], [0.1, 0.4], [0.2, 0.2]], "bias": [0.1, 0], "activation": "silu"}, {"weight": [[1.0], [-0.5]], "bias": [0], "activation": "none"}]}"#,
            2,
            1,
        ),
        (
            "rbm.json",
            r#"{"kind": "rbm", "weights": [[0.5, -0.2], [0.1, 0.3], [-0.4, 0.2]], "visible_bias": [0.1, 0, -0.1], "hidden_bias": [0, 0.2]}"#,
            3,
            0,
        ),
    ];
    files
        .iter()
        .map(|(name, text, d, x)| {
            std::fs::write(p.join(name), text).unwrap();
            (p.join(name).display().to_string(), *d, *x)
        })
        .collect()
}

#[test]
fn no_subcommand_panics_on_any_family() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let mut models: Vec<(String, usize, usize)> = [
        ("gauss-ill", 100, 0),
        ("gmm-ring", 2, 0),
        ("gmm-far", 32, 0),
        ("funnel", 10, 0),
        ("ring", 2, 1),
        ("mlp", 32, 16),
        ("rbm20", 64, 0),
        ("rbm500", 64, 0),
    ]
    .iter()
    .map(|(n, d, x)| (n.to_string(), *d, *x))
    .collect();
    models.extend(model_files(p));
    let mut runs = 0;
    let mut codes = [0usize; 3];
    for (i, (model, d, x)) in models.iter().enumerate() {
        let (d, x) = (*d, *x);
        let pts = format!("y{i}.npy");
        let ctx = format!("x{i}.npy");
        // Binary-looking points serve binary and continuous models alike.
        let y: Vec<f64> = (0..4 * d).map(|k| f64::from((k % 3 == 0) as u8)).collect();
        npy(&p.join(&pts), 4, d, &y);
        npy(&p.join(&ctx), 1, x.max(1), &vec![0.3; x.max(1)]);
        let c: Vec<&str> = if x > 0 {
            vec!["--context", &ctx]
        } else {
            vec![]
        };
        let small_ais = ["--particles", "32", "--temps", "20"];
        let short = ["--warmup", "30", "--draws", "30"];
        let mut cases: Vec<Vec<&str>> = vec![
            vec![
                "energy", "--model", model, "--points", &pts, "--out", "e.npy",
            ],
            vec!["logz", "--model", model],
            vec![
                "prob", "--model", model, "--points", &pts, "--out", "lp.npy",
            ],
            vec![
                "negatives",
                "--model",
                model,
                "--data",
                &pts,
                "--out",
                "n.npy",
                "--steps",
                "5",
            ],
            vec!["compare", "--model", model],
            vec![
                "sample",
                "--model",
                model,
                "--sampler",
                "mala",
                "--out",
                "s.npy",
            ],
            vec![
                "sample",
                "--model",
                model,
                "--sampler",
                "gibbs",
                "--out",
                "s.npy",
            ],
            vec![
                "sample",
                "--model",
                model,
                "--sampler",
                "ula",
                "--out",
                "s.npy",
            ],
        ];
        for case in &mut cases {
            if case[0] == "logz" || case[0] == "prob" {
                case.extend(small_ais);
            }
            if case[0] == "compare" || case[0] == "sample" {
                case.extend(short);
            }
            case.extend(c.iter().copied());
        }
        for args in &cases {
            let out = boltz(p, args);
            runs += 1;
            let err = String::from_utf8_lossy(&out.stderr);
            let code = out.status.code();
            if let Some(c @ 0..=2) = code {
                codes[c as usize] += 1;
            }
            assert!(
                matches!(code, Some(0..=2)) && !err.contains("panicked"),
                "boltz {}: exit {code:?}\n{err}",
                args.join(" ")
            );
            if code != Some(0) {
                eprintln!("exit {code:?}: boltz {}: {}", args.join(" "), err.trim());
                let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
                assert!(
                    lines.len() == 1 && lines[0].starts_with("error: "),
                    "boltz {}: not one error line:\n{err}",
                    args.join(" ")
                );
            }
        }
        // diagnose whatever the last sample wrote, and a 2-D array.
        for args in [
            vec!["diagnose", "--samples", "s.npy"],
            vec!["diagnose", "--samples", &pts],
        ] {
            if !p.join(args[2]).exists() {
                continue;
            }
            let out = boltz(p, &args);
            runs += 1;
            assert!(
                matches!(out.status.code(), Some(0..=2)),
                "boltz {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    for args in [
        vec!["suite"],
        vec!["suite", "--json"],
        vec!["bench", "--quick", "--workloads", "W6", "--out", "res"],
    ] {
        let out = boltz(p, &args);
        runs += 1;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("{runs} invocations, none panicked; exit codes 0/1/2 of the model runs: {codes:?}");
    // Most runs succeed: the default settings work on every family.
    assert!(codes[0] > 3 * codes[2], "{codes:?}");
}
