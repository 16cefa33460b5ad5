//! Parallel tempering: mode coverage on `gmm-ring` (and MALA alone failing
//! it), invariance from exact draws of every tempered distribution, the
//! stepping-stone log Z against exact values, round trips against the
//! number of replicas, determinism across thread counts, checkpoint and
//! resume, and persistent PT negatives.

use boltz::diagnostics::{chi_square_test, ess, ks_test};
use boltz::energy::{Energy, FnEnergy, Rbm, log_sum_exp, softplus};
use boltz::jobs::{LogzJob, logz};
use boltz::pt::{LadderMode, PtOutput, PtSettings, sample};
use boltz::sampler::SampleConfig;
use boltz::{Base, KernelSpec, NoObserver};
use ndarray::{Array2, ArrayView2, Axis};
use rand::{RngExt, SeedableRng};
use statrs::distribution::{ContinuousCDF, Normal};

const ALPHA: f64 = 1e-4;

#[allow(clippy::too_many_arguments)]
fn run(
    model: &str,
    base: &Base,
    kernel: &str,
    chains: usize,
    replicas: usize,
    warmup: usize,
    draws: usize,
    seed: u64,
) -> PtOutput {
    let energy = boltz::model::load(model).unwrap().energy(None).unwrap();
    let mut config = SampleConfig::new();
    (config.n_chains, config.warmup, config.draws, config.seed) = (chains, warmup, draws, seed);
    sample(
        energy.as_ref(),
        base,
        &KernelSpec::new(kernel).unwrap(),
        &config,
        &PtSettings::new(replicas),
        None,
        &mut NoObserver,
        &Default::default(),
    )
    .unwrap()
}

/// The `gmm-ring` mode (0..8) nearest to each draw, (chains, draws).
fn ring_modes(samples: ndarray::ArrayView3<f64>) -> Array2<usize> {
    let (c, n, _) = samples.dim();
    Array2::from_shape_fn((c, n), |(i, t)| {
        let (x, y) = (samples[[i, t, 0]], samples[[i, t, 1]]);
        let k = (y.atan2(x) / (std::f64::consts::TAU / 8.0)).round() as i64;
        k.rem_euclid(8) as usize
    })
}

/// For each mode, `(fraction, MCSE)` of the draws in it (MCSE from the ESS
/// of the mode's indicator).
fn mode_fractions(modes: ArrayView2<usize>) -> Vec<(f64, f64)> {
    (0..8)
        .map(|k| {
            let ind = modes.mapv(|m| f64::from(u8::from(m == k)));
            let p = ind.mean().unwrap();
            let e = ess(ind.view());
            (p, (p * (1.0 - p) / e).sqrt())
        })
        .collect()
}

/// Every chain visits every one of the 8 modes.
fn every_chain_sees_every_mode(modes: ArrayView2<usize>) -> bool {
    modes.axis_iter(Axis(0)).all(|row| {
        let mut seen = [false; 8];
        row.iter().for_each(|m| seen[*m] = true);
        seen.iter().all(|s| *s)
    })
}

/// `gmm-ring`: PT's target draws put 1/8 of their mass in each mode within
/// 4 MCSE and every chain visits every mode; MALA alone, same chains and
/// steps, fails both (its chains stay in the modes they reach first).
#[test]
fn gmm_ring_modes_are_covered_by_pt_and_missed_by_mala_alone() {
    let base = Base::isotropic(2, 4.0).unwrap();
    let out = run("gmm-ring", &base, "mala", 16, 8, 1000, 4000, 0);
    let modes = ring_modes(out.samples.view());
    let fr = mode_fractions(modes.view());
    for (k, (p, se)) in fr.iter().enumerate() {
        let z = (p - 0.125) / se;
        println!("pt   mode {k}: {p:.4} +- {se:.4} (z {z:+.2})");
        assert!(
            z.abs() < 4.0,
            "PT mode {k}: fraction {p} is {z:.1} MCSE from 1/8"
        );
    }
    assert!(every_chain_sees_every_mode(modes.view()));
    assert!(out.stats.round_trips > 1000, "{}", out.stats.round_trips);

    // MALA alone: 16 chains, 5000 steps, from over-dispersed starts.
    let energy = boltz::model::load("gmm-ring")
        .unwrap()
        .energy(None)
        .unwrap();
    let mut config = SampleConfig::new();
    (config.n_chains, config.warmup, config.draws) = (16, 1000, 4000);
    let mala = boltz::kernels::Mala::new(0.1).unwrap();
    let alone =
        boltz::sampler::sample(energy.as_ref(), &mala, &config, None, &mut NoObserver).unwrap();
    let modes = ring_modes(alone.samples.view());
    let worst = mode_fractions(modes.view())
        .iter()
        .map(|(p, se)| ((p - 0.125) / se).abs())
        .fold(0.0, f64::max);
    println!("mala alone: worst mode fraction {worst:.1} MCSE from 1/8");
    assert!(!every_chain_sees_every_mode(modes.view()));
    assert!(worst > 4.0 || worst.is_nan());
}

/// A diagonal Gaussian `N(mu, diag(sd^2))` as an energy.
fn gaussian(mu: [f64; 3], sd: [f64; 3]) -> impl Energy {
    let fg = move |y: &[f64], g: &mut [f64]| {
        let mut e = 0.0;
        for j in 0..3 {
            let z = (y[j] - mu[j]) / sd[j];
            e += 0.5 * z * z;
            g[j] = z / sd[j];
        }
        e
    };
    FnEnergy::new(
        3,
        move |y: &[f64]| {
            let mut g = [0.0; 3];
            fg(y, &mut g)
        },
        fg,
    )
}

/// Invariance, geometric path: a Gaussian target from a Gaussian base, so
/// every tempered `f_b` is a Gaussian with exact draws. 4000 chains of 6
/// replicas start at exact draws of their temperatures; 10 PT steps (MALA
/// moves and swaps, no adaptation) later every replica's every coordinate
/// still passes KS against its exact law.
#[test]
fn pt_keeps_exact_draws_of_every_temperature_gaussian() {
    let (mu, sd) = ([1.0, -2.0, 0.5], [0.5, 1.0, 2.0]);
    let energy = gaussian(mu, sd);
    let s0 = 3.0;
    let base = Base::isotropic(3, s0).unwrap();
    let (c, r) = (4000, 6);
    let betas: Vec<f64> = vec![0.0, 0.05, 0.15, 0.35, 0.65, 1.0];
    // f_b: precision (1 - b)/s0^2 + b/sd^2, mean b mu / sd^2 / precision.
    let law = |b: f64, j: usize| {
        let prec = (1.0 - b) / (s0 * s0) + b / (sd[j] * sd[j]);
        (b * mu[j] / (sd[j] * sd[j]) / prec, 1.0 / prec.sqrt())
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let y0 = Array2::from_shape_fn((r * c, 3), |(i, j)| {
        let (m, s) = law(betas[i / c], j);
        m + s * normal.inverse_cdf(rng.random::<f64>())
    });
    let mut config = SampleConfig::new();
    (
        config.n_chains,
        config.warmup,
        config.draws,
        config.thin,
        config.seed,
    ) = (c, 0, 1, 10, 3);
    config.adapt_step_size = false;
    let settings = PtSettings {
        replicas: r,
        adapt_schedule: false,
        keep_all_replicas: true,
        betas: Some(betas.clone()),
        ladder: LadderMode::Pooled,
    };
    for kernel in ["mala", "hmc"] {
        let spec = KernelSpec::new(kernel).unwrap().step_size(0.4).unwrap();
        let out = sample(
            &energy,
            &base,
            &spec,
            &config,
            &settings,
            Some(y0.clone()),
            &mut NoObserver,
            &Default::default(),
        )
        .unwrap();
        let all = out.all_replicas.unwrap();
        let swap = &out.stats.swap_accept;
        assert!(swap.iter().all(|a| *a > 0.2), "swaps must happen: {swap:?}");
        for (k, &b) in betas.iter().enumerate() {
            for j in 0..3 {
                let (m, s) = law(b, j);
                let x: Vec<f64> = (0..c).map(|i| all[[k, i, 0, j]]).collect();
                let (_, p) = ks_test(&x, |v| normal.cdf((v - m) / s));
                assert!(
                    p > ALPHA,
                    "{kernel}: replica {k} (b {b}) coordinate {j}: KS p {p:.2e}"
                );
            }
        }
    }
}

/// Invariance, RBM parameter path with block Gibbs: a 6-visible RBM from a
/// Bernoulli base, every tempered law enumerated over the 64 states; 4000
/// chains of 5 replicas from exact draws, 6 PT steps, then chi-square of
/// every replica's states against its law.
#[test]
fn pt_keeps_exact_draws_of_every_temperature_rbm() {
    let w = Array2::from_shape_fn((6, 3), |(i, j)| 0.9 * ((i * 3 + j) as f64 * 0.7).sin());
    let vb = vec![0.3, -0.5, 0.1, 0.8, -0.2, 0.0];
    let hb = vec![-0.4, 0.2, 0.6];
    let rbm = Rbm::new(w.clone(), vb.clone(), hb.clone()).unwrap();
    let logit = vec![0.5, -0.3, 0.0, 0.2, -0.6, 0.4];
    let base = Base::Bernoulli {
        logit: logit.clone(),
    };
    let (c, r) = (4000, 5);
    let betas = vec![0.0, 0.3, 0.55, 0.8, 1.0];
    let states: Vec<[f64; 6]> = (0..64)
        .map(|s| std::array::from_fn(|i| f64::from(((s >> i) & 1) as u8)))
        .collect();
    let probs = |b: f64| -> Vec<f64> {
        let lf: Vec<f64> = states
            .iter()
            .map(|v| {
                let lin: f64 = (0..6)
                    .map(|i| v[i] * ((1.0 - b) * logit[i] + b * vb[i]))
                    .sum();
                let hid: f64 = (0..3)
                    .map(|j| softplus(b * (hb[j] + (0..6).map(|i| v[i] * w[[i, j]]).sum::<f64>())))
                    .sum();
                lin + hid
            })
            .collect();
        let z = log_sum_exp(&lf);
        lf.iter().map(|l| (l - z).exp()).collect()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut y0 = Array2::zeros((r * c, 6));
    for (k, &b) in betas.iter().enumerate() {
        let p = probs(b);
        for i in 0..c {
            let u: f64 = rng.random();
            let mut acc = 0.0;
            let s = p.iter().position(|q| {
                acc += q;
                u < acc
            });
            y0.row_mut(k * c + i)
                .assign(&ndarray::ArrayView1::from(&states[s.unwrap_or(63)]));
        }
    }
    let mut config = SampleConfig::new();
    (
        config.n_chains,
        config.warmup,
        config.draws,
        config.thin,
        config.seed,
    ) = (c, 0, 1, 6, 9);
    let settings = PtSettings {
        replicas: r,
        adapt_schedule: false,
        keep_all_replicas: true,
        betas: Some(betas.clone()),
        ladder: LadderMode::Pooled,
    };
    let out = sample(
        &rbm,
        &base,
        &KernelSpec::new("gibbs").unwrap(),
        &config,
        &settings,
        Some(y0),
        &mut NoObserver,
        &Default::default(),
    )
    .unwrap();
    let all = out.all_replicas.unwrap();
    assert!(out.stats.swap_accept.iter().all(|a| *a > 0.3));
    for (k, &b) in betas.iter().enumerate() {
        let mut counts = vec![0.0; 64];
        for i in 0..c {
            let s: usize = (0..6).map(|j| (all[[k, i, 0, j]] as usize) << j).sum();
            counts[s] += 1.0;
        }
        let (_, _, p) = chi_square_test(&counts, &probs(b)).unwrap();
        assert!(p > ALPHA, "replica {k} (b {b}): chi-square p {p:.2e}");
    }
}

/// The stepping-stone log Z of `logz --method pt` (library defaults: 16
/// chains x 16 replicas, 2000 warm-up and 8000 steps, the AIS base) is within
/// 3 standard errors of the exact value on `gmm-ring`, `gmm-far` and `rbm20`.
#[test]
fn stepping_stone_log_z_matches_exact_values() {
    for model in ["gmm-ring", "gmm-far", "rbm20"] {
        let m = boltz::model::load(model).unwrap();
        let job = LogzJob {
            method: Some("pt".into()),
            ..LogzJob::default()
        };
        let r = logz(&m, None, &job, &Default::default(), None, &mut NoObserver)
            .unwrap()
            .report;
        let ex = r.exact_log_z.unwrap();
        let z = (r.log_z[0] - ex) / r.stderr[0];
        println!(
            "{model}: log Z {:.5} +- {:.5}, exact {ex:.5}, z {z:+.2}",
            r.log_z[0], r.stderr[0]
        );
        assert!(z.abs() < 3.0, "{model}: z {z:.2}");
        assert!(
            r.stderr[0] > 0.0 && r.stderr[0] < 0.05,
            "{model}: se {}",
            r.stderr[0]
        );
        assert!(r.warnings.is_empty(), "{model}: {:?}", r.warnings);
    }
}

/// With a ladder per chain (what shards need), the stepping-stone log Z
/// of the library's `logz --method pt` settings (16 chains x 16 replicas,
/// 2000 warm-up and 8000 steps, the same reference) is within 3 standard
/// errors of the exact value on `gmm-ring`, `gmm-far` and `rbm20`, and each
/// chain's ladder is its own.
#[test]
fn per_chain_ladders_give_the_stepping_stone_log_z() {
    for model in ["gmm-ring", "gmm-far", "rbm20"] {
        let m = boltz::model::load(model).unwrap();
        let energy = m.energy(None).unwrap();
        let base = match energy.space() {
            boltz::StateSpace::Binary => boltz::ais::default_base(energy.as_ref(), 1.0, 0, None),
            boltz::StateSpace::Continuous => {
                let p = boltz::ais::pilot_with(energy.as_ref(), 1.0, 0, None, &Default::default())
                    .unwrap()
                    .unwrap();
                boltz::pt::widen_reference(&p.base)
            }
        }
        .unwrap();
        let kernel = if model == "rbm20" { "gibbs" } else { "mala" };
        let mut config = SampleConfig::new();
        (config.n_chains, config.warmup, config.draws) = (16, 2000, 8000);
        let mut settings = PtSettings::new(16);
        settings.ladder = LadderMode::PerChain;
        let out = sample(
            energy.as_ref(),
            &base,
            &KernelSpec::new(kernel).unwrap(),
            &config,
            &settings,
            None,
            &mut NoObserver,
            &Default::default(),
        )
        .unwrap();
        let s = &out.stats;
        let ex = boltz::exact::model_log_z(&m, None, 1.0).unwrap().unwrap()[0];
        let z = (s.log_z - ex) / s.log_z_stderr;
        println!(
            "{model}: log Z {:.5} +- {:.5}, exact {ex:.5}, z {z:+.2}, Lambda {:.3}",
            s.log_z, s.log_z_stderr, s.lambda
        );
        assert!(z.abs() < 3.0, "{model}: z {z:.2}");
        assert!(s.log_z_stderr > 0.0 && s.log_z_stderr < 0.05);
        assert_eq!(s.ladders.len(), 16);
        assert_ne!(s.ladders[0], s.ladders[1], "{model}: one ladder per chain");
        assert!(boltz::pt::warnings(s).is_empty(), "{model}");
    }
}

/// Round trips per chain-step grow with the number of replicas, towards
/// the bound `1 / (2 + 2 Lambda)` that perfect local mixing would reach,
/// once the replicas cover Lambda (gmm-ring: Lambda about 1.8).
#[test]
fn round_trips_grow_with_replicas_until_lambda_is_covered() {
    let base = Base::isotropic(2, 4.0).unwrap();
    let mut last = 0.0;
    for r in [2, 4, 8, 16] {
        let s = run("gmm-ring", &base, "mala", 16, r, 1000, 3000, 1).stats;
        println!(
            "R {r:2}: Lambda {:.3}, round trips {:.4} per chain-step (bound {:.4})",
            s.lambda, s.round_trip_rate, s.round_trip_bound
        );
        assert!(
            s.round_trip_rate > last,
            "R {r}: {} <= {last}",
            s.round_trip_rate
        );
        assert!(s.round_trip_rate <= s.round_trip_bound * 1.05);
        if r == 16 {
            assert!(s.round_trip_rate > 0.7 * s.round_trip_bound);
        }
        last = s.round_trip_rate;
    }
}

fn in_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// The same draws, energies and figures bit for bit on 1 and 2 threads;
/// and a run stopped mid-way (warm-up, then sampling) and resumed from its
/// checkpoint equals the uninterrupted one.
#[test]
fn pt_is_deterministic_across_threads_and_resumes_bit_identically() {
    for mode in [LadderMode::Pooled, LadderMode::PerChain] {
        deterministic_and_resumes(mode);
    }
}

fn deterministic_and_resumes(mode: LadderMode) {
    let energy = boltz::model::load("gmm-far").unwrap().energy(None).unwrap();
    let base = Base::isotropic(32, 4.0).unwrap();
    let spec = KernelSpec::new("mala").unwrap();
    let mut config = SampleConfig::new();
    (config.n_chains, config.warmup, config.draws, config.thin) = (5, 200, 150, 2);
    let mut settings = PtSettings::new(6);
    settings.keep_all_replicas = true;
    settings.ladder = mode;
    let go = |control: &boltz::Control| {
        sample(
            energy.as_ref(),
            &base,
            &spec,
            &config,
            &settings,
            None,
            &mut NoObserver,
            control,
        )
        .unwrap()
    };
    let one = in_threads(1, || go(&Default::default()));
    let two = in_threads(2, || go(&Default::default()));
    assert_eq!(one.samples, two.samples);
    assert_eq!(one.energies, two.energies);
    assert_eq!(one.all_replicas, two.all_replicas);
    assert_eq!(one.stats.log_z.to_bits(), two.stats.log_z.to_bits());
    assert_eq!(one.stats.betas, two.stats.betas);
    for stop_at in [120, 380] {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("pt.ck");
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let control = boltz::Control {
            checkpoint: Some(ck.clone()),
            checkpoint_every: 0,
            stop: Some(flag.clone()),
            settings: "test".into(),
        };
        struct StopAt(usize, std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl boltz::Observer for StopAt {
            fn observe(&mut self, p: &boltz::run::Progress) {
                if p.step >= self.0 {
                    self.1.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
        let mut config = config.clone();
        config.observe_every = 1;
        let part = sample(
            energy.as_ref(),
            &base,
            &spec,
            &config,
            &settings,
            None,
            &mut StopAt(stop_at, flag.clone()),
            &control,
        )
        .unwrap();
        assert!(!part.complete);
        flag.store(false, std::sync::atomic::Ordering::SeqCst);
        let resumed = boltz::pt::resume(
            energy.as_ref(),
            &base,
            &spec,
            (&config, &settings),
            &ck,
            &mut NoObserver,
            &control,
        )
        .unwrap();
        assert!(resumed.complete);
        assert_eq!(resumed.samples, one.samples, "stopped at {stop_at}");
        assert_eq!(resumed.energies, one.energies);
        assert_eq!(resumed.all_replicas, one.all_replicas);
        assert_eq!(resumed.stats.log_z.to_bits(), one.stats.log_z.to_bits());
        assert_eq!(resumed.stats.round_trips, one.stats.round_trips);
        assert_eq!(resumed.stats.energy_evals, one.stats.energy_evals);
    }
}

/// Persistent PT negatives: two calls in one sampler equal a call, a save
/// and load of the state, and a second call; the replicas cover the ring.
#[test]
fn pt_negatives_persist_their_replicas() {
    use boltz::jobs::{NegativesJob, negatives::call};
    let energy = boltz::model::load("gmm-ring")
        .unwrap()
        .energy(None)
        .unwrap();
    let job = NegativesJob {
        method: "pcd".into(),
        kernel: Some("pt".into()),
        replicas: 8,
        steps: 300,
        kernel_settings: boltz::kernels::KernelSettings {
            step_size: Some(0.1),
            ..Default::default()
        },
        base_scale: Some(4.0),
        ..NegativesJob::default()
    };
    let mut a = job.sampler(energy.as_ref(), 64).unwrap();
    let (first, name, _) = call(&mut a, energy.as_ref(), &job, None, &Default::default()).unwrap();
    assert_eq!(name, "pt(mala)");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    a.save(&path).unwrap();
    let (second, _, _) = call(&mut a, energy.as_ref(), &job, None, &Default::default()).unwrap();
    let mut b = boltz::NegativeSampler::load_any(&path).unwrap();
    let (again, _, _) = call(&mut b, energy.as_ref(), &job, None, &Default::default()).unwrap();
    assert_eq!(second.negatives, again.negatives);
    assert_ne!(first.negatives, second.negatives);
    let t = a.state().tempered.unwrap();
    assert_eq!(t.betas.len(), 8);
    assert!(t.round_trips > 0);
    let x = second.negatives.view().insert_axis(Axis(1));
    let modes = ring_modes(x.view());
    let mut seen = [0; 8];
    modes.iter().for_each(|m| seen[*m] += 1);
    assert!(seen.iter().all(|n| *n >= 2), "negatives per mode {seen:?}");
}

#[test]
fn a_sample_job_asking_draw_stats_of_tempering_is_refused() {
    // Parallel tempering's draws come from swaps as well as moves: it has
    // no per-draw transition statistics to give, and says so rather than
    // returning none.
    let model = boltz::model::load("gauss-ill").unwrap();
    let mut job = boltz::jobs::SampleJob::new("pt");
    (job.chains, job.warmup, job.draws, job.record_draw_stats) = (2, 10, 10, true);
    let control = boltz::run::Control::default();
    let err = boltz::jobs::sample(&model, None, &job, None, &mut NoObserver, &control, None)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("record_draw_stats"), "{err}");
}
