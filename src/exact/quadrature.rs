//! Quadrature in one and two dimensions, in log space.

use crate::energy::Energy;
use crate::error::{Error, Result};
use ndarray::Array2;

fn simpson_weight(i: usize, n: usize) -> f64 {
    if i == 0 || i == n {
        1.0
    } else if i % 2 == 1 {
        4.0
    } else {
        2.0
    }
}

/// `log int_a^b exp(log_f(r)) dr` by composite Simpson on `n` intervals
/// (`n` rounded up to even), summed in log space so that integrands of
/// `exp(-1000)` or `exp(+1000)` neither underflow nor overflow.
pub fn log_integrate_1d<F: Fn(f64) -> f64>(log_f: F, a: f64, b: f64, n: usize) -> f64 {
    let n = (n.max(2) + 1) & !1;
    let h = (b - a) / n as f64;
    let lf: Vec<f64> = (0..=n).map(|i| log_f(a + i as f64 * h)).collect();
    let m = lf.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    let s: f64 = lf
        .iter()
        .enumerate()
        .map(|(i, &l)| simpson_weight(i, n) * (l - m).exp())
        .sum();
    m + (s * h / 3.0).ln()
}

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
