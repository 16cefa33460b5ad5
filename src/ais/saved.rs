//! The checkpoint of an AIS or SMC pass: what it saves, the batches and
//! islands finished before it, and the checkpoint written before a pass's
//! first temperature.

use super::pass::{KIND, Plan, Tally, start};
use super::{AisConfig, AisProblem};
use crate::error::Result;
use crate::io::read_checkpoint;
use crate::rng::RngState;
use crate::run::{Control, Steps};

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Saved {
    pub(super) tally: Tally,
    pub(super) rngs: Vec<RngState>,
    pub(super) resample_rng: RngState,
    /// Batches of contexts finished before this pass (runs in batches).
    #[serde(default)]
    pub(super) earlier: Option<Earlier>,
    /// Whether the path's cache was valid at the checkpoint.
    #[serde(default)]
    pub(super) path_fresh: bool,
    /// SMC: each particle's ancestor at the base (index in its context).
    #[serde(default)]
    pub(super) eves: Vec<u32>,
    /// SMC: the islands finished before this pass's.
    #[serde(default)]
    pub(super) islands: Vec<super::smc::Island>,
}

/// The SMC islands finished before the pass saved in the checkpoint at `path`.
pub(crate) fn checkpoint_islands(
    path: &std::path::Path,
    control: &Control,
) -> Result<Vec<super::smc::Island>> {
    let (saved, _): (Saved, Vec<f64>) = read_checkpoint(path, KIND, &control.settings)?;
    Ok(saved.islands)
}

/// What the batches of contexts finished before the current one produced:
/// kept in the current batch's checkpoints so that a resumed run skips them.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Earlier {
    /// The finished batches' results merged (log weights in `log_weights`).
    pub result: super::run::Merged,
    /// Their log-weights, (contexts done, particles) row-major.
    #[serde(skip)]
    pub log_weights: Vec<f64>,
}

/// The finished batches recorded in the checkpoint at `path` (`None` for
/// a checkpoint of a single-batch run).
pub(crate) fn checkpoint_earlier(
    path: &std::path::Path,
    control: &Control,
) -> Result<Option<Earlier>> {
    let (saved, data): (Saved, Vec<f64>) = read_checkpoint(path, KIND, &control.settings)?;
    Ok(saved.earlier.map(|mut e| {
        let own = data
            .len()
            .saturating_sub(e.result.contexts_done * e.result.particles);
        e.log_weights = data[own..].to_vec();
        e
    }))
}

/// Writes the checkpoint of the estimating pass of `problem` before its
/// first temperature (a run in batches stopped between two batches, or in
/// a batch's pilot, after `earlier` batches finished).
pub(crate) fn save_fresh(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    control: &Control,
    earlier: Option<&Earlier>,
) -> Result<()> {
    // SMC's first island (its pilot's temperatures are not known yet: a
    // resume checks only the first, 0).
    let smc = config.is_smc().then(|| Plan::Smc {
        first: 0,
        done: vec![],
        frozen: Some((vec![0.0], vec![])),
    });
    let particles = match smc {
        Some(_) => crate::shard::Shard {
            index: 0,
            count: config.islands,
        }
        .range(config.particles)
        .len(),
        None => config.particles,
    };
    let plan = smc.unwrap_or(Plan::Frozen {
        betas: vec![0.0],
        steps: vec![],
    });
    let sub = problem.with_particles(particles)?;
    let p = start(&sub, config, particles, config.seed, plan, None, earlier)?;
    p.save(control)
}
