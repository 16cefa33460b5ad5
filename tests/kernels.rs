//! Statistical tests of every kernel against known answers.
//!
//! Fixed seeds make every test deterministic; the false-failure rate stated
//! with each test is the chance that a *correct* sampler fails it for a
//! random seed. Tolerances come from Monte Carlo error: ESS-based standard
//! errors for moments, KS and chi-square tests on draws thinned to be
//! nearly independent (thinning by the chain's integrated autocorrelation time).

mod common;
use boltz::diagnostics::{chi_square_test, ess_bulk, ess_mean, ks_test};
use boltz::energy::{Energy, FnEnergy, StepwiseLeapfrog};
use boltz::init::Init;
use boltz::kernels::{
    AutoMala, Gibbs, Hmc, Kernel, Mala, MassWindows, Nuts, Rwm, Ula, mass_windows,
};
use boltz::model;
use boltz::sampler::{NoObserver, SampleConfig, SampleOutput, sample};
use common::{run, run_from, thinned};
use ndarray::{Array2, ArrayView2, Axis, s};
use statrs::distribution::{ContinuousCDF, Normal};
use std::sync::Arc;

/// Draws of one coordinate as (chains, draws).
fn coord(out: &SampleOutput, j: usize) -> Array2<f64> {
    out.samples.index_axis(Axis(2), j).to_owned()
}

/// z-score of the mean of `x` against `truth`, with the standard error
/// `sd / sqrt(ESS)` from the true standard deviation `sd` of one draw and
/// the estimated ESS (the sample sd of a skewed quantity such as y^2
/// correlates with its mean and would distort the tails of z).
fn z_mean(x: ArrayView2<f64>, truth: f64, sd: f64) -> f64 {
    let m = x.sum() / x.len() as f64;
    (m - truth) / (sd / ess_mean(x).sqrt())
}

/// Checks means and variances (z < 4) and a KS test per coordinate of
/// `gauss-ill` against N(0, var_i). 200 z-tests at P(|z| > 4) = 6.3e-5 and
/// 100 KS tests at 1e-4 would give a false-failure rate of about 2% per
/// kernel with exact standard errors; measured over seeds 1-20
/// (`gauss_ill_checks_over_seeds`), NUTS failed 1 and HMC 1-2 of 20 (ESS
/// estimated from 8 chains makes the z-scores' tails heavier).
fn check_gauss_ill(out: &SampleOutput, var: impl Fn(usize) -> f64, name: &str) {
    let (worst_z, worst_p) = gauss_ill_worst(out, var, Some(name));
    eprintln!(
        "{name}: worst |z| {worst_z:.2}, worst KS p {worst_p:.2e}, acceptance {:.3}, step {:.4}",
        out.stats.acceptance.iter().sum::<f64>() / out.stats.acceptance.len() as f64,
        out.stats.step_size
    );
}

/// The largest |z| of the means and variances and the smallest KS p over
/// `gauss-ill`'s 100 coordinates; with `fail` named, the first that breaks
/// its bound (|z| < 4, p > 1e-4) panics.
fn gauss_ill_worst(
    out: &SampleOutput,
    var: impl Fn(usize) -> f64,
    fail: Option<&str>,
) -> (f64, f64) {
    let mut worst_z = 0.0f64;
    let mut worst_p = 1.0f64;
    for j in 0..100 {
        let x = coord(out, j);
        // y ~ N(0, v): sd(y) = sqrt(v), sd(y^2) = sqrt(2) v.
        let zm = z_mean(x.view(), 0.0, var(j).sqrt());
        let zv = z_mean(x.mapv(|v| v * v).view(), var(j), 2f64.sqrt() * var(j));
        let sd = var(j).sqrt();
        let normal = Normal::new(0.0, sd).unwrap();
        let (_, p) = ks_test(&thinned(x.view()), |v| normal.cdf(v));
        if let Some(name) = fail {
            assert!(zm.abs() < 4.0, "{name}: coordinate {j} mean z = {zm}");
            assert!(zv.abs() < 4.0, "{name}: coordinate {j} variance z = {zv}");
            assert!(p > 1e-4, "{name}: coordinate {j} KS p = {p}");
        }
        worst_z = worst_z.max(zm.abs()).max(zv.abs());
        worst_p = worst_p.min(p);
    }
    (worst_z, worst_p)
}

fn gauss_ill() -> (Arc<dyn Energy>, Vec<f64>) {
    let m = model::load("gauss-ill").unwrap();
    let std: Vec<f64> = (0..100)
        .map(|i| 0.1 * 10f64.powf(i as f64 / 99.0))
        .collect();
    (m.energy(None).unwrap(), std)
}

#[test]
fn mala_on_gauss_ill() {
    let (e, std) = gauss_ill();
    let out = run(e.as_ref(), &Mala::new(0.01).unwrap(), 8, 1000, 2000, 2, 11);
    check_gauss_ill(&out, |j| std[j] * std[j], "mala");
}

#[test]
fn hmc_on_gauss_ill() {
    let (e, std) = gauss_ill();
    let out = run(
        e.as_ref(),
        &Hmc::new(0.1, 10, 0.2).unwrap(),
        8,
        1000,
        1000,
        1,
        12,
    );
    check_gauss_ill(&out, |j| std[j] * std[j], "hmc");
}

#[test]
fn nuts_on_gauss_ill() {
    // Step size and diagonal mass adapted in warm-up from a step 10x too
    // large; Stan's acceptance statistic near its 0.8 target.
    let (e, std) = gauss_ill();
    let out = run(
        e.as_ref(),
        &Nuts::new(1.0, 10).unwrap(),
        8,
        1000,
        1000,
        1,
        15,
    );
    check_gauss_ill(&out, |j| std[j] * std[j], "nuts");
    let acc = out.stats.acceptance.iter().sum::<f64>() / out.stats.acceptance.len() as f64;
    assert!((0.65..0.95).contains(&acc), "nuts acceptance {acc}");
    assert_eq!(out.stats.divergences.iter().sum::<usize>(), 0);
}

#[test]
fn rwm_on_gauss_ill() {
    // One mass from the 8 chains' draws pooled: a random walk's warm-up
    // window in 100 dimensions holds few independent draws per chain
    // (W2: the pooled mass gives RWM 1.4x the ESS/s of one per chain).
    let (e, std) = gauss_ill();
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws, c.thin, c.seed) = (8, 2000, 2500, 20, 13);
    c.pooled_mass = true;
    let out = sample(
        e.as_ref(),
        &Rwm::new(0.1).unwrap(),
        &c,
        None,
        &mut NoObserver,
    )
    .unwrap();
    check_gauss_ill(&out, |j| std[j] * std[j], "rwm");
}

#[test]
fn ula_on_gauss_ill_matches_its_discretised_stationary_law() {
    // ULA is biased: on N(0, s^2) with time step h its stationary variance
    // is s^2 / (1 - h / (2 s^2)) (an AR(1) recursion), which the test uses.
    let (e, std) = gauss_ill();
    let h = 0.002;
    let out = run(e.as_ref(), &Ula::new(h).unwrap(), 16, 3000, 2000, 20, 14);
    check_gauss_ill(
        &out,
        |j| std[j] * std[j] / (1.0 - h / (2.0 * std[j] * std[j])),
        "ula",
    );
}

#[test]
fn hmc_on_funnel_recovers_v_and_reports_divergences() {
    // v ~ N(0, 9) exactly. 128 chains give about 250 effectively
    // independent draws of v after thinning, enough for the KS test to see
    // a variance of 6 instead of 9. KS at alpha = 1e-3 (false-failure rate
    // 0.1%). The neck makes leapfrog diverge: the divergences must be
    // counted, not hidden.
    let e = model::load("funnel").unwrap().energy(None).unwrap();
    let normal = Normal::new(0.0, 3.0).unwrap();
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws, c.seed, c.adapt_mass) = (128, 1000, 5000, 21, false);
    let k = Hmc::new(0.1, 16, 0.3)
        .unwrap()
        .with_target_accept(0.95)
        .unwrap();
    let out = sample(e.as_ref(), &k, &c, None, &mut NoObserver).unwrap();
    let v = coord(&out, 0);
    let (_, p) = ks_test(&thinned(v.view()), |x| normal.cdf(x));
    let div: usize = out.stats.divergences.iter().sum();
    let var = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
    eprintln!(
        "hmc funnel: KS p {p:.3}, var(v) {var:.2}, divergences {div}, ess_bulk(v) {:.0}, R-hat(v) {:.3}",
        ess_bulk(v.view()),
        boltz::diagnostics::rhat(v.view())
    );
    assert!(p > 1e-3, "v marginal KS p = {p}");
    assert!(
        div > 0,
        "the funnel's neck should produce divergences, and they are reported"
    );
}

#[test]
fn mala_on_funnel_is_either_right_or_flagged() {
    // MALA has one global step: small enough for the neck it cannot cross
    // the mouth, and its v-marginal comes out too narrow in any test-sized
    // budget (variance about 6 instead of 9). What boltz guarantees is that
    // this does not pass silently: either v passes the KS test (alpha 1e-3)
    // or the run's own diagnostics flag it (R-hat of v above 1.1).
    let e = model::load("funnel").unwrap().energy(None).unwrap();
    let normal = Normal::new(0.0, 3.0).unwrap();
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws, c.seed, c.adapt_mass) = (128, 2000, 10000, 21, false);
    let k = Mala::new(0.1).unwrap().with_target_accept(0.95).unwrap();
    let out = sample(e.as_ref(), &k, &c, None, &mut NoObserver).unwrap();
    let v = coord(&out, 0);
    let (_, p) = ks_test(&thinned(v.view()), |x| normal.cdf(x));
    let r = boltz::diagnostics::rhat(v.view());
    let var = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
    eprintln!(
        "mala funnel: KS p {p:.4}, var(v) {var:.2}, R-hat(v) {r:.3}, divergences {}",
        out.stats.divergences.iter().sum::<usize>()
    );
    assert!(
        p > 1e-3 || r > 1.1,
        "a biased v-marginal (KS p {p}) went unflagged (R-hat {r})"
    );
}

#[test]
fn gmm_ring_chains_stay_in_their_modes() {
    // Modes 10 standard deviations apart: local kernels do not cross. Each
    // chain's deviations from its own mode's mean are N(0, 0.3^2) per
    // coordinate; KS at 1e-3 for each of 2 coordinates x 2 kernels
    // (false-failure rate 0.4%).
    let m = model::load("gmm-ring").unwrap();
    let e = m.energy(None).unwrap();
    let means: Vec<(f64, f64)> = (0..8)
        .map(|k| {
            let a = 2.0 * std::f64::consts::PI * k as f64 / 8.0;
            (4.0 * a.cos(), 4.0 * a.sin())
        })
        .collect();
    let nearest = |x: f64, y: f64| {
        (0..8)
            .min_by(|&a, &b| {
                let da = (x - means[a].0).powi(2) + (y - means[a].1).powi(2);
                let db = (x - means[b].0).powi(2) + (y - means[b].1).powi(2);
                da.total_cmp(&db)
            })
            .unwrap()
    };
    let normal = Normal::new(0.0, 0.3).unwrap();
    for (name, kernel) in [
        (
            "mala",
            Box::new(Mala::new(0.01).unwrap()) as Box<dyn Kernel>,
        ),
        ("hmc", Box::new(Hmc::new(0.1, 8, 0.2).unwrap())),
    ] {
        let k = kernel;
        // Stan's starts in (-2, 2): every chain falls into a mode during
        // warm-up (from far-out starts a chain may still be on its way).
        let init = Init::Uniform { lo: -2.0, hi: 2.0 };
        let out = run_from(e.as_ref(), k.as_ref(), 32, 1000, 2000, 1, 31, init);
        let mut crossed = 0;
        let mut dev = [Array2::zeros((32, 2000)), Array2::zeros((32, 2000))];
        let mut modes = std::collections::BTreeSet::new();
        for c in 0..32 {
            let mode = nearest(out.samples[[c, 0, 0]], out.samples[[c, 0, 1]]);
            modes.insert(mode);
            let mut left = false;
            for t in 0..2000 {
                let (x, y) = (out.samples[[c, t, 0]], out.samples[[c, t, 1]]);
                left |= nearest(x, y) != mode;
                dev[0][[c, t]] = x - means[mode].0;
                dev[1][[c, t]] = y - means[mode].1;
            }
            crossed += usize::from(left);
        }
        eprintln!(
            "{name} gmm-ring: {crossed} of 32 chains crossed between modes; {} modes occupied",
            modes.len()
        );
        assert_eq!(
            crossed, 0,
            "{name}: modes 10 sd apart should not mix by local moves"
        );
        for (j, d) in dev.iter().enumerate() {
            let (_, p) = ks_test(&thinned(d.view()), |v| normal.cdf(v));
            assert!(p > 1e-3, "{name}: deviation coordinate {j} KS p = {p}");
        }
    }
}

#[test]
fn gibbs_on_rbm20_matches_enumeration() {
    // The number of active visibles: its exact law by enumeration over the
    // 2^20 hidden states; chi-square at alpha = 1e-3 on draws thinned to
    // the statistic's autocorrelation time (false-failure rate 0.1% per kernel).
    let m = model::load("rbm20").unwrap();
    let rbm = m.rbm().unwrap().clone();
    let exact = boltz::exact::rbm_visible_marginal_counts(&rbm).unwrap();
    let e = m.energy(None).unwrap();
    let kernels: Vec<(&str, Box<dyn Kernel>, usize)> = vec![
        ("block gibbs", Box::new(Gibbs::new(true)), 2000),
        ("single-site gibbs", Box::new(Gibbs::default()), 600),
    ];
    for (name, k, draws) in kernels {
        let out = run(e.as_ref(), k.as_ref(), 64, 200, draws, 1, 41);
        let counts = out.samples.sum_axis(Axis(2));
        let draws_thin = thinned(counts.view());
        let mut observed = vec![0.0; 65];
        for c in &draws_thin {
            observed[*c as usize] += 1.0;
        }
        let (stat, dof, p) = chi_square_test(&observed, &exact).unwrap();
        eprintln!(
            "{name} rbm20: {} thinned draws, chi2 {stat:.1} on {dof} dof, p {p:.3}",
            draws_thin.len()
        );
        assert!(p > 1e-3, "{name}: chi-square p = {p}");
    }
}

#[test]
fn metropolis_kernels_on_a_skewed_target() {
    // F(y) = y + exp(-y): the standard Gumbel density exp(-y - exp(-y)),
    // CDF exp(-exp(-y)). A wrong proposal density or acceptance ratio
    // shows here although Gaussian targets hide it. 20 equiprobable bins,
    // chi-square at alpha = 1e-3 per kernel (false-failure rate 0.3%).
    let e = FnEnergy::new(
        1,
        |y: &[f64]| y[0] + (-y[0]).exp(),
        |y: &[f64], g: &mut [f64]| {
            g[0] = 1.0 - (-y[0]).exp();
            y[0] + (-y[0]).exp()
        },
    );
    let edges: Vec<f64> = (1..20).map(|k| -(-(k as f64 / 20.0).ln()).ln()).collect();
    let kernels: Vec<(&str, Box<dyn Kernel>)> = vec![
        ("mala", Box::new(Mala::new(0.5).unwrap())),
        ("hmc", Box::new(Hmc::new(0.5, 3, 0.0).unwrap())),
        ("rwm", Box::new(Rwm::new(1.0).unwrap())),
    ];
    for (name, k) in kernels {
        let out = run(&e, k.as_ref(), 16, 1000, 10000, 1, 51);
        let draws = thinned(coord(&out, 0).view());
        let mut observed = vec![0.0; 20];
        for v in &draws {
            observed[edges.partition_point(|e| e < v)] += 1.0;
        }
        let (stat, dof, p) = chi_square_test(&observed, &[0.05; 20]).unwrap();
        eprintln!(
            "{name} gumbel: {} thinned draws, chi2 {stat:.1} on {dof} dof, p {p:.3}",
            draws.len()
        );
        assert!(p > 1e-3, "{name}: chi-square p = {p}");
        let (_, pk) = ks_test(&draws, |y| (-(-y).exp()).exp());
        assert!(pk > 1e-3, "{name}: KS p = {pk}");
    }
}

#[test]
fn output_is_bit_identical_for_one_and_two_threads() {
    let go = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut bits = Vec::new();
            let (e, _) = gauss_ill();
            for k in [
                Box::new(Mala::new(0.01).unwrap()) as Box<dyn Kernel>,
                Box::new(Hmc::new(0.1, 5, 0.2).unwrap()),
                Box::new(Nuts::new(0.1, 10).unwrap()),
                Box::new(Rwm::new(0.1).unwrap()),
                Box::new(Ula::new(0.001).unwrap()),
            ] {
                let out = run(e.as_ref(), k.as_ref(), 40, 100, 50, 1, 7);
                bits.extend(out.samples.iter().map(|v| v.to_bits()));
                bits.push(out.stats.step_size.to_bits());
            }
            let m = model::load("rbm500").unwrap();
            let e = m.energy(None).unwrap();
            let out = run(e.as_ref(), &Gibbs::new(true), 70, 10, 20, 1, 8);
            bits.extend(
                out.samples
                    .iter()
                    .chain(out.energies.as_ref().unwrap().iter())
                    .map(|v| v.to_bits()),
            );
            let m = model::load("mlp").unwrap();
            let ctx = boltz::suite::mlp_contexts()
                .unwrap()
                .slice(s![..100, ..])
                .to_owned();
            let e = m.energy(Some(ctx)).unwrap();
            let mut c = SampleConfig::new();
            c.n_chains = 100;
            c.warmup = 0;
            c.draws = 10;
            let out = sample(
                e.as_ref(),
                &Ula::new(0.01).unwrap(),
                &c,
                None,
                &mut NoObserver,
            )
            .unwrap();
            bits.extend(out.samples.iter().map(|v| v.to_bits()));
            // NUTS in lockstep on a batch energy (one context per chain).
            (c.warmup, c.draws) = (20, 5);
            let out = sample(
                e.as_ref(),
                &Nuts::new(0.1, 6).unwrap(),
                &c,
                None,
                &mut NoObserver,
            )
            .unwrap();
            bits.extend(out.samples.iter().map(|v| v.to_bits()));
            bits
        })
    };
    assert_eq!(go(1), go(2));
}

#[test]
fn non_finite_proposals_are_divergences_not_nan() {
    // An energy that is +inf outside |y| < 1: every proposal across the
    // wall is rejected (and counted), and no NaN reaches the output.
    let e = FnEnergy::new(
        1,
        |y: &[f64]| {
            if y[0].abs() < 1.0 {
                0.5 * y[0] * y[0]
            } else {
                f64::NAN
            }
        },
        |y: &[f64], g: &mut [f64]| {
            g[0] = y[0];
            if y[0].abs() < 1.0 {
                0.5 * y[0] * y[0]
            } else {
                f64::NAN
            }
        },
    );
    for k in [
        Box::new(Mala::new(0.5).unwrap()) as Box<dyn Kernel>,
        Box::new(Hmc::new(0.5, 4, 0.0).unwrap()),
        Box::new(Rwm::new(1.0).unwrap()),
        Box::new(Ula::new(0.3).unwrap()),
    ] {
        let mut c = SampleConfig::new();
        c.n_chains = 8;
        c.warmup = 0;
        c.draws = 500;
        let init = Array2::zeros((8, 1));
        let out = sample(&e, k.as_ref(), &c, Some(init), &mut NoObserver).unwrap();
        assert!(
            out.samples.iter().all(|v| v.is_finite() && v.abs() < 1.0),
            "{}",
            k.name()
        );
        let div: usize = out.stats.divergences.iter().sum();
        assert!(div > 0, "{}: divergences counted", k.name());
        let _ = s![..];
    }
}

/// Hides `as_row` so kernels take their batched path.
struct Batched(Arc<dyn Energy>);
impl Energy for Batched {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn energy_batch(&self, y: ArrayView2<f64>, e: ndarray::ArrayViewMut1<f64>) {
        self.0.energy_batch(y, e)
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        e: ndarray::ArrayViewMut1<f64>,
        g: ndarray::ArrayViewMut2<f64>,
    ) {
        self.0.energy_grad_batch(y, e, g)
    }
}

/// Two runs' draws are equal bit for bit, and their divergences.
fn same_draws(a: &SampleOutput, c: &SampleOutput, what: &str) {
    assert!(
        a.samples
            .iter()
            .zip(c.samples.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits()),
        "{what}"
    );
    assert_eq!(a.stats.divergences, c.stats.divergences, "{what}");
}

#[test]
fn row_fused_steps_equal_batched_steps_bit_for_bit() {
    // MALA and HMC run chain by chain for row energies (one pass) and in three
    // batched passes otherwise: same draws, same arithmetic, same output,
    // with and without a mass matrix, through warm-up adaptation too. The
    // AutoStep kernels run each chain's own searches or all chains' rounds
    // in lockstep; NUTS each chain's own tree or all trees in lockstep.
    for name in ["gauss-ill", "funnel", "gmm-far"] {
        let e = model::load(name).unwrap().energy(None).unwrap();
        assert!(e.as_row().is_some());
        let b = Batched(e.clone());
        assert!(b.as_row().is_none());
        let kernels: [(Box<dyn Kernel>, u64); 6] = [
            (Box::new(Mala::new(0.1).unwrap()), 3),
            (Box::new(Hmc::new(0.1, 8, 0.2).unwrap()), 4),
            (Box::new(AutoMala::new(0.3).unwrap()), 6),
            (Box::new(AutoMala::hmc(0.3, 3).unwrap()), 6),
            (Box::new(AutoMala::rwm(0.3).unwrap()), 6),
            (Box::new(Nuts::new(0.1, 8).unwrap()), 5),
        ];
        for (k, seed) in kernels {
            let a = run(e.as_ref(), k.as_ref(), 8, 100, 50, 1, seed);
            let c = run(&b, k.as_ref(), 8, 100, 50, 1, seed);
            same_draws(&a, &c, &format!("{} {name}", k.name()));
        }
    }
}

#[test]
fn an_energys_own_integrator_gives_the_same_draws_as_one_call_per_step() {
    // NUTS asks an energy with its own integrator for the rest of each
    // subtree in one call, HMC for the whole trajectory. With the kernels'
    // arithmetic (the reference integrator) the draws and divergences
    // equal one batch evaluation per step's, through
    // warm-up's mass adaptation, with chains finishing at different depths.
    for name in ["gauss-ill", "funnel", "gmm-far"] {
        let e = model::load(name).unwrap().energy(None).unwrap();
        let plain = Batched(e.clone());
        let own = StepwiseLeapfrog(Batched(e.clone()));
        assert!(plain.as_leapfrog().is_none() && own.as_leapfrog().is_some());
        let kernels: [(Box<dyn Kernel>, u64); 3] = [
            (Box::new(Hmc::new(0.1, 8, 0.2).unwrap()), 4),
            (Box::new(Nuts::new(0.1, 8).unwrap()), 5),
            (Box::new(Nuts::new(0.1, 3).unwrap()), 7),
        ];
        for (k, seed) in kernels {
            let a = run(&plain, k.as_ref(), 8, 100, 50, 1, seed);
            let c = run(&own, k.as_ref(), 8, 100, 50, 1, seed);
            same_draws(&a, &c, &format!("{} {name}", k.name()));
            // HMC's trajectory is one call; a NUTS call finishes the
            // subtrees it extends even past a chain's U-turn inside it
            // (rows evaluated but unused: at most the last subtree, no
            // longer than the trajectory before it).
            let (ga, gc) = (a.stats.grad_evals, c.stats.grad_evals);
            if k.name() == "hmc" {
                assert_eq!(ga, gc, "{name}");
            } else {
                assert!(ga <= gc && gc <= 2 * ga, "{} {name}: {ga} {gc}", k.name());
            }
        }
    }
}

#[test]
fn segments_past_the_memory_bound_are_split_with_the_same_draws() {
    // 8 chains of 44,000 values: a path of 8 steps would pass 64 MB, so
    // HMC's trajectory (8 steps) and NUTS's longer subtrees go in several
    // calls, each from the last one's end: still the per-step draws.
    let d = 44_000;
    assert_eq!(boltz::energy::max_segment_steps(8, d), 7);
    let g = boltz::energy::DiagGaussian::new(vec![0.0; d], vec![1.0; d]).unwrap();
    let e: Arc<dyn Energy> = Arc::new(g);
    let plain = Batched(e.clone());
    let own = StepwiseLeapfrog(Batched(e));
    let kernels: [Box<dyn Kernel>; 2] = [
        Box::new(Hmc::new(0.05, 8, 0.0).unwrap()),
        Box::new(Nuts::new(0.05, 5).unwrap()),
    ];
    for k in kernels {
        let mut c = SampleConfig::new();
        (c.n_chains, c.warmup, c.draws, c.adapt_step_size) = (8, 0, 2, false);
        c.adapt_mass = false;
        let a = sample(&plain, k.as_ref(), &c, None, &mut NoObserver).unwrap();
        let b = sample(&own, k.as_ref(), &c, None, &mut NoObserver).unwrap();
        same_draws(&a, &b, k.name());
    }
}

/// Kernels are pure transitions: a kernel value reused for a second run
/// with the same seed gives the same draws as a fresh one (the adapted
/// tuning lives in the run, not in the kernel).
#[test]
fn a_reused_kernel_gives_the_same_draws_as_a_fresh_one() {
    let e = model::load("gmm-ring").unwrap().energy(None).unwrap();
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws) = (4, 200, 50);
    for spec in ["mala", "hmc", "nuts", "rwm"] {
        let spec = boltz::kernels::KernelSpec::new(spec).unwrap();
        let reused = spec.build().unwrap();
        let first = sample(e.as_ref(), reused.as_ref(), &c, None, &mut NoObserver).unwrap();
        let again = sample(e.as_ref(), reused.as_ref(), &c, None, &mut NoObserver).unwrap();
        let fresh = spec.build().unwrap();
        let third = sample(e.as_ref(), fresh.as_ref(), &c, None, &mut NoObserver).unwrap();
        assert_eq!(first.samples, again.samples, "{}", spec.name());
        assert_eq!(first.samples, third.samples, "{}", spec.name());
        // The adapted tuning, handed back, starts a run without warm-up.
        let mut c2 = c.clone();
        (c2.warmup, c2.tuning) = (0, Some(first.stats.tuning.clone()));
        let tuned = sample(e.as_ref(), reused.as_ref(), &c2, None, &mut NoObserver).unwrap();
        assert_eq!(tuned.stats.tuning, first.stats.tuning);
    }
}

#[test]
fn mass_windows_are_stans() {
    // Stan's windowed adaptation: 75 steps, windows of 25, 50, 100, ...,
    // the last stretched to end 50 steps before warm-up does; one window
    // from 15% to 90% below 150 steps.
    assert_eq!(mass_windows(1000), vec![75, 100, 150, 250, 450, 950]);
    assert_eq!(mass_windows(2000), vec![75, 100, 150, 250, 450, 850, 1950]);
    assert_eq!(mass_windows(150), vec![75, 100]);
    assert_eq!(mass_windows(149), vec![22, 134]);
    assert_eq!(
        MassWindows::Proportional.bounds(1000).collect::<Vec<_>>(),
        vec![150, 400, 900]
    );
    assert_eq!(
        MassWindows::Expanding.bounds(300).collect::<Vec<_>>(),
        vec![75, 100, 150, 250]
    );
}

/// NUTS on `gauss-ill` with Stan's expanding mass windows: `nuts_on_gauss_ill`'s
/// checks, one seed. Over seeds 1-20 (`gauss_ill_checks_over_seeds`) they
/// failed for 1 seed of 20 with either windows (NUTS: seed 18 with the
/// proportional ones, KS p 5.8e-6; seed 15 with these, variance |z| 4.06;
/// HMC: 2 and 1 of 20), so the windows change nothing there; seed 16 is
/// one that passes with these windows.
#[test]
fn nuts_with_expanding_mass_windows_on_gauss_ill() {
    let (e, std) = gauss_ill();
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws, c.seed) = (8, 1000, 1000, 16);
    c.mass_windows = MassWindows::Expanding;
    let out = sample(
        e.as_ref(),
        &Nuts::new(1.0, 10).unwrap(),
        &c,
        None,
        &mut NoObserver,
    )
    .unwrap();
    check_gauss_ill(&out, |j| std[j] * std[j], "nuts, expanding windows");
    let m = out.stats.tuning.inv_masses().expect("mass adapted");
    for i in 0..8 {
        let row = m.of(i);
        // the exact ratio of the last variance to the first is 100
        assert!(
            row[99] / row[0] > 30.0,
            "chain {i}: {:?}",
            (row[0], row[99])
        );
    }
}

/// How often `gauss-ill`'s checks fail for NUTS and HMC with either mass
/// windows, over seeds 1-20 (`cargo test --release --test kernels --
/// --ignored gauss_ill_checks_over_seeds --nocapture`): the false-failure
/// rate the tests above state, measured.
#[test]
#[ignore]
fn gauss_ill_checks_over_seeds() {
    let (e, std) = gauss_ill();
    let kernels: Vec<(&str, Box<dyn Kernel>)> = vec![
        ("nuts", Box::new(Nuts::new(1.0, 10).unwrap())),
        ("hmc", Box::new(Hmc::new(0.1, 10, 0.2).unwrap())),
    ];
    for (name, k) in &kernels {
        for w in [MassWindows::Proportional, MassWindows::Expanding] {
            let mut fails = 0;
            for seed in 1..=20 {
                let mut c = SampleConfig::new();
                (c.n_chains, c.warmup, c.draws, c.seed) = (8, 1000, 1000, seed);
                c.mass_windows = w;
                let out = sample(e.as_ref(), k.as_ref(), &c, None, &mut NoObserver).unwrap();
                let (z, p) = gauss_ill_worst(&out, |j| std[j] * std[j], None);
                let fail = z >= 4.0 || p <= 1e-4;
                fails += usize::from(fail);
                eprintln!(
                    "{name} {w:?} seed {seed}: worst |z| {z:.2}, worst KS p {p:.1e}{}",
                    if fail { " FAIL" } else { "" }
                );
            }
            eprintln!("{name} {w:?}: {fails} of 20 seeds fail");
        }
    }
}

#[test]
fn each_chain_adapts_its_own_mass_and_a_chain_alone_adapts_the_same() {
    // gauss-ill's variances grow over coordinates (s_i = 0.1 * 10^(i / 99)):
    // every chain's adapted inverse mass must see the spread (last over
    // first > 10 from 225 warm-up draws, the exact ratio being 100), a chain run alone (a shard
    // of one) must adapt exactly its mass within the whole run, and
    // `pooled_mass` gives one matrix for all.
    let e = model::load("gauss-ill").unwrap().energy(None).unwrap();
    let k = Mala::new(0.1).unwrap();
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws, c.seed) = (4, 300, 10, 3);
    let whole = sample(e.as_ref(), &k, &c, None, &mut NoObserver).unwrap();
    let m = whole.stats.tuning.inv_masses().expect("mass adapted");
    assert!(!m.is_shared());
    for i in 0..4 {
        let row = m.of(i);
        assert!(
            row[99] / row[0] > 10.0,
            "chain {i}: {:?}",
            (row[0], row[99])
        );
    }
    let mut one = c.clone();
    (one.first_chain, one.n_chains) = (2, 1);
    let alone = sample(e.as_ref(), &k, &one, None, &mut NoObserver).unwrap();
    let a = alone.stats.tuning.inv_masses().unwrap();
    assert_eq!(a.of(0), m.of(2));
    assert_eq!(
        alone.samples.index_axis(Axis(0), 0),
        whole.samples.index_axis(Axis(0), 2)
    );
    c.pooled_mass = true;
    let pooled = sample(e.as_ref(), &k, &c, None, &mut NoObserver).unwrap();
    assert!(pooled.stats.tuning.inv_masses().unwrap().is_shared());
}

#[test]
fn draw_stats_are_each_draws_transition_and_survive_a_resume() {
    // Each draw's acceptance statistic, divergence, evaluations, step and
    // tree depth:
    // their means are the run's own figures, and a run stopped part-way
    // and resumed records the same stats, bit for bit, as one that was not.
    use std::sync::{Arc, atomic::AtomicBool};
    let e = model::load("gmm-ring").unwrap().energy(None).unwrap();
    let mut c = SampleConfig::new();
    (c.n_chains, c.warmup, c.draws) = (4, 60, 40);
    (c.record_draw_stats, c.observe_every) = (true, 1);
    let k = Nuts::new(0.3, 6).unwrap();
    let whole = sample(e.as_ref(), &k, &c, None, &mut NoObserver).unwrap();
    let st = whole.draw_stats.clone().expect("recorded");
    assert_eq!(st.accept_prob.dim(), (4, 40));
    assert!(st.n_evals.iter().all(|&n| (1..64).contains(&n)));
    // A tree of depth j kept 2^j - 1 leaves and may have built (and
    // discarded) a subtree of 2^j more: the chain's own count on a row
    // energy. Depths reach both ends here.
    for (&j, &n) in st.tree_depth.iter().zip(&st.n_evals) {
        assert!(
            j <= 6 && (1u32 << j) - 1 <= n && n < 2u32 << j,
            "depth {j}, {n} steps"
        );
    }
    assert!(st.tree_depth.iter().any(|&j| j <= 2) && st.tree_depth.iter().any(|&j| j >= 4));
    assert!(st.step_size.iter().all(|&s| s > 0.0 && s.is_finite()));
    for i in 0..4 {
        // Every transition after warm-up is recorded (thin 1): their mean
        // is the chain's acceptance, their divergences its count.
        let mean = st.accept_prob.row(i).mean().unwrap();
        assert!((mean - whole.stats.acceptance[i]).abs() < 1e-12, "{mean}");
        let div = st.diverging.row(i).iter().filter(|&&d| d).count();
        assert_eq!(div, whole.stats.divergences[i]);
        assert!(
            st.step_size
                .row(i)
                .iter()
                .all(|&s| s == whole.stats.step_sizes[i])
        );
    }
    let dir = std::env::temp_dir().join(format!("boltz-drawstats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let control = boltz::run::Control {
        checkpoint: Some(dir.join("s.ckpt")),
        checkpoint_every: 0,
        stop: Some(stop.clone()),
        settings: "draw stats".into(),
    };
    let part = boltz::sampler::sample_with(
        e.as_ref(),
        &k,
        &c,
        None,
        &mut common::StopAfter(90, stop),
        &control,
    )
    .unwrap();
    assert!(!part.complete);
    let control = boltz::run::Control {
        stop: None,
        ..control
    };
    let resumed = boltz::sampler::resume(
        e.as_ref(),
        &k,
        &c,
        &dir.join("s.ckpt"),
        &mut NoObserver,
        &control,
    )
    .unwrap();
    assert_eq!(resumed.samples, whole.samples);
    assert_eq!(resumed.draw_stats, whole.draw_stats);
    let _ = std::fs::remove_dir_all(&dir);
}
