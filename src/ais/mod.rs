//! Annealed importance sampling: log Z with error bars, reverse AIS upper
//! bounds, annealed SMC, and log P(y|x).
//!
//! Forward AIS (Neal 2001) draws `x_0` from a normalised base `p0`, moves
//! it through `f_b(y) = p0(y)^(1-b) exp(-b beta F(y))` for
//! `0 = b_0 < ... < b_T = 1` with a kernel that leaves each `f_{b_k}`
//! invariant, and weights it by `log w = sum_k log f_{b_k}(x_{k-1}) - log f_{b_{k-1}}(x_{k-1})`.
//! `Z_hat = mean(w)` is unbiased for `Z`; `log Z_hat` is biased low
//! (Jensen): `E[log Z_hat] ~ log Z - stderr^2 / 2`, so with a reported
//! standard error of 0.1 expect about 0.005 nats of downward bias; with
//! weights whose ESS/N is tiny the bias can be far larger than the
//! standard error suggests, which is why a warning is raised when ESS/N < 0.1.
//!
//! RBMs anneal along the parameter path of Salakhutdinov & Murray (2008):
//! weights and hidden biases scaled by `b`, visible biases interpolated from
//! the base-rate model's, with block Gibbs transitions.
//!
//! Everything is in log space and in f64; particle `i` uses its own stream
//! `(seed, i)` and sums run in particle order, so the result is
//! bit-identical for any thread count.

mod base;
mod schedule;

pub use base::Base;
pub use schedule::{Schedule, respace};

use crate::energy::{
    ConditionalEnergy, Conditioned, Energy, Rbm, Scaled, log_sum_exp, softplus, sum_softplus,
};
use crate::error::{Error, Result};
use crate::kernels::{ChainState, ChainStep, Hmc, Kernel, Mala, Rwm, StepSizes};
use crate::rng::{ChainRng, aux_rng, chain_rngs};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, s};
use rand::RngExt;
use std::sync::Arc;
use std::time::Instant;

/// `(1 - b) E0 + b E`: the geometric path's energy at `b` between a base
/// and a target energy `E` (already multiplied by beta). An [`Energy`], so
/// every kernel anneals unchanged.
pub struct Annealed<'a> {
    target: &'a dyn Energy,
    base: &'a Base,
    b: f64,
    parts: Option<&'a std::sync::Mutex<Parts>>,
}

/// The target's and the base's energies (and gradients) of the last batch
/// an [`Annealed`] energy evaluated, kept apart so that the AIS driver can
/// reuse those of accepted proposals instead of evaluating them again.
#[derive(Default)]
struct Parts {
    f: Array1<f64>,
    gf: Array2<f64>,
    e0: Array1<f64>,
    g0: Array2<f64>,
}

impl Parts {
    fn resize(&mut self, n: usize, d: usize, grad: bool) {
        if self.f.len() != n {
            self.f = Array1::zeros(n);
            self.e0 = Array1::zeros(n);
        }
        let gd = if grad { (n, d) } else { (0, 0) };
        if self.gf.dim() != gd {
            self.gf = Array2::zeros(gd);
            self.g0 = Array2::zeros(gd);
        }
    }
}

impl<'a> Annealed<'a> {
    /// The path's energy at `b` in [0, 1].
    pub fn new(target: &'a dyn Energy, base: &'a Base, b: f64) -> Self {
        Annealed {
            target,
            base,
            b,
            parts: None,
        }
    }

    /// Same, keeping the target's and base's parts of each batch in `parts`.
    fn with_parts(
        target: &'a dyn Energy,
        base: &'a Base,
        b: f64,
        parts: &'a std::sync::Mutex<Parts>,
    ) -> Self {
        Annealed {
            target,
            base,
            b,
            parts: Some(parts),
        }
    }
}

/// The geometric path's energy (and gradient) at `b` from its parts:
/// `b F + (1 - b) E0`, the same arithmetic as `Base::mix_into`, so the
/// same bits. Serves proposals ([`Annealed`]) and current positions
/// (`Path::refresh`).
fn mix_parts(
    b: f64,
    f: &Array1<f64>,
    e0: &Array1<f64>,
    grads: Option<(&Array2<f64>, &Array2<f64>)>,
    mut energy: ArrayViewMut1<f64>,
    grad: Option<ArrayViewMut2<f64>>,
) {
    let a = 1.0 - b;
    ndarray::Zip::from(&mut energy)
        .and(f)
        .and(e0)
        .for_each(|e, &f, &e0| *e = b * f + a * e0);
    if let (Some(mut g), Some((gf, g0))) = (grad, grads) {
        ndarray::Zip::from(&mut g)
            .and(gf)
            .and(g0)
            .par_for_each(|g, &f, &e0| *g = b * f + a * e0);
    }
}

impl Energy for Annealed<'_> {
    fn dim(&self) -> usize {
        self.target.dim()
    }
    fn energy_batch(&self, y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>) {
        if let Some(parts) = self.parts {
            let mut p = parts.lock().expect("not poisoned");
            p.resize(y.nrows(), y.ncols(), false);
            self.target.energy_batch(y, p.f.view_mut());
            self.base.energy_batch(y, p.e0.view_mut());
            mix_parts(self.b, &p.f, &p.e0, None, energy, None);
            return;
        }
        self.target.energy_batch(y, energy.view_mut());
        self.base.mix_into(y, energy, None, self.b);
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        if let Some(parts) = self.parts {
            let mut p = parts.lock().expect("not poisoned");
            p.resize(y.nrows(), y.ncols(), true);
            let p = &mut *p;
            self.target
                .energy_grad_batch(y, p.f.view_mut(), p.gf.view_mut());
            self.base
                .energy_grad_batch(y, p.e0.view_mut(), p.g0.view_mut());
            mix_parts(
                self.b,
                &p.f,
                &p.e0,
                Some((&p.gf, &p.g0)),
                energy,
                Some(grad),
            );
            return;
        }
        self.target
            .energy_grad_batch(y, energy.view_mut(), grad.view_mut());
        self.base.mix_into(y, energy, Some(grad), self.b);
    }
    fn space(&self) -> crate::energy::StateSpace {
        self.target.space()
    }
    fn fixed_rows(&self) -> Option<usize> {
        self.target.fixed_rows()
    }
}

/// The transition used at each temperature.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AisKernel {
    /// Metropolis-adjusted Langevin.
    Mala,
    /// HMC with this many leapfrog steps.
    Hmc(usize),
    /// Random-walk Metropolis.
    Rwm,
    /// Block Gibbs on the tempered RBM (RBMs only), or single-site heat-bath
    /// Gibbs on the geometric path for other binary energies.
    Gibbs,
}

/// How temperatures are chosen.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ScheduleChoice {
    /// A fixed schedule of `temps` steps.
    Fixed(Schedule),
    /// Chosen by a pilot run so that each step keeps the conditional ESS of
    /// the incremental weights at `cess` (e.g. 0.995), then respaced to
    /// `temps` steps and frozen for the estimating run (which therefore
    /// stays unbiased in Z).
    Adaptive {
        /// Target conditional ESS per step, in (0, 1).
        cess: f64,
    },
}

/// Settings of an AIS run. [`AisConfig::new`] gives boltz's defaults.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AisConfig {
    /// Particles per context (>= 1).
    pub particles: usize,
    /// Annealing steps T (>= 1).
    pub temps: usize,
    /// The temperature schedule.
    pub schedule: ScheduleChoice,
    /// The transition kernel.
    pub kernel: AisKernel,
    /// Transitions per temperature (>= 1).
    pub steps_per_temp: usize,
    /// A fixed step size; `None` = one per temperature, tuned by a pilot
    /// run towards the kernel's usual acceptance and then frozen.
    pub step_size: Option<f64>,
    /// Inverse temperature of the target `exp(-beta F)` (> 0).
    pub beta: f64,
    /// The run's seed.
    pub seed: u64,
    /// Resample (annealed SMC) when a context's ESS/N falls below this; `None` = plain AIS.
    pub resample_threshold: Option<f64>,
    /// Independent repeats, each reported separately (0 = none beyond the main run).
    pub repeats: usize,
    /// Bootstrap resamples of the weights for a second standard error (0 = none).
    pub bootstrap: usize,
    /// Particles of the pilot run (tuning steps and adaptive temperatures).
    pub pilot_particles: usize,
}

impl AisConfig {
    /// boltz's defaults: 1024 particles, 1000 temperatures on a sigmoid
    /// schedule, one MALA step per temperature with pilot-tuned step sizes.
    pub fn new() -> Self {
        AisConfig {
            particles: 1024,
            temps: 1000,
            schedule: ScheduleChoice::Fixed(Schedule::Sigmoid),
            kernel: AisKernel::Mala,
            steps_per_temp: 1,
            step_size: None,
            beta: 1.0,
            seed: 0,
            resample_threshold: None,
            repeats: 0,
            bootstrap: 0,
            pilot_particles: 256,
        }
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        if self.particles == 0 {
            return Err(Error::param("particles", "must be >= 1"));
        }
        if self.temps == 0 {
            return Err(Error::param("temps", "must be >= 1"));
        }
        if self.steps_per_temp == 0 {
            return Err(Error::param("steps-per-temp", "must be >= 1"));
        }
        if self.pilot_particles == 0 {
            return Err(Error::param("pilot particles", "must be >= 1"));
        }
        crate::error::check_positive("beta", self.beta)?;
        if let Some(s) = self.step_size {
            crate::error::check_positive("step-size", s)?;
        }
        if let Some(r) = self.resample_threshold
            && !(r > 0.0 && r <= 1.0)
        {
            return Err(Error::param(
                "resample threshold",
                format!("must be in (0, 1], got {r}"),
            ));
        }
        if let ScheduleChoice::Adaptive { cess } = self.schedule
            && !(cess > 0.0 && cess < 1.0)
        {
            return Err(Error::param(
                "cess",
                format!("must be in (0, 1), got {cess}"),
            ));
        }
        if let AisKernel::Hmc(0) = self.kernel {
            return Err(Error::param(
                "leapfrog",
                "HMC needs at least one leapfrog step",
            ));
        }
        Ok(())
    }
}

impl Default for AisConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// One log Z estimate with its error bar.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// `log Z_hat` (natural log).
    pub log_z: f64,
    /// Standard error of `log Z_hat` by the delta method on the normalised
    /// weights, `sqrt(1/ESS - 1/N)` (summed in quadrature over resampling stages).
    pub stderr: f64,
    /// Effective sample size of the final weights, `(sum w)^2 / sum w^2`.
    pub ess: f64,
    /// Particles.
    pub n: usize,
}

/// What an AIS run returns.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AisResult {
    /// One estimate per context (one in total for an unconditional model).
    pub estimates: Vec<Estimate>,
    /// Bootstrap standard errors per context, if asked for.
    pub bootstrap_stderr: Option<Vec<f64>>,
    /// Estimates of the independent repeats (repeat r, then context).
    pub repeats: Vec<Vec<Estimate>>,
    /// Final log-weights, (contexts, particles).
    #[serde(skip)]
    pub log_weights: Array2<f64>,
    /// The inverse temperatures used.
    #[serde(skip)]
    pub betas: Vec<f64>,
    /// The step size used at each temperature (empty for Gibbs).
    #[serde(skip)]
    pub step_sizes: Vec<f64>,
    /// Mean acceptance over temperatures and particles.
    pub acceptance: f64,
    /// Divergences (non-finite proposals) over the run.
    pub divergences: usize,
    /// Resampling events (annealed SMC).
    pub resamplings: usize,
    /// Evaluations of the target, all particles: energies (with or without
    /// gradient) for the geometric path; hidden activations and Gibbs
    /// sweeps for the RBM path.
    pub energy_evals: u64,
    /// Wall-clock seconds (pilot and repeats included).
    pub wall_s: f64,
    /// Warnings about the estimate's reliability (small ESS, non-finite weights).
    pub warnings: Vec<String>,
}

/// The annealing path: geometric between a base and an energy, or the
/// RBM parameter path.
enum Path<'a> {
    Geometric {
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
    },
    Rbm {
        rbm: Rbm,
        base_logit: Array1<f64>,
        act: Array2<f64>,
        dv: Array1<f64>,
    },
}

impl Path<'_> {
    /// Caches what increments and refreshes need at the current positions.
    fn prepare(&mut self, x: ArrayView2<f64>, evals: &mut u64) {
        match self {
            Path::Geometric {
                target,
                base,
                f,
                e0,
                gf,
                g0,
                grad,
                fresh,
                ..
            } => {
                if *fresh {
                    return;
                }
                *fresh = true;
                *evals += x.nrows() as u64;
                if *grad {
                    target.energy_grad_batch(x, f.view_mut(), gf.view_mut());
                    base.energy_grad_batch(x, e0.view_mut(), g0.view_mut());
                } else {
                    target.energy_batch(x, f.view_mut());
                    base.energy_batch(x, e0.view_mut());
                }
            }
            Path::Rbm {
                rbm,
                base_logit,
                act,
                dv,
            } => {
                *evals += x.nrows() as u64;
                *act = rbm.hidden_activations(x);
                *dv = x.dot(&(&rbm.visible_bias() - &*base_logit));
            }
        }
    }

    /// Marks the cached values stale (positions changed outside a transition).
    fn invalidate(&mut self) {
        if let Path::Geometric { fresh, .. } = self {
            *fresh = false;
        }
    }

    /// `log f_{b_to}(x) - log f_{b_from}(x)` for every particle, from the cache.
    fn increment(&self, b_from: f64, b_to: f64, out: &mut [f64]) {
        match self {
            Path::Geometric { f, e0, .. } => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = -(b_to - b_from) * (f[i] - e0[i]);
                }
            }
            Path::Rbm { act, dv, .. } => {
                use rayon::prelude::*;
                out.par_iter_mut().enumerate().for_each(|(i, o)| {
                    let a = act.row(i);
                    let sp = sum_softplus(a.iter().map(|&v| b_to * v))
                        - sum_softplus(a.iter().map(|&v| b_from * v));
                    *o = (b_to - b_from) * dv[i] + sp;
                });
            }
        }
    }

    /// Sets the state's cached energy and gradient to the path's at `b`.
    fn refresh(&self, state: &mut ChainState, b: f64) {
        if let Path::Geometric {
            f,
            e0,
            gf,
            g0,
            grad,
            ..
        } = self
        {
            let grads = grad.then_some((gf, g0));
            let g = grad.then(|| state.grad.view_mut());
            mix_parts(b, f, e0, grads, state.energy.view_mut(), g);
        }
    }

    /// Runs `n_steps` transitions at `b` with step size `eps`; returns the
    /// mean acceptance and adds the evaluations and divergences to `tally`.
    #[allow(clippy::too_many_arguments)]
    fn transition(
        &mut self,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
        b: f64,
        eps: f64,
        n_steps: usize,
        tally: &mut (u64, usize),
    ) -> f64 {
        let (evals, divergences) = (&mut tally.0, &mut tally.1);
        let mut acc = 0.0;
        for step_index in 0..n_steps {
            match self {
                Path::Geometric {
                    target,
                    base,
                    kernel,
                    f,
                    e0,
                    gf,
                    g0,
                    parts,
                    fresh,
                    ..
                } => {
                    kernel.set_step_sizes(StepSizes::uniform(eps));
                    let annealed = Annealed::with_parts(target, base, b, parts);
                    kernel.step(&annealed, state, rngs, steps);
                    *evals += (state.n_chains() * kernel.grad_evals_per_step().max(1)) as u64;
                    // Accepted proposals bring their parts along: the next
                    // temperature's increments need no new evaluation.
                    let p = parts.get_mut().expect("not poisoned");
                    let with_grad = p.gf.nrows() == f.len() && gf.nrows() == f.len();
                    for (i, s) in steps.iter().enumerate() {
                        if s.accepted {
                            f[i] = p.f[i];
                            e0[i] = p.e0[i];
                            if with_grad {
                                gf.row_mut(i).assign(&p.gf.row(i));
                                g0.row_mut(i).assign(&p.g0.row(i));
                            }
                        }
                    }
                    *fresh = *fresh && (with_grad || gf.is_empty());
                }
                Path::Rbm {
                    rbm,
                    base_logit,
                    act,
                    ..
                } => {
                    // The first sweep reuses the activations `prepare` computed
                    // at these positions (the caller prepares right before).
                    let cached = (step_index == 0).then(|| act.view());
                    rbm.gibbs_sweep_from(
                        state.position.view_mut(),
                        rngs,
                        b,
                        Some(base_logit.view()),
                        cached,
                    );
                    *evals += state.n_chains() as u64;
                    steps.iter_mut().for_each(|s| {
                        *s = ChainStep {
                            accept_prob: 1.0,
                            accepted: true,
                            divergent: false,
                        }
                    });
                }
            }
            acc += crate::kernels::mean_accept(steps);
            *divergences += steps.iter().filter(|s| s.divergent).count();
        }
        acc / n_steps as f64
    }

    fn target_accept(&self) -> Option<f64> {
        match self {
            Path::Geometric { kernel, .. } => kernel.target_accept(),
            Path::Rbm { .. } => None,
        }
    }

    /// `log Z` of the path's start.
    fn log_z0(&self) -> f64 {
        match self {
            Path::Geometric { .. } => 0.0,
            Path::Rbm {
                rbm, base_logit, ..
            } => {
                base_logit.iter().map(|&l| softplus(l)).sum::<f64>()
                    + rbm.n_hidden() as f64 * std::f64::consts::LN_2
            }
        }
    }
}

/// What the AIS driver anneals: the model's energy (unconditional, or
/// conditioned on each context repeated `particles` times), its base, and
/// the RBM if the model is one.
pub struct AisProblem<'a> {
    energy: Arc<dyn Energy>,
    base: &'a Base,
    rbm: Option<&'a Rbm>,
    groups: usize,
}

impl<'a> AisProblem<'a> {
    /// An unconditional energy annealed from `base`.
    pub fn new(energy: Arc<dyn Energy>, base: &'a Base) -> Result<Self> {
        if energy.dim() != base.dim() {
            return Err(Error::shape(
                "AIS base",
                format!("dimension {}", energy.dim()),
                format!("{}", base.dim()),
            ));
        }
        if energy.fixed_rows().is_some() {
            return Err(Error::param(
                "energy",
                "has per-row contexts: use AisProblem::conditional",
            ));
        }
        Ok(AisProblem {
            energy,
            base,
            rbm: None,
            groups: 1,
        })
    }

    /// An RBM annealed along the parameter path from the Bernoulli `base`.
    pub fn rbm(rbm: &'a Rbm, energy: Arc<dyn Energy>, base: &'a Base) -> Result<Self> {
        if !matches!(base, Base::Bernoulli { .. }) || base.dim() != rbm.n_visible() {
            return Err(Error::param(
                "AIS base",
                "an RBM anneals from a Bernoulli base of its visible dimension",
            ));
        }
        Ok(AisProblem {
            energy,
            base,
            rbm: Some(rbm),
            groups: 1,
        })
    }

    /// A conditional energy with `contexts` (k x x_dim): one log Z(x) per
    /// context, all contexts' particles in one batch.
    pub fn conditional(
        model: Arc<dyn ConditionalEnergy>,
        contexts: ArrayView2<f64>,
        particles: usize,
        base: &'a Base,
    ) -> Result<Self> {
        let k = contexts.nrows();
        if k == 0 {
            return Err(Error::shape("contexts", "at least one row", "none"));
        }
        let rows = Array2::from_shape_fn((k * particles, contexts.ncols()), |(r, j)| {
            contexts[[r / particles, j]]
        });
        let energy: Arc<dyn Energy> = Arc::new(Conditioned::new(model, rows)?);
        if energy.dim() != base.dim() {
            return Err(Error::shape(
                "AIS base",
                format!("dimension {}", energy.dim()),
                format!("{}", base.dim()),
            ));
        }
        Ok(AisProblem {
            energy,
            base,
            rbm: None,
            groups: k,
        })
    }
}

fn make_kernel(kind: AisKernel, eps: f64) -> Result<Box<dyn Kernel>> {
    Ok(match kind {
        AisKernel::Mala => Box::new(Mala::new(eps)?),
        AisKernel::Hmc(l) => Box::new(Hmc::new(eps, l, 0.0)?),
        AisKernel::Rwm => Box::new(Rwm::new(eps)?),
        AisKernel::Gibbs => Box::new(crate::kernels::BinaryGibbs),
    })
}

fn make_path<'p>(problem: &'p AisProblem<'_>, config: &AisConfig, n: usize) -> Result<Path<'p>> {
    let d = problem.energy.dim();
    if let Some(rbm) = problem.rbm {
        let logit = match problem.base {
            Base::Bernoulli { logit } => Array1::from(logit.clone()),
            Base::Gaussian { .. } => unreachable!("checked in AisProblem::rbm"),
        };
        let b = config.beta;
        let scaled = if b == 1.0 {
            rbm.clone()
        } else {
            Rbm::new(
                rbm.weights().mapv(|w| w * b),
                rbm.visible_bias().mapv(|v| v * b).to_vec(),
                rbm.hidden_bias().mapv(|v| v * b).to_vec(),
            )?
        };
        return Ok(Path::Rbm {
            rbm: scaled,
            base_logit: logit,
            act: Array2::zeros((n, rbm.n_hidden())),
            dv: Array1::zeros(n),
        });
    }
    let binary = problem.energy.space() == crate::energy::StateSpace::Binary;
    if binary != (config.kernel == AisKernel::Gibbs) {
        return Err(Error::param(
            "kernel",
            if binary {
                "binary states need the gibbs kernel"
            } else {
                "gibbs needs binary states"
            },
        ));
    }
    let kernel = make_kernel(config.kernel, config.step_size.unwrap_or(0.1))?;
    let grad = kernel.grad_evals_per_step() > 0;
    Ok(Path::Geometric {
        target: Scaled::new(problem.energy.as_ref(), config.beta)?,
        base: problem.base,
        kernel,
        f: Array1::zeros(n),
        e0: Array1::zeros(n),
        gf: Array2::zeros(if grad { (n, d) } else { (0, 0) }),
        g0: Array2::zeros(if grad { (n, d) } else { (0, 0) }),
        grad,
        parts: std::sync::Mutex::new(Parts::default()),
        fresh: false,
    })
}

/// Conditional ESS of increments `inc` under normalised weights `logw`, in (0, 1].
fn cess(logw: &[f64], inc: &[f64]) -> f64 {
    let lw = log_sum_exp(logw);
    let a: Vec<f64> = logw.iter().zip(inc).map(|(w, u)| w - lw + u).collect();
    let b: Vec<f64> = logw
        .iter()
        .zip(inc)
        .map(|(w, u)| w - lw + 2.0 * u)
        .collect();
    (2.0 * log_sum_exp(&a) - log_sum_exp(&b)).exp()
}

/// Systematic resampling of `n` particles from log-weights: ancestor indices.
fn systematic(logw: &[f64], rng: &mut ChainRng) -> Vec<usize> {
    let n = logw.len();
    let lw = log_sum_exp(logw);
    let u0: f64 = rng.random::<f64>() / n as f64;
    let mut out = Vec::with_capacity(n);
    let mut cum = 0.0;
    let mut i = 0;
    for j in 0..n {
        let u = u0 + j as f64 / n as f64;
        while i < n - 1 && cum + (logw[i] - lw).exp() < u {
            cum += (logw[i] - lw).exp();
            i += 1;
        }
        out.push(i);
    }
    out
}

/// The delta-method estimate of one group's log-weights.
fn estimate(logw: &[f64]) -> (f64, f64, f64) {
    let n = logw.len() as f64;
    let lse = log_sum_exp(logw);
    let lse2 = log_sum_exp(&logw.iter().map(|w| 2.0 * w).collect::<Vec<_>>());
    let ess = (2.0 * lse - lse2).exp();
    let var = (1.0 / ess - 1.0 / n).max(0.0);
    (lse - n.ln(), var, ess)
}

struct Pass {
    log_weights: Array2<f64>,
    log_z: Vec<f64>,
    var: Vec<f64>,
    ess: Vec<f64>,
    acceptance: f64,
    divergences: usize,
    resamplings: usize,
    evals: u64,
    betas: Vec<f64>,
    steps: Vec<f64>,
}

/// How a pass picks temperatures and step sizes.
enum Plan {
    /// Fixed temperatures and per-temperature steps (frozen).
    Frozen { betas: Vec<f64>, steps: Vec<f64> },
    /// Pilot: temperatures from a fixed list or chosen adaptively by CESS,
    /// step sizes adapted on the fly towards the kernel's target.
    Pilot {
        betas: Option<Vec<f64>>,
        cess: f64,
        start_step: f64,
    },
}

/// One annealing pass (forward from the base, or reverse from `start`).
/// Checkpointing and interruption of the estimating pass of [`ais_with`].
#[derive(Clone, Debug, Default)]
pub struct AisControl {
    /// Write the pass's state here (atomically) every `every` temperatures
    /// and when stopped.
    pub checkpoint: Option<std::path::PathBuf>,
    /// Temperatures between checkpoints (0 = only when stopped).
    pub every: usize,
    /// Set by another thread to stop after the current temperature.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Continue from this checkpoint.
    pub resume: Option<std::path::PathBuf>,
    /// The run's settings; a checkpoint with other settings is refused.
    pub settings: String,
}

/// Everything the estimating pass carries between temperatures.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct PassState {
    version: u32,
    settings: String,
    k: usize,
    positions: Vec<f64>,
    rngs: Vec<crate::rng::RngState>,
    resample_rng: crate::rng::RngState,
    log_weights: Vec<f64>,
    log_z: Vec<f64>,
    var: Vec<f64>,
    acc_sum: f64,
    acc_n: usize,
    divergences: usize,
    resamplings: usize,
    evals: u64,
    betas_used: Vec<f64>,
    steps_used: Vec<f64>,
}

const PASS_VERSION: u32 = 1;

#[allow(clippy::too_many_arguments)]
fn pass(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    particles: usize,
    seed: u64,
    plan: Plan,
    reverse_from: Option<ArrayView2<f64>>,
    control: Option<&AisControl>,
) -> Result<Pass> {
    let groups = problem.groups;
    let n = groups * particles;
    let d = problem.energy.dim();
    let mut path = make_path(problem, config, n)?;
    let mut rngs = chain_rngs(seed, n);
    let mut x = Array2::zeros((n, d));
    match reverse_from {
        Some(s) => x.assign(&s),
        None => base::sample_rows(problem.base, &mut rngs, x.view_mut()),
    }
    let mut state = ChainState::new(problem.base, x)?;
    let mut steps = vec![ChainStep::default(); n];
    let mut logw = Array2::<f64>::zeros((groups, particles));
    let mut log_z = vec![path.log_z0(); groups];
    let mut var = vec![0.0; groups];
    let (mut acc_sum, mut acc_n, mut divergences, mut resamplings, mut evals) =
        (0.0, 0usize, 0usize, 0usize, 0u64);
    let mut inc = vec![0.0; n];
    let target_acc = path.target_accept();

    let (fixed_betas, fixed_steps, cess_target, mut eps) = match plan {
        Plan::Frozen { betas, steps } => (Some(betas), Some(steps), None, 0.0),
        Plan::Pilot {
            betas,
            cess,
            start_step,
        } => (
            betas.clone(),
            None,
            if betas.is_none() { Some(cess) } else { None },
            start_step,
        ),
    };
    let reverse = reverse_from.is_some();
    let mut betas_used = vec![if reverse { 1.0 } else { 0.0 }];
    let mut steps_used = Vec::new();
    let mut k = 0usize;
    let mut resample_rng = aux_rng(seed, 1);
    if let Some(path) = control.and_then(|c| c.resume.as_ref()) {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let st: PassState = serde_json::from_str(&text).map_err(|e| Error::Npy {
            path: path.clone(),
            reason: format!("not a usable AIS checkpoint: {e}"),
        })?;
        let settings = &control.expect("resume implies control").settings;
        if st.version != PASS_VERSION || &st.settings != settings {
            return Err(Error::param(
                "--resume",
                format!(
                    "{} was written by a run with other settings ({}); resume with the same ones",
                    path.display(),
                    st.settings
                ),
            ));
        }
        if st.positions.len() != n * d
            || st.rngs.len() != n
            || st.log_weights.len() != n
            || st.log_z.len() != groups
        {
            return Err(Error::Npy {
                path: path.clone(),
                reason: "not a usable AIS checkpoint: sizes do not match".into(),
            });
        }
        state = ChainState::new(
            problem.base,
            Array2::from_shape_vec((n, d), st.positions).expect("checked size"),
        )?;
        rngs = st.rngs.iter().map(crate::rng::restore_rng).collect();
        resample_rng = crate::rng::restore_rng(&st.resample_rng);
        logw = Array2::from_shape_vec((groups, particles), st.log_weights).expect("checked size");
        (log_z, var, acc_sum, acc_n, divergences, resamplings, evals) = (
            st.log_z,
            st.var,
            st.acc_sum,
            st.acc_n,
            st.divergences,
            st.resamplings,
            st.evals,
        );
        (betas_used, steps_used, k) = (st.betas_used, st.steps_used, st.k);
    }
    loop {
        let b_from = *betas_used.last().expect("non-empty");
        path.prepare(state.position.view(), &mut evals);
        // Next temperature.
        let b_to = match (&fixed_betas, cess_target) {
            (Some(bs), _) => {
                if k + 1 >= bs.len() {
                    break;
                }
                if reverse {
                    bs[bs.len() - 2 - k]
                } else {
                    bs[k + 1]
                }
            }
            (None, Some(c)) => {
                if b_from >= 1.0 || k > 100_000 {
                    break;
                }
                let flat = logw.as_slice().expect("contiguous").to_vec();
                let ok = |b: f64, inc: &mut [f64]| {
                    path.increment(b_from, b, inc);
                    (0..groups).all(|g| {
                        cess(
                            &flat[g * particles..(g + 1) * particles],
                            &inc[g * particles..(g + 1) * particles],
                        ) >= c
                    })
                };
                if ok(1.0, &mut inc) {
                    1.0
                } else {
                    let (mut lo, mut hi) = (b_from, 1.0);
                    for _ in 0..50 {
                        let mid = 0.5 * (lo + hi);
                        if ok(mid, &mut inc) {
                            lo = mid
                        } else {
                            hi = mid
                        }
                    }
                    lo.max(b_from + 1e-12).min(1.0)
                }
            }
            (None, None) => unreachable!("a pilot has fixed or adaptive temperatures"),
        };
        path.increment(b_from, b_to, &mut inc);
        for (w, i) in logw.iter_mut().zip(&inc) {
            *w += i;
        }
        betas_used.push(b_to);
        // Resample per group when its ESS falls low (SMC; the pilot always does below 0.5).
        let threshold = if fixed_steps.is_none() {
            Some(config.resample_threshold.unwrap_or(0.5))
        } else {
            config.resample_threshold
        };
        if let Some(th) = threshold {
            let mut moved = false;
            for g in 0..groups {
                let row = logw.row(g).to_vec();
                let (lz, v, ess) = estimate(&row);
                if ess < th * particles as f64 {
                    log_z[g] += lz;
                    var[g] += v;
                    let anc = systematic(&row, &mut resample_rng);
                    let base_row = g * particles;
                    let old_pos = state
                        .position
                        .slice(s![base_row..base_row + particles, ..])
                        .to_owned();
                    for (j, a) in anc.iter().enumerate() {
                        state
                            .position
                            .row_mut(base_row + j)
                            .assign(&old_pos.row(*a));
                    }
                    logw.row_mut(g).fill(0.0);
                    resamplings += 1;
                    moved = true;
                }
            }
            if moved {
                path.invalidate();
                path.prepare(state.position.view(), &mut evals);
            }
        }
        // Transition at b_to (in reverse, the last one, at the base, is not needed).
        if !(reverse && b_to == 0.0) {
            path.refresh(&mut state, b_to);
            let step = match &fixed_steps {
                Some(s) => s.get(k).copied().unwrap_or(eps),
                None => eps,
            };
            let mut tally = (0u64, 0usize);
            let a = path.transition(
                &mut state,
                &mut rngs,
                &mut steps,
                b_to,
                step,
                config.steps_per_temp,
                &mut tally,
            );
            evals += tally.0;
            divergences += tally.1;
            acc_sum += a;
            acc_n += 1;
            steps_used.push(step);
            if let (None, Some(t)) = (&fixed_steps, target_acc) {
                // Pilot: move the step towards the target acceptance.
                eps = (eps * (1.5 * (a - t)).exp()).clamp(1e-12, 1e6);
            }
        }
        k += 1;
        let done = (!reverse && b_to >= 1.0) || (reverse && b_to <= 0.0);
        if let Some(c) = control
            && !done
        {
            let stop = c
                .stop
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst));
            let due = c.every > 0 && k.is_multiple_of(c.every);
            if let Some(path) = &c.checkpoint
                && (due || stop)
            {
                let st = PassState {
                    version: PASS_VERSION,
                    settings: c.settings.clone(),
                    k,
                    positions: state.position.iter().copied().collect(),
                    rngs: rngs.iter().map(crate::rng::save_rng).collect(),
                    resample_rng: crate::rng::save_rng(&resample_rng),
                    log_weights: logw.iter().copied().collect(),
                    log_z: log_z.clone(),
                    var: var.clone(),
                    acc_sum,
                    acc_n,
                    divergences,
                    resamplings,
                    evals,
                    betas_used: betas_used.clone(),
                    steps_used: steps_used.clone(),
                };
                crate::io::write_json_atomic(path, &st)?;
            }
            if stop {
                return Err(Error::Interrupted(format!(
                    "AIS stopped at temperature {k}{}",
                    c.checkpoint.as_ref().map_or(String::new(), |p| format!(
                        "; state saved to {}, continue with --resume {}",
                        p.display(),
                        p.display()
                    ))
                )));
            }
        }
        if done {
            break;
        }
    }
    let mut ess = vec![0.0; groups];
    for g in 0..groups {
        let (lz, v, e) = estimate(&logw.row(g).to_vec());
        log_z[g] += lz;
        var[g] += v;
        ess[g] = e;
    }
    Ok(Pass {
        log_weights: logw,
        log_z,
        var,
        ess,
        acceptance: if acc_n > 0 {
            acc_sum / acc_n as f64
        } else {
            1.0
        },
        divergences,
        resamplings,
        evals,
        betas: betas_used,
        steps: steps_used,
    })
}

/// The temperatures and per-temperature steps for the estimating run:
/// from the configuration, completed by a pilot run where needed.
fn plan(problem: &AisProblem<'_>, config: &AisConfig) -> Result<(Vec<f64>, Vec<f64>, u64)> {
    let fixed = match &config.schedule {
        ScheduleChoice::Fixed(s) => Some(s.betas(config.temps)?),
        ScheduleChoice::Adaptive { .. } => None,
    };
    let has_step = problem.rbm.is_none() && config.kernel != AisKernel::Gibbs;
    let needs_pilot = fixed.is_none() || (has_step && config.step_size.is_none());
    if !needs_pilot {
        let betas = fixed.expect("fixed when no pilot");
        let steps = vec![config.step_size.unwrap_or(1.0); config.temps];
        return Ok((betas, steps, 0));
    }
    let cess = match config.schedule {
        ScheduleChoice::Adaptive { cess } => cess,
        ScheduleChoice::Fixed(_) => 0.99,
    };
    let start_step = config.step_size.unwrap_or(0.1);
    let pilot_n = config.pilot_particles.min(config.particles);
    let p = pass(
        problem,
        config,
        pilot_n,
        config.seed ^ 0x5A5A_5A5A_5A5A_5A5A,
        Plan::Pilot {
            betas: fixed.clone(),
            cess,
            start_step,
        },
        None,
        None,
    )?;
    let betas = match fixed {
        Some(b) => b,
        None => respace(&p.betas, config.temps),
    };
    let steps = if !has_step {
        vec![1.0; config.temps]
    } else if let Some(s) = config.step_size {
        vec![s; config.temps]
    } else if p.steps.len() == config.temps {
        p.steps.clone()
    } else {
        // Map the pilot's steps (one per pilot temperature) onto the new ones by b.
        config_steps_by_beta(&p.betas[1..], &p.steps, &betas[1..])
    };
    Ok((betas, steps, p.evals))
}

fn config_steps_by_beta(pilot_b: &[f64], pilot_steps: &[f64], b: &[f64]) -> Vec<f64> {
    b.iter()
        .map(|&x| {
            let i = pilot_b
                .partition_point(|&v| v < x)
                .min(pilot_steps.len() - 1);
            pilot_steps[i]
        })
        .collect()
}

fn to_estimates(p: &Pass, particles: usize) -> Vec<Estimate> {
    (0..p.log_z.len())
        .map(|g| Estimate {
            log_z: p.log_z[g],
            stderr: p.var[g].sqrt(),
            ess: p.ess[g],
            n: particles,
        })
        .collect()
}

/// Forward AIS: `log Z` of `exp(-beta F)` for each context, with error bars.
pub fn ais(problem: &AisProblem<'_>, config: &AisConfig) -> Result<AisResult> {
    ais_with(problem, config, &AisControl::default())
}

/// [`ais`] with checkpoints of the estimating pass, a stop flag and resume.
/// A resumed run's result is bit-identical to an uninterrupted one (the
/// pilot is deterministic and simply run again).
pub fn ais_with(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    control: &AisControl,
) -> Result<AisResult> {
    crate::sampler::in_pool(|| ais_inner(problem, config, control))
}

/// Most memory an AIS run may hold, in bytes.
pub const MAX_AIS_BYTES: usize = 8 << 30;

/// Refuses runs whose particle state (about 8 arrays of particles x dim
/// f64: positions, proposals, gradients, momenta, cached components) would
/// not fit in [`MAX_AIS_BYTES`].
fn check_memory(problem: &AisProblem<'_>, config: &AisConfig) -> Result<()> {
    let bytes = problem
        .groups
        .checked_mul(config.particles)
        .and_then(|n| n.checked_mul(problem.energy.dim().max(1)))
        .and_then(|x| x.checked_mul(64));
    match bytes {
        Some(b) if b <= MAX_AIS_BYTES => Ok(()),
        _ => Err(Error::param(
            "particles",
            format!(
                "{} contexts x {} particles x {} dims would need more than {} GiB",
                problem.groups,
                config.particles,
                problem.energy.dim(),
                MAX_AIS_BYTES >> 30
            ),
        )),
    }
}

fn ais_inner(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    control: &AisControl,
) -> Result<AisResult> {
    let start = Instant::now();
    config.validate()?;
    check_memory(problem, config)?;
    let (betas, steps, pilot_evals) = plan(problem, config)?;
    let main = pass(
        problem,
        config,
        config.particles,
        config.seed,
        Plan::Frozen {
            betas: betas.clone(),
            steps: steps.clone(),
        },
        None,
        Some(control),
    )?;
    let mut estimates = to_estimates(&main, config.particles);
    let mut warnings = Vec::new();
    for (g, e) in estimates.iter_mut().enumerate() {
        if !e.log_z.is_finite() {
            warnings.push(format!("context {g}: log Z is not finite (every weight -inf or NaN): the base does not cover the target, or the energy overflows"));
            e.stderr = f64::NAN;
        } else if e.ess < 0.1 * config.particles as f64 && config.resample_threshold.is_none() {
            warnings.push(format!("context {g}: weight ESS {:.1} of {} particles (< 10%): the error bar is unreliable and log Z is likely biased low; use more temperatures or particles", e.ess, config.particles));
        }
    }
    let bootstrap_stderr = (config.bootstrap > 0).then(|| {
        let mut rng = aux_rng(config.seed, 2);
        (0..problem.groups)
            .map(|g| {
                let w = main.log_weights.row(g).to_vec();
                let n = w.len();
                let vals: Vec<f64> = (0..config.bootstrap)
                    .map(|_| {
                        let r: Vec<f64> = (0..n).map(|_| w[rng.random_range(0..n)]).collect();
                        log_sum_exp(&r) - (n as f64).ln()
                    })
                    .collect();
                let m = vals.iter().sum::<f64>() / vals.len() as f64;
                (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>()
                    / (vals.len() as f64 - 1.0).max(1.0))
                .sqrt()
            })
            .collect()
    });
    let mut repeats = Vec::new();
    let mut evals = pilot_evals + main.evals;
    for r in 1..=config.repeats {
        let seed = config
            .seed
            .wrapping_add((r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let p = pass(
            problem,
            config,
            config.particles,
            seed,
            Plan::Frozen {
                betas: betas.clone(),
                steps: steps.clone(),
            },
            None,
            None,
        )?;
        evals += p.evals;
        repeats.push(to_estimates(&p, config.particles));
    }
    Ok(AisResult {
        estimates,
        bootstrap_stderr,
        repeats,
        log_weights: main.log_weights,
        betas: main.betas,
        step_sizes: main.steps,
        acceptance: main.acceptance,
        divergences: main.divergences,
        resamplings: main.resamplings,
        energy_evals: evals,
        wall_s: start.elapsed().as_secs_f64(),
        warnings,
    })
}

/// Reverse AIS from exact draws of the target (rows of `samples`, one
/// context's particles after another): anneals from b = 1 to the base and
/// returns an estimate of `-log Z` turned into a stochastic **upper** bound
/// on `log Z` (bidirectional Monte Carlo, Grosse, Ghahramani & Adams 2015):
/// `log Z_upper = -(logsumexp(log w_rev) - log N)`. The same temperatures
/// and steps as a forward run with `config` are used.
pub fn reverse_ais(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    samples: ArrayView2<f64>,
) -> Result<AisResult> {
    crate::sampler::in_pool(|| reverse_inner(problem, config, samples))
}

fn reverse_inner(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    samples: ArrayView2<f64>,
) -> Result<AisResult> {
    let start = Instant::now();
    config.validate()?;
    check_memory(problem, config)?;
    let n = problem.groups * config.particles;
    if samples.dim() != (n, problem.energy.dim()) {
        return Err(Error::shape(
            "reverse AIS samples",
            format!("({n}, {})", problem.energy.dim()),
            format!("{:?}", samples.shape()),
        ));
    }
    let (betas, steps, pilot_evals) = plan(problem, config)?;
    // Reverse steps run at b_{T-1}, ..., b_1: the forward step used at temperature k is steps[k - 1].
    let rev_steps: Vec<f64> = (0..steps.len())
        .map(|k| steps[steps.len() - 1 - k])
        .collect();
    let shifted: Vec<f64> = rev_steps
        .iter()
        .skip(1)
        .copied()
        .chain(std::iter::once(rev_steps[0]))
        .collect();
    let p = pass(
        problem,
        config,
        config.particles,
        config.seed ^ 0x0123_4567_89AB_CDEF,
        Plan::Frozen {
            betas,
            steps: shifted,
        },
        Some(samples),
        None,
    )?;
    let log_z0 = make_path(problem, config, 1)?.log_z0();
    // The pass started its log Z at log Z0 (the forward start). In reverse,
    // mean(w) estimates Z0 / Z: log Z_upper = log Z0 - log mean(w).
    let estimates = (0..problem.groups)
        .map(|g| Estimate {
            log_z: 2.0 * log_z0 - p.log_z[g],
            stderr: p.var[g].sqrt(),
            ess: p.ess[g],
            n: config.particles,
        })
        .collect();
    Ok(AisResult {
        estimates,
        bootstrap_stderr: None,
        repeats: vec![],
        log_weights: p.log_weights,
        betas: p.betas,
        step_sizes: p.steps,
        acceptance: p.acceptance,
        divergences: p.divergences,
        resamplings: p.resamplings,
        energy_evals: pilot_evals + p.evals,
        wall_s: start.elapsed().as_secs_f64(),
        warnings: vec![],
    })
}

/// `log P(y|x) = -beta F(x, y) - log Z(x)` for every context row and point:
/// (contexts, points), with `log_z[k]` from an estimate or an exact reference.
pub fn log_prob(
    model: &dyn ConditionalEnergy,
    contexts: ArrayView2<f64>,
    points: ArrayView2<f64>,
    log_z: &[f64],
    beta: f64,
) -> Result<Array2<f64>> {
    let (k, m) = (contexts.nrows(), points.nrows());
    if log_z.len() != k || contexts.ncols() != model.x_dim() || points.ncols() != model.y_dim() {
        return Err(Error::shape(
            "log_prob",
            format!(
                "contexts (k, {}), points (n, {}), log_z (k)",
                model.x_dim(),
                model.y_dim()
            ),
            format!(
                "contexts {:?}, points {:?}, log_z ({})",
                contexts.shape(),
                points.shape(),
                log_z.len()
            ),
        ));
    }
    let mut out = Array2::zeros((k, m));
    for c in 0..k {
        let x = contexts
            .slice(s![c..c + 1, ..])
            .broadcast((m, contexts.ncols()))
            .expect("one row broadcasts")
            .to_owned();
        let mut e = Array1::zeros(m);
        model.energy_batch(x.view(), points, e.view_mut());
        out.row_mut(c).assign(&e.mapv(|v| -beta * v - log_z[c]));
    }
    Ok(out)
}

/// Exact `log P(y_k | x)` over a finite label set: a softmax over
/// `-beta F(x, y_k)` for the rows `y_k` of `labels`.
pub fn label_log_probs(
    energy: &dyn Energy,
    labels: ArrayView2<f64>,
    beta: f64,
) -> Result<Array1<f64>> {
    let e = crate::energy::evaluate(energy, labels)?;
    let s: Vec<f64> = e.iter().map(|v| -beta * v).collect();
    let lz = log_sum_exp(&s);
    Ok(Array1::from(s.iter().map(|v| v - lz).collect::<Vec<_>>()))
}

/// The final positions of forward AIS are approximate draws from the target;
/// exact draws for reverse AIS come from [`exact_draws`].
pub fn exact_draws(model: &crate::model::Model, n: usize, seed: u64) -> Option<Array2<f64>> {
    use crate::model::Family;
    let d = model.dim();
    let mut out = Array2::zeros((n, d));
    let mut rngs = chain_rngs(seed ^ 0xD1CE, n);
    for (i, rng) in rngs.iter_mut().enumerate() {
        let row = out.row_mut(i).into_slice().expect("standard layout");
        match &model.family {
            Family::Gaussian(g) => g.sample_exact(rng, row),
            Family::FullGaussian(g) => g.sample_exact(rng, row),
            Family::Mixture(m) => m.sample_exact(rng, row),
            Family::Funnel(f) => f.sample_exact(rng, row),
            _ => return None,
        }
    }
    Some(out)
}

/// A Gaussian base fitted by a short pilot: 64 MALA chains (500 warm-up
/// steps, 200 draws) on `exp(-beta F)`; per coordinate the pilot's mean and
/// 1.5 times its standard deviation (at least 1e-3), so that the base is wider
/// than the target and covers modes the pilot saw (1.5 rather than 2: in
/// 100 dimensions the wider base costs 4x in weight ESS). For a conditional
/// energy with one context per row, pass it conditioned on those rows: the
/// pilot pools them.
pub fn pilot_base(energy: &dyn Energy, beta: f64, seed: u64) -> Result<Base> {
    let mut config = crate::sampler::SampleConfig::new();
    config.n_chains = energy.fixed_rows().unwrap_or(64);
    (
        config.warmup,
        config.draws,
        config.thin,
        config.seed,
        config.beta,
        config.record_energies,
    ) = (500, 200, 1, seed ^ 0xBA5E, beta, false);
    let mut kernel = Mala::new(0.1)?;
    let out = crate::sampler::sample(
        energy,
        &mut kernel,
        &config,
        None,
        &mut crate::sampler::NoObserver,
    )?;
    let d = energy.dim();
    let flat = out
        .samples
        .to_shape((config.n_chains * config.draws, d))
        .map_err(|e| Error::Numerical(e.to_string()))?
        .to_owned();
    let mean = flat.mean_axis(ndarray::Axis(0)).expect("non-empty");
    let sd = flat.std_axis(ndarray::Axis(0), 1.0);
    if mean.iter().chain(sd.iter()).any(|v| !v.is_finite()) {
        return Err(Error::Numerical(
            "the pilot run for the AIS base produced non-finite draws; give --base-scale".into(),
        ));
    }
    Base::gaussian(
        mean.to_vec(),
        sd.iter().map(|s| (1.5 * s).max(1e-3)).collect(),
    )
}
