//! Annealing paths: the geometric path between a base and any energy, and
//! the RBM parameter path, behind one trait the AIS pass drives.

use super::annealed::{Annealed, AnnealedRows, Parts, Temps, mix_parts};
use super::{AisConfig, Base};
use crate::energy::{Energy, Rbm, Scaled, softplus, sum_softplus};
use crate::error::{Error, Result};
use crate::kernels::{ChainState, ChainStep, Kernel, Tuning};
use crate::rng::ChainRng;
use ndarray::{Array1, Array2, ArrayView2};

/// A path of distributions `f_b`, `b` in [0, 1], from a normalised start
/// (`log Z` known) to the target, with a transition that leaves each `f_b`
/// invariant. The pass caches what increments need at the current
/// positions ([`AnnealPath::prepare`]) and moves the particles with
/// [`AnnealPath::transition`].
/// What the transitions of one temperature add up: energy evaluations
/// (rows), divergent moves, and the acceptance summed exactly.
#[derive(Default)]
pub(crate) struct MoveTally {
    pub evals: u64,
    pub divergences: usize,
    pub accepted: crate::tally::Acceptance,
}

pub(crate) trait AnnealPath {
    /// Caches what increments and refreshes need at the current positions.
    fn prepare(&mut self, x: ArrayView2<f64>, evals: &mut u64);
    /// Marks the cached values stale (positions changed outside a transition).
    fn invalidate(&mut self);
    /// Whether the cache is valid for the current positions (so the next
    /// [`AnnealPath::prepare`] costs nothing). A resumed pass rebuilds a
    /// cache that was fresh at the checkpoint without counting evaluations,
    /// so that its counts equal the uninterrupted run's.
    fn is_fresh(&self) -> bool {
        false
    }
    /// `log f_{b_to}(x) - log f_{b_from}(x)` for every particle, from the cache.
    fn increment(&self, b_from: f64, b_to: f64, out: &mut [f64]);
    /// Sets the state's cached energy and gradient to the path's at `b`.
    fn refresh(&self, state: &mut ChainState, b: f64);
    /// Runs `n_steps` transitions at `b` with `tuning` (step size and
    /// diagonal inverse mass); returns the mean acceptance and adds the
    /// evaluations, divergences and exact acceptance to `tally`.
    #[allow(clippy::too_many_arguments)]
    fn transition(
        &mut self,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
        b: f64,
        tuning: &Tuning,
        n_steps: usize,
        tally: &mut MoveTally,
    ) -> f64;
    /// Whether the transition reads a diagonal inverse mass.
    fn uses_mass(&self) -> bool {
        false
    }
    /// The acceptance rate the pilot tunes step sizes towards, if any.
    fn target_accept(&self) -> Option<f64>;
    /// Whether the kernel chooses its step at every step from a base step
    /// (the AutoStep kernels): the pilot then sets each temperature's base
    /// step to the geometric mean of the steps chosen there.
    fn chooses_step(&self) -> bool {
        false
    }
    /// `log Z` of the path's start.
    fn log_z0(&self) -> f64;
}

/// `log Z` of the start of the path AIS takes for `energy` from `base`:
/// 0 for the geometric path (the base is normalised); for an RBM from a
/// Bernoulli base (the parameter path) the base's visibles and the free
/// hidden units, `sum softplus(logit) + H ln 2`.
pub(crate) fn start_log_z(energy: &dyn Energy, base: &Base) -> f64 {
    match (energy.as_rbm(), base) {
        (Some((rbm, _)), Base::Bernoulli { logit }) => {
            logit.iter().map(|&l| softplus(l)).sum::<f64>()
                + rbm.n_hidden() as f64 * std::f64::consts::LN_2
        }
        _ => 0.0,
    }
}

/// `f_b = p0^(1-b) exp(-b beta F)` with any kernel.
struct Geometric<'a> {
    target: Scaled<'a>,
    base: &'a Base,
    kernel: Box<dyn Kernel>,
    f: Array1<f64>,
    e0: Array1<f64>,
    gf: Array2<f64>,
    g0: Array2<f64>,
    grad: bool,
    /// Parts of the last proposals' energies (see [`Parts`]).
    parts: std::sync::Mutex<Parts>,
    /// Whether `f`, `e0`, `gf`, `g0` hold the current positions' values
    /// (kept up to date through transitions; lost on resampling).
    fresh: bool,
}

/// The RBM parameter path (Salakhutdinov & Murray 2008): weights and
/// hidden biases scaled by `b`, visible biases interpolated from the
/// Bernoulli base's logits; block Gibbs transitions.
struct RbmPath {
    rbm: Rbm,
    base_logit: Array1<f64>,
    act: Array2<f64>,
    dv: Array1<f64>,
}

/// The path for `energy` from `base` for `n` particles: the RBM parameter
/// path when the energy is an RBM and the base Bernoulli (the kernel must
/// then be Gibbs), else the geometric path with the configured kernel.
pub(crate) fn make_path<'p>(
    energy: &'p dyn Energy,
    base: &'p Base,
    config: &AisConfig,
    n: usize,
) -> Result<Box<dyn AnnealPath + 'p>> {
    let spec = config.kernel_spec(energy);
    spec.check(energy)?;
    if let (Some((rbm, b0)), Base::Bernoulli { logit }) = (energy.as_rbm(), base) {
        let b = config.beta * b0;
        let scaled = if b == 1.0 {
            rbm.clone()
        } else {
            rbm.scaled(b)?
        };
        return Ok(Box::new(RbmPath {
            base_logit: Array1::from(logit.clone()),
            act: Array2::zeros((n, rbm.n_hidden())),
            dv: Array1::zeros(n),
            rbm: scaled,
        }));
    }
    if base.space() != energy.space() {
        return Err(Error::param(
            "AIS base",
            "binary states need a Bernoulli base, continuous ones a Gaussian base",
        ));
    }
    let kernel = spec.build()?;
    let grad = kernel.grad_evals_per_step() > 0;
    let gd = if grad { (n, energy.dim()) } else { (0, 0) };
    Ok(Box::new(Geometric {
        target: Scaled::new(energy, config.beta)?,
        base,
        kernel,
        f: Array1::zeros(n),
        e0: Array1::zeros(n),
        gf: Array2::zeros(gd),
        g0: Array2::zeros(gd),
        grad,
        parts: std::sync::Mutex::new(Parts::default()),
        fresh: false,
    }))
}

impl AnnealPath for Geometric<'_> {
    fn prepare(&mut self, x: ArrayView2<f64>, evals: &mut u64) {
        if self.fresh {
            return;
        }
        self.fresh = true;
        *evals += x.nrows() as u64;
        if self.grad {
            self.target
                .energy_grad_batch(x, self.f.view_mut(), self.gf.view_mut());
            self.base
                .energy_grad_batch(x, self.e0.view_mut(), self.g0.view_mut());
        } else {
            self.target.energy_batch(x, self.f.view_mut());
            self.base.energy_batch(x, self.e0.view_mut());
        }
    }

    fn invalidate(&mut self) {
        self.fresh = false;
    }

    fn is_fresh(&self) -> bool {
        self.fresh
    }

    fn increment(&self, b_from: f64, b_to: f64, out: &mut [f64]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = -(b_to - b_from) * (self.f[i] - self.e0[i]);
        }
    }

    fn refresh(&self, state: &mut ChainState, b: f64) {
        let grads = self.grad.then_some((&self.gf, &self.g0));
        let g = self.grad.then(|| state.grad.view_mut());
        mix_parts(
            Temps::One(b),
            &self.f,
            &self.e0,
            grads,
            state.energy.view_mut(),
            g,
        );
    }

    fn transition(
        &mut self,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
        b: f64,
        tuning: &Tuning,
        n_steps: usize,
        tally: &mut MoveTally,
    ) -> f64 {
        let reuse = self.kernel.proposal_is_last_eval();
        let mut acc = 0.0;
        // Kernels that evaluate other points after the proposals (NUTS,
        // the AutoStep searches) take the path row by row where they can.
        for _ in 0..n_steps {
            let rows = if reuse {
                None
            } else {
                AnnealedRows::new(&self.target, self.base, b)
            };
            match rows {
                Some(rows) => self.kernel.step(&rows, tuning, state, rngs, steps),
                None => {
                    let annealed = Annealed::with_parts(&self.target, self.base, b, &self.parts);
                    self.kernel.step(&annealed, tuning, state, rngs, steps);
                }
            }
            tally.evals += (state.n_chains() * self.kernel.grad_evals_per_step().max(1)) as u64
                + steps.iter().map(|s| u64::from(s.extra_evals)).sum::<u64>();
            if reuse {
                self.take_accepted(steps);
            } else {
                self.fresh = false;
            }
            acc += crate::kernels::mean_accept(steps);
            tally
                .accepted
                .add_probabilities(steps.iter().map(|s| s.accept_prob));
            tally.divergences += steps.iter().filter(|s| s.divergent).count();
        }
        acc / n_steps as f64
    }

    fn target_accept(&self) -> Option<f64> {
        self.kernel.target_accept()
    }
    fn uses_mass(&self) -> bool {
        self.kernel.uses_mass()
    }
    fn chooses_step(&self) -> bool {
        self.kernel.chooses_step()
    }

    fn log_z0(&self) -> f64 {
        0.0
    }
}

impl Geometric<'_> {
    /// Accepted proposals bring their parts along: the next temperature's
    /// increments need no new evaluation.
    fn take_accepted(&mut self, steps: &[ChainStep]) {
        let p = self.parts.get_mut().expect("not poisoned");
        let n = self.f.len();
        let with_grad = p.gf.nrows() == n && self.gf.nrows() == n;
        for (i, s) in steps.iter().enumerate() {
            if s.accepted {
                self.f[i] = p.f[i];
                self.e0[i] = p.e0[i];
                if with_grad {
                    self.gf.row_mut(i).assign(&p.gf.row(i));
                    self.g0.row_mut(i).assign(&p.g0.row(i));
                }
            }
        }
        self.fresh = self.fresh && (with_grad || self.gf.is_empty());
    }
}

impl AnnealPath for RbmPath {
    fn prepare(&mut self, x: ArrayView2<f64>, evals: &mut u64) {
        *evals += x.nrows() as u64;
        self.act = self.rbm.hidden_activations(x);
        self.dv = x.dot(&(&self.rbm.visible_bias() - &self.base_logit));
    }

    fn invalidate(&mut self) {}

    fn increment(&self, b_from: f64, b_to: f64, out: &mut [f64]) {
        use rayon::prelude::*;
        out.par_iter_mut().enumerate().for_each(|(i, o)| {
            let a = self.act.row(i);
            let sp = sum_softplus(a.iter().map(|&v| b_to * v))
                - sum_softplus(a.iter().map(|&v| b_from * v));
            *o = (b_to - b_from) * self.dv[i] + sp;
        });
    }

    fn refresh(&self, _state: &mut ChainState, _b: f64) {}

    fn transition(
        &mut self,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
        b: f64,
        _tuning: &Tuning,
        n_steps: usize,
        tally: &mut MoveTally,
    ) -> f64 {
        for step_index in 0..n_steps {
            // The first sweep reuses the activations `prepare` computed at
            // these positions (the pass prepares right before).
            let cached = (step_index == 0).then(|| self.act.view());
            self.rbm.gibbs_sweep_from(
                state.position.view_mut(),
                rngs,
                b,
                Some(self.base_logit.view()),
                cached,
            );
            tally.evals += state.n_chains() as u64;
        }
        tally
            .accepted
            .add_exact((state.n_chains() * n_steps) as u64);
        steps.iter_mut().for_each(|s| *s = ChainStep::exact());
        1.0
    }

    fn target_accept(&self) -> Option<f64> {
        None
    }

    fn log_z0(&self) -> f64 {
        self.base_logit.iter().map(|&l| softplus(l)).sum::<f64>()
            + self.rbm.n_hidden() as f64 * std::f64::consts::LN_2
    }
}
