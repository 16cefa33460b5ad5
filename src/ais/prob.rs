//! `log P(y|x)` from log Z, and exact label probabilities.

use crate::energy::{ConditionalEnergy, Energy, log_sum_exp};
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView2, s};

/// (contexts, points), with `log_z[k]` from an estimate or an exact reference.
pub fn log_prob(
    model: &dyn ConditionalEnergy,
    contexts: ArrayView2<f64>,
    points: ArrayView2<f64>,
    log_z: &[f64],
    beta: f64,
) -> Result<Array2<f64>> {
    let (k, m) = (contexts.nrows(), points.nrows());
    if log_z.len() != k || contexts.ncols() != model.x_dim() || points.ncols() != model.y_dim() {
        return Err(Error::shape(
            "log_prob",
            format!(
                "contexts (k, {}), points (n, {}), log_z (k)",
                model.x_dim(),
                model.y_dim()
            ),
            format!(
                "contexts {:?}, points {:?}, log_z ({})",
                contexts.shape(),
                points.shape(),
                log_z.len()
            ),
        ));
    }
    let mut out = Array2::zeros((k, m));
    for c in 0..k {
        let x = contexts
            .slice(s![c..c + 1, ..])
            .broadcast((m, contexts.ncols()))
            .expect("one row broadcasts")
            .to_owned();
        let mut e = Array1::zeros(m);
        model.energy_batch(x.view(), points, e.view_mut());
        out.row_mut(c).assign(&e.mapv(|v| -beta * v - log_z[c]));
    }
    Ok(out)
}

/// Exact `log P(y_k | x)` over a finite label set: a softmax over
/// `-beta F(x, y_k)` for the rows `y_k` of `labels`.
pub fn label_log_probs(
    energy: &dyn Energy,
    labels: ArrayView2<f64>,
    beta: f64,
) -> Result<Array1<f64>> {
    let e = crate::energy::evaluate(energy, labels)?;
    let s: Vec<f64> = e.iter().map(|v| -beta * v).collect();
    let lz = log_sum_exp(&s);
    Ok(Array1::from(s.iter().map(|v| v - lz).collect::<Vec<_>>()))
}

/// `log P(y_i | x_i)` for pairs: row `i` of `points` under row `i` of
/// `contexts`, with `log_z[i]` its context's log Z; shape (N,).
pub fn log_prob_paired(
    model: &dyn ConditionalEnergy,
    contexts: ArrayView2<f64>,
    points: ArrayView2<f64>,
    log_z: &[f64],
    beta: f64,
) -> Result<Array1<f64>> {
    let n = points.nrows();
    if contexts.nrows() != n
        || log_z.len() != n
        || contexts.ncols() != model.x_dim()
        || points.ncols() != model.y_dim()
    {
        return Err(Error::shape(
            "paired log_prob",
            format!(
                "contexts (N, {}), points (N, {}), log_z (N) with the same N",
                model.x_dim(),
                model.y_dim()
            ),
            format!(
                "contexts {:?}, points {:?}, log_z ({})",
                contexts.shape(),
                points.shape(),
                log_z.len()
            ),
        ));
    }
    let mut e = Array1::zeros(n);
    model.energy_batch(contexts, points, e.view_mut());
    Ok(Array1::from_shape_fn(n, |i| -beta * e[i] - log_z[i]))
}

/// `log P(y)` of the rows of `points` under an unconditional energy whose
/// log Z (at `beta`) is `log_z`; shape (N,).
pub fn log_prob_unconditional(
    energy: &dyn Energy,
    points: ArrayView2<f64>,
    log_z: f64,
    beta: f64,
) -> Result<Array1<f64>> {
    let e = crate::energy::evaluate(energy, points)?;
    Ok(e.mapv(|v| -beta * v - log_z))
}
