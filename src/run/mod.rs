//! The one run loop that sampling, AIS and negatives share: progress for
//! an observer, checkpoints every N steps, and a stop flag; and on it the
//! chain engine ([`ChainRun`] driving a [`Transition`]) that runs the
//! sampler's chains, parallel tempering's ladder and the negatives' moves.
//!
//! A run stopped by its flag returns what it has (marked incomplete) after
//! writing a resumable checkpoint where one was asked for; a resumed run
//! gives the same bytes as an uninterrupted one.

mod chains;

pub use chains::{
    ChainRun, Finished, PRESTART_EVALS, Schedule, Tally, Transition, by_chain, energies_by_chain,
};

use crate::error::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Checkpointing and interruption of a run.
#[derive(Clone, Debug, Default)]
pub struct Control {
    /// Write a checkpoint here (atomically) every `checkpoint_every` steps,
    /// and when the run is stopped.
    pub checkpoint: Option<PathBuf>,
    /// Steps (temperatures, for AIS) between checkpoints; 0 = only when stopped.
    pub checkpoint_every: usize,
    /// A flag another thread (a signal handler) sets to stop the run after
    /// the current step; the run then returns what it has, marked incomplete.
    pub stop: Option<Arc<AtomicBool>>,
    /// A description of the run's settings stored in checkpoints; a resume
    /// with other settings is refused.
    pub settings: String,
}

impl Control {
    /// Whether the stop flag is set.
    pub fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }
}

/// Which part of a run a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Phase {
    /// Adapting; nothing recorded.
    Warmup,
    /// Recording draws.
    Sampling,
    /// Annealing (AIS): one step is one temperature.
    Annealing,
    /// Moving negative chains.
    Negatives,
}

impl Phase {
    /// The phase in progress texts: `warm-up`, `sampling`, `annealing`, `negatives`.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Warmup => "warm-up",
            Phase::Sampling => "sampling",
            Phase::Annealing => "annealing",
            Phase::Negatives => "negatives",
        }
    }
}

/// What an observer sees as a run goes.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The phase of the step just done.
    pub phase: Phase,
    /// Steps done so far (warm-up included).
    pub step: usize,
    /// Steps in the whole run (for an adaptive AIS pilot, a guess).
    pub total: usize,
    /// Mean acceptance probability over chains and steps since the last call.
    pub accept_rate: f64,
    /// Divergences so far (all chains, warm-up included).
    pub divergences: usize,
    /// The current step size (median over chains; NaN where none).
    pub step_size: f64,
    /// AIS over several contexts: contexts whose estimates are final (0 otherwise).
    pub contexts_done: usize,
    /// AIS over several contexts: all contexts (0 otherwise).
    pub contexts: usize,
}

/// Called by the run loop as a run goes (progress bars, logging).
pub trait Observer: Send {
    /// Receives the run's progress.
    fn observe(&mut self, progress: &Progress);
}

/// An observer that does nothing.
pub struct NoObserver;
impl Observer for NoObserver {
    fn observe(&mut self, _progress: &Progress) {}
}

/// A run the loop drives one step at a time.
pub(crate) trait Steps {
    /// True when the run has nothing left to do.
    fn finished(&self) -> bool;
    /// Does one step.
    fn advance(&mut self) -> Result<()>;
    /// Steps done so far.
    fn done(&self) -> usize;
    /// Progress since the last call (resets the running acceptance).
    fn progress(&mut self) -> Progress;
    /// Writes a resumable checkpoint.
    fn save(&self, control: &Control) -> Result<()>;
}

/// Drives `run` to its end or to a stop: observes every `observe_every`
/// steps and at the end, checkpoints every `control.checkpoint_every`
/// steps and when stopped. Returns whether the run completed.
pub(crate) fn drive(
    run: &mut dyn Steps,
    observer: &mut dyn Observer,
    control: &Control,
    observe_every: usize,
) -> Result<bool> {
    while !run.finished() {
        run.advance()?;
        let t = run.done();
        let finished = run.finished();
        if t.is_multiple_of(observe_every.max(1)) || finished {
            observer.observe(&run.progress());
        }
        let stop = control.stopped();
        let due =
            control.checkpoint_every > 0 && t.is_multiple_of(control.checkpoint_every) && !finished;
        if control.checkpoint.is_some() && (due || (stop && !finished)) {
            run.save(control)?;
        }
        if stop {
            return Ok(finished);
        }
    }
    Ok(true)
}

/// Runs `f` on a worker thread of the current rayon pool, so that the many
/// small parallel calls of each step are forked from inside the pool rather
/// than injected from outside (an injection costs microseconds; a step of a
/// small model makes dozens). Results do not depend on it.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
