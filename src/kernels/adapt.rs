//! Warm-up adaptation: step size by dual averaging, diagonal mass matrix
//! from warm-up variances.

/// Nesterov dual averaging of `log(step_size)` towards a target acceptance
/// rate (Hoffman & Gelman 2014, section 3.2; the constants of Stan).
///
/// One adapter is shared by all chains: the acceptance statistic fed to it
/// is the mean over chains of each step's acceptance probability. All chains
/// target the same distribution, so one step size serves them; averaging
/// over chains removes most of the noise that makes per-chain adaptation
/// slow and erratic, and one shared step keeps the batch in lockstep.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DualAveraging {
    target: f64,
    mu: f64,
    log_step: f64,
    log_step_bar: f64,
    h_bar: f64,
    t: f64,
}

const GAMMA: f64 = 0.05;
const T0: f64 = 10.0;
const KAPPA: f64 = 0.75;

impl DualAveraging {
    /// Starts from `step_size`, aiming at `target` acceptance.
    pub fn new(step_size: f64, target: f64) -> Self {
        DualAveraging {
            target,
            mu: (10.0 * step_size).ln(),
            log_step: step_size.ln(),
            log_step_bar: 0.0,
            h_bar: 0.0,
            t: 0.0,
        }
    }

    /// Feeds one step's mean acceptance probability; returns the next step size.
    pub fn update(&mut self, accept_stat: f64) -> f64 {
        self.t += 1.0;
        let eta = 1.0 / (self.t + T0);
        let stat = if accept_stat.is_finite() {
            accept_stat
        } else {
            0.0
        };
        self.h_bar = (1.0 - eta) * self.h_bar + eta * (self.target - stat);
        self.log_step = self.mu - self.t.sqrt() / GAMMA * self.h_bar;
        let w = self.t.powf(-KAPPA);
        self.log_step_bar = w * self.log_step + (1.0 - w) * self.log_step_bar;
        self.log_step = self.log_step.clamp(-700.0, 700.0);
        self.log_step.exp()
    }

    /// The averaged step size to use after warm-up.
    pub fn final_step_size(&self) -> f64 {
        if self.t == 0.0 {
            self.log_step.exp()
        } else {
            self.log_step_bar.clamp(-700.0, 700.0).exp()
        }
    }
}

/// Running per-coordinate variance of warm-up draws, pooled over chains
/// (Welford's algorithm, chains added in order, so deterministic).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MassAdapter {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl MassAdapter {
    /// An empty window for states of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        MassAdapter {
            n: 0.0,
            mean: vec![0.0; dim],
            m2: vec![0.0; dim],
        }
    }

    /// Adds every chain's current position (rows of `positions`).
    pub fn add(&mut self, positions: ndarray::ArrayView2<f64>) {
        for row in positions.rows() {
            self.n += 1.0;
            for (j, &x) in row.iter().enumerate() {
                let d = x - self.mean[j];
                self.mean[j] += d / self.n;
                self.m2[j] += d * (x - self.mean[j]);
            }
        }
    }

    /// Number of draws added.
    pub fn count(&self) -> usize {
        self.n as usize
    }

    /// The inverse mass matrix: the sample variances, shrunk towards 1e-3
    /// as Stan does, `(n / (n + 5)) var + 1e-3 (5 / (n + 5))`.
    pub fn inv_mass(&self) -> Vec<f64> {
        let n = self.n;
        self.m2
            .iter()
            .map(|m2| {
                let var = if n > 1.0 { m2 / (n - 1.0) } else { 1.0 };
                let v = (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0));
                if v.is_finite() && v > 0.0 { v } else { 1.0 }
            })
            .collect()
    }
}
