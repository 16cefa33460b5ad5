//! Step-size adaptation, one module for every place boltz tunes a step:
//! warm-up (the [`super::Tuner`]) and annealing's pilot and SMC passes
//! (`ais`). A step size follows the acceptance of the moves made with it
//! ([`StepAdapter`]) by one of two rules, chosen by what the moves target:
//! [`DualAveraging`] where the target stays the same (warm-up: the step
//! converges and its average is kept), [`Tracking`] where it moves
//! (annealing: each update sees a new temperature, so the step follows it
//! with a fixed gain and nothing is averaged). Kernels that choose their
//! own step at every move (AutoStep) get a base step from the steps they
//! chose ([`ChosenSteps`]) in both places.

use super::{ChainState, ChainStep, Kernel, StepSizes, Tuning};
use crate::energy::Energy;
use crate::rng::ChainRng;

/// A rule that sets a step size from the acceptance of the moves made
/// with the current one.
///
/// ```
/// use boltz::kernels::{DualAveraging, StepAdapter, Tracking};
/// // Acceptance above the target: both rules lengthen the step.
/// let mut da = DualAveraging::new(0.1, 0.65);
/// assert!(da.update(0.95) > 0.1);
/// let mut tr = Tracking::new(0.1, 0.65, 1.5);
/// assert!(tr.update(0.95) > 0.1);
/// assert_eq!(tr.final_step_size(), tr.step_size());
/// ```
pub trait StepAdapter {
    /// Feeds the acceptance probability of the moves made with the current
    /// step (a mean over chains or over moves; non-finite counts as 0 in
    /// dual averaging); returns the next step size.
    fn update(&mut self, accept_stat: f64) -> f64;
    /// The step size to keep when adaptation stops.
    fn final_step_size(&self) -> f64;
}

/// Nesterov dual averaging of `log(step_size)` towards a target acceptance
/// rate (Hoffman & Gelman 2014, section 3.2; the constants of Stan).
///
/// Warm-up runs one per chain, fed that chain's acceptance probability
/// (the default, as Stan and nutpie do), or one for all chains fed their
/// mean (`Adaptation::shared_step`: less noise, one step for the batch).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DualAveraging {
    pub(super) target: f64,
    pub(super) mu: f64,
    pub(super) log_step: f64,
    pub(super) log_step_bar: f64,
    pub(super) h_bar: f64,
    pub(super) t: f64,
}

pub(super) const GAMMA: f64 = 0.05;
const T0: f64 = 10.0;
const KAPPA: f64 = 0.75;

impl DualAveraging {
    /// Starts from `step_size`, aiming at `target` acceptance.
    pub fn new(step_size: f64, target: f64) -> Self {
        DualAveraging {
            target,
            mu: (10.0 * step_size).ln(),
            log_step: step_size.ln(),
            log_step_bar: 0.0,
            h_bar: 0.0,
            t: 0.0,
        }
    }

    /// The current (not averaged) step size.
    pub fn step_size(&self) -> f64 {
        self.log_step.exp()
    }
}

impl StepAdapter for DualAveraging {
    fn update(&mut self, accept_stat: f64) -> f64 {
        self.t += 1.0;
        let eta = 1.0 / (self.t + T0);
        let stat = if accept_stat.is_finite() {
            accept_stat
        } else {
            0.0
        };
        self.h_bar = (1.0 - eta) * self.h_bar + eta * (self.target - stat);
        self.log_step = self.mu - self.t.sqrt() / GAMMA * self.h_bar;
        let w = self.t.powf(-KAPPA);
        self.log_step_bar = w * self.log_step + (1.0 - w) * self.log_step_bar;
        self.log_step = self.log_step.clamp(-700.0, 700.0);
        self.log_step.exp()
    }

    fn final_step_size(&self) -> f64 {
        if self.t == 0.0 {
            self.log_step.exp()
        } else {
            self.log_step_bar.clamp(-700.0, 700.0).exp()
        }
    }
}

/// Multiplicative step tracking for a target that moves between updates
/// (annealing: one update per temperature; negatives: one per call while
/// the model trains): `step *= exp(gain (accept - target))`, the factor
/// within `[1 / max_factor, max_factor]` (no bound unless
/// [`Tracking::with_max_factor`]) and the step within `[1e-12, 1e6]`.
/// There is no averaging (an average over past targets would lag behind
/// them), so the final step is the current one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tracking {
    step: f64,
    target: f64,
    gain: f64,
    max_factor: f64,
}

impl Tracking {
    /// From `step`, aiming at `target` acceptance with `gain` (the log
    /// step moves by `gain` per unit of acceptance error).
    pub fn new(step: f64, target: f64, gain: f64) -> Self {
        Tracking {
            step,
            target,
            gain,
            max_factor: f64::INFINITY,
        }
    }

    /// At most a factor `max` (>= 1) up or down per update.
    pub fn with_max_factor(self, max: f64) -> Self {
        Tracking {
            max_factor: max,
            ..self
        }
    }

    /// The current step size.
    pub fn step_size(&self) -> f64 {
        self.step
    }
}

impl StepAdapter for Tracking {
    fn update(&mut self, accept_stat: f64) -> f64 {
        let factor = (self.gain * (accept_stat - self.target))
            .exp()
            .clamp(1.0 / self.max_factor, self.max_factor);
        self.step = (self.step * factor).clamp(1e-12, 1e6);
        self.step
    }

    fn final_step_size(&self) -> f64 {
        self.step
    }
}

/// The steps a kernel that chooses its own ([`Kernel::chooses_step`])
/// took: the sum of their logs and their count, for a base step at
/// their geometric mean (warm-up per round, annealing per temperature).
/// Serialised as `[sum, count]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChosenSteps(pub f64, pub u64);

impl ChosenSteps {
    /// Adds the step `step` chose, if it chose one.
    pub fn add(&mut self, step: &ChainStep) {
        if let Some(l) = step.log_selected_step() {
            self.0 += l;
            self.1 += 1;
        }
    }

    /// Both tallies together (`self`'s steps first).
    pub fn merge(self, other: ChosenSteps) -> ChosenSteps {
        ChosenSteps(self.0 + other.0, self.1 + other.1)
    }

    /// Every step of `steps` that chose one.
    pub fn of(steps: &[ChainStep]) -> ChosenSteps {
        let mut c = ChosenSteps::default();
        steps.iter().for_each(|s| c.add(s));
        c
    }

    /// The geometric mean of the steps, `None` if none was chosen.
    pub fn geometric_mean(&self) -> Option<f64> {
        (self.1 > 0).then(|| (self.0 / self.1 as f64).exp())
    }
}

pub(super) fn start_dual(eps: Vec<f64>, target: f64, shared: bool) -> Vec<DualAveraging> {
    if shared {
        vec![DualAveraging::new(
            StepSizes::per_chain(eps).median(),
            target,
        )]
    } else {
        eps.iter().map(|e| DualAveraging::new(*e, target)).collect()
    }
}

/// For each chain, doubles or halves its step size until one trial step's
/// acceptance probability crosses `target` (at most 30 trials; each trial
/// starts from the same state with copies of the streams, so it moves
/// nothing). `energy` is the target itself: the trials step on it as the
/// chains move under `tuning` (whitened by its dense mass, if any).
/// Returns the per-chain steps, also set in `tuning`.
pub(super) fn initial_step_sizes(
    kernel: &dyn Kernel,
    energy: &dyn Energy,
    state: &ChainState,
    rngs: &[ChainRng],
    target: f64,
    tuning: &mut Tuning,
) -> Vec<f64> {
    // the metric cloned: the trials write the step sizes into `tuning`
    let dense = tuning.dense().cloned();
    let moved = super::Moved::new(energy, dense.as_ref());
    let energy = moved.energy();
    let n = state.n_chains();
    let mut steps = vec![ChainStep::default(); n];
    let mut trial = |tuning: &mut Tuning, eps: &[f64]| -> Vec<f64> {
        tuning.set_step_size(StepSizes::per_chain(eps.to_vec()));
        let mut s = state.clone();
        let mut r = rngs.to_vec();
        kernel.step(energy, tuning, &mut s, &mut r, &mut steps);
        steps.iter().map(|s| s.accept_prob).collect()
    };
    let mut eps = tuning.step_size().expand(n);
    let up: Vec<bool> = trial(tuning, &eps).iter().map(|a| *a > target).collect();
    let mut done = vec![false; n];
    for _ in 0..30 {
        let next: Vec<f64> = (0..n)
            .map(|i| match (done[i], up[i]) {
                (true, _) => eps[i],
                (false, true) => eps[i] * 2.0,
                (false, false) => eps[i] / 2.0,
            })
            .collect();
        let acc = trial(tuning, &next);
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
    tuning.set_step_size(StepSizes::per_chain(eps.clone()));
    eps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_moves_the_log_step_by_gain_times_the_error_within_its_bounds() {
        let mut t = Tracking::new(0.5, 0.6, 2.0);
        let s = t.update(0.8);
        assert!((s.ln() - (0.5f64.ln() + 2.0 * 0.2)).abs() < 1e-12);
        // At most a factor 2 per update, whatever the error.
        let mut t = Tracking::new(0.5, 0.6, 10.0).with_max_factor(2.0);
        assert_eq!(t.update(1.0), 1.0);
        assert_eq!(t.update(0.0), 0.5);
        // The step never leaves [1e-12, 1e6].
        let mut t = Tracking::new(1e-12, 0.9, 100.0);
        assert_eq!(t.update(0.0), 1e-12);
    }

    #[test]
    fn chosen_steps_give_the_geometric_mean_of_the_steps_chosen() {
        let steps = [
            ChainStep::default().with_selected_step(0.1),
            ChainStep::default(),
            ChainStep::default().with_selected_step(0.4),
        ];
        let c = ChosenSteps::of(&steps);
        assert_eq!(c.1, 2);
        assert!((c.geometric_mean().unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(ChosenSteps::default().geometric_mean(), None);
        let both = c.merge(ChosenSteps::of(&steps[..1]));
        assert_eq!(both.1, 3);
    }
}
