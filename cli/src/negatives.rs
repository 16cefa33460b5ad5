//! `boltz negatives`.

use super::commands::read_matrix;
use boltz::error::{Error, Result};
use boltz::kernels::KernelSpec;
use boltz::negatives::{Init, Method, NegativeSampler};
use boltz::{StateSpace, io};
use std::path::PathBuf;

/// Options of `boltz negatives`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct NegativesArgs {
    /// A suite target name or a model file (JSON).
    #[arg(long)]
    pub model: String,
    /// Positives, (n, dim) npy: CD starts from them; all methods report the energy gap.
    #[arg(long)]
    pub data: PathBuf,
    /// Contexts of a conditional model: (1, x_dim) or (chains, x_dim).
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// short-run (from noise, or from a replay buffer with --buffer), cd or pcd.
    #[arg(long, default_value = "short-run")]
    pub method: String,
    /// ula, mala or gibbs (default: gibbs for binary models, else ula).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Chains per call (default: one per row of --data).
    #[arg(long)]
    pub chains: Option<usize>,
    /// Transitions per call (K).
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Step size (ULA: multiplies the gradient; MALA: time step).
    #[arg(long, default_value_t = 0.01)]
    pub step_size: f64,
    /// ULA noise standard deviation (default sqrt(2 step_size)).
    #[arg(long)]
    pub noise: Option<f64>,
    /// ULA: clamp each gradient entry to [-C, C].
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// Fresh chains start `gaussian:STD` or `uniform:LO,HI` (binary models: coin flips).
    #[arg(long, default_value = "gaussian:1")]
    pub init: String,
    /// Replay buffer capacity (with --method short-run); 0 = no buffer.
    #[arg(long, default_value_t = 0)]
    pub buffer: usize,
    /// Fraction of chains started from noise instead of the buffer.
    #[arg(long, default_value_t = 0.05)]
    pub reinit: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Persistent state (buffer, chains, random streams): loaded if the file
    /// exists, saved back atomically after the call.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Output negatives, (chains, dim) npy.
    #[arg(long)]
    pub out: PathBuf,
    /// Write the call's statistics as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn parse_init(s: &str, binary: bool) -> Result<Init> {
    if binary {
        return Ok(Init::Bernoulli);
    }
    let bad = || {
        Error::param(
            "--init",
            format!("expected gaussian:STD or uniform:LO,HI, got `{s}`"),
        )
    };
    match s.split_once(':') {
        Some(("gaussian", v)) => Ok(Init::Gaussian {
            std: v.parse().map_err(|_| bad())?,
        }),
        Some(("uniform", v)) => {
            let (a, b) = v.split_once(',').ok_or_else(bad)?;
            Ok(Init::Uniform {
                lo: a.trim().parse().map_err(|_| bad())?,
                hi: b.trim().parse().map_err(|_| bad())?,
            })
        }
        _ => Err(bad()),
    }
}

pub fn negatives(args: &NegativesArgs) -> Result<()> {
    // A SIGINT / SIGTERM during the call lets it finish (a call is short)
    // and save its state; the command then exits 130 / 143.
    let _ = super::signals();
    let model = boltz::model::load(&args.model)?;
    let data = read_matrix(&args.data, "data")?;
    let chains = args.chains.unwrap_or(data.nrows());
    let ctx = args
        .context
        .as_deref()
        .map(|p| read_matrix(p, "context"))
        .transpose()?;
    let energy = model.energy(ctx)?;
    let binary = energy.space() == StateSpace::Binary;
    let init = parse_init(&args.init, binary)?;
    let method = match (args.method.as_str(), args.buffer) {
        ("short-run", 0) => Method::ShortRun,
        ("short-run", capacity) => Method::Replay {
            capacity,
            reinit: args.reinit,
        },
        ("cd", 0) => Method::Cd,
        ("pcd", 0) => Method::Pcd,
        ("cd" | "pcd", _) => {
            return Err(Error::param(
                "--buffer",
                "a replay buffer goes with --method short-run",
            ));
        }
        (other, _) => {
            return Err(Error::param(
                "--method",
                format!("unknown method `{other}` (short-run, cd, pcd)"),
            ));
        }
    };
    if !(0.0..=1.0).contains(&args.reinit) {
        return Err(Error::param(
            "--reinit",
            format!("must be in [0, 1], got {}", args.reinit),
        ));
    }
    let mut spec = match &args.kernel {
        Some(name) => KernelSpec::new(name)?,
        None if binary => KernelSpec::new("gibbs")?,
        None => KernelSpec::new("ula")?,
    };
    boltz::error::check_positive("--step-size", args.step_size)?;
    spec = spec.step_size(args.step_size)?;
    (spec.noise, spec.grad_clip, spec.track_energy) = (args.noise, args.grad_clip, false);
    let kernel = spec.build_for(energy.as_ref())?;
    let kernel_name = spec.name().to_string();
    let mut sampler = match args.state.as_deref().filter(|p| p.exists()) {
        Some(path) => NegativeSampler::load(path, method, init, chains, energy.dim(), args.seed)?,
        None => NegativeSampler::new(method, init, chains, energy.dim(), args.seed)?,
    };
    let positives =
        (data.nrows() == chains || energy.fixed_rows().is_none()).then_some(data.view());
    let batch = sampler.generate(energy.as_ref(), kernel.as_ref(), args.steps, positives)?;
    io::write_npy(
        &args.out,
        &[batch.negatives.nrows(), batch.negatives.ncols()],
        batch.negatives.as_slice().expect("standard layout"),
    )?;
    if let Some(path) = &args.state {
        sampler.save(path)?;
    }
    let s = &batch.stats;
    if let Some(path) = &args.report {
        let v = serde_json::json!({ "call": sampler.state().calls, "stats": s, "buffer": sampler.buffer_len() });
        io::write_json_atomic(path, &v)?;
    }
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
    Ok(())
}
