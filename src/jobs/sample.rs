//! The sample job: a kernel from its spec, warm-up, draws, diagnostics,
//! the checks against exact draws and the report (the CLI's `sample`).

use crate::Energy;
use crate::diagnostics;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::kernels::{KernelSettings, KernelSpec};
use crate::model::Model;
use crate::run::{Control, Observer};
use crate::sampler::{self, SampleConfig, SampleOutput};
use ndarray::Array2;
use std::path::Path;
use std::sync::Arc;

/// The settings of a sample job, with the CLI's defaults ([`SampleJob::new`]).
/// As JSON (the Python front sends them so; [`super::from_json`]), missing
/// fields take the defaults and unknown ones are refused; the kernel's
/// settings are the fields of [`KernelSettings`], flattened in.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SampleJob {
    /// Kernel name (`boltz::KernelSpec::names()`: `mala`, `ula`, `hmc`,
    /// `nuts`, `rwm`, `gibbs`, ...) or `pt` (parallel tempering with
    /// [`SampleJob::kernel`] as the local move).
    pub sampler: String,
    /// Chains (default 4).
    pub chains: usize,
    /// Warm-up steps per chain (default 1000).
    pub warmup: usize,
    /// Draws kept per chain (default 1000).
    pub draws: usize,
    /// Steps per kept draw (default 1).
    pub thin: usize,
    /// Seed: chain `i` draws from the ChaCha stream keyed by `(seed, i)`.
    pub seed: u64,
    /// The kernel's settings (of the local move for `pt`). A fixed
    /// `step_size` turns warm-up step adaptation off; `None` adapts it
    /// (ULA then takes the step a MALA warm-up adapts to).
    #[serde(flatten)]
    pub kernel_settings: KernelSettings,
    /// Inverse temperature of the target `exp(-beta F)` (default 1).
    pub beta: f64,
    /// One step size for all chains instead of one per chain.
    pub shared_step: bool,
    /// Adapt a diagonal mass matrix in warm-up (default true), each
    /// chain's from its own draws.
    pub adapt_mass: bool,
    /// One mass matrix for all chains from their pooled warm-up draws
    /// (default false). It couples the chains, so a shard refuses it.
    #[serde(default)]
    pub pooled_mass: bool,
    /// Adapt a dense mass matrix instead of a diagonal (default false):
    /// one for all chains, from the within-chain covariances of their
    /// warm-up draws and gradients
    /// ([`crate::kernels::Adaptation::dense_mass`]). It
    /// couples the chains, so a shard refuses it.
    #[serde(default)]
    pub dense_mass: bool,
    /// Where warm-up's mass windows lie (default proportional;
    /// `expanding`: Stan's, for NUTS on ill-conditioned targets).
    #[serde(default)]
    pub mass_windows: crate::kernels::MassWindows,
    /// Starting distribution where no starting rows are given (default
    /// over-dispersed, [`Init::default`]).
    pub init: Init,
    /// Record each draw's energy (default true).
    pub record_energies: bool,
    /// Record each draw's transition statistics ([`DrawStats`]; default
    /// false; kernels' runs: parallel tempering refuses it).
    ///
    /// [`DrawStats`]: crate::sampler::DrawStats
    #[serde(default)]
    pub record_draw_stats: bool,
    /// Parallel tempering (`sampler` `pt`): replicas per chain (default 8).
    pub replicas: usize,
    /// Parallel tempering: the local move's kernel (default: mala, or
    /// gibbs for binary models).
    pub kernel: Option<String>,
    /// Parallel tempering: keep every replica's draws.
    pub all_replicas: bool,
    /// Parallel tempering: one ladder for all chains (`pooled`, the
    /// default: the lower stepping-stone error) or one per chain
    /// (`per-chain`, which `shard` needs: a chain then depends on no
    /// other).
    pub ladder: crate::pt::LadderMode,
    /// Parallel tempering: the reference N(0, S^2 I) with this S (default:
    /// the AIS pilot's base widened to where its chains started,
    /// [`crate::pt::widen_reference`]).
    pub base_scale: Option<f64>,
    /// Run only this shard of the chains ([`crate::shard::Shard::range`]),
    /// with the streams they have in the whole run. Each chain adapts its
    /// own step size and mass (parallel tempering: its own ladder), so
    /// every split gives the one-process run's draws; `shared_step` and
    /// `pooled_mass`, which tie the chains together, are refused.
    pub shard: Option<crate::shard::Shard>,
    /// Compute the diagnostics (R-hat, ESS, the check against exact draws)
    /// and their warnings (default true). They cost more than the run
    /// itself for many short chains (1024 chains x 200 draws x 64
    /// coordinates: ~10 CPU seconds); `false` skips them (the report's
    /// `ess_*` and `rhat_max` are then null). Part of the job's settings
    /// like every other field (a resume or merge with the other choice is
    /// refused: the report would differ).
    #[serde(default = "yes")]
    pub diagnostics: bool,
}

fn yes() -> bool {
    true
}

impl Default for SampleJob {
    fn default() -> Self {
        Self::new("mala")
    }
}

impl SampleJob {
    /// The CLI's defaults for `sampler`.
    pub fn new(sampler: &str) -> Self {
        SampleJob {
            sampler: sampler.to_string(),
            chains: 4,
            warmup: 1000,
            draws: 1000,
            thin: 1,
            seed: 0,
            kernel_settings: KernelSettings::default(),
            beta: 1.0,
            shared_step: false,
            adapt_mass: true,
            pooled_mass: false,
            dense_mass: false,
            mass_windows: crate::kernels::MassWindows::default(),
            init: Init::default(),
            record_energies: true,
            record_draw_stats: false,
            replicas: 8,
            kernel: None,
            all_replicas: false,
            ladder: crate::pt::LadderMode::Pooled,
            base_scale: None,
            shard: None,
            diagnostics: true,
        }
    }

    /// The kernel spec, checked against `energy` (for `pt`, the local move's).
    pub fn kernel_spec(&self, energy: &dyn Energy) -> Result<KernelSpec> {
        if self.sampler != "pt" && self.base_scale.is_some() {
            return Err(Error::param("base_scale", "is for `sampler pt`"));
        }
        if self.sampler != "pt" && self.ladder != crate::pt::LadderMode::Pooled {
            return Err(Error::param("ladder", "is for `sampler pt`"));
        }
        let name = match (self.sampler.as_str(), &self.kernel) {
            ("pt", Some(k)) if k == "pt" => {
                return Err(Error::param(
                    "kernel",
                    "the local move of parallel tempering is a kernel (mala, hmc, ...), not pt",
                ));
            }
            ("pt", Some(k)) => k.clone(),
            ("pt", None) => KernelSpec::for_energy(energy).name().to_string(),
            (_, Some(k)) => {
                return Err(Error::param(
                    "kernel",
                    format!("a local move (`{k}`) is for `sampler pt` only"),
                ));
            }
            (s, None) => s.to_string(),
        };
        let spec = KernelSpec::with_settings(&name, self.kernel_settings.clone())?;
        spec.check(energy)?;
        spec.build()?;
        Ok(spec)
    }

    /// The driver's configuration (of this job's shard, if any).
    pub fn config(&self, dim: usize) -> Result<SampleConfig> {
        if self.sampler == "pt" && self.dense_mass {
            return Err(Error::param(
                "dense_mass",
                "parallel tempering adapts no mass matrix: `dense_mass` is for the other samplers",
            ));
        }
        if self.sampler == "pt" && self.shared_step {
            return Err(Error::param(
                "shared_step",
                "parallel tempering adapts one step per replica (temperature): `shared_step` is for the other samplers",
            ));
        }
        let (n_chains, first_chain) = match self.shard {
            Some(s) => {
                s.check()?;
                s.check_items(self.chains, "chains")?;
                if self.shared_step {
                    return Err(Error::param(
                        "shard",
                        "a shared step is adapted on all chains at once: shards need `shard` without `shared_step`",
                    ));
                }
                if self.pooled_mass && self.adapt_mass {
                    return Err(Error::param(
                        "shard",
                        "a pooled mass is adapted on all chains at once: shards need `shard` without `pooled_mass`",
                    ));
                }
                if self.dense_mass && self.adapt_mass {
                    return Err(Error::param(
                        "shard",
                        "a dense mass is adapted on all chains at once: shards need `shard` without `dense_mass`",
                    ));
                }
                if self.sampler == "pt" && self.ladder != crate::pt::LadderMode::PerChain {
                    return Err(Error::param(
                        "shard",
                        "parallel tempering's pooled ladder is adapted on all chains at once: shards need `ladder per-chain` (each chain its own ladder; the one-process run with it gives the same draws)",
                    ));
                }
                let r = s.range(self.chains);
                (r.len(), r.start)
            }
            None => (self.chains, 0),
        };
        let config = SampleConfig {
            first_chain,
            n_chains,
            warmup: self.warmup,
            draws: self.draws,
            thin: self.thin,
            seed: self.seed,
            beta: self.beta,
            adapt_step_size: self.kernel_settings.step_size.is_none(),
            shared_step_size: self.shared_step,
            adapt_mass: self.adapt_mass,
            pooled_mass: self.pooled_mass,
            dense_mass: self.dense_mass,
            mass_windows: self.mass_windows,
            record_energies: self.record_energies,
            record_draw_stats: self.record_draw_stats,
            observe_every: 10,
            init: self.init.clone(),
            ..SampleConfig::new()
        };
        config.validate(dim)?;
        Ok(config)
    }
}

/// What a sample job returns.
pub struct SampleRun {
    /// Draws, energies and statistics.
    pub output: SampleOutput,
    /// The CLI's JSON report (`acceptance`, `divergences`, `step_size`,
    /// `ess_bulk_min`, `ess_tail_min`, `rhat_max`, `grad_evals`, `wall_s`,
    /// `warnings`, ...).
    pub report: serde_json::Value,
    /// The run's warnings (also in the report).
    pub warnings: crate::Warnings,
    /// The overview of the diagnostics (NaN with fewer than 4 draws).
    pub overview: diagnostics::Overview,
    /// Whether the draws were checked against exact draws of the target.
    pub exact_check: bool,
    /// Whether the kernel uses no gradient (no step size, mass or gradient count).
    pub gradient_free: bool,
    /// Whether each chain has its own context (chains then target
    /// different laws and R-hat does not apply).
    pub per_chain_context: bool,
    /// Parallel tempering's figures (sampler `pt`).
    pub pt: Option<crate::pt::PtStats>,
    /// Every replica's draws, (replicas, chains, draws, dim), when asked for.
    pub all_replicas: Option<ndarray::Array4<f64>>,
    /// Parallel tempering's per-chain tallies (what a shard hands the merge).
    pub pt_tally: Option<crate::pt::LadderTally>,
}

/// Parallel tempering for the sample job: the AIS base as the reference
/// ([`crate::ais::default_base`]), the job's kernel as the local move; the
/// target replica's draws as a [`SampleOutput`].
#[allow(clippy::too_many_arguments)]
fn run_pt(
    energy: &dyn Energy,
    spec: &KernelSpec,
    job: &SampleJob,
    config: &SampleConfig,
    init: Option<Array2<f64>>,
    observer: &mut dyn Observer,
    control: &Control,
    resume: Option<&Path>,
) -> Result<(SampleOutput, PtRun)> {
    if energy.fixed_rows().is_some() {
        return Err(Error::param(
            "sampler",
            "parallel tempering runs on one target: give one context, not one per chain",
        ));
    }
    if config.record_draw_stats {
        return Err(Error::param(
            "record_draw_stats",
            "parallel tempering records no per-draw transition statistics (its draws come from swaps as well as the kernel's moves)",
        ));
    }
    let settings = crate::pt::PtSettings {
        replicas: job.replicas,
        adapt_schedule: true,
        keep_all_replicas: job.all_replicas,
        betas: None,
        ladder: job.ladder,
    };
    // Checked before the pilot that fits the reference runs.
    crate::pt::validate(config, &settings, energy.dim())?;
    let stop_only = Control {
        stop: control.stop.clone(),
        ..Control::default()
    };
    if let Some(s) = job.base_scale {
        crate::ais::check_std("base_scale", s)?;
    }
    let base = match (energy.space(), job.base_scale) {
        (crate::StateSpace::Continuous, Some(s)) => crate::ais::Base::isotropic(energy.dim(), s)?,
        (crate::StateSpace::Binary, _) => {
            crate::ais::default_base(energy, config.beta, config.seed, None)?
        }
        (crate::StateSpace::Continuous, None) => {
            crate::ais::pilot_with(energy, config.beta, config.seed, None, &stop_only)?
                .ok_or_else(|| {
                    Error::Interrupted(
                        "stopped in the pilot that fits the tempering reference".into(),
                    )
                })
                .and_then(|p| crate::pt::widen_reference(&p.base))?
        }
    };
    let out = match resume {
        Some(path) => crate::pt::resume(
            energy,
            &base,
            spec,
            (config, &settings),
            path,
            observer,
            control,
        )?,
        None => crate::pt::sample(
            energy, &base, spec, config, &settings, init, observer, control,
        )?,
    };
    let p = &out.stats;
    let target = crate::energy::Scaled::new(energy, config.beta)?;
    let c = config.n_chains;
    let r = settings.replicas;
    let last = out
        .final_positions
        .slice(ndarray::s![(r - 1) * c..r * c, ..])
        .to_owned();
    let final_state = crate::kernels::ChainState::new(&target, last)?;
    let tuning = p
        .tuning
        .clone()
        .ok_or_else(|| Error::Numerical("a tempering run without its tuning".into()))?;
    let steps = tuning.step_size().expand(c * r);
    let stats = sampler::RunStats {
        kernel: "pt".into(),
        acceptance: p.chain_acceptance.clone(),
        divergences: p.chain_divergences.clone(),
        warmup_divergences: p.warmup_divergences,
        step_size: p.step_size[r - 1],
        step_sizes: steps[(r - 1) * c..].to_vec(),
        inv_mass: None,
        tuning,
        grad_evals: p.grad_evals,
        energy_evals: p.energy_evals,
        wall_s: p.wall_s,
    };
    Ok((
        SampleOutput {
            samples: out.samples,
            energies: out.energies,
            draw_stats: None,
            stats,
            final_state,
            complete: out.complete,
        },
        (out.stats, out.all_replicas, out.tally),
    ))
}

/// Parallel tempering's figures and, when kept, every replica's draws.
type PtRun = (
    crate::pt::PtStats,
    Option<ndarray::Array4<f64>>,
    crate::pt::LadderTally,
);

/// Runs `job` on `model` (with `context` for a conditional model) from
/// `init` rows (chains x dim) or the job's starting distribution, or
/// continues the run saved at `resume`. `control` carries the stop flag,
/// checkpoints and the settings a checkpoint must match.
///
/// ```
/// use boltz::jobs::{SampleJob, sample};
/// let model = boltz::model::load("gauss-ill")?;
/// let mut job = SampleJob::new("mala");
/// (job.warmup, job.draws) = (200, 100);
/// let run = sample(&model, None, &job, None, &mut boltz::NoObserver, &Default::default(), None)?;
/// assert_eq!(run.output.samples.dim(), (4, 100, 100));
/// assert!(run.report["acceptance"].as_f64().unwrap() > 0.3);
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn sample(
    model: &Model,
    context: Option<Array2<f64>>,
    job: &SampleJob,
    init: Option<Array2<f64>>,
    observer: &mut dyn Observer,
    control: &Control,
    resume: Option<&Path>,
) -> Result<SampleRun> {
    let start = std::time::Instant::now();
    let (context, per_chain_context) = shard_context(job, context);
    let energy: Arc<dyn Energy> = model.energy(context)?;
    let per_chain_context = per_chain_context || energy.fixed_rows().is_some();
    let mut spec = job.kernel_spec(energy.as_ref())?;
    let config = job.config(energy.dim())?;
    let given_rows = init.as_ref().map(|y| y.dim());
    let init = shard_init(job, init);
    let (out, gradient_free, pt) = run_chains(
        energy.as_ref(),
        &mut spec,
        job,
        &config,
        init,
        (observer, control, resume),
    )?;
    let gradient_free = gradient_free || pt.as_ref().is_some_and(|(p, _, _)| p.kernel == "gibbs");
    let d = out.samples.dim().1;
    let sampled = start.elapsed().as_secs_f64();
    // An interrupted run may have fewer than 4 draws: no diagnostics then.
    let have_diag = d >= 4 && job.diagnostics;
    let ov = if have_diag {
        diagnostics::overview(&diagnostics::summarize(out.samples.view())?)
    } else {
        diagnostics::Overview {
            ess_bulk_min: f64::NAN,
            ess_tail_min: f64::NAN,
            rhat_max: f64::NAN,
        }
    };
    // Exact draws of the target (suite targets, Gaussians, mixtures, the
    // funnel; at beta 1) let the run be checked against the truth.
    let exact = (config.beta == 1.0 && job.diagnostics && !per_chain_context)
        .then(|| crate::ais::exact_draws(model, 4096, config.seed))
        .flatten();
    let mut warnings = sampler::warnings(
        energy.as_ref(),
        &out,
        (have_diag && !per_chain_context).then_some(&ov),
        exact.as_ref().map(|e| e.view()),
    )?;
    if !out.complete {
        warnings.push(crate::Warning::interrupted(
            format!("{d} of {} draws written", config.draws),
            control.checkpoint.as_deref(),
        ));
    }
    let (pt, all_replicas, pt_tally) = match pt {
        Some((stats, all, tally)) => (Some(stats), all, Some(tally)),
        None => (None, None, None),
    };
    if let Some(p) = &pt {
        warnings.extend(crate::pt::warnings(p));
    }
    let checks = (&ov, exact.is_some(), gradient_free);
    let mut report = report_json(model, job, &config, &out, checks, &warnings);
    if let Some((n, dim)) = given_rows {
        report["init"] = serde_json::json!(format!("the positions given ({n} x {dim})"));
    }
    // The whole job's time: the chains, then the diagnostics (apart).
    let whole = start.elapsed().as_secs_f64();
    report["sampling_s"] = serde_json::json!(sampled);
    report["diagnostics_s"] = serde_json::json!(whole - sampled);
    report["wall_s"] = serde_json::json!(whole);
    report["diagnostics"] = serde_json::json!(job.diagnostics);
    if let Some(p) = &pt {
        report["kernel"] = serde_json::json!(p.kernel);
        report["pt"] = crate::pt::stats_json(p);
    }
    Ok(SampleRun {
        pt,
        pt_tally,
        all_replicas,
        exact_check: exact.is_some(),
        output: out,
        report,
        warnings,
        overview: ov,
        gradient_free,
        per_chain_context,
    })
}

/// A shard's chains take their rows of per-chain contexts, as they take
/// their rows of given starting positions; also whether the chains have a
/// context each (a shard of one chain still has: no R-hat across them, no
/// check against one law).
fn shard_context(job: &SampleJob, context: Option<Array2<f64>>) -> (Option<Array2<f64>>, bool) {
    let per_chain_context =
        matches!(&context, Some(x) if x.nrows() == job.chains && job.chains > 1);
    let context = match (job.shard, context) {
        (Some(s), Some(x)) if per_chain_context => {
            Some(x.slice(ndarray::s![s.range(job.chains), ..]).to_owned())
        }
        (_, x) => x,
    };
    (context, per_chain_context)
}

/// A shard starts its own chains from their rows of given positions.
fn shard_init(job: &SampleJob, init: Option<Array2<f64>>) -> Option<Array2<f64>> {
    match (job.shard, init) {
        (Some(s), Some(y)) if y.nrows() == job.chains => {
            Some(y.slice(ndarray::s![s.range(job.chains), ..]).to_owned())
        }
        // Tempering started one row per replica (replica-major): each
        // replica's rows of this shard's chains.
        (Some(s), Some(y)) if job.sampler == "pt" && y.nrows() == job.chains * job.replicas => {
            let rows: Vec<usize> = (0..job.replicas)
                .flat_map(|r| s.range(job.chains).map(move |c| r * job.chains + c))
                .collect();
            Some(y.select(ndarray::Axis(0), &rows))
        }
        (_, y) => y,
    }
}

/// What a run of the chains returns: its output, whether the kernel uses
/// no gradient, and parallel tempering's figures and replicas.
type Chains = (SampleOutput, bool, Option<PtRun>);

/// Runs (or resumes) the chains of `job`: parallel tempering, or any other
/// kernel through the sampler (ULA without a step takes a MALA warm-up's).
fn run_chains(
    energy: &dyn Energy,
    spec: &mut KernelSpec,
    job: &SampleJob,
    config: &SampleConfig,
    init: Option<Array2<f64>>,
    (observer, control, resume): (&mut dyn Observer, &Control, Option<&Path>),
) -> Result<Chains> {
    Ok(if job.sampler == "pt" {
        let (out, pt) = run_pt(energy, spec, job, config, init, observer, control, resume)?;
        (out, false, Some(pt))
    } else {
        // ULA has no acceptance rate to tune against: without a step size it
        // takes the one a MALA warm-up adapts to (as `compare` does).
        if spec.name() == "ula" && job.kernel_settings.step_size.is_none() {
            spec.settings.step_size = Some(crate::compare::ula_default_step(energy, config)?);
        }
        let kernel = spec.build()?;
        let out = match resume {
            Some(path) => {
                sampler::resume(energy, kernel.as_ref(), config, path, observer, control)?
            }
            None => sampler::sample_with(energy, kernel.as_ref(), config, init, observer, control)?,
        };
        (out, !kernel.has_step_size(), None)
    })
}

/// The run's JSON report (the CLI's keys): settings, tallies, diagnostics
/// `checks` (overview, whether exact draws checked it, whether the kernel
/// is gradient-free) and warnings.
fn report_json(
    model: &Model,
    job: &SampleJob,
    config: &SampleConfig,
    out: &SampleOutput,
    (ov, exact_check, gradient_free): (&diagnostics::Overview, bool, bool),
    warnings: &crate::Warnings,
) -> serde_json::Value {
    let s = &out.stats;
    let (c, d, k) = out.samples.dim();
    let acceptance = s.acceptance.iter().sum::<f64>() / s.acceptance.len().max(1) as f64;
    let divergences: usize = s.divergences.iter().sum();
    let mut report = serde_json::json!({
        "partial": !out.complete,
        "model": model.name,
        "sampler": s.kernel,
        "dim": k,
        "chains": c,
        "draws": d,
        "warmup": config.warmup,
        "thin": config.thin,
        "seed": config.seed,
        "beta": config.beta,
        "init": if job.sampler == "pt" {
            "draws from the tempering reference (the AIS base)".to_string()
        } else {
            job.init.describe()
        },
        "acceptance": acceptance,
        "acceptance_per_chain": s.acceptance,
        "divergences": divergences,
        "divergences_per_chain": s.divergences,
        "warmup_divergences": s.warmup_divergences,
        "ess_bulk_min": ov.ess_bulk_min,
        "ess_tail_min": ov.ess_tail_min,
        "rhat_max": ov.rhat_max,
        "exact_check": exact_check,
        "energy_evals": s.energy_evals,
        "wall_s": s.wall_s,
    });
    warnings.write_into(&mut report);
    if !gradient_free {
        report["step_size"] = serde_json::json!(s.step_size);
        report["inv_mass"] = serde_json::json!(s.inv_mass);
        report["grad_evals"] = serde_json::json!(s.grad_evals);
    }
    if let Some(sh) = job.shard {
        report["shard"] = serde_json::json!(format!("{}/{}", sh.index, sh.count));
    }
    report
}
