//! Fuzzing of the readers of untrusted files: the npy reader, the
//! safetensors reader, the model file parser and the checkpoint loaders never panic on mutated or random
//! bytes. `PROPTEST_CASES=N` runs longer (the committed corpus in
//! tests/corpus/ seeds the mutations).

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
        let _ = boltz::io::load_model_file(&path);
    }

    /// Mutated checkpoints (with the checksum recomputed half the time, so
    /// that the loaders' range checks are reached, as a careful editor
    /// would) never panic the container reader or the sample and AIS
    /// resume paths: they are refused or resumed.
    #[test]
    fn checkpoint_loaders_never_panic(seed in 0usize..2, flips in prop::collection::vec((0usize..8192, any::<u8>()), 0..6), cut in 0usize..8192, fix in any::<bool>()) {
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
        for kind in ["sample", "ais", "negatives"] {
            let _ = boltz::io::read_checkpoint::<serde_json::Value>(&path, kind, &settings);
        }
        let control = boltz::run::Control { settings, ..Default::default() };
        let e = boltz::model::load("gmm-ring").unwrap().energy(None).unwrap();
        let k = boltz::kernels::Mala::new(0.1).unwrap();
        let _ = boltz::sampler::resume(e.as_ref(), &k, &path, &mut boltz::run::NoObserver, &control);
        let base = boltz::ais::Base::isotropic(2, 2.0).unwrap();
        let problem = boltz::ais::AisProblem::new(e.clone(), &base).unwrap();
        let mut cfg = boltz::ais::AisConfig::new();
        (cfg.particles, cfg.temps, cfg.step_size) = (16, 20, Some(0.1));
        let _ = boltz::ais::ais_with(&problem, &cfg, &control, Some(&path), &mut boltz::run::NoObserver);
    }
}
