//! Metropolis-adjusted Langevin (MALA).

use super::{
    ChainRow, ChainState, ChainStep, Kernel, KernelInfo, KernelSpec, Tuning, evaluate_proposals,
    for_each_block, for_each_chain_row, metropolis,
};
use crate::energy::{Energy, RowEnergy, sum_lanes1, sum_lanes3, sum_lanes4};
use crate::error::{Result, check_positive};
use crate::rng::{ChainRng, fill_standard_normal};

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
    step_size: f64,
    target: f64,
}

/// MALA's registry entry.
pub(crate) const INFO: KernelInfo = KernelInfo {
    name: "mala",
    about: "Metropolis-adjusted Langevin, optional diagonal preconditioner",
    space: crate::energy::StateSpace::Continuous,
    settings: &["step_size", "target_accept"],
    invariance: super::Invariance::Exact,
    test_settings: |scale, dim| super::KernelSettings {
        step_size: Some(scale * scale / (dim as f64).powf(1.0 / 3.0)),
        ..Default::default()
    },
    build: |s: &KernelSpec| {
        let k = Mala::new(s.step_or(0.1))?;
        Ok(Box::new(match s.settings.target_accept {
            Some(t) => k.with_target_accept(t)?,
            None => k,
        }))
    },
};

impl Mala {
    /// MALA with time step `step_size` (> 0).
    pub fn new(step_size: f64) -> Result<Self> {
        check_positive("step_size", step_size)?;
        Ok(Mala {
            step_size,
            target: 0.574,
        })
    }

    /// Changes the acceptance rate that step-size adaptation aims for (0, 1);
    /// higher targets give smaller steps, which narrow regions (a funnel's
    /// neck) need.
    pub fn with_target_accept(mut self, target: f64) -> Result<Self> {
        self.target = super::check_target_accept(target)?;
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
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        if let Some(row) = energy.as_row() {
            return self.step_rows(row, tuning, state, rngs, steps);
        }
        let d = state.dim();
        for_each_block(state, rngs, steps, |mut b| {
            let pos = b.position.as_slice().expect("standard layout");
            let grad = b.grad.as_slice().expect("standard layout");
            let noise = b.momentum.as_slice_mut().expect("standard layout");
            let prop = b.proposal.as_slice_mut().expect("standard layout");
            for i in 0..b.rngs.len() {
                let eps = tuning.step_size().get(b.first + i);
                let r = i * d..(i + 1) * d;
                fill_standard_normal(&mut b.rngs[i], &mut noise[r.clone()]);
                propose(
                    eps,
                    tuning.inv_mass(b.first + i),
                    &pos[r.clone()],
                    &grad[r.clone()],
                    &noise[r.clone()],
                    &mut prop[r],
                );
            }
        });
        evaluate_proposals(energy, state, true);
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                let eps = tuning.step_size().get(b.first + i);
                let finite = b.proposal_finite(i, true);
                let mut log_alpha = f64::NAN;
                if finite {
                    let r = i * d..(i + 1) * d;
                    log_alpha = log_alpha_of(
                        eps,
                        tuning.inv_mass(b.first + i),
                        b.energy[i] - b.proposal_energy[i],
                        &b.position.as_slice().expect("standard layout")[r.clone()],
                        &b.proposal.as_slice().expect("standard layout")[r.clone()],
                        &b.proposal_grad.as_slice().expect("standard layout")[r.clone()],
                        &b.momentum.as_slice().expect("standard layout")[r],
                    );
                }
                if metropolis(log_alpha, finite, &mut b.rngs[i], &mut b.steps[i]) {
                    b.accept(i);
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
        1
    }
}

/// `out = y - eps W g + sqrt(2 eps W) xi`.
#[inline(always)]
fn propose(eps: f64, w: Option<&[f64]>, y: &[f64], g: &[f64], xi: &[f64], out: &mut [f64]) {
    match w {
        None => {
            let s = (2.0 * eps).sqrt();
            for j in 0..y.len() {
                out[j] = y[j] - eps * g[j] + s * xi[j];
            }
        }
        Some(w) => {
            for j in 0..y.len() {
                out[j] = y[j] - eps * w[j] * g[j] + (2.0 * eps * w[j]).sqrt() * xi[j];
            }
        }
    }
}

/// `log alpha = E(y) - E(y') - log q(y'|y) + log q(y|y')` with
/// `log q(y'|y) = -|xi|^2 / 2` (up to the shared constant) and the reverse
/// move's residual `y - y' + eps W grad E(y')`.
#[inline(always)]
fn log_alpha_of(
    eps: f64,
    w: Option<&[f64]>,
    energy_drop: f64,
    y: &[f64],
    yp: &[f64],
    gp: &[f64],
    xi: &[f64],
) -> f64 {
    let fwd = 0.5 * sum_lanes1(xi, |x| x * x);
    let rev = match w {
        None => {
            sum_lanes3(y, yp, gp, |y, yp, gp| {
                let r = y - yp + eps * gp;
                r * r
            }) / (4.0 * eps)
        }
        Some(w) => {
            sum_lanes4(y, yp, gp, w, |y, yp, gp, w| {
                let r = y - yp + eps * w * gp;
                r * r / w
            }) / (4.0 * eps)
        }
    };
    energy_drop - rev + fwd
}

impl Mala {
    /// The whole step chain by chain for energies written row by row:
    /// noise, proposal, energy and gradient, and the Metropolis decision
    /// while the chain's rows are in L1 cache, in one parallel pass instead
    /// of three. Same arithmetic and random draws in the same order as the
    /// batched path, so results are identical.
    fn step_rows(
        &self,
        energy: &dyn RowEnergy,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        for_each_chain_row(state, rngs, steps, |c| {
            mala_row(energy, tuning, tuning.inv_mass(c.index), c)
        });
    }
}

/// One chain's MALA step on a row energy: noise, proposal, energy and
/// gradient, the Metropolis decision. Element-wise arithmetic and sums in
/// fixed lanes, so the AVX-512 and AVX2 copies (wider vectors for the
/// same operations) give the same bits as the baseline.
#[inline(always)]
fn mala_row_body(energy: &dyn RowEnergy, tuning: &Tuning, w: Option<&[f64]>, mut c: ChainRow<'_>) {
    let eps = tuning.step_size().get(c.index);
    fill_standard_normal(c.rng, c.scratch);
    propose(eps, w, c.position, c.grad, c.scratch, c.proposal);
    let ep = energy.energy_grad(c.proposal, c.proposal_grad);
    *c.proposal_energy = ep;
    // g * 0 is NaN exactly for non-finite g: one vectorised probe.
    let finite = ep.is_finite() && sum_lanes1(c.proposal_grad, |v| v * 0.0) == 0.0;
    let log_alpha = if finite {
        let drop = *c.energy - ep;
        log_alpha_of(
            eps,
            w,
            drop,
            c.position,
            c.proposal,
            c.proposal_grad,
            c.scratch,
        )
    } else {
        f64::NAN
    };
    if metropolis(log_alpha, finite, c.rng, c.step) {
        c.accept();
    }
}

crate::simd::simd_dispatch! {
    /// [`mala_row_body`] at the CPU's SIMD level.
    fn mala_row(energy: &dyn RowEnergy, tuning: &Tuning, w: Option<&[f64]>, c: ChainRow<'_>) = mala_row_body;
}
