//! Negative samples for contrastive training: short-run chains from noise,
//! CD-k from the positives, persistent chains (PCD), and a replay buffer
//! (IGEBM / JEM style), driven by any kernel; plus the contrastive losses.
//!
//! An EBM is trained by pushing energy down on data (positives) and up on
//! samples from the model (negatives); with positives alone the energy
//! collapses. A [`NegativeSampler`] keeps everything a run needs between
//! calls (persistent chains, the buffer, every random stream), and its
//! [`NegativeState`] can be saved and restored so that a resumed run
//! continues bit-identically.

pub mod losses;
mod run;
mod starts;
mod state;

pub use losses::{Loss, LossGrad};

use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::kernels::{Kernel, StepAdapter, Tracking, Tuning};
use crate::rng::{ChainRng, RngState, chain_rngs, restore_rng, save_rng};
use crate::run::{Control, in_pool};
use ndarray::{Array1, Array2, ArrayView2};

pub use crate::init::Init;

/// How the chains of each call start.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    /// K steps from fresh noise every call (Nijkamp et al. 2019).
    ShortRun,
    /// K steps from the positives (contrastive divergence, CD-k).
    Cd,
    /// K steps from where the previous call's chains ended (persistent CD,
    /// Tieleman 2008); the first call starts from noise.
    Pcd,
    /// K steps from random entries of a buffer of past negatives, except a
    /// fraction `reinit` started from fresh noise; results are written back
    /// (Du & Mordatch 2019; Grathwohl et al. 2020).
    Replay {
        /// Buffer capacity (>= 1).
        capacity: usize,
        /// Probability that a chain starts from noise instead of the buffer, in [0, 1].
        reinit: f64,
        /// How the buffer takes in each call's negatives.
        #[serde(default)]
        policy: ReplayPolicy,
    },
    /// Persistent parallel tempering: every chain keeps `replicas` replicas
    /// on the path from a reference to the model, from call to call; each
    /// call runs K steps of local moves and even-odd swaps and returns the
    /// target replicas ([`NegativeSampler::generate_tempered`]). The
    /// temperatures are re-spaced after every call from its swap rates.
    Tempered {
        /// Replicas per chain (>= 2).
        replicas: usize,
    },
}

/// The replicas of persistent parallel tempering between calls.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TemperedState {
    /// Inverse temperatures on the path, rising from 0 to 1.
    pub betas: Vec<f64>,
    /// Every replica's position, replica-major (replicas x chains x dim);
    /// empty before the first call.
    pub positions: Vec<f64>,
    /// Each replica's local-move stream (replica-major).
    pub rngs: Vec<RngState>,
    /// Each chain's swap stream.
    pub swap_rngs: Vec<RngState>,
    /// Which state sits in each replica (round-trip bookkeeping).
    pub labels: Vec<u32>,
    /// Per chain and state: the last extreme it visited.
    pub heading: Vec<u8>,
    /// Steps run so far (the parity of the next swap).
    pub t: u64,
    /// The last call's swap acceptance per pair.
    pub swap_accept: Vec<f64>,
    /// Round trips completed in the last call.
    pub round_trips: u64,
}

/// How a replay buffer takes in each call's negatives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReplayPolicy {
    /// Every negative of every call is added (IGEBM, Du & Mordatch 2019):
    /// appended until the buffer holds `capacity` entries, then overwriting
    /// the oldest (ring order). Chains start from uniformly chosen entries,
    /// or from fresh noise with probability `reinit` (always while the
    /// buffer is empty). With `n` chains the buffer holds `n`, `2n`, ...
    /// entries after 1, 2, ... calls.
    #[default]
    Append,
    /// JEM (Grathwohl et al. 2020): at the first call the buffer is filled
    /// with `capacity` draws from the initial distribution; each chain
    /// starts from a uniformly chosen entry (or fresh noise with
    /// probability `reinit`) and its negative replaces that entry. The
    /// buffer always holds `capacity` entries.
    WriteBack,
}

/// Everything a [`NegativeSampler`] carries between calls: what a
/// checkpoint must hold to resume bit-identically.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NegativeState {
    /// Format version of this structure.
    pub version: u32,
    /// The settings the state was made with (a resume must match them).
    pub method: Method,
    /// Initialisation of fresh chains.
    pub init: Init,
    /// Chains per call.
    pub n_chains: usize,
    /// State dimension.
    pub dim: usize,
    /// The run's seed.
    pub seed: u64,
    /// Calls made so far.
    pub calls: u64,
    /// Persistent chains (PCD), row-major (n_chains x dim), empty before the first call.
    pub persistent: Vec<f64>,
    /// Replay buffer entries, row-major (len x dim).
    pub buffer: Vec<f64>,
    /// Next buffer slot to overwrite once the buffer is full (ring order).
    pub buffer_next: usize,
    /// Each chain slot's random stream.
    pub chain_rngs: Vec<RngState>,
    /// The stream for buffer choices and re-initialisation.
    pub aux_rng: RngState,
    /// What the caller says the state belongs to (a model's fingerprint,
    /// say): a state is only loaded with the same tag.
    #[serde(default)]
    pub tag: String,
    /// Persistent parallel tempering's replicas ([`Method::Tempered`]).
    #[serde(default)]
    pub tempered: Option<TemperedState>,
    /// The step adapted across calls ([`NegativeSampler::adapted_step`]);
    /// `None` before the first adapted call or without adaptation.
    #[serde(default)]
    pub step_size: Option<f64>,
}

/// Statistics of one call.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct NegativeStats {
    /// Mean energy of the positives given (NaN without positives).
    pub energy_pos: f64,
    /// Mean energy of the negatives returned.
    pub energy_neg: f64,
    /// `energy_neg - energy_pos`: the energy gap training widens and then holds.
    pub energy_gap: f64,
    /// Mean acceptance probability over steps and chains (1 for ULA / Gibbs).
    pub acceptance: f64,
    /// Non-finite proposals (rejected, or ULA chains reset), all steps and chains.
    pub divergences: usize,
    /// Mean Euclidean distance between each chain's start and end.
    pub distance_moved: f64,
    /// Chains started from fresh noise in this call.
    pub reinitialised: usize,
    /// The step the call moved with (NaN for kernels without one).
    pub step_size: f64,
    /// Gradient evaluations per chain in this call (its start and its
    /// moves; the end energies and positives of the report are energy
    /// evaluations apart): K for K ULA moves without end energies, K + 1
    /// with them or for MALA, K L + 1 for HMC with L leapfrog steps, more
    /// for NUTS and the AutoStep kernels (mean over chains). NaN for
    /// gradient-free kernels and tempering.
    pub grad_evals: f64,
}

/// One call's negatives.
#[derive(Clone, Debug)]
pub struct NegativeBatch {
    /// The negatives, (n_chains, dim).
    pub negatives: Array2<f64>,
    /// Their energies `F` (at beta = 1).
    pub energies: Array1<f64>,
    /// What the call did.
    pub stats: NegativeStats,
    /// False when the call was stopped by its flag (see
    /// [`NegativeSampler::generate_with`]).
    pub complete: bool,
}

/// Generates negatives call after call, keeping persistent chains, the
/// replay buffer and every random stream.
pub struct NegativeSampler {
    state: NegativeState,
    rngs: Vec<ChainRng>,
    aux: ChainRng,
    /// Whether a call evaluates the energies of its ends and positives
    /// ([`NegativeSampler::set_end_energies`]).
    end_energies: bool,
    /// Chains of the next call, at most `state.n_chains` (the streams
    /// held; [`NegativeSampler::set_chains`]).
    active: usize,
}

const STATE_VERSION: u32 = 1;

impl NegativeSampler {
    /// A new sampler: `n_chains` chains of dimension `dim` per call.
    pub fn new(method: Method, init: Init, n_chains: usize, dim: usize, seed: u64) -> Result<Self> {
        if n_chains == 0 {
            return Err(Error::param("chains", "must be >= 1"));
        }
        check_chains(n_chains, dim)?;
        if let Method::Replay {
            capacity, reinit, ..
        } = method
        {
            if capacity == 0 {
                return Err(Error::param("buffer", "must be >= 1"));
            }
            crate::budget::check(
                "buffer",
                &format!("a replay buffer of {capacity} entries of dimension {dim}"),
                crate::budget::bytes(&[capacity, dim.max(1)], 8),
            )?;
            if capacity
                .checked_mul(dim.max(1))
                .and_then(|x| x.checked_mul(8))
                .is_none_or(|b| b > 8 << 30)
            {
                return Err(Error::param(
                    "buffer",
                    format!("{capacity} entries of dimension {dim} would take more than 8 GiB"),
                ));
            }
            if !(0.0..=1.0).contains(&reinit) {
                return Err(Error::param(
                    "reinit",
                    format!("must be in [0, 1], got {reinit}"),
                ));
            }
        }
        init.validate("init")?;
        let tempered = match method {
            Method::Tempered { replicas } => {
                crate::budget::at_most("replicas", replicas, 4096, "a few times Lambda is enough")?;
                if replicas < 2 {
                    return Err(Error::param(
                        "replicas",
                        "parallel tempering needs at least 2",
                    ));
                }
                crate::budget::check(
                    "replicas",
                    &format!("{replicas} replicas of {n_chains} chains of dimension {dim}"),
                    crate::budget::bytes(&[replicas, n_chains, dim.max(1)], 8 * 12),
                )?;
                let rngs = crate::pt::row_rngs(seed, 0..n_chains, replicas);
                Some(TemperedState {
                    betas: (0..replicas)
                        .map(|k| k as f64 / (replicas - 1) as f64)
                        .collect(),
                    positions: vec![],
                    rngs: rngs.iter().map(save_rng).collect(),
                    swap_rngs: (0..n_chains)
                        .map(|c| save_rng(&crate::pt::swap_rng(seed, c)))
                        .collect(),
                    labels: (0..replicas * n_chains)
                        .map(|i| (i / n_chains) as u32)
                        .collect(),
                    heading: vec![0; replicas * n_chains],
                    t: 0,
                    swap_accept: vec![],
                    round_trips: 0,
                })
            }
            _ => None,
        };
        let rngs = chain_rngs(seed, n_chains);
        let aux = crate::rng::Stream::Negatives.rng(seed);
        let state = NegativeState {
            version: STATE_VERSION,
            method,
            init,
            n_chains,
            dim,
            seed,
            calls: 0,
            persistent: vec![],
            buffer: vec![],
            buffer_next: 0,
            chain_rngs: vec![],
            aux_rng: save_rng(&aux),
            tag: String::new(),
            tempered,
            step_size: None,
        };
        Ok(Self::from_parts(state, rngs, aux))
    }

    /// A sampler of `state` with its chains' streams and its own: every
    /// chain active, end energies evaluated.
    fn from_parts(state: NegativeState, rngs: Vec<ChainRng>, aux: ChainRng) -> Self {
        NegativeSampler {
            active: state.n_chains,
            state,
            rngs,
            aux,
            end_energies: true,
        }
    }

    /// Restores a sampler from a saved state.
    pub fn restore(state: NegativeState) -> Result<Self> {
        if state.version != STATE_VERSION {
            return Err(Error::param(
                "state",
                format!(
                    "format version {} (this boltz reads {STATE_VERSION})",
                    state.version
                ),
            ));
        }
        let tempered_ok = match (&state.method, &state.tempered) {
            (Method::Tempered { replicas }, Some(t)) => {
                let (r, n) = (*replicas, state.n_chains * *replicas);
                crate::tally::is_ladder(&t.betas, r)
                    && (t.positions.is_empty() || t.positions.len() == n * state.dim)
                    && t.positions.iter().all(|v| v.is_finite())
                    && t.rngs.len() == n
                    && t.swap_rngs.len() == state.n_chains
                    && t.labels.len() == n
                    && t.labels.iter().all(|l| (*l as usize) < r)
                    && t.heading.len() == n
                    && t.heading.iter().all(|h| *h <= 2)
            }
            (Method::Tempered { .. }, None) => false,
            (_, t) => t.is_none(),
        };
        if state.chain_rngs.len() != state.n_chains
            || !tempered_ok
            || !streams_are_the_seeds(&state)
            || !state.buffer.len().is_multiple_of(state.dim.max(1))
            || !(state.persistent.is_empty()
                || state.persistent.len() == state.n_chains * state.dim)
        {
            return Err(Error::param(
                "state",
                "inconsistent sizes (corrupt state file?)",
            ));
        }
        let rngs = state.chain_rngs.iter().map(restore_rng).collect();
        let aux = restore_rng(&state.aux_rng);
        Ok(Self::from_parts(state, rngs, aux))
    }

    /// Chains of the next call ([`NegativeSampler::set_chains`]; at first
    /// the number the sampler was made with).
    pub fn n_chains(&self) -> usize {
        self.active
    }

    /// The step the next call moves with when the step is adapted across
    /// calls (`None` before the first adapted call).
    pub fn adapted_step(&self) -> Option<f64> {
        self.state.step_size
    }

    /// After a call at `step` whose mean acceptance was `acceptance`,
    /// moves the step towards the kernel's `target` acceptance for the
    /// next call: `log step += acceptance - target` (a Robbins-Monro step
    /// with a constant gain, so it follows a target that changes as the
    /// model trains: a frozen sampler's step shrinks by e^-target per
    /// call), the change kept within a factor of 2 either way
    /// ([`crate::kernels::Tracking`] with gain 1).
    pub fn adapt_step(&mut self, step: f64, acceptance: f64, target: f64) {
        if step.is_finite() && step > 0.0 && acceptance.is_finite() {
            let mut t = Tracking::new(step, target, 1.0).with_max_factor(2.0);
            self.state.step_size = Some(t.update(acceptance));
        }
    }

    /// Whether the number of chains can no longer change: PCD after its
    /// first call, parallel tempering always.
    pub fn chains_fixed(&self) -> bool {
        match self.state.method {
            Method::Pcd => !self.state.persistent.is_empty(),
            Method::Tempered { .. } => true,
            _ => false,
        }
    }

    /// Sets the number of chains from the next call on (a training loop
    /// whose batch size changes: the last batch of an epoch, say). Short
    /// runs, replay buffers and CD take any number: chain `i` always
    /// draws from stream `(seed, i)`, a stream not used before starts at
    /// its beginning and one a call does not use waits where it was (a
    /// run is still a function of its seed and its sequence of sizes).
    /// PCD keeps the chains of its first call and parallel tempering its
    /// ladders: another number is refused once they exist.
    pub fn set_chains(&mut self, chains: usize) -> Result<()> {
        if chains == self.active {
            return Ok(());
        }
        if chains == 0 {
            return Err(Error::param("chains", "must be >= 1"));
        }
        if self.chains_fixed() {
            return Err(Error::param(
                "chains",
                format!(
                    "this sampler's persistent chains are {} (pcd and pt keep the chains of their first call); build another sampler for {chains}",
                    self.state.n_chains
                ),
            ));
        }
        let d = self.state.dim;
        check_chains(chains, d)?;
        let held = self.state.n_chains;
        if chains > held {
            self.rngs.extend(crate::rng::chain_rngs_from(
                self.state.seed,
                held as u64,
                chains - held,
            ));
            self.state.n_chains = chains;
        } else if matches!(self.state.method, Method::Pcd) {
            // Before its first call PCD has used no stream: its chains
            // are exactly this call's.
            self.rngs.truncate(chains);
            self.state.n_chains = chains;
        }
        self.active = chains;
        Ok(())
    }

    /// Dimension of each chain.
    pub fn dim(&self) -> usize {
        self.state.dim
    }

    /// Calls completed.
    pub fn calls(&self) -> u64 {
        self.state.calls
    }

    /// The method the sampler was made for.
    pub fn method(&self) -> &Method {
        &self.state.method
    }

    /// Parallel tempering's replicas and swap statistics ([`Method::Tempered`]).
    pub fn tempered(&self) -> Option<&TemperedState> {
        self.state.tempered.as_ref()
    }

    /// The model tag the state was made for.
    pub fn tag(&self) -> &str {
        &self.state.tag
    }

    /// The complete state, for saving: a copy of everything, the replay
    /// buffer included (the accessors above read single fields without it).
    pub fn state(&self) -> NegativeState {
        let mut s = self.state.clone();
        s.chain_rngs = self.rngs.iter().map(save_rng).collect();
        s.aux_rng = save_rng(&self.aux);
        s
    }

    /// Whether each call evaluates the energies of the negatives it returns
    /// and of the positives given (true, the default: the report's
    /// `energy_neg`, `energy_pos`, `energy_gap` and the batch's `energies`).
    /// False leaves those NaN and saves the evaluations a training loop
    /// makes anyway in its loss: a call of K ULA moves then costs exactly
    /// K gradient evaluations, its last move taken without evaluating
    /// where it lands ([`crate::kernels::Kernel::step_unevaluated`]);
    /// Metropolis kernels evaluate their proposals to decide, so a call of
    /// K MALA moves costs K + 1 (the starts' energies and gradients, which
    /// change with the model's weights, and K proposals), and HMC with L
    /// leapfrog steps K L + 1. The draws are the same either way.
    pub fn set_end_energies(&mut self, on: bool) {
        self.end_energies = on;
    }

    /// Entries in the replay buffer.
    pub fn buffer_len(&self) -> usize {
        self.state.buffer.len() / self.state.dim.max(1)
    }

    /// Runs `steps` transitions of `kernel` on `energy` from this call's
    /// starting points and returns the negatives. `positives` (n_chains x
    /// dim) are needed for CD (the starts) and used for the energy gap.
    /// The kernel runs with its initial tuning (its step size).
    pub fn generate(
        &mut self,
        energy: &dyn Energy,
        kernel: &dyn Kernel,
        steps: usize,
        positives: Option<ArrayView2<f64>>,
    ) -> Result<NegativeBatch> {
        let tuning = kernel.initial_tuning();
        let control = Control::default();
        self.generate_with(energy, kernel, &tuning, steps, positives, &control)
    }

    /// [`NegativeSampler::generate`] with a tuning (a step size and mass
    /// matrix adapted by [`crate::sampler::sample`], say) and a stop flag.
    /// A call stopped by the flag returns the chains as they are with
    /// `complete` false and leaves the sampler as it was before the call
    /// (buffer, persistent chains and streams), so the call can be made
    /// again from the saved state.
    pub fn generate_with(
        &mut self,
        energy: &dyn Energy,
        kernel: &dyn Kernel,
        tuning: &Tuning,
        steps: usize,
        positives: Option<ArrayView2<f64>>,
        control: &Control,
    ) -> Result<NegativeBatch> {
        let before = (self.rngs.clone(), self.aux.clone());
        let buffer_len = self.state.buffer.len();
        let out =
            in_pool(|| self.generate_inner(energy, kernel, tuning, steps, positives, control));
        if out.as_ref().is_ok_and(|b| !b.complete) {
            (self.rngs, self.aux) = before;
            // A first write-back call fills the buffer before moving: undo it.
            self.state.buffer.truncate(buffer_len);
        }
        out
    }
}

/// `chains` chains of dimension `dim` (positions, energies, gradients and
/// the kernels' scratch rows, 12 f64 per entry) within the memory budget.
fn check_chains(chains: usize, dim: usize) -> Result<()> {
    crate::budget::check(
        "chains",
        &format!("{chains} chains of dimension {dim}"),
        crate::budget::bytes(&[chains, dim.max(1)], 8 * 12),
    )
    .map(|_| ())
}

/// Whether every random stream of a (restored) state is the one its seed
/// gives the chain, row or purpose it belongs to (chain `i`: stream
/// `(seed, i)`; the sampler's own draws; tempering's rows and swaps). A
/// stream's position is the state itself and is not checked; its key is:
/// an edited key would draw another chain's numbers (P141). Sizes are
/// checked before this.
fn streams_are_the_seeds(state: &NegativeState) -> bool {
    let seed = state.seed;
    let same = |saved: &[RngState], expected: Vec<ChainRng>| {
        saved.len() == expected.len()
            && saved
                .iter()
                .zip(&expected)
                .all(|(s, e)| crate::rng::same_stream(s, e))
    };
    let tempered = state.tempered.as_ref().is_none_or(|t| {
        let Method::Tempered { replicas } = state.method else {
            return false;
        };
        same(
            &t.rngs,
            crate::pt::row_rngs(seed, 0..state.n_chains, replicas),
        ) && same(
            &t.swap_rngs,
            (0..state.n_chains)
                .map(|c| crate::pt::swap_rng(seed, c))
                .collect(),
        )
    });
    state.chain_rngs.len() == state.n_chains
        && same(&state.chain_rngs, chain_rngs(seed, state.n_chains))
        && crate::rng::same_stream(&state.aux_rng, &crate::rng::Stream::Negatives.rng(seed))
        && tempered
}
