//! Gibbs kernels for binary states.

use super::{ChainState, ChainStep, Kernel, StepSizes};

/// Gibbs kernels have no step size; they report 1.
static NO_STEP: std::sync::LazyLock<StepSizes> =
    std::sync::LazyLock::new(|| StepSizes::uniform(1.0));
use crate::energy::{Energy, Rbm, sigmoid};
use crate::error::{Result, check_positive};
use crate::rng::ChainRng;
use ndarray::Zip;
use rand::RngExt;
use std::sync::Arc;

/// Block Gibbs on an RBM: `v -> h -> v`, every chain in one pair of matrix
/// products. At inverse temperature `beta` it samples the RBM whose
/// parameters are all multiplied by `beta` (the marginal of
/// `exp(-beta E(v, h))`), which equals `exp(-beta F(v))` only at beta = 1.
/// Every sweep is accepted; `accept_prob` is 1.
#[derive(Clone, Debug)]
pub struct RbmGibbs {
    rbm: Arc<Rbm>,
    beta: f64,
    track_energy: bool,
}

impl RbmGibbs {
    /// Block Gibbs on `rbm` at inverse temperature `beta`. With
    /// `track_energy` the free energy of each chain is recomputed after
    /// every sweep (one extra matrix product); without, `state.energy` is
    /// stale, which is faster when only states are needed.
    pub fn new(rbm: Arc<Rbm>, beta: f64, track_energy: bool) -> Result<Self> {
        check_positive("beta", beta)?;
        Ok(RbmGibbs {
            rbm,
            beta,
            track_energy,
        })
    }
}

impl Kernel for RbmGibbs {
    fn name(&self) -> &'static str {
        "gibbs"
    }
    fn step(
        &self,
        energy: &dyn Energy,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        self.rbm
            .gibbs_sweep(state.position.view_mut(), rngs, self.beta, None);
        if self.track_energy {
            energy.energy_batch(state.position.view(), state.energy.view_mut());
        }
        steps.iter_mut().for_each(|s| {
            *s = ChainStep {
                accept_prob: 1.0,
                accepted: true,
                divergent: false,
            }
        });
    }
    fn step_sizes(&self) -> &StepSizes {
        &NO_STEP
    }
    fn set_step_sizes(&mut self, _step_sizes: StepSizes) {}
    fn target_accept(&self) -> Option<f64> {
        None
    }
    fn grad_evals_per_step(&self) -> usize {
        0
    }
}

/// Single-site heat-bath Gibbs for any energy on binary states: each sweep
/// visits sites `0..d` in order and sets `y_j = 1` with probability
/// `sigmoid(E(y with y_j = 0) - E(y with y_j = 1))`, one batched energy call
/// per site for all chains. Exact for any binary energy; `d` energy calls
/// per sweep.
#[derive(Clone, Debug, Default)]
pub struct BinaryGibbs;

impl Kernel for BinaryGibbs {
    fn name(&self) -> &'static str {
        "gibbs"
    }
    fn step(
        &self,
        energy: &dyn Energy,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        state.proposal.assign(&state.position);
        for s in steps.iter_mut() {
            *s = ChainStep {
                accept_prob: 1.0,
                accepted: true,
                divergent: false,
            };
        }
        for j in 0..state.dim() {
            state.proposal.column_mut(j).mapv_inplace(|v| 1.0 - v);
            energy.energy_batch(state.proposal.view(), state.proposal_energy.view_mut());
            Zip::from(state.position.rows_mut())
                .and(state.proposal.rows_mut())
                .and(&mut state.energy)
                .and(&state.proposal_energy)
                .and(ndarray::ArrayViewMut1::from(&mut rngs[..]))
                .and(ndarray::ArrayViewMut1::from(&mut steps[..]))
                .par_for_each(|mut y, mut p, e, &pe, rng, step| {
                    let (e1, e0) = if y[j] == 1.0 { (*e, pe) } else { (pe, *e) };
                    let u: f64 = rng.random();
                    // +inf is a state of probability zero, handled by the
                    // sigmoid; NaN and -inf are divergences.
                    if pe.is_nan() || pe == f64::NEG_INFINITY {
                        step.divergent = true;
                        p[j] = y[j];
                        return;
                    }
                    let one = u < sigmoid(e0 - e1);
                    let new = if one { 1.0 } else { 0.0 };
                    if new != y[j] {
                        y[j] = new;
                        *e = pe;
                    } else {
                        p[j] = y[j];
                    }
                });
        }
    }
    fn step_sizes(&self) -> &StepSizes {
        &NO_STEP
    }
    fn set_step_sizes(&mut self, _step_sizes: StepSizes) {}
    fn target_accept(&self) -> Option<f64> {
        None
    }
    fn grad_evals_per_step(&self) -> usize {
        0
    }
}
