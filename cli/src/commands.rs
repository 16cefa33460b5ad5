//! One function per subcommand.

use super::SampleArgs;
use boltz::diagnostics;
use boltz::error::{Error, Result};
use boltz::io::{read_npy, write_npy};
use boltz::kernels::{Kernel, KernelSpec};
use boltz::sampler::{Control, Observer, Phase, Progress, SampleConfig};
use ndarray::Array2;
use std::path::Path;

/// Reads an (n, d) array (a 1-D array is one row).
pub fn read_matrix(path: &Path, what: &str) -> Result<Array2<f64>> {
    read_npy(path)?.into_2d(&format!("{what} ({})", path.display()), true)
}

pub fn suite(json: bool) -> Result<()> {
    let rows = boltz::suite::list()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serialisable")
        );
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
    points: &Path,
    context: Option<&Path>,
    out: &Path,
    grad: Option<&Path>,
) -> Result<()> {
    let model = boltz::model::load(model)?;
    let y = read_matrix(points, "points")?;
    let ctx = context.map(|p| read_matrix(p, "context")).transpose()?;
    let energy = model.energy(ctx)?;
    if let Some(grad_path) = grad {
        let (e, g) = boltz::energy::evaluate_with_grad(energy.as_ref(), y.view())?;
        write_npy(out, &[e.len()], e.as_slice().expect("contiguous"))?;
        write_npy(
            grad_path,
            &[g.nrows(), g.ncols()],
            g.as_slice().expect("contiguous"),
        )?;
    } else {
        let e = boltz::energy::evaluate(energy.as_ref(), y.view())?;
        write_npy(out, &[e.len()], e.as_slice().expect("contiguous"))?;
    }
    Ok(())
}

/// Parses `LO,HI`.
fn parse_pair(name: &str, s: &str) -> Result<(f64, f64)> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts.as_slice() {
        [a, b] => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            _ => Err(Error::param(
                name,
                format!("expected two numbers LO,HI, got `{s}`"),
            )),
        },
        _ => Err(Error::param(name, format!("expected LO,HI, got `{s}`"))),
    }
}

/// Builds the kernel the user asked for (one spec, checked against the
/// model); returns it and whether its step size is adapted.
fn build_kernel(args: &SampleArgs, energy: &dyn boltz::Energy) -> Result<(Box<dyn Kernel>, bool)> {
    let fixed = match args.step_size.as_str() {
        "auto" => None,
        s => Some(s.parse::<f64>().map_err(|_| {
            Error::param(
                "--step-size",
                format!("expected `auto` or a number, got `{s}`"),
            )
        })?),
    };
    if let Some(s) = fixed {
        boltz::error::check_positive("--step-size", s)?;
    }
    let mut spec = KernelSpec::new(&args.sampler)?;
    spec.check(energy)?;
    if spec.name() == "ula" && fixed.is_none() {
        return Err(Error::param(
            "--step-size",
            "ula has no acceptance rate to tune against: give a number",
        ));
    }
    spec.step_size = fixed;
    spec.leapfrog = args.leapfrog;
    spec.jitter = args.jitter;
    spec.noise = args.noise;
    spec.grad_clip = args.grad_clip;
    spec.clamp = args
        .clamp
        .as_deref()
        .map(|c| parse_pair("--clamp", c))
        .transpose()?;
    if let Some(t) = args.target_accept {
        spec = spec.target_accept(t)?;
    }
    Ok((spec.build()?, fixed.is_none()))
}

/// A progress bar on stderr (only on a terminal, and not with --quiet).
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(quiet: bool, total: u64) -> Self {
        use std::io::IsTerminal;
        if quiet || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} steps, {per_sec}, eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Bar(Some(pb))
    }
    fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

impl Observer for Bar {
    fn observe(&mut self, p: &Progress) {
        if let Some(pb) = &self.0 {
            pb.set_position(p.step as u64);
            let phase = match p.phase {
                Phase::Warmup => "warm-up",
                Phase::Sampling => "sampling",
                Phase::Annealing => "annealing",
                Phase::Negatives => "negatives",
            };
            pb.set_message(format!(
                "{phase} accept {:.2} step {:.3e} div {}",
                p.accept_rate, p.step_size, p.divergences
            ));
        }
    }
}

/// A warning when the chains run off (the density is not normalisable along
/// some direction, e.g. an `mlp` without `l2`): the mean norm of the last
/// draws is over 100 and over 10 times that of the first draws.
fn drift_warning(samples: ndarray::ArrayView3<f64>) -> Option<String> {
    let (c, d, _) = samples.dim();
    if d < 2 {
        return None;
    }
    let norm = |t: usize| {
        (0..c)
            .map(|i| {
                samples
                    .slice(ndarray::s![i, t, ..])
                    .dot(&samples.slice(ndarray::s![i, t, ..]))
                    .sqrt()
            })
            .sum::<f64>()
            / c as f64
    };
    let (first, last) = (norm(0), norm(d - 1));
    (last > 100.0 && last > 10.0 * first.max(1.0)).then(|| format!("the chains drift off (mean |y| from {first:.3e} to {last:.3e}): the density may not be normalisable (an mlp without l2?)"))
}

/// The settings a checkpoint must match on resume: everything that shapes
/// the run, not where its outputs go.
fn sample_settings(a: &SampleArgs) -> String {
    format!(
        "model={} sampler={:?} chains={} warmup={} draws={} thin={} step_size={} noise={:?} grad_clip={:?} clamp={:?} leapfrog={} jitter={} target_accept={:?} shared_step={} no_adapt_mass={} beta={} seed={} context={:?} init={:?}",
        a.model,
        a.sampler,
        a.chains,
        a.warmup,
        a.draws,
        a.thin,
        a.step_size,
        a.noise,
        a.grad_clip,
        a.clamp,
        a.leapfrog,
        a.jitter,
        a.target_accept,
        a.shared_step,
        a.no_adapt_mass,
        a.beta,
        a.seed,
        a.context,
        a.init
    )
}

/// Loads a model and its energy in `y`, with contexts from an npy file for
/// conditional models (`sample` and `compare`).
pub fn model_energy(
    spec: &str,
    context: Option<&Path>,
) -> Result<(boltz::Model, std::sync::Arc<dyn boltz::Energy>)> {
    let model = boltz::model::load(spec)?;
    let ctx = context.map(|p| read_matrix(p, "context")).transpose()?;
    let energy = model.energy(ctx)?;
    Ok((model, energy))
}

pub fn sample(args: &SampleArgs) -> Result<()> {
    let (model, energy) = model_energy(&args.model, args.context.as_deref())?;
    let (kernel, auto) = build_kernel(args, energy.as_ref())?;
    let config = SampleConfig {
        n_chains: args.chains,
        warmup: args.warmup,
        draws: args.draws,
        thin: args.thin,
        seed: args.seed,
        beta: args.beta,
        adapt_step_size: auto,
        shared_step_size: args.shared_step,
        adapt_mass: !args.no_adapt_mass,
        record_energies: true,
        observe_every: 10,
        ..SampleConfig::new()
    };
    config.validate(energy.dim())?;
    let init = args
        .init
        .as_deref()
        .map(|p| read_matrix(p, "init"))
        .transpose()?;
    let control = Control {
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: args.checkpoint_every,
        stop: Some(super::signals().stop.clone()),
        settings: sample_settings(args),
    };
    let mut bar = Bar::new(
        args.quiet,
        (config.warmup + config.draws * config.thin) as u64,
    );
    let out = match &args.resume {
        Some(path) => {
            boltz::sampler::resume(energy.as_ref(), kernel.as_ref(), path, &mut bar, &control)?
        }
        None => boltz::sampler::sample_with(
            energy.as_ref(),
            kernel.as_ref(),
            &config,
            init,
            &mut bar,
            &control,
        )?,
    };
    bar.finish();
    let (c, d, k) = out.samples.dim();
    write_npy(
        &args.out,
        &[c, d, k],
        out.samples.as_slice().expect("standard layout"),
    )?;
    if let (Some(path), Some(e)) = (&args.energies, &out.energies) {
        write_npy(path, &[c, d], e.as_slice().expect("standard layout"))?;
    }
    // An interrupted run may have fewer than 4 draws: no diagnostics then.
    let ov = if out.samples.shape()[1] >= 4 {
        diagnostics::overview(&diagnostics::summarize(out.samples.view())?)
    } else {
        diagnostics::Overview {
            ess_bulk_min: f64::NAN,
            ess_tail_min: f64::NAN,
            rhat_max: f64::NAN,
        }
    };
    let s = &out.stats;
    let acceptance = s.acceptance.iter().sum::<f64>() / s.acceptance.len() as f64;
    let divergences: usize = s.divergences.iter().sum();
    let report = serde_json::json!({
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
        "acceptance": acceptance,
        "acceptance_per_chain": s.acceptance,
        "divergences": divergences,
        "divergences_per_chain": s.divergences,
        "warmup_divergences": s.warmup_divergences,
        "step_size": s.step_size,
        "inv_mass": s.inv_mass,
        "ess_bulk_min": ov.ess_bulk_min,
        "ess_tail_min": ov.ess_tail_min,
        "rhat_max": ov.rhat_max,
        "grad_evals": s.grad_evals,
        "energy_evals": s.energy_evals,
        "wall_s": s.wall_s,
    });
    if let Some(path) = &args.report {
        boltz::io::write_json_atomic(path, &report)?;
    }
    println!(
        "{} on {}: {c} chains x {d} draws x {k} dims -> {}",
        s.kernel,
        model.name,
        args.out.display()
    );
    println!("  acceptance    {acceptance:.3}");
    println!(
        "  divergences   {divergences} (warm-up {})",
        s.warmup_divergences
    );
    println!("  step size     {:.4e}", s.step_size);
    println!("  ess bulk min  {:.1}", ov.ess_bulk_min);
    println!("  ess tail min  {:.1}", ov.ess_tail_min);
    println!("  rhat max      {:.4}", ov.rhat_max);
    println!("  grad evals    {}", s.grad_evals);
    println!("  wall s        {:.3}", s.wall_s);
    if let Some(w) = drift_warning(out.samples.view()) {
        println!("  warning: {w}");
    }
    if !out.complete {
        println!(
            "  interrupted: {d} of {} draws written{}",
            config.draws,
            args.checkpoint.as_ref().map_or(String::new(), |p| format!(
                "; resume with --resume {}",
                p.display()
            ))
        );
    }
    if energy.fixed_rows().is_some() {
        println!(
            "  note: each chain has its own context, so chains target different laws and R-hat does not apply"
        );
    } else if ov.rhat_max > 1.01 {
        println!("  warning: R-hat above 1.01: the chains disagree; run longer or check the model");
    }
    Ok(())
}

pub fn diagnose(samples: &Path, json: bool) -> Result<()> {
    let arr = read_npy(samples)?;
    let x = match arr.shape.len() {
        3 => arr
            .into_dyn()
            .into_dimensionality::<ndarray::Ix3>()
            .expect("3-D"),
        2 => arr
            .into_dyn()
            .into_dimensionality::<ndarray::Ix2>()
            .expect("2-D")
            .insert_axis(ndarray::Axis(2)),
        _ => {
            return Err(Error::shape(
                format!("samples ({})", samples.display()),
                "(chains, draws, dim) or (chains, draws)",
                format!("{:?}", arr.shape),
            ));
        }
    };
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::param(
            format!("samples ({})", samples.display()),
            "contains non-finite values",
        ));
    }
    let summaries = diagnostics::summarize(x.view())?;
    let ov = diagnostics::overview(&summaries);
    if json {
        let v = serde_json::json!({
            "chains": x.shape()[0], "draws": x.shape()[1], "dim": x.shape()[2],
            "ess_bulk_min": ov.ess_bulk_min, "ess_tail_min": ov.ess_tail_min, "rhat_max": ov.rhat_max,
            "coordinates": summaries,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serialisable")
        );
        return Ok(());
    }
    println!(
        "{} chains x {} draws x {} dims",
        x.shape()[0],
        x.shape()[1],
        x.shape()[2]
    );
    println!(
        "{:>5} {:>12} {:>12} {:>10} {:>9} {:>9} {:>7}",
        "coord", "mean", "sd", "mcse", "ess_bulk", "ess_tail", "rhat"
    );
    let show = summaries.len().min(20);
    for (j, s) in summaries.iter().enumerate().take(show) {
        println!(
            "{j:>5} {:>12.5} {:>12.5} {:>10.2e} {:>9.1} {:>9.1} {:>7.4}",
            s.mean, s.sd, s.mcse_mean, s.ess_bulk, s.ess_tail, s.rhat
        );
    }
    if summaries.len() > show {
        println!(
            "  ... {} more coordinates (use --json for all)",
            summaries.len() - show
        );
    }
    println!(
        "ess_bulk_min {:.1}  ess_tail_min {:.1}  rhat_max {:.4}",
        ov.ess_bulk_min, ov.ess_tail_min, ov.rhat_max
    );
    Ok(())
}
