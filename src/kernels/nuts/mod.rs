//! The No-U-Turn Sampler with multinomial sampling (Hoffman and Gelman,
//! JMLR 2014; Betancourt, "A conceptual introduction to Hamiltonian Monte
//! Carlo", arXiv 1701.02434, section A.4), as Stan, nuts-rs and NumPyro run
//! it.
//!
//! Each transition draws a momentum `p ~ N(0, M)` (diagonal `M = 1 / W`)
//! and doubles a leapfrog trajectory forward or backward in time (a fair
//! coin per doubling) until the generalised no-U-turn criterion fails
//! between the trajectory's ends (`W p_minus . rho <= 0` or
//! `W p_plus . rho <= 0`, `rho` the sum of the momenta), in any of its
//! binary subtrees, or across the junction of two merged subtrees (Stan's
//! extra checks since 2.24), or until `max_depth` doublings
//! (`2^max_depth - 1` leapfrog steps), or until a leapfrog step's energy
//! error passes [`DIVERGENCE_THRESHOLD`] (a divergence). A subtree that
//! turns or diverges is discarded whole. The next state is drawn from the
//! trajectory's points with weights `exp(-H)`: uniformly in proportion to
//! the weights within each new subtree, and with Stan's biased progressive
//! rule (move to the subtree's draw with probability
//! `min(1, W_subtree / W_old)`) when it joins the trajectory. The
//! acceptance statistic adaptation aims at is Stan's: the mean over the
//! trajectory's leaves of `min(1, exp(H_0 - H))`.
//!
//! Every chain builds its own tree from its own stream, so the draws do
//! not depend on the other chains, the thread count or how the energy is
//! evaluated. With an energy written row by row, each chain runs its whole
//! trajectory while its rows stay in cache, and costs its own number of
//! gradient evaluations; with a batch energy (neural or conditional) the
//! chains advance in lockstep, one batch evaluation per leapfrog step, so a
//! step costs the longest trajectory's number of evaluations for every
//! chain (as vectorised NUTS does in JAX). [`ChainStep::extra_evals`]
//! reports which.

use super::hmc::{DIVERGENCE_THRESHOLD, draw_momentum, kick, kick_drift};
use super::{
    ChainState, ChainStep, Kernel, KernelInfo, KernelSpec, Tuning, for_each_chain_row, weighted_sq,
};
use crate::energy::{Energy, RowEnergy, log_sum_exp};
use crate::error::{Error, Result, check_positive};
use crate::rng::ChainRng;
use ndarray::ArrayView1;
use rand::RngExt;
use segments::{take_leaf, walk_segments};

mod segments;

/// NUTS's registry entry (`--max-depth` doublings).
pub(crate) const INFO: KernelInfo = KernelInfo {
    name: "nuts",
    about: "No-U-Turn Sampler: multinomial HMC whose trajectory doubles until it turns (diagonal mass, Stan's criterion)",
    space: crate::energy::StateSpace::Continuous,
    settings: &["step_size", "target_accept", "max_depth"],
    invariance: super::Invariance::Exact,
    test_settings: |scale, _| super::KernelSettings {
        step_size: Some(0.5 * scale),
        max_depth: 8,
        ..Default::default()
    },
    build: |s: &KernelSpec| {
        let k = Nuts::new(s.step_or(0.1), s.settings.max_depth)?;
        Ok(Box::new(match s.settings.target_accept {
            Some(t) => k.with_target_accept(t)?,
            None => k,
        }))
    },
};

/// NUTS with leapfrog step `step_size` (adapted in warm-up to Stan's
/// acceptance statistic, target 0.8) and at most `max_depth` doublings.
///
/// ```
/// use boltz::kernels::{Kernel, Nuts};
/// let nuts = Nuts::new(0.5, 10)?;
/// assert_eq!(nuts.name(), "nuts");
/// assert_eq!(nuts.target_accept(), Some(0.8));
/// assert!(Nuts::new(0.5, 0).is_err());
/// # Ok::<(), boltz::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Nuts {
    step_size: f64,
    max_depth: u32,
    target: f64,
}

impl Nuts {
    /// Largest `max_depth` accepted: `2^16 - 1` leapfrog steps per
    /// transition (a transition runs to its end before a stop request is
    /// seen).
    pub const MAX_DEPTH_LIMIT: u32 = 16;

    /// NUTS with leapfrog step `step_size` (> 0) and `max_depth` in
    /// `1..=16` doublings (Stan's default 10).
    pub fn new(step_size: f64, max_depth: usize) -> Result<Self> {
        check_positive("step_size", step_size)?;
        if !(1..=Self::MAX_DEPTH_LIMIT as usize).contains(&max_depth) {
            return Err(Error::param(
                "max_depth",
                format!("must be in 1..={}, got {max_depth}", Self::MAX_DEPTH_LIMIT),
            ));
        }
        Ok(Nuts {
            step_size,
            max_depth: max_depth as u32,
            target: 0.8,
        })
    }

    /// Changes the acceptance statistic step-size adaptation aims for.
    pub fn with_target_accept(mut self, target: f64) -> Result<Self> {
        self.target = super::check_target_accept(target)?;
        Ok(self)
    }

    /// Most doublings per transition.
    pub fn max_depth(&self) -> usize {
        self.max_depth as usize
    }
}

/// The point a trajectory is being extended from, moved one leapfrog step
/// at a time by the caller: position, momentum, gradient and energy.
struct Cursor<'a> {
    y: &'a mut [f64],
    p: &'a mut [f64],
    g: &'a mut [f64],
    e: &'a mut f64,
}

/// One end of a trajectory.
#[derive(Clone)]
struct End {
    y: Vec<f64>,
    p: Vec<f64>,
    g: Vec<f64>,
    e: f64,
}

/// `sum_j a_j w_j b_j` (`W a . b`).
fn dot_w(a: &[f64], b: &[f64], w: Option<&[f64]>) -> f64 {
    match w {
        Some(w) => a.iter().zip(b).zip(w).map(|((a, b), w)| a * w * b).sum(),
        None => a.iter().zip(b).map(|(a, b)| a * b).sum(),
    }
}

/// The no-U-turn criterion of a stretch of trajectory with end momenta
/// `a`, `b` and momentum sum `rho`: true when it has turned.
fn turned(a: &[f64], b: &[f64], rho: &[f64], w: Option<&[f64]>) -> bool {
    !(dot_w(a, rho, w) > 0.0 && dot_w(b, rho, w) > 0.0)
}

/// `out = a + b`.
fn sum_into(out: &mut [f64], a: &[f64], b: &[f64]) {
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

/// One chain's transition in progress: the trajectory built so far and the
/// subtree being built, as a machine that takes one leapfrog step at a time
/// (so that chains can share batch energy evaluations).
struct Walk {
    d: usize,
    max_depth: u32,
    /// Hamiltonian at the start.
    h0: f64,
    /// The trajectory's ends: 0 backward in time, 1 forward.
    ends: [End; 2],
    /// The trajectory's draw so far.
    draw: End,
    /// The subtree's draw so far.
    sub_draw: End,
    /// The trajectory's momentum sum and log weight.
    rho: Vec<f64>,
    log_w: f64,
    /// The subtree's log weight.
    sub_log_w: f64,
    /// The subtree's finished binary parts, in build order: each `3 d`
    /// values (momentum sum, first momentum, last momentum) and a size.
    stack: Vec<f64>,
    sizes: Vec<u64>,
    /// The momentum at the end being extended, before the subtree.
    p_adjacent: Vec<f64>,
    scratch: Vec<f64>,
    /// Direction of the subtree (0 backward, 1 forward), doublings done,
    /// leaves of the subtree built.
    dir: usize,
    depth: u32,
    leaves: u64,
    n_leapfrog: u32,
    sum_metro: f64,
    divergent: bool,
    moved: bool,
    done: bool,
}

impl Walk {
    fn new(d: usize, max_depth: u32) -> Self {
        let end = End {
            y: vec![0.0; d],
            p: vec![0.0; d],
            g: vec![0.0; d],
            e: 0.0,
        };
        Walk {
            d,
            max_depth,
            h0: 0.0,
            ends: [end.clone(), end.clone()],
            draw: end.clone(),
            sub_draw: end,
            rho: vec![0.0; d],
            log_w: 0.0,
            sub_log_w: f64::NEG_INFINITY,
            stack: Vec::new(),
            sizes: Vec::new(),
            p_adjacent: vec![0.0; d],
            scratch: vec![0.0; d],
            dir: 1,
            depth: 0,
            leaves: 0,
            n_leapfrog: 0,
            sum_metro: 0.0,
            divergent: false,
            moved: false,
            done: false,
        }
    }

    /// Starts a transition from `(y, g, e)` with momentum `cur.p` (drawn by
    /// the caller), then the first subtree (its start copied into `cur`).
    fn start(
        &mut self,
        (y, g, e): (&[f64], &[f64], f64),
        w: Option<&[f64]>,
        rng: &mut ChainRng,
        cur: &mut Cursor<'_>,
    ) {
        self.h0 = e + 0.5 * weighted_sq(ArrayView1::from(&*cur.p), w);
        for end in self.ends.iter_mut().chain([&mut self.draw]) {
            end.y.copy_from_slice(y);
            end.g.copy_from_slice(g);
            end.p.copy_from_slice(cur.p);
            end.e = e;
        }
        self.rho.copy_from_slice(cur.p);
        self.log_w = 0.0;
        self.depth = 0;
        self.n_leapfrog = 0;
        self.sum_metro = 0.0;
        self.divergent = false;
        self.moved = false;
        self.done = false;
        self.begin(rng, cur);
    }

    /// Starts a subtree: a fair coin for its direction, its start copied
    /// into `cur`.
    fn begin(&mut self, rng: &mut ChainRng, cur: &mut Cursor<'_>) {
        self.dir = usize::from(rng.random::<f64>() < 0.5);
        let end = &self.ends[self.dir];
        cur.y.copy_from_slice(&end.y);
        cur.p.copy_from_slice(&end.p);
        cur.g.copy_from_slice(&end.g);
        *cur.e = end.e;
        self.p_adjacent.copy_from_slice(&end.p);
        self.stack.clear();
        self.sizes.clear();
        self.sub_log_w = f64::NEG_INFINITY;
        self.leaves = 0;
    }

    /// The signed leapfrog step for the current subtree.
    fn signed(&self, eps: f64) -> f64 {
        if self.dir == 1 { eps } else { -eps }
    }

    /// Takes the leaf `cur` (one leapfrog step past the last): its weight,
    /// the subtree's draw, the U-turn checks of every binary part it
    /// completes; at the subtree's end, joins it to the trajectory.
    fn leaf(&mut self, rng: &mut ChainRng, cur: &mut Cursor<'_>, w: Option<&[f64]>) {
        let d = self.d;
        let finite = cur.e.is_finite() && cur.g.iter().all(|g| g.is_finite());
        let h = *cur.e + 0.5 * weighted_sq(ArrayView1::from(&*cur.p), w);
        let h = if finite && !h.is_nan() {
            h
        } else {
            f64::INFINITY
        };
        self.n_leapfrog += 1;
        let log_leaf = self.h0 - h;
        self.sum_metro += if log_leaf > 0.0 { 1.0 } else { log_leaf.exp() };
        if h - self.h0 >= DIVERGENCE_THRESHOLD {
            self.divergent = true;
            self.done = true;
            return;
        }
        let sub_log_w = log_sum_exp(&[self.sub_log_w, log_leaf]);
        let u: f64 = rng.random();
        if self.leaves == 0 || u < (log_leaf - sub_log_w).exp() {
            self.sub_draw.y.copy_from_slice(cur.y);
            self.sub_draw.g.copy_from_slice(cur.g);
            self.sub_draw.e = *cur.e;
        }
        self.sub_log_w = sub_log_w;
        for _ in 0..3 {
            self.stack.extend_from_slice(cur.p);
        }
        self.sizes.push(1);
        // Merge equal-sized parts: the lower (built first) and the upper.
        while self.sizes.len() >= 2
            && self.sizes[self.sizes.len() - 1] == self.sizes[self.sizes.len() - 2]
        {
            let k = self.sizes.len();
            let (lower, upper) = self.stack[(k - 2) * 3 * d..].split_at_mut(3 * d);
            let (l_rho, l_rest) = lower.split_at_mut(d);
            let (l_first, l_last) = l_rest.split_at(d);
            let (u_rho, u_rest) = upper.split_at(d);
            let (u_first, u_last) = u_rest.split_at(d);
            sum_into(&mut self.scratch, l_rho, u_first);
            let mut turn = turned(l_first, u_first, &self.scratch, w);
            sum_into(&mut self.scratch, u_rho, l_last);
            turn |= turned(l_last, u_last, &self.scratch, w);
            for (a, b) in l_rho.iter_mut().zip(u_rho) {
                *a += b;
            }
            turn |= turned(l_first, u_last, l_rho, w);
            if turn {
                self.done = true;
                return;
            }
            // The merged part: the lower's sum and first, the upper's last.
            let last = k * 3 * d;
            self.stack
                .copy_within(last - d..last, (k - 2) * 3 * d + 2 * d);
            self.stack.truncate((k - 1) * 3 * d);
            self.sizes.pop();
            *self.sizes.last_mut().expect("two parts") *= 2;
        }
        self.leaves += 1;
        if self.leaves == 1u64 << self.depth {
            self.join(rng, cur, w);
        }
    }

    /// Joins the finished subtree (one part on the stack) to the
    /// trajectory: the biased progressive draw, the U-turn checks of the
    /// whole and across the junction, then the next doubling or the end.
    fn join(&mut self, rng: &mut ChainRng, cur: &mut Cursor<'_>, w: Option<&[f64]>) {
        let d = self.d;
        let end = &mut self.ends[self.dir];
        end.y.copy_from_slice(cur.y);
        end.p.copy_from_slice(cur.p);
        end.g.copy_from_slice(cur.g);
        end.e = *cur.e;
        let u: f64 = rng.random();
        if u < (self.sub_log_w - self.log_w).exp() {
            std::mem::swap(&mut self.draw, &mut self.sub_draw);
            self.moved = true;
        }
        self.log_w = log_sum_exp(&[self.log_w, self.sub_log_w]);
        let (sub_rho, rest) = self.stack[..3 * d].split_at(d);
        let (sub_first, sub_last) = rest.split_at(d);
        let far = &self.ends[1 - self.dir].p;
        // The old trajectory with the subtree's first point, and the old
        // trajectory's adjacent end with the subtree.
        sum_into(&mut self.scratch, &self.rho, sub_first);
        let mut turn = turned(far, sub_first, &self.scratch, w);
        sum_into(&mut self.scratch, sub_rho, &self.p_adjacent);
        turn |= turned(&self.p_adjacent, sub_last, &self.scratch, w);
        for (r, s) in self.rho.iter_mut().zip(sub_rho) {
            *r += s;
        }
        turn |= turned(&self.ends[0].p, &self.ends[1].p, &self.rho, w);
        self.depth += 1;
        if turn || self.depth >= self.max_depth {
            self.done = true;
        } else {
            self.begin(rng, cur);
        }
    }

    /// The transition's outcome, with the draw written to `(y, g, e)`.
    fn finish(&self, (y, g, e): (&mut [f64], &mut [f64], &mut f64), step: &mut ChainStep) {
        if self.moved {
            y.copy_from_slice(&self.draw.y);
            g.copy_from_slice(&self.draw.g);
            *e = self.draw.e;
        }
        *step = ChainStep {
            divergent: self.divergent,
            tree_depth: self.depth,
            ..ChainStep::metropolis(
                self.sum_metro / f64::from(self.n_leapfrog.max(1)),
                self.moved,
            )
        };
    }
}

impl Kernel for Nuts {
    fn name(&self) -> &'static str {
        "nuts"
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
        let (n, d) = (state.n_chains(), state.dim());
        let mut walks: Vec<Walk> = (0..n).map(|_| Walk::new(d, self.max_depth)).collect();
        let eps: Vec<f64> = (0..n).map(|i| tuning.step_size().get(i)).collect();
        let st = &mut *state;
        for (i, walk) in walks.iter_mut().enumerate() {
            let mut p = st.momentum.row_mut(i);
            let p = p.as_slice_mut().expect("standard layout");
            draw_momentum(&mut rngs[i], p, tuning.inv_mass(i), 1.0, 0.0);
            let mut y = st.proposal.row_mut(i);
            let mut g = st.proposal_grad.row_mut(i);
            let mut cur = Cursor {
                y: y.as_slice_mut().expect("standard layout"),
                p,
                g: g.as_slice_mut().expect("standard layout"),
                e: &mut st.proposal_energy[i],
            };
            let start = (
                st.position.row(i).to_slice().expect("standard layout"),
                st.grad.row(i).to_slice().expect("standard layout"),
                st.energy[i],
            );
            walk.start(start, tuning.inv_mass(i), &mut rngs[i], &mut cur);
        }
        // Lockstep: one leapfrog step of every unfinished chain per batch
        // evaluation (finished chains' rows are evaluated where they are).
        let mut rounds = 0u32;
        if let Some(lf) = energy.as_leapfrog() {
            rounds = walk_segments(lf, &mut walks, st, &eps, tuning, rngs);
        }
        while walks.iter().any(|wk| !wk.done) {
            for (i, walk) in walks.iter().enumerate() {
                if !walk.done {
                    let mut p = st.momentum.row_mut(i);
                    let mut y = st.proposal.row_mut(i);
                    kick_drift(
                        p.as_slice_mut().expect("standard layout"),
                        y.as_slice_mut().expect("standard layout"),
                        st.proposal_grad.row(i).to_slice().expect("standard layout"),
                        walk.signed(eps[i]),
                        tuning.inv_mass(i),
                    );
                }
            }
            super::evaluate_proposals(energy, st, true);
            rounds += 1;
            for (i, walk) in walks.iter_mut().enumerate() {
                if walk.done {
                    continue;
                }
                let e = walk.signed(eps[i]);
                take_leaf(walk, st, i, &mut rngs[i], tuning.inv_mass(i), Some(e));
            }
        }
        for (i, walk) in walks.iter().enumerate() {
            let mut y = st.position.row_mut(i);
            let mut g = st.grad.row_mut(i);
            walk.finish(
                (
                    y.as_slice_mut().expect("standard layout"),
                    g.as_slice_mut().expect("standard layout"),
                    &mut st.energy[i],
                ),
                &mut steps[i],
            );
            steps[i].extra_evals = rounds.saturating_sub(1);
        }
    }

    fn initial_tuning(&self) -> Tuning {
        Tuning::new(self.step_size)
    }
    fn uses_mass(&self) -> bool {
        true
    }
    fn target_accept(&self) -> Option<f64> {
        Some(self.target)
    }
    fn grad_evals_per_step(&self) -> usize {
        1
    }
}

impl Nuts {
    /// Each chain's whole trajectory at once, for energies written row by
    /// row (the same draws as the lockstep path).
    fn step_rows(
        &self,
        energy: &dyn RowEnergy,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        let d = state.dim();
        for_each_chain_row(state, rngs, steps, |c| {
            // Each worker thread keeps one walk's buffers from step to step
            // (a walk starts from scratch whatever it held).
            WALK.with_borrow_mut(|slot| {
                let walk = match slot {
                    Some(walk) if walk.d == d => walk,
                    _ => slot.insert(Walk::new(d, self.max_depth)),
                };
                walk.max_depth = self.max_depth;
                self.walk_row(energy, tuning, tuning.inv_mass(c.index), walk, c);
            });
        });
    }

    /// One chain's transition on the row path.
    fn walk_row(
        &self,
        energy: &dyn RowEnergy,
        tuning: &Tuning,
        w: Option<&[f64]>,
        walk: &mut Walk,
        c: super::ChainRow<'_>,
    ) {
        let eps = tuning.step_size().get(c.index);
        draw_momentum(c.rng, c.scratch, w, 1.0, 0.0);
        let mut cur = Cursor {
            y: c.proposal,
            p: c.scratch,
            g: c.proposal_grad,
            e: c.proposal_energy,
        };
        walk.start((c.position, c.grad, *c.energy), w, c.rng, &mut cur);
        while !walk.done {
            let e = walk.signed(eps);
            kick_drift(cur.p, cur.y, cur.g, e, w);
            *cur.e = energy.energy_grad(cur.y, cur.g);
            kick(cur.p, cur.g, e);
            walk.leaf(c.rng, &mut cur, w);
        }
        walk.finish((c.position, c.grad, c.energy), c.step);
        c.step.extra_evals = walk.n_leapfrog.saturating_sub(1);
    }
}

thread_local! {
    /// The row path's walk buffers, one per worker thread.
    static WALK: std::cell::RefCell<Option<Walk>> = const { std::cell::RefCell::new(None) };
}
