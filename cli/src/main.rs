//! The `boltz` command: parsing, progress, signals, printing, bench tables and figures; the maths is in the `boltz` library.

mod bench;
mod commands;
mod finished;
mod kernel_args;
mod logz;
mod negatives;
mod render;
mod workloads;

use boltz::Error;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Samples from energy-based models: Langevin, MCMC, AIS and diagnostics.
#[derive(Parser, Debug)]
#[command(name = "boltz", version, about)]
pub struct Cli {
    /// Worker threads for the energy core (default: all cores). Results do not depend on it.
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

/// Options of `boltz sample`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SampleArgs {
    /// A suite target name or a model file (JSON).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub precision: PrecisionArg,
    #[arg(long, help = kernel_args::sampler_help())]
    pub sampler: String,
    /// pt: replicas per chain, from the reference (the AIS base) to the
    /// target; about 2 Lambda + 2 (the report's communication barrier) is enough.
    #[arg(long, default_value_t = 8)]
    pub replicas: usize,
    /// pt: the local move of every replica (default: mala, or gibbs for
    /// binary models).
    #[arg(long)]
    pub kernel: Option<String>,
    /// pt: also write every replica's draws, (replicas, chains, draws, dim) npy.
    #[arg(long)]
    pub all_replicas: Option<PathBuf>,
    /// pt: `pooled`, one ladder for all chains re-spaced from all their
    /// swaps (the lower stepping-stone error), or `per-chain`, each chain
    /// its own from its own swaps (a chain then depends on no other; needed
    /// with --shard).
    #[arg(long, default_value = "pooled")]
    pub ladder: String,
    /// Run only shard I of M (0-based) of the chains, with the streams they
    /// have in the whole run; write it to --shard-out and join the shards
    /// with `boltz merge`. Each chain adapts its own step and mass (with
    /// pt, its own ladder: --ladder per-chain), so every split gives the
    /// one-process run's draws (refused with --shared-step, --pooled-mass
    /// and pt's pooled ladder).
    #[arg(long, value_name = "I/M", requires = "shard_out")]
    pub shard: Option<String>,
    /// The shard file (its draws and the run's settings).
    #[arg(long, requires = "shard")]
    pub shard_out: Option<PathBuf>,
    /// pt: the reference N(0, S^2 I) (default: the AIS pilot's Gaussian,
    /// centred at 0 and widened to cover where its chains started).
    #[arg(long)]
    pub base_scale: Option<f64>,
    /// Number of chains.
    #[arg(long, default_value_t = 4)]
    pub chains: usize,
    /// Warm-up steps (step size and mass adaptation).
    #[arg(long, default_value_t = 1000)]
    pub warmup: usize,
    /// Recorded draws per chain.
    #[arg(long, default_value_t = 1000)]
    pub draws: usize,
    /// Steps per recorded draw.
    #[arg(long, default_value_t = 1)]
    pub thin: usize,
    #[command(flatten)]
    pub kernel_args: kernel_args::KernelArgs,
    /// One step size shared by all chains (adapted on their mean acceptance)
    /// instead of one per chain.
    #[arg(long)]
    pub shared_step: bool,
    /// Do not adapt a diagonal mass matrix during warm-up.
    #[arg(long)]
    pub no_adapt_mass: bool,
    /// Adapt one mass matrix for all chains from their pooled warm-up draws
    /// instead of one per chain from its own (refused with --shard).
    #[arg(long, conflicts_with = "no_adapt_mass")]
    pub pooled_mass: bool,
    /// Adapt a dense mass matrix (one for all chains, from the within-chain
    /// covariances of their warm-up draws and gradients) instead of a diagonal: for
    /// strongly correlated targets (refused with --shard).
    #[arg(long, conflicts_with = "no_adapt_mass")]
    pub dense_mass: bool,
    /// Where warm-up's mass windows lie: proportional (15%-40% and 40%-90%
    /// of warm-up) or expanding (Stan's: 75 steps, then windows of 25, 50,
    /// 100, ... steps, the last 50 for the step alone; for NUTS on
    /// ill-conditioned targets).
    #[arg(long, default_value = "proportional", value_parser = ["proportional", "expanding"])]
    pub mass_windows: String,
    /// Inverse temperature: the target is exp(-beta F).
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Seed: chain i uses ChaCha stream (seed, i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Contexts of a conditional model: (1, x_dim) or (chains, x_dim).
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Where chains start: an npy file of positions (chains, dim), or
    /// `dispersed:MIN,MAX` (the default, dispersed:2,20: each chain a
    /// half-width R log-uniform on [MIN, MAX], each coordinate uniform on
    /// (-R, R)), `gaussian:STD`, `uniform:LO,HI`. Binary models: coin flips.
    #[arg(long, allow_hyphen_values = true)]
    pub init: Option<String>,
    /// Output samples, (chains, draws, dim) npy (a shard needs only
    /// --shard-out; `boltz merge --out` writes the run's).
    #[arg(long, required_unless_present = "shard_out")]
    pub out: Option<PathBuf>,
    /// Output energies F of the draws, (chains, draws) npy.
    #[arg(long)]
    pub energies: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Write a checkpoint (atomically) here every --checkpoint-every steps
    /// and on SIGINT / SIGTERM.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (0: only on interruption).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Continue the run saved in this checkpoint (same settings required);
    /// the result is bit-identical to an uninterrupted run.
    #[arg(long)]
    pub resume: Option<PathBuf>,
}

/// `--report FILE` and `--json`, which every command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Write the command's report as JSON to this file (atomically).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the report as one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

impl OutputArgs {
    /// Declares `--report` in the run's outputs (before any work).
    pub fn declare(&self, outputs: &mut boltz::io::Outputs) -> boltz::Result<()> {
        match &self.report {
            Some(p) => outputs.declare("--report", p),
            None => Ok(()),
        }
    }

    /// Stages `report` where asked; prints it with `--json`. Returns true
    /// when the text output should follow (no `--json`).
    pub fn emit(
        &self,
        report: &serde_json::Value,
        outputs: &mut boltz::io::Outputs,
    ) -> boltz::Result<bool> {
        if let Some(path) = &self.report {
            outputs.put("--report", path, &json_bytes(report)?)?;
        }
        if self.json {
            println!("{}", json_line(report)?);
        }
        Ok(!self.json)
    }
}

fn json_error(e: serde_json::Error) -> boltz::Error {
    boltz::Error::Numerical(format!("cannot encode the report as JSON: {e}"))
}

/// One line of JSON.
pub fn json_line<T: serde::Serialize + ?Sized>(v: &T) -> boltz::Result<String> {
    serde_json::to_string(v).map_err(json_error)
}

/// A value as JSON (for reports built from structs).
pub fn json_value<T: serde::Serialize>(v: &T) -> boltz::Result<serde_json::Value> {
    serde_json::to_value(v).map_err(json_error)
}

/// Pretty JSON with a final newline.
pub fn json_bytes<T: serde::Serialize>(v: &T) -> boltz::Result<Vec<u8>> {
    let mut s = serde_json::to_string_pretty(v).map_err(json_error)?;
    s.push('\n');
    Ok(s.into_bytes())
}

/// `--precision`: the arithmetic precision of the model's energy.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PrecisionArg {
    /// The energy's arithmetic: f64, or f32 for mlp and rbm models (matrix
    /// products, activations, RBM row sums and sigmoids in single precision;
    /// sampler state, acceptance, AIS weights and every accumulation stay
    /// f64). Default: the model file's `dtype`, else f64.
    #[arg(long, value_name = "f64|f32")]
    pub precision: Option<String>,
}

impl PrecisionArg {
    /// Loads `spec` (suite name or model file) at this precision.
    pub fn load(&self, spec: &str) -> boltz::Result<boltz::Model> {
        let model = boltz::model::load(spec)?;
        match &self.precision {
            None => Ok(model),
            Some(p) => model.with_precision(boltz::energy::Precision::parse(p)?),
        }
    }
}

/// A model given as a file (not a suite name): an input of the run.
pub fn model_input(model: &str) -> Option<&std::path::Path> {
    let p = std::path::Path::new(model);
    p.exists().then_some(p)
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the kernels, what each is, the settings it reads and their defaults.
    Kernels {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the reference targets, their dimensions and exact log Z.
    Suite {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Energies (and gradients) of given points.
    Energy {
        /// A suite target name or a model file (JSON).
        #[arg(long)]
        model: String,
        #[command(flatten)]
        precision: PrecisionArg,
        /// Points, an (n, d) npy array.
        #[arg(long)]
        points: PathBuf,
        /// Contexts for a conditional model: (1, x_dim) or (n, x_dim).
        #[arg(long)]
        context: Option<PathBuf>,
        /// Output energies, (n,) npy.
        #[arg(long)]
        out: PathBuf,
        /// Output gradients dF/dy, (n, d) npy.
        #[arg(long)]
        grad: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run chains of a sampler on a model and report diagnostics.
    Sample(Box<SampleArgs>),
    /// log Z of a model: exact where possible, else estimators held against each other (AIS for conditional models), with error bars.
    Logz {
        #[command(flatten)]
        args: Box<logz::LogzArgs>,
    },
    /// log P(y|x) = -beta F(x, y) - log Z(x) of points under every context
    /// (or under their own with --paired); log P(y) for unconditional models.
    Prob {
        #[command(flatten)]
        args: Box<logz::LogzArgs>,
        /// Points y, (N, y_dim) npy.
        #[arg(long)]
        points: PathBuf,
        /// Output npy: (contexts, N) for all pairs, (N,) with --paired or
        /// for an unconditional model (a shard writes --shard-out instead;
        /// `boltz merge --out` writes the run's).
        #[arg(long, required_unless_present = "shard_out")]
        out: Option<PathBuf>,
        /// Row i of the points under row i of the contexts only (N contexts
        /// for N points): output (N,).
        #[arg(long)]
        paired: bool,
    },
    /// Join the shard files of one sharded run (`logz --shard`, `sample
    /// --shard`): checks they are all the shards of one run, then reports
    /// what the one-process run reports (log Z from all log-weights; all
    /// chains' draws and diagnostics).
    Merge {
        /// The shard files, in any order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Sample shards: the merged draws, (chains, draws, dim) npy.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Sample shards: the merged energies, (chains, draws) npy.
        #[arg(long)]
        energies: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Negative samples for contrastive training (short-run, replay buffer, CD, PCD).
    Negatives(Box<negatives::NegativesArgs>),
    /// Run the suite's workloads (W1-W6, W8), check and time them, and write
    /// results/bench.jsonl and the table in results/README.md.
    Bench(Box<bench::BenchArgs>),
    /// Run several samplers on one model with the same seed and compare
    /// ESS per second and per gradient, acceptance, R-hat and moment errors.
    Compare(Box<bench::CompareArgs>),
    /// Diagnostics (R-hat, bulk and tail ESS, MCSE) of any (chains, draws, dim) npy array.
    Diagnose {
        /// Samples, (chains, draws, dim) npy; a 2-D array is one chain
        /// (draws, dim) unless --matrix chains-draws.
        #[arg(long)]
        samples: PathBuf,
        /// How a 2-D array is read: `draws-dim` (one chain, the default) or
        /// `chains-draws` (one coordinate, e.g. the energies `sample` writes).
        #[arg(long, default_value = "draws-dim")]
        matrix: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Flags set by SIGINT and SIGTERM: the first stops a run after its
/// current step (checkpoint and partial output written); the second exits
/// at once.
pub struct Signals {
    /// Set by either signal.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set by SIGINT.
    pub interrupt: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set by SIGTERM.
    pub terminate: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

static SIGNALS: std::sync::OnceLock<Signals> = std::sync::OnceLock::new();

/// The process's signal flags, installed on first use.
pub fn signals() -> &'static Signals {
    SIGNALS.get_or_init(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let s = Signals {
            stop: Default::default(),
            interrupt: Default::default(),
            terminate: Default::default(),
        };
        // A second signal, once `stop` is set, exits at once (registered
        // first, so it sees the flag before the first signal sets it).
        let _ = flag::register_conditional_shutdown(SIGINT, 130, s.stop.clone());
        let _ = flag::register_conditional_shutdown(SIGTERM, 143, s.stop.clone());
        let _ = flag::register(SIGINT, s.interrupt.clone());
        let _ = flag::register(SIGTERM, s.terminate.clone());
        let _ = flag::register(SIGINT, s.stop.clone());
        let _ = flag::register(SIGTERM, s.stop.clone());
        s
    })
}

/// For commands with nothing partial worth writing (bench, compare,
/// energy, diagnose, suite): the first SIGINT / SIGTERM exits at once
/// (130 / 143). Their outputs are written atomically at the end, so an
/// exit leaves every earlier file as it was.
pub fn exit_on_first_signal() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let always = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let _ = signal_hook::flag::register_conditional_shutdown(SIGINT, 130, always.clone());
    let _ = signal_hook::flag::register_conditional_shutdown(SIGTERM, 143, always);
}

/// Runs the command line; returns the exit code.
fn app_main() -> i32 {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|c| (c, m)));
    let (cli, matches) = match parsed {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                };
            }
            let text = e.to_string();
            // The first line, with the arguments clap lists under it
            // (indented: the missing ones), on one line.
            let mut lines = text.lines();
            let mut first = lines
                .next()
                .unwrap_or("usage error")
                .trim_start_matches("error: ")
                .to_string();
            for l in lines.take_while(|l| l.starts_with("  ")) {
                first.push(' ');
                first.push_str(l.trim());
            }
            eprintln!("error: {first} (see boltz --help)");
            return 2;
        }
    };
    // Run the command on a worker of the pool, so that the many small
    // parallel calls of a step are forked from inside the pool instead of
    // each being injected from outside (which costs microseconds a call).
    let threads = cli.threads;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(t) = threads
        && t > 4 * cores
    {
        eprintln!(
            "error: invalid value for `--threads`: {t} is more than 4 x the {cores} cores of this machine"
        );
        return 2;
    }
    if let Some(t) = threads
        && t > 0
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
    {
        eprintln!("error: invalid value for `--threads`: {e}");
        return 2;
    }
    let subcommand = matches.subcommand_name().unwrap_or("").to_string();
    match rayon::scope(|_| run(cli)).map_err(|e| with_flags(e, &subcommand)) {
        Ok(()) => {
            use std::sync::atomic::Ordering;
            match SIGNALS.get() {
                Some(s) if s.interrupt.load(Ordering::SeqCst) => 130,
                Some(s) if s.terminate.load(Ordering::SeqCst) => 143,
                _ => 0,
            }
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            if let Error::Interrupted(_) = e {
                let s = signals();
                return if s.terminate.load(std::sync::atomic::Ordering::SeqCst) {
                    143
                } else {
                    130
                };
            }
            if e.is_input() { 2 } else { 1 }
        }
    }
}

/// The library names settings as the library and Python do (`step_size`,
/// `shard`, `local_kernel`); the command line shows them as the flags of
/// the command that ran (`--step-size`): the error's setting name, and each
/// setting its reason writes in backticks. Names that are no flag of the
/// command stay as they are.
fn with_flags(e: Error, subcommand: &str) -> Error {
    use clap::CommandFactory;
    let root = Cli::command();
    let Some(cmd) = root.find_subcommand(subcommand) else {
        return e;
    };
    let flag = |name: &str| {
        let long = name.replace('_', "-");
        cmd.get_arguments()
            .chain(root.get_arguments())
            .any(|a| a.get_long() == Some(long.as_str()))
            .then(|| format!("--{long}"))
    };
    match e {
        Error::InvalidParameter { name, reason } => Error::InvalidParameter {
            name: flag(&name).unwrap_or(name),
            reason: backticked_flags(&reason, &flag),
        },
        Error::Shape {
            context,
            expected,
            got,
        } => Error::Shape {
            context: flag(&context).unwrap_or(context),
            expected,
            got,
        },
        e => e,
    }
}

/// `text` with each `` `name` `` (or `` `name value` ``) whose name `flag`
/// knows written with its flag.
fn backticked_flags(text: &str, flag: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('`') {
        out.push_str(&rest[..i + 1]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('`') else {
            rest = after;
            break;
        };
        // `name` or `name value`: the name becomes the flag.
        let span = &after[..j];
        let (word, value) = span.split_at(span.find(' ').unwrap_or(span.len()));
        match flag(word).filter(|_| !word.is_empty()) {
            Some(f) => {
                out.push_str(&f);
                out.push_str(value);
            }
            None => out.push_str(span),
        }
        out.push('`');
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

fn run(cli: Cli) -> Result<(), Error> {
    if cli.threads == Some(0) {
        return Err(Error::param("--threads", "must be >= 1"));
    }
    // Signals from the start: runs with a stop flag (sample, logz, prob,
    // negatives) stop within a step of a loop; the others exit at once.
    if matches!(
        cli.command,
        Command::Bench(_)
            | Command::Compare(_)
            | Command::Energy { .. }
            | Command::Diagnose { .. }
            | Command::Suite { .. }
            | Command::Kernels { .. }
            | Command::Merge { .. }
    ) {
        exit_on_first_signal();
    } else {
        let _ = signals();
    }
    match cli.command {
        Command::Suite { output } => commands::suite(&output),
        Command::Kernels { output } => commands::kernels(&output),
        Command::Merge {
            files,
            out,
            energies,
            output,
        } => finished::merge(&files, out.as_deref(), energies.as_deref(), &output),
        Command::Energy {
            model,
            precision,
            points,
            context,
            out,
            grad,
            output,
        } => commands::energy(
            &model,
            &precision,
            &points,
            context.as_deref(),
            &out,
            grad.as_deref(),
            &output,
        ),
        Command::Sample(args) => commands::sample(&args),
        Command::Diagnose {
            samples,
            matrix,
            output,
        } => finished::diagnose(&samples, &matrix, &output),
        Command::Logz { args } => logz::logz(&args),
        Command::Negatives(args) => negatives::negatives(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Compare(args) => bench::compare(&args),
        Command::Prob {
            args,
            points,
            out,
            paired,
        } => logz::prob(&args, &points, out.as_deref(), paired),
    }
}

fn main() {
    std::process::exit(app_main());
}
