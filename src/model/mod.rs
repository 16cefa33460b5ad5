//! A loaded model: one of the energy families, with what is known about it;
//! the reference suite's targets ([`suite`]) and model files
//! ([`load_model_file`]), both by name or path through [`load`].

use crate::energy::{
    ConditionalEnergy, Conditioned, DiagGaussian, Energy, FullGaussian, Funnel, Mixture, Mlp,
    Precision, Rbm, Ring,
};
use crate::error::{Error, Result};
use ndarray::Array2;
use std::sync::Arc;

mod file;
pub mod suite;

pub use file::load_model_file;

/// The family behind a [`Model`], with the concrete type so that
/// family-specific tools (Gibbs for RBMs, exact draws for Gaussians) can use it.
#[derive(Clone)]
pub enum Family {
    /// Diagonal Gaussian.
    Gaussian(Arc<DiagGaussian>),
    /// Gaussian with a full precision matrix.
    FullGaussian(Arc<FullGaussian>),
    /// Isotropic Gaussian mixture.
    Mixture(Arc<Mixture>),
    /// Gaussian mixture with full covariances.
    FullMixture(Arc<crate::energy::FullMixture>),
    /// Neal's funnel.
    Funnel(Arc<Funnel>),
    /// The `ring` conditional energy.
    Ring(Arc<Ring>),
    /// A conditional MLP energy.
    Mlp(Arc<Mlp>),
    /// A Bernoulli-Bernoulli RBM (free energy over visibles).
    Rbm(Arc<Rbm>),
    /// Any other energy in `y`, given as code (a closure, a Python
    /// callback): no closed forms, exact draws or family-specific kernels
    /// (Gibbs is single-site heat bath when it is binary).
    Custom(Arc<dyn Energy>),
    /// Any other conditional energy `F(x, y)`, given as code.
    CustomConditional(Arc<dyn ConditionalEnergy>),
}

/// A model's trainable parameters ([`Model::weights`]): weight matrices
/// and bias vectors.
pub type Weights = (Vec<Array2<f64>>, Vec<ndarray::Array1<f64>>);

/// A model ready to sample: a suite target or a model file.
#[derive(Clone)]
pub struct Model {
    /// The suite name, or the model file's path.
    pub name: String,
    /// The energy family and its parameters.
    pub family: Family,
    /// Exact log Z at beta = 1 where known (closed form or a recorded enumeration).
    pub exact_log_z: Option<f64>,
    /// Contexts to use when a conditional model is run without `--context`.
    pub default_context: Option<Array2<f64>>,
}

impl Model {
    /// A model from a family, filling in the closed-form log Z where there is one.
    pub fn new(name: impl Into<String>, family: Family) -> Self {
        let exact_log_z = match &family {
            Family::Gaussian(g) => g.log_z(),
            Family::FullGaussian(g) => g.log_z(),
            Family::FullMixture(m) => Some(m.exact_log_z()),
            Family::Mixture(m) => m.log_z(),
            Family::Funnel(f) => f.log_z(),
            _ => None,
        };
        Model {
            name: name.into(),
            family,
            exact_log_z,
            default_context: None,
        }
    }

    /// A model around an energy given as code ([`Family::Custom`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let e = boltz::FnEnergy::new(2, |y: &[f64]| 0.5 * (y[0] * y[0] + y[1] * y[1]), |y: &[f64], g: &mut [f64]| {
    ///     g.copy_from_slice(y);
    ///     0.5 * (y[0] * y[0] + y[1] * y[1])
    /// });
    /// let model = boltz::Model::custom("quadratic", Arc::new(e));
    /// assert_eq!((model.dim(), model.x_dim(), model.kind()), (2, 0, "custom"));
    /// ```
    pub fn custom(name: impl Into<String>, energy: Arc<dyn Energy>) -> Self {
        Model::new(name, Family::Custom(energy))
    }

    /// A model around a conditional energy given as code
    /// ([`Family::CustomConditional`]); with `x_dim` 0 it is an energy in `y`.
    pub fn custom_conditional(name: impl Into<String>, energy: Arc<dyn ConditionalEnergy>) -> Self {
        Model::new(name, Family::CustomConditional(energy))
    }

    /// The family's name as in model files (`custom` for energies given as code).
    pub fn kind(&self) -> &'static str {
        match self.family {
            Family::Gaussian(_) | Family::FullGaussian(_) => "gaussian",
            Family::Mixture(_) | Family::FullMixture(_) => "mixture",
            Family::Funnel(_) => "funnel",
            Family::Ring(_) => "ring",
            Family::Mlp(_) => "mlp",
            Family::Rbm(_) => "rbm",
            Family::Custom(_) | Family::CustomConditional(_) => "custom",
        }
    }

    /// The precision its energy computes in: f32 only for an `mlp` or
    /// `rbm` set so (a model file's `"dtype": "f32"`, [`Model::with_precision`]).
    pub fn precision(&self) -> Precision {
        match &self.family {
            Family::Mlp(m) => m.precision(),
            Family::Rbm(r) => r.precision(),
            _ => Precision::F64,
        }
    }

    /// The model computing in `precision`. Neural and binary energies
    /// (`mlp`, `rbm`) have an f32 path; any other family refuses f32 with
    /// an error (its arithmetic is f64 only). Sampler state, acceptance,
    /// AIS weights and every accumulation stay f64 either way.
    ///
    /// ```
    /// use boltz::energy::Precision;
    /// let m = boltz::model::load("rbm500")?.with_precision(Precision::F32)?;
    /// assert_eq!(m.precision(), Precision::F32);
    /// assert!(boltz::model::load("gauss-ill")?.with_precision(Precision::F32).is_err());
    /// # Ok::<(), boltz::Error>(())
    /// ```
    pub fn with_precision(mut self, precision: Precision) -> Result<Model> {
        if precision == self.precision() {
            return Ok(self);
        }
        self.family = match self.family {
            Family::Mlp(m) => Family::Mlp(Arc::new((*m).clone().with_precision(precision))),
            Family::Rbm(r) => Family::Rbm(Arc::new((*r).clone().with_precision(precision))),
            _ => {
                return Err(Error::param(
                    "precision",
                    format!(
                        "{precision} is available for mlp and rbm models; `{}` ({}) computes in f64",
                        self.name,
                        self.kind()
                    ),
                ));
            }
        };
        Ok(self)
    }

    /// The conditional energy, if the model is conditional (an `mlp` or
    /// `ring` with `x_dim` 0 is not: it is an ordinary energy in `y`).
    pub fn conditional(&self) -> Option<Arc<dyn ConditionalEnergy>> {
        self.conditional_family().filter(|c| c.x_dim() > 0)
    }

    fn conditional_family(&self) -> Option<Arc<dyn ConditionalEnergy>> {
        match &self.family {
            Family::Ring(r) => Some(r.clone()),
            Family::Mlp(m) => Some(m.clone()),
            Family::CustomConditional(c) => Some(c.clone()),
            _ => None,
        }
    }

    /// A fingerprint of the model's parameters (not its name or path): a
    /// hash of its kind, dimensions and energies at eight fixed probe
    /// points (and contexts); for energies given as code
    /// ([`Family::Custom`]) only kind and dimensions. Checkpoints and state files store it, so a
    /// model file edited between a checkpoint and its resume is refused.
    pub fn fingerprint(&self) -> String {
        let (d, x) = (self.dim(), self.x_dim());
        let n = 8;
        let binary = self
            .energy(None)
            .is_ok_and(|e| e.space() == crate::StateSpace::Binary);
        let y = Array2::from_shape_fn((n, d), |(i, j)| {
            let u = ((i * 7919 + j * 104_729) % 1009) as f64 / 1009.0;
            if binary {
                f64::from(u8::from(u > 0.5))
            } else {
                4.0 * u - 2.0
            }
        });
        let mut e = ndarray::Array1::zeros(n);
        let custom = matches!(
            self.family,
            Family::Custom(_) | Family::CustomConditional(_)
        );
        match self.conditional_family() {
            // An energy given as code is not called here (a user's function
            // need not expect extra calls): only its kind and dimensions count.
            _ if custom => e.fill(0.0),
            Some(c) => {
                let xs = Array2::from_shape_fn((n, x), |(i, j)| {
                    ((i * 31 + j * 17) % 13) as f64 / 13.0 - 0.5
                });
                c.energy_batch(xs.view(), y.view(), e.view_mut());
            }
            None => match self.energy(None) {
                Ok(en) => en.energy_batch(y.view(), e.view_mut()),
                Err(_) => e.fill(f64::NAN),
            },
        }
        let mut h = crate::hash::Fnv1a::new();
        h.update(self.kind().as_bytes());
        if self.precision() != Precision::F64 {
            h.update(self.precision().name().as_bytes());
        }
        h.update(&(d as u64).to_le_bytes());
        h.update(&(x as u64).to_le_bytes());
        h.update_f64s(e.as_slice().unwrap_or(&[]));
        format!("{:016x}", h.finish())
    }

    /// A fingerprint of the model's architecture and settings, not its
    /// parameter values: for an `mlp` its kind, dimensions, layer shapes,
    /// activations, `l2` and precision; for an `rbm` its sizes and
    /// precision; for every other family its [`Model::fingerprint`]. States
    /// meant to follow a model through training (the chains and replay
    /// buffer of Python's `Negatives`) carry it, so that they load into the
    /// same network with other weights.
    ///
    /// ```
    /// let m = boltz::model::load("mlp")?;
    /// let Some((w, b)) = m.weights() else { unreachable!() };
    /// let w2: Vec<_> = w.iter().map(|w| w * 0.5).collect();
    /// let trained = m.with_weights(w2, b)?;
    /// assert_eq!(trained.architecture_fingerprint(), m.architecture_fingerprint());
    /// assert_ne!(trained.fingerprint(), m.fingerprint());
    /// # Ok::<(), boltz::Error>(())
    /// ```
    pub fn architecture_fingerprint(&self) -> String {
        let mut h = crate::hash::Fnv1a::new();
        h.update(self.kind().as_bytes());
        h.update(self.precision().name().as_bytes());
        match &self.family {
            Family::Mlp(m) => {
                h.update(&(m.x_dim() as u64).to_le_bytes());
                h.update_f64s(&[m.l2()]);
                for l in m.layers() {
                    let (i, o) = l.weight.dim();
                    h.update(&(i as u64).to_le_bytes());
                    h.update(&(o as u64).to_le_bytes());
                    h.update(format!("{:?}", l.activation).as_bytes());
                }
            }
            Family::Rbm(r) => {
                h.update(&(r.n_visible() as u64).to_le_bytes());
                h.update(&(r.n_hidden() as u64).to_le_bytes());
            }
            _ => return self.fingerprint(),
        }
        format!("{:016x}", h.finish())
    }

    /// The trainable parameters, where the family has them: an `mlp`'s
    /// weights (in x out) and biases, layer by layer; an `rbm`'s weights
    /// (V x H) as the one matrix and its visible and hidden biases as the
    /// two vectors. `None` for other families.
    pub fn weights(&self) -> Option<Weights> {
        match &self.family {
            Family::Mlp(m) => Some((
                m.layers().iter().map(|l| l.weight.clone()).collect(),
                m.layers().iter().map(|l| l.bias.clone()).collect(),
            )),
            Family::Rbm(r) => Some((
                vec![r.weights().to_owned()],
                vec![r.visible_bias().to_owned(), r.hidden_bias().to_owned()],
            )),
            _ => None,
        }
    }

    /// The model with new parameters of the same shapes (a training step's
    /// weights), in the layout of [`Model::weights`], taken by value;
    /// everything else (name, activations, `l2`, precision, default
    /// context) is kept, and the parameters are laid out once for the
    /// compute path. A shape that differs from the model's, a non-finite
    /// number or a family without parameters is an error.
    pub fn with_weights(
        &self,
        weights: Vec<Array2<f64>>,
        biases: Vec<ndarray::Array1<f64>>,
    ) -> Result<Model> {
        let family = match &self.family {
            Family::Mlp(m) => {
                let now = m.layers();
                let same =
                    weights.len() == now.len()
                        && biases.len() == now.len()
                        && now.iter().zip(&weights).zip(&biases).all(|((l, w), b)| {
                            l.weight.dim() == w.dim() && l.bias.len() == b.len()
                        });
                if !same {
                    return Err(Error::shape(
                        "weights",
                        format!(
                            "the layers' shapes {:?}",
                            now.iter().map(|l| l.weight.dim()).collect::<Vec<_>>()
                        ),
                        format!(
                            "{:?} with {} biases",
                            weights.iter().map(Array2::dim).collect::<Vec<_>>(),
                            biases.len()
                        ),
                    ));
                }
                let layers = weights
                    .into_iter()
                    .zip(biases)
                    .zip(now)
                    .map(|((weight, bias), l)| crate::energy::Layer {
                        weight,
                        bias,
                        activation: l.activation,
                    })
                    .collect();
                let next = Mlp::new(m.x_dim(), m.l2(), layers)?.with_precision(m.precision());
                Family::Mlp(Arc::new(next))
            }
            Family::Rbm(r) => {
                let (v, hd) = (r.n_visible(), r.n_hidden());
                let mut weights = weights.into_iter();
                let mut biases = biases.into_iter();
                match (
                    weights.next(),
                    weights.next(),
                    biases.next(),
                    biases.next(),
                    biases.next(),
                ) {
                    (Some(w), None, Some(b), Some(c), None)
                        if w.dim() == (v, hd) && b.len() == v && c.len() == hd =>
                    {
                        let next =
                            Rbm::new(w, b.to_vec(), c.to_vec())?.with_precision(r.precision());
                        Family::Rbm(Arc::new(next))
                    }
                    _ => {
                        return Err(Error::shape(
                            "weights",
                            format!(
                                "one ({v} x {hd}) weight matrix and biases of {v} (visible) and {hd} (hidden)"
                            ),
                            "other shapes or counts",
                        ));
                    }
                }
            }
            _ => {
                return Err(Error::param(
                    "weights",
                    format!(
                        "`{}` ({}) has no weights to load: mlp and rbm models do",
                        self.name,
                        self.kind()
                    ),
                ));
            }
        };
        Ok(Model {
            family,
            ..self.clone()
        })
    }

    /// Dimension of the state `y`.
    pub fn dim(&self) -> usize {
        match &self.family {
            Family::Gaussian(g) => g.dim(),
            Family::FullGaussian(g) => g.dim(),
            Family::FullMixture(m) => m.means().ncols(),
            Family::Mixture(m) => m.dim(),
            Family::Funnel(f) => f.dim(),
            Family::Ring(r) => r.y_dim(),
            Family::Mlp(m) => m.y_dim(),
            Family::Rbm(r) => r.dim(),
            Family::Custom(e) => e.dim(),
            Family::CustomConditional(c) => c.y_dim(),
        }
    }

    /// Whether the model's states are binary (an RBM, or a custom energy
    /// that says so) or continuous.
    pub fn space(&self) -> crate::energy::StateSpace {
        match &self.family {
            Family::Rbm(_) => crate::energy::StateSpace::Binary,
            Family::Custom(e) => e.space(),
            _ => crate::energy::StateSpace::Continuous,
        }
    }

    /// Refuses `points` (n, dim) a binary model cannot score: every entry
    /// must then be 0 or 1 (an RBM's free energy at 0.5 or 7 is a finite
    /// number that means nothing). `what` names the input in the error.
    pub fn check_points(&self, points: ndarray::ArrayView2<f64>, what: &str) -> Result<()> {
        match self.non_state(points) {
            None => Ok(()),
            Some((r, c, v)) => Err(Error::param(
                what,
                format!(
                    "model `{}` has binary states: every value must be 0 or 1 (row {r}, column {c} is {v})",
                    self.name
                ),
            )),
        }
    }

    /// The first entry (row, column, value) of `points` that is not a
    /// state of a binary model (`None` for continuous models).
    pub fn non_state(&self, points: ndarray::ArrayView2<f64>) -> Option<(usize, usize, f64)> {
        if self.space() != crate::energy::StateSpace::Binary {
            return None;
        }
        points
            .indexed_iter()
            .find(|(_, v)| **v != 0.0 && **v != 1.0)
            .map(|((r, c), v)| (r, c, *v))
    }

    /// Dimension of the context `x` (0 for unconditional models).
    pub fn x_dim(&self) -> usize {
        self.conditional().map_or(0, |c| c.x_dim())
    }

    /// Exact mean and variance of each coordinate of `exp(-F)/Z` at beta = 1,
    /// where the family gives them in closed form (Gaussians, isotropic
    /// mixtures, the funnel); `None` otherwise. Used to check samplers'
    /// estimates (`boltz compare`, `boltz bench`).
    pub fn moments(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        match &self.family {
            Family::Gaussian(g) => {
                Some((g.mean().to_vec(), g.std().iter().map(|s| s * s).collect()))
            }
            Family::FullGaussian(g) => Some((g.mean().to_vec(), g.variances())),
            Family::FullMixture(m) => Some(m.moments()),
            Family::Mixture(m) => {
                let mass = m.component_mass();
                let (k, d) = m.means().dim();
                let mut mean = vec![0.0; d];
                let mut second = vec![0.0; d];
                for c in 0..k {
                    let s2 = m.stds()[c] * m.stds()[c];
                    for j in 0..d {
                        let mu = m.means()[[c, j]];
                        mean[j] += mass[c] * mu;
                        second[j] += mass[c] * (s2 + mu * mu);
                    }
                }
                let var = (0..d).map(|j| second[j] - mean[j] * mean[j]).collect();
                Some((mean, var))
            }
            Family::Funnel(f) => {
                // v ~ N(0, s^2); x_i | v ~ N(0, e^v), so var x_i = E e^v = e^(s^2/2).
                let s2 = f.scale() * f.scale();
                let mut var = vec![(0.5 * s2).exp(); f.dim()];
                var[0] = s2;
                Some((vec![0.0; f.dim()], var))
            }
            _ => None,
        }
    }

    /// The RBM, for Gibbs kernels and enumeration.
    pub fn rbm(&self) -> Option<&Arc<Rbm>> {
        match &self.family {
            Family::Rbm(r) => Some(r),
            _ => None,
        }
    }

    /// The energy in `y`. Conditional models need `context` (k x x_dim, one
    /// row for all chains or one per chain) or a default context; others
    /// refuse a context.
    pub fn energy(&self, context: Option<Array2<f64>>) -> Result<Arc<dyn Energy>> {
        match self.conditional() {
            Some(c) => {
                let ctx = context
                    .or_else(|| self.default_context.clone())
                    .ok_or_else(|| {
                        Error::param(
                            "context",
                            format!(
                                "model `{}` is conditional F(x, y): give contexts x ({} columns)",
                                self.name,
                                c.x_dim()
                            ),
                        )
                    })?;
                Ok(Arc::new(Conditioned::new(c, ctx)?))
            }
            None => {
                if context.is_some() {
                    return Err(Error::param(
                        "context",
                        format!("model `{}` is not conditional", self.name),
                    ));
                }
                Ok(match &self.family {
                    Family::Gaussian(g) => g.clone(),
                    Family::FullGaussian(g) => g.clone(),
                    Family::FullMixture(m) => m.clone(),
                    Family::Mixture(m) => m.clone(),
                    Family::Funnel(f) => f.clone(),
                    Family::Rbm(r) => r.clone(),
                    Family::Custom(e) => e.clone(),
                    // x_dim 0: an ordinary energy in y.
                    Family::Ring(_) | Family::Mlp(_) | Family::CustomConditional(_) => {
                        let c = self.conditional_family().expect("ring and mlp are");
                        Arc::new(Conditioned::new(c, Array2::zeros((1, 0)))?)
                    }
                })
            }
        }
    }
}

/// Loads a model by suite name or model-file path.
pub fn load(spec: &str) -> Result<Model> {
    if let Some(m) = suite::target(spec)? {
        return Ok(m);
    }
    let path = std::path::Path::new(spec);
    if path.exists() {
        return load_model_file(path);
    }
    Err(Error::UnknownModel(spec.to_string()))
}
