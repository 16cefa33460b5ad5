//! Block Gibbs sweeps of an RBM's chains: blocks of chains per thread,
//! the visible units compacted to the active ones, SIMD lanes over hidden
//! units, in f64 or f32.

use super::super::Real;
use crate::rng::ChainRng;
use crate::simd::{SimdLevel, simd_level};
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// What a sweep of one chain needs, shared by all chains, in the float
/// type the sweep computes in.
pub(super) struct SweepParams<'a, T> {
    pub(super) w: &'a [T],
    pub(super) wt: &'a [T],
    pub(super) nv: usize,
    pub(super) nh: usize,
    pub(super) t: T,
    pub(super) ch: &'a [T],
    pub(super) vb: &'a [T],
}

/// Sweeps every chain (row of `v`), in blocks of [`SWEEP_BLOCK`] chains
/// spread over rayon's threads.
pub(super) fn sweep_all<T: SweepFloat>(
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
pub(super) trait SweepFloat: Compact {
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
pub(super) struct Scratch<T> {
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

    pub(super) fn new(chains: usize, nv: usize, nh: usize) -> Self {
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
pub(super) trait Compact: Real {
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
