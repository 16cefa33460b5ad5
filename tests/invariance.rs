//! Invariance: start many independent chains at exact draws of the target,
//! apply k transitions of a kernel with fixed settings, and test that the
//! draws still follow the target. No mixing question enters: a kernel that
//! keeps the target invariant passes whatever its step, one with a wrong
//! acceptance ratio or proposal density fails.
//!
//! The chains are independent and start iid, so their states after k steps
//! are iid: KS and chi-square tests apply without thinning. Every test uses
//! alpha = 1e-4 (a correct kernel fails one with probability 1e-4; this file
//! runs about 40 of them, so about 0.4% for the whole file with random
//! seeds; the seeds are fixed, so the outcome is deterministic). The last
//! test shows the tests' power: a kernel that is not invariant (ULA at a
//! large step, the unadjusted MALA proposal) is caught.

mod common;
use boltz::diagnostics::{chi_square_test, ks_test};
use boltz::energy::{Energy, FnEnergy, log_sum_exp};
use boltz::kernels::{Invariance, KERNELS, Kernel, KernelSpec, Ula};
use boltz::model::{self, Family};
use boltz::sampler::{NoObserver, SampleConfig, sample};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use statrs::distribution::{ContinuousCDF, Normal};

const ALPHA: f64 = 1e-4;
const CHAINS: usize = 4000;

/// `k` transitions of `kernel` from the rows of `start`, no adaptation.
/// The test is vacuous for chains that never move: at least 30% of them
/// must have (the kernels' settings below are chosen for that).
fn step(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    start: Array2<f64>,
    k: usize,
    seed: u64,
) -> Array2<f64> {
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws, c.thin, c.seed) = (start.nrows(), 0, 1, k, seed);
    c.adapt_step_size = false;
    c.adapt_mass = false;
    let out = sample(energy, kernel, &c, Some(start.clone()), &mut NoObserver).unwrap();
    let y = out.samples.index_axis(ndarray::Axis(1), 0).to_owned();
    let moved = common::moved_rows(y.view(), start.view());
    let frac = moved as f64 / y.nrows() as f64;
    assert!(
        frac > 0.3,
        "only {frac:.2} of the chains moved: the test would be vacuous"
    );
    y
}

fn std_normal(x: f64) -> f64 {
    Normal::new(0.0, 1.0).unwrap().cdf(x)
}

fn ks(name: &str, what: &str, x: &[f64], cdf: impl Fn(f64) -> f64) {
    let (d, p) = ks_test(x, cdf);
    eprintln!("{name} {what}: KS D {d:.4}, p {p:.3}");
    assert!(p > ALPHA, "{name} {what}: KS p = {p:.2e} (D = {d:.4})");
}

/// The registry's kernels held to `which` invariance test, each built from
/// its entry's test settings for a target of dimension `dim` whose smallest
/// scale is about `scale`. A kernel added to the registry is tested here by
/// construction: its entry must say which test and with what settings.
fn registered(which: Invariance, scale: f64, dim: usize) -> Vec<(&'static str, Box<dyn Kernel>)> {
    KERNELS
        .iter()
        .filter(|k| k.invariance == which)
        .map(|k| {
            let spec = KernelSpec::with_settings(k.name, (k.test_settings)(scale, dim)).unwrap();
            (k.name, spec.build().unwrap())
        })
        .collect()
}

/// Every Metropolis-adjusted continuous kernel of the registry.
fn kernels(scale: f64, dim: usize) -> Vec<(&'static str, Box<dyn Kernel>)> {
    let v = registered(Invariance::Exact, scale, dim);
    assert!(v.len() >= 7, "the registry lost its exact kernels");
    v
}

#[test]
fn funnel_stays_exact() {
    let m = model::load("funnel").unwrap();
    let e = m.energy(None).unwrap();
    let start = boltz::ais::exact_draws(&m, CHAINS, 1).unwrap();
    for (name, k) in kernels(1.0, 10) {
        let y = step(e.as_ref(), k.as_ref(), start.clone(), 20, 2);
        let v: Vec<f64> = y.column(0).to_vec();
        ks(name, "funnel v ~ N(0, 9)", &v, |t| std_normal(t / 3.0));
        // x_1 | v ~ N(0, e^v): x_1 e^(-v/2) ~ N(0, 1), whatever v.
        let z: Vec<f64> = y
            .rows()
            .into_iter()
            .map(|r| r[1] * (-0.5 * r[0]).exp())
            .collect();
        ks(name, "funnel x_1 e^(-v/2) ~ N(0, 1)", &z, std_normal);
    }
}

#[test]
fn ill_conditioned_gaussian_stays_exact() {
    let m = model::load("gauss-ill").unwrap();
    let e = m.energy(None).unwrap();
    let (_, var) = m.moments().unwrap();
    let start = boltz::ais::exact_draws(&m, CHAINS, 3).unwrap();
    // Unpreconditioned kernels at a step for the smallest scale (0.1).
    for (name, k) in kernels(0.1, var.len()) {
        let y = step(e.as_ref(), k.as_ref(), start.clone(), 20, 4);
        for j in [0, var.len() / 2, var.len() - 1] {
            let s = var[j].sqrt();
            let z: Vec<f64> = y.column(j).iter().map(|v| v / s).collect();
            ks(name, &format!("gauss-ill y_{j} / s_{j}"), &z, std_normal);
        }
    }
}

#[test]
fn skewed_target_stays_exact() {
    // F(y) = y + exp(-y): standard Gumbel, CDF exp(-exp(-y)), drawn by inversion.
    let e = FnEnergy::new(
        1,
        |y: &[f64]| y[0] + (-y[0]).exp(),
        |y: &[f64], g: &mut [f64]| {
            g[0] = 1.0 - (-y[0]).exp();
            y[0] + (-y[0]).exp()
        },
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let start = Array2::from_shape_fn((CHAINS, 1), |_| {
        let u: f64 = rng.random::<f64>().max(1e-300);
        -(-u.ln()).ln()
    });
    for (name, k) in kernels(1.0, 1) {
        let y = step(&e, k.as_ref(), start.clone(), 20, 6);
        ks(name, "gumbel", &y.column(0).to_vec(), |t| {
            (-(-t).exp()).exp()
        });
    }
}

#[test]
fn mixture_stays_exact() {
    let m = model::load("gmm-ring").unwrap();
    let e = m.energy(None).unwrap();
    let Family::Mixture(mix) = &m.family else {
        panic!("gmm-ring is a mixture")
    };
    let mass = mix.component_mass();
    let start = boltz::ais::exact_draws(&m, CHAINS, 7).unwrap();
    for (name, k) in kernels(0.3, 2) {
        let y = step(e.as_ref(), k.as_ref(), start.clone(), 20, 8);
        for j in 0..2 {
            let cdf = |t: f64| -> f64 {
                (0..mass.len())
                    .map(|c| mass[c] * std_normal((t - mix.means()[[c, j]]) / mix.stds()[c]))
                    .sum()
            };
            ks(name, &format!("gmm-ring y_{j}"), &y.column(j).to_vec(), cdf);
        }
    }
}

#[test]
fn ula_keeps_its_own_discretised_law() {
    // ULA is unadjusted: on N(0, s^2) its stationary law is
    // N(0, s^2 / (1 - step / (2 s^2))), and that is what it keeps.
    let s2: f64 = 1.0;
    let h = 0.4;
    let e = FnEnergy::new(
        2,
        move |y: &[f64]| 0.5 * (y[0] * y[0] + y[1] * y[1]) / s2,
        move |y: &[f64], g: &mut [f64]| {
            g[0] = y[0] / s2;
            g[1] = y[1] / s2;
            0.5 * (y[0] * y[0] + y[1] * y[1]) / s2
        },
    );
    let sd = (s2 / (1.0 - h / (2.0 * s2))).sqrt();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let normal = rand_distr::StandardNormal;
    let start = Array2::from_shape_fn((CHAINS, 2), |_| sd * rng.sample::<f64, _>(normal));
    // Every unadjusted kernel of the registry, at its test step for s = 1
    // (ULA's: h = 0.4).
    let kernels = registered(Invariance::Unadjusted, s2.sqrt(), 2);
    assert!(!kernels.is_empty());
    for (name, k) in kernels {
        let y = step(&e, k.as_ref(), start.clone(), 20, 10);
        for j in 0..2 {
            let z: Vec<f64> = y.column(j).iter().map(|v| v / sd).collect();
            ks(name, &format!("its stationary law, y_{j}"), &z, std_normal);
        }
    }
}

#[test]
fn gibbs_keeps_a_binary_target_exact() {
    // A 6-bit energy with pairwise couplings: exact draws by enumeration,
    // heat-bath sweeps, chi-square over all 64 states.
    let w = [
        [0.0, 1.2, -0.7, 0.3, 0.0, 0.5],
        [0.0, 0.0, 0.8, -1.1, 0.4, 0.0],
        [0.0, 0.0, 0.0, 0.6, -0.9, 0.2],
        [0.0, 0.0, 0.0, 0.0, 1.0, -0.4],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.7],
        [0.0; 6],
    ];
    let b = [0.3, -0.5, 0.2, 0.1, -0.8, 0.4];
    let f = move |y: &[f64]| {
        let mut e = 0.0;
        for i in 0..6 {
            e -= b[i] * y[i];
            for j in i + 1..6 {
                e -= w[i][j] * y[i] * y[j];
            }
        }
        e
    };
    let energy = FnEnergy::value_only(6, f).binary();
    let states: Vec<[f64; 6]> = (0..64usize)
        .map(|s| std::array::from_fn(|i| ((s >> i) & 1) as f64))
        .collect();
    let logp: Vec<f64> = states.iter().map(|s| -f(s)).collect();
    let lz = log_sum_exp(&logp);
    let probs: Vec<f64> = logp.iter().map(|l| (l - lz).exp()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut start = Array2::zeros((CHAINS, 6));
    for mut row in start.rows_mut() {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let s = probs.iter().position(|p| {
            acc += p;
            u < acc
        });
        row.assign(&ndarray::arr1(&states[s.unwrap_or(63)]));
    }
    // Every binary kernel of the registry.
    let kernels = registered(Invariance::Binary, 1.0, 6);
    assert!(!kernels.is_empty());
    for (name, k) in kernels {
        let y = step(&energy, k.as_ref(), start.clone(), 5, 12);
        let mut observed = vec![0.0; 64];
        for r in y.rows() {
            let s: usize = (0..6).map(|i| (r[i] as usize) << i).sum();
            observed[s] += 1.0;
        }
        let (stat, dof, p) = chi_square_test(&observed, &probs).unwrap();
        eprintln!("{name} 6-bit: chi2 {stat:.1} on {dof} dof, p {p:.3}");
        assert!(p > ALPHA, "{name}: chi-square p = {p:.2e}");
    }
}

#[test]
fn the_tests_catch_a_kernel_that_is_not_invariant() {
    // Power: ULA at MALA's step (the MALA proposal without its
    // correction) leaves the target at once.
    let m = model::load("gauss-ill").unwrap();
    let e = m.energy(None).unwrap();
    let (_, var) = m.moments().unwrap();
    let start = boltz::ais::exact_draws(&m, CHAINS, 3).unwrap();
    // The stiffest coordinate (s = 0.1): ULA's law there has variance
    // s^2 / (1 - h / (2 s^2)), 4 s^2 at h = 0.015.
    let j = (0..var.len())
        .min_by(|&a, &b| var[a].total_cmp(&var[b]))
        .unwrap();
    let y = step(e.as_ref(), &Ula::new(0.015).unwrap(), start, 20, 4);
    let s = var[j].sqrt();
    let z: Vec<f64> = y.column(j).iter().map(|v| v / s).collect();
    let (d, p) = ks_test(&z, std_normal);
    eprintln!("ula at a large step on gauss-ill y_{j}: KS D {d:.4}, p {p:.2e}");
    assert!(
        p < ALPHA,
        "the invariance test did not see ULA's bias (p = {p})"
    );
}
