//! Hamiltonian Monte Carlo with a leapfrog integrator.

use super::{
    ChainState, ChainStep, Kernel, KernelInfo, KernelSpec, Tuning, evaluate_proposals,
    for_each_block, for_each_chain_row, metropolis, weighted_sq,
};
use crate::energy::{Energy, Leapfrog, LeapfrogPath, LeapfrogStart, RowEnergy, max_segment_steps};
pub(super) use crate::energy::{kick, kick_drift};
use crate::error::{Error, Result, check_positive};
use crate::rng::{ChainRng, fill_standard_normal};
use ndarray::{ArrayView1, Axis};
use rand::RngExt;

/// Energy error above which a trajectory counts as divergent.
pub const DIVERGENCE_THRESHOLD: f64 = 1000.0;

/// HMC: momentum `p ~ N(0, M)` with diagonal mass `M = diag(1 / W)`,
/// `n_steps` leapfrog steps of size `eps` on `H(y, p) = E(y) + p^T W p / 2`,
/// accepted with probability `min(1, exp(H_0 - H_1))`. With `jitter = j > 0`
/// each chain's step size is drawn uniformly from `eps (1 +- j)` every
/// transition (it breaks periodic trajectories; all chains still move
/// together, one batched gradient call per leapfrog step). Usual target
/// acceptance 0.8 (within 0.65 - 0.8, as Stan and BlackJAX use).
#[derive(Clone, Debug)]
pub struct Hmc {
    step_size: f64,
    n_steps: usize,
    jitter: f64,
    target: f64,
}

/// HMC's registry entry.
pub(crate) const INFO: KernelInfo = KernelInfo {
    name: "hmc",
    about: "Hamiltonian Monte Carlo: leapfrog, diagonal mass, step jitter",
    space: crate::energy::StateSpace::Continuous,
    settings: &["step_size", "target_accept", "leapfrog", "jitter"],
    invariance: super::Invariance::Exact,
    test_settings: |scale, dim| super::KernelSettings {
        step_size: Some(0.5 * scale / (dim as f64).powf(0.25)),
        leapfrog: 5,
        jitter: Some(0.2),
        ..Default::default()
    },
    build: |s: &KernelSpec| {
        let jitter = s.settings.jitter_or(super::KernelSettings::DEFAULT_JITTER);
        let k = Hmc::new(s.step_or(0.1), s.settings.leapfrog, jitter)?;
        Ok(Box::new(match s.settings.target_accept {
            Some(t) => k.with_target_accept(t)?,
            None => k,
        }))
    },
};

/// Checks a step-size jitter: in [0, 1) (the kernel and
/// [`super::KernelSettings::check`] share it).
pub(crate) fn check_jitter(jitter: f64) -> Result<()> {
    if (0.0..1.0).contains(&jitter) {
        Ok(())
    } else {
        Err(Error::param(
            "jitter",
            format!("must be in [0, 1), got {jitter}"),
        ))
    }
}

impl Hmc {
    /// HMC with leapfrog step `step_size` (> 0), `n_steps` (>= 1) steps per
    /// transition, and step-size `jitter` in [0, 1).
    pub fn new(step_size: f64, n_steps: usize, jitter: f64) -> Result<Self> {
        const MAX_LEAPFROG: usize = 1 << 16;
        check_positive("step_size", step_size)?;
        if n_steps == 0 {
            return Err(Error::param(
                "n_steps",
                "HMC needs at least one leapfrog step",
            ));
        }
        crate::budget::at_most(
            "leapfrog",
            n_steps,
            MAX_LEAPFROG,
            "a transition runs all its leapfrog steps before a stop request is seen",
        )?;
        check_jitter(jitter)?;
        Ok(Hmc {
            step_size,
            n_steps,
            jitter,
            target: 0.8,
        })
    }

    /// Changes the acceptance rate that step-size adaptation aims for (0, 1).
    pub fn with_target_accept(mut self, target: f64) -> Result<Self> {
        self.target = super::check_target_accept(target)?;
        Ok(self)
    }

    /// Leapfrog steps per transition.
    pub fn n_steps(&self) -> usize {
        self.n_steps
    }
}

impl Kernel for Hmc {
    fn name(&self) -> &'static str {
        "hmc"
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
        let jitter = self.jitter;
        // Momenta, per-chain step sizes (aux column 0) and the initial
        // Hamiltonian (aux column 1).
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                let eps0 = tuning.step_size().get(b.first + i);
                let w = tuning.inv_mass(b.first + i);
                let mut p = b.momentum.row_mut(i);
                let p = p.as_slice_mut().expect("standard layout");
                b.aux[[i, 0]] = draw_momentum(&mut b.rngs[i], p, w, eps0, jitter);
                b.aux[[i, 1]] = b.energy[i] + 0.5 * weighted_sq(b.momentum.row(i), w);
                b.proposal.row_mut(i).assign(&b.position.row(i));
                b.proposal_grad.row_mut(i).assign(&b.grad.row(i));
            }
        });
        match energy.as_leapfrog() {
            Some(lf) => trajectory_segment(lf, state, tuning, self.n_steps),
            None => trajectory_by_step(energy, tuning, state, rngs, steps, self.n_steps),
        }
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                let finite = b.proposal_finite(i, true);
                let h1 = b.proposal_energy[i]
                    + 0.5 * weighted_sq(b.momentum.row(i), tuning.inv_mass(b.first + i));
                let (log_alpha, ok) = log_alpha_of(b.aux[[i, 1]], h1, finite);
                if metropolis(log_alpha, ok, &mut b.rngs[i], &mut b.steps[i]) {
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
        self.n_steps
    }
}

impl Hmc {
    /// The whole trajectory chain by chain for energies written row by row:
    /// momentum, leapfrog steps and the Metropolis decision while the
    /// chain's rows stay in L1 cache, in one parallel pass instead of
    /// `2 n_steps + 2`. Same draws and arithmetic in the same order as the
    /// batched path, so results are identical.
    fn step_rows(
        &self,
        energy: &dyn RowEnergy,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        let jitter = self.jitter;
        for_each_chain_row(state, rngs, steps, |mut c| {
            let w = tuning.inv_mass(c.index);
            let p = &mut *c.scratch;
            let e = draw_momentum(c.rng, p, w, tuning.step_size().get(c.index), jitter);
            let h0 = *c.energy + 0.5 * weighted_sq(ArrayView1::from(&*p), w);
            c.proposal.copy_from_slice(c.position);
            c.proposal_grad.copy_from_slice(c.grad);
            let (yp, gp) = (&mut *c.proposal, &mut *c.proposal_grad);
            let mut ep = *c.energy;
            for _ in 0..self.n_steps {
                kick_drift(p, yp, gp, e, w);
                ep = energy.energy_grad(yp, gp);
                kick(p, gp, e);
            }
            *c.proposal_energy = ep;
            let finite = ep.is_finite() && gp.iter().all(|v| v.is_finite());
            let h1 = ep + 0.5 * weighted_sq(ArrayView1::from(&*p), w);
            let (log_alpha, ok) = log_alpha_of(h0, h1, finite);
            if metropolis(log_alpha, ok, c.rng, c.step) {
                c.accept();
            }
        });
    }
}

/// Draws one chain's momentum `p ~ N(0, M)` (M = W^-1) and its jittered
/// step `eps0 (1 + jitter u)`, `u ~ U(-1, 1)`; returns the step.
#[inline]
pub(super) fn draw_momentum(
    rng: &mut ChainRng,
    p: &mut [f64],
    w: Option<&[f64]>,
    eps0: f64,
    jitter: f64,
) -> f64 {
    fill_standard_normal(rng, p);
    if let Some(w) = w {
        for (pj, wj) in p.iter_mut().zip(w) {
            *pj /= wj.sqrt();
        }
    }
    if jitter > 0.0 {
        eps0 * (1.0 + jitter * (2.0 * rng.random::<f64>() - 1.0))
    } else {
        eps0
    }
}

/// The whole trajectory of every chain, one batch evaluation per leapfrog
/// step (step sizes from the momentum pass, aux column 0).
fn trajectory_by_step(
    energy: &dyn Energy,
    tuning: &Tuning,
    state: &mut ChainState,
    rngs: &mut [ChainRng],
    steps: &mut [ChainStep],
    n_steps: usize,
) {
    for _ in 0..n_steps {
        // Half kick and drift.
        for_each_block(state, rngs, steps, |mut b| {
            let d = b.position.ncols();
            let p = b.momentum.as_slice_mut().expect("standard layout");
            let yp = b.proposal.as_slice_mut().expect("standard layout");
            let gp = b.proposal_grad.as_slice().expect("standard layout");
            for i in 0..b.rngs.len() {
                let r = i * d..(i + 1) * d;
                kick_drift(
                    &mut p[r.clone()],
                    &mut yp[r.clone()],
                    &gp[r],
                    b.aux[[i, 0]],
                    tuning.inv_mass(b.first + i),
                );
            }
        });
        evaluate_proposals(energy, state, true);
        // Half kick.
        for_each_block(state, rngs, steps, |mut b| {
            let d = b.position.ncols();
            let p = b.momentum.as_slice_mut().expect("standard layout");
            let gp = b.proposal_grad.as_slice().expect("standard layout");
            for i in 0..b.rngs.len() {
                let r = i * d..(i + 1) * d;
                kick(&mut p[r.clone()], &gp[r], b.aux[[i, 0]]);
            }
        });
    }
}

/// The whole trajectory of every chain through the energy's own
/// integrator (step sizes from the momentum pass, aux column 0): one call,
/// or several within the path's memory bound, each from the last one's
/// end; the last state becomes the proposal, as `n_steps` evaluations
/// would leave it.
fn trajectory_segment(lf: &dyn Leapfrog, state: &mut ChainState, tuning: &Tuning, n_steps: usize) {
    let (n, d) = (state.n_chains(), state.dim());
    let inv_mass = tuning.inv_mass_rows(n, d);
    let eps = state.aux.column(0).to_owned();
    // HMC evaluates every step of a trajectory, as one call per step does.
    let h_max = ndarray::Array1::from_elem(n, f64::INFINITY);
    let mut path = LeapfrogPath::default();
    let mut left = n_steps;
    while left > 0 {
        let k = left.min(max_segment_steps(n, d));
        path.reshape(k, n, d);
        lf.leapfrog(
            LeapfrogStart {
                y: state.proposal.view(),
                p: state.momentum.view(),
                g: state.proposal_grad.view(),
                eps: eps.view(),
                inv_mass: inv_mass.view(),
                h_max: h_max.view(),
            },
            &mut path,
        );
        let last = k - 1;
        state.proposal.assign(&path.y.index_axis(Axis(0), last));
        state.momentum.assign(&path.p.index_axis(Axis(0), last));
        state
            .proposal_grad
            .assign(&path.g.index_axis(Axis(0), last));
        state.proposal_energy.assign(&path.e.row(last));
        left -= k;
    }
}

/// `(log alpha, valid)` from the Hamiltonians before and after: a
/// non-finite proposal, a NaN or an energy error above
/// [`DIVERGENCE_THRESHOLD`] is a divergence (NaN, not valid).
#[inline]
fn log_alpha_of(h0: f64, h1: f64, finite: bool) -> (f64, bool) {
    let error = h1 - h0;
    let diverged = !finite || error.is_nan() || error >= DIVERGENCE_THRESHOLD;
    if diverged {
        (f64::NAN, false)
    } else {
        (h0 - h1, true)
    }
}
