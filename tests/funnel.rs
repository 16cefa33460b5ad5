//! Neal's funnel, sampled without bias by the locally adaptive kernels.
//!
//! `y = (v, x_1..x_{d-1})`, `v ~ N(0, s^2)`, `x_i | v ~ N(0, e^v)`: one
//! global step size cannot fit both the neck (scale `e^{v/2}`, down to
//! 0.01 at `v = -3 s`) and the mouth, so MALA and HMC with a tuned step
//! stay out of the neck (var(v) 4.6-8 instead of 9 in issues #3 and #5, and
//! every peer in results/peers.md). AutoStep HMC chooses the step at every
//! step, exactly, and passes every check below for every seed tried (seeds
//! 0-6 on the suite funnel, 0-3 on the wider one: |z| < 2.6, R-hat
//! 1.003-1.007).
//!
//! autoMALA is exact too (tests/invariance.rs) but is not tested here: its
//! `v` moves as a random walk with the neck's tiny steps, and its excursions
//! deep into the neck are rarer than its ESS says. With 24 chains x 2M steps
//! on the suite funnel, seeds 0-4 gave E[v^2] at z = 0.04, 0.46, -2.92,
//! 0.55, -3.09 and R-hat up to 1.011; at 4M steps seed 4 gave z = -5.7
//! (E[v^2] 8.29 +- 0.12, no chain below v = -7.7). A test that passes for
//! one seed and fails for another would not be a test; results/README.md
//! reports these figures.
//!
//! Each test runs 24 chains from over-dispersed starts: `v` uniform on
//! `(-2.5 s, 2.5 s)` (variance `2.08 s^2`, over twice the target's, with
//! starts deep in the neck and far in the mouth), each `x_i` drawn from its
//! conditional `N(0, e^v)` (over-dispersion in `x` would only put chains
//! at energies of 1e7 in the neck, a test of descent rather than of
//! mixing). The checks, on `v` (ESS from all chains together):
//! - `E[v^2] = s^2` within 3 Monte Carlo standard errors (false-failure
//!   rate 0.27% for a correct sampler with a well estimated MCSE),
//! - `P(v < -s) = 0.158655` within 3 MCSE (0.27%),
//! - rank-normalised split R-hat(v) < 1.01 (the run lengths below give
//!   R-hat about 1.003-1.007; 1.01 is the usual bar),
//! - KS of the pooled draws of `v`, thinned to two autocorrelation times,
//!   against `N(0, s^2)` at p > 1e-3 (0.1%).
//!
//! About 1% together per kernel and funnel. Fixed seeds make the tests
//! deterministic; the settings were chosen once, before looking at the
//! seed's outcome, from run lengths that put the expected R-hat well under
//! 1.01.

mod common;
use boltz::diagnostics::{ess_bulk, ess_mean, ks_test, rhat};
use boltz::energy::{Energy, Funnel};
use boltz::kernels::{AutoMala, Kernel, Mala};
use boltz::sampler::{NoObserver, SampleConfig, sample};
use common::thinned;
use ndarray::{Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use statrs::distribution::{ContinuousCDF, Normal};

const CHAINS: usize = 24;

/// Over-dispersed starts (see the module's comment).
fn starts(dim: usize, scale: f64, seed: u64) -> Array2<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let u = Uniform::new(-2.5 * scale, 2.5 * scale).unwrap();
    let mut y = Array2::zeros((CHAINS, dim));
    for mut row in y.rows_mut() {
        let v: f64 = u.sample(&mut rng);
        row[0] = v;
        for x in row.iter_mut().skip(1) {
            let z: f64 = StandardNormal.sample(&mut rng);
            *x = z * (0.5 * v).exp();
        }
    }
    y
}

/// Draws of `v`, (chains, draws), after `warmup` steps of warm-up (each
/// chain's step and one diagonal mass from all chains' draws pooled: on a
/// funnel one chain's window sees only the part of the neck it was in, and
/// with a mass per chain AutoStep HMC mixes more slowly, R-hat 1.016 at
/// d = 25; these tests are of the kernels).
fn run_v(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    scale: f64,
    (warmup, draws, thin): (usize, usize, usize),
) -> (Array2<f64>, f64) {
    let dim = energy.dim();
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws, c.thin, c.seed) = (CHAINS, warmup, draws, thin, 0);
    c.pooled_mass = true;
    let out = sample(
        energy,
        kernel,
        &c,
        Some(starts(dim, scale, 1)),
        &mut NoObserver,
    )
    .unwrap();
    let grads = out.stats.grad_evals as f64;
    (out.samples.index_axis(Axis(2), 0).to_owned(), grads)
}

/// The four checks; returns whether each passed, with the figures printed.
fn checks(v: ArrayView2<f64>, scale: f64, name: &str, grads: f64) -> [bool; 4] {
    let z = |x: Array2<f64>, truth: f64| {
        let m = x.mean().unwrap();
        let sd = x.std(1.0);
        ((m - truth) / (sd / ess_mean(x.view()).sqrt()), m)
    };
    let (z_var, var) = z(v.mapv(|x| x * x), scale * scale);
    let (z_p, p) = z(v.mapv(|x| f64::from(u8::from(x < -scale))), 0.158_655_25);
    let r = rhat(v);
    let normal = Normal::new(0.0, scale).unwrap();
    let (d, ks_p) = ks_test(&thinned(v), |x| normal.cdf(x));
    eprintln!(
        "{name}: E[v^2] {var:.3} (exact {:.2}, z {z_var:.2}), P(v < -s) {p:.4} (z {z_p:.2}), \
         R-hat {r:.4}, ESS bulk {:.0}, KS D {d:.4} p {ks_p:.3}, {:.1}M gradients",
        scale * scale,
        ess_bulk(v),
        grads / 1e6
    );
    [z_var.abs() < 3.0, z_p.abs() < 3.0, r < 1.01, ks_p > 1e-3]
}

fn assert_unbiased(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    scale: f64,
    run: (usize, usize, usize),
) {
    let (v, grads) = run_v(energy, kernel, scale, run);
    let name = format!("{} on funnel d={} s={scale}", kernel.name(), energy.dim());
    let ok = checks(v.view(), scale, &name, grads);
    let what = [
        "E[v^2] within 3 MCSE",
        "P(v < -s) within 3 MCSE",
        "R-hat < 1.01",
        "KS p > 1e-3",
    ];
    for (ok, what) in ok.iter().zip(what) {
        assert!(ok, "{name}: {what} failed");
    }
}

#[test]
fn autohmc_samples_the_suite_funnel() {
    let f = Funnel::new(10, 3.0).unwrap();
    assert_unbiased(&f, &AutoMala::hmc(0.1, 8).unwrap(), 3.0, (2000, 80_000, 1));
}

#[test]
fn autohmc_samples_a_wider_funnel_in_25_dimensions() {
    let f = Funnel::new(25, 2.5).unwrap();
    assert_unbiased(&f, &AutoMala::hmc(0.1, 8).unwrap(), 2.5, (2000, 80_000, 1));
}

/// The same run with the old fixed-step MALA (step tuned in warm-up) must
/// fail at least one check: it stays out of the neck, and the test sees it.
#[test]
fn fixed_step_mala_is_flagged_on_the_funnel() {
    let f = Funnel::new(10, 3.0).unwrap();
    let (v, grads) = run_v(&f, &Mala::new(0.1).unwrap(), 3.0, (2000, 100_000, 20));
    let ok = checks(v.view(), 3.0, "mala on funnel d=10 s=3", grads);
    assert!(
        ok.iter().any(|ok| !ok),
        "fixed-step MALA passed every funnel check: the checks have no power"
    );
    assert!(!(ok[2] && ok[3]), "neither R-hat nor KS flags MALA");
}
