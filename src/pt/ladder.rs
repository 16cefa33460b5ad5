//! The tempered state of a parallel-tempering run: every chain's replicas
//! on one annealing path, their local moves in one batched call, and the
//! deterministic even-odd swaps between neighbouring temperatures.
//!
//! Rows are replica-major: row `r * C + c` is replica `r` (inverse
//! temperature `b_{c,r}` on the path: each chain has a ladder of its own)
//! of chain `c`. Its local moves draw from the stream keyed by
//! `(seed, g * R + r)` with `g` the chain's index in the whole run, so
//! chain `g`'s replicas use streams of their own whatever the other chains
//! (and whichever shard runs it), and the swaps of chain `g` draw from a
//! stream of their own ([`swap_rng`]).

use crate::ais::{Annealed, Base, Parts, sample_rows};
use crate::energy::{Energy, Rbm, Scaled, softplus, sum_softplus};
use crate::error::{Error, Result};
use crate::kernels::{ChainState, ChainStep, Kernel, KernelSpec, Tuning};
use crate::rng::{ChainRng, chain_rng};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, s};
use std::sync::Mutex;

/// The stream that decides chain `chain`'s swaps in a run with `seed`.
pub(crate) fn swap_rng(seed: u64, chain: usize) -> ChainRng {
    crate::rng::Stream::PtSwaps { chain }.rng(seed)
}

/// The local-move streams of the run's chains `chains` (global indices)
/// of `replicas` replicas, in row order (replica-major).
pub(crate) fn row_rngs(
    seed: u64,
    chains: std::ops::Range<usize>,
    replicas: usize,
) -> Vec<ChainRng> {
    let n = chains.len();
    (0..replicas * n)
        .map(|i| {
            let (r, c) = (i / n, chains.start + i % n);
            chain_rng(seed, (c * replicas + r) as u64)
        })
        .collect()
}

/// The geometric path with any kernel: the target's and base's values at
/// the current positions.
struct Geometric<'a> {
    target: Scaled<'a>,
    base: &'a Base,
    kernel: Box<dyn Kernel>,
    grad: bool,
    f: Array1<f64>,
    e0: Array1<f64>,
    gf: Array2<f64>,
    g0: Array2<f64>,
    parts: Mutex<Parts>,
}

/// The RBM parameter path (weights and hidden biases scaled by `b`,
/// visible biases interpolated from the Bernoulli base's logits) with
/// block Gibbs: per row the hidden pre-activations `c + W^T v`, `v . (b_vis
/// - logit)` and `v . logit` at the current positions.
struct RbmPath {
    rbm: Rbm,
    logit: Array1<f64>,
    act: Array2<f64>,
    dv: Array1<f64>,
    lb: Array1<f64>,
}

impl Geometric<'_> {
    /// The geometric path's energy with row `i` at `b[i]` (all rows of
    /// all replicas in one batch), recording into this path's parts.
    fn tempered<'s>(&'s self, b: &'s [f64]) -> Annealed<'s> {
        Annealed::with_parts_rows(&self.target, self.base, b, &self.parts)
    }
}

enum Path<'a> {
    Geometric(Box<Geometric<'a>>),
    Rbm(Box<RbmPath>),
}

/// The live state of a parallel-tempering run.
pub(crate) struct Ladder<'a> {
    path: Path<'a>,
    /// Inverse temperatures on the path, chain-major: chain `c`'s ladder
    /// `0 = b_{c,0} < ... < b_{c,R-1} = 1` at `c * R..(c + 1) * R`.
    betas: Vec<f64>,
    /// `b` of every row.
    b_rows: Vec<f64>,
    pub(crate) chains: usize,
    pub(crate) replicas: usize,
    pub(crate) state: ChainState,
    pub(crate) rngs: Vec<ChainRng>,
    pub(crate) swap_rngs: Vec<ChainRng>,
    /// Which state (by the replica it started in) sits in each row.
    pub(crate) labels: Vec<u32>,
    /// Per chain and label: 0 not yet at the reference, 1 last extreme
    /// visited the reference, 2 reached the target since.
    pub(crate) heading: Vec<u8>,
    pub(crate) steps: Vec<ChainStep>,
}

/// What one local move did: energy and gradient evaluations (rows) and
/// divergences.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MoveTally {
    pub energy_evals: u64,
    pub grad_evals: u64,
}

impl<'a> Ladder<'a> {
    /// A ladder of `replicas` replicas (every chain starting at the
    /// temperatures `betas`) for each of the run's chains `chains` (their
    /// indices in the whole run, which key their streams) on the path from
    /// `base` to `exp(-beta F)`, at positions `y0` (rows replica-major)
    /// or, without, at draws from the base (each row from its own stream).
    /// Returns the ladder and the evaluations it cost.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        energy: &'a dyn Energy,
        base: &'a Base,
        spec: &KernelSpec,
        beta: f64,
        run_chains: std::ops::Range<usize>,
        betas: Vec<f64>,
        seed: u64,
        y0: Option<Array2<f64>>,
    ) -> Result<(Self, u64)> {
        let replicas = betas.len();
        let chains = run_chains.len();
        let d = energy.dim();
        let n = chains * replicas;
        if base.dim() != d {
            return Err(Error::shape(
                "tempering base",
                format!("dimension {d}"),
                format!("{}", base.dim()),
            ));
        }
        let mut rngs = row_rngs(seed, run_chains.clone(), replicas);
        let y0 = match y0 {
            Some(y) => y,
            None => {
                let mut y = Array2::zeros((n, d));
                sample_rows(base, &mut rngs, y.view_mut());
                y
            }
        };
        let target = Scaled::new(energy, beta)?;
        let path = match (energy.as_rbm(), base) {
            (Some((rbm, b0)), Base::Bernoulli { logit }) => {
                if spec.name() != "gibbs" {
                    return Err(Error::param(
                        "kernel",
                        "parallel tempering of an RBM from a Bernoulli base moves by block Gibbs: use `kernel gibbs`",
                    ));
                }
                let b = beta * b0;
                let rbm = rbm.scaled(b)?;
                Path::Rbm(Box::new(RbmPath {
                    act: Array2::zeros((n, rbm.n_hidden())),
                    dv: Array1::zeros(n),
                    lb: Array1::zeros(n),
                    logit: Array1::from(logit.clone()),
                    rbm,
                }))
            }
            _ => {
                if base.space() != energy.space() {
                    return Err(Error::param(
                        "tempering base",
                        "binary states need a Bernoulli base, continuous ones a Gaussian base",
                    ));
                }
                spec.check(energy)?;
                let kernel = spec.build()?;
                let grad = kernel.grad_evals_per_step() > 0;
                let gd = if grad { (n, d) } else { (0, 0) };
                Path::Geometric(Box::new(Geometric {
                    target,
                    base,
                    grad,
                    kernel,
                    f: Array1::zeros(n),
                    e0: Array1::zeros(n),
                    gf: Array2::zeros(gd),
                    g0: Array2::zeros(gd),
                    parts: Mutex::new(Parts::default()),
                }))
            }
        };
        crate::energy::check_rows(energy, y0.view())?;
        let state = ChainState::new(base, y0)?;
        let mut ladder = Ladder {
            path,
            b_rows: (0..n).map(|i| betas[i / chains]).collect(),
            betas: betas.repeat(chains),
            chains,
            replicas,
            state,
            rngs,
            swap_rngs: run_chains.map(|c| swap_rng(seed, c)).collect(),
            labels: (0..n).map(|i| (i / chains) as u32).collect(),
            heading: vec![0; n],
            steps: vec![ChainStep::default(); n],
        };
        ladder.prepare();
        ladder.refresh_all()?;
        Ok((ladder, n as u64))
    }

    /// The kernel of the local moves (`None` on the RBM path: block Gibbs).
    pub(crate) fn kernel(&self) -> Option<&dyn Kernel> {
        match &self.path {
            Path::Geometric(g) => Some(g.kernel.as_ref()),
            Path::Rbm(_) => None,
        }
    }

    /// The name of the local move.
    pub(crate) fn kernel_name(&self) -> &'static str {
        self.kernel().map_or("gibbs", |k| k.name())
    }

    /// Chain `c`'s inverse temperatures.
    pub(crate) fn chain_betas(&self, c: usize) -> &[f64] {
        &self.betas[c * self.replicas..(c + 1) * self.replicas]
    }

    /// Caches the path's values at the current positions (one evaluation per row).
    fn prepare(&mut self) {
        let x = self.state.position.view();
        match &mut self.path {
            Path::Geometric(g) => {
                if g.grad {
                    g.target
                        .energy_grad_batch(x, g.f.view_mut(), g.gf.view_mut());
                    g.base
                        .energy_grad_batch(x, g.e0.view_mut(), g.g0.view_mut());
                } else {
                    g.target.energy_batch(x, g.f.view_mut());
                    g.base.energy_batch(x, g.e0.view_mut());
                }
            }
            Path::Rbm(p) => {
                p.act = p.rbm.hidden_activations(x);
                p.dv = x.dot(&(&p.rbm.visible_bias() - &p.logit));
                p.lb = x.dot(&p.logit);
            }
        }
    }

    /// Sets every row's cached energy and gradient to the path's at its
    /// temperature; an error if a start has a non-finite energy.
    fn refresh_all(&mut self) -> Result<()> {
        for i in 0..self.b_rows.len() {
            self.refresh_row(i);
        }
        if let Path::Geometric(g) = &self.path
            && let Some(i) = g.f.iter().position(|f| !f.is_finite())
        {
            return Err(Error::param(
                "initial state",
                format!(
                    "replica {} of chain {} starts at a non-finite energy ({})",
                    i / self.chains,
                    i % self.chains,
                    g.f[i]
                ),
            ));
        }
        Ok(())
    }

    /// Row `i`'s cached energy and gradient at its temperature.
    fn refresh_row(&mut self, i: usize) {
        if let Path::Geometric(g) = &self.path {
            let b = self.b_rows[i];
            self.state.energy[i] = b * g.f[i] + (1.0 - b) * g.e0[i];
            if g.grad {
                let mut row = self.state.grad.row_mut(i);
                ndarray::Zip::from(&mut row)
                    .and(g.gf.row(i))
                    .and(g.g0.row(i))
                    .for_each(|o, &f, &e| *o = b * f + (1.0 - b) * e);
            }
        }
    }

    /// `log f_{b_{r+1}}(x_i) - log f_{b_r}(x_i)` of every row `i` below the
    /// top (slot `r`), replica-major, computed in parallel.
    pub(crate) fn ratios_up(&self, out: &mut Vec<f64>) {
        use rayon::prelude::*;
        let below = (self.replicas - 1) * self.chains;
        out.resize(below, 0.0);
        out.par_iter_mut().enumerate().for_each(|(i, o)| {
            let b = self.chain_betas(i % self.chains);
            let r = i / self.chains;
            *o = self.log_ratio(i, b[r], b[r + 1]);
        });
    }

    /// `log f_{b_to}(x_i) - log f_{b_from}(x_i)` for row `i`'s state.
    pub(crate) fn log_ratio(&self, i: usize, b_from: f64, b_to: f64) -> f64 {
        match &self.path {
            Path::Geometric(g) => -(b_to - b_from) * (g.f[i] - g.e0[i]),
            Path::Rbm(p) => {
                let a = p.act.row(i);
                (b_to - b_from) * p.dv[i] + sum_softplus(a.iter().map(|&v| b_to * v))
                    - sum_softplus(a.iter().map(|&v| b_from * v))
            }
        }
    }

    /// `F` (the energy at beta 1 of the target, as `sample` records it) of row `i`.
    pub(crate) fn target_energy(&self, i: usize, beta: f64) -> f64 {
        match &self.path {
            Path::Geometric(g) => g.f[i] / beta,
            Path::Rbm(p) => {
                -(p.lb[i] + p.dv[i] + p.act.row(i).iter().map(|&a| softplus(a)).sum::<f64>()) / beta
            }
        }
    }

    /// `log Z` of the path's start (the reference).
    pub(crate) fn log_z0(&self) -> f64 {
        match &self.path {
            Path::Geometric(_) => 0.0,
            Path::Rbm(p) => {
                p.logit.iter().map(|&l| softplus(l)).sum::<f64>()
                    + p.rbm.n_hidden() as f64 * std::f64::consts::LN_2
            }
        }
    }

    /// Moves every row once at its temperature with `tuning`: one kernel
    /// step over all rows (one batched energy call per evaluation), or one
    /// block Gibbs sweep per temperature on the RBM path. Leaves the
    /// records in `self.steps`.
    pub(crate) fn local_move(&mut self, tuning: &Tuning) -> MoveTally {
        let n = self.b_rows.len() as u64;
        let mut tally = MoveTally::default();
        match &mut self.path {
            Path::Geometric(g) => {
                let tempered = g.tempered(&self.b_rows);
                g.kernel.step(
                    &tempered,
                    tuning,
                    &mut self.state,
                    &mut self.rngs,
                    &mut self.steps,
                );
                let per = g.kernel.grad_evals_per_step() as u64;
                let extra: u64 = self.steps.iter().map(|s| u64::from(s.extra_evals)).sum();
                tally.energy_evals = n * per.max(1) + extra;
                tally.grad_evals = if per > 0 { n * per + extra } else { 0 };
                if g.kernel.proposal_is_last_eval() {
                    // Accepted proposals bring their parts: the values at
                    // the new positions need no evaluation.
                    let p = g.parts.get_mut().expect("not poisoned");
                    for (i, s) in self.steps.iter().enumerate() {
                        if s.accepted {
                            g.f[i] = p.f[i];
                            g.e0[i] = p.e0[i];
                            if g.grad {
                                g.gf.row_mut(i).assign(&p.gf.row(i));
                                g.g0.row_mut(i).assign(&p.g0.row(i));
                            }
                        }
                    }
                    return tally;
                }
            }
            Path::Rbm(p) => {
                // One sweep per temperature (every chain's rows of a
                // replica when the chains share one ladder, else each row
                // alone), in parallel: disjoint rows and streams, each
                // row's sweep its own, so the same draws on any threads
                // and in any grouping of rows.
                use rayon::prelude::*;
                let c = self.chains;
                let shared = self.b_rows.chunks(c).all(|b| b.iter().all(|x| *x == b[0]));
                let size = if shared { c } else { 1 };
                let (rbm, logit, act) = (&p.rbm, p.logit.view(), p.act.view());
                let b_rows = &self.b_rows;
                self.state
                    .position
                    .axis_chunks_iter_mut(Axis(0), size)
                    .into_par_iter()
                    .zip(self.rngs.par_chunks_mut(size))
                    .enumerate()
                    .for_each(|(k, (v, rngs))| {
                        rbm.gibbs_sweep_from(
                            v,
                            rngs,
                            b_rows[k * size],
                            Some(logit),
                            Some(act.slice(s![k * size..(k + 1) * size, ..])),
                        );
                    });
                self.steps.iter_mut().for_each(|s| *s = ChainStep::exact());
                tally.energy_evals = n;
            }
        }
        // Kernels that evaluate other points last (and Gibbs): the values
        // at the new positions, one evaluation per row.
        self.prepare();
        if matches!(self.path, Path::Geometric(_)) {
            tally.energy_evals += n;
            if self.kernel().is_some_and(|k| k.grad_evals_per_step() > 0) {
                tally.grad_evals += n;
            }
        }
        tally
    }

    /// The deterministic even-odd swap (non-reversible PT): pairs `(r, r +
    /// 1)` with `r` of the parity of `t` are proposed for every chain, each
    /// accepted with probability `min(1, alpha)`, one uniform per pair from
    /// the chain's swap stream. Adds each pair's acceptance probability to
    /// `accept` and the round trips completed (a state that went from the
    /// reference to the target and back) to `trips`, per group of chains:
    /// `accept` holds `G (R - 1)` sums (group-major) and `trips` `G`, for
    /// `G = 1` (all chains pooled) or `G = C` (each chain alone); adds the
    /// attempts, every chain's, to `attempts[r]`.
    pub(crate) fn swap(
        &mut self,
        t: u64,
        accept: &mut [f64],
        attempts: &mut [u64],
        trips: &mut [u64],
    ) {
        use rand::RngExt;
        let (c, big_r) = (self.chains, self.replicas);
        let parity = (t % 2) as usize;
        let groups = accept.len() / (big_r - 1).max(1);
        let group = |chain: usize| chain * groups / c;
        // The pairs of one parity are disjoint: their acceptance ratios
        // first, in parallel, then the decisions in chain order.
        let pairs: Vec<usize> = (parity..big_r.saturating_sub(1)).step_by(2).collect();
        let log_alphas: Vec<f64> = {
            use rayon::prelude::*;
            (0..c * pairs.len())
                .into_par_iter()
                .map(|k| {
                    let (chain, r) = (k / pairs.len(), pairs[k % pairs.len()]);
                    let (i, j) = (r * c + chain, (r + 1) * c + chain);
                    let b = self.chain_betas(chain);
                    let (bi, bj) = (b[r], b[r + 1]);
                    self.log_ratio(i, bi, bj) + self.log_ratio(j, bj, bi)
                })
                .collect()
        };
        for chain in 0..c {
            for (q, &r) in pairs.iter().enumerate() {
                let (i, j) = (r * c + chain, (r + 1) * c + chain);
                let log_alpha = log_alphas[chain * pairs.len() + q];
                let u: f64 = self.swap_rngs[chain].random();
                let prob = if log_alpha.is_nan() {
                    0.0
                } else {
                    log_alpha.min(0.0).exp()
                };
                accept[group(chain) * (big_r - 1) + r] += prob;
                attempts[r] += 1;
                if u < prob {
                    self.exchange(i, j);
                }
            }
            // Round trips: a state's last extreme visited.
            let at_ref = self.labels[chain] as usize;
            let at_top = self.labels[(big_r - 1) * c + chain] as usize;
            let h = &mut self.heading[chain * big_r..(chain + 1) * big_r];
            if h[at_ref] == 2 {
                trips[group(chain)] += 1;
            }
            h[at_ref] = 1;
            if h[at_top] == 1 {
                h[at_top] = 2;
            }
        }
    }

    /// Exchanges the states of rows `i` and `j` (positions and cached
    /// values) and refreshes both at their temperatures.
    fn exchange(&mut self, i: usize, j: usize) {
        swap_rows(self.state.position.view_mut(), i, j);
        self.labels.swap(i, j);
        match &mut self.path {
            Path::Geometric(g) => {
                g.f.swap(i, j);
                g.e0.swap(i, j);
                if g.grad {
                    swap_rows(g.gf.view_mut(), i, j);
                    swap_rows(g.g0.view_mut(), i, j);
                }
            }
            Path::Rbm(p) => {
                swap_rows(p.act.view_mut(), i, j);
                p.dv.swap(i, j);
                p.lb.swap(i, j);
            }
        }
        self.refresh_row(i);
        self.refresh_row(j);
    }

    /// Moves the temperatures to `betas` (every chain's, chain-major, each
    /// rising from 0 to 1): every row's cached energy follows, no
    /// evaluation needed.
    pub(crate) fn set_betas(&mut self, betas: Vec<f64>) {
        let (c, r) = (self.chains, self.replicas);
        debug_assert_eq!(betas.len(), c * r);
        self.b_rows = (0..self.b_rows.len())
            .map(|i| betas[(i % c) * r + i / c])
            .collect();
        self.betas = betas;
        for i in 0..self.b_rows.len() {
            self.refresh_row(i);
        }
    }

    /// Searches initial step sizes for `tuner` at the current state (no
    /// row moves; streams are copied).
    pub(crate) fn start_tuner(&self, tuner: &mut crate::kernels::Tuner, tuning: &mut Tuning) {
        if let Path::Geometric(g) = &self.path {
            let tempered = g.tempered(&self.b_rows);
            tuner.start(
                g.kernel.as_ref(),
                &tempered,
                &self.state,
                &self.rngs,
                tuning,
            );
        }
    }

    /// Feeds warm-up step `t` to `tuner` (after [`Ladder::local_move`]).
    pub(crate) fn update_tuner(
        &mut self,
        tuner: &mut crate::kernels::Tuner,
        t: usize,
        tuning: &mut Tuning,
    ) {
        if let Path::Geometric(g) = &self.path {
            let tempered = g.tempered(&self.b_rows);
            tuner.update(
                t,
                g.kernel.as_ref(),
                &tempered,
                &mut self.state,
                &self.rngs,
                &self.steps,
                tuning,
            );
        }
    }

    /// The rows of replica `r` (one per chain).
    pub(crate) fn replica_rows(&self, r: usize) -> ArrayView2<'_, f64> {
        self.state
            .position
            .slice(s![r * self.chains..(r + 1) * self.chains, ..])
    }
}

/// Swaps rows `i` and `j` of a matrix.
fn swap_rows(mut m: ArrayViewMut2<f64>, i: usize, j: usize) {
    if i == j {
        return;
    }
    let (lo, hi) = (i.min(j), i.max(j));
    let (mut a, mut b) = m.view_mut().split_at(Axis(0), hi);
    ndarray::Zip::from(a.row_mut(lo))
        .and(b.row_mut(0))
        .for_each(std::mem::swap);
}

/// Pigeons' schedule update (Syed et al. 2022): with `rejection[r]` the
/// swap rejection rate between `b_r` and `b_{r+1}`, the communication
/// barrier `Lambda(b)` is the cumulative rejection, interpolated linearly
/// between the temperatures; the new temperatures split `Lambda(1)` into
/// equal parts. Rates are floored at 1e-3 so temperatures stay distinct.
pub fn respace_schedule(betas: &[f64], rejection: &[f64]) -> Vec<f64> {
    let n = betas.len();
    if n < 3 {
        return betas.to_vec();
    }
    let mut cum = vec![0.0; n];
    for r in 0..n - 1 {
        cum[r + 1] = cum[r] + rejection[r].clamp(1e-3, 1.0);
    }
    let total = cum[n - 1];
    let mut out = Vec::with_capacity(n);
    out.push(0.0);
    let mut seg = 0;
    for k in 1..n - 1 {
        let level = total * k as f64 / (n - 1) as f64;
        while seg + 1 < n - 1 && cum[seg + 1] < level {
            seg += 1;
        }
        let frac = (level - cum[seg]) / (cum[seg + 1] - cum[seg]);
        out.push(betas[seg] + frac.clamp(0.0, 1.0) * (betas[seg + 1] - betas[seg]));
    }
    out.push(1.0);
    out
}
