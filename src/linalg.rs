//! Dense matrix products for the neural energies.
//!
//! [`matmul`] computes `C = A B` (or `C += A B`) for any strides. On CPUs
//! with AVX-512 it runs boltz's own kernel: `B` is packed into panels of 32
//! columns (zero-padded), and each 6 x 32 tile of `C` accumulates in 24
//! vector registers over the whole inner dimension, one broadcast of `A`
//! and four fused multiply-adds per row and step (the register blocking of
//! BLIS and of the `gemm` crate). Elsewhere the `gemm` crate's kernels run
//! (AVX2 / FMA / scalar, chosen at run time). Both are sequential within a
//! call (callers parallelise over row blocks), so results never depend on
//! the number of threads; on one machine they are deterministic, across
//! CPUs with different vector units the last bits may differ.

use crate::simd::{SimdLevel, simd_level};
use ndarray::{ArrayView2, ArrayViewMut2};

/// Rows of `A` per register tile.
const MR: usize = 6;
/// Inner-dimension chunk: a KC x NR chunk of a panel is 32 KiB (L1).
const KC: usize = 128;

/// The body of [`matmul`] and [`matmul_f32`]: shape checks, then boltz's
/// AVX-512 kernel for the type or the `gemm` crate's.
macro_rules! matmul_impl {
    ($kernel:ident, $a:ident, $b:ident, $c:ident, $accumulate:ident, $zero:expr, $one:expr) => {{
        let (a, b, mut c, accumulate) = ($a, $b, $c, $accumulate);
        let (m, k) = a.dim();
        let n = b.ncols();
        assert_eq!(b.nrows(), k, "matmul: inner dimensions");
        assert_eq!(c.dim(), (m, n), "matmul: output shape");
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                c.fill($zero);
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if n >= 8 && avx512() {
            // SAFETY: AVX-512F is present (checked); shapes were checked above.
            unsafe { $kernel::matmul(a, b, c, accumulate) };
            return;
        }
        let (sa, sb) = (a.strides(), b.strides());
        let sc = [c.strides()[0], c.strides()[1]];
        // SAFETY: the pointers and strides describe the three views exactly
        // (shapes checked above); `c` is borrowed mutably, so it aliases
        // neither input.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                sc[1],
                sc[0],
                accumulate,
                a.as_ptr(),
                sa[1],
                sa[0],
                b.as_ptr(),
                sb[1],
                sb[0],
                $one,
                $one,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }};
}
/// `c = a b`, or `c += a b` with `accumulate`.
///
/// # Panics
/// If the shapes do not chain: `a` is (m, k), `b` (k, n), `c` (m, n).
pub fn matmul(a: ArrayView2<f64>, b: ArrayView2<f64>, c: ArrayViewMut2<f64>, accumulate: bool) {
    matmul_impl!(avx512_f64, a, b, c, accumulate, 0.0f64, 1.0f64)
}

/// [`matmul`] in single precision (the f32 compute path of the neural
/// energies): the same kernels with 16 floats per vector, panels of 64
/// columns.
///
/// # Panics
/// If the shapes do not chain: `a` is (m, k), `b` (k, n), `c` (m, n).
pub fn matmul_f32(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>, accumulate: bool) {
    matmul_impl!(avx512_f32, a, b, c, accumulate, 0.0f32, 1.0f32)
}

/// A right-hand matrix `B` (k x n) prepared once for many products `A B`
/// (a layer's weights): boltz's AVX-512 kernel packs `B` into panels on
/// every [`matmul`]; a `Packed` holds the panels, so products with it skip
/// that copy (and its strided reads when `B` is a transposed view). The
/// results are those of [`matmul`] with `B`, bit for bit.
#[derive(Clone, Debug)]
pub struct Packed<T> {
    /// `B` (or `B^T` when `transposed`) in standard layout: `B` with the
    /// strides it was given, the other back-ends' operand.
    plain: ndarray::Array2<T>,
    transposed: bool,
    /// The AVX-512 kernel's panels (empty when that kernel does not run).
    panels: Vec<T>,
}

/// The float types with a matrix product (f64, f32).
pub trait Gemm: Copy + Default + Send + Sync + 'static {
    /// `c (+)= a b`: [`matmul`] or [`matmul_f32`].
    fn matmul(a: ArrayView2<Self>, b: ArrayView2<Self>, c: ArrayViewMut2<Self>, accumulate: bool);
    /// `b`'s panels for boltz's AVX-512 kernel (empty where it does not run).
    fn panels(b: ArrayView2<Self>) -> Vec<Self>;
    /// `c (+)= a b` with `b` packed.
    fn matmul_packed(
        a: ArrayView2<Self>,
        b: &Packed<Self>,
        c: ArrayViewMut2<Self>,
        accumulate: bool,
    );
}

macro_rules! gemm_float {
    ($t:ty, $matmul:ident, $kernel:ident) => {
        impl Gemm for $t {
            fn matmul(
                a: ArrayView2<$t>,
                b: ArrayView2<$t>,
                c: ArrayViewMut2<$t>,
                accumulate: bool,
            ) {
                $matmul(a, b, c, accumulate)
            }
            fn panels(b: ArrayView2<$t>) -> Vec<$t> {
                #[cfg(target_arch = "x86_64")]
                if b.ncols() >= 8 && avx512() {
                    return $kernel::pack(b);
                }
                let _ = b;
                Vec::new()
            }
            fn matmul_packed(
                a: ArrayView2<$t>,
                b: &Packed<$t>,
                mut c: ArrayViewMut2<$t>,
                accumulate: bool,
            ) {
                let (m, k) = a.dim();
                let n = b.dim().1;
                #[cfg(target_arch = "x86_64")]
                if !b.panels.is_empty() && m > 0 && k > 0 {
                    assert_eq!(b.dim().0, k, "matmul: inner dimensions");
                    assert_eq!(c.dim(), (m, n), "matmul: output shape");
                    // SAFETY: panels exist only if AVX-512F is present;
                    // shapes were checked above.
                    unsafe { $kernel::matmul_packed(a, &b.panels, n, c.view_mut(), accumulate) };
                    return;
                }
                $matmul(a, b.view(), c, accumulate)
            }
        }
    };
}
gemm_float!(f64, matmul, avx512_f64);
gemm_float!(f32, matmul_f32, avx512_f32);

impl<T: Gemm> Packed<T> {
    /// Packs `b` (k x n).
    pub fn new(b: ArrayView2<T>) -> Self {
        let transposed = !b.is_standard_layout() && b.t().is_standard_layout();
        Packed {
            plain: if transposed {
                b.t().to_owned()
            } else {
                b.as_standard_layout().into_owned()
            },
            transposed,
            panels: T::panels(b),
        }
    }

    /// `B` (with the layout it was given when that was a transposed
    /// standard-layout matrix).
    pub fn view(&self) -> ArrayView2<'_, T> {
        if self.transposed {
            self.plain.t()
        } else {
            self.plain.view()
        }
    }

    /// `B`'s shape (k, n).
    pub fn dim(&self) -> (usize, usize) {
        self.view().dim()
    }
}

/// `c = a b` (or `c += a b`) with `b` packed: [`matmul`]'s result, bit for bit.
///
/// # Panics
/// If the shapes do not chain.
pub fn matmul_packed<T: Gemm>(
    a: ArrayView2<T>,
    b: &Packed<T>,
    c: ArrayViewMut2<T>,
    accumulate: bool,
) {
    T::matmul_packed(a, b, c, accumulate)
}

/// Whether boltz's AVX-512 kernel runs (`BOLTZ_SIMD=avx2` or `base`
/// turns it off, e.g. to compare backends).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    simd_level() == SimdLevel::Avx512
}

/// boltz's AVX-512 kernel for one float type: `$t` with `$lanes` per
/// vector (panels of `NR = 4 $lanes` columns) and its intrinsics.
macro_rules! avx512_kernel {
    ($name:ident, $t:ty, $lanes:expr, $zero:ident, $load:ident, $set1:ident, $fma:ident, $add:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
            use super::{KC, MR};
            /// Columns per packed panel of `B` (four vectors).
            const NR: usize = 4 * $lanes;
            use ndarray::{ArrayView2, ArrayViewMut2};
            use std::arch::x86_64::*;

            thread_local! {
                static PACK: std::cell::RefCell<(Vec<$t>, Vec<$t>)> =
                    const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
            }

            /// Packs `b` (k x n, any strides) into `ceil(n / NR)` panels of k x NR,
            /// row-major within a panel, zero-padded on the right.
            fn pack_b(b: &ArrayView2<$t>, out: &mut Vec<$t>) {
                let (k, n) = b.dim();
                let panels = n.div_ceil(NR);
                out.clear();
                out.resize(panels * k * NR, <$t>::default());
                for p in 0..panels {
                    let j0 = p * NR;
                    let w = NR.min(n - j0);
                    let dst = &mut out[p * k * NR..(p + 1) * k * NR];
                    for kk in 0..k {
                        let row = &mut dst[kk * NR..kk * NR + w];
                        for (jj, r) in row.iter_mut().enumerate() {
                            *r = b[[kk, j0 + jj]];
                        }
                    }
                }
            }

            /// Copies `a` (m x k) to row-major if its columns are not contiguous.
            fn pack_a(a: &ArrayView2<$t>, out: &mut Vec<$t>) {
                out.clear();
                out.extend(a.iter());
            }

            /// `C[0..R, 0..NR] (+)= A[0..R, 0..k] * panel`, A row-major with row
            /// stride `lda`; the tile is written to `c` (row stride `ldc`), only
            /// its first `w` columns.
            // A microkernel's raw operands: bundling them would only add a copy.
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "avx512f")]
            unsafe fn tile<const R: usize>(
                k: usize,
                a: *const $t,
                lda: usize,
                panel: *const $t,
                c: *mut $t,
                ldc: isize,
                csc: isize,
                w: usize,
                accumulate: bool,
            ) {
                unsafe {
                    let mut acc = [[$zero(); 4]; R];
                    for p in 0..k {
                        let bp = panel.add(p * NR);
                        let b0 = $load(bp);
                        let b1 = $load(bp.add(1 * $lanes));
                        let b2 = $load(bp.add(2 * $lanes));
                        let b3 = $load(bp.add(3 * $lanes));
                        for i in 0..R {
                            let ai = $set1(*a.add(i * lda + p));
                            acc[i][0] = $fma(ai, b0, acc[i][0]);
                            acc[i][1] = $fma(ai, b1, acc[i][1]);
                            acc[i][2] = $fma(ai, b2, acc[i][2]);
                            acc[i][3] = $fma(ai, b3, acc[i][3]);
                        }
                    }
                    if csc == 1 && w == NR {
                        // A full tile of a row-major C: vector stores (and adds;
                        // c + acc rounds as the scalar path's, same bits).
                        for i in 0..R {
                            let row = c.offset(i as isize * ldc);
                            for v in 0..4 {
                                let d = row.add($lanes * v);
                                let x = if accumulate {
                                    $add($load(d), acc[i][v])
                                } else {
                                    acc[i][v]
                                };
                                $store(d, x);
                            }
                        }
                        return;
                    }
                    let mut buf = [<$t>::default(); NR];
                    for i in 0..R {
                        for v in 0..4 {
                            $store(buf.as_mut_ptr().add($lanes * v), acc[i][v]);
                        }
                        let row = c.offset(i as isize * ldc);
                        for j in 0..w {
                            let d = row.offset(j as isize * csc);
                            *d = if accumulate { *d + buf[j] } else { buf[j] };
                        }
                    }
                }
            }

            /// `b` packed into panels (what [`matmul`] does on every call).
            pub fn pack(b: ArrayView2<$t>) -> Vec<$t> {
                let mut out = Vec::new();
                pack_b(&b, &mut out);
                out
            }

            /// See [`super::matmul`].
            ///
            /// # Safety
            /// The CPU must have AVX-512F; `a` (m x k), `b` (k x n), `c` (m x n).
            #[target_feature(enable = "avx512f")]
            pub unsafe fn matmul(
                a: ArrayView2<$t>,
                b: ArrayView2<$t>,
                c: ArrayViewMut2<$t>,
                accumulate: bool,
            ) {
                PACK.with(|cell| {
                    let mut bufs = cell.borrow_mut();
                    let (pb, pa) = &mut *bufs;
                    pack_b(&b, pb);
                    // SAFETY: as this function's.
                    unsafe { run(a, pb, b.ncols(), c, accumulate, pa) };
                });
            }

            /// `c (+)= a b` with `b` (k x n) already packed ([`pack`]).
            ///
            /// # Safety
            /// The CPU must have AVX-512F; `a` (m x k), `pb` the panels of a
            /// (k x n) matrix, `c` (m x n).
            #[target_feature(enable = "avx512f")]
            pub unsafe fn matmul_packed(
                a: ArrayView2<$t>,
                pb: &[$t],
                n: usize,
                c: ArrayViewMut2<$t>,
                accumulate: bool,
            ) {
                PACK.with(|cell| {
                    let mut bufs = cell.borrow_mut();
                    // SAFETY: as this function's.
                    unsafe { run(a, pb, n, c, accumulate, &mut bufs.1) };
                });
            }

            #[target_feature(enable = "avx512f")]
            unsafe fn run(
                a: ArrayView2<$t>,
                pb: &[$t],
                n: usize,
                mut c: ArrayViewMut2<$t>,
                accumulate: bool,
                pa: &mut Vec<$t>,
            ) {
                let (m, k) = a.dim();
                assert!(pb.len() >= n.div_ceil(NR) * k * NR, "packed panels");
                {
                    let (ap, lda) = if a.strides()[1] == 1 && a.strides()[0] >= 0 {
                        (a.as_ptr(), a.strides()[0] as usize)
                    } else {
                        pack_a(&a, pa);
                        (pa.as_ptr(), k)
                    };
                    let (ldc, csc) = (c.strides()[0], c.strides()[1]);
                    let cp = c.as_mut_ptr();
                    for p in 0..n.div_ceil(NR) {
                        let j0 = p * NR;
                        let w = NR.min(n - j0);
                        // Inner dimension in chunks of KC: a chunk of the panel
                        // (KC x NR floats) stays in L1 while every row block uses it.
                        let mut k0 = 0;
                        while k0 < k {
                            let kc = KC.min(k - k0);
                            let acc = accumulate || k0 > 0;
                            let mut i = 0;
                            while i < m {
                                let r = MR.min(m - i);
                                // SAFETY: the panel chunk, the rows i..i+r of a
                                // (columns k0..k0+kc) and the tile of c at (i, j0)
                                // of width w lie inside their buffers.
                                unsafe {
                                    let panel = pb.as_ptr().add(p * k * NR + k0 * NR);
                                    let at = ap.add(i * lda + k0);
                                    let ct = cp.offset(i as isize * ldc + j0 as isize * csc);
                                    match r {
                                        6 => tile::<6>(kc, at, lda, panel, ct, ldc, csc, w, acc),
                                        5 => tile::<5>(kc, at, lda, panel, ct, ldc, csc, w, acc),
                                        4 => tile::<4>(kc, at, lda, panel, ct, ldc, csc, w, acc),
                                        3 => tile::<3>(kc, at, lda, panel, ct, ldc, csc, w, acc),
                                        2 => tile::<2>(kc, at, lda, panel, ct, ldc, csc, w, acc),
                                        _ => tile::<1>(kc, at, lda, panel, ct, ldc, csc, w, acc),
                                    }
                                }
                                i += r;
                            }
                            k0 += kc;
                        }
                    }
                }
            }
        }
    };
}
avx512_kernel!(
    avx512_f64,
    f64,
    8,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_add_pd,
    _mm512_storeu_pd
);
avx512_kernel!(
    avx512_f32,
    f32,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_storeu_ps
);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn naive(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
        let (m, k) = a.dim();
        let n = b.ncols();
        Array2::from_shape_fn((m, n), |(i, j)| (0..k).map(|p| a[[i, p]] * b[[p, j]]).sum())
    }

    #[test]
    fn matmul_matches_the_naive_product_for_odd_shapes_and_strides() {
        for (m, k, n) in [
            (1, 1, 1),
            (7, 5, 9),
            (13, 48, 33),
            (6, 256, 32),
            (50, 3, 70),
            (5, 7, 1),
        ] {
            let a =
                Array2::from_shape_fn((m, k), |(i, j)| ((i * 31 + j * 7) % 23) as f64 / 11.0 - 1.0);
            let b =
                Array2::from_shape_fn((k, n), |(i, j)| ((i * 13 + j * 17) % 19) as f64 / 9.0 - 1.0);
            let want = naive(&a, &b);
            let mut c = Array2::zeros((m, n));
            matmul(a.view(), b.view(), c.view_mut(), false);
            let tol = 1e-12 * k as f64;
            assert!((&c - &want).iter().all(|d| d.abs() < tol), "{m}x{k}x{n}");
            // Accumulate, transposed operands, transposed output.
            matmul(a.view(), b.view(), c.view_mut(), true);
            assert!((&c - &(2.0 * &want)).iter().all(|d| d.abs() < 2.0 * tol));
            let at = a.t().to_owned();
            let bt = b.t().to_owned();
            let mut ct = Array2::zeros((n, m));
            matmul(at.t(), bt.t(), ct.view_mut().reversed_axes(), false);
            assert!((&ct.t() - &want).iter().all(|d| d.abs() < tol));
        }
    }

    #[test]
    fn f32_and_packed_products_match() {
        for (m, k, n) in [
            (1, 1, 1),
            (7, 5, 9),
            (13, 48, 70),
            (6, 256, 64),
            (50, 300, 33),
        ] {
            let a =
                Array2::from_shape_fn((m, k), |(i, j)| ((i * 31 + j * 7) % 23) as f64 / 11.0 - 1.0);
            let b =
                Array2::from_shape_fn((k, n), |(i, j)| ((i * 13 + j * 17) % 19) as f64 / 9.0 - 1.0);
            let want = naive(&a, &b);
            let (a32, b32) = (a.mapv(|v| v as f32), b.mapv(|v| v as f32));
            let mut c = Array2::<f32>::zeros((m, n));
            matmul_f32(a32.view(), b32.view(), c.view_mut(), false);
            let tol = 1e-5 * k as f64;
            assert!(
                c.iter()
                    .zip(&want)
                    .all(|(x, y)| (f64::from(*x) - y).abs() < tol),
                "{m}x{k}x{n}"
            );
            // Packed B (given plain or as a transposed view): the same bits
            // as the unpacked product, f64 and f32, set and accumulate.
            let bt = b.t().to_owned();
            for pb in [Packed::new(b.view()), Packed::new(bt.t())] {
                let mut c1 = Array2::zeros((m, n));
                let mut c2 = Array2::zeros((m, n));
                matmul(a.view(), b.view(), c1.view_mut(), false);
                matmul_packed(a.view(), &pb, c2.view_mut(), false);
                assert_eq!(c1, c2);
                matmul(a.view(), b.view(), c1.view_mut(), true);
                matmul_packed(a.view(), &pb, c2.view_mut(), true);
                assert_eq!(c1, c2);
                assert_eq!(pb.dim(), (k, n));
            }
            let p32 = Packed::new(b32.view());
            let mut c2 = Array2::<f32>::zeros((m, n));
            matmul_packed(a32.view(), &p32, c2.view_mut(), false);
            assert_eq!(c, c2);
        }
    }
}
