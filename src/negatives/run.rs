//! One call of the negatives sampler: the chains' moves on the shared run
//! loop (any kernel, or persistent parallel tempering), the write-back and
//! the call's batch.

use super::{Init, Method, NegativeBatch, NegativeSampler, NegativeStats, TemperedState};
use crate::energy::{Energy, StateSpace};
use crate::error::{Error, Result};
use crate::kernels::{ChainState, ChainStep, Kernel, Tuning};
use crate::rng::{ChainRng, restore_rng, save_rng};
use crate::run::{Control, NoObserver, Progress, Steps, drive, in_pool};
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
                c,
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
            let mut accept = vec![0.0; replicas - 1];
            let mut attempts = vec![0u64; replicas - 1];
            let (mut acc, mut divergences, mut trips) = (0.0, 0, 0);
            for k in 0..steps {
                ladder.local_move(tuning);
                let top = &ladder.steps[(replicas - 1) * c..];
                acc += top.iter().map(|s| s.accept_prob).sum::<f64>() / c as f64;
                divergences += ladder.steps.iter().filter(|s| s.divergent).count();
                trips += ladder.swap(t0.t + k as u64, &mut accept, &mut attempts);
                if control.stopped() && k + 1 < steps {
                    let negatives = ladder.replica_rows(replicas - 1).to_owned();
                    let mut energies = Array1::zeros(c);
                    energy.energy_batch(negatives.view(), energies.view_mut());
                    return Ok(NegativeBatch {
                        negatives,
                        energies,
                        stats: NegativeStats::default(),
                        complete: false,
                    });
                }
            }
            let negatives = ladder.replica_rows(replicas - 1).to_owned();
            let mut energies = Array1::zeros(c);
            energy.energy_batch(negatives.view(), energies.view_mut());
            let swap_accept: Vec<f64> = accept
                .iter()
                .zip(&attempts)
                .map(|(a, n)| if *n > 0 { a / *n as f64 } else { f64::NAN })
                .collect();
            let betas = if attempts.iter().all(|n| *n > 0) {
                let rejection: Vec<f64> = swap_accept.iter().map(|a| 1.0 - a).collect();
                crate::pt::respace_schedule(ladder.betas(), &rejection)
            } else {
                t0.betas.clone()
            };
            self.state.tempered = Some(TemperedState {
                betas,
                positions: ladder.state.position.iter().copied().collect(),
                rngs: ladder.rngs.iter().map(save_rng).collect(),
                swap_rngs: ladder.swap_rngs.iter().map(save_rng).collect(),
                labels: ladder.labels.clone(),
                heading: ladder.heading.clone(),
                t: t0.t + steps as u64,
                swap_accept,
                round_trips: trips,
            });
            self.state.calls += 1;
            Ok(completed(
                energy,
                positives,
                &start,
                negatives,
                energies,
                (acc, steps, divergences),
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
        let (n, d) = (self.state.n_chains, self.state.dim);
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
        let mut run = Moves {
            energy,
            kernel,
            tuning,
            state,
            rngs: &mut self.rngs,
            steps: vec![ChainStep::default(); n],
            k: 0,
            total: steps,
            acc: 0.0,
            divergences: 0,
        };
        let quiet = Control {
            stop: control.stop.clone(),
            ..Control::default()
        };
        let complete = drive(&mut run, &mut NoObserver, &quiet, usize::MAX)?;
        let (acc, divergences, state) = (run.acc, run.divergences, run.state);
        if !complete {
            let mut energies = Array1::zeros(n);
            energy.energy_batch(state.position.view(), energies.view_mut());
            return Ok(NegativeBatch {
                negatives: state.position,
                energies,
                stats: NegativeStats::default(),
                complete: false,
            });
        }
        // Gibbs kernels may leave energies stale: recompute them.
        let mut energies = Array1::zeros(n);
        energy.energy_batch(state.position.view(), energies.view_mut());
        let negatives = state.position;
        self.write_back(&negatives, &replay_slots);
        self.state.calls += 1;
        Ok(completed(
            energy,
            positives,
            &start,
            negatives,
            energies,
            (acc, steps, divergences),
            reinitialised,
        ))
    }
}

/// A completed call's batch: the energy gap against the positives, the
/// mean acceptance over `steps` (`moves = (sum of per-step mean
/// acceptances, steps, divergences)`) and the mean distance from `start`.
fn completed(
    energy: &dyn Energy,
    positives: Option<ArrayView2<f64>>,
    start: &Array2<f64>,
    negatives: Array2<f64>,
    energies: Array1<f64>,
    moves: (f64, usize, usize),
    reinitialised: usize,
) -> NegativeBatch {
    let (acc, steps, divergences) = moves;
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
        },
        complete: true,
    }
}

/// The K steps of one call, on the shared run loop.
struct Moves<'a> {
    energy: &'a dyn Energy,
    kernel: &'a dyn Kernel,
    tuning: &'a Tuning,
    state: ChainState,
    rngs: &'a mut [ChainRng],
    steps: Vec<ChainStep>,
    k: usize,
    total: usize,
    acc: f64,
    divergences: usize,
}

impl Steps for Moves<'_> {
    fn finished(&self) -> bool {
        self.k >= self.total
    }
    fn advance(&mut self) -> Result<()> {
        self.kernel.step(
            self.energy,
            self.tuning,
            &mut self.state,
            self.rngs,
            &mut self.steps,
        );
        self.acc += crate::kernels::mean_accept(&self.steps);
        self.divergences += self.steps.iter().filter(|s| s.divergent).count();
        self.k += 1;
        Ok(())
    }
    fn done(&self) -> usize {
        self.k
    }
    fn progress(&mut self) -> Progress {
        Progress {
            phase: crate::run::Phase::Negatives,
            step: self.k,
            total: self.total,
            accept_rate: self.acc / self.k.max(1) as f64,
            divergences: self.divergences,
            step_size: self.tuning.step_size().median(),
            contexts_done: 0,
            contexts: 0,
        }
    }
    fn save(&self, _control: &Control) -> Result<()> {
        // A call's state is saved by its caller between calls
        // ([`NegativeSampler::save`]); within a call there is nothing to keep.
        Ok(())
    }
}
