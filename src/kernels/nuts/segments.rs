//! NUTS on an energy's own leapfrog integrator ([`Leapfrog`]): the
//! lockstep transition asking for whole subtrees per call.

use super::{Cursor, DIVERGENCE_THRESHOLD, Walk, kick};
use crate::energy::{Leapfrog, LeapfrogPath, LeapfrogStart, max_segment_steps};
use crate::kernels::{ChainState, Tuning};
use crate::rng::ChainRng;
use ndarray::{Array1, s};

/// Chain `i`'s proposal row (position, momentum, gradient, energy) as the
/// walk's next leaf, after the step's closing half kick of size `kick`
/// where the caller has not taken it.
pub(super) fn take_leaf(
    walk: &mut Walk,
    st: &mut ChainState,
    i: usize,
    rng: &mut ChainRng,
    w: Option<&[f64]>,
    kick_eps: Option<f64>,
) {
    let mut p = st.momentum.row_mut(i);
    let mut y = st.proposal.row_mut(i);
    let mut g = st.proposal_grad.row_mut(i);
    let mut cur = Cursor {
        y: y.as_slice_mut().expect("standard layout"),
        p: p.as_slice_mut().expect("standard layout"),
        g: g.as_slice_mut().expect("standard layout"),
        e: &mut st.proposal_energy[i],
    };
    if let Some(e) = kick_eps {
        kick(cur.p, cur.g, e);
    }
    walk.leaf(rng, &mut cur, w);
}

/// The lockstep transition on an energy's own integrator: each call takes
/// the steps every unfinished chain's subtree still needs (the fewest of
/// them: at most one subtree ends in a call, at its last step), the leaves
/// then taken one by one as in lockstep. Finished chains stay where they
/// are (step 0); a chain that finishes inside a call skips the rest of it.
/// The same draws as one evaluation per step for an integrator with the
/// kernels' arithmetic. Returns the steps taken (rows evaluated per chain).
pub(super) fn walk_segments(
    lf: &dyn Leapfrog,
    walks: &mut [Walk],
    st: &mut ChainState,
    eps: &[f64],
    tuning: &Tuning,
    rngs: &mut [ChainRng],
) -> u32 {
    let (n, d) = (st.n_chains(), st.dim());
    let inv_mass = tuning.inv_mass_rows(n, d);
    // Nothing is evaluated past a divergence (a row stops where the walk's
    // leaf check marks one); the bound is the transition's, fixed.
    let h_max: Array1<f64> = walks
        .iter()
        .map(|wk| wk.h0 + DIVERGENCE_THRESHOLD)
        .collect();
    let mut path = LeapfrogPath::default();
    let mut rounds = 0u32;
    loop {
        let Some(k) = walks
            .iter()
            .filter(|wk| !wk.done)
            .map(|wk| (1u64 << wk.depth) - wk.leaves)
            .min()
        else {
            return rounds;
        };
        let signed: Array1<f64> = walks
            .iter()
            .zip(eps)
            .map(|(wk, &e)| if wk.done { 0.0 } else { wk.signed(e) })
            .collect();
        let k = usize::try_from(k)
            .unwrap_or(usize::MAX)
            .clamp(1, max_segment_steps(n, d));
        path.reshape(k, n, d);
        lf.leapfrog(
            LeapfrogStart {
                y: st.proposal.view(),
                p: st.momentum.view(),
                g: st.proposal_grad.view(),
                eps: signed.view(),
                inv_mass: inv_mass.view(),
                h_max: h_max.view(),
            },
            &mut path,
        );
        rounds = rounds.saturating_add(u32::try_from(k).unwrap_or(u32::MAX));
        for s in 0..k {
            for (i, walk) in walks.iter_mut().enumerate() {
                if walk.done {
                    continue;
                }
                st.proposal.row_mut(i).assign(&path.y.slice(s![s, i, ..]));
                st.momentum.row_mut(i).assign(&path.p.slice(s![s, i, ..]));
                st.proposal_grad
                    .row_mut(i)
                    .assign(&path.g.slice(s![s, i, ..]));
                st.proposal_energy[i] = path.e[[s, i]];
                take_leaf(walk, st, i, &mut rngs[i], tuning.inv_mass(i), None);
            }
        }
    }
}
