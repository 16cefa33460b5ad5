//! Per-chain random streams: the reproducibility contract.
//!
//! Chain `i` of a run with seed `s` draws only from `chain_rng(s, i)`: a
//! ChaCha8 generator keyed by `s` with its stream (nonce) set to `i`. Streams
//! never overlap, so a run's output depends on the seed alone, not on how
//! chains are spread over threads or batches (the approach of nuts-rs).

use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng;

/// The generator type behind every chain.
pub type ChainRng = ChaCha8Rng;

/// The random stream of chain `chain` in a run with seed `seed`.
pub fn chain_rng(seed: u64, chain: u64) -> ChainRng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(chain);
    rng
}

/// The streams of chains `0..n` for `seed`.
pub fn chain_rngs(seed: u64, n: usize) -> Vec<ChainRng> {
    (0..n as u64).map(|i| chain_rng(seed, i)).collect()
}

/// A stream for purposes other than chains (initial points, pilots), kept
/// apart from the chain streams by a fixed offset in the key.
pub fn aux_rng(seed: u64, purpose: u64) -> ChainRng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
    rng.set_stream(purpose);
    rng
}

/// The exact position of a stream: (seed words, stream, word position).
/// Restoring it with [`restore_rng`] continues the stream bit for bit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RngState {
    /// The 32-byte key.
    pub seed: [u8; 32],
    /// The stream (nonce).
    pub stream: u64,
    /// Position in 32-bit words from the start of the stream.
    pub word_pos: u128,
}

/// Captures a generator's position.
pub fn save_rng(rng: &ChainRng) -> RngState {
    RngState {
        seed: rng.get_seed(),
        stream: rng.get_stream(),
        word_pos: rng.get_word_pos(),
    }
}

/// Rebuilds a generator at a saved position.
pub fn restore_rng(state: &RngState) -> ChainRng {
    let mut rng = ChaCha8Rng::from_seed(state.seed);
    rng.set_stream(state.stream);
    rng.set_word_pos(state.word_pos);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn streams_differ_and_restore_exactly() {
        let mut a = chain_rng(7, 0);
        let mut b = chain_rng(7, 1);
        let xa: u64 = a.random();
        let xb: u64 = b.random();
        assert_ne!(xa, xb);
        let _: u32 = a.random();
        let saved = save_rng(&a);
        let mut c = restore_rng(&saved);
        for _ in 0..100 {
            assert_eq!(a.random::<u64>(), c.random::<u64>());
        }
    }

    #[test]
    fn value_stability() {
        // Pins the first draw so an upgrade of rand_chacha that changes
        // streams is noticed (outputs of every seeded run would change).
        let mut r = chain_rng(0, 0);
        let first: u64 = r.random();
        let mut r2 = chain_rng(0, 0);
        assert_eq!(first, r2.random::<u64>());
        assert_eq!(first, FIRST_DRAW_SEED0_CHAIN0);
    }
    const FIRST_DRAW_SEED0_CHAIN0: u64 = 13080132717333068652;
}
