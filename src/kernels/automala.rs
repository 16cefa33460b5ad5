//! autoMALA: MALA with a step size chosen at every step from the current
//! state (Biron-Lattes, Surjanovic, Syed, Campbell and Bouchard-Cote,
//! "autoMALA: locally adaptive Metropolis-adjusted Langevin algorithm",
//! AISTATS 2024, arXiv 2310.16782).
//!
//! MALA is one leapfrog step of HMC with a fresh momentum. autoMALA draws
//! the momentum `p ~ N(0, M)` and an acceptance bracket `a < b` (the order
//! statistics of two uniforms), then picks the step `eps0 2^j` by doubling
//! or halving the base step `eps0` until the one-step acceptance ratio
//! `exp(H(y, p) - H(y', p'))` falls inside `(a, b)`: while it is above `b`
//! the step doubles (the last doubling that stays above `b` is kept), while
//! it is below `a` it halves (the first halving above `a` is kept), `|j|`
//! at most [`AutoMala::MAX_DOUBLINGS`]. The leapfrog step from `(y, p)` with
//! that step, momentum flipped, is an involution; the move is accepted only
//! if the selector run from the proposal `(y', -p')` picks the same `j`
//! (otherwise the map would not be reversible), and then with probability
//! `min(1, exp(H(y, p) - H(y', p')))`. The target is invariant exactly,
//! whatever the base step: in a funnel's neck the step shrinks, in its
//! mouth it grows, one chain at a time.
//!
//! Every round of the selector evaluates the energy of the whole batch (a
//! chain that has chosen is evaluated again at its own position, so that
//! energies with one context per chain see all their rows); the gradient
//! evaluations of a step are `rounds forward + 1 + rounds backward`,
//! reported through [`ChainStep::extra_grad_evals`] beyond the nominal 3.

use super::{ChainState, ChainStep, Kernel, KernelInfo, KernelSpec, Tuning, metropolis};
use crate::energy::Energy;
use crate::error::{Result, check_positive};
use crate::rng::{ChainRng, fill_standard_normal};
use ndarray::{Array1, Array2, ArrayView2};
use rand::RngExt;

/// autoMALA's registry entry.
pub(crate) const INFO: KernelInfo = KernelInfo {
    name: "automala",
    about: "autoMALA: MALA whose step doubles or halves per step until the acceptance ratio is in a random bracket (exact, locally adaptive)",
    space: crate::energy::StateSpace::Continuous,
    build: |s: &KernelSpec| Ok(Box::new(AutoMala::new(s.step_or(0.1))?)),
};

/// autoMALA with base step `eps0` (the leapfrog step of one-step HMC; the
/// MALA time step is `eps0^2 / 2`) and an optional diagonal mass.
///
/// Warm-up adapts the diagonal mass, not the base step: the selector
/// corrects the step at every step, and an acceptance target would only
/// drive the base step away (each doubling or halving from it costs a
/// gradient evaluation). Give a base step near the target's typical scale
/// (`--step-size`) to spend fewer.
#[derive(Clone, Debug)]
pub struct AutoMala {
    step_size: f64,
}

impl AutoMala {
    /// Most doublings or halvings of the base step per step (`2^±20`).
    pub const MAX_DOUBLINGS: i32 = 20;

    /// autoMALA with base leapfrog step `step_size` (> 0).
    pub fn new(step_size: f64) -> Result<Self> {
        check_positive("step_size", step_size)?;
        Ok(AutoMala { step_size })
    }
}

/// Kinetic energy `0.5 sum_j w_j p_j^2` (`w` the inverse mass).
fn kinetic(p: &[f64], w: Option<&[f64]>) -> f64 {
    match w {
        None => 0.5 * p.iter().map(|v| v * v).sum::<f64>(),
        Some(w) => 0.5 * p.iter().zip(w).map(|(v, w)| w * v * v).sum::<f64>(),
    }
}

/// One leapfrog step of `eps` from `(y, p)` with gradient `g`: the new
/// position into `out` and the half-step momentum into `half`.
fn drift(
    eps: f64,
    w: Option<&[f64]>,
    y: &[f64],
    p: &[f64],
    g: &[f64],
    out: &mut [f64],
    half: &mut [f64],
) {
    for j in 0..y.len() {
        half[j] = p[j] - 0.5 * eps * g[j];
        out[j] = y[j] + eps * w.map_or(1.0, |w| w[j]) * half[j];
    }
}

/// Where the selector starts: positions, their energies and gradients, and
/// momenta (one row per chain).
struct From<'a> {
    y: ArrayView2<'a, f64>,
    e: &'a Array1<f64>,
    g: ArrayView2<'a, f64>,
    p: ArrayView2<'a, f64>,
}

/// Scratch rows the selector evaluates.
struct Scratch {
    trial: Array2<f64>,
    trial_e: Array1<f64>,
    trial_g: Array2<f64>,
    half: Array2<f64>,
}

/// The exponent `j` each chain's step `eps0 2^j` takes from `from`, for
/// brackets `(log a, log b)`; returns the exponents and the rounds (batch
/// energy evaluations) it took.
fn select(
    energy: &dyn Energy,
    w: Option<&[f64]>,
    eps0: &[f64],
    bracket: &[(f64, f64)],
    from: &From<'_>,
    s: &mut Scratch,
) -> (Vec<i32>, u32) {
    let n = from.y.nrows();
    let mut j = vec![0i32; n];
    let mut dir = vec![0i32; n];
    let mut done = vec![false; n];
    let mut rounds = 0u32;
    let h0: Vec<f64> = (0..n)
        .map(|i| from.e[i] + kinetic(from.p.row(i).as_slice().unwrap_or(&[]), w))
        .collect();
    while done.iter().any(|d| !d) {
        for i in 0..n {
            let y = from.y.row(i);
            let (y, p, g) = (
                y.as_slice().expect("standard layout"),
                from.p.row(i),
                from.g.row(i),
            );
            let mut out = s.trial.row_mut(i);
            let out = out.as_slice_mut().expect("standard layout");
            if done[i] {
                out.copy_from_slice(y);
                continue;
            }
            let eps = eps0[i] * 2f64.powi(j[i]);
            let mut half = s.half.row_mut(i);
            drift(
                eps,
                w,
                y,
                p.as_slice().expect("standard layout"),
                g.as_slice().expect("standard layout"),
                out,
                half.as_slice_mut().expect("standard layout"),
            );
        }
        energy.energy_grad_batch(s.trial.view(), s.trial_e.view_mut(), s.trial_g.view_mut());
        rounds += 1;
        for i in 0..n {
            if done[i] {
                continue;
            }
            let eps = eps0[i] * 2f64.powi(j[i]);
            // p' = p_half - eps/2 g(y'), H' = E(y') + K(p').
            let mut k = 0.0;
            let g1 = s.trial_g.row(i);
            let half = s.half.row(i);
            for c in 0..half.len() {
                let pc = half[c] - 0.5 * eps * g1[c];
                k += 0.5 * w.map_or(1.0, |w| w[c]) * pc * pc;
            }
            let mut ell = h0[i] - (s.trial_e[i] + k);
            if !ell.is_finite() {
                ell = f64::NEG_INFINITY;
            }
            let (la, lb) = bracket[i];
            match dir[i] {
                0 if ell > lb => {
                    dir[i] = 1;
                    j[i] += 1;
                }
                0 if ell < la => {
                    dir[i] = -1;
                    j[i] -= 1;
                }
                0 => done[i] = true,
                1 if ell <= lb => {
                    j[i] -= 1;
                    done[i] = true;
                }
                1 => j[i] += 1,
                _ if ell >= la => done[i] = true,
                _ => j[i] -= 1,
            }
            if j[i].abs() >= AutoMala::MAX_DOUBLINGS {
                j[i] = j[i].clamp(-AutoMala::MAX_DOUBLINGS, AutoMala::MAX_DOUBLINGS);
                done[i] = true;
            }
        }
    }
    (j, rounds)
}

impl Kernel for AutoMala {
    fn name(&self) -> &'static str {
        "automala"
    }

    fn step(
        &self,
        energy: &dyn Energy,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        let (n, d) = (state.n_chains(), state.dim());
        let w = tuning.inv_mass();
        let eps0: Vec<f64> = (0..n).map(|i| tuning.step_size().get(i)).collect();
        // Momentum p ~ N(0, M), M = 1 / w, and the bracket, from each chain's stream.
        let mut bracket = Vec::with_capacity(n);
        for i in 0..n {
            let mut row = state.momentum.row_mut(i);
            let p = row.as_slice_mut().expect("standard layout");
            fill_standard_normal(&mut rngs[i], p);
            if let Some(w) = w {
                for (v, w) in p.iter_mut().zip(w) {
                    *v /= w.sqrt();
                }
            }
            let (u1, u2): (f64, f64) = (rngs[i].random(), rngs[i].random());
            bracket.push((u1.min(u2).ln(), u1.max(u2).ln()));
        }
        let mut s = Scratch {
            trial: Array2::zeros((n, d)),
            trial_e: Array1::zeros(n),
            trial_g: Array2::zeros((n, d)),
            half: Array2::zeros((n, d)),
        };
        let (j, r_fwd) = select(
            energy,
            w,
            &eps0,
            &bracket,
            &From {
                y: state.position.view(),
                e: &state.energy,
                g: state.grad.view(),
                p: state.momentum.view(),
            },
            &mut s,
        );
        // The proposal: one leapfrog step of eps0 2^j.
        let mut half = Array2::zeros((n, d));
        for i in 0..n {
            let eps = eps0[i] * 2f64.powi(j[i]);
            let (y, p, g) = (
                state.position.row(i),
                state.momentum.row(i),
                state.grad.row(i),
            );
            let mut out = state.proposal.row_mut(i);
            let mut h = half.row_mut(i);
            drift(
                eps,
                w,
                y.as_slice().expect("standard layout"),
                p.as_slice().expect("standard layout"),
                g.as_slice().expect("standard layout"),
                out.as_slice_mut().expect("standard layout"),
                h.as_slice_mut().expect("standard layout"),
            );
        }
        super::evaluate_proposals(energy, state, true);
        // p' and the reversed momentum -p' the backward selector starts from.
        let mut back = Array2::zeros((n, d));
        let mut h1 = vec![f64::NAN; n];
        for i in 0..n {
            let eps = eps0[i] * 2f64.powi(j[i]);
            let mut k = 0.0;
            for c in 0..d {
                let pc = half[[i, c]] - 0.5 * eps * state.proposal_grad[[i, c]];
                back[[i, c]] = -pc;
                k += 0.5 * w.map_or(1.0, |w| w[c]) * pc * pc;
            }
            h1[i] = state.proposal_energy[i] + k;
        }
        let finite: Vec<bool> = (0..n)
            .map(|i| {
                state.proposal_energy[i].is_finite()
                    && state.proposal_grad.row(i).iter().all(|g| g.is_finite())
            })
            .collect();
        // Chains whose proposal is not finite cannot be reversed: the
        // backward selector starts them from their own position (its
        // answer is not used for them).
        let from_y = Array2::from_shape_fn((n, d), |(i, c)| {
            if finite[i] {
                state.proposal[[i, c]]
            } else {
                state.position[[i, c]]
            }
        });
        let from_g = Array2::from_shape_fn((n, d), |(i, c)| {
            if finite[i] {
                state.proposal_grad[[i, c]]
            } else {
                state.grad[[i, c]]
            }
        });
        let from_e = Array1::from_shape_fn(n, |i| {
            if finite[i] {
                state.proposal_energy[i]
            } else {
                state.energy[i]
            }
        });
        let (j_back, r_back) = select(
            energy,
            w,
            &eps0,
            &bracket,
            &From {
                y: from_y.view(),
                e: &from_e,
                g: from_g.view(),
                p: back.view(),
            },
            &mut s,
        );
        let extra = (r_fwd + 1 + r_back).saturating_sub(3);
        for i in 0..n {
            let e0 = state.energy[i] + kinetic(state.momentum.row(i).as_slice().unwrap_or(&[]), w);
            let log_alpha = if j_back[i] == j[i] {
                e0 - h1[i]
            } else {
                f64::NEG_INFINITY
            };
            let accepted = metropolis(log_alpha, finite[i], &mut rngs[i], &mut steps[i]);
            steps[i].extra_grad_evals = extra;
            if accepted {
                let (p, g) = (
                    state.proposal.row(i).to_owned(),
                    state.proposal_grad.row(i).to_owned(),
                );
                state.position.row_mut(i).assign(&p);
                state.grad.row_mut(i).assign(&g);
                state.energy[i] = state.proposal_energy[i];
            }
        }
    }

    fn initial_tuning(&self) -> Tuning {
        Tuning::new(self.step_size)
    }
    fn uses_mass(&self) -> bool {
        true
    }
    fn proposal_is_last_eval(&self) -> bool {
        // The backward selector evaluates other points after the proposal.
        false
    }
    fn target_accept(&self) -> Option<f64> {
        None
    }
    fn grad_evals_per_step(&self) -> usize {
        3
    }
}
