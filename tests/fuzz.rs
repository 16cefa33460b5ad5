//! Fuzzing of the readers of untrusted files: the npy reader and the model
//! file parser never panic on mutated or random bytes.

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

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
}
