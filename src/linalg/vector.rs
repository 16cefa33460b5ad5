//! The AVX-512 and AVX2+FMA kernels of [`super::matmul`], one macro for
//! every instruction set and float type (the summation order of the
//! parent module's docs).

use super::KC;

/// One vector kernel for one float type: `$t` with `$lanes` per vector,
/// panels of `NV` vectors (`NR = NV * $lanes` columns), tiles of up to
/// `MR` rows, the instructions of `$feat` and their intrinsics.
macro_rules! vector_kernel {
    ($name:ident, $feat:literal, $t:ty, $lanes:expr, $nv:expr, $mr:expr,
     $zero:ident, $load:ident, $set1:ident, $fma:ident, $add:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        pub(super) mod $name {
            use super::KC;
            use ndarray::{ArrayView2, ArrayViewMut2};
            use std::arch::x86_64::*;
            /// Floats per vector.
            pub const LANES: usize = $lanes;
            /// Vectors per panel.
            const NV: usize = $nv;
            /// Columns per packed panel of `B`.
            const NR: usize = NV * LANES;
            /// Rows of `A` per register tile (`MR * NV` accumulators).
            const MR: usize = $mr;

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
            #[target_feature(enable = $feat)]
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
                    let mut acc = [[$zero(); NV]; R];
                    for p in 0..k {
                        let bp = panel.add(p * NR);
                        let mut b = [$zero(); NV];
                        for (v, bv) in b.iter_mut().enumerate() {
                            *bv = $load(bp.add(v * LANES));
                        }
                        for (i, acc) in acc.iter_mut().enumerate() {
                            let ai = $set1(*a.add(i * lda + p));
                            for v in 0..NV {
                                acc[v] = $fma(ai, b[v], acc[v]);
                            }
                        }
                    }
                    if csc == 1 && w == NR {
                        // A full tile of a row-major C: vector stores (and adds;
                        // c + acc rounds as the scalar path's, same bits).
                        for (i, acc) in acc.iter().enumerate() {
                            let row = c.offset(i as isize * ldc);
                            for (v, s) in acc.iter().enumerate() {
                                let d = row.add(LANES * v);
                                let x = if accumulate { $add($load(d), *s) } else { *s };
                                $store(d, x);
                            }
                        }
                        return;
                    }
                    let mut buf = [<$t>::default(); NR];
                    for (i, acc) in acc.iter().enumerate() {
                        for (v, s) in acc.iter().enumerate() {
                            $store(buf.as_mut_ptr().add(LANES * v), *s);
                        }
                        let row = c.offset(i as isize * ldc);
                        for (j, s) in buf[..w].iter().enumerate() {
                            let d = row.offset(j as isize * csc);
                            *d = if accumulate { *d + *s } else { *s };
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
            /// The CPU must have the kernel's instructions; `a` (m x k),
            /// `b` (k x n), `c` (m x n), `k > 0`.
            #[target_feature(enable = $feat)]
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
            /// The CPU must have the kernel's instructions; `a` (m x k), `pb`
            /// the panels of a (k x n) matrix, `c` (m x n), `k > 0`.
            #[target_feature(enable = $feat)]
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

            #[target_feature(enable = $feat)]
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
                    // Inner dimension in chunks of KC (the summation order of
                    // the module docs); a chunk of the panel stays in L1 while
                    // every row block uses it.
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
    };
}
vector_kernel!(
    avx512_f64,
    "avx512f",
    f64,
    8,
    4,
    6,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_add_pd,
    _mm512_storeu_pd
);
vector_kernel!(
    avx512_f32,
    "avx512f",
    f32,
    16,
    4,
    6,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_storeu_ps
);
vector_kernel!(
    avx2_f64,
    "avx2,fma",
    f64,
    4,
    2,
    6,
    _mm256_setzero_pd,
    _mm256_loadu_pd,
    _mm256_set1_pd,
    _mm256_fmadd_pd,
    _mm256_add_pd,
    _mm256_storeu_pd
);
vector_kernel!(
    avx2_f32,
    "avx2,fma",
    f32,
    8,
    2,
    6,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_storeu_ps
);
