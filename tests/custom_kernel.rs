//! The seam a kernel written outside boltz uses: `examples/custom_kernel.rs`
//! (Barker's proposal from the public `Kernel`, `for_each_block`,
//! `evaluate_proposals` and `metropolis`) runs through the sampler, AIS,
//! parallel tempering and compare, each checked here against the exact
//! answer of its Gaussian target with tolerances from the runs' own
//! Monte Carlo errors.

#[allow(dead_code)]
#[path = "../examples/custom_kernel.rs"]
mod example;

#[test]
fn an_outside_kernel_runs_in_sample_ais_pt_and_compare() {
    let o = example::run().unwrap();
    // Means within 4 MCSE on every coordinate (4 of them: a correct
    // kernel fails with probability about 2.5e-4).
    assert!(o.mean_z < 4.0, "mean off by {:.2} MCSE", o.mean_z);
    // Warm-up adapted a mass, because the kernel says it uses one; the
    // variances are (1, 4, 0.25, 9), so the adapted inverse mass orders so.
    let m = o.inv_mass.expect("no mass adapted");
    assert!(m[3] > m[1] && m[1] > m[0] && m[0] > m[2], "{m:?}");
    let (lz, se, exact) = o.ais;
    assert!((lz - exact).abs() < 4.0 * se, "AIS {lz} +- {se} vs {exact}");
    let (plz, pse) = o.pt;
    assert!(
        (plz - exact).abs() < 4.0 * pse,
        "PT {plz} +- {pse} vs {exact}"
    );
    assert_eq!(o.compare.len(), 2);
    assert_eq!(o.compare[0].0, "barker");
    for (name, ess, err) in &o.compare {
        assert!(*ess > 0.0, "{name}: ESS {ess}");
        assert!(*err < 5.0, "{name}: mean error {err} MCSE");
    }
}
