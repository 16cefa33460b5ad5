//! One call of the negatives sampler: the chains' moves on the shared run
//! loop (any kernel, or persistent parallel tempering), the write-back and
//! the call's batch.

use super::{Init, Method, NegativeBatch, NegativeSampler, NegativeStats, TemperedState};
use crate::energy::{Energy, StateSpace};
use crate::error::{Error, Result};
use crate::kernels::{ChainState, ChainStep, Kernel, Tuning};
use crate::rng::{restore_rng, save_rng};
use crate::run::{ChainRun, Control, NoObserver, Phase, Schedule, Tally, Transition, in_pool};
use crate::sampler::KernelMoves;
use ndarray::{Array1, Array2, ArrayView2, Axis};

impl NegativeSampler {
    /// One call of persistent parallel tempering ([`Method::Tempered`]):
    /// `steps` steps of `spec`'s kernel (at the fixed step of `tuning`, the
    /// same for every replica) and even-odd swaps on the path from `base`
    /// to `exp(-E)` (`energy` already scaled by beta), from where the last
    /// call left the replicas (the first call starts them at draws from
    /// the base). Returns the target replicas; the temperatures are then
    /// re-spaced by the call's swap rejection rates (Pigeons' rule). A
    /// stopped call leaves the state as it was.
    #[allow(clippy::too_many_arguments)]
    pub fn generate_tempered(
        &mut self,
        energy: &dyn Energy,
        base: &crate::ais::Base,
        spec: &crate::kernels::KernelSpec,
        tuning: &Tuning,
        steps: usize,
        positives: Option<ArrayView2<f64>>,
        control: &Control,
    ) -> Result<NegativeBatch> {
        let Method::Tempered { replicas } = self.state.method else {
            return Err(Error::param(
                "method",
                "this sampler was not made for parallel tempering",
            ));
        };
        let (c, d) = (self.state.n_chains, self.state.dim);
        if energy.dim() != d {
            return Err(Error::shape(
                "negatives",
                format!("an energy of dimension {d}"),
                format!("{}", energy.dim()),
            ));
        }
        let t0 =
            self.state.tempered.clone().ok_or_else(|| {
                Error::param("state", "parallel tempering's replicas are missing")
            })?;
        let first = t0.positions.is_empty();
        let y0 = (!first).then(|| {
            Array2::from_shape_vec((replicas * c, d), t0.positions.clone()).expect("checked size")
        });
        in_pool(|| {
            let (mut ladder, _) = crate::pt::Ladder::new(
                energy,
                base,
                spec,
                1.0,
                0..c,
                t0.betas.clone(),
                self.state.seed,
                y0,
            )?;
            // The first call drew its starts from the base with the fresh
            // row streams; later calls continue the saved streams.
            if !first {
                ladder.rngs = t0.rngs.iter().map(restore_rng).collect();
            }
            ladder.swap_rngs = t0.swap_rngs.iter().map(restore_rng).collect();
            ladder.labels.clone_from(&t0.labels);
            ladder.heading.clone_from(&t0.heading);
            let start = ladder.replica_rows(replicas - 1).to_owned();
            let moves = LadderMoves {
                ladder,
                tuning,
                first: t0.t,
                accept: vec![0.0; replicas - 1],
                attempts: vec![0; replicas - 1],
                trips: 0,
            };
            let (complete, moves, tally) = run_call(moves, steps, control);
            let complete = complete?;
            let (acc, divergences) = (tally.accept_sum, tally.divergences);
            let negatives = moves.ladder.replica_rows(replicas - 1).to_owned();
            if !complete {
                return Ok(stopped(energy, negatives));
            }
            let mut energies = Array1::from_elem(c, f64::NAN);
            if self.end_energies {
                energy.energy_batch(negatives.view(), energies.view_mut());
            }
            self.state.tempered = Some(moves.into_state(&t0, steps));
            self.state.calls += 1;
            Ok(completed(
                energy,
                positives.filter(|_| self.end_energies),
                &start,
                negatives,
                energies,
                (acc, steps, divergences, f64::NAN),
                if first { c } else { 0 },
            ))
        })
    }

    pub(super) fn generate_inner(
        &mut self,
        energy: &dyn Energy,
        kernel: &dyn Kernel,
        tuning: &Tuning,
        steps: usize,
        positives: Option<ArrayView2<f64>>,
        control: &Control,
    ) -> Result<NegativeBatch> {
        let (n, d) = (self.active, self.state.dim);
        if energy.dim() != d {
            return Err(Error::shape(
                "negatives",
                format!("an energy of dimension {d}"),
                format!("{}", energy.dim()),
            ));
        }
        if let Some(p) = positives
            && p.ncols() != d
        {
            return Err(Error::shape(
                "positives",
                format!("(m, {d})"),
                format!("{:?}", p.shape()),
            ));
        }
        if let Init::Rows { dim, .. } = self.state.init
            && dim != d
        {
            return Err(Error::shape(
                "init",
                format!("rows of {d}"),
                format!("rows of {dim}"),
            ));
        }
        if energy.space() == StateSpace::Binary
            && !matches!(self.state.init, Init::Bernoulli | Init::Rows { .. })
        {
            return Err(Error::param(
                "init",
                "a binary model needs Bernoulli initialisation",
            ));
        }
        let (start, reinitialised, replay_slots) = self.starts(positives)?;
        let state = ChainState::new(energy, start.clone()).map_err(|e| match e {
            Error::InvalidParameter { reason, .. } => {
                Error::Numerical(format!("negative chains: {reason}"))
            }
            other => other,
        })?;
        // The call's chains take the first n streams; the others wait.
        let waiting = self.rngs.split_off(n);
        let mut moves = KernelMoves::fixed(
            energy,
            kernel,
            tuning.clone(),
            state,
            std::mem::take(&mut self.rngs),
        );
        if !self.end_energies {
            moves.unevaluated_at = steps.checked_sub(1);
        }
        let (complete, moves, tally) = run_call(moves, steps, control);
        self.rngs = moves.rngs;
        self.rngs.extend(waiting);
        let complete = complete?;
        let per_step = kernel.grad_evals_per_step();
        let grad_evals = if per_step == 0 {
            f64::NAN
        } else {
            // The start, the moves, the extra evaluations of kernels whose
            // cost varies, less a last move made without evaluating.
            let nominal = 1 + per_step * steps - usize::from(moves.moved_unevaluated);
            nominal as f64 + tally.extra_evals as f64 / n as f64
        };
        let (acc, divergences, state) = (tally.accept_sum, tally.divergences, moves.state);
        if !complete {
            return Ok(stopped(energy, state.position));
        }
        // Kernels whose last evaluation is at the proposals keep each
        // chain's energy current (the accepted proposal's, or the kept
        // position's): no evaluation more. Others (Gibbs) may leave it
        // stale: recompute.
        let energies = if !self.end_energies {
            Array1::from_elem(n, f64::NAN)
        } else if kernel.proposal_is_last_eval() {
            state.energy.clone()
        } else {
            let mut e = Array1::zeros(n);
            energy.energy_batch(state.position.view(), e.view_mut());
            e
        };
        let negatives = state.position;
        self.write_back(&negatives, &replay_slots);
        self.state.calls += 1;
        Ok(completed(
            energy,
            positives.filter(|_| self.end_energies),
            &start,
            negatives,
            energies,
            (acc, steps, divergences, grad_evals),
            reinitialised,
        ))
    }
}

/// One call's `steps` moves on the chain engine, to the end or to
/// `control`'s stop flag (no progress reports, no checkpoints: a call's
/// state is saved between calls); the transition and the executor's
/// counts come back either way.
fn run_call<T: Transition>(moves: T, steps: usize, control: &Control) -> (Result<bool>, T, Tally) {
    let mut schedule = Schedule::new(0, steps, 0);
    schedule.phase = Phase::Negatives;
    let mut run = ChainRun::new(moves, schedule, "negatives").expect("no recorded draws");
    let quiet = Control {
        stop: control.stop.clone(),
        ..Control::default()
    };
    let complete = run.drive_every(&mut NoObserver, &quiet, usize::MAX);
    let done = run.finish();
    (complete, done.transition, done.tally)
}

/// A stopped call's batch: the chains where they stopped, with their
/// energies; no statistics.
fn stopped(energy: &dyn Energy, negatives: Array2<f64>) -> NegativeBatch {
    let mut energies = Array1::zeros(negatives.nrows());
    energy.energy_batch(negatives.view(), energies.view_mut());
    NegativeBatch {
        negatives,
        energies,
        stats: NegativeStats::default(),
        complete: false,
    }
}

/// A completed call's batch: the energy gap against the positives, the
/// mean acceptance over `steps` (`moves = (sum of per-step mean
/// acceptances, steps, divergences, gradient evaluations per chain)`) and
/// the mean distance from `start`.
fn completed(
    energy: &dyn Energy,
    positives: Option<ArrayView2<f64>>,
    start: &Array2<f64>,
    negatives: Array2<f64>,
    energies: Array1<f64>,
    moves: (f64, usize, usize, f64),
    reinitialised: usize,
) -> NegativeBatch {
    let (acc, steps, divergences, grad_evals) = moves;
    let moved = (&negatives - start)
        .map_axis(Axis(1), |r| r.dot(&r).sqrt())
        .sum()
        / negatives.nrows().max(1) as f64;
    let energy_pos = match positives {
        Some(p) => crate::energy::evaluate(energy, p)
            .map(|e| e.mean().unwrap_or(f64::NAN))
            .unwrap_or(f64::NAN),
        None => f64::NAN,
    };
    let energy_neg = energies.mean().unwrap_or(f64::NAN);
    NegativeBatch {
        negatives,
        energies,
        stats: NegativeStats {
            energy_pos,
            energy_neg,
            energy_gap: energy_neg - energy_pos,
            acceptance: if steps > 0 { acc / steps as f64 } else { 1.0 },
            divergences,
            distance_moved: moved,
            reinitialised,
            grad_evals,
            step_size: f64::NAN,
        },
        complete: true,
    }
}

/// Persistent tempering's moves in one negatives call: local moves of
/// every replica at a fixed tuning and even-odd swaps, the swaps counted
/// from the ladder's step `first` (the steps of earlier calls).
struct LadderMoves<'a> {
    ladder: crate::pt::Ladder<'a>,
    tuning: &'a Tuning,
    first: u64,
    accept: Vec<f64>,
    attempts: Vec<u64>,
    trips: u64,
}

impl LadderMoves<'_> {
    /// The replicas' state after a completed call of `steps` steps that
    /// started from `t0`: positions, streams, labels and directions, and
    /// the temperatures re-spaced by the call's swap rejection rates
    /// (kept where a pair was never attempted).
    fn into_state(self, t0: &TemperedState, steps: usize) -> TemperedState {
        let ladder = self.ladder;
        let swap_accept: Vec<f64> = self
            .accept
            .iter()
            .zip(&self.attempts)
            .map(|(a, n)| if *n > 0 { a / *n as f64 } else { f64::NAN })
            .collect();
        let betas = if self.attempts.iter().all(|n| *n > 0) {
            let rejection: Vec<f64> = swap_accept.iter().map(|a| 1.0 - a).collect();
            crate::pt::respace_schedule(ladder.chain_betas(0), &rejection)
        } else {
            t0.betas.clone()
        };
        TemperedState {
            betas,
            positions: ladder.state.position.iter().copied().collect(),
            rngs: ladder.rngs.iter().map(save_rng).collect(),
            swap_rngs: ladder.swap_rngs.iter().map(save_rng).collect(),
            labels: ladder.labels.clone(),
            heading: ladder.heading.clone(),
            t: t0.t + steps as u64,
            swap_accept,
            round_trips: self.trips,
        }
    }
}

impl Transition for LadderMoves<'_> {
    fn rows(&self) -> usize {
        self.ladder.chains * self.ladder.replicas
    }

    fn chains(&self) -> usize {
        self.ladder.chains
    }

    fn advance(&mut self, t: usize, _warmup: bool) -> Result<&[ChainStep]> {
        self.ladder.local_move(self.tuning);
        // One ladder for every chain (re-spaced between calls from the
        // pooled swaps): one acceptance sum per pair.
        let mut trips = [0];
        self.ladder.swap(
            self.first + t as u64,
            &mut self.accept,
            &mut self.attempts,
            &mut trips,
        );
        self.trips += trips[0];
        Ok(&self.ladder.steps)
    }

    fn tracks(&self) -> Vec<usize> {
        vec![]
    }

    fn record(&self, _out: &mut [&mut [f64]]) {}

    fn step_size(&self) -> f64 {
        self.tuning.step_size().median()
    }

    fn save(&self) -> Result<serde_json::Value> {
        // A call's state is saved by its caller between calls
        // ([`NegativeSampler::save`]); within a call there is nothing to keep.
        Ok(serde_json::Value::Null)
    }
}
