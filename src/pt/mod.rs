//! Non-reversible parallel tempering (Syed, Bouchard-Côté, Deligiannidis &
//! Doucet, JRSS-B 2022; the rules of Pigeons.jl), with the stepping-stone
//! estimate of log Z from the same run.
//!
//! Each chain runs `R` replicas on the annealing path AIS uses, from the
//! reference (the AIS base, `b = 0`) to the target `exp(-beta F)` (`b = 1`):
//! the geometric path `b beta F + (1 - b) E0` with any kernel of
//! [`KernelSpec`] as the local move (all replicas of all chains in one
//! batched energy call per evaluation), or, for an RBM from a Bernoulli
//! base, the RBM parameter path with block Gibbs. After every local move,
//! neighbours `(r, r + 1)` swap states with the Metropolis probability
//! `min(1, f_r(x_{r+1}) f_{r+1}(x_r) / (f_r(x_r) f_{r+1}(x_{r+1})))`, the
//! even pairs at even steps and the odd pairs at odd steps (deterministic
//! even-odd: states then travel the ladder in one direction until a swap
//! fails, so round trips grow with `R` until the communication barrier
//! `Lambda` is covered, instead of diffusing).
//!
//! Warm-up adapts each replica's step size (per chain, as the sampler
//! does; no mass matrix: each temperature would need its own) and, in
//! rounds ending at 1/64, 1/32, ..., 1/2 and 3/4 of warm-up, re-spaces the
//! temperatures so that every pair rejects equally often
//! ([`respace_schedule`]); the last quarter of warm-up tunes the steps at
//! the final temperatures. The sampling phase keeps everything fixed and
//! records the target replica, the swap acceptance per pair, `Lambda =
//! sum_r (1 - accept_r)`, the round trips, and the stepping-stone
//! estimate `log Z = log Z_0 + sum_r log mean_{x ~ f_r} f_{r+1}(x) / f_r(x)`
//! with a standard error from batch means (the largest of 64, 32, 16 and 8
//! batches per chain) of the
//! estimate's influence function (which keeps the correlation between
//! pairs that swaps create).
//!
//! Reproducibility: replica `r` of chain `c` draws its local moves from the
//! stream `(seed, c R + r)`, chain `c`'s swaps from a stream of their own;
//! sums run in chain order: the output is bit-identical for any thread
//! count, and a resumed run equals the uninterrupted one.

mod ladder;

pub use ladder::respace_schedule;
pub(crate) use ladder::{Ladder, row_rngs, swap_rng};

use crate::ais::Base;
use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::io::{read_checkpoint, write_checkpoint};
use crate::kernels::{Adaptation, Gibbs, Kernel, KernelSpec, Tuner, Tuning};
use crate::rng::{RngState, restore_rng, save_rng};
use crate::run::{Control, Observer, Progress, Steps, drive, in_pool};
use crate::sampler::SampleConfig;
use ndarray::{Array2, Array3, Array4};
use std::path::Path;
use std::time::Instant;

/// The reference tempering starts from, made from the AIS pilot's base:
/// a Gaussian centred where the pilot's chains started (the origin: they
/// start `dispersed:2,20`), each standard deviation at least
/// `sqrt(S0^2 + m^2)` (`S0` about 5.4, the spread of those starts; `m` the
/// pilot's mean) and at least the base's. So the reference holds the whole
/// region the pilot started from, every basin in it with its share, and the
/// modes the pilot found: the AIS base fits only what the pilot's chains
/// found (a mode they all missed is missed for good), which suits
/// importance weights, while PT pays for a wider reference only in a few
/// more replicas (Lambda grows with the log of the width). Binary bases are
/// returned as they are.
pub fn widen_reference(base: &Base) -> Result<Base> {
    match base {
        Base::Gaussian { mean, std } => {
            let (lo, hi): (f64, f64) = (2.0, 20.0);
            let s0_sq = (hi * hi - lo * lo) / (2.0 * (hi / lo).ln()) / 3.0;
            let std = mean
                .iter()
                .zip(std)
                .map(|(m, s)| s.max((s0_sq + m * m).sqrt()))
                .collect();
            Base::gaussian(vec![0.0; mean.len()], std)
        }
        Base::Bernoulli { .. } => Ok(base.clone()),
    }
}

/// The checkpoint kind of parallel-tempering runs.
const KIND: &str = "pt";

/// Batches per chain the stepping-stone sums are kept in (merged to 32,
/// 16 and 8 for the standard error).
pub const SS_BATCHES: usize = 64;

/// Parallel tempering's own settings (the rest is a [`SampleConfig`]:
/// chains, warm-up, draws, thinning, seed, beta, step-size adaptation).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PtSettings {
    /// Replicas per chain, `>= 2`: replica 0 is the reference (the base),
    /// replica `R - 1` the target.
    pub replicas: usize,
    /// Re-space the temperatures between warm-up rounds (default true).
    pub adapt_schedule: bool,
    /// Keep every replica's draws (`PtOutput::all_replicas`).
    pub keep_all_replicas: bool,
    /// The starting temperatures (`R` values rising from 0 to 1); `None`:
    /// equally spaced.
    pub betas: Option<Vec<f64>>,
}

impl PtSettings {
    /// `replicas` replicas, adaptive schedule, only the target kept.
    pub fn new(replicas: usize) -> Self {
        PtSettings {
            replicas,
            adapt_schedule: true,
            keep_all_replicas: false,
            betas: None,
        }
    }

    /// The starting temperatures, checked.
    fn start_betas(&self) -> Result<Vec<f64>> {
        let r = self.replicas;
        if r < 2 {
            return Err(Error::param(
                "replicas",
                format!("parallel tempering needs at least 2 replicas, got {r}"),
            ));
        }
        crate::budget::at_most(
            "replicas",
            r,
            4096,
            "the schedule's round trips need about 2 Lambda replicas; thousands are never needed",
        )?;
        match &self.betas {
            None => Ok((0..r).map(|k| k as f64 / (r - 1) as f64).collect()),
            Some(b) => {
                let ok = b.len() == r
                    && b[0] == 0.0
                    && b[r - 1] == 1.0
                    && b.windows(2).all(|w| w[0] < w[1]);
                if ok {
                    Ok(b.clone())
                } else {
                    Err(Error::param(
                        "temperatures",
                        format!("need {r} values rising strictly from 0 to 1"),
                    ))
                }
            }
        }
    }
}

/// One warm-up round of the schedule adaptation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Round {
    /// The warm-up step the round ended at.
    pub end: usize,
    /// The communication barrier measured in the round.
    pub lambda: f64,
    /// The temperatures chosen after it.
    pub betas: Vec<f64>,
}

/// What a parallel-tempering run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PtStats {
    /// The local move's kernel.
    pub kernel: String,
    /// Replicas per chain.
    pub replicas: usize,
    /// The temperatures of the sampling phase.
    pub betas: Vec<f64>,
    /// Mean swap acceptance probability of each pair `(r, r + 1)` in the sampling phase.
    pub swap_accept: Vec<f64>,
    /// The global communication barrier `sum_r (1 - swap_accept_r)`.
    pub lambda: f64,
    /// The schedule adaptation's rounds.
    pub rounds: Vec<Round>,
    /// Round trips (reference to target and back) completed in the sampling phase, all chains.
    pub round_trips: u64,
    /// Round trips per chain per step.
    pub round_trip_rate: f64,
    /// The rate non-reversible PT reaches with these temperatures when the
    /// local moves mix perfectly, `1 / (2 + 2 Lambda)` (Syed et al. 2022).
    pub round_trip_bound: f64,
    /// Stepping-stone log Z (NaN before any sampling step).
    pub log_z: f64,
    /// Its standard error (batch means).
    pub log_z_stderr: f64,
    /// `log Z_{r+1} / Z_r` of each pair.
    pub log_z_pairs: Vec<f64>,
    /// Mean acceptance of the local moves per replica (sampling phase).
    pub acceptance: Vec<f64>,
    /// Mean acceptance of the target replica's local moves per chain (sampling phase).
    pub chain_acceptance: Vec<f64>,
    /// Divergent local moves of the target replica per chain (sampling phase).
    pub chain_divergences: Vec<usize>,
    /// Median step size per replica.
    pub step_size: Vec<f64>,
    /// Divergent local moves in the sampling phase, all replicas.
    pub divergences: usize,
    /// Divergent local moves in warm-up.
    pub warmup_divergences: usize,
    /// Energy evaluations (rows), all replicas, warm-up included.
    pub energy_evals: u64,
    /// Gradient evaluations (rows), all replicas, warm-up included.
    pub grad_evals: u64,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// The tuning at the end (step sizes per row, replica-major).
    pub tuning: Tuning,
}

/// The output of a parallel-tempering run.
pub struct PtOutput {
    /// Draws of the target replica, (chains, draws, dim).
    pub samples: Array3<f64>,
    /// Their energies `F`, (chains, draws).
    pub energies: Option<Array2<f64>>,
    /// Every replica's draws, (replicas, chains, draws, dim), when asked for.
    pub all_replicas: Option<Array4<f64>>,
    /// Swap, schedule and log Z figures.
    pub stats: PtStats,
    /// Every replica's last positions, (replicas * chains, dim), replica-major.
    pub final_positions: Array2<f64>,
    /// False when stopped before the end.
    pub complete: bool,
}

/// Everything carried from one step to the next (with the positions and
/// streams, a run continues from it bit-identically).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct RunState {
    config: SampleConfig,
    pt: PtSettings,
    t: usize,
    tuning: Tuning,
    tuner: Tuner,
    betas: Vec<f64>,
    round_accept: Vec<f64>,
    round_attempts: Vec<u64>,
    rounds: Vec<Round>,
    swap_accept: Vec<f64>,
    swap_attempts: Vec<u64>,
    trips: u64,
    acceptance: Vec<f64>,
    chain_acceptance: Vec<f64>,
    chain_divergences: Vec<usize>,
    divergences: usize,
    warmup_divergences: usize,
    energy_evals: u64,
    grad_evals: u64,
    /// Stepping stone: per (chain, batch, pair) the log-sum-exp of the
    /// pair's log ratios, `f64::MIN` while empty.
    ss: Vec<f64>,
    /// Sampling steps per batch.
    ss_n: Vec<u64>,
    draw: usize,
    elapsed_s: f64,
    #[serde(skip)]
    samples: Vec<f64>,
    #[serde(skip)]
    energies: Option<Vec<f64>>,
    #[serde(skip)]
    all: Option<Vec<f64>>,
}

#[derive(serde::Serialize)]
struct SavedRef<'a> {
    run: &'a RunState,
    elapsed_s: f64,
    positions: Vec<f64>,
    rngs: Vec<RngState>,
    swap_rngs: Vec<RngState>,
    labels: &'a [u32],
    heading: &'a [u8],
}

#[derive(serde::Deserialize)]
struct Saved {
    run: RunState,
    elapsed_s: f64,
    positions: Vec<f64>,
    rngs: Vec<RngState>,
    swap_rngs: Vec<RngState>,
    labels: Vec<u32>,
    heading: Vec<u8>,
}

/// The warm-up steps after which the schedule is re-spaced: 1/64, 1/32,
/// ..., 1/2 and 3/4 of warm-up (distinct, at least one step in).
fn round_ends(warmup: usize) -> Vec<usize> {
    let mut ends: Vec<usize> = [64, 32, 16, 8, 4, 2]
        .iter()
        .map(|k| warmup / k)
        .chain(std::iter::once(warmup * 3 / 4))
        .filter(|&e| e >= 2)
        .collect();
    ends.dedup();
    ends
}

/// `ln(e^a + e^b)`.
fn ln_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// Batches of the stepping-stone error over `steps` sampling steps.
fn ss_batches(steps: usize) -> usize {
    SS_BATCHES.min(steps).max(1)
}

struct Pt<'a> {
    ladder: Ladder<'a>,
    run: RunState,
    since: (f64, usize),
    start: Instant,
    log_z0: f64,
    /// The warm-up steps that end schedule rounds.
    ends: Vec<usize>,
    /// Scratch: the log ratios of the stepping stone.
    up: Vec<f64>,
}

impl Pt<'_> {
    fn total(&self) -> usize {
        self.run.config.total_steps().expect("validated")
    }

    fn sampling_steps(&self) -> usize {
        self.total() - self.run.config.warmup
    }

    fn record(&mut self) {
        let (c, r) = (self.ladder.chains, self.ladder.replicas);
        let d = self.ladder.state.dim();
        let run = &mut self.run;
        let draw = run.draw;
        let top = self.ladder.replica_rows(r - 1);
        let off = draw * c * d;
        for (k, v) in top.iter().enumerate() {
            run.samples[off + k] = *v;
        }
        if let Some(e) = run.energies.as_mut() {
            for chain in 0..c {
                e[draw * c + chain] = self
                    .ladder
                    .target_energy((r - 1) * c + chain, run.config.beta);
            }
        }
        if let Some(all) = run.all.as_mut() {
            let off = draw * r * c * d;
            for (k, v) in self.ladder.state.position.iter().enumerate() {
                all[off + k] = *v;
            }
        }
        run.draw += 1;
    }

    /// Adds the sampling step's log ratios to the stepping-stone sums.
    fn stepping_stone(&mut self, s: usize) {
        let (c, r) = (self.ladder.chains, self.ladder.replicas);
        let batches = ss_batches(self.sampling_steps());
        let k = s * batches / self.sampling_steps();
        self.run.ss_n[k] += 1;
        let mut up = std::mem::take(&mut self.up);
        self.ladder.ratios_up(&mut up);
        let run = &mut self.run;
        for chain in 0..c {
            for p in 0..r - 1 {
                let inc = up[p * c + chain];
                let idx = (chain * batches + k) * (r - 1) + p;
                if !inc.is_nan() {
                    run.ss[idx] = ln_add(run.ss[idx], inc);
                }
            }
        }
        self.up = up;
    }
}

impl Steps for Pt<'_> {
    fn finished(&self) -> bool {
        self.run.t >= self.total()
    }

    fn advance(&mut self) -> Result<()> {
        let t = self.run.t;
        let warmup = self.run.config.warmup;
        let c = self.ladder.chains;
        let tally = self.ladder.local_move(&self.run.tuning);
        let run = &mut self.run;
        run.energy_evals += tally.energy_evals;
        run.grad_evals += tally.grad_evals;
        let steps = &self.ladder.steps;
        let div = steps.iter().filter(|s| s.divergent).count();
        self.since.0 += crate::kernels::mean_accept(steps);
        self.since.1 += 1;
        if t < warmup {
            run.warmup_divergences += div;
            self.ladder.update_tuner(&mut run.tuner, t, &mut run.tuning);
            // Round trips count in the sampling phase only.
            self.ladder
                .swap(t as u64, &mut run.round_accept, &mut run.round_attempts);
            if run.pt.adapt_schedule && self.ends.contains(&(t + 1)) {
                let rejection: Vec<f64> = run
                    .round_accept
                    .iter()
                    .zip(&run.round_attempts)
                    .map(|(a, n)| 1.0 - a / (*n).max(1) as f64)
                    .collect();
                if run.round_attempts.iter().all(|n| *n > 0) {
                    let betas = respace_schedule(self.ladder.betas(), &rejection);
                    run.rounds.push(Round {
                        end: t + 1,
                        lambda: rejection.iter().sum(),
                        betas: betas.clone(),
                    });
                    self.ladder.set_betas(betas.clone());
                    run.betas = betas;
                }
                run.round_accept.iter_mut().for_each(|a| *a = 0.0);
                run.round_attempts.iter_mut().for_each(|a| *a = 0);
            }
        } else {
            run.divergences += div;
            for (i, s) in steps.iter().enumerate() {
                run.acceptance[i / c] += s.accept_prob;
            }
            let top = &steps[steps.len() - c..];
            for (chain, s) in top.iter().enumerate() {
                run.chain_acceptance[chain] += s.accept_prob;
                run.chain_divergences[chain] += usize::from(s.divergent);
            }
            run.trips += self
                .ladder
                .swap(t as u64, &mut run.swap_accept, &mut run.swap_attempts);
            self.stepping_stone(t - warmup);
            if (t - warmup + 1).is_multiple_of(self.run.config.thin) {
                self.record();
            }
        }
        self.run.t += 1;
        Ok(())
    }

    fn done(&self) -> usize {
        self.run.t
    }

    fn progress(&mut self) -> Progress {
        Progress::of_chains(
            self.run.t,
            self.run.config.warmup,
            self.total(),
            std::mem::take(&mut self.since),
            self.run.divergences + self.run.warmup_divergences,
            self.run.tuning.step_size().median(),
        )
    }

    fn save(&self, control: &Control) -> Result<()> {
        let path = control.checkpoint.as_ref().expect("asked for");
        let snap = SavedRef {
            run: &self.run,
            elapsed_s: self.run.elapsed_s + self.start.elapsed().as_secs_f64(),
            positions: self.ladder.state.position.iter().copied().collect(),
            rngs: self.ladder.rngs.iter().map(save_rng).collect(),
            swap_rngs: self.ladder.swap_rngs.iter().map(save_rng).collect(),
            labels: &self.ladder.labels,
            heading: &self.ladder.heading,
        };
        let (c, r, d) = (
            self.ladder.chains,
            self.ladder.replicas,
            self.ladder.state.dim(),
        );
        let draw = self.run.draw;
        let mut data = self.run.samples[..draw * c * d].to_vec();
        if let Some(e) = &self.run.energies {
            data.extend_from_slice(&e[..draw * c]);
        }
        if let Some(a) = &self.run.all {
            data.extend_from_slice(&a[..draw * r * c * d]);
        }
        write_checkpoint(path, KIND, &control.settings, &snap, &data)
    }
}

/// Checks the settings and their memory: `R * C` rows of state, the
/// recorded draws (of every replica when kept). Returns the starting
/// temperatures.
pub fn validate(config: &SampleConfig, pt: &PtSettings, dim: usize) -> Result<Vec<f64>> {
    let betas = pt.start_betas()?;
    config.validate(dim)?;
    let rows = config.n_chains.checked_mul(pt.replicas).ok_or_else(|| {
        Error::param(
            "replicas",
            "chains x replicas overflows a count".to_string(),
        )
    })?;
    let mut wide = config.clone();
    wide.n_chains = rows;
    if !pt.keep_all_replicas {
        wide.draws = 1;
    }
    wide.validate(dim)?;
    Ok(betas)
}

/// Runs parallel tempering of `config.n_chains` chains of `pt.replicas`
/// replicas on the path from `base` to `exp(-beta F)`, with `spec`'s
/// kernel as the local move. `init` (chains x dim) starts every replica of
/// chain `c` at row `c`; `init` with one row per replica (replicas * chains
/// x dim, replica-major: row `r * chains + c`) starts each replica at its
/// own; without, each replica starts at a draw from the base. The output is a pure function of the seed and the settings.
///
/// ```
/// use boltz::pt::{PtSettings, sample};
/// use boltz::{Base, KernelSpec, SampleConfig};
/// let energy = boltz::model::load("gmm-ring")?.energy(None)?;
/// let base = Base::isotropic(2, 4.0)?;
/// let mut config = SampleConfig::new();
/// (config.n_chains, config.warmup, config.draws) = (4, 200, 500);
/// let spec = KernelSpec::new("mala")?;
/// let out = sample(energy.as_ref(), &base, &spec, &config, &PtSettings::new(8), None,
///                  &mut boltz::NoObserver, &Default::default())?;
/// assert_eq!(out.samples.dim(), (4, 500, 2));
/// // The stepping-stone log Z of the ring (exact: 1.509373).
/// assert!((out.stats.log_z - 1.509373).abs() < 5.0 * out.stats.log_z_stderr + 0.05);
/// # Ok::<(), boltz::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn sample(
    energy: &dyn Energy,
    base: &Base,
    spec: &KernelSpec,
    config: &SampleConfig,
    pt: &PtSettings,
    init: Option<Array2<f64>>,
    observer: &mut dyn Observer,
    control: &Control,
) -> Result<PtOutput> {
    let start = Instant::now();
    let d = energy.dim();
    if energy.fixed_rows().is_some() {
        return Err(Error::param(
            "sampler",
            "parallel tempering runs on one target: give one context, not one per chain",
        ));
    }
    let betas = validate(config, pt, d)?;
    let (c, r) = (config.n_chains, pt.replicas);
    let y0 = match init {
        Some(y) if y.dim() == (r * c, d) => Some(y),
        Some(y) if y.dim() == (c, d) => {
            Some(Array2::from_shape_fn((r * c, d), |(i, j)| y[[i % c, j]]))
        }
        Some(y) => {
            return Err(Error::shape(
                "initial positions",
                format!("({c}, {d}) or, one row per replica, ({}, {d})", r * c),
                format!("{:?}", y.shape()),
            ));
        }
        None => None,
    };
    in_pool(|| {
        let (ladder, evals) = Ladder::new(
            energy,
            base,
            spec,
            config.beta,
            c,
            betas.clone(),
            config.seed,
            y0,
        )?;
        let gibbs = Gibbs::default();
        let kernel: &dyn Kernel = ladder.kernel().unwrap_or(&gibbs);
        let adaptation = Adaptation {
            step_size: config.adapt_step_size,
            shared_step: false,
            mass: false,
        };
        let (mut tuner, mut tuning) = Tuner::new(kernel, adaptation, config.warmup, d);
        if let Some(t) = &config.tuning {
            tuning = t.clone();
        } else if let Some(s) = spec.settings.step_size {
            tuning.set_step_size(crate::kernels::StepSizes::uniform(s));
        }
        ladder.start_tuner(&mut tuner, &mut tuning);
        let sampling = config.draws * config.thin;
        let batches = ss_batches(sampling);
        let grad = kernel.grad_evals_per_step() > 0;
        let run = RunState {
            config: config.clone(),
            pt: pt.clone(),
            t: 0,
            tuning,
            tuner,
            betas,
            round_accept: vec![0.0; r - 1],
            round_attempts: vec![0; r - 1],
            rounds: vec![],
            swap_accept: vec![0.0; r - 1],
            swap_attempts: vec![0; r - 1],
            trips: 0,
            acceptance: vec![0.0; r],
            chain_acceptance: vec![0.0; c],
            chain_divergences: vec![0; c],
            divergences: 0,
            warmup_divergences: 0,
            energy_evals: evals,
            grad_evals: if grad { evals } else { 0 },
            ss: vec![f64::MIN; c * batches * (r - 1)],
            ss_n: vec![0; batches],
            draw: 0,
            elapsed_s: 0.0,
            samples: vec![0.0; c * config.draws * d],
            energies: config.record_energies.then(|| vec![0.0; c * config.draws]),
            all: pt
                .keep_all_replicas
                .then(|| vec![0.0; r * c * config.draws * d]),
        };
        finish(ladder, run, observer, control, start)
    })
}

/// Continues the run saved in `checkpoint` (same energy, base, kernel spec
/// and `control.settings`): the output equals the uninterrupted run's.
pub fn resume(
    energy: &dyn Energy,
    base: &Base,
    spec: &KernelSpec,
    checkpoint: &Path,
    observer: &mut dyn Observer,
    control: &Control,
) -> Result<PtOutput> {
    let start = Instant::now();
    let (saved, data): (Saved, Vec<f64>) = read_checkpoint(checkpoint, KIND, &control.settings)?;
    let bad = |why: &str| Error::checkpoint(checkpoint, why.to_string());
    let mut run = saved.run;
    run.elapsed_s = saved.elapsed_s;
    let d = energy.dim();
    let cfg = run.config.clone();
    let betas0 = validate(&cfg, &run.pt, d).map_err(|_| bad("its settings are invalid"))?;
    let (c, r) = (cfg.n_chains, run.pt.replicas);
    let n = c * r;
    let total = cfg.total_steps().expect("validated");
    let sampling = total - cfg.warmup;
    let batches = ss_batches(sampling);
    let n_samples = run.draw * c * d;
    let n_energies = if cfg.record_energies { run.draw * c } else { 0 };
    let n_all = if run.pt.keep_all_replicas {
        run.draw * n * d
    } else {
        0
    };
    let recorded = run.t.saturating_sub(cfg.warmup) / cfg.thin;
    let betas_ok = run.betas.len() == r
        && run.betas[0] == 0.0
        && run.betas[r - 1] == 1.0
        && run.betas.windows(2).all(|w| w[0] < w[1]);
    let labels_ok = saved.labels.len() == n
        && (0..c).all(|chain| {
            let mut l: Vec<u32> = (0..r).map(|k| saved.labels[k * c + chain]).collect();
            l.sort_unstable();
            l.iter().enumerate().all(|(k, v)| *v as usize == k)
        });
    if saved.positions.len() != n * d
        || saved.rngs.len() != n
        || saved.swap_rngs.len() != c
        || run.t > total
        || run.draw != recorded
        || data.len() != n_samples + n_energies + n_all
        || !betas_ok
        || !labels_ok
        || betas0.len() != r
        || saved.heading.len() != n
        || saved.heading.iter().any(|h| *h > 2)
        || [&run.round_accept, &run.swap_accept]
            .iter()
            .any(|v| v.len() != r - 1)
        || run.round_attempts.len() != r - 1
        || run.swap_attempts.len() != r - 1
        || run.acceptance.len() != r
        || run.chain_acceptance.len() != c
        || run.chain_divergences.len() != c
        || run.ss.len() != c * batches * (r - 1)
        || run.ss_n.len() != batches
        || !run.tuning.fits(n, d)
        || !run.tuner.fits(cfg.warmup, n, d)
        || !run.elapsed_s.is_finite()
        || saved.positions.iter().chain(&data).any(|v| !v.is_finite())
        || run.ss.iter().any(|v| v.is_nan())
    {
        return Err(bad(
            "its state is out of range for these settings; refusing a damaged or edited checkpoint",
        ));
    }
    run.samples = data[..n_samples].to_vec();
    run.samples.resize(c * cfg.draws * d, 0.0);
    run.energies = cfg.record_energies.then(|| {
        let mut e = data[n_samples..n_samples + n_energies].to_vec();
        e.resize(c * cfg.draws, 0.0);
        e
    });
    run.all = run.pt.keep_all_replicas.then(|| {
        let mut a = data[n_samples + n_energies..].to_vec();
        a.resize(n * cfg.draws * d, 0.0);
        a
    });
    let positions = Array2::from_shape_vec((n, d), saved.positions).expect("checked size");
    in_pool(|| {
        // The caches are rebuilt at the saved positions (not counted: the
        // uninterrupted run had them from its last moves).
        let (mut ladder, _) = Ladder::new(
            energy,
            base,
            spec,
            cfg.beta,
            c,
            run.betas.clone(),
            cfg.seed,
            Some(positions),
        )?;
        ladder.rngs = saved.rngs.iter().map(restore_rng).collect();
        ladder.swap_rngs = saved.swap_rngs.iter().map(restore_rng).collect();
        ladder.labels = saved.labels;
        ladder.heading = saved.heading;
        finish(ladder, run, observer, control, start)
    })
}

fn finish(
    ladder: Ladder<'_>,
    run: RunState,
    observer: &mut dyn Observer,
    control: &Control,
    start: Instant,
) -> Result<PtOutput> {
    let log_z0 = ladder.log_z0();
    let ends = round_ends(run.config.warmup);
    let mut pt = Pt {
        ladder,
        run,
        since: (0.0, 0),
        start,
        log_z0,
        ends,
        up: Vec::new(),
    };
    let every = pt.run.config.observe_every;
    let complete = drive(&mut pt, observer, control, every)?;
    Ok(output(pt, complete))
}

/// The stepping-stone estimate, its standard error and the per-pair terms
/// from the batch sums.
fn stepping_stone(
    ss: &[f64],
    ss_n: &[u64],
    chains: usize,
    replicas: usize,
    log_z0: f64,
) -> (f64, f64, Vec<f64>) {
    let pairs = replicas - 1;
    let batches = ss_n.len();
    let steps: u64 = ss_n.iter().sum();
    if steps == 0 {
        return (f64::NAN, f64::NAN, vec![f64::NAN; pairs]);
    }
    let total = (steps as f64 * chains as f64).ln();
    let log_m: Vec<f64> = (0..pairs)
        .map(|p| {
            let mut acc = f64::MIN;
            for cb in 0..chains * batches {
                acc = ln_add(acc, ss[cb * pairs + p]);
            }
            acc - total
        })
        .collect();
    let log_z = log_z0 + log_m.iter().sum::<f64>();
    // Batch means of the estimate's influence function at 64, 32, 16 and 8
    // batches per chain (adjacent batches merged); the largest standard
    // error counts, so that batches shorter than the chains' memory (slow
    // round trips) do not make it too small.
    let mut se = f64::NAN;
    let mut width = 1;
    while width <= batches {
        let merged = batches.div_ceil(width);
        if merged < 8.min(batches) {
            break;
        }
        let mut psi = Vec::with_capacity(chains * merged);
        for chain in 0..chains {
            for k in 0..merged {
                let ks = k * width..((k + 1) * width).min(batches);
                let nk: u64 = ss_n[ks.clone()].iter().sum();
                if nk == 0 {
                    continue;
                }
                let ln_n = (nk as f64).ln();
                psi.push(
                    (0..pairs)
                        .map(|p| {
                            let lse = ks.clone().fold(f64::MIN, |acc, b| {
                                ln_add(acc, ss[(chain * batches + b) * pairs + p])
                            });
                            (lse - ln_n - log_m[p]).exp() - 1.0
                        })
                        .sum::<f64>(),
                );
            }
        }
        if psi.len() >= 2 {
            let m = psi.len() as f64;
            let mean = psi.iter().sum::<f64>() / m;
            let var = psi.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0);
            let e = (var / m).sqrt();
            se = if se.is_nan() { e } else { se.max(e) };
        }
        width *= 2;
    }
    (log_z, se, log_m)
}

fn output(pt: Pt<'_>, complete: bool) -> PtOutput {
    let Pt {
        ladder,
        run,
        start,
        log_z0,
        ..
    } = pt;
    let (c, r, d) = (ladder.chains, ladder.replicas, ladder.state.dim());
    let sampling = run.t.saturating_sub(run.config.warmup) as f64;
    let swap_accept: Vec<f64> = run
        .swap_accept
        .iter()
        .zip(&run.swap_attempts)
        .map(|(a, n)| if *n > 0 { a / *n as f64 } else { f64::NAN })
        .collect();
    let lambda = swap_accept.iter().map(|a| 1.0 - a).sum::<f64>();
    let (log_z, log_z_stderr, log_z_pairs) = stepping_stone(&run.ss, &run.ss_n, c, r, log_z0);
    let steps = run.tuning.step_size().expand(c * r);
    let step_size = (0..r)
        .map(|k| crate::kernels::StepSizes::per_chain(steps[k * c..(k + 1) * c].to_vec()).median())
        .collect();
    let stats = PtStats {
        kernel: ladder.kernel_name().to_string(),
        replicas: r,
        betas: run.betas.clone(),
        swap_accept,
        lambda,
        rounds: run.rounds.clone(),
        round_trips: run.trips,
        round_trip_rate: if sampling > 0.0 {
            run.trips as f64 / (c as f64 * sampling)
        } else {
            f64::NAN
        },
        round_trip_bound: 1.0 / (2.0 + 2.0 * lambda),
        log_z,
        log_z_stderr,
        log_z_pairs,
        acceptance: run
            .acceptance
            .iter()
            .map(|a| a / (c as f64 * sampling))
            .collect(),
        chain_acceptance: run.chain_acceptance.iter().map(|a| a / sampling).collect(),
        chain_divergences: run.chain_divergences.clone(),
        step_size,
        divergences: run.divergences,
        warmup_divergences: run.warmup_divergences,
        energy_evals: run.energy_evals,
        grad_evals: run.grad_evals,
        wall_s: run.elapsed_s + start.elapsed().as_secs_f64(),
        tuning: run.tuning.clone(),
    };
    let draws = run.draw;
    let mut samples = Array3::zeros((c, draws, d));
    for (draw, block) in run.samples.chunks_exact(c * d).take(draws).enumerate() {
        for chain in 0..c {
            samples
                .slice_mut(ndarray::s![chain, draw, ..])
                .assign(&ndarray::ArrayView1::from(
                    &block[chain * d..(chain + 1) * d],
                ));
        }
    }
    let energies = run.energies.map(|e| {
        let mut out = Array2::zeros((c, draws));
        for (draw, block) in e.chunks_exact(c).take(draws).enumerate() {
            out.column_mut(draw)
                .assign(&ndarray::ArrayView1::from(block));
        }
        out
    });
    let all_replicas = run.all.map(|a| {
        let mut out = Array4::zeros((r, c, draws, d));
        for (draw, block) in a.chunks_exact(r * c * d).take(draws).enumerate() {
            for k in 0..r {
                for chain in 0..c {
                    let off = (k * c + chain) * d;
                    out.slice_mut(ndarray::s![k, chain, draw, ..])
                        .assign(&ndarray::ArrayView1::from(&block[off..off + d]));
                }
            }
        }
        out
    });
    PtOutput {
        samples,
        energies,
        all_replicas,
        stats,
        final_positions: ladder.state.position.clone(),
        complete,
    }
}

/// What a run's figures cannot show, in words: states that never made a
/// round trip (the replicas do not connect reference and target, so modes
/// the reference reaches may never reach the target), and pairs that
/// almost never swap.
pub fn warnings(stats: &PtStats) -> Vec<String> {
    let mut w = Vec::new();
    if stats.round_trips == 0 && stats.round_trip_rate.is_finite() {
        w.push(format!(
            "no state made a round trip between the reference and the target (Lambda {:.2} over {} replicas): the draws may stay in the modes the chains started in and the stepping-stone log Z may miss mass; use more replicas (about 2 Lambda + 2) or a longer run",
            stats.lambda, stats.replicas
        ));
    }
    if let Some((p, a)) = stats
        .swap_accept
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_finite())
        .min_by(|a, b| a.1.total_cmp(b.1))
        .filter(|(_, a)| **a < 0.05)
    {
        w.push(format!(
            "replicas {p} and {} swap with probability {a:.3}: the ladder is close to broken there; use more replicas",
            p + 1
        ));
    }
    w
}

/// The figures of a run as the `pt` object of JSON reports.
pub fn stats_json(stats: &PtStats) -> serde_json::Value {
    serde_json::json!({
        "kernel": stats.kernel,
        "replicas": stats.replicas,
        "betas": stats.betas,
        "swap_accept": stats.swap_accept,
        "lambda": stats.lambda,
        "round_trips": stats.round_trips,
        "round_trip_rate": stats.round_trip_rate,
        "round_trip_bound": stats.round_trip_bound,
        "log_z": stats.log_z,
        "log_z_stderr": stats.log_z_stderr,
        "acceptance": stats.acceptance,
        "step_size": stats.step_size,
        "rounds": stats.rounds,
    })
}
