//! Bernoulli-Bernoulli restricted Boltzmann machines.

use super::{Energy, Precision, Real, StateSpace, add_row, sigmoid, sum_softplus};
use crate::error::{Error, Result};
use crate::linalg::matmul_f32;
use crate::rng::ChainRng;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip};
use rayon::prelude::*;

mod sweep;
use sweep::{SweepParams, sweep_all};

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
    /// `W^T` (H x V), contiguous rows for the visible conditionals.
    wt: Array2<f64>,
    b: Array1<f64>,
    c: Array1<f64>,
    /// The parameters rounded to f32 when the RBM computes in f32.
    single: Option<Rbm32>,
}

/// An RBM's parameters rounded to f32 (its f32 compute path).
#[derive(Clone, Debug)]
struct Rbm32 {
    w: Array2<f32>,
    wt: Array2<f32>,
    c: Array1<f32>,
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
            wt: weights.t().as_standard_layout().into_owned(),
            w: weights,
            b: Array1::from(visible_bias),
            c: Array1::from(hidden_bias),
            single: None,
        })
    }

    /// The precision of the sweeps, free energies and gradients (f64 unless
    /// set with [`Rbm::with_precision`]).
    pub fn precision(&self) -> Precision {
        if self.single.is_some() {
            Precision::F32
        } else {
            Precision::F64
        }
    }

    /// This RBM computing in `precision`: with [`Precision::F32`] the
    /// weights and biases are rounded to f32 and the row sums, sigmoids and
    /// Bernoulli draws of block Gibbs, the hidden activations and the free
    /// energy's products run in f32 (the sum of softplus terms, the visible
    /// bias term and everything outside the energy stay f64).
    ///
    /// ```
    /// use boltz::energy::{Precision, Rbm};
    /// let rbm = Rbm::new(ndarray::Array2::zeros((3, 2)), vec![0.0; 3], vec![0.0; 2])?;
    /// assert_eq!(rbm.with_precision(Precision::F32).precision(), Precision::F32);
    /// # Ok::<(), boltz::Error>(())
    /// ```
    pub fn with_precision(mut self, precision: Precision) -> Rbm {
        let f = |a: &Array1<f64>| a.mapv(|x| x as f32);
        self.single = match precision {
            Precision::F64 => None,
            Precision::F32 => Some(Rbm32 {
                w: self.w.mapv(|x| x as f32),
                wt: self.wt.mapv(|x| x as f32),
                c: f(&self.c),
            }),
        };
        self
    }

    /// The RBM with every parameter multiplied by `t` (inverse temperature
    /// `t`), at the same precision.
    pub fn scaled(&self, t: f64) -> Result<Rbm> {
        Ok(Rbm::new(
            self.w.mapv(|w| w * t),
            self.b.mapv(|v| v * t).to_vec(),
            self.c.mapv(|v| v * t).to_vec(),
        )?
        .with_precision(self.precision()))
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
        let (nv, nh) = self.w.dim();
        match &self.single {
            None => {
                let p = SweepParams {
                    w: self.w.as_slice().expect("standard layout"),
                    wt: self.wt.as_slice().expect("standard layout"),
                    nv,
                    nh,
                    t,
                    ch: ch.as_slice().expect("contiguous"),
                    vb: vb.as_slice().expect("contiguous"),
                };
                sweep_all(&p, v.view_mut(), rngs, hidden_act);
            }
            Some(single) => {
                // The tempered biases in f64, then rounded (as the f64 path's).
                let (ch, vb) = (ch.mapv(|x| x as f32), vb.mapv(|x| x as f32));
                let p = SweepParams {
                    w: single.w.as_slice().expect("standard layout"),
                    wt: single.wt.as_slice().expect("standard layout"),
                    nv,
                    nh,
                    t: t as f32,
                    ch: ch.as_slice().expect("contiguous"),
                    vb: vb.as_slice().expect("contiguous"),
                };
                sweep_all(&p, v.view_mut(), rngs, hidden_act);
            }
        }
    }

    /// Hidden pre-activations `c + W^T v` of each row of `v` (n x H).
    pub fn hidden_activations(&self, v: ArrayView2<f64>) -> Array2<f64> {
        let mut a = Array2::zeros((v.nrows(), self.n_hidden()));
        a.axis_chunks_iter_mut(Axis(0), RBM_BLOCK)
            .into_par_iter()
            .zip(v.axis_chunks_iter(Axis(0), RBM_BLOCK))
            .for_each(|(mut ab, vb)| match &self.single {
                None => {
                    ab.assign(&vb.dot(&self.w));
                    add_row(ab.view_mut(), self.c.view());
                }
                Some(single) => {
                    Zip::from(&mut ab)
                        .and(&single.activations(vb))
                        .for_each(|d, &a| *d = f64::from(a));
                }
            });
        a
    }

    fn block_energy(
        &self,
        y: ArrayView2<f64>,
        mut e: ArrayViewMut1<f64>,
        grad: Option<ArrayViewMut2<f64>>,
    ) {
        if let Some(single) = &self.single {
            return single.block_energy(&self.b, y, e, grad);
        }
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
    fn as_rbm(&self) -> Option<(&Rbm, f64)> {
        Some((self, 1.0))
    }
    fn space(&self) -> StateSpace {
        StateSpace::Binary
    }
}

impl Rbm32 {
    /// `c + W^T v` of each row of `v`, in f32.
    fn activations(&self, v: ArrayView2<f64>) -> Array2<f32> {
        let v32 = v.mapv(|x| x as f32);
        let mut a = Array2::zeros((v.nrows(), self.w.ncols()));
        matmul_f32(v32.view(), self.w.view(), a.view_mut(), false);
        for mut row in a.rows_mut() {
            row += &self.c;
        }
        a
    }

    /// [`Rbm::block_energy`] in f32: the products and sigmoids in f32, the
    /// softplus sum and the visible-bias term (with the f64 `b`) in f64.
    fn block_energy(
        &self,
        b: &Array1<f64>,
        y: ArrayView2<f64>,
        mut e: ArrayViewMut1<f64>,
        grad: Option<ArrayViewMut2<f64>>,
    ) {
        let mut a = self.activations(y);
        let yb = y.dot(b);
        for ((ei, row), ybi) in e.iter_mut().zip(a.rows()).zip(yb.iter()) {
            *ei = -ybi - sum_softplus(row.iter().map(|&x| f64::from(x)));
        }
        if let Some(mut g) = grad {
            a.mapv_inplace(|x| 1.0 / (1.0 + (-x).exp_fast()));
            let mut sg = Array2::zeros((y.nrows(), self.w.nrows()));
            matmul_f32(a.view(), self.wt.view(), sg.view_mut(), false);
            Zip::from(g.rows_mut())
                .and(sg.rows())
                .for_each(|mut gr, sr| {
                    Zip::from(&mut gr)
                        .and(&sr)
                        .and(b)
                        .for_each(|gv, &s, &b| *gv = -b - f64::from(s));
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::exp_poly;
    use super::sweep::{Scratch, SweepFloat};
    use super::*;
    use crate::simd::SimdLevel;

    #[test]
    fn exp_poly_is_accurate_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -700.0;
        while x < 700.0 {
            let rel = (exp_poly(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 1e-15, "max relative error {worst}");
        assert_eq!(exp_poly(0.0), 1.0);
        assert!(exp_poly(-1e6) > 0.0 && exp_poly(1e6).is_finite());
    }

    #[test]
    fn every_simd_level_gives_the_same_sweeps() {
        // The dispatched kernels (AVX-512, AVX2, baseline) and tile widths
        // must agree bit for bit; a 64-visible and a 10-visible RBM cover
        // the narrow and the general paths.
        for (nv, nh) in [(64usize, 100usize), (10, 37)] {
            let w = Array2::from_shape_fn((nv, nh), |(i, j)| {
                ((i * 7 + j * 13) % 17) as f64 / 17.0 - 0.5
            });
            let rbm = Rbm::new(w, vec![0.1; nv], vec![-0.2; nh]).unwrap();
            let (vb, ch) = (rbm.b.clone(), rbm.c.clone());
            let p = SweepParams {
                w: rbm.w.as_slice().unwrap(),
                wt: rbm.wt.as_slice().unwrap(),
                nv,
                nh,
                t: 0.7,
                ch: ch.as_slice().unwrap(),
                vb: vb.as_slice().unwrap(),
            };
            let n = 40;
            let v0: Vec<f64> = (0..n * nv)
                .map(|k| f64::from(u8::from(k % 3 == 0)))
                .collect();
            let run = |level: SimdLevel| {
                let mut v = v0.clone();
                let mut rngs = crate::rng::chain_rngs(9, n);
                let mut s = Scratch::new(n, nv, nh);
                for _ in 0..20 {
                    <f64 as SweepFloat>::sweep_block(level, &p, &mut v, &mut rngs, &mut s, None);
                }
                v
            };
            let base = run(SimdLevel::Base);
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    assert_eq!(run(SimdLevel::Avx2), base);
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    assert_eq!(run(SimdLevel::Avx512), base);
                }
            }
            assert!(base.contains(&1.0) && base.contains(&0.0));
        }
    }
}
