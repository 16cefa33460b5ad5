//! The log Z job: the exact value where the model allows, else AIS with
//! its base, reverse AIS where exact draws exist, the checks that compare
//! them, and the report (the CLI's `logz` and `prob`).

use crate::Energy;
use crate::ais::{self, AisConfig, AisProblem, Base, Schedule, ScheduleChoice};
use crate::error::{Error, Result};
use crate::kernels::{KernelSettings, KernelSpec};
use crate::model::Model;
use crate::run::{Control, Observer};
use ndarray::{Array2, ArrayD};
use std::path::Path;
use std::sync::Arc;

/// The settings of a log Z job, with the CLI's defaults ([`LogzJob::default`]).
/// As JSON ([`super::from_json`]), missing fields take the defaults and
/// unknown ones are refused (the arrays `reverse_from` and `data` are not
/// part of it); the kernel's settings are the fields of [`KernelSettings`],
/// flattened in.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LogzJob {
    /// `ais`, `smc` (annealed SMC with resample-move,
    /// [`ais::ScheduleChoice::Smc`]), `pt` (parallel tempering's
    /// stepping-stone estimate), `check` (AIS, SMC and, for one target,
    /// PT, held against each other: the combined estimate only where they
    /// agree), `exact` or `quadrature`; `None`: `check` with `target_se`,
    /// else exact where the model allows (and no reverse pass is asked
    /// for), else AIS.
    pub method: Option<String>,
    /// AIS and SMC particles per context (default 1024).
    pub particles: usize,
    /// AIS temperatures; SMC's cap on them (default 1000).
    pub temps: usize,
    /// AIS: `linear`, `geometric`, `sigmoid` (default), `piecewise` or
    /// `adaptive` (SMC chooses its own).
    pub schedule: String,
    /// Target conditional ESS per temperature: of the adaptive schedule's
    /// pilot (default 0.995), of SMC's temperatures (default 0.99).
    pub cess: Option<f64>,
    /// Transition kernel (default: gibbs for binary models, else mala).
    pub kernel: Option<String>,
    /// The kernel's settings. A fixed `step_size` replaces the per-temperature
    /// steps a pilot tunes; HMC runs without step jitter unless `jitter` is
    /// set. Settings other than the step need `kernel` named.
    #[serde(flatten)]
    pub kernel_settings: KernelSettings,
    /// Transitions per temperature (default 1 for AIS; 5 moves for SMC).
    pub steps_per_temp: Option<usize>,
    /// SMC: independent islands the particles are split into (default 8,
    /// at most the particles); the standard error is the larger of the
    /// islands' genealogy estimate and their spread.
    pub islands: Option<usize>,
    /// Base N(base_mean, base_scale^2 I) instead of the pilot-fitted Gaussian.
    pub base_scale: Option<f64>,
    /// Mean of that base (every coordinate).
    pub base_mean: f64,
    /// Require reverse AIS from exact draws (an error where there are none).
    pub reverse: bool,
    /// Skip the default reverse AIS pass.
    pub no_reverse: bool,
    /// Reverse AIS from these draws of the target (particles x dim).
    #[serde(skip)]
    pub reverse_from: Option<Array2<f64>>,
    /// Resample when ESS/N falls below this (annealed SMC).
    pub resample: Option<f64>,
    /// Independent repeats, reported separately.
    pub repeats: usize,
    /// Bootstrap resamples for a second standard error.
    pub bootstrap: usize,
    /// Inverse temperature (default 1).
    pub beta: f64,
    /// Seed: particle `i` draws from the ChaCha stream keyed by `(seed, i)`.
    pub seed: u64,
    /// Binary models: positives whose base-rate model is the AIS base.
    #[serde(skip)]
    pub data: Option<Array2<f64>>,
    /// `pt`: replicas per chain (default 16).
    pub replicas: usize,
    /// `pt`: chains (default 16).
    pub chains: usize,
    /// `check`: grow the particles (and PT's draws), doubling them each
    /// round, until the estimators agree with a standard error at most
    /// this (natural log units); `None`: one round.
    pub target_se: Option<f64>,
    /// `check` with `target_se`: start no round that would end past this
    /// many seconds of wall time (a round is assumed to take twice the last).
    pub max_seconds: Option<f64>,
    /// `pt`: warm-up steps (default 2000).
    pub warmup: usize,
    /// `pt`: steps after warm-up whose states enter the estimate (default 8000).
    pub draws: usize,
    /// `ais`: run only this shard of every context's particles
    /// ([`crate::shard::Shard`]); the run's log-weights come back in
    /// [`LogzRun::shard`] for a merge.
    pub shard: Option<crate::shard::Shard>,
}

impl Default for LogzJob {
    fn default() -> Self {
        LogzJob {
            method: None,
            particles: 1024,
            temps: 1000,
            schedule: "sigmoid".into(),
            cess: None,
            kernel: None,
            kernel_settings: KernelSettings::default(),
            steps_per_temp: None,
            islands: None,
            base_scale: None,
            base_mean: 0.0,
            reverse: false,
            no_reverse: false,
            reverse_from: None,
            resample: None,
            repeats: 0,
            bootstrap: 0,
            beta: 1.0,
            seed: 0,
            data: None,
            replicas: 16,
            chains: 16,
            target_se: None,
            max_seconds: None,
            warmup: 2000,
            draws: 8000,
            shard: None,
        }
    }
}

/// What a log Z job returns: the report and the contexts its values are
/// for (conditional models; the model's default contexts where none were given).
pub struct LogzRun {
    /// Estimates, errors and warnings.
    pub report: LogzReport,
    /// The contexts, one row per estimate.
    pub contexts: Option<Array2<f64>>,
    /// A shard's log-weights; `None` for a whole run.
    pub shard: Option<ShardWeights>,
}

/// What a shard of an AIS run hands to the merge.
pub struct ShardWeights {
    /// Log-weights, (contexts, the shard's particles).
    pub log_weights: Array2<f64>,
    /// Whether the run resampled (annealed SMC: shards merge as islands).
    pub smc: bool,
    /// `log Z` of the path's start (0, or the RBM parameter path's base).
    pub log_z0: f64,
    /// The contexts this shard covers when it ran whole batches of them.
    pub context_range: Option<std::ops::Range<usize>>,
}

/// The checks of [`prob`] that need no points: a conditional model needs
/// contexts, `paired` needs a conditional model.
pub fn check_prob(model: &Model, have_contexts: bool, paired: bool) -> Result<()> {
    if model.conditional().is_some() && !have_contexts {
        return Err(Error::param(
            "context",
            format!(
                "model `{}` is conditional: prob needs contexts (k, {})",
                model.name,
                model.x_dim()
            ),
        ));
    }
    if paired && model.conditional().is_none() {
        return Err(Error::param(
            "paired",
            format!(
                "model `{}` is not conditional: its log P(y) is one per point already",
                model.name
            ),
        ));
    }
    Ok(())
}

/// log P(y|x) of `points` (N x dim): under every context (k x N), under
/// its own context (`paired`: N, as many contexts as points), or log P(y)
/// under an unconditional model (N). log Z comes from [`logz`] with `job`.
/// With `job.shard` the array is `-beta F(x, y)` (log Z left out: the
/// merge of the shards subtracts the whole run's).
///
/// ```
/// use boltz::jobs::{LogzJob, prob};
/// let model = boltz::model::load("gauss-ill")?;
/// let points = ndarray::Array2::zeros((3, 100));
/// let (logp, run) = prob(&model, None, points.view(), false, &LogzJob::default(), &Default::default(), None, &mut boltz::NoObserver)?;
/// assert_eq!(logp.shape(), &[3]);
/// assert_eq!(run.report.method, "exact");
/// # Ok::<(), boltz::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn prob(
    model: &Model,
    contexts: Option<Array2<f64>>,
    points: ndarray::ArrayView2<f64>,
    paired: bool,
    job: &LogzJob,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<(ArrayD<f64>, LogzRun)> {
    check_prob(model, contexts.is_some(), paired)?;
    if points.ncols() != model.dim() {
        return Err(Error::shape(
            "points",
            format!("(n, {})", model.dim()),
            format!("{:?}", points.shape()),
        ));
    }
    model.check_points(points, "points")?;
    if paired {
        let k = contexts.as_ref().map_or(0, |c| c.nrows());
        if k != points.nrows() {
            return Err(Error::shape(
                "paired",
                format!("as many contexts as points ({})", points.nrows()),
                format!("{k} contexts"),
            ));
        }
    }
    let run = logz(model, contexts, job, control, resume, observer)?;
    // A shard's log Z is partial: it returns `-beta F(x, y)` (log P with
    // log Z = 0, the same arithmetic), from which the merge subtracts the
    // merged log Z.
    let zeros = vec![0.0; run.report.log_z.len()];
    let log_z = if job.shard.is_some() {
        &zeros
    } else {
        &run.report.log_z
    };
    let logp: ArrayD<f64> = match (model.conditional(), &run.contexts) {
        (Some(c), Some(ctx)) if paired => {
            ais::log_prob_paired(c.as_ref(), ctx.view(), points, log_z, job.beta)?.into_dyn()
        }
        (Some(c), Some(ctx)) => {
            ais::log_prob(c.as_ref(), ctx.view(), points, log_z, job.beta)?.into_dyn()
        }
        _ => {
            let e = model.energy(None)?;
            ais::log_prob_unconditional(e.as_ref(), points, log_z[0], job.beta)?.into_dyn()
        }
    };
    Ok((logp, run))
}

/// The result printed by `logz` (and written by `prob --report`).
#[derive(serde::Serialize)]
pub struct LogzReport {
    /// The model's name (suite name or file path).
    pub model: String,
    /// `exact`, `quadrature` or `ais`.
    pub method: String,
    /// Whether the model is conditional: then `log_z` and its companions
    /// are arrays (one per context) in JSON, else numbers.
    pub conditional: bool,
    /// False when the run was stopped: then only `contexts_done` contexts have values.
    pub complete: bool,
    /// Contexts whose log Z is done.
    pub contexts_done: usize,
    /// log Z per context (natural log).
    pub log_z: Vec<f64>,
    /// Standard error of each log Z (0 for exact values).
    pub stderr: Vec<f64>,
    /// Effective sample size of the AIS weights per context (NaN for other methods).
    pub ess: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Reverse AIS upper bounds per context, where reverse AIS ran.
    pub log_z_upper: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Their standard errors.
    pub stderr_upper: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The exact log Z where known (one context).
    pub exact_log_z: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// R-hat of the over-dispersed pilot that fitted the AIS base.
    pub pilot_rhat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Bootstrap standard errors, when asked for.
    pub bootstrap_stderr: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    /// Estimates of the independent repeats, one list per repeat.
    pub repeats: Vec<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Parallel tempering's figures (method `pt`): replicas, temperatures,
    /// swap acceptance, Lambda, round trips, chains, warm-up, draws.
    pub pt: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// SMC's figures (method `smc`): temperatures it chose, moves per
    /// temperature, resampling events, distinct ancestors of each
    /// context's final particles, its last step size.
    pub smc: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The check's figures (method `check`): `verdict` (`agree` or
    /// `disagree`), per context the chi-square of the estimators'
    /// differences against their standard errors and its p-value, each
    /// estimator's figures, the budget's rounds and why it stopped.
    pub check: Option<serde_json::Value>,
    /// AIS particles per context.
    pub particles: usize,
    /// AIS temperatures.
    pub temps: usize,
    /// Seed.
    pub seed: u64,
    /// Inverse temperature.
    pub beta: f64,
    /// Mean acceptance of the AIS transitions.
    pub acceptance: f64,
    /// Divergent AIS transitions.
    pub divergences: usize,
    /// Energy evaluations (rows), all passes.
    pub energy_evals: u64,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// What the error bars cannot show (missed modes, disagreement with reverse AIS or exact values, interruptions).
    pub warnings: Vec<String>,
}

/// The report as JSON: per-context arrays for conditional models, numbers
/// otherwise (NaN becomes null).
pub fn report_json(r: &LogzReport) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(r)
        .map_err(|e| Error::param("report", format!("cannot encode: {e}")))?;
    if !r.conditional {
        for key in [
            "log_z",
            "stderr",
            "ess",
            "log_z_upper",
            "stderr_upper",
            "bootstrap_stderr",
        ] {
            if let Some(a) = v
                .get(key)
                .and_then(|a| a.as_array())
                .filter(|a| a.len() == 1)
                .map(|a| a[0].clone())
            {
                v[key] = a;
            }
        }
        if let Some(reps) = v.get("repeats").and_then(|a| a.as_array()).cloned() {
            v["repeats"] =
                serde_json::Value::Array(reps.into_iter().map(|x| x[0].clone()).collect());
        }
    }
    Ok(v)
}

/// The kernel asked for (`None`: the model's default, which takes only
/// a step size). AIS's HMC runs without step jitter unless one is set.
fn parse_kernel(job: &LogzJob) -> Result<Option<KernelSpec>> {
    let settings = &job.kernel_settings;
    settings.check()?;
    let Some(name) = &job.kernel else {
        let step_only = KernelSettings {
            step_size: settings.step_size,
            ..KernelSettings::default()
        };
        if *settings != step_only {
            return Err(Error::param(
                "kernel",
                "kernel settings other than the step size need the kernel named (the default is chosen per model: gibbs for binary models, else mala)",
            ));
        }
        return Ok(None);
    };
    let mut spec = KernelSpec::with_settings(name, settings.clone())?;
    spec.settings.jitter = Some(settings.jitter_or(0.0));
    spec.build()?;
    Ok(Some(spec))
}

/// SMC's defaults: target conditional ESS per temperature and moves per temperature.
const SMC_CESS: f64 = 0.99;
const SMC_MOVES: usize = 5;
const SMC_ISLANDS: usize = 8;

fn config(job: &LogzJob) -> Result<AisConfig> {
    let smc = job.method.as_deref() == Some("smc");
    let schedule = match job.schedule.as_str() {
        _ if smc => ScheduleChoice::Smc {
            cess: job.cess.unwrap_or(SMC_CESS),
        },
        "adaptive" => ScheduleChoice::Adaptive {
            cess: job.cess.unwrap_or(0.995),
        },
        s => ScheduleChoice::Fixed(Schedule::parse(s)?),
    };
    if smc && job.schedule != LogzJob::default().schedule {
        return Err(Error::param(
            "schedule",
            "smc chooses each temperature as it runs (set its target conditional ESS with cess)",
        ));
    }
    let c = AisConfig {
        particles: job.particles,
        temps: job.temps,
        schedule,
        kernel: parse_kernel(job)?,
        steps_per_temp: job
            .steps_per_temp
            .unwrap_or(if smc { SMC_MOVES } else { 1 }),
        step_size: job.kernel_settings.step_size,
        beta: job.beta,
        seed: job.seed,
        resample_threshold: job.resample,
        islands: job.islands.unwrap_or(if smc {
            SMC_ISLANDS.min(job.particles.max(1))
        } else {
            1
        }),
        repeats: job.repeats,
        bootstrap: job.bootstrap,
        pilot_particles: 256,
        shard: job.shard,
    };
    c.validate()?;
    if let Some(s) = job.base_scale {
        crate::error::check_positive("base_scale", s)?;
    }
    Ok(c)
}

/// Runs `job` on `model`: log Z for each row of `contexts` (conditional
/// models; default: the model's own contexts) or the one log Z. `control`
/// carries the stop flag and checkpoints, `resume` a checkpoint to continue.
///
/// ```
/// use boltz::jobs::{LogzJob, logz};
/// let model = boltz::model::load("rbm20")?;
/// let job = LogzJob { method: Some("ais".into()), particles: 128, temps: 200, ..LogzJob::default() };
/// let run = logz(&model, None, &job, &Default::default(), None, &mut boltz::NoObserver)?;
/// let r = &run.report;
/// assert!((r.log_z[0] - 62.797871).abs() < 5.0 * r.stderr[0] + 0.05);
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn logz(
    model: &Model,
    contexts: Option<Array2<f64>>,
    job: &LogzJob,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<LogzRun> {
    if contexts.is_some() && model.conditional().is_none() {
        return Err(Error::param(
            "context",
            format!("model `{}` is not conditional", model.name),
        ));
    }
    let contexts = match (model.conditional(), contexts) {
        (Some(_), None) => Some(model.default_context.clone().ok_or_else(|| {
            Error::param(
                "context",
                format!(
                    "model `{}` is conditional: give contexts (k, {})",
                    model.name,
                    model.x_dim()
                ),
            )
        })?),
        (_, c) => c,
    };
    let cfg = config(job)?;
    // The exact value decides the default method and is reported for one
    // context; AIS over many contexts does not wait for it.
    let k = contexts.as_ref().map_or(1, |c| c.nrows());
    let need_exact = job.method.as_deref() != Some("ais") || k == 1;
    let exact = if need_exact {
        crate::exact::model_log_z(model, contexts.as_ref(), job.beta)?
    } else {
        None
    };
    let method = job.method.clone().unwrap_or_else(|| {
        if job.target_se.is_some() {
            "check".into()
        } else if exact.is_some()
            && !job.reverse
            && job.reverse_from.is_none()
            && job.shard.is_none()
        {
            "exact".into()
        } else {
            "ais".into()
        }
    });
    let start = std::time::Instant::now();
    let mut report = LogzReport {
        model: model.name.clone(),
        method: method.clone(),
        conditional: model.conditional().is_some(),
        complete: true,
        contexts_done: k,
        log_z: vec![],
        stderr: vec![],
        ess: vec![],
        log_z_upper: None,
        stderr_upper: None,
        exact_log_z: exact.as_ref().filter(|e| e.len() == 1).map(|e| e[0]),
        pilot_rhat: None,
        bootstrap_stderr: None,
        repeats: vec![],
        pt: None,
        smc: None,
        check: None,
        particles: cfg.particles,
        temps: cfg.temps,
        seed: cfg.seed,
        beta: cfg.beta,
        acceptance: f64::NAN,
        divergences: 0,
        energy_evals: 0,
        wall_s: 0.0,
        warnings: vec![],
    };
    if job.shard.is_some() && method != "ais" && method != "smc" {
        return Err(Error::param(
            "shard",
            format!("shards are for `method ais` and `method smc` (this run is {method})"),
        ));
    }
    if (job.target_se.is_some() || job.max_seconds.is_some()) && method != "check" {
        return Err(Error::param(
            "target_se",
            format!(
                "a budget (target_se, max_seconds) grows a `method check` run (this run is {method})"
            ),
        ));
    }
    if (method == "smc" || method == "check") && (job.reverse || job.reverse_from.is_some()) {
        return Err(Error::param(
            "reverse",
            "reverse AIS needs a fixed schedule: it runs with `method ais` alone",
        ));
    }
    if job.shard.is_some() && (job.reverse || job.reverse_from.is_some()) {
        return Err(Error::param(
            "reverse",
            "reverse AIS runs on the whole run, not in a shard (merged shards give the forward estimate): run it without `shard`",
        ));
    }
    let mut log_weights = None;
    match method.as_str() {
        "exact" => {
            let e = exact.ok_or_else(|| Error::param("method", format!("no exact log Z for model `{}` at beta {} (exact covers RBMs with a layer of at most 24 units, closed-form Gaussians, mixtures and funnels, and the ring, at beta 1)", model.name, job.beta)))?;
            if let Some(i) = e.iter().position(|v| !v.is_finite()) {
                return Err(Error::param(
                    "model",
                    format!(
                        "the exact log Z of `{}`{} is not finite ({}): its parameters overflow the sum (weights too large?)",
                        model.name,
                        if e.len() > 1 {
                            format!(" at context {i}")
                        } else {
                            String::new()
                        },
                        e[i]
                    ),
                ));
            }
            report.stderr = vec![0.0; e.len()];
            report.ess = vec![f64::NAN; e.len()];
            report.log_z = e;
        }
        "quadrature" => {
            let (lz, err) =
                crate::exact::model_quadrature(model, contexts.as_ref(), job.beta, job.seed)?;
            report.stderr = err;
            report.ess = vec![f64::NAN; lz.len()];
            report.log_z = lz;
        }
        "ais" | "smc" => {
            log_weights = run_ais(
                model,
                contexts.as_ref(),
                job,
                &cfg,
                &mut report,
                control,
                resume,
                observer,
            )?
        }
        "check" => {
            super::check::run_check(model, contexts.clone(), job, &mut report, control, observer)?
        }
        "pt" => run_pt(
            model,
            contexts.as_ref(),
            job,
            &cfg,
            &mut report,
            control,
            resume,
            observer,
        )?,
        other => {
            return Err(Error::param(
                "method",
                format!("unknown method `{other}` (ais, smc, pt, check, exact, quadrature)"),
            ));
        }
    }
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(LogzRun {
        report,
        contexts,
        shard: log_weights,
    })
}

/// Forward AIS (in batches of contexts, with progress and stop), the
/// reverse pass where exact draws exist, and the warnings that compare them.
#[allow(clippy::too_many_arguments)]
fn run_ais(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    job: &LogzJob,
    cfg: &AisConfig,
    report: &mut LogzReport,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<Option<ShardWeights>> {
    let k = contexts.map_or(1, |c| c.nrows());
    let Setup {
        base,
        energy: problem_energy,
        cond,
        pilot,
    } = setup(model, contexts, job, cfg, control)?;
    if let Some(p) = &pilot {
        report.pilot_rhat = Some(p.rhat).filter(|r| r.is_finite());
    }
    let problem = match cond {
        Some((c, ctx)) => AisProblem::conditional(c, ctx.view(), cfg.particles, &base)?,
        None => AisProblem::new(problem_energy.clone(), &base)?,
    };
    let res = ais::ais_with(&problem, cfg, control, resume, observer)?;
    if !res.complete && res.contexts_done == 0 {
        // A stop in the pilot leaves nothing to resume (the pilot is run
        // again); one in the estimating pass leaves a checkpoint if asked.
        let annealed = res.betas.len() > 1;
        return Err(Error::Interrupted(format!(
            "AIS stopped before any context was done{}",
            match &control.checkpoint {
                Some(p) if annealed => format!(
                    "; state saved to {}, continue with --resume {}",
                    p.display(),
                    p.display()
                ),
                _ if !annealed => " (in the pilot: nothing to resume)".into(),
                _ => String::new(),
            }
        )));
    }
    report.complete = res.complete;
    report.contexts_done = res.contexts_done;
    if !res.complete {
        report.warnings.push(format!(
            "interrupted: log Z of {} of {k} contexts done, the others are NaN{}",
            res.contexts_done,
            control
                .checkpoint
                .as_ref()
                .map_or(String::new(), |p| format!(
                    "; continue with --resume {}",
                    p.display()
                ))
        ));
    }
    report.log_z = res.estimates.iter().map(|e| e.log_z).collect();
    report.stderr = res.estimates.iter().map(|e| e.stderr).collect();
    report.ess = res.estimates.iter().map(|e| e.ess).collect();
    report.bootstrap_stderr = res.bootstrap_stderr.clone();
    report.repeats = res
        .repeats
        .iter()
        .map(|r| r.iter().map(|e| e.log_z).collect())
        .collect();
    report.acceptance = res.acceptance;
    report.divergences = res.divergences;
    report.energy_evals = res.energy_evals;
    report.warnings.extend(res.warnings.iter().cloned());
    if let Some(s) = &res.smc {
        let mut v = serde_json::to_value(s)
            .map_err(|e| Error::param("report", format!("cannot encode: {e}")))?;
        v["moves_per_temp"] = serde_json::json!(cfg.steps_per_temp);
        report.smc = Some(v);
    }
    if cfg.shard.is_some() {
        // A shard's estimates are its own particles'; the merge computes
        // the run's (and its warnings). No reverse pass in shards.
        let smc = cfg.resample_threshold.is_some() || cfg.is_smc();
        let log_z0 = crate::ais::start_log_z(problem_energy.as_ref(), &base);
        // The coverage check, on the pilot pass's particles: the same in
        // every shard, so the merge's (the first shard's) is the run's.
        report
            .warnings
            .extend(coverage_warnings(pilot.as_ref(), &res));
        return Ok(res.complete.then_some(ShardWeights {
            log_weights: res.log_weights,
            smc,
            log_z0,
            context_range: res.context_range,
        }));
    }
    if !res.complete {
        return Ok(None);
    }
    // Reverse AIS from exact draws: an upper bound whose gap to the forward
    // estimate shows mass the forward pass missed.
    let exact_draws = || {
        (job.beta == 1.0)
            .then(|| ais::exact_draws(model, cfg.particles * k, job.seed))
            .flatten()
    };
    let reverse_samples = match &job.reverse_from {
        Some(r) => Some(r.clone()),
        None if job.reverse => {
            if job.beta != 1.0 {
                return Err(Error::param(
                    "reverse",
                    "exact draws are at beta 1: use `reverse_from` for other beta",
                ));
            }
            Some(exact_draws().ok_or_else(|| {
                Error::param("reverse", format!("no exact draws for model `{}`: give `reverse_from` with draws of the target", model.name))
            })?)
        }
        None if !job.no_reverse && !cfg.is_smc() => exact_draws(),
        None => None,
    };
    if let Some(s) = reverse_samples {
        let rev = ais::reverse_ais(&problem, cfg, s.view())?;
        let upper: Vec<f64> = rev.estimates.iter().map(|e| e.log_z).collect();
        let se_up: Vec<f64> = rev.estimates.iter().map(|e| e.stderr).collect();
        for i in 0..upper.len() {
            let gap = upper[i] - report.log_z[i];
            let se = (report.stderr[i].powi(2) + se_up[i].powi(2)).sqrt();
            let at = if k > 1 {
                format!("context {i}: ")
            } else {
                String::new()
            };
            if gap > 3.0 * se {
                report.warnings.push(format!(
                    "{at}forward and reverse AIS disagree: the gap {gap:.4} is {:.1} combined standard errors, so the forward estimate {:.4} misses mass (separated modes?) that its error bar does not show; log Z is likely between it and {:.4}",
                    gap / se,
                    report.log_z[i],
                    upper[i]
                ));
            } else if gap < -3.0 * se {
                report.warnings.push(format!(
                    "{at}the reverse AIS upper bound {:.4} lies {:.1} combined standard errors below the forward estimate {:.4}: the reverse draws may not be draws of this target",
                    upper[i],
                    -gap / se,
                    report.log_z[i]
                ));
            }
        }
        report.log_z_upper = Some(upper);
        report.stderr_upper = Some(se_up);
        report.energy_evals += rev.energy_evals;
    }
    report
        .warnings
        .extend(coverage_warnings(pilot.as_ref(), &res));
    if let Some(ex) = report.exact_log_z {
        let z = (report.log_z[0] - ex) / report.stderr[0];
        if z.abs() > 3.0 {
            report.warnings.push(format!(
                "the estimate is {z:.1} standard errors from the exact log Z {ex:.6}: its error bar is too small (missed modes, too few temperatures or particles)"
            ));
        }
    }
    Ok(None)
}

/// The warning when the pilot's over-dispersed chains settled in regions
/// the annealed particles of the run's pilot pass (256, run whole in every
/// shard) never reached ([`ais::Pilot::uncovered`]). It
/// replaces a warning on the pilot's R-hat alone, which fired on every
/// right SMC run of three suite targets (`results/issue27/warnings.md`).
fn coverage_warnings(pilot: Option<&ais::Pilot>, res: &ais::AisResult) -> Vec<String> {
    let (Some(p), Some((x, lw))) = (pilot, &res.positions) else {
        return Vec::new();
    };
    let missed = p.uncovered(x.view(), lw);
    let Some(&(c, dist)) = missed.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
        return Vec::new();
    };
    vec![format!(
        "{} of the pilot's {} chains, started over-dispersed, settled in regions none of the annealed particles reached (chain {c}: the nearest particle is {dist:.1} of its standard deviations away; pilot R-hat {:.2}): log Z misses the mass there without its error bar showing it; check with parallel tempering (method pt) or more moves per temperature",
        missed.len(),
        p.chain_means.nrows(),
        p.rhat
    )]
}

/// log Z by parallel tempering: the stepping-stone estimate of a PT run
/// from the AIS base (the same [`setup`]) to the target, with its batch-means
/// standard error, Lambda and round trips, checked against the exact value
/// where there is one.
#[allow(clippy::too_many_arguments)]
fn run_pt(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    job: &LogzJob,
    cfg: &AisConfig,
    report: &mut LogzReport,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<()> {
    if model.conditional().is_some() {
        return Err(Error::param(
            "method",
            "pt estimates the log Z of one target: use ais for conditional models (one log Z per context)",
        ));
    }
    let mut config = crate::sampler::SampleConfig::new();
    (
        config.n_chains,
        config.warmup,
        config.draws,
        config.thin,
        config.seed,
        config.beta,
        config.record_energies,
        config.adapt_step_size,
    ) = (
        job.chains,
        job.warmup,
        job.draws,
        1,
        job.seed,
        job.beta,
        false,
        job.kernel_settings.step_size.is_none(),
    );
    let settings = crate::pt::PtSettings::new(job.replicas);
    let energy = model.energy(None)?;
    crate::pt::validate(&config, &settings, energy.dim())?;
    let setup = setup(model, contexts, job, cfg, control)?;
    if let Some(p) = &setup.pilot {
        report.pilot_rhat = Some(p.rhat).filter(|r| r.is_finite());
    }
    // The pilot's base widened to the region its chains started from
    // (a base the user gives is used as it is).
    let base = match (&setup.pilot, job.base_scale) {
        (Some(_), None) => crate::pt::widen_reference(&setup.base)?,
        _ => setup.base.clone(),
    };
    let mut spec = cfg.kernel_spec(energy.as_ref());
    spec.settings.step_size = job.kernel_settings.step_size;
    let out = match resume {
        Some(path) => crate::pt::resume(energy.as_ref(), &base, &spec, path, observer, control)?,
        None => crate::pt::sample(
            energy.as_ref(),
            &base,
            &spec,
            &config,
            &settings,
            None,
            observer,
            control,
        )?,
    };
    let p = &out.stats;
    report.complete = out.complete;
    report.log_z = vec![p.log_z];
    report.stderr = vec![p.log_z_stderr];
    report.ess = vec![f64::NAN];
    report.acceptance = p.acceptance.iter().sum::<f64>() / p.acceptance.len() as f64;
    report.divergences = p.divergences;
    report.energy_evals = p.energy_evals;
    let mut pt = crate::pt::stats_json(p);
    pt["chains"] = serde_json::json!(config.n_chains);
    pt["warmup"] = serde_json::json!(config.warmup);
    pt["draws"] = serde_json::json!(config.draws);
    report.pt = Some(pt);
    report.warnings.extend(crate::pt::warnings(p));
    if !out.complete {
        report.warnings.push(format!(
            "interrupted: the estimate uses the steps run so far{}",
            control
                .checkpoint
                .as_ref()
                .map_or(String::new(), |c| format!(
                    "; continue with --resume {}",
                    c.display()
                ))
        ));
        return Ok(());
    }
    if let Some(ex) = report.exact_log_z {
        let z = (p.log_z - ex) / p.log_z_stderr;
        if z.abs() > 3.0 {
            report.warnings.push(format!(
                "the estimate is {z:.1} standard errors from the exact log Z {ex:.6}: its error bar is too small (too short a run, or chains that do not reach every mode)"
            ));
        }
    }
    Ok(())
}

type CondSetup = Option<(Arc<dyn crate::ConditionalEnergy>, Array2<f64>)>;

/// What AIS anneals: the base, the energy (unconditional), for conditional
/// models the model and contexts, and the pilot that fitted the base.
struct Setup {
    base: Base,
    energy: Arc<dyn Energy>,
    cond: CondSetup,
    pilot: Option<ais::Pilot>,
}

/// Most contexts the base's pilot pools (evenly spaced among all): the base
/// is one Gaussian for all contexts, and 8 chains of each of 64 contexts fit
/// it as well as 8 of each of thousands.
const PILOT_CONTEXTS: usize = 64;

/// The base, the energy to anneal, for conditional models the model and
/// contexts, and the pilot that fitted the base (if one did).
fn setup(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    job: &LogzJob,
    cfg: &AisConfig,
    control: &Control,
) -> Result<Setup> {
    let unconditional = (model.x_dim() == 0)
        .then(|| model.energy(None))
        .transpose()?;
    if let Some(e) = unconditional.filter(|e| e.space() == crate::StateSpace::Binary) {
        let data = job.data.as_ref();
        let base = ais::default_base(
            e.as_ref(),
            cfg.beta,
            cfg.seed,
            data.as_ref().map(|d| d.view()),
        )?;
        return Ok(Setup {
            base,
            energy: e,
            cond: None,
            pilot: None,
        });
    }
    let cond = match (model.conditional(), contexts) {
        (Some(c), Some(ctx)) => Some((c, ctx.clone())),
        (Some(_), None) => {
            return Err(Error::param(
                "context",
                format!("model `{}` is conditional: give contexts", model.name),
            ));
        }
        (None, _) => None,
    };
    let energy: Arc<dyn Energy> = match &cond {
        Some((c, ctx)) => {
            // The pilot sees up to 64 contexts, 8 chains each.
            let k = ctx.nrows();
            let chosen: Vec<usize> = if k <= PILOT_CONTEXTS {
                (0..k).collect()
            } else {
                (0..PILOT_CONTEXTS)
                    .map(|i| i * k / PILOT_CONTEXTS)
                    .collect()
            };
            let rows = Array2::from_shape_fn((chosen.len() * 8, ctx.ncols()), |(r, j)| {
                ctx[[chosen[r / 8], j]]
            });
            Arc::new(crate::Conditioned::new(c.clone(), rows)?)
        }
        None => model.energy(None)?,
    };
    if let Some(s) = job.base_scale {
        let base = Base::gaussian(vec![job.base_mean; energy.dim()], vec![s; energy.dim()])?;
        return Ok(Setup {
            base,
            energy,
            cond,
            pilot: None,
        });
    }
    let pilot_control = Control {
        stop: control.stop.clone(),
        ..Control::default()
    };
    let pilot = ais::pilot_with(energy.as_ref(), cfg.beta, cfg.seed, &pilot_control)?
        .ok_or_else(|| Error::Interrupted("stopped in the pilot that fits the AIS base".into()))?;
    Ok(Setup {
        base: pilot.base.clone(),
        energy,
        cond,
        pilot: Some(pilot),
    })
}
