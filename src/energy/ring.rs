//! The `ring` conditional energy: one x, many y.

use super::{ConditionalEnergy, ROW_BLOCK};
use crate::error::{Error, Result, check_positive};
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::f64::consts::PI;

/// `F(x, y) = (|x|^2 + |y|^2 - 1)^2 / (2 w^2)`.
///
/// For `|x| < 1`, `P(y|x)` puts its mass near the sphere of radius
/// `sqrt(1 - |x|^2)`: one context, a whole circle of compatible `y`. Since
/// `F` depends on `y` through `r = |y|` only,
/// `Z(x) = area(S^{m-1}) * int_0^inf r^{m-1} exp(-F) dr`, one radial
/// quadrature ([`ConditionalEnergy::log_z_at`]).
#[derive(Clone, Debug)]
pub struct Ring {
    x_dim: usize,
    y_dim: usize,
    width: f64,
}

impl Ring {
    /// A ring energy with contexts in R^x_dim, states in R^y_dim and width `w`.
    pub fn new(x_dim: usize, y_dim: usize, width: f64) -> Result<Self> {
        if y_dim == 0 {
            return Err(Error::param("y_dim", "must be >= 1"));
        }
        check_positive("width", width)?;
        Ok(Ring {
            x_dim,
            y_dim,
            width,
        })
    }

    /// The width `w`.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// `log Z` for a context of squared norm `x2`, by radial quadrature
    /// (composite Simpson on 20,000 intervals over the region where the
    /// integrand exceeds `exp(-800)` of its peak; relative error < 1e-10).
    pub fn log_z_from_norm2(&self, x2: f64) -> f64 {
        let m = self.y_dim as f64;
        let w2 = self.width * self.width;
        let log_area =
            (2.0f64).ln() + 0.5 * m * PI.ln() - statrs::function::gamma::ln_gamma(0.5 * m);
        let r_max = (1.0 - x2 + 40.0 * self.width).max(40.0 * self.width).sqrt();
        let log_f = |r: f64| {
            let s = x2 + r * r - 1.0;
            let lr = if m == 1.0 { 0.0 } else { (m - 1.0) * r.ln() };
            lr - s * s / (2.0 * w2)
        };
        log_area + crate::math::log_integrate_1d(log_f, 0.0, r_max, 20_000)
    }
}

impl ConditionalEnergy for Ring {
    fn x_dim(&self) -> usize {
        self.x_dim
    }
    fn y_dim(&self) -> usize {
        self.y_dim
    }
    fn energy_batch(&self, x: ArrayView2<f64>, y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>) {
        let c = 1.0 / (2.0 * self.width * self.width);
        energy
            .axis_chunks_iter_mut(Axis(0), ROW_BLOCK)
            .into_par_iter()
            .enumerate()
            .for_each(|(b, mut eb)| {
                for (j, e) in eb.iter_mut().enumerate() {
                    let i = b * ROW_BLOCK + j;
                    let s = x.row(i).dot(&x.row(i)) + y.row(i).dot(&y.row(i)) - 1.0;
                    *e = c * s * s;
                }
            });
    }
    fn energy_grad_batch(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        let c = 1.0 / (2.0 * self.width * self.width);
        energy
            .axis_chunks_iter_mut(Axis(0), ROW_BLOCK)
            .into_par_iter()
            .zip(grad.axis_chunks_iter_mut(Axis(0), ROW_BLOCK))
            .enumerate()
            .for_each(|(b, (mut eb, mut gb))| {
                for (j, (e, mut g)) in eb.iter_mut().zip(gb.outer_iter_mut()).enumerate() {
                    let i = b * ROW_BLOCK + j;
                    let yr = y.row(i);
                    let s = x.row(i).dot(&x.row(i)) + yr.dot(&yr) - 1.0;
                    *e = c * s * s;
                    // dF/dy = 2 c s * 2 y
                    g.zip_mut_with(&yr, |gv, yv| *gv = 4.0 * c * s * yv);
                }
            });
    }
    fn log_z_at(&self, x: ArrayView1<f64>) -> Option<f64> {
        Some(self.log_z_from_norm2(x.dot(&x)))
    }
}
