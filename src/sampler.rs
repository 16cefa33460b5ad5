//! The chain driver: warm-up with adaptation, draws, thinning, recording,
//! observers. It works for every [`Kernel`] and knows nothing about terminals.

use crate::energy::{Energy, Scaled, StateSpace};
use crate::error::{Error, Result};
use crate::kernels::{
    ChainState, ChainStep, DualAveraging, Kernel, MassAdapter, StepSizes, mean_accept,
};
use crate::rng::{ChainRng, RngState, chain_rngs, restore_rng, save_rng};
use ndarray::{Array2, Array3};
use rand::RngExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
pub trait Observer: Send {
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
    /// False when the run was stopped early: `samples` then holds the draws
    /// recorded so far.
    pub complete: bool,
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

/// Checkpointing and interruption of a run.
#[derive(Clone, Debug, Default)]
pub struct Control {
    /// Write a checkpoint here (atomically) every `checkpoint_every` steps,
    /// and when the run is stopped.
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (0 = only when stopped).
    pub checkpoint_every: usize,
    /// A flag another thread (a signal handler) sets to stop the run after
    /// the current step; the run then returns what it has, marked partial.
    pub stop: Option<Arc<AtomicBool>>,
    /// A description of the run's settings stored in checkpoints;
    /// [`resume`] refuses a checkpoint whose settings differ.
    pub settings: String,
}

/// Everything the driver carries from one step to the next: with the
/// energy and the kernel's construction settings, a run continues from it
/// bit-identically ([`resume`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct RunState {
    version: u32,
    settings: String,
    config: SampleConfig,
    t: usize,
    positions: Vec<f64>,
    rngs: Vec<RngState>,
    step_sizes: StepSizes,
    inv_mass: Option<Vec<f64>>,
    dual: Option<Vec<DualAveraging>>,
    mass: MassAdapter,
    adapt_target: Option<f64>,
    adapt_mass: bool,
    acceptance: Vec<f64>,
    divergences: Vec<usize>,
    warmup_divergences: usize,
    total_divergences: usize,
    draw: usize,
    elapsed_s: f64,
    /// Recorded draws so far, draw-major: `(draw, chain, dim)`, so the
    /// recorded part is a prefix and checkpoints write only that.
    #[serde(skip)]
    samples: Vec<f64>,
    /// Recorded energies so far, `(draw, chain)`.
    #[serde(skip)]
    energies: Option<Vec<f64>>,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"BOLTZCK1";
const CHECKPOINT_VERSION: u32 = 1;

/// Writes a checkpoint: magic, header length, JSON header, then the
/// recorded draws and energies as little-endian f64 (atomically).
fn write_checkpoint(path: &Path, st: &RunState) -> Result<()> {
    let header = serde_json::to_vec(st).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    let mut out = Vec::with_capacity(
        16 + header.len() + 8 * (st.samples.len() + st.energies.as_ref().map_or(0, Vec::len)),
    );
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    let n = st.config.n_chains;
    let d = st.positions.len() / n.max(1);
    let recorded = st.samples[..st.draw * n * d]
        .iter()
        .chain(st.energies.iter().flat_map(|e| e[..st.draw * n].iter()));
    for v in recorded {
        out.extend_from_slice(&v.to_le_bytes());
    }
    crate::io::write_atomic(path, &out)
}

fn read_checkpoint(path: &Path) -> Result<RunState> {
    let bad = |r: &str| Error::Npy {
        path: path.into(),
        reason: format!("not a usable boltz checkpoint: {r}"),
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 16 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err(bad("bad magic bytes"));
    }
    let hlen = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let end = 16usize
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("truncated header"))?;
    let mut st: RunState =
        serde_json::from_slice(&bytes[16..end]).map_err(|e| bad(&e.to_string()))?;
    if st.version != CHECKPOINT_VERSION {
        return Err(bad(&format!(
            "format version {} (this boltz reads {CHECKPOINT_VERSION})",
            st.version
        )));
    }
    let c = &st.config;
    let d = st.positions.len() / c.n_chains.max(1);
    if st.draw > c.draws {
        return Err(bad("more draws recorded than configured"));
    }
    let n_samples = c
        .n_chains
        .checked_mul(st.draw)
        .and_then(|x| x.checked_mul(d))
        .ok_or_else(|| bad("absurd sizes"))?;
    let n_energies = if c.record_energies {
        c.n_chains * st.draw
    } else {
        0
    };
    if bytes.len() - end != 8 * (n_samples + n_energies)
        || st.positions.len() != c.n_chains * d
        || st.rngs.len() != c.n_chains
    {
        return Err(bad("sizes do not match (truncated or corrupt)"));
    }
    let vals: Vec<f64> = bytes[end..]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    // Re-grow to the full size the run fills.
    let mut samples = vals[..n_samples].to_vec();
    samples.resize(c.n_chains * c.draws * d, 0.0);
    st.samples = samples;
    st.energies = c.record_energies.then(|| {
        let mut e = vals[n_samples..].to_vec();
        e.resize(c.n_chains * c.draws, 0.0);
        e
    });
    Ok(st)
}

/// Runs `config.n_chains` chains of `kernel` on `exp(-beta F)`.
///
/// Warm-up (`config.warmup` steps): with `adapt_step_size` each chain's
/// step size starts from a doubling/halving search and follows its own dual
/// averaging towards the kernel's target acceptance (or one shared step on
/// the chains' mean acceptance with `shared_step_size`); with `adapt_mass`
/// (kernels with a preconditioner) a diagonal inverse mass matrix is
/// estimated from the pooled variances of two windows (from 15% to 40% and
/// from 40% to 90% of warm-up), the step sizes being searched again after
/// each; the last 10% tunes the step sizes alone. Then `draws * thin`
/// steps, recording every `thin`-th. `init` gives starting positions
/// (n_chains x dim), else [`initial_positions`]. The output is a pure
/// function of `config.seed`.
pub fn sample(
    energy: &dyn Energy,
    kernel: &mut dyn Kernel,
    config: &SampleConfig,
    init: Option<Array2<f64>>,
    observer: &mut dyn Observer,
) -> Result<SampleOutput> {
    sample_with(energy, kernel, config, init, observer, &Control::default())
}

/// [`sample`] with checkpoints and a stop flag.
pub fn sample_with(
    energy: &dyn Energy,
    kernel: &mut dyn Kernel,
    config: &SampleConfig,
    init: Option<Array2<f64>>,
    observer: &mut dyn Observer,
    control: &Control,
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
    let state = ChainState::new(target, y0)?;
    let adapt_target = kernel
        .target_accept()
        .filter(|_| config.adapt_step_size && config.warmup > 0);
    let adapt_mass = config.adapt_mass && config.warmup >= 20 && kernel.set_inv_mass(vec![1.0; d]);
    let mut dual = None;
    if let Some(t) = adapt_target {
        let eps = initial_step_sizes(kernel, target, &state, &rngs, t);
        dual = Some(start_dual(eps, t, config.shared_step_size));
    }
    let run = RunState {
        version: CHECKPOINT_VERSION,
        settings: control.settings.clone(),
        config: config.clone(),
        t: 0,
        positions: state.position.iter().copied().collect(),
        rngs: rngs.iter().map(save_rng).collect(),
        step_sizes: kernel.step_sizes().clone(),
        inv_mass: kernel.inv_mass().map(<[f64]>::to_vec),
        dual,
        mass: MassAdapter::new(d),
        adapt_target,
        adapt_mass,
        acceptance: vec![0.0; n],
        divergences: vec![0; n],
        warmup_divergences: 0,
        total_divergences: 0,
        draw: 0,
        elapsed_s: 0.0,
        samples: vec![0.0; n * config.draws * d],
        energies: config.record_energies.then(|| vec![0.0; n * config.draws]),
    };
    in_pool(|| drive(target, kernel, run, state, rngs, observer, control, start))
}

/// Continues the run saved in `checkpoint` to its end (or to the next
/// stop), bit-identical to an uninterrupted run. `settings` must equal the
/// [`Control::settings`] the run was started with; the energy and kernel
/// must be built as they were (the kernel's adapted step sizes and mass
/// matrix are restored from the checkpoint).
pub fn resume(
    energy: &dyn Energy,
    kernel: &mut dyn Kernel,
    checkpoint: &Path,
    observer: &mut dyn Observer,
    control: &Control,
) -> Result<SampleOutput> {
    let start = Instant::now();
    let run = read_checkpoint(checkpoint)?;
    if run.settings != control.settings {
        return Err(Error::param(
            "--resume",
            format!(
                "{} was written by a run with other settings ({}); resume with the same ones",
                checkpoint.display(),
                run.settings
            ),
        ));
    }
    let config = run.config.clone();
    let d = energy.dim();
    if run.positions.len() != config.n_chains * d {
        return Err(Error::param(
            "--resume",
            "the checkpoint's dimension does not match the model",
        ));
    }
    let scaled = Scaled::new(energy, config.beta)?;
    let target: &dyn Energy = &scaled;
    let positions =
        Array2::from_shape_vec((config.n_chains, d), run.positions.clone()).expect("checked size");
    let state = ChainState::new(target, positions)?;
    let rngs: Vec<ChainRng> = run.rngs.iter().map(restore_rng).collect();
    kernel.set_step_sizes(run.step_sizes.clone());
    if let Some(m) = &run.inv_mass {
        kernel.set_inv_mass(m.clone());
    }
    in_pool(|| drive(target, kernel, run, state, rngs, observer, control, start))
}

/// Runs `f` on a worker thread of the current rayon pool, so that the many
/// small parallel calls of each step are forked from inside the pool rather
/// than injected from outside (an injection costs microseconds; a step of a
/// small model makes dozens). Results do not depend on it.
pub(crate) fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

fn start_dual(eps: Vec<f64>, target: f64, shared: bool) -> Vec<DualAveraging> {
    if shared {
        vec![DualAveraging::new(
            StepSizes::per_chain(eps).median(),
            target,
        )]
    } else {
        eps.iter().map(|e| DualAveraging::new(*e, target)).collect()
    }
}

/// The step loop shared by [`sample_with`] and [`resume`].
#[allow(clippy::too_many_arguments)]
fn drive(
    target: &dyn Energy,
    kernel: &mut dyn Kernel,
    mut run: RunState,
    mut state: ChainState,
    mut rngs: Vec<ChainRng>,
    observer: &mut dyn Observer,
    control: &Control,
    start: Instant,
) -> Result<SampleOutput> {
    let config = run.config.clone();
    let (n, d) = (config.n_chains, target.dim());
    let mut steps = vec![ChainStep::default(); n];
    let (w1, w2, w3) = if run.adapt_mass {
        let w = config.warmup;
        (w * 15 / 100, w * 40 / 100, w * 90 / 100)
    } else {
        (config.warmup, config.warmup, config.warmup)
    };
    let total = config.warmup + config.draws * config.thin;
    let (mut since_accept, mut since_steps) = (0.0, 0usize);
    let snapshot =
        |run: &mut RunState, state: &ChainState, rngs: &[ChainRng], kernel: &dyn Kernel| {
            run.positions = state.position.iter().copied().collect();
            run.rngs = rngs.iter().map(save_rng).collect();
            run.step_sizes = kernel.step_sizes().clone();
            run.inv_mass = kernel.inv_mass().map(<[f64]>::to_vec);
            run.elapsed_s += start.elapsed().as_secs_f64();
        };
    let mut complete = true;
    while run.t < total {
        let t = run.t;
        kernel.step(target, &mut state, &mut rngs, &mut steps);
        let acc = mean_accept(&steps);
        since_accept += acc;
        since_steps += 1;
        let div = steps.iter().filter(|s| s.divergent).count();
        run.total_divergences += div;
        if t < config.warmup {
            run.warmup_divergences += div;
            if let (Some(da), Some(tg)) = (run.dual.as_mut(), run.adapt_target) {
                let eps: Vec<f64> = if config.shared_step_size {
                    vec![da[0].update(acc)]
                } else {
                    da.iter_mut()
                        .zip(&steps)
                        .map(|(d, s)| d.update(s.accept_prob))
                        .collect()
                };
                kernel.set_step_sizes(StepSizes::per_chain(eps));
                if run.adapt_mass && (t + 1 == w2 || t + 1 == w3) {
                    kernel.set_inv_mass(run.mass.inv_mass());
                    run.mass = MassAdapter::new(d);
                    let eps = initial_step_sizes(kernel, target, &state, &rngs, tg);
                    *da = start_dual(eps, tg, config.shared_step_size);
                }
                if t + 1 == config.warmup {
                    kernel.set_step_sizes(StepSizes::per_chain(
                        da.iter().map(DualAveraging::final_step_size).collect(),
                    ));
                }
            } else if run.adapt_mass && (t + 1 == w2 || t + 1 == w3) {
                kernel.set_inv_mass(run.mass.inv_mass());
                run.mass = MassAdapter::new(d);
            }
            if run.adapt_mass && t >= w1 && t < w3 {
                run.mass.add(state.position.view());
            }
        } else {
            for (i, s) in steps.iter().enumerate() {
                run.acceptance[i] += s.accept_prob;
                run.divergences[i] += usize::from(s.divergent);
            }
            let k = t - config.warmup;
            if (k + 1).is_multiple_of(config.thin) {
                let draw = run.draw;
                for c in 0..n {
                    let off = (draw * n + c) * d;
                    run.samples[off..off + d].copy_from_slice(
                        state.position.row(c).as_slice().expect("standard layout"),
                    );
                    if let Some(e) = run.energies.as_mut() {
                        e[draw * n + c] = state.energy[c] / config.beta;
                    }
                }
                run.draw += 1;
            }
        }
        run.t += 1;
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
                divergences: run.total_divergences,
                step_size: kernel.step_sizes().median(),
            });
            since_accept = 0.0;
            since_steps = 0;
        }
        let stop = control
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst));
        let due = control.checkpoint_every > 0
            && run.t.is_multiple_of(control.checkpoint_every)
            && run.t < total;
        if let Some(path) = &control.checkpoint
            && (due || stop)
        {
            let mut snap = run.clone();
            snapshot(&mut snap, &state, &rngs, kernel);
            snap.elapsed_s = run.elapsed_s + start.elapsed().as_secs_f64();
            write_checkpoint(path, &snap)?;
        }
        if stop {
            complete = run.t >= total;
            break;
        }
    }
    let sampling_steps = (run.t.saturating_sub(config.warmup)) as f64;
    let acceptance = run
        .acceptance
        .iter()
        .map(|a| {
            if sampling_steps > 0.0 {
                a / sampling_steps
            } else {
                f64::NAN
            }
        })
        .collect();
    let steps_total = run.t as u64 * n as u64;
    let stats = RunStats {
        kernel: kernel.name().to_string(),
        acceptance,
        divergences: run.divergences.clone(),
        warmup_divergences: run.warmup_divergences,
        step_size: kernel.step_sizes().median(),
        step_sizes: kernel.step_sizes().expand(n),
        inv_mass: kernel.inv_mass().map(<[f64]>::to_vec),
        grad_evals: steps_total * kernel.grad_evals_per_step() as u64 + n as u64,
        energy_evals: steps_total * kernel.grad_evals_per_step().max(1) as u64 + n as u64,
        wall_s: run.elapsed_s + start.elapsed().as_secs_f64(),
    };
    let draws_done = run.draw;
    // Draw-major storage to the (chains, draws, dim) the caller gets.
    let mut samples = Array3::zeros((n, draws_done, d));
    for (draw, block) in run.samples.chunks_exact(n * d).take(draws_done).enumerate() {
        for c in 0..n {
            samples
                .slice_mut(ndarray::s![c, draw, ..])
                .assign(&ndarray::ArrayView1::from(&block[c * d..(c + 1) * d]));
        }
    }
    let energies = run.energies.map(|e| {
        let mut out = Array2::zeros((n, draws_done));
        for (draw, block) in e.chunks_exact(n).take(draws_done).enumerate() {
            out.column_mut(draw)
                .assign(&ndarray::ArrayView1::from(block));
        }
        out
    });
    Ok(SampleOutput {
        samples,
        energies,
        stats,
        final_state: state,
        complete,
    })
}
