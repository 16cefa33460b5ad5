//! The sampling run as steps of the shared loop: warm-up with a
//! [`Tuner`], then recorded draws; checkpoints and resume.

use super::{RunStats, SampleConfig, SampleOutput, initial_positions};
use crate::energy::{Energy, Scaled};
use crate::error::{Error, Result};
use crate::io::{read_checkpoint, write_checkpoint};
use crate::kernels::{ChainState, ChainStep, Kernel, Tuner, Tuning, mean_accept};
use crate::rng::{ChainRng, RngState, chain_rngs_from, restore_rng, save_rng};
use crate::run::{Control, Observer, Progress, Steps, drive, in_pool};
use ndarray::{Array2, Array3};
use std::path::Path;
use std::time::Instant;

/// The checkpoint kind of sampling runs.
const KIND: &str = "sample";

/// Everything the driver carries from one step to the next: with the
/// energy and the kernel, a run continues from it bit-identically.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct RunState {
    config: SampleConfig,
    t: usize,
    tuning: Tuning,
    tuner: Tuner,
    acceptance: Vec<f64>,
    divergences: Vec<usize>,
    warmup_divergences: usize,
    total_divergences: usize,
    draw: usize,
    elapsed_s: f64,
    /// Evaluations beyond the kernel's nominal count per step (kernels
    /// whose cost varies; [`ChainStep::extra_evals`]), all chains, warm-up
    /// included.
    #[serde(default)]
    extra_evals: u64,
    /// Recorded draws so far, draw-major: `(draw, chain, dim)`, so the
    /// recorded part is a prefix and checkpoints write only that.
    #[serde(skip)]
    samples: Vec<f64>,
    /// Recorded energies so far, `(draw, chain)`.
    #[serde(skip)]
    energies: Option<Vec<f64>>,
}

/// A checkpoint's header: the run's counters and tuning with the chains'
/// positions and streams (the recorded draws go in the binary part).
#[derive(serde::Serialize)]
struct SavedRef<'a> {
    run: &'a RunState,
    elapsed_s: f64,
    positions: Vec<f64>,
    rngs: Vec<RngState>,
}

/// [`SavedRef`] as read back.
#[derive(serde::Deserialize)]
struct Saved {
    run: RunState,
    elapsed_s: f64,
    positions: Vec<f64>,
    rngs: Vec<RngState>,
}

/// A sampling run in progress.
struct Chains<'a> {
    target: &'a dyn Energy,
    kernel: &'a dyn Kernel,
    run: RunState,
    state: ChainState,
    rngs: Vec<ChainRng>,
    steps: Vec<ChainStep>,
    since: (f64, usize),
    start: Instant,
}

impl Chains<'_> {
    fn total(&self) -> usize {
        self.run.config.total_steps().expect("validated")
    }

    /// Copies the chains' current positions into the recorded draws.
    fn record(&mut self) {
        let (n, d) = (self.state.n_chains(), self.state.dim());
        let run = &mut self.run;
        let draw = run.draw;
        for c in 0..n {
            let off = (draw * n + c) * d;
            run.samples[off..off + d].copy_from_slice(
                self.state
                    .position
                    .row(c)
                    .as_slice()
                    .expect("standard layout"),
            );
            if let Some(e) = run.energies.as_mut() {
                e[draw * n + c] = self.state.energy[c] / run.config.beta;
            }
        }
        run.draw += 1;
    }
}

impl Steps for Chains<'_> {
    fn finished(&self) -> bool {
        self.run.t >= self.total()
    }

    fn advance(&mut self) -> Result<()> {
        let t = self.run.t;
        let warmup = self.run.config.warmup;
        let run = &mut self.run;
        self.kernel.step(
            self.target,
            &run.tuning,
            &mut self.state,
            &mut self.rngs,
            &mut self.steps,
        );
        self.since.0 += mean_accept(&self.steps);
        self.since.1 += 1;
        let div = self.steps.iter().filter(|s| s.divergent).count();
        run.total_divergences += div;
        run.extra_evals += self
            .steps
            .iter()
            .map(|s| u64::from(s.extra_evals))
            .sum::<u64>();
        if t < warmup {
            run.warmup_divergences += div;
            run.tuner.update(
                t,
                self.kernel,
                self.target,
                &self.state,
                &self.rngs,
                &self.steps,
                &mut run.tuning,
            );
        } else {
            for (i, s) in self.steps.iter().enumerate() {
                run.acceptance[i] += s.accept_prob;
                run.divergences[i] += usize::from(s.divergent);
            }
            if (t - warmup + 1).is_multiple_of(run.config.thin) {
                self.record();
            }
        }
        self.run.t += 1;
        Ok(())
    }

    fn done(&self) -> usize {
        self.run.t
    }

    fn progress(&mut self) -> Progress {
        Progress::of_chains(
            self.run.t,
            self.run.config.warmup,
            self.total(),
            std::mem::take(&mut self.since),
            self.run.total_divergences,
            self.run.tuning.step_size().median(),
        )
    }

    fn save(&self, control: &Control) -> Result<()> {
        let path = control.checkpoint.as_ref().expect("asked for");
        let snap = SavedRef {
            run: &self.run,
            elapsed_s: self.run.elapsed_s + self.start.elapsed().as_secs_f64(),
            positions: self.state.position.iter().copied().collect(),
            rngs: self.rngs.iter().map(save_rng).collect(),
        };
        let (n, d) = (self.state.n_chains(), self.state.dim());
        let draw = self.run.draw;
        let mut data = self.run.samples[..draw * n * d].to_vec();
        if let Some(e) = &self.run.energies {
            data.extend_from_slice(&e[..draw * n]);
        }
        write_checkpoint(path, KIND, &control.settings, &snap, &data)
    }
}

/// Runs `config.n_chains` chains of `kernel` on `exp(-beta F)`.
///
/// Warm-up (`config.warmup` steps) adapts a [`Tuning`] by the schedule of
/// [`Tuner`] (per-chain or shared dual averaging of the step size towards
/// the kernel's target acceptance, a diagonal inverse mass from two windows
/// of pooled variances); then `draws * thin` steps, recording every
/// `thin`-th. `init` gives starting positions (n_chains x dim), else
/// [`initial_positions`]. The output is a pure function of `config.seed`:
/// the kernel holds no state, so a kernel value reused gives the same draws.
///
/// ```
/// use boltz::kernels::Mala;
/// use boltz::sampler::{NoObserver, SampleConfig, sample};
/// let energy = boltz::model::load("gmm-ring")?.energy(None)?;
/// let mut config = SampleConfig::new();
/// (config.n_chains, config.warmup, config.draws) = (4, 200, 100);
/// let out = sample(energy.as_ref(), &Mala::new(0.1)?, &config, None, &mut NoObserver)?;
/// assert_eq!(out.samples.dim(), (4, 100, 2));
/// // The adapted tuning can start another run (or AIS) without warm-up.
/// config.tuning = Some(out.stats.tuning.clone());
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn sample(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    config: &SampleConfig,
    init: Option<Array2<f64>>,
    observer: &mut dyn Observer,
) -> Result<SampleOutput> {
    sample_with(energy, kernel, config, init, observer, &Control::default())
}

/// [`sample`] with checkpoints and a stop flag.
pub fn sample_with(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    config: &SampleConfig,
    init: Option<Array2<f64>>,
    observer: &mut dyn Observer,
    control: &Control,
) -> Result<SampleOutput> {
    let start = Instant::now();
    let d = energy.dim();
    config.validate(d)?;
    if let Some(n) = energy.fixed_rows()
        && n != config.n_chains
    {
        return Err(Error::param(
            "chains",
            format!("the model has {n} contexts (one per chain): use {n} chains or one context"),
        ));
    }
    let scaled = Scaled::new(energy, config.beta)?;
    let target: &dyn Energy = &scaled;
    let n = config.n_chains;
    let mut rngs = chain_rngs_from(config.seed, config.first_chain as u64, n);
    let y0 = match init {
        Some(y) if y.dim() != (n, d) => {
            return Err(Error::shape(
                "initial positions",
                format!("({n}, {d})"),
                format!("{:?}", y.shape()),
            ));
        }
        Some(y) => y,
        None => initial_positions(target, &config.init, &mut rngs)?,
    };
    let state = ChainState::new(target, y0)?;
    let (mut tuner, mut tuning) = Tuner::new(kernel, config.adaptation(), config.warmup, d);
    if let Some(t) = &config.tuning {
        tuning = t.clone();
    }
    tuner.start(kernel, target, &state, &rngs, &mut tuning);
    let run = RunState {
        config: config.clone(),
        t: 0,
        tuning,
        tuner,
        acceptance: vec![0.0; n],
        divergences: vec![0; n],
        warmup_divergences: 0,
        total_divergences: 0,
        draw: 0,
        elapsed_s: 0.0,
        extra_evals: 0,
        samples: vec![0.0; n * config.draws * d],
        energies: config.record_energies.then(|| vec![0.0; n * config.draws]),
    };
    in_pool(|| finish(target, kernel, run, state, rngs, observer, control, start))
}

/// Continues the run saved in `checkpoint` to its end (or to the next
/// stop), bit-identical to an uninterrupted run. `control.settings` must
/// equal the settings the run was started with, and `config` the run's
/// configuration (the checkpoint's copy is checked against it, never
/// trusted: an edited `beta` is refused); the energy and kernel must be
/// built as they were (the adapted tuning comes from the checkpoint).
pub fn resume(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    config: &SampleConfig,
    checkpoint: &Path,
    observer: &mut dyn Observer,
    control: &Control,
) -> Result<SampleOutput> {
    let start = Instant::now();
    let (saved, data): (Saved, Vec<f64>) = read_checkpoint(checkpoint, KIND, &control.settings)?;
    let bad = |r: &str| Error::checkpoint(checkpoint, r.to_string());
    if let Some(what) = config.differs_from(&saved.run.config) {
        return Err(bad(&format!(
            "its run configuration differs from this run's in {what}; refusing an edited checkpoint"
        )));
    }
    let mut run = saved.run;
    run.config = config.clone();
    run.elapsed_s = saved.elapsed_s;
    let c = run.config.clone();
    let d = energy.dim();
    let n_samples = c
        .n_chains
        .checked_mul(run.draw)
        .and_then(|x| x.checked_mul(d))
        .ok_or_else(|| bad("absurd sizes"))?;
    let n_energies = if c.record_energies {
        c.n_chains * run.draw
    } else {
        0
    };
    if saved.positions.len() != c.n_chains * d
        || saved.rngs.len() != c.n_chains
        || run.draw > c.draws
        || data.len() != n_samples + n_energies
        || c.validate(d).is_err()
    {
        return Err(bad("its sizes do not match the model and settings"));
    }
    // Every counter in range and consistent with the others: the step
    // index within the run, the draws recorded for it, per-chain tallies,
    // a usable tuning, finite positions and draws.
    let total = c.total_steps().expect("validated");
    let recorded = run.t.saturating_sub(c.warmup) / c.thin;
    if run.t > total
        || run.draw != recorded
        || run.acceptance.len() != c.n_chains
        || run.divergences.len() != c.n_chains
        || !run.tuning.fits(c.n_chains, d)
        || !run.tuner.fits(c.warmup, c.n_chains, d)
        || !run.elapsed_s.is_finite()
        || saved.positions.iter().chain(&data).any(|v| !v.is_finite())
        || run
            .acceptance
            .iter()
            .any(|a| !(0.0..=total as f64).contains(a))
        || !tallies_fit(&run, c.n_chains)
        || !run.tuner.agrees(
            &Tuner::new(kernel, c.adaptation(), c.warmup, d).0,
            run.t,
            c.n_chains,
            &run.tuning,
        )
        || saved
            .rngs
            .iter()
            .zip(chain_rngs_from(c.seed, c.first_chain as u64, c.n_chains))
            .any(|(s, e)| !crate::rng::same_stream(s, &e))
    {
        return Err(bad(
            "its state is out of range for these settings; refusing a damaged or edited checkpoint",
        ));
    }
    run.samples = data[..n_samples].to_vec();
    run.samples.resize(c.n_chains * c.draws * d, 0.0);
    run.energies = c.record_energies.then(|| {
        let mut e = data[n_samples..].to_vec();
        e.resize(c.n_chains * c.draws, 0.0);
        e
    });
    let scaled = Scaled::new(energy, c.beta)?;
    let target: &dyn Energy = &scaled;
    let positions = Array2::from_shape_vec((c.n_chains, d), saved.positions).expect("checked size");
    let state = ChainState::new(target, positions)?;
    let rngs: Vec<ChainRng> = saved.rngs.iter().map(restore_rng).collect();
    in_pool(|| finish(target, kernel, run, state, rngs, observer, control, start))
}

/// The divergence and evaluation tallies of a checkpoint within what its
/// steps can have made: at most one divergence per chain and step, and
/// at most 2^20 extra evaluations per chain and step (NUTS at its deepest
/// tree makes 2^max_depth).
fn tallies_fit(run: &RunState, n: usize) -> bool {
    let warm = run.t.min(run.config.warmup);
    let sampled = run.t - warm;
    let most = |steps: usize| steps.saturating_mul(n);
    run.divergences.iter().all(|&d| d <= sampled)
        && run.warmup_divergences <= most(warm)
        && run.total_divergences == run.warmup_divergences + run.divergences.iter().sum::<usize>()
        && run.extra_evals <= (most(run.t) as u64).saturating_mul(1 << 20)
}

/// Drives the run on the shared loop and gathers the output.
#[allow(clippy::too_many_arguments)]
fn finish(
    target: &dyn Energy,
    kernel: &dyn Kernel,
    run: RunState,
    state: ChainState,
    rngs: Vec<ChainRng>,
    observer: &mut dyn Observer,
    control: &Control,
    start: Instant,
) -> Result<SampleOutput> {
    let n = state.n_chains();
    let mut chains = Chains {
        target,
        kernel,
        run,
        state,
        rngs,
        steps: vec![ChainStep::default(); n],
        since: (0.0, 0),
        start,
    };
    let observe_every = chains.run.config.observe_every;
    let complete = drive(&mut chains, observer, control, observe_every)?;
    Ok(output(chains, complete))
}

fn output(chains: Chains<'_>, complete: bool) -> SampleOutput {
    let Chains {
        kernel,
        run,
        state,
        start,
        ..
    } = chains;
    let (n, d) = (state.n_chains(), state.dim());
    let sampling_steps = run.t.saturating_sub(run.config.warmup) as f64;
    let acceptance = run
        .acceptance
        .iter()
        .map(|a| {
            if sampling_steps > 0.0 {
                a / sampling_steps
            } else {
                f64::NAN
            }
        })
        .collect();
    let steps_total = run.t as u64 * n as u64;
    let stats = RunStats {
        kernel: kernel.name().to_string(),
        acceptance,
        divergences: run.divergences.clone(),
        warmup_divergences: run.warmup_divergences,
        step_size: run.tuning.step_size().median(),
        step_sizes: run.tuning.step_size().expand(n),
        inv_mass: run.tuning.inv_mass().map(<[f64]>::to_vec),
        tuning: run.tuning.clone(),
        grad_evals: steps_total * kernel.grad_evals_per_step() as u64
            + n as u64
            + if kernel.grad_evals_per_step() > 0 {
                run.extra_evals
            } else {
                0
            },
        energy_evals: steps_total * kernel.grad_evals_per_step().max(1) as u64
            + n as u64
            + run.extra_evals,
        wall_s: run.elapsed_s + start.elapsed().as_secs_f64(),
    };
    let draws = run.draw;
    // Draw-major storage to the (chains, draws, dim) the caller gets.
    let mut samples = Array3::zeros((n, draws, d));
    for (draw, block) in run.samples.chunks_exact(n * d).take(draws).enumerate() {
        for c in 0..n {
            samples
                .slice_mut(ndarray::s![c, draw, ..])
                .assign(&ndarray::ArrayView1::from(&block[c * d..(c + 1) * d]));
        }
    }
    let energies = run.energies.map(|e| {
        let mut out = Array2::zeros((n, draws));
        for (draw, block) in e.chunks_exact(n).take(draws).enumerate() {
            out.column_mut(draw)
                .assign(&ndarray::ArrayView1::from(block));
        }
        out
    });
    SampleOutput {
        samples,
        energies,
        stats,
        final_state: state,
        complete,
    }
}
