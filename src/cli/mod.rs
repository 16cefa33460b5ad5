//! Command-line front end: subcommands, one-line errors, exit codes
//! (0 success, 2 bad input or usage, 1 failure while running).

mod commands;

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

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the reference targets, their dimensions and exact log Z.
    Suite {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Energies (and gradients) of given points.
    Energy {
        /// A suite target name or a model file (JSON).
        #[arg(long)]
        model: String,
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
    },
}

/// Runs the command line; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
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
            let first = text
                .lines()
                .next()
                .unwrap_or("usage error")
                .trim_start_matches("error: ");
            eprintln!("error: {first} (see boltz --help)");
            return 2;
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            if e.is_input() { 2 } else { 1 }
        }
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

fn run(cli: Cli) -> Result<(), Error> {
    if let Some(t) = cli.threads {
        if t == 0 {
            return Err(Error::param("--threads", "must be >= 1"));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| Error::param("--threads", e.to_string()))?;
    }
    match cli.command {
        Command::Suite { json } => commands::suite(json),
        Command::Energy {
            model,
            points,
            context,
            out,
            grad,
        } => commands::energy(&model, &points, context.as_deref(), &out, grad.as_deref()),
    }
}
