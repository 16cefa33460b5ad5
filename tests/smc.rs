//! Annealed SMC with resample-move (`ScheduleChoice::Smc`): exact answers
//! over seeds, calibrated error bars, stop and resume bit for bit,
//! determinism across thread counts, and the settings it refuses.
//!
//! Fixed seeds; tolerances are the estimator's own reported standard
//! errors (3 of them: a two-sided false-failure rate of 0.3% per check if
//! the error bars are honest).

use boltz::ais::{self, AisConfig, AisProblem, AisResult, Base, ScheduleChoice};
use boltz::energy::{DiagGaussian, Energy};
use boltz::model;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// boltz's SMC defaults (as `logz --method smc`): 1024 particles in 8
/// islands, conditional ESS 0.99 per temperature, 5 moves per temperature.
fn smc(seed: u64) -> AisConfig {
    AisConfig {
        schedule: ScheduleChoice::Smc { cess: 0.99 },
        steps_per_temp: 5,
        islands: 8,
        seed,
        ..AisConfig::new()
    }
}

fn run(name: &str, config: &AisConfig) -> (AisResult, f64) {
    let m = model::load(name).unwrap();
    let e = m.energy(None).unwrap();
    let base = match m.rbm() {
        Some(_) => Base::base_rate(boltz::suite::digits().unwrap().view()).unwrap(),
        None => ais::pilot_base(e.as_ref(), 1.0, config.seed).unwrap(),
    };
    let r = ais::ais(&AisProblem::new(e, &base).unwrap(), config).unwrap();
    (r, m.exact_log_z.unwrap())
}

#[test]
fn smc_matches_exact_log_z_on_the_suite_over_seeds() {
    // Five seeds on each target with a known answer (the funnel is the
    // known miss of every annealing method from a pilot-fitted base: see
    // tests/ais.rs). Each estimate within 3 of its standard errors, and
    // the z-scores' spread that of honest error bars (sd <= 1.5 over 20).
    let mut zs = Vec::new();
    for name in ["gauss-ill", "gmm-ring", "gmm-far", "rbm20"] {
        for seed in 0..5 {
            let mut config = smc(seed);
            if name == "rbm20" {
                config.kernel = Some(boltz::kernels::KernelSpec::new("gibbs").unwrap());
            }
            let (r, exact) = run(name, &config);
            let e = &r.estimates[0];
            let z = (e.log_z - exact) / e.stderr;
            eprintln!(
                "{name} seed {seed}: {:.4} +- {:.4} (exact {exact:.4}, z {z:+.2}), {} evals",
                e.log_z, e.stderr, r.energy_evals
            );
            assert!(r.complete && r.warnings.is_empty(), "{:?}", r.warnings);
            assert!(e.stderr < 0.15, "{name}: standard error {}", e.stderr);
            assert!(z.abs() < 3.0, "{name} seed {seed}: z {z}");
            zs.push(z);
        }
    }
    let n = zs.len() as f64;
    let mean = zs.iter().sum::<f64>() / n;
    let sd = (zs.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    eprintln!("z-scores: mean {mean:+.2}, sd {sd:.2}");
    assert!(sd <= 1.5, "sd of z {sd}");
}

#[test]
fn smc_standard_errors_match_the_observed_spread() {
    // 100 small SMC runs on a 2-D Gaussian from a N(0, 3^2 I) base: the
    // observed sd of the estimates over the root-mean-square reported
    // standard error must be within 0.6-1.4 (the reported one is the
    // larger of two estimates, so it may err on the wide side).
    let target: Arc<dyn Energy> =
        Arc::new(DiagGaussian::new(vec![0.5, -1.0], vec![0.4, 1.5]).unwrap());
    let base = Base::isotropic(2, 3.0).unwrap();
    let problem = AisProblem::new(target.clone(), &base).unwrap();
    let (mut est, mut se2) = (Vec::new(), Vec::new());
    for seed in 0..100 {
        let config = AisConfig {
            particles: 256,
            ..smc(seed)
        };
        let r = ais::ais(&problem, &config).unwrap();
        est.push(r.estimates[0].log_z);
        se2.push(r.estimates[0].stderr.powi(2));
    }
    let n = est.len() as f64;
    let mean = est.iter().sum::<f64>() / n;
    let sd = (est.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let rms = (se2.iter().sum::<f64>() / n).sqrt();
    let bias = mean - target.log_z().unwrap();
    eprintln!(
        "smc calibration: sd {sd:.4}, rms se {rms:.4}, ratio {:.3}, mean error {bias:+.4}",
        sd / rms
    );
    assert!((0.6..=1.4).contains(&(sd / rms)), "ratio {}", sd / rms);
    assert!(bias.abs() < 3.0 * sd / n.sqrt(), "mean error {bias}");
}

/// Stops the run once progress passes `at` steps.
struct StopAt {
    at: usize,
    stop: Arc<AtomicBool>,
}

impl boltz::run::Observer for StopAt {
    fn observe(&mut self, p: &boltz::run::Progress) {
        if p.step >= self.at {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn smc_stopped_in_an_island_resumes_to_the_same_bits() {
    let m = model::load("gmm-far").unwrap();
    let e = m.energy(None).unwrap();
    let base = ais::pilot_base(e.as_ref(), 1.0, 0).unwrap();
    let problem = AisProblem::new(e, &base).unwrap();
    let config = AisConfig {
        particles: 256,
        temps: 100,
        ..smc(3)
    };
    let full = ais::ais(&problem, &config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    // Island 3 of 8 runs steps 300..400 of the progress count.
    for (at, every) in [(305, 0), (350, 2)] {
        let stop = Arc::new(AtomicBool::new(false));
        let control = boltz::run::Control {
            checkpoint: Some(ck.clone()),
            checkpoint_every: every,
            stop: Some(stop.clone()),
            settings: "gmm-far smc".into(),
        };
        let mut obs = StopAt { at, stop };
        let part = ais::ais_with(&problem, &config, &control, None, &mut obs).unwrap();
        assert!(!part.complete && part.estimates[0].log_z.is_nan());
        let control = boltz::run::Control {
            checkpoint: Some(ck.clone()),
            settings: "gmm-far smc".into(),
            ..Default::default()
        };
        let resumed = ais::ais_with(
            &problem,
            &config,
            &control,
            Some(&ck),
            &mut boltz::run::NoObserver,
        )
        .unwrap();
        assert!(resumed.complete);
        assert_eq!(resumed.estimates, full.estimates);
        assert_eq!(resumed.log_weights, full.log_weights);
        assert_eq!(resumed.energy_evals, full.energy_evals);
        // Another run's settings are refused.
        let other = boltz::run::Control {
            settings: "gmm-far smc, other".into(),
            ..Default::default()
        };
        let err = ais::ais_with(
            &problem,
            &config,
            &other,
            Some(&ck),
            &mut boltz::run::NoObserver,
        );
        assert!(err.is_err());
    }
}

#[test]
fn smc_is_bit_identical_for_one_and_two_threads() {
    let go = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let config = AisConfig {
                    particles: 200,
                    ..smc(1)
                };
                let (r, _) = run("gmm-ring", &config);
                let e = &r.estimates[0];
                [e.log_z, e.stderr, r.energy_evals as f64].map(f64::to_bits)
            })
    };
    assert_eq!(go(1), go(2));
}

#[test]
fn smc_refuses_what_it_cannot_honour() {
    let e: Arc<dyn Energy> = Arc::new(DiagGaussian::new(vec![0.0; 2], vec![1.0; 2]).unwrap());
    let base = Base::isotropic(2, 3.0).unwrap();
    let problem = AisProblem::new(e, &base).unwrap();
    let refused = |c: AisConfig| {
        let msg = ais::ais(&problem, &c).unwrap_err().to_string();
        eprintln!("{msg}");
        msg
    };
    let shard = Some(boltz::shard::Shard { index: 0, count: 2 });
    assert!(refused(AisConfig { shard, ..smc(0) }).contains("shard"));
    assert!(
        refused(AisConfig {
            bootstrap: 10,
            ..smc(0)
        })
        .contains("bootstrap")
    );
    assert!(
        refused(AisConfig {
            repeats: 2,
            ..smc(0)
        })
        .contains("repeats")
    );
    assert!(
        refused(AisConfig {
            islands: 0,
            ..smc(0)
        })
        .contains("islands")
    );
    assert!(
        refused(AisConfig {
            islands: 2000,
            ..smc(0)
        })
        .contains("islands")
    );
    assert!(
        refused(AisConfig {
            islands: 2,
            ..AisConfig::new()
        })
        .contains("islands")
    );
    let cess = ScheduleChoice::Smc { cess: 1.0 };
    assert!(
        refused(AisConfig {
            schedule: cess,
            ..smc(0)
        })
        .contains("cess")
    );
}

#[test]
fn smc_through_the_job_reports_its_figures() {
    let model = model::load("gmm-ring").unwrap();
    let job = boltz::jobs::LogzJob {
        method: Some("smc".into()),
        ..Default::default()
    };
    let run = boltz::jobs::logz(
        &model,
        None,
        &job,
        &Default::default(),
        None,
        &mut boltz::NoObserver,
    )
    .unwrap();
    let r = &run.report;
    assert_eq!(r.method, "smc");
    let s = r.smc.as_ref().unwrap();
    assert_eq!(s["islands"], 8);
    assert_eq!(s["moves_per_temp"], 5);
    assert_eq!(s["temperatures"].as_array().unwrap().len(), 1);
    assert_eq!(s["final_steps"].as_array().unwrap().len(), 8);
    assert!(r.log_z_upper.is_none(), "no reverse pass for smc");
    let exact = r.exact_log_z.unwrap();
    assert!((r.log_z[0] - exact).abs() < 3.0 * r.stderr[0]);
    let reverse = boltz::jobs::LogzJob {
        reverse: true,
        ..job.clone()
    };
    assert!(
        boltz::jobs::logz(
            &model,
            None,
            &reverse,
            &Default::default(),
            None,
            &mut boltz::NoObserver
        )
        .is_err()
    );
    let schedule = boltz::jobs::LogzJob {
        schedule: "linear".into(),
        ..job
    };
    assert!(
        boltz::jobs::logz(
            &model,
            None,
            &schedule,
            &Default::default(),
            None,
            &mut boltz::NoObserver
        )
        .is_err()
    );
}
