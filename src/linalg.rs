//! Dense matrix products for the neural energies.
//!
//! [`matmul`] computes `C = A B` (or `C += A B`) for any strides with one
//! summation order on every CPU: each entry of `C` sums `A[i, p] B[p, j]`
//! over the inner dimension in chunks of [`KC`], each chunk by fused
//! multiply-adds in order of `p` into an accumulator that starts at zero,
//! and the chunk's sum is added to `C` (or set, for the first chunk
//! without `accumulate`). Nothing else rounds, so a product's bits depend
//! neither on the CPU's vector unit nor on how many rows a call has: a
//! batch of chains and one chain alone get the same energies, and runs are
//! bit-identical across machines.
//!
//! Three kernels follow that order. With AVX-512 `B` is packed into panels
//! of four vectors (32 f64 or 64 f32 columns, zero-padded) and each 6-row
//! tile of `C` accumulates in 24 vector registers, one broadcast of `A`
//! and four fused multiply-adds per row and step (the register blocking of
//! BLIS); with AVX2 and FMA the panels are two vectors wide (8 f64 or 16
//! f32 columns), 12 accumulators per tile (BLIS's Haswell shape);
//! otherwise, and for products narrower than one vector, a scalar loop
//! does the same operations with `mul_add` (hardware FMA where the CPU has
//! it). All are sequential within a call (callers parallelise over row
//! blocks), so results never depend on the number of threads.

use crate::simd::{SimdLevel, simd_level};
use ndarray::{ArrayView2, ArrayViewMut2};

/// Inner-dimension chunk: every kernel sums `KC` products into a fresh
/// accumulator before adding it to `C` (a KC x 32 f64 chunk of an AVX-512
/// panel is 32 KiB, L1). Changing it changes every product's last bits.
const KC: usize = 128;

/// The kernel this CPU runs for products at least one vector wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// AVX-512F.
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// The scalar loop.
    Scalar,
}

/// The fastest kernel this CPU has (`BOLTZ_SIMD` caps it like the other
/// hand-vectorised loops; the bits are the same whichever runs).
fn kernel() -> Kernel {
    match simd_level() {
        SimdLevel::Avx512 => Kernel::Avx512,
        SimdLevel::Avx2 if has_fma() => Kernel::Avx2,
        _ => Kernel::Scalar,
    }
}

/// Whether the CPU has fused multiply-add instructions.
fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The float types' fused multiply-add, for the scalar loop.
trait MulAdd: Copy + Default + std::ops::Add<Output = Self> {
    /// `self * b + c`, rounded once.
    fn mul_add(self, b: Self, c: Self) -> Self;
}
impl MulAdd for f64 {
    #[inline(always)]
    fn mul_add(self, b: f64, c: f64) -> f64 {
        f64::mul_add(self, b, c)
    }
}
impl MulAdd for f32 {
    #[inline(always)]
    fn mul_add(self, b: f32, c: f32) -> f32 {
        f32::mul_add(self, b, c)
    }
}

/// Rows of `C` the scalar loop works on at once (independent chains of
/// multiply-adds hide their latency).
const SCALAR_ROWS: usize = 8;

/// The scalar kernel: [`matmul`]'s summation order, element by element.
///
/// # Safety
/// `a` is (m x k), `b` (k x n), `c` (m x n) and does not alias them; `k > 0`.
#[inline(always)]
unsafe fn scalar_body<T: MulAdd>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    mut c: ArrayViewMut2<T>,
    accumulate: bool,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    let (sa, sb, sc) = (a.strides(), b.strides(), [c.strides()[0], c.strides()[1]]);
    let mut i0 = 0;
    while i0 < m {
        let r = SCALAR_ROWS.min(m - i0);
        for j in 0..n {
            let mut k0 = 0;
            while k0 < k {
                let kc = KC.min(k - k0);
                let mut acc = [T::default(); SCALAR_ROWS];
                for p in k0..k0 + kc {
                    // SAFETY: (p, j) and (i0 + ri, p) are inside `b` and `a`.
                    let bpj = unsafe { *bp.offset(p as isize * sb[0] + j as isize * sb[1]) };
                    for (ri, s) in acc[..r].iter_mut().enumerate() {
                        let at = (i0 + ri) as isize * sa[0] + p as isize * sa[1];
                        *s = unsafe { *ap.offset(at) }.mul_add(bpj, *s);
                    }
                }
                for (ri, s) in acc[..r].iter().enumerate() {
                    // SAFETY: (i0 + ri, j) is inside `c`.
                    let d =
                        unsafe { &mut *cp.offset((i0 + ri) as isize * sc[0] + j as isize * sc[1]) };
                    *d = if accumulate || k0 > 0 { *d + *s } else { *s };
                }
                k0 += kc;
            }
        }
        i0 += r;
    }
}

/// [`scalar_body`] compiled with FMA instructions.
///
/// # Safety
/// As [`scalar_body`]'s; the CPU must have FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn scalar_fma<T: MulAdd>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    c: ArrayViewMut2<T>,
    accumulate: bool,
) {
    // SAFETY: as this function's.
    unsafe { scalar_body(a, b, c, accumulate) }
}

/// The scalar kernel, with hardware FMA where the CPU has it (the same bits
/// either way: `mul_add` rounds once).
///
/// # Safety
/// As [`scalar_body`]'s.
unsafe fn scalar<T: MulAdd>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    c: ArrayViewMut2<T>,
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: FMA is present (checked); the rest as this function's.
        return unsafe { scalar_fma(a, b, c, accumulate) };
    }
    // SAFETY: as this function's.
    unsafe { scalar_body(a, b, c, accumulate) }
}

/// `c = a b`, or `c += a b` with `accumulate`, in the summation order of
/// the module docs (the same bits on every CPU and for any row count).
///
/// # Panics
/// If the shapes do not chain: `a` is (m, k), `b` (k, n), `c` (m, n).
pub fn matmul(a: ArrayView2<f64>, b: ArrayView2<f64>, c: ArrayViewMut2<f64>, accumulate: bool) {
    <f64 as Gemm>::matmul(a, b, c, accumulate)
}

/// [`matmul`] in single precision (the f32 compute path of the neural
/// energies): the same kernels with twice the floats per vector.
///
/// # Panics
/// If the shapes do not chain: `a` is (m, k), `b` (k, n), `c` (m, n).
pub fn matmul_f32(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>, accumulate: bool) {
    <f32 as Gemm>::matmul(a, b, c, accumulate)
}

/// A right-hand matrix `B` (k x n) prepared once for many products `A B`
/// (a layer's weights): the vector kernels pack `B` into panels on every
/// [`matmul`]; a `Packed` holds the panels, so products with it skip that
/// copy (and its strided reads when `B` is a transposed view). The results
/// are those of [`matmul`] with `B`, bit for bit.
#[derive(Clone, Debug)]
pub struct Packed<T> {
    /// `B` (or `B^T` when `transposed`) in standard layout: `B` with the
    /// strides it was given, the scalar kernel's operand.
    plain: ndarray::Array2<T>,
    transposed: bool,
    /// The vector kernel's panels (empty when the scalar kernel runs).
    panels: Vec<T>,
}

/// The float types with a matrix product (f64, f32).
pub trait Gemm: Copy + Default + Send + Sync + 'static {
    /// `c (+)= a b`: [`matmul`] or [`matmul_f32`].
    fn matmul(a: ArrayView2<Self>, b: ArrayView2<Self>, c: ArrayViewMut2<Self>, accumulate: bool);
    /// `b`'s panels for the vector kernel (empty where the scalar one runs).
    fn panels(b: ArrayView2<Self>) -> Vec<Self>;
    /// `c (+)= a b` with `b` packed.
    fn matmul_packed(
        a: ArrayView2<Self>,
        b: &Packed<Self>,
        c: ArrayViewMut2<Self>,
        accumulate: bool,
    );
}

/// Checks that `a` (m x k), `b` (k x n) and `c` chain, and settles the
/// products with nothing to sum; returns whether a kernel must still run.
fn chain<T: Default + Copy>(
    (m, k): (usize, usize),
    (kb, n): (usize, usize),
    c: &mut ArrayViewMut2<T>,
    accumulate: bool,
) -> bool {
    assert_eq!(kb, k, "matmul: inner dimensions");
    assert_eq!(c.dim(), (m, n), "matmul: output shape");
    if m == 0 || n == 0 {
        return false;
    }
    if k == 0 {
        if !accumulate {
            c.fill(T::default());
        }
        return false;
    }
    true
}

macro_rules! gemm_float {
    ($t:ty, $k512:ident, $k2:ident, $kernel_for:ident) => {
        /// The kernel for products `n` columns wide (the scalar one below
        /// one vector).
        fn $kernel_for(n: usize) -> Kernel {
            match kernel() {
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512 if n >= $k512::LANES => Kernel::Avx512,
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 if n >= $k2::LANES => Kernel::Avx2,
                _ => Kernel::Scalar,
            }
        }
        impl Gemm for $t {
            fn matmul(
                a: ArrayView2<$t>,
                b: ArrayView2<$t>,
                mut c: ArrayViewMut2<$t>,
                accumulate: bool,
            ) {
                if !chain(a.dim(), b.dim(), &mut c, accumulate) {
                    return;
                }
                match $kernel_for(b.ncols()) {
                    // SAFETY (all three): the CPU has the kernel's
                    // instructions (kernel() checked); shapes were checked.
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 => unsafe { $k512::matmul(a, b, c, accumulate) },
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 => unsafe { $k2::matmul(a, b, c, accumulate) },
                    _ => unsafe { scalar(a, b, c, accumulate) },
                }
            }
            fn panels(b: ArrayView2<$t>) -> Vec<$t> {
                match $kernel_for(b.ncols()) {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 => $k512::pack(b),
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 => $k2::pack(b),
                    _ => Vec::new(),
                }
            }
            fn matmul_packed(
                a: ArrayView2<$t>,
                b: &Packed<$t>,
                mut c: ArrayViewMut2<$t>,
                accumulate: bool,
            ) {
                if b.panels.is_empty() {
                    return <$t as Gemm>::matmul(a, b.view(), c, accumulate);
                }
                if !chain(a.dim(), b.dim(), &mut c, accumulate) {
                    return;
                }
                let n = b.dim().1;
                match $kernel_for(n) {
                    // SAFETY (both): panels exist only for a vector kernel
                    // the CPU has; shapes were checked above.
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 => unsafe {
                        $k512::matmul_packed(a, &b.panels, n, c, accumulate)
                    },
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 => unsafe { $k2::matmul_packed(a, &b.panels, n, c, accumulate) },
                    _ => <$t as Gemm>::matmul(a, b.view(), c, accumulate),
                }
            }
        }
    };
}
gemm_float!(f64, avx512_f64, avx2_f64, kernel_f64);
gemm_float!(f32, avx512_f32, avx2_f32, kernel_f32);
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

/// One vector kernel for one float type: `$t` with `$lanes` per vector,
/// panels of `NV` vectors (`NR = NV * $lanes` columns), tiles of up to
/// `MR` rows, the instructions of `$feat` and their intrinsics.
macro_rules! vector_kernel {
    ($name:ident, $feat:literal, $t:ty, $lanes:expr, $nv:expr, $mr:expr,
     $zero:ident, $load:ident, $set1:ident, $fma:ident, $add:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
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
    /// Every kernel this CPU has gives the scalar kernel's bits, and a row
    /// alone gives its row of the batch (the promise of the module docs).
    #[test]
    fn every_kernel_gives_the_scalar_bits_for_any_row_count() {
        macro_rules! check {
            ($t:ty, $k512:ident, $k2:ident) => {
                for (m, k, n) in [
                    (1, 300, 70),
                    (13, 48, 33),
                    (7, 129, 8),
                    (37, 128, 1),
                    (6, 256, 64),
                    (50, 5, 17),
                ] {
                    let a =
                        Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j) as $t * 0.37).sin());
                    let b =
                        Array2::from_shape_fn((k, n), |(i, j)| ((i + 3 * j) as $t * 0.91).cos());
                    for accumulate in [false, true] {
                        let start = Array2::from_shape_fn((m, n), |(i, j)| ((i + j) as $t).sqrt());
                        let mut want = start.clone();
                        // SAFETY: the shapes chain, k > 0.
                        unsafe { scalar(a.view(), b.view(), want.view_mut(), accumulate) };
                        let mut got = start.clone();
                        <$t as Gemm>::matmul(a.view(), b.view(), got.view_mut(), accumulate);
                        assert_eq!(got, want, "{m}x{k}x{n}");
                        let mut packed = start.clone();
                        matmul_packed(
                            a.view(),
                            &Packed::new(b.view()),
                            packed.view_mut(),
                            accumulate,
                        );
                        assert_eq!(packed, want, "{m}x{k}x{n} packed");
                        for i in 0..m {
                            let mut row = start.slice(ndarray::s![i..i + 1, ..]).to_owned();
                            let ai = a.slice(ndarray::s![i..i + 1, ..]);
                            <$t as Gemm>::matmul(ai, b.view(), row.view_mut(), accumulate);
                            assert_eq!(row.row(0), want.row(i), "{m}x{k}x{n} row {i}");
                        }
                        #[cfg(target_arch = "x86_64")]
                        {
                            let mut kernels: Vec<(
                                &str,
                                unsafe fn(ArrayView2<$t>, ArrayView2<$t>, ArrayViewMut2<$t>, bool),
                            )> = Vec::new();
                            if std::arch::is_x86_feature_detected!("avx512f") {
                                kernels.push(("avx512", $k512::matmul));
                            }
                            if std::arch::is_x86_feature_detected!("avx2") && has_fma() {
                                kernels.push(("avx2", $k2::matmul));
                            }
                            for (name, f) in kernels {
                                let mut c = start.clone();
                                // SAFETY: the CPU has the kernel's instructions (checked).
                                unsafe { f(a.view(), b.view(), c.view_mut(), accumulate) };
                                assert_eq!(c, want, "{name} {m}x{k}x{n}");
                            }
                        }
                    }
                }
            };
        }
        check!(f64, avx512_f64, avx2_f64);
        check!(f32, avx512_f32, avx2_f32);
    }
}
