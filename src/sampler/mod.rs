//! The chain driver: warm-up with adaptation, draws, thinning, recording.
//! It works for every [`Kernel`](crate::kernels::Kernel), runs on the shared loop of [`crate::run`]
//! and knows nothing about terminals.

mod checks;
mod descent;
mod driver;

pub use crate::run::{Control, NoObserver, Observer, Phase, Progress};
pub use checks::{EXACT_CHECK_P, diagnostic_warnings, warnings};
pub use descent::{FAR_ENERGY, MAX_ROUNDS, descend_far_starts};
pub(crate) use driver::KernelMoves;
pub use driver::{resume, sample, sample_with};

use crate::energy::{Energy, StateSpace};
use crate::error::{Error, Result};
pub use crate::init::Init;
use crate::kernels::{Adaptation, ChainState, Tuning};
use crate::rng::ChainRng;
use ndarray::{Array2, Array3};

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
    /// kernels that have one (HMC, MALA, RWM), each chain's from its own
    /// draws (as Stan and nutpie do).
    pub adapt_mass: bool,
    /// Adapt one mass matrix for all chains, from their pooled warm-up
    /// draws, instead of one per chain (more draws behind the estimate when
    /// all chains are in one mode; it couples the chains, so a run split
    /// into shards adapts differently).
    #[serde(default)]
    pub pooled_mass: bool,
    /// Adapt a dense inverse mass (one for all chains, from the
    /// within-chain covariances of their warm-up draws and gradients,
    /// [`crate::kernels::DenseAdapter`]) instead of a diagonal: for strongly correlated targets. Needs `adapt_mass`;
    /// costs `O(d^2)` memory and `O(n d^2)` per evaluation.
    #[serde(default)]
    pub dense_mass: bool,
    /// Where warm-up's mass windows lie (default proportional: 15%-40% and
    /// 40%-90% of warm-up; [`crate::kernels::MassWindows::Expanding`] for Stan's).
    #[serde(default)]
    pub mass_windows: crate::kernels::MassWindows,
    /// Start from this tuning (step sizes, inverse mass) instead of the
    /// kernel's initial one: a tuning adapted by an earlier run, say. With
    /// `warmup = 0` it is used as it is.
    #[serde(default)]
    pub tuning: Option<Tuning>,
    /// Where chains start when no positions are given: by default
    /// over-dispersed ([`Init::Dispersed`]), so that R-hat can see chains
    /// caught in different modes.
    #[serde(default)]
    pub init: Init,
    /// Record each draw's energy `F` (at beta = 1) as well as its position.
    pub record_energies: bool,
    /// Record each draw's transition statistics ([`DrawStats`]) as well.
    #[serde(default)]
    pub record_draw_stats: bool,
    /// Call the observer every this many steps (>= 1).
    pub observe_every: usize,
    /// Refuse runs whose recorded draws would exceed this many bytes.
    pub max_memory_bytes: usize,
    /// The global index of the first chain (a shard of a larger run):
    /// chain `i` of this run draws from stream `(seed, first_chain + i)`.
    #[serde(default)]
    pub first_chain: usize,
}

impl SampleConfig {
    /// The first setting in which `saved` (a checkpoint's configuration)
    /// differs from this run's, as `name (saved, now)`; `None` when they
    /// agree. The progress interval and the memory ceiling are the
    /// caller's, not the run's.
    pub fn differs_from(&self, saved: &SampleConfig) -> Option<String> {
        let mut saved = saved.clone();
        saved.observe_every = self.observe_every;
        saved.max_memory_bytes = self.max_memory_bytes;
        if saved == *self {
            return None;
        }
        let (a, b) = (
            serde_json::to_value(&saved).ok()?,
            serde_json::to_value(self).ok()?,
        );
        let key = a
            .as_object()?
            .iter()
            .find(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| format!("{k} ({v}, now {})", b[k.as_str()]));
        Some(key.unwrap_or_else(|| "a setting".into()))
    }

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
            pooled_mass: false,
            dense_mass: false,
            mass_windows: crate::kernels::MassWindows::default(),
            tuning: None,
            init: Init::default(),
            record_energies: true,
            record_draw_stats: false,
            observe_every: 100,
            max_memory_bytes: 8 << 30,
            first_chain: 0,
        }
    }

    /// What warm-up adapts.
    pub fn adaptation(&self) -> Adaptation {
        Adaptation {
            step_size: self.adapt_step_size,
            shared_step: self.shared_step_size,
            mass: self.adapt_mass,
            pooled_mass: self.pooled_mass,
            windows: self.mass_windows,
            dense_mass: self.dense_mass,
        }
    }

    /// Bytes the recorded draws take for states of dimension `dim`.
    pub fn recorded_bytes(&self, dim: usize) -> Option<usize> {
        let per_draw = dim
            .checked_add(usize::from(self.record_energies))?
            .checked_add(DRAW_STATS * usize::from(self.record_draw_stats))?;
        self.n_chains
            .checked_mul(self.draws)?
            .checked_mul(per_draw)?
            .checked_mul(8)
    }

    /// All steps of the run, `warmup + draws * thin` (`None` on overflow).
    pub fn total_steps(&self) -> Option<usize> {
        self.draws.checked_mul(self.thin)?.checked_add(self.warmup)
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
        if self.total_steps().is_none() {
            return Err(Error::param(
                "thin",
                format!(
                    "warm-up {} + draws {} x thin {} overflows a step count",
                    self.warmup, self.draws, self.thin
                ),
            ));
        }
        crate::error::check_beta("beta", self.beta)?;
        self.init.validate("init")?;
        crate::budget::check(
            "chains",
            &format!(
                "{} chains of dimension {dim} (positions, gradients, proposals)",
                self.n_chains
            ),
            crate::budget::bytes(&[self.n_chains, dim.max(1)], 8 * 12),
        )?;
        crate::budget::check(
            "draws",
            &format!(
                "{} chains x {} draws x {dim} dims",
                self.n_chains, self.draws
            ),
            self.recorded_bytes(dim),
        )?;
        match self.recorded_bytes(dim) {
            Some(b) if b <= self.max_memory_bytes => Ok(()),
            b => Err(Error::param(
                "draws",
                format!(
                    "{} chains x {} draws x {} dims would take {} of memory (limit {:.1} GiB): use fewer draws, more thinning, or fewer chains",
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
    /// The inverse mass matrix used for sampling, if any, as its diagonal:
    /// per coordinate the median over chains when each chain adapted its
    /// own (every chain's is in `tuning`), the variances of a dense one
    /// (the whole matrix is in `tuning`).
    pub inv_mass: Option<Vec<f64>>,
    /// The tuning used for sampling (what warm-up adapted): hand it to
    /// another run ([`SampleConfig::tuning`]) or to AIS.
    pub tuning: Tuning,
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
    /// Each draw's transition statistics, if asked for
    /// ([`SampleConfig::record_draw_stats`]).
    pub draw_stats: Option<DrawStats>,
    /// Summary statistics.
    pub stats: RunStats,
    /// The chains' final positions, energies and gradients (of `beta F`).
    pub final_state: ChainState,
    /// False when the run was stopped early: `samples` then holds the draws
    /// recorded so far.
    pub complete: bool,
}

/// Values recorded per chain and draw for [`DrawStats`].
pub(crate) const DRAW_STATS: usize = 5;

/// Each draw's transition statistics, `(chains, draws)` each: those of the
/// transition that made the draw (with thinning, the last of its group).
/// What ArviZ calls sample stats.
#[derive(Clone, Debug, PartialEq)]
pub struct DrawStats {
    /// The acceptance statistic: the Metropolis probability `min(1, alpha)`
    /// (NUTS: the mean over its trajectory's leaves; 1 for unadjusted and
    /// Gibbs kernels; 0 after a divergence).
    pub accept_prob: Array2<f64>,
    /// Whether the transition diverged.
    pub diverging: Array2<bool>,
    /// Gradient evaluations of the transition (energy evaluations for
    /// kernels without a gradient): the kernel's count per step plus its
    /// extra ones (NUTS: its trajectory's leapfrog steps; in lockstep on a
    /// batch energy, the longest trajectory of the batch).
    pub n_evals: Array2<u32>,
    /// The step size the chain used (the kernel's units).
    pub step_size: Array2<f64>,
    /// NUTS's tree depth ([`ChainStep::tree_depth`]: the chain's own, where
    /// `n_evals` is the batch's in lockstep); 0 for the other kernels.
    ///
    /// [`ChainStep::tree_depth`]: crate::kernels::ChainStep::tree_depth
    pub tree_depth: Array2<u32>,
}

impl DrawStats {
    /// From a recorded track of [`DRAW_STATS`] values per chain and draw.
    pub(crate) fn from_track(track: &[f64], chains: usize) -> Self {
        let t = crate::run::by_chain(track, chains, DRAW_STATS);
        DrawStats {
            accept_prob: t.index_axis(ndarray::Axis(2), 0).to_owned(),
            diverging: t.index_axis(ndarray::Axis(2), 1).mapv(|v| v != 0.0),
            n_evals: t.index_axis(ndarray::Axis(2), 2).mapv(|v| v as u32),
            step_size: t.index_axis(ndarray::Axis(2), 3).to_owned(),
            tree_depth: t.index_axis(ndarray::Axis(2), 4).mapv(|v| v as u32),
        }
    }
}

/// Initial positions drawn from `init` (binary states: fair coin flips),
/// each chain from its own stream. Chains whose energy is not finite are
/// redrawn (up to 100 times).
pub fn initial_positions(
    energy: &dyn Energy,
    init: &Init,
    rngs: &mut [ChainRng],
) -> Result<Array2<f64>> {
    let (n, d) = (rngs.len(), energy.dim());
    let binary = energy.space() == StateSpace::Binary;
    if let Init::Rows { dim, .. } = init
        && *dim != d
    {
        return Err(Error::shape(
            "init",
            format!("rows of {d}"),
            format!("rows of {dim}"),
        ));
    }
    let draw = |i: usize, rng: &mut ChainRng, row: &mut [f64]| init.draw(i, rng, row, binary);
    let mut y = Array2::zeros((n, d));
    for (i, rng) in rngs.iter_mut().enumerate() {
        draw(
            i,
            rng,
            y.row_mut(i).as_slice_mut().expect("standard layout"),
        );
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
                i,
                &mut rngs[i],
                y.row_mut(i).as_slice_mut().expect("standard layout"),
            );
        }
    }
    Err(Error::Numerical(
        "no finite-energy starting point found in 100 draws per chain".into(),
    ))
}
