//! autoMALA's row path: chain by chain for energies written row by row,
//! each chain's searches taking as many rounds as it needs.

use super::super::hmc::{draw_momentum, kick, kick_drift};
use super::super::{
    ChainRow, ChainState, ChainStep, Tuning, for_each_chain_row, metropolis, weighted_sq,
};
use super::{AutoMala, advance, criterion};
use crate::energy::RowEnergy;
use crate::rng::{ChainRng, fill_standard_normal};
use rand::RngExt;

/// One chain's trajectory buffers for the row path: position, gradient,
/// momentum.
struct RowEnd {
    y: Vec<f64>,
    g: Vec<f64>,
    p: Vec<f64>,
}

impl RowEnd {
    fn new(d: usize) -> Self {
        RowEnd {
            y: vec![0.0; d],
            g: vec![0.0; d],
            p: vec![0.0; d],
        }
    }
}

/// `leapfrog` leapfrog steps of `eps` from `(y, g, p)` into the end
/// `(ey, eg, ep)` (the same arithmetic as [`trajectory`]); returns the
/// end's energy.
fn trajectory_row(
    energy: &dyn RowEnergy,
    w: Option<&[f64]>,
    eps: f64,
    leapfrog: usize,
    (y, g, e, p): (&[f64], &[f64], f64, &[f64]),
    (ey, eg, ep): (&mut [f64], &mut [f64], &mut [f64]),
) -> f64 {
    ey.copy_from_slice(y);
    eg.copy_from_slice(g);
    ep.copy_from_slice(p);
    let mut e = e;
    for _ in 0..leapfrog {
        kick_drift(ep, ey, eg, eps, w);
        e = energy.energy_grad(ey, eg);
        kick(ep, eg, eps);
    }
    e
}

/// [`select`] for one chain: the exponent and the gradient evaluations.
#[allow(clippy::too_many_arguments)]
fn select_row(
    energy: &dyn RowEnergy,
    w: Option<&[f64]>,
    eps0: f64,
    bracket: (f64, f64),
    signed: bool,
    leapfrog: usize,
    from: (&[f64], &[f64], f64, &[f64]),
    end: &mut RowEnd,
) -> (i32, u32) {
    let h0 = from.2 + 0.5 * weighted_sq(ndarray::ArrayView1::from(from.3), w);
    let (mut j, mut dir, mut done, mut evals) = (0i32, 0i32, false, 0u32);
    while !done {
        let e = trajectory_row(
            energy,
            w,
            eps0 * 2f64.powi(j),
            leapfrog,
            from,
            (&mut end.y, &mut end.g, &mut end.p),
        );
        evals += leapfrog as u32;
        let k = 0.5 * weighted_sq(ndarray::ArrayView1::from(&end.p[..]), w);
        let finite = end.g.iter().all(|g| g.is_finite());
        let ell = criterion(h0 - (e + k), finite, signed);
        advance(ell, bracket, &mut dir, &mut j, &mut done);
    }
    (j, evals)
}

/// [`select_walk`] for one chain: the exponent and the energy evaluations.
fn select_walk_row(
    energy: &dyn RowEnergy,
    w: Option<&[f64]>,
    eps0: f64,
    bracket: (f64, f64),
    signed: bool,
    (y, e, z): (&[f64], f64, &[f64]),
    trial: &mut [f64],
) -> (i32, u32) {
    let (mut j, mut dir, mut done, mut evals) = (0i32, 0i32, false, 0u32);
    while !done {
        walk_to(trial, y, z, eps0 * 2f64.powi(j), w);
        let trial_e = energy.energy(trial);
        evals += 1;
        advance(
            criterion(e - trial_e, true, signed),
            bracket,
            &mut dir,
            &mut j,
            &mut done,
        );
    }
    (j, evals)
}

/// `out = y + eps sqrt(W) z`.
fn walk_to(out: &mut [f64], y: &[f64], z: &[f64], eps: f64, w: Option<&[f64]>) {
    for c in 0..y.len() {
        out[c] = y[c] + eps * w.map_or(1.0, |w| w[c].sqrt()) * z[c];
    }
}

impl AutoMala {
    /// The whole step chain by chain for energies written row by row:
    /// each chain's searches take as many rounds as it needs (the batched
    /// path runs every chain for the slowest chain's rounds). Same draws
    /// and arithmetic as the batched path.
    pub(super) fn step_rows(
        &self,
        energy: &dyn RowEnergy,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        let lf = self.leapfrog;
        let warm = tuning.in_warmup();
        for_each_chain_row(state, rngs, steps, |mut c| {
            let mut eps0 = tuning.step_size().get(c.index);
            let w = tuning.inv_mass(c.index);
            if lf > 0 {
                eps0 = draw_momentum(c.rng, c.scratch, w, eps0, self.jitter());
            } else {
                fill_standard_normal(c.rng, c.scratch);
            }
            let (u1, u2): (f64, f64) = (c.rng.random(), c.rng.random());
            let search = Search {
                eps0,
                bracket: (u1.min(u2).ln(), u1.max(u2).ln()),
                warm,
            };
            if lf == 0 {
                walk_row_step(energy, w, &search, &mut c);
            } else {
                trajectory_row_step(energy, w, &search, lf, &mut c);
            }
        });
    }
}

/// One chain's step-size search: its base step, acceptance bracket
/// `(ln a, ln b)`, and whether warm-up's inexact moves are on.
struct Search {
    eps0: f64,
    bracket: (f64, f64),
    warm: bool,
}

/// autoMALA's random-walk form (no leapfrog): the step chosen forward,
/// the move, the backward check, the Metropolis decision.
fn walk_row_step(energy: &dyn RowEnergy, w: Option<&[f64]>, s: &Search, c: &mut ChainRow<'_>) {
    let aux = &mut *c.scratch;
    let (j, fwd) = select_walk_row(
        energy,
        w,
        s.eps0,
        s.bracket,
        s.warm,
        (c.position, *c.energy, aux),
        c.proposal_grad,
    );
    let eps = s.eps0 * 2f64.powi(j);
    walk_to(c.proposal, c.position, aux, eps, w);
    *c.proposal_energy = energy.energy(c.proposal);
    let finite = c.proposal_energy.is_finite();
    let (mut j_back, mut bwd) = (j, 0);
    if finite && !s.warm {
        aux.iter_mut().for_each(|z| *z = -*z);
        (j_back, bwd) = select_walk_row(
            energy,
            w,
            s.eps0,
            s.bracket,
            s.warm,
            (c.proposal, *c.proposal_energy, aux),
            c.proposal_grad,
        );
    }
    let log_alpha = if j_back == j {
        *c.energy - *c.proposal_energy
    } else {
        f64::NEG_INFINITY
    };
    let accepted = metropolis(log_alpha, finite, c.rng, c.step);
    c.step.extra_evals = fwd + bwd;
    c.step.selected_step = eps;
    if accepted {
        c.position.copy_from_slice(c.proposal);
        *c.energy = *c.proposal_energy;
    }
}

/// The AutoStep HMC form: `lf` leapfrog steps with the chosen step, the
/// backward check from `(y', -p')`, the Metropolis decision on the
/// Hamiltonian.
fn trajectory_row_step(
    energy: &dyn RowEnergy,
    w: Option<&[f64]>,
    s: &Search,
    lf: usize,
    c: &mut ChainRow<'_>,
) {
    let d = c.position.len();
    // Each worker thread keeps the search's end and the proposal's
    // momentum from step to step; the proposal itself lives in the
    // chain's proposal rows.
    ROW_SCRATCH.with_borrow_mut(|slot| {
        let (end, prop_p) = match slot {
            Some((end, p)) if p.len() == d => (end, p),
            _ => {
                let (end, p) = slot.insert((RowEnd::new(d), vec![0.0; d]));
                (end, p)
            }
        };
        let aux = &*c.scratch;
        let from = (&*c.position, &*c.grad, *c.energy, aux);
        let (j, fwd) = select_row(energy, w, s.eps0, s.bracket, s.warm, lf, from, end);
        let eps = s.eps0 * 2f64.powi(j);
        let e1 = trajectory_row(
            energy,
            w,
            eps,
            lf,
            from,
            (&mut *c.proposal, &mut *c.proposal_grad, &mut prop_p[..]),
        );
        *c.proposal_energy = e1;
        let finite = e1.is_finite() && c.proposal_grad.iter().all(|g| g.is_finite());
        let h0 = *c.energy + 0.5 * weighted_sq(ndarray::ArrayView1::from(aux), w);
        let h1 = e1 + 0.5 * weighted_sq(ndarray::ArrayView1::from(&prop_p[..]), w);
        let (mut j_back, mut bwd) = (j, 0);
        if finite && !s.warm {
            // The backward search starts from (y', -p').
            prop_p.iter_mut().for_each(|v| *v = -*v);
            (j_back, bwd) = select_row(
                energy,
                w,
                s.eps0,
                s.bracket,
                s.warm,
                lf,
                (&*c.proposal, &*c.proposal_grad, e1, &prop_p[..]),
                end,
            );
        }
        let log_alpha = if j_back == j {
            h0 - h1
        } else {
            f64::NEG_INFINITY
        };
        let accepted = metropolis(log_alpha, finite, c.rng, c.step);
        c.step.extra_evals = (fwd + lf as u32 + bwd).saturating_sub(3 * lf as u32);
        c.step.selected_step = eps;
        if accepted {
            c.position.copy_from_slice(c.proposal);
            c.grad.copy_from_slice(c.proposal_grad);
            *c.energy = e1;
        }
    });
}

thread_local! {
    /// The row path's search end and proposal momentum, one per worker thread.
    static ROW_SCRATCH: std::cell::RefCell<Option<(RowEnd, Vec<f64>)>> =
        const { std::cell::RefCell::new(None) };
}
