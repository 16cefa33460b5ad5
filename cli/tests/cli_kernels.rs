//! The kernel registry on the command line: `boltz kernels` lists it, and
//! every setting of every kernel is part of a run's settings, so a resume
//! (or a state file's next call) with any one of them changed is refused.
//! The cases come from the registry ([`boltz::kernels::KERNELS`] and
//! [`boltz::kernels::SETTINGS`]): a kernel or setting added there is
//! tested here without a line more.

mod common;
use common::{assert_fails, assert_ok, boltz, npy};

#[test]
fn kernels_lists_the_registry_with_each_kernels_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_ok(&boltz(dir.path(), &["kernels", "--json"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["warnings"], serde_json::json!([]));
    let listed = v["kernels"].as_array().unwrap();
    assert_eq!(listed.len(), boltz::kernels::KERNELS.len());
    for (k, l) in boltz::kernels::KERNELS.iter().zip(listed) {
        assert_eq!(l["name"], k.name);
        let names: Vec<&str> = l["settings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, k.settings);
    }
    let text = assert_ok(&boltz(dir.path(), &["kernels"]));
    assert!(
        text.contains("nuts") && text.contains("--max-depth"),
        "{text}"
    );
}

/// The command-line flag of a setting and its example value.
fn flag(setting: &str) -> (String, &'static str) {
    let s = boltz::kernels::SETTINGS
        .iter()
        .find(|s| s.name == setting)
        .unwrap();
    (format!("--{}", setting.replace('_', "-")), s.example)
}

#[test]
fn a_resume_with_any_kernel_setting_changed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = 0;
    for k in boltz::kernels::KERNELS {
        let model = match k.space {
            boltz::StateSpace::Continuous => "gmm-ring",
            boltz::StateSpace::Binary => "rbm20",
        };
        let ckpt = format!("{}.ckpt", k.name);
        let base = [
            "sample",
            "--model",
            model,
            "--sampler",
            k.name,
            "--chains",
            "2",
            "--warmup",
            "20",
            "--draws",
            "10",
            "--seed",
            "3",
            "--out",
            "s.npy",
            "--quiet",
        ];
        let mut first: Vec<&str> = base.to_vec();
        first.extend(["--checkpoint", &ckpt, "--checkpoint-every", "10"]);
        assert_ok(&boltz(dir.path(), &first));
        // The same settings resume.
        let mut same: Vec<&str> = base.to_vec();
        same.extend(["--resume", &ckpt]);
        assert_ok(&boltz(dir.path(), &same));
        for setting in k.settings {
            let (f, value) = flag(setting);
            let mut changed = same.clone();
            changed.extend([f.as_str(), value]);
            let out = boltz(dir.path(), &changed);
            assert_fails(&out, 2, "other settings");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(setting),
                "{}: {setting} not named: {err}",
                k.name
            );
            cases += 1;
        }
    }
    let expected: usize = boltz::kernels::KERNELS
        .iter()
        .map(|k| k.settings.len())
        .sum();
    assert_eq!(cases, expected);
}

#[test]
fn a_nuts_resume_with_another_max_depth_is_refused() {
    // The reported bug: max_depth was missing from the settings string.
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "sample",
        "--model",
        "gauss-ill",
        "--sampler",
        "nuts",
        "--chains",
        "2",
        "--warmup",
        "30",
        "--draws",
        "20",
        "--out",
        "s.npy",
        "--quiet",
    ];
    let mut first = base.to_vec();
    first.extend([
        "--max-depth",
        "6",
        "--checkpoint",
        "c.ckpt",
        "--checkpoint-every",
        "10",
    ]);
    assert_ok(&boltz(dir.path(), &first));
    let mut resume = base.to_vec();
    resume.extend(["--resume", "c.ckpt", "--max-depth", "2"]);
    let out = boltz(dir.path(), &resume);
    assert_fails(&out, 2, "max_depth 6, now 2");
}

#[test]
fn an_ais_resume_with_another_kernel_setting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "logz",
        "--model",
        "gmm-ring",
        "--method",
        "ais",
        "--kernel",
        "hmc",
        "--leapfrog",
        "3",
        "--particles",
        "32",
        "--temps",
        "40",
        "--no-reverse",
        "--quiet",
    ];
    let mut first = base.to_vec();
    first.extend(["--checkpoint", "c.ckpt", "--checkpoint-every", "10"]);
    assert_ok(&boltz(dir.path(), &first));
    for (f, v) in ["jitter", "step_size", "target_accept", "max_depth"].map(flag) {
        let mut resume = base.to_vec();
        resume.extend(["--resume", "c.ckpt", f.as_str(), v]);
        assert_fails(&boltz(dir.path(), &resume), 2, "other settings");
    }
}

#[test]
fn a_negatives_state_refuses_a_call_with_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    npy(
        &dir.path().join("d.npy"),
        4,
        2,
        &[0.1, 0.2, -0.3, 0.4, 1.0, -1.0, 0.5, 0.5],
    );
    let base = [
        "negatives",
        "--model",
        "gmm-ring",
        "--data",
        "d.npy",
        "--method",
        "pcd",
        "--kernel",
        "mala",
        "--steps",
        "5",
        "--state",
        "s.state",
        "--out",
        "n.npy",
    ];
    assert_ok(&boltz(dir.path(), &base));
    assert_ok(&boltz(dir.path(), &base));
    for extra in [
        vec!["--step-size", "0.02"],
        vec!["--target-accept", "0.7"],
        vec!["--steps", "6"],
    ] {
        let mut call = base.to_vec();
        call.extend(extra.iter().copied());
        let out = boltz(dir.path(), &call);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}

#[test]
fn library_errors_name_settings_and_the_cli_shows_its_flags() {
    // The library says `local_kernel` and `kernel pt` (as Python users
    // write them); the command line shows the flags of the command run.
    let dir = tempfile::tempdir().unwrap();
    npy(&dir.path().join("d.npy"), 2, 2, &[0.1, 0.2, -0.3, 0.4]);
    let out = boltz(
        dir.path(),
        &[
            "negatives",
            "--model",
            "gmm-ring",
            "--data",
            "d.npy",
            "--local-kernel",
            "mala",
            "--out",
            "n.npy",
        ],
    );
    assert_fails(
        &out,
        2,
        "invalid value for `--local-kernel`: is for `--kernel pt`",
    );
    let out = boltz(
        dir.path(),
        &[
            "sample",
            "--model",
            "gmm-ring",
            "--sampler",
            "mala",
            "--base-scale",
            "2",
            "--out",
            "s.npy",
        ],
    );
    assert_fails(
        &out,
        2,
        "invalid value for `--base-scale`: is for `--sampler pt`",
    );
}

#[test]
fn settings_without_meaning_are_refused() {
    // Issue 32: `negatives --steps 0` and `sample --sampler pt --shared-step`
    // were accepted with exit 0.
    let dir = tempfile::tempdir().unwrap();
    npy(&dir.path().join("d.npy"), 2, 2, &[0.1, 0.2, -0.3, 0.4]);
    let out = boltz(
        dir.path(),
        &[
            "negatives",
            "--model",
            "gmm-ring",
            "--data",
            "d.npy",
            "--steps",
            "0",
            "--out",
            "n.npy",
        ],
    );
    assert_fails(&out, 2, "invalid value for `--steps`");
    let out = boltz(
        dir.path(),
        &[
            "sample",
            "--model",
            "gmm-ring",
            "--sampler",
            "pt",
            "--shared-step",
            "--chains",
            "2",
            "--warmup",
            "10",
            "--draws",
            "10",
            "--out",
            "s.npy",
        ],
    );
    assert_fails(&out, 2, "invalid value for `--shared-step`");
    assert!(!dir.path().join("n.npy").exists() && !dir.path().join("s.npy").exists());
}

#[test]
fn a_reverse_pass_is_not_dropped_silently_from_a_shard() {
    // Issue 30, S051: `logz --reverse --shard` exited 0 without the
    // reverse pass it requires.
    let dir = tempfile::tempdir().unwrap();
    let out = boltz(
        dir.path(),
        &[
            "logz",
            "--model",
            "gmm-ring",
            "--method",
            "ais",
            "--reverse",
            "--shard",
            "0/2",
            "--shard-out",
            "s.boltz",
            "--particles",
            "32",
            "--temps",
            "20",
            "--quiet",
        ],
    );
    assert_fails(&out, 2, "invalid value for `--reverse`");
    assert!(!dir.path().join("s.boltz").exists());
}
