//! Fuzzing of the readers of untrusted files: the npy reader, the
//! safetensors reader, the model file parser, the checkpoint loaders
//! (sampling, AIS, negatives, parallel tempering) and
//! the merge of shard files never panic on mutated or random bytes, and a
//! forged shard header (checksum recomputed) is refused or changes no
//! merged number. `PROPTEST_CASES=N` runs longer (the committed corpus in
//! tests/corpus/ seeds the mutations).

mod common;
use proptest::prelude::*;
use std::path::Path;

fn corpus(ext: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Cases per property: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The settings string of a checkpoint's header, if it can be read.
fn settings_of(b: &[u8]) -> String {
    (|| {
        let hlen = usize::try_from(u64::from_le_bytes(b.get(12..20)?.try_into().ok()?)).ok()?;
        let h: serde_json::Value =
            serde_json::from_slice(b.get(20..20usize.checked_add(hlen)?)?).ok()?;
        Some(h.get("settings")?.as_str()?.to_string())
    })()
    .unwrap_or_default()
}

/// A tempering checkpoint's settings, if they can be read.
fn pt_of(b: &[u8]) -> Option<boltz::pt::PtSettings> {
    let hlen = usize::try_from(u64::from_le_bytes(b.get(12..20)?.try_into().ok()?)).ok()?;
    let h: serde_json::Value =
        serde_json::from_slice(b.get(20..20usize.checked_add(hlen)?)?).ok()?;
    serde_json::from_value(h.get("state")?.get("run")?.get("pt")?.clone()).ok()
}

/// The sampling run's configuration in a checkpoint's header, if it can be read.
fn config_of(b: &[u8]) -> Option<boltz::SampleConfig> {
    let hlen = usize::try_from(u64::from_le_bytes(b.get(12..20)?.try_into().ok()?)).ok()?;
    let h: serde_json::Value =
        serde_json::from_slice(b.get(20..20usize.checked_add(hlen)?)?).ok()?;
    serde_json::from_value(h.get("state")?.get("run")?.get("config")?.clone()).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(400), ..ProptestConfig::default() })]

    /// Random bytes and mutated valid files never panic the npy reader
    /// (the committed corpus in tests/corpus/ seeds the mutations).
    #[test]
    fn npy_reader_never_panics(seed in 0usize..4, flips in prop::collection::vec((0usize..4096, any::<u8>()), 0..8), cut in 0usize..4096, random in prop::collection::vec(any::<u8>(), 0..200)) {
        let files = corpus("npy");
        let mut b = files[seed % files.len()].clone();
        for (pos, byte) in flips {
            if !b.is_empty() {
                let i = pos % b.len();
                b[i] = byte;
            }
        }
        b.truncate(cut.max(1).min(b.len()));
        let _ = boltz::io::read_npy_bytes(&b, Path::new("fuzz.npy"));
        let _ = boltz::io::read_npy_bytes(&random, Path::new("random.npy"));
    }

    /// Mutated safetensors files (header and data) never panic the reader
    /// or the conversion of any tensor it accepts.
    #[test]
    fn safetensors_reader_never_panics(flips in prop::collection::vec((0usize..512, any::<u8>()), 0..8), cut in 0usize..512, random in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut b = corpus("safetensors")[0].clone();
        for (pos, byte) in flips {
            let i = pos % b.len();
            b[i] = byte;
        }
        b.truncate(cut.max(1).min(b.len()));
        for bytes in [b, random] {
            if let Ok(t) = boltz::io::SafeTensors::from_bytes(bytes, Path::new("fuzz.safetensors")) {
                for name in t.names() {
                    let _ = t.tensor(name);
                }
            }
        }
    }

    /// Mutated model files never panic the parser.
    #[test]
    fn model_parser_never_panics(seed in 0usize..4, flips in prop::collection::vec((0usize..512, 32u8..127), 0..6), cut in 0usize..512) {
        let files = corpus("json");
        let mut b = files[seed % files.len()].clone();
        for (pos, byte) in flips {
            let i = pos % b.len();
            b[i] = byte;
        }
        b.truncate(cut.max(1).min(b.len()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, &b).unwrap();
        let _ = boltz::model::load_model_file(&path);
    }

    /// Mutated checkpoints (with the checksum recomputed half the time, so
    /// that the loaders' range checks are reached, as a careful editor
    /// would) never panic the container reader or the sample and AIS
    /// resume paths: they are refused or resumed.
    #[test]
    fn checkpoint_loaders_never_panic(seed in 0usize..3, flips in prop::collection::vec((0usize..8192, any::<u8>()), 0..6), cut in 0usize..8192, fix in any::<bool>()) {
        let files = corpus("ckpt");
        let mut b = files[seed % files.len()].clone();
        for (pos, byte) in flips {
            let i = pos % b.len();
            b[i] = byte;
        }
        b.truncate(cut.max(40).min(b.len()));
        if fix && b.len() > 8 {
            let n = b.len() - 8;
            let sum = boltz::io::fnv1a(&b[..n]);
            b[n..].copy_from_slice(&sum.to_le_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck");
        std::fs::write(&path, &b).unwrap();
        let settings = settings_of(&b);
        for kind in ["sample", "ais", "negatives", "pt"] {
            let _ = boltz::io::read_checkpoint::<serde_json::Value>(&path, kind, &settings);
        }
        let control = boltz::run::Control { settings, ..Default::default() };
        let e = boltz::model::load("gmm-ring").unwrap().energy(None).unwrap();
        let k = boltz::kernels::Mala::new(0.1).unwrap();
        // The run's configuration as the file has it, so that the checks
        // past the configuration's are reached.
        let config = config_of(&b).unwrap_or_default();
        let _ = boltz::sampler::resume(e.as_ref(), &k, &config, &path, &mut boltz::run::NoObserver, &control);
        let base = boltz::ais::Base::isotropic(2, 2.0).unwrap();
        let problem = boltz::ais::AisProblem::new(e.clone(), &base).unwrap();
        let mut cfg = boltz::ais::AisConfig::new();
        (cfg.particles, cfg.temps, cfg.step_size) = (16, 20, Some(0.1));
        let _ = boltz::ais::ais_with(&problem, &cfg, &control, Some(&path), &mut boltz::run::NoObserver);
        // Parallel tempering's loader, with the run's settings as the file
        // has them.
        let pt = pt_of(&b).unwrap_or_else(|| boltz::pt::PtSettings::new(4));
        let spec = boltz::KernelSpec::new("mala").unwrap();
        let _ = boltz::pt::resume(e.as_ref(), &base, &spec, (&config, &pt), &path, &mut boltz::run::NoObserver, &control);
    }

    /// A shard file forged as a careful editor would (one header field set
    /// to an extreme or mistyped value, or one value changed, the checksum
    /// recomputed) never panics the merge, and a forged header that is
    /// accepted changes no merged estimate or array (issue 30's
    /// forged-shard target; tests/corpus/*.shard are pairs of shards of
    /// one logz, prob and sample run, rewritten when the shard format
    /// version changes).
    #[test]
    fn forged_shards_never_panic_or_change_the_merge(run in 0usize..3, field in any::<usize>(), value in 0usize..PAINT.len(), at in any::<usize>(), edit_values in any::<bool>(), x in any::<f64>()) {
        let name = ["logz", "prob", "sample"][run];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        let (p0, p1) = (dir.join(format!("{name}0.shard")), dir.join(format!("{name}1.shard")));
        let reference = boltz::jobs::merge(&[p0.clone(), p1.clone()]).unwrap();
        let b = std::fs::read(&p1).unwrap();
        let (mut head, mut vals) = unpack(&b);
        if edit_values {
            let i = at % vals.len();
            vals[i] = x;
        } else {
            let mut leaves = Vec::new();
            leaf_paths(&head["state"], &mut Vec::new(), &mut leaves);
            let path = &leaves[field % leaves.len()];
            let mut v = &mut head["state"];
            for k in path {
                v = match k {
                    Key::Name(n) => &mut v[n.as_str()],
                    Key::Index(i) => &mut v[*i],
                };
            }
            *v = serde_json::from_str(PAINT[value]).unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        let forged = tmp.path().join("forged.shard");
        std::fs::write(&forged, pack(&b, &head, &vals)).unwrap();
        if let (Ok(m), false) = (boltz::jobs::merge(&[p0, forged]), edit_values) {
            let close = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
            for key in ["log_z", "stderr", "ess"] {
                let (a, r) = (&m.report[key], &reference.report[key]);
                prop_assert!(a == r || close(a.as_f64().unwrap_or(f64::NAN), r.as_f64().unwrap_or(f64::NAN)), "{key}: {a} vs {r}");
            }
            prop_assert_eq!(&m.samples, &reference.samples);
            prop_assert_eq!(&m.energies, &reference.energies);
            prop_assert_eq!(&m.log_prob, &reference.log_prob);
        }
    }
}

/// Values a forger paints into a header field: extremes, wrong types.
const PAINT: &[&str] = &[
    "0",
    "1",
    "-1",
    "-5",
    "2",
    "3",
    "2147483648",
    "1099511627776",
    "4611686018427387904",
    "18446744073709551615",
    "1e308",
    "-1e308",
    "0.5",
    "7.0",
    "-0.0",
    "\"x\"",
    "\"logz\"",
    "null",
    "true",
    "false",
    "[]",
    "{}",
    "[4294967296, 4294967296]",
    "[0, 1]",
    "[1, 0]",
    "[2]",
    "[0.1, 1e308]",
];

/// A step into a JSON value.
enum Key {
    Name(String),
    Index(usize),
}

/// The paths of every leaf (and every array or object, which can be
/// replaced whole) of `v`.
fn leaf_paths(v: &serde_json::Value, at: &mut Vec<Key>, out: &mut Vec<Vec<Key>>) {
    let copy = |at: &Vec<Key>| {
        at.iter()
            .map(|k| match k {
                Key::Name(n) => Key::Name(n.clone()),
                Key::Index(i) => Key::Index(*i),
            })
            .collect()
    };
    out.push(copy(at));
    match v {
        serde_json::Value::Object(m) => {
            for (k, c) in m {
                at.push(Key::Name(k.clone()));
                leaf_paths(c, at, out);
                at.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, c) in a.iter().enumerate().take(4) {
                at.push(Key::Index(i));
                leaf_paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// A checkpoint container's JSON header and values.
fn unpack(b: &[u8]) -> (serde_json::Value, Vec<f64>) {
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let hlen = word(12);
    let head = serde_json::from_slice(&b[20..20 + hlen]).unwrap();
    let n = word(20 + hlen);
    let vals = (0..n)
        .map(|i| f64::from_le_bytes(b[28 + hlen + 8 * i..36 + hlen + 8 * i].try_into().unwrap()))
        .collect();
    (head, vals)
}

/// The container of `orig` (its magic and version) with another header and
/// values, the checksum recomputed.
fn pack(orig: &[u8], head: &serde_json::Value, vals: &[f64]) -> Vec<u8> {
    let h = serde_json::to_vec(head).unwrap();
    let mut out = orig[..12].to_vec();
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&(vals.len() as u64).to_le_bytes());
    for v in vals {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&boltz::io::fnv1a(&out).to_le_bytes());
    out
}

/// Rewrites the corpus checkpoints `tests/corpus/{sample,pt,ais}.ckpt` (run
/// by hand when the checkpoint format changes: `cargo test --release
/// --test fuzz -- --ignored write_corpus_checkpoints`): short runs on
/// `gmm-ring` stopped part-way, with the settings the fuzz target resumes
/// them with, so that mutations of them reach the loaders' range checks.
#[test]
#[ignore = "writes tests/corpus/*.ckpt"]
fn write_corpus_checkpoints() {
    use std::sync::{Arc, atomic::AtomicBool};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let e = boltz::model::load("gmm-ring")
        .unwrap()
        .energy(None)
        .unwrap();
    let control = |name: &str| {
        let stop = Arc::new(AtomicBool::new(false));
        let c = boltz::run::Control {
            checkpoint: Some(dir.join(name)),
            checkpoint_every: 0,
            stop: Some(stop.clone()),
            settings: format!("corpus {name}"),
        };
        (c, stop)
    };
    let mut config = boltz::SampleConfig::new();
    (config.n_chains, config.warmup, config.draws) = (4, 20, 10);
    config.observe_every = 1;
    let (c, stop) = control("sample.ckpt");
    let k = boltz::kernels::Mala::new(0.1).unwrap();
    let out = boltz::sampler::sample_with(
        e.as_ref(),
        &k,
        &config,
        None,
        &mut common::StopAfter(25, stop),
        &c,
    )
    .unwrap();
    assert!(!out.complete, "the sample run was not stopped part-way");
    let base = boltz::ais::Base::isotropic(2, 2.0).unwrap();
    let (c, stop) = control("pt.ckpt");
    let spec = boltz::KernelSpec::new("mala").unwrap();
    let pt = boltz::pt::PtSettings::new(4);
    let out = boltz::pt::sample(
        e.as_ref(),
        &base,
        &spec,
        &config,
        &pt,
        None,
        &mut common::StopAfter(25, stop),
        &c,
    )
    .unwrap();
    assert!(!out.complete, "the tempering run was not stopped part-way");
    let problem = boltz::ais::AisProblem::new(e.clone(), &base).unwrap();
    let mut cfg = boltz::ais::AisConfig::new();
    (cfg.particles, cfg.temps, cfg.step_size) = (16, 20, Some(0.1));
    let (c, stop) = control("ais.ckpt");
    let r =
        boltz::ais::ais_with(&problem, &cfg, &c, None, &mut common::StopAfter(8, stop)).unwrap();
    assert!(!r.complete, "the AIS run was not stopped part-way");
    for name in ["sample.ckpt", "pt.ckpt", "ais.ckpt"] {
        assert!(dir.join(name).exists(), "{name} not written");
    }
}

/// The corpus checkpoints are current: each resumes to its end through
/// the calls the fuzz target makes (a stale one, left by a format change,
/// would seed mutations that never get past the header checks).
#[test]
fn corpus_checkpoints_resume() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let e = boltz::model::load("gmm-ring")
        .unwrap()
        .energy(None)
        .unwrap();
    let base = boltz::ais::Base::isotropic(2, 2.0).unwrap();
    let control = |b: &[u8]| boltz::run::Control {
        settings: settings_of(b),
        ..Default::default()
    };
    let copy = |name: &str| {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(name);
        std::fs::copy(dir.join(name), &path).unwrap();
        let b = std::fs::read(&path).unwrap();
        (tmp, path, b)
    };
    let (_t, path, b) = copy("sample.ckpt");
    let k = boltz::kernels::Mala::new(0.1).unwrap();
    let config = config_of(&b).expect("the sample checkpoint's configuration");
    let out = boltz::sampler::resume(
        e.as_ref(),
        &k,
        &config,
        &path,
        &mut boltz::run::NoObserver,
        &control(&b),
    );
    assert!(out.unwrap().complete, "sample.ckpt");
    let (_t, path, b) = copy("pt.ckpt");
    let config = config_of(&b).expect("the tempering checkpoint's configuration");
    let pt = pt_of(&b).expect("the tempering checkpoint's settings");
    let spec = boltz::KernelSpec::new("mala").unwrap();
    let out = boltz::pt::resume(
        e.as_ref(),
        &base,
        &spec,
        (&config, &pt),
        &path,
        &mut boltz::run::NoObserver,
        &control(&b),
    );
    assert!(out.unwrap().complete, "pt.ckpt");
    let (_t, path, b) = copy("ais.ckpt");
    let problem = boltz::ais::AisProblem::new(e.clone(), &base).unwrap();
    let mut cfg = boltz::ais::AisConfig::new();
    (cfg.particles, cfg.temps, cfg.step_size) = (16, 20, Some(0.1));
    let r = boltz::ais::ais_with(
        &problem,
        &cfg,
        &control(&b),
        Some(&path),
        &mut boltz::run::NoObserver,
    );
    assert!(r.unwrap().complete, "ais.ckpt");
}
