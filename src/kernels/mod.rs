//! Transition kernels: one file per kernel, each a pure transition of a
//! batch of chains.
//!
//! A kernel's [`Kernel::step`] moves every chain once: it proposes for all
//! chains, evaluates the energy core once per batch (once per leapfrog step
//! for HMC), and accepts or rejects per chain with the chain's own random
//! stream. Kernels target `exp(-E)` for the energy they are given; the
//! driver passes `beta * F` ([`crate::energy::Scaled`]) to sample at
//! inverse temperature `beta`. Parameters are checked in the constructors;
//! a step cannot fail: a proposal whose energy or gradient is not finite is
//! rejected and counted as a divergence.

mod adapt;
mod automala;
mod dense;
mod gibbs;
mod hmc;
mod mala;
mod nuts;
mod rwm;
mod step_size;
mod ula;

mod spec;

pub use adapt::{Adaptation, MassAdapter, MassWindows, Tuner, WindowBounds, mass_windows};
pub use automala::AutoMala;
pub use dense::{DenseAdapter, DenseMetric, Whitened};

pub use gibbs::Gibbs;
pub use hmc::Hmc;
pub use mala::Mala;
pub use nuts::Nuts;
pub use rwm::Rwm;
pub use spec::{
    Invariance, KERNELS, KernelInfo, KernelSettings, KernelSpec, SETTINGS, SettingInfo, listing,
};
pub use step_size::{ChosenSteps, DualAveraging, StepAdapter, Tracking};
pub use ula::{Ula, UlaConfig};

mod rows;
pub use rows::{
    Block, ChainRow, evaluate_proposals, for_each_block, for_each_chain_row, metropolis,
};

use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::rng::ChainRng;
use ndarray::{Array1, Array2, ArrayView1};

/// Chains per parallel block in kernel loops (each chain is independent, so
/// the block size affects speed only, never results).
const CHAIN_BLOCK: usize = 16;

/// Positions of a batch of chains with their cached energies and gradients,
/// plus scratch space for proposals (allocated once).
#[derive(Clone, Debug)]
pub struct ChainState {
    /// Positions, one chain per row (n x d).
    pub position: Array2<f64>,
    /// Energy `E` of each position (as the kernel sees it, i.e. `beta F`).
    pub energy: Array1<f64>,
    /// `dE/dy` at each position (n x d); zeros for kernels without gradients.
    pub grad: Array2<f64>,
    proposal: Array2<f64>,
    proposal_energy: Array1<f64>,
    proposal_grad: Array2<f64>,
    momentum: Array2<f64>,
    aux: Array2<f64>,
}

impl ChainState {
    /// Evaluates `energy` (and its gradient) at `position`. Every chain must
    /// start at a finite energy.
    pub fn new(energy: &dyn Energy, position: Array2<f64>) -> Result<Self> {
        crate::energy::check_rows(energy, position.view())?;
        let (n, d) = position.dim();
        let mut st = ChainState {
            energy: Array1::zeros(n),
            grad: Array2::zeros((n, d)),
            proposal: position.clone(),
            proposal_energy: Array1::zeros(n),
            proposal_grad: Array2::zeros((n, d)),
            momentum: Array2::zeros((n, d)),
            aux: Array2::zeros((n, 2)),
            position,
        };
        energy.energy_grad_batch(st.position.view(), st.energy.view_mut(), st.grad.view_mut());
        if let Some(i) = st.energy.iter().position(|e| !e.is_finite()) {
            return Err(Error::param(
                "initial state",
                format!("chain {i} starts at a non-finite energy ({})", st.energy[i]),
            ));
        }
        Ok(st)
    }

    /// Number of chains.
    pub fn n_chains(&self) -> usize {
        self.position.nrows()
    }

    /// Dimension of a state.
    pub fn dim(&self) -> usize {
        self.position.ncols()
    }

    /// Re-evaluates energies and gradients at the current positions.
    pub fn refresh(&mut self, energy: &dyn Energy) {
        energy.energy_grad_batch(
            self.position.view(),
            self.energy.view_mut(),
            self.grad.view_mut(),
        );
    }
}

/// What one step did to one chain.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChainStep {
    /// Metropolis acceptance probability `min(1, alpha)` (1 for unadjusted
    /// and Gibbs kernels, 0 after a divergence).
    pub accept_prob: f64,
    /// Whether the proposal was taken.
    pub accepted: bool,
    /// Whether the proposal had a non-finite energy or gradient (or, for
    /// HMC, an energy error above 1000).
    pub divergent: bool,
    /// Evaluations of this step beyond the kernel's nominal count
    /// (kernels whose cost varies, as the AutoStep kernels' step-size
    /// search; 0 for the others): gradient evaluations for kernels with a
    /// gradient ([`Kernel::grad_evals_per_step`] > 0), energy evaluations
    /// for the others.
    pub extra_evals: u32,
    /// The step this step chose, in the kernel's step units, for kernels
    /// that choose one per step (the AutoStep kernels: `eps0 2^j`); 0 for
    /// the others. Warm-up sets the base step from these.
    pub selected_step: f64,
    /// NUTS: the doublings its trajectory kept (Stan's `treedepth__`: a
    /// subtree discarded for a U-turn or a divergence inside it does not
    /// count), the chain's own even in lockstep; 0 for the other kernels.
    pub tree_depth: u32,
}

impl ChainStep {
    /// An exact move, always taken: a Gibbs sweep, an unadjusted step
    /// (acceptance 1, not divergent).
    pub fn exact() -> Self {
        ChainStep {
            accept_prob: 1.0,
            accepted: true,
            ..ChainStep::default()
        }
    }

    /// A Metropolis decision: acceptance probability `min(1, alpha)` and
    /// whether the proposal was taken.
    pub fn metropolis(accept_prob: f64, accepted: bool) -> Self {
        ChainStep {
            accept_prob,
            accepted,
            ..ChainStep::default()
        }
    }

    /// A divergence: the proposal's energy or gradient was not finite (or,
    /// for trajectories, its energy error too large); not taken.
    pub fn divergent() -> Self {
        ChainStep {
            divergent: true,
            ..ChainStep::default()
        }
    }

    /// This step with `n` evaluations beyond the kernel's nominal count.
    pub fn with_extra_evals(mut self, n: u32) -> Self {
        self.extra_evals = n;
        self
    }

    /// This step with the step size it chose (kernels that choose one per
    /// step, [`Kernel::chooses_step`]).
    pub fn with_selected_step(mut self, step: f64) -> Self {
        self.selected_step = step;
        self
    }

    /// `ln` of [`ChainStep::selected_step`], if the kernel chose a step
    /// (finite and > 0).
    pub fn log_selected_step(&self) -> Option<f64> {
        let s = self.selected_step;
        (s > 0.0 && s.is_finite()).then(|| s.ln())
    }
}

/// A Markov transition on a batch of chains: a pure function of the
/// energy, the tuning, the state and the chains' streams.
///
/// A kernel value holds only its construction settings (leapfrog steps,
/// jitter, target acceptance, ULA's noise); what warm-up adapts (step
/// sizes, the diagonal inverse mass) is a [`Tuning`] the caller owns and
/// passes to every step, as BlackJAX passes `step_size` and
/// `inverse_mass_matrix`. So the same seed gives the same draws whether a
/// kernel value is fresh or has served other runs.
pub trait Kernel: Send + Sync {
    /// Short name (`mala`, `hmc`, ...), as in [`KERNELS`].
    fn name(&self) -> &'static str;

    /// Moves every chain once with `tuning`. Chain `i` draws only from
    /// `rngs[i]` and reports in `steps[i]`.
    fn step(
        &self,
        energy: &dyn Energy,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    );

    /// The tuning a run starts from: the step size the kernel was built
    /// with, no mass matrix.
    fn initial_tuning(&self) -> Tuning;

    /// The acceptance rate step-size adaptation aims for; `None` if the
    /// kernel has no step size to adapt (ULA, Gibbs).
    fn target_accept(&self) -> Option<f64>;

    /// Whether the kernel uses a diagonal inverse mass matrix from its
    /// tuning (MALA, HMC, RWM), so that warm-up should adapt one. Every
    /// kernel must say (no default: a kernel that reads the mass but does
    /// not say so would silently run without one).
    fn uses_mass(&self) -> bool;

    /// The states the kernel moves on (default continuous; Gibbs: binary).
    /// Runners check it against the energy's before any step.
    fn space(&self) -> crate::energy::StateSpace {
        crate::energy::StateSpace::Continuous
    }

    /// Whether the kernel chooses its step at every step from a base step
    /// (the AutoStep kernels), reporting it in [`ChainStep::selected_step`]:
    /// warm-up then sets the base step from those choices instead of
    /// tuning it to an acceptance target.
    fn chooses_step(&self) -> bool {
        false
    }

    /// Energy-gradient evaluations per chain per step.
    fn grad_evals_per_step(&self) -> usize;

    /// Whether the kernel has a step size at all (false for Gibbs, whose
    /// moves are exact conditional draws): reports leave step sizes,
    /// divergences and gradient counts out when it has none.
    fn has_step_size(&self) -> bool {
        true
    }

    /// Whether the energy's last batch call in a step is at the proposals,
    /// each accepted one then being the chain's new position (Metropolis
    /// kernels and ULA): AIS keeps those values instead of evaluating the
    /// new positions again. False (the default) for kernels that evaluate
    /// other points last (Gibbs's heat bath).
    fn proposal_is_last_eval(&self) -> bool {
        false
    }

    /// Moves every chain once as [`Kernel::step`] would, drawing the same
    /// numbers, but without evaluating the energy at the new positions:
    /// the last move of a caller that needs only where the chains end (a
    /// negatives call whose end energies are not wanted: K moves of ULA
    /// then cost K gradient evaluations, not K + 1). Afterwards a moved
    /// chain's `state.energy` is NaN and its `state.grad` stale; a chain
    /// whose new position is not finite stays and counts as a divergence.
    /// Returns false, moving nothing, for a kernel that needs the
    /// evaluation to decide (every Metropolis kernel): the default.
    fn step_unevaluated(
        &self,
        _tuning: &Tuning,
        _state: &mut ChainState,
        _rngs: &mut [ChainRng],
        _steps: &mut [ChainStep],
    ) -> bool {
        false
    }
}

/// What warm-up adapts and every step reads: step sizes (one for all
/// chains, or one per chain; in each kernel's own units) and an optional
/// diagonal inverse mass matrix (preconditioner, entries finite and > 0).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tuning {
    step_size: StepSizes,
    inv_mass: Option<InvMass>,
    /// Set by warm-up during its first 15%, for kernels that move
    /// differently there (the AutoStep kernels descend from far starts
    /// with a signed step criterion and no reversibility check: fast, not
    /// exact; warm-up draws are discarded). False in the rest of warm-up
    /// and in every sampling or AIS step.
    #[serde(default)]
    warmup: bool,
    /// A dense inverse mass, shared by all chains (warm-up sets it with
    /// [`Adaptation::dense_mass`]): the chains then move in the whitened
    /// coordinates `z = L^-1 y` on [`Whitened`], with no diagonal mass.
    #[serde(default)]
    dense: Option<DenseMetric>,
}

impl Tuning {
    /// One step size for every chain, no mass matrix.
    pub fn new(step_size: f64) -> Self {
        Tuning {
            step_size: StepSizes::uniform(step_size),
            inv_mass: None,
            warmup: false,
            dense: None,
        }
    }

    /// These step sizes, no mass matrix.
    pub fn with_steps(step_size: StepSizes) -> Self {
        Tuning {
            step_size,
            inv_mass: None,
            warmup: false,
            dense: None,
        }
    }

    /// Sets one diagonal inverse mass matrix for every chain; entries must
    /// be finite and > 0.
    pub fn with_inv_mass(mut self, inv_mass: Vec<f64>) -> Result<Self> {
        self.set_inv_mass(InvMass::shared(inv_mass)?);
        Ok(self)
    }

    /// Sets the diagonal inverse mass matrices (one shared, or one per
    /// chain; an [`InvMass`] is checked when it is made).
    pub fn set_inv_mass(&mut self, inv_mass: InvMass) {
        self.inv_mass = Some(inv_mass);
    }

    /// The step sizes.
    pub fn step_size(&self) -> &StepSizes {
        &self.step_size
    }

    /// Replaces the step sizes (finite, > 0).
    pub fn set_step_size(&mut self, step_size: StepSizes) {
        self.step_size = step_size;
    }

    /// Whether this tuning fits `n_chains` chains of dimension `dim`: one
    /// step size or one per chain, finite and positive, and an inverse mass
    /// (if any) of `dim` finite positive entries, shared or one per chain
    /// (checked on resume).
    pub fn fits(&self, n_chains: usize, dim: usize) -> bool {
        let steps = self.step_size.as_slice();
        (steps.len() == 1 || steps.len() == n_chains)
            && steps.iter().all(|s| s.is_finite() && *s > 0.0)
            && self.inv_mass.as_ref().is_none_or(|m| {
                m.dim == dim
                    && (m.values.len() == dim || m.values.len() == n_chains * dim)
                    && check_inv_mass(&m.values)
            })
            && self
                .dense
                .as_ref()
                .is_none_or(|m| m.dim() == dim && m.is_valid() && self.inv_mass.is_none())
    }

    /// The dense inverse mass, if any: the chains' positions are then in
    /// its whitened coordinates.
    pub fn dense(&self) -> Option<&DenseMetric> {
        self.dense.as_ref()
    }

    /// Sets a dense inverse mass (and drops any diagonal one). The caller
    /// moves the chains' positions into its coordinates.
    pub fn set_dense(&mut self, metric: DenseMetric) {
        self.inv_mass = None;
        self.dense = Some(metric);
    }

    /// `energy` as the kernels move on it under this tuning: whitened by
    /// the dense mass, if one is set.
    pub fn moved<'a>(&'a self, energy: &'a dyn Energy) -> Moved<'a> {
        Moved::new(energy, self.dense.as_ref())
    }

    /// Chain `chain`'s diagonal inverse mass matrix, if any (the shared one
    /// when there is one for all chains). `chain` is the row in the run's
    /// state.
    #[inline]
    pub fn inv_mass(&self, chain: usize) -> Option<&[f64]> {
        self.inv_mass.as_ref().map(|m| m.of(chain))
    }

    /// Every chain's diagonal inverse mass as the rows of an `n x d` array
    /// (ones for a unit mass): what an energy's own integrator takes.
    pub fn inv_mass_rows(&self, n: usize, d: usize) -> Array2<f64> {
        let mut rows = Array2::<f64>::ones((n, d));
        for i in 0..n {
            if let Some(w) = self.inv_mass(i) {
                rows.row_mut(i).assign(&ArrayView1::from(w));
            }
        }
        rows
    }

    /// The inverse mass matrices as stored, if any.
    pub fn inv_masses(&self) -> Option<&InvMass> {
        self.inv_mass.as_ref()
    }

    /// Whether this tuning is warm-up's (see [`Tuning::set_warmup`]).
    pub fn in_warmup(&self) -> bool {
        self.warmup
    }

    /// Marks the tuning as warm-up's, where draws are discarded: kernels
    /// may then trade exactness for a faster approach to the typical set
    /// (the AutoStep kernels do). Warm-up sets it and clears it after its
    /// first 15%.
    pub fn set_warmup(&mut self, on: bool) {
        self.warmup = on;
    }
}

/// An energy as a tuning's kernels move on it ([`Tuning::moved`]).
pub enum Moved<'a> {
    /// The energy itself.
    Plain(&'a dyn Energy),
    /// In a dense mass's whitened coordinates.
    Whitened(Whitened<'a>),
}

impl<'a> Moved<'a> {
    /// `energy`, whitened by `dense` if given.
    pub fn new(energy: &'a dyn Energy, dense: Option<&'a DenseMetric>) -> Self {
        match dense {
            Some(m) => Moved::Whitened(Whitened::new(energy, m)),
            None => Moved::Plain(energy),
        }
    }

    /// The energy to step on.
    pub fn energy(&self) -> &dyn Energy {
        match self {
            Moved::Plain(e) => *e,
            Moved::Whitened(w) => w,
        }
    }
}

/// Diagonal inverse mass matrices (preconditioners; entries finite and
/// positive, in squared units of the state): one shared by all chains, or one
/// per chain (what warm-up adapts by default: each chain from its own
/// draws, as Stan and nutpie do, so that a run split into shards adapts
/// the same as the whole run).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InvMass {
    dim: usize,
    /// `dim` entries (shared) or `chains x dim`, chain-major.
    values: Vec<f64>,
}

impl InvMass {
    /// One matrix for every chain.
    pub fn shared(inv_mass: Vec<f64>) -> Result<Self> {
        Self::check(&inv_mass)?;
        Ok(InvMass {
            dim: inv_mass.len(),
            values: inv_mass,
        })
    }

    /// One matrix per chain: `rows[i]` is chain `i`'s, all of one length.
    pub fn per_chain(rows: &[Vec<f64>]) -> Result<Self> {
        let dim = rows.first().map_or(0, Vec::len);
        if rows.iter().any(|r| r.len() != dim) {
            return Err(Error::param(
                "inverse mass",
                "every chain's matrix needs the same dimension",
            ));
        }
        let values = rows.concat();
        Self::check(&values)?;
        Ok(InvMass { dim, values })
    }

    fn check(values: &[f64]) -> Result<()> {
        if check_inv_mass(values) {
            Ok(())
        } else {
            Err(Error::param(
                "inverse mass",
                "entries must be finite and > 0",
            ))
        }
    }

    /// Chain `chain`'s matrix (the shared one for every chain if shared).
    #[inline]
    pub fn of(&self, chain: usize) -> &[f64] {
        if self.values.len() == self.dim {
            &self.values
        } else {
            &self.values[chain * self.dim..(chain + 1) * self.dim]
        }
    }

    /// Whether one matrix serves every chain.
    pub fn is_shared(&self) -> bool {
        self.values.len() == self.dim
    }

    /// The matrices, one row each (one row when shared).
    pub fn rows(&self) -> Vec<Vec<f64>> {
        self.values
            .chunks(self.dim.max(1))
            .map(<[f64]>::to_vec)
            .collect()
    }

    /// Per coordinate, the median over chains (the matrix itself when
    /// shared): the one figure a report shows.
    pub fn median(&self) -> Vec<f64> {
        let rows = self.values.len() / self.dim.max(1);
        (0..self.dim)
            .map(|j| {
                let col: Vec<f64> = (0..rows).map(|r| self.values[r * self.dim + j]).collect();
                StepSizes::per_chain(col).median()
            })
            .collect()
    }
}

/// Step sizes: one shared by all chains, or one per chain (what warm-up
/// adaptation produces: each chain tunes its own, as Stan and nuts-rs do,
/// so a chain that starts far out in a steep region shrinks its step
/// instead of being stuck at the shared one).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepSizes(Vec<f64>);

impl StepSizes {
    /// The same step for every chain.
    pub fn uniform(step: f64) -> Self {
        StepSizes(vec![step])
    }
    /// One step per chain.
    pub fn per_chain(steps: Vec<f64>) -> Self {
        StepSizes(steps)
    }
    /// The step of chain `chain`.
    #[inline]
    pub fn get(&self, chain: usize) -> f64 {
        if self.0.len() == 1 {
            self.0[0]
        } else {
            self.0[chain]
        }
    }
    /// The steps as stored (length 1 when uniform).
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }
    /// The median step (the figure a report shows).
    pub fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        }
    }
    /// The steps for `n` chains, expanded.
    pub fn expand(&self, n: usize) -> Vec<f64> {
        (0..n).map(|i| self.get(i)).collect()
    }
}

/// Mean acceptance probability of one step over chains, summed in chain order.
pub fn mean_accept(steps: &[ChainStep]) -> f64 {
    steps.iter().map(|s| s.accept_prob).sum::<f64>() / steps.len() as f64
}

/// Checks a target acceptance rate for step-size adaptation: in (0, 1).
pub(crate) fn check_target_accept(target: f64) -> Result<f64> {
    if target > 0.0 && target < 1.0 {
        Ok(target)
    } else {
        Err(Error::param(
            "target_accept",
            format!("must be in (0, 1), got {target}"),
        ))
    }
}

/// Checks an optional diagonal inverse mass matrix.
pub(crate) fn check_inv_mass(inv_mass: &[f64]) -> bool {
    inv_mass.iter().all(|m| m.is_finite() && *m > 0.0)
}

/// `sum_j a_j^2 w_j` (or `sum a_j^2` without weights).
#[inline]
pub(crate) fn weighted_sq(a: ArrayView1<f64>, w: Option<&[f64]>) -> f64 {
    match w {
        Some(w) => a.iter().zip(w).map(|(x, w)| x * x * w).sum(),
        None => a.iter().map(|x| x * x).sum(),
    }
}
