//! Run-time choice of the instruction set for the hand-vectorised loops
//! (AVX-512, AVX2 or the baseline), below every other module: the energy
//! core, the kernels, AIS and the random streams dispatch on it.

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

/// `fn NAME(args) -> R` running `BODY(args)` compiled for AVX-512, for AVX2
/// or for the baseline, whichever [`simd_level`] chose. `BODY` must be
/// `#[inline(always)]` and do the same operations at every level
/// (element-wise arithmetic, sums in fixed lanes, no fused multiply-add),
/// so that every level gives the same bits: only the vector width changes.
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident;) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "avx512f")]
            fn wide($($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "avx2")]
            fn mid($($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            match $crate::simd::simd_level() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: simd_level() returned Avx512 only if the CPU has AVX-512F.
                $crate::simd::SimdLevel::Avx512 => unsafe { wide($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: simd_level() returned Avx2 only if the CPU has AVX2.
                $crate::simd::SimdLevel::Avx2 => unsafe { mid($($arg),*) },
                _ => $body($($arg),*),
            }
        }
    };
}
pub(crate) use simd_dispatch;
