//! A conditional energy at fixed contexts: an [`Energy`] in `y`.

use super::{ConditionalEnergy, Energy};
use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use std::sync::Arc;

/// A conditional energy with its context fixed: an [`Energy`] in `y`.
///
/// The context array has one row (shared by every chain) or one row per
/// chain (then [`Energy::fixed_rows`] is that number).
#[derive(Clone)]
pub struct Conditioned {
    model: Arc<dyn ConditionalEnergy>,
    context: Array2<f64>,
}

/// Checks contexts for a model with `x_dim` context columns: at least one
/// row, `x_dim` columns, every number finite.
pub(crate) fn check_contexts(context: ArrayView2<'_, f64>, x_dim: usize) -> Result<()> {
    if context.ncols() != x_dim || context.nrows() == 0 {
        return Err(Error::shape(
            "context",
            format!("(k >= 1, {x_dim})"),
            format!("{:?}", context.shape()),
        ));
    }
    if context.iter().any(|v| !v.is_finite()) {
        return Err(Error::param("context", "contains a non-finite number"));
    }
    Ok(())
}

impl Conditioned {
    /// Fixes `context` (k x x_dim, k >= 1) for `model`.
    pub fn new(model: Arc<dyn ConditionalEnergy>, context: Array2<f64>) -> Result<Self> {
        check_contexts(context.view(), model.x_dim())?;
        Ok(Conditioned { model, context })
    }

    /// The contexts, one row each.
    pub fn context(&self) -> ArrayView2<'_, f64> {
        self.context.view()
    }

    /// The underlying conditional model.
    pub fn model(&self) -> &Arc<dyn ConditionalEnergy> {
        &self.model
    }

    /// The contexts for a batch of `n` rows: the one row repeated, or one
    /// per row; `None` when the batch does not have one row per context
    /// (a caller's bug: the energies are then NaN, never the energies of
    /// other contexts).
    fn context_for(&self, n: usize) -> Option<ArrayView2<'_, f64>> {
        if self.context.nrows() == 1 {
            self.context.broadcast((n, self.context.ncols()))
        } else if self.context.nrows() == n {
            Some(self.context.view())
        } else {
            debug_assert!(
                false,
                "{n} rows for {} per-row contexts",
                self.context.nrows()
            );
            None
        }
    }
}

impl Energy for Conditioned {
    fn dim(&self) -> usize {
        self.model.y_dim()
    }
    fn energy_batch(&self, y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>) {
        match self.context_for(y.nrows()) {
            Some(x) => self.model.energy_batch(x, y, energy),
            None => energy.fill(f64::NAN),
        }
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        match self.context_for(y.nrows()) {
            Some(x) => self.model.energy_grad_batch(x, y, energy, grad),
            None => {
                energy.fill(f64::NAN);
                grad.fill(f64::NAN);
            }
        }
    }
    fn log_z(&self) -> Option<f64> {
        if self.context.nrows() == 1 {
            self.model.log_z_at(self.context.row(0))
        } else {
            None
        }
    }
    fn fixed_rows(&self) -> Option<usize> {
        (self.context.nrows() > 1).then_some(self.context.nrows())
    }
}
