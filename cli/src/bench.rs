//! `boltz bench` (the suite's workloads into results/) and `boltz compare`
//! (samplers side by side on one model).

use crate::workloads::{self as bench, BenchOptions, Measurement, Workload};
use boltz::compare::{self, CompareConfig};
use boltz::{Error, Result};
use std::path::{Path, PathBuf};

/// Options of `boltz bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Workloads to run, comma-separated (W1..W6, W8; default all).
    #[arg(long, value_delimiter = ',', default_value = "W1,W2,W3,W4,W5,W6,W8")]
    pub workloads: Vec<String>,
    /// Folder for bench.jsonl and README.md.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Timed repeats per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Seed of the first timed repeat.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tiny sizes for a smoke run (figures not comparable with the suite's).
    #[arg(long)]
    pub quick: bool,
    /// Also measure 1-thread speed-ups (W1, W3, W5) and cost exponents in
    /// chains and dimension (W1).
    #[arg(long)]
    pub scaling: bool,
    /// Exit with status 1 when a check of what was timed fails.
    #[arg(long)]
    pub strict: bool,
    /// Print the JSON lines on stdout instead of the table.
    #[arg(long)]
    pub jsonl: bool,
    #[command(flatten)]
    pub output: crate::OutputArgs,
}

/// Options of `boltz compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// A suite target name or a model file (JSON).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub precision: crate::PrecisionArg,
    #[arg(long, value_delimiter = ',', help = format!("Samplers, comma-separated: any of {}. Default: mala,hmc,rwm,ula; gibbs for binary models", crate::kernel_args::kernel_names()))]
    pub samplers: Option<Vec<String>>,
    #[command(flatten)]
    pub kernel_args: crate::kernel_args::KernelArgs,
    /// Inverse temperature: every sampler targets exp(-beta F).
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Chains per sampler.
    #[arg(long, default_value_t = 4)]
    pub chains: usize,
    /// Warm-up steps per sampler.
    #[arg(long, default_value_t = 1000)]
    pub warmup: usize,
    /// Recorded draws per chain.
    #[arg(long, default_value_t = 1000)]
    pub draws: usize,
    /// Seed, the same for every sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// ULA's step size (default: the step of a MALA warm-up without a mass matrix).
    #[arg(long)]
    pub ula_step: Option<f64>,
    /// Contexts of a conditional model: (1, x_dim) or (chains, x_dim).
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Folder for compare.json, compare.md and compare.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: crate::OutputArgs,
}

const BEGIN: &str = "<!-- boltz bench: begin (generated; edit outside these markers) -->";
const END: &str = "<!-- boltz bench: end -->";

fn git(args: &[&str]) -> Option<String> {
    let o = std::process::Command::new("git").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The commit the binary runs from (with `+dirty` for local changes).
fn commit() -> String {
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}+dirty") } else { c }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

/// Reads earlier measurements; a missing file is empty, a malformed line an error.
fn read_jsonl(path: &Path) -> Result<Vec<Measurement>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io(path, e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                Error::param(
                    "bench.jsonl",
                    format!("{}:{}: not a measurement ({e})", path.display(), i + 1),
                )
            })
        })
        .collect()
}

/// Puts the generated section into README.md, keeping everything outside
/// the markers (the hand-written analysis).
fn update_readme(path: &Path, section: &str, outputs: &mut boltz::io::Outputs) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("# boltz results\n\n{BEGIN}\n{END}\n")
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if a < b => format!(
            "{}{BEGIN}\n{section}{END}{}",
            &old[..a],
            &old[b + END.len()..]
        ),
        _ => format!("{old}\n{BEGIN}\n{section}{END}\n"),
    };
    outputs.stage(path, new.as_bytes())
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    if args.repeats == 0 {
        return Err(Error::param("--repeats", "must be >= 1"));
    }
    let mut workloads = args
        .workloads
        .iter()
        .map(|w| Workload::parse(w))
        .collect::<Result<Vec<_>>>()?;
    workloads.sort();
    workloads.dedup();
    let opts = BenchOptions {
        repeats: args.repeats,
        quick: args.quick,
        seed: args.seed,
        scaling: args.scaling,
    };
    out_dir(&args.out)?;
    let jsonl = args.out.join("bench.jsonl");
    let readme = args.out.join("README.md");
    let mut outputs = boltz::io::Outputs::new(&[]);
    outputs.declare("--out", &jsonl)?;
    outputs.declare("--out", &readme)?;
    args.output.declare(&mut outputs)?;
    let mut all = read_jsonl(&jsonl)?;
    let fresh = measure(args, &workloads, &opts)?;
    // Replace earlier records of the workloads just run; keep the others.
    let ran: Vec<String> = fresh.iter().map(|m| m.workload.clone()).collect();
    all.retain(|m| !ran.contains(&m.workload));
    all.extend(fresh.iter().cloned());
    all.sort_by(|a, b| a.workload.cmp(&b.workload));
    let mut text = String::new();
    for m in &all {
        text.push_str(&crate::json_line(m)?);
        text.push('\n');
    }
    outputs.stage(&jsonl, text.as_bytes())?;
    let section = format!(
        "Measured by `boltz bench{}{}` on {} (commit {}, {}, {} rayon threads{}).\nEach figure is the median of the timed repeats after one untimed warm-up run; `checks` says whether what was timed was also right (the notes say how it was checked).\n\n{}",
        if args.quick { " --quick" } else { "" },
        if args.scaling { " --scaling" } else { "" },
        bench::machine(),
        commit(),
        bench::today(),
        rayon::current_num_threads(),
        if args.quick {
            "; QUICK sizes, not comparable"
        } else {
            ""
        },
        bench::markdown_table(&all)
    );
    update_readme(&readme, &section, &mut outputs)?;
    let failed: Vec<&Measurement> = fresh.iter().filter(|m| !m.ok).collect();
    let warnings: boltz::Warnings = failed
        .iter()
        .map(|m| {
            boltz::Warning::new(
                boltz::WarningKind::CheckFailed,
                format!(
                    "{} {} ({}): a check FAILED{}: {}",
                    m.workload,
                    m.target,
                    m.figure,
                    if args.quick { " at --quick sizes" } else { "" },
                    m.notes
                        .split("; ")
                        .filter(|n| n.starts_with("CHECK FAILED"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
        })
        .collect();
    let v = serde_json::json!({
        "measurements": fresh,
        "failed": failed.len(),
        "quick": args.quick,
    });
    let mut v = v;
    warnings.write_into(&mut v);
    let text = args.output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if text && !args.jsonl {
        print!("{}", bench::markdown_table(&fresh));
        super::commands::print_warnings(&warnings);
    }
    eprint_summary(args, fresh.len(), &jsonl, failed.len());
    if !failed.is_empty() && args.strict {
        return Err(Error::Numerical(format!(
            "{} measurements failed their checks",
            failed.len()
        )));
    }
    Ok(())
}

/// Runs each workload (and the scaling figures when asked), printing each
/// record as a JSON line with `--jsonl`.
fn measure(
    args: &BenchArgs,
    workloads: &[Workload],
    opts: &BenchOptions,
) -> Result<Vec<Measurement>> {
    let mut fresh = Vec::new();
    for w in workloads {
        eprintln!("boltz bench: {} ...", w.name());
        let ms = bench::run(
            &[*w],
            &BenchOptions {
                scaling: false,
                ..opts.clone()
            },
        )?;
        for m in &ms {
            if args.jsonl {
                println!("{}", crate::json_line(m)?);
            }
        }
        fresh.extend(ms);
    }
    if args.scaling {
        eprintln!("boltz bench: scaling ...");
        let ms = bench::scaling(workloads, opts)?;
        if args.jsonl {
            for m in &ms {
                println!("{}", crate::json_line(m)?);
            }
        }
        fresh.extend(ms);
    }
    Ok(fresh)
}

/// The one line on stderr that says what `bench` wrote and how many of its
/// `n` measurements `failed` their checks.
fn eprint_summary(args: &BenchArgs, n: usize, jsonl: &Path, failed: usize) {
    eprintln!(
        "boltz bench: {} measurements -> {} and {}{}",
        n,
        jsonl.display(),
        args.out.join("README.md").display(),
        match (failed, args.strict) {
            (0, _) => String::new(),
            (n, true) => format!("; {n} with a FAILED check (see notes): exit 1 (--strict)"),
            (n, false) => format!(
                "; {n} with a FAILED check (see notes); exit 0 without --strict{}",
                if args.quick {
                    " (--quick sizes are too small for some checks)"
                } else {
                    ""
                }
            ),
        }
    );
}

/// Makes the output directory `dir`, refusing (exit 2, before any work) a
/// path that exists and is not a directory.
fn out_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::param(
            "--out",
            format!(
                "{} exists and is not a directory (--out names the directory the figures are written into)",
                dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

pub fn compare(args: &CompareArgs) -> Result<()> {
    let inputs: Vec<&Path> = [args.context.as_deref(), crate::model_input(&args.model)]
        .into_iter()
        .flatten()
        .collect();
    let mut outputs = boltz::io::Outputs::new(&inputs);
    if let Some(dir) = &args.out {
        out_dir(dir)?;
        for f in ["compare.json", "compare.md", "compare.svg"] {
            outputs.declare("--out", &dir.join(f))?;
        }
    }
    args.output.declare(&mut outputs)?;
    let model = args.precision.load(&args.model)?;
    let context = args
        .context
        .as_deref()
        .map(|p| crate::commands::read_matrix(p, "context"))
        .transpose()?;
    let config = CompareConfig {
        chains: args.chains,
        warmup: args.warmup,
        draws: args.draws,
        seed: args.seed,
        ula_step: args.ula_step,
        beta: args.beta,
        kernel_settings: args.kernel_args.settings()?,
    };
    let report = compare::compare_model(
        &model,
        context,
        args.samplers.as_deref(),
        &config,
        &boltz::run::Control::default(),
    )?;
    let md = crate::render::markdown(&report);
    let mut v = crate::json_value(&report)?;
    let warnings: boltz::Warnings = report
        .rows
        .iter()
        .flat_map(|r| {
            r.warnings
                .iter()
                .map(|w| w.prefixed(&format!("{}: ", r.sampler)))
        })
        .collect();
    warnings.write_into(&mut v);
    let text = args.output.emit(&v, &mut outputs)?;
    if let Some(dir) = &args.out {
        outputs.stage_json(&dir.join("compare.json"), &v)?;
        outputs.stage(&dir.join("compare.md"), md.as_bytes())?;
        outputs.stage(
            &dir.join("compare.svg"),
            crate::render::svg(&report).as_bytes(),
        )?;
    }
    outputs.commit()?;
    if text {
        print!("{md}");
    }
    if let Some(dir) = &args.out {
        eprintln!(
            "wrote {}, compare.md and compare.svg",
            dir.join("compare.json").display()
        );
    }
    Ok(())
}
