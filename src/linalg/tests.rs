//! The kernels against a naive product, and against each other bit for bit.

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
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 31 + j * 7) % 23) as f64 / 11.0 - 1.0);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 13 + j * 17) % 19) as f64 / 9.0 - 1.0);
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
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 31 + j * 7) % 23) as f64 / 11.0 - 1.0);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 13 + j * 17) % 19) as f64 / 9.0 - 1.0);
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
                let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j) as $t * 0.37).sin());
                let b = Array2::from_shape_fn((k, n), |(i, j)| ((i + 3 * j) as $t * 0.91).cos());
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
