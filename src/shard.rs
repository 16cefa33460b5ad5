//! Shards: one run split into `M` pieces whose merge is exact.
//!
//! A run's randomness is keyed by `(seed, global particle or chain index)`,
//! so shard `I` of `M` runs the particles (AIS: of every context) or chains
//! `[I N / M, (I + 1) N / M)` with the same streams they have in the
//! one-process run. Each shard writes its log-weights or draws with the
//! run's settings to a shard file (boltz's checkpoint container: versioned,
//! checksummed); [`crate::jobs::merge()`] checks that the files are the `M`
//! shards of one run and computes what the one-process run reports, bit
//! for bit.

use crate::error::{Error, Result};

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// Which shard, `0 <= index < count`.
    pub index: usize,
    /// How many shards the run is split into (>= 1).
    pub count: usize,
}

impl Shard {
    /// Parses `I/M` (0-based `I`).
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || Error::param("shard", format!("expected I/M with 0 <= I < M, got `{s}`"));
        let (i, m) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            m.trim().parse::<usize>().map_err(|_| bad())?,
        );
        let shard = Shard { index, count };
        shard.check()?;
        Ok(shard)
    }

    /// Checks `index < count`, `count >= 1`.
    pub fn check(&self) -> Result<()> {
        if self.count == 0 || self.index >= self.count {
            return Err(Error::param(
                "shard",
                format!("shard {}/{}: need 0 <= I < M", self.index, self.count),
            ));
        }
        Ok(())
    }

    /// The indices of `n` this shard runs: `[I n / M, (I + 1) n / M)`.
    /// Every shard gets at least one when `n >= M` (checked by the runs).
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        let lo = (self.index as u128 * n as u128 / self.count as u128) as usize;
        let hi = ((self.index as u128 + 1) * n as u128 / self.count as u128) as usize;
        lo..hi
    }

    /// Checks that `n` items split into `count` non-empty shards.
    pub fn check_items(&self, n: usize, what: &str) -> Result<()> {
        if self.count > n {
            return Err(Error::param(
                "shard",
                format!(
                    "{} shards of {n} {what}: some shards would be empty",
                    self.count
                ),
            ));
        }
        Ok(())
    }
}

/// Format version of shard files.
pub const SHARD_VERSION: u32 = 1;

/// The header of a shard file (the bulk values follow it).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardHeader {
    /// [`SHARD_VERSION`].
    pub version: u32,
    /// `logz` or `sample`.
    pub kind: String,
    /// Every setting of the run but the shard (a merge requires them equal).
    pub settings: String,
    /// Which shard.
    pub shard: Shard,
    /// Particles per context (logz) or chains (sample) of the whole run.
    pub total: usize,
    /// Contexts (logz; 1 for an unconditional model).
    pub contexts: usize,
    /// Recorded draws per chain and dimension (sample).
    #[serde(default)]
    pub draws: usize,
    /// Dimension (sample).
    #[serde(default)]
    pub dim: usize,
    /// Whether energies follow the draws (sample).
    #[serde(default)]
    pub energies: bool,
    /// Whether the run resampled (annealed SMC): then shards of particles
    /// merge as independent islands.
    #[serde(default)]
    pub smc: bool,
    /// logz: the contexts this shard covers when the run was split into
    /// whole batches of contexts (its log-weights are those contexts', all
    /// particles); `None` when every context's particles were split.
    #[serde(default)]
    pub context_range: Option<(usize, usize)>,
    /// The report of the shard's own run (figures the merge sums or
    /// checks: evaluations, acceptance, the exact log Z, ...).
    pub report: serde_json::Value,
}

/// Writes a shard file's bytes (for a transaction of outputs).
pub fn shard_bytes(path: &std::path::Path, header: &ShardHeader, data: &[f64]) -> Result<Vec<u8>> {
    crate::io::checkpoint::checkpoint_bytes(path, "shard", &header.settings, header, data)
}

/// Reads a shard file: its header and bulk values.
pub fn read_shard(path: &std::path::Path) -> Result<(ShardHeader, Vec<f64>)> {
    let (h, data, stored): (ShardHeader, Vec<f64>, String) =
        crate::io::checkpoint::read_checkpoint_as(path, "shard", None)?;
    if h.version != SHARD_VERSION {
        return Err(Error::checkpoint(
            path,
            format!(
                "shard format version {} (this boltz reads {SHARD_VERSION})",
                h.version
            ),
        ));
    }
    if stored != h.settings || h.shard.check().is_err() {
        return Err(Error::checkpoint(
            path,
            "its header is inconsistent (corrupt?)",
        ));
    }
    Ok((h, data))
}
