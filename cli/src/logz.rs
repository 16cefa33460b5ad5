//! `boltz logz` and `boltz prob`.

use super::commands::{Bar, read_matrix};
use boltz::ais::{self, AisConfig, AisProblem, Base, Schedule, ScheduleChoice};
use boltz::error::{Error, Result};
use boltz::kernels::KernelSpec;
use boltz::model::Model;
use boltz::run::Control;
use boltz::{Energy, io};
use ndarray::{Array1, Array2};
use std::path::PathBuf;
use std::sync::Arc;

/// Options shared by `logz` and `prob`.
#[derive(clap::Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct LogzArgs {
    /// A suite target name or a model file (JSON).
    #[arg(long)]
    pub model: String,
    /// `ais`, `exact` (enumeration, closed form or radial formula) or
    /// `quadrature` (1-2 dims); default: exact where the model allows, else AIS.
    #[arg(long)]
    pub method: Option<String>,
    /// AIS particles (per context).
    #[arg(long, default_value_t = 1024)]
    pub particles: usize,
    /// AIS temperatures (annealing steps).
    #[arg(long, default_value_t = 1000)]
    pub temps: usize,
    /// linear, geometric, sigmoid, piecewise or adaptive.
    #[arg(long, default_value = "sigmoid")]
    pub schedule: String,
    /// Target conditional ESS per step of the adaptive schedule's pilot.
    #[arg(long, default_value_t = 0.995)]
    pub cess: f64,
    /// mala, hmc, rwm or gibbs (default: gibbs for binary models, else mala).
    #[arg(long)]
    pub kernel: Option<String>,
    /// HMC leapfrog steps (the same default as `sample`).
    #[arg(long, default_value_t = 16)]
    pub leapfrog: usize,
    /// Transitions per temperature.
    #[arg(long, default_value_t = 1)]
    pub steps_per_temp: usize,
    /// A fixed step size (default: tuned per temperature by a pilot run, then frozen).
    #[arg(long)]
    pub step_size: Option<f64>,
    /// Base N(M, S^2 I) with this S (default: a Gaussian fitted by a short
    /// MCMC pilot; binary models: the base-rate model of --data if given,
    /// else the RBM with its weights set to zero).
    #[arg(long)]
    pub base_scale: Option<f64>,
    /// Mean M of the base N(M, S^2 I) (every coordinate; with --base-scale).
    #[arg(long, default_value_t = 0.0, requires = "base_scale")]
    pub base_mean: f64,
    /// Require reverse AIS from exact draws (an error where the model has
    /// none). By default reverse AIS runs whenever exact draws exist
    /// (Gaussians, mixtures, the funnel; at beta 1) and a forward/reverse
    /// gap over 3 combined standard errors is warned about.
    #[arg(long, conflicts_with = "no_reverse")]
    pub reverse: bool,
    /// Skip the default reverse AIS pass.
    #[arg(long)]
    pub no_reverse: bool,
    /// Reverse AIS from these draws of the target, (particles, dim) npy.
    #[arg(long)]
    pub reverse_from: Option<PathBuf>,
    /// Resample when ESS/N falls below this (annealed SMC).
    #[arg(long)]
    pub resample: Option<f64>,
    /// Independent repeats, reported separately.
    #[arg(long, default_value_t = 0)]
    pub repeats: usize,
    /// Bootstrap resamples for a second standard error.
    #[arg(long, default_value_t = 0)]
    pub bootstrap: usize,
    /// Contexts of a conditional model, (k, x_dim) npy: one log Z(x) per row.
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Inverse temperature.
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Save the AIS state here (atomically) every --checkpoint-every
    /// temperatures and on SIGINT / SIGTERM.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Temperatures between checkpoints (0: only on interruption).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Continue the AIS run saved in this checkpoint (same settings required).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Binary models: positives (n, dim) npy whose base-rate model is the AIS base.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub output: crate::OutputArgs,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The settings an AIS checkpoint must match: everything but where files go.
fn ais_settings(a: &LogzArgs, model: &Model) -> String {
    use super::commands::file_fingerprint as fp;
    format!(
        "model_fingerprint={} context_file={} data_file={} {}",
        model.fingerprint(),
        fp(a.context.as_deref()),
        fp(a.data.as_deref()),
        ais_flags(a)
    )
}

fn ais_flags(a: &LogzArgs) -> String {
    format!(
        "model={} method={:?} particles={} temps={} schedule={} cess={} kernel={:?} leapfrog={} steps_per_temp={} step_size={:?} base_scale={:?} base_mean={} resample={:?} context={:?} beta={} seed={} data={:?}",
        a.model,
        a.method,
        a.particles,
        a.temps,
        a.schedule,
        a.cess,
        a.kernel,
        a.leapfrog,
        a.steps_per_temp,
        a.step_size,
        a.base_scale,
        a.base_mean,
        a.resample,
        a.context,
        a.beta,
        a.seed,
        a.data
    )
}

/// The result printed by `logz` (and written by `prob --report`).
#[derive(serde::Serialize)]
struct LogzReport {
    model: String,
    method: String,
    /// Whether the model is conditional: then `log_z` and its companions
    /// are arrays (one per context) in JSON, else numbers.
    conditional: bool,
    complete: bool,
    contexts_done: usize,
    log_z: Vec<f64>,
    stderr: Vec<f64>,
    ess: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_z_upper: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stderr_upper: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exact_log_z: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pilot_rhat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bootstrap_stderr: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    repeats: Vec<Vec<f64>>,
    particles: usize,
    temps: usize,
    seed: u64,
    beta: f64,
    acceptance: f64,
    divergences: usize,
    energy_evals: u64,
    wall_s: f64,
    warnings: Vec<String>,
}

/// The kernel asked for (`None`: the model's default). AIS's HMC runs
/// without step jitter.
fn parse_kernel(args: &LogzArgs) -> Result<Option<KernelSpec>> {
    let Some(name) = &args.kernel else {
        return Ok(None);
    };
    let mut spec = KernelSpec::new(name)?.leapfrog(args.leapfrog);
    spec.jitter = 0.0;
    spec.build()?;
    Ok(Some(spec))
}

fn config(args: &LogzArgs) -> Result<AisConfig> {
    if let Some(s) = args.step_size {
        boltz::error::check_positive("--step-size", s)?;
    }
    let schedule = match args.schedule.as_str() {
        "adaptive" => ScheduleChoice::Adaptive { cess: args.cess },
        s => ScheduleChoice::Fixed(Schedule::parse(s)?),
    };
    let c = AisConfig {
        particles: args.particles,
        temps: args.temps,
        schedule,
        kernel: parse_kernel(args)?,
        steps_per_temp: args.steps_per_temp,
        step_size: args.step_size,
        beta: args.beta,
        seed: args.seed,
        resample_threshold: args.resample,
        repeats: args.repeats,
        bootstrap: args.bootstrap,
        pilot_particles: 256,
    };
    c.validate()?;
    if let Some(s) = args.base_scale {
        boltz::error::check_positive("--base-scale", s)?;
    }
    Ok(c)
}

struct Outcome {
    report: LogzReport,
    /// The contexts the log Z are for (conditional models).
    contexts: Option<Array2<f64>>,
}

fn nan_vec(n: usize) -> Vec<f64> {
    vec![f64::NAN; n]
}

fn run(args: &LogzArgs) -> Result<Outcome> {
    let model = boltz::model::load(&args.model)?;
    let contexts = args
        .context
        .as_deref()
        .map(|p| read_matrix(p, "context"))
        .transpose()?;
    if contexts.is_some() && model.conditional().is_none() {
        return Err(Error::param(
            "--context",
            format!("model `{}` is not conditional", model.name),
        ));
    }
    let contexts = match (model.conditional(), contexts) {
        (Some(_), None) => Some(model.default_context.clone().ok_or_else(|| {
            Error::param(
                "--context",
                format!(
                    "model `{}` is conditional: give contexts (k, {})",
                    model.name,
                    model.x_dim()
                ),
            )
        })?),
        (_, c) => c,
    };
    let cfg = config(args)?;
    // The exact value decides the default method and is reported for one
    // context; AIS over many contexts does not wait for it.
    let k = contexts.as_ref().map_or(1, |c| c.nrows());
    let need_exact = args.method.as_deref() != Some("ais") || k == 1;
    let exact = if need_exact {
        boltz::exact::model_log_z(&model, contexts.as_ref(), args.beta)?
    } else {
        None
    };
    let method = args.method.clone().unwrap_or_else(|| {
        if exact.is_some() && !args.reverse && args.reverse_from.is_none() {
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
    match method.as_str() {
        "exact" => {
            let e = exact.ok_or_else(|| Error::param("--method", format!("no exact log Z for model `{}` at beta {} (exact covers RBMs with a layer of at most 24 units, closed-form Gaussians, mixtures and funnels, and the ring, at beta 1)", model.name, args.beta)))?;
            report.stderr = vec![0.0; e.len()];
            report.ess = nan_vec(e.len());
            report.log_z = e;
        }
        "quadrature" => {
            let (lz, err) =
                boltz::exact::model_quadrature(&model, contexts.as_ref(), args.beta, args.seed)?;
            report.stderr = err;
            report.ess = nan_vec(lz.len());
            report.log_z = lz;
        }
        "ais" => run_ais(&model, contexts.as_ref(), args, &cfg, &mut report)?,
        other => {
            return Err(Error::param(
                "--method",
                format!("unknown method `{other}` (ais, exact, quadrature)"),
            ));
        }
    }
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(Outcome { report, contexts })
}

/// Forward AIS (in batches of contexts, with progress and stop), the
/// reverse pass where exact draws exist, and the warnings that compare them.
fn run_ais(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    args: &LogzArgs,
    cfg: &AisConfig,
    report: &mut LogzReport,
) -> Result<()> {
    let k = contexts.map_or(1, |c| c.nrows());
    let Setup {
        base,
        energy: problem_energy,
        cond,
        pilot,
    } = setup(model, contexts, args, cfg)?;
    if let Some(p) = &pilot {
        report.pilot_rhat = Some(p.rhat).filter(|r| r.is_finite());
    }
    let problem = match cond {
        Some((c, ctx)) => AisProblem::conditional(c, ctx.view(), cfg.particles, &base)?,
        None => AisProblem::new(problem_energy.clone(), &base)?,
    };
    let control = Control {
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: args.checkpoint_every,
        stop: Some(super::signals().stop.clone()),
        settings: ais_settings(args, model),
    };
    // One run per checkpoint file at a time.
    let _lock = match &args.checkpoint {
        Some(p) => Some(io::FileLock::acquire(p, Some(&super::signals().stop))?),
        None => None,
    };
    let mut bar = Bar::new(args.quiet, cfg.temps as u64);
    let res = ais::ais_with(&problem, cfg, &control, args.resume.as_deref(), &mut bar)
        .map_err(|e| e.for_flag("--resume"));
    bar.finish();
    let res = res?;
    if !res.complete && res.contexts_done == 0 {
        // A stop in the pilot leaves nothing to resume (the pilot is run
        // again); one in the estimating pass leaves a checkpoint if asked.
        let annealed = res.betas.len() > 1;
        return Err(Error::Interrupted(format!(
            "AIS stopped before any context was done{}",
            match &args.checkpoint {
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
            args.checkpoint.as_ref().map_or(String::new(), |p| format!(
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
    if !res.complete {
        return Ok(());
    }
    // Reverse AIS from exact draws: an upper bound whose gap to the forward
    // estimate shows mass the forward pass missed.
    let exact_draws = || {
        (args.beta == 1.0)
            .then(|| ais::exact_draws(model, cfg.particles * k, args.seed))
            .flatten()
    };
    let reverse_samples = match &args.reverse_from {
        Some(p) => Some(read_matrix(p, "reverse-from")?),
        None if args.reverse => {
            if args.beta != 1.0 {
                return Err(Error::param(
                    "--reverse",
                    "exact draws are at beta 1: use --reverse-from for other beta",
                ));
            }
            Some(exact_draws().ok_or_else(|| {
                Error::param("--reverse", format!("no exact draws for model `{}`: give --reverse-from with draws of the target", model.name))
            })?)
        }
        None if !args.no_reverse => exact_draws(),
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
    } else if let Some(p) = &pilot {
        // No reverse check: the pilot's over-dispersed chains are the only
        // witness of separated modes.
        report.warnings.extend(p.warnings.iter().cloned());
    }
    if let Some(ex) = report.exact_log_z {
        let z = (report.log_z[0] - ex) / report.stderr[0];
        if z.abs() > 3.0 {
            report.warnings.push(format!(
                "the estimate is {z:.1} standard errors from the exact log Z {ex:.6}: its error bar is too small (missed modes, too few temperatures or particles)"
            ));
        }
    }
    Ok(())
}

type CondSetup = Option<(Arc<dyn boltz::ConditionalEnergy>, Array2<f64>)>;

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
    args: &LogzArgs,
    cfg: &AisConfig,
) -> Result<Setup> {
    let unconditional = (model.x_dim() == 0)
        .then(|| model.energy(None))
        .transpose()?;
    if let Some(e) = unconditional.filter(|e| e.space() == boltz::StateSpace::Binary) {
        let data = args
            .data
            .as_deref()
            .map(|p| read_matrix(p, "data"))
            .transpose()?;
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
                "--context",
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
            Arc::new(boltz::Conditioned::new(c.clone(), rows)?)
        }
        None => model.energy(None)?,
    };
    if let Some(s) = args.base_scale {
        let base = Base::gaussian(vec![args.base_mean; energy.dim()], vec![s; energy.dim()])?;
        return Ok(Setup {
            base,
            energy,
            cond,
            pilot: None,
        });
    }
    let control = Control {
        stop: Some(super::signals().stop.clone()),
        ..Control::default()
    };
    let pilot = ais::pilot_with(energy.as_ref(), cfg.beta, cfg.seed, &control)?
        .ok_or_else(|| Error::Interrupted("stopped in the pilot that fits the AIS base".into()))?;
    Ok(Setup {
        base: pilot.base.clone(),
        energy,
        cond,
        pilot: Some(pilot),
    })
}

/// The report as JSON: per-context arrays for conditional models, numbers
/// otherwise (NaN becomes null).
fn report_json(r: &LogzReport) -> Result<serde_json::Value> {
    let mut v = crate::json_value(r)?;
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

/// The run's inputs (files), which no output may overwrite.
fn inputs(args: &LogzArgs) -> Vec<&std::path::Path> {
    [
        args.context.as_deref(),
        args.data.as_deref(),
        args.reverse_from.as_deref(),
        args.resume.as_deref(),
        crate::model_input(&args.model),
    ]
    .into_iter()
    .flatten()
    .collect()
}

pub fn logz(args: &LogzArgs) -> Result<()> {
    let mut outputs = io::Outputs::new(&inputs(args));
    args.output.declare(&mut outputs)?;
    if let Some(c) = &args.checkpoint {
        outputs.reserve("--checkpoint", c)?;
    }
    let out = run(args)?;
    let r = &out.report;
    let v = report_json(r)?;
    let text = args.output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if !text {
        return Ok(());
    }
    println!("log Z of {} by {} ({:.2} s)", r.model, r.method, r.wall_s);
    let many = r.log_z.len() > 1;
    let shown = if many { r.log_z.len().min(20) } else { 1 };
    for (i, lz) in r.log_z.iter().enumerate().take(shown) {
        let mut line = format!(
            "  {}log Z = {lz:.6} +- {:.6}",
            if many {
                format!("context {i}: ")
            } else {
                String::new()
            },
            r.stderr[i]
        );
        if r.method == "ais" {
            line.push_str(&format!("  (ESS {:.1} of {})", r.ess[i], r.particles));
        }
        if let Some(b) = &r.bootstrap_stderr {
            line.push_str(&format!("  bootstrap se {:.6}", b[i]));
        }
        if let Some(u) = &r.log_z_upper {
            line.push_str(&format!(
                "\n  {}reverse AIS upper bound {:.6} +- {:.6}, gap {:.6}",
                if many { "  " } else { "" },
                u[i],
                r.stderr_upper.as_ref().map_or(f64::NAN, |s| s[i]),
                u[i] - lz
            ));
        }
        println!("{line}");
    }
    if r.log_z.len() > shown {
        println!(
            "  ... {} more contexts (--json or --report for all)",
            r.log_z.len() - shown
        );
    }
    for (j, rep) in r.repeats.iter().enumerate() {
        let vals: Vec<String> = rep.iter().take(shown).map(|v| format!("{v:.6}")).collect();
        println!("  repeat {}: log Z = {}", j + 1, vals.join(", "));
    }
    if !r.repeats.is_empty() && !many {
        let all: Vec<f64> = std::iter::once(r.log_z[0])
            .chain(r.repeats.iter().map(|x| x[0]))
            .collect();
        let n = all.len() as f64;
        let mean = all.iter().sum::<f64>() / n;
        let sd = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        println!(
            "  over {} runs: mean {mean:.6}, sd {sd:.6} (compare with the standard error)",
            all.len()
        );
    }
    if let (Some(ex), true) = (r.exact_log_z, r.method != "exact") {
        let err = r.log_z[0] - ex;
        println!(
            "  exact log Z = {ex:.6}: error {err:+.6} ({:.2} standard errors)",
            err / r.stderr[0]
        );
    }
    super::commands::print_warnings(&r.warnings);
    Ok(())
}

/// `boltz prob`: log P(y|x) of points under every context (k, N), under
/// their own contexts (`--paired`, (N,)), or log P(y) under an unconditional
/// model (N,).
pub fn prob(
    args: &LogzArgs,
    points: &std::path::Path,
    out: &std::path::Path,
    paired: bool,
) -> Result<()> {
    let mut ins = inputs(args);
    ins.push(points);
    let mut outputs = io::Outputs::new(&ins);
    outputs.declare("--out", out)?;
    args.output.declare(&mut outputs)?;
    if let Some(c) = &args.checkpoint {
        outputs.reserve("--checkpoint", c)?;
    }
    let model = boltz::model::load(&args.model)?;
    if model.conditional().is_some() && args.context.is_none() {
        return Err(Error::param(
            "--context",
            format!(
                "model `{}` is conditional: prob needs contexts (k, {})",
                model.name,
                model.x_dim()
            ),
        ));
    }
    if paired && model.conditional().is_none() {
        return Err(Error::param(
            "--paired",
            format!(
                "model `{}` is not conditional: its log P(y) is one per point already",
                model.name
            ),
        ));
    }
    let y = read_matrix(points, "points")?;
    if y.ncols() != model.dim() {
        return Err(Error::shape(
            format!("--points ({})", points.display()),
            format!("(n, {})", model.dim()),
            format!("{:?}", y.shape()),
        ));
    }
    if paired {
        let ctx = args
            .context
            .as_deref()
            .ok_or_else(|| Error::param("--paired", "needs contexts (--context)"))?;
        let k = read_matrix(ctx, "context")?.nrows();
        if k != y.nrows() {
            return Err(Error::shape(
                "--paired",
                format!("as many contexts as points ({})", y.nrows()),
                format!("{k} contexts"),
            ));
        }
    }
    let o = run(args)?;
    let logp: ndarray::ArrayD<f64> = match (model.conditional(), &o.contexts) {
        (Some(c), Some(ctx)) if paired => {
            ais::log_prob_paired(c.as_ref(), ctx.view(), y.view(), &o.report.log_z, args.beta)?
                .into_dyn()
        }
        (Some(c), Some(ctx)) => {
            ais::log_prob(c.as_ref(), ctx.view(), y.view(), &o.report.log_z, args.beta)?.into_dyn()
        }
        _ => {
            let e = model.energy(None)?;
            ais::log_prob_unconditional(e.as_ref(), y.view(), o.report.log_z[0], args.beta)?
                .into_dyn()
        }
    };
    outputs.stage_array(out, &logp)?;
    let mut v = report_json(&o.report)?;
    v["points"] = serde_json::json!(y.nrows());
    v["paired"] = serde_json::json!(paired);
    v["out"] = serde_json::json!(out.display().to_string());
    v["out_shape"] = serde_json::json!(logp.shape());
    let text = args.output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if !text {
        return Ok(());
    }
    let se = Array1::from(o.report.stderr.clone());
    println!(
        "log P of {} points{} by {} -> {} {:?} (log Z standard errors up to {:.2e})",
        y.nrows(),
        match (&o.contexts, paired) {
            (Some(c), false) => format!(" under {} contexts", c.nrows()),
            (Some(_), true) => " each under its own context".to_string(),
            (None, _) => String::new(),
        },
        o.report.method,
        out.display(),
        logp.shape(),
        se.iter().copied().fold(0.0, f64::max)
    );
    super::commands::print_warnings(&o.report.warnings);
    Ok(())
}
