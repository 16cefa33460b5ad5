//! Settings and results of AIS runs.

use super::Schedule;
use crate::error::{Error, Result};
use crate::kernels::KernelSpec;
use ndarray::Array2;

/// How temperatures are chosen.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ScheduleChoice {
    /// A fixed schedule of `temps` steps.
    Fixed(Schedule),
    /// Chosen by a pilot run so that each step keeps the conditional ESS of
    /// the incremental weights at `cess` (e.g. 0.995), then respaced to
    /// `temps` steps and frozen for the estimating run (which therefore
    /// stays unbiased in Z).
    Adaptive {
        /// Target conditional ESS per step, in (0, 1).
        cess: f64,
    },
    /// Annealed SMC with resample-move (Del Moral, Doucet & Jasra 2006):
    /// no pilot; the estimating particles choose each temperature so that
    /// its conditional ESS is `cess`, a context is resampled (systematic)
    /// when its ESS/N falls below [`AisConfig::resample_threshold`]
    /// (default 0.5), and each temperature runs
    /// [`AisConfig::steps_per_temp`] moves of the kernel, whose step is
    /// re-tuned after every move from the particles' acceptance (unless
    /// [`AisConfig::step_size`] fixes it) and whose diagonal inverse mass
    /// is the particles' variance. [`AisConfig::temps`] caps the number of
    /// temperatures (the last then jumps to 1, with a warning). The
    /// standard error is the Lee & Whiteley (2018) genealogy estimate.
    /// `Z_hat` is the usual SMC product of the stages' mean weights; since
    /// the schedule and steps adapt to the particles it is consistent, not
    /// exactly unbiased (a schedule frozen by a pilot, [`Self::Adaptive`]
    /// with a resample threshold, is exactly unbiased).
    Smc {
        /// Target conditional ESS per step, in (0, 1).
        cess: f64,
    },
}

/// Settings of an AIS run. [`AisConfig::new`] gives boltz's defaults.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AisConfig {
    /// Particles per context (>= 1).
    pub particles: usize,
    /// Annealing steps T (>= 1).
    pub temps: usize,
    /// The temperature schedule.
    pub schedule: ScheduleChoice,
    /// The transition kernel; `None` = the default for the energy
    /// ([`KernelSpec::for_energy`]: Gibbs for binary states, else MALA).
    /// RBMs annealed from a Bernoulli base take the parameter path, which
    /// moves by block Gibbs.
    pub kernel: Option<KernelSpec>,
    /// Transitions per temperature (>= 1).
    pub steps_per_temp: usize,
    /// A fixed step size; `None` = one per temperature, tuned by a pilot
    /// run towards the kernel's usual acceptance and then frozen.
    pub step_size: Option<f64>,
    /// Inverse temperature of the target `exp(-beta F)` (> 0).
    pub beta: f64,
    /// The run's seed.
    pub seed: u64,
    /// Resample (annealed SMC) when a context's ESS/N falls below this;
    /// `None` = plain AIS ([`ScheduleChoice::Smc`]: 0.5).
    pub resample_threshold: Option<f64>,
    /// [`ScheduleChoice::Smc`]: independent islands the particles are split
    /// into (see [`crate::ais`]'s SMC); 1 for AIS.
    #[serde(default = "one")]
    pub islands: usize,
    /// Independent repeats, each reported separately (0 = none beyond the main run).
    pub repeats: usize,
    /// Bootstrap resamples of the weights for a second standard error (0 = none).
    pub bootstrap: usize,
    /// Particles of the pilot run (tuning steps and adaptive temperatures).
    pub pilot_particles: usize,
    /// Run only this shard of the run, with the streams its particles have
    /// in the whole run. A conditional run with at least as many batches of
    /// contexts ([`crate::ais::BATCH_PARTICLES`]) as shards splits its
    /// batches (each batch has its own pilot, so whole batches reproduce
    /// the one-process run and no pilot is repeated): the result then
    /// covers [`AisResult::context_range`]. Otherwise every context's
    /// particles are split ([`crate::shard::Shard::range`] of
    /// `particles`) and every shard runs the pilot whole; the estimates are
    /// the shard's, and a merge of all shards' log-weights gives the whole
    /// run's.
    #[serde(default)]
    pub shard: Option<crate::shard::Shard>,
}

impl AisConfig {
    /// boltz's defaults: 1024 particles, 1000 temperatures on a sigmoid
    /// schedule, one step per temperature of the energy's default kernel (MALA;
    /// Gibbs for binary states) with pilot-tuned step sizes.
    pub fn new() -> Self {
        AisConfig {
            particles: 1024,
            temps: 1000,
            schedule: ScheduleChoice::Fixed(Schedule::Sigmoid),
            kernel: None,
            steps_per_temp: 1,
            step_size: None,
            beta: 1.0,
            seed: 0,
            resample_threshold: None,
            islands: 1,
            repeats: 0,
            bootstrap: 0,
            pilot_particles: 256,
            shard: None,
        }
    }

    /// Particles per context this run anneals: all, or its shard's.
    pub fn run_particles(&self) -> usize {
        self.shard
            .map_or(self.particles, |s| s.range(self.particles).len())
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = &self.shard {
            s.check()?;
            if self.repeats > 0 || self.bootstrap > 0 {
                return Err(Error::param(
                    "shard",
                    "repeats and the bootstrap need every particle: run them on the merged weights, not in shards",
                ));
            }
        }
        if self.particles == 0 {
            return Err(Error::param("particles", "must be >= 1"));
        }
        if self.temps == 0 {
            return Err(Error::param("temps", "must be >= 1"));
        }
        if self.steps_per_temp == 0 {
            return Err(Error::param("steps per temperature", "must be >= 1"));
        }
        if self.pilot_particles == 0 {
            return Err(Error::param("pilot particles", "must be >= 1"));
        }
        // Counts whose memory or single step is out of proportion.
        crate::budget::at_most(
            "temps",
            self.temps,
            10_000_000,
            "the schedule is computed in one piece before the first temperature",
        )?;
        crate::budget::check(
            "temps",
            &format!("{} temperatures (schedule, steps, tallies)", self.temps),
            self.temps
                .checked_add(1)
                .and_then(|t| crate::budget::bytes(&[t], 8 * 4)),
        )?;
        crate::budget::at_most(
            "steps per temperature",
            self.steps_per_temp,
            10_000,
            "one temperature runs all its steps before a stop request is seen",
        )?;
        crate::budget::at_most(
            "bootstrap",
            self.bootstrap,
            100_000,
            "resamples beyond that do not change the standard error",
        )?;
        crate::budget::at_most(
            "repeats",
            self.repeats,
            10_000,
            "more repeats than that are a typo; run in shards",
        )?;
        crate::error::check_beta("beta", self.beta)?;
        if let Some(s) = self.step_size {
            crate::error::check_positive("step size", s)?;
        }
        if let Some(r) = self.resample_threshold
            && !(r > 0.0 && r <= 1.0)
        {
            return Err(Error::param(
                "resample threshold",
                format!("must be in (0, 1], got {r}"),
            ));
        }
        if let ScheduleChoice::Adaptive { cess } | ScheduleChoice::Smc { cess } = self.schedule
            && !(cess > 0.0 && cess < 1.0)
        {
            return Err(Error::param(
                "cess",
                format!("must be in (0, 1), got {cess}"),
            ));
        }
        if let Some(k) = &self.kernel {
            k.build()?;
        }
        if self.islands == 0 || self.islands > self.particles {
            return Err(Error::param(
                "islands",
                format!(
                    "must be between 1 and the particles ({}), got {}",
                    self.particles, self.islands
                ),
            ));
        }
        if !self.is_smc() && self.islands != 1 {
            return Err(Error::param(
                "islands",
                "split SMC's particles (schedule smc); AIS has none",
            ));
        }
        if self.is_smc() && self.repeats > 0 {
            return Err(Error::param(
                "repeats",
                "SMC's islands are independent estimates already (islands)",
            ));
        }
        if self.is_smc() && self.bootstrap > 0 {
            return Err(Error::param(
                "bootstrap",
                "resamples AIS weights; SMC's error bar is the Lee & Whiteley genealogy estimate (run repeats for independent estimates)",
            ));
        }
        Ok(())
    }

    /// Whether this is annealed SMC with resample-move ([`ScheduleChoice::Smc`]).
    pub fn is_smc(&self) -> bool {
        matches!(self.schedule, ScheduleChoice::Smc { .. })
    }
}

fn one() -> usize {
    1
}

impl Default for AisConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// One log Z estimate with its error bar.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// `log Z_hat` (natural log).
    pub log_z: f64,
    /// Standard error of `log Z_hat` by the delta method on the normalised
    /// weights, `sqrt(1/ESS - 1/N)` (summed in quadrature over resampling stages).
    pub stderr: f64,
    /// Effective sample size of the final weights, `(sum w)^2 / sum w^2`.
    pub ess: f64,
    /// Particles.
    pub n: usize,
}

/// What an AIS run returns.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AisResult {
    /// One estimate per context (one in total for an unconditional model).
    pub estimates: Vec<Estimate>,
    /// Bootstrap standard errors per context, if asked for.
    pub bootstrap_stderr: Option<Vec<f64>>,
    /// Estimates of the independent repeats (repeat r, then context).
    pub repeats: Vec<Vec<Estimate>>,
    /// Final log-weights, (contexts, particles).
    #[serde(skip)]
    pub log_weights: Array2<f64>,
    /// The final particles of the run's pilot pass (the one that tunes
    /// steps or chooses temperatures; it runs whole in every shard) for an
    /// unconditional problem, approximate draws of the target: positions
    /// (n, dim) and log-weights. `None` for conditional problems and runs
    /// with no pilot pass (fixed step and fixed schedule).
    #[serde(skip)]
    pub positions: Option<(Array2<f64>, Vec<f64>)>,
    /// The inverse temperatures used.
    #[serde(skip)]
    pub betas: Vec<f64>,
    /// The step size used at each temperature (empty for Gibbs).
    #[serde(skip)]
    pub step_sizes: Vec<f64>,
    /// Mean acceptance over temperatures and particles (`accepted.rate()`).
    pub acceptance: f64,
    /// The acceptance summed exactly (see [`crate::tally::Acceptance`]), so that a run
    /// split into shards or batches reports the one-process rate bit for bit.
    pub accepted: crate::tally::Acceptance,
    /// Divergences (non-finite proposals) over the run.
    pub divergences: usize,
    /// Resampling events (annealed SMC).
    pub resamplings: usize,
    /// SMC's figures ([`ScheduleChoice::Smc`]; `None` otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smc: Option<super::SmcSummary>,
    /// Evaluations of the target, all particles: energies (with or without
    /// gradient) for the geometric path; hidden activations and Gibbs
    /// sweeps for the RBM path.
    pub energy_evals: u64,
    /// Of `energy_evals`, those of pilots a shard of particles runs whole,
    /// as every other shard does (0 for whole runs and shards of batches):
    /// a merge counts them once, as the one-process run does.
    pub shared_evals: u64,
    /// Wall-clock seconds (pilot and repeats included).
    pub wall_s: f64,
    /// Warnings about the estimate's reliability (small ESS, non-finite weights).
    pub warnings: Vec<crate::Warning>,
    /// False when the run was stopped early: the estimates are then those
    /// of the temperature reached, not of the target, except for the first
    /// `contexts_done` contexts.
    pub complete: bool,
    /// Contexts whose estimates are final: all of them when `complete`;
    /// for a stopped run in batches of contexts, those of the batches
    /// finished before the stop.
    pub contexts_done: usize,
    /// A shard that ran whole batches of contexts (see
    /// [`AisConfig::shard`]): the range of contexts it covers; its
    /// estimates and log-weights are those contexts', in order. `None` for
    /// whole runs and shards of particles.
    #[serde(skip)]
    pub context_range: Option<std::ops::Range<usize>>,
}
