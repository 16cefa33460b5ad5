//! Diagnostics against known values: ESS of iid and AR(1) draws, R-hat of
//! chains with shifted means.

use boltz::diagnostics::{ess_bulk, ess_mean, ess_tail, mcse_mean, rhat};
use boltz::rng::chain_rng;
use ndarray::Array2;
use rand_distr::{Distribution, StandardNormal};

fn ar1(chains: usize, n: usize, rho: f64, seed: u64) -> Array2<f64> {
    let mut x = Array2::zeros((chains, n));
    for c in 0..chains {
        let mut rng = chain_rng(seed, c as u64);
        let mut v: f64 = StandardNormal.sample(&mut rng);
        for t in 0..n {
            let z: f64 = StandardNormal.sample(&mut rng);
            v = rho * v + (1.0 - rho * rho).sqrt() * z;
            x[[c, t]] = v;
        }
    }
    x
}

#[test]
fn ess_of_iid_draws_is_the_number_of_draws() {
    // 4 x 5000 iid normals: the ESS estimator's own relative sd is about
    // sqrt(2/N) * (a few) ~ 3%; 15% is over 4 of its sds.
    let x = ar1(4, 5000, 0.0, 1);
    let n = 20000.0;
    for (name, e) in [
        ("bulk", ess_bulk(x.view())),
        ("mean", ess_mean(x.view())),
        ("tail", ess_tail(x.view())),
    ] {
        assert!((e / n - 1.0).abs() < 0.15, "{name}: ess {e} vs {n}");
    }
    // MCSE of the mean of iid N(0,1) draws ~ 1/sqrt(N).
    let se = mcse_mean(x.view());
    assert!((se * n.sqrt() - 1.0).abs() < 0.1, "mcse {se}");
}

#[test]
fn ess_of_ar1_matches_theory() {
    // ESS = N (1 - rho) / (1 + rho); the estimator's relative sd for
    // rho = 0.9 and N = 40000 is about 5%; tolerance 20%.
    for rho in [0.5, 0.9] {
        let x = ar1(4, 10000, rho, 2);
        let n = 40000.0;
        let truth = n * (1.0 - rho) / (1.0 + rho);
        let e = ess_bulk(x.view());
        assert!(
            (e / truth - 1.0).abs() < 0.2,
            "rho {rho}: ess {e} vs {truth}"
        );
        let r = rhat(x.view());
        assert!(r < 1.01, "mixed chains give R-hat {r}");
    }
}

#[test]
fn rhat_flags_shifted_chains() {
    let mut x = ar1(4, 1000, 0.3, 3);
    for t in 0..1000 {
        x[[0, t]] += 1.0;
    }
    let r = rhat(x.view());
    assert!(r > 1.1, "R-hat {r}");
    // A scale difference only shows in the folded R-hat.
    let mut y = ar1(4, 1000, 0.0, 4);
    for t in 0..1000 {
        y[[1, t]] *= 4.0;
    }
    assert!(rhat(y.view()) > 1.05);
}

#[test]
fn ess_of_edge_cases_is_arviz_s_or_nan_never_a_panic() {
    // An alternating chain: the first pair of autocorrelations is already
    // negative, so tau takes its floor 1 / log10(N) as in ArviZ's `_ess`:
    // ESS = N log10(N).
    let alt = Array2::from_shape_fn((1, 8), |(_, t)| if t % 2 == 0 { 1.0 } else { -1.0 });
    let e = boltz::diagnostics::ess(alt.view());
    assert!((e - 8.0 * 8f64.log10()).abs() < 1e-12, "alternating: {e}");
    // Values whose variance overflows have no ESS (was a panic, found by
    // the forged-shard fuzz target).
    let mut big = ar1(2, 10, 0.5, 3);
    big[[1, 2]] = -1.5e301;
    big[[0, 5]] = 1.7e308;
    assert!(boltz::diagnostics::ess(big.view()).is_nan());
    let _ = ess_bulk(big.view());
    let _ = ess_tail(big.view());
    let _ = rhat(big.view());
}
