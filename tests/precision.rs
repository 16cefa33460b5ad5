//! The f32 compute path of the neural and binary energies (`mlp`, `rbm`):
//! its energies and gradients match f64, samplers on it pass the same
//! statistical tests as on f64 (tolerances unchanged), and its runs are
//! bit-identical for any thread count.

mod common;
use boltz::Family;
use boltz::diagnostics::{chi_square_test, ess_bulk};
use boltz::energy::{Activation, ConditionalEnergy, Energy, Layer, Mlp, Precision, Rbm};
use boltz::kernels::{Gibbs, Mala, Ula};
use boltz::model;
use boltz::sampler::SampleOutput;
use common::{run, thinned};
use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::sync::Arc;

/// Largest relative difference of f32 against f64 results, each row's
/// scale the larger of its f64 value's magnitude (energy; largest gradient
/// component) and 1.
fn worst_relative(e: &dyn Energy, e32: &dyn Energy, y: ArrayView2<f64>) -> (f64, f64) {
    let n = y.nrows();
    let d = y.ncols();
    let (mut f, mut g) = (Array1::zeros(n), Array2::zeros((n, d)));
    let (mut f32_, mut g32) = (Array1::zeros(n), Array2::zeros((n, d)));
    e.energy_grad_batch(y, f.view_mut(), g.view_mut());
    e32.energy_grad_batch(y, f32_.view_mut(), g32.view_mut());
    let mut only = Array1::zeros(n);
    e32.energy_batch(y, only.view_mut());
    assert_eq!(
        only, f32_,
        "f32 energies alone differ from those with gradients"
    );
    let mut we = 0.0f64;
    let mut wg = 0.0f64;
    for i in 0..n {
        we = we.max((f32_[i] - f[i]).abs() / f[i].abs().max(1.0));
        let scale = g.row(i).iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for j in 0..d {
            wg = wg.max((g32[[i, j]] - g[[i, j]]).abs() / scale);
        }
    }
    (we, wg)
}

fn normal(rng: &mut ChaCha8Rng, shape: (usize, usize), sd: f64) -> Array2<f64> {
    Array2::from_shape_fn(shape, |_| sd * rng.sample::<f64, _>(StandardNormal))
}

#[test]
fn mlp_f32_energies_and_gradients_match_f64() {
    let m = model::load("mlp").unwrap();
    let m32 = m.clone().with_precision(Precision::F32).unwrap();
    assert_eq!(m32.precision(), Precision::F32);
    assert_ne!(m.fingerprint(), m32.fingerprint());
    let ctx = boltz::suite::mlp_contexts().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for sd in [0.3, 1.0, 3.0] {
        let y = normal(&mut rng, (1024, 32), sd);
        let e = m.energy(Some(ctx.clone())).unwrap();
        let e32 = m32.energy(Some(ctx.clone())).unwrap();
        let (we, wg) = worst_relative(e.as_ref(), e32.as_ref(), y.view());
        eprintln!("suite mlp, y sd {sd}: energy {we:.2e}, gradient {wg:.2e}");
        assert!(we < 1e-5 && wg < 1e-5, "sd {sd}: {we:e} {wg:e}");
    }
    // Small random MLPs, every activation, odd widths.
    for act in ["silu", "relu", "tanh", "softplus", "none"] {
        let act = Activation::parse(act).unwrap();
        let widths = [3 + 5, 13, 7, 1];
        let layers: Vec<Layer> = widths
            .windows(2)
            .enumerate()
            .map(|(l, w)| Layer {
                weight: normal(&mut rng, (w[0], w[1]), 0.5),
                bias: Array1::from_shape_fn(w[1], |_| rng.random::<f64>() - 0.5),
                activation: if l == 2 { Activation::None } else { act },
            })
            .collect();
        let mlp = Mlp::new(3, 0.5, layers).unwrap();
        let single = mlp.clone().with_precision(Precision::F32);
        let x = normal(&mut rng, (300, 3), 1.0);
        let e = boltz::Conditioned::new(Arc::new(mlp), x.clone()).unwrap();
        let e32 = boltz::Conditioned::new(Arc::new(single), x).unwrap();
        let y = normal(&mut rng, (300, 5), 1.5);
        let (we, wg) = worst_relative(&e, &e32, y.view());
        eprintln!("{act:?} mlp: energy {we:.2e}, gradient {wg:.2e}");
        assert!(we < 1e-5 && wg < 1e-5, "{act:?}: {we:e} {wg:e}");
    }
}

#[test]
fn rbm_f32_free_energies_and_gradients_match_f64() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for name in ["rbm20", "rbm500"] {
        let m = model::load(name).unwrap();
        let m32 = m.clone().with_precision(Precision::F32).unwrap();
        let e = m.energy(None).unwrap();
        let e32 = m32.energy(None).unwrap();
        let d = e.dim();
        let binary = Array2::from_shape_fn((500, d), |_| f64::from(u8::from(rng.random::<bool>())));
        let real = Array2::from_shape_fn((500, d), |_| rng.random::<f64>());
        for (what, y) in [("binary", binary), ("in [0, 1]", real)] {
            let (we, wg) = worst_relative(e.as_ref(), e32.as_ref(), y.view());
            eprintln!("{name} {what}: energy {we:.2e}, gradient {wg:.2e}");
            assert!(we < 1e-5 && wg < 1e-5, "{name} {what}: {we:e} {wg:e}");
        }
        // The hidden activations of the AIS path, too.
        let (Family::Rbm(r), Family::Rbm(r32)) = (&m.family, &m32.family) else {
            unreachable!()
        };
        let v = Array2::from_shape_fn((100, d), |_| f64::from(u8::from(rng.random::<bool>())));
        let (a, a32) = (
            r.hidden_activations(v.view()),
            r32.hidden_activations(v.view()),
        );
        let worst = (&a - &a32)
            .iter()
            .zip(&a)
            .map(|(d, a)| d.abs() / a.abs().max(1.0))
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "{name} activations: {worst:e}");
    }
}

#[test]
fn gibbs_f32_on_rbm20_matches_enumeration() {
    // tests/kernels.rs's test on the f32 path, same draws and alpha: the
    // number of active visibles against its exact law (f64 enumeration;
    // rounding the weights to f32 moves the law by ~1e-7, far below what
    // 2000 x 64 draws resolve).
    let m = model::load("rbm20")
        .unwrap()
        .with_precision(Precision::F32)
        .unwrap();
    let rbm = m.rbm().unwrap().clone();
    let exact = boltz::exact::rbm_visible_marginal_counts(&rbm).unwrap();
    let e = m.energy(None).unwrap();
    let out = run(e.as_ref(), &Gibbs::new(true), 64, 200, 2000, 1, 41);
    let counts = out.samples.sum_axis(Axis(2));
    let mut observed = vec![0.0; 65];
    for c in &thinned(counts.view()) {
        observed[*c as usize] += 1.0;
    }
    let (stat, dof, p) = chi_square_test(&observed, &exact).unwrap();
    eprintln!("f32 block gibbs rbm20: chi2 {stat:.1} on {dof} dof, p {p:.3}");
    assert!(p > 1e-3, "chi-square p = {p}");
}

#[test]
fn gibbs_f32_keeps_an_rbm_exact() {
    // Invariance: a 6-visible, 4-hidden RBM whose parameters are multiples
    // of 1/8 (exact in f32, so the f32 model is the f64 one), 4000 exact
    // draws by enumeration, 5 block-Gibbs sweeps in f32, chi-square over
    // the 64 visible states at alpha 1e-3.
    let w = Array2::from_shape_fn((6, 4), |(i, j)| ((i * 5 + j * 3) % 11) as f64 / 8.0 - 0.625);
    let b: Vec<f64> = (0..6).map(|i| (i as f64 - 2.5) / 8.0).collect();
    let c: Vec<f64> = (0..4).map(|j| (1.0 - j as f64) / 8.0).collect();
    let rbm = Rbm::new(w, b, c).unwrap().with_precision(Precision::F32);
    let states = Array2::from_shape_fn((64, 6), |(s, i)| ((s >> i) & 1) as f64);
    let mut f = Array1::zeros(64);
    rbm.energy_batch(states.view(), f.view_mut());
    let lz = f.iter().map(|v: &f64| (-v).exp()).sum::<f64>().ln();
    let probs: Vec<f64> = f.iter().map(|v| (-v - lz).exp()).collect();
    let n = 4000;
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut y = Array2::zeros((n, 6));
    for mut row in y.rows_mut() {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let s = probs.iter().position(|p| {
            acc += p;
            u < acc
        });
        row.assign(&states.row(s.unwrap_or(63)));
    }
    let mut rngs = boltz::rng::chain_rngs(12, n);
    for _ in 0..5 {
        rbm.gibbs_sweep(y.view_mut(), &mut rngs, 1.0, None);
    }
    let mut observed = vec![0.0; 64];
    for r in y.rows() {
        let s: usize = (0..6).map(|i| (r[i] as usize) << i).sum();
        observed[s] += 1.0;
    }
    let (stat, dof, p) = chi_square_test(&observed, &probs).unwrap();
    eprintln!("f32 gibbs 6-bit rbm: chi2 {stat:.1} on {dof} dof, p {p:.3}");
    assert!(p > 1e-3, "chi-square p = {p:.2e}");
}

#[test]
fn mala_f32_on_the_suite_mlp_samples_what_f64_samples() {
    // One context of the suite's MLP, MALA (adjusted: its law is exactly
    // exp(-F) of the energy it evaluates), 64 chains x (500 + 2000) draws
    // in f64 and in f32: every coordinate's mean and second moment agree
    // within 4.5 combined ESS-based standard errors (32 coordinates x 2
    // moments: false-failure rate ~4e-4). The f32 energy differs from f64
    // by < 1e-5 relative, a shift of the law far below these errors.
    let m = model::load("mlp").unwrap();
    let ctx = boltz::suite::mlp_contexts()
        .unwrap()
        .slice(s![..1, ..])
        .to_owned();
    let e = m.energy(Some(ctx.clone())).unwrap();
    let m32 = m.with_precision(Precision::F32).unwrap();
    let e32 = m32.energy(Some(ctx)).unwrap();
    let k = Mala::new(0.2).unwrap();
    let a = run(e.as_ref(), &k, 64, 500, 2000, 1, 21);
    let b = run(e32.as_ref(), &k, 64, 500, 2000, 1, 22);
    let moment = |out: &SampleOutput, j: usize, p: i32| {
        let x = out.samples.index_axis(Axis(2), j).mapv(|v| v.powi(p));
        let ess = ess_bulk(x.view()).max(1.0);
        let mean = x.mean().unwrap();
        let sd = x.std(1.0);
        (mean, sd / ess.sqrt())
    };
    let mut worst = 0.0f64;
    for j in 0..32 {
        for p in [1, 2] {
            let (ma, sa) = moment(&a, j, p);
            let (mb, sb) = moment(&b, j, p);
            let z = (ma - mb) / (sa * sa + sb * sb).sqrt();
            worst = worst.max(z.abs());
            assert!(
                z.abs() < 4.5,
                "coordinate {j}, moment {p}: f64 {ma} vs f32 {mb}, z {z}"
            );
        }
    }
    eprintln!("mala mlp f32 vs f64: worst |z| {worst:.2}");
}

#[test]
fn f32_runs_are_bit_identical_for_any_thread_count() {
    let go = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut bits: Vec<u64> = Vec::new();
            let m = model::load("rbm500")
                .unwrap()
                .with_precision(Precision::F32)
                .unwrap();
            let e = m.energy(None).unwrap();
            let out = run(e.as_ref(), &Gibbs::new(true), 70, 10, 20, 1, 8);
            bits.extend(out.samples.iter().map(|v| v.to_bits()));
            bits.extend(out.energies.as_ref().unwrap().iter().map(|v| v.to_bits()));
            let m = model::load("mlp")
                .unwrap()
                .with_precision(Precision::F32)
                .unwrap();
            let ctx = boltz::suite::mlp_contexts()
                .unwrap()
                .slice(s![..300, ..])
                .to_owned();
            let e = m.energy(Some(ctx)).unwrap();
            let out = run(e.as_ref(), &Ula::new(0.01).unwrap(), 300, 0, 10, 1, 9);
            bits.extend(out.samples.iter().map(|v| v.to_bits()));
            let out = run(e.as_ref(), &Mala::new(0.05).unwrap(), 300, 0, 10, 1, 9);
            bits.extend(out.samples.iter().map(|v| v.to_bits()));
            bits
        })
    };
    assert_eq!(go(1), go(2));
    assert_eq!(go(1), go(3));
}

#[test]
fn precision_is_refused_where_there_is_no_f32_path() {
    for name in ["gauss-ill", "gmm-ring", "funnel", "ring"] {
        let err = model::load(name)
            .unwrap()
            .with_precision(Precision::F32)
            .err()
            .unwrap();
        assert!(err.to_string().contains("mlp and rbm"), "{err}");
    }
    assert!(Precision::parse("f16").is_err());
    // f64 is a no-op everywhere.
    let m = model::load("gauss-ill").unwrap();
    let fp = m.fingerprint();
    assert_eq!(m.with_precision(Precision::F64).unwrap().fingerprint(), fp);
    // Conditional y_dim is unchanged by precision.
    let Family::Mlp(mlp) = model::load("mlp").unwrap().family else {
        unreachable!()
    };
    let single = (*mlp).clone().with_precision(Precision::F32);
    assert_eq!(single.y_dim(), mlp.y_dim());
}
