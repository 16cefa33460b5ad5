//! Dense matrix products for the neural energies.
//!
//! [`matmul`] computes `C = A B` (or `C += A B`) for any strides with one
//! summation order on every CPU: each entry of `C` sums `A[i, p] B[p, j]`
//! over the inner dimension in chunks of `KC`, each chunk by fused
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

mod vector;

use crate::simd::{SimdLevel, simd_level};
use ndarray::{ArrayView2, ArrayViewMut2};
#[cfg(target_arch = "x86_64")]
use vector::{avx2_f32, avx2_f64, avx512_f32, avx512_f64};

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

#[cfg(test)]
mod tests;
