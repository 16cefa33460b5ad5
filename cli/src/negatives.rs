//! `boltz negatives`.

use super::commands::read_matrix;
use boltz::error::Result;
use boltz::io;
use boltz::jobs::NegativesJob;
use boltz::negatives::{Init, NegativeSampler};
use std::path::PathBuf;

/// Options of `boltz negatives`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct NegativesArgs {
    /// A suite target name or a model file (JSON).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub precision: crate::PrecisionArg,
    /// Positives, (n, dim) npy: CD starts from them; all methods report the energy gap.
    #[arg(long)]
    pub data: PathBuf,
    /// Contexts of a conditional model: (1, x_dim) or (chains, x_dim).
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// short-run (from noise, or from a replay buffer with --buffer), cd or pcd.
    #[arg(long, default_value = "short-run")]
    pub method: String,
    #[arg(long, help = format!("{}; or pt (with --method pcd): persistent parallel tempering, every chain's replicas kept in --state. The step is fixed (default: ula; gibbs for binary models)", crate::kernel_args::kernel_help()))]
    pub kernel: Option<String>,
    /// pt: replicas per chain.
    #[arg(long, default_value_t = 8)]
    pub replicas: usize,
    /// pt: the replicas' local move (default: gibbs for binary models, else mala).
    #[arg(long)]
    pub local_kernel: Option<String>,
    /// pt: the reference is N(0, S^2 I) (default: S from a gaussian:S init).
    #[arg(long)]
    pub base_scale: Option<f64>,
    /// Inverse temperature: the chains target exp(-beta F).
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Chains per call (default: one per row of --data).
    #[arg(long)]
    pub chains: Option<usize>,
    /// Transitions per call (K).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    #[command(flatten)]
    pub kernel_args: crate::kernel_args::KernelArgs,
    /// Where fresh chains start: `gaussian:STD` (the default, gaussian:1),
    /// `uniform:LO,HI`, `dispersed:MIN,MAX`, or an npy file of points
    /// (chain i from row i mod rows), as `sample --init`. Binary models:
    /// coin flips, or the file's points.
    #[arg(long, default_value = "gaussian:1", allow_hyphen_values = true)]
    pub init: String,
    /// Replay buffer capacity (with --method short-run); 0 = no buffer.
    #[arg(long, default_value_t = 0)]
    pub buffer: usize,
    /// How the buffer takes in negatives: `append` (every negative is added,
    /// oldest overwritten when full; IGEBM) or `write-back` (filled with
    /// noise at the first call, each negative replaces the entry its chain
    /// started from; JEM).
    #[arg(long, default_value = "append")]
    pub buffer_policy: String,
    /// Fraction of chains started from noise instead of the buffer.
    #[arg(long, default_value_t = 0.05)]
    pub reinit: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Adapt the step from call to call towards the kernel's target
    /// acceptance (Metropolis kernels; the adapted step is kept in
    /// --state). Default: the step is fixed.
    #[arg(long)]
    pub adapt_step: bool,
    /// Persistent state (buffer, chains, random streams): loaded if the file
    /// exists, saved back atomically after the call.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Output negatives, (chains, dim) npy.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub output: crate::OutputArgs,
}

/// `--init`: a spec or a file of points (binary models start from coin
/// flips unless a file is given: `NegativesJob::init_for`).
fn parse_init(s: &str) -> Result<Init> {
    match super::commands::parse_init(Some(s))? {
        (Some(rows), _) => Init::rows(rows.view()),
        (None, init) => Ok(init),
    }
}

pub fn negatives(args: &NegativesArgs) -> Result<()> {
    // A SIGINT / SIGTERM stops the call within a step: nothing is written
    // and the state file stays as it was (the call can be made again).
    let stop = super::signals().stop.clone();
    let init_file = super::commands::init_file(&args.init);
    let inputs: Vec<&std::path::Path> = [
        Some(args.data.as_path()),
        args.context.as_deref(),
        init_file,
        crate::model_input(&args.model),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut outputs = io::Outputs::new(&inputs);
    outputs.declare("--out", &args.out)?;
    if let Some(s) = &args.state {
        outputs.declare("--state", s)?;
    }
    args.output.declare(&mut outputs)?;
    let model = args.precision.load(&args.model)?;
    let data = read_matrix(&args.data, "data")?;
    let chains = args.chains.unwrap_or(data.nrows());
    let ctx = args
        .context
        .as_deref()
        .map(|p| read_matrix(p, "context"))
        .transpose()?;
    let energy = model.energy(ctx)?;
    let job = negatives_job(args)?;
    let method = job.method()?;
    let (_, kernel_name) = job.kernel(energy.as_ref())?;
    // The state belongs to this model (its parameters), contexts and
    // settings: the job whole, the kernel's settings among them (where
    // fresh chains start is checked by the state on its own).
    let mut tagged = job.clone();
    tagged.init = NegativesJob::default().init;
    let tag = boltz::jobs::run_settings(
        &tagged,
        &model,
        &[(
            "context",
            super::commands::file_fingerprint(args.context.as_deref()),
        )],
    )?;
    // One writer at a time: a second call on the same state waits.
    let _lock = match &args.state {
        Some(p) => Some(io::FileLock::acquire(p, Some(&stop))?),
        None => None,
    };
    let mut sampler = match args.state.as_deref().filter(|p| p.exists()) {
        Some(path) => NegativeSampler::load_tagged(
            path,
            method,
            job.init_for(energy.as_ref()),
            chains,
            energy.dim(),
            args.seed,
            &tag,
        )?,
        None => job.sampler(energy.as_ref(), chains)?.with_tag(tag),
    };
    let control = boltz::run::Control {
        stop: Some(stop.clone()),
        ..Default::default()
    };
    let (batch, _, mut warnings) = boltz::jobs::negatives::call(
        &mut sampler,
        energy.as_ref(),
        &job,
        Some(data.view()),
        &control,
    )?;
    outputs.stage_array(&args.out, &batch.negatives)?;
    if let Some(path) = &args.state {
        outputs.stage(path, &sampler.save_bytes(path)?)?;
    }
    let s = &batch.stats;
    if args.method == "pcd" && args.state.is_none() {
        warnings.insert(0, boltz::Warning::new(boltz::WarningKind::StateNotKept, "--method pcd without --state: the chains are not kept between calls, so this call is short-run from noise; give --state FILE to persist them"));
    }
    let v = serde_json::json!({
        "model": model.name,
        "method": args.method,
        "kernel": kernel_name,
        "beta": args.beta,
        "chains": batch.negatives.nrows(),
        "steps": args.steps,
        "call": sampler.calls(),
        "stats": s,
        "buffer": sampler.buffer_len(),
    });
    let mut v = v;
    warnings.write_into(&mut v);
    if let Some(t) = sampler.tempered() {
        v["pt"] = serde_json::json!({
            "replicas": t.betas.len(),
            "betas": t.betas,
            "swap_accept": t.swap_accept,
            "round_trips": t.round_trips,
        });
    }
    let text = args.output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if text {
        print_call(args, &kernel_name, &batch, &sampler, &warnings);
    }
    Ok(())
}

/// The text summary of one call.
fn print_call(
    args: &NegativesArgs,
    kernel_name: &str,
    batch: &boltz::negatives::NegativeBatch,
    sampler: &NegativeSampler,
    warnings: &[boltz::Warning],
) {
    let s = &batch.stats;
    println!(
        "{} negatives ({} steps of {kernel_name}): energy pos {:.4}, neg {:.4}, gap {:.4}; acceptance {:.3}, divergences {}, moved {:.4}, fresh {}, buffer {}",
        batch.negatives.nrows(),
        args.steps,
        s.energy_pos,
        s.energy_neg,
        s.energy_gap,
        s.acceptance,
        s.divergences,
        s.distance_moved,
        s.reinitialised,
        sampler.buffer_len()
    );
    super::commands::print_warnings(warnings);
}

/// The job the command's arguments describe.
fn negatives_job(args: &NegativesArgs) -> Result<NegativesJob> {
    Ok(NegativesJob {
        method: args.method.clone(),
        kernel: args.kernel.clone(),
        steps: args.steps,
        kernel_settings: args.kernel_args.settings()?,
        buffer: args.buffer,
        reinit: args.reinit,
        buffer_policy: args.buffer_policy.clone(),
        beta: args.beta,
        seed: args.seed,
        init: parse_init(&args.init)?,
        replicas: args.replicas,
        local_kernel: args.local_kernel.clone(),
        base_scale: args.base_scale,
        // The CLI prints and writes the negatives' energies.
        end_energies: true,
        adapt_step: args.adapt_step,
    })
}
