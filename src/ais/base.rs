//! Normalised base distributions `p0` that annealing starts from.

use crate::energy::{Energy, sigmoid, softplus};
use crate::error::{Error, Result, check_finite, check_positive};
use crate::rng::ChainRng;
use ndarray::{ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use rand::RngExt;
use rayon::prelude::*;

/// A normalised base density with exact draws. Its energy is
/// `E0(y) = -log p0(y)` (so `exp(-E0)` integrates to exactly 1).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Base {
    /// `N(mean, diag(std^2))`.
    Gaussian {
        /// Mean per coordinate.
        mean: Vec<f64>,
        /// Standard deviation per coordinate.
        std: Vec<f64>,
    },
    /// Independent Bernoulli visibles with `P(y_i = 1) = p_i`, as
    /// `p_i = sigmoid(logit_i)` (the base-rate model of Salakhutdinov &
    /// Murray 2008 uses the data's pixel means).
    Bernoulli {
        /// Log-odds per coordinate.
        logit: Vec<f64>,
    },
}

impl Base {
    /// `N(0, scale^2 I)` in `dim` dimensions.
    pub fn isotropic(dim: usize, scale: f64) -> Result<Base> {
        check_std("base scale", scale)?;
        Ok(Base::Gaussian {
            mean: vec![0.0; dim],
            std: vec![scale; dim],
        })
    }

    /// A diagonal Gaussian base (finite means, positive stds).
    pub fn gaussian(mean: Vec<f64>, std: Vec<f64>) -> Result<Base> {
        check_finite("base mean", &mean)?;
        if mean.len() != std.len() {
            return Err(Error::shape(
                "base",
                format!("std of length {}", mean.len()),
                format!("{}", std.len()),
            ));
        }
        for s in &std {
            check_std("base std", *s)?;
        }
        Ok(Base::Gaussian { mean, std })
    }

    /// Bernoulli base from probabilities, clipped to `[clip, 1 - clip]`.
    pub fn bernoulli(probs: &[f64], clip: f64) -> Result<Base> {
        if !(0.0..0.5).contains(&clip) {
            return Err(Error::param("clip", "must be in [0, 0.5)"));
        }
        check_finite("base probabilities", probs)?;
        let logit = probs
            .iter()
            .map(|p| {
                let p = p.clamp(clip, 1.0 - clip);
                (p / (1.0 - p)).ln()
            })
            .collect::<Vec<f64>>();
        check_finite("base logits (probabilities 0 or 1 need clip > 0)", &logit)?;
        Ok(Base::Bernoulli { logit })
    }

    /// The base-rate model of binary data (rows of 0/1): per-coordinate
    /// means clipped to [0.01, 0.99].
    pub fn base_rate(data: ndarray::ArrayView2<f64>) -> Result<Base> {
        let means = data
            .mean_axis(Axis(0))
            .ok_or_else(|| Error::shape("base-rate data", "at least one row", "none"))?;
        Base::bernoulli(&means.to_vec(), 0.01)
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        match self {
            Base::Gaussian { mean, .. } => mean.len(),
            Base::Bernoulli { logit } => logit.len(),
        }
    }

    /// One exact draw into `out`.
    pub fn sample(&self, rng: &mut ChainRng, out: &mut [f64]) {
        match self {
            Base::Gaussian { mean, std } => {
                crate::rng::fill_standard_normal(rng, out);
                for ((o, m), s) in out.iter_mut().zip(mean).zip(std) {
                    *o = m + s * *o;
                }
            }
            Base::Bernoulli { logit } => {
                for (o, l) in out.iter_mut().zip(logit) {
                    *o = f64::from(u8::from(rng.random::<f64>() < sigmoid(*l)));
                }
            }
        }
    }

    /// The state-independent part of `E0`: `sum_i log(sqrt(2 pi) std_i)`
    /// (Gaussian) or `sum_i softplus(logit_i)` (Bernoulli).
    pub(crate) fn log_normaliser(&self) -> f64 {
        match self {
            Base::Gaussian { std, .. } => std
                .iter()
                .map(|s| (s * (2.0 * std::f64::consts::PI).sqrt()).ln())
                .sum(),
            Base::Bernoulli { logit } => logit.iter().map(|l| softplus(*l)).sum(),
        }
    }
}

crate::simd::simd_dispatch! {
    /// One row of [`Base::mix_into`] for a Gaussian base, at the CPU's SIMD
    /// level: the same operations in the same order as the generic loop (the
    /// per-coordinate terms and gradients element-wise, then their sum left to
    /// right), so the same bits; returns the row's mixed energy.
    fn gauss_row(mean: &[f64], std: &[f64], row: &[f64], g: &mut [f64], e: f64, b: f64, a: f64, c: f64) -> f64 = gauss_row_body;
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gauss_row_body(
    mean: &[f64],
    std: &[f64],
    row: &[f64],
    g: &mut [f64],
    e: f64,
    b: f64,
    a: f64,
    c: f64,
) -> f64 {
    const CHUNK: usize = 64;
    let mut t = [0.0f64; CHUNK];
    let mut e0 = c;
    let n = row.len();
    let (mean, std, g) = (&mean[..n], &std[..n], &mut g[..n]);
    let mut j0 = 0;
    while j0 < n {
        let k = CHUNK.min(n - j0);
        for j in 0..k {
            let i = j0 + j;
            let z = (row[i] - mean[i]) / std[i];
            t[j] = 0.5 * z * z;
            g[i] = b * g[i] + a * (z / std[i]);
        }
        for tj in &t[..k] {
            e0 += tj;
        }
        j0 += k;
    }
    b * e + a * e0
}

impl Energy for Base {
    fn dim(&self) -> usize {
        Base::dim(self)
    }
    fn energy_batch(&self, y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>) {
        energy.fill(0.0);
        self.mix_into(y, energy, None, 0.0);
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        energy.fill(0.0);
        grad.fill(0.0);
        self.mix_into(y, energy, Some(grad), 0.0);
    }
    fn log_z(&self) -> Option<f64> {
        Some(0.0)
    }
    fn space(&self) -> crate::energy::StateSpace {
        match self {
            Base::Gaussian { .. } => crate::energy::StateSpace::Continuous,
            Base::Bernoulli { .. } => crate::energy::StateSpace::Binary,
        }
    }
}

impl Base {
    /// Mixes the base into a target's energies and gradients in place:
    /// `e <- b e + (1 - b) E0`, `g <- b g + (1 - b) grad E0` (the geometric
    /// path's energy at `b`).
    pub(crate) fn mix_into(
        &self,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        grad: Option<ArrayViewMut2<f64>>,
        b: f64,
    ) {
        let a = 1.0 - b;
        let c = self.log_normaliser();
        // Per coordinate: the state-dependent part of E0 and its derivative.
        let term = |i: usize, v: f64| -> (f64, f64) {
            match self {
                Base::Gaussian { mean, std } => {
                    let z = (v - mean[i]) / std[i];
                    (0.5 * z * z, z / std[i])
                }
                Base::Bernoulli { logit } => (-v * logit[i], -logit[i]),
            }
        };
        match grad {
            Some(mut g)
                if matches!(self, Base::Gaussian { .. })
                    && y.is_standard_layout()
                    && g.is_standard_layout() =>
            {
                let Base::Gaussian { mean, std } = self else {
                    unreachable!("matched above")
                };
                let d = y.ncols().max(1);
                let (ys, gs) = (
                    y.as_slice().expect("standard"),
                    g.as_slice_mut().expect("standard"),
                );
                ys.par_chunks(d)
                    .zip(gs.par_chunks_mut(d))
                    .zip(energy.axis_iter_mut(ndarray::Axis(0)).into_par_iter())
                    .for_each(|((row, gr), mut e)| {
                        let e = e.first_mut().expect("a 0-d view holds one value");
                        *e = gauss_row(mean, std, row, gr, *e, b, a, c);
                    });
            }
            Some(mut g) => {
                ndarray::Zip::from(y.rows())
                    .and(&mut energy)
                    .and(g.rows_mut())
                    .par_for_each(|row, e, mut gr| {
                        let mut e0 = c;
                        for (i, (v, gv)) in row.iter().zip(gr.iter_mut()).enumerate() {
                            let (t, d) = term(i, *v);
                            e0 += t;
                            *gv = b * *gv + a * d;
                        }
                        *e = b * *e + a * e0;
                    });
            }
            None => {
                ndarray::Zip::from(y.rows())
                    .and(&mut energy)
                    .par_for_each(|row, e| {
                        let e0: f64 = c + row
                            .iter()
                            .enumerate()
                            .map(|(i, v)| term(i, *v).0)
                            .sum::<f64>();
                        *e = b * *e + a * e0;
                    });
            }
        }
    }
}

/// Draws `n` rows from the base, row `i` from `rngs[i]`.
pub(crate) fn sample_rows(base: &Base, rngs: &mut [ChainRng], mut out: ArrayViewMut2<f64>) {
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(rngs.par_iter_mut())
        .for_each(|(mut row, rng)| {
            base.sample(rng, row.as_slice_mut().expect("standard layout"));
        });
}

/// A Gaussian's standard deviation whose variance and precision are
/// ordinary floating-point numbers: positive and finite, `s^2` neither
/// subnormal nor infinite (a scale of 1e-300 made the base's energy
/// infinite and tempering report log Z = -1378 on a standard Gaussian
/// with many round trips, no warning).
pub(crate) fn check_std(name: &str, s: f64) -> Result<()> {
    check_positive(name, s)?;
    let var = s * s;
    if !var.is_normal() || !(1.0 / var).is_finite() {
        return Err(Error::param(
            name,
            format!(
                "{s:e} is too extreme: its variance {var:e} is not an ordinary float (use a scale between 1e-150 and 1e150)"
            ),
        ));
    }
    Ok(())
}
