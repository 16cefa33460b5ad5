//! Neal's funnel.

use super::RowEnergy;
use crate::error::{Error, Result, check_positive};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::PI;

/// Neal's funnel in `dim` dimensions, `y = (v, x_1, ..., x_{dim-1})`:
/// `v ~ N(0, scale^2)`, `x_i | v ~ N(0, exp(v))`, so
/// `F(y) = v^2 / (2 scale^2) + exp(-v) sum_i x_i^2 / 2 + (dim - 1) v / 2`
/// and `log Z = 0.5 log(2 pi scale^2) + (dim - 1)/2 log(2 pi)`.
/// The suite's `funnel` has dim 10 and scale 3.
#[derive(Clone, Debug)]
pub struct Funnel {
    dim: usize,
    scale: f64,
}

impl Funnel {
    /// A funnel of dimension `dim >= 2` with `v`'s standard deviation `scale`.
    pub fn new(dim: usize, scale: f64) -> Result<Self> {
        if dim < 2 {
            return Err(Error::param(
                "dim",
                format!("a funnel needs dim >= 2, got {dim}"),
            ));
        }
        check_positive("scale", scale)?;
        Ok(Funnel { dim, scale })
    }

    /// The standard deviation of `v`.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// One exact draw.
    pub fn sample_exact<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let z: f64 = StandardNormal.sample(rng);
        let v = self.scale * z;
        out[0] = v;
        let s = (0.5 * v).exp();
        for o in out[1..].iter_mut() {
            let z: f64 = StandardNormal.sample(rng);
            *o = s * z;
        }
    }
}

impl RowEnergy for Funnel {
    fn state_dim(&self) -> usize {
        self.dim
    }
    fn energy(&self, y: &[f64]) -> f64 {
        let v = y[0];
        let s2: f64 = y[1..].iter().map(|x| x * x).sum();
        v * v / (2.0 * self.scale * self.scale)
            + 0.5 * (-v).exp() * s2
            + 0.5 * (self.dim - 1) as f64 * v
    }
    fn energy_grad(&self, y: &[f64], grad: &mut [f64]) -> f64 {
        let v = y[0];
        let ev = (-v).exp();
        let mut s2 = 0.0;
        for i in 1..y.len() {
            s2 += y[i] * y[i];
            grad[i] = ev * y[i];
        }
        let half_n = 0.5 * (self.dim - 1) as f64;
        grad[0] = v / (self.scale * self.scale) - 0.5 * ev * s2 + half_n;
        v * v / (2.0 * self.scale * self.scale) + 0.5 * ev * s2 + half_n * v
    }
    fn known_log_z(&self) -> Option<f64> {
        Some(
            0.5 * (2.0 * PI * self.scale * self.scale).ln()
                + 0.5 * (self.dim - 1) as f64 * (2.0 * PI).ln(),
        )
    }
}
