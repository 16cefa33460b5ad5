//! One function per subcommand.

use super::SampleArgs;
use boltz::error::{Error, Result};
use boltz::io::read_npy;
use boltz::sampler::{Control, Observer, Progress};
use ndarray::Array2;
use std::path::Path;

/// Reads an (n, d) array (a 1-D array is one row) given by flag `what`
/// (`--points`, say); refuses non-finite entries.
pub fn read_matrix(path: &Path, what: &str) -> Result<Array2<f64>> {
    let flag = if what.starts_with("--") {
        what.to_string()
    } else {
        format!("--{what}")
    };
    let m = read_npy(path)
        .map_err(|e| e.for_flag(&flag))?
        .into_2d(&format!("{flag} ({})", path.display()), true)?;
    if let Some(i) = m.iter().position(|v| !v.is_finite()) {
        return Err(Error::param(
            format!("{flag} ({})", path.display()),
            format!("entry {} (row {}) is not finite", i, i / m.ncols().max(1)),
        ));
    }
    Ok(m)
}

/// `boltz kernels`: the registry, each kernel with the settings it reads.
pub fn kernels(output: &crate::OutputArgs) -> Result<()> {
    let list = boltz::kernels::listing();
    let mut outputs = boltz::io::Outputs::new(&[]);
    output.declare(&mut outputs)?;
    let mut v = serde_json::json!({ "kernels": list });
    boltz::Warnings::new().write_into(&mut v);
    let text = output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if !text {
        return Ok(());
    }
    for k in &list {
        println!(
            "{:<9} {} states: {}",
            k["name"].as_str().unwrap_or(""),
            k["space"].as_str().unwrap_or(""),
            k["about"].as_str().unwrap_or("")
        );
        for s in k["settings"].as_array().into_iter().flatten() {
            let flag = s["name"].as_str().unwrap_or("").replace('_', "-");
            println!(
                "            --{flag:<14} {} (default: {})",
                s["about"].as_str().unwrap_or(""),
                s["default"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

pub fn suite(output: &crate::OutputArgs) -> Result<()> {
    let rows = boltz::suite::list()?;
    let mut outputs = boltz::io::Outputs::new(&[]);
    output.declare(&mut outputs)?;
    let mut v = serde_json::json!({ "targets": rows });
    boltz::Warnings::new().write_into(&mut v);
    let text = output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if !text {
        return Ok(());
    }
    println!(
        "{:<10} {:>5} {:>6} {:>14}  description",
        "name", "dim", "x_dim", "exact log Z"
    );
    for r in rows {
        let lz = r.log_z.map_or("-".to_string(), |v| format!("{v:.9}"));
        println!(
            "{:<10} {:>5} {:>6} {:>14}  {}",
            r.name, r.dim, r.x_dim, lz, r.description
        );
    }
    Ok(())
}

pub fn energy(
    model: &str,
    precision: &crate::PrecisionArg,
    points: &Path,
    context: Option<&Path>,
    out: &Path,
    grad: Option<&Path>,
    output: &crate::OutputArgs,
) -> Result<()> {
    let inputs: Vec<&Path> = [Some(points), context, crate::model_input(model)]
        .into_iter()
        .flatten()
        .collect();
    let mut outputs = boltz::io::Outputs::new(&inputs);
    outputs.declare("--out", out)?;
    if let Some(g) = grad {
        outputs.declare("--grad", g)?;
    }
    output.declare(&mut outputs)?;
    let model = precision.load(model)?;
    let y = read_matrix(points, "points")?;
    // A binary model's energy of other points is its free energy's
    // continuous extension (gradients of relaxations use it): said, not refused.
    let not_states = model.non_state(y.view());
    let ctx = context.map(|p| read_matrix(p, "context")).transpose()?;
    let energy = model.energy(ctx)?;
    let e = if let Some(grad_path) = grad {
        let (e, g) = boltz::energy::evaluate_with_grad(energy.as_ref(), y.view())?;
        outputs.stage_array(out, &e)?;
        outputs.stage_array(grad_path, &g)?;
        e
    } else {
        let e = boltz::energy::evaluate(energy.as_ref(), y.view())?;
        outputs.stage_array(out, &e)?;
        e
    };
    let finite = e.iter().filter(|v| v.is_finite()).count();
    let mut warnings = boltz::Warnings::new();
    if let Some((r, c, v)) = not_states {
        warnings.push(boltz::Warning::new(boltz::WarningKind::EnergyValues, format!(
            "model `{}` has binary states and row {r}, column {c} is {v}: these energies are the free energy's continuous extension, not energies of states",
            model.name
        )));
    }
    if finite < e.len() {
        warnings.push(boltz::Warning::new(
            boltz::WarningKind::EnergyValues,
            format!(
                "{} of {} energies are not finite",
                e.len() - finite,
                e.len()
            ),
        ));
    }
    let (lo, hi) = e
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let v = serde_json::json!({
        "model": model.name, "points": y.nrows(), "dim": y.ncols(),
        "out": out.display().to_string(), "grad": grad.map(|g| g.display().to_string()),
        "energy_min": lo, "energy_max": hi,
    });
    let mut v = v;
    warnings.write_into(&mut v);
    let text = output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if text {
        println!(
            "energies of {} points -> {} (min {lo:.6}, max {hi:.6})",
            y.nrows(),
            out.display()
        );
        print_warnings(&warnings);
    }
    Ok(())
}

/// The job the user asked for: the kernel and its settings.
fn sample_job(args: &SampleArgs) -> Result<boltz::jobs::SampleJob> {
    Ok(boltz::jobs::SampleJob {
        sampler: args.sampler.clone(),
        chains: args.chains,
        warmup: args.warmup,
        draws: args.draws,
        thin: args.thin,
        seed: args.seed,
        kernel_settings: args.kernel_args.settings()?,
        beta: args.beta,
        shared_step: args.shared_step,
        adapt_mass: !args.no_adapt_mass,
        pooled_mass: args.pooled_mass,
        dense_mass: args.dense_mass,
        mass_windows: boltz::kernels::MassWindows::parse(&args.mass_windows)?,
        init: parse_init_spec(args.init.as_deref())?,
        record_energies: true,
        record_draw_stats: false,
        replicas: args.replicas,
        kernel: args.kernel.clone(),
        all_replicas: args.all_replicas.is_some(),
        ladder: boltz::pt::LadderMode::parse(&args.ladder)?,
        base_scale: args.base_scale,
        shard: args
            .shard
            .as_deref()
            .map(boltz::shard::Shard::parse)
            .transpose()?,
        // The command's text and JSON reports are the diagnostics.
        diagnostics: true,
    })
}

/// `--init`'s distribution without reading a file (the default when it names one).
fn parse_init_spec(s: Option<&str>) -> Result<boltz::init::Init> {
    match s {
        Some(s) if init_file(s).is_none() => boltz::init::Init::parse(s, "--init"),
        _ => Ok(boltz::init::Init::default()),
    }
}

/// `--init`: a distribution spec (`gaussian:STD`, `uniform:LO,HI`,
/// `dispersed:MIN,MAX`, `coins`) or an npy file of starting positions.
pub fn parse_init(s: Option<&str>) -> Result<(Option<Array2<f64>>, boltz::init::Init)> {
    let Some(s) = s else {
        return Ok((None, boltz::init::Init::default()));
    };
    match init_file(s) {
        Some(path) => Ok((
            Some(read_matrix(path, "--init")?),
            boltz::init::Init::default(),
        )),
        None => Ok((None, boltz::init::Init::parse(s, "--init")?)),
    }
}

/// The file an `--init` value names, `None` for a distribution spec
/// (`gaussian:`, `uniform:`, `dispersed:` or `coins`).
pub fn init_file(s: &str) -> Option<&Path> {
    let is_spec = s == "coins"
        || ["gaussian:", "uniform:", "dispersed:"]
            .iter()
            .any(|p| s.starts_with(p));
    (!is_spec).then_some(Path::new(s))
}

/// A progress bar on stderr (only on a terminal, and not with --quiet).
pub struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    /// A bar of `total` steps (hidden when `quiet` or not on a terminal).
    pub fn new(quiet: bool, total: u64) -> Self {
        use std::io::IsTerminal;
        if quiet || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} steps, {per_sec}, eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Bar(Some(pb))
    }
    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

impl Observer for Bar {
    fn observe(&mut self, p: &Progress) {
        if let Some(pb) = &self.0 {
            pb.set_length(p.total as u64);
            pb.set_position(p.step as u64);
            let phase = p.phase.name();
            let contexts = if p.contexts > 0 {
                format!(" contexts {}/{}", p.contexts_done, p.contexts)
            } else {
                String::new()
            };
            pb.set_message(format!(
                "{phase}{contexts} accept {:.2} step {:.3e} div {}",
                p.accept_rate, p.step_size, p.divergences
            ));
        }
    }
}

/// The settings a checkpoint or shard file stores and a resume or merge
/// must match: the job itself (every setting, the kernel's among them),
/// the model's fingerprint and the input files' fingerprints; not where
/// outputs go. A shard file's leave the shard out (the shards of one run
/// share them); a checkpoint's keep it (a checkpoint belongs to its shard).
fn sample_settings(
    a: &SampleArgs,
    job: &boltz::jobs::SampleJob,
    model: &boltz::Model,
    with_shard: bool,
) -> Result<String> {
    let init_file = a.init.as_deref().and_then(init_file);
    let mut job = job.clone();
    if !with_shard {
        job.shard = None;
    }
    boltz::jobs::run_settings(
        &job,
        model,
        &[
            ("context", file_fingerprint(a.context.as_deref())),
            ("init", file_fingerprint(init_file)),
        ],
    )
}

/// A hash of an input file's bytes ("-" without one): settings of
/// checkpoints and state files, so an edited input is refused on resume.
pub fn file_fingerprint(path: Option<&Path>) -> String {
    match path.map(std::fs::read) {
        Some(Ok(bytes)) => format!("{:016x}", boltz::io::fnv1a(&bytes)),
        Some(Err(_)) => "unreadable".into(),
        None => "-".into(),
    }
}

pub fn sample(args: &SampleArgs) -> Result<()> {
    let init_file = args.init.as_deref().and_then(init_file);
    let inputs: Vec<&Path> = [
        args.context.as_deref(),
        init_file,
        crate::model_input(&args.model),
        args.resume.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut outputs = boltz::io::Outputs::new(&inputs);
    if let Some(o) = &args.out {
        outputs.declare("--out", o)?;
    }
    if let Some(e) = &args.energies {
        outputs.declare("--energies", e)?;
    }
    if let Some(a) = &args.all_replicas {
        if args.sampler != "pt" {
            return Err(Error::param("--all-replicas", "is for --sampler pt"));
        }
        outputs.declare("--all-replicas", a)?;
    }
    if let Some(f) = &args.shard_out {
        outputs.declare("--shard-out", f)?;
    }
    args.output.declare(&mut outputs)?;
    if let Some(c) = &args.checkpoint {
        outputs.reserve("--checkpoint", c)?;
    }
    // One run per checkpoint file at a time.
    let _lock = match &args.checkpoint {
        Some(p) => Some(boltz::io::FileLock::acquire(
            p,
            Some(&super::signals().stop),
        )?),
        None => None,
    };
    let model = args.precision.load(&args.model)?;
    let context = args
        .context
        .as_deref()
        .map(|p| read_matrix(p, "context"))
        .transpose()?;
    let job = sample_job(args)?;
    let (init, _) = parse_init(args.init.as_deref())?;
    let control = Control {
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: args.checkpoint_every,
        stop: Some(super::signals().stop.clone()),
        settings: sample_settings(args, &job, &model, true)?,
    };
    let mut bar = Bar::new(args.quiet, (job.warmup + job.draws * job.thin) as u64);
    let run = boltz::jobs::sample::sample(
        &model,
        context,
        &job,
        init,
        &mut bar,
        &control,
        args.resume.as_deref(),
    )
    .map_err(|e| {
        if args.resume.is_some() {
            e.for_flag("--resume")
        } else {
            e
        }
    });
    bar.finish();
    let run = run?;
    let out = &run.output;
    if let Some(o) = &args.out {
        outputs.stage_array(o, &out.samples)?;
    }
    if let (Some(path), Some(e)) = (&args.energies, &out.energies) {
        outputs.stage_array(path, e)?;
    }
    if let (Some(path), Some(a)) = (&args.all_replicas, &run.all_replicas) {
        outputs.stage_array(path, a)?;
    }
    let mut report = run.report.clone();
    if let Some(path) = &args.shard_out {
        let bytes = boltz::jobs::merge::sample_shard(
            &run,
            &job,
            &sample_settings(args, &job, &model, false)?,
            path,
        )?;
        outputs.stage(path, &bytes)?;
    }
    report["init"] = serde_json::json!(args.init.clone().unwrap_or_else(|| {
        if run.pt.is_some() {
            "draws from the tempering reference (the AIS base)".into()
        } else {
            "dispersed:2,20".into()
        }
    }));
    let text = args.output.emit(&report, &mut outputs)?;
    outputs.commit()?;
    if text {
        print_sample(args, &model.name, &run);
    }
    Ok(())
}

/// The text summary of a sampling run.
fn print_sample(args: &SampleArgs, model: &str, run: &boltz::jobs::SampleRun) {
    let out = &run.output;
    let (c, d, k) = out.samples.dim();
    let (ov, s, warnings, gradient_free) =
        (&run.overview, &out.stats, &run.warnings, run.gradient_free);
    let acceptance = run.report["acceptance"].as_f64().unwrap_or(f64::NAN);
    let divergences: usize = s.divergences.iter().sum();
    println!(
        "{} on {}: {c} chains x {d} draws x {k} dims -> {}",
        s.kernel,
        model,
        args.out
            .as_ref()
            .or(args.shard_out.as_ref())
            .map_or(String::new(), |p| p.display().to_string())
    );
    println!("  acceptance    {acceptance:.3}");
    if let Some(p) = &run.pt {
        print_pt(p);
    }
    if !gradient_free {
        println!(
            "  divergences   {divergences} (warm-up {})",
            s.warmup_divergences
        );
        println!("  step size     {:.4e}", s.step_size);
    }
    println!("  ess bulk min  {:.1}", ov.ess_bulk_min);
    println!("  ess tail min  {:.1}", ov.ess_tail_min);
    println!("  rhat max      {:.4}", ov.rhat_max);
    if gradient_free {
        println!("  energy evals  {}", s.energy_evals);
    } else {
        println!("  grad evals    {}", s.grad_evals);
    }
    println!("  wall s        {:.3}", s.wall_s);
    if run.per_chain_context {
        println!(
            "  note: each chain has its own context, so chains target different laws and R-hat does not apply"
        );
    }
    if run.exact_check {
        println!("  checked against exact draws of the target");
    }
    print_warnings(warnings);
}

/// Prints each warning on its own line, indented, after the results.
pub fn print_warnings(warnings: &[boltz::Warning]) {
    for w in warnings {
        println!("  warning: {w}");
    }
}

/// Parallel tempering's lines of a sample's text (and of its merge).
pub fn print_pt(p: &boltz::pt::PtStats) {
    let min_swap = p.swap_accept.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "  replicas      {} ({} local moves), Lambda {:.3}, lowest swap acceptance {:.3}",
        p.replicas, p.kernel, p.lambda, min_swap
    );
    println!(
        "  round trips   {} ({:.4} per chain-step; at most {:.4} with these temperatures)",
        p.round_trips, p.round_trip_rate, p.round_trip_bound
    );
    println!(
        "  log Z         {:.4} +- {:.4} (stepping stone)",
        p.log_z, p.log_z_stderr
    );
}
