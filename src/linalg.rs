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

use ndarray::{ArrayView2, ArrayViewMut2};

/// Columns per packed panel of `B` (four vectors of 8 doubles).
const NR: usize = 32;
/// Rows of `A` per register tile.
const MR: usize = 6;
/// Inner-dimension chunk: a KC x NR chunk of a panel is 32 KiB (L1).
const KC: usize = 128;

/// Instruction sets the hand-vectorised loops are compiled for, chosen
/// once at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SimdLevel {
    /// The baseline (SSE2 on x86-64).
    Base,
    /// AVX2.
    Avx2,
    /// AVX-512F.
    Avx512,
}

/// The best level this CPU has (`BOLTZ_SIMD=base|avx2|avx512` caps it).
pub(crate) fn simd_level() -> SimdLevel {
    static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("BOLTZ_SIMD").unwrap_or_default();
        #[cfg(target_arch = "x86_64")]
        {
            if cap != "base" && cap != "avx2" && std::arch::is_x86_feature_detected!("avx512f") {
                return SimdLevel::Avx512;
            }
            if cap != "base" && std::arch::is_x86_feature_detected!("avx2") {
                return SimdLevel::Avx2;
            }
        }
        let _ = cap;
        SimdLevel::Base
    })
}

/// `c = a b`, or `c += a b` with `accumulate`.
///
/// # Panics
/// If the shapes do not chain: `a` is (m, k), `b` (k, n), `c` (m, n).
pub fn matmul(a: ArrayView2<f64>, b: ArrayView2<f64>, mut c: ArrayViewMut2<f64>, accumulate: bool) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "matmul: inner dimensions");
    assert_eq!(c.dim(), (m, n), "matmul: output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if n >= 8 && avx512() {
        // SAFETY: AVX-512F is present (checked); shapes were checked above.
        unsafe { avx512::matmul(a, b, c, accumulate) };
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
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Whether boltz's AVX-512 kernel runs (`BOLTZ_SIMD=avx2` or `base`
/// turns it off, e.g. to compare backends).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    simd_level() == SimdLevel::Avx512
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{KC, MR, NR};
    use ndarray::{ArrayView2, ArrayViewMut2};
    use std::arch::x86_64::*;

    thread_local! {
        static PACK: std::cell::RefCell<(Vec<f64>, Vec<f64>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }

    /// Packs `b` (k x n, any strides) into `ceil(n / NR)` panels of k x NR,
    /// row-major within a panel, zero-padded on the right.
    fn pack_b(b: &ArrayView2<f64>, out: &mut Vec<f64>) {
        let (k, n) = b.dim();
        let panels = n.div_ceil(NR);
        out.clear();
        out.resize(panels * k * NR, 0.0);
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
    fn pack_a(a: &ArrayView2<f64>, out: &mut Vec<f64>) {
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
        a: *const f64,
        lda: usize,
        panel: *const f64,
        c: *mut f64,
        ldc: isize,
        csc: isize,
        w: usize,
        accumulate: bool,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_pd(); 4]; R];
            for p in 0..k {
                let bp = panel.add(p * NR);
                let b0 = _mm512_loadu_pd(bp);
                let b1 = _mm512_loadu_pd(bp.add(8));
                let b2 = _mm512_loadu_pd(bp.add(16));
                let b3 = _mm512_loadu_pd(bp.add(24));
                for i in 0..R {
                    let ai = _mm512_set1_pd(*a.add(i * lda + p));
                    acc[i][0] = _mm512_fmadd_pd(ai, b0, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_pd(ai, b1, acc[i][1]);
                    acc[i][2] = _mm512_fmadd_pd(ai, b2, acc[i][2]);
                    acc[i][3] = _mm512_fmadd_pd(ai, b3, acc[i][3]);
                }
            }
            let mut buf = [0.0f64; NR];
            for i in 0..R {
                for v in 0..4 {
                    _mm512_storeu_pd(buf.as_mut_ptr().add(8 * v), acc[i][v]);
                }
                let row = c.offset(i as isize * ldc);
                for j in 0..w {
                    let d = row.offset(j as isize * csc);
                    *d = if accumulate { *d + buf[j] } else { buf[j] };
                }
            }
        }
    }

    /// See [`super::matmul`].
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `a` (m x k), `b` (k x n), `c` (m x n).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn matmul(
        a: ArrayView2<f64>,
        b: ArrayView2<f64>,
        mut c: ArrayViewMut2<f64>,
        accumulate: bool,
    ) {
        let (m, k) = a.dim();
        let n = b.ncols();
        PACK.with(|cell| {
            let mut bufs = cell.borrow_mut();
            let (pb, pa) = &mut *bufs;
            pack_b(&b, pb);
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
                // (KC x 32 doubles) stays in L1 while every row block uses it.
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
        });
    }
}

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
}
