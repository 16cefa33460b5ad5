//! Gibbs for binary states: block Gibbs on RBMs, single-site heat bath on
//! any other binary energy.

use super::{ChainState, ChainStep, Kernel, KernelInfo, KernelSpec, Tuning};
use crate::energy::{Energy, sigmoid};
use crate::rng::ChainRng;
use ndarray::Zip;
use rand::RngExt;

/// Gibbs's registry entry.
pub(crate) const INFO: KernelInfo = KernelInfo {
    name: "gibbs",
    about: "Gibbs: block v -> h -> v for RBMs, single-site heat bath for other binary models",
    space: crate::energy::StateSpace::Binary,
    settings: &[],
    invariance: super::Invariance::Binary,
    test_settings: |_, _| super::KernelSettings::default(),
    build: |s: &KernelSpec| Ok(Box::new(Gibbs::new(s.track_energy))),
};

/// Gibbs sampling of binary states. It takes its model from the energy it
/// is given: an energy that is an RBM ([`Energy::as_rbm`], at inverse
/// temperature `beta`) gets block Gibbs `v -> h -> v`, every chain in one
/// pair of matrix products, sampling the RBM whose parameters are all
/// multiplied by `beta` (the marginal of `exp(-beta E(v, h))`, which equals
/// `exp(-beta F(v))` only at beta = 1). Any other binary energy gets
/// single-site heat bath: each sweep visits sites `0..d` in order and sets
/// `y_j = 1` with probability `sigmoid(E(y with y_j = 0) - E(y with y_j = 1))`,
/// one batched energy call per site (exact for any binary energy). Every
/// sweep is accepted; `accept_prob` is 1. No tuning is used.
#[derive(Clone, Debug)]
pub struct Gibbs {
    track_energy: bool,
}

impl Gibbs {
    /// Gibbs; with `track_energy` block Gibbs recomputes each chain's free
    /// energy after every sweep (one extra matrix product); without,
    /// `state.energy` is stale, which is faster when only states are
    /// needed. Heat bath always tracks energies.
    pub fn new(track_energy: bool) -> Self {
        Gibbs { track_energy }
    }
}

impl Default for Gibbs {
    fn default() -> Self {
        Gibbs::new(true)
    }
}

impl Kernel for Gibbs {
    fn uses_mass(&self) -> bool {
        false
    }
    fn space(&self) -> crate::energy::StateSpace {
        crate::energy::StateSpace::Binary
    }
    fn name(&self) -> &'static str {
        "gibbs"
    }
    fn step(
        &self,
        energy: &dyn Energy,
        _tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        let Some((rbm, beta)) = energy.as_rbm() else {
            return heat_bath(energy, state, rngs, steps);
        };
        rbm.gibbs_sweep(state.position.view_mut(), rngs, beta, None);
        if self.track_energy {
            energy.energy_batch(state.position.view(), state.energy.view_mut());
        }
        steps.iter_mut().for_each(|s| *s = ChainStep::exact());
    }
    fn initial_tuning(&self) -> Tuning {
        Tuning::new(1.0)
    }
    fn target_accept(&self) -> Option<f64> {
        None
    }
    fn grad_evals_per_step(&self) -> usize {
        0
    }
    fn has_step_size(&self) -> bool {
        false
    }
}

/// One single-site heat-bath sweep over every chain.
fn heat_bath(
    energy: &dyn Energy,
    state: &mut ChainState,
    rngs: &mut [ChainRng],
    steps: &mut [ChainStep],
) {
    state.proposal.assign(&state.position);
    for s in steps.iter_mut() {
        *s = ChainStep::exact();
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
