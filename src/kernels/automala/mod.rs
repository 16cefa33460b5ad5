//! autoMALA: MALA with a step size chosen at every step from the current
//! state (Biron-Lattes, Surjanovic, Syed, Campbell and Bouchard-Cote,
//! "autoMALA: locally adaptive Metropolis-adjusted Langevin algorithm",
//! AISTATS 2024, arXiv 2310.16782).
//!
//! MALA is one leapfrog step of HMC with a fresh momentum. autoMALA draws
//! the momentum `p ~ N(0, M)` and an acceptance bracket `a < b` (the order
//! statistics of two uniforms), then picks the step `eps0 2^j` by doubling
//! or halving the base step `eps0` until the one-step acceptance ratio
//! `exp(-|H(y, p) - H(y', p')|)` (the ratio or its inverse, whichever is
//! smaller: symmetric under reversal) falls inside `(a, b)`: while it is above `b`
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
//! evaluations of a step are `L (rounds forward + 1 + rounds backward)`
//! for `L` leapfrog steps (1 for autoMALA), reported through
//! [`ChainStep::extra_evals`] beyond the nominal `3 L`.

use super::hmc::{draw_momentum, kick, kick_drift};
use super::{
    ChainState, ChainStep, InvMass, Kernel, KernelInfo, KernelSpec, Tuning, metropolis, weighted_sq,
};
use crate::energy::Energy;
use crate::error::{Result, check_positive};
use crate::rng::{ChainRng, fill_standard_normal};
use ndarray::{Array1, Array2, ArrayView2};
use rand::RngExt;

mod rows;

/// autoMALA's registry entry.
pub(crate) const INFO: KernelInfo = KernelInfo {
    name: "automala",
    about: "autoMALA: MALA whose step doubles or halves per step until the acceptance ratio is in a random bracket (exact, locally adaptive)",
    space: crate::energy::StateSpace::Continuous,
    settings: &["step_size"],
    invariance: super::Invariance::Exact,
    // A base step far from right on purpose: the selector must fix it.
    test_settings: |scale, _| super::KernelSettings {
        step_size: Some(4.0 * scale),
        ..Default::default()
    },
    build: |s: &KernelSpec| Ok(Box::new(AutoMala::new(s.step_or(0.1))?)),
};

/// AutoStep RWM's registry entry.
pub(crate) const INFO_RWM: KernelInfo = KernelInfo {
    name: "autorwm",
    about: "AutoStep RWM: random-walk Metropolis whose scale doubles or halves per step until the acceptance ratio is in a random bracket (exact, gradient-free)",
    space: crate::energy::StateSpace::Continuous,
    settings: &["step_size"],
    invariance: super::Invariance::Exact,
    test_settings: |scale, _| super::KernelSettings {
        step_size: Some(4.0 * scale),
        ..Default::default()
    },
    build: |s: &KernelSpec| Ok(Box::new(AutoMala::rwm(s.step_or(0.5))?)),
};

/// AutoStep HMC's registry entry (`--leapfrog` steps per trajectory).
pub(crate) const INFO_HMC: KernelInfo = KernelInfo {
    name: "autohmc",
    about: "AutoStep HMC: HMC whose step doubles or halves per step until the trajectory's acceptance ratio is in a random bracket (exact, locally adaptive)",
    space: crate::energy::StateSpace::Continuous,
    settings: &["step_size", "leapfrog"],
    invariance: super::Invariance::Exact,
    test_settings: |scale, _| super::KernelSettings {
        step_size: Some(4.0 * scale),
        leapfrog: 5,
        ..Default::default()
    },
    build: |s: &KernelSpec| {
        Ok(Box::new(AutoMala::hmc(
            s.step_or(0.1),
            s.settings.leapfrog,
        )?))
    },
};

/// autoMALA with base step `eps0` (the leapfrog step of one-step HMC; the
/// MALA time step is `eps0^2 / 2`) and an optional diagonal mass.
///
/// Warm-up adapts the diagonal mass and the base step, the latter not to
/// an acceptance target (the selector corrects the step at every step)
/// but, as the autoMALA paper's warm-up does, to the geometric mean of the
/// steps the selector chose in the round before (each doubling or halving
/// away from the base costs a gradient evaluation). Draws stay exact for
/// any base step; after warm-up it is frozen.
///
/// [`AutoMala::hmc`] is AutoStep HMC (Liu, Surjanovic, Biron-Lattes,
/// Bouchard-Cote and Campbell, "AutoStep: locally adaptive involutive
/// MCMC", ICML 2025, arXiv 2410.18929): the same selector on a trajectory
/// of `L` leapfrog steps. [`AutoMala::rwm`] is AutoStep RWM: the
/// involution `(y, z) -> (y + eps sqrt(W) z, -z)` with `z ~ N(0, I)`, the
/// selector on the ratio `exp(E(y) - E(y'))`, no gradient.
#[derive(Clone, Debug)]
pub struct AutoMala {
    step_size: f64,
    leapfrog: usize,
    name: &'static str,
}

impl AutoMala {
    /// Most doublings or halvings of the base step per step (`2^±20`).
    pub const MAX_DOUBLINGS: i32 = 20;

    /// AutoStep HMC's jitter of the base step, `eps0 (1 + 0.2 u)` with
    /// `u ~ U(-1, 1)` drawn with the momentum (an auxiliary variable: the
    /// backward search reuses it, so the move stays exact). Without it the
    /// step grid `eps0 2^j` is fixed, and on a target the mass makes
    /// isotropic (a dense mass on a Gaussian) every trajectory can turn by
    /// the same angle: near pi the chain flips `z -> -z` with its radius
    /// never changing (R-hat 1.2-1.3 seen). autoMALA (one step) takes none.
    pub const HMC_JITTER: f64 = 0.2;

    /// The base step's jitter: [`AutoMala::HMC_JITTER`] for trajectories
    /// of more than one step.
    fn jitter(&self) -> f64 {
        if self.leapfrog > 1 {
            Self::HMC_JITTER
        } else {
            0.0
        }
    }

    /// autoMALA with base leapfrog step `step_size` (> 0).
    pub fn new(step_size: f64) -> Result<Self> {
        check_positive("step_size", step_size)?;
        Ok(AutoMala {
            step_size,
            leapfrog: 1,
            name: "automala",
        })
    }

    /// AutoStep RWM: base proposal scale `step_size` (> 0).
    pub fn rwm(step_size: f64) -> Result<Self> {
        check_positive("step_size", step_size)?;
        Ok(AutoMala {
            step_size,
            leapfrog: 0,
            name: "autorwm",
        })
    }

    /// AutoStep HMC: base leapfrog step `step_size`, `leapfrog` (1..=1024)
    /// steps per trajectory.
    pub fn hmc(step_size: f64, leapfrog: usize) -> Result<Self> {
        check_positive("step_size", step_size)?;
        if !(1..=1024).contains(&leapfrog) {
            return Err(crate::Error::param(
                "leapfrog",
                format!("must be in 1..=1024, got {leapfrog}"),
            ));
        }
        Ok(AutoMala {
            step_size,
            leapfrog,
            name: "autohmc",
        })
    }
}

/// Kinetic energy `0.5 sum_j w_j p_j^2` of row `i` (`w` the inverse mass).
fn kinetic(p: &Array2<f64>, i: usize, w: Option<&InvMass>) -> f64 {
    0.5 * weighted_sq(p.row(i), w.map(|m| m.of(i)))
}

/// Where a trajectory starts: positions, their energies and gradients, and
/// momenta (one row per chain).
struct From<'a> {
    y: ArrayView2<'a, f64>,
    e: &'a Array1<f64>,
    g: ArrayView2<'a, f64>,
    p: ArrayView2<'a, f64>,
}

/// The ends of the trajectories: positions, energies, gradients, momenta.
struct Ends {
    y: Array2<f64>,
    e: Array1<f64>,
    g: Array2<f64>,
    p: Array2<f64>,
}

impl Ends {
    fn new(n: usize, d: usize) -> Self {
        Ends {
            y: Array2::zeros((n, d)),
            e: Array1::zeros(n),
            g: Array2::zeros((n, d)),
            p: Array2::zeros((n, d)),
        }
    }
}

/// `leapfrog` leapfrog steps of `eps[i]` for the chains with `active[i]`
/// from `from` into `ends` (the others stay at their start, evaluated
/// again: an energy with one context per chain needs every row). One batch
/// energy evaluation per leapfrog step.
fn trajectory(
    energy: &dyn Energy,
    w: Option<&InvMass>,
    eps: &[f64],
    active: &[bool],
    leapfrog: usize,
    from: &From<'_>,
    ends: &mut Ends,
) {
    ends.y.assign(&from.y);
    ends.g.assign(&from.g);
    ends.p.assign(&from.p);
    ends.e.assign(from.e);
    for _ in 0..leapfrog {
        for (i, &on) in active.iter().enumerate() {
            if on {
                let (mut p, mut y) = (ends.p.row_mut(i), ends.y.row_mut(i));
                kick_drift(
                    p.as_slice_mut().expect("standard layout"),
                    y.as_slice_mut().expect("standard layout"),
                    ends.g.row(i).as_slice().expect("standard layout"),
                    eps[i],
                    w.map(|m| m.of(i)),
                );
            }
        }
        energy.energy_grad_batch(ends.y.view(), ends.e.view_mut(), ends.g.view_mut());
        for (i, &on) in active.iter().enumerate() {
            if on {
                let mut p = ends.p.row_mut(i);
                kick(
                    p.as_slice_mut().expect("standard layout"),
                    ends.g.row(i).as_slice().expect("standard layout"),
                    eps[i],
                );
            }
        }
    }
}

/// The search's criterion: `-|log ratio|` (NaN or a non-finite end:
/// `-inf`). Symmetric, so that the search from the proposal, direction
/// reversed, sees the same value at the chosen step as the search from the
/// current state (with the signed ratio it would see its negative and pick
/// another step, and the move would be rejected).
fn symmetric(log_ratio: f64, finite: bool) -> f64 {
    if finite && log_ratio.is_finite() {
        -log_ratio.abs()
    } else {
        f64::NEG_INFINITY
    }
}

/// The search's criterion: [`symmetric`] for exact steps; in warm-up the
/// signed log ratio, so that a far start's large downhill moves double the
/// step instead of halving it (not reversible: warm-up only).
fn criterion(log_ratio: f64, finite: bool, signed: bool) -> f64 {
    if !signed {
        symmetric(log_ratio, finite)
    } else if finite && !log_ratio.is_nan() {
        log_ratio
    } else {
        f64::NEG_INFINITY
    }
}

/// One step of the search for one chain given the log acceptance ratio
/// `ell` at its current exponent `j`: decide the direction (double while
/// the ratio is above `b`, halve while below `a`), move, or stop (the last
/// doubling above `b`, the first halving above `a`, or `|j|` at the cap).
fn advance(ell: f64, (la, lb): (f64, f64), dir: &mut i32, j: &mut i32, done: &mut bool) {
    match *dir {
        0 if ell > lb => {
            *dir = 1;
            *j += 1;
        }
        0 if ell < la => {
            *dir = -1;
            *j -= 1;
        }
        0 => *done = true,
        1 if ell <= lb => {
            *j -= 1;
            *done = true;
        }
        1 => *j += 1,
        _ if ell >= la => *done = true,
        _ => *j -= 1,
    }
    if j.abs() >= AutoMala::MAX_DOUBLINGS {
        *j = (*j).clamp(-AutoMala::MAX_DOUBLINGS, AutoMala::MAX_DOUBLINGS);
        *done = true;
    }
}

/// The random walk's search: the exponent each chain's scale `eps0 2^j`
/// takes for the move `y + eps sqrt(W) z` from `y` (energies `e`); the
/// evaluations it took.
fn select_walk(
    energy: &dyn Energy,
    w: Option<&InvMass>,
    eps0: &[f64],
    bracket: &[(f64, f64)],
    signed: bool,
    (y, e, z): (ArrayView2<'_, f64>, &Array1<f64>, ArrayView2<'_, f64>),
    (trial, trial_e): (&mut Array2<f64>, &mut Array1<f64>),
) -> (Vec<i32>, u32) {
    let (n, d) = y.dim();
    let (mut j, mut dir, mut done) = (vec![0i32; n], vec![0i32; n], vec![false; n]);
    let mut evals = 0u32;
    while done.iter().any(|d| !d) {
        for i in 0..n {
            let eps = eps0[i] * 2f64.powi(j[i]);
            for c in 0..d {
                trial[[i, c]] = if done[i] {
                    y[[i, c]]
                } else {
                    y[[i, c]] + eps * w.map_or(1.0, |w| w.of(i)[c].sqrt()) * z[[i, c]]
                };
            }
        }
        energy.energy_batch(trial.view(), trial_e.view_mut());
        evals += 1;
        for i in 0..n {
            if !done[i] {
                let ell = criterion(e[i] - trial_e[i], true, signed);
                advance(ell, bracket[i], &mut dir[i], &mut j[i], &mut done[i]);
            }
        }
    }
    (j, evals)
}

/// The exponent `j` each chain's step `eps0 2^j` takes from `from`, for
/// brackets `(log a, log b)`; returns the exponents and the batch energy
/// evaluations it took.
#[allow(clippy::too_many_arguments)]
fn select(
    energy: &dyn Energy,
    w: Option<&InvMass>,
    eps0: &[f64],
    bracket: &[(f64, f64)],
    signed: bool,
    leapfrog: usize,
    from: &From<'_>,
    ends: &mut Ends,
) -> (Vec<i32>, u32) {
    let n = from.y.nrows();
    let mut j = vec![0i32; n];
    let mut dir = vec![0i32; n];
    let mut done = vec![false; n];
    let mut evals = 0u32;
    let h0: Vec<f64> = (0..n)
        .map(|i| from.e[i] + 0.5 * weighted_sq(from.p.row(i), w.map(|m| m.of(i))))
        .collect();
    while done.iter().any(|d| !d) {
        let active: Vec<bool> = done.iter().map(|d| !d).collect();
        let eps: Vec<f64> = (0..n).map(|i| eps0[i] * 2f64.powi(j[i])).collect();
        trajectory(energy, w, &eps, &active, leapfrog, from, ends);
        evals += leapfrog as u32;
        for i in 0..n {
            if done[i] {
                continue;
            }
            let k = kinetic(&ends.p, i, w);
            let finite = ends.g.row(i).iter().all(|g| g.is_finite());
            let ell = criterion(h0[i] - (ends.e[i] + k), finite, signed);
            advance(ell, bracket[i], &mut dir[i], &mut j[i], &mut done[i]);
        }
    }
    (j, evals)
}

impl Kernel for AutoMala {
    fn name(&self) -> &'static str {
        self.name
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
        if self.leapfrog == 0 {
            return self.step_walk(energy, tuning, state, rngs, steps);
        }
        let (n, d) = (state.n_chains(), state.dim());
        let w = tuning.inv_masses();
        let lf = self.leapfrog;
        let mut eps0: Vec<f64> = (0..n).map(|i| tuning.step_size().get(i)).collect();
        let warm = tuning.in_warmup();
        // Momentum p ~ N(0, M), M = 1 / w, the jittered base step and the
        // bracket, from each chain's stream.
        let bracket = draw_aux(state, w, Some((&mut eps0, self.jitter())), rngs);
        let mut scratch = Ends::new(n, d);
        let start = From {
            y: state.position.view(),
            e: &state.energy,
            g: state.grad.view(),
            p: state.momentum.view(),
        };
        let (j, fwd) = select(energy, w, &eps0, &bracket, warm, lf, &start, &mut scratch);
        // The proposal: the trajectory with step eps0 2^j.
        let eps: Vec<f64> = (0..n).map(|i| eps0[i] * 2f64.powi(j[i])).collect();
        let mut prop = Ends::new(n, d);
        trajectory(energy, w, &eps, &vec![true; n], lf, &start, &mut prop);
        let finite: Vec<bool> = (0..n)
            .map(|i| prop.e[i].is_finite() && prop.g.row(i).iter().all(|g| g.is_finite()))
            .collect();
        // The backward search from (y', -p'); chains whose proposal is not
        // finite start it from their own position (its answer is unused).
        let back_y = rows_where(&finite, prop.y.view(), state.position.view());
        let back_g = rows_where(&finite, prop.g.view(), state.grad.view());
        let back_e = values_where(&finite, &prop.e, &state.energy);
        let back_p = rows_where(&finite, prop.p.mapv(|v| -v).view(), state.momentum.view());
        // In warm-up the search is one-way (no reversibility check).
        let (j_back, bwd) = if warm {
            (j.clone(), 0)
        } else {
            select(
                energy,
                w,
                &eps0,
                &bracket,
                false,
                lf,
                &From {
                    y: back_y.view(),
                    e: &back_e,
                    g: back_g.view(),
                    p: back_p.view(),
                },
                &mut scratch,
            )
        };
        let extra = (fwd + lf as u32 + bwd).saturating_sub(3 * lf as u32);
        for i in 0..n {
            let h0 = state.energy[i] + kinetic(&state.momentum, i, w);
            let h1 = prop.e[i] + kinetic(&prop.p, i, w);
            let log_alpha = if j_back[i] == j[i] {
                h0 - h1
            } else {
                f64::NEG_INFINITY
            };
            let accepted = metropolis(log_alpha, finite[i], &mut rngs[i], &mut steps[i]);
            steps[i].extra_evals = extra;
            steps[i].selected_step = eps[i];
            if accepted {
                state.position.row_mut(i).assign(&prop.y.row(i));
                state.grad.row_mut(i).assign(&prop.g.row(i));
                state.energy[i] = prop.e[i];
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
        // The backward search evaluates other points after the proposal.
        false
    }
    fn target_accept(&self) -> Option<f64> {
        None
    }
    fn chooses_step(&self) -> bool {
        true
    }
    fn grad_evals_per_step(&self) -> usize {
        3 * self.leapfrog
    }
}

/// Row `i` of `yes` where `pick[i]`, else of `no`.
fn rows_where(pick: &[bool], yes: ArrayView2<'_, f64>, no: ArrayView2<'_, f64>) -> Array2<f64> {
    Array2::from_shape_fn(
        yes.dim(),
        |(i, c)| if pick[i] { yes[[i, c]] } else { no[[i, c]] },
    )
}

/// Entry `i` of `yes` where `pick[i]`, else of `no`.
fn values_where(pick: &[bool], yes: &Array1<f64>, no: &Array1<f64>) -> Array1<f64> {
    Array1::from_shape_fn(yes.len(), |i| if pick[i] { yes[i] } else { no[i] })
}

/// Each chain's auxiliary normal vector (in `state.momentum`: a momentum
/// `p ~ N(0, M)`, `M = 1 / w`, drawn as HMC draws it, each chain's base
/// step jittered as HMC jitters its step, or for the random walk
/// `z ~ N(0, I)`) and acceptance bracket `(log a, log b)`, from its own
/// stream.
fn draw_aux(
    state: &mut ChainState,
    w: Option<&InvMass>,
    mut momentum: Option<(&mut [f64], f64)>,
    rngs: &mut [ChainRng],
) -> Vec<(f64, f64)> {
    let mut bracket = Vec::with_capacity(rngs.len());
    for (i, rng) in rngs.iter_mut().enumerate() {
        let mut row = state.momentum.row_mut(i);
        let p = row.as_slice_mut().expect("standard layout");
        if let Some((eps0, jitter)) = momentum.as_mut() {
            eps0[i] = draw_momentum(rng, p, w.map(|m| m.of(i)), eps0[i], *jitter);
        } else {
            fill_standard_normal(rng, p);
        }
        let (u1, u2): (f64, f64) = (rng.random(), rng.random());
        bracket.push((u1.min(u2).ln(), u1.max(u2).ln()));
    }
    bracket
}

impl AutoMala {
    /// AutoStep RWM's step: `z ~ N(0, I)`, the scale searched from `y`
    /// and, with `-z`, from the proposal; Metropolis on `E(y) - E(y')`.
    fn step_walk(
        &self,
        energy: &dyn Energy,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        let (n, d) = (state.n_chains(), state.dim());
        let w = tuning.inv_masses();
        let eps0: Vec<f64> = (0..n).map(|i| tuning.step_size().get(i)).collect();
        let warm = tuning.in_warmup();
        let bracket = draw_aux(state, w, None, rngs);
        let (mut trial, mut trial_e) = (Array2::zeros((n, d)), Array1::zeros(n));
        let z = state.momentum.clone();
        let (j, fwd) = select_walk(
            energy,
            w,
            &eps0,
            &bracket,
            warm,
            (state.position.view(), &state.energy, z.view()),
            (&mut trial, &mut trial_e),
        );
        for i in 0..n {
            let eps = eps0[i] * 2f64.powi(j[i]);
            for c in 0..d {
                state.proposal[[i, c]] =
                    state.position[[i, c]] + eps * w.map_or(1.0, |w| w.of(i)[c].sqrt()) * z[[i, c]];
            }
        }
        super::evaluate_proposals(energy, state, false);
        let finite: Vec<bool> = (0..n)
            .map(|i| state.proposal_energy[i].is_finite())
            .collect();
        let back_y = rows_where(&finite, state.proposal.view(), state.position.view());
        let back_e = values_where(&finite, &state.proposal_energy, &state.energy);
        let neg_z = z.mapv(|v| -v);
        let (j_back, bwd) = if warm {
            (j.clone(), 0)
        } else {
            select_walk(
                energy,
                w,
                &eps0,
                &bracket,
                false,
                (back_y.view(), &back_e, neg_z.view()),
                (&mut trial, &mut trial_e),
            )
        };
        let extra = (fwd + 1 + bwd).saturating_sub(1);
        for i in 0..n {
            let log_alpha = if j_back[i] == j[i] {
                state.energy[i] - state.proposal_energy[i]
            } else {
                f64::NEG_INFINITY
            };
            let accepted = metropolis(log_alpha, finite[i], &mut rngs[i], &mut steps[i]);
            steps[i].extra_evals = extra;
            steps[i].selected_step = eps0[i] * 2f64.powi(j[i]);
            if accepted {
                state.position.row_mut(i).assign(&state.proposal.row(i));
                state.energy[i] = state.proposal_energy[i];
            }
        }
    }
}
