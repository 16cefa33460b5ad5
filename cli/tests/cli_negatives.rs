//! `boltz negatives` from the outside: every method, the state file, and
//! a resumed loop that matches an uninterrupted one byte for byte.

mod common;
use common::*;

#[test]
fn every_method_and_kernel_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let pos: Vec<f64> = (0..64 * 100)
        .map(|i| 0.01 * ((i % 13) as f64 - 6.0))
        .collect();
    npy(&p.join("pos.npy"), 64, 100, &pos);
    for extra in [
        vec!["--method", "short-run"],
        vec!["--method", "short-run", "--buffer", "500"],
        vec!["--method", "cd"],
        vec!["--method", "pcd"],
        vec!["--method", "cd", "--kernel", "mala", "--step-size", "0.001"],
        vec![
            "--noise",
            "0.005",
            "--grad-clip",
            "1",
            "--init",
            "uniform:-1,1",
        ],
    ] {
        let mut args = vec![
            "negatives",
            "--model",
            "gauss-ill",
            "--data",
            "pos.npy",
            "--steps",
            "5",
            "--out",
            "neg.npy",
            "--report",
            "r.json",
        ];
        args.extend(extra.iter());
        let out = assert_ok(&boltz(p, &args));
        assert!(out.contains("gap"), "{extra:?}: {out}");
        assert_eq!(read(&p.join("neg.npy")).shape, vec![64, 100]);
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("r.json")).unwrap()).unwrap();
        for key in [
            "energy_pos",
            "energy_neg",
            "energy_gap",
            "acceptance",
            "divergences",
            "distance_moved",
        ] {
            assert!(r["stats"].get(key).is_some(), "{key}");
        }
    }
    // Binary model with Gibbs.
    let bits: Vec<f64> = (0..32 * 64)
        .map(|i| ((i * 7) % 3 == 0) as u8 as f64)
        .collect();
    npy(&p.join("bits.npy"), 32, 64, &bits);
    assert_ok(&boltz(
        p,
        &[
            "negatives",
            "--model",
            "rbm20",
            "--data",
            "bits.npy",
            "--method",
            "cd",
            "--steps",
            "3",
            "--out",
            "nb.npy",
        ],
    ));
    let nb = read(&p.join("nb.npy"));
    assert!(nb.data.iter().all(|v| *v == 0.0 || *v == 1.0));
    // Conditional model: one chain per bundled context.
    let ys: Vec<f64> = (0..1024 * 32).map(|i| 0.001 * (i % 100) as f64).collect();
    npy(&p.join("ys.npy"), 1024, 32, &ys);
    assert_ok(&boltz(
        p,
        &[
            "negatives",
            "--model",
            "mlp",
            "--data",
            "ys.npy",
            "--steps",
            "2",
            "--out",
            "nm.npy",
        ],
    ));
}

#[test]
fn state_file_resume_matches_an_uninterrupted_loop() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let pos: Vec<f64> = (0..16 * 100).map(|i| 0.01 * ((i % 7) as f64)).collect();
    npy(&p.join("pos.npy"), 16, 100, &pos);
    let call = |state: &str, out: &str| {
        assert_ok(&boltz(
            p,
            &[
                "negatives",
                "--model",
                "gauss-ill",
                "--data",
                "pos.npy",
                "--buffer",
                "40",
                "--reinit",
                "0.2",
                "--steps",
                "4",
                "--seed",
                "3",
                "--state",
                state,
                "--out",
                out,
            ],
        ));
    };
    // A: four calls with one state file. B: two calls, the state copied
    // elsewhere (as after a crash), then two more from the copy.
    for _ in 0..4 {
        call("a.json", "a.npy");
    }
    call("b.json", "b.npy");
    call("b.json", "b.npy");
    std::fs::copy(p.join("b.json"), p.join("c.json")).unwrap();
    call("c.json", "c.npy");
    call("c.json", "c.npy");
    assert_eq!(
        std::fs::read(p.join("a.npy")).unwrap(),
        std::fs::read(p.join("c.npy")).unwrap()
    );
    assert_eq!(
        std::fs::read(p.join("a.json")).unwrap(),
        std::fs::read(p.join("c.json")).unwrap()
    );
    // A state made with other settings is refused.
    assert_fails(
        &boltz(
            p,
            &[
                "negatives",
                "--model",
                "gauss-ill",
                "--data",
                "pos.npy",
                "--method",
                "pcd",
                "--state",
                "a.json",
                "--out",
                "x.npy",
            ],
        ),
        2,
        "other settings",
    );
    std::fs::write(p.join("bad.json"), "{not json").unwrap();
    assert_fails(
        &boltz(
            p,
            &[
                "negatives",
                "--model",
                "gauss-ill",
                "--data",
                "pos.npy",
                "--state",
                "bad.json",
                "--out",
                "x.npy",
            ],
        ),
        2,
        "bad.json",
    );
}

#[test]
fn negatives_refuses_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("pos.npy"), 4, 100, &[0.0; 400]);
    for (extra, needle) in [
        (vec!["--method", "magic"], "magic"),
        (vec!["--reinit", "1.5", "--buffer", "10"], "reinit"),
        (vec!["--step-size", "0"], "step-size"),
        (vec!["--kernel", "gibbs"], "binary"),
        (vec!["--init", "cauchy:1"], "init"),
        (vec!["--method", "cd", "--buffer", "10"], "buffer"),
        (vec!["--chains", "0"], "chains"),
    ] {
        let mut args = vec![
            "negatives",
            "--model",
            "gauss-ill",
            "--data",
            "pos.npy",
            "--out",
            "n.npy",
        ];
        args.extend(extra.iter());
        assert_fails(&boltz(p, &args), 2, needle);
    }
    npy(&p.join("narrow.npy"), 4, 3, &[0.0; 12]);
    assert_fails(
        &boltz(
            p,
            &[
                "negatives",
                "--model",
                "gauss-ill",
                "--data",
                "narrow.npy",
                "--method",
                "cd",
                "--out",
                "n.npy",
            ],
        ),
        2,
        "shape",
    );
}

/// A call whose chains barely move is warned (issue 31's frozen sampler):
/// MALA at a step far too large accepts nothing; at its default step on
/// the same target it stays quiet.
#[test]
fn a_frozen_sampler_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("d.npy"), 8, 2, &[0.5; 16]);
    let run = |step: Option<&str>| {
        let mut args = vec![
            "negatives",
            "--model",
            "gmm-ring",
            "--kernel",
            "mala",
            "--data",
            "d.npy",
            "--out",
            "n.npy",
            "--steps",
            "20",
            "--json",
        ];
        if let Some(s) = step {
            args.extend(["--step-size", s]);
        }
        let v: serde_json::Value = serde_json::from_str(&assert_ok(&boltz(p, &args))).unwrap();
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w.as_str().unwrap().contains("barely move"))
            .count()
    };
    assert_eq!(run(Some("50")), 1);
    assert_eq!(run(None), 0);
}

#[test]
fn an_adapted_step_carries_over_in_the_state_file() {
    // `--adapt-step`: each call moves the step towards MALA's target
    // acceptance and the state file keeps it for the next call.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy(&p.join("d.npy"), 8, 2, &[0.5; 16]);
    let call = || {
        let args = [
            "negatives",
            "--model",
            "gmm-ring",
            "--kernel",
            "mala",
            "--method",
            "pcd",
            "--data",
            "d.npy",
            "--out",
            "n.npy",
            "--steps",
            "20",
            "--step-size",
            "50",
            "--adapt-step",
            "--state",
            "s.state",
            "--json",
        ];
        let v: serde_json::Value = serde_json::from_str(&assert_ok(&boltz(p, &args))).unwrap();
        v["stats"]["step_size"].as_f64().unwrap()
    };
    let steps: Vec<f64> = (0..12).map(|_| call()).collect();
    assert_eq!(steps[0], 50.0);
    assert!(steps.windows(2).take(5).all(|w| w[1] < w[0]), "{steps:?}");
    assert!(steps[11] < 5.0, "{steps:?}");
    // ULA has no acceptance to aim for: one error line, exit 2.
    let out = boltz(
        p,
        &[
            "negatives",
            "--model",
            "gmm-ring",
            "--data",
            "d.npy",
            "--out",
            "n.npy",
            "--adapt-step",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--adapt-step"));
}
