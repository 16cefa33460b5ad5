//! Bernoulli-Bernoulli restricted Boltzmann machines.

use super::{Energy, Precision, Real, StateSpace, add_row, sigmoid, sum_softplus};
use crate::error::{Error, Result};
use crate::linalg::matmul_f32;
use crate::rng::ChainRng;
use crate::simd::{SimdLevel, simd_level};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip};
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

/// What a sweep of one chain needs, shared by all chains, in the float
/// type the sweep computes in.
struct SweepParams<'a, T> {
    w: &'a [T],
    wt: &'a [T],
    nv: usize,
    nh: usize,
    t: T,
    ch: &'a [T],
    vb: &'a [T],
}

/// Sweeps every chain (row of `v`), in blocks of [`SWEEP_BLOCK`] chains
/// spread over rayon's threads.
fn sweep_all<T: SweepFloat>(
    p: &SweepParams<'_, T>,
    mut v: ArrayViewMut2<f64>,
    rngs: &mut [ChainRng],
    hidden_act: Option<ArrayView2<f64>>,
) {
    let (nv, nh) = (p.nv, p.nh);
    let level = simd_level();
    v.axis_chunks_iter_mut(Axis(0), SWEEP_BLOCK)
        .into_par_iter()
        .zip(rngs.par_chunks_mut(SWEEP_BLOCK))
        .enumerate()
        .for_each(|(k, (mut vblk, rblk))| {
            // A block of rows of the activations: borrowed when contiguous
            // (as `hidden_activations` returns them).
            let act = hidden_act.map(|a| {
                let rows = a.slice_move(ndarray::s![
                    k * SWEEP_BLOCK..k * SWEEP_BLOCK + vblk.nrows(),
                    ..
                ]);
                match rows.to_slice() {
                    Some(s) => std::borrow::Cow::Borrowed(s),
                    None => std::borrow::Cow::Owned(rows.iter().copied().collect()),
                }
            });
            let vs = vblk.as_slice_mut().expect("standard layout");
            T::with_scratch(|slot| {
                let scratch = slot.get_or_insert_with(|| Scratch::new(SWEEP_BLOCK, nv, nh));
                scratch.fit(rblk.len(), nv, nh);
                T::sweep_block(level, p, vs, rblk, scratch, act.as_deref());
            });
        });
}

/// The float types block Gibbs sweeps in: a per-thread scratch and the
/// sweep at each SIMD level (tiles as wide as eight vectors).
trait SweepFloat: Compact {
    fn with_scratch<R>(f: impl FnOnce(&mut Option<Scratch<Self>>) -> R) -> R;
    fn sweep_block(
        level: SimdLevel,
        p: &SweepParams<'_, Self>,
        v: &mut [f64],
        rngs: &mut [ChainRng],
        s: &mut Scratch<Self>,
        hidden_act: Option<&[f64]>,
    );
}

macro_rules! sweep_float {
    ($t:ty, $avx512:ident, $avx2:ident, $t512:expr, $t256:expr, $tbase:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        fn $avx512(
            p: &SweepParams<'_, $t>,
            v: &mut [f64],
            rngs: &mut [ChainRng],
            s: &mut Scratch<$t>,
            hidden_act: Option<&[f64]>,
        ) {
            sweep_block_body::<$t, $t512, true>(p, v, rngs, s, hidden_act)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx2(
            p: &SweepParams<'_, $t>,
            v: &mut [f64],
            rngs: &mut [ChainRng],
            s: &mut Scratch<$t>,
            hidden_act: Option<&[f64]>,
        ) {
            sweep_block_body::<$t, $t256, false>(p, v, rngs, s, hidden_act)
        }

        impl SweepFloat for $t {
            fn with_scratch<R>(f: impl FnOnce(&mut Option<Scratch<$t>>) -> R) -> R {
                // Scratch lives per worker thread: no allocation per sweep.
                thread_local! {
                    static SCRATCH: std::cell::RefCell<Option<Scratch<$t>>> =
                        const { std::cell::RefCell::new(None) };
                }
                SCRATCH.with(|cell| f(&mut cell.borrow_mut()))
            }

            /// One block's sweep at the given SIMD level. Every level runs
            /// the same operations in the same order (element-wise, no fused
            /// multiply-add), so the result is bit-identical whatever the CPU.
            fn sweep_block(
                level: SimdLevel,
                p: &SweepParams<'_, $t>,
                v: &mut [f64],
                rngs: &mut [ChainRng],
                s: &mut Scratch<$t>,
                hidden_act: Option<&[f64]>,
            ) {
                match level {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: simd_level() returned Avx512 only if the CPU has AVX-512F.
                    SimdLevel::Avx512 => unsafe { $avx512(p, v, rngs, s, hidden_act) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: simd_level() returned Avx2 only if the CPU has AVX2.
                    SimdLevel::Avx2 => unsafe { $avx2(p, v, rngs, s, hidden_act) },
                    _ => sweep_block_body::<$t, $tbase, false>(p, v, rngs, s, hidden_act),
                }
            }
        }
    };
}
sweep_float!(
    f64,
    sweep_block_avx512_f64,
    sweep_block_avx2_f64,
    64,
    32,
    16
);
sweep_float!(
    f32,
    sweep_block_avx512_f32,
    sweep_block_avx2_f32,
    128,
    64,
    32
);

/// Chains swept together: the weights a tile needs stay in L1 cache while
/// every chain of the block uses them.
const SWEEP_BLOCK: usize = 32;

/// Scratch space for sweeping one block of chains.
struct Scratch<T> {
    /// Hidden activations, then hidden states, (chains x H).
    act: Vec<T>,
    /// Visible activations, (chains x V).
    bact: Vec<T>,
    /// Per chain, the indices of the units that are on (visible, then hidden).
    idx: Vec<u32>,
    /// Per chain, how many units are on.
    on: Vec<usize>,
    /// Per chain, a cursor into its on-list (row-tiled sums).
    cur: Vec<usize>,
    bits: Vec<u8>,
}

impl<T: Real> Scratch<T> {
    /// Grows the buffers to hold `chains` chains of this RBM's sizes.
    fn fit(&mut self, chains: usize, nv: usize, nh: usize) {
        let m = nv.max(nh);
        let grow = |v: &mut Vec<T>, n: usize| {
            if v.len() < n {
                v.resize(n, T::ZERO);
            }
        };
        grow(&mut self.act, chains * nh);
        grow(&mut self.bact, chains * nv);
        if self.idx.len() < chains * m {
            // 16 spare entries: the AVX-512 compaction stores whole vectors.
            self.idx.resize(chains * m + 16, 0);
        }
        if self.on.len() < chains {
            self.on.resize(chains, 0);
            self.cur.resize(chains, 0);
        }
        if self.bits.len() < 4 * m {
            self.bits.resize(4 * m, 0);
        }
    }

    fn new(chains: usize, nv: usize, nh: usize) -> Self {
        let m = nv.max(nh);
        Scratch {
            act: vec![T::ZERO; chains * nh],
            bact: vec![T::ZERO; chains * nv],
            idx: vec![0; chains * m + 16],
            on: vec![0; chains],
            cur: vec![0; chains],
            bits: vec![0u8; 4 * m],
        }
    }
}

/// Replaces each `a_j` by a Bernoulli draw, 1 with probability
/// `sigmoid(a_j)`, from 32-bit uniforms `u_j = (bits_j + 1/2) 2^-32`:
/// `[u_j (1 + exp(-a_j)) < 1]`. Probabilities are exact to the 2^-32 grid
/// of `u`.
///
/// In f32 the uniform comes from the top 23 bits ([`Real::uniform`]).
#[inline(always)]
fn bernoulli_sigmoid<T: Real>(a: &mut [T], bits: &[u8]) {
    for (x, b) in a.iter_mut().zip(bits.chunks_exact(4)) {
        let u = T::uniform(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        *x = if u * (T::ONE + (-*x).exp_fast()) < T::ONE {
            T::ONE
        } else {
            T::ZERO
        };
    }
}

/// Indices `j` with `x_j != 0`, compacted without branches; returns the count.
#[inline(always)]
fn compact_on<T: Compact, const WIDE: bool>(x: &[T], idx: &mut [u32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if WIDE && idx.len() >= x.len() + 16 {
        // SAFETY: WIDE is set only by the AVX-512 sweep (the CPU has
        // AVX-512F); `idx` has room for a whole vector past every index.
        return unsafe { T::compact_avx512(x, idx) };
    }
    let mut on = 0;
    for (j, &xj) in x.iter().enumerate() {
        idx[on] = j as u32;
        on += usize::from(xj != T::ZERO);
    }
    on
}

/// [`compact_on`] with AVX-512: a mask of the non-zero lanes of a vector
/// compresses a vector of indices into its low lanes, stored whole (the
/// caller leaves 16 spare entries); the same indices as the scalar loop.
trait Compact: Real {
    /// # Safety
    /// The CPU must have AVX-512F and `idx.len() >= x.len() + 16`.
    unsafe fn compact_avx512(x: &[Self], idx: &mut [u32]) -> usize;
}

#[cfg(target_arch = "x86_64")]
macro_rules! compact_impl {
    ($t:ty, $lanes:expr, $load:ident, $cmp:ident, $zero:ident) => {
        impl Compact for $t {
            #[target_feature(enable = "avx512f")]
            unsafe fn compact_avx512(x: &[$t], idx: &mut [u32]) -> usize {
                use std::arch::x86_64::*;
                assert!(idx.len() >= x.len() + 16);
                let mut on = 0;
                let mut j = 0;
                let mut iota =
                    _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                let step = _mm512_set1_epi32($lanes);
                while j + $lanes <= x.len() {
                    // SAFETY: j + lanes <= x.len(); on + 16 <= j + 16 <= idx.len().
                    unsafe {
                        let v = $load(x.as_ptr().add(j));
                        // x != 0 (true for NaN, as the scalar loop).
                        let m = u32::from($cmp::<_CMP_NEQ_UQ>(v, $zero()));
                        let packed = _mm512_maskz_compress_epi32(m as u16, iota);
                        _mm512_storeu_si512(idx.as_mut_ptr().add(on).cast(), packed);
                        on += m.count_ones() as usize;
                    }
                    iota = _mm512_add_epi32(iota, step);
                    j += $lanes;
                }
                for (jj, &xj) in x.iter().enumerate().skip(j) {
                    idx[on] = jj as u32;
                    on += usize::from(xj != 0.0);
                }
                on
            }
        }
    };
}
#[cfg(target_arch = "x86_64")]
compact_impl!(
    f64,
    8,
    _mm512_loadu_pd,
    _mm512_cmp_pd_mask,
    _mm512_setzero_pd
);
#[cfg(target_arch = "x86_64")]
compact_impl!(
    f32,
    16,
    _mm512_loadu_ps,
    _mm512_cmp_ps_mask,
    _mm512_setzero_ps
);
#[cfg(not(target_arch = "x86_64"))]
impl<T: Real> Compact for T {
    unsafe fn compact_avx512(_: &[T], _: &mut [u32]) -> usize {
        unreachable!("AVX-512 exists only on x86-64")
    }
}

/// For every chain `c` of a block and every column `j`:
/// `out[c][j] = sum over the on-list of c (increasing) of rows[i][j]`.
/// Columns go in tiles of `TILE`, so a tile of every row is loaded into L1
/// once and serves all chains, and each chain's tile accumulates in
/// registers. Every element is summed in the same order whatever the tile
/// width, so results do not depend on it.
#[inline(always)]
fn sum_selected_rows<T: Real, const TILE: usize>(
    rows: &[T],
    width: usize,
    idx: &[u32],
    stride: usize,
    on: &[usize],
    out: &mut [T],
) {
    let chains = on.len();
    let mut j0 = 0;
    while j0 < width {
        if j0 + TILE <= width {
            for c in 0..chains {
                let mut acc = [T::ZERO; TILE];
                for &i in &idx[c * stride..c * stride + on[c]] {
                    let r: &[T; TILE] = rows[i as usize * width + j0..][..TILE]
                        .try_into()
                        .expect("tile");
                    for k in 0..TILE {
                        acc[k] += r[k];
                    }
                }
                out[c * width + j0..][..TILE].copy_from_slice(&acc);
            }
        } else {
            let n = width - j0;
            for c in 0..chains {
                let o = &mut out[c * width + j0..c * width + width];
                o.fill(T::ZERO);
                for &i in &idx[c * stride..c * stride + on[c]] {
                    let r = &rows[i as usize * width + j0..i as usize * width + width];
                    for k in 0..n {
                        o[k] += r[k];
                    }
                }
            }
        }
        j0 += TILE;
    }
}

/// [`sum_selected_rows`] for rows exactly `W` wide (the visible layer of
/// the suite's RBMs is 64): each chain's whole output row accumulates in
/// registers, and the rows go in tiles of `ROWS`, so a tile of rows is
/// loaded into L1 once and serves every chain of the block. Each chain's
/// on-list is sorted, so a cursor per chain finds its rows in a tile. Same
/// order of additions as [`sum_selected_rows`]: same results.
#[inline(always)]
fn sum_selected_rows_narrow<T: Real, const W: usize, const ROWS: usize>(
    rows: &[T],
    idx: &[u32],
    stride: usize,
    on: &[usize],
    cur: &mut [usize],
    out: &mut [T],
) {
    let chains = on.len();
    let n_rows = rows.len() / W;
    cur[..chains].fill(0);
    let mut r0 = 0;
    while r0 < n_rows {
        let r1 = (r0 + ROWS) as u32;
        for c in 0..chains {
            let o: &mut [T; W] = (&mut out[c * W..(c + 1) * W]).try_into().expect("row");
            let mut acc = if r0 == 0 { [T::ZERO; W] } else { *o };
            let list = &idx[c * stride + cur[c]..c * stride + on[c]];
            let mut k = 0;
            while k < list.len() && list[k] < r1 {
                let r: &[T; W] = rows[list[k] as usize * W..][..W].try_into().expect("row");
                for e in 0..W {
                    acc[e] += r[e];
                }
                k += 1;
            }
            cur[c] += k;
            *o = acc;
        }
        r0 += ROWS;
    }
}

/// One sweep `v -> h -> v` of a block of chains (`v` holds their rows).
/// Binary states make each product a sum of selected rows: `W^T v` adds the
/// rows of `W` of the visibles that are on, `W h` the rows of `W^T` of the
/// hiddens that are on. Chain `i` draws only from `rngs[i]`: 32-bit
/// uniforms for the hiddens, then for the visibles.
#[inline(always)]
fn sweep_block_body<T: Compact, const TILE: usize, const WIDE: bool>(
    p: &SweepParams<'_, T>,
    v: &mut [f64],
    rngs: &mut [ChainRng],
    s: &mut Scratch<T>,
    hidden_act: Option<&[f64]>,
) {
    use rand::Rng;
    let (nv, nh) = (p.nv, p.nh);
    let chains = rngs.len();
    let m = nv.max(nh);
    let act = &mut s.act[..chains * nh];
    match hidden_act {
        Some(a) => {
            for (x, y) in act.iter_mut().zip(a) {
                *x = p.t * T::of(*y);
            }
        }
        None => {
            for c in 0..chains {
                s.on[c] = compact_on::<f64, WIDE>(&v[c * nv..(c + 1) * nv], &mut s.idx[c * m..]);
            }
            sum_selected_rows::<T, TILE>(p.w, nh, &s.idx, m, &s.on[..chains], act);
            for row in act.chunks_exact_mut(nh) {
                for j in 0..nh {
                    row[j] = p.t * row[j] + p.ch[j];
                }
            }
        }
    }
    // Hidden states overwrite their activations (0/1 values).
    for c in 0..chains {
        let bits = &mut s.bits[..4 * nh];
        rngs[c].fill_bytes(bits);
        let h = &mut act[c * nh..(c + 1) * nh];
        bernoulli_sigmoid(h, bits);
        s.on[c] = compact_on::<T, WIDE>(h, &mut s.idx[c * m..]);
    }
    let bact = &mut s.bact[..chains * nv];
    if nv == 64 {
        sum_selected_rows_narrow::<T, 64, 64>(p.wt, &s.idx, m, &s.on[..chains], &mut s.cur, bact);
    } else {
        sum_selected_rows::<T, TILE>(p.wt, nv, &s.idx, m, &s.on[..chains], bact);
    }
    for c in 0..chains {
        let b = &mut bact[c * nv..(c + 1) * nv];
        for i in 0..nv {
            b[i] = p.t * b[i] + p.vb[i];
        }
        let bits = &mut s.bits[..4 * nv];
        rngs[c].fill_bytes(bits);
        bernoulli_sigmoid(b, bits);
        for (d, x) in v[c * nv..(c + 1) * nv].iter_mut().zip(b.iter()) {
            *d = x.wide();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::exp_poly;
    use super::*;

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
