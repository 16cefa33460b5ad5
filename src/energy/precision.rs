//! The arithmetic precision of a neural or binary energy's compute.
//!
//! [`Precision::F32`] runs an energy's inner arithmetic (matrix products,
//! activations, RBM row sums and sigmoids) in single precision, the
//! precision EBMs are trained in; inputs are rounded to f32 on the way in
//! and results widened to f64 on the way out. Everything around the energy
//! stays f64: sampler state, acceptance ratios, AIS weights and every
//! accumulation over chains or steps.

use crate::error::{Error, Result};

/// The precision of an energy's inner arithmetic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Precision {
    /// Double precision (the default; every family).
    #[default]
    F64,
    /// Single precision (the `mlp` and `rbm` families).
    F32,
}

impl Precision {
    /// Parses `f64` / `float64` / `double` or `f32` / `float32` / `single`.
    ///
    /// ```
    /// use boltz::energy::Precision;
    /// assert_eq!(Precision::parse("f32").unwrap(), Precision::F32);
    /// assert!(Precision::parse("f16").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Precision> {
        match s {
            "f64" | "float64" | "double" => Ok(Precision::F64),
            "f32" | "float32" | "single" => Ok(Precision::F32),
            other => Err(Error::param(
                "precision",
                format!("unknown precision `{other}` (f64 or f32)"),
            )),
        }
    }

    /// `"f64"` or `"f32"`, as in model files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F64 => "f64",
            Precision::F32 => "f32",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The float types the generic inner loops run in (f64 and f32): the same
/// source for both, so the f64 instantiation keeps its bits.
pub(crate) trait Real:
    Copy
    + Default
    + PartialOrd
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    /// Rounds an f64 to this type.
    fn of(x: f64) -> Self;
    /// Widens to f64 (exact).
    fn wide(self) -> f64;
    /// `exp(x)`, branch-free (vectorises).
    fn exp_fast(self) -> Self;
    /// A uniform in (0, 1) from 32 random bits: `(bits + 1/2) 2^-32` in
    /// f64; in f32 from the top 23 bits, `(bits >> 9 + 1/2) 2^-23` (exact,
    /// and below 1: f32 has 24 bits of mantissa).
    fn uniform(bits: u32) -> Self;
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    #[inline(always)]
    fn of(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn wide(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_fast(self) -> f64 {
        super::exp_poly(self)
    }
    #[inline(always)]
    fn uniform(bits: u32) -> f64 {
        const SCALE: f64 = 1.0 / 4_294_967_296.0;
        (f64::from(bits) + 0.5) * SCALE
    }
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    #[inline(always)]
    fn of(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn wide(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        exp_poly_f32(self)
    }
    #[inline(always)]
    fn uniform(bits: u32) -> f32 {
        const SCALE: f32 = 1.0 / 8_388_608.0;
        // (bits >> 9) < 2^23 converts exactly, through i32 (vectorises).
        (((bits >> 9) as i32) as f32 + 0.5) * SCALE
    }
}

/// `exp(x)` in single precision, within 2 ulp for `|x| <= 87` (clamped
/// outside): `x = k ln 2 + r`, `|r| <= ln 2 / 2`, a degree-7 Taylor
/// polynomial (remainder below 1e-8 relative) and `2^k` from the exponent
/// bits. Branch-free, so loops over it vectorise (16 lanes with AVX-512).
#[inline(always)]
pub fn exp_poly_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 87.0);
    // Round to nearest with the 1.5 * 2^23 shift.
    const SHIFT: f32 = 12_582_912.0;
    let k = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^k for k in [-126, 126]: k + 2^23 + 127 puts k + 127 in the low
    // mantissa bits; shifted into the exponent field it is 2^k.
    let biased = (k + (8_388_608.0 + 127.0)).to_bits();
    p * f32::from_bits(biased << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_poly_f32_is_accurate_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 87.0 {
            let got = f64::from(exp_poly_f32(x));
            let want = f64::from(x).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.013;
        }
        // f32 ulp is 2^-23 = 1.2e-7 relative.
        assert!(worst < 3.0 * 1.2e-7, "worst relative error {worst:e}");
        assert_eq!(exp_poly_f32(-200.0), exp_poly_f32(-87.0));
    }

    #[test]
    fn uniforms_lie_strictly_inside_the_unit_interval() {
        for bits in [0u32, 1, 255, 256, u32::MAX - 1, u32::MAX] {
            let u = <f32 as Real>::uniform(bits);
            assert!(u > 0.0 && u < 1.0, "{bits}: {u}");
            let u = <f64 as Real>::uniform(bits);
            assert!(u > 0.0 && u < 1.0, "{bits}: {u}");
        }
    }
}
