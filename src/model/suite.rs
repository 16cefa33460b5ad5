//! The reference suite (`SUITE.md`): targets with known answers.
//!
//! Every target is available by name through [`target`] (and so anywhere
//! the CLI takes `--model`). The data files (MLP weights and contexts, RBM
//! weights, digits) are compiled into the library, so the suite works on a
//! fresh machine from any folder.

use crate::energy::{Activation, DiagGaussian, Funnel, Layer, Mixture, Mlp, Rbm, Ring};
use crate::error::{Error, Result};
use crate::io::npy::read_npy_bytes;
use crate::model::{Family, Model};
use ndarray::{Array1, Array2};
use std::path::Path;
use std::sync::Arc;

macro_rules! data {
    ($p:literal) => {
        (
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/", $p)) as &[u8],
            $p,
        )
    };
}

/// Exact log Z of `rbm20` (sum over all 2^20 hidden states; `data/meta.json`).
pub const RBM20_LOG_Z: f64 = 62.797870862307946;

/// One row of `boltz suite`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TargetInfo {
    /// Name used with `--model`.
    pub name: &'static str,
    /// Dimension of the state y.
    pub dim: usize,
    /// Dimension of the context x (0 = unconditional).
    pub x_dim: usize,
    /// Exact log Z at beta = 1 (natural log), where known.
    pub log_z: Option<f64>,
    /// One line on what it is.
    pub description: &'static str,
}

/// Names of the suite's targets.
pub const NAMES: [&str; 8] = [
    "gauss-ill",
    "gmm-ring",
    "gmm-far",
    "funnel",
    "ring",
    "mlp",
    "rbm20",
    "rbm500",
];

fn description(name: &str) -> &'static str {
    match name {
        "gauss-ill" => "ill-conditioned diagonal Gaussian, std 0.1 .. 1",
        "gmm-ring" => "8 Gaussians (std 0.3) on a circle of radius 4",
        "gmm-far" => "4 unequal Gaussians, 8 std apart, in 32 dims",
        "funnel" => "Neal's funnel, scale 3",
        "ring" => "conditional ring (|x|^2+|y|^2-1)^2/(2 0.1^2); ring:N:M for other dims",
        "mlp" => "conditional silu MLP energy, x in R^16, y in R^32 (throughput)",
        "rbm20" => "RBM on binarised digits, 64 visible, 20 hidden",
        "rbm500" => "RBM on binarised digits, 64 visible, 500 hidden",
        _ => "",
    }
}

/// The table of targets, for `boltz suite`.
pub fn list() -> Result<Vec<TargetInfo>> {
    NAMES
        .iter()
        .map(|&n| {
            let m = target(n)?.expect("suite name");
            Ok(TargetInfo {
                name: n,
                dim: m.dim(),
                x_dim: m.x_dim(),
                log_z: m.exact_log_z,
                description: description(n),
            })
        })
        .collect()
}

fn embedded((bytes, name): (&[u8], &str)) -> Result<crate::io::NpyArray> {
    read_npy_bytes(bytes, Path::new(&format!("<bundled data/{name}>")))
}

fn rbm(w: (&[u8], &str), b: (&[u8], &str), c: (&[u8], &str)) -> Result<Rbm> {
    Rbm::new(
        embedded(w)?.into_2d("W", false)?,
        embedded(b)?.data,
        embedded(c)?.data,
    )
}

/// The binarised digits (1797 x 64, pixel > 7 of 16), the RBMs' training data.
pub fn digits() -> Result<Array2<f64>> {
    embedded(data!("digits/digits.npy"))?.into_2d("digits", false)
}

/// The `mlp` target's 1024 contexts (1024 x 16).
pub fn mlp_contexts() -> Result<Array2<f64>> {
    embedded(data!("mlp/context.npy"))?.into_2d("context", false)
}

/// The target called `name`, or `None` if no suite target has that name.
/// `ring:N:M` gives the ring with x in R^N and y in R^M.
pub fn target(name: &str) -> Result<Option<Model>> {
    let family = match name {
        "gauss-ill" => {
            let std: Vec<f64> = (0..100)
                .map(|i| 0.1 * 10f64.powf(i as f64 / 99.0))
                .collect();
            Family::Gaussian(Arc::new(DiagGaussian::new(vec![0.0; 100], std)?))
        }
        "gmm-ring" => {
            let means = Array2::from_shape_fn((8, 2), |(k, j)| {
                let a = 2.0 * std::f64::consts::PI * k as f64 / 8.0;
                4.0 * if j == 0 { a.cos() } else { a.sin() }
            });
            Family::Mixture(Arc::new(Mixture::from_amplitudes(
                vec![1.0; 8],
                means,
                vec![0.3; 8],
            )?))
        }
        "gmm-far" => {
            let signs = [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)];
            let mut means = Array2::zeros((4, 32));
            for (k, (a, b)) in signs.iter().enumerate() {
                means[[k, 0]] = 4.0 * a;
                means[[k, 1]] = 4.0 * b;
            }
            Family::Mixture(Arc::new(Mixture::from_amplitudes(
                vec![0.1, 0.2, 0.3, 0.4],
                means,
                vec![1.0; 4],
            )?))
        }
        "funnel" => Family::Funnel(Arc::new(Funnel::new(10, 3.0)?)),
        "mlp" => {
            let layer = |w, b, act| -> Result<Layer> {
                Ok(Layer {
                    weight: embedded(w)?.into_2d("weight", false)?,
                    bias: Array1::from(embedded(b)?.data),
                    activation: act,
                })
            };
            let layers = vec![
                layer(data!("mlp/w0.npy"), data!("mlp/b0.npy"), Activation::Silu)?,
                layer(data!("mlp/w1.npy"), data!("mlp/b1.npy"), Activation::Silu)?,
                layer(data!("mlp/w2.npy"), data!("mlp/b2.npy"), Activation::None)?,
            ];
            let mut m = Model::new("mlp", Family::Mlp(Arc::new(Mlp::new(16, 1.0, layers)?)));
            m.default_context = Some(mlp_contexts()?);
            return Ok(Some(m));
        }
        "rbm20" => {
            let r = rbm(
                data!("rbm20/W.npy"),
                data!("rbm20/b.npy"),
                data!("rbm20/c.npy"),
            )?;
            let mut m = Model::new("rbm20", Family::Rbm(Arc::new(r)));
            m.exact_log_z = Some(RBM20_LOG_Z);
            return Ok(Some(m));
        }
        "rbm500" => Family::Rbm(Arc::new(rbm(
            data!("rbm500/W.npy"),
            data!("rbm500/b.npy"),
            data!("rbm500/c.npy"),
        )?)),
        _ => {
            let Some(rest) = name.strip_prefix("ring") else {
                return Ok(None);
            };
            let (n, m) = if rest.is_empty() {
                (1, 2)
            } else {
                let parts: Vec<&str> = rest.trim_start_matches(':').split(':').collect();
                match (rest.starts_with(':'), parts.as_slice()) {
                    (true, [n, m]) => match (n.parse::<usize>(), m.parse::<usize>()) {
                        (Ok(n), Ok(m)) if n <= 1 << 20 && (1..=1 << 20).contains(&m) => (n, m),
                        _ => {
                            return Err(Error::param(
                                "model",
                                format!("`{name}`: ring:N:M needs integers N >= 0, M >= 1"),
                            ));
                        }
                    },
                    _ => return Ok(None),
                }
            };
            let mut model = Model::new(name, Family::Ring(Arc::new(Ring::new(n, m, 0.1)?)));
            model.default_context = Some(Array2::zeros((1, n)));
            return Ok(Some(model));
        }
    };
    Ok(Some(Model::new(name, family)))
}
