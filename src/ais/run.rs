//! Forward and reverse AIS runs: plan, estimating pass, warnings,
//! bootstrap and repeats.

use super::pass::{PassOutput, Plan, pass};
use super::plan::plan;
use super::saved::Earlier;
use super::weights::bootstrap_stderr;
use super::{AisConfig, AisProblem, AisResult, Estimate};
use crate::error::{Error, Result};
use crate::run::{Control, NoObserver, Observer, in_pool};
use crate::warning::{Warning, WarningKind};
use std::path::Path;
use std::time::Instant;

/// Forward AIS: `log Z` of `exp(-beta F)` for each context, with error bars.
///
/// ```
/// use boltz::ais::{self, AisConfig, AisProblem, Base};
/// use std::sync::Arc;
/// // A 2-D Gaussian with standard deviations 1 and 2: log Z = log(2 pi * 2).
/// let energy = Arc::new(boltz::energy::DiagGaussian::new(vec![0.0; 2], vec![1.0, 2.0])?);
/// let base = Base::isotropic(2, 3.0)?;
/// let mut config = AisConfig::new();
/// (config.particles, config.temps) = (256, 200);
/// let result = ais::ais(&AisProblem::new(energy, &base)?, &config)?;
/// let e = &result.estimates[0];
/// assert!((e.log_z - (4.0 * std::f64::consts::PI).ln()).abs() < 5.0 * e.stderr + 0.01);
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn ais(problem: &AisProblem<'_>, config: &AisConfig) -> Result<AisResult> {
    ais_with(problem, config, &Control::default(), None, &mut NoObserver)
}

/// [`ais`] with checkpoints of the estimating pass, a stop flag, resume
/// from a checkpoint and an observer (one step per temperature). A resumed
/// run's result is bit-identical to an uninterrupted one (the pilot is
/// deterministic and simply run again). A stopped run returns the
/// estimates at the temperature reached, with `complete` false.
pub fn ais_with(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<AisResult> {
    in_pool(|| forward(problem, config, control, resume, observer))
}

/// Most memory an AIS run may hold, in bytes.
pub const MAX_AIS_BYTES: usize = 8 << 30;

/// Refuses runs whose particle state (about 8 arrays of particles x dim
/// f64: positions, proposals, gradients, momenta, cached components) would
/// not fit in [`MAX_AIS_BYTES`].
pub(super) fn check_memory(problem: &AisProblem<'_>, config: &AisConfig) -> Result<()> {
    let bytes = crate::budget::bytes(
        &[
            problem.groups,
            config.particles,
            problem.energy.dim().max(1),
        ],
        64,
    );
    let what = format!(
        "{} contexts x {} particles x {} dims",
        problem.groups,
        config.particles,
        problem.energy.dim()
    );
    check_bytes(&what, bytes)
}

/// Refuses `bytes` (of particle state described by `what`; `None`:
/// overflowed) above [`MAX_AIS_BYTES`] or the memory budget.
pub(crate) fn check_bytes(what: &str, bytes: Option<usize>) -> Result<()> {
    match bytes {
        Some(b) if b > MAX_AIS_BYTES => Err(Error::param(
            "particles",
            format!("{what} would need more than {} GiB", MAX_AIS_BYTES >> 30),
        )),
        _ => crate::budget::check("particles", what, bytes).map(|_| ()),
    }
}

fn to_estimates(p: &PassOutput, particles: usize) -> Vec<Estimate> {
    (0..p.log_z.len())
        .map(|g| Estimate {
            log_z: p.log_z[g],
            stderr: p.var[g].sqrt(),
            ess: p.ess[g],
            n: particles,
        })
        .collect()
}

/// Warnings for estimates that cannot be trusted (and NaN error bars for
/// non-finite ones); `first` is the index of the first estimate's context.
/// Past three contexts of a kind, one line counts them.
pub(crate) fn warnings(
    estimates: &mut [Estimate],
    config: &AisConfig,
    first: usize,
) -> Vec<Warning> {
    let mut bad = Vec::new();
    let mut low = Vec::new();
    for (i, e) in estimates.iter_mut().enumerate() {
        if !e.log_z.is_finite() {
            e.stderr = f64::NAN;
            bad.push(first + i);
        } else if e.ess < 0.1 * config.particles as f64
            && config.resample_threshold.is_none()
            && !config.is_smc()
        {
            low.push((first + i, e.ess));
        }
    }
    let mut out = Vec::new();
    let single = estimates.len() == 1 && first == 0;
    let name = |g: usize| {
        if single {
            String::new()
        } else {
            format!("context {g}: ")
        }
    };
    if bad.len() <= 3 {
        for g in &bad {
            out.push(Warning::new(WarningKind::NonFinite, format!("{}log Z is not finite (every weight -inf or NaN): the base does not cover the target, or the energy overflows", name(*g))));
        }
    } else {
        out.push(Warning::new(WarningKind::NonFinite, format!("{} contexts (first {:?}) have a non-finite log Z (every weight -inf or NaN): the base does not cover the target, or the energy overflows", bad.len(), &bad[..3])));
    }
    let advice = "the error bar is unreliable and log Z is likely biased low; use more temperatures or particles";
    if low.len() <= 3 {
        for (g, ess) in &low {
            out.push(Warning::new(
                WarningKind::WeightEss,
                format!(
                    "{}weight ESS {ess:.1} of {} particles (< 10%): {advice}",
                    name(*g),
                    config.particles
                ),
            ));
        }
    } else {
        let worst = low
            .iter()
            .copied()
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        out.push(Warning::new(WarningKind::WeightEss, format!(
            "{} of {} contexts have a weight ESS under 10% of {} particles (worst: context {}, ESS {:.1}): {advice}",
            low.len(),
            estimates.len(),
            config.particles,
            worst.0,
            worst.1
        )));
    }
    out
}

pub(super) fn frozen(betas: &[f64], steps: &[f64]) -> Plan {
    Plan::Frozen {
        betas: betas.to_vec(),
        steps: steps.to_vec(),
    }
}

/// Forward AIS on every batch of contexts ([`super::BATCH_PARTICLES`]),
/// one after another; a checkpoint holds the finished batches' results.
fn forward(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<AisResult> {
    let start = Instant::now();
    config.validate()?;
    let batches = problem.batches();
    if let Some(s) = config.shard
        && batches.len() > 1
        && batches.len() >= s.count
    {
        return forward_batches(problem, config, s, &batches, control, observer);
    }
    if let Some(s) = config.shard {
        if config.is_smc() {
            return Err(Error::param(
                "shard",
                format!(
                    "SMC chooses each temperature from all of a context's particles, so a shard cannot run part of them; shards of SMC are whole batches of contexts (here {} batch(es) of up to {} contexts at {} particles each, for {} shards)",
                    batches.len(),
                    super::BATCH_PARTICLES / config.particles.max(1),
                    config.particles,
                    s.count
                ),
            ));
        }
        s.check_items(config.particles, "particles per context")?;
    }
    if batches.len() == 1 {
        return forward_one(problem, config, control, resume, observer, None);
    }
    let mut earlier = match resume {
        Some(p) => super::saved::checkpoint_earlier(p, control)?,
        None => None,
    };
    let done = earlier.as_ref().map_or(0, |e| e.result.contexts_done);
    let first = batches
        .iter()
        .position(|r| r.start == done)
        .ok_or_else(|| {
            Error::checkpoint(
                resume.unwrap_or(Path::new("")),
                "its batches of contexts do not match this run",
            )
        })?;
    let temps_per_batch = config.temps;
    for (b, range) in batches.iter().enumerate().skip(first) {
        let sub = problem.batch(range.clone())?;
        let mut obs = Shifted {
            inner: &mut *observer,
            offset: b * temps_per_batch,
            total: batches.len() * temps_per_batch,
            contexts: Some((range.start, problem.groups)),
        };
        let r = forward_one(
            &sub,
            config,
            control,
            resume.filter(|_| b == first && earlier.is_some()),
            &mut obs,
            earlier.as_ref(),
        )?;
        let complete = r.complete;
        earlier = Some(merge(earlier, r, config.run_particles()));
        if !complete {
            break;
        }
    }
    let e = earlier.expect("at least one batch ran");
    let done = e.result.contexts_done;
    let mut out = e
        .result
        .into_result(e.log_weights, problem.groups, config.run_particles());
    if config.shard.is_none() {
        out.warnings = warnings(&mut out.estimates[..done], config, 0);
    }
    out.wall_s = start.elapsed().as_secs_f64();
    Ok(out)
}

/// A shard of whole batches of contexts: batches `shard.range(batches)`,
/// each run as in the one-process run (its own pilot, all its particles).
fn forward_batches(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    shard: crate::shard::Shard,
    batches: &[std::ops::Range<usize>],
    control: &Control,
    observer: &mut dyn Observer,
) -> Result<AisResult> {
    let start = Instant::now();
    if control.checkpoint.is_some() {
        return Err(Error::param(
            "checkpoint",
            "a shard of batches of contexts is rerun whole if lost: no checkpoints",
        ));
    }
    let mut whole = config.clone();
    whole.shard = None;
    let mine = shard.range(batches.len());
    let (lo, hi) = (batches[mine.start].start, batches[mine.end - 1].end);
    let mut earlier: Option<Earlier> = None;
    for (b, range) in batches.iter().enumerate().take(mine.end).skip(mine.start) {
        let sub = problem.batch(range.clone())?;
        let mut obs = Shifted {
            inner: &mut *observer,
            offset: (b - mine.start) * config.temps,
            total: mine.len() * config.temps,
            contexts: Some((range.start - lo, hi - lo)),
        };
        let r = forward_one(&sub, &whole, control, None, &mut obs, earlier.as_ref())?;
        let complete = r.complete;
        earlier = Some(merge(earlier, r, config.particles));
        if !complete {
            break;
        }
    }
    let e = earlier.expect("a shard has at least one batch");
    let mut out = e
        .result
        .into_result(e.log_weights, hi - lo, config.particles);
    out.context_range = Some(lo..hi);
    out.wall_s = start.elapsed().as_secs_f64();
    Ok(out)
}

/// Progress of a part of a run (a batch of contexts, an SMC island) seen
/// as progress of the whole: steps shifted by `offset` of `total`, and the
/// contexts counted (done, all) when given.
pub(crate) struct Shifted<'o> {
    pub inner: &'o mut dyn Observer,
    pub offset: usize,
    pub total: usize,
    pub contexts: Option<(usize, usize)>,
}

impl Observer for Shifted<'_> {
    fn observe(&mut self, p: &crate::run::Progress) {
        let mut p = p.clone();
        p.step += self.offset;
        p.total = self.total;
        if let Some((done, all)) = self.contexts {
            (p.contexts_done, p.contexts) = (done, all);
        }
        self.inner.observe(&p);
    }
}

/// The results of the batches finished so far.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Merged {
    /// Contexts whose estimates are final.
    pub contexts_done: usize,
    /// Particles per context.
    pub particles: usize,
    estimates: Vec<Estimate>,
    bootstrap_stderr: Option<Vec<f64>>,
    repeats: Vec<Vec<Estimate>>,
    accepted: crate::tally::Acceptance,
    divergences: usize,
    resamplings: usize,
    #[serde(default)]
    smc: Option<super::SmcSummary>,
    energy_evals: u64,
    shared_evals: u64,
    warnings: Vec<Warning>,
    betas: Vec<f64>,
    step_sizes: Vec<f64>,
    complete: bool,
}

impl Merged {
    /// The merged result; contexts not done get NaN estimates.
    pub(super) fn into_result(
        self,
        log_weights: Vec<f64>,
        contexts: usize,
        particles: usize,
    ) -> AisResult {
        let mut estimates = self.estimates;
        let mut lw = log_weights;
        let nan = Estimate {
            log_z: f64::NAN,
            stderr: f64::NAN,
            ess: f64::NAN,
            n: particles,
        };
        estimates.truncate(self.contexts_done);
        estimates.resize(contexts, nan);
        lw.truncate(self.contexts_done * particles);
        lw.resize(contexts * particles, f64::NAN);
        AisResult {
            estimates,
            bootstrap_stderr: self.bootstrap_stderr,
            repeats: self.repeats,
            log_weights: ndarray::Array2::from_shape_vec((contexts, particles), lw)
                .expect("sizes match"),
            positions: None,
            betas: self.betas,
            step_sizes: self.step_sizes,
            acceptance: self.accepted.rate(),
            accepted: self.accepted,
            divergences: self.divergences,
            resamplings: self.resamplings,
            smc: self.smc,
            energy_evals: self.energy_evals,
            shared_evals: self.shared_evals,
            wall_s: 0.0,
            warnings: self.warnings,
            complete: self.complete,
            contexts_done: self.contexts_done,
            context_range: None,
        }
    }
}

/// Appends batch result `r` (complete or not) to the earlier batches'.
pub(super) fn merge(earlier: Option<Earlier>, r: AisResult, particles: usize) -> Earlier {
    let groups = r.estimates.len();
    let done = if r.complete { groups } else { 0 };
    let mut e = earlier.unwrap_or(Earlier {
        result: Merged {
            contexts_done: 0,
            particles,
            estimates: vec![],
            bootstrap_stderr: r.bootstrap_stderr.as_ref().map(|_| vec![]),
            repeats: vec![vec![]; r.repeats.len()],
            accepted: crate::tally::Acceptance::default(),
            divergences: 0,
            resamplings: 0,
            smc: None,
            energy_evals: 0,
            shared_evals: 0,
            warnings: vec![],
            betas: r.betas.clone(),
            step_sizes: r.step_sizes.clone(),
            complete: true,
        },
        log_weights: vec![],
    });
    let m = &mut e.result;
    m.estimates.extend(r.estimates);
    if let (Some(all), Some(b)) = (&mut m.bootstrap_stderr, &r.bootstrap_stderr) {
        all.extend(b.iter().copied());
    }
    for (all, rep) in m.repeats.iter_mut().zip(&r.repeats) {
        all.extend(rep.iter().cloned());
    }
    m.accepted.merge(&r.accepted);
    m.divergences += r.divergences;
    m.resamplings += r.resamplings;
    if let (true, Some(s)) = (r.complete, r.smc) {
        match &mut m.smc {
            Some(all) => all.extend(s),
            None => m.smc = Some(s),
        }
    }
    m.energy_evals += r.energy_evals;
    m.shared_evals += r.shared_evals;
    m.warnings.extend(r.warnings);
    m.contexts_done += done;
    m.complete &= r.complete;
    if r.complete {
        e.log_weights.extend(r.log_weights.iter().copied());
    }
    e
}

/// Forward AIS on one batch of contexts (`earlier`: the batches before it).
fn forward_one(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
    earlier: Option<&Earlier>,
) -> Result<AisResult> {
    let start = Instant::now();
    check_memory(problem, config)?;
    if config.is_smc() {
        let mut r = super::smc::forward_smc(problem, config, control, resume, observer, earlier)?;
        if r.complete && config.shard.is_none() {
            r.warnings = smc_warnings(&mut r, config, problem.first_group);
        }
        return Ok(r);
    }
    let stop_only = Control {
        stop: control.stop.clone(),
        ..Control::default()
    };
    let Some((betas, steps, pilot_evals, pilot_particles)) =
        plan(problem, config, Some(&stop_only))?
    else {
        // Stopped in the pilot: nothing estimated; a checkpoint keeps the
        // batches before this one.
        if control.checkpoint.is_some() && earlier.is_some() {
            super::saved::save_fresh(problem, config, control, earlier)?;
        }
        return Ok(unfinished(
            problem.groups,
            config.run_particles(),
            vec![0.0],
            start,
        ));
    };
    let main_plan = frozen(&betas, &steps);
    // A shard anneals its particles of every context (the energy's rows
    // follow them); the pilot above ran whole, as in every shard.
    let shard_problem;
    let (main_problem, m) = match config.shard {
        Some(s) => {
            let m = s.range(config.particles).len();
            shard_problem = problem.with_particles(m)?;
            (&shard_problem, m)
        }
        None => (problem, config.particles),
    };
    let main = pass(
        main_problem,
        config,
        m,
        config.seed,
        main_plan.clone(),
        None,
        Some((control, resume)),
        Some(observer),
        earlier,
    )?;
    let mut estimates = to_estimates(&main, m);
    // A shard's own estimates are partial: the merge warns on the whole.
    let warnings = if config.shard.is_some() {
        vec![]
    } else {
        warnings(&mut estimates, config, problem.first_group)
    };
    let bootstrap_stderr = bootstrap(problem, config, &main);
    let (repeats, repeat_evals) = if main.complete {
        run_repeats(problem, config, &main_plan, &stop_only)?
    } else {
        (Vec::new(), 0)
    };
    let evals = pilot_evals + main.evals + repeat_evals;
    // The pilot's particles: it runs whole in every shard, so the check
    // made on them is the same in every shard and in the one-process run.
    let positions = pilot_particles.filter(|_| problem.cond.is_none());
    Ok(AisResult {
        estimates,
        bootstrap_stderr,
        repeats,
        log_weights: main.log_weights,
        positions,
        betas: main.betas,
        step_sizes: main.steps,
        acceptance: main.acceptance,
        accepted: main.accepted,
        divergences: main.divergences,
        resamplings: main.resamplings,
        smc: None,
        energy_evals: evals,
        // A shard of particles ran the pilot whole, as every shard does.
        shared_evals: if config.shard.is_some() {
            pilot_evals
        } else {
            0
        },
        wall_s: start.elapsed().as_secs_f64(),
        warnings,
        complete: main.complete,
        contexts_done: if main.complete { problem.groups } else { 0 },
        context_range: None,
    })
}

/// Bootstrap standard errors of each context's estimate from the main
/// pass's log-weights (`config.bootstrap` resamples; none for a stopped pass).
fn bootstrap(problem: &AisProblem<'_>, config: &AisConfig, main: &PassOutput) -> Option<Vec<f64>> {
    (config.bootstrap > 0 && main.complete).then(|| {
        let mut rng = crate::rng::Stream::AisBootstrap {
            first_group: problem.first_group,
        }
        .rng(config.seed);
        (0..problem.groups)
            .map(|g| {
                bootstrap_stderr(
                    &main.log_weights.row(g).to_vec(),
                    config.bootstrap,
                    &mut rng,
                )
            })
            .collect()
    })
}

/// The independent repeats of the main pass (`config.repeats`, each on
/// its own seed, the same plan): their estimates and evaluations.
fn run_repeats(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    main_plan: &Plan,
    stop_only: &Control,
) -> Result<(Vec<Vec<Estimate>>, u64)> {
    let mut repeats = Vec::new();
    let mut evals = 0;
    for r in 1..=config.repeats {
        let seed = crate::rng::PassSeed::AisRepeat(r).of(config.seed);
        let p = pass(
            problem,
            config,
            config.particles,
            seed,
            main_plan.clone(),
            None,
            Some((stop_only, None)),
            None,
            None,
        )?;
        if !p.complete {
            return Err(Error::Interrupted(format!(
                "stopped in repeat {r} of {}",
                config.repeats
            )));
        }
        evals += p.evals;
        repeats.push(to_estimates(&p, config.particles));
    }
    Ok((repeats, evals))
}

/// The result of a run stopped before any estimate: NaN estimates,
/// `complete` false, the temperatures reached.
pub(crate) fn unfinished(
    groups: usize,
    particles: usize,
    betas: Vec<f64>,
    start: Instant,
) -> AisResult {
    let nan = Estimate {
        log_z: f64::NAN,
        stderr: f64::NAN,
        ess: f64::NAN,
        n: particles,
    };
    AisResult {
        estimates: vec![nan; groups],
        bootstrap_stderr: None,
        repeats: vec![],
        log_weights: ndarray::Array2::from_elem((groups, particles), f64::NAN),
        positions: None,
        betas,
        step_sizes: vec![],
        acceptance: f64::NAN,
        accepted: crate::tally::Acceptance::default(),
        divergences: 0,
        resamplings: 0,
        smc: None,
        energy_evals: 0,
        shared_evals: 0,
        wall_s: start.elapsed().as_secs_f64(),
        warnings: vec![],
        complete: false,
        contexts_done: 0,
        context_range: None,
    }
}

/// The warnings of a finished SMC batch: non-finite estimates, and
/// islands whose schedule reached its cap.
fn smc_warnings(r: &mut AisResult, config: &AisConfig, first: usize) -> Vec<Warning> {
    let mut out = warnings(&mut r.estimates, config, first);
    if r.smc.as_ref().is_some_and(|s| s.capped) {
        out.push(Warning::new(WarningKind::SmcCap, format!(
            "SMC's pilot reached the cap of {} temperatures before b = 1 and its last step jumped to 1: the last weights are poor and the error bar may be too small; raise the cap (temps) or lower cess",
            config.temps
        )));
    }
    out
}
