//! The sampling run as a [`Transition`] of the chain engine: the
//! kernel's moves, warm-up with a [`Tuner`], recorded draws; checkpoints
//! and resume.

use super::{DRAW_STATS, DrawStats, RunStats, SampleConfig, SampleOutput, initial_positions};
use crate::energy::{Energy, Scaled, StateSpace};
use crate::error::{Error, Result};
use crate::io::read_checkpoint;
use crate::kernels::{ChainState, ChainStep, InvMass, Kernel, Tuner, Tuning};
use crate::rng::{ChainRng, RngState, chain_rngs_from, restore_rng, save_rng};
use crate::run::{
    ChainRun, Control, Finished, Observer, Schedule, Tally, Transition, by_chain,
    energies_by_chain, in_pool,
};
use ndarray::Array2;
use std::path::Path;
use std::time::Instant;

/// The checkpoint kind of sampling runs.
const KIND: &str = "sample";

/// The chains' moves by one kernel at a tuning: the sampler's transition
/// (adapting the tuning in warm-up and recording draws) and the negatives'
/// (a fixed tuning, nothing recorded).
pub(crate) struct KernelMoves<'a> {
    target: &'a dyn Energy,
    kernel: &'a dyn Kernel,
    pub(crate) tuning: Tuning,
    /// Warm-up's adapter; `None` keeps the tuning fixed.
    tuner: Option<Tuner>,
    pub(crate) state: ChainState,
    pub(crate) rngs: Vec<ChainRng>,
    steps: Vec<ChainStep>,
    /// The sampling run's configuration; `None` records nothing (the
    /// negatives' moves).
    config: Option<SampleConfig>,
    /// The step moved without evaluating the new positions where the
    /// kernel can ([`Kernel::step_unevaluated`]): a negatives call's last,
    /// when its end energies are not wanted.
    pub(crate) unevaluated_at: Option<usize>,
    /// Whether that step was moved so (the kernel could).
    pub(crate) moved_unevaluated: bool,
}

impl<'a> KernelMoves<'a> {
    /// Moves of `kernel` on `target` from `state` at a fixed `tuning`,
    /// recording nothing.
    pub(crate) fn fixed(
        target: &'a dyn Energy,
        kernel: &'a dyn Kernel,
        tuning: Tuning,
        state: ChainState,
        rngs: Vec<ChainRng>,
    ) -> Self {
        let n = state.n_chains();
        KernelMoves {
            target,
            kernel,
            tuning,
            tuner: None,
            state,
            rngs,
            steps: vec![ChainStep::default(); n],
            config: None,
            unevaluated_at: None,
            moved_unevaluated: false,
        }
    }
}

/// A sampling checkpoint's run state as written.
#[derive(serde::Serialize)]
struct SavedRef<'a> {
    config: &'a SampleConfig,
    tuning: &'a Tuning,
    tuner: &'a Tuner,
    positions: Vec<f64>,
    rngs: Vec<RngState>,
}

/// A sampling checkpoint's run state as read back.
#[derive(serde::Deserialize)]
struct SavedRun {
    config: SampleConfig,
    tuning: Tuning,
    tuner: Tuner,
    positions: Vec<f64>,
    rngs: Vec<RngState>,
}

/// A sampling checkpoint's header.
#[derive(serde::Deserialize)]
struct Saved {
    engine: Tally,
    run: SavedRun,
}

impl Transition for KernelMoves<'_> {
    fn rows(&self) -> usize {
        self.state.n_chains()
    }

    fn chains(&self) -> usize {
        self.state.n_chains()
    }

    fn advance(&mut self, t: usize, warmup: bool) -> Result<&[ChainStep]> {
        let unevaluated = self.unevaluated_at == Some(t)
            && self.kernel.step_unevaluated(
                &self.tuning,
                &mut self.state,
                &mut self.rngs,
                &mut self.steps,
            );
        self.moved_unevaluated |= unevaluated;
        if !unevaluated {
            self.kernel.step(
                self.tuning.moved(self.target).energy(),
                &self.tuning,
                &mut self.state,
                &mut self.rngs,
                &mut self.steps,
            );
        }
        if warmup && let Some(tuner) = self.tuner.as_mut() {
            tuner.update(
                t,
                self.kernel,
                self.target,
                &mut self.state,
                &self.rngs,
                &self.steps,
                &mut self.tuning,
            );
        }
        Ok(&self.steps)
    }

    fn tracks(&self) -> Vec<usize> {
        let (n, d) = (self.state.n_chains(), self.state.dim());
        let Some(c) = &self.config else {
            return vec![];
        };
        let mut widths = vec![n * d];
        if c.record_energies {
            widths.push(n);
        }
        if c.record_draw_stats {
            widths.push(DRAW_STATS * n);
        }
        widths
    }

    fn record(&self, out: &mut [&mut [f64]]) {
        let Some(c) = &self.config else {
            return;
        };
        match self.tuning.dense() {
            // straight into the record, in the target's coordinates
            Some(m) => m.to_state_into(
                self.state.position.view(),
                ndarray::ArrayViewMut2::from_shape(self.state.position.raw_dim(), &mut *out[0])
                    .expect("a position record of n x d"),
            ),
            None => {
                out[0].copy_from_slice(self.state.position.as_slice().expect("standard layout"))
            }
        }
        let mut next = 1;
        if c.record_energies {
            for (o, v) in out[next].iter_mut().zip(self.state.energy.iter()) {
                *o = *v / c.beta;
            }
            next += 1;
        }
        if c.record_draw_stats {
            let per_step = self.kernel.grad_evals_per_step().max(1) as f64;
            for (i, (o, st)) in out[next]
                .chunks_exact_mut(DRAW_STATS)
                .zip(&self.steps)
                .enumerate()
            {
                o[0] = st.accept_prob;
                o[1] = f64::from(u8::from(st.divergent));
                o[2] = per_step + f64::from(st.extra_evals);
                o[3] = self.tuning.step_size().get(i);
                o[4] = f64::from(st.tree_depth);
            }
        }
    }

    fn step_size(&self) -> f64 {
        self.tuning.step_size().median()
    }

    fn save(&self) -> Result<serde_json::Value> {
        let (Some(config), Some(tuner)) = (&self.config, &self.tuner) else {
            return Ok(serde_json::Value::Null);
        };
        let snap = SavedRef {
            config,
            tuning: &self.tuning,
            tuner,
            positions: self.state.position.iter().copied().collect(),
            rngs: self.rngs.iter().map(save_rng).collect(),
        };
        serde_json::to_value(snap).map_err(|e| Error::Numerical(format!("checkpoint: {e}")))
    }
}

/// The schedule of a sampling run.
fn schedule(config: &SampleConfig) -> Schedule {
    Schedule::new(config.warmup, config.draws, config.thin)
}

/// Runs `config.n_chains` chains of `kernel` on `exp(-beta F)`.
///
/// Warm-up (`config.warmup` steps) adapts a [`Tuning`] by the schedule of
/// [`Tuner`] (per-chain or shared dual averaging of the step size towards
/// the kernel's target acceptance, a diagonal inverse mass per chain, or
/// pooled, from windows of variances: [`crate::kernels::MassWindows`]); then `draws * thin` steps, recording every
/// `thin`-th. `init` gives starting positions (n_chains x dim), else
/// [`initial_positions`]. The output is a pure function of `config.seed`:
/// the kernel holds no state, so a kernel value reused gives the same draws.
///
/// ```
/// use boltz::kernels::Mala;
/// use boltz::sampler::{NoObserver, SampleConfig, sample};
/// let energy = boltz::model::load("gmm-ring")?.energy(None)?;
/// let mut config = SampleConfig::new();
/// (config.n_chains, config.warmup, config.draws) = (4, 200, 100);
/// let out = sample(energy.as_ref(), &Mala::new(0.1)?, &config, None, &mut NoObserver)?;
/// assert_eq!(out.samples.dim(), (4, 100, 2));
/// // The adapted tuning can start another run (or AIS) without warm-up.
/// config.tuning = Some(out.stats.tuning.clone());
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn sample(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    config: &SampleConfig,
    init: Option<Array2<f64>>,
    observer: &mut dyn Observer,
) -> Result<SampleOutput> {
    sample_with(energy, kernel, config, init, observer, &Control::default())
}

/// [`sample`] with checkpoints and a stop flag.
pub fn sample_with(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
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
    let mut rngs = chain_rngs_from(config.seed, config.first_chain as u64, n);
    let y0 = match init {
        Some(y) if y.dim() != (n, d) => {
            return Err(Error::shape(
                "initial positions",
                format!("({n}, {d})"),
                format!("{:?}", y.shape()),
            ));
        }
        Some(y) => y,
        None => initial_positions(target, &config.init, &mut rngs)?,
    };
    let (mut tuner, mut tuning) = Tuner::new(kernel, config.adaptation(), config.warmup, d);
    if let Some(t) = &config.tuning {
        tuning = t.clone();
    }
    // Under a given dense mass the chains start in its coordinates; a
    // diagonal adapted on top would mix the two.
    if tuning.dense().is_some() && config.adapt_mass && !config.dense_mass && config.warmup > 0 {
        return Err(Error::param(
            "tuning",
            "a dense mass cannot be adapted further as a diagonal: set dense_mass, or adapt_mass off",
        ));
    }
    let y0 = match tuning.dense() {
        Some(m) if m.dim() != d => {
            return Err(Error::shape(
                "tuning's dense mass",
                format!("{d} x {d}"),
                format!("{0} x {0}", m.dim()),
            ));
        }
        Some(m) => m.to_whitened(y0.view()),
        None => y0,
    };
    let moved = tuning.moved(target);
    let mut state = ChainState::new(moved.energy(), y0)?;
    // Warm-up first moves chains too far for float64 downhill.
    let mut descent = 0;
    if config.warmup > 0 && target.space() == StateSpace::Continuous {
        let rounds = super::descend_far_starts(moved.energy(), &mut state);
        // Each chain's rounds and its state evaluated again after them
        // (its own count: a shard's chains count the same).
        descent = rounds
            .iter()
            .filter(|r| **r > 0)
            .map(|r| *r as u64 + 1)
            .sum();
        if descent > 0 {
            state = ChainState::new(moved.energy(), state.position)?;
        }
    }
    tuner.start(kernel, target, &state, &rngs, &mut tuning);
    let moves = KernelMoves {
        target,
        kernel,
        tuning,
        tuner: Some(tuner),
        state,
        rngs,
        steps: vec![ChainStep::default(); n],
        config: Some(config.clone()),
        unevaluated_at: None,
        moved_unevaluated: false,
    };
    in_pool(|| {
        let run = ChainRun::new(moves, schedule(config), KIND)?;
        let run = run.with_extra_evals(descent);
        finish(run, observer, control, start)
    })
}

/// Continues the run saved in `checkpoint` to its end (or to the next
/// stop), bit-identical to an uninterrupted run. `control.settings` must
/// equal the settings the run was started with, and `config` the run's
/// configuration (the checkpoint's copy is checked against it, never
/// trusted: an edited `beta` is refused); the energy and kernel must be
/// built as they were (the adapted tuning comes from the checkpoint).
pub fn resume(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    config: &SampleConfig,
    checkpoint: &Path,
    observer: &mut dyn Observer,
    control: &Control,
) -> Result<SampleOutput> {
    let start = Instant::now();
    let (saved, data): (Saved, Vec<f64>) = read_checkpoint(checkpoint, KIND, &control.settings)?;
    let bad = |r: &str| Error::checkpoint(checkpoint, r.to_string());
    let Saved { engine, run } = saved;
    if let Some(what) = config.differs_from(&run.config) {
        return Err(bad(&format!(
            "its run configuration differs from this run's in {what}; refusing an edited checkpoint"
        )));
    }
    let c = config;
    let d = energy.dim();
    if run.positions.len() != c.n_chains.saturating_mul(d)
        || run.rngs.len() != c.n_chains
        || c.validate(d).is_err()
    {
        return Err(bad("its sizes do not match the model and settings"));
    }
    // A usable tuning, one this run's adaptation can have reached by its
    // step, finite positions, the chains' own streams (the executor checks
    // its counters and recorded draws).
    let out_of_range =
        "its state is out of range for these settings; refusing a damaged or edited checkpoint";
    if !run.tuning.fits(c.n_chains, d)
        || !run.tuner.fits(c.warmup, c.n_chains, d)
        || run.positions.iter().any(|v| !v.is_finite())
        || engine.t > schedule(c).total()
        || !run.tuner.agrees(
            &Tuner::new(kernel, c.adaptation(), c.warmup, d).0,
            engine.t,
            c.n_chains,
            &run.tuning,
        )
        || run
            .rngs
            .iter()
            .zip(chain_rngs_from(c.seed, c.first_chain as u64, c.n_chains))
            .any(|(s, e)| !crate::rng::same_stream(s, &e))
    {
        return Err(bad(out_of_range));
    }
    let scaled = Scaled::new(energy, c.beta)?;
    let target: &dyn Energy = &scaled;
    let positions = Array2::from_shape_vec((c.n_chains, d), run.positions).expect("checked size");
    let state = ChainState::new(run.tuning.moved(target).energy(), positions)?;
    let moves = KernelMoves {
        target,
        kernel,
        tuning: run.tuning,
        tuner: Some(run.tuner),
        state,
        rngs: run.rngs.iter().map(restore_rng).collect(),
        steps: vec![ChainStep::default(); c.n_chains],
        config: Some(c.clone()),
        unevaluated_at: None,
        moved_unevaluated: false,
    };
    let run = ChainRun::resume(moves, schedule(c), KIND, engine, &data)
        .map_err(|why| bad(&format!("{why}; refusing a damaged or edited checkpoint")))?;
    in_pool(|| finish(run, observer, control, start))
}

/// Drives the run on the chain engine and gathers the output.
fn finish(
    run: ChainRun<KernelMoves<'_>>,
    observer: &mut dyn Observer,
    control: &Control,
    start: Instant,
) -> Result<SampleOutput> {
    let mut run = run.started_at(start);
    let every = run
        .transition()
        .config
        .as_ref()
        .map_or(1, |c| c.observe_every);
    let complete = run.drive_every(observer, control, every)?;
    Ok(output(run.finish(), complete))
}

fn output(done: Finished<KernelMoves<'_>>, complete: bool) -> SampleOutput {
    let Finished {
        transition: moves,
        tally,
        mut tracks,
        wall_s,
    } = done;
    let config = moves.config.as_ref().expect("a sampling run");
    let (n, d) = (moves.state.n_chains(), moves.state.dim());
    let kernel = moves.kernel;
    let sampling_steps = tally.t.saturating_sub(config.warmup) as f64;
    let acceptance = tally
        .chain_acceptance
        .iter()
        .map(|a| {
            if sampling_steps > 0.0 {
                a / sampling_steps
            } else {
                f64::NAN
            }
        })
        .collect();
    let steps_total = tally.t as u64 * n as u64;
    let stats = RunStats {
        kernel: kernel.name().to_string(),
        acceptance,
        divergences: tally.chain_divergences.clone(),
        warmup_divergences: tally.warmup_divergences,
        step_size: moves.tuning.step_size().median(),
        step_sizes: moves.tuning.step_size().expand(n),
        inv_mass: match moves.tuning.dense() {
            Some(m) => Some(m.variances()),
            None => moves.tuning.inv_masses().map(InvMass::median),
        },
        tuning: moves.tuning.clone(),
        grad_evals: steps_total * kernel.grad_evals_per_step() as u64
            + n as u64
            + if kernel.grad_evals_per_step() > 0 {
                tally.extra_evals
            } else {
                0
            },
        energy_evals: steps_total * kernel.grad_evals_per_step().max(1) as u64
            + n as u64
            + tally.extra_evals,
        wall_s,
    };
    let draw_stats = config
        .record_draw_stats
        .then(|| DrawStats::from_track(&tracks.pop().expect("recorded"), n));
    let energies = config.record_energies.then(|| {
        let e = tracks.pop().expect("recorded");
        energies_by_chain(&e, n)
    });
    SampleOutput {
        samples: by_chain(&tracks[0], n, d),
        energies,
        draw_stats,
        stats,
        final_state: match moves.tuning.dense() {
            Some(m) => moves.state.unwhitened(m),
            None => moves.state,
        },
        complete,
    }
}
