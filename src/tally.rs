//! Tallies summed exactly, so that a run split into shards, batches or
//! islands adds up to the one-process run's figures bit for bit.

/// Acceptance summed exactly: each move's acceptance probability in units
/// of 2^-32 (rounded to the nearest unit), and the number of moves. Integer
/// sums do not depend on the order they are added in, so the rate of a run
/// split into shards, batches of contexts or islands is the one-process
/// run's, bit for bit (a sum of per-shard mean rates is not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    /// Sum of the moves' acceptance probabilities, in units of 2^-32
    /// (written as a decimal string: JSON numbers stop at 2^64).
    #[serde(with = "u128_text")]
    pub units: u128,
    /// Moves counted (particles x temperatures x moves per temperature).
    pub moves: u64,
}

/// One unit of [`Acceptance::units`] is 2^-32 of an accepted move.
const UNIT: f64 = 4_294_967_296.0;

impl Acceptance {
    /// Adds one move per acceptance probability in `probs`.
    pub fn add_probabilities(&mut self, probs: impl IntoIterator<Item = f64>) {
        for p in probs {
            self.add_probability(p);
        }
    }

    /// Adds one move accepted with probability `p` (clamped to [0, 1]; NaN counts as 0).
    pub fn add_probability(&mut self, p: f64) {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.units += (p * UNIT).round() as u128;
        self.moves += 1;
    }

    /// Adds `moves` moves that were all accepted (Gibbs sweeps).
    pub fn add_exact(&mut self, moves: u64) {
        self.units += u128::from(moves) << 32;
        self.moves += moves;
    }

    /// Adds another tally (another shard's, batch's or island's).
    pub fn merge(&mut self, other: &Acceptance) {
        self.units = self.units.saturating_add(other.units);
        self.moves = self.moves.saturating_add(other.moves);
    }

    /// The mean acceptance, in [0, 1]; 1 when no move was counted (a run
    /// with nothing to accept or reject).
    pub fn rate(&self) -> f64 {
        if self.moves == 0 {
            1.0
        } else {
            self.units as f64 / UNIT / self.moves as f64
        }
    }

    /// Whether the units fit the moves (at most one unit-whole per move):
    /// the range check of a tally read from a file.
    pub fn is_valid(&self) -> bool {
        self.units <= u128::from(self.moves) << 32
    }
}

mod u128_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let t = String::deserialize(d)?;
        t.parse().map_err(serde::de::Error::custom)
    }
}
