//! Warm-up's first move for chains started where float64 cannot see the
//! target: a chain whose energy is at or above 2^53 (where neighbouring
//! float64 energies differ by 2 nats or more) has every Metropolis test
//! decided by rounding, and a kernel whose step is chosen from energy
//! differences (the AutoStep kernels) finds none. W7's arma starts half its
//! chains (uniform(-2, 2), Stan's) at energies of 1e46-1e59.
//!
//! Such a chain first descends by normalised gradient steps
//! `y - alpha g / |g|` with a backtracking step (halved until the energy
//! falls, doubled after each fall), until one step lowers its energy by
//! less than the dimension (the typical set's energies spread over about
//! `d / 2` nats: a chain whose best steps gain less is near it), or at most
//! [`MAX_ROUNDS`] evaluations. Deterministic (no random numbers), each
//! chain's path its own row's, so shards and thread counts do not change
//! it. Warm-up draws are discarded, so the kernels' exactness is not
//! touched; a run without warm-up starts where it is told.

use crate::energy::Energy;
use crate::kernels::ChainState;
use ndarray::{Array1, Array2};

/// Energies at or above this (2^53) are too far for float64 to resolve.
pub const FAR_ENERGY: f64 = 9_007_199_254_740_992.0;

/// The most batch evaluations the descent takes (with the state's
/// evaluation after it, the run's [`crate::run::PRESTART_EVALS`]).
pub const MAX_ROUNDS: usize = crate::run::PRESTART_EVALS - 1;

/// Moves the chains of `state` whose energy is at or above
/// [`FAR_ENERGY`] downhill (see the module), updating their positions,
/// energies and gradients. Returns the rounds each chain descended (0 for
/// the others; every round evaluates the whole batch, until the last chain
/// stops).
pub fn descend_far_starts(energy: &dyn Energy, state: &mut ChainState) -> Vec<usize> {
    let (n, d) = state.position.dim();
    let mut active: Vec<bool> = state.energy.iter().map(|v| *v >= FAR_ENERGY).collect();
    let mut own = vec![0; n];
    if !active.iter().any(|a| *a) {
        return own;
    }
    let (y, e, g) = (&mut state.position, &mut state.energy, &mut state.grad);
    // Per chain: the step length (in the state's units, starting at 1e-3
    // of the row's scale) and the direction of the current trial.
    let mut alpha: Vec<f64> = y
        .rows()
        .into_iter()
        .map(|r| 1e-3 * r.iter().fold(1.0f64, |m, v| m.max(v.abs())))
        .collect();
    let mut trial = y.clone();
    let (mut te, mut tg) = (Array1::zeros(n), Array2::zeros((n, d)));
    let mut rounds = 0;
    while rounds < MAX_ROUNDS && active.iter().any(|a| *a) {
        for i in 0..n {
            // |g| without overflow (gradients of 1e160 and more occur there).
            let top = g.row(i).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let norm = top
                * g.row(i)
                    .iter()
                    .map(|v| (v / top).powi(2))
                    .sum::<f64>()
                    .sqrt();
            if active[i] && !(norm.is_finite() && norm > 0.0 && alpha[i] > 1e-300) {
                active[i] = false;
            }
            for c in 0..d {
                trial[[i, c]] = if active[i] {
                    y[[i, c]] - alpha[i] * g[[i, c]] / norm
                } else {
                    y[[i, c]]
                };
            }
        }
        energy.energy_grad_batch(trial.view(), te.view_mut(), tg.view_mut());
        rounds += 1;
        for i in 0..n {
            if !active[i] {
                continue;
            }
            own[i] += 1;
            if te[i] < e[i] && te[i].is_finite() && tg.row(i).iter().all(|v| v.is_finite()) {
                let gain = e[i] - te[i];
                y.row_mut(i).assign(&trial.row(i));
                g.row_mut(i).assign(&tg.row(i));
                e[i] = te[i];
                alpha[i] *= 2.0;
                active[i] = gain >= d as f64;
            } else {
                alpha[i] *= 0.5;
            }
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::FnEnergy;

    #[test]
    fn far_chains_descend_and_the_others_stay() {
        // E = |y|^40 / 2 (a steep bowl): from |y| = 20 the energy is 5e51.
        let f = |y: &[f64]| 0.5 * y.iter().map(|v| v * v).sum::<f64>().powi(20);
        let e = FnEnergy::new(2, f, |y: &[f64], g: &mut [f64]| {
            let r2: f64 = y.iter().map(|v| v * v).sum();
            for (gi, yi) in g.iter_mut().zip(y) {
                *gi = 20.0 * r2.powi(19) * yi;
            }
            0.5 * r2.powi(20)
        });
        let y = ndarray::array![[20.0, 3.0], [0.9, 0.1]];
        let mut st = ChainState::new(&e, y.clone()).unwrap();
        assert!(st.energy[0] > FAR_ENERGY);
        let rounds = descend_far_starts(&e, &mut st);
        let r = st.position.row(0).iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(r < 1.2, "descended to |y| = {r} in {rounds:?} rounds");
        assert!(rounds[0] > 0 && rounds[0] < MAX_ROUNDS && rounds[1] == 0);
        assert_eq!(st.position.row(1), y.row(1));
        // The state's energies and gradients are the positions'.
        let fresh = ChainState::new(&e, st.position.clone()).unwrap();
        assert_eq!(fresh.energy, st.energy);
        assert_eq!(fresh.grad, st.grad);
        // Nothing far: no evaluation, nothing moved.
        let before = st.position.clone();
        assert_eq!(descend_far_starts(&e, &mut st), vec![0, 0]);
        assert_eq!(st.position, before);
    }
}
