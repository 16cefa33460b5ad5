//! Quadrature in one and two dimensions, in log space.

use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::math::simpson_weight;
use ndarray::Array2;

/// [`log_z_grid`] with an error estimate: the difference between the rule
/// on `n` and on `n / 2` intervals per axis (Simpson's error falls 16-fold
/// per halving, so this over-estimates the error of the finer rule).
pub fn log_z_grid_with_error(
    energy: &dyn Energy,
    lo: &[f64],
    hi: &[f64],
    n: usize,
) -> Result<(f64, f64)> {
    let fine = log_z_grid(energy, lo, hi, n)?;
    let coarse = log_z_grid(energy, lo, hi, (n / 2).max(2))?;
    Ok((fine, (fine - coarse).abs()))
}

/// `log Z = log int exp(-F(y)) dy` over the box `[lo, hi]` for an energy of
/// dimension 1 or 2, by a tensor Simpson rule with `n` intervals per axis.
/// Mass outside the box is ignored: choose a box that holds it.
pub fn log_z_grid(energy: &dyn Energy, lo: &[f64], hi: &[f64], n: usize) -> Result<f64> {
    let d = energy.dim();
    if !(d == 1 || d == 2) || lo.len() != d || hi.len() != d {
        return Err(Error::param(
            "quadrature",
            format!("needs dimension 1 or 2 and a box of that dimension, got dim {d}"),
        ));
    }
    let n = (n.max(2) + 1) & !1;
    let h: Vec<f64> = (0..d).map(|k| (hi[k] - lo[k]) / n as f64).collect();
    let pts = (n + 1).pow(d as u32);
    let mut y = Array2::zeros((pts, d));
    let mut w = vec![0.0; pts];
    for idx in 0..pts {
        let (i, j) = (idx % (n + 1), idx / (n + 1));
        y[[idx, 0]] = lo[0] + i as f64 * h[0];
        w[idx] = simpson_weight(i, n) * h[0] / 3.0;
        if d == 2 {
            y[[idx, 1]] = lo[1] + j as f64 * h[1];
            w[idx] *= simpson_weight(j, n) * h[1] / 3.0;
        }
    }
    let e = crate::energy::evaluate(energy, y.view())?;
    let lf: Vec<f64> = e.iter().zip(&w).map(|(e, w)| -e + w.ln()).collect();
    Ok(crate::energy::log_sum_exp(&lf))
}
