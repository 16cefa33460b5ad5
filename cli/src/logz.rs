//! `boltz logz` and `boltz prob`.

use super::commands::read_matrix;
use boltz::ais::{self, AisConfig, AisProblem, Base, Schedule, ScheduleChoice};
use boltz::error::{Error, Result};
use boltz::kernels::KernelSpec;
use boltz::model::Model;
use boltz::run::{Control, NoObserver};
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
    /// HMC leapfrog steps.
    #[arg(long, default_value_t = 5)]
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
    /// Also run reverse AIS from exact draws (suite Gaussians, mixtures,
    /// funnel) for an upper bound.
    #[arg(long)]
    pub reverse: bool,
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
}

/// The settings an AIS checkpoint must match: everything but where files go.
fn ais_settings(a: &LogzArgs) -> String {
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
    bootstrap_stderr: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    repeats: Vec<Vec<f64>>,
    particles: usize,
    temps: usize,
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
}

fn run(args: &LogzArgs) -> Result<Outcome> {
    let model = boltz::model::load(&args.model)?;
    let contexts = args
        .context
        .as_deref()
        .map(|p| read_matrix(p, "context"))
        .transpose()?;
    if let Some(c) = &contexts
        && model.conditional().is_none()
    {
        let _ = c;
        return Err(Error::param(
            "--context",
            format!("model `{}` is not conditional", model.name),
        ));
    }
    let cfg = config(args)?;
    let exact = boltz::exact::model_log_z(&model, contexts.as_ref(), args.beta)?;
    let method = args.method.clone().unwrap_or_else(|| {
        if exact.is_some() && !args.reverse && args.reverse_from.is_none() {
            "exact".into()
        } else {
            "ais".into()
        }
    });
    let start = std::time::Instant::now();
    let k = contexts.as_ref().map_or(1, |c| c.nrows());
    let mut report = LogzReport {
        model: model.name.clone(),
        method: method.clone(),
        log_z: vec![],
        stderr: vec![],
        ess: vec![],
        log_z_upper: None,
        stderr_upper: None,
        exact_log_z: exact.as_ref().filter(|e| e.len() == 1).map(|e| e[0]),
        bootstrap_stderr: None,
        repeats: vec![],
        particles: cfg.particles,
        temps: cfg.temps,
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
            report.ess = vec![f64::NAN; e.len()];
            report.log_z = e;
        }
        "quadrature" => {
            let (lz, err) =
                boltz::exact::model_quadrature(&model, contexts.as_ref(), args.beta, args.seed)?;
            report.stderr = err;
            report.ess = vec![f64::NAN; lz.len()];
            report.log_z = lz;
        }
        "ais" => {
            let (base, problem_energy, cond) = setup(&model, contexts.as_ref(), args, &cfg)?;
            let problem = match cond {
                Some((c, ctx)) => AisProblem::conditional(c, ctx.view(), cfg.particles, &base)?,
                None => AisProblem::new(problem_energy.clone(), &base)?,
            };
            let control = Control {
                checkpoint: args.checkpoint.clone(),
                checkpoint_every: args.checkpoint_every,
                stop: Some(super::signals().stop.clone()),
                settings: ais_settings(args),
            };
            let res = ais::ais_with(
                &problem,
                &cfg,
                &control,
                args.resume.as_deref(),
                &mut NoObserver,
            )?;
            if !res.complete {
                return Err(Error::Interrupted(format!(
                    "AIS stopped at temperature {} of {}{}",
                    res.betas.len() - 1,
                    cfg.temps,
                    args.checkpoint.as_ref().map_or(String::new(), |p| format!(
                        "; state saved to {}, continue with --resume {}",
                        p.display(),
                        p.display()
                    ))
                )));
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
            report.warnings = res.warnings.clone();
            let reverse_samples = match &args.reverse_from {
                Some(p) => Some(read_matrix(p, "reverse-from")?),
                None if args.reverse => Some(ais::exact_draws(&model, cfg.particles * k, args.seed).ok_or_else(|| {
                    Error::param("--reverse", format!("no exact draws for model `{}`: give --reverse-from with draws of the target", model.name))
                })?),
                None => None,
            };
            if let Some(s) = reverse_samples {
                if args.beta != 1.0 && args.reverse {
                    return Err(Error::param(
                        "--reverse",
                        "exact draws are at beta 1: use --reverse-from for other beta",
                    ));
                }
                let rev = ais::reverse_ais(&problem, &cfg, s.view())?;
                report.log_z_upper = Some(rev.estimates.iter().map(|e| e.log_z).collect());
                report.stderr_upper = Some(rev.estimates.iter().map(|e| e.stderr).collect());
                report.energy_evals += rev.energy_evals;
            }
        }
        other => {
            return Err(Error::param(
                "--method",
                format!("unknown method `{other}` (ais, exact, quadrature)"),
            ));
        }
    }
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(Outcome { report })
}

type CondSetup = Option<(Arc<dyn boltz::ConditionalEnergy>, Array2<f64>)>;

/// The base, the energy to anneal and, for conditional models, the model and contexts.
fn setup(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    args: &LogzArgs,
    cfg: &AisConfig,
) -> Result<(Base, Arc<dyn Energy>, CondSetup)> {
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
        return Ok((base, e, None));
    }
    let cond = match model.conditional() {
        Some(c) => {
            let ctx = contexts
                .cloned()
                .or_else(|| model.default_context.clone())
                .ok_or_else(|| {
                    Error::param(
                        "--context",
                        format!(
                            "model `{}` is conditional: give contexts (k, x_dim)",
                            model.name
                        ),
                    )
                })?;
            Some((c, ctx))
        }
        None => None,
    };
    let energy: Arc<dyn Energy> = match &cond {
        Some((c, ctx)) => {
            // The pilot sees every context, 8 chains each.
            let rows =
                Array2::from_shape_fn((ctx.nrows() * 8, ctx.ncols()), |(r, j)| ctx[[r / 8, j]]);
            Arc::new(boltz::Conditioned::new(c.clone(), rows)?)
        }
        None => model.energy(None)?,
    };
    let base = match args.base_scale {
        Some(s) => Base::gaussian(vec![args.base_mean; energy.dim()], vec![s; energy.dim()])?,
        None => ais::pilot_base(energy.as_ref(), cfg.beta, cfg.seed)?,
    };
    Ok((base, energy, cond))
}

pub fn logz(args: &LogzArgs, json: bool) -> Result<()> {
    let out = run(args)?;
    let r = &out.report;
    if json {
        let mut v = serde_json::to_value(r).expect("serialisable");
        if args.context.is_none() {
            // One context: scalars, as the docs promise.
            for key in ["log_z", "stderr", "ess", "log_z_upper", "stderr_upper"] {
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
        println!("{}", serde_json::to_string(&v).expect("serialisable"));
        return Ok(());
    }
    println!("log Z of {} by {} ({:.2} s)", r.model, r.method, r.wall_s);
    for (i, lz) in r.log_z.iter().enumerate() {
        let mut line = format!(
            "  {}log Z = {lz:.6} +- {:.6}",
            if r.log_z.len() > 1 {
                format!("context {i}: ")
            } else {
                String::new()
            },
            r.stderr[i]
        );
        if r.method == "ais" {
            line.push_str(&format!("  (ESS {:.1} of {})", r.ess[i], r.particles));
        }
        if let Some(u) = &r.log_z_upper {
            line.push_str(&format!("  upper bound {:.6}, gap {:.6}", u[i], u[i] - lz));
        }
        println!("{line}");
    }
    if let (Some(ex), true) = (r.exact_log_z, r.method != "exact") {
        let err = r.log_z[0] - ex;
        println!(
            "  exact log Z = {ex:.6}: error {err:+.6} ({:.2} standard errors)",
            err / r.stderr[0]
        );
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
    Ok(())
}

pub fn prob(
    args: &LogzArgs,
    points: &std::path::Path,
    out: &std::path::Path,
    report: Option<&std::path::Path>,
) -> Result<()> {
    let model = boltz::model::load(&args.model)?;
    let cond = model.conditional().ok_or_else(|| {
        Error::param(
            "--model",
            format!("`{}` is not conditional: prob needs F(x, y)", model.name),
        )
    })?;
    let Some(ctx_path) = args.context.as_deref() else {
        return Err(Error::param("--context", "prob needs contexts (k, x_dim)"));
    };
    let y = read_matrix(points, "points")?;
    let ctx = read_matrix(ctx_path, "context")?;
    if y.ncols() != cond.y_dim() {
        return Err(Error::shape(
            format!("points ({})", points.display()),
            format!("(n, {})", cond.y_dim()),
            format!("{:?}", y.shape()),
        ));
    }
    let o = run(args)?;
    let logp = ais::log_prob(
        cond.as_ref(),
        ctx.view(),
        y.view(),
        &o.report.log_z,
        args.beta,
    )?;
    io::write_npy(
        out,
        &[logp.nrows(), logp.ncols()],
        logp.as_slice().expect("standard layout"),
    )?;
    if let Some(path) = report {
        io::write_json_atomic(path, &o.report)?;
    }
    let se = Array1::from(o.report.stderr.clone());
    println!(
        "log P(y|x) of {} points under {} contexts by {} -> {} (log Z standard errors up to {:.2e})",
        y.nrows(),
        ctx.nrows(),
        o.report.method,
        out.display(),
        se.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}
