//! A dense inverse mass matrix, applied as a change of coordinates.
//!
//! With an inverse mass `Sigma = L L^T` (`L` lower triangular, its
//! Cholesky factor), a gradient kernel on the target `E(y)` is the same
//! kernel with a unit mass on `E_z(z) = E(L z)`, `y = L z`: the momentum,
//! the leapfrog steps and the Metropolis test map one to one, and the
//! Jacobian `|L|` is a constant. So every kernel takes a dense mass by
//! running on [`Whitened`] with no diagonal of its own, and no kernel
//! needs a dense path (nor does an energy's own integrator, which the
//! change of coordinates bypasses). Warm-up estimates `Sigma` from the
//! window's draws and gradients ([`DenseAdapter`]).

use crate::energy::{Energy, StateSpace, cholesky, solve_lower, solve_lower_t};
use crate::linalg::matmul;
use ndarray::{Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2};

/// A dense inverse mass matrix `Sigma = L L^T` (squared units of the
/// state), held as its Cholesky factor `L`: lower triangular, row-major
/// `dim x dim`, a finite positive diagonal. Chains move in the coordinates
/// `z = L^-1 y`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DenseMetric {
    dim: usize,
    chol: Vec<f64>,
}

impl DenseMetric {
    /// The Cholesky factor of the symmetric `cov` (`dim x dim`, row-major);
    /// `None` unless it is positive definite with finite entries.
    pub fn from_cov(cov: &[f64], dim: usize) -> Option<Self> {
        let cov = Array2::from_shape_vec((dim, dim), cov.to_vec()).ok()?;
        let l = cholesky(&cov).ok()?;
        let m = DenseMetric {
            dim,
            chol: l.iter().copied().collect(),
        };
        m.is_valid().then_some(m)
    }

    /// The state dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether the factor is a `dim x dim` lower-triangular matrix with
    /// finite entries and a positive diagonal (checked on resume).
    pub fn is_valid(&self) -> bool {
        let d = self.dim;
        self.chol.len() == d.saturating_mul(d)
            && self.chol.iter().all(|v| v.is_finite())
            && (0..d).all(|i| self.chol[i * d + i] > 0.0)
            && (0..d).all(|i| (i + 1..d).all(|j| self.chol[i * d + j] == 0.0))
    }

    /// The factor `L` as a `dim x dim` view.
    pub fn factor(&self) -> ArrayView2<'_, f64> {
        ArrayView2::from_shape((self.dim, self.dim), &self.chol).expect("dim x dim")
    }

    /// The diagonal of `Sigma = L L^T`: each coordinate's variance as the
    /// mass sees it (what a report shows as the inverse mass).
    pub fn variances(&self) -> Vec<f64> {
        let d = self.dim;
        (0..d)
            .map(|i| self.chol[i * d..i * d + i + 1].iter().map(|v| v * v).sum())
            .collect()
    }

    /// `y = z L^T` for every row `z` (positions from whitened coordinates).
    pub fn to_state(&self, z: ArrayView2<f64>) -> Array2<f64> {
        let mut y = Array2::zeros(z.raw_dim());
        self.to_state_into(z, y.view_mut());
        y
    }

    /// [`DenseMetric::to_state`] written into `y` (of `z`'s shape).
    pub fn to_state_into(&self, z: ArrayView2<f64>, y: ArrayViewMut2<f64>) {
        matmul(z, self.factor().t(), y, false);
    }

    /// `z = L^-1 y` for every row `y` (forward substitution).
    pub fn to_whitened(&self, y: ArrayView2<f64>) -> Array2<f64> {
        let mut z = y.as_standard_layout().into_owned();
        for mut row in z.rows_mut() {
            solve_lower(self.factor(), row.as_slice_mut().expect("standard layout"));
        }
        z
    }

    /// `g_y = L^-T g_z` for every row (a whitened gradient back in the
    /// state's coordinates; back substitution).
    pub fn grad_to_state(&self, g: ArrayView2<f64>) -> Array2<f64> {
        let mut out = g.as_standard_layout().into_owned();
        for mut row in out.rows_mut() {
            solve_lower_t(self.factor(), row.as_slice_mut().expect("standard layout"));
        }
        out
    }

    /// `log |L|`, the log Jacobian of `y = L z`.
    pub fn log_det(&self) -> f64 {
        (0..self.dim)
            .map(|i| self.chol[i * self.dim + i].ln())
            .sum()
    }
}

impl super::ChainState {
    /// This state (in `metric`'s whitened coordinates) in the target's:
    /// positions `L z`, gradients `L^-T g_z`, the same energies.
    pub fn unwhitened(self, metric: &DenseMetric) -> Self {
        let position = metric.to_state(self.position.view());
        super::ChainState {
            grad: metric.grad_to_state(self.grad.view()),
            proposal: position.clone(),
            position,
            ..self
        }
    }
}

/// The energy in whitened coordinates, `E_z(z) = E(L z)` with gradient
/// `L^T dE/dy`: what the kernels move on under a dense mass. Continuous
/// states only; the inner energy's own integrator and row path are not
/// used (each evaluation maps its batch, `O(n d^2)`).
pub struct Whitened<'a> {
    inner: &'a dyn Energy,
    metric: &'a DenseMetric,
}

impl<'a> Whitened<'a> {
    /// `inner` seen through `metric` (of `inner`'s dimension).
    pub fn new(inner: &'a dyn Energy, metric: &'a DenseMetric) -> Self {
        Whitened { inner, metric }
    }
}

impl Energy for Whitened<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn energy_batch(&self, z: ArrayView2<f64>, energy: ArrayViewMut1<f64>) {
        let y = self.metric.to_state(z);
        self.inner.energy_batch(y.view(), energy);
    }
    fn energy_grad_batch(
        &self,
        z: ArrayView2<f64>,
        energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        let y = self.metric.to_state(z);
        self.inner
            .energy_grad_batch(y.view(), energy, grad.view_mut());
        // Each row in place: g_z = L^T g_y, g_z[j] = sum_{i >= j} L[i, j]
        // g_y[i], ascending j (entries i >= j still hold g_y's).
        let l = self.metric.factor();
        for mut g in grad.rows_mut() {
            for j in 0..g.len() {
                g[j] = (j..g.len()).map(|i| l[[i, j]] * g[i]).sum();
            }
        }
    }
    fn log_z(&self) -> Option<f64> {
        self.inner.log_z().map(|z| z - self.metric.log_det())
    }
    fn space(&self) -> StateSpace {
        self.inner.space()
    }
    fn fixed_rows(&self) -> Option<usize> {
        self.inner.fixed_rows()
    }
}

/// Running within-chain co-moments of one quantity over a window (each
/// chain's deviations from its own mean, pooled: chains far apart do not
/// inflate it), by Welford's algorithm, chains added in order.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct CoMoments {
    /// Each chain's running mean, chain-major.
    means: Vec<f64>,
    /// The summed co-moments, `dim x dim` row-major.
    m2: Vec<f64>,
}

impl CoMoments {
    fn new(chains: usize, dim: usize) -> Self {
        CoMoments {
            means: vec![0.0; chains * dim],
            m2: vec![0.0; dim * dim],
        }
    }

    /// Adds one step (row `i` is chain `i`'s), the `steps`-th.
    fn add(&mut self, x: ArrayView2<f64>, steps: f64) {
        let d = x.ncols();
        let mut delta = vec![0.0; d];
        for (i, row) in x.rows().into_iter().enumerate() {
            let mean = &mut self.means[i * d..(i + 1) * d];
            for j in 0..d {
                delta[j] = row[j] - mean[j];
                mean[j] += delta[j] / steps;
            }
            for a in 0..d {
                for b in 0..d {
                    self.m2[a * d + b] += delta[a] * (row[b] - mean[b]);
                }
            }
        }
    }

    /// The covariance with `dof` degrees of freedom, symmetrised and
    /// shrunk: `w S + ridge I`.
    fn cov(&self, d: usize, dof: f64, w: f64, ridge: f64) -> Array2<f64> {
        let mut c = Array2::from_shape_fn((d, d), |(i, j)| {
            w * 0.5 * (self.m2[i * d + j] + self.m2[j * d + i]) / dof
        });
        c.diag_mut().mapv_inplace(|v| v + ridge);
        c
    }

    fn fits(&self, chains: usize, dim: usize) -> bool {
        self.means.len() == chains.saturating_mul(dim)
            && self.m2.len() == dim.saturating_mul(dim)
            && self.means.iter().chain(&self.m2).all(|v| v.is_finite())
            && (0..dim).all(|i| self.m2[i * dim + i] >= 0.0)
    }
}

/// Warm-up's estimate of a dense inverse mass from a window's draws and
/// their gradients (both in the target's coordinates), as nutpie adapts
/// its mass: with `C` the draws' covariance and `G` the gradients', the
/// inverse mass is the `Sigma` with `Sigma G Sigma = C`, which for a
/// Gaussian target is its covariance exactly whatever the draws' spread
/// (its gradients are `P (y - mu)`, so `G = P C P`). Draws alone
/// underestimate a long ridge that warm-up has not yet crossed; gradients
/// see its length from a short walk along it. Both covariances are within
/// chains; the draws' is shrunk as Stan shrinks its `dense_e` covariance. Memory
/// `2 (d^2 + n d)`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DenseAdapter {
    dim: usize,
    /// Steps added (every chain has as many).
    steps: f64,
    draws: CoMoments,
    grads: CoMoments,
}

impl DenseAdapter {
    /// An empty window for `chains` chains of dimension `dim`.
    pub fn new(chains: usize, dim: usize) -> Self {
        DenseAdapter {
            dim,
            steps: 0.0,
            draws: CoMoments::new(chains, dim),
            grads: CoMoments::new(chains, dim),
        }
    }

    /// Steps added.
    pub fn count(&self) -> usize {
        self.steps as usize
    }

    /// Adds one step: row `i` of `y` (state coordinates) is chain `i`'s
    /// position, row `i` of `g` its energy's gradient there.
    pub fn add(&mut self, y: ArrayView2<f64>, g: ArrayView2<f64>) {
        self.steps += 1.0;
        self.draws.add(y, self.steps);
        self.grads.add(g, self.steps);
    }

    /// The window's inverse mass (see the type); `None` with fewer than 2
    /// steps or where either covariance is not positive definite.
    pub fn metric(&self) -> Option<DenseMetric> {
        let d = self.dim;
        let chains = (self.draws.means.len() / d.max(1)) as f64;
        let dof = chains * (self.steps - 1.0);
        if self.steps < 2.0 || dof <= 0.0 {
            return None;
        }
        let n = chains * self.steps;
        let (w, ridge) = (n / (n + 5.0), 1e-3 * 5.0 / (n + 5.0));
        let c = self.draws.cov(d, dof, w, ridge);
        // The gradients' covariance is in inverse squared units, its soft
        // directions tiny on a wide target: an absolute ridge would swamp
        // them, so only a relative one keeps it definite.
        let g = self.grads.cov(d, dof, 1.0, 0.0);
        let top = g.diag().iter().fold(0.0f64, |a, v| a.max(*v));
        let mut g = g;
        g.diag_mut().mapv_inplace(|v| v + 1e-12 * top);
        // Sigma = G^-1/2 (G^1/2 C G^1/2)^1/2 G^-1/2.
        let (gh, gih) = sym_sqrt(&g)?;
        let (mh, _) = sym_sqrt(&gh.dot(&c).dot(&gh))?;
        let s = gih.dot(&mh).dot(&gih);
        let s = (&s + &s.t()) * 0.5;
        DenseMetric::from_cov(s.as_slice()?, d)
    }

    /// Whether the window fits `chains` chains of dimension `dim`, with
    /// finite sums and non-negative diagonals (checked on resume).
    pub fn fits(&self, chains: usize, dim: usize) -> bool {
        self.dim == dim
            && self.steps.is_finite()
            && self.steps >= 0.0
            && self.steps.fract() == 0.0
            && self.draws.fits(chains, dim)
            && self.grads.fits(chains, dim)
    }
}

/// `A^1/2` and `A^-1/2` of a symmetric positive definite `A` (cyclic
/// Jacobi eigendecomposition); `None` if an eigenvalue is not positive
/// and finite.
fn sym_sqrt(a: &Array2<f64>) -> Option<(Array2<f64>, Array2<f64>)> {
    let d = a.nrows();
    let mut m = a.clone();
    let mut v = Array2::<f64>::eye(d);
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[[i, j]] * m[[i, j]])
            .sum();
        let scale: f64 = m.diag().iter().map(|x| x * x).sum();
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                if m[[p, q]] == 0.0 {
                    continue;
                }
                let theta = (m[[q, q]] - m[[p, p]]) / (2.0 * m[[p, q]]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..d {
                    let (mkp, mkq) = (m[[k, p]], m[[k, q]]);
                    m[[k, p]] = c * mkp - s * mkq;
                    m[[k, q]] = s * mkp + c * mkq;
                }
                for k in 0..d {
                    let (mpk, mqk) = (m[[p, k]], m[[q, k]]);
                    m[[p, k]] = c * mpk - s * mqk;
                    m[[q, k]] = s * mpk + c * mqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[[k, p]], v[[k, q]]);
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    let lam = m.diag().to_owned();
    if lam.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
        return None;
    }
    let with = |f: &dyn Fn(f64) -> f64| {
        let scaled = Array2::from_shape_fn((d, d), |(i, j)| v[[i, j]] * f(lam[j]));
        scaled.dot(&v.t())
    };
    Some((with(&f64::sqrt), with(&|l| 1.0 / l.sqrt())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn factor_round_trips() {
        let cov = [4.0, 2.0, 0.6, 2.0, 2.0, 0.5, 0.6, 0.5, 3.0];
        let m = DenseMetric::from_cov(&cov, 3).unwrap();
        let l = m.factor();
        let back = l.dot(&l.t());
        for (a, b) in back.iter().zip(&cov) {
            assert!((a - b).abs() < 1e-12);
        }
        for (v, t) in m.variances().iter().zip([4.0, 2.0, 3.0]) {
            assert!((v - t).abs() < 1e-12);
        }
        let y = array![[1.0, -2.0, 0.5], [0.3, 0.0, 7.0]];
        let z = m.to_whitened(y.view());
        let y2 = m.to_state(z.view());
        assert!((&y2 - &y).iter().all(|v| v.abs() < 1e-12));
        // L^-T (L^T g) = g.
        let gz = y.dot(&l);
        let g = m.grad_to_state(gz.view());
        assert!((&g - &y).iter().all(|v| v.abs() < 1e-12));
        assert!(DenseMetric::from_cov(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    #[test]
    fn adapter_recovers_a_gaussian_from_a_short_walk() {
        // Target N(0, S) with S = [[4, 3.9], [3.9, 4]]: precision P. Two
        // chains far apart, each visiting a small cloud of points (spread
        // 0.1 of the target's): the draws' covariance alone is 1e-2 of S;
        // with the gradients P y the estimate is S itself (to Stan's
        // shrinkage of the draws' covariance, here 0.1%).
        let s = array![[4.0, 3.9], [3.9, 4.0]];
        let det = 16.0 - 3.9 * 3.9;
        let p = array![[4.0, -3.9], [-3.9, 4.0]] / det;
        let mut a = DenseAdapter::new(2, 2);
        let pts = [
            [1.0, 0.0],
            [0.0, 1.0],
            [-1.0, 0.5],
            [0.3, -1.0],
            [-0.2, -0.4],
        ];
        for t in 0..1000 {
            let u = pts[t % pts.len()];
            let y = array![
                [0.1 * u[0], 0.1 * u[1]],
                [100.0 + 0.1 * u[1], -50.0 - 0.1 * u[0]]
            ];
            let g = y.dot(&p);
            a.add(y.view(), g.view());
        }
        let m = a.metric().unwrap();
        let l = m.factor();
        let cov = l.dot(&l.t());
        for (x, y) in cov.iter().zip(&s) {
            assert!((x - y).abs() < 0.01 * y.abs(), "{cov}");
        }
        assert!(a.fits(2, 2) && !a.fits(3, 2));
    }

    #[test]
    fn square_roots() {
        let a = array![[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]];
        let (h, ih) = sym_sqrt(&a).unwrap();
        assert!((h.dot(&h) - &a).iter().all(|v| v.abs() < 1e-12));
        assert!(
            (h.dot(&ih) - Array2::<f64>::eye(3))
                .iter()
                .all(|v| v.abs() < 1e-12)
        );
    }
}
