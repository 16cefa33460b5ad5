//! Parallel tempering from the outside: `sample --sampler pt` (report,
//! every replica's draws, the same bytes on 1 and 2 threads, checkpoint and
//! resume), `logz --method pt`, persistent `negatives --kernel pt`, and
//! clear errors for impossible settings.

mod common;
use common::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn sample_pt_reports_its_ladder_and_writes_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let args = [
        "sample",
        "--model",
        "gmm-ring",
        "--sampler",
        "pt",
        "--replicas",
        "6",
        "--kernel",
        "hmc",
        "--leapfrog",
        "4",
        "--chains",
        "4",
        "--warmup",
        "300",
        "--draws",
        "400",
        "--out",
        "s.npy",
        "--all-replicas",
        "all.npy",
        "--energies",
        "e.npy",
        "--json",
    ];
    let one = assert_ok(&boltz_threads(p, &args, Some("1")));
    let s1 = std::fs::read(p.join("s.npy")).unwrap();
    let a1 = std::fs::read(p.join("all.npy")).unwrap();
    let r = json(&one);
    assert_eq!(r["sampler"], "pt");
    assert_eq!(r["kernel"], "hmc");
    for key in [
        "betas",
        "swap_accept",
        "lambda",
        "round_trips",
        "round_trip_rate",
        "log_z",
        "log_z_stderr",
        "rounds",
    ] {
        assert!(r["pt"].get(key).is_some(), "report lacks pt.{key}");
    }
    assert_eq!(r["pt"]["betas"].as_array().unwrap().len(), 6);
    assert!(r["warnings"].is_array());
    assert_eq!(read(&p.join("s.npy")).shape, vec![4, 400, 2]);
    assert_eq!(read(&p.join("all.npy")).shape, vec![6, 4, 400, 2]);
    assert_eq!(read(&p.join("e.npy")).shape, vec![4, 400]);
    // The target replica of the 4-D array is the draws.
    let all = read(&p.join("all.npy"));
    let s = read(&p.join("s.npy"));
    assert_eq!(&all.data[5 * 4 * 400 * 2..], &s.data[..]);
    // 2 threads: the same bytes.
    let two = assert_ok(&boltz_threads(p, &args, Some("2")));
    assert_eq!(std::fs::read(p.join("s.npy")).unwrap(), s1);
    assert_eq!(std::fs::read(p.join("all.npy")).unwrap(), a1);
    let (mut r1, mut r2) = (json(&one), json(&two));
    r1["wall_s"] = 0.into();
    r2["wall_s"] = 0.into();
    assert_eq!(r1["pt"], r2["pt"]);
    // Text output names the ladder.
    let text = assert_ok(&boltz(p, &args[..args.len() - 1]));
    assert!(
        text.contains("round trips") && text.contains("stepping stone"),
        "{text}"
    );
}

#[test]
fn sample_pt_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let base = [
        "sample",
        "--model",
        "gmm-far",
        "--sampler",
        "pt",
        "--replicas",
        "5",
        "--chains",
        "3",
        "--warmup",
        "100",
        "--draws",
        "200",
        "--quiet",
    ];
    let mut full = base.to_vec();
    full.extend(["--out", "full.npy"]);
    assert_ok(&boltz(p, &full));
    // A checkpoint written mid-run (every 150 steps), then a resume from it.
    let mut ck = base.to_vec();
    ck.extend([
        "--out",
        "first.npy",
        "--checkpoint",
        "ck",
        "--checkpoint-every",
        "150",
    ]);
    assert_ok(&boltz(p, &ck));
    let mut res = base.to_vec();
    res.extend(["--out", "resumed.npy", "--resume", "ck"]);
    assert_ok(&boltz(p, &res));
    let f = std::fs::read(p.join("full.npy")).unwrap();
    assert_eq!(std::fs::read(p.join("first.npy")).unwrap(), f);
    assert_eq!(std::fs::read(p.join("resumed.npy")).unwrap(), f);
    // Other settings are refused.
    let mut other = base.to_vec();
    other[6] = "6";
    other.extend(["--out", "x.npy", "--resume", "ck"]);
    assert_fails(&boltz(p, &other), 2, "checkpoint");
}

#[test]
fn logz_pt_and_pt_negatives() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let out = assert_ok(&boltz(
        p,
        &[
            "logz",
            "--model",
            "gmm-ring",
            "--method",
            "pt",
            "--replicas",
            "8",
            "--chains",
            "8",
            "--warmup",
            "500",
            "--draws",
            "2000",
            "--json",
        ],
    ));
    let r = json(&out);
    assert_eq!(r["method"], "pt");
    let (lz, se, ex) = (
        r["log_z"].as_f64().unwrap(),
        r["stderr"].as_f64().unwrap(),
        r["exact_log_z"].as_f64().unwrap(),
    );
    assert!((lz - ex).abs() < 3.0 * se, "{lz} +- {se} vs {ex}");
    assert_eq!(r["pt"]["chains"], 8);
    assert!(r["warnings"].as_array().unwrap().is_empty());
    // Persistent PT negatives: the replicas live in the state file.
    npy(&p.join("d.npy"), 16, 2, &[4.0, 0.0].repeat(16));
    let neg = [
        "negatives",
        "--model",
        "gmm-ring",
        "--data",
        "d.npy",
        "--method",
        "pcd",
        "--kernel",
        "pt",
        "--replicas",
        "6",
        "--step-size",
        "0.1",
        "--base-scale",
        "4",
        "--steps",
        "100",
        "--state",
        "st",
        "--out",
        "n.npy",
        "--json",
    ];
    let first = json(&assert_ok(&boltz(p, &neg)));
    assert_eq!(first["kernel"], "pt(mala)");
    assert_eq!(first["call"], 1);
    assert_eq!(first["pt"]["replicas"], 6);
    let second = json(&assert_ok(&boltz(p, &neg)));
    assert_eq!(second["call"], 2);
    assert_eq!(read(&p.join("n.npy")).shape, vec![16, 2]);
}

#[test]
fn impossible_pt_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let s = [
        "sample",
        "--model",
        "gmm-ring",
        "--out",
        "s.npy",
        "--sampler",
    ];
    let mut a = s.to_vec();
    a.extend(["pt", "--replicas", "1"]);
    assert_fails(&boltz(p, &a), 2, "at least 2 replicas");
    let mut a = s.to_vec();
    a.extend(["pt", "--replicas", "100000"]);
    assert_fails(&boltz(p, &a), 2, "replicas");
    let mut a = s.to_vec();
    a.extend(["pt", "--kernel", "pt"]);
    assert_fails(&boltz(p, &a), 2, "not pt");
    let mut a = s.to_vec();
    a.extend(["mala", "--kernel", "hmc"]);
    assert_fails(&boltz(p, &a), 2, "--sampler pt` only");
    let mut a = s.to_vec();
    a.extend(["mala", "--base-scale", "3"]);
    assert_fails(&boltz(p, &a), 2, "--sampler pt");
    let mut a = s.to_vec();
    a.extend(["pt", "--base-scale", "-1"]);
    assert_fails(&boltz(p, &a), 2, "--base-scale");
    let mut a = s.to_vec();
    a.extend(["mala", "--all-replicas", "a.npy"]);
    assert_fails(&boltz(p, &a), 2, "--sampler pt");
    let mut a = s.to_vec();
    a.extend(["pt", "--chains", "4000000", "--replicas", "4000"]);
    assert_fails(&boltz(p, &a), 2, "memory");
    assert_fails(
        &boltz(p, &["logz", "--model", "ring", "--method", "pt"]),
        2,
        "conditional",
    );
    npy(&p.join("d.npy"), 4, 2, &[0.0; 8]);
    assert_fails(
        &boltz(
            p,
            &[
                "negatives",
                "--model",
                "gmm-ring",
                "--data",
                "d.npy",
                "--kernel",
                "pt",
                "--out",
                "n.npy",
            ],
        ),
        2,
        "--method pcd",
    );
}
