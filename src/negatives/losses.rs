//! Contrastive losses on energies of positives and negatives.
//!
//! Each loss returns its value and its gradient with respect to every
//! energy (positives and negatives), so that a model's parameter gradient
//! is one backward pass with those coefficients (see
//! [`crate::energy::Mlp::param_grad`]). Pairs: the `i`-th positive goes
//! with the `i`-th negative where a loss pairs them (hinge, log,
//! square-square); the batches must then have equal length. Formulas from
//! LeCun, Chopra, Hadsell, Ranzato & Huang (2006), "A tutorial on
//! energy-based learning", section 2.2 (energy, hinge, log,
//! square-square) and from contrastive divergence (Hinton 2002) with the
//! L2 energy regulariser of Du & Mordatch (2019, IGEBM).

use crate::energy::{sigmoid, softplus};
use crate::error::{Error, Result};

/// A loss's value and its gradients with respect to each energy.
#[derive(Clone, Debug, PartialEq)]
pub struct LossGrad {
    /// The loss, averaged over the batch.
    pub value: f64,
    /// `dL / dF(y+_i)`.
    pub d_pos: Vec<f64>,
    /// `dL / dF(y-_i)` (empty for the energy loss).
    pub d_neg: Vec<f64>,
}

/// The losses boltz provides.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// `mean F(y+)`: positives only. Kept on purpose: minimised alone it
    /// pushes energy down everywhere, collapsing to a flat (or -inf) surface.
    Energy,
    /// `mean max(0, m + F(y+) - F(y-))`, margin `m` (LeCun et al. 2006, eq. 9).
    Hinge {
        /// The margin.
        margin: f64,
    },
    /// `mean softplus(F(y+) - F(y-))`, a soft hinge (LeCun et al. 2006, eq. 10).
    Log,
    /// `mean F(y+)^2 + (max(0, m - F(y-)))^2` (LeCun et al. 2006, eq. 11).
    SquareSquare {
        /// The margin below which negatives are pushed up.
        margin: f64,
    },
    /// Contrastive divergence / negative log-likelihood gradient:
    /// `mean F(y+) - mean F(y-) + alpha (mean F(y+)^2 + mean F(y-)^2)`,
    /// with negatives from the model (Hinton 2002; the `alpha` term as in
    /// Du & Mordatch 2019 keeps energies from drifting).
    ContrastiveDivergence {
        /// L2 energy regularisation (>= 0).
        alpha: f64,
    },
}

impl Loss {
    /// Value and gradients for energies `pos` and `neg`.
    pub fn evaluate(&self, pos: &[f64], neg: &[f64]) -> Result<LossGrad> {
        if pos.is_empty() {
            return Err(Error::param("positives", "need at least one"));
        }
        let paired = matches!(
            self,
            Loss::Hinge { .. } | Loss::Log | Loss::SquareSquare { .. }
        );
        if paired && pos.len() != neg.len() {
            return Err(Error::shape(
                "loss",
                format!("{} negatives (one per positive)", pos.len()),
                format!("{}", neg.len()),
            ));
        }
        if !matches!(self, Loss::Energy) && neg.is_empty() {
            return Err(Error::param("negatives", "this loss needs negatives"));
        }
        let n = pos.len() as f64;
        let m = neg.len() as f64;
        Ok(match *self {
            Loss::Energy => LossGrad {
                value: pos.iter().sum::<f64>() / n,
                d_pos: vec![1.0 / n; pos.len()],
                d_neg: vec![0.0; neg.len()],
            },
            Loss::Hinge { margin } => {
                let mut value = 0.0;
                let (mut dp, mut dn) = (vec![0.0; pos.len()], vec![0.0; neg.len()]);
                for i in 0..pos.len() {
                    let t = margin + pos[i] - neg[i];
                    if t > 0.0 {
                        value += t / n;
                        dp[i] = 1.0 / n;
                        dn[i] = -1.0 / n;
                    }
                }
                LossGrad {
                    value,
                    d_pos: dp,
                    d_neg: dn,
                }
            }
            Loss::Log => {
                let mut value = 0.0;
                let (mut dp, mut dn) = (vec![0.0; pos.len()], vec![0.0; neg.len()]);
                for i in 0..pos.len() {
                    let t = pos[i] - neg[i];
                    value += softplus(t) / n;
                    dp[i] = sigmoid(t) / n;
                    dn[i] = -sigmoid(t) / n;
                }
                LossGrad {
                    value,
                    d_pos: dp,
                    d_neg: dn,
                }
            }
            Loss::SquareSquare { margin } => {
                let mut value = 0.0;
                let (mut dp, mut dn) = (vec![0.0; pos.len()], vec![0.0; neg.len()]);
                for i in 0..pos.len() {
                    let h = (margin - neg[i]).max(0.0);
                    value += (pos[i] * pos[i] + h * h) / n;
                    dp[i] = 2.0 * pos[i] / n;
                    dn[i] = -2.0 * h / n;
                }
                LossGrad {
                    value,
                    d_pos: dp,
                    d_neg: dn,
                }
            }
            Loss::ContrastiveDivergence { alpha } => {
                let mp = pos.iter().sum::<f64>() / n;
                let mn = neg.iter().sum::<f64>() / m;
                let sp = pos.iter().map(|e| e * e).sum::<f64>() / n;
                let sn = neg.iter().map(|e| e * e).sum::<f64>() / m;
                LossGrad {
                    value: mp - mn + alpha * (sp + sn),
                    d_pos: pos.iter().map(|e| (1.0 + 2.0 * alpha * e) / n).collect(),
                    d_neg: neg.iter().map(|e| (-1.0 + 2.0 * alpha * e) / m).collect(),
                }
            }
        })
    }
}
