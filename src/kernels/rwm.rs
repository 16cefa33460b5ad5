//! Random-walk Metropolis.

use super::{
    ChainState, ChainStep, Kernel, KernelInfo, KernelSpec, Tuning, evaluate_proposals,
    for_each_block, metropolis,
};
use crate::energy::Energy;
use crate::error::{Result, check_positive};
use crate::rng::{ChainRng, fill_standard_normal};

/// Random-walk Metropolis: `y' = y + s sqrt(W) xi`, `xi ~ N(0, I)`,
/// accepted with probability `min(1, exp(E(y) - E(y')))`. `s` is the
/// proposal's standard deviation (times `sqrt(W_j)` with a diagonal
/// preconditioner `W`). Usual target acceptance 0.234 (Roberts, Gelman &
/// Gilks 1997). Uses no gradient.
#[derive(Clone, Debug)]
pub struct Rwm {
    step_size: f64,
    target: f64,
}

/// RWM's registry entry.
pub(crate) const INFO: KernelInfo = KernelInfo {
    name: "rwm",
    about: "Gaussian random-walk Metropolis, optional diagonal preconditioner",
    space: crate::energy::StateSpace::Continuous,
    settings: &["step_size", "target_accept"],
    invariance: super::Invariance::Exact,
    test_settings: |scale, dim| super::KernelSettings {
        step_size: Some(2.38 * scale / (dim as f64).sqrt()),
        ..Default::default()
    },
    build: |s: &KernelSpec| {
        let mut k = Rwm::new(s.step_or(0.1))?;
        if let Some(t) = s.settings.target_accept {
            k.target = super::check_target_accept(t)?;
        }
        Ok(Box::new(k))
    },
};

impl Rwm {
    /// RWM with proposal standard deviation `step_size` (> 0).
    pub fn new(step_size: f64) -> Result<Self> {
        check_positive("step_size", step_size)?;
        Ok(Rwm {
            step_size,
            target: 0.234,
        })
    }
}

impl Kernel for Rwm {
    fn name(&self) -> &'static str {
        "rwm"
    }

    fn step(
        &self,
        energy: &dyn Energy,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                let s = tuning.step_size().get(b.first + i);
                let w = tuning.inv_mass(b.first + i);
                let rng = &mut b.rngs[i];
                let mut p = b.proposal.row_mut(i);
                let p = p.as_slice_mut().expect("standard layout");
                fill_standard_normal(rng, p);
                let y = b.position.row(i);
                for (j, pj) in p.iter_mut().enumerate() {
                    let sj = w.map_or(s, |w| s * w[j].sqrt());
                    *pj = y[j] + sj * *pj;
                }
            }
        });
        evaluate_proposals(energy, state, false);
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                let finite = b.proposal_finite(i, false);
                let log_alpha = b.energy[i] - b.proposal_energy[i];
                if metropolis(log_alpha, finite, &mut b.rngs[i], &mut b.steps[i]) {
                    b.position.row_mut(i).assign(&b.proposal.row(i));
                    b.energy[i] = b.proposal_energy[i];
                }
            }
        });
    }

    fn initial_tuning(&self) -> Tuning {
        Tuning::new(self.step_size)
    }
    fn uses_mass(&self) -> bool {
        true
    }
    fn proposal_is_last_eval(&self) -> bool {
        true
    }
    fn target_accept(&self) -> Option<f64> {
        Some(self.target)
    }
    fn grad_evals_per_step(&self) -> usize {
        0
    }
}
