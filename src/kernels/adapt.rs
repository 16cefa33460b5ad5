//! Warm-up adaptation: step sizes (by the rules of [`super::step_size`]),
//! diagonal mass matrix from warm-up variances in windows.

/// Running per-coordinate variance of warm-up draws, of one chain or
/// pooled over chains (Welford's algorithm, chains added in order, so
/// deterministic).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MassAdapter {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl MassAdapter {
    /// An empty window for states of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        MassAdapter {
            n: 0.0,
            mean: vec![0.0; dim],
            m2: vec![0.0; dim],
        }
    }

    /// Adds every chain's current position (rows of `positions`).
    pub fn add(&mut self, positions: ndarray::ArrayView2<f64>) {
        for row in positions.rows() {
            self.n += 1.0;
            for (j, &x) in row.iter().enumerate() {
                let d = x - self.mean[j];
                self.mean[j] += d / self.n;
                self.m2[j] += d * (x - self.mean[j]);
            }
        }
    }

    /// Number of draws added.
    pub fn count(&self) -> usize {
        self.n as usize
    }

    /// The inverse mass matrix: the sample variances, shrunk towards 1e-3
    /// as Stan does, `(n / (n + 5)) var + 1e-3 (5 / (n + 5))`.
    pub fn inv_mass(&self) -> Vec<f64> {
        let n = self.n;
        self.m2
            .iter()
            .map(|m2| {
                let var = if n > 1.0 { m2 / (n - 1.0) } else { 1.0 };
                let v = (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0));
                if v.is_finite() && v > 0.0 { v } else { 1.0 }
            })
            .collect()
    }
}

use super::step_size::{
    ChosenSteps, DualAveraging, GAMMA, StepAdapter, initial_step_sizes, start_dual,
};
use super::{
    ChainState, ChainStep, DenseAdapter, DenseMetric, InvMass, Kernel, StepSizes, Tuning, Whitened,
};
use crate::energy::Energy;
use crate::rng::ChainRng;

/// What warm-up adapts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Adaptation {
    /// Adapt step sizes by dual averaging towards the kernel's target acceptance.
    pub step_size: bool,
    /// One step shared by all chains (adapted on their mean acceptance)
    /// instead of one per chain.
    pub shared_step: bool,
    /// Adapt a diagonal inverse mass matrix (kernels that use one).
    pub mass: bool,
    /// One inverse mass for all chains, from their pooled warm-up draws,
    /// instead of one per chain from its own draws (the default: a run
    /// split into shards then adapts the same as the whole run).
    #[serde(default)]
    pub pooled_mass: bool,
    /// Where the mass windows lie.
    #[serde(default)]
    pub windows: MassWindows,
    /// Adapt a dense inverse mass instead of a diagonal (with `mass`): one
    /// for all chains, from the within-chain covariances of their draws
    /// and gradients ([`DenseAdapter`], as nutpie adapts); the chains move
    /// in its whitened coordinates ([`super::Whitened`]). For targets whose coordinates
    /// are strongly correlated, where a diagonal leaves a long ridge.
    #[serde(default)]
    pub dense_mass: bool,
}

/// Warm-up adaptation as a value apart from the kernel: it reads each
/// step's acceptance and the chains' positions and rewrites a [`Tuning`].
///
/// Schedule over `warmup` steps: with step-size adaptation each chain's
/// step starts from a doubling/halving search and follows its own dual
/// averaging (or one shared on the mean acceptance); with mass adaptation
/// each chain's inverse mass is estimated from the variances of its own
/// draws (or one from all chains' draws pooled) in the windows of
/// [`MassWindows`] (by default 15%-40% and 40%-90% of warm-up), the step
/// sizes being searched again and their dual averaging restarted after
/// each; the last steps tune the step sizes alone; at the end the averaged
/// steps are frozen.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tuner {
    warmup: usize,
    target: Option<f64>,
    shared: bool,
    adapt_mass: bool,
    #[serde(default)]
    pooled_mass: bool,
    dual: Option<Vec<DualAveraging>>,
    /// The current mass window: one adapter (pooled) or one per chain;
    /// empty before its first draws.
    mass: Vec<MassAdapter>,
    dim: usize,
    /// Kernels that choose their step at every step (AutoStep): whether
    /// warm-up sets the base step, and per chain the sum of the log steps
    /// chosen in the current round and their count.
    #[serde(default)]
    adapt_base: bool,
    #[serde(default)]
    chosen: Vec<ChosenSteps>,
    /// Where the mass windows lie (checkpoints written before the choice
    /// existed used the proportional windows).
    #[serde(default)]
    windows: MassWindows,
    /// A dense mass is adapted ([`Adaptation::dense_mass`]), its window
    /// in `dense_window` (and `mass` stays empty).
    #[serde(default)]
    dense: bool,
    #[serde(default)]
    dense_window: Option<DenseAdapter>,
}

/// Where warm-up's mass windows lie (the inverse mass is re-estimated at
/// the end of each window, the step searched again and its dual averaging
/// restarted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MassWindows {
    /// Two windows, 15%-40% and 40%-90% of warm-up (the default): long
    /// windows for kernels that take many cheap steps (MALA, HMC).
    #[default]
    Proportional,
    /// Stan's windows ([`mass_windows`]): 75 steps, then windows of 25,
    /// 50, 100, ... steps, the last 50 for the step alone. An early mass
    /// rescales an ill-conditioned target after 100 steps, which pays
    /// where each step is a long trajectory (NUTS: on W7's kidiq 0.67 M
    /// gradients against 1.61 M).
    Expanding,
}

impl MassWindows {
    /// The first window's start, then every window's end, for `warmup`
    /// steps (an iterator: warm-up asks at every step, without allocating).
    pub fn bounds(self, warmup: usize) -> WindowBounds {
        const INIT: usize = 75;
        const TERM: usize = 50;
        const BASE: usize = 25;
        let fixed = |b: &[usize]| {
            let mut f = [0; 3];
            f[..b.len()].copy_from_slice(b);
            WindowBounds {
                fixed: f,
                len: b.len(),
                i: 0,
                doubling: None,
            }
        };
        match self {
            MassWindows::Proportional => {
                fixed(&[warmup * 15 / 100, warmup * 40 / 100, warmup * 90 / 100])
            }
            MassWindows::Expanding if warmup < INIT + TERM + BASE => {
                fixed(&[warmup * 15 / 100, warmup * 90 / 100])
            }
            MassWindows::Expanding => WindowBounds {
                doubling: Some((INIT, BASE, warmup - TERM)),
                ..fixed(&[])
            },
        }
    }

    /// The windows named `name`.
    pub fn parse(name: &str) -> crate::Result<Self> {
        match name {
            "proportional" => Ok(MassWindows::Proportional),
            "expanding" => Ok(MassWindows::Expanding),
            _ => Err(crate::Error::param(
                "mass_windows",
                format!("unknown mass windows `{name}`: expected proportional or expanding"),
            )),
        }
    }
}

/// Stan's windowed adaptation of the mass matrix for `warmup` steps: the
/// first window's start, then every window's end. From 150 steps: 75
/// steps to reach the typical set, windows of 25, 50, 100, ... steps
/// (each twice the last; the last stretched to end 50 steps before
/// warm-up does), and 50 steps tuning the step alone. Below 150 steps:
/// one window from 15% to 90% of warm-up. A mass estimated early from a
/// short window serves while the next, longer one collects draws under
/// it, so an ill-conditioned target is rescaled after 100 steps instead
/// of running with a unit mass for most of warm-up.
pub fn mass_windows(warmup: usize) -> Vec<usize> {
    MassWindows::Expanding.bounds(warmup).collect()
}

/// The bounds of [`MassWindows::bounds`], one at a time.
#[derive(Clone, Copy, Debug)]
pub struct WindowBounds {
    /// A fixed list of bounds (the proportional windows, Stan's below 150
    /// steps): `fixed[i..len]` are still to come.
    fixed: [usize; 3],
    len: usize,
    i: usize,
    /// Stan's doubling windows: the next bound, the size of the window it
    /// starts, the last end.
    doubling: Option<(usize, usize, usize)>,
}

impl WindowBounds {
    /// No windows (warm-up without mass adaptation).
    fn none() -> Self {
        WindowBounds {
            fixed: [0; 3],
            len: 0,
            i: 0,
            doubling: None,
        }
    }
}

impl Iterator for WindowBounds {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if let Some((b, size, last)) = self.doubling {
            // Each window is twice the last; one whose successor would not
            // fit before `last` is stretched to end there.
            self.doubling = (b < last).then(|| {
                let end = if b + 3 * size > last { last } else { b + size };
                (end, 2 * size, last)
            });
            return Some(b);
        }
        (self.i < self.len).then(|| {
            self.i += 1;
            self.fixed[self.i - 1]
        })
    }
}

impl Tuner {
    /// Whether this tuner's state fits a run of `warmup` steps over
    /// `n_chains` chains of dimension `dim`, every number finite (checked
    /// when a checkpoint is resumed).
    pub fn fits(&self, warmup: usize, n_chains: usize, dim: usize) -> bool {
        let dual_ok = self.dual.as_ref().is_none_or(|d| {
            (d.len() == 1 || d.len() == n_chains)
                && d.iter().all(|a| {
                    [a.target, a.mu, a.log_step, a.log_step_bar, a.h_bar, a.t]
                        .iter()
                        .all(|v| v.is_finite())
                })
        });
        let count_ok = match self.mass.len() {
            0 => true,
            1 => self.pooled_mass || n_chains == 1,
            k => !self.pooled_mass && k == n_chains,
        };
        let mass_ok = count_ok
            && self.dim == dim
            && self.mass.iter().all(|m| {
                m.mean.len() == dim
                    && m.m2.len() == dim
                    && m.n.is_finite()
                    && m.n >= 0.0
                    && m.mean.iter().chain(&m.m2).all(|v| v.is_finite())
            });
        let chosen_ok = (self.chosen.is_empty() || self.chosen.len() == n_chains)
            && self.chosen.iter().all(|c| c.0.is_finite());
        let dense_ok = match &self.dense_window {
            None => true,
            Some(a) => self.dense && a.fits(n_chains, dim),
        } && (!self.dense || self.mass.is_empty());
        self.warmup == warmup && dual_ok && mass_ok && chosen_ok && dense_ok
    }

    /// The mass windows' first start and every end (none without mass
    /// adaptation).
    fn bounds(&self) -> WindowBounds {
        if self.adapt_mass {
            self.windows.bounds(self.warmup)
        } else {
            WindowBounds::none()
        }
    }

    /// Whether a mass window ends after step `t` (1-based count of steps).
    fn window_ends_at(&self, t: usize) -> bool {
        self.bounds().skip(1).any(|b| b == t)
    }

    /// Whether `tuning`'s step sizes are the ones this tuner set after `t`
    /// steps (bit for bit): after warm-up the averaged steps, during it
    /// the last dual-averaging steps. True where the tuner does not set
    /// them alone (no step adaptation, AutoStep base steps, the first step,
    /// the step that ends a mass window). A resumed checkpoint whose step
    /// sizes were edited is refused with this.
    fn steps_agree(&self, t: usize, tuning: &Tuning) -> bool {
        let (Some(da), false) = (&self.dual, self.adapt_base) else {
            return true;
        };
        let w = self.warmup;
        let window_end = self.window_ends_at(t);
        let expect: Vec<f64> = if w == 0 || t == 0 || (t < w && window_end) {
            return true;
        } else if t >= w {
            da.iter().map(DualAveraging::final_step_size).collect()
        } else {
            da.iter().map(DualAveraging::step_size).collect()
        };
        let steps = tuning.step_size().as_slice();
        steps.len() == expect.len()
            && steps
                .iter()
                .zip(&expect)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }

    /// Whether this tuner (a checkpoint's, after `t` steps of `chains`
    /// chains) is one `fresh` (the run's own, from [`Tuner::new`]) can have
    /// become: the same schedule and targets; each dual average aimed at
    /// the kernel's target, with as many updates as warm-up made since its
    /// last restart, an average error within its bounds and its current
    /// log step the one its other fields give (so that no field of it can
    /// be edited alone); a mass window of whole steps of all chains with
    /// non-negative sums of squares; and `tuning`'s step sizes the ones it
    /// set.
    pub fn agrees(&self, fresh: &Tuner, t: usize, chains: usize, tuning: &Tuning) -> bool {
        let same = (
            self.warmup,
            self.target,
            self.shared,
            self.adapt_mass,
            self.pooled_mass,
            self.adapt_base,
            self.windows,
            self.dense,
        ) == (
            fresh.warmup,
            fresh.target,
            fresh.shared,
            fresh.adapt_mass,
            fresh.pooled_mass,
            fresh.adapt_base,
            fresh.windows,
            fresh.dense,
        );
        let w = self.warmup;
        let done = t.min(w);
        let restart = self
            .bounds()
            .skip(1)
            .filter(|r| *r >= 1 && *r <= done)
            .max()
            .unwrap_or(0);
        let dual_ok = match (&self.dual, self.target) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(da), Some(tg)) => da.iter().all(|d| {
                let log_step = (d.mu - d.t.sqrt() / GAMMA * d.h_bar).clamp(-700.0, 700.0);
                d.target.to_bits() == tg.to_bits()
                    && d.t == (done - restart) as f64
                    && d.h_bar >= tg - 1.0
                    && d.h_bar <= tg
                    && (d.t == 0.0 || d.log_step.to_bits() == log_step.to_bits())
            }),
        };
        // Each window holds whole steps: all chains' rows (pooled) or one
        // row a step (per chain), as many in every chain.
        let per = if self.pooled_mass { chains.max(1) } else { 1 };
        let first = self.mass.first().map_or(0.0, |m| m.n);
        let rows = first / per as f64;
        let mass_ok = rows.fract() == 0.0
            && rows <= done as f64
            && self
                .mass
                .iter()
                .all(|m| m.n == first && m.m2.iter().all(|v| *v >= 0.0))
            && self.dense_window.as_ref().is_none_or(|a| a.count() <= done);
        same && dual_ok && mass_ok && self.steps_agree(t, tuning)
    }

    /// A tuner for `warmup` steps of `kernel` on states of dimension `dim`,
    /// and the tuning the run starts from (the kernel's initial tuning,
    /// with a unit inverse mass when the mass is adapted).
    pub fn new(
        kernel: &dyn Kernel,
        adaptation: Adaptation,
        warmup: usize,
        dim: usize,
    ) -> (Self, Tuning) {
        let target = kernel
            .target_accept()
            .filter(|_| adaptation.step_size && warmup > 0);
        let adapt_mass = adaptation.mass && warmup >= 20 && kernel.uses_mass();
        let mut tuning = kernel.initial_tuning();
        if adapt_mass && !adaptation.dense_mass {
            tuning = tuning
                .with_inv_mass(vec![1.0; dim])
                .expect("ones are valid");
        }
        tuning.set_warmup(warmup > 0 && kernel.chooses_step());
        let tuner = Tuner {
            warmup,
            target,
            shared: adaptation.shared_step,
            adapt_mass,
            pooled_mass: adaptation.pooled_mass,
            dual: None,
            mass: Vec::new(),
            dim,
            adapt_base: kernel.chooses_step() && adaptation.step_size && warmup > 0,
            chosen: Vec::new(),
            windows: adaptation.windows,
            dense: adapt_mass && adaptation.dense_mass,
            dense_window: None,
        };
        (tuner, tuning)
    }

    /// Searches the initial step sizes at the starting state (no chain
    /// moves; the streams are copied). `energy` is the target itself, and
    /// `state` in the tuning's whitened coordinates if it has a dense mass.
    pub fn start(
        &mut self,
        kernel: &dyn Kernel,
        energy: &dyn Energy,
        state: &ChainState,
        rngs: &[ChainRng],
        tuning: &mut Tuning,
    ) {
        if let Some(t) = self.target {
            self.dual = Some(start_dual(
                initial_step_sizes(kernel, energy, state, rngs, t, tuning),
                t,
                self.shared,
            ));
        }
    }

    /// Feeds warm-up step `t` (0-based; the chains have moved and `steps`
    /// holds their records) and updates `tuning`. `energy` is the target
    /// itself; where a window sets a new dense mass, `state` moves into its
    /// coordinates (re-evaluated there: one evaluation per chain).
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        t: usize,
        kernel: &dyn Kernel,
        energy: &dyn Energy,
        state: &mut ChainState,
        rngs: &[ChainRng],
        steps: &[ChainStep],
        tuning: &mut Tuning,
    ) {
        let w = self.warmup;
        let mut bounds = self.bounds();
        let (first, last) = match bounds.next() {
            Some(a) => (a, bounds.last().unwrap_or(a)),
            None => (w, w),
        };
        let window_end = self.window_ends_at(t + 1);
        if let (Some(da), Some(tg)) = (self.dual.as_mut(), self.target) {
            let eps: Vec<f64> = if self.shared {
                vec![da[0].update(super::mean_accept(steps))]
            } else {
                da.iter_mut()
                    .zip(steps)
                    .map(|(d, s)| d.update(s.accept_prob))
                    .collect()
            };
            tuning.set_step_size(StepSizes::per_chain(eps));
            if window_end {
                let windows = (self.dense, &mut self.mass, &mut self.dense_window);
                Self::close_window(windows, energy, state, tuning);
                let eps = initial_step_sizes(kernel, energy, state, rngs, tg, tuning);
                *da = start_dual(eps, tg, self.shared);
            }
            if t + 1 == w {
                tuning.set_step_size(StepSizes::per_chain(
                    da.iter().map(DualAveraging::final_step_size).collect(),
                ));
            }
        } else if window_end {
            let windows = (self.dense, &mut self.mass, &mut self.dense_window);
            Self::close_window(windows, energy, state, tuning);
        }
        if self.adapt_mass && t >= first && t < last {
            match tuning.dense() {
                _ if !self.dense => self.add_window(state.position.view()),
                Some(m) => {
                    let y = m.to_state(state.position.view());
                    self.add_dense(y.view(), m.grad_to_state(state.grad.view()).view());
                }
                None => self.add_dense(state.position.view(), state.grad.view()),
            }
        }
        if self.adapt_base {
            self.base_step(t, steps, tuning);
        }
        // The fast, inexact moves serve the first 15% of warm-up (reaching
        // the typical set from far starts); the rest runs the exact kernel,
        // whose signed search would otherwise leave chains where the
        // energy is lowest (a funnel's neck) rather than where they belong.
        if t + 1 >= (w * 15 / 100).max(1) {
            tuning.set_warmup(false);
        }
    }

    /// Adds the chains' positions and gradients (state coordinates) to
    /// the dense window.
    fn add_dense(&mut self, y: ndarray::ArrayView2<f64>, g: ndarray::ArrayView2<f64>) {
        let (n, d) = y.dim();
        self.dense_window
            .get_or_insert_with(|| DenseAdapter::new(n, d))
            .add(y, g);
    }

    /// Ends a mass window: a diagonal mass goes into `tuning`
    /// ([`end_window`]); a dense one too, the chains moving into its
    /// coordinates. A dense window whose covariance is not positive
    /// definite leaves the mass as it was.
    fn close_window(
        (dense, mass, window): (bool, &mut Vec<MassAdapter>, &mut Option<DenseAdapter>),
        energy: &dyn Energy,
        state: &mut ChainState,
        tuning: &mut Tuning,
    ) {
        if !dense {
            return end_window(mass, tuning);
        }
        let Some(metric) = window.take().and_then(|a| a.metric()) else {
            return;
        };
        if let Some(moved) = rebase(energy, state, tuning.dense(), &metric) {
            *state = moved;
            tuning.set_dense(metric);
        }
    }

    /// Adds the chains' positions to the mass window: all rows to the one
    /// pooled adapter, or each row to its chain's.
    fn add_window(&mut self, positions: ndarray::ArrayView2<f64>) {
        let n = positions.nrows();
        let k = if self.pooled_mass { 1 } else { n };
        if self.mass.len() != k {
            self.mass = vec![MassAdapter::new(self.dim); k];
        }
        if self.pooled_mass {
            self.mass[0].add(positions);
        } else {
            for (i, m) in self.mass.iter_mut().enumerate() {
                m.add(positions.slice(ndarray::s![i..i + 1, ..]));
            }
        }
    }

    /// AutoStep kernels: the base step of each chain becomes the geometric
    /// mean of the steps it chose in the round just ended (rounds end at
    /// 15% of warm-up, where the [`MassWindows`] end and at its end), as the
    /// autoMALA paper's round-based warm-up does; with a shared step, of
    /// all chains' choices. Kernels that choose no step leave it alone.
    fn base_step(&mut self, t: usize, steps: &[ChainStep], tuning: &mut Tuning) {
        if self.chosen.len() != steps.len() {
            self.chosen = vec![ChosenSteps::default(); steps.len()];
        }
        for (c, s) in self.chosen.iter_mut().zip(steps) {
            c.add(s);
        }
        let w = self.warmup;
        let round_end = [w * 15 / 100, w].contains(&(t + 1))
            || self.windows.bounds(w).skip(1).any(|b| b == t + 1);
        if !round_end || self.chosen.iter().all(|c| c.1 == 0) {
            return;
        }
        let eps = if self.shared {
            let all = self
                .chosen
                .iter()
                .fold(ChosenSteps::default(), |a, c| a.merge(*c));
            match all.geometric_mean() {
                Some(m) => vec![m],
                None => return,
            }
        } else {
            let old = tuning.step_size().expand(steps.len());
            self.chosen
                .iter()
                .zip(old)
                .map(|(c, e)| c.geometric_mean().unwrap_or(e))
                .collect()
        };
        tuning.set_step_size(StepSizes::per_chain(eps));
        self.chosen
            .iter_mut()
            .for_each(|c| *c = ChosenSteps::default());
    }
}

/// `state` (in `old`'s whitened coordinates, or the target's without
/// one) moved into `new`'s and evaluated there; `None` if a chain's energy
/// there is not finite.
fn rebase(
    energy: &dyn Energy,
    state: &ChainState,
    old: Option<&DenseMetric>,
    new: &DenseMetric,
) -> Option<ChainState> {
    let y = match old {
        Some(m) => m.to_state(state.position.view()),
        None => state.position.clone(),
    };
    let z = new.to_whitened(y.view());
    ChainState::new(&Whitened::new(energy, new), z).ok()
}

/// Ends a mass window: its inverse mass (one, or one per chain) goes
/// into `tuning` and the window starts empty.
fn end_window(mass: &mut Vec<MassAdapter>, tuning: &mut Tuning) {
    let rows: Vec<Vec<f64>> = mass.iter().map(MassAdapter::inv_mass).collect();
    // Every entry is finite and > 0 (MassAdapter::inv_mass falls back to 1).
    if let Ok(m) = match rows.len() {
        0 => return,
        1 => InvMass::shared(rows.concat()),
        _ => InvMass::per_chain(&rows),
    } {
        tuning.set_inv_mass(m);
    }
    mass.clear();
}
