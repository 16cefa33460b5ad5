//! The negatives job: one call of a [`NegativeSampler`] with the kernel,
//! method and checks the CLI's `negatives` uses.

use crate::energy::Scaled;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::kernels::{Kernel, KernelSettings, KernelSpec};
use crate::negatives::{Method, NegativeBatch, NegativeSampler, NegativeStats, ReplayPolicy};
use crate::run::Control;
use crate::{Energy, StateSpace};
use ndarray::ArrayView2;

/// The settings of negative sampling, with the CLI's defaults ([`NegativesJob::default`]).
/// As JSON ([`super::from_json`]) missing fields take the defaults and
/// unknown ones are refused; the kernel's settings are the fields of
/// [`KernelSettings`], flattened in.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NegativesJob {
    /// `short-run` (default; with `buffer` > 0 a replay buffer), `cd` or `pcd`.
    pub method: String,
    /// Kernel (default: `gibbs` for binary models, else `ula`), or `pt`:
    /// persistent parallel tempering (with `method` `pcd`), whose replicas
    /// move by `local_kernel`.
    pub kernel: Option<String>,
    /// `pt`: replicas per chain (default 8).
    pub replicas: usize,
    /// `pt`: the replicas' local move (default: `gibbs` for binary models, else `mala`).
    pub local_kernel: Option<String>,
    /// `pt`: the reference is N(0, S^2 I) with this S (default: the
    /// standard deviation of a `gaussian:STD` init); binary models: fair coins.
    pub base_scale: Option<f64>,
    /// Transitions per call (default 100).
    pub steps: usize,
    /// The kernel's settings (of the local move for `pt`). The step is
    /// fixed: `step_size` (default [`NegativesJob::DEFAULT_STEP`]).
    #[serde(flatten)]
    pub kernel_settings: KernelSettings,
    /// Replay buffer capacity (0: none).
    pub buffer: usize,
    /// Fraction of chains started from fresh noise with a buffer (default 0.05).
    pub reinit: f64,
    /// `append` (default) or `write-back`.
    pub buffer_policy: String,
    /// Inverse temperature: the chains target `exp(-beta F)` (default 1).
    pub beta: f64,
    /// Seed of every chain's stream.
    pub seed: u64,
    /// Where fresh chains start (default N(0, 1)).
    pub init: Init,
    /// Whether a call evaluates the energies of its negatives and of the
    /// positives for the report (default true); false saves those
    /// evaluations (K ULA moves cost exactly K gradients), leaving the
    /// report's energies out ([`NegativeSampler::set_end_energies`]).
    pub end_energies: bool,
    /// Adapt the step across calls towards the kernel's target acceptance
    /// ([`NegativeSampler::adapt_step`]; Metropolis kernels only, starting
    /// from `step_size`, the adapted step kept in the state). Default false:
    /// the step is fixed, as in IGEBM or JEM.
    pub adapt_step: bool,
}

impl Default for NegativesJob {
    fn default() -> Self {
        NegativesJob {
            method: "short-run".into(),
            kernel: None,
            steps: 100,
            kernel_settings: KernelSettings::default(),
            buffer: 0,
            reinit: 0.05,
            buffer_policy: "append".into(),
            beta: 1.0,
            seed: 0,
            init: Init::Gaussian { std: 1.0 },
            replicas: 8,
            local_kernel: None,
            base_scale: None,
            end_energies: true,
            adapt_step: false,
        }
    }
}

impl NegativesJob {
    /// The fixed step size when none is set.
    pub const DEFAULT_STEP: f64 = 0.01;

    /// The step size the chains move with.
    pub fn step_size(&self) -> f64 {
        self.kernel_settings.step_size.unwrap_or(Self::DEFAULT_STEP)
    }

    /// The method the settings name (errors name the CLI flag).
    pub fn method(&self) -> Result<Method> {
        if self.steps == 0 {
            return Err(Error::param(
                "steps",
                "must be >= 1 (a call with no transitions returns its starting points)",
            ));
        }
        if !(0.0..=1.0).contains(&self.reinit) {
            return Err(Error::param(
                "reinit",
                format!("must be in [0, 1], got {}", self.reinit),
            ));
        }
        if self.kernel.as_deref() == Some("pt") {
            return match (self.method.as_str(), self.buffer) {
                ("pcd", 0) => Ok(Method::Tempered {
                    replicas: self.replicas,
                }),
                _ => Err(Error::param(
                    "kernel",
                    "pt negatives are persistent: use `method pcd` (no buffer) with `kernel pt`",
                )),
            };
        }
        Ok(match (self.method.as_str(), self.buffer) {
            ("short-run", 0) => Method::ShortRun,
            ("short-run", capacity) => Method::Replay {
                capacity,
                reinit: self.reinit,
                policy: match self.buffer_policy.as_str() {
                    "append" => ReplayPolicy::Append,
                    "write-back" => ReplayPolicy::WriteBack,
                    other => {
                        return Err(Error::param(
                            "buffer_policy",
                            format!("unknown policy `{other}` (append, write-back)"),
                        ));
                    }
                },
            },
            ("cd", 0) => Method::Cd,
            ("pcd", 0) => Method::Pcd,
            ("cd" | "pcd", _) => {
                return Err(Error::param(
                    "buffer",
                    "a replay buffer goes with `method short-run`",
                ));
            }
            (other, _) => {
                return Err(Error::param(
                    "method",
                    format!("unknown method `{other}` (short-run, cd, pcd)"),
                ));
            }
        })
    }

    /// The kernel for `energy` at the job's beta, and its name (for `pt`,
    /// the local move, named `pt(NAME)`).
    pub fn kernel(&self, energy: &dyn Energy) -> Result<(Box<dyn Kernel>, String)> {
        let (kernel, spec) = self.kernel_and_spec(energy)?;
        let name = if self.kernel.as_deref() == Some("pt") {
            format!("pt({})", spec.name())
        } else {
            spec.name().to_string()
        };
        Ok((kernel, name))
    }

    fn kernel_and_spec(&self, energy: &dyn Energy) -> Result<(Box<dyn Kernel>, KernelSpec)> {
        let binary = energy.space() == StateSpace::Binary;
        if self.kernel.is_none() && self.local_kernel.is_some() {
            return Err(Error::param("local_kernel", "is for `kernel pt`"));
        }
        let mut spec = match (self.kernel.as_deref(), self.local_kernel.as_deref()) {
            (Some("pt"), Some("pt")) => {
                return Err(Error::param(
                    "local_kernel",
                    "the local move is a kernel (mala, hmc, ...), not pt",
                ));
            }
            (Some("pt"), Some(name)) => KernelSpec::new(name)?,
            (Some("pt"), None) if binary => KernelSpec::new("gibbs")?,
            (Some("pt"), None) => KernelSpec::new("mala")?,
            (Some(_), Some(_)) => {
                return Err(Error::param("local_kernel", "is for `kernel pt`"));
            }
            (Some(name), None) => KernelSpec::new(name)?,
            (None, _) if binary => KernelSpec::new("gibbs")?,
            (None, _) => KernelSpec::new("ula")?,
        };
        crate::error::check_beta("beta", self.beta)?;
        spec.settings = self.kernel_settings.clone();
        spec.settings.step_size = Some(self.step_size());
        spec.track_energy = false;
        let scaled = Scaled::new(energy, self.beta)?;
        let kernel = spec.build_for(&scaled)?;
        Ok((kernel, spec))
    }

    /// `pt`: the reference of the tempering path: fair coins for binary
    /// models, else N(0, S^2 I) (`base_scale`, or the init's Gaussian std).
    pub fn reference(&self, energy: &dyn Energy) -> Result<crate::ais::Base> {
        let d = energy.dim();
        if energy.space() == StateSpace::Binary {
            return crate::ais::Base::bernoulli(&vec![0.5; d], 0.0);
        }
        let scale = match (self.base_scale, &self.init) {
            (Some(s), _) => s,
            (None, Init::Gaussian { std }) => *std,
            (None, _) => {
                return Err(Error::param(
                    "base_scale",
                    "pt negatives need a reference N(0, S^2 I): give `base_scale S` (or a gaussian:STD init)",
                ));
            }
        };
        crate::ais::Base::isotropic(d, scale)
    }

    /// Where fresh chains start on `energy`: binary models start from coin
    /// flips unless rows are given.
    pub fn init_for(&self, energy: &dyn Energy) -> Init {
        match &self.init {
            Init::Rows { .. } => self.init.clone(),
            _ if energy.space() == StateSpace::Binary => Init::Bernoulli,
            other => other.clone(),
        }
    }

    /// A sampler of `chains` chains for `energy` under these settings.
    pub fn sampler(&self, energy: &dyn Energy, chains: usize) -> Result<NegativeSampler> {
        NegativeSampler::new(
            self.method()?,
            self.init_for(energy),
            chains,
            energy.dim(),
            self.seed,
        )
    }
}

/// One call: `job.steps` transitions of the job's kernel on `beta F` from
/// the sampler's starts. `data` (positives, one per chain) start CD and give
/// the energy gap. Returns the batch (energies and stats in `F`, beta 1), the
/// kernel's name and the warnings. A stopped call is an
/// [`Error::Interrupted`] and leaves the sampler as it was.
///
/// ```
/// use boltz::jobs::{NegativesJob, negatives::call};
/// let energy = boltz::model::load("gauss-ill")?.energy(None)?;
/// let job = NegativesJob { steps: 20, ..NegativesJob::default() };
/// let mut sampler = job.sampler(energy.as_ref(), 8)?;
/// let (batch, kernel, warnings) = call(&mut sampler, energy.as_ref(), &job, None, &Default::default())?;
/// assert_eq!((batch.negatives.dim(), kernel.as_str()), ((8, 100), "ula"));
/// assert!(warnings.is_empty());
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn call(
    sampler: &mut NegativeSampler,
    energy: &dyn Energy,
    job: &NegativesJob,
    data: Option<ArrayView2<f64>>,
    control: &Control,
) -> Result<(NegativeBatch, String, crate::Warnings)> {
    job.method()?;
    let (kernel, spec) = job.kernel_and_spec(energy)?;
    let (_, name) = job.kernel(energy)?;
    let scaled = Scaled::new(energy, job.beta)?;
    let chains = sampler.n_chains();
    let positives = data.filter(|d| d.nrows() == chains || energy.fixed_rows().is_none());
    let mut tuning = kernel.initial_tuning();
    sampler.set_end_energies(job.end_energies);
    let tempered = matches!(sampler.method(), Method::Tempered { .. });
    if tempered != (job.kernel.as_deref() == Some("pt")) {
        return Err(Error::param(
            "kernel",
            "the negatives state was made for another kernel (pt and the others keep different states)",
        ));
    }
    let target = match (job.adapt_step, kernel.target_accept()) {
        (false, _) => None,
        (true, Some(t)) if !tempered => Some(t),
        (true, _) => {
            return Err(Error::param(
                "adapt_step",
                format!(
                    "needs a kernel with an acceptance rate to aim for (mala, hmc, nuts, rwm, ...), not {name}"
                ),
            ));
        }
    };
    if target.is_some()
        && let Some(s) = sampler.adapted_step()
    {
        tuning = crate::kernels::Tuning::new(s);
    }
    let step = tuning.step_size().get(0);
    let mut batch = if tempered {
        let base = job.reference(energy)?;
        sampler.generate_tempered(
            &scaled, &base, &spec, &tuning, job.steps, positives, control,
        )?
    } else {
        sampler.generate_with(
            &scaled,
            kernel.as_ref(),
            &tuning,
            job.steps,
            positives,
            control,
        )?
    };
    if !batch.complete {
        return Err(Error::Interrupted(
            "the call was stopped: nothing written, the negatives state is as it was".into(),
        ));
    }
    // The sampler saw beta F: report energies F.
    for v in [
        &mut batch.stats.energy_pos,
        &mut batch.stats.energy_neg,
        &mut batch.stats.energy_gap,
    ] {
        *v /= job.beta;
    }
    batch.energies.mapv_inplace(|e| e / job.beta);
    if kernel.has_step_size() {
        batch.stats.step_size = step;
    }
    if let Some(t) = target {
        sampler.adapt_step(step, batch.stats.acceptance, t);
    }
    let mut warnings = crate::Warnings::new();
    if let Some(t) = sampler.tempered()
        && let Some(a) = t
            .swap_accept
            .iter()
            .copied()
            .filter(|a| a.is_finite())
            .reduce(f64::min)
        && a < 0.05
    {
        warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::LowSwap, format!(
            "neighbouring replicas swap with probability {a:.3} at worst: the ladder is close to broken; use more replicas"
        )));
    }
    if batch.stats.divergences > 0 {
        warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::Divergences, format!(
            "{} divergent transitions (non-finite energies): lower the step size or clip the gradient",
            batch.stats.divergences
        )));
    }
    warnings.extend(frozen(
        &batch.stats,
        kernel.target_accept(),
        job.steps,
        &name,
    ));
    Ok((batch, name, warnings))
}

/// A call whose chains barely moved: a Metropolis kernel (one with a
/// target acceptance) accepting under a tenth of its target, or chains
/// that did not move at all. The negatives are then close to where the
/// call started them, whatever the model (a fixed step that the trained
/// energy's growing curvature has left too large).
fn frozen(
    stats: &NegativeStats,
    target: Option<f64>,
    steps: usize,
    kernel: &str,
) -> Option<crate::Warning> {
    if steps == 0 {
        return None;
    }
    let moved = stats.distance_moved;
    match target {
        Some(t) if stats.acceptance < 0.1 * t => Some(crate::Warning::new(
            crate::WarningKind::Frozen,
            format!(
                "acceptance {:.3} in this call, under a tenth of {kernel}'s target {t:.3}: the chains barely move (mean distance {moved:.3} in {steps} steps), so the negatives stay near where they started; lower the step size",
                stats.acceptance
            ),
        )),
        _ if moved == 0.0 => Some(crate::Warning::new(
            crate::WarningKind::Frozen,
            format!(
                "no chain moved in {steps} steps of {kernel}: the negatives are their starts; check the step size and the clamp"
            ),
        )),
        _ => None,
    }
}
