//! Leapfrog integration as an energy's own capability: many leapfrog steps
//! in one call, for energies whose every call costs more than its
//! arithmetic (a compiled JAX function behind the Python interpreter).
//!
//! NUTS and HMC take a trajectory's leapfrog steps one batch evaluation at
//! a time. An energy that implements [`Leapfrog`] (and returns itself from
//! [`Energy::as_leapfrog`]) is instead asked for a whole segment: `k`
//! steps from each chain's start, every intermediate state written out.
//! NUTS asks for the rest of each subtree in one call (a transition of
//! depth `j` costs `j + 1` calls instead of `2^j`), HMC for the whole
//! trajectory. The arithmetic is defined by [`kick_drift`] and [`kick`];
//! an integrator that follows it exactly gives the kernels' draws bit for
//! bit ([`StepwiseLeapfrog`] is that reference), one that rounds
//! differently (a compiler contracting `a + b c`) gives draws from the
//! same kernel that differ in the last bits.

use super::Energy;
use ndarray::{Array2, Array3, ArrayView1, ArrayView2, s};

/// Leapfrog half kick and drift, the first half of a step:
/// `p -= e/2 grad`, then `y += e W p` (`W` the diagonal inverse mass, 1
/// when `None`; `e` the signed step size).
#[inline]
pub fn kick_drift(p: &mut [f64], y: &mut [f64], g: &[f64], e: f64, w: Option<&[f64]>) {
    for j in 0..p.len() {
        p[j] -= 0.5 * e * g[j];
        y[j] += e * w.map_or(1.0, |w| w[j]) * p[j];
    }
}

/// Leapfrog half kick, the step's last part (after the gradient at the new
/// position): `p -= e/2 grad`.
#[inline]
pub fn kick(p: &mut [f64], g: &[f64], e: f64) {
    for j in 0..p.len() {
        p[j] -= 0.5 * e * g[j];
    }
}

/// Where a segment starts: one chain per row, `n x d` each.
#[derive(Clone, Copy, Debug)]
pub struct LeapfrogStart<'a> {
    /// Positions.
    pub y: ArrayView2<'a, f64>,
    /// Momenta.
    pub p: ArrayView2<'a, f64>,
    /// Gradients of the energy at `y`.
    pub g: ArrayView2<'a, f64>,
    /// The signed step size of each row (negative: backward in time; 0
    /// leaves the row where it is).
    pub eps: ArrayView1<'a, f64>,
    /// The diagonal inverse mass `W` of each row (`n x d`; ones for a unit
    /// mass).
    pub inv_mass: ArrayView2<'a, f64>,
    /// Where each row stops: once a step's Hamiltonian
    /// `H = e + p^T W p / 2` is not below `h_max` (or not finite), the row
    /// takes no further step and its later states are NaN (the kernel has
    /// read it as divergent by then). NUTS gives its divergence bound, so
    /// nothing is evaluated past a divergence; `+inf` never stops a row.
    pub h_max: ArrayView1<'a, f64>,
}

/// The states after each step of a segment: step `s`'s state of chain `i`
/// at `[s, i]`. `y`, `p` and `g` are `steps x n x d`, `e` is `steps x n`.
#[derive(Clone, Debug, Default)]
pub struct LeapfrogPath {
    /// Positions.
    pub y: Array3<f64>,
    /// Momenta (after the step's closing half kick).
    pub p: Array3<f64>,
    /// Gradients at the positions.
    pub g: Array3<f64>,
    /// Energies at the positions.
    pub e: Array2<f64>,
}

/// The most bytes a segment's path may take: kernels split longer
/// segments into calls of at most [`max_segment_steps`] steps (the same
/// draws: each call starts where the last ended).
pub const SEGMENT_BYTES: usize = 64 << 20;

/// The most steps one segment of `n` rows of `d` values may take within
/// [`SEGMENT_BYTES`] (at least 1).
pub fn max_segment_steps(n: usize, d: usize) -> usize {
    let per_step = n
        .saturating_mul(d.saturating_mul(3).saturating_add(1))
        .saturating_mul(8);
    (SEGMENT_BYTES / per_step.max(1)).max(1)
}

impl LeapfrogPath {
    /// Shapes the buffers for `steps` steps of `n` rows of `d` values
    /// (reallocating only when the shape changes; the contents are left to
    /// the integrator).
    pub fn reshape(&mut self, steps: usize, n: usize, d: usize) {
        if self.y.dim() != (steps, n, d) {
            self.y = Array3::zeros((steps, n, d));
            self.p = Array3::zeros((steps, n, d));
            self.g = Array3::zeros((steps, n, d));
            self.e = Array2::zeros((steps, n));
        }
    }

    /// The number of steps the buffers hold.
    pub fn steps(&self) -> usize {
        self.e.nrows()
    }

    /// Fills every value with NaN: a failed segment, which every kernel
    /// reads as a divergence.
    pub fn fail(&mut self) {
        for a in [&mut self.y, &mut self.p, &mut self.g] {
            a.fill(f64::NAN);
        }
        self.e.fill(f64::NAN);
    }
}

/// An energy that integrates Hamilton's equations itself: `path.steps()`
/// leapfrog steps of [`kick_drift`], the gradient at the new position and
/// [`kick`], from `start`, every step's state written to `path` (already
/// shaped by the caller), each row stopping at its `h_max`
/// ([`LeapfrogStart::h_max`]). A failed call fills `path` with NaN
/// ([`LeapfrogPath::fail`]). The energy is the one the kernel samples
/// (`E`, not `F` at another temperature).
pub trait Leapfrog: Send + Sync {
    /// Takes the segment.
    fn leapfrog(&self, start: LeapfrogStart<'_>, path: &mut LeapfrogPath);
}

/// The reference integrator: any energy, one batch evaluation per step,
/// the kernels' own arithmetic. An energy wrapped in it samples exactly as
/// the energy itself does (the tests hold the two to the same bits); it
/// serves to test integrators and the kernels' segment paths.
pub struct StepwiseLeapfrog<E>(pub E);

impl<E: Energy> Leapfrog for StepwiseLeapfrog<E> {
    fn leapfrog(&self, start: LeapfrogStart<'_>, path: &mut LeapfrogPath) {
        let (mut y, mut p, mut g) = (start.y.to_owned(), start.p.to_owned(), start.g.to_owned());
        let n = y.nrows();
        let mut live = vec![true; n];
        let mut e = ndarray::Array1::<f64>::zeros(n);
        for s in 0..path.steps() {
            // A stopped row stays where it was evaluated last.
            let mut trial = y.clone();
            let mut trial_p = p.clone();
            for i in (0..n).filter(|&i| live[i]) {
                kick_drift(
                    trial_p.row_mut(i).as_slice_mut().expect("owned rows"),
                    trial.row_mut(i).as_slice_mut().expect("owned rows"),
                    g.row(i).as_slice().expect("owned rows"),
                    start.eps[i],
                    start.inv_mass.row(i).as_slice(),
                );
            }
            let mut trial_g = g.clone();
            self.0
                .energy_grad_batch(trial.view(), e.view_mut(), trial_g.view_mut());
            for i in 0..n {
                if !live[i] {
                    path.y.slice_mut(s![s, i, ..]).fill(f64::NAN);
                    path.p.slice_mut(s![s, i, ..]).fill(f64::NAN);
                    path.g.slice_mut(s![s, i, ..]).fill(f64::NAN);
                    path.e[[s, i]] = f64::NAN;
                    continue;
                }
                kick(
                    trial_p.row_mut(i).as_slice_mut().expect("owned rows"),
                    trial_g.row(i).as_slice().expect("owned rows"),
                    start.eps[i],
                );
                y.row_mut(i).assign(&trial.row(i));
                p.row_mut(i).assign(&trial_p.row(i));
                g.row_mut(i).assign(&trial_g.row(i));
                path.y.slice_mut(s![s, i, ..]).assign(&y.row(i));
                path.p.slice_mut(s![s, i, ..]).assign(&p.row(i));
                path.g.slice_mut(s![s, i, ..]).assign(&g.row(i));
                path.e[[s, i]] = e[i];
                let kinetic: f64 = p
                    .row(i)
                    .iter()
                    .zip(start.inv_mass.row(i))
                    .map(|(x, w)| x * x * w)
                    .sum();
                let h = e[i] + 0.5 * kinetic;
                live[i] = h < start.h_max[i];
            }
        }
    }
}

impl<E: Energy> Energy for StepwiseLeapfrog<E> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn energy_batch(&self, y: ArrayView2<f64>, energy: ndarray::ArrayViewMut1<f64>) {
        self.0.energy_batch(y, energy);
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        energy: ndarray::ArrayViewMut1<f64>,
        grad: ndarray::ArrayViewMut2<f64>,
    ) {
        self.0.energy_grad_batch(y, energy, grad);
    }
    fn log_z(&self) -> Option<f64> {
        self.0.log_z()
    }
    fn as_leapfrog(&self) -> Option<&dyn Leapfrog> {
        Some(self)
    }
}
