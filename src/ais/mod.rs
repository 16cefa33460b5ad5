//! Annealed importance sampling: log Z with error bars, reverse AIS upper
//! bounds, annealed SMC, and log P(y|x).
//!
//! Forward AIS (Neal 2001) draws `x_0` from a normalised base `p0`, moves
//! it through `f_b(y) = p0(y)^(1-b) exp(-b beta F(y))` for
//! `0 = b_0 < ... < b_T = 1` with a kernel that leaves each `f_{b_k}`
//! invariant, and weights it by `log w = sum_k log f_{b_k}(x_{k-1}) - log f_{b_{k-1}}(x_{k-1})`.
//! `Z_hat = mean(w)` is unbiased for `Z`; `log Z_hat` is biased low
//! (Jensen): `E[log Z_hat] ~ log Z - stderr^2 / 2`, so with a reported
//! standard error of 0.1 expect about 0.005 nats of downward bias; with
//! weights whose ESS/N is tiny the bias can be far larger than the
//! standard error suggests, which is why a warning is raised when ESS/N < 0.1.
//!
//! RBMs annealed from a Bernoulli base take the parameter path of
//! Salakhutdinov & Murray (2008): weights and hidden biases scaled by `b`,
//! visible biases interpolated from the base's logits, with block Gibbs
//! transitions. Any other energy takes the geometric path with any kernel
//! of [`crate::kernels::KernelSpec`].
//!
//! The pieces, one file each: the geometric path's energy ([`Annealed`]),
//! the path trait (`path`: geometric and RBM parameter paths), weights and
//! resampling (`weights`), one pass (`pass`), the pilot and base choice
//! (`plan`: [`default_base`], [`pilot_base`]), the runs ([`ais`],
//! [`ais_with`], [`reverse_ais`]) and `log P(y|x)` ([`log_prob`]).
//!
//! Everything is in log space and in f64; particle `i` uses its own stream
//! `(seed, i)` and sums run in particle order, so the result is
//! bit-identical for any thread count.

mod annealed;
mod base;
mod config;
mod pass;
mod path;
mod plan;
mod prob;
mod reverse;
mod run;
mod saved;
mod schedule;
mod smc;
mod weights;

pub use annealed::Annealed;
pub(crate) use annealed::Parts;
pub use base::Base;
pub(crate) use base::{check_std, sample_rows};
pub use config::{AisConfig, AisResult, Estimate, ScheduleChoice};
pub(crate) use path::start_log_z;
pub(crate) use plan::evenly_spaced;
pub use plan::{Pilot, default_base, exact_draws, pilot, pilot_base, pilot_with};
pub use prob::{label_log_probs, log_prob, log_prob_paired, log_prob_unconditional};
pub use reverse::reverse_ais;
pub(crate) use run::warnings as estimate_warnings;
pub use run::{MAX_AIS_BYTES, ais, ais_with};
pub use schedule::{Schedule, respace};
pub use smc::SmcSummary;
pub(crate) use smc::mean_of_z;
pub(crate) use weights::{WeightSums, estimate, largest};

use crate::energy::{ConditionalEnergy, Conditioned, Energy};
use crate::error::{Error, Result};
use crate::kernels::KernelSpec;
use ndarray::{Array2, ArrayView2};
use std::sync::Arc;

/// Most particles (contexts x particles per context) annealed in one
/// batch: a conditional problem with more contexts runs them in batches of
/// whole contexts, one after another, so that a step of a batch stays short
/// (a stop request is seen within a step) and progress can count contexts.
/// Particle `i` of context `g` draws from stream `(seed, g * particles + i)`
/// whatever the batches.
pub const BATCH_PARTICLES: usize = 32_768;

/// A conditional model and all its contexts (shared by the batches).
type ModelContexts = (Arc<dyn ConditionalEnergy>, Arc<Array2<f64>>);

/// What the AIS driver anneals: the energy (unconditional, or conditioned
/// on each context repeated `particles` times) and its base.
pub struct AisProblem<'a> {
    energy: Arc<dyn Energy>,
    base: &'a Base,
    groups: usize,
    /// The model and every context of a conditional problem.
    cond: Option<ModelContexts>,
    /// Particles per context the problem was built for.
    particles: usize,
    /// Index of the problem's first context among all (batches).
    first_group: usize,
}

impl<'a> AisProblem<'a> {
    /// An unconditional energy annealed from `base` (an RBM from a
    /// Bernoulli base takes the parameter path).
    pub fn new(energy: Arc<dyn Energy>, base: &'a Base) -> Result<Self> {
        check_dim(energy.as_ref(), base)?;
        if energy.fixed_rows().is_some() {
            return Err(Error::param(
                "energy",
                "has per-row contexts: use AisProblem::conditional",
            ));
        }
        Ok(AisProblem {
            energy,
            base,
            groups: 1,
            cond: None,
            particles: 0,
            first_group: 0,
        })
    }

    /// A conditional energy with `contexts` (k x x_dim): one log Z(x) per
    /// context, all contexts' particles in one batch.
    pub fn conditional(
        model: Arc<dyn ConditionalEnergy>,
        contexts: ArrayView2<f64>,
        particles: usize,
        base: &'a Base,
    ) -> Result<Self> {
        let k = contexts.nrows();
        if k == 0 {
            return Err(Error::shape("contexts", "at least one row", "none"));
        }
        if particles == 0 {
            return Err(Error::param("particles", "must be >= 1"));
        }
        let all = Arc::new(contexts.to_owned());
        // The energy of the first batch (all contexts when they fit in one).
        let first = k.min(Self::contexts_per_batch(particles));
        let problem = Self::build(model, all, 0..first, particles, base)?;
        Ok(AisProblem {
            groups: k,
            ..problem
        })
    }

    /// Contexts per batch for `particles` per context.
    fn contexts_per_batch(particles: usize) -> usize {
        (BATCH_PARTICLES / particles.max(1)).max(1)
    }

    /// The batches of contexts a run anneals one after another (one batch
    /// for unconditional problems and for contexts that fit).
    pub(crate) fn batches(&self) -> Vec<std::ops::Range<usize>> {
        if self.cond.is_none() || self.first_group != 0 {
            return std::iter::once(0..self.groups).collect();
        }
        let per = Self::contexts_per_batch(self.particles);
        (0..self.groups.div_ceil(per))
            .map(|b| b * per..((b + 1) * per).min(self.groups))
            .collect()
    }

    /// The sub-problem of contexts `range` (a batch).
    pub(crate) fn batch(&self, range: std::ops::Range<usize>) -> Result<AisProblem<'a>> {
        let (model, all) = self.cond.clone().expect("batches of conditional problems");
        Self::build(model, all, range, self.particles, self.base)
    }

    /// The same problem with `particles` per context (the pilot runs
    /// fewer): a conditional energy's rows must match its contexts.
    pub(crate) fn with_particles(&self, particles: usize) -> Result<AisProblem<'a>> {
        match &self.cond {
            Some((model, all)) if particles != self.particles => Self::build(
                model.clone(),
                all.clone(),
                self.first_group..self.first_group + self.groups,
                particles,
                self.base,
            ),
            _ => Ok(AisProblem {
                energy: self.energy.clone(),
                base: self.base,
                groups: self.groups,
                cond: self.cond.clone(),
                particles: self.particles,
                first_group: self.first_group,
            }),
        }
    }

    fn build(
        model: Arc<dyn ConditionalEnergy>,
        all: Arc<Array2<f64>>,
        range: std::ops::Range<usize>,
        particles: usize,
        base: &'a Base,
    ) -> Result<AisProblem<'a>> {
        // The batch's context rows and its particles' state (about 8 arrays
        // of particles x y_dim, as `run`'s memory check counts) must fit
        // the budget before the rows are built.
        let per_row = all
            .ncols()
            .saturating_add(model.y_dim().max(1).saturating_mul(8));
        run::check_bytes(
            &format!(
                "{} contexts x {particles} particles (contexts and particle state)",
                range.len()
            ),
            crate::budget::bytes(&[range.len(), particles, per_row], 8),
        )?;
        let rows = Array2::from_shape_fn((range.len() * particles, all.ncols()), |(r, j)| {
            all[[range.start + r / particles, j]]
        });
        let energy: Arc<dyn Energy> = Arc::new(Conditioned::new(model.clone(), rows)?);
        check_dim(energy.as_ref(), base)?;
        Ok(AisProblem {
            energy,
            base,
            groups: range.len(),
            cond: Some((model, all)),
            particles,
            first_group: range.start,
        })
    }

    /// Number of contexts (1 for an unconditional problem).
    pub fn contexts(&self) -> usize {
        self.groups
    }
}

fn check_dim(energy: &dyn Energy, base: &Base) -> Result<()> {
    if energy.dim() != base.dim() {
        return Err(Error::shape(
            "AIS base",
            format!("dimension {}", energy.dim()),
            format!("{}", base.dim()),
        ));
    }
    Ok(())
}

impl AisConfig {
    /// The kernel this run uses on `energy`: the configured one, else the
    /// energy's default.
    pub fn kernel_spec(&self, energy: &dyn Energy) -> KernelSpec {
        self.kernel
            .clone()
            .unwrap_or_else(|| KernelSpec::for_energy(energy))
    }
}
