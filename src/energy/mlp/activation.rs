//! The MLP's pointwise non-linearities: scalar forms and the batched
//! loops (vectorised for SiLU) with their derivatives.

use super::super::{Real, sigmoid, softplus};
use crate::simd::SimdLevel;

/// Pointwise non-linearity of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `a * sigmoid(a)`.
    Silu,
    /// `max(a, 0)`.
    Relu,
    /// `tanh(a)`.
    Tanh,
    /// `log(1 + exp(a))`.
    Softplus,
    /// The identity.
    None,
}

impl Activation {
    /// Parses `silu`, `relu`, `tanh`, `softplus`, `none`.
    pub fn parse(name: &str) -> Option<Activation> {
        Some(match name {
            "silu" => Activation::Silu,
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "softplus" => Activation::Softplus,
            "none" | "linear" | "identity" => Activation::None,
            _ => return None,
        })
    }

    #[inline]
    pub(super) fn apply(self, a: f64) -> f64 {
        match self {
            Activation::Silu => a * sigmoid(a),
            Activation::Relu => a.max(0.0),
            Activation::Tanh => a.tanh(),
            Activation::Softplus => softplus(a),
            Activation::None => a,
        }
    }

    /// `(f(a), f'(a))` with one exponential at most (silu and softplus
    /// share the sigmoid, tanh its value).
    #[inline]
    pub(super) fn apply_with_derivative(self, a: f64) -> (f64, f64) {
        match self {
            Activation::Silu => {
                let s = sigmoid(a);
                (a * s, s * (1.0 + a * (1.0 - s)))
            }
            Activation::Tanh => {
                let t = a.tanh();
                (t, 1.0 - t * t)
            }
            Activation::Softplus => (softplus(a), sigmoid(a)),
            Activation::Relu => (a.max(0.0), if a > 0.0 { 1.0 } else { 0.0 }),
            Activation::None => (a, 1.0),
        }
    }
}

/// Applies `act` to `z` into `out`; with `deriv`, `z` is overwritten by the
/// derivative at `z`. SiLU (the suite's MLP) runs a branch-free loop on
/// [`crate::energy::exp_poly`] that vectorises; the others call their scalar forms.
#[inline(always)]
fn activate_body<T: Real>(act: Activation, z: &mut [T], out: &mut [T], deriv: bool) {
    match (act, deriv) {
        (Activation::Silu, true) => {
            for (zi, oi) in z.iter_mut().zip(out.iter_mut()) {
                let a = *zi;
                let s = T::ONE / (T::ONE + (-a).exp_fast());
                *oi = a * s;
                *zi = s * (T::ONE + a * (T::ONE - s));
            }
        }
        (Activation::Silu, false) => {
            for (zi, oi) in z.iter().zip(out.iter_mut()) {
                // a * s exactly as with the derivative: same bits either way.
                let s = T::ONE / (T::ONE + (-*zi).exp_fast());
                *oi = *zi * s;
            }
        }
        (_, true) => {
            for (zi, oi) in z.iter_mut().zip(out.iter_mut()) {
                let (f, df) = act.apply_with_derivative(zi.wide());
                *oi = T::of(f);
                *zi = T::of(df);
            }
        }
        (_, false) => {
            for (zi, oi) in z.iter().zip(out.iter_mut()) {
                *oi = T::of(act.apply(zi.wide()));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn activate_avx512<T: Real>(act: Activation, z: &mut [T], out: &mut [T], deriv: bool) {
    activate_body(act, z, out, deriv)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn activate_avx2<T: Real>(act: Activation, z: &mut [T], out: &mut [T], deriv: bool) {
    activate_body(act, z, out, deriv)
}

/// [`activate_body`] at the CPU's SIMD level; the same operations in the
/// same order at every level, so results do not depend on it.
pub(super) fn activate<T: Real>(
    level: SimdLevel,
    act: Activation,
    z: &mut [T],
    out: &mut [T],
    deriv: bool,
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: simd_level() returned Avx512 only if the CPU has AVX-512F.
        SimdLevel::Avx512 => unsafe { activate_avx512(act, z, out, deriv) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: simd_level() returned Avx2 only if the CPU has AVX2.
        SimdLevel::Avx2 => unsafe { activate_avx2(act, z, out, deriv) },
        _ => activate_body(act, z, out, deriv),
    }
}
