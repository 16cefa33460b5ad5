//! `boltz bench` and `boltz compare`: files written, keys, checks, errors.
//! Figures are never asserted (no wall time in a test); what was measured is.

mod common;
use common::{assert_fails, assert_ok, boltz};

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `boltz bench --quick --repeats R --workloads W --jsonl` in `p`: its
/// measurements.
fn bench_jsonl(p: &std::path::Path, workload: &str, repeats: &str) -> Vec<serde_json::Value> {
    let args = [
        "bench",
        "--quick",
        "--repeats",
        repeats,
        "--workloads",
        workload,
        "--out",
        "r",
        "--jsonl",
    ];
    assert_ok(&boltz(p, &args))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bench_writes_measurements_with_the_peers_keys_and_keeps_hand_written_notes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let out = p.join("res");
    std::fs::create_dir_all(&out).unwrap();
    // A hand-written analysis outside the markers must survive.
    std::fs::write(
        out.join("README.md"),
        "# Results\n\nAnalysis by hand.\n\n<!-- boltz bench: begin (generated; edit outside these markers) -->\nold table\n<!-- boltz bench: end -->\n\nMore notes.\n",
    )
    .unwrap();
    let args = [
        "bench",
        "--quick",
        "--repeats",
        "1",
        "--workloads",
        "W1,W3,W5",
        "--out",
        "res",
    ];
    let table = assert_ok(&boltz(p, &args));
    assert!(
        table.contains("| W1 | gauss-ill | f64 | grad evals/s |"),
        "{table}"
    );
    let ms = lines(&out.join("bench.jsonl"));
    // W3 and W5 in f64 and in f32.
    assert_eq!(ms.len(), 5);
    let dtypes: Vec<_> = ms
        .iter()
        .map(|m| m["dtype"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dtypes, ["f64", "f64", "f32", "f64", "f32"]);
    for m in &ms {
        for key in [
            "peer", "workload", "target", "figure", "value", "wall_s", "notes", "dtype", "size",
        ] {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
        assert_eq!(m["peer"], "boltz");
        assert!(m["value"].as_f64().unwrap() > 0.0);
        assert!(m["notes"].as_str().unwrap().contains("check passed"), "{m}");
    }
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("Analysis by hand.") && readme.contains("More notes."));
    assert!(!readme.contains("old table"));
    assert!(readme.contains("| W5 | rbm500 | f64 | chain-sweeps/s |"));
    assert!(readme.contains("| W5 | rbm500 | f32 | chain-sweeps/s |"));
    assert!(readme.contains("logical cores"), "machine line: {readme}");
    // A second run of one workload replaces its records and keeps the others.
    assert_ok(&boltz(
        p,
        &[
            "bench",
            "--quick",
            "--repeats",
            "1",
            "--workloads",
            "W1",
            "--out",
            "res",
        ],
    ));
    let ms = lines(&out.join("bench.jsonl"));
    let count = |w: &str| ms.iter().filter(|m| m["workload"] == w).count();
    assert_eq!((count("W1"), count("W3"), count("W5")), (1, 2, 2));
}

#[test]
fn bench_checks_ais_against_exact_log_z() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let ms = bench_jsonl(p, "W4", "1");
    // Four targets, each with the peers' settings, boltz's defaults and
    // parallel tempering at the same budget.
    assert_eq!(ms.len(), 12);
    for m in &ms {
        let err = m["value"].as_f64().unwrap();
        let (lz, se) = (m["logz_hat"].as_f64().unwrap(), m["se"].as_f64().unwrap());
        assert!(err >= 0.0 && lz.is_finite() && se > 0.0, "{m}");
        assert!(m["notes"].as_str().unwrap().contains("exact"), "{m}");
    }
}

#[test]
fn bench_w8_estimates_log_z_of_the_trained_ebms_and_holds_the_mixture_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let ms = bench_jsonl(p, "W8", "2");
    let targets: Vec<&str> = ms.iter().map(|m| m["target"].as_str().unwrap()).collect();
    assert_eq!(
        targets,
        [
            "digits-ebm-b10 (beta 10)",
            "digits-ebm-b1 (beta 1)",
            "digits-gmm (beta 1)"
        ]
    );
    for m in &ms {
        assert_eq!(m["workload"], "W8");
        let (lz, se) = (m["logz_hat"].as_f64().unwrap(), m["se"].as_f64().unwrap());
        assert!(lz.is_finite() && se > 0.0, "{m}");
        // The repeats are held against each other, whatever the sizes.
        assert!(
            m["notes"].as_str().unwrap().contains("2 independent runs"),
            "{m}"
        );
    }
    assert_eq!(ms[2]["figure"], "|logZ_hat - logZ|");
    assert!(ms[2]["notes"].as_str().unwrap().contains("(exact 0.0000)"));
    assert_eq!(ms[0]["figure"], "logZ_hat");
    assert!(
        ms[0]["notes"]
            .as_str()
            .unwrap()
            .contains("started at the 1797 digits")
    );
}

#[test]
fn bench_refuses_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert_fails(
        &boltz(p, &["bench", "--workloads", "W9", "--out", "r"]),
        2,
        "unknown workload `W9`",
    );
    assert_fails(
        &boltz(
            p,
            &["bench", "--repeats", "0", "--workloads", "W1", "--out", "r"],
        ),
        2,
        "--repeats",
    );
    std::fs::create_dir_all(p.join("bad")).unwrap();
    std::fs::write(p.join("bad/bench.jsonl"), "not json\n").unwrap();
    assert_fails(
        &boltz(
            p,
            &["bench", "--quick", "--workloads", "W1", "--out", "bad"],
        ),
        2,
        "bench.jsonl:1",
    );
}

#[test]
fn compare_runs_every_sampler_and_checks_moments() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let table = assert_ok(&boltz(
        p,
        &[
            "compare",
            "--model",
            "gauss-ill",
            "--samplers",
            "mala,hmc,rwm,ula",
            "--chains",
            "4",
            "--warmup",
            "300",
            "--draws",
            "300",
            "--out",
            "cmp",
        ],
    ));
    for s in ["| mala |", "| hmc |", "| rwm |", "| ula |"] {
        assert!(table.contains(s), "{s} in {table}");
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("cmp/compare.json")).unwrap())
            .unwrap();
    assert_eq!(r["moments_known"], true);
    // The same warnings list as every JSON output (issue 33: it was
    // missing from compare.json), one per sampler's warning.
    let per_row: usize = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["warnings"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(r["warnings"].as_array().unwrap().len(), per_row, "{r}");
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        for key in [
            "ess_bulk_per_s",
            "ess_tail_per_s",
            "ess_bulk_per_eval",
            "acceptance",
            "divergences",
            "rhat_max",
            "mean_error",
            "var_error",
        ] {
            assert!(row[key].is_number(), "{key} in {row}");
        }
    }
    // HMC on a Gaussian: means within 5 MCSE of 0 (a loose bound across
    // 100 coordinates: the check is that the column is computed honestly).
    let hmc = rows.iter().find(|r| r["sampler"] == "hmc").unwrap();
    assert!(hmc["mean_error_z"].as_f64().unwrap() < 5.0, "{hmc}");
    let svg = std::fs::read_to_string(p.join("cmp/compare.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("mala") && svg.trim_end().ends_with("</svg>"));
    assert!(p.join("cmp/compare.md").exists());
}

#[test]
fn compare_on_an_rbm_uses_gibbs_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let table = assert_ok(&boltz(
        p,
        &[
            "compare",
            "--model",
            "rbm20",
            "--samplers",
            "gibbs",
            "--chains",
            "4",
            "--warmup",
            "50",
            "--draws",
            "100",
        ],
    ));
    assert!(table.contains("| gibbs |") && table.contains("no error columns"));
    assert_fails(
        &boltz(p, &["compare", "--model", "rbm20", "--samplers", "mala"]),
        2,
        "only gibbs applies",
    );
    assert_fails(
        &boltz(
            p,
            &["compare", "--model", "gauss-ill", "--samplers", "gibbs"],
        ),
        2,
        "gibbs needs binary states",
    );
    assert_fails(
        &boltz(
            p,
            &["compare", "--model", "gauss-ill", "--samplers", "slice"],
        ),
        2,
        "unknown kernel `slice`",
    );
    assert_fails(
        &boltz(p, &["compare", "--model", "gauss-ill", "--draws", "2"]),
        2,
        "draws",
    );
}
