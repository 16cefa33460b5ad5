//! Planning an AIS run: the pilot that tunes per-temperature steps and
//! picks adaptive temperatures, and the choice of base.

use super::pass::{Plan, pass};
use super::{AisConfig, AisProblem, Base, ScheduleChoice, respace};
use crate::energy::{Energy, StateSpace};
use crate::error::{Error, Result};
use crate::rng::chain_rngs;
use ndarray::{Array2, ArrayView2};

/// Temperatures, per-temperature steps, the pilot's energy evaluations and
/// its final particles (positions and log-weights; `None` without a pilot).
pub(crate) type Planned = (Vec<f64>, Vec<f64>, u64, Option<Particles>);

/// Particles' positions (n, dim) and log-weights.
pub(crate) type Particles = (Array2<f64>, Vec<f64>);

/// The temperatures, per-temperature steps and energy evaluations of the
/// pilot for the estimating run: from the configuration, completed by a
/// pilot run where needed. `None` when `stop`'s flag stopped the pilot.
pub(crate) fn plan(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    stop: Option<&crate::run::Control>,
) -> Result<Option<Planned>> {
    let fixed = match &config.schedule {
        ScheduleChoice::Fixed(s) => Some(s.betas(config.temps)?),
        ScheduleChoice::Adaptive { .. } => None,
        ScheduleChoice::Smc { .. } => {
            return Err(Error::param(
                "schedule",
                "SMC chooses its temperatures as it runs: it has no plan to reuse (reverse AIS needs a fixed or pilot-chosen schedule)",
            ));
        }
    };
    let energy = problem.energy.as_ref();
    let kernel = config.kernel_spec(energy).build()?;
    let rbm_path = energy.as_rbm().is_some() && matches!(problem.base, Base::Bernoulli { .. });
    let has_step = !rbm_path && (kernel.target_accept().is_some() || kernel.chooses_step());
    let fixed_step = config
        .step_size
        .unwrap_or_else(|| kernel.initial_tuning().step_size().get(0));
    let needs_pilot = fixed.is_none() || (has_step && config.step_size.is_none());
    if !needs_pilot {
        let betas = fixed.expect("fixed when no pilot");
        return Ok(Some((betas, vec![fixed_step; config.temps], 0, None)));
    }
    let cess = match config.schedule {
        ScheduleChoice::Adaptive { cess } | ScheduleChoice::Smc { cess } => cess,
        ScheduleChoice::Fixed(_) => 0.99,
    };
    let start_step = config.step_size.unwrap_or(0.1);
    let pilot_n = config.pilot_particles.min(config.particles);
    // Each context's rows repeat it `particles` times: the pilot's energy
    // repeats it `pilot_n` times.
    let pilot_problem = problem.with_particles(pilot_n)?;
    let p = pass(
        &pilot_problem,
        config,
        pilot_n,
        crate::rng::PassSeed::AisPilot.of(config.seed),
        Plan::Pilot {
            betas: fixed.clone(),
            cess,
            start_step,
        },
        None,
        stop.map(|c| (c, None)),
        None,
        None,
    )?;
    if !p.complete {
        return Ok(None);
    }
    let betas = match fixed {
        Some(b) => b,
        None => respace(&p.betas, config.temps),
    };
    let steps = if !has_step {
        vec![fixed_step; config.temps]
    } else if let Some(s) = config.step_size {
        vec![s; config.temps]
    } else if p.steps.len() == config.temps {
        p.steps.clone()
    } else {
        // Map the pilot's steps (one per pilot temperature) onto the new ones by b.
        config_steps_by_beta(&p.betas[1..], &p.steps, &betas[1..])
    };
    let particles = (p.positions, p.log_weights.iter().copied().collect());
    Ok(Some((betas, steps, p.evals, Some(particles))))
}

fn config_steps_by_beta(pilot_b: &[f64], pilot_steps: &[f64], b: &[f64]) -> Vec<f64> {
    b.iter()
        .map(|&x| {
            let i = pilot_b
                .partition_point(|&v| v < x)
                .min(pilot_steps.len() - 1);
            pilot_steps[i]
        })
        .collect()
}

/// The final positions of forward AIS are approximate draws from the target;
/// exact draws for reverse AIS come from [`exact_draws`].
pub fn exact_draws(model: &crate::model::Model, n: usize, seed: u64) -> Option<Array2<f64>> {
    use crate::model::Family;
    let d = model.dim();
    let mut out = Array2::zeros((n, d));
    let mut rngs = chain_rngs(seed ^ 0xD1CE, n);
    for (i, rng) in rngs.iter_mut().enumerate() {
        let row = out.row_mut(i).into_slice().expect("standard layout");
        match &model.family {
            Family::Gaussian(g) => g.sample_exact(rng, row),
            Family::FullGaussian(g) => g.sample_exact(rng, row),
            Family::FullMixture(m) => m.sample_exact(rng, row),
            Family::Mixture(m) => m.sample_exact(rng, row),
            Family::Funnel(f) => f.sample_exact(rng, row),
            _ => return None,
        }
    }
    Some(out)
}

/// A Gaussian base fitted by a short pilot: 64 MALA chains (500 warm-up
/// steps, 200 draws) on `exp(-beta F)` from over-dispersed starts
/// ([`crate::init::Init::Dispersed`]); per coordinate the pilot's mean and
/// 1.5 times its standard deviation (at least 1e-3), so that the base is wider
/// than the target and covers modes the pilot saw (1.5 rather than 2: in
/// 100 dimensions the wider base costs 4x in weight ESS). For a conditional
/// energy with one context per row, pass it conditioned on those rows: the
/// pilot pools them. [`pilot`] also says whether the pilot's chains agreed.
pub fn pilot_base(energy: &dyn Energy, beta: f64, seed: u64) -> Result<Base> {
    Ok(pilot(energy, beta, seed)?.base)
}

/// What the AIS pilot found: the base and whether its chains agreed.
#[derive(Clone, Debug)]
pub struct Pilot {
    /// The fitted Gaussian base ([`pilot_base`]).
    pub base: Base,
    /// The largest split R-hat over coordinates of the pilot's chains
    /// (NaN when the chains have contexts of their own).
    pub rhat: f64,
    /// Said when the chains, started over-dispersed, disagree (R-hat above
    /// 1.05): the target may have modes the pilot's chains could not cross.
    /// On its own this does not mean an estimate is wrong (the base covers
    /// every mode a chain found; it fired on every right SMC run of
    /// gmm-ring, gmm-far and gauss-ill), so the log Z job reports the
    /// R-hat and warns only when [`Pilot::uncovered`] finds a chain's
    /// region the annealed particles did not reach.
    pub warnings: Vec<crate::Warning>,
    /// Each chain's mean per coordinate, (chains, dim) (no rows for a
    /// pilot of per-row contexts).
    pub chain_means: Array2<f64>,
    /// Each chain's standard deviation per coordinate, (chains, dim).
    pub chain_sds: Array2<f64>,
    /// Each chain's mean energy `F` (at beta 1) over its draws.
    pub chain_energies: Vec<f64>,
    /// The inverse temperature the pilot ran at.
    pub beta: f64,
    /// Whether the chains started at data rows ([`pilot_with`]'s `starts`).
    pub from_data: bool,
}

/// A region of a pilot chain whose mass, by [`Pilot::uncovered`]'s
/// estimate, is below `e^-NEGLIGIBLE` times that of the particles' region
/// is not reported as missed: its absence moves log Z by under `e^-20`.
const NEGLIGIBLE: f64 = 20.0;

impl Pilot {
    /// The chains whose region no annealed particle reached: chain `c`'s
    /// region is reached when some particle of non-negligible weight
    /// (`N w >= 0.01` for normalised weights `w`) lies within 3 of the
    /// chain's standard deviations, root-mean-square over coordinates,
    /// of the chain's mean. Returns (chain, that distance of the nearest
    /// such particle) for each chain not reached. A miss means a region
    /// the pilot's chains found and settled in holds none of the
    /// particles whose weights estimate log Z: its mass is not in the
    /// estimate, and the error bar cannot show it.
    ///
    /// A region whose mass is negligible is not a miss: a chain stuck on
    /// a plateau far above the wells where the mass is (a trained EBM at
    /// beta 1: energy +2 against -245) is left out when the log of its
    /// mass relative to the particles', each estimated as a Gaussian's
    /// (`-beta (F_chain - F_particles) + sum_i ln(sd_chain_i /
    /// sd_particles_i)`, means and sds of the chain's draws and of the
    /// weighted particles), is below -20.
    pub fn uncovered(
        &self,
        positions: ArrayView2<f64>,
        log_weights: &[f64],
        energy: &dyn Energy,
    ) -> Vec<(usize, f64)> {
        let n = positions.nrows();
        if n == 0
            || log_weights.len() != n
            || self.chain_means.ncols() != positions.ncols()
            || energy.dim() != positions.ncols()
        {
            return Vec::new();
        }
        let lse = crate::energy::log_sum_exp(log_weights);
        let kept: Vec<usize> = (0..n)
            .filter(|&i| (log_weights[i] - lse).exp() * n as f64 >= 0.01)
            .collect();
        let floor: Vec<f64> = match &self.base {
            Base::Gaussian { std, .. } => std.iter().map(|s| 1e-3 * s).collect(),
            Base::Bernoulli { .. } => return Vec::new(),
        };
        let d = positions.ncols() as f64;
        let log_mass = self.relative_log_mass(positions, log_weights, lse, energy, &floor);
        let mut out = Vec::new();
        for (c, (m, s)) in self
            .chain_means
            .outer_iter()
            .zip(self.chain_sds.outer_iter())
            .enumerate()
        {
            if log_mass[c] < -NEGLIGIBLE {
                continue;
            }
            let nearest = kept
                .iter()
                .map(|&i| {
                    let x = positions.row(i);
                    let ss: f64 = x
                        .iter()
                        .zip(m.iter().zip(s.iter().zip(&floor)))
                        .map(|(x, (m, (s, f)))| ((x - m) / s.max(*f)).powi(2))
                        .sum();
                    (ss / d).sqrt()
                })
                .fold(f64::INFINITY, f64::min);
            if nearest > 3.0 {
                out.push((c, nearest));
            }
        }
        out
    }

    /// Per chain, the log of its region's mass relative to the weighted
    /// particles' region, each estimated as a Gaussian's ([`Pilot::uncovered`]).
    fn relative_log_mass(
        &self,
        positions: ArrayView2<f64>,
        log_weights: &[f64],
        lse: f64,
        energy: &dyn Energy,
        floor: &[f64],
    ) -> Vec<f64> {
        let chains = self.chain_means.nrows();
        if self.chain_energies.len() != chains {
            return vec![0.0; chains];
        }
        let mut f = ndarray::Array1::zeros(positions.nrows());
        energy.energy_batch(positions, f.view_mut());
        let w: Vec<f64> = log_weights.iter().map(|l| (l - lse).exp()).collect();
        let f_p: f64 = w.iter().zip(f.iter()).map(|(w, f)| w * f).sum();
        if !f_p.is_finite() {
            return vec![0.0; chains];
        }
        let d = positions.ncols();
        let sd_p: Vec<f64> = (0..d)
            .map(|j| {
                let col = positions.column(j);
                let m: f64 = w.iter().zip(col.iter()).map(|(w, x)| w * x).sum();
                let v: f64 = w
                    .iter()
                    .zip(col.iter())
                    .map(|(w, x)| w * (x - m).powi(2))
                    .sum();
                v.sqrt().max(floor[j])
            })
            .collect();
        (0..chains)
            .map(|c| {
                let volume: f64 = (0..d)
                    .map(|j| (self.chain_sds[[c, j]].max(floor[j]) / sd_p[j]).ln())
                    .sum();
                let r = -self.beta * (self.chain_energies[c] - f_p) + volume;
                if r.is_nan() { 0.0 } else { r }
            })
            .collect()
    }
}

/// The pilot of [`pilot_base`], with its agreement check.
pub fn pilot(energy: &dyn Energy, beta: f64, seed: u64) -> Result<Pilot> {
    pilot_with(energy, beta, seed, None, &crate::run::Control::default())?
        .ok_or_else(|| Error::Interrupted("the AIS pilot was stopped".into()))
}

/// [`pilot`] with a stop flag (`control.stop`; its checkpoint settings
/// are not used) and, optionally, where its chains start: `starts`, rows
/// of points where the target's mass is thought to be (the positives a
/// model was trained on), of which the 64 chains start at evenly spaced
/// rows (chain `i` at row `i n / 64`; with fewer rows, row `i mod n`)
/// instead of over-dispersed. A trained EBM can hold its mass in narrow
/// wells around the data that chains from elsewhere take thousands of
/// steps to fall into: a pilot that never finds them fits a base that
/// misses them, and so does every annealed particle. `None` when stopped.
pub fn pilot_with(
    energy: &dyn Energy,
    beta: f64,
    seed: u64,
    starts: Option<ArrayView2<f64>>,
    control: &crate::run::Control,
) -> Result<Option<Pilot>> {
    let mut config = crate::sampler::SampleConfig::new();
    config.n_chains = energy.fixed_rows().unwrap_or(64);
    // The pilot's chains are one fit of the target, never sharded: its mass
    // is the pooled one, from 64 chains' draws.
    config.pooled_mass = true;
    let from_data = starts.is_some();
    if let Some(x) = starts {
        config.init = start_rows(x, energy, config.n_chains)?;
    }
    (
        config.warmup,
        config.draws,
        config.thin,
        config.seed,
        config.beta,
        config.record_energies,
    ) = (500, 200, 1, seed ^ 0xBA5E, beta, true);
    let kernel = crate::kernels::Mala::new(0.1)?;
    let stop_only = crate::run::Control {
        stop: control.stop.clone(),
        ..Default::default()
    };
    let out = crate::sampler::sample_with(
        energy,
        &kernel,
        &config,
        None,
        &mut crate::sampler::NoObserver,
        &stop_only,
    )?;
    if !out.complete {
        return Ok(None);
    }
    let d = energy.dim();
    let flat = out
        .samples
        .to_shape((config.n_chains * config.draws, d))
        .map_err(|e| Error::Numerical(e.to_string()))?
        .to_owned();
    let mean = flat.mean_axis(ndarray::Axis(0)).expect("non-empty");
    let sd = flat.std_axis(ndarray::Axis(0), 1.0);
    if mean.iter().chain(sd.iter()).any(|v| !v.is_finite()) {
        return Err(Error::Numerical(
            "the pilot run for the AIS base produced non-finite draws; give a base scale".into(),
        ));
    }
    let base = Base::gaussian(
        mean.to_vec(),
        sd.iter().map(|s| (1.5 * s).max(1e-3)).collect(),
    )?;
    let (rhat, mut warnings) = (f64::NAN, Vec::new());
    if energy.fixed_rows().is_some() {
        return Ok(Some(Pilot {
            base,
            rhat,
            warnings,
            chain_means: Array2::zeros((0, d)),
            chain_sds: Array2::zeros((0, d)),
            chain_energies: Vec::new(),
            beta,
            from_data,
        }));
    }
    let chain_means = out.samples.mean_axis(ndarray::Axis(1)).expect("draws");
    let chain_sds = out.samples.std_axis(ndarray::Axis(1), 1.0);
    let ov = crate::diagnostics::overview(&crate::diagnostics::summarize(out.samples.view())?);
    if ov.rhat_max > 1.05 {
        warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::PilotDisagree, format!(
            "the AIS pilot's {} chains, started over-dispersed, disagree (R-hat {:.3}): the target may have separated modes, and AIS may miss the mass of some without its error bar showing it; check with reverse AIS (reverse_from: draws of the target) or parallel tempering",
            config.n_chains, ov.rhat_max
        )));
    }
    let chain_energies = out
        .energies
        .as_ref()
        .and_then(|e| e.mean_axis(ndarray::Axis(1)))
        .map_or_else(Vec::new, |m| m.to_vec());
    Ok(Some(Pilot {
        base,
        rhat: ov.rhat_max,
        warnings,
        chain_means,
        chain_sds,
        chain_energies,
        beta,
        from_data,
    }))
}

/// At most `k` of `0..n`, evenly spaced (`i n / k`; all of them when
/// `n <= k`): the rows a pilot starts at or the contexts it pools.
pub(crate) fn evenly_spaced(n: usize, k: usize) -> Vec<usize> {
    if n <= k {
        (0..n).collect()
    } else {
        (0..k).map(|i| i * n / k).collect()
    }
}

/// Chains' starts at evenly spaced rows of `x` ([`pilot_with`]).
fn start_rows(x: ArrayView2<f64>, energy: &dyn Energy, chains: usize) -> Result<crate::init::Init> {
    let d = energy.dim();
    if x.ncols() != d || x.nrows() == 0 {
        return Err(Error::shape(
            "data where the pilot's chains start",
            format!("(n >= 1, {d})"),
            format!("{:?}", x.shape()),
        ));
    }
    if energy.fixed_rows().is_some() {
        return Err(Error::param(
            "data",
            "the pilot of a conditional model runs one chain per context; data (positives) choose where the pilot of an unconditional model starts",
        ));
    }
    let rows = evenly_spaced(x.nrows(), chains);
    let values = rows
        .iter()
        .flat_map(|&r| x.row(r).to_vec())
        .collect::<Vec<f64>>();
    crate::error::check_finite("data", &values)?;
    Ok(crate::init::Init::Rows {
        rows: rows.len(),
        dim: d,
        values,
    })
}

/// The base AIS anneals from, chosen for `energy` at inverse temperature
/// `beta` where the user gives none. Continuous states: a Gaussian fitted
/// by a short MCMC pilot ([`pilot_base`]), whose chains start at evenly
/// spaced rows of `data` when given ([`pilot_with`]). Binary states: the base-rate
/// model of `data` (positives the user gives: per-coordinate means clipped
/// to [0.01, 0.99], as Salakhutdinov & Murray 2008) when given; else, for
/// an RBM, the model itself with its weights and hidden biases set to zero
/// (independent visibles with logits `beta b`, whose log Z is exact), which
/// fits an RBM of any size; else independent fair coins.
///
/// ```
/// use boltz::ais::{self, Base};
/// let rbm = boltz::energy::Rbm::new(
///     ndarray::Array2::from_elem((40, 16), 0.05), vec![0.1; 40], vec![-0.2; 16])?;
/// let base = ais::default_base(&rbm, 1.0, 0, None)?;
/// assert!(matches!(base, Base::Bernoulli { .. }) && base.dim() == 40);
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn default_base(
    energy: &dyn Energy,
    beta: f64,
    seed: u64,
    data: Option<ArrayView2<f64>>,
) -> Result<Base> {
    let d = energy.dim();
    if let Some(x) = data {
        if x.ncols() != d || x.nrows() == 0 {
            return Err(Error::shape(
                "data for the AIS base",
                format!("(n >= 1, {d})"),
                format!("{:?}", x.shape()),
            ));
        }
        if energy.space() == StateSpace::Binary {
            return Base::base_rate(x);
        }
    }
    match (energy.space(), energy.as_rbm()) {
        (StateSpace::Binary, Some((rbm, b))) => Ok(Base::Bernoulli {
            logit: rbm.visible_bias().iter().map(|v| v * b * beta).collect(),
        }),
        (StateSpace::Binary, None) => Ok(Base::Bernoulli {
            logit: vec![0.0; d],
        }),
        (StateSpace::Continuous, _) => {
            pilot_with(energy, beta, seed, data, &crate::run::Control::default())?
                .map(|p| p.base)
                .ok_or_else(|| Error::Interrupted("the AIS pilot was stopped".into()))
        }
    }
}
