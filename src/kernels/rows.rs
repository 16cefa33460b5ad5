//! What a kernel moves chains with: blocks of chains in parallel, one
//! chain's row views, the batched evaluation of proposals and the
//! Metropolis decision (public: kernels written outside boltz use them).

use super::{CHAIN_BLOCK, ChainState, ChainStep};
use crate::energy::Energy;
use crate::rng::ChainRng;
use ndarray::{ArrayViewMut1, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// Mutable views of one block of chains ([`for_each_block`]): what a
/// kernel written outside boltz uses to move chains in parallel with the
/// state's own scratch rows (no allocation per step). Row `i` of every
/// view is chain `first + i`.
pub struct Block<'a> {
    /// Index of the block's first chain.
    pub first: usize,
    /// Positions (rows of the block's chains).
    pub position: ArrayViewMut2<'a, f64>,
    /// Cached energies at the positions.
    pub energy: ArrayViewMut1<'a, f64>,
    /// Cached gradients at the positions (zeros for gradient-free kernels).
    pub grad: ArrayViewMut2<'a, f64>,
    /// Scratch: the proposals ([`evaluate_proposals`] fills their energies).
    pub proposal: ArrayViewMut2<'a, f64>,
    /// Scratch: the proposals' energies.
    pub proposal_energy: ArrayViewMut1<'a, f64>,
    /// Scratch: the proposals' gradients.
    pub proposal_grad: ArrayViewMut2<'a, f64>,
    /// Scratch: one more row per chain (momentum, noise).
    pub momentum: ArrayViewMut2<'a, f64>,
    /// Two per-chain scalars a kernel may use within a step.
    pub aux: ArrayViewMut2<'a, f64>,
    /// The chains' random streams: chain `first + i` draws only from `rngs[i]`.
    pub rngs: &'a mut [ChainRng],
    /// What each chain's step did, to fill in.
    pub steps: &'a mut [ChainStep],
}

impl Block<'_> {
    /// Takes the proposal of chain `i` (position, energy, gradient).
    pub fn accept(&mut self, i: usize) {
        self.position.row_mut(i).assign(&self.proposal.row(i));
        self.grad.row_mut(i).assign(&self.proposal_grad.row(i));
        self.energy[i] = self.proposal_energy[i];
    }

    /// True if chain `i`'s proposal has a finite energy and gradient.
    pub fn proposal_finite(&self, i: usize, check_grad: bool) -> bool {
        self.proposal_energy[i].is_finite()
            && (!check_grad || self.proposal_grad.row(i).iter().all(|g| g.is_finite()))
    }
}

/// Runs `f` on every block of chains in parallel (blocks of a fixed size,
/// so the result is the same for any thread count as long as each chain
/// draws only from its own stream).
pub fn for_each_block<F>(
    state: &mut ChainState,
    rngs: &mut [ChainRng],
    steps: &mut [ChainStep],
    f: F,
) where
    F: Fn(Block<'_>) + Sync + Send,
{
    let ax = Axis(0);
    state
        .position
        .axis_chunks_iter_mut(ax, CHAIN_BLOCK)
        .into_par_iter()
        .zip(state.energy.axis_chunks_iter_mut(ax, CHAIN_BLOCK))
        .zip(state.grad.axis_chunks_iter_mut(ax, CHAIN_BLOCK))
        .zip(state.proposal.axis_chunks_iter_mut(ax, CHAIN_BLOCK))
        .zip(state.proposal_energy.axis_chunks_iter_mut(ax, CHAIN_BLOCK))
        .zip(state.proposal_grad.axis_chunks_iter_mut(ax, CHAIN_BLOCK))
        .zip(state.momentum.axis_chunks_iter_mut(ax, CHAIN_BLOCK))
        .zip(state.aux.axis_chunks_iter_mut(ax, CHAIN_BLOCK))
        .zip(rngs.par_chunks_mut(CHAIN_BLOCK))
        .zip(steps.par_chunks_mut(CHAIN_BLOCK))
        .enumerate()
        .for_each(
            |(
                k,
                (
                    (
                        (
                            (
                                (
                                    ((((position, energy), grad), proposal), proposal_energy),
                                    proposal_grad,
                                ),
                                momentum,
                            ),
                            aux,
                        ),
                        rngs,
                    ),
                    steps,
                ),
            )| {
                f(Block {
                    first: k * CHAIN_BLOCK,
                    position,
                    energy,
                    grad,
                    proposal,
                    proposal_energy,
                    proposal_grad,
                    momentum,
                    aux,
                    rngs,
                    steps,
                })
            },
        );
}

/// One chain's rows, for kernels that run a whole step chain by chain
/// (row energies): its position, cached energy and gradient, proposal
/// buffers, a scratch row (noise or momentum), its stream and its record.
pub struct ChainRow<'a> {
    /// The chain's index in the run.
    pub index: usize,
    /// Its position.
    pub position: &'a mut [f64],
    /// The cached gradient at the position.
    pub grad: &'a mut [f64],
    /// The cached energy at the position.
    pub energy: &'a mut f64,
    /// Scratch: the proposal.
    pub proposal: &'a mut [f64],
    /// Scratch: the proposal's gradient.
    pub proposal_grad: &'a mut [f64],
    /// Scratch: the proposal's energy.
    pub proposal_energy: &'a mut f64,
    /// Scratch: one more row (noise or momentum).
    pub scratch: &'a mut [f64],
    /// The chain's random stream.
    pub rng: &'a mut ChainRng,
    /// What its step did, to fill in.
    pub step: &'a mut ChainStep,
}

impl ChainRow<'_> {
    /// Takes the proposal (position, gradient, energy).
    pub fn accept(&mut self) {
        self.position.copy_from_slice(self.proposal);
        self.grad.copy_from_slice(self.proposal_grad);
        *self.energy = *self.proposal_energy;
    }
}

/// Runs `f` on every chain's rows, blocks of chains in parallel.
pub fn for_each_chain_row<F>(
    state: &mut ChainState,
    rngs: &mut [ChainRng],
    steps: &mut [ChainStep],
    f: F,
) where
    F: Fn(ChainRow<'_>) + Sync + Send,
{
    let d = state.dim();
    for_each_block(state, rngs, steps, |b| {
        let Block {
            first,
            mut position,
            mut energy,
            mut grad,
            mut proposal,
            mut proposal_energy,
            mut proposal_grad,
            mut momentum,
            rngs,
            steps,
            ..
        } = b;
        let (pos, grad) = (
            position.as_slice_mut().expect("standard layout"),
            grad.as_slice_mut().expect("standard layout"),
        );
        let (prop, pgrad, scratch) = (
            proposal.as_slice_mut().expect("standard layout"),
            proposal_grad.as_slice_mut().expect("standard layout"),
            momentum.as_slice_mut().expect("standard layout"),
        );
        let (en, pen) = (
            energy.as_slice_mut().expect("contiguous"),
            proposal_energy.as_slice_mut().expect("contiguous"),
        );
        // States have dim >= 1 (checked when the state is built).
        let width = d.max(1);
        for (i, ((((((((y, g), yp), gp), sc), e), ep), rng), step)) in pos
            .chunks_exact_mut(width)
            .zip(grad.chunks_exact_mut(width))
            .zip(prop.chunks_exact_mut(width))
            .zip(pgrad.chunks_exact_mut(width))
            .zip(scratch.chunks_exact_mut(width))
            .zip(en.iter_mut())
            .zip(pen.iter_mut())
            .zip(rngs.iter_mut())
            .zip(steps.iter_mut())
            .enumerate()
        {
            f(ChainRow {
                index: first + i,
                position: y,
                grad: g,
                energy: e,
                proposal: yp,
                proposal_grad: gp,
                proposal_energy: ep,
                scratch: sc,
                rng,
                step,
            });
        }
    });
}

/// Evaluates the energy (and gradient) of every chain's proposal (the
/// rows [`Block::proposal`] wrote), one batched call of the energy core.
pub fn evaluate_proposals(energy: &dyn Energy, state: &mut ChainState, with_grad: bool) {
    if with_grad {
        energy.energy_grad_batch(
            state.proposal.view(),
            state.proposal_energy.view_mut(),
            state.proposal_grad.view_mut(),
        );
    } else {
        energy.energy_batch(state.proposal.view(), state.proposal_energy.view_mut());
    }
}

/// Metropolis decision for one chain: draws one uniform from the chain's
/// stream, records the step and returns whether to accept (the caller then
/// takes the proposal, [`Block::accept`]). `log_alpha` is the log of the
/// Metropolis-Hastings ratio; NaN or a non-finite proposal (`finite` false)
/// count as a divergence.
#[inline]
pub fn metropolis(log_alpha: f64, finite: bool, rng: &mut ChainRng, step: &mut ChainStep) -> bool {
    use rand::RngExt;
    let u: f64 = rng.random();
    if !finite || log_alpha.is_nan() {
        *step = ChainStep::divergent();
        return false;
    }
    // exp(min(log_alpha, 0)), without the call where it is exp(0) = 1.
    let accept_prob = if log_alpha >= 0.0 {
        1.0
    } else {
        log_alpha.exp()
    };
    let accepted = u < accept_prob;
    *step = ChainStep::metropolis(accept_prob, accepted);
    accepted
}
