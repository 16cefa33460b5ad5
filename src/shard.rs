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

/// Format version of shard files (2: typed figures, no wall time; 3: the
/// acceptance summed exactly).
pub const SHARD_VERSION: u32 = 3;

/// What a log Z (or prob) shard hands the merge: the figures it computes
/// with, typed, and range-checked when read ([`read_shard`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogzFigures {
    /// `log Z` of the path's start (0, or the RBM parameter path's base).
    pub log_z0: f64,
    /// The shard's own estimate per context it covers (natural log): the
    /// run's where the shard ran whole contexts, an island's under SMC.
    pub log_z: Vec<f64>,
    /// Their standard errors.
    pub stderr: Vec<f64>,
    /// Their weights' effective sample sizes (NaN where not defined).
    pub ess: Vec<f64>,
    /// Mean acceptance of the shard's transitions, in [0, 1].
    pub acceptance: f64,
    /// The same, summed exactly: the merge adds the shards' tallies, so
    /// the merged rate is the one-process run's bit for bit.
    pub accepted: crate::tally::Acceptance,
    /// Divergent transitions.
    pub divergences: u64,
    /// Energy evaluations (rows), all passes.
    pub energy_evals: u64,
    /// Of those, the evaluations of pilots that every shard runs whole
    /// (a split of particles); the merge counts them once.
    pub shared_evals: u64,
    /// The exact log Z where known (one context), for the merged check.
    pub exact_log_z: Option<f64>,
    /// Whether the model is conditional (per-context arrays in reports).
    pub conditional: bool,
    /// The shard's warnings (the pilot's coverage check: the same in
    /// every shard).
    pub warnings: Vec<crate::Warning>,
    /// prob shards: the shape of `-beta F(x, y)` that follows the
    /// log-weights, (contexts, points) or (points,), and whether each
    /// point had its own context.
    pub prob: Option<ProbPoints>,
}

impl LogzFigures {
    /// How many values of `-beta F(x, y)` follow the log-weights (0 for a
    /// log Z shard; `None` when the shape's product overflows).
    pub fn points(&self) -> Option<usize> {
        match &self.prob {
            Some(p) => p.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)),
            None => Some(0),
        }
    }
}

/// The points of a prob shard.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbPoints {
    /// (contexts, points), or (points,) when paired or unconditional.
    pub shape: Vec<usize>,
    /// Whether point `i` is scored under context `i` alone.
    pub paired: bool,
}

/// What a sample shard hands the merge, typed and range-checked.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleFigures {
    /// Mean acceptance of each of the shard's chains, in [0, 1].
    pub acceptance_per_chain: Vec<f64>,
    /// Divergent transitions of each chain after warm-up.
    pub divergences_per_chain: Vec<u64>,
    /// Divergent transitions in warm-up, all the shard's chains.
    pub warmup_divergences: u64,
    /// Energy evaluations (rows), warm-up included.
    pub energy_evals: u64,
    /// Gradient evaluations (`None` for kernels without gradients).
    pub grad_evals: Option<u64>,
    /// The shard's own warnings (the merge works R-hat's, ESS's and
    /// tempering's out again over all chains).
    pub warnings: Vec<crate::Warning>,
    /// Whether each chain of the run has its own context (the merge then
    /// gives no R-hat or ESS warning across chains, as the run does not).
    pub per_chain_context: bool,
    /// Parallel tempering: the shard's chains' ladders, swaps and
    /// stepping-stone sums (absent for other samplers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pt: Option<crate::tally::LadderTally>,
}

/// The figures of a shard, by kind.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardFigures {
    /// A log Z or prob shard.
    Logz(LogzFigures),
    /// A sample shard.
    Sample(SampleFigures),
}

/// The header of a shard file (the bulk values follow it).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardHeader {
    /// [`SHARD_VERSION`].
    pub version: u32,
    /// Every setting of the run but the shard (a merge requires them equal).
    pub settings: String,
    /// Which shard.
    pub shard: Shard,
    /// Particles per context (logz) or chains (sample) of the whole run.
    pub total: usize,
    /// Contexts (logz; 1 for an unconditional model).
    pub contexts: usize,
    /// Recorded draws per chain (sample; 0 for logz).
    pub draws: usize,
    /// Dimension (sample; 0 for logz).
    pub dim: usize,
    /// Whether energies follow the draws (sample).
    pub energies: bool,
    /// Whether the run resampled (annealed SMC): then shards of particles
    /// merge as independent islands.
    pub smc: bool,
    /// logz: the contexts this shard covers when the run was split into
    /// whole batches of contexts (its log-weights are those contexts', all
    /// particles); `None` when every context's particles were split.
    pub context_range: Option<(usize, usize)>,
    /// The figures the merge computes with.
    pub figures: ShardFigures,
    /// The rest of the shard's own report (an object; its wall time left
    /// out so that a rerun shard is byte-identical), the base of the
    /// merged report. The merge computes nothing from it.
    pub report: serde_json::Value,
}

impl ShardHeader {
    /// `logz` or `sample`.
    pub fn kind(&self) -> &'static str {
        match self.figures {
            ShardFigures::Logz(_) => "logz",
            ShardFigures::Sample(_) => "sample",
        }
    }

    /// The contexts this shard's log-weights are for: its context range,
    /// else all.
    pub fn own_contexts(&self) -> usize {
        self.context_range.map_or(self.contexts, |(lo, hi)| hi - lo)
    }

    /// How many f64 values follow the header, from its sizes (`None` on
    /// overflow).
    pub fn data_len(&self) -> Option<usize> {
        match &self.figures {
            ShardFigures::Sample(_) => {
                let m = self.shard.range(self.total).len();
                let per = self.draws.checked_mul(self.dim)?;
                let e = if self.energies { self.draws } else { 0 };
                m.checked_mul(per.checked_add(e)?)
            }
            ShardFigures::Logz(f) => {
                let particles = if self.context_range.is_some() {
                    self.total
                } else {
                    self.shard.range(self.total).len()
                };
                let w = self.own_contexts().checked_mul(particles)?;
                w.checked_add(f.points()?)
            }
        }
    }

    /// The bytes a merge of the whole run holds beyond one shard file's
    /// values, `None` on overflow: the merged draws and the shards' (a
    /// sample merge), or a few numbers per context and the points' values
    /// (a log Z merge, which streams the log-weights).
    pub fn merge_bytes(&self) -> Option<usize> {
        match &self.figures {
            ShardFigures::Sample(_) => {
                let e = if self.energies { 1 } else { 0 };
                crate::budget::bytes(&[self.total, self.draws, self.dim.checked_add(e)?], 8)?
                    .checked_mul(2)
            }
            // Per context: its estimate (4 numbers), running sums (4), largest log-weight.
            ShardFigures::Logz(f) => crate::budget::bytes(&[self.contexts, 9], 8)?
                .checked_add(crate::budget::bytes(&[f.points()?], 8 * 3)?),
        }
    }

    /// Range checks of every field against the others, before anything is
    /// allocated from them; `what` says what is wrong.
    fn check(&self) -> std::result::Result<(), String> {
        self.shard.check().map_err(|e| e.to_string())?;
        if self.total == 0 || self.contexts == 0 {
            return Err("its run has no particles, chains or contexts".into());
        }
        let split = if self.context_range.is_some() {
            self.contexts
        } else {
            self.total
        };
        if self.shard.count > split {
            return Err(format!(
                "{} shards of {split}: some would be empty",
                self.shard.count
            ));
        }
        if !self.report.is_object() {
            return Err("its report is not an object".into());
        }
        let finite = |name: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} {v} is not finite"))
            }
        };
        let fraction = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} {v} is not in [0, 1]"))
            }
        };
        match &self.figures {
            ShardFigures::Sample(f) => {
                let m = self.shard.range(self.total).len();
                if self.contexts != 1 || self.smc || self.context_range.is_some() {
                    return Err("a sample shard with logz fields".into());
                }
                if self.draws == 0 || self.dim == 0 {
                    return Err("no draws or no dimensions".into());
                }
                if f.acceptance_per_chain.len() != m || f.divergences_per_chain.len() != m {
                    return Err(format!("per-chain figures for other than its {m} chains"));
                }
                for &a in &f.acceptance_per_chain {
                    fraction("acceptance", a)?;
                }
                if let Some(t) = &f.pt
                    && (t.groups.len() != m || !t.fits())
                {
                    return Err("a tempering tally out of range for its chains".into());
                }
            }
            ShardFigures::Logz(f) => {
                if self.draws != 0 || self.dim != 0 || self.energies {
                    return Err("a logz shard with sample fields".into());
                }
                if let Some((lo, hi)) = self.context_range
                    && !(lo < hi && hi <= self.contexts)
                {
                    return Err(format!("context range {lo}..{hi} of {}", self.contexts));
                }
                let k = self.own_contexts();
                if f.log_z.len() != k || f.stderr.len() != k || f.ess.len() != k {
                    return Err(format!("estimates for other than its {k} contexts"));
                }
                finite("log_z0", f.log_z0)?;
                fraction("acceptance", f.acceptance)?;
                if !f.accepted.is_valid() || f.accepted.rate() != f.acceptance {
                    return Err("an acceptance tally that is not its acceptance".into());
                }
                if let Some(e) = f.exact_log_z {
                    finite("exact log Z", e)?;
                }
                for g in 0..k {
                    finite("log Z", f.log_z[g])?;
                    if !(f.stderr[g] >= 0.0 && f.stderr[g].is_finite()) {
                        return Err(format!(
                            "standard error {} is not finite and >= 0",
                            f.stderr[g]
                        ));
                    }
                    if !(f.ess[g].is_nan()
                        || (0.0..=self.total as f64 * (1.0 + 1e-9)).contains(&f.ess[g]))
                    {
                        return Err(format!("ESS {} is not in [0, {}]", f.ess[g], self.total));
                    }
                }
                if let Some(p) = &f.prob {
                    let ok = match (p.shape.as_slice(), p.paired) {
                        ([c, _], false) => *c == self.contexts,
                        ([n], true) => *n == self.contexts,
                        ([_], false) => self.contexts == 1,
                        _ => false,
                    };
                    if !ok || p.shape.contains(&0) {
                        return Err(format!(
                            "prob shape {:?} does not fit {} contexts",
                            p.shape, self.contexts
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes a shard file's bytes (for a transaction of outputs).
pub fn shard_bytes(path: &std::path::Path, header: &ShardHeader, data: &[f64]) -> Result<Vec<u8>> {
    crate::io::checkpoint::checkpoint_bytes(path, "shard", &header.settings, header, data)
}

/// Reads a shard file: its header and bulk values. Shard files are
/// untrusted input: every header field is range-checked against the
/// others, the values' count against the header's sizes, the values
/// themselves (no NaN, no `+inf` log-weight; finite draws), and the
/// memory a merge would hold against the budget ([`crate::budget`]).
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
    if stored != h.settings {
        return Err(Error::checkpoint(
            path,
            "its header is inconsistent (corrupt?)",
        ));
    }
    h.check()
        .map_err(|why| Error::checkpoint(path, format!("its header is out of range: {why}")))?;
    crate::budget::check("merge", "the merged run", h.merge_bytes())
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    if h.data_len() != Some(data.len()) {
        return Err(Error::checkpoint(
            path,
            "its values do not match its header's sizes",
        ));
    }
    let bad = match &h.figures {
        ShardFigures::Logz(_) => data.iter().position(|v| v.is_nan() || *v == f64::INFINITY),
        ShardFigures::Sample(_) => data.iter().position(|v| !v.is_finite()),
    };
    if let Some(i) = bad {
        return Err(Error::checkpoint(
            path,
            format!("value {i} is {} (forged or corrupt?)", data[i]),
        ));
    }
    Ok((h, data))
}
