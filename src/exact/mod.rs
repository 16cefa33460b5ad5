//! Exact references: enumeration for binary models, quadrature for low
//! dimensions. They are the answers the statistical tests and the AIS
//! estimates are checked against.

mod enumerate;
mod quadrature;

pub use crate::math::log_integrate_1d;
pub use enumerate::{MAX_ENUMERATED_BITS, enumerate_log_z, rbm_log_z, rbm_visible_marginal_counts};
pub use quadrature::{log_z_grid, log_z_grid_with_error};

use crate::error::{Error, Result};
use crate::model::{Family, Model};
use ndarray::Array2;

/// "Exact where the model allows": the exact log Z per context (the
/// model's default contexts when `contexts` is `None`), where the model has
/// one at inverse temperature `beta` (at beta = 1): RBMs with a layer of at
/// most 24 units by enumeration, binary energies given as code with at
/// most 20 bits by enumeration, closed-form Gaussians, mixtures and
/// funnels, the ring by its radial formula. `None` otherwise (AIS then).
///
/// ```
/// let m = boltz::model::load("gmm-ring")?;
/// let lz = boltz::exact::model_log_z(&m, None, 1.0)?.expect("closed form");
/// assert!((lz[0] - m.exact_log_z.unwrap()).abs() < 1e-12);
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn model_log_z(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    beta: f64,
) -> Result<Option<Vec<f64>>> {
    if beta != 1.0 {
        return Ok(None);
    }
    Ok(match &model.family {
        Family::Rbm(r) => {
            if r.n_hidden().min(r.n_visible()) <= 24 {
                Some(vec![model.exact_log_z.map_or_else(|| rbm_log_z(r), Ok)?])
            } else {
                None
            }
        }
        Family::Ring(r) => {
            let ctx = contexts
                .cloned()
                .or_else(|| model.default_context.clone())
                .ok_or_else(|| crate::Error::param("contexts", "the ring needs contexts"))?;
            Some(
                ctx.rows()
                    .into_iter()
                    .map(|x| r.log_z_from_norm2(x.dot(&x)))
                    .collect(),
            )
        }
        Family::Mlp(_) => None,
        // A binary energy given as code: a sum over its states, up to 2^20.
        Family::Custom(e) if e.space() == crate::StateSpace::Binary && e.dim() <= 20 => {
            Some(vec![enumerate_log_z(e.as_ref())?])
        }
        _ => model.exact_log_z.map(|v| vec![v]),
    })
}

/// 1-2 dim quadrature on a box fitted to a short pilot, or the ring's
/// radial formula: log Z per context and an error estimate (the change
/// from halving the grid; the radial rule's is below 1e-10).
pub fn model_quadrature(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    beta: f64,
    seed: u64,
) -> Result<(Vec<f64>, Vec<f64>)> {
    if let Family::Ring(r) = &model.family {
        if beta != 1.0 {
            return Err(Error::param(
                "beta",
                "the ring's radial quadrature is at beta 1",
            ));
        }
        let ctx = contexts
            .cloned()
            .or_else(|| model.default_context.clone())
            .ok_or_else(|| crate::Error::param("contexts", "the ring needs contexts"))?;
        let lz: Vec<f64> = ctx
            .rows()
            .into_iter()
            .map(|x| r.log_z_from_norm2(x.dot(&x)))
            .collect();
        let err = vec![1e-10; lz.len()];
        return Ok((lz, err));
    }
    let why = if matches!(model.family, Family::Rbm(_)) {
        Some("it is binary (use exact enumeration or AIS)".to_string())
    } else if model.conditional().is_some() {
        Some(format!(
            "it is conditional (x_dim {}): quadrature covers unconditional models (give x_dim 0) and the ring",
            model.x_dim()
        ))
    } else if model.dim() > 2 {
        Some(format!(
            "it has dimension {}: quadrature covers dimensions 1 and 2",
            model.dim()
        ))
    } else {
        None
    };
    if let Some(why) = why {
        return Err(Error::param(
            "method",
            format!("no quadrature for `{}`: {why}", model.name),
        ));
    }
    let e = model.energy(None)?;
    let base = crate::ais::pilot_base(e.as_ref(), beta, seed)?;
    let crate::ais::Base::Gaussian { mean, std } = base else {
        unreachable!("pilot bases are Gaussian")
    };
    // The pilot base has 1.5 times the pilot's sd: +-12 of those is +-18 pilot sds.
    let lo: Vec<f64> = mean.iter().zip(&std).map(|(m, s)| m - 12.0 * s).collect();
    let hi: Vec<f64> = mean.iter().zip(&std).map(|(m, s)| m + 12.0 * s).collect();
    let scaled = crate::energy::Scaled::new(e.as_ref(), beta)?;
    let n = if model.dim() == 1 { 20000 } else { 1500 };
    let (lz, err) = log_z_grid_with_error(&scaled, &lo, &hi, n)?;
    Ok((vec![lz], vec![err]))
}
