//! Benchmarking samplers on a user's own model: `boltz compare`.
//!
//! Each sampler runs with its warm-up adaptation on the same model, seed,
//! chains and draws; the table gives what a user chooses a sampler by:
//! bulk and tail ESS per second and per gradient evaluation, acceptance,
//! divergences, the worst R-hat and, where the model's moments are known
//! (suite targets, Gaussians, mixtures, funnels), the error of the
//! estimated means and variances. Timing covers the sampling run (warm-up
//! included), not the diagnostics.

use crate::diagnostics::{self, CoordSummary};
use crate::energy::{Energy, StateSpace};
use crate::error::{Error, Result};
use crate::kernels::{BinaryGibbs, Hmc, Kernel, Mala, RbmGibbs, Rwm, Ula};
use crate::model::Model;
use crate::sampler::{NoObserver, SampleConfig, sample};
use ndarray::{ArrayView3, Axis};
use std::sync::Arc;

/// A sampler `boltz compare` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// Unadjusted Langevin (biased at any finite step; its step comes from MALA's warm-up).
    Ula,
    /// Metropolis-adjusted Langevin.
    Mala,
    /// HMC, 16 leapfrog steps with 20% jitter.
    Hmc,
    /// Random-walk Metropolis.
    Rwm,
    /// Block Gibbs (RBMs) or single-site Gibbs (other binary models).
    Gibbs,
}

impl SamplerKind {
    /// Parses `ula`, `mala`, `hmc`, `rwm`, `gibbs`.
    pub fn parse(s: &str) -> Result<SamplerKind> {
        Ok(match s.trim() {
            "ula" => SamplerKind::Ula,
            "mala" => SamplerKind::Mala,
            "hmc" => SamplerKind::Hmc,
            "rwm" => SamplerKind::Rwm,
            "gibbs" => SamplerKind::Gibbs,
            other => {
                return Err(Error::param(
                    "--samplers",
                    format!("unknown sampler `{other}` (ula, mala, hmc, rwm, gibbs)"),
                ));
            }
        })
    }

    /// The name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Ula => "ula",
            SamplerKind::Mala => "mala",
            SamplerKind::Hmc => "hmc",
            SamplerKind::Rwm => "rwm",
            SamplerKind::Gibbs => "gibbs",
        }
    }
}

/// Settings shared by every sampler of a comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompareConfig {
    /// Chains per sampler.
    pub chains: usize,
    /// Warm-up steps (adaptation) per sampler.
    pub warmup: usize,
    /// Recorded draws per chain (>= 4).
    pub draws: usize,
    /// The seed, the same for every sampler.
    pub seed: u64,
    /// ULA's step; `None` = the step MALA's warm-up adapts to on this model,
    /// times the smallest entry of its adapted inverse mass (the stiffest
    /// direction's step, as ULA runs unpreconditioned).
    pub ula_step: Option<f64>,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            chains: 4,
            warmup: 1000,
            draws: 1000,
            seed: 0,
            ula_step: None,
        }
    }
}

/// One sampler's row of the comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompareRow {
    /// The sampler.
    pub sampler: SamplerKind,
    /// Wall-clock seconds of the run (warm-up included).
    pub wall_s: f64,
    /// Gradient evaluations (all chains, warm-up included).
    pub grad_evals: u64,
    /// Energy evaluations (with or without gradient).
    pub energy_evals: u64,
    /// Smallest bulk ESS over coordinates.
    pub ess_bulk_min: f64,
    /// Smallest tail ESS over coordinates.
    pub ess_tail_min: f64,
    /// `ess_bulk_min / wall_s`.
    pub ess_bulk_per_s: f64,
    /// `ess_tail_min / wall_s`.
    pub ess_tail_per_s: f64,
    /// `ess_bulk_min` per gradient evaluation (per energy evaluation for
    /// gradient-free samplers).
    pub ess_bulk_per_eval: f64,
    /// `ess_tail_min` per gradient (or energy) evaluation.
    pub ess_tail_per_eval: f64,
    /// Mean acceptance probability over chains (1 for ULA and Gibbs).
    pub acceptance: f64,
    /// Divergences during sampling (all chains).
    pub divergences: usize,
    /// The worst coordinate's rank-normalised split R-hat.
    pub rhat_max: f64,
    /// The step size used for sampling (median over chains; NaN for Gibbs).
    pub step_size: f64,
    /// Largest `|mean_hat - mean| / sd` over coordinates, where moments are known.
    pub mean_error: Option<f64>,
    /// Largest `|mean_hat - mean| / MCSE`: above ~4 the error is not Monte Carlo noise.
    pub mean_error_z: Option<f64>,
    /// Largest `|var_hat / var - 1|` over coordinates, where moments are known.
    pub var_error: Option<f64>,
}

/// The comparison: one row per sampler plus the settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompareReport {
    /// The model's name.
    pub model: String,
    /// Its dimension.
    pub dim: usize,
    /// The shared settings.
    pub config: CompareConfig,
    /// Worker threads used.
    pub threads: usize,
    /// Rows in the order the samplers were given.
    pub rows: Vec<CompareRow>,
    /// Whether exact moments were available for the error columns.
    pub moments_known: bool,
}

fn kernel_for(kind: SamplerKind, model: &Model, ula_step: f64) -> Result<Box<dyn Kernel>> {
    Ok(match kind {
        SamplerKind::Ula => Box::new(Ula::new(ula_step)?),
        SamplerKind::Mala => Box::new(Mala::new(0.1)?),
        SamplerKind::Hmc => Box::new(Hmc::new(0.1, 16, 0.2)?),
        SamplerKind::Rwm => Box::new(Rwm::new(0.1)?),
        SamplerKind::Gibbs => match model.rbm() {
            Some(r) => Box::new(RbmGibbs::new(r.clone(), 1.0, true)?),
            None => Box::new(BinaryGibbs),
        },
    })
}

/// ULA's step from a MALA run: MALA's step is in preconditioned units
/// (per coordinate `eps * w_j`); ULA runs unpreconditioned, so it takes the
/// step of the stiffest direction, `eps * min_j w_j`, where a larger one
/// would diverge.
fn ula_step_from(stats: &crate::sampler::RunStats) -> f64 {
    let w = stats
        .inv_mass
        .as_ref()
        .map_or(1.0, |w| w.iter().copied().fold(f64::INFINITY, f64::min));
    stats.step_size * if w.is_finite() && w > 0.0 { w } else { 1.0 }
}

/// Errors of the draws' means and variances against the exact moments.
fn moment_errors(
    samples: ArrayView3<f64>,
    sums: &[CoordSummary],
    mean: &[f64],
    var: &[f64],
) -> (f64, f64, f64) {
    let mut me = 0.0f64;
    let mut mz = 0.0f64;
    let mut ve = 0.0f64;
    for (j, s) in sums.iter().enumerate() {
        let sd = var[j].sqrt();
        let err = (s.mean - mean[j]).abs();
        me = me.max(err / sd);
        mz = mz.max(err / s.mcse_mean);
        let col = samples.index_axis(Axis(2), j);
        let v = col
            .mapv(|x| (x - s.mean) * (x - s.mean))
            .mean()
            .unwrap_or(f64::NAN);
        ve = ve.max((v / var[j] - 1.0).abs());
    }
    (me, mz, ve)
}

/// Runs every sampler on `model` (with `context` for conditional models)
/// and gathers the table.
pub fn compare(
    model: &Model,
    energy: Arc<dyn Energy>,
    samplers: &[SamplerKind],
    config: &CompareConfig,
) -> Result<CompareReport> {
    if samplers.is_empty() {
        return Err(Error::param("--samplers", "name at least one sampler"));
    }
    if config.draws < 4 {
        return Err(Error::param("--draws", "must be >= 4 for ESS and R-hat"));
    }
    let binary = energy.space() == StateSpace::Binary;
    for s in samplers {
        if binary != (*s == SamplerKind::Gibbs) {
            return Err(Error::param(
                "--samplers",
                if binary {
                    format!(
                        "model `{}` has binary states: only gibbs applies, not {}",
                        model.name,
                        s.name()
                    )
                } else {
                    format!(
                        "gibbs needs binary states; model `{}` is continuous",
                        model.name
                    )
                },
            ));
        }
    }
    let mut cfg = SampleConfig::new();
    cfg.n_chains = config.chains;
    cfg.warmup = config.warmup;
    cfg.draws = config.draws;
    cfg.seed = config.seed;
    cfg.record_energies = false;
    cfg.validate(energy.dim())?;
    let moments = model.moments().filter(|(m, _)| m.len() == energy.dim());
    // ULA has no acceptance rate to tune against: it borrows the step a
    // MALA warm-up adapts to (a short one, if MALA is not in the list).
    let mut ula_step = config.ula_step;
    if let Some(s) = ula_step {
        crate::error::check_positive("--ula-step", s)?;
    }
    let mut rows = Vec::new();
    for &kind in samplers {
        if kind == SamplerKind::Ula && ula_step.is_none() {
            let mut k = Mala::new(0.1)?;
            let mut c = cfg.clone();
            c.draws = 1;
            c.warmup = config.warmup.max(100);
            c.shared_step_size = true;
            let o = sample(energy.as_ref(), &mut k, &c, None, &mut NoObserver)?;
            ula_step = Some(ula_step_from(&o.stats));
        }
        let mut kernel = kernel_for(kind, model, ula_step.unwrap_or(0.01))?;
        let mut c = cfg.clone();
        c.adapt_step_size = !matches!(kind, SamplerKind::Ula | SamplerKind::Gibbs);
        let out = sample(energy.as_ref(), kernel.as_mut(), &c, None, &mut NoObserver)?;
        let sums = diagnostics::summarize(out.samples.view())?;
        let ov = diagnostics::overview(&sums);
        let s = &out.stats;
        let wall = s.wall_s;
        // Gradient-free samplers are charged per energy evaluation.
        let evals = if matches!(kind, SamplerKind::Rwm | SamplerKind::Gibbs) {
            s.energy_evals
        } else {
            s.grad_evals
        };
        let (mean_error, mean_error_z, var_error) = match &moments {
            Some((m, v)) => {
                let (a, b, c) = moment_errors(out.samples.view(), &sums, m, v);
                (Some(a), Some(b), Some(c))
            }
            None => (None, None, None),
        };
        if kind == SamplerKind::Mala && ula_step.is_none() {
            ula_step = Some(ula_step_from(s));
        }
        rows.push(CompareRow {
            sampler: kind,
            wall_s: wall,
            grad_evals: s.grad_evals,
            energy_evals: s.energy_evals,
            ess_bulk_min: ov.ess_bulk_min,
            ess_tail_min: ov.ess_tail_min,
            ess_bulk_per_s: ov.ess_bulk_min / wall,
            ess_tail_per_s: ov.ess_tail_min / wall,
            ess_bulk_per_eval: ov.ess_bulk_min / evals.max(1) as f64,
            ess_tail_per_eval: ov.ess_tail_min / evals.max(1) as f64,
            acceptance: s.acceptance.iter().sum::<f64>() / s.acceptance.len().max(1) as f64,
            divergences: s.divergences.iter().sum(),
            rhat_max: ov.rhat_max,
            step_size: if kind == SamplerKind::Gibbs {
                f64::NAN
            } else {
                s.step_size
            },
            mean_error,
            mean_error_z,
            var_error,
        });
    }
    Ok(CompareReport {
        model: model.name.clone(),
        dim: energy.dim(),
        config: config.clone(),
        threads: rayon::current_num_threads(),
        rows,
        moments_known: moments.is_some(),
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| crate::bench::sig(x, digits))
}

impl CompareReport {
    /// The table as markdown (the same columns `boltz compare` prints).
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let mut t = format!(
            "# Samplers on `{}` (dim {})\n\n{} chains x {} draws after {} warm-up steps, seed {}, {} threads. ESS: rank-normalised split-chain (bulk) and 5%/95% quantile (tail), the worst coordinate. Per eval: per gradient evaluation (energy evaluation for gradient-free samplers), warm-up included.{}\n\n",
            self.model,
            self.dim,
            c.chains,
            c.draws,
            c.warmup,
            c.seed,
            self.threads,
            if self.moments_known {
                " Mean error: largest |mean - exact| in exact sds, and in Monte Carlo standard errors (z); variance error: largest |var / exact - 1|."
            } else {
                " The model's moments are not known in closed form: no error columns."
            }
        );
        t.push_str("| sampler | step | wall s | bulk ESS/s | tail ESS/s | bulk ESS/eval | tail ESS/eval | accept | divergences | worst R-hat | mean err (sd) | mean err (z) | var err |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            t.push_str(&format!(
                "| {} | {} | {:.3} | {} | {} | {} | {} | {:.3} | {} | {:.3} | {} | {} | {} |\n",
                r.sampler.name(),
                crate::bench::sig(r.step_size, 3),
                r.wall_s,
                crate::bench::sig(r.ess_bulk_per_s, 4),
                crate::bench::sig(r.ess_tail_per_s, 4),
                crate::bench::sig(r.ess_bulk_per_eval, 3),
                crate::bench::sig(r.ess_tail_per_eval, 3),
                r.acceptance,
                r.divergences,
                r.rhat_max,
                opt(r.mean_error, 3),
                opt(r.mean_error_z, 3),
                opt(r.var_error, 3),
            ));
        }
        t
    }

    /// A bar chart of bulk and tail ESS per second, one pair of bars per
    /// sampler, as a standalone SVG document.
    pub fn svg(&self) -> String {
        let (w, h) = (640.0, 360.0);
        let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0);
        let pw = w - left - right;
        let ph = h - top - bottom;
        let vmax = self
            .rows
            .iter()
            .flat_map(|r| [r.ess_bulk_per_s, r.ess_tail_per_s])
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-12);
        // A "nice" top of the axis: 1, 2 or 5 times a power of ten.
        let p = 10f64.powf(vmax.log10().floor());
        let top_v = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * p)
            .find(|v| *v >= vmax)
            .unwrap_or(10.0 * p);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">ESS per second on {} ({} chains x {} draws, {} threads)</text>\n",
            w / 2.0,
            xml_escape(&self.model),
            self.config.chains,
            self.config.draws,
            self.threads
        );
        for k in 0..=5 {
            let v = top_v * k as f64 / 5.0;
            let y = top + ph - ph * k as f64 / 5.0;
            s.push_str(&format!(
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                left + pw,
                left - 6.0,
                y + 4.0,
                crate::bench::sig(v, 3)
            ));
        }
        let n = self.rows.len().max(1) as f64;
        let slot = pw / n;
        let bw = slot * 0.3;
        for (i, r) in self.rows.iter().enumerate() {
            let x0 = left + slot * i as f64 + slot * 0.2;
            for (k, (v, color)) in [(r.ess_bulk_per_s, "#3366cc"), (r.ess_tail_per_s, "#ff9933")]
                .iter()
                .enumerate()
            {
                let v = if v.is_finite() { *v } else { 0.0 };
                let bh = ph * v / top_v;
                let x = x0 + bw * k as f64;
                s.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{}: {} ESS/s</title></rect>\n",
                    top + ph - bh,
                    if k == 0 { "bulk" } else { "tail" },
                    crate::bench::sig(v, 4)
                ));
            }
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                x0 + bw,
                top + ph + 18.0,
                r.sampler.name()
            ));
        }
        s.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
            top + ph,
            left + pw,
            top + ph,
            top + ph
        ));
        let ly = h - 12.0;
        s.push_str(&format!(
            "<rect x=\"{left}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"#3366cc\"/><text x=\"{}\" y=\"{ly}\">bulk ESS/s (worst coordinate)</text>\n<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"#ff9933\"/><text x=\"{}\" y=\"{ly}\">tail ESS/s (worst coordinate)</text>\n</svg>\n",
            ly - 10.0,
            left + 16.0,
            left + 230.0,
            ly - 10.0,
            left + 246.0
        ));
        s
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
