//! The log Z job: the exact value where the model allows, else the
//! estimators held against each other (`check`) or AIS with its base,
//! reverse AIS where exact draws exist, the checks that compare them, and
//! the report (the CLI's `logz` and `prob`).

use crate::ais::{AisConfig, Schedule, ScheduleChoice};
use crate::error::{Error, Result};
use crate::kernels::{KernelSettings, KernelSpec};
use crate::model::Model;
use crate::run::{Control, Observer};
use ndarray::Array2;
use std::path::Path;

mod anneal;
mod prob;
mod pt;

pub use prob::{check_prob, prob};

/// The settings of a log Z job, with the CLI's defaults ([`LogzJob::default`]).
/// As JSON ([`super::from_json`]), missing fields take the defaults and
/// unknown ones are refused (the arrays `reverse_from` and `data` are not
/// part of it); the kernel's settings are the fields of [`KernelSettings`],
/// flattened in.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LogzJob {
    /// `ais`, `smc` (annealed SMC with resample-move,
    /// [`crate::ais::ScheduleChoice::Smc`]), `pt` (parallel tempering's
    /// stepping-stone estimate), `check` (AIS, SMC and, for one target,
    /// PT, held against each other: the combined estimate only where they
    /// agree), `exact` or `quadrature`; `None`: `check` with `target_se`,
    /// else exact where the model allows (and no reverse pass is asked
    /// for), else `check`, or AIS for a conditional model and with an
    /// option only AIS has (shard, checkpoint, resume, reverse, resample,
    /// repeats, bootstrap, a schedule).
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
    /// Positives (rows of data the model was trained on, n x dim). Binary
    /// models: their base-rate model is the AIS base. Continuous
    /// unconditional models: the pilot that fits the Gaussian base starts
    /// its chains at evenly spaced rows (where a trained EBM's mass is)
    /// instead of over-dispersed ([`crate::ais::pilot_with`]).
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
    /// The shard's acceptance summed exactly (the merge adds them).
    pub accepted: crate::tally::Acceptance,
    /// Evaluations of the pilots every shard runs whole (counted once by the merge).
    pub shared_evals: u64,
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
    /// AIS particles per context (a shard's own: its share of them).
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
    /// What the error bars cannot show (missed modes, disagreement with reverse AIS or exact values, interruptions): `warnings` and
    /// `warning_kinds` in JSON.
    #[serde(flatten)]
    pub warnings: crate::Warnings,
}

impl LogzReport {
    /// A report of `method` on `model` with `k` contexts, its settings from
    /// `cfg`, before any estimate.
    fn new(model: &Model, method: &str, cfg: &AisConfig, k: usize) -> LogzReport {
        LogzReport {
            model: model.name.clone(),
            method: method.into(),
            conditional: model.conditional().is_some(),
            complete: true,
            contexts_done: k,
            log_z: vec![],
            stderr: vec![],
            ess: vec![],
            log_z_upper: None,
            stderr_upper: None,
            exact_log_z: None,
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
            warnings: crate::Warnings::new(),
        }
    }
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
        crate::ais::check_std("base_scale", s)?;
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
    let contexts = contexts_of(model, contexts)?;
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
        } else if ais_only(model, job, control, resume) {
            "ais".into()
        } else {
            "check".into()
        }
    });
    check_method(job, &method)?;
    let start = std::time::Instant::now();
    let mut report = LogzReport::new(model, &method, &cfg, k);
    report.exact_log_z = exact.as_ref().filter(|e| e.len() == 1).map(|e| e[0]);
    let mut log_weights = None;
    match method.as_str() {
        "exact" => {
            let e = exact.ok_or_else(|| Error::param("method", format!("no exact log Z for model `{}` at beta {} (exact covers RBMs with a layer of at most 24 units, closed-form Gaussians, mixtures and funnels, and the ring, at beta 1)", model.name, job.beta)))?;
            check_exact(model, &e)?;
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
            let c = contexts.as_ref();
            let at = anneal::Call { control, resume };
            log_weights = anneal::run_ais(model, c, job, &cfg, &mut report, at, observer)?
        }
        "check" => {
            super::check::run_check(model, contexts.clone(), job, &mut report, control, observer)?
        }
        "pt" => {
            let c = contexts.as_ref();
            let at = anneal::Call { control, resume };
            pt::run_pt(model, c, job, &cfg, &mut report, at, observer)?
        }
        other => {
            return Err(Error::param(
                "method",
                format!("unknown method `{other}` (ais, smc, pt, check, exact, quadrature)"),
            ));
        }
    }
    // A shard's report counts its own particles (its ESS is of them).
    if let Some(w) = &log_weights {
        report.particles = w.log_weights.ncols();
    }
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(LogzRun {
        report,
        contexts,
        shard: log_weights,
    })
}

/// The contexts a run is for: those given (conditional models only), else
/// a conditional model's default contexts.
fn contexts_of(model: &Model, contexts: Option<Array2<f64>>) -> Result<Option<Array2<f64>>> {
    if contexts.is_some() && model.conditional().is_none() {
        return Err(Error::param(
            "context",
            format!("model `{}` is not conditional", model.name),
        ));
    }
    // Checked here, as given: every method (exact included) then reads
    // whole rows of x_dim, and an error names the given shape, not that
    // of the rows a method builds from it.
    if let Some(c) = &contexts {
        crate::energy::check_contexts(c.view(), model.x_dim())?;
    }
    match (model.conditional(), contexts) {
        (Some(_), None) => Ok(Some(model.default_context.clone().ok_or_else(|| {
            Error::param(
                "context",
                format!(
                    "model `{}` is conditional: give contexts (k, {})",
                    model.name,
                    model.x_dim()
                ),
            )
        })?)),
        (_, c) => Ok(c),
    }
}

/// Settings that do not go with `method`: shards outside AIS and SMC, a
/// budget outside `check`, a reverse pass outside whole AIS runs.
/// Whether a run without a method named is AIS rather than `check` (the
/// default where there is no exact answer): a conditional model (a check
/// per context would run SMC on every one), or an option only AIS has
/// (shards, checkpoints, reverse AIS, resampling, repeats, bootstrap, a
/// schedule).
fn ais_only(model: &Model, job: &LogzJob, control: &Control, resume: Option<&Path>) -> bool {
    model.conditional().is_some()
        || job.shard.is_some()
        || control.checkpoint.is_some()
        || resume.is_some()
        || job.reverse
        || job.reverse_from.is_some()
        || job.resample.is_some()
        || job.repeats > 0
        || job.bootstrap > 0
        || job.schedule != LogzJob::default().schedule
}

fn check_method(job: &LogzJob, method: &str) -> Result<()> {
    if job.shard.is_some() && method != "ais" && method != "smc" {
        return Err(Error::param(
            "shard",
            if method == "pt" {
                "shards of log Z are for `method ais` and `method smc`; parallel tempering's stepping-stone log Z is sharded by chains with the sample job (`sampler pt`, `shard`), whose merged report has it (`pt.log_z`)".to_string()
            } else {
                format!("shards are for `method ais` and `method smc` (this run is {method})")
            },
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
    Ok(())
}

/// Refuses an exact log Z that is not finite (parameters that overflow).
fn check_exact(model: &Model, e: &[f64]) -> Result<()> {
    let Some(i) = e.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    Err(Error::param(
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
    ))
}
