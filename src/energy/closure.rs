//! Closures as energies.

use super::{RowEnergy, StateSpace};

/// A closure as an energy, written one state at a time.
///
/// `FnEnergy::new(dim, f, fg)`: `f(y)` returns `F(y)`; `fg(y, grad)`
/// writes `dF/dy` into `grad` and returns `F(y)`, so a gradient call
/// evaluates the model once. [`FnEnergy::value_only`] takes the gradient by
/// central differences (step `1e-6 * max(1, |y_j|)`, `2 d` extra
/// evaluations per state). [`FnEnergy::binary`] declares states in {0, 1}^d.
///
/// ```
/// use boltz::FnEnergy;
/// use boltz::energy::{Energy, evaluate};
/// // A standard Gaussian in 3-D: F(y) = |y|^2 / 2.
/// let e = FnEnergy::new(
///     3,
///     |y: &[f64]| 0.5 * y.iter().map(|v| v * v).sum::<f64>(),
///     |y: &[f64], g: &mut [f64]| {
///         g.copy_from_slice(y);
///         0.5 * y.iter().map(|v| v * v).sum::<f64>()
///     },
/// );
/// let f = evaluate(&e, boltz::ndarray::arr2(&[[1.0, 2.0, 2.0]]).view())?;
/// assert_eq!(f[0], 4.5);
/// # Ok::<(), boltz::Error>(())
/// ```
pub struct FnEnergy<F, G> {
    dim: usize,
    f: F,
    g: Option<G>,
    space: StateSpace,
}

impl<F, G> FnEnergy<F, G>
where
    F: Fn(&[f64]) -> f64 + Send + Sync,
    G: Fn(&[f64], &mut [f64]) -> f64 + Send + Sync,
{
    /// An energy `f` on R^dim with `fg(y, grad_out) -> F(y)` giving the
    /// gradient and the energy together.
    pub fn new(dim: usize, f: F, fg: G) -> Self {
        FnEnergy {
            dim,
            f,
            g: Some(fg),
            space: StateSpace::Continuous,
        }
    }
}

impl<F> FnEnergy<F, fn(&[f64], &mut [f64]) -> f64>
where
    F: Fn(&[f64]) -> f64 + Send + Sync,
{
    /// An energy `f` on R^dim whose gradient is taken by central differences.
    pub fn value_only(dim: usize, f: F) -> Self {
        FnEnergy {
            dim,
            f,
            g: None,
            space: StateSpace::Continuous,
        }
    }
}

impl<F, G> FnEnergy<F, G> {
    /// Declares the states binary (vectors of 0.0 / 1.0): Gibbs samples
    /// them, AIS anneals them from a Bernoulli base.
    pub fn binary(mut self) -> Self {
        self.space = StateSpace::Binary;
        self
    }
}

impl<F, G> RowEnergy for FnEnergy<F, G>
where
    F: Fn(&[f64]) -> f64 + Send + Sync,
    G: Fn(&[f64], &mut [f64]) -> f64 + Send + Sync,
{
    fn state_dim(&self) -> usize {
        self.dim
    }
    fn energy(&self, y: &[f64]) -> f64 {
        (self.f)(y)
    }
    fn energy_grad(&self, y: &[f64], grad: &mut [f64]) -> f64 {
        if let Some(g) = &self.g {
            return g(y, grad);
        }
        let mut p = y.to_vec();
        for j in 0..y.len() {
            let h = 1e-6 * y[j].abs().max(1.0);
            p[j] = y[j] + h;
            let up = (self.f)(&p);
            p[j] = y[j] - h;
            let down = (self.f)(&p);
            p[j] = y[j];
            grad[j] = (up - down) / (2.0 * h);
        }
        (self.f)(y)
    }
    fn row_space(&self) -> StateSpace {
        self.space
    }
}
