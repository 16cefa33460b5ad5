//! One annealing pass (forward from the base, or reverse from draws of the
//! target), composed of the pieces: the path, the next temperature (fixed
//! or CESS-adaptive), reweighting, resampling, transitions, the pilot's
//! step adaptation; run on the shared loop with checkpoints and stop.

use super::path::{AnnealPath, make_path};
use super::saved::{Earlier, Saved};
use super::weights::{cess, estimate, lee_whiteley, systematic};
use super::{AisConfig, AisProblem, base};
use crate::error::{Error, Result};
use crate::io::{read_checkpoint, write_checkpoint};
use crate::kernels::{ChainState, ChainStep, ChosenSteps, StepAdapter, Tracking, Tuning};
use crate::rng::{ChainRng, chain_rngs_from, restore_rng, save_rng};
use crate::run::{Control, NoObserver, Observer, Phase, Progress, Steps, drive};
use ndarray::{Array2, ArrayView2, s};

/// The checkpoint kind of AIS passes.
pub(super) const KIND: &str = "ais";

/// SMC's first step when the config fixes none (re-tuned from there).
const SMC_START_STEP: f64 = 0.5;

/// How a pass picks temperatures and step sizes.
#[derive(Clone, Debug)]
pub(crate) enum Plan {
    /// Fixed temperatures and per-temperature steps (frozen).
    Frozen { betas: Vec<f64>, steps: Vec<f64> },
    /// Pilot: temperatures from a fixed list or chosen adaptively by CESS,
    /// step sizes adapted on the fly towards the kernel's target.
    Pilot {
        betas: Option<Vec<f64>>,
        cess: f64,
        start_step: f64,
    },
    /// A pass of annealed SMC with resample-move
    /// ([`super::ScheduleChoice::Smc`]: its `cess`, the config's step):
    /// every context resampled when its ESS/N falls below the threshold
    /// (default 0.5), `steps_per_temp` moves per temperature with the
    /// Gaussian base's variance as inverse mass (unless the step is
    /// fixed). The pilot (`frozen: None`) chooses each temperature by CESS
    /// and re-tunes the step from each temperature's moves, at most
    /// `config.temps` temperatures (the last then jumps to 1); an island
    /// follows the pilot's temperatures and steps.
    Smc {
        /// The island's first particle in each context (its streams are
        /// those of these particles in the whole run).
        first: usize,
        /// The islands finished before this one (kept in checkpoints).
        done: Vec<super::smc::Island>,
        /// Temperatures and per-temperature steps chosen by SMC's pilot:
        /// the islands follow them (`None`: the pilot itself, which
        /// chooses them as it runs).
        frozen: Option<(Vec<f64>, Vec<f64>)>,
    },
}

/// What a pass returns.
pub(crate) struct PassOutput {
    pub log_weights: Array2<f64>,
    /// The particles' final positions.
    pub positions: Array2<f64>,
    pub log_z: Vec<f64>,
    pub var: Vec<f64>,
    pub ess: Vec<f64>,
    pub acceptance: f64,
    pub accepted: crate::tally::Acceptance,
    pub divergences: usize,
    pub resamplings: usize,
    pub evals: u64,
    pub betas: Vec<f64>,
    pub steps: Vec<f64>,
    pub complete: bool,
    /// SMC: distinct ancestors at the base of each context's final particles.
    pub ancestors: Vec<usize>,
    /// SMC: the schedule reached its cap and its last step jumped to 1.
    pub capped: bool,
}

/// Everything a pass carries between temperatures (what a checkpoint holds).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Tally {
    k: usize,
    log_z: Vec<f64>,
    var: Vec<f64>,
    /// The acceptance summed exactly (the reported rate).
    accepted: crate::tally::Acceptance,
    divergences: usize,
    resamplings: usize,
    evals: u64,
    betas_used: Vec<f64>,
    steps_used: Vec<f64>,
    eps: f64,
    done: bool,
    /// SMC: resampling events of each context (its Lee & Whiteley variance).
    #[serde(default)]
    resampled: Vec<usize>,
    /// SMC: the schedule reached its cap of temperatures.
    #[serde(default)]
    capped: bool,
}

/// A pass in progress.
pub(super) struct Pass<'a> {
    path: Box<dyn AnnealPath + 'a>,
    base: &'a super::Base,
    config: &'a AisConfig,
    plan: Plan,
    reverse: bool,
    groups: usize,
    particles: usize,
    state: ChainState,
    rngs: Vec<ChainRng>,
    resample_rng: ChainRng,
    steps: Vec<ChainStep>,
    logw: Array2<f64>,
    inc: Vec<f64>,
    t: Tally,
    /// The batches of contexts before this one (a checkpoint holds them):
    /// borrowed, not copied, at every batch.
    earlier: Option<&'a Earlier>,
    /// SMC: each particle's ancestor at the base, its index in its context
    /// (the genealogy of the Lee & Whiteley variance estimate).
    eves: Vec<u32>,
    /// SMC: the inverse mass of the moves, the Gaussian base's variance
    /// (the pilot's estimate of the target's, widened), fixed for the run.
    mass: Option<Vec<f64>>,
}

/// Runs one pass of `particles` per context with `seed`. `reverse_from`
/// holds draws of the target for a reverse pass. With `control`, the pass
/// checkpoints, stops on its flag and resumes from `resume`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pass(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    particles: usize,
    seed: u64,
    plan: Plan,
    reverse_from: Option<ArrayView2<f64>>,
    control: Option<(&Control, Option<&std::path::Path>)>,
    observer: Option<&mut dyn Observer>,
    earlier: Option<&Earlier>,
) -> Result<PassOutput> {
    let mut p = start(
        problem,
        config,
        particles,
        seed,
        plan,
        reverse_from,
        earlier,
    )?;
    let default_control = Control::default();
    let (control, resume) = control.unwrap_or((&default_control, None));
    match resume {
        Some(r) => p.restore(r, control)?,
        // Checkpoints from the start: a run killed in its first
        // `checkpoint_every` temperatures resumes without its pilots'
        // work being lost twice.
        None if control.checkpoint.is_some() && control.checkpoint_every > 0 => {
            p.save(control)?;
        }
        None => {}
    }
    let mut quiet = NoObserver;
    let complete = drive(&mut p, observer.unwrap_or(&mut quiet), control, 1)?;
    Ok(p.finish(complete))
}

/// A pass at its first temperature.
pub(super) fn start<'p>(
    problem: &'p AisProblem<'_>,
    config: &'p AisConfig,
    particles: usize,
    seed: u64,
    plan: Plan,
    reverse_from: Option<ArrayView2<f64>>,
    earlier: Option<&'p Earlier>,
) -> Result<Pass<'p>> {
    let groups = problem.groups;
    let n = groups * particles;
    let d = problem.energy.dim();
    let path = make_path(problem.energy.as_ref(), problem.base, config, n)?;
    // Streams keyed by the global particle index (batches of contexts;
    // a shard's particles keep the streams of the whole run).
    let (lo, per_context) = match (&plan, config.shard) {
        (Plan::Smc { first, .. }, _) => (*first, config.particles),
        (Plan::Frozen { .. }, Some(s)) if reverse_from.is_none() => {
            (s.range(config.particles).start, config.particles)
        }
        _ => (0, particles),
    };
    let mut rngs: Vec<ChainRng> = (0..groups)
        .flat_map(|g| {
            let first = ((problem.first_group + g) * per_context + lo) as u64;
            chain_rngs_from(seed, first, particles)
        })
        .collect();
    let mut x = Array2::zeros((n, d));
    match reverse_from {
        Some(s) => x.assign(&s),
        None => base::sample_rows(problem.base, &mut rngs, x.view_mut()),
    }
    let eps = match &plan {
        Plan::Frozen { .. } => 0.0,
        Plan::Pilot { start_step, .. } => *start_step,
        Plan::Smc { .. } => config.step_size.unwrap_or(SMC_START_STEP),
    };
    let smc = matches!(plan, Plan::Smc { .. });
    let eves = if smc {
        (0..n).map(|i| (i % particles) as u32).collect()
    } else {
        Vec::new()
    };
    let reverse = reverse_from.is_some();
    let mass = match (&plan, problem.base) {
        (Plan::Smc { .. }, super::Base::Gaussian { std, .. }) if config.step_size.is_none() => {
            Some(std.iter().map(|s| s * s).collect())
        }
        _ => None,
    };
    Ok(Pass {
        t: Tally {
            k: 0,
            log_z: vec![path.log_z0(); groups],
            var: vec![0.0; groups],
            accepted: crate::tally::Acceptance::default(),
            divergences: 0,
            resamplings: 0,
            evals: 0,
            betas_used: vec![if reverse { 1.0 } else { 0.0 }],
            steps_used: Vec::new(),
            eps,
            done: false,
            resampled: if smc { vec![0; groups] } else { Vec::new() },
            capped: false,
        },
        path,
        base: problem.base,
        config,
        plan,
        reverse,
        groups,
        particles,
        state: ChainState::new(problem.base, x)?,
        rngs,
        resample_rng: crate::rng::Stream::AisResample {
            first_group: problem.first_group,
        }
        .rng(seed),
        steps: vec![ChainStep::default(); n],
        logw: Array2::zeros((groups, particles)),
        inc: vec![0.0; n],
        earlier,
        eves,
        mass,
    })
}

impl Pass<'_> {
    /// The next temperature, or `None` when the schedule is done.
    fn next_temperature(&mut self, b_from: f64) -> Option<f64> {
        let k = self.t.k;
        match &self.plan {
            Plan::Frozen { betas: bs, .. }
            | Plan::Pilot {
                betas: Some(bs), ..
            } => {
                if k + 1 >= bs.len() {
                    return None;
                }
                Some(if self.reverse {
                    bs[bs.len() - 2 - k]
                } else {
                    bs[k + 1]
                })
            }
            Plan::Pilot {
                betas: None, cess, ..
            } => {
                if b_from >= 1.0 || k > 100_000 {
                    return None;
                }
                Some(self.bisect(b_from, *cess))
            }
            Plan::Smc {
                frozen: Some((bs, _)),
                ..
            } => bs.get(k + 1).copied(),
            Plan::Smc { .. } => {
                if b_from >= 1.0 {
                    return None;
                }
                if k + 1 >= self.config.temps {
                    self.t.capped = true;
                    return Some(1.0);
                }
                let super::ScheduleChoice::Smc { cess } = self.config.schedule else {
                    unreachable!("SMC passes run SMC configs")
                };
                Some(self.bisect(b_from, cess))
            }
        }
    }

    /// The largest `b` in `(b_from, 1]` whose step keeps every context's
    /// conditional ESS at `target` (bisection, 50 halvings).
    fn bisect(&mut self, b_from: f64, target: f64) -> f64 {
        let flat = self.logw.as_slice().expect("contiguous").to_vec();
        let (path, inc, m, groups) = (&self.path, &mut self.inc, self.particles, self.groups);
        let mut ok = |b: f64| {
            path.increment(b_from, b, inc);
            (0..groups).all(|g| cess(&flat[g * m..(g + 1) * m], &inc[g * m..(g + 1) * m]) >= target)
        };
        if ok(1.0) {
            return 1.0;
        }
        let (mut lo, mut hi) = (b_from, 1.0);
        for _ in 0..50 {
            let mid = 0.5 * (lo + hi);
            if ok(mid) { lo = mid } else { hi = mid }
        }
        lo.max(b_from + 1e-12).min(1.0)
    }

    /// Resamples each context whose ESS/N fell below the threshold (SMC;
    /// a pilot always does below 0.5), folding its estimate into log Z.
    fn resample(&mut self) {
        let Some(th) = (match self.plan {
            Plan::Pilot { .. } | Plan::Smc { .. } => {
                Some(self.config.resample_threshold.unwrap_or(0.5))
            }
            Plan::Frozen { .. } => self.config.resample_threshold,
        }) else {
            return;
        };
        let m = self.particles;
        let mut moved = false;
        for g in 0..self.groups {
            let row = self.logw.row(g).to_vec();
            let (lz, v, ess) = estimate(&row);
            if ess >= th * m as f64 {
                continue;
            }
            self.t.log_z[g] += lz;
            self.t.var[g] += v;
            let anc = systematic(&row, &mut self.resample_rng);
            let rows = g * m..(g + 1) * m;
            let old = self.state.position.slice(s![rows.clone(), ..]).to_owned();
            for (j, a) in anc.iter().enumerate() {
                self.state.position.row_mut(g * m + j).assign(&old.row(*a));
            }
            if !self.eves.is_empty() {
                let old_eves = self.eves[rows].to_vec();
                for (j, a) in anc.iter().enumerate() {
                    self.eves[g * m + j] = old_eves[*a];
                }
                self.t.resampled[g] += 1;
            }
            self.logw.row_mut(g).fill(0.0);
            self.t.resamplings += 1;
            moved = true;
        }
        if moved {
            self.path.invalidate();
            self.path
                .prepare(self.state.position.view(), &mut self.t.evals);
        }
    }

    /// Transitions at `b`: the frozen step of this temperature, or the
    /// step being tuned (pilot passes), with the Gaussian base's variance as
    /// inverse mass in SMC; then, in a pass that tunes, the next
    /// temperature's step from this one's moves.
    fn transition(&mut self, b: f64) {
        self.path.refresh(&mut self.state, b);
        let step = match &self.plan {
            Plan::Frozen { steps, .. }
            | Plan::Smc {
                frozen: Some((_, steps)),
                ..
            } => steps.get(self.t.k).copied().unwrap_or(self.t.eps),
            Plan::Pilot { .. } | Plan::Smc { .. } => self.t.eps,
        };
        let mut tuning = Tuning::new(step);
        if let (Some(m), true) = (&self.mass, self.path.uses_mass()) {
            tuning = tuning
                .with_inv_mass(m.clone())
                .expect("checked finite and > 0");
        }
        let mut tally = super::path::MoveTally::default();
        let moves = self.config.steps_per_temp;
        let a = self.path.transition(
            &mut self.state,
            &mut self.rngs,
            &mut self.steps,
            b,
            &tuning,
            moves,
            &mut tally,
        );
        self.t.evals += tally.evals;
        self.t.divergences += tally.divergences;
        self.t.accepted.merge(&tally.accepted);
        self.t.steps_used.push(step);
        // SMC's pilot tunes from all of a temperature's moves (its gain
        // grows with them); its particles' kernel is fixed before they
        // move, given the past.
        let gain = match &self.plan {
            Plan::Pilot { .. } => 1.5,
            Plan::Smc { frozen: None, .. } if self.config.step_size.is_none() => {
                1.5 * (moves as f64).sqrt().min(3.0)
            }
            _ => return,
        };
        if let Some(target) = self.path.target_accept() {
            self.t.eps = Tracking::new(self.t.eps, target, gain).update(a);
        }
        if self.path.chooses_step() {
            // The next temperature's base step: the geometric mean of the
            // steps the particles chose at this one.
            if let Some(m) = ChosenSteps::of(&self.steps).geometric_mean() {
                self.t.eps = m.clamp(1e-12, 1e6);
            }
        }
    }

    fn restore(&mut self, path: &std::path::Path, control: &Control) -> Result<()> {
        let (saved, data): (Saved, Vec<f64>) = read_checkpoint(path, KIND, &control.settings)?;
        let (n, d) = self.state.position.dim();
        let t = &saved.tally;
        let carried = self.earlier.as_ref().map_or(0, |e| e.log_weights.len());
        let same_batches = saved.earlier.as_ref().map(|e| e.result.contexts_done)
            == self.earlier.as_ref().map(|e| e.result.contexts_done);
        if data.len() != n * d + n + carried
            || !same_batches
            || saved.rngs.len() != n
            || t.log_z.len() != self.groups
        {
            return Err(Error::checkpoint(path, "its sizes do not match this run"));
        }
        // Every field in range: the temperature index and the temperatures
        // used must be this run's, the tallies finite and non-negative.
        let planned = match &self.plan {
            Plan::Frozen { betas, .. } => Some(betas.as_slice()),
            Plan::Pilot { betas, .. } => betas.as_deref(),
            Plan::Smc { frozen, .. } => frozen.as_ref().map(|(b, _)| b.as_slice()),
        };
        let smc_ok = match &self.plan {
            Plan::Smc { done, .. } => {
                saved.islands == *done
                    && saved.eves.len() == n
                    && saved.eves.iter().all(|e| (*e as usize) < self.particles)
                    && t.resampled.len() == self.groups
                    && t.resampled.iter().all(|r| *r <= t.k)
                    && t.k <= self.config.temps
                    && t.betas_used.windows(2).all(|w| w[0] < w[1])
                    && t.eps.is_finite()
                    && t.eps > 0.0
            }
            _ => {
                saved.eves.is_empty()
                    && saved.islands.is_empty()
                    && t.resampled.is_empty()
                    && !t.capped
            }
        };
        let betas_ok = t.betas_used.len() == t.k + 1
            && t.steps_used.len() <= t.k
            && match planned {
                Some(b) if !self.reverse => t.k < b.len() && t.betas_used[..] == b[..=t.k],
                Some(b) => t.k < b.len(),
                None => t.betas_used.iter().all(|b| (0.0..=1.0).contains(b)),
            };
        let tallies_ok = t.log_z.iter().all(|v| v.is_finite() || v.is_nan())
            && t.var.iter().all(|v| *v >= 0.0 || v.is_nan())
            && t.accepted.is_valid()
            && data[..n * d].iter().all(|v| v.is_finite());
        if !betas_ok || !tallies_ok || !smc_ok {
            return Err(Error::checkpoint(
                path,
                format!(
                    "its state is out of range for this run (temperature {} of {}); refusing a damaged or edited checkpoint",
                    t.k,
                    planned.map_or(0, |b| b.len().saturating_sub(1))
                ),
            ));
        }
        let pos = Array2::from_shape_vec((n, d), data[..n * d].to_vec()).expect("checked size");
        self.state = ChainState::new(self.base, pos)?;
        self.logw = Array2::from_shape_vec(
            (self.groups, self.particles),
            data[n * d..n * d + n].to_vec(),
        )
        .expect("checked size");
        self.rngs = saved.rngs.iter().map(restore_rng).collect();
        self.resample_rng = restore_rng(&saved.resample_rng);
        self.t = saved.tally;
        self.eves = saved.eves;
        if saved.path_fresh {
            // The uninterrupted run had these values cached: rebuild them
            // without counting evaluations it did not make.
            let mut uncounted = 0;
            self.path.invalidate();
            self.path
                .prepare(self.state.position.view(), &mut uncounted);
        }
        Ok(())
    }

    fn finish(mut self, complete: bool) -> PassOutput {
        let mut ess = vec![0.0; self.groups];
        let mut ancestors = Vec::new();
        let m = self.particles;
        for g in 0..self.groups {
            let row = self.logw.row(g).to_vec();
            let (lz, v, e) = estimate(&row);
            self.t.log_z[g] += lz;
            ess[g] = e;
            if self.eves.is_empty() {
                self.t.var[g] += v;
            } else {
                let eves = &self.eves[g * m..(g + 1) * m];
                let (var, distinct) = lee_whiteley(&row, eves, self.t.resampled[g]);
                self.t.var[g] = var;
                ancestors.push(distinct);
            }
        }
        let t = self.t;
        PassOutput {
            log_weights: self.logw,
            positions: self.state.position,
            log_z: t.log_z,
            var: t.var,
            ess,
            acceptance: t.accepted.rate(),
            accepted: t.accepted,
            divergences: t.divergences,
            resamplings: t.resamplings,
            evals: t.evals,
            betas: t.betas_used,
            steps: t.steps_used,
            complete,
            ancestors,
            capped: t.capped,
        }
    }
}

impl Steps for Pass<'_> {
    fn finished(&self) -> bool {
        self.t.done
    }

    fn advance(&mut self) -> Result<()> {
        let b_from = *self.t.betas_used.last().expect("non-empty");
        self.path
            .prepare(self.state.position.view(), &mut self.t.evals);
        let Some(b_to) = self.next_temperature(b_from) else {
            self.t.done = true;
            return Ok(());
        };
        self.path.increment(b_from, b_to, &mut self.inc);
        for (w, i) in self.logw.iter_mut().zip(&self.inc) {
            *w += i;
        }
        self.t.betas_used.push(b_to);
        self.resample();
        // In reverse, the last transition (at the base) is not needed.
        if !(self.reverse && b_to == 0.0) {
            self.transition(b_to);
        }
        self.t.k += 1;
        self.t.done = (!self.reverse && b_to >= 1.0) || (self.reverse && b_to <= 0.0);
        Ok(())
    }

    fn done(&self) -> usize {
        self.t.k
    }

    fn progress(&mut self) -> Progress {
        let total = match &self.plan {
            Plan::Frozen { betas, .. } => betas.len() - 1,
            Plan::Smc {
                frozen: Some((bs, _)),
                ..
            } => bs.len() - 1,
            Plan::Pilot { .. } | Plan::Smc { .. } => self.config.temps,
        };
        Progress {
            phase: Phase::Annealing,
            step: self.t.k,
            total,
            accept_rate: self.t.accepted.rate(),
            divergences: self.t.divergences,
            step_size: self.t.steps_used.last().copied().unwrap_or(f64::NAN),
            contexts_done: 0,
            contexts: 0,
        }
    }

    fn save(&self, control: &Control) -> Result<()> {
        let path = control.checkpoint.as_ref().expect("asked for");
        let saved = Saved {
            tally: self.t.clone(),
            rngs: self.rngs.iter().map(save_rng).collect(),
            resample_rng: save_rng(&self.resample_rng),
            earlier: self.earlier.cloned(),
            path_fresh: self.path.is_fresh(),
            eves: self.eves.clone(),
            islands: match &self.plan {
                Plan::Smc { done, .. } => done.clone(),
                _ => Vec::new(),
            },
        };
        let mut data: Vec<f64> = self.state.position.iter().copied().collect();
        data.extend(self.logw.iter().copied());
        if let Some(e) = &self.earlier {
            data.extend(e.log_weights.iter().copied());
        }
        write_checkpoint(path, KIND, &control.settings, &saved, &data)
    }
}
