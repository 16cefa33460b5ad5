//! Metropolis-adjusted Langevin (MALA).

use super::{
    ChainState, ChainStep, Kernel, StepSizes, evaluate_proposals, for_each_block, metropolis,
};
use crate::energy::Energy;
use crate::error::{Result, check_positive};
use crate::rng::ChainRng;
use rand_distr::{Distribution, StandardNormal};

/// MALA with an optional diagonal preconditioner `W = M^{-1}`.
///
/// Proposal: `y' = y - eps W grad E(y) + sqrt(2 eps W) xi`, `xi ~ N(0, I)`;
/// accepted with probability
/// `min(1, exp(E(y) - E(y')) q(y | y') / q(y' | y))`, where
/// `log q(b | a) = -sum_j (b_j - a_j + eps W_j grad_j E(a))^2 / (4 eps W_j)`.
/// `eps` is the Langevin time step (BlackJAX's `step_size`). Usual target
/// acceptance 0.574 (Roberts & Rosenthal 1998).
#[derive(Clone, Debug)]
pub struct Mala {
    step_size: StepSizes,
    inv_mass: Option<Vec<f64>>,
    target: f64,
}

impl Mala {
    /// MALA with time step `step_size` (> 0).
    pub fn new(step_size: f64) -> Result<Self> {
        check_positive("step_size", step_size)?;
        Ok(Mala {
            step_size: StepSizes::uniform(step_size),
            inv_mass: None,
            target: 0.574,
        })
    }

    /// Changes the acceptance rate that step-size adaptation aims for (0, 1);
    /// higher targets give smaller steps, which narrow regions (a funnel's
    /// neck) need.
    pub fn with_target_accept(mut self, target: f64) -> Result<Self> {
        if !(target > 0.0 && target < 1.0) {
            return Err(crate::error::Error::param(
                "target_accept",
                format!("must be in (0, 1), got {target}"),
            ));
        }
        self.target = target;
        Ok(self)
    }
}

impl Kernel for Mala {
    fn name(&self) -> &'static str {
        "mala"
    }

    fn step(
        &self,
        energy: &dyn Energy,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        let w = self.inv_mass.as_deref();
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                let eps = self.step_size.get(b.first + i);
                let rng = &mut b.rngs[i];
                for j in 0..b.position.ncols() {
                    let wj = w.map_or(1.0, |w| w[j]);
                    let xi: f64 = StandardNormal.sample(rng);
                    b.momentum[[i, j]] = xi;
                    b.proposal[[i, j]] = b.position[[i, j]] - eps * wj * b.grad[[i, j]]
                        + (2.0 * eps * wj).sqrt() * xi;
                }
            }
        });
        evaluate_proposals(energy, state, true);
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                let eps = self.step_size.get(b.first + i);
                let finite = b.proposal_finite(i, true);
                let mut log_alpha = f64::NAN;
                if finite {
                    // log q(y'|y) = -|xi|^2 / 2; log q(y|y') from the reverse move.
                    let mut fwd = 0.0;
                    let mut rev = 0.0;
                    for j in 0..b.position.ncols() {
                        let wj = w.map_or(1.0, |w| w[j]);
                        let xi = b.momentum[[i, j]];
                        fwd += 0.5 * xi * xi;
                        let r = b.position[[i, j]] - b.proposal[[i, j]]
                            + eps * wj * b.proposal_grad[[i, j]];
                        rev += r * r / (4.0 * eps * wj);
                    }
                    log_alpha = b.energy[i] - b.proposal_energy[i] - rev + fwd;
                }
                if metropolis(log_alpha, finite, &mut b.rngs[i], &mut b.steps[i]) {
                    b.accept(i);
                }
            }
        });
    }

    tuned_kernel_methods!();
    fn target_accept(&self) -> Option<f64> {
        Some(self.target)
    }
    fn grad_evals_per_step(&self) -> usize {
        1
    }
}
