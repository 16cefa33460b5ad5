//! A parallel-tempering run as a [`Transition`] of the chain engine: one
//! step (local moves, swaps, schedule rounds, stepping-stone sums), its
//! checkpoint state and its output.

use super::Ladder;
use super::stone::{ln_add, ss_batches};
use super::{LadderGroup, LadderMode, LadderTally, PtOutput, PtSettings, respace_schedule};
use crate::error::{Error, Result};
use crate::kernels::{ChainStep, Tuner, Tuning};
use crate::rng::{RngState, save_rng};
use crate::run::{
    ChainRun, Control, Finished, Observer, Schedule, Transition, by_chain, energies_by_chain,
};
use crate::sampler::SampleConfig;
use ndarray::Array4;
use std::time::Instant;

/// Everything the ladder's transition carries from one step to the next
/// besides the executor's counts (with the positions and streams, a run
/// continues from it bit-identically).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct RunState {
    pub(super) config: SampleConfig,
    pub(super) pt: PtSettings,
    pub(super) tuning: Tuning,
    pub(super) tuner: Tuner,
    /// Every ladder's temperatures, ladder-major (`ladders x replicas`:
    /// one ladder for all chains, or one per chain, [`ladders`]).
    pub(super) betas: Vec<f64>,
    /// Per ladder and pair (ladder-major): swap acceptance summed since
    /// the last schedule round.
    pub(super) round_accept: Vec<f64>,
    /// Per pair: swap attempts, every chain's, since the last round.
    pub(super) round_attempts: Vec<u64>,
    /// The schedule rounds so far.
    pub(super) rounds: Vec<LadderRound>,
    /// Per ladder and pair (ladder-major): swap acceptance summed over the
    /// sampling steps.
    pub(super) swap_accept: Vec<f64>,
    /// Per pair: swap attempts, every chain's, in the sampling phase.
    pub(super) swap_attempts: Vec<u64>,
    /// Per ladder: round trips in the sampling phase.
    pub(super) trips: Vec<u64>,
    /// Per ladder and replica (ladder-major): local-move acceptance summed
    /// over the sampling steps.
    pub(super) acceptance: Vec<f64>,
    pub(super) energy_evals: u64,
    pub(super) grad_evals: u64,
    /// Stepping stone: per (chain, batch, pair) the log-sum-exp of the
    /// pair's log ratios, `f64::MIN` while empty.
    pub(super) ss: Vec<f64>,
    /// Sampling steps per batch.
    pub(super) ss_n: Vec<u64>,
}

/// One schedule round: where it ended, each ladder's Lambda in it and
/// its temperatures after it (ladder-major).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct LadderRound {
    pub(super) end: usize,
    pub(super) lambda: Vec<f64>,
    pub(super) betas: Vec<f64>,
}

#[derive(serde::Serialize)]
struct SavedRef<'a> {
    #[serde(flatten)]
    run: &'a RunState,
    positions: Vec<f64>,
    rngs: Vec<RngState>,
    swap_rngs: Vec<RngState>,
    labels: &'a [u32],
    heading: &'a [u8],
}

/// A tempering checkpoint's run state as read back.
#[derive(serde::Deserialize)]
pub(super) struct SavedRun {
    #[serde(flatten)]
    pub(super) run: RunState,
    pub(super) positions: Vec<f64>,
    pub(super) rngs: Vec<RngState>,
    pub(super) swap_rngs: Vec<RngState>,
    pub(super) labels: Vec<u32>,
    pub(super) heading: Vec<u8>,
}

/// A tempering checkpoint's header.
#[derive(serde::Deserialize)]
pub(super) struct Saved {
    pub(super) engine: crate::run::Tally,
    pub(super) run: SavedRun,
}

/// The number of ladders of a run of `chains` chains.
pub(super) fn ladders(mode: LadderMode, chains: usize) -> usize {
    match mode {
        LadderMode::Pooled => 1,
        LadderMode::PerChain => chains,
    }
}

/// Every chain's temperatures (chain-major) from every ladder's.
pub(super) fn chain_betas(betas: &[f64], chains: usize, replicas: usize) -> Vec<f64> {
    let g = betas.len() / replicas;
    (0..chains)
        .flat_map(|c| {
            let k = c * g / chains;
            betas[k * replicas..(k + 1) * replicas].iter().copied()
        })
        .collect()
}

/// The warm-up steps after which the schedule is re-spaced: 1/64, 1/32,
/// ..., 1/2 and 3/4 of warm-up (distinct, at least one step in).
pub(super) fn round_ends(warmup: usize) -> Vec<usize> {
    let mut ends: Vec<usize> = [64, 32, 16, 8, 4, 2]
        .iter()
        .map(|k| warmup / k)
        .chain(std::iter::once(warmup * 3 / 4))
        .filter(|&e| e >= 2)
        .collect();
    ends.dedup();
    ends
}

/// The ladder's transition: local moves of every replica, swaps,
/// schedule rounds in warm-up, stepping-stone sums after it.
pub(super) struct Pt<'a> {
    ladder: Ladder<'a>,
    run: RunState,
    log_z0: f64,
    /// The warm-up steps that end schedule rounds.
    ends: Vec<usize>,
    /// Scratch: the log ratios of the stepping stone.
    up: Vec<f64>,
    /// Scratch: warm-up's round trips per ladder (not counted).
    warm_trips: Vec<u64>,
}

impl Pt<'_> {
    fn sampling_steps(&self) -> usize {
        self.run.config.draws * self.run.config.thin
    }

    /// Adds the sampling step's log ratios to the stepping-stone sums.
    fn stepping_stone(&mut self, s: usize) {
        let (c, r) = (self.ladder.chains, self.ladder.replicas);
        let batches = ss_batches(self.sampling_steps());
        let k = s * batches / self.sampling_steps();
        self.run.ss_n[k] += 1;
        let mut up = std::mem::take(&mut self.up);
        self.ladder.ratios_up(&mut up);
        let run = &mut self.run;
        for chain in 0..c {
            for p in 0..r - 1 {
                let inc = up[p * c + chain];
                let idx = (chain * batches + k) * (r - 1) + p;
                if !inc.is_nan() {
                    run.ss[idx] = ln_add(run.ss[idx], inc);
                }
            }
        }
        self.up = up;
    }

    /// Warm-up's part of step `t`: the tuner, swaps counted for the
    /// schedule's round, and where a round ends each ladder re-spaced by
    /// its chains' swaps.
    fn warmup(&mut self, t: usize) {
        let run = &mut self.run;
        let (c, r) = (self.ladder.chains, self.ladder.replicas);
        let g = run.trips.len();
        self.ladder.update_tuner(&mut run.tuner, t, &mut run.tuning);
        // Round trips count in the sampling phase only.
        self.ladder.swap(
            t as u64,
            &mut run.round_accept,
            &mut run.round_attempts,
            &mut self.warm_trips,
        );
        if run.pt.adapt_schedule && self.ends.contains(&(t + 1)) {
            if run.round_attempts.iter().all(|n| *n > 0) {
                let mut lambda = Vec::with_capacity(g);
                let mut betas = Vec::with_capacity(g * r);
                for k in 0..g {
                    // The ladder's attempts: every chain's, over the ladders.
                    let rejection: Vec<f64> = run.round_accept[k * (r - 1)..(k + 1) * (r - 1)]
                        .iter()
                        .zip(&run.round_attempts)
                        .map(|(a, n)| 1.0 - a / (*n / g as u64) as f64)
                        .collect();
                    lambda.push(rejection.iter().sum());
                    betas.extend(respace_schedule(&run.betas[k * r..(k + 1) * r], &rejection));
                }
                run.rounds.push(LadderRound {
                    end: t + 1,
                    lambda,
                    betas: betas.clone(),
                });
                self.ladder.set_betas(chain_betas(&betas, c, r));
                run.betas = betas;
            }
            run.round_accept.iter_mut().for_each(|a| *a = 0.0);
            run.round_attempts.iter_mut().for_each(|a| *a = 0);
        }
    }
}

impl Transition for Pt<'_> {
    fn rows(&self) -> usize {
        self.ladder.chains * self.ladder.replicas
    }

    fn chains(&self) -> usize {
        self.ladder.chains
    }

    fn advance(&mut self, t: usize, warmup: bool) -> Result<&[ChainStep]> {
        let c = self.ladder.chains;
        let tally = self.ladder.local_move(&self.run.tuning);
        self.run.energy_evals += tally.energy_evals;
        self.run.grad_evals += tally.grad_evals;
        if warmup {
            self.warmup(t);
        } else {
            let run = &mut self.run;
            let (r, g) = (self.ladder.replicas, run.trips.len());
            for (i, s) in self.ladder.steps.iter().enumerate() {
                run.acceptance[(i % c) * g / c * r + i / c] += s.accept_prob;
            }
            self.ladder.swap(
                t as u64,
                &mut run.swap_accept,
                &mut run.swap_attempts,
                &mut run.trips,
            );
            self.stepping_stone(t - self.run.config.warmup);
        }
        Ok(&self.ladder.steps)
    }

    fn tracks(&self) -> Vec<usize> {
        let (c, r, d) = (
            self.ladder.chains,
            self.ladder.replicas,
            self.ladder.state.dim(),
        );
        let mut w = vec![c * d];
        if self.run.config.record_energies {
            w.push(c);
        }
        if self.run.pt.keep_all_replicas {
            w.push(r * c * d);
        }
        w
    }

    fn record(&self, out: &mut [&mut [f64]]) {
        let (c, r) = (self.ladder.chains, self.ladder.replicas);
        let top = self.ladder.replica_rows(r - 1);
        for (o, v) in out[0].iter_mut().zip(top.iter()) {
            *o = *v;
        }
        let mut k = 1;
        if self.run.config.record_energies {
            for (chain, o) in out[k].iter_mut().enumerate().take(c) {
                *o = self
                    .ladder
                    .target_energy((r - 1) * c + chain, self.run.config.beta);
            }
            k += 1;
        }
        if self.run.pt.keep_all_replicas {
            for (o, v) in out[k].iter_mut().zip(self.ladder.state.position.iter()) {
                *o = *v;
            }
        }
    }

    fn step_size(&self) -> f64 {
        self.run.tuning.step_size().median()
    }

    fn save(&self) -> Result<serde_json::Value> {
        let snap = SavedRef {
            run: &self.run,
            positions: self.ladder.state.position.iter().copied().collect(),
            rngs: self.ladder.rngs.iter().map(save_rng).collect(),
            swap_rngs: self.ladder.swap_rngs.iter().map(save_rng).collect(),
            labels: &self.ladder.labels,
            heading: &self.ladder.heading,
        };
        serde_json::to_value(snap).map_err(|e| Error::Numerical(format!("checkpoint: {e}")))
    }
}

/// The schedule of a tempering run.
pub(super) fn schedule(config: &SampleConfig) -> Schedule {
    Schedule::new(config.warmup, config.draws, config.thin)
}

/// The transition of a run on `ladder` from `run`.
pub(super) fn transition<'a>(ladder: Ladder<'a>, run: RunState) -> Pt<'a> {
    Pt {
        log_z0: ladder.log_z0(),
        ends: round_ends(run.config.warmup),
        warm_trips: vec![0; run.trips.len()],
        ladder,
        run,
        up: Vec::new(),
    }
}

/// Drives the run on the chain engine and gathers the output.
pub(super) fn finish(
    run: ChainRun<Pt<'_>>,
    observer: &mut dyn Observer,
    control: &Control,
    start: Instant,
) -> Result<PtOutput> {
    let mut run = run.started_at(start);
    let every = run.transition().run.config.observe_every;
    let complete = run.drive_every(observer, control, every)?;
    Ok(output(run.finish(), complete))
}

/// The run's tallies by ladder ([`LadderTally`]).
fn ladder_tally(ladder: &Ladder<'_>, run: &RunState, log_z0: f64) -> LadderTally {
    let (c, r) = (ladder.chains, ladder.replicas);
    let g = run.trips.len();
    let per = c / g;
    let batches = run.ss_n.len();
    let steps = run.tuning.step_size().expand(c * r);
    let groups = (0..g)
        .map(|k| LadderGroup {
            chains: per,
            betas: run.betas[k * r..(k + 1) * r].to_vec(),
            round_lambda: run.rounds.iter().map(|x| x.lambda[k]).collect(),
            round_betas: run
                .rounds
                .iter()
                .map(|x| x.betas[k * r..(k + 1) * r].to_vec())
                .collect(),
            swap_accept: run.swap_accept[k * (r - 1)..(k + 1) * (r - 1)].to_vec(),
            trips: run.trips[k],
            acceptance: run.acceptance[k * r..(k + 1) * r].to_vec(),
            ss: run.ss[k * per * batches * (r - 1)..(k + 1) * per * batches * (r - 1)].to_vec(),
            step_sizes: (k * per..(k + 1) * per)
                .flat_map(|chain| (0..r).map(move |i| (chain, i)))
                .map(|(chain, i)| steps[i * c + chain])
                .collect(),
        })
        .collect();
    LadderTally {
        kernel: ladder.kernel_name().to_string(),
        replicas: r,
        log_z0,
        mode: run.pt.ladder,
        round_ends: run.rounds.iter().map(|x| x.end).collect(),
        swap_attempts: run.swap_attempts.clone(),
        ss_n: run.ss_n.clone(),
        energy_evals: run.energy_evals,
        grad_evals: run.grad_evals,
        groups,
    }
}

fn output(done: Finished<Pt<'_>>, complete: bool) -> PtOutput {
    let Finished {
        transition: pt,
        tally,
        tracks,
        wall_s,
    } = done;
    let Pt {
        ladder,
        run,
        log_z0,
        ..
    } = pt;
    let (c, r, d) = (ladder.chains, ladder.replicas, ladder.state.dim());
    let sampling = tally.t.saturating_sub(run.config.warmup) as f64;
    let chain_tally = ladder_tally(&ladder, &run, log_z0);
    let mut stats = chain_tally.stats();
    stats.chain_acceptance = tally
        .chain_acceptance
        .iter()
        .map(|a| a / sampling)
        .collect();
    stats.chain_divergences.clone_from(&tally.chain_divergences);
    stats.divergences = tally.divergences;
    stats.warmup_divergences = tally.warmup_divergences;
    stats.wall_s = wall_s;
    stats.tuning = Some(run.tuning.clone());
    let draws = tally.draw;
    let mut tracks = tracks.into_iter();
    let samples = by_chain(&tracks.next().expect("positions"), c, d);
    let energies = run
        .config
        .record_energies
        .then(|| energies_by_chain(&tracks.next().expect("energies"), c));
    let all_replicas = run.pt.keep_all_replicas.then(|| {
        let a = tracks.next().expect("every replica");
        Array4::from_shape_fn((r, c, draws, d), |(k, chain, draw, j)| {
            a[((draw * r + k) * c + chain) * d + j]
        })
    });
    PtOutput {
        samples,
        energies,
        all_replicas,
        stats,
        tally: chain_tally,
        final_positions: ladder.state.position.clone(),
        complete,
    }
}
