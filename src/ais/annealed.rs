//! The geometric path's energy `(1 - b) E0 + b E` between a base and a
//! target, as an [`Energy`] so that every kernel anneals unchanged.
//!
//! With a [`Parts`] store attached, each batch's target and base energies
//! (and gradients) are kept apart so that the AIS driver can reuse those of
//! accepted proposals instead of evaluating them again. That reuse rests on
//! one rule, which [`Kernel::proposal_is_last_eval`] states per kernel: the
//! energy's last batch call in a step was at the proposals. Kernels that do
//! not declare it (Gibbs's heat bath) get their values evaluated afresh.
//!
//! [`Kernel::proposal_is_last_eval`]: crate::kernels::Kernel::proposal_is_last_eval

use super::Base;
use crate::energy::Energy;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use rayon::prelude::*;

/// `(1 - b) E0 + b E`: the geometric path's energy at `b` between a base
/// and a target energy `E` (already multiplied by beta). An [`Energy`], so
/// every kernel anneals unchanged.
pub struct Annealed<'a> {
    target: &'a dyn Energy,
    base: &'a Base,
    b: Temps<'a>,
    parts: Option<&'a std::sync::Mutex<Parts>>,
}

/// Where on the path an [`Annealed`] energy is: one `b` for every row, or
/// one per row (parallel tempering's replicas, all in one batch).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Temps<'a> {
    One(f64),
    Rows(&'a [f64]),
}

/// The target's and the base's energies (and gradients) of the last batch
/// an [`Annealed`] energy evaluated, kept apart so that the AIS driver can
/// reuse those of accepted proposals instead of evaluating them again.
#[derive(Default)]
pub(crate) struct Parts {
    pub(crate) f: Array1<f64>,
    pub(crate) gf: Array2<f64>,
    pub(crate) e0: Array1<f64>,
    pub(crate) g0: Array2<f64>,
}

impl Parts {
    /// Sizes the parts for `n` rows of dimension `d` (gradients only with `grad`).
    pub(crate) fn resize(&mut self, n: usize, d: usize, grad: bool) {
        if self.f.len() != n {
            self.f = Array1::zeros(n);
            self.e0 = Array1::zeros(n);
        }
        let gd = if grad { (n, d) } else { (0, 0) };
        if self.gf.dim() != gd {
            self.gf = Array2::zeros(gd);
            self.g0 = Array2::zeros(gd);
        }
    }
}

impl<'a> Annealed<'a> {
    /// The path's energy at `b` in [0, 1].
    pub fn new(target: &'a dyn Energy, base: &'a Base, b: f64) -> Self {
        Annealed {
            target,
            base,
            b: Temps::One(b),
            parts: None,
        }
    }

    /// Same, keeping the target's and base's parts of each batch in `parts`.
    pub(crate) fn with_parts(
        target: &'a dyn Energy,
        base: &'a Base,
        b: f64,
        parts: &'a std::sync::Mutex<Parts>,
    ) -> Self {
        Annealed {
            target,
            base,
            b: Temps::One(b),
            parts: Some(parts),
        }
    }

    /// Row `i` at `b[i]` (called with exactly those rows), keeping the
    /// parts of each batch in `parts`.
    pub(crate) fn with_parts_rows(
        target: &'a dyn Energy,
        base: &'a Base,
        b: &'a [f64],
        parts: &'a std::sync::Mutex<Parts>,
    ) -> Self {
        Annealed {
            target,
            base,
            b: Temps::Rows(b),
            parts: Some(parts),
        }
    }
}

/// The geometric path's energy (and gradient) at `b` from its parts:
/// `b F + (1 - b) E0`, the same arithmetic as `Base::mix_into`, so the
/// same bits. Serves proposals ([`Annealed`]) and current positions
/// (`Path::refresh`); with per-row temperatures, row `i` at `b[i]`.
pub(crate) fn mix_parts(
    b: Temps<'_>,
    f: &Array1<f64>,
    e0: &Array1<f64>,
    grads: Option<(&Array2<f64>, &Array2<f64>)>,
    mut energy: ArrayViewMut1<f64>,
    grad: Option<ArrayViewMut2<f64>>,
) {
    let b = match b {
        Temps::One(b) => b,
        Temps::Rows(b) => return mix_rows(b, f, e0, grads, energy, grad),
    };
    let a = 1.0 - b;
    ndarray::Zip::from(&mut energy)
        .and(f)
        .and(e0)
        .for_each(|e, &f, &e0| *e = b * f + a * e0);
    if let (Some(mut g), Some((gf, g0))) = (grad, grads) {
        if let (Some(gs), Some(fs), Some(zs)) = (g.as_slice_mut(), gf.as_slice(), g0.as_slice()) {
            // Contiguous: chunks of MIX_CHUNK values (small arrays stay one
            // task), each mixed at the CPU's SIMD level; element-wise, so
            // the same bits as the Zip below.
            gs.par_chunks_mut(MIX_CHUNK)
                .zip(fs.par_chunks(MIX_CHUNK))
                .zip(zs.par_chunks(MIX_CHUNK))
                .for_each(|((g, f), z)| mix_slice(b, a, g, f, z));
            return;
        }
        ndarray::Zip::from(&mut g)
            .and(gf)
            .and(g0)
            .par_for_each(|g, &f, &e0| *g = b * f + a * e0);
    }
}

/// Values per task of the gradient mix: large enough that the per-task
/// cost vanishes, small enough that 1024 particles x 32 dimensions split
/// over a few threads.
const MIX_CHUNK: usize = 4096;

/// `g = b f + a e0`, element-wise.
#[inline(always)]
fn mix_body(b: f64, a: f64, g: &mut [f64], f: &[f64], e0: &[f64]) {
    for ((g, f), e) in g.iter_mut().zip(f).zip(e0) {
        *g = b * f + a * e;
    }
}

crate::simd::simd_dispatch! {
    /// [`mix_body`] at the CPU's SIMD level (same bits at every level).
    fn mix_slice(b: f64, a: f64, g: &mut [f64], f: &[f64], e0: &[f64]) = mix_body;
}

/// [`mix_parts`] with row `i` at `b[i]`.
fn mix_rows(
    b: &[f64],
    f: &Array1<f64>,
    e0: &Array1<f64>,
    grads: Option<(&Array2<f64>, &Array2<f64>)>,
    mut energy: ArrayViewMut1<f64>,
    grad: Option<ArrayViewMut2<f64>>,
) {
    for (i, e) in energy.iter_mut().enumerate() {
        *e = b[i] * f[i] + (1.0 - b[i]) * e0[i];
    }
    if let (Some(mut g), Some((gf, g0))) = (grad, grads) {
        ndarray::Zip::indexed(g.rows_mut())
            .and(gf.rows())
            .and(g0.rows())
            .par_for_each(|i, mut g, gf, g0| {
                let (bi, a) = (b[i], 1.0 - b[i]);
                ndarray::Zip::from(&mut g)
                    .and(&gf)
                    .and(&g0)
                    .for_each(|g, &f, &e| *g = bi * f + a * e);
            });
    }
}

impl Energy for Annealed<'_> {
    fn dim(&self) -> usize {
        self.target.dim()
    }
    fn energy_batch(&self, y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>) {
        if let Some(parts) = self.parts {
            let mut p = parts.lock().expect("not poisoned");
            p.resize(y.nrows(), y.ncols(), false);
            self.target.energy_batch(y, p.f.view_mut());
            self.base.energy_batch(y, p.e0.view_mut());
            mix_parts(self.b, &p.f, &p.e0, None, energy, None);
            return;
        }
        let Temps::One(b) = self.b else {
            unreachable!("per-row temperatures always keep their parts")
        };
        self.target.energy_batch(y, energy.view_mut());
        self.base.mix_into(y, energy, None, b);
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        if let Some(parts) = self.parts {
            let mut p = parts.lock().expect("not poisoned");
            p.resize(y.nrows(), y.ncols(), true);
            let p = &mut *p;
            self.target
                .energy_grad_batch(y, p.f.view_mut(), p.gf.view_mut());
            self.base
                .energy_grad_batch(y, p.e0.view_mut(), p.g0.view_mut());
            mix_parts(
                self.b,
                &p.f,
                &p.e0,
                Some((&p.gf, &p.g0)),
                energy,
                Some(grad),
            );
            return;
        }
        let Temps::One(b) = self.b else {
            unreachable!("per-row temperatures always keep their parts")
        };
        self.target
            .energy_grad_batch(y, energy.view_mut(), grad.view_mut());
        self.base.mix_into(y, energy, Some(grad), b);
    }
    fn space(&self) -> crate::energy::StateSpace {
        self.target.space()
    }
    fn fixed_rows(&self) -> Option<usize> {
        match self.b {
            Temps::Rows(b) => Some(b.len()),
            Temps::One(_) => self.target.fixed_rows(),
        }
    }
}

/// The geometric path's energy `b F + (1 - b) E0` row by row, for a target
/// written row by row and a Gaussian base: kernels that take whole chains
/// at a time (NUTS, the AutoStep kernels) then run each particle with its
/// own cost instead of every particle for the slowest one's. Used only
/// with kernels that do not reuse the proposals' parts.
pub(crate) struct AnnealedRows<'a> {
    target: &'a dyn crate::energy::RowEnergy,
    mean: &'a [f64],
    std: &'a [f64],
    c: f64,
    b: f64,
}

impl<'a> AnnealedRows<'a> {
    /// `None` unless the target has rows and the base is Gaussian.
    pub(crate) fn new(target: &'a dyn Energy, base: &'a Base, b: f64) -> Option<Self> {
        let target = target.as_row()?;
        match base {
            Base::Gaussian { mean, std } => Some(AnnealedRows {
                target,
                mean,
                std,
                c: base.log_normaliser(),
                b,
            }),
            Base::Bernoulli { .. } => None,
        }
    }
}

impl crate::energy::RowEnergy for AnnealedRows<'_> {
    fn state_dim(&self) -> usize {
        self.mean.len()
    }
    fn energy(&self, y: &[f64]) -> f64 {
        let mut e0 = self.c;
        for ((v, m), s) in y.iter().zip(self.mean).zip(self.std) {
            let z = (v - m) / s;
            e0 += 0.5 * z * z;
        }
        self.b * self.target.energy(y) + (1.0 - self.b) * e0
    }
    fn energy_grad(&self, y: &[f64], grad: &mut [f64]) -> f64 {
        let (a, b) = (1.0 - self.b, self.b);
        let f = self.target.energy_grad(y, grad);
        let mut e0 = self.c;
        for (((g, v), m), s) in grad.iter_mut().zip(y).zip(self.mean).zip(self.std) {
            let z = (v - m) / s;
            e0 += 0.5 * z * z;
            *g = b * *g + a * z / s;
        }
        b * f + a * e0
    }
}
