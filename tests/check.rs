//! `method check`: AIS, SMC and parallel tempering held against each
//! other. They agree on a target they all get right (and the combined
//! estimate is within 3 of its standard errors of the exact value), they
//! disagree on separated modes AIS and SMC miss (and no estimate is
//! given), the budget grows until the target standard error, and the
//! settings that have no meaning are refused.

use boltz::jobs::{LogzJob, LogzRun, logz};
use boltz::model;

fn check(name: &str, job: LogzJob) -> LogzRun {
    let m = model::load(name).unwrap();
    let job = LogzJob {
        method: Some("check".into()),
        ..job
    };
    logz(
        &m,
        None,
        &job,
        &Default::default(),
        None,
        &mut boltz::NoObserver,
    )
    .unwrap()
}

#[test]
fn the_estimators_agree_where_all_are_right() {
    let run = check("gmm-ring", LogzJob::default());
    let r = &run.report;
    let c = r.check.as_ref().unwrap();
    eprintln!("{}", serde_json::to_string(c).unwrap());
    assert_eq!(c["verdict"], "agree");
    assert_eq!(c["estimators"].as_object().unwrap().len(), 3);
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
        r.warnings
            .iter()
            .any(|w| w.contains("the estimators disagree")),
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
    assert!(
        run.report
            .warnings
            .iter()
            .any(|w| w.contains("above the target"))
    );
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
