//! A parallel-tempering run as steps of the shared loop: its state, one
//! step (local moves, swaps, schedule rounds, stepping-stone sums), its
//! checkpoint and its output.

use super::Ladder;
use super::stone::{ln_add, ss_batches, stepping_stone};
use super::{KIND, PtOutput, PtSettings, PtStats, Round, respace_schedule};
use crate::error::Result;
use crate::io::write_checkpoint;
use crate::kernels::{Tuner, Tuning};
use crate::rng::{RngState, save_rng};
use crate::run::{Control, Observer, Progress, Steps, drive};
use crate::sampler::SampleConfig;
use ndarray::{Array2, Array3, Array4};
use std::time::Instant;

/// Everything carried from one step to the next (with the positions and
/// streams, a run continues from it bit-identically).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct RunState {
    pub(super) config: SampleConfig,
    pub(super) pt: PtSettings,
    pub(super) t: usize,
    pub(super) tuning: Tuning,
    pub(super) tuner: Tuner,
    pub(super) betas: Vec<f64>,
    pub(super) round_accept: Vec<f64>,
    pub(super) round_attempts: Vec<u64>,
    pub(super) rounds: Vec<Round>,
    pub(super) swap_accept: Vec<f64>,
    pub(super) swap_attempts: Vec<u64>,
    pub(super) trips: u64,
    pub(super) acceptance: Vec<f64>,
    pub(super) chain_acceptance: Vec<f64>,
    pub(super) chain_divergences: Vec<usize>,
    pub(super) divergences: usize,
    pub(super) warmup_divergences: usize,
    pub(super) energy_evals: u64,
    pub(super) grad_evals: u64,
    /// Stepping stone: per (chain, batch, pair) the log-sum-exp of the
    /// pair's log ratios, `f64::MIN` while empty.
    pub(super) ss: Vec<f64>,
    /// Sampling steps per batch.
    pub(super) ss_n: Vec<u64>,
    pub(super) draw: usize,
    pub(super) elapsed_s: f64,
    #[serde(skip)]
    pub(super) samples: Vec<f64>,
    #[serde(skip)]
    pub(super) energies: Option<Vec<f64>>,
    #[serde(skip)]
    pub(super) all: Option<Vec<f64>>,
}

#[derive(serde::Serialize)]
struct SavedRef<'a> {
    run: &'a RunState,
    elapsed_s: f64,
    positions: Vec<f64>,
    rngs: Vec<RngState>,
    swap_rngs: Vec<RngState>,
    labels: &'a [u32],
    heading: &'a [u8],
}

#[derive(serde::Deserialize)]
pub(super) struct Saved {
    pub(super) run: RunState,
    pub(super) elapsed_s: f64,
    pub(super) positions: Vec<f64>,
    pub(super) rngs: Vec<RngState>,
    pub(super) swap_rngs: Vec<RngState>,
    pub(super) labels: Vec<u32>,
    pub(super) heading: Vec<u8>,
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

struct Pt<'a> {
    ladder: Ladder<'a>,
    run: RunState,
    since: (f64, usize),
    start: Instant,
    log_z0: f64,
    /// The warm-up steps that end schedule rounds.
    ends: Vec<usize>,
    /// Scratch: the log ratios of the stepping stone.
    up: Vec<f64>,
}

impl Pt<'_> {
    fn total(&self) -> usize {
        self.run.config.total_steps().expect("validated")
    }

    fn sampling_steps(&self) -> usize {
        self.total() - self.run.config.warmup
    }

    fn record(&mut self) {
        let (c, r) = (self.ladder.chains, self.ladder.replicas);
        let d = self.ladder.state.dim();
        let run = &mut self.run;
        let draw = run.draw;
        let top = self.ladder.replica_rows(r - 1);
        let off = draw * c * d;
        for (k, v) in top.iter().enumerate() {
            run.samples[off + k] = *v;
        }
        if let Some(e) = run.energies.as_mut() {
            for chain in 0..c {
                e[draw * c + chain] = self
                    .ladder
                    .target_energy((r - 1) * c + chain, run.config.beta);
            }
        }
        if let Some(all) = run.all.as_mut() {
            let off = draw * r * c * d;
            for (k, v) in self.ladder.state.position.iter().enumerate() {
                all[off + k] = *v;
            }
        }
        run.draw += 1;
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
}

impl Steps for Pt<'_> {
    fn finished(&self) -> bool {
        self.run.t >= self.total()
    }

    fn advance(&mut self) -> Result<()> {
        let t = self.run.t;
        let warmup = self.run.config.warmup;
        let c = self.ladder.chains;
        let tally = self.ladder.local_move(&self.run.tuning);
        let run = &mut self.run;
        run.energy_evals += tally.energy_evals;
        run.grad_evals += tally.grad_evals;
        let steps = &self.ladder.steps;
        let div = steps.iter().filter(|s| s.divergent).count();
        self.since.0 += crate::kernels::mean_accept(steps);
        self.since.1 += 1;
        if t < warmup {
            run.warmup_divergences += div;
            self.ladder.update_tuner(&mut run.tuner, t, &mut run.tuning);
            // Round trips count in the sampling phase only.
            self.ladder
                .swap(t as u64, &mut run.round_accept, &mut run.round_attempts);
            if run.pt.adapt_schedule && self.ends.contains(&(t + 1)) {
                let rejection: Vec<f64> = run
                    .round_accept
                    .iter()
                    .zip(&run.round_attempts)
                    .map(|(a, n)| 1.0 - a / (*n).max(1) as f64)
                    .collect();
                if run.round_attempts.iter().all(|n| *n > 0) {
                    let betas = respace_schedule(self.ladder.betas(), &rejection);
                    run.rounds.push(Round {
                        end: t + 1,
                        lambda: rejection.iter().sum(),
                        betas: betas.clone(),
                    });
                    self.ladder.set_betas(betas.clone());
                    run.betas = betas;
                }
                run.round_accept.iter_mut().for_each(|a| *a = 0.0);
                run.round_attempts.iter_mut().for_each(|a| *a = 0);
            }
        } else {
            run.divergences += div;
            for (i, s) in steps.iter().enumerate() {
                run.acceptance[i / c] += s.accept_prob;
            }
            let top = &steps[steps.len() - c..];
            for (chain, s) in top.iter().enumerate() {
                run.chain_acceptance[chain] += s.accept_prob;
                run.chain_divergences[chain] += usize::from(s.divergent);
            }
            run.trips += self
                .ladder
                .swap(t as u64, &mut run.swap_accept, &mut run.swap_attempts);
            self.stepping_stone(t - warmup);
            if (t - warmup + 1).is_multiple_of(self.run.config.thin) {
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
            self.run.divergences + self.run.warmup_divergences,
            self.run.tuning.step_size().median(),
        )
    }

    fn save(&self, control: &Control) -> Result<()> {
        let path = control.checkpoint.as_ref().expect("asked for");
        let snap = SavedRef {
            run: &self.run,
            elapsed_s: self.run.elapsed_s + self.start.elapsed().as_secs_f64(),
            positions: self.ladder.state.position.iter().copied().collect(),
            rngs: self.ladder.rngs.iter().map(save_rng).collect(),
            swap_rngs: self.ladder.swap_rngs.iter().map(save_rng).collect(),
            labels: &self.ladder.labels,
            heading: &self.ladder.heading,
        };
        let (c, r, d) = (
            self.ladder.chains,
            self.ladder.replicas,
            self.ladder.state.dim(),
        );
        let draw = self.run.draw;
        let mut data = self.run.samples[..draw * c * d].to_vec();
        if let Some(e) = &self.run.energies {
            data.extend_from_slice(&e[..draw * c]);
        }
        if let Some(a) = &self.run.all {
            data.extend_from_slice(&a[..draw * r * c * d]);
        }
        write_checkpoint(path, KIND, &control.settings, &snap, &data)
    }
}

pub(super) fn finish(
    ladder: Ladder<'_>,
    run: RunState,
    observer: &mut dyn Observer,
    control: &Control,
    start: Instant,
) -> Result<PtOutput> {
    let log_z0 = ladder.log_z0();
    let ends = round_ends(run.config.warmup);
    let mut pt = Pt {
        ladder,
        run,
        since: (0.0, 0),
        start,
        log_z0,
        ends,
        up: Vec::new(),
    };
    let every = pt.run.config.observe_every;
    let complete = drive(&mut pt, observer, control, every)?;
    Ok(output(pt, complete))
}

fn output(pt: Pt<'_>, complete: bool) -> PtOutput {
    let Pt {
        ladder,
        run,
        start,
        log_z0,
        ..
    } = pt;
    let (c, r, d) = (ladder.chains, ladder.replicas, ladder.state.dim());
    let sampling = run.t.saturating_sub(run.config.warmup) as f64;
    let swap_accept: Vec<f64> = run
        .swap_accept
        .iter()
        .zip(&run.swap_attempts)
        .map(|(a, n)| if *n > 0 { a / *n as f64 } else { f64::NAN })
        .collect();
    let lambda = swap_accept.iter().map(|a| 1.0 - a).sum::<f64>();
    let (log_z, log_z_stderr, log_z_pairs) = stepping_stone(&run.ss, &run.ss_n, c, r, log_z0);
    let steps = run.tuning.step_size().expand(c * r);
    let step_size = (0..r)
        .map(|k| crate::kernels::StepSizes::per_chain(steps[k * c..(k + 1) * c].to_vec()).median())
        .collect();
    let stats = PtStats {
        kernel: ladder.kernel_name().to_string(),
        replicas: r,
        betas: run.betas.clone(),
        swap_accept,
        lambda,
        rounds: run.rounds.clone(),
        round_trips: run.trips,
        round_trip_rate: if sampling > 0.0 {
            run.trips as f64 / (c as f64 * sampling)
        } else {
            f64::NAN
        },
        round_trip_bound: 1.0 / (2.0 + 2.0 * lambda),
        log_z,
        log_z_stderr,
        log_z_pairs,
        acceptance: run
            .acceptance
            .iter()
            .map(|a| a / (c as f64 * sampling))
            .collect(),
        chain_acceptance: run.chain_acceptance.iter().map(|a| a / sampling).collect(),
        chain_divergences: run.chain_divergences.clone(),
        step_size,
        divergences: run.divergences,
        warmup_divergences: run.warmup_divergences,
        energy_evals: run.energy_evals,
        grad_evals: run.grad_evals,
        wall_s: run.elapsed_s + start.elapsed().as_secs_f64(),
        tuning: run.tuning.clone(),
    };
    let draws = run.draw;
    let mut samples = Array3::zeros((c, draws, d));
    for (draw, block) in run.samples.chunks_exact(c * d).take(draws).enumerate() {
        for chain in 0..c {
            samples
                .slice_mut(ndarray::s![chain, draw, ..])
                .assign(&ndarray::ArrayView1::from(
                    &block[chain * d..(chain + 1) * d],
                ));
        }
    }
    let energies = run.energies.map(|e| {
        let mut out = Array2::zeros((c, draws));
        for (draw, block) in e.chunks_exact(c).take(draws).enumerate() {
            out.column_mut(draw)
                .assign(&ndarray::ArrayView1::from(block));
        }
        out
    });
    let all_replicas = run.all.map(|a| {
        let mut out = Array4::zeros((r, c, draws, d));
        for (draw, block) in a.chunks_exact(r * c * d).take(draws).enumerate() {
            for k in 0..r {
                for chain in 0..c {
                    let off = (k * c + chain) * d;
                    out.slice_mut(ndarray::s![k, chain, draw, ..])
                        .assign(&ndarray::ArrayView1::from(&block[off..off + d]));
                }
            }
        }
        out
    });
    PtOutput {
        samples,
        energies,
        all_replicas,
        stats,
        final_positions: ladder.state.position.clone(),
        complete,
    }
}
