//! The chain driver: warm-up with adaptation, draws, thinning, recording,
//! observers. It works for every [`Kernel`] and knows nothing about terminals.

use crate::energy::{Energy, Scaled, StateSpace};
use crate::error::{Error, Result};
use crate::kernels::{ChainState, ChainStep, DualAveraging, Kernel, MassAdapter, StepSizes};
use crate::rng::{ChainRng, chain_rngs};
use ndarray::{Array2, Array3, Axis};
use rand::RngExt;
use std::time::Instant;

/// Settings of a sampling run. [`SampleConfig::new`] gives the defaults;
/// every field is checked by [`SampleConfig::validate`] before work starts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SampleConfig {
    /// Number of chains (>= 1).
    pub n_chains: usize,
    /// Warm-up steps (adaptation happens here; nothing is recorded).
    pub warmup: usize,
    /// Draws recorded per chain after warm-up (>= 1).
    pub draws: usize,
    /// Steps per recorded draw (>= 1).
    pub thin: usize,
    /// The run's seed: chain `i` uses stream `(seed, i)`.
    pub seed: u64,
    /// Inverse temperature (> 0): the target is `exp(-beta F)`.
    pub beta: f64,
    /// Adapt the step size by dual averaging during warm-up.
    pub adapt_step_size: bool,
    /// One step size for all chains, adapted on the chains' mean acceptance,
    /// instead of one per chain (the default). Per-chain steps rescue a
    /// chain that starts in a steep region (it shrinks its own step rather
    /// than being stuck at everyone's); a shared step is better where the
    /// right step depends on position and chains would each settle for the
    /// region they adapted in (Neal's funnel: neck chains keep tiny steps
    /// and never leave the neck).
    pub shared_step_size: bool,
    /// Adapt a diagonal mass matrix (preconditioner) during warm-up, for
    /// kernels that have one (HMC, MALA, RWM).
    pub adapt_mass: bool,
    /// Record each draw's energy `F` (at beta = 1) as well as its position.
    pub record_energies: bool,
    /// Call the observer every this many steps (>= 1).
    pub observe_every: usize,
    /// Refuse runs whose recorded draws would exceed this many bytes.
    pub max_memory_bytes: usize,
}

impl SampleConfig {
    /// Defaults: 4 chains, 1000 warm-up steps, 1000 draws, no thinning,
    /// seed 0, beta 1, adaptation of step size and mass on.
    pub fn new() -> Self {
        SampleConfig {
            n_chains: 4,
            warmup: 1000,
            draws: 1000,
            thin: 1,
            seed: 0,
            beta: 1.0,
            adapt_step_size: true,
            shared_step_size: false,
            adapt_mass: true,
            record_energies: true,
            observe_every: 100,
            max_memory_bytes: 8 << 30,
        }
    }

    /// Bytes the recorded draws take for states of dimension `dim`.
    pub fn recorded_bytes(&self, dim: usize) -> Option<usize> {
        let per_draw = dim.checked_add(usize::from(self.record_energies))?;
        self.n_chains
            .checked_mul(self.draws)?
            .checked_mul(per_draw)?
            .checked_mul(8)
    }

    /// Checks every setting.
    pub fn validate(&self, dim: usize) -> Result<()> {
        if self.n_chains == 0 {
            return Err(Error::param("chains", "must be >= 1"));
        }
        if self.draws == 0 {
            return Err(Error::param("draws", "must be >= 1"));
        }
        if self.thin == 0 {
            return Err(Error::param("thin", "must be >= 1"));
        }
        if self.observe_every == 0 {
            return Err(Error::param("observe_every", "must be >= 1"));
        }
        crate::error::check_positive("beta", self.beta)?;
        match self.recorded_bytes(dim) {
            Some(b) if b <= self.max_memory_bytes => Ok(()),
            b => Err(Error::param(
                "draws",
                format!(
                    "{} chains x {} draws x {} dims would take {} of memory (limit {:.1} GiB): use fewer draws, --thin, or fewer chains",
                    self.n_chains,
                    self.draws,
                    dim,
                    b.map_or("more than 16 EiB".to_string(), |b| format!(
                        "{:.1} GiB",
                        b as f64 / (1u64 << 30) as f64
                    )),
                    self.max_memory_bytes as f64 / (1u64 << 30) as f64
                ),
            )),
        }
    }
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Which part of a run a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Phase {
    /// Adapting; nothing recorded.
    Warmup,
    /// Recording draws.
    Sampling,
}

/// What an observer sees every `observe_every` steps.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Warm-up or sampling.
    pub phase: Phase,
    /// Steps done so far (warm-up included).
    pub step: usize,
    /// Steps in the whole run.
    pub total: usize,
    /// Mean acceptance probability over chains and steps since the last call.
    pub accept_rate: f64,
    /// Divergences so far (all chains, warm-up included).
    pub divergences: usize,
    /// The current step size (median over chains).
    pub step_size: f64,
}

/// Called by the driver as a run goes (progress bars, logging, checkpoints).
pub trait Observer {
    /// Receives the run's progress.
    fn observe(&mut self, progress: &Progress);
}

/// An observer that does nothing.
pub struct NoObserver;
impl Observer for NoObserver {
    fn observe(&mut self, _progress: &Progress) {}
}

/// Summary statistics of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunStats {
    /// Kernel name.
    pub kernel: String,
    /// Per chain: mean acceptance probability over the sampling steps.
    pub acceptance: Vec<f64>,
    /// Per chain: divergences during sampling.
    pub divergences: Vec<usize>,
    /// Divergences during warm-up (all chains).
    pub warmup_divergences: usize,
    /// The step size used for sampling (median over chains).
    pub step_size: f64,
    /// Each chain's step size used for sampling.
    pub step_sizes: Vec<f64>,
    /// The diagonal inverse mass matrix used for sampling, if any.
    pub inv_mass: Option<Vec<f64>>,
    /// Energy-gradient evaluations, all chains and steps (warm-up included).
    pub grad_evals: u64,
    /// Energy evaluations (with or without gradient), all chains and steps.
    pub energy_evals: u64,
    /// Wall-clock seconds of the run.
    pub wall_s: f64,
}

/// The result of [`sample`].
#[derive(Clone, Debug)]
pub struct SampleOutput {
    /// Recorded positions, (chains, draws, dim).
    pub samples: Array3<f64>,
    /// Recorded energies `F` at beta = 1, (chains, draws), if asked for.
    pub energies: Option<Array2<f64>>,
    /// Summary statistics.
    pub stats: RunStats,
    /// The chains' final positions, energies and gradients (of `beta F`).
    pub final_state: ChainState,
}

/// Initial positions: each coordinate uniform on (-2, 2) (Stan's default)
/// for continuous states, fair coin flips for binary ones, drawn from each
/// chain's own stream. Chains whose energy is not finite are redrawn (up to
/// 100 times).
pub fn initial_positions(energy: &dyn Energy, rngs: &mut [ChainRng]) -> Result<Array2<f64>> {
    let (n, d) = (rngs.len(), energy.dim());
    let binary = energy.space() == StateSpace::Binary;
    let draw = |rng: &mut ChainRng, row: &mut [f64]| {
        for v in row.iter_mut() {
            *v = if binary {
                f64::from(u8::from(rng.random::<bool>()))
            } else {
                4.0 * rng.random::<f64>() - 2.0
            };
        }
    };
    let mut y = Array2::zeros((n, d));
    for (i, rng) in rngs.iter_mut().enumerate() {
        draw(rng, y.row_mut(i).as_slice_mut().expect("standard layout"));
    }
    let mut e = ndarray::Array1::zeros(n);
    for _ in 0..100 {
        energy.energy_batch(y.view(), e.view_mut());
        let bad: Vec<usize> = (0..n).filter(|&i| !e[i].is_finite()).collect();
        if bad.is_empty() {
            return Ok(y);
        }
        for i in bad {
            draw(
                &mut rngs[i],
                y.row_mut(i).as_slice_mut().expect("standard layout"),
            );
        }
    }
    Err(Error::Numerical(
        "no finite-energy starting point found in 100 draws per chain".into(),
    ))
}

fn mean_accept(steps: &[ChainStep]) -> f64 {
    steps.iter().map(|s| s.accept_prob).sum::<f64>() / steps.len() as f64
}

/// For each chain, doubles or halves its step size until one trial step's
/// acceptance probability crosses the kernel's target (at most 30 trials;
/// each trial starts from the same state with copies of the streams, so it
/// moves nothing). Returns the per-chain steps, also set on the kernel.
fn initial_step_sizes(
    kernel: &mut dyn Kernel,
    energy: &dyn Energy,
    state: &ChainState,
    rngs: &[ChainRng],
    target: f64,
) -> Vec<f64> {
    let n = state.n_chains();
    let mut steps = vec![ChainStep::default(); n];
    let mut trial = |k: &mut dyn Kernel, eps: &[f64]| -> Vec<f64> {
        k.set_step_sizes(StepSizes::per_chain(eps.to_vec()));
        let mut s = state.clone();
        let mut r = rngs.to_vec();
        k.step(energy, &mut s, &mut r, &mut steps);
        steps.iter().map(|s| s.accept_prob).collect()
    };
    let mut eps = kernel.step_sizes().expand(n);
    let up: Vec<bool> = trial(kernel, &eps).iter().map(|a| *a > target).collect();
    let mut done = vec![false; n];
    for _ in 0..30 {
        let next: Vec<f64> = (0..n)
            .map(|i| {
                if done[i] {
                    eps[i]
                } else if up[i] {
                    eps[i] * 2.0
                } else {
                    eps[i] / 2.0
                }
            })
            .collect();
        let acc = trial(kernel, &next);
        for i in 0..n {
            if done[i] {
                continue;
            }
            if !(next[i].is_finite() && next[i] > 1e-300 && next[i] < 1e300) {
                done[i] = true;
            } else if (acc[i] > target) != up[i] {
                // Crossed: keep the step on the acceptable side.
                if !up[i] {
                    eps[i] = next[i];
                }
                done[i] = true;
            } else {
                eps[i] = next[i];
            }
        }
        if done.iter().all(|d| *d) {
            break;
        }
    }
    kernel.set_step_sizes(StepSizes::per_chain(eps.clone()));
    eps
}

/// Runs `config.n_chains` chains of `kernel` on `exp(-beta F)`.
///
/// Warm-up (`config.warmup` steps): with `adapt_step_size` each chain's
/// step size starts from a doubling/halving search and follows its own dual
/// averaging towards the kernel's target acceptance; with `adapt_mass` (kernels with a
/// preconditioner) a diagonal inverse mass matrix is estimated from the
/// pooled variances of two windows (from 15% to 40% and from 40% to 90% of
/// warm-up), the step size being searched again after each; the last 10%
/// tunes the step size alone. Then `draws * thin` steps, recording every
/// `thin`-th. `init` gives starting positions (n_chains x dim), else
/// [`initial_positions`]. The output is a pure function of `config.seed`.
pub fn sample(
    energy: &dyn Energy,
    kernel: &mut dyn Kernel,
    config: &SampleConfig,
    init: Option<Array2<f64>>,
    observer: &mut dyn Observer,
) -> Result<SampleOutput> {
    let start = Instant::now();
    let d = energy.dim();
    config.validate(d)?;
    if let Some(n) = energy.fixed_rows()
        && n != config.n_chains
    {
        return Err(Error::param(
            "chains",
            format!("the model has {n} contexts (one per chain): use {n} chains or one context"),
        ));
    }
    let scaled = Scaled::new(energy, config.beta)?;
    let target: &dyn Energy = &scaled;
    let n = config.n_chains;
    let mut rngs = chain_rngs(config.seed, n);
    let y0 = match init {
        Some(y) => {
            if y.dim() != (n, d) {
                return Err(Error::shape(
                    "initial positions",
                    format!("({n}, {d})"),
                    format!("{:?}", y.shape()),
                ));
            }
            y
        }
        None => initial_positions(target, &mut rngs)?,
    };
    let mut state = ChainState::new(target, y0)?;
    let mut steps = vec![ChainStep::default(); n];

    let adapt_target = kernel
        .target_accept()
        .filter(|_| config.adapt_step_size && config.warmup > 0);
    let adapt_mass = config.adapt_mass && config.warmup >= 20 && kernel.set_inv_mass(vec![1.0; d]);
    let (w1, w2, w3) = if adapt_mass {
        let w = config.warmup;
        (w * 15 / 100, w * 40 / 100, w * 90 / 100)
    } else {
        (config.warmup, config.warmup, config.warmup)
    };
    let shared = config.shared_step_size;
    // Per chain: one dual-averaging state per chain. Shared: one, fed the
    // mean acceptance, starting from the median of the per-chain searches.
    let start_dual = |eps: Vec<f64>, t: f64| -> Vec<DualAveraging> {
        if shared {
            vec![DualAveraging::new(StepSizes::per_chain(eps).median(), t)]
        } else {
            eps.iter().map(|e| DualAveraging::new(*e, t)).collect()
        }
    };
    let mut dual: Option<Vec<DualAveraging>> = None;
    if let Some(t) = adapt_target {
        let eps = initial_step_sizes(kernel, target, &state, &rngs, t);
        dual = Some(start_dual(eps, t));
    }
    let mut mass = MassAdapter::new(d);

    let total = config.warmup + config.draws * config.thin;
    let mut samples = Array3::zeros((n, config.draws, d));
    let mut energies = config
        .record_energies
        .then(|| Array2::zeros((n, config.draws)));
    let mut acceptance = vec![0.0; n];
    let mut divergences = vec![0usize; n];
    let mut warmup_divergences = 0usize;
    let mut total_divergences = 0usize;
    let (mut since_accept, mut since_steps) = (0.0, 0usize);
    let mut draw = 0usize;

    for t in 0..total {
        kernel.step(target, &mut state, &mut rngs, &mut steps);
        let acc = mean_accept(&steps);
        since_accept += acc;
        since_steps += 1;
        let div = steps.iter().filter(|s| s.divergent).count();
        total_divergences += div;
        if t < config.warmup {
            warmup_divergences += div;
            if let (Some(da), Some(tg)) = (dual.as_mut(), adapt_target) {
                let eps: Vec<f64> = da
                    .iter_mut()
                    .zip(&steps)
                    .map(|(d, s)| d.update(s.accept_prob))
                    .collect();
                kernel.set_step_sizes(StepSizes::per_chain(eps));
                if adapt_mass && (t + 1 == w2 || t + 1 == w3) {
                    kernel.set_inv_mass(mass.inv_mass());
                    mass = MassAdapter::new(d);
                    let eps = initial_step_sizes(kernel, target, &state, &rngs, tg);
                    *da = eps.iter().map(|e| DualAveraging::new(*e, tg)).collect();
                }
                if t + 1 == config.warmup {
                    kernel.set_step_sizes(StepSizes::per_chain(
                        da.iter().map(DualAveraging::final_step_size).collect(),
                    ));
                }
            } else if adapt_mass && (t + 1 == w2 || t + 1 == w3) {
                kernel.set_inv_mass(mass.inv_mass());
                mass = MassAdapter::new(d);
            }
            if adapt_mass && t >= w1 && t < w3 {
                mass.add(state.position.view());
            }
        } else {
            for (i, s) in steps.iter().enumerate() {
                acceptance[i] += s.accept_prob;
                divergences[i] += usize::from(s.divergent);
            }
            let k = t - config.warmup;
            if (k + 1).is_multiple_of(config.thin) {
                samples
                    .index_axis_mut(Axis(1), draw)
                    .assign(&state.position);
                if let Some(e) = energies.as_mut() {
                    e.column_mut(draw).assign(&(&state.energy / config.beta));
                }
                draw += 1;
            }
        }
        if (t + 1).is_multiple_of(config.observe_every) || t + 1 == total {
            observer.observe(&Progress {
                phase: if t < config.warmup {
                    Phase::Warmup
                } else {
                    Phase::Sampling
                },
                step: t + 1,
                total,
                accept_rate: since_accept / since_steps as f64,
                divergences: total_divergences,
                step_size: kernel.step_sizes().median(),
            });
            since_accept = 0.0;
            since_steps = 0;
        }
    }
    let sampling_steps = (config.draws * config.thin) as f64;
    acceptance.iter_mut().for_each(|a| *a /= sampling_steps);
    let steps_total = total as u64 * n as u64;
    let stats = RunStats {
        kernel: kernel.name().to_string(),
        acceptance,
        divergences,
        warmup_divergences,
        step_size: kernel.step_sizes().median(),
        step_sizes: kernel.step_sizes().expand(n),
        inv_mass: kernel.inv_mass().map(<[f64]>::to_vec),
        grad_evals: steps_total * kernel.grad_evals_per_step() as u64 + n as u64,
        energy_evals: steps_total * kernel.grad_evals_per_step().max(1) as u64 + n as u64,
        wall_s: start.elapsed().as_secs_f64(),
    };
    Ok(SampleOutput {
        samples,
        energies,
        stats,
        final_state: state,
    })
}
