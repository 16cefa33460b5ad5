//! The suite's workloads W1-W6 (`docs/WORKLOADS.md`) and W8 (trained EBMs) as timed, checked
//! measurements: what `boltz bench` runs and writes to `results/`.
//!
//! Every measurement times what the peers' scripts time (the sampling
//! loop, not set-up or diagnostics), takes the median of `repeats` timed
//! runs after one untimed warm-up run, and checks what it timed (acceptance,
//! moments, log Z error) so that a fast wrong number is never reported
//! silently: [`Measurement::ok`] is false and the reason is in `notes`.
//! Records have the keys of the peer scripts' JSON lines, so that
//! `scripts/compare-peers.sh` can set them side by side.

use boltz::ais::{self, AisConfig, AisProblem, Base, Schedule, ScheduleChoice};

use boltz::diagnostics;
use boltz::energy::{Energy, Precision, evaluate};
use boltz::error::{Error, Result};
use boltz::kernels::{ChainState, ChainStep, Gibbs, Kernel, KernelSpec, Mala, Ula, mean_accept};
use boltz::model;
use boltz::negatives::{Init, Method, NegativeSampler};
use boltz::rng::{aux_rng, chain_rngs};
use boltz::sampler::{NoObserver, SampleConfig, sample};
use ndarray::{Array2, Axis, s};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;
mod chains;
mod logz;
mod scaling;
mod w2;
mod w8;

use chains::{w1, w1_with, w3, w3_with, w5, w5_with};
use logz::{w4, w6};
pub use scaling::scaling;
use w2::w2;
use w8::w8;

/// The suite's workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// MALA on `gauss-ill`, 1024 chains x 1000 steps, step 0.01.
    W1,
    /// ESS per second of MALA and HMC on `gauss-ill` and `funnel`.
    W2,
    /// ULA negatives on `mlp`, 1024 chains x 100 steps.
    W3,
    /// AIS log Z on `gmm-ring`, `gmm-far`, `funnel`, `rbm20`.
    W4,
    /// Block Gibbs on `rbm500`, 1024 chains x 1000 sweeps.
    W5,
    /// log P(y|x) on `ring` against the radial quadrature.
    W6,
    /// log Z of the trained digits EBMs and the digits mixture by SMC.
    W8,
}

impl Workload {
    /// Parses `W1`..`W6`, `W8` (case-insensitive).
    pub fn parse(s: &str) -> Result<Workload> {
        let w = match s.trim().to_ascii_uppercase().as_str() {
            "W1" => Workload::W1,
            "W2" => Workload::W2,
            "W3" => Workload::W3,
            "W4" => Workload::W4,
            "W5" => Workload::W5,
            "W6" => Workload::W6,
            "W8" => Workload::W8,
            other => {
                return Err(Error::param(
                    "--workloads",
                    format!("unknown workload `{other}` (W1..W6, W8)"),
                ));
            }
        };
        Ok(w)
    }

    /// `W1`..`W6`, `W8`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W6 => "W6",
            Workload::W8 => "W8",
        }
    }
}

/// How to run the workloads.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Timed repeats per measurement (median reported), >= 1.
    pub repeats: usize,
    /// Tiny sizes (for tests and smoke runs): figures are not comparable.
    pub quick: bool,
    /// Seed of the first timed repeat (repeat r uses seed + r).
    pub seed: u64,
    /// Also measure 1-thread runs and cost against chains and dimension.
    pub scaling: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            repeats: 3,
            quick: false,
            seed: 0,
            scaling: false,
        }
    }
}

/// One measurement, with the keys of the peers' JSON lines.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Measurement {
    /// Who ran it: "boltz".
    pub peer: String,
    /// `W1`..`W6`, or `scaling`.
    pub workload: String,
    /// The suite target.
    pub target: String,
    /// What `value` measures (e.g. "grad evals/s").
    pub figure: String,
    /// The figure.
    pub value: f64,
    /// Median wall-clock seconds of the timed runs.
    pub wall_s: f64,
    /// Settings and the checks of what was timed.
    pub notes: String,
    /// Floating-point precision of the computation.
    pub dtype: String,
    /// The workload's sizes (e.g. chains, steps).
    pub size: Vec<usize>,
    /// Whether every check of the result passed.
    pub ok: bool,
    /// Worker threads the run used.
    pub threads: usize,
    /// log Z estimate (W4, W6), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logz_hat: Option<f64>,
    /// Reported standard error (W4, W6), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub se: Option<f64>,
}

impl Measurement {
    fn new(workload: &str, target: &str, figure: &str, value: f64, wall_s: f64) -> Self {
        Measurement {
            peer: "boltz".into(),
            workload: workload.into(),
            target: target.into(),
            figure: figure.into(),
            value,
            wall_s,
            notes: String::new(),
            dtype: "f64".into(),
            size: vec![],
            ok: true,
            threads: rayon::current_num_threads(),
            logz_hat: None,
            se: None,
        }
    }

    fn size(mut self, size: &[usize]) -> Self {
        self.size = size.to_vec();
        self
    }

    /// The precision of the energy's arithmetic (`"f64"` unless set).
    fn dtype(mut self, precision: Precision) -> Self {
        self.dtype = precision.name().into();
        self
    }

    /// Appends a note.
    fn note(&mut self, text: impl AsRef<str>) {
        if !self.notes.is_empty() {
            self.notes.push_str("; ");
        }
        self.notes.push_str(text.as_ref());
    }

    /// Records a check: a failed one clears `ok` and says so in the notes.
    fn check(&mut self, passed: bool, what: impl AsRef<str>) {
        if passed {
            self.note(format!("check passed: {}", what.as_ref()));
        } else {
            self.ok = false;
            self.note(format!("CHECK FAILED: {}", what.as_ref()));
        }
    }
}

/// Runs `f(seed)` once untimed (unless quick) and `repeats` times timed
/// (seeds `seed`, `seed + 1`, ...); returns the median wall time, the
/// output of the first timed run (seed `opts.seed`, so that accuracy
/// columns come from one seeded run, whichever repeat was the median in
/// time) and every wall time.
fn timed<T>(
    opts: &BenchOptions,
    mut f: impl FnMut(u64) -> Result<T>,
) -> Result<(f64, T, Vec<f64>)> {
    if !opts.quick {
        f(opts.seed + 1000)?;
    }
    let mut runs = Vec::with_capacity(opts.repeats);
    for r in 0..opts.repeats.max(1) {
        let t0 = Instant::now();
        let out = f(opts.seed + r as u64)?;
        runs.push((t0.elapsed().as_secs_f64(), out));
    }
    let walls: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let mut sorted = walls.clone();
    sorted.sort_by(f64::total_cmp);
    let wall = sorted[sorted.len() / 2];
    let (_, out) = runs.swap_remove(0);
    Ok((wall, out, walls))
}

fn fmt_walls(w: &[f64]) -> String {
    let v: Vec<String> = w.iter().map(|x| format!("{x:.3}")).collect();
    format!("walls [{}] s", v.join(", "))
}

/// Positions drawn N(0, std^2 I), chain i from its own stream.
fn gaussian_start(n: usize, d: usize, std: f64, seed: u64) -> Array2<f64> {
    let mut rngs = chain_rngs(seed ^ 0x5eed, n);
    let mut y = Array2::zeros((n, d));
    for (i, mut row) in y.axis_iter_mut(Axis(0)).enumerate() {
        for v in row.iter_mut() {
            let z: f64 = StandardNormal.sample(&mut rngs[i]);
            *v = std * z;
        }
    }
    y
}

/// Runs `steps` transitions of `kernel` from `y0`; returns the final
/// state and the mean acceptance over chains and steps.
pub fn run_chains(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    y0: Array2<f64>,
    steps: usize,
    seed: u64,
) -> Result<(ChainState, f64)> {
    let n = y0.nrows();
    let mut state = ChainState::new(energy, y0)?;
    let mut rngs = chain_rngs(seed, n);
    let mut step = vec![ChainStep::default(); n];
    let mut acc = 0.0;
    let tuning = kernel.initial_tuning();
    boltz::run::in_pool(|| {
        for _ in 0..steps {
            kernel.step(energy, &tuning, &mut state, &mut rngs, &mut step);
            acc += mean_accept(&step);
        }
    });
    Ok((state, acc / steps.max(1) as f64))
}

/// Runs the chosen workloads; measurements in workload order.
pub fn run(workloads: &[Workload], opts: &BenchOptions) -> Result<Vec<Measurement>> {
    if opts.repeats == 0 {
        return Err(Error::param("--repeats", "must be >= 1"));
    }
    let mut out = Vec::new();
    for w in workloads {
        out.extend(match w {
            Workload::W1 => w1(opts)?,
            Workload::W2 => w2(opts)?,
            Workload::W3 => w3(opts)?,
            Workload::W4 => w4(opts)?,
            Workload::W5 => w5(opts)?,
            Workload::W6 => w6(opts)?,
            Workload::W8 => w8(opts)?,
        });
    }
    if opts.scaling {
        out.extend(scaling(workloads, opts)?);
    }
    Ok(out)
}

/// The machine: CPU model and logical cores (from /proc/cpuinfo on Linux).
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} logical cores")
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A markdown table of measurements.
pub fn markdown_table(rows: &[Measurement]) -> String {
    let mut t = String::from(
        "| workload | target | dtype | figure | value | wall s | threads | checks | notes |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.3} | {} | {} | {} |\n",
            r.workload,
            r.target.replace('|', "\\|"),
            r.dtype,
            r.figure.replace('|', "\\|"),
            sig(r.value, 4),
            r.wall_s,
            r.threads,
            if r.ok { "ok" } else { "FAILED" },
            r.notes.replace('|', "/")
        ));
    }
    t
}

/// `x` to `n` significant digits.
pub fn sig(x: f64, n: usize) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let mag = x.abs().log10().floor() as i32;
    let decimals = (n as i32 - 1 - mag).max(0) as usize;
    format!("{x:.decimals$}")
}
