//! Never confidently wrong, never silent: separated modes are caught or
//! estimated right, defaults work, and every command follows one output
//! convention (`--report FILE`, `--json`, a `warnings` list).

mod common;
use common::{assert_fails, assert_ok, assert_stopped_soon, boltz, npy, read, stop_with};
use serde_json::Value;
use std::path::Path;

fn json(out: &std::process::Output) -> Value {
    let text = assert_ok(out);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The report's warnings; beside them, `warning_kinds` names each one's
/// kind, in the same order.
fn warnings(v: &Value) -> Vec<String> {
    let w: Vec<String> = v["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings list in {v}"))
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds(v).len(), w.len(), "{v}");
    w
}

/// The report's `warning_kinds`, each a `boltz::WarningKind`.
fn kinds(v: &Value) -> Vec<boltz::WarningKind> {
    serde_json::from_value(v["warning_kinds"].clone())
        .unwrap_or_else(|e| panic!("no warning_kinds list ({e}) in {v}"))
}

/// The user's report: a 5-D mixture with modes at +-8 (weights 0.8/0.2,
/// stds 0.5/1), in both parameterisations.
fn separated(p: &Path) -> [&'static str; 2] {
    std::fs::write(
        p.join("sep-w.json"),
        r#"{"kind": "mixture", "weights": [0.8, 0.2], "means": [[8,8,8,8,8],[-8,-8,-8,-8,-8]], "std": [0.5, 1.0]}"#,
    )
    .unwrap();
    std::fs::write(
        p.join("sep-a.json"),
        r#"{"kind": "mixture", "amplitudes": [0.8, 0.2], "means": [[8,8,8,8,8],[-8,-8,-8,-8,-8]], "std": [0.5, 1.0]}"#,
    )
    .unwrap();
    ["sep-w.json", "sep-a.json"]
}

/// AIS on separated modes either lands within 3 standard errors of the
/// exact log Z or says so (never neither); here it misses a mode, and the
/// reverse pass that runs by default catches it.
#[test]
fn separated_modes_logz_lands_or_warns() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for model in separated(p) {
        for seed in ["0", "1", "2"] {
            for method in [&["--method", "ais"][..], &[][..]] {
                let mut a = vec!["logz", "--model", model, "--seed", seed, "--json"];
                a.extend(method);
                let v = json(&boltz(p, &a));
                let (lz, se) = (v["log_z"].as_f64().unwrap(), v["stderr"].as_f64().unwrap());
                let exact = v["exact_log_z"].as_f64().unwrap();
                let within = (lz - exact).abs() <= 3.0 * se;
                let w = warnings(&v);
                assert!(within || !w.is_empty(), "{model} seed {seed}: {v}");
                if !within {
                    assert!(
                        w.iter()
                            .any(|w| w.contains("forward and reverse AIS disagree")),
                        "{model} seed {seed}: {w:?}"
                    );
                }
            }
        }
    }
}

/// Parallel tempering's stepping stone on separated modes: its reference
/// is centred where the pilot's chains started and wide enough for both
/// modes, so it lands within 3 standard errors of the exact log Z for
/// every seed and parameterisation, with no warning.
#[test]
fn separated_modes_pt_logz_lands() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for model in separated(p) {
        for seed in ["0", "1", "2"] {
            let a = [
                "logz", "--model", model, "--method", "pt", "--seed", seed, "--json",
            ];
            let v = json(&boltz(p, &a));
            let (lz, se) = (v["log_z"].as_f64().unwrap(), v["stderr"].as_f64().unwrap());
            let exact = v["exact_log_z"].as_f64().unwrap();
            assert!((lz - exact).abs() <= 3.0 * se, "{model} seed {seed}: {v}");
            assert!(warnings(&v).is_empty(), "{model} seed {seed}: {v}");
        }
    }
}

/// Chains on separated modes: R-hat above 1.01 or a warning (the exact-draw
/// energy check), or else the mode weights are right within 4 Monte Carlo
/// standard errors (ESS of the mode indicator); never a confident wrong
/// answer. False-failure rate of the weight check: below 1e-4 per run.
#[test]
fn separated_modes_sample_is_flagged_or_right() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let [model, _] = separated(p);
    let mut flagged = 0;
    for sampler in ["mala", "hmc", "pt"] {
        for seed in ["0", "1", "2", "3"] {
            let v = json(&boltz(
                p,
                &[
                    "sample",
                    "--model",
                    model,
                    "--sampler",
                    sampler,
                    "--seed",
                    seed,
                    "--out",
                    "s.npy",
                    "--json",
                ],
            ));
            let w = warnings(&v);
            if v["rhat_max"].as_f64().unwrap() > 1.01 || !w.is_empty() {
                flagged += 1;
                continue;
            }
            let s = read(&p.join("s.npy"));
            let (c, n, d) = (s.shape[0], s.shape[1], s.shape[2]);
            let ind = ndarray::Array2::from_shape_fn((c, n), |(i, t)| {
                f64::from(u8::from(s.data[(i * n + t) * d] > 0.0))
            });
            let frac = ind.mean().unwrap();
            let ess = boltz::diagnostics::ess_bulk(ind.view()).max(1.0);
            let mcse = (0.8f64 * 0.2 / ess).sqrt();
            assert!(
                (frac - 0.8).abs() <= 4.0 * mcse,
                "{sampler} seed {seed}: mode weight {frac} (ESS {ess}) with no warning: {v}"
            );
        }
    }
    eprintln!("{flagged} of 12 runs flagged");
}

/// Chains start over-dispersed by default: some chain starts beyond the
/// (-2, 2) box of Stan's default.
#[test]
fn default_starts_are_over_dispersed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert_ok(&boltz(
        p,
        &[
            "sample",
            "--model",
            "gmm-ring",
            "--sampler",
            "rwm",
            "--chains",
            "8",
            "--warmup",
            "0",
            "--draws",
            "1",
            "--out",
            "s.npy",
            "--quiet",
        ],
    ));
    let s = read(&p.join("s.npy"));
    let far = s.data.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    assert!(far > 4.0, "largest |start| {far}");
}

/// ULA without a step size takes the one a MALA warm-up adapts to.
#[test]
fn ula_has_a_usable_default_step() {
    let dir = tempfile::tempdir().unwrap();
    let v = json(&boltz(
        dir.path(),
        &[
            "sample",
            "--model",
            "gmm-ring",
            "--sampler",
            "ula",
            "--out",
            "s.npy",
            "--json",
        ],
    ));
    let step = v["step_size"].as_f64().unwrap();
    assert!(step.is_finite() && step > 0.0 && step < 1.0, "{v}");
}

/// `--repeats` and `--bootstrap` are printed, not only in JSON.
#[test]
fn repeats_and_bootstrap_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_ok(&boltz(
        dir.path(),
        &[
            "logz",
            "--model",
            "gmm-ring",
            "--method",
            "ais",
            "--particles",
            "64",
            "--temps",
            "50",
            "--repeats",
            "2",
            "--bootstrap",
            "50",
        ],
    ));
    for needle in [
        "repeat 1: log Z",
        "repeat 2: log Z",
        "bootstrap se",
        "over 3 runs",
    ] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
}

/// An mlp with x_dim 0 is an ordinary energy (it used to panic); quadrature
/// refusals give the real reason.
#[test]
fn quadrature_says_the_real_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let layers = r#""layers": [{"weight": [[0.5, -0.3], [0.1, 0.4]], "bias": [0.1, 0], "activation": "tanh"}, {"weight": [[1.0], [-0.5]], "bias": [0], "activation": "none"}]"#;
    std::fs::write(
        p.join("m0.json"),
        format!(r#"{{"kind": "mlp", "x_dim": 0, "l2": 1.0, {layers}}}"#),
    )
    .unwrap();
    let layers1 = r#""layers": [{"weight": [[0.5, -0.3], [0.1, 0.4], [0.2, 0.2]], "bias": [0.1, 0], "activation": "tanh"}, {"weight": [[1.0], [-0.5]], "bias": [0], "activation": "none"}]"#;
    std::fs::write(
        p.join("m1.json"),
        format!(r#"{{"kind": "mlp", "x_dim": 1, "l2": 1.0, {layers1}}}"#),
    )
    .unwrap();
    let q = json(&boltz(
        p,
        &[
            "logz",
            "--model",
            "m0.json",
            "--method",
            "quadrature",
            "--json",
        ],
    ));
    let a = json(&boltz(
        p,
        &["logz", "--model", "m0.json", "--method", "ais", "--json"],
    ));
    let (lq, la, se) = (
        q["log_z"].as_f64().unwrap(),
        a["log_z"].as_f64().unwrap(),
        a["stderr"].as_f64().unwrap(),
    );
    assert!(
        (lq - la).abs() < 4.0 * se + 1e-3,
        "quadrature {lq} vs ais {la} +- {se}"
    );
    npy(&p.join("x.npy"), 1, 1, &[0.2]);
    for (model, needle) in [
        ("m1.json", "conditional"),
        ("rbm20", "binary"),
        ("gauss-ill", "dimension 100"),
    ] {
        let mut a = vec!["logz", "--model", model, "--method", "quadrature"];
        if model == "m1.json" {
            a.extend(["--context", "x.npy"]);
        }
        assert_fails(&boltz(p, &a), 2, needle);
    }
}

/// PCD without a state file is short-run in disguise: said in a warning.
#[test]
fn pcd_without_state_warns() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("d.npy"), 4, 2, &[0.0; 8]);
    let v = json(&boltz(
        p,
        &[
            "negatives",
            "--model",
            "gmm-ring",
            "--data",
            "d.npy",
            "--method",
            "pcd",
            "--out",
            "n.npy",
            "--json",
        ],
    ));
    assert!(warnings(&v).iter().any(|w| w.contains("--state")), "{v}");
    assert!(kinds(&v).contains(&boltz::WarningKind::StateNotKept), "{v}");
    let v = json(&boltz(
        p,
        &[
            "negatives",
            "--model",
            "gmm-ring",
            "--data",
            "d.npy",
            "--method",
            "pcd",
            "--out",
            "n.npy",
            "--json",
            "--state",
            "st",
        ],
    ));
    assert!(warnings(&v).is_empty(), "{v}");
}

/// `compare` on an RBM file defaults to Gibbs (it used to fail with the
/// continuous samplers), prints no step size for it, and takes --beta.
#[test]
fn compare_defaults_to_gibbs_for_binary_models() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("rbm.json"),
        r#"{"kind": "rbm", "weights": [[0.5, -0.2], [0.1, 0.3], [-0.4, 0.2]], "visible_bias": [0.1, 0, -0.1], "hidden_bias": [0, 0.2]}"#,
    )
    .unwrap();
    let v = json(&boltz(
        p,
        &[
            "compare", "--model", "rbm.json", "--draws", "200", "--json", "--beta", "0.5",
        ],
    ));
    assert_eq!(v["rows"][0]["sampler"], "gibbs", "{v}");
    assert_eq!(v["config"]["beta"], 0.5);
    let out = assert_ok(&boltz(
        p,
        &["compare", "--model", "rbm.json", "--draws", "200"],
    ));
    assert!(out.contains("| gibbs | - |"), "{out}");
}

/// A non-normalisable mlp (no l2) drifts off under MALA: warned.
#[test]
fn drift_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("m.json"),
        r#"{"kind": "mlp", "x_dim": 0, "layers": [{"weight": [[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]], "bias": [0.1, -0.2, 0.0], "activation": "tanh"}, {"weight": [[1.0], [-0.5], [0.7]], "bias": [0.0], "activation": "none"}]}"#,
    )
    .unwrap();
    let v = json(&boltz(
        p,
        &[
            "sample",
            "--model",
            "m.json",
            "--sampler",
            "mala",
            "--out",
            "s.npy",
            "--json",
        ],
    ));
    assert!(warnings(&v).iter().any(|w| w.contains("drift")), "{v}");
    assert!(kinds(&v).contains(&boltz::WarningKind::Drift), "{v}");
}

/// `prob` of an unconditional model gives log P(y) (N,); `--paired` gives
/// row i under context i (N,), the diagonal of the all-pairs (k, N).
#[test]
fn prob_unconditional_and_paired() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let y = [0.3, -0.2, 2.8, 0.1, -1.0, 0.4];
    npy(&p.join("y.npy"), 3, 2, &y);
    assert_ok(&boltz(
        p,
        &[
            "prob", "--model", "gmm-ring", "--points", "y.npy", "--out", "lp.npy",
        ],
    ));
    let lp = read(&p.join("lp.npy"));
    assert_eq!(lp.shape, vec![3]);
    assert_ok(&boltz(
        p,
        &[
            "energy", "--model", "gmm-ring", "--points", "y.npy", "--out", "e.npy",
        ],
    ));
    let e = read(&p.join("e.npy"));
    let lz = 1.509_373_006;
    for i in 0..3 {
        assert!((lp.data[i] - (-e.data[i] - lz)).abs() < 1e-6, "{i}");
    }
    // ring (x_dim 1, y_dim 1): three contexts, three points.
    npy(&p.join("x.npy"), 3, 1, &[0.0, 0.5, 0.9]);
    npy(&p.join("yr.npy"), 3, 2, &[0.9, 0.0, -0.8, 0.1, 0.4, 0.2]);
    let base = [
        "prob",
        "--model",
        "ring",
        "--points",
        "yr.npy",
        "--context",
        "x.npy",
    ];
    let mut all = base.to_vec();
    all.extend(["--out", "all.npy"]);
    assert_ok(&boltz(p, &all));
    let mut pair = base.to_vec();
    pair.extend(["--out", "pair.npy", "--paired"]);
    assert_ok(&boltz(p, &pair));
    let (a, b) = (read(&p.join("all.npy")), read(&p.join("pair.npy")));
    assert_eq!((a.shape.clone(), b.shape.clone()), (vec![3, 3], vec![3]));
    for i in 0..3 {
        assert!((a.data[i * 3 + i] - b.data[i]).abs() < 1e-12);
    }
    npy(&p.join("x2.npy"), 2, 1, &[0.0, 0.5]);
    let mut bad = vec![
        "prob",
        "--model",
        "ring",
        "--points",
        "yr.npy",
        "--context",
        "x2.npy",
    ];
    bad.extend(["--out", "pair.npy", "--paired"]);
    assert_fails(&boltz(p, &bad), 2, "as many contexts as points");
}

/// `bench --quick --strict` exits 1 exactly when a check failed, and says
/// so; without --strict it exits 0 and says why.
#[test]
fn bench_quick_strict_exit_matches_failed_checks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for strict in [true, false] {
        let mut a = vec![
            "bench",
            "--quick",
            "--workloads",
            "W4",
            "--out",
            "res",
            "--json",
        ];
        if strict {
            a.push("--strict");
        }
        let out = boltz(p, &a);
        let err = String::from_utf8_lossy(&out.stderr);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let failed = v["failed"].as_u64().unwrap();
        assert_eq!(warnings(&v).len() as u64, failed);
        let code = out.status.code().unwrap();
        if strict && failed > 0 {
            assert_eq!(code, 1, "{err}");
            assert!(err.contains("exit 1 (--strict)"), "{err}");
        } else {
            assert_eq!(code, 0, "{err}");
            if failed > 0 {
                assert!(err.contains("exit 0 without --strict"), "{err}");
            }
        }
    }
}

/// Every command takes `--report FILE` and `--json`, and its JSON carries
/// a `warnings` list.
#[test]
fn every_command_reports_json_with_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(
        &p.join("y.npy"),
        4,
        2,
        &[0.1, 0.2, 3.0, 0.0, -0.5, 0.3, 0.0, -4.0],
    );
    let cmds: Vec<Vec<&str>> = vec![
        vec!["suite"],
        vec![
            "energy", "--model", "gmm-ring", "--points", "y.npy", "--out", "e.npy",
        ],
        vec![
            "sample",
            "--model",
            "gmm-ring",
            "--sampler",
            "mala",
            "--out",
            "s.npy",
            "--draws",
            "100",
        ],
        vec!["logz", "--model", "gmm-ring"],
        vec![
            "prob", "--model", "gmm-ring", "--points", "y.npy", "--out", "lp.npy",
        ],
        vec![
            "negatives",
            "--model",
            "gmm-ring",
            "--data",
            "y.npy",
            "--out",
            "n.npy",
        ],
        vec![
            "compare",
            "--model",
            "gmm-ring",
            "--samplers",
            "mala",
            "--draws",
            "100",
        ],
        vec!["diagnose", "--samples", "s.npy"],
        vec!["bench", "--quick", "--workloads", "W6", "--out", "res"],
    ];
    for c in cmds {
        let mut a = c.clone();
        a.extend(["--json", "--report", "r.json"]);
        let v = json(&boltz(p, &a));
        warnings(&v);
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("r.json")).unwrap()).unwrap();
        assert_eq!(r, v, "{}: --report and --json differ", c[0]);
        std::fs::remove_file(p.join("r.json")).unwrap();
    }
}

/// `log_z` in JSON: a number for unconditional models, an array (one per
/// context) for conditional ones, whatever the count.
#[test]
fn log_z_json_type_follows_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let v = json(&boltz(p, &["logz", "--model", "gmm-ring", "--json"]));
    assert!(v["log_z"].is_number(), "{v}");
    npy(&p.join("x.npy"), 1, 1, &[0.5]);
    let v = json(&boltz(
        p,
        &["logz", "--model", "ring", "--context", "x.npy", "--json"],
    ));
    assert!(v["log_z"].is_array() && v["conditional"] == true, "{v}");
}

/// `--init` means the same in `sample` and `negatives`: a spec or a file.
#[test]
fn init_is_one_convention() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(
        &p.join("i.npy"),
        4,
        2,
        &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0],
    );
    npy(&p.join("d.npy"), 4, 2, &[0.0; 8]);
    for init in ["gaussian:2", "uniform:-1,1", "dispersed:1,5", "i.npy"] {
        assert_ok(&boltz(
            p,
            &[
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--init",
                init,
                "--out",
                "s.npy",
                "--quiet",
            ],
        ));
        assert_ok(&boltz(
            p,
            &[
                "negatives",
                "--model",
                "gmm-ring",
                "--data",
                "d.npy",
                "--init",
                init,
                "--out",
                "n.npy",
                "--steps",
                "1",
                "--step-size",
                "1e-12",
                "--noise",
                "0",
            ],
        ));
    }
    // One noiseless step of 1e-12 from the file's rows (zero steps are
    // refused): the negatives are the rows to within 1e-9.
    let got = read(&p.join("n.npy")).data;
    let rows = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0];
    assert_eq!(got.len(), rows.len());
    assert!(
        got.iter().zip(rows).all(|(a, b)| (a - b).abs() < 1e-9),
        "{got:?}"
    );
    assert_fails(
        &boltz(
            p,
            &[
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--init",
                "gaussian:-1",
                "--out",
                "s.npy",
            ],
        ),
        2,
        "--init",
    );
}

/// Defaults that should agree do: HMC's leapfrog steps in sample, logz,
/// prob, negatives and compare (one set of kernel flags, one default).
#[test]
fn leapfrog_defaults_agree() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["sample", "logz", "prob", "negatives", "compare"] {
        let help = assert_ok(&boltz(dir.path(), &[cmd, "--help"]));
        let at = help
            .find("--leapfrog")
            .unwrap_or_else(|| panic!("{cmd}: {help}"));
        let rest = &help[at..];
        let line = &rest[..rest.find("\n      --").unwrap_or(rest.len())];
        assert!(line.contains("(default: 16)"), "{cmd}: {line}");
    }
}

/// Missing files are named with the flag that gave them.
#[test]
fn missing_files_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("d.npy"), 4, 2, &[0.0; 8]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "sample",
                "--model",
                "gmm-ring",
                "--sampler",
                "mala",
                "--init",
                "no.npy",
                "--out",
                "s.npy",
            ],
            "--init: no.npy",
        ),
        (
            vec![
                "energy", "--model", "gmm-ring", "--points", "no.npy", "--out", "e.npy",
            ],
            "--points: no.npy",
        ),
        (
            vec!["logz", "--model", "ring", "--context", "no.npy"],
            "--context: no.npy",
        ),
        (
            vec![
                "negatives",
                "--model",
                "gmm-ring",
                "--data",
                "no.npy",
                "--out",
                "n.npy",
            ],
            "--data: no.npy",
        ),
        (vec!["diagnose", "--samples", "no.npy"], "--samples: no.npy"),
        (
            vec![
                "logz", "--model", "gmm-ring", "--method", "ais", "--resume", "no.ck",
            ],
            "--resume: no.ck",
        ),
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
                "no.ck",
            ],
            "--resume: no.ck",
        ),
    ];
    for (a, needle) in cases {
        assert_fails(&boltz(p, &a), 2, needle);
    }
}

/// `diagnose` reads a 2-D array as one chain (draws, dim) and says so; a
/// constant coordinate does not make `rhat_max` NaN.
#[test]
fn diagnose_one_chain_and_constant_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let n = 400;
    let mut x = Vec::with_capacity(n * 3);
    let mut s = 1u64;
    for t in 0..n {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (s >> 11) as f64 / (1u64 << 53) as f64;
        x.extend([u, 7.0, (t % 7) as f64]);
    }
    npy(&p.join("x.npy"), n, 3, &x);
    let v = json(&boltz(p, &["diagnose", "--samples", "x.npy", "--json"]));
    assert_eq!(
        (v["chains"].as_u64(), v["dim"].as_u64()),
        (Some(1), Some(3)),
        "{v}"
    );
    assert!(v["notes"][0].as_str().unwrap().contains("one chain"), "{v}");
    assert!(v["rhat_max"].as_f64().is_some_and(f64::is_finite), "{v}");
    assert_eq!(v["coordinates"][1]["constant"], true);
}

/// A long `logz` over many contexts stops on the first SIGTERM within a
/// second of its own work (common::assert_stopped_soon), writing the
/// contexts it finished (exit 143).
#[test]
fn long_logz_stops_within_a_second_with_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let n = 16384;
    let x: Vec<f64> = (0..n).map(|i| (i % 100) as f64 / 120.0).collect();
    npy(&p.join("x.npy"), n, 1, &x);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_boltz"))
        .args([
            "logz",
            "--model",
            "ring",
            "--context",
            "x.npy",
            "--method",
            "ais",
            "--temps",
            "20",
            "--json",
        ])
        .current_dir(p)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(5));
    let (out, wall, cpu) = stop_with(child, "TERM");
    assert_stopped_soon("logz", wall, cpu);
    assert_eq!(out.status.code(), Some(143));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let done = v["contexts_done"].as_u64().unwrap() as usize;
    assert_eq!(v["complete"], false);
    assert!(done > 0 && done < n, "{done} contexts done");
    let lz = v["log_z"].as_array().unwrap();
    assert!(
        lz[..done]
            .iter()
            .all(|v| v.as_f64().is_some_and(f64::is_finite))
    );
    assert!(lz[done..].iter().all(Value::is_null));
    assert!(warnings(&v)[0].starts_with("interrupted"), "{v}");
    assert_eq!(kinds(&v)[0], boltz::WarningKind::Interrupted, "{v}");
}

/// `negatives` takes --beta and any kernel of the spec.
#[test]
fn negatives_take_beta_and_every_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("d.npy"), 4, 2, &[0.0; 8]);
    for kernel in ["ula", "mala", "hmc", "rwm"] {
        let v = json(&boltz(
            p,
            &[
                "negatives",
                "--model",
                "gmm-ring",
                "--data",
                "d.npy",
                "--kernel",
                kernel,
                "--beta",
                "0.5",
                "--out",
                "n.npy",
                "--json",
            ],
        ));
        assert_eq!(
            (v["kernel"].as_str(), v["beta"].as_f64()),
            (Some(kernel), Some(0.5))
        );
    }
}
