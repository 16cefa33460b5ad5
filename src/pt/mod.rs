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
//! ([`respace_schedule`]): one ladder for all chains from all their swaps
//! ([`LadderMode::Pooled`], the default), or each chain's own ladder from
//! its own swaps ([`LadderMode::PerChain`]: a chain then depends on no
//! other, and the chains split into shards that give the one-process
//! run's bytes). The last quarter of warm-up tunes the steps at the final
//! temperatures. The sampling phase keeps everything fixed and records the
//! target replica, the swap acceptance per pair, `Lambda = sum_r (1 -
//! accept_r)`, the round trips, and the stepping-stone estimate along each
//! ladder `g`, `log Z_g = log Z_0 + sum_r log mean_{x ~ f_{g,r}}
//! f_{g,r+1}(x) / f_{g,r}(x)`, with `log Z = log mean_g Z_g` and a standard
//! error from batch means (the largest of 64, 32, 16 and 8 batches per
//! chain, and whole chains with 8 or more) of the estimate's influence
//! function (which keeps the correlation between pairs that swaps create)
//! ([`LadderTally::stats`]).
//!
//! Reproducibility: replica `r` of chain `c` draws its local moves from the
//! stream `(seed, c R + r)`, chain `c`'s swaps from a stream of their own
//! (`c` the chain's index in the whole run, [`SampleConfig::first_chain`]
//! plus its place in this one); sums run per chain, then over the chains
//! in order: the output is bit-identical for any thread count and any
//! split of the chains into shards, and a resumed run equals the
//! uninterrupted one.
mod ladder;
mod resume;
mod run;
mod stone;
mod tally;

pub use crate::tally::{LadderGroup, LadderMode, LadderTally};
pub use ladder::respace_schedule;
pub(crate) use ladder::{Ladder, row_rngs, swap_rng};
pub use resume::resume;
use run::{RunState, finish, schedule, transition};
use stone::ss_batches;

use crate::ais::Base;
use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::kernels::{Adaptation, Gibbs, Kernel, KernelSpec, Tuner, Tuning};
use crate::run::{ChainRun, Control, Observer, in_pool};
use crate::sampler::SampleConfig;
use ndarray::{Array2, Array3, Array4};
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
    /// One ladder for all chains (the default) or one per chain (which
    /// shards need).
    #[serde(default)]
    pub ladder: LadderMode,
}

impl PtSettings {
    /// `replicas` replicas, adaptive schedule, only the target kept.
    pub fn new(replicas: usize) -> Self {
        PtSettings {
            replicas,
            adapt_schedule: true,
            keep_all_replicas: false,
            betas: None,
            ladder: LadderMode::Pooled,
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
                if crate::tally::is_ladder(b, r) {
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
    /// How the temperatures were adapted.
    pub mode: LadderMode,
    /// The temperatures of the sampling phase (with per-chain ladders, the
    /// chains' mean).
    pub betas: Vec<f64>,
    /// Each ladder's temperatures in the sampling phase (one ladder for
    /// all chains, or one per chain).
    pub ladders: Vec<Vec<f64>>,
    /// Mean swap acceptance probability of each pair `(r, r + 1)` in the
    /// sampling phase, all chains.
    pub swap_accept: Vec<f64>,
    /// The global communication barrier `sum_r (1 - swap_accept_r)`.
    pub lambda: f64,
    /// The schedule adaptation's rounds (the chains' mean Lambda and
    /// temperatures).
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
    /// The tuning at the end (step sizes per row, replica-major); `None`
    /// in figures merged from shards.
    pub tuning: Option<Tuning>,
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
    /// The per-chain tallies the figures are computed from (what a shard
    /// hands the merge).
    pub tally: LadderTally,
    /// Every replica's last positions, (replicas * chains, dim), replica-major.
    pub final_positions: Array2<f64>,
    /// False when stopped before the end.
    pub complete: bool,
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
            config.first_chain..config.first_chain + c,
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
            pooled_mass: false,
            dense_mass: false,
            windows: crate::kernels::MassWindows::default(),
        };
        let (mut tuner, mut tuning) = Tuner::new(kernel, adaptation, config.warmup, d);
        if let Some(t) = &config.tuning {
            if t.dense().is_some() {
                return Err(Error::param(
                    "tuning",
                    "parallel tempering takes no dense mass (a sampling run's adapted one)",
                ));
            }
            tuning = t.clone();
        } else if let Some(s) = spec.settings.step_size {
            tuning.set_step_size(crate::kernels::StepSizes::uniform(s));
        }
        ladder.start_tuner(&mut tuner, &mut tuning);
        let sampling = config.draws * config.thin;
        let batches = ss_batches(sampling);
        let g = run::ladders(pt.ladder, c);
        let grad = kernel.grad_evals_per_step() > 0;
        let run = RunState {
            config: config.clone(),
            pt: pt.clone(),
            tuning,
            tuner,
            betas: betas.repeat(g),
            round_accept: vec![0.0; g * (r - 1)],
            round_attempts: vec![0; r - 1],
            rounds: vec![],
            swap_accept: vec![0.0; g * (r - 1)],
            swap_attempts: vec![0; r - 1],
            trips: vec![0; g],
            acceptance: vec![0.0; g * r],
            energy_evals: evals,
            grad_evals: if grad { evals } else { 0 },
            ss: vec![f64::MIN; c * batches * (r - 1)],
            ss_n: vec![0; batches],
        };
        let run = ChainRun::new(transition(ladder, run), schedule(config), KIND)?;
        finish(run, observer, control, start)
    })
}

/// What a run's figures cannot show, in words: states that never made a
/// round trip (the replicas do not connect reference and target, so modes
/// the reference reaches may never reach the target), and pairs that
/// almost never swap.
pub fn warnings(stats: &PtStats) -> crate::Warnings {
    use crate::warning::{Warning, WarningKind};
    let mut w = crate::Warnings::new();
    if stats.round_trips == 0 && stats.round_trip_rate.is_finite() {
        w.push(Warning::new(WarningKind::NoRoundTrip, format!(
            "no state made a round trip between the reference and the target (Lambda {:.2} over {} replicas): the draws may stay in the modes the chains started in and the stepping-stone log Z may miss mass; use more replicas (about 2 Lambda + 2) or a longer run",
            stats.lambda, stats.replicas
        )));
    }
    if let Some((p, a)) = stats
        .swap_accept
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_finite())
        .min_by(|a, b| a.1.total_cmp(b.1))
        .filter(|(_, a)| **a < 0.05)
    {
        w.push(Warning::new(WarningKind::LowSwap, format!(
            "replicas {p} and {} swap with probability {a:.3}: the ladder is close to broken there; use more replicas",
            p + 1
        )));
    }
    w
}

/// The figures of a run as the `pt` object of JSON reports.
pub fn stats_json(stats: &PtStats) -> serde_json::Value {
    let mut v = serde_json::json!({
        "kernel": stats.kernel,
        "replicas": stats.replicas,
        "ladder": stats.mode,
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
    });
    if stats.mode == LadderMode::PerChain {
        v["betas_per_chain"] = serde_json::json!(stats.ladders);
    }
    v
}
