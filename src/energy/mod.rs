//! The parallel energy core.
//!
//! An energy `F(y)` scores a state `y` (low = likely); the target density at
//! inverse temperature `beta` is proportional to `exp(-beta F(y))`. Every
//! sampler in boltz talks to energies through one batched call: the energies
//! (and gradients) of an `n x d` array whose rows are the states of `n`
//! chains. Implementations split the rows into fixed-size blocks
//! ([`ROW_BLOCK`] or a family's own) and spread the blocks over rayon's
//! threads; since a block's result never depends on which thread computed
//! it, the output is bit-identical for any number of threads.
//!
//! Three ways to provide an energy:
//! - implement [`Energy`] directly, for energies that gain from batching
//!   (neural energies become matrix products);
//! - implement [`RowEnergy`] (one state at a time) and get [`Energy`] for
//!   free, parallel over rows;
//! - wrap a closure with [`FnEnergy`].
//!
//! Conditional energies `F(x, y)` implement [`ConditionalEnergy`];
//! [`Conditioned`] fixes the context `x` (one for all chains, or one per
//! chain) and is an [`Energy`] in `y`. Binary states (RBM visibles) are rows
//! of 0.0/1.0 in the same arrays; [`Energy::space`] says which kind a model has.

mod closure;
mod conditioned;
pub(crate) use conditioned::check_contexts;
mod full_mixture;
mod funnel;
mod gaussian;
mod leapfrog;
mod mixture;
mod mlp;
mod precision;
mod rbm;
mod ring;

pub use closure::FnEnergy;
pub use conditioned::Conditioned;
pub use full_mixture::FullMixture;
pub use funnel::Funnel;
pub use gaussian::{DiagGaussian, FullGaussian};
pub(crate) use gaussian::{cholesky, solve_lower, solve_lower_t};
pub use leapfrog::{
    Leapfrog, LeapfrogPath, LeapfrogStart, SEGMENT_BYTES, StepwiseLeapfrog, kick, kick_drift,
    max_segment_steps,
};
pub use mixture::Mixture;
pub use mlp::{Activation, Layer, Mlp, MlpGrads};
pub(crate) use precision::Real;
pub use precision::{Precision, exp_poly_f32};
pub use rbm::Rbm;
pub use ring::Ring;

use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip};
use rayon::prelude::*;

/// Rows per parallel block for row-wise energies. Fixed, never derived from
/// the thread count, so results do not depend on it.
pub const ROW_BLOCK: usize = 16;

/// The kind of state a model lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum StateSpace {
    /// Real vectors in R^d.
    Continuous,
    /// Vectors of 0.0 / 1.0 in {0, 1}^d.
    Binary,
}

/// A batched energy: the core interface every kernel, driver and estimator uses.
///
/// Shapes: `y` is `n x d` (one state per row), `energy` has length `n`,
/// `grad` is `n x d`. Callers guarantee the shapes (checked entry points are
/// [`evaluate`] and [`evaluate_with_grad`]). A non-finite value is allowed as
/// output: samplers treat it as a divergence.
pub trait Energy: Send + Sync {
    /// Dimension `d` of a state.
    fn dim(&self) -> usize;

    /// Writes `F(y_i)` for every row `i` of `y` into `energy`.
    fn energy_batch(&self, y: ArrayView2<f64>, energy: ArrayViewMut1<f64>);

    /// Writes `F(y_i)` into `energy` and `dF/dy (y_i)` into row `i` of `grad`.
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        energy: ArrayViewMut1<f64>,
        grad: ArrayViewMut2<f64>,
    );

    /// Exact `log Z = log integral exp(-F(y)) dy` at beta = 1, where known in
    /// closed form (natural log; for binary models a sum over states).
    fn log_z(&self) -> Option<f64> {
        None
    }

    /// Continuous or binary states.
    fn space(&self) -> StateSpace {
        StateSpace::Continuous
    }

    /// The number of rows this energy must be called with, if fixed (a
    /// conditional energy with one context per chain); `None` = any.
    fn fixed_rows(&self) -> Option<usize> {
        None
    }

    /// The energy as a [`RowEnergy`], if it is written one state at a time:
    /// kernels then run a whole step chain by chain (cache-resident) instead
    /// of in batched passes. Results are the same either way.
    fn as_row(&self) -> Option<&dyn RowEnergy> {
        None
    }

    /// The energy as an RBM's free energy at inverse temperature `beta`
    /// (`beta F_rbm`), if it is one: Gibbs then runs block sweeps and AIS
    /// anneals along the RBM's parameter path.
    fn as_rbm(&self) -> Option<(&Rbm, f64)> {
        None
    }

    /// The energy's own leapfrog integrator, if it has one ([`Leapfrog`]:
    /// many steps in one call): NUTS and HMC then ask it for whole
    /// segments of a trajectory instead of one batch evaluation per step.
    fn as_leapfrog(&self) -> Option<&dyn Leapfrog> {
        None
    }
}

/// An energy written one state at a time; [`Energy`] follows, parallel over rows.
///
/// Its methods are named apart from [`Energy`]'s (`state_dim`, `known_log_z`)
/// so that calls on a type that has both are never ambiguous.
pub trait RowEnergy: Send + Sync {
    /// Dimension of a state.
    fn state_dim(&self) -> usize;
    /// `F(y)`.
    fn energy(&self, y: &[f64]) -> f64;
    /// `F(y)`, with `dF/dy` written into `grad` (same length as `y`).
    fn energy_grad(&self, y: &[f64], grad: &mut [f64]) -> f64;
    /// Exact log Z at beta = 1, if known.
    fn known_log_z(&self) -> Option<f64> {
        None
    }
    /// Continuous (the default) or binary states: a binary row energy is
    /// sampled by Gibbs and annealed from a Bernoulli base.
    fn row_space(&self) -> StateSpace {
        StateSpace::Continuous
    }
    /// [`RowEnergy::energy_grad`] of a block of rows stored one after
    /// another (`y`: rows x d, `energy`: rows, `grad`: rows x d), which batch
    /// calls hand over at most [`ROW_BLOCK`] rows at a time. The default
    /// goes row by row; an energy may compute several rows at once (in SIMD
    /// lanes) if each row's value is the same, bit for bit, as
    /// [`RowEnergy::energy_grad`]'s.
    fn energy_grad_rows(&self, y: &[f64], energy: &mut [f64], grad: &mut [f64]) {
        let d = self.state_dim().max(1);
        for ((row, e), g) in y
            .chunks_exact(d)
            .zip(energy.iter_mut())
            .zip(grad.chunks_exact_mut(d))
        {
            *e = self.energy_grad(row, g);
        }
    }
}

impl<T: RowEnergy> Energy for T {
    fn dim(&self) -> usize {
        self.state_dim()
    }
    fn energy_batch(&self, y: ArrayView2<f64>, energy: ArrayViewMut1<f64>) {
        par_rows(y, energy, |row, e| *e = self.energy(row));
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        let contiguous = y.is_standard_layout()
            && grad.is_standard_layout()
            && energy.as_slice().is_some()
            && y.ncols() > 0;
        if !contiguous {
            par_rows_grad(y, energy, grad, |row, e, g| *e = self.energy_grad(row, g));
            return;
        }
        // Blocks of rows, in parallel; each block in one call.
        y.axis_chunks_iter(Axis(0), ROW_BLOCK)
            .into_par_iter()
            .zip(energy.axis_chunks_iter_mut(Axis(0), ROW_BLOCK))
            .zip(grad.axis_chunks_iter_mut(Axis(0), ROW_BLOCK))
            .for_each(|((yb, mut eb), mut gb)| {
                let (Some(ys), Some(es), Some(gs)) =
                    (yb.to_slice(), eb.as_slice_mut(), gb.as_slice_mut())
                else {
                    unreachable!("standard layout checked")
                };
                self.energy_grad_rows(ys, es, gs);
            });
    }
    fn log_z(&self) -> Option<f64> {
        self.known_log_z()
    }
    fn space(&self) -> StateSpace {
        self.row_space()
    }
    fn as_row(&self) -> Option<&dyn RowEnergy> {
        Some(self)
    }
}

macro_rules! lanes {
    ($(#[$doc:meta])* $name:ident, $($a:ident),+) => {
        $(#[$doc])*
        #[inline(always)]
        pub fn $name($($a: &[f64],)+ f: impl Fn($(lanes!(@f64 $a)),+) -> f64) -> f64 {
            let n = lanes!(@first $($a),+).len();
            $(let $a = &$a[..n];)+
            let mut acc = [0.0f64; 8];
            let full = n - n % 8;
            let mut j = 0;
            while j < full {
                $(let $a: &[f64; 8] = $a[j..j + 8].try_into().expect("8 lanes");)+
                for k in 0..8 {
                    acc[k] += f($($a[k]),+);
                }
                j += 8;
            }
            for k in 0..n - full {
                acc[k] += f($($a[full + k]),+);
            }
            ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
        }
    };
    (@f64 $a:ident) => { f64 };
    (@first $a:ident $(, $rest:ident)*) => { $a };
}

lanes!(
    /// `sum_j f(a_j)` accumulated in 8 independent lanes (combined pairwise
    /// at the end), so the adds do not wait on each other and the loop
    /// vectorises. The order of the adds is fixed: the result is
    /// deterministic, though it can differ from a left-to-right sum in the
    /// last bits. Slices after the first must be at least as long.
    sum_lanes1, a
);
lanes!(
    /// [`sum_lanes1`] over two slices: `sum_j f(a_j, b_j)`.
    sum_lanes2, a, b
);
lanes!(
    /// [`sum_lanes1`] over three slices: `sum_j f(a_j, b_j, c_j)`.
    sum_lanes3, a, b, c
);
lanes!(
    /// [`sum_lanes1`] over four slices: `sum_j f(a_j, b_j, c_j, d_j)`.
    sum_lanes4, a, b, c, d
);

/// Runs `f(row, &mut energy)` over the rows of `y`, in parallel blocks of
/// [`ROW_BLOCK`] rows.
pub fn par_rows<F>(y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>, f: F)
where
    F: Fn(&[f64], &mut f64) + Sync,
{
    y.axis_chunks_iter(Axis(0), ROW_BLOCK)
        .into_par_iter()
        .zip(energy.axis_chunks_iter_mut(Axis(0), ROW_BLOCK))
        .for_each(|(yb, mut eb)| {
            let mut buf = Vec::new();
            for (row, e) in yb.outer_iter().zip(eb.iter_mut()) {
                f(row_slice(&row, &mut buf), e);
            }
        });
}

/// Runs `f(row, &mut energy, grad_row)` over the rows of `y`, in parallel
/// blocks of [`ROW_BLOCK`] rows.
pub fn par_rows_grad<F>(
    y: ArrayView2<f64>,
    mut energy: ArrayViewMut1<f64>,
    mut grad: ArrayViewMut2<f64>,
    f: F,
) where
    F: Fn(&[f64], &mut f64, &mut [f64]) + Sync,
{
    y.axis_chunks_iter(Axis(0), ROW_BLOCK)
        .into_par_iter()
        .zip(energy.axis_chunks_iter_mut(Axis(0), ROW_BLOCK))
        .zip(grad.axis_chunks_iter_mut(Axis(0), ROW_BLOCK))
        .for_each(|((yb, mut eb), mut gb)| {
            let mut buf = Vec::new();
            let mut gbuf = vec![0.0; yb.ncols()];
            for ((row, e), mut grow) in yb.outer_iter().zip(eb.iter_mut()).zip(gb.outer_iter_mut())
            {
                match grow.as_slice_mut() {
                    Some(g) => f(row_slice(&row, &mut buf), e, g),
                    None => {
                        f(row_slice(&row, &mut buf), e, &mut gbuf);
                        grow.assign(&ArrayView1::from(&gbuf[..]));
                    }
                }
            }
        });
}

fn row_slice<'a>(row: &'a ArrayView1<'a, f64>, buf: &'a mut Vec<f64>) -> &'a [f64] {
    match row.as_slice() {
        Some(s) => s,
        None => {
            buf.clear();
            buf.extend(row.iter());
            &buf[..]
        }
    }
}

/// Energies of the rows of `y`, with the shape checked.
pub fn evaluate(energy: &dyn Energy, y: ArrayView2<f64>) -> Result<Array1<f64>> {
    check_rows(energy, y)?;
    let mut e = Array1::zeros(y.nrows());
    energy.energy_batch(y, e.view_mut());
    Ok(e)
}

/// Energies and gradients of the rows of `y`, with the shape checked.
pub fn evaluate_with_grad(
    energy: &dyn Energy,
    y: ArrayView2<f64>,
) -> Result<(Array1<f64>, Array2<f64>)> {
    check_rows(energy, y)?;
    let mut e = Array1::zeros(y.nrows());
    let mut g = Array2::zeros(y.raw_dim());
    energy.energy_grad_batch(y, e.view_mut(), g.view_mut());
    Ok((e, g))
}

/// Checks that `y` has the energy's dimension (and row count, if fixed).
pub fn check_rows(energy: &dyn Energy, y: ArrayView2<f64>) -> Result<()> {
    if y.ncols() != energy.dim() {
        return Err(Error::shape(
            "states",
            format!("(n, {})", energy.dim()),
            format!("{:?}", y.shape()),
        ));
    }
    if let Some(n) = energy.fixed_rows()
        && y.nrows() != n
    {
        return Err(Error::shape(
            "states (one context per row)",
            format!("({n}, {})", energy.dim()),
            format!("{:?}", y.shape()),
        ));
    }
    Ok(())
}

/// A conditional energy `F(x, y)`: a context `x` in R^x_dim and a state `y`
/// in R^y_dim. Row `i` of `x` goes with row `i` of `y`; gradients are with
/// respect to `y`.
pub trait ConditionalEnergy: Send + Sync {
    /// Dimension of the context `x`.
    fn x_dim(&self) -> usize;
    /// Dimension of the state `y`.
    fn y_dim(&self) -> usize;
    /// `F(x_i, y_i)` for every row.
    fn energy_batch(&self, x: ArrayView2<f64>, y: ArrayView2<f64>, energy: ArrayViewMut1<f64>);
    /// `F(x_i, y_i)` and `dF/dy` for every row.
    fn energy_grad_batch(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        energy: ArrayViewMut1<f64>,
        grad: ArrayViewMut2<f64>,
    );
    /// Exact `log Z(x)` at beta = 1 for one context, where the family has one.
    fn log_z_at(&self, _x: ArrayView1<f64>) -> Option<f64> {
        None
    }
}

/// `log(sum(exp(v)))`, computed stably; `-inf` for an empty slice or all `-inf`.
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// `log(1 + exp(a))`, stable for large |a|.
#[inline]
pub fn softplus(a: f64) -> f64 {
    if a > 0.0 {
        a + (-a).exp().ln_1p()
    } else {
        a.exp().ln_1p()
    }
}

/// `sum_i softplus(x_i)` with one logarithm per 16 terms instead of one
/// per term: `softplus(x) = max(x, 0) + log(1 + exp(-|x|))`, and the
/// factors `1 + exp(-|x|)` lie in (1, 2], so a product of 16 of them stays
/// below 2^16 and its log is exact to a few ulps. About 3x faster than
/// summing [`softplus`], which dominates RBM free energies.
pub fn sum_softplus<I: IntoIterator<Item = f64>>(xs: I) -> f64 {
    let mut linear = 0.0;
    let mut logs = 0.0;
    let mut prod = 1.0;
    let mut k = 0;
    for x in xs {
        linear += x.max(0.0);
        prod *= 1.0 + (-x.abs()).exp();
        k += 1;
        if k == 16 {
            logs += prod.ln();
            prod = 1.0;
            k = 0;
        }
    }
    linear + logs + prod.ln()
}

/// `exp(x)` for `x` in [-708, 708] (clamped outside), to about 2 ulp:
/// `x = k ln 2 + r` with `|r| <= ln 2 / 2`, `exp(r)` by its degree-13
/// Taylor polynomial (remainder below 1e-17) and `2^k` from the exponent
/// bits. Branch-free plain arithmetic, so loops over it vectorise, and the
/// same operations in the same order on every instruction set: results do
/// not depend on the SIMD level.
#[inline(always)]
pub fn exp_poly(x: f64) -> f64 {
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = x.clamp(-708.0, 708.0);
    // Round to nearest with the 1.5 * 2^52 shift: no libm call (the
    // baseline x86-64 has no rounding instruction) and it vectorises.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    let k = (x * std::f64::consts::LOG2_E + SHIFT) - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Horner, 1/13! .. 1/1!.
    let mut p = 1.0 / 6_227_020_800.0;
    p = p * r + 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^k for k in [-1022, 1022]: adding 2^52 + 1023 puts the integer
    // k + 1023 in the low mantissa bits; shifted into the exponent field it
    // is 2^k (no float-to-integer conversion, which AVX2 lacks).
    let biased = (k + (4_503_599_627_370_496.0 + 1023.0)).to_bits();
    let scale = f64::from_bits(biased << 52);
    p * scale
}

/// `1 / (1 + exp(-a))`.
#[inline]
pub fn sigmoid(a: f64) -> f64 {
    if a >= 0.0 {
        1.0 / (1.0 + (-a).exp())
    } else {
        let e = a.exp();
        e / (1.0 + e)
    }
}

/// Adds `bias` to every row of `m`.
pub(crate) fn add_row(mut m: ArrayViewMut2<f64>, bias: ArrayView1<f64>) {
    Zip::from(m.rows_mut()).for_each(|mut r| r += &bias);
}

/// `beta * F`: an energy at inverse temperature `beta`, so that every kernel
/// (which targets `exp(-E)`) samples `exp(-beta F)` unchanged.
pub struct Scaled<'a> {
    inner: &'a dyn Energy,
    beta: f64,
}

impl<'a> Scaled<'a> {
    /// `beta * inner`; `beta` must be finite and > 0.
    pub fn new(inner: &'a dyn Energy, beta: f64) -> Result<Self> {
        crate::error::check_beta("beta", beta)?;
        Ok(Scaled { inner, beta })
    }
}

impl Energy for Scaled<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn energy_batch(&self, y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>) {
        self.inner.energy_batch(y, energy.view_mut());
        if self.beta != 1.0 {
            energy.mapv_inplace(|e| e * self.beta);
        }
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        self.inner
            .energy_grad_batch(y, energy.view_mut(), grad.view_mut());
        if self.beta != 1.0 {
            energy.mapv_inplace(|e| e * self.beta);
            grad.mapv_inplace(|g| g * self.beta);
        }
    }
    fn log_z(&self) -> Option<f64> {
        if self.beta == 1.0 {
            self.inner.log_z()
        } else {
            None
        }
    }
    fn space(&self) -> StateSpace {
        self.inner.space()
    }
    fn fixed_rows(&self) -> Option<usize> {
        self.inner.fixed_rows()
    }
    fn as_rbm(&self) -> Option<(&Rbm, f64)> {
        self.inner.as_rbm().map(|(r, b)| (r, b * self.beta))
    }
    fn as_row(&self) -> Option<&dyn RowEnergy> {
        // At beta = 1 the scaling is the identity: the inner rows serve.
        if self.beta == 1.0 {
            self.inner.as_row()
        } else {
            None
        }
    }
    fn as_leapfrog(&self) -> Option<&dyn Leapfrog> {
        // The inner integrator follows the inner energy: only at beta = 1.
        if self.beta == 1.0 {
            self.inner.as_leapfrog()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod lane_tests {
    use super::*;
    use std::sync::Arc;

    /// A batch whose rows do not match per-row contexts gets NaN energies
    /// (divergences), never the energies of other contexts (release
    /// builds; debug builds stop at the caller's bug).
    #[cfg(not(debug_assertions))]
    #[test]
    fn mismatched_context_rows_give_nan() {
        let ring = Arc::new(Ring::new(1, 2, 0.1).unwrap());
        let c = Conditioned::new(ring, Array2::zeros((3, 1))).unwrap();
        let mut e = Array1::zeros(2);
        c.energy_batch(Array2::zeros((2, 2)).view(), e.view_mut());
        assert!(e.iter().all(|v| v.is_nan()));
        let ok = evaluate(&c, Array2::zeros((3, 2)).view()).unwrap();
        assert!(ok.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn lane_sums_match_plain_sums() {
        for n in [0usize, 1, 7, 8, 9, 16, 100, 1001] {
            let a: Vec<f64> = (0..n)
                .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
                .collect();
            let b: Vec<f64> = (0..n).map(|i| ((i * 11 % 13) as f64) / 3.0).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y + x).sum();
            let lanes = sum_lanes2(&a, &b, |x, y| x * y + x);
            assert!(
                (plain - lanes).abs() <= 1e-12 * (1.0 + plain.abs()),
                "n {n}"
            );
            let sq = sum_lanes1(&a, |x| x * x);
            let sq_plain: f64 = a.iter().map(|x| x * x).sum();
            assert!((sq - sq_plain).abs() <= 1e-12 * (1.0 + sq_plain));
        }
    }
}
