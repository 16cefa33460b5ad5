//! FNV-1a 64: the checksum of checkpoints and the fingerprints of models,
//! input files and starting points (fast, not cryptographic).

/// An incremental FNV-1a 64 hash.
///
/// ```
/// use boltz::io::{Fnv1a, fnv1a};
/// let mut h = Fnv1a::new();
/// h.update(b"bol");
/// h.update(b"tz");
/// assert_eq!(h.finish(), fnv1a(b"boltz"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv1a {
    /// The empty hash (the FNV offset basis).
    pub fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Adds the little-endian bytes of each value.
    pub fn update_f64s(&mut self, values: &[f64]) {
        for v in values {
            self.update(&v.to_le_bytes());
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV-1a 64 of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.update(bytes);
    h.finish()
}
