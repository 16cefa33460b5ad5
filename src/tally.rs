//! Tallies summed exactly, so that a run split into shards, batches or
//! islands adds up to the one-process run's figures bit for bit; and
//! tempering's per-chain tallies, which shards of chains put together.

use crate::error::{Error, Result};

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

/// One ladder of a tempering run and the chains that share it: every
/// chain's own ([`LadderMode::PerChain`], one chain a group) or one for all
/// the chains ([`LadderMode::Pooled`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderGroup {
    /// The chains that share this ladder.
    pub chains: usize,
    /// The temperatures of the sampling phase (`R` values rising from 0
    /// to 1).
    pub betas: Vec<f64>,
    /// Per schedule round (ending at [`LadderTally::round_ends`]): the
    /// communication barrier the group's swaps measured in it.
    pub round_lambda: Vec<f64>,
    /// Per schedule round: the temperatures chosen after it.
    pub round_betas: Vec<Vec<f64>>,
    /// Per pair `(r, r + 1)`: the sum of the group's swap acceptance
    /// probabilities over the sampling phase.
    pub swap_accept: Vec<f64>,
    /// Round trips the group's chains completed in the sampling phase.
    pub trips: u64,
    /// Per replica: the sum of the group's local-move acceptance over the
    /// sampling phase.
    pub acceptance: Vec<f64>,
    /// Stepping stone: per (chain, batch, pair), in that order, the
    /// log-sum-exp of the pair's log ratios (`f64::MIN` while empty).
    pub ss: Vec<f64>,
    /// Per (chain, replica), chain-major: the step size at the end of the
    /// run (the tuning's, also for block Gibbs, which has none).
    pub step_sizes: Vec<f64>,
}

/// Whether `b` is a tempering ladder of `replicas` temperatures: rising
/// strictly from 0 (the reference) to 1 (the target).
pub fn is_ladder(b: &[f64], replicas: usize) -> bool {
    replicas >= 2
        && b.len() == replicas
        && b[0] == 0.0
        && b[replicas - 1] == 1.0
        && b.windows(2).all(|w| w[0] < w[1])
}

/// How a tempering run adapts its temperatures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LadderMode {
    /// One ladder for all the chains, re-spaced from every chain's swaps:
    /// the lower error of the stepping stone (see the README's figures),
    /// but each chain depends on the others, so the run is not sharded.
    #[default]
    Pooled,
    /// Each chain its own ladder, re-spaced from its own swaps: a chain
    /// depends on no other, so the chains split into shards whose merge
    /// is the one-process run's.
    PerChain,
}

impl LadderMode {
    /// `pooled` or `per-chain`.
    pub fn parse(s: &str) -> Result<LadderMode> {
        match s {
            "pooled" => Ok(LadderMode::Pooled),
            "per-chain" => Ok(LadderMode::PerChain),
            _ => Err(Error::param(
                "ladder",
                format!("expected pooled or per-chain, got `{s}`"),
            )),
        }
    }
}

/// The tallies of a tempering run (or of a shard of one) by ladder, and
/// what all its chains share; its figures come from these alone
/// (`LadderTally::stats`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderTally {
    /// The local move's kernel.
    pub kernel: String,
    /// Replicas per chain.
    pub replicas: usize,
    /// `log Z` of the reference.
    pub log_z0: f64,
    /// How the temperatures were adapted.
    pub mode: LadderMode,
    /// The warm-up steps the schedule rounds ended at.
    pub round_ends: Vec<usize>,
    /// Swap attempts of each pair in the sampling phase, every chain's.
    pub swap_attempts: Vec<u64>,
    /// Sampling steps in each stepping-stone batch.
    pub ss_n: Vec<u64>,
    /// Energy evaluations (rows), all replicas, warm-up included.
    pub energy_evals: u64,
    /// Gradient evaluations (rows), all replicas, warm-up included.
    pub grad_evals: u64,
    /// The ladders, their chains in order.
    pub groups: Vec<LadderGroup>,
}

impl LadderTally {
    /// The tallies of the shards of one run of per-chain ladders, in shard
    /// order, as one run's: the ladders one after another, the counts
    /// added. Refused when the parts are not of one such run (pooled
    /// ladders; kernel, replicas, reference, rounds or batches differ).
    pub fn concat(parts: &[LadderTally]) -> Result<LadderTally> {
        let Some(first) = parts.first() else {
            return Err(Error::param("merge", "no tempering tallies to merge"));
        };
        if parts.len() > 1 && parts.iter().any(|p| p.mode != LadderMode::PerChain) {
            return Err(Error::param(
                "merge",
                "tempering with one pooled ladder is not sharded: its shards cannot be merged",
            ));
        }
        let mut all = first.clone();
        for p in &parts[1..] {
            if (&p.kernel, p.replicas, p.log_z0.to_bits(), &p.round_ends)
                != (
                    &all.kernel,
                    all.replicas,
                    all.log_z0.to_bits(),
                    &all.round_ends,
                )
                || p.ss_n != all.ss_n
                || p.swap_attempts.len() != all.swap_attempts.len()
            {
                return Err(Error::param(
                    "merge",
                    "the shards' tempering tallies are not of one run",
                ));
            }
            for (a, b) in all.swap_attempts.iter_mut().zip(&p.swap_attempts) {
                *a = a.saturating_add(*b);
            }
            all.energy_evals = all.energy_evals.saturating_add(p.energy_evals);
            all.grad_evals = all.grad_evals.saturating_add(p.grad_evals);
            all.groups.extend(p.groups.iter().cloned());
        }
        Ok(all)
    }

    /// The chains of all the ladders.
    pub fn chains(&self) -> usize {
        self.groups.iter().map(|g| g.chains).sum()
    }

    /// Whether every size fits `replicas`, the groups and the counts (a
    /// shard file's tally is checked before it is used).
    pub fn fits(&self) -> bool {
        let r = self.replicas;
        let pairs = r.saturating_sub(1);
        let batches = self.ss_n.len();
        let sampled: u64 = self.ss_n.iter().fold(0, |a, n| a.saturating_add(*n));
        let c = self.chains() as u64;
        let rising = |b: &[f64]| is_ladder(b, r);
        let sums = |v: &[f64], n: usize, most: f64| {
            v.len() == n && v.iter().all(|a| a.is_finite() && *a >= 0.0 && *a <= most)
        };
        let one_each = self.mode == LadderMode::Pooled || self.groups.iter().all(|g| g.chains == 1);
        r >= 2
            && one_each
            && self.log_z0.is_finite()
            && !self.groups.is_empty()
            && self
                .groups
                .iter()
                .all(|g| (1..=1 << 24).contains(&g.chains))
            && self.swap_attempts.len() == pairs
            && self
                .swap_attempts
                .iter()
                .all(|n| *n <= sampled.saturating_mul(c))
            && self.round_ends.windows(2).all(|w| w[0] < w[1])
            && self.groups.iter().all(|g| {
                let most = sampled as f64 * g.chains as f64;
                rising(&g.betas)
                    && g.round_lambda.len() == self.round_ends.len()
                    && g.round_betas.len() == self.round_ends.len()
                    && g.round_betas.iter().all(|b| rising(b))
                    && g.round_lambda.iter().all(|l| l.is_finite() && *l >= 0.0)
                    && sums(&g.swap_accept, pairs, most)
                    && sums(&g.acceptance, r, most)
                    && g.trips <= sampled.saturating_mul(r as u64 * g.chains as u64)
                    && g.ss.len() == g.chains * batches * pairs
                    && g.ss.iter().all(|v| !v.is_nan() && *v < f64::INFINITY)
                    && g.step_sizes.len() == g.chains * r
            })
    }
}
