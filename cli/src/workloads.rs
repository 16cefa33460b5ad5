//! The suite's workloads W1-W6 (`../shared/SUITE.md`) as timed, checked
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
}

impl Workload {
    /// Parses `W1`..`W6` (case-insensitive).
    pub fn parse(s: &str) -> Result<Workload> {
        let w = match s.trim().to_ascii_uppercase().as_str() {
            "W1" => Workload::W1,
            "W2" => Workload::W2,
            "W3" => Workload::W3,
            "W4" => Workload::W4,
            "W5" => Workload::W5,
            "W6" => Workload::W6,
            other => {
                return Err(Error::param(
                    "--workloads",
                    format!("unknown workload `{other}` (W1..W6)"),
                ));
            }
        };
        Ok(w)
    }

    /// `W1`..`W6`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W6 => "W6",
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
        });
    }
    if opts.scaling {
        out.extend(scaling(workloads, opts)?);
    }
    Ok(out)
}

fn w1_with(opts: &BenchOptions, n: usize, steps: usize) -> Result<Measurement> {
    let m = model::load("gauss-ill")?;
    let e = m.energy(None)?;
    let (_, var) = m
        .moments()
        .ok_or_else(|| Error::Numerical("gauss-ill has no moments".into()))?;
    let kernel = Mala::new(0.01)?;
    let (wall, (state, acc), walls) = timed(opts, |seed| {
        run_chains(
            e.as_ref(),
            &kernel,
            gaussian_start(n, 100, 1.0, seed),
            steps,
            seed,
        )
    })?;
    let mut r = Measurement::new(
        "W1",
        "gauss-ill",
        "grad evals/s",
        (n * steps) as f64 / wall,
        wall,
    )
    .size(&[n, steps]);
    r.note(format!(
        "{n} chains x {steps} steps, MALA step 0.01 (fixed), y0 ~ N(0, I) from each chain's stream; mean accept {acc:.3}"
    ));
    // Final positions: var/s^2 per coordinate. Over n chains the sample
    // variance of a Gaussian has sd sqrt(2/n) relative; the max over 100
    // coordinates stays within 4.5 sd with probability > 0.999.
    let ratio: Vec<f64> = (0..100)
        .map(|j| {
            let c = state.position.column(j);
            c.mapv(|v| v * v).mean().unwrap_or(f64::NAN) / var[j]
        })
        .collect();
    let (lo, hi) = ratio
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let mean_ratio = ratio.iter().sum::<f64>() / ratio.len() as f64;
    let tol = 4.5 * (2.0 / n as f64).sqrt();
    r.note(format!(
        "final E[y^2]/s^2 mean {mean_ratio:.3}, min {lo:.3}, max {hi:.3}"
    ));
    if steps >= 500 {
        r.check(
            lo > 1.0 - tol && hi < 1.0 + tol,
            format!("every coordinate's E[y^2]/s^2 within 1 +- {tol:.3} (4.5 sd)"),
        );
    }
    r.check(acc > 0.3 && acc < 1.0, "acceptance in (0.3, 1)");
    // Bytes and random numbers per step (memory- and RNG-bound loop).
    r.note(format!(
        "per chain-step: 100 normals + 1 uniform, ~{} bytes of state read/written (position, gradient, proposal, proposal gradient, noise: 5 x 100 f64 written, ~9 x 100 read)",
        14 * 100 * 8
    ));
    // The generator's own limit on this machine: ChaCha8 words alone, one
    // thread, against the 808 random bytes (101 x 64 bits) each chain-step
    // draws (a normal's slow path, ~1%, draws more).
    let gbs = chacha_bytes_per_s() / 1e9;
    let threads = rayon::current_num_threads() as f64;
    let need = r.value * 808.0 / 1e9;
    r.note(format!(
        "ChaCha8 alone {gbs:.2} GB/s per thread ({:.2} M chain-steps/s of random bits on {threads} threads); W1 draws {need:.2} GB/s of random bits, {:.0}% of that limit",
        gbs * 1e9 * threads / 808.0 / 1e6,
        100.0 * need / (gbs * threads)
    ));
    r.note(fmt_walls(&walls));
    Ok(r)
}

/// Bytes per second of one chain stream's ChaCha8 words (64 MiB, the best
/// of three), on this thread.
fn chacha_bytes_per_s() -> f64 {
    let mut rng = boltz::rng::chain_rng(1, 2);
    let mut buf = vec![0u64; 1 << 16];
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t0 = Instant::now();
        for _ in 0..16 {
            rng.fill_u64(&mut buf);
        }
        let s = t0.elapsed().as_secs_f64();
        best = best.max(16.0 * 8.0 * buf.len() as f64 / s);
        std::hint::black_box(&buf);
    }
    best
}

fn w1(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (n, steps) = if opts.quick { (64, 50) } else { (1024, 1000) };
    Ok(vec![w1_with(opts, n, steps)?])
}

/// Error of `var(v)` against 9 in units of its Monte Carlo standard error
/// (the MCSE of the mean of `(v - mean v)^2`, ESS-based).
fn variance_z(draws: ndarray::ArrayView2<f64>, exact: f64) -> (f64, f64, f64) {
    let mean = draws.mean().unwrap_or(f64::NAN);
    let sq = draws.mapv(|v| (v - mean) * (v - mean));
    let var = sq.mean().unwrap_or(f64::NAN);
    let se = diagnostics::mcse_mean(sq.view());
    (var, se, (var - exact) / se)
}

fn w2(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (chains, warmup, draws) = if opts.quick {
        (8, 200, 400)
    } else {
        (64, 1000, 2000)
    };
    let mut out = Vec::new();
    // The suite's size on both targets, then the funnel at a length where
    // a correct sampler's R-hat gets under 1.01: 80_000 draws (every 4th
    // kept) after 2000 warm-up, for the kernels that can pass there (the
    // others fail at the suite's size already; autoMALA would need about
    // 4M steps per chain, see tests/funnel.rs).
    let long = if opts.quick {
        (8, 200, 800, 2)
    } else {
        (64, 2000, 20_000, 4)
    };
    for (target, is_long) in [("gauss-ill", false), ("funnel", false), ("funnel", true)] {
        let (chains, warmup, draws, thin) = if is_long {
            long
        } else {
            (chains, warmup, draws, 1)
        };
        let m = model::load(target)?;
        let e = m.energy(None)?;
        let (mean, var) = m
            .moments()
            .ok_or_else(|| Error::Numerical(format!("{target} has no moments")))?;
        // Every Metropolis kernel of the spec (ULA is biased by design); on
        // the funnel also HMC at 0.95, which follows the neck further. The
        // AutoStep kernels choose their steps (no target acceptance).
        let mut samplers: Vec<(&str, Option<f64>)> = vec![
            ("mala", Some(0.574)),
            ("automala", None),
            ("hmc", Some(0.8)),
            ("autohmc", None),
            ("nuts", Some(0.8)),
            ("rwm", Some(0.234)),
            ("autorwm", None),
        ];
        if target == "funnel" {
            samplers.insert(3, ("hmc", Some(0.95)));
        }
        if is_long {
            samplers.retain(|(n, t)| {
                ["autohmc", "nuts", "mala"].contains(n) || (*n == "hmc" && *t == Some(0.95))
            });
        }
        let label_target = if is_long { "funnel (long)" } else { target };
        for (name, target_accept) in samplers {
            let mut cfg = SampleConfig::new();
            cfg.n_chains = chains;
            cfg.warmup = warmup;
            cfg.draws = draws;
            cfg.thin = thin;
            cfg.record_energies = false;
            // HMC 16 leapfrog steps, AutoStep HMC 8 (each of its steps runs
            // at least 3 trajectories); the random walks start at 0.5.
            let mut spec = KernelSpec::new(name)?
                .step_size(if name.ends_with("rwm") { 0.5 } else { 0.1 })?
                .leapfrog(if name == "autohmc" { 8 } else { 16 });
            if let Some(t) = target_accept {
                spec = spec.target_accept(t)?;
            }
            let k = spec.build_for(e.as_ref())?;
            // Gradient evaluations (energy evaluations for the gradient-free
            // random walks), warm-up included.
            let gradient_free = k.grad_evals_per_step() == 0;
            let (wall, (o, evals), walls) = timed(opts, |seed| {
                cfg.seed = seed;
                let o = sample(e.as_ref(), k.as_ref(), &cfg, None, &mut NoObserver)?;
                let evals = if gradient_free {
                    o.stats.energy_evals
                } else {
                    o.stats.grad_evals
                };
                Ok((o.samples, evals))
            })?;
            let d = o.shape()[2];
            let ess: Vec<f64> = (0..d)
                .map(|j| diagnostics::ess_bulk(o.slice(s![.., .., j])))
                .collect();
            let min_ess = ess.iter().copied().fold(f64::INFINITY, f64::min);
            let worst_rhat = (0..d)
                .map(|j| diagnostics::rhat(o.slice(s![.., .., j])))
                .fold(0.0, f64::max);
            let label = match target_accept {
                Some(t) => format!("boltz {name} (target accept {t})"),
                None => format!("boltz {name} (step chosen per step)"),
            };
            let per = if gradient_free {
                "energy evaluation"
            } else {
                "gradient evaluation"
            };
            let mut r =
                Measurement::new("W2", label_target, "min bulk ESS / s", min_ess / wall, wall)
                    .size(&[chains, draws, warmup]);
            let kept = if thin > 1 {
                format!(" (one kept every {thin} steps, {} steps)", draws * thin)
            } else {
                String::new()
            };
            r.note(format!(
                "{label}; {chains} chains x {draws} draws{kept} after {warmup} warm-up (per-chain dual averaging + diagonal mass); wall includes warm-up; min bulk ESS {min_ess:.0}; worst R-hat {worst_rhat:.4}; {evals} {per}s; min bulk ESS per {per} {:.3e} (warm-up included)",
                min_ess / evals as f64
            ));
            if target == "gauss-ill" {
                let pooled: Vec<f64> = (0..d)
                    .map(|j| {
                        let c = o.slice(s![.., .., j]);
                        let mu = c.mean().unwrap_or(f64::NAN);
                        c.mapv(|v| (v - mu) * (v - mu)).mean().unwrap_or(f64::NAN) / var[j]
                    })
                    .collect();
                let (lo, hi) = pooled
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                        (a.min(*v), b.max(*v))
                    });
                r.note(format!("pooled var/s^2 in [{lo:.3}, {hi:.3}]"));
                let zmax = (0..d)
                    .map(|j| {
                        let (v, se, _) = variance_z(o.slice(s![.., .., j]), var[j]);
                        ((v - var[j]) / se).abs()
                    })
                    .fold(0.0, f64::max);
                r.check(
                    zmax < 4.0 && worst_rhat < 1.05,
                    format!(
                        "every variance within 4 MCSE of s^2 (max |z| {zmax:.2}), R-hat < 1.05"
                    ),
                );
                let _ = &mean;
            } else {
                let (v, se, z) = variance_z(o.slice(s![.., .., 0]), var[0]);
                let v_draws = o.slice(s![.., .., 0]);
                let below =
                    v_draws.iter().filter(|x| **x < -3.0).count() as f64 / v_draws.len() as f64;
                r.note(format!(
                    "v mean {:.3} (exact 0), var(v) {v:.3} +- {se:.3} (exact 9, z = {z:.2}), P(v < -3) {below:.3} (exact 0.159)",
                    v_draws.mean().unwrap_or(f64::NAN)
                ));
                r.check(
                    z.abs() < 3.0 && worst_rhat < 1.01,
                    "var(v) = 9 within 3 MCSE and R-hat < 1.01 (else this ESS/s is of a biased or unmixed chain)",
                );
            }
            r.note(fmt_walls(&walls));
            out.push(r);
        }
    }
    Ok(out)
}

fn w3_with(
    opts: &BenchOptions,
    n: usize,
    steps: usize,
    precision: Precision,
) -> Result<Measurement> {
    let m = model::load("mlp")?.with_precision(precision)?;
    let ctx = boltz::suite::mlp_contexts()?;
    let ctx = ctx.slice(s![..n.min(ctx.nrows()), ..]).to_owned();
    let e = m.energy(Some(ctx))?;
    let kernel = Ula::new(0.01)?;
    let (wall, (batch, e0), walls) = timed(opts, |seed| {
        let mut sampler =
            NegativeSampler::new(Method::ShortRun, Init::Gaussian { std: 1.0 }, n, 32, seed)?;
        let b = sampler.generate(e.as_ref(), &kernel, steps, None)?;
        Ok((b, seed))
    })?;
    // Energy at the start (the same N(0, I) draws, recomputed untimed).
    let start = {
        let mut s = NegativeSampler::new(Method::ShortRun, Init::Gaussian { std: 1.0 }, n, 32, e0)?;
        s.generate(e.as_ref(), &kernel, 0, None)?
    };
    let f0 = start.energies.mean().unwrap_or(f64::NAN);
    let f1 = batch.energies.mean().unwrap_or(f64::NAN);
    let mut r = Measurement::new(
        "W3",
        "mlp",
        "chain-steps/s",
        (n * steps) as f64 / wall,
        wall,
    )
    .size(&[n, steps])
    .dtype(precision);
    r.note(format!(
        "{n} chains (one per context row) x {steps} steps, ULA step 0.01, noise sqrt(0.02), y0 ~ N(0, I); mean F {f0:.3} -> {f1:.3}; divergences {}; mean distance moved {:.3}",
        batch.stats.divergences, batch.stats.distance_moved
    ));
    r.check(
        batch.energies.iter().all(|v| v.is_finite()) && batch.stats.divergences == 0,
        "every energy finite, no divergences",
    );
    r.check(f1 < f0, "mean energy decreased from the N(0, I) start");
    // One matrix-product count per chain-step: forward 48x256 + 256x256 +
    // 256x1, backward 256x256 + 256x32 (multiply-adds, x2 flops).
    let flops = 2.0 * (48.0 * 256.0 + 256.0 * 256.0 + 256.0 + 256.0 * 256.0 + 256.0 * 32.0);
    r.note(format!(
        "{:.1} GFLOP/s in the matrix products ({:.0} flop per chain-step)",
        flops * r.value / 1e9,
        flops
    ));
    r.note(fmt_walls(&walls));
    Ok(r)
}

fn w3(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (n, steps) = if opts.quick { (64, 10) } else { (1024, 100) };
    Ok(vec![
        w3_with(opts, n, steps, Precision::F64)?,
        w3_with(opts, n, steps, Precision::F32)?,
    ])
}

/// The peers' W4 settings: linear grid, one MALA step per temperature with
/// a fixed step, base N(0, 4^2 I).
fn peer_step(target: &str) -> f64 {
    match target {
        "gmm-far" => 0.3,
        _ => 0.05,
    }
}

fn w4(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (particles, temps) = if opts.quick { (128, 100) } else { (1024, 1000) };
    let mut out = Vec::new();
    for target in ["gmm-ring", "gmm-far", "funnel", "rbm20"] {
        let m = model::load(target)?;
        let exact = m
            .exact_log_z
            .ok_or_else(|| Error::Numerical(format!("{target} has no exact log Z")))?;
        let e = m.energy(None)?;
        for setting in ["peers", "boltz"] {
            let mut cfg = AisConfig::new();
            cfg.particles = particles;
            cfg.temps = temps;
            let rbm = m.rbm().cloned();
            let base = match (&rbm, setting) {
                // The peers anneal rbm20 from the base-rate model of the
                // digits it was trained on; so does this workload.
                (Some(_), _) => Base::base_rate(boltz::suite::digits()?.view())?,
                (None, "peers") => Base::isotropic(e.dim(), 4.0)?,
                (None, _) => ais::pilot_base(e.as_ref(), 1.0, opts.seed)?,
            };
            let desc = if setting == "peers" {
                cfg.schedule = ScheduleChoice::Fixed(Schedule::Linear);
                if rbm.is_some() {
                    "peers' settings: linear beta grid, base-rate model, parameter path, 1 Gibbs sweep/temp".to_string()
                } else {
                    let eps = peer_step(target);
                    cfg.step_size = Some(eps);
                    format!(
                        "peers' settings: linear beta grid, base N(0, 16 I), 1 MALA step/temp, step {eps}"
                    )
                }
            } else if rbm.is_some() {
                "boltz defaults: sigmoid schedule, base-rate model, parameter path, 1 Gibbs sweep/temp".to_string()
            } else {
                "boltz defaults: sigmoid schedule, pilot-fitted Gaussian base (1.5 x pilot sd), 1 MALA step/temp with pilot-tuned per-temperature steps".to_string()
            };
            let (wall, res, walls) = timed(opts, |seed| {
                cfg.seed = seed;
                let problem = AisProblem::new(e.clone(), &base)?;
                ais::ais(&problem, &cfg)
            })?;
            let est = &res.estimates[0];
            let err = est.log_z - exact;
            let mut r = Measurement::new("W4", target, "|logZ_hat - logZ|", err.abs(), wall)
                .size(&[particles, temps]);
            r.logz_hat = Some(est.log_z);
            r.se = Some(est.stderr);
            r.note(format!(
                "{desc}; {particles} particles x {temps} temps; logZ_hat {:.4} (exact {exact:.4}), error {err:+.4}, reported se {:.4}, weight ESS {:.0}, mean accept {:.3}, {} energy evaluations (pilot included)",
                est.log_z, est.stderr, est.ess, res.acceptance, res.energy_evals
            ));
            r.check(
                err.abs() <= 3.0 * est.stderr.max(1e-12),
                format!(
                    "|error| <= 3 reported se ({:.2} se)",
                    err.abs() / est.stderr
                ),
            );
            r.note(fmt_walls(&walls));
            r.target = format!("{target} ({setting})");
            out.push(r);
        }
        out.push(w4_pt(opts, target, e.as_ref(), exact, particles * temps)?);
    }
    Ok(out)
}

/// W4 by parallel tempering at AIS's budget: 16 chains x 16 replicas for
/// `evals / 256` steps (a quarter warm-up), MALA local moves (Gibbs on the
/// RBM parameter path), the stepping-stone estimate; the reference as
/// `logz --method pt` makes it (the pilot-fitted Gaussian centred at the
/// origin and widened; for rbm20 the digits' base-rate model).
fn w4_pt(
    opts: &BenchOptions,
    target: &str,
    e: &dyn Energy,
    exact: f64,
    evals: usize,
) -> Result<Measurement> {
    let (chains, replicas) = (16, 16);
    let steps = (evals / (chains * replicas)).max(8);
    let rbm = e.as_rbm().is_some();
    let base = if rbm {
        Base::base_rate(boltz::suite::digits()?.view())?
    } else {
        boltz::pt::widen_reference(&ais::pilot_base(e, 1.0, opts.seed)?)?
    };
    let spec = KernelSpec::new(if rbm { "gibbs" } else { "mala" })?;
    let (wall, out, walls) = timed(opts, |seed| {
        let mut config = SampleConfig::new();
        (
            config.n_chains,
            config.warmup,
            config.draws,
            config.seed,
            config.record_energies,
        ) = (chains, steps / 4, steps - steps / 4, seed, false);
        boltz::pt::sample(
            e,
            &base,
            &spec,
            &config,
            &boltz::pt::PtSettings::new(replicas),
            None,
            &mut NoObserver,
            &Default::default(),
        )
    })?;
    let s = &out.stats;
    let err = s.log_z - exact;
    let mut r = Measurement::new("W4", target, "|logZ_hat - logZ|", err.abs(), wall)
        .size(&[chains, replicas, steps]);
    r.logz_hat = Some(s.log_z);
    r.se = Some(s.log_z_stderr);
    r.note(format!(
        "parallel tempering at AIS's budget: {chains} chains x {replicas} replicas x {steps} steps ({} warm-up), {} local moves, stepping stone; logZ_hat {:.4} (exact {exact:.4}), error {err:+.4}, reported se {:.4}; Lambda {:.3}, {} round trips; {} energy evaluations (pilot not included)",
        steps / 4,
        s.kernel,
        s.log_z,
        s.log_z_stderr,
        s.lambda,
        s.round_trips,
        s.energy_evals
    ));
    r.check(
        err.abs() <= 3.0 * s.log_z_stderr.max(1e-12),
        format!(
            "|error| <= 3 reported se ({:.2} se)",
            err.abs() / s.log_z_stderr
        ),
    );
    r.note(fmt_walls(&walls));
    r.target = format!("{target} (pt)");
    Ok(r)
}

fn w5_with(
    opts: &BenchOptions,
    n: usize,
    sweeps: usize,
    precision: Precision,
) -> Result<Measurement> {
    let m = model::load("rbm500")?.with_precision(precision)?;
    let e = m.energy(None)?;
    let kernel = Gibbs::new(false);
    let (wall, (state, _), walls) = timed(opts, |seed| {
        let mut rng = aux_rng(seed, 5);
        let v0 = Array2::from_shape_fn((n, 64), |_| f64::from(u8::from(rng.random::<f64>() < 0.5)));
        run_chains(e.as_ref(), &kernel, v0, sweeps, seed)
    })?;
    let fe = evaluate(e.as_ref(), state.position.view())?;
    let mean_fe = fe.mean().unwrap_or(f64::NAN);
    let sd_fe = fe.std(0.0);
    let pixel = state.position.mean().unwrap_or(f64::NAN);
    let data_pixel = boltz::suite::digits()?.mean().unwrap_or(f64::NAN);
    let mut r = Measurement::new(
        "W5",
        "rbm500",
        "chain-sweeps/s",
        (n * sweeps) as f64 / wall,
        wall,
    )
    .size(&[n, sweeps])
    .dtype(precision);
    r.note(format!(
        "{n} chains x {sweeps} sweeps (v -> h -> v), v0 ~ Bern(0.5); final mean F(v) {mean_fe:.3} (sd {sd_fe:.3}), mean pixel {pixel:.4} (digits data {data_pixel:.4})"
    ));
    r.check(
        state.position.iter().all(|v| *v == 0.0 || *v == 1.0) && fe.iter().all(|v| v.is_finite()),
        "states binary, free energies finite",
    );
    if sweeps >= 500 {
        // The model was trained on the digits: its chains' pixel mean sits
        // near the data's (PCD-trained, not exact: within 0.05).
        r.check(
            (pixel - data_pixel).abs() < 0.05,
            "mean pixel within 0.05 of the digits' (the model was trained on them)",
        );
    }
    r.note(fmt_walls(&walls));
    Ok(r)
}

fn w5(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (n, sweeps) = if opts.quick { (64, 20) } else { (1024, 1000) };
    Ok(vec![
        w5_with(opts, n, sweeps, Precision::F64)?,
        w5_with(opts, n, sweeps, Precision::F32)?,
    ])
}

fn w6(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (particles, temps) = if opts.quick { (128, 100) } else { (1024, 1000) };
    let xs = [0.0, 0.5, 0.9, 1.2];
    let mut out = Vec::new();
    for m_dim in [1usize, 3] {
        let model = model::load(&format!("ring:1:{m_dim}"))?;
        let cond = model
            .conditional()
            .ok_or_else(|| Error::Numerical("ring is not conditional".into()))?;
        let ctx = Array2::from_shape_fn((xs.len(), 1), |(i, _)| xs[i]);
        let mut rng = aux_rng(opts.seed, 6);
        let points = Array2::from_shape_fn((256, m_dim), |_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            0.7 * z
        });
        let exact: Vec<f64> = xs
            .iter()
            .map(|x| {
                cond.log_z_at(ndarray::aview1(&[*x]))
                    .ok_or_else(|| Error::Numerical("the ring has no radial log Z".into()))
            })
            .collect::<Result<_>>()?;
        let mut cfg = AisConfig::new();
        cfg.particles = particles;
        cfg.temps = temps;
        let pilot_rows = Array2::from_shape_fn((xs.len() * 8, 1), |(r, _)| xs[r / 8]);
        let pilot_e = boltz::Conditioned::new(cond.clone(), pilot_rows)?;
        let base = ais::pilot_base(&pilot_e, 1.0, opts.seed)?;
        let (wall, res, walls) = timed(opts, |seed| {
            cfg.seed = seed;
            let problem = AisProblem::conditional(cond.clone(), ctx.view(), particles, &base)?;
            ais::ais(&problem, &cfg)
        })?;
        let lz: Vec<f64> = res.estimates.iter().map(|e| e.log_z).collect();
        let lp = ais::log_prob(cond.as_ref(), ctx.view(), points.view(), &lz, 1.0)?;
        let lp_exact = ais::log_prob(cond.as_ref(), ctx.view(), points.view(), &exact, 1.0)?;
        let err = (&lp - &lp_exact)
            .mapv(f64::abs)
            .fold(0.0f64, |a, b| a.max(*b));
        let mut r = Measurement::new(
            "W6",
            &format!("ring n=1 m={m_dim}"),
            "max |log P error|",
            err,
            wall,
        )
        .size(&[xs.len(), 256, particles, temps]);
        let mut worst = 0.0f64;
        let mut parts = Vec::new();
        for (k, x) in xs.iter().enumerate() {
            let e = &res.estimates[k];
            let z = (e.log_z - exact[k]) / e.stderr.max(1e-12);
            worst = worst.max(z.abs());
            parts.push(format!(
                "x={x}: {:.4} +- {:.4} vs {:.4}",
                e.log_z, e.stderr, exact[k]
            ));
        }
        r.note(format!(
            "log Z(x) by AIS ({particles} particles x {temps} temps per context, boltz defaults) against the radial quadrature; log P at 256 points y ~ N(0, 0.49 I) per x; {}",
            parts.join(", ")
        ));
        r.check(
            worst <= 3.5,
            format!("every log Z(x) within 3.5 reported se (4 contexts; worst {worst:.2})"),
        );
        r.note(fmt_walls(&walls));
        out.push(r);
    }
    Ok(out)
}

/// Least-squares slope of log(cost) against log(size).
fn loglog_slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + x.ln() / n, b + y.ln() / n)
    });
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        let dx = x.ln() - mx;
        (a + dx * (y.ln() - my), b + dx * dx)
    });
    sxy / sxx
}

/// 1-thread against the current pool (speed-up on W1, W3, W5), and the
/// cost of a MALA step against chains (64..4096) and dimension (10..1000).
pub fn scaling(workloads: &[Workload], opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let threads = rayon::current_num_threads();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::param("threads", e.to_string()))?;
    let mut out = Vec::new();
    let q = opts.quick;
    for w in workloads {
        let f = |o: &BenchOptions| -> Result<Option<Measurement>> {
            Ok(match w {
                Workload::W1 => Some(w1_with(
                    o,
                    if q { 64 } else { 1024 },
                    if q { 20 } else { 200 },
                )?),
                Workload::W3 => Some(w3_with(
                    o,
                    if q { 64 } else { 1024 },
                    if q { 5 } else { 30 },
                    Precision::F64,
                )?),
                Workload::W5 => Some(w5_with(
                    o,
                    if q { 64 } else { 1024 },
                    if q { 10 } else { 200 },
                    Precision::F64,
                )?),
                _ => None,
            })
        };
        let Some(many) = f(opts)? else { continue };
        let Some(single) = one.install(|| f(opts))? else {
            continue;
        };
        let speedup = many.value / single.value;
        let mut r = Measurement::new(
            "scaling",
            &format!("{} {}", w.name(), many.target),
            &format!("speed-up 1 -> {threads} threads"),
            speedup,
            many.wall_s,
        )
        .size(&many.size);
        r.note(format!(
            "{} {}: {:.0} with 1 thread, {:.0} with {threads}",
            many.figure, many.target, single.value, many.value
        ));
        out.push(r);
    }
    if workloads.contains(&Workload::W1) {
        // Cost per step against chains (dim 100) and against dimension (1024 chains).
        let steps = if q { 5 } else { 100 };
        let kernel = Mala::new(0.01)?;
        let mut by_chains = Vec::new();
        let chain_sizes: &[usize] = if q {
            &[64, 256]
        } else {
            &[64, 256, 1024, 4096]
        };
        let g = boltz::energy::DiagGaussian::new(vec![0.0; 100], vec![1.0; 100])?;
        for &n in chain_sizes {
            let (wall, _, _) = timed(opts, |seed| {
                run_chains(&g, &kernel, gaussian_start(n, 100, 1.0, seed), steps, seed)
            })?;
            by_chains.push((n as f64, wall / steps as f64));
        }
        let mut by_dim = Vec::new();
        let dims: &[usize] = if q { &[10, 100] } else { &[10, 100, 1000] };
        for &d in dims {
            let g = boltz::energy::DiagGaussian::new(vec![0.0; d], vec![1.0; d])?;
            let n = if q { 64 } else { 1024 };
            let (wall, _, _) = timed(opts, |seed| {
                run_chains(&g, &kernel, gaussian_start(n, d, 1.0, seed), steps, seed)
            })?;
            by_dim.push((d as f64, wall / steps as f64));
        }
        for (what, pts) in [("chains", by_chains), ("dimension", by_dim)] {
            let slope = loglog_slope(&pts);
            let mut r = Measurement::new(
                "scaling",
                "gauss MALA step",
                &format!("cost exponent in {what}"),
                slope,
                pts.iter().map(|p| p.1).sum::<f64>() * steps as f64,
            );
            let v: Vec<String> = pts
                .iter()
                .map(|(x, t)| format!("{x:.0}: {:.1} us/step", t * 1e6))
                .collect();
            r.note(format!(
                "least-squares slope of log(seconds per step) on log({what}); {}",
                v.join(", ")
            ));
            out.push(r);
        }
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
