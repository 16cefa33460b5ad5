//! `boltz logz` and `boltz prob`.

use super::commands::{Bar, read_matrix};
use boltz::error::{Error, Result};
use boltz::io;
use boltz::jobs::LogzJob;
use boltz::jobs::logz::report_json;
use boltz::model::Model;
use boltz::run::Control;
use ndarray::{Array1, Array2};
use std::path::PathBuf;

/// Options shared by `logz` and `prob`.
#[derive(clap::Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct LogzArgs {
    /// A suite target name or a model file (JSON).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub precision: crate::PrecisionArg,
    /// `ais`, `smc` (annealed SMC with resample-move: temperatures chosen
    /// on the fly, steps re-tuned at each), `pt` (parallel tempering,
    /// stepping-stone estimate), `check` (AIS, SMC and PT held against
    /// each other by a chi-square test: their combined estimate where they
    /// agree, none where they do not), `exact` (enumeration, closed form
    /// or radial formula) or `quadrature` (1-2 dims); default: check with
    /// --target-se, else exact where the model allows, else check (AIS
    /// for a conditional model and with an option only AIS has: --shard,
    /// --checkpoint, --resume, --reverse, --reverse-from, --resample,
    /// --repeats, --bootstrap, --schedule).
    #[arg(long)]
    pub method: Option<String>,
    /// check: double the particles (and PT's draws) each round until the
    /// estimators agree with a standard error at most this.
    #[arg(long)]
    pub target_se: Option<f64>,
    /// check with --target-se: start no round that would end past this
    /// many seconds.
    #[arg(long, requires = "target_se")]
    pub max_seconds: Option<f64>,
    /// pt: replicas per chain.
    #[arg(long, default_value_t = 16)]
    pub replicas: usize,
    /// pt: chains.
    #[arg(long, default_value_t = 16)]
    pub chains: usize,
    /// pt: warm-up steps (step sizes and temperatures adapted).
    #[arg(long, default_value_t = 2000)]
    pub warmup: usize,
    /// pt: steps after warm-up whose states enter the estimate.
    #[arg(long, default_value_t = 8000)]
    pub draws: usize,
    /// AIS and SMC particles (per context).
    #[arg(long, default_value_t = 1024)]
    pub particles: usize,
    /// AIS temperatures (annealing steps); smc: the most it may choose.
    #[arg(long, default_value_t = 1000)]
    pub temps: usize,
    /// AIS: linear, geometric, sigmoid, piecewise or adaptive.
    #[arg(long, default_value = "sigmoid")]
    pub schedule: String,
    /// Target conditional ESS per temperature: of the adaptive schedule's
    /// pilot (default 0.995), of smc's temperatures (default 0.99).
    #[arg(long)]
    pub cess: Option<f64>,
    #[arg(long, help = crate::kernel_args::kernel_help())]
    pub kernel: Option<String>,
    #[command(flatten)]
    pub kernel_args: crate::kernel_args::KernelArgs,
    /// Transitions per temperature (default 1; smc: 5 moves).
    #[arg(long)]
    pub steps_per_temp: Option<usize>,
    /// smc: independent islands the particles are split into (default 8);
    /// the standard error is the larger of their genealogy estimate and
    /// their spread.
    #[arg(long)]
    pub islands: Option<usize>,
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
    /// AIS: run only shard I of M (0-based) of every context's particles,
    /// with the streams they have in the whole run (the pilot runs whole in
    /// every shard); write the log-weights to --shard-out and join the
    /// shards with `boltz merge`, which reports the whole run's log Z.
    #[arg(long, value_name = "I/M", requires = "shard_out")]
    pub shard: Option<String>,
    /// The shard file (log-weights and the run's settings).
    #[arg(long, requires = "shard")]
    pub shard_out: Option<PathBuf>,
    /// Positives (n, dim) npy, the data the model was trained on. Binary
    /// models: their base-rate model is the AIS base. Continuous models:
    /// the pilot that fits the base starts at them (a trained EBM's mass
    /// sits in wells around its data that chains from elsewhere may never
    /// find).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub output: crate::OutputArgs,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The settings an AIS checkpoint or shard file stores and a resume or
/// merge must match: the job itself (every setting, the kernel's among
/// them), the model's fingerprint and the input files' fingerprints; not
/// where outputs go. A shard file's leave the shard out (the shards of one
/// run share them); a checkpoint's keep it (it belongs to its shard).
fn ais_settings(
    a: &LogzArgs,
    job: &LogzJob,
    model: &Model,
    with_shard: bool,
    extra: &[(&str, String)],
) -> Result<String> {
    use super::commands::file_fingerprint as fp;
    let mut job = job.clone();
    if !with_shard {
        job.shard = None;
    }
    // The arrays are not part of the job's JSON: their files are inputs.
    (job.data, job.reverse_from) = (None, None);
    let mut inputs = vec![
        ("context", fp(a.context.as_deref())),
        ("data", fp(a.data.as_deref())),
        ("reverse_from", fp(a.reverse_from.as_deref())),
    ];
    inputs.extend(extra.iter().cloned());
    boltz::jobs::run_settings(&job, model, &inputs)
}

/// The job the flags describe (files read).
fn job(args: &LogzArgs) -> Result<LogzJob> {
    Ok(LogzJob {
        method: args.method.clone(),
        particles: args.particles,
        temps: args.temps,
        schedule: args.schedule.clone(),
        cess: args.cess,
        kernel: args.kernel.clone(),
        kernel_settings: args.kernel_args.settings()?,
        steps_per_temp: args.steps_per_temp,
        islands: args.islands,
        base_scale: args.base_scale,
        base_mean: args.base_mean,
        reverse: args.reverse,
        no_reverse: args.no_reverse,
        reverse_from: args
            .reverse_from
            .as_deref()
            .map(|p| read_matrix(p, "reverse-from"))
            .transpose()?,
        resample: args.resample,
        repeats: args.repeats,
        bootstrap: args.bootstrap,
        beta: args.beta,
        seed: args.seed,
        data: args
            .data
            .as_deref()
            .map(|p| read_matrix(p, "data"))
            .transpose()?,
        target_se: args.target_se,
        max_seconds: args.max_seconds,
        replicas: args.replicas,
        chains: args.chains,
        warmup: args.warmup,
        draws: args.draws,
        shard: args
            .shard
            .as_deref()
            .map(boltz::shard::Shard::parse)
            .transpose()?,
    })
}

/// The model, its contexts (`--context`) and the job the flags describe.
fn load(args: &LogzArgs) -> Result<(Model, Option<Array2<f64>>, LogzJob)> {
    let model = args.precision.load(&args.model)?;
    let contexts = args
        .context
        .as_deref()
        .map(|p| read_matrix(p, "context"))
        .transpose()?;
    Ok((model, contexts, job(args)?))
}

/// Control (stop on signals, checkpoints), lock and progress bar around a
/// log Z job (`logz` and `prob` share it).
fn with_control<T>(
    args: &LogzArgs,
    job: &LogzJob,
    model: &Model,
    f: impl FnOnce(&Control, &mut Bar) -> Result<T>,
) -> Result<T> {
    let stop = super::signals().stop.clone();
    let control = Control {
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: args.checkpoint_every,
        stop: Some(stop.clone()),
        settings: ais_settings(args, job, model, true, &[])?,
    };
    // One run per checkpoint file at a time.
    let _lock = match &args.checkpoint {
        Some(p) => Some(io::FileLock::acquire(p, Some(&stop))?),
        None => None,
    };
    let mut bar = Bar::new(args.quiet, args.temps as u64);
    let r = f(&control, &mut bar).map_err(|e| {
        if args.resume.is_some() {
            e.for_flag("--resume")
        } else {
            e
        }
    });
    bar.finish();
    r
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
    if let Some(f) = &args.shard_out {
        outputs.declare("--shard-out", f)?;
    }
    args.output.declare(&mut outputs)?;
    if let Some(c) = &args.checkpoint {
        outputs.reserve("--checkpoint", c)?;
    }
    let (model, contexts, job) = load(args)?;
    let out = with_control(args, &job, &model, |control, bar| {
        boltz::jobs::logz(&model, contexts, &job, control, args.resume.as_deref(), bar)
    })?;
    let r = &out.report;
    let v = report_json(r)?;
    if let Some(path) = &args.shard_out {
        let bytes = boltz::jobs::merge::logz_shard(
            &out,
            &job,
            &ais_settings(args, &job, &model, false, &[])?,
            None,
            path,
        )?;
        outputs.stage(path, &bytes)?;
    }
    let text = args.output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if !text {
        return Ok(());
    }
    print_logz(r, job.shard.as_ref());
    Ok(())
}

/// The text summary of a log Z run (`shard`: the run is that shard).
fn print_logz(r: &boltz::jobs::LogzReport, shard: Option<&boltz::shard::Shard>) {
    match shard {
        // A shard's estimate is its own particles'; the merge gives the run's.
        Some(s) => println!(
            "log Z of {} by {} ({:.2} s), shard {}/{}: its own particles (`boltz merge` the shards for the run's estimate)",
            r.model, r.method, r.wall_s, s.index, s.count
        ),
        None => println!("log Z of {} by {} ({:.2} s)", r.model, r.method, r.wall_s),
    }
    let many = r.log_z.len() > 1;
    let shown = if many { r.log_z.len().min(20) } else { 1 };
    for (i, lz) in r.log_z.iter().enumerate().take(shown) {
        let what = if many {
            format!("context {i}: ")
        } else {
            String::new()
        };
        let mut line = if r.stderr[i] == 0.0 {
            format!("  {what}log Z = {}  (exact)", fixed6(*lz))
        } else {
            format!("  {what}log Z = {} +- {:.6}", fixed6(*lz), r.stderr[i])
        };
        if r.method == "ais" {
            line.push_str(&format!("  (ESS {:.1} of {})", r.ess[i], r.particles));
        }
        if let Some(p) = &r.pt {
            line.push_str(&format!(
                "  (stepping stone: {} chains x {} replicas, Lambda {:.3}, {} round trips)",
                p["chains"],
                p["replicas"],
                p["lambda"].as_f64().unwrap_or(f64::NAN),
                p["round_trips"]
            ));
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
    if let Some(s) = &r.smc {
        println!(
            "  smc: {} islands, {} temperatures, {} moves each, {} resamplings",
            s["islands"], s["temperatures"], s["moves_per_temp"], s["resamplings"]
        );
    }
    if let Some(c) = &r.check {
        print_check(c, many);
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
            "  exact log Z = {}: error {err:+.6} ({:.2} standard errors)",
            fixed6(ex),
            err / r.stderr[0]
        );
    }
    super::commands::print_warnings(&r.warnings);
}

/// `boltz prob`: log P(y|x) of points under every context (k, N), under
/// their own contexts (`--paired`, (N,)), or log P(y) under an unconditional
/// model (N,).
pub fn prob(
    args: &LogzArgs,
    points: &std::path::Path,
    out: Option<&std::path::Path>,
    paired: bool,
) -> Result<()> {
    let mut ins = inputs(args);
    ins.push(points);
    let mut outputs = io::Outputs::new(&ins);
    // A shard writes its shard file; `boltz merge --out` writes log P.
    let out = match (&args.shard, out) {
        (Some(_), _) => None,
        (None, Some(o)) => Some(o),
        (None, None) => {
            return Err(Error::param(
                "--out",
                "prob writes log P to --out (a shard writes --shard-out)",
            ));
        }
    };
    if let Some(o) = out {
        outputs.declare("--out", o)?;
    }
    if let Some(f) = &args.shard_out {
        outputs.declare("--shard-out", f)?;
    }
    args.output.declare(&mut outputs)?;
    if let Some(c) = &args.checkpoint {
        outputs.reserve("--checkpoint", c)?;
    }
    let (model, contexts, job) = load(args)?;
    boltz::jobs::logz::check_prob(&model, contexts.is_some(), paired)?;
    let y = read_matrix(points, "points")?;
    let (logp, o) = with_control(args, &job, &model, |control, bar| {
        boltz::jobs::prob(
            &model,
            contexts,
            y.view(),
            paired,
            &job,
            control,
            args.resume.as_deref(),
            bar,
        )
    })
    .map_err(|e| match e {
        Error::Shape {
            context,
            expected,
            got,
        } if context == "points" => Error::Shape {
            context: format!("--points ({})", points.display()),
            expected,
            got,
        },
        e => e,
    })?;
    let mut v = report_json(&o.report)?;
    v["points"] = serde_json::json!(y.nrows());
    v["paired"] = serde_json::json!(paired);
    if let (Some(sh), Some(path)) = (job.shard, &args.shard_out) {
        let settings = ais_settings(
            args,
            &job,
            &model,
            false,
            &[
                (
                    "prob_points",
                    super::commands::file_fingerprint(Some(points)),
                ),
                ("prob_paired", paired.to_string()),
            ],
        )?;
        let bytes = boltz::jobs::merge::logz_shard(
            &o,
            &job,
            &settings,
            Some((&logp, paired, y.nrows())),
            path,
        )?;
        outputs.stage(path, &bytes)?;
        let text = args.output.emit(&v, &mut outputs)?;
        outputs.commit()?;
        if text {
            println!(
                "shard {}/{} of log P of {} points -> {} (join the shards with boltz merge --out)",
                sh.index,
                sh.count,
                y.nrows(),
                path.display()
            );
        }
        return Ok(());
    }
    let Some(out) = out else {
        return Err(Error::param(
            "--out",
            "prob writes log P to --out (a shard writes --shard-out)",
        ));
    };
    outputs.stage_array(out, &logp)?;
    v["out"] = serde_json::json!(out.display().to_string());
    v["out_shape"] = serde_json::json!(logp.shape());
    let text = args.output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if text {
        print_prob(&o, y.nrows(), paired, out, &logp);
    }
    Ok(())
}

/// The text summary of a prob run.
fn print_prob(
    o: &boltz::jobs::LogzRun,
    points: usize,
    paired: bool,
    out: &std::path::Path,
    logp: &ndarray::ArrayD<f64>,
) {
    let se = Array1::from(o.report.stderr.clone());
    println!(
        "log P of {} points{} by {} -> {} {:?} (log Z standard errors up to {:.2e})",
        points,
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
}

/// The check's verdict and each estimator's first estimate.
fn print_check(c: &serde_json::Value, many: bool) {
    println!(
        "  check: the estimators {} (chi-square {}, p {}; {} round(s), {})",
        c["verdict"].as_str().unwrap_or("?"),
        fmt_first(&c["chi2"], 2),
        fmt_first(&c["p_value"], 3),
        c["rounds"],
        c["stopped"].as_str().unwrap_or("?")
    );
    for (m, e) in c["estimators"].as_object().into_iter().flatten() {
        println!(
            "    {m:<4} log Z = {} +- {}{}{}",
            fmt_first(&e["log_z"], 6),
            fmt_first(&e["stderr"], 6),
            if many { " (context 0)" } else { "" },
            e["excluded"]
                .as_str()
                .map_or(String::new(), |w| format!("  (left out: {w})"))
        );
    }
}

/// The first number of a JSON array (or the number), with `digits` decimals.
fn fmt_first(v: &serde_json::Value, digits: usize) -> String {
    let x = v.get(0).unwrap_or(v).as_f64().unwrap_or(f64::NAN);
    format!("{x:.digits$}")
}

/// `x` with 6 decimals, without the sign of a value that rounds to zero
/// (`-0.000000` read as a negative log Z).
pub(crate) fn fixed6(x: f64) -> String {
    let s = format!("{x:.6}");
    if s == "-0.000000" {
        "0.000000".into()
    } else {
        s
    }
}
