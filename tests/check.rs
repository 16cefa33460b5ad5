//! `method check`: AIS, SMC and parallel tempering held against each
//! other. They agree on a target they all get right (and the combined
//! estimate is within 3 of its standard errors of the exact value), they
//! disagree on separated modes AIS and SMC miss (and no estimate is
//! given), the budget grows until the target standard error, and the
//! settings that have no meaning are refused.

use boltz::jobs::{LogzJob, LogzReport, LogzRun, logz};
use boltz::model::{self, Model};

/// `job` on `m`, with no contexts, control or resume.
fn run(m: &Model, job: &LogzJob) -> LogzRun {
    logz(
        m,
        None,
        job,
        &Default::default(),
        None,
        &mut boltz::NoObserver,
    )
    .unwrap()
}

fn check(name: &str, job: LogzJob) -> LogzRun {
    let job = LogzJob {
        method: Some("check".into()),
        ..job
    };
    run(&model::load(name).unwrap(), &job)
}

#[test]
fn the_estimators_agree_where_all_are_right() {
    let run = check("gmm-ring", LogzJob::default());
    let r = &run.report;
    let c = r.check.as_ref().unwrap();
    eprintln!("{}", serde_json::to_string(c).unwrap());
    assert_eq!(c["verdict"], "agree");
    assert_eq!(c["estimators"].as_object().unwrap().len(), 4);
    let exact = r.exact_log_z.unwrap();
    assert!(
        (r.log_z[0] - exact).abs() < 3.0 * r.stderr[0],
        "{r:?}",
        r = r.log_z
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn the_estimators_disagree_on_modes_annealing_misses_and_no_estimate_is_given() {
    // Seed 1: the pilot's chains find both modes at +-8, AIS and SMC put
    // the narrow mode's mass (0.8) nowhere, PT crosses: they disagree.
    let run = check(
        "examples/models/separated-modes.json",
        LogzJob {
            seed: 1,
            ..LogzJob::default()
        },
    );
    let r = &run.report;
    assert_eq!(r.check.as_ref().unwrap()["verdict"], "disagree");
    assert!(r.log_z[0].is_nan() && r.stderr[0].is_nan());
    assert!(
        r.warnings.has(boltz::WarningKind::EstimatorsDisagree),
        "{:?}",
        r.warnings
    );
}

#[test]
fn a_budget_grows_until_the_target_standard_error() {
    let run = check(
        "gmm-ring",
        LogzJob {
            target_se: Some(0.003),
            ..LogzJob::default()
        },
    );
    let r = &run.report;
    let c = r.check.as_ref().unwrap();
    eprintln!("{}", serde_json::to_string(c).unwrap());
    assert_eq!(c["stopped"], "target reached");
    assert!(c["rounds"].as_u64().unwrap() >= 2);
    assert!(r.stderr[0] <= 0.003);
    assert_eq!(r.particles, 1024 << (c["rounds"].as_u64().unwrap() - 1));
    let exact = r.exact_log_z.unwrap();
    assert!((r.log_z[0] - exact).abs() < 3.0 * r.stderr[0]);
    // A time cap stops it early and says so.
    let run = check(
        "gmm-ring",
        LogzJob {
            target_se: Some(1e-5),
            max_seconds: Some(0.01),
            ..LogzJob::default()
        },
    );
    let c = run.report.check.as_ref().unwrap();
    assert_eq!(c["stopped"], "time cap");
    assert_eq!(c["rounds"], 1);
    assert!(run.report.warnings.has(boltz::WarningKind::AboveTargetSe));
}

#[test]
fn check_refuses_what_it_cannot_honour() {
    let m = model::load("gmm-ring").unwrap();
    let go = |job: LogzJob, control: boltz::run::Control| {
        logz(&m, None, &job, &control, None, &mut boltz::NoObserver)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let ais_budget = LogzJob {
        method: Some("ais".into()),
        target_se: Some(0.01),
        ..LogzJob::default()
    };
    assert!(go(ais_budget, Default::default()).contains("target_se"));
    let reverse = LogzJob {
        method: Some("check".into()),
        reverse: true,
        ..LogzJob::default()
    };
    assert!(go(reverse, Default::default()).contains("reverse"));
    let dir = tempfile::tempdir().unwrap();
    let control = boltz::run::Control {
        checkpoint: Some(dir.path().join("c")),
        ..Default::default()
    };
    let check = LogzJob {
        method: Some("check".into()),
        ..LogzJob::default()
    };
    assert!(go(check, control).contains("checkpoint"));
    let negative = LogzJob {
        method: Some("check".into()),
        target_se: Some(-1.0),
        ..LogzJob::default()
    };
    assert!(go(negative, Default::default()).contains("target_se"));
}

/// Without an exact answer the default is the check; an option only AIS
/// has, or a conditional model, makes it AIS.
#[test]
fn the_default_without_an_exact_answer_is_the_check() {
    let m = model::load("gmm-ring").unwrap();
    let go = |job: LogzJob| run(&m, &job).report;
    // At beta 2 the mixture has no closed form here.
    let r = go(LogzJob {
        beta: 2.0,
        ..LogzJob::default()
    });
    assert_eq!(r.method, "check");
    assert_eq!(
        r.check.as_ref().unwrap()["verdict"],
        "agree",
        "{:?}",
        r.warnings
    );
    assert!(r.log_z[0].is_finite() && r.warnings.is_empty());
    let r = go(LogzJob {
        beta: 2.0,
        resample: Some(0.5),
        ..LogzJob::default()
    });
    assert_eq!(r.method, "ais");
    let ring = model::load("ring").unwrap();
    let job = LogzJob {
        beta: 2.0,
        particles: 64,
        temps: 20,
        ..LogzJob::default()
    };
    assert_eq!(run(&ring, &job).report.method, "ais");
}

/// Positives where the mass is (`data`) start the pilot that fits the
/// base: on the separated-modes mixture, whose narrow mode (mass 0.8)
/// SMC misses from its over-dispersed pilot, SMC then lands within 3
/// standard errors of the exact log Z for every seed.
#[test]
fn data_where_the_mass_is_lets_smc_find_the_modes_its_pilot_misses() {
    let m = model::load("examples/models/separated-modes.json").unwrap();
    let data = boltz::ais::exact_draws(&m, 200, 7).unwrap();
    let mut missed = 0;
    for seed in 0..3 {
        let mut job = LogzJob {
            method: Some("smc".into()),
            seed,
            ..LogzJob::default()
        };
        let without = run(&m, &job).report;
        let z = |r: &LogzReport| (r.log_z[0] - 0.0).abs() / r.stderr[0];
        missed += usize::from(z(&without) > 3.0);
        job.data = Some(data.clone());
        let with = run(&m, &job).report;
        assert!(
            z(&with) <= 3.0 && with.warnings.is_empty(),
            "seed {seed}: {} +- {} {:?}",
            with.log_z[0],
            with.stderr[0],
            with.warnings
        );
    }
    // The test can tell: without the data the same runs miss.
    assert!(missed >= 2, "{missed}");
}
