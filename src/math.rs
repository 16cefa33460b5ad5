//! Numerical helpers below every other module (no dependency on the rest
//! of boltz): quadrature in log space.

/// Composite Simpson weight of node `i` of `n` intervals (1, 4, 2, ..., 4, 1).
pub(crate) fn simpson_weight(i: usize, n: usize) -> f64 {
    if i == 0 || i == n {
        1.0
    } else if i % 2 == 1 {
        4.0
    } else {
        2.0
    }
}

/// `log int_a^b exp(log_f(r)) dr` by composite Simpson on `n` intervals
/// (`n` rounded up to even), summed in log space so that integrands of
/// `exp(-1000)` or `exp(+1000)` neither underflow nor overflow.
pub fn log_integrate_1d<F: Fn(f64) -> f64>(log_f: F, a: f64, b: f64, n: usize) -> f64 {
    let n = (n.max(2) + 1) & !1;
    let h = (b - a) / n as f64;
    let lf: Vec<f64> = (0..=n).map(|i| log_f(a + i as f64 * h)).collect();
    let m = lf.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    let s: f64 = lf
        .iter()
        .enumerate()
        .map(|(i, &l)| simpson_weight(i, n) * (l - m).exp())
        .sum();
    m + (s * h / 3.0).ln()
}
