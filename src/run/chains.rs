//! The chain engine: one executor for every run of chains (the sampler,
//! parallel tempering, the negatives' moves), apart from what one step of
//! the chains does.
//!
//! A [`Transition`] moves every row of a run one step and says how each
//! move went ([`ChainStep`]); the executor, [`ChainRun`], owns the rest:
//! the phases (warm-up, then the steps after it), the tallies (acceptance
//! and divergences per chain, in total and since the last progress
//! report, evaluations beyond the nominal count), recording with thinning,
//! progress for an [`Observer`], checkpoints, the checks of a resumed
//! run's counters, and the stop flag (argmin's Solver/Executor split).
//!
//! ```
//! use boltz::kernels::{ChainState, ChainStep, Kernel, Mala, Tuning};
//! use boltz::run::{ChainRun, Schedule, Transition};
//! use boltz::Energy;
//! use std::sync::Arc;
//!
//! /// MALA at a fixed step, recording every draw.
//! struct Moves {
//!     energy: Arc<dyn Energy>,
//!     kernel: Mala,
//!     tuning: Tuning,
//!     state: ChainState,
//!     rngs: Vec<boltz::rng::ChainRng>,
//!     steps: Vec<ChainStep>,
//! }
//! impl Transition for Moves {
//!     fn rows(&self) -> usize { self.state.n_chains() }
//!     fn chains(&self) -> usize { self.state.n_chains() }
//!     fn advance(&mut self, _t: usize, _warmup: bool) -> boltz::Result<&[ChainStep]> {
//!         let (e, k) = (self.energy.as_ref(), &self.kernel);
//!         k.step(e, &self.tuning, &mut self.state, &mut self.rngs, &mut self.steps);
//!         Ok(&self.steps)
//!     }
//!     fn tracks(&self) -> Vec<usize> { vec![self.state.position.len()] }
//!     fn record(&self, out: &mut [&mut [f64]]) {
//!         out[0].iter_mut().zip(self.state.position.iter()).for_each(|(o, v)| *o = *v);
//!     }
//!     fn step_size(&self) -> f64 { self.tuning.step_size().median() }
//!     fn save(&self) -> boltz::Result<serde_json::Value> { Ok(serde_json::Value::Null) }
//! }
//!
//! let energy = boltz::model::load("gmm-ring")?.energy(None)?;
//! let state = ChainState::new(energy.as_ref(), ndarray::Array2::zeros((4, 2)))?;
//! let moves = Moves {
//!     energy,
//!     kernel: Mala::new(0.5)?,
//!     tuning: Tuning::new(0.5),
//!     state,
//!     rngs: boltz::rng::chain_rngs(7, 4),
//!     steps: vec![ChainStep::default(); 4],
//! };
//! let mut run = ChainRun::new(moves, Schedule::new(0, 100, 1), "example")?;
//! assert!(run.drive(&mut boltz::NoObserver, &boltz::Control::default())?);
//! let done = run.finish();
//! assert_eq!(done.tracks[0].len(), 100 * 4 * 2);
//! assert_eq!((done.tally.t, done.tally.draw), (100, 100));
//! // Each chain's acceptance probabilities summed over its 100 steps.
//! assert!(done.tally.chain_acceptance.iter().all(|a| *a > 0.0 && *a <= 100.0));
//! # Ok::<(), boltz::Error>(())
//! ```

use super::{Control, Observer, Phase, Progress, Steps, drive};
use crate::error::{Error, Result};
use crate::kernels::{ChainStep, mean_accept};
use std::time::Instant;

/// How a chain run is laid out in steps: `warmup` steps that adapt and
/// record nothing, then `steps` steps of which every `thin`-th is recorded
/// (`thin = 0`: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Warm-up steps.
    pub warmup: usize,
    /// Steps after warm-up.
    pub steps: usize,
    /// Record every `thin`-th step after warm-up; 0 records nothing.
    pub thin: usize,
    /// The phase of the steps after warm-up in progress reports
    /// ([`Phase::Sampling`] unless set).
    pub phase: Phase,
}

impl Schedule {
    /// `warmup` steps, then `draws * thin` steps recording every `thin`-th
    /// (`thin = 0`: `draws` steps recording nothing).
    pub fn new(warmup: usize, draws: usize, thin: usize) -> Schedule {
        Schedule {
            warmup,
            steps: draws.saturating_mul(thin.max(1)),
            thin,
            phase: Phase::Sampling,
        }
    }

    /// Steps in the whole run.
    pub fn total(&self) -> usize {
        self.warmup.saturating_add(self.steps)
    }

    /// Draws the whole run records.
    pub fn draws(&self) -> usize {
        self.recorded(self.total())
    }

    /// Draws recorded once `t` steps are done.
    pub fn recorded(&self, t: usize) -> usize {
        match self.thin {
            0 => 0,
            thin => t.saturating_sub(self.warmup) / thin,
        }
    }
}

/// One step of every row of a run: what [`ChainRun`] drives.
///
/// A row is one chain of the kernel (for parallel tempering, one chain at
/// one temperature); the run's *chains* are the last [`chains`] rows
/// (all rows for plain sampling, the target replica's rows in tempering):
/// their acceptance and divergences are tallied per chain.
///
/// [`chains`]: Transition::chains
pub trait Transition {
    /// Rows moved by each step.
    fn rows(&self) -> usize;
    /// The run's chains: the last `chains()` rows of [`advance`]'s reports.
    ///
    /// [`advance`]: Transition::advance
    fn chains(&self) -> usize;
    /// Moves every row one step (step `t` of the run, counted from 0; in
    /// warm-up when `warmup`, where the transition adapts itself) and
    /// returns one report per row.
    fn advance(&mut self, t: usize, warmup: bool) -> Result<&[ChainStep]>;
    /// The number of values each recorded draw holds, one entry per track
    /// (for example positions `chains x dim`, then energies `chains`).
    fn tracks(&self) -> Vec<usize>;
    /// Writes the current draw into `out` (one slice per track, of the
    /// widths [`tracks`](Transition::tracks) gave).
    fn record(&self, out: &mut [&mut [f64]]);
    /// The current step size (median over rows; NaN where none), for
    /// progress reports.
    fn step_size(&self) -> f64;
    /// The transition's state for a checkpoint (with the executor's
    /// [`Tally`] and recorded draws, the run continues from it
    /// bit-identically). Called only where checkpoints are asked for.
    fn save(&self) -> Result<serde_json::Value>;
}

/// The most evaluations of one row a run may make before its first step
/// ([`ChainRun::with_extra_evals`]: the sampler's descent from far starts,
/// [`crate::sampler::MAX_ROUNDS`] rounds and one more).
pub const PRESTART_EVALS: usize = 401;

/// What the executor counts as a run goes; saved in checkpoints.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// Steps done (warm-up included).
    pub t: usize,
    /// Draws recorded.
    pub draw: usize,
    /// Per chain: the sum of its acceptance probabilities over the steps
    /// after warm-up.
    pub chain_acceptance: Vec<f64>,
    /// The sum over the steps after warm-up of the chains' mean acceptance.
    pub accept_sum: f64,
    /// Per chain: its divergences after warm-up.
    pub chain_divergences: Vec<usize>,
    /// Divergences of every row in warm-up.
    pub warmup_divergences: usize,
    /// Divergences of every row after warm-up.
    pub divergences: usize,
    /// Evaluations beyond the kernel's nominal count ([`ChainStep::extra_evals`]),
    /// every row, warm-up included.
    pub extra_evals: u64,
    /// Seconds spent before the last resume.
    pub elapsed_s: f64,
}

impl Tally {
    fn new(chains: usize) -> Tally {
        Tally {
            chain_acceptance: vec![0.0; chains],
            chain_divergences: vec![0; chains],
            ..Tally::default()
        }
    }

    /// Whether a (resumed) tally is one a run of `schedule` with `rows`
    /// rows and `chains` chains can have reached: the step within the run,
    /// the draws recorded for it, per-chain sums within the steps done, at
    /// most one divergence per row and step, at most 2^20 extra
    /// evaluations per row and step (NUTS at its deepest tree makes
    /// 2^max_depth) and [`PRESTART_EVALS`] per row before the first step.
    pub fn fits(&self, schedule: &Schedule, rows: usize, chains: usize) -> bool {
        let warm = self.t.min(schedule.warmup);
        let after = self.t - warm;
        let per_rows = |steps: usize| steps.saturating_mul(rows);
        let sum_ok = |a: f64, most: usize| a.is_finite() && (0.0..=most as f64).contains(&a);
        let chain_divs: usize = self.chain_divergences.iter().sum();
        self.t <= schedule.total()
            && self.draw == schedule.recorded(self.t)
            && self.chain_acceptance.len() == chains
            && self.chain_divergences.len() == chains
            && self.chain_acceptance.iter().all(|a| sum_ok(*a, after))
            && sum_ok(self.accept_sum, after)
            && self.chain_divergences.iter().all(|d| *d <= after)
            && self.warmup_divergences <= per_rows(warm)
            && self.divergences <= per_rows(after)
            && (chain_divs == self.divergences || (rows > chains && chain_divs <= self.divergences))
            && self.extra_evals
                <= (per_rows(self.t) as u64)
                    .saturating_mul(1 << 20)
                    .saturating_add(per_rows(PRESTART_EVALS) as u64)
            && self.elapsed_s.is_finite()
            && self.elapsed_s >= 0.0
    }
}

/// A run of chains in progress: a [`Transition`] and what the executor
/// keeps around it.
pub struct ChainRun<T> {
    transition: T,
    schedule: Schedule,
    tally: Tally,
    widths: Vec<usize>,
    tracks: Vec<Vec<f64>>,
    /// (sum of the steps' mean acceptance, steps) since the last report.
    since: (f64, usize),
    start: Instant,
    kind: &'static str,
}

/// A finished (or stopped) run: the transition as the last step left it,
/// the tallies, the recorded tracks (each `tally.draw` draws long) and the
/// wall time of the whole run (before resumes included), in seconds.
pub struct Finished<T> {
    /// The transition after the last step.
    pub transition: T,
    /// The executor's counts.
    pub tally: Tally,
    /// The recorded tracks, draw-major: `tally.draw` draws of each width.
    pub tracks: Vec<Vec<f64>>,
    /// Seconds the run took, earlier parts of a resumed run included.
    pub wall_s: f64,
}

impl<T: Transition> ChainRun<T> {
    /// A fresh run of `transition` by `schedule`; `kind` names its
    /// checkpoints (a resume checks it). The caller has checked the
    /// recorded draws against its memory budget.
    pub fn new(transition: T, schedule: Schedule, kind: &'static str) -> Result<Self> {
        let widths = transition.tracks();
        let draws = schedule.draws();
        let tracks = widths
            .iter()
            .map(|w| {
                w.checked_mul(draws)
                    .map(|n| vec![0.0; n])
                    .ok_or_else(|| Error::param("draws", "the recorded draws overflow"))
            })
            .collect::<Result<_>>()?;
        let chains = transition.chains();
        Ok(ChainRun {
            transition,
            schedule,
            tally: Tally::new(chains),
            widths,
            tracks,
            since: (0.0, 0),
            start: Instant::now(),
            kind,
        })
    }

    /// A run continued from a checkpoint's `tally` and recorded values
    /// (the tracks' recorded prefixes, one after another). Refused, with
    /// the reason, when the tally is not one this run can have reached or
    /// the values are not the recorded draws' count or not finite.
    pub fn resume(
        transition: T,
        schedule: Schedule,
        kind: &'static str,
        tally: Tally,
        recorded: &[f64],
    ) -> std::result::Result<Self, &'static str> {
        if !tally.fits(&schedule, transition.rows(), transition.chains()) {
            return Err("its counts are out of range for these settings");
        }
        let mut run = ChainRun::new(transition, schedule, kind).map_err(|_| "absurd sizes")?;
        let lens: Vec<usize> = run.widths.iter().map(|w| w * tally.draw).collect();
        if recorded.len() != lens.iter().sum::<usize>() || recorded.iter().any(|v| !v.is_finite()) {
            return Err("its recorded draws do not match its counts");
        }
        let mut at = 0;
        for (track, len) in run.tracks.iter_mut().zip(lens) {
            track[..len].copy_from_slice(&recorded[at..at + len]);
            at += len;
        }
        run.tally = tally;
        Ok(run)
    }

    /// Counts `n` row evaluations made before the first step (warm-up's
    /// descent from far starts) with the extra evaluations.
    pub fn with_extra_evals(mut self, n: u64) -> Self {
        self.tally.extra_evals += n;
        self
    }

    /// Counts the run's wall time from `at` (a caller's set-up before the
    /// executor was made) rather than from [`ChainRun::new`].
    pub fn started_at(mut self, at: Instant) -> Self {
        self.start = at;
        self
    }

    /// The transition (for its figures while the run goes).
    pub fn transition(&self) -> &T {
        &self.transition
    }

    /// Runs to the end or to a stop (`control`'s flag): observes every
    /// `observe_every` steps and at the end, checkpoints every
    /// `control.checkpoint_every` steps and when stopped. Returns whether
    /// the run completed.
    pub fn drive(&mut self, observer: &mut dyn Observer, control: &Control) -> Result<bool> {
        self.drive_every(observer, control, 1)
    }

    /// [`drive`](ChainRun::drive), observing every `observe_every` steps.
    pub fn drive_every(
        &mut self,
        observer: &mut dyn Observer,
        control: &Control,
        observe_every: usize,
    ) -> Result<bool> {
        drive(self, observer, control, observe_every)
    }

    /// The run's end: the transition, the tallies, the recorded tracks.
    pub fn finish(self) -> Finished<T> {
        let draw = self.tally.draw;
        let tracks = self
            .tracks
            .into_iter()
            .zip(&self.widths)
            .map(|(mut t, w)| {
                t.truncate(w * draw);
                t
            })
            .collect();
        Finished {
            wall_s: self.tally.elapsed_s + self.start.elapsed().as_secs_f64(),
            transition: self.transition,
            tally: self.tally,
            tracks,
        }
    }

    fn record(&mut self) {
        let draw = self.tally.draw;
        let mut out: Vec<&mut [f64]> = self
            .tracks
            .iter_mut()
            .zip(&self.widths)
            .map(|(t, w)| &mut t[draw * w..(draw + 1) * w])
            .collect();
        self.transition.record(&mut out);
        self.tally.draw += 1;
    }
}

/// The checkpoint header of a chain run.
#[derive(serde::Serialize)]
struct Header<'a> {
    engine: &'a Tally,
    run: serde_json::Value,
}

impl<T: Transition> Steps for ChainRun<T> {
    fn finished(&self) -> bool {
        self.tally.t >= self.schedule.total()
    }

    fn advance(&mut self) -> Result<()> {
        let t = self.tally.t;
        let warmup = t < self.schedule.warmup;
        let steps = self.transition.advance(t, warmup)?;
        let tally = &mut self.tally;
        let chains = &steps[steps.len() - tally.chain_acceptance.len()..];
        self.since.0 += mean_accept(steps);
        self.since.1 += 1;
        let divergent = steps.iter().filter(|s| s.divergent).count();
        tally.extra_evals += steps.iter().map(|s| u64::from(s.extra_evals)).sum::<u64>();
        if warmup {
            tally.warmup_divergences += divergent;
        } else {
            tally.divergences += divergent;
            tally.accept_sum += mean_accept(chains);
            for (i, s) in chains.iter().enumerate() {
                tally.chain_acceptance[i] += s.accept_prob;
                tally.chain_divergences[i] += usize::from(s.divergent);
            }
        }
        tally.t += 1;
        if !warmup && self.schedule.recorded(t + 1) > self.schedule.recorded(t) {
            self.record();
        }
        Ok(())
    }

    fn done(&self) -> usize {
        self.tally.t
    }

    fn progress(&mut self) -> Progress {
        let (sum, n) = std::mem::take(&mut self.since);
        let t = self.tally.t;
        Progress {
            phase: if t <= self.schedule.warmup {
                Phase::Warmup
            } else {
                self.schedule.phase
            },
            step: t,
            total: self.schedule.total(),
            accept_rate: sum / n.max(1) as f64,
            divergences: self.tally.warmup_divergences + self.tally.divergences,
            step_size: self.transition.step_size(),
            contexts_done: 0,
            contexts: 0,
        }
    }

    fn save(&self, control: &Control) -> Result<()> {
        let Some(path) = control.checkpoint.as_ref() else {
            return Ok(());
        };
        let mut engine = self.tally.clone();
        engine.elapsed_s += self.start.elapsed().as_secs_f64();
        let header = Header {
            engine: &engine,
            run: self.transition.save()?,
        };
        let draw = self.tally.draw;
        let mut data = Vec::with_capacity(self.widths.iter().sum::<usize>() * draw);
        for (t, w) in self.tracks.iter().zip(&self.widths) {
            data.extend_from_slice(&t[..w * draw]);
        }
        crate::io::write_checkpoint(path, self.kind, &control.settings, &header, &data)
    }
}

/// A recorded track of `chains x dim` values per draw (draw-major) as
/// `(chains, draws, dim)`.
pub fn by_chain(track: &[f64], chains: usize, dim: usize) -> ndarray::Array3<f64> {
    let draws = track.len() / (chains * dim).max(1);
    ndarray::Array3::from_shape_fn((chains, draws, dim), |(c, k, j)| {
        track[(k * chains + c) * dim + j]
    })
}

/// A recorded track of `chains` values per draw (draw-major: energies) as
/// `(chains, draws)`.
pub fn energies_by_chain(track: &[f64], chains: usize) -> ndarray::Array2<f64> {
    by_chain(track, chains, 1).index_axis_move(ndarray::Axis(2), 0)
}
