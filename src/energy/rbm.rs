//! Bernoulli-Bernoulli restricted Boltzmann machines.

use super::{Energy, StateSpace, add_row, sigmoid, sum_softplus};
use crate::error::{Error, Result};
use crate::rng::ChainRng;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip};
use rand::RngExt;
use rayon::prelude::*;

/// Rows per parallel block for RBM products.
const RBM_BLOCK: usize = 64;

/// A Bernoulli-Bernoulli RBM with `V` visible and `H` hidden units.
///
/// Joint energy `E(v, h) = -b.v - c.h - v^T W h` (W is V x H); the energy of
/// a visible state is the free energy
/// `F(v) = -b.v - sum_j softplus(c_j + (W^T v)_j)`, so `exp(-F(v))` is the
/// unnormalised marginal of `v`. States are rows of 0.0/1.0. The conditionals
/// `p(h_j = 1 | v) = sigmoid(c_j + (W^T v)_j)` and
/// `p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)` drive block Gibbs.
/// The gradient of `F` is that of its smooth extension to real `v`.
#[derive(Clone, Debug)]
pub struct Rbm {
    w: Array2<f64>,
    b: Array1<f64>,
    c: Array1<f64>,
}

impl Rbm {
    /// `weights` (V x H), `visible_bias` (V), `hidden_bias` (H), all finite.
    pub fn new(
        weights: Array2<f64>,
        visible_bias: Vec<f64>,
        hidden_bias: Vec<f64>,
    ) -> Result<Self> {
        let (v, h) = weights.dim();
        if visible_bias.len() != v || hidden_bias.len() != h || v == 0 || h == 0 {
            return Err(Error::shape(
                "rbm",
                format!("visible_bias ({v}) and hidden_bias ({h}) for weights ({v}, {h})"),
                format!(
                    "visible_bias ({}), hidden_bias ({})",
                    visible_bias.len(),
                    hidden_bias.len()
                ),
            ));
        }
        if weights
            .iter()
            .chain(&visible_bias)
            .chain(&hidden_bias)
            .any(|x| !x.is_finite())
        {
            return Err(Error::param(
                "rbm",
                "weights or biases contain a non-finite number",
            ));
        }
        Ok(Rbm {
            w: weights,
            b: Array1::from(visible_bias),
            c: Array1::from(hidden_bias),
        })
    }

    /// Number of visible units.
    pub fn n_visible(&self) -> usize {
        self.w.nrows()
    }
    /// Number of hidden units.
    pub fn n_hidden(&self) -> usize {
        self.w.ncols()
    }
    /// Weights, V x H.
    pub fn weights(&self) -> ArrayView2<'_, f64> {
        self.w.view()
    }
    /// Visible biases `b`.
    pub fn visible_bias(&self) -> ArrayView1<'_, f64> {
        self.b.view()
    }
    /// Hidden biases `c`.
    pub fn hidden_bias(&self) -> ArrayView1<'_, f64> {
        self.c.view()
    }

    /// `p(h = 1 | v)` for each row of `v` (n x V) -> n x H.
    pub fn hidden_probs(&self, v: ArrayView2<f64>) -> Array2<f64> {
        let mut a = v.dot(&self.w);
        add_row(a.view_mut(), self.c.view());
        a.mapv_inplace(sigmoid);
        a
    }

    /// `p(v = 1 | h)` for each row of `h` (n x H) -> n x V.
    pub fn visible_probs(&self, h: ArrayView2<f64>) -> Array2<f64> {
        let mut a = h.dot(&self.w.t());
        add_row(a.view_mut(), self.b.view());
        a.mapv_inplace(sigmoid);
        a
    }

    /// One block-Gibbs sweep `v -> h -> v` of every chain (row of `v`) on
    /// the RBM whose weights and hidden biases are scaled by `t` and whose
    /// visible biases are `(1 - t) base_bias + t b` (`base_bias = 0` if
    /// `None`). `t = 1` without base is the RBM itself; `t = beta` samples the
    /// RBM at inverse temperature beta (all parameters scaled). Chain `i`
    /// draws only from `rngs[i]`. Returns nothing: it cannot fail.
    pub fn gibbs_sweep(
        &self,
        v: ArrayViewMut2<f64>,
        rngs: &mut [ChainRng],
        t: f64,
        base_bias: Option<ArrayView1<f64>>,
    ) {
        self.gibbs_sweep_from(v, rngs, t, base_bias, None);
    }

    /// [`Rbm::gibbs_sweep`] given the hidden activations `c + W^T v` of the
    /// current `v` (from [`Rbm::hidden_activations`]), which saves one of
    /// the sweep's two matrix products when the caller has them already.
    pub fn gibbs_sweep_from(
        &self,
        mut v: ArrayViewMut2<f64>,
        rngs: &mut [ChainRng],
        t: f64,
        base_bias: Option<ArrayView1<f64>>,
        hidden_act: Option<ArrayView2<f64>>,
    ) {
        let vb: Array1<f64> = match base_bias {
            Some(b0) => &b0 * (1.0 - t) + &self.b * t,
            None => &self.b * t,
        };
        let ch = &self.c * t;
        v.axis_chunks_iter_mut(Axis(0), RBM_BLOCK)
            .into_par_iter()
            .zip(rngs.par_chunks_mut(RBM_BLOCK))
            .enumerate()
            .for_each(|(k, (mut vblk, rblk))| {
                let mut a = match hidden_act {
                    Some(act) => act
                        .slice(ndarray::s![k * RBM_BLOCK..k * RBM_BLOCK + vblk.nrows(), ..])
                        .mapv(|x| t * x),
                    None => {
                        let mut a = vblk.dot(&self.w);
                        Zip::from(a.rows_mut()).for_each(|mut row| {
                            row.zip_mut_with(&ch, |x, cj| *x = t * *x + cj);
                        });
                        a
                    }
                };
                Zip::from(a.rows_mut())
                    .and(rblk.as_mut())
                    .for_each(|mut row, rng| {
                        for x in row.iter_mut() {
                            *x = if rng.random::<f64>() < sigmoid(*x) {
                                1.0
                            } else {
                                0.0
                            };
                        }
                    });
                let bact = a.dot(&self.w.t());
                Zip::from(vblk.rows_mut())
                    .and(bact.rows())
                    .and(rblk)
                    .for_each(|mut vrow, arow, rng| {
                        for ((vi, ai), bi) in vrow.iter_mut().zip(arow.iter()).zip(vb.iter()) {
                            let p = sigmoid(t * ai + bi);
                            *vi = if rng.random::<f64>() < p { 1.0 } else { 0.0 };
                        }
                    });
            });
    }

    /// Hidden pre-activations `c + W^T v` of each row of `v` (n x H).
    pub fn hidden_activations(&self, v: ArrayView2<f64>) -> Array2<f64> {
        let mut a = Array2::zeros((v.nrows(), self.n_hidden()));
        a.axis_chunks_iter_mut(Axis(0), RBM_BLOCK)
            .into_par_iter()
            .zip(v.axis_chunks_iter(Axis(0), RBM_BLOCK))
            .for_each(|(mut ab, vb)| {
                ab.assign(&vb.dot(&self.w));
                add_row(ab.view_mut(), self.c.view());
            });
        a
    }

    fn block_energy(
        &self,
        y: ArrayView2<f64>,
        mut e: ArrayViewMut1<f64>,
        grad: Option<ArrayViewMut2<f64>>,
    ) {
        let mut a = y.dot(&self.w);
        add_row(a.view_mut(), self.c.view());
        let yb = y.dot(&self.b);
        for ((ei, row), ybi) in e.iter_mut().zip(a.rows()).zip(yb.iter()) {
            *ei = -ybi - sum_softplus(row.iter().copied());
        }
        if let Some(mut g) = grad {
            a.mapv_inplace(sigmoid);
            let sg = a.dot(&self.w.t());
            Zip::from(g.rows_mut())
                .and(sg.rows())
                .for_each(|mut gr, sr| {
                    Zip::from(&mut gr)
                        .and(&sr)
                        .and(&self.b)
                        .for_each(|gv, &s, &b| *gv = -b - s);
                });
        }
    }
}

impl Energy for Rbm {
    fn dim(&self) -> usize {
        self.n_visible()
    }
    fn energy_batch(&self, y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>) {
        y.axis_chunks_iter(Axis(0), RBM_BLOCK)
            .into_par_iter()
            .zip(energy.axis_chunks_iter_mut(Axis(0), RBM_BLOCK))
            .for_each(|(yb, eb)| self.block_energy(yb, eb, None));
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        y.axis_chunks_iter(Axis(0), RBM_BLOCK)
            .into_par_iter()
            .zip(energy.axis_chunks_iter_mut(Axis(0), RBM_BLOCK))
            .zip(grad.axis_chunks_iter_mut(Axis(0), RBM_BLOCK))
            .for_each(|((yb, eb), gb)| self.block_energy(yb, eb, Some(gb)));
    }
    fn space(&self) -> StateSpace {
        StateSpace::Binary
    }
}
