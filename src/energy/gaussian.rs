//! Gaussian energies with closed-form log Z.

use super::{Energy, RowEnergy};
use crate::error::{Error, Result, check_finite, check_positive};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::PI;

/// Diagonal Gaussian: `F(y) = 0.5 * sum_i ((y_i - mean_i) / std_i)^2`.
///
/// `log Z = sum_i log(sqrt(2 pi) std_i)`. Draws from the target are exact
/// ([`DiagGaussian::sample_exact`]), which reverse AIS and tests use.
#[derive(Clone, Debug)]
pub struct DiagGaussian {
    mean: Vec<f64>,
    inv_var: Vec<f64>,
    std: Vec<f64>,
}

impl DiagGaussian {
    /// Mean and standard deviation per coordinate (same length, std > 0, all finite).
    pub fn new(mean: Vec<f64>, std: Vec<f64>) -> Result<Self> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(Error::shape(
                "gaussian",
                format!("std of length {}", mean.len()),
                format!("length {}", std.len()),
            ));
        }
        check_finite("mean", &mean)?;
        for s in &std {
            check_positive("std", *s)?;
        }
        let inv_var = std.iter().map(|s| 1.0 / (s * s)).collect();
        Ok(DiagGaussian { mean, inv_var, std })
    }

    /// The means.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The standard deviations.
    pub fn std(&self) -> &[f64] {
        &self.std
    }

    /// One exact draw from `exp(-F)/Z`.
    pub fn sample_exact<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        for ((o, m), s) in out.iter_mut().zip(&self.mean).zip(&self.std) {
            let z: f64 = StandardNormal.sample(rng);
            *o = m + s * z;
        }
    }
}

impl RowEnergy for DiagGaussian {
    fn state_dim(&self) -> usize {
        self.mean.len()
    }
    fn energy(&self, y: &[f64]) -> f64 {
        0.5 * super::sum_lanes3(y, &self.mean, &self.inv_var, |y, m, w| {
            // d * (d * w): the same rounding as energy_grad's d * g.
            let d = y - m;
            d * (d * w)
        })
    }
    fn energy_grad(&self, y: &[f64], grad: &mut [f64]) -> f64 {
        diag_grad(&self.mean[..], &self.inv_var[..], y, grad)
    }
    fn known_log_z(&self) -> Option<f64> {
        Some(self.std.iter().map(|s| (s * (2.0 * PI).sqrt()).ln()).sum())
    }
}

/// The diagonal Gaussian's energy and gradient: element-wise, and a sum in
/// fixed lanes, so every SIMD level gives the same bits.
#[inline(always)]
fn diag_body(m: &[f64], w: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
    let n = y.len();
    let (m, w, g) = (&m[..n], &w[..n], &mut grad[..n]);
    for i in 0..n {
        g[i] = (y[i] - m[i]) * w[i];
    }
    0.5 * super::sum_lanes3(y, m, g, |y, m, g| (y - m) * g)
}

crate::simd::simd_dispatch! {
    /// [`diag_body`] at the CPU's SIMD level.
    fn diag_grad(m: &[f64], w: &[f64], y: &[f64], grad: &mut [f64]) -> f64 = diag_body;
}

/// Gaussian with a full precision matrix: `F(y) = 0.5 (y - mean)^T P (y - mean)`.
///
/// `P` must be symmetric positive definite; its Cholesky factor `P = L L^T`
/// gives `log Z = d/2 log(2 pi) - sum_i log L_ii` and exact draws
/// `y = mean + L^{-T} z`.
#[derive(Clone, Debug)]
pub struct FullGaussian {
    mean: Array1<f64>,
    precision: Array2<f64>,
    chol: Array2<f64>,
}

/// Solves `L x = b` in place (`x` holds `b`) for a lower-triangular `L`
/// with a non-zero diagonal (forward substitution).
pub(crate) fn solve_lower(l: ArrayView2<f64>, x: &mut [f64]) {
    for i in 0..x.len() {
        let mut s = x[i];
        for k in 0..i {
            s -= l[[i, k]] * x[k];
        }
        x[i] = s / l[[i, i]];
    }
}

/// Solves `L^T x = b` in place (`x` holds `b`) for a lower-triangular `L`
/// with a non-zero diagonal (back substitution).
pub(crate) fn solve_lower_t(l: ArrayView2<f64>, x: &mut [f64]) {
    for i in (0..x.len()).rev() {
        let mut s = x[i];
        for k in i + 1..x.len() {
            s -= l[[k, i]] * x[k];
        }
        x[i] = s / l[[i, i]];
    }
}

/// Lower Cholesky factor of a symmetric positive-definite matrix.
pub fn cholesky(a: &Array2<f64>) -> Result<Array2<f64>> {
    let n = a.nrows();
    if a.ncols() != n {
        return Err(Error::shape(
            "precision",
            "a square matrix",
            format!("{:?}", a.shape()),
        ));
    }
    for i in 0..n {
        for j in 0..i {
            let (x, y) = (a[[i, j]], a[[j, i]]);
            if (x - y).abs() > 1e-10 * (1.0 + x.abs().max(y.abs())) {
                return Err(Error::param(
                    "precision",
                    format!("not symmetric at ({i}, {j})"),
                ));
            }
        }
    }
    let mut l = Array2::<f64>::zeros((n, n));
    for j in 0..n {
        let mut d = a[[j, j]];
        for k in 0..j {
            d -= l[[j, k]] * l[[j, k]];
        }
        if !(d > 0.0 && d.is_finite()) {
            return Err(Error::param("precision", "not positive definite"));
        }
        let d = d.sqrt();
        l[[j, j]] = d;
        for i in j + 1..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = s / d;
        }
    }
    Ok(l)
}

impl FullGaussian {
    /// Mean (length d) and precision matrix (d x d, symmetric positive definite).
    pub fn new(mean: Vec<f64>, precision: Array2<f64>) -> Result<Self> {
        let d = mean.len();
        if precision.shape() != [d, d] || d == 0 {
            return Err(Error::shape(
                "gaussian precision",
                format!("({d}, {d})"),
                format!("{:?}", precision.shape()),
            ));
        }
        check_finite("mean", &mean)?;
        if precision.iter().any(|v| !v.is_finite()) {
            return Err(Error::param("precision", "contains a non-finite number"));
        }
        let chol = cholesky(&precision)?;
        Ok(FullGaussian {
            mean: Array1::from(mean),
            precision,
            chol,
        })
    }

    /// The mean.
    pub fn mean(&self) -> &[f64] {
        self.mean.as_slice().expect("contiguous")
    }

    /// Diagonal of the covariance `P^{-1} = L^{-T} L^{-1}`: `var_i` is the
    /// squared norm of row `i` of `L^{-T}`, i.e. of column `i` of `L^{-1}`.
    pub fn variances(&self) -> Vec<f64> {
        let d = self.mean.len();
        let mut var = vec![0.0; d];
        let mut col = vec![0.0; d];
        for i in 0..d {
            // Solve L c = e_i; var_i = |c|^2.
            col.iter_mut()
                .enumerate()
                .for_each(|(r, c)| *c = f64::from(u8::from(r == i)));
            solve_lower(self.chol.view(), &mut col);
            var[i] = col.iter().map(|c| c * c).sum();
        }
        var
    }

    /// One exact draw: solves `L^T u = z` and returns `mean + u`.
    pub fn sample_exact<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let d = self.mean.len();
        for o in out.iter_mut() {
            *o = StandardNormal.sample(rng);
        }
        solve_lower_t(self.chol.view(), out);
        for i in 0..d {
            out[i] += self.mean[i];
        }
    }
}

impl Energy for FullGaussian {
    fn dim(&self) -> usize {
        self.mean.len()
    }
    fn energy_batch(&self, y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>) {
        let diff = &y - &self.mean.view().insert_axis(Axis(0));
        let pd = diff.dot(&self.precision);
        for (i, e) in energy.iter_mut().enumerate() {
            *e = 0.5 * diff.row(i).dot(&pd.row(i));
        }
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        let diff = &y - &self.mean.view().insert_axis(Axis(0));
        let pd = diff.dot(&self.precision);
        for (i, e) in energy.iter_mut().enumerate() {
            *e = 0.5 * diff.row(i).dot(&pd.row(i));
        }
        grad.assign(&pd);
    }
    fn log_z(&self) -> Option<f64> {
        let d = self.mean.len() as f64;
        Some(0.5 * d * (2.0 * PI).ln() - self.chol.diag().iter().map(|v| v.ln()).sum::<f64>())
    }
}
