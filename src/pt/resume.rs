//! Resuming a parallel-tempering run: its checkpoint checked field by
//! field against the run's settings before anything is used.

use super::run::{
    RunState, Saved, SavedRun, chain_betas, finish, ladders, round_ends, schedule, transition,
};
use super::stone::ss_batches;
use super::{KIND, Ladder, PtOutput, PtSettings, row_rngs, swap_rng, validate};
use crate::ais::Base;
use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::io::read_checkpoint;
use crate::kernels::{Adaptation, Gibbs, Kernel, KernelSpec, Tuner};
use crate::rng::restore_rng;
use crate::run::{ChainRun, Control, Observer, in_pool};
use crate::sampler::SampleConfig;
use crate::tally::is_ladder;
use ndarray::Array2;
use std::path::Path;
use std::time::Instant;

/// Continues the run saved in `checkpoint` (same energy, base, kernel spec
/// and `control.settings`): the output equals the uninterrupted run's.
/// `run` is the run's configuration and tempering settings: the
/// checkpoint's copies are checked against them, never trusted.
pub fn resume(
    energy: &dyn Energy,
    base: &Base,
    spec: &KernelSpec,
    run: (&SampleConfig, &PtSettings),
    checkpoint: &Path,
    observer: &mut dyn Observer,
    control: &Control,
) -> Result<PtOutput> {
    let start = Instant::now();
    let (saved, data): (Saved, Vec<f64>) = read_checkpoint(checkpoint, KIND, &control.settings)?;
    let bad = |why: &str| Error::checkpoint(checkpoint, why.to_string());
    let (config, settings) = run;
    let Saved { engine, run: saved } = saved;
    let differs = config
        .differs_from(&saved.run.config)
        .or_else(|| (saved.run.pt != *settings).then(|| "its tempering settings".to_string()));
    if let Some(what) = differs {
        return Err(bad(&format!(
            "its run configuration differs from this run's in {what}; refusing an edited checkpoint"
        )));
    }
    let d = energy.dim();
    let cfg = config.clone();
    let betas0 = validate(&cfg, settings, d).map_err(|_| bad("its settings are invalid"))?;
    let (c, r) = (cfg.n_chains, settings.replicas);
    let n = c * r;
    let out_of_range =
        "its state is out of range for these settings; refusing a damaged or edited checkpoint";
    if betas0.len() != r || engine.t > schedule(&cfg).total() || !state_fits(&saved, engine.t, d) {
        return Err(bad(out_of_range));
    }
    let SavedRun {
        run: mut state,
        positions,
        rngs,
        swap_rngs,
        labels,
        heading,
    } = saved;
    state.config = cfg.clone();
    let positions = Array2::from_shape_vec((n, d), positions).expect("checked size");
    in_pool(|| {
        // The caches are rebuilt at the saved positions (not counted: the
        // uninterrupted run had them from its last moves).
        let (mut ladder, _) = Ladder::new(
            energy,
            base,
            spec,
            cfg.beta,
            cfg.first_chain..cfg.first_chain + c,
            betas0,
            cfg.seed,
            Some(positions),
        )?;
        ladder.set_betas(chain_betas(&state.betas, c, r));
        // The tuner must be one this run's can have become.
        let gibbs = Gibbs::default();
        let kernel: &dyn Kernel = ladder.kernel().unwrap_or(&gibbs);
        let adaptation = Adaptation {
            step_size: cfg.adapt_step_size,
            shared_step: false,
            mass: false,
            pooled_mass: false,
            dense_mass: false,
            windows: crate::kernels::MassWindows::default(),
        };
        let fresh = Tuner::new(kernel, adaptation, cfg.warmup, d).0;
        if !state.tuner.agrees(&fresh, engine.t, n, &state.tuning) {
            return Err(bad(
                "its adaptation state is out of range for these settings; refusing a damaged or edited checkpoint",
            ));
        }
        ladder.rngs = rngs.iter().map(restore_rng).collect();
        ladder.swap_rngs = swap_rngs.iter().map(restore_rng).collect();
        ladder.labels = labels;
        ladder.heading = heading;
        let run = ChainRun::resume(
            transition(ladder, state),
            schedule(&cfg),
            KIND,
            engine,
            &data,
        )
        .map_err(|why| bad(&format!("{why}; refusing a damaged or edited checkpoint")))?;
        finish(run, observer, control, start)
    })
}

/// Every field of a checkpoint's tempering state in range for its
/// (checked) settings at step `t` and consistent with the others: sizes,
/// temperatures, labels, swap and stepping-stone tallies, tuning, the
/// streams' keys, finite values (the executor checks its own counts and
/// the recorded draws).
fn state_fits(saved: &SavedRun, t: usize, d: usize) -> bool {
    let run = &saved.run;
    let cfg = &run.config;
    let (c, r) = (cfg.n_chains, run.pt.replicas);
    let n = c * r;
    let g = ladders(run.pt.ladder, c);
    let sampling = cfg.draws * cfg.thin;
    let batches = ss_batches(sampling);
    let betas_ok = run.betas.len() == g * r && run.betas.chunks(r).all(|b| is_ladder(b, r));
    let labels_ok = saved.labels.len() == n
        && (0..c).all(|chain| {
            let mut l: Vec<u32> = (0..r).map(|k| saved.labels[k * c + chain]).collect();
            l.sort_unstable();
            l.iter().enumerate().all(|(k, v)| *v as usize == k)
        });
    !(saved.positions.len() != n * d
        || saved.rngs.len() != n
        || saved.swap_rngs.len() != c
        || !betas_ok
        || !labels_ok
        || saved.heading.len() != n
        || saved.heading.iter().any(|h| *h > 2)
        || [&run.round_accept, &run.swap_accept]
            .iter()
            .any(|v| v.len() != g * (r - 1))
        || run.round_attempts.len() != r - 1
        || run.swap_attempts.len() != r - 1
        || run.trips.len() != g
        || run.acceptance.len() != g * r
        || run.ss.len() != c * batches * (r - 1)
        || run.ss_n.len() != batches
        || !run.tuning.fits(n, d)
        || !run.tuner.fits(cfg.warmup, n, d)
        || saved.positions.iter().any(|v| !v.is_finite())
        || run.ss.iter().any(|v| v.is_nan())
        || !tallies_fit(run, t, c, r)
        || saved
            .rngs
            .iter()
            .zip(row_rngs(cfg.seed, cfg.first_chain..cfg.first_chain + c, r))
            .any(|(s, e)| !crate::rng::same_stream(s, &e))
        || saved.swap_rngs.iter().enumerate().any(|(chain, s)| {
            !crate::rng::same_stream(s, &swap_rng(cfg.seed, cfg.first_chain + chain))
        }))
}

/// The tempering tallies of a checkpoint at step `t` within what its
/// steps can have made (`c` chains of `r` replicas): swap acceptances at
/// most the attempts, exactly one attempt per chain, pair and step of its
/// parity, per-replica acceptance sums at most the steps, stepping-stone
/// batch counts that add up to the sampling steps done, rounds of valid
/// temperatures.
fn tallies_fit(run: &RunState, t: usize, c: usize, r: usize) -> bool {
    let warm = t.min(run.config.warmup);
    let sampled = t - warm;
    let g = ladders(run.pt.ladder, c);
    let per_step = |steps: usize| (steps as u64).saturating_mul(c as u64);
    // Per ladder and pair: at most the ladder's attempts (every chain's,
    // shared out over the ladders).
    let swaps_ok = |accept: &[f64], attempts: &[u64], most: u64| {
        attempts.iter().all(|n| *n <= most)
            && accept.chunks(r - 1).all(|a| {
                a.iter()
                    .zip(attempts)
                    .all(|(a, n)| a.is_finite() && *a >= 0.0 && *a <= (*n / g as u64) as f64)
            })
    };
    let sums_ok = |v: &[f64], most: f64| v.iter().all(|a| a.is_finite() && *a >= 0.0 && *a <= most);
    let betas_ok = |b: &[f64]| b.len() == g * r && b.chunks(r).all(|b| is_ladder(b, r));
    // Pair p is attempted once per chain at every step of its parity:
    // since the last schedule round ended (warm-up) and since warm-up.
    let round_start = if run.pt.adapt_schedule {
        round_ends(run.config.warmup)
            .into_iter()
            .filter(|e| *e <= warm)
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    let attempts =
        |from: usize, to: usize, p: usize| per_step((from..to).filter(|s| s % 2 == p % 2).count());
    let exact = |v: &[u64], from: usize, to: usize| {
        v.iter()
            .enumerate()
            .all(|(p, n)| *n == attempts(from, to, p))
    };
    exact(&run.round_attempts, round_start, warm)
        && exact(
            &run.swap_attempts,
            run.config.warmup,
            t.max(run.config.warmup),
        )
        && swaps_ok(&run.swap_accept, &run.swap_attempts, per_step(sampled))
        && swaps_ok(&run.round_accept, &run.round_attempts, per_step(warm))
        && run
            .trips
            .iter()
            .all(|n| *n <= per_step(sampled).saturating_mul(r as u64) / g as u64)
        && sums_ok(&run.acceptance, (sampled * c / g) as f64)
        && run.ss_n.iter().sum::<u64>() == sampled as u64
        && run.rounds.iter().all(|k| {
            k.end <= run.config.warmup
                && k.lambda.len() == g
                && k.lambda.iter().all(|l| l.is_finite() && *l >= 0.0)
                && betas_ok(&k.betas)
        })
        && run.rounds.windows(2).all(|w| w[0].end < w[1].end)
}
