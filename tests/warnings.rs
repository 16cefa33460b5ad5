//! The sampler's `stuck` warning: runs built to trip it, and its silence
//! on right runs.

use boltz::WarningKind;
use boltz::energy::FnEnergy;
use boltz::init::Init;
use boltz::kernels::{Hmc, Kernel, Mala, Nuts};
use boltz::sampler::{NoObserver, SampleConfig, sample, warnings};

/// F(y) = |y|^2 / 2 in 2 dimensions.
fn gauss() -> impl boltz::energy::Energy {
    FnEnergy::new(
        2,
        |y: &[f64]| 0.5 * (y[0] * y[0] + y[1] * y[1]),
        |y: &[f64], g: &mut [f64]| {
            g.copy_from_slice(y);
            0.5 * (y[0] * y[0] + y[1] * y[1])
        },
    )
}

/// The messages of `kind` from a run of `kernel` (4 chains, `warmup`
/// steps, 100 draws) started uniformly in `[lo, hi]`.
fn messages(kernel: &dyn Kernel, warmup: usize, lo: f64, hi: f64, seed: u64) -> Vec<String> {
    let e = gauss();
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws, c.seed) = (4, warmup, 100, seed);
    c.adapt_step_size = warmup > 0;
    c.init = Init::Uniform { lo, hi };
    let out = sample(&e, kernel, &c, None, &mut NoObserver).unwrap();
    let w = warnings(&e, &out, None, None).unwrap();
    w.iter()
        .filter(|w| w.kind == WarningKind::Stuck)
        .map(|w| w.message.clone())
        .collect()
}

/// The one `stuck` message of a run of `kernel` without warm-up, checked
/// to contain each of `parts`.
fn one_message(kernel: &dyn Kernel, lo: f64, hi: f64, parts: &[&str]) {
    let m = messages(kernel, 0, lo, hi, 1);
    assert_eq!(m.len(), 1, "{m:?}");
    for p in parts {
        assert!(m[0].contains(p), "{p:?} not in {}", m[0]);
    }
}

#[test]
fn chains_that_never_move_are_named_and_why_when_rounding_decides() {
    // A step of 1e6 on a unit Gaussian: every proposal lands where the
    // energy is ~1e11 higher, every one is rejected.
    let far = Hmc::new(1e6, 3, 0.0).unwrap();
    one_message(
        &far,
        -1.0,
        1.0,
        &[
            "4 of 4 chains never moved after warm-up (chain 0, 1, 2, 3:",
            "lower the step size or check the kernel's settings",
        ],
    );
    // Started at 1e9 the energy is 1e18: float64 resolves its differences
    // to ~100 nats; the message says rounding decides there.
    one_message(
        &far,
        1e9,
        1e9 + 1.0,
        &[
            "4 of them sit at energies up to 1.0",
            "e18, where float64 resolves energy differences only to",
            "decided by rounding",
        ],
    );
}

#[test]
fn right_runs_are_never_called_stuck() {
    // Adapted runs of three kernels over 20 seeds each, from starts in
    // [-2, 2] (60 runs, 240 chains): the warning never fires.
    let kernels: Vec<Box<dyn Kernel>> = vec![
        Box::new(Mala::new(0.5).unwrap()),
        Box::new(Hmc::new(0.5, 4, 0.0).unwrap()),
        Box::new(Nuts::new(0.5, 6).unwrap()),
    ];
    for k in &kernels {
        for seed in 0..20 {
            let m = messages(k.as_ref(), 200, -2.0, 2.0, seed);
            assert!(m.is_empty(), "{} seed {seed}: {m:?}", k.name());
        }
    }
}
