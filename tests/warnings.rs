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

#[test]
fn warm_up_moves_chains_from_starts_float64_cannot_resolve() {
    // Started at 1e9 (energy 1e18 > 2^53) the chains of every kernel,
    // AutoStep HMC's included, first descend in warm-up: none is stuck,
    // and the draws are N(0, 1) (|z| < 4 on the mean and variance over
    // 4 x 1000 draws, ESS-based), the descent's evaluations counted.
    let kernels: Vec<Box<dyn Kernel>> = vec![
        Box::new(boltz::kernels::AutoMala::hmc(0.5, 8).unwrap()),
        Box::new(Mala::new(0.5).unwrap()),
        Box::new(Nuts::new(0.5, 6).unwrap()),
    ];
    let e = gauss();
    for k in &kernels {
        let mut c = SampleConfig::new();
        (c.n_chains, c.warmup, c.draws, c.seed) = (4, 300, 1000, 3);
        c.init = Init::Uniform {
            lo: 1e9,
            hi: 1e9 + 1.0,
        };
        let out = sample(&e, k.as_ref(), &c, None, &mut NoObserver).unwrap();
        let w = warnings(&e, &out, None, None).unwrap();
        assert!(w.is_empty(), "{}: {w:?}", k.name());
        let x = out.samples.index_axis(ndarray::Axis(2), 0).to_owned();
        let ess = boltz::diagnostics::ess_mean(x.view());
        let zm = x.mean().unwrap() / (1.0 / ess.sqrt());
        let x2 = x.mapv(|v| v * v);
        let ess2 = boltz::diagnostics::ess_mean(x2.view());
        let zv = (x2.mean().unwrap() - 1.0) / (2f64.sqrt() / ess2.sqrt());
        assert!(
            zm.abs() < 4.0 && zv.abs() < 4.0,
            "{}: z {zm} {zv}",
            k.name()
        );
        if k.name() == "mala" {
            // MALA's steps cost one gradient each, and the start one: the
            // rest is the descent's (each chain's rounds and its state
            // evaluated again, 4 chains at least 2 each).
            let extra = out.stats.grad_evals - 4 * 1300 - 4;
            assert!(extra >= 8, "{extra}");
        }
    }
}
