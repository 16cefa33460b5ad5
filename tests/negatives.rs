//! Negative samplers and contrastive losses.

use boltz::energy::{DiagGaussian, Energy, FnEnergy};
use boltz::kernels::{Mala, Ula};
use boltz::negatives::{Init, Loss, Method, NegativeSampler, NegativeState, ReplayPolicy};
use boltz::rng::chain_rng;
use ndarray::Array2;
use rand_distr::{Distribution, StandardNormal};

fn gauss() -> (DiagGaussian, Vec<f64>) {
    let std: Vec<f64> = (0..100)
        .map(|i| 0.1 * 10f64.powf(i as f64 / 99.0))
        .collect();
    (DiagGaussian::new(vec![0.0; 100], std.clone()).unwrap(), std)
}

#[test]
fn replay_reinit_fraction_is_respected() {
    // 20 calls x 500 chains after the buffer has entries: the number of
    // fresh chains is Binomial(10000, 0.05), sd 21.8; |z| < 4 (false-failure
    // rate 6e-5).
    let (e, _) = gauss();
    let mut s = NegativeSampler::new(
        Method::Replay {
            capacity: 10_000,
            reinit: 0.05,
            policy: Default::default(),
        },
        Init::Gaussian { std: 1.0 },
        500,
        100,
        3,
    )
    .unwrap();
    let k = Ula::new(1e-4).unwrap();
    let first = s.generate(&e, &k, 1, None).unwrap();
    assert_eq!(
        first.stats.reinitialised, 500,
        "an empty buffer starts everything fresh"
    );
    let mut fresh = 0;
    for _ in 0..20 {
        fresh += s.generate(&e, &k, 1, None).unwrap().stats.reinitialised;
    }
    let z = (fresh as f64 - 500.0) / (10_000.0f64 * 0.05 * 0.95).sqrt();
    assert!(z.abs() < 4.0, "fresh {fresh}, z {z}");
    assert!(s.buffer_len() <= 10_000);
}

#[test]
fn state_round_trips_and_resume_is_bit_identical() {
    let (e, _) = gauss();
    let k = Mala::new(0.001).unwrap();
    for method in [
        Method::Replay {
            capacity: 50,
            reinit: 0.3,
            policy: Default::default(),
        },
        Method::Pcd,
        Method::ShortRun,
    ] {
        let make = || {
            NegativeSampler::new(
                method.clone(),
                Init::Uniform { lo: -1.0, hi: 1.0 },
                16,
                100,
                9,
            )
            .unwrap()
        };
        let mut a = make();
        let mut outs_a = Vec::new();
        for _ in 0..5 {
            outs_a.push(a.generate(&e, &k, 3, None).unwrap().negatives);
        }
        let mut b = make();
        for _ in 0..2 {
            b.generate(&e, &k, 3, None).unwrap();
        }
        let saved = serde_json::to_string(&b.state()).unwrap();
        let restored: NegativeState = serde_json::from_str(&saved).unwrap();
        assert!(
            restored == b.state(),
            "{method:?}: state does not survive JSON"
        );
        let mut c = NegativeSampler::restore(restored).unwrap();
        let mut last = Array2::zeros((0, 0));
        for _ in 0..3 {
            last = c.generate(&e, &k, 3, None).unwrap().negatives;
        }
        let bits = |x: &Array2<f64>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&last),
            bits(&outs_a[4]),
            "{method:?}: resumed run differs"
        );
        assert!(c.state() == a.state(), "{method:?}: final states differ");
    }
}

#[test]
fn cd_with_many_steps_reaches_the_target_moments() {
    // CD-k from wrong positives (N(1, 0.5^2) in every coordinate) with
    // K = 3000 MALA steps forgets its start (mixing time of the widest
    // coordinate ~ s^2 / step = 200 steps); 512 independent chains: means
    // and variances per coordinate within |z| < 4 (200 tests: 1.3%
    // false-failure rate).
    let (e, std) = gauss();
    let mut rng = chain_rng(5, 0);
    let pos = Array2::from_shape_fn((512, 100), |_| {
        let z: f64 = StandardNormal.sample(&mut rng);
        1.0 + 0.5 * z
    });
    let mut s = NegativeSampler::new(Method::Cd, Init::Gaussian { std: 1.0 }, 512, 100, 1).unwrap();
    let batch = s
        .generate(&e, &Mala::new(0.005).unwrap(), 3000, Some(pos.view()))
        .unwrap();
    let n = 512.0;
    for j in 0..100 {
        let col = batch.negatives.column(j);
        let m = col.sum() / n;
        let v = col.iter().map(|x| x * x).sum::<f64>() / n;
        let s2 = std[j] * std[j];
        let zm = m / (std[j] / n.sqrt());
        let zv = (v - s2) / (2f64.sqrt() * s2 / n.sqrt());
        assert!(
            zm.abs() < 4.0 && zv.abs() < 4.0,
            "coordinate {j}: z mean {zm}, z var {zv}"
        );
    }
    assert!(batch.stats.energy_gap.is_finite());
}

#[test]
fn loss_gradients_match_finite_differences() {
    let pos = [0.3, -1.2, 2.0, 0.1];
    let neg = [1.0, -0.5, 1.7, 3.0];
    for loss in [
        Loss::Energy,
        Loss::Hinge { margin: 1.0 },
        Loss::Log,
        Loss::SquareSquare { margin: 2.0 },
        Loss::ContrastiveDivergence { alpha: 0.1 },
    ] {
        let g = loss.evaluate(&pos, &neg).unwrap();
        let h = 1e-6;
        for i in 0..4 {
            let mut p = pos;
            p[i] += h;
            let up = loss.evaluate(&p, &neg).unwrap().value;
            p[i] -= 2.0 * h;
            let down = loss.evaluate(&p, &neg).unwrap().value;
            assert!(
                ((up - down) / (2.0 * h) - g.d_pos[i]).abs() < 1e-6,
                "{loss:?} d_pos[{i}]"
            );
            let mut q = neg;
            q[i] += h;
            let up = loss.evaluate(&pos, &q).unwrap().value;
            q[i] -= 2.0 * h;
            let down = loss.evaluate(&pos, &q).unwrap().value;
            assert!(
                ((up - down) / (2.0 * h) - g.d_neg[i]).abs() < 1e-6,
                "{loss:?} d_neg[{i}]"
            );
        }
    }
    assert!(
        Loss::Hinge { margin: 1.0 }
            .evaluate(&pos, &neg[..2])
            .is_err()
    );
}

#[test]
fn positives_only_collapses_and_contrastive_learns() {
    // F_a(y) = a y^2 / 2 with a learnable precision a. Data: 400 draws of
    // N(0, 0.5^2), so the maximum-likelihood a is 1 / var = 4.
    // Positives only: dL/da = mean(y^2)/2 > 0 always, so gradient descent
    // drives a through 0: a flat energy, then an improper one (collapse).
    // Contrastive divergence with exact model negatives (N(0, 1/a)):
    // dL/da = (mean y+^2 - mean y-^2)/2 has its zero at a = 1 / var(data).
    let mut rng = chain_rng(11, 0);
    let data: Vec<f64> = (0..400)
        .map(|_| 0.5 * Distribution::<f64>::sample(&StandardNormal, &mut rng))
        .collect();
    let var = data.iter().map(|y| y * y).sum::<f64>() / data.len() as f64;
    let grad_a = |loss: &Loss, a: f64, rng: &mut boltz::rng::ChainRng| {
        let pos: Vec<f64> = data.iter().map(|y| a * y * y / 2.0).collect();
        let negs: Vec<f64> = (0..400)
            .map(|_| StandardNormal.sample(&mut *rng))
            .map(|z: f64| z / a.max(1e-3).sqrt())
            .collect();
        let neg: Vec<f64> = negs.iter().map(|y| a * y * y / 2.0).collect();
        let g = loss.evaluate(&pos, &neg).unwrap();
        // dF/da = y^2 / 2 for each sample.
        g.d_pos
            .iter()
            .zip(&data)
            .map(|(d, y)| d * y * y / 2.0)
            .sum::<f64>()
            + g.d_neg
                .iter()
                .zip(&negs)
                .map(|(d, y)| d * y * y / 2.0)
                .sum::<f64>()
    };
    let mut a = 1.0;
    for _ in 0..200 {
        a -= 0.5 * grad_a(&Loss::Energy, a, &mut rng);
    }
    assert!(
        a <= 0.0,
        "positives only: a = {a} should have collapsed through 0"
    );
    let mut a = 1.0;
    for t in 0..3000 {
        a -= 2.0 / (1.0 + t as f64 / 100.0)
            * grad_a(&Loss::ContrastiveDivergence { alpha: 0.0 }, a, &mut rng);
        a = a.max(0.05);
    }
    assert!(
        (a * var - 1.0).abs() < 0.1,
        "contrastive: a = {a}, 1/var = {}",
        1.0 / var
    );
}

#[test]
fn bad_settings_are_refused() {
    assert!(
        NegativeSampler::new(
            Method::Replay {
                capacity: 0,
                reinit: 0.1,
                policy: Default::default(),
            },
            Init::Bernoulli,
            4,
            2,
            0
        )
        .is_err()
    );
    assert!(
        NegativeSampler::new(
            Method::Replay {
                capacity: 10,
                reinit: 1.5,
                policy: Default::default(),
            },
            Init::Bernoulli,
            4,
            2,
            0
        )
        .is_err()
    );
    assert!(
        NegativeSampler::new(
            Method::ShortRun,
            Init::Uniform { lo: 1.0, hi: 0.0 },
            4,
            2,
            0
        )
        .is_err()
    );
    assert!(NegativeSampler::new(Method::ShortRun, Init::Gaussian { std: 1.0 }, 0, 2, 0).is_err());
    let e = FnEnergy::new(
        2,
        |y: &[f64]| y[0] * y[0] + y[1] * y[1],
        |y: &[f64], g: &mut [f64]| {
            g[0] = 2.0 * y[0];
            g[1] = 2.0 * y[1];
            y[0] * y[0] + y[1] * y[1]
        },
    );
    let mut s = NegativeSampler::new(Method::Cd, Init::Gaussian { std: 1.0 }, 4, 2, 0).unwrap();
    assert!(
        s.generate(&e, &Ula::new(0.1).unwrap(), 1, None).is_err(),
        "CD without positives"
    );
    assert_eq!(e.dim(), 2);
}

/// The default policy adds every negative: 128 chains fill 128, 256, 384
/// entries over three calls (it used to grow by the re-initialised chains
/// only: 128 -> 138 -> 141); JEM's write-back policy starts full.
#[test]
fn replay_policies_fill_the_buffer_as_documented() {
    let (e, _) = gauss();
    let k = Ula::new(1e-4).unwrap();
    for (policy, expect) in [
        (ReplayPolicy::Append, [128, 256, 384]),
        (ReplayPolicy::WriteBack, [10_000, 10_000, 10_000]),
    ] {
        let mut s = NegativeSampler::new(
            Method::Replay {
                capacity: 10_000,
                reinit: 0.05,
                policy,
            },
            Init::Gaussian { std: 1.0 },
            128,
            100,
            3,
        )
        .unwrap();
        for want in expect {
            s.generate(&e, &k, 1, None).unwrap();
            assert_eq!(s.buffer_len(), want, "{policy:?}");
        }
    }
    // A full ring keeps its capacity.
    let mut s = NegativeSampler::new(
        Method::Replay {
            capacity: 300,
            reinit: 0.05,
            policy: ReplayPolicy::Append,
        },
        Init::Gaussian { std: 1.0 },
        128,
        100,
        3,
    )
    .unwrap();
    for _ in 0..4 {
        s.generate(&e, &k, 1, None).unwrap();
    }
    assert_eq!(s.buffer_len(), 300);
}

#[test]
fn a_state_whose_stream_keys_were_edited_is_refused() {
    // P141: a state file whose chain stream was edited (checksum
    // recomputed) was accepted and drew other negatives. Every stream's key
    // must be the one the seed gives its chain (positions within a stream
    // are the state itself, as in checkpoints).
    let (e, _) = gauss();
    let k = Mala::new(0.001).unwrap();
    let tempered = NegativeSampler::new(
        Method::Tempered { replicas: 3 },
        Init::Gaussian { std: 1.0 },
        4,
        100,
        5,
    )
    .unwrap();
    let mut pcd =
        NegativeSampler::new(Method::Pcd, Init::Gaussian { std: 1.0 }, 4, 100, 5).unwrap();
    pcd.generate(&e, &k, 2, None).unwrap();
    for s in [pcd.state(), tempered.state()] {
        let v = serde_json::to_value(&s).unwrap();
        let restore = |v: &serde_json::Value| {
            NegativeSampler::restore(serde_json::from_value(v.clone()).unwrap())
        };
        assert!(restore(&v).is_ok());
        let mut keys = vec!["/chain_rngs/1/stream".to_string(), "/aux_rng/stream".into()];
        if s.tempered.is_some() {
            keys.extend([
                "/tempered/rngs/5/stream".into(),
                "/tempered/swap_rngs/2/stream".into(),
            ]);
        }
        for key in keys {
            let mut edited = v.clone();
            let x = edited.pointer(&key).unwrap().as_u64().unwrap();
            *edited.pointer_mut(&key).unwrap() = (x ^ 1).into();
            assert!(restore(&edited).is_err(), "{key} edited was accepted");
        }
        // A position within a stream is state: accepted.
        let mut moved = v.clone();
        let pos = moved.pointer_mut("/chain_rngs/0/word_pos").unwrap();
        *pos = (pos.as_u64().unwrap_or(0) + 4).into();
        assert!(restore(&moved).is_ok());
    }
}

#[test]
fn a_call_of_k_steps_evaluates_k_plus_one_times_or_k_without_end_energies() {
    // Issue 31: a call of K Langevin or MALA steps evaluates the energy at
    // the starts and once per step; the final energies come from the last
    // step (they were evaluated again: K + 2).
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rows = Arc::new(AtomicUsize::new(0));
    let (r1, r2) = (rows.clone(), rows.clone());
    let e = FnEnergy::new(
        2,
        move |y: &[f64]| {
            r1.fetch_add(1, Ordering::Relaxed);
            0.5 * y.iter().map(|v| v * v).sum::<f64>()
        },
        move |y: &[f64], g: &mut [f64]| {
            r2.fetch_add(1, Ordering::Relaxed);
            g.copy_from_slice(y);
            0.5 * y.iter().map(|v| v * v).sum::<f64>()
        },
    );
    for (name, kernel) in [
        (
            "ula",
            Box::new(Ula::new(0.01).unwrap()) as Box<dyn boltz::Kernel>,
        ),
        ("mala", Box::new(Mala::new(0.01).unwrap())),
    ] {
        for k in [1, 5, 40] {
            let mut s =
                NegativeSampler::new(Method::Pcd, Init::Gaussian { std: 1.0 }, 8, 2, 1).unwrap();
            rows.store(0, Ordering::Relaxed);
            let with = s.generate(&e, kernel.as_ref(), k, None).unwrap();
            assert_eq!(rows.load(Ordering::Relaxed), 8 * (k + 1), "{name}, K = {k}");
            assert_eq!(with.stats.grad_evals, (k + 1) as f64);
            // Without end energies ULA's last move is not evaluated: K
            // evaluations, the same draws, the energies NaN; MALA must
            // evaluate its proposals: K + 1 still.
            let mut t =
                NegativeSampler::new(Method::Pcd, Init::Gaussian { std: 1.0 }, 8, 2, 1).unwrap();
            t.set_end_energies(false);
            rows.store(0, Ordering::Relaxed);
            let without = t.generate(&e, kernel.as_ref(), k, None).unwrap();
            let cost = if name == "ula" { k } else { k + 1 };
            assert_eq!(rows.load(Ordering::Relaxed), 8 * cost, "{name}, K = {k}");
            assert_eq!(without.stats.grad_evals, cost as f64);
            assert_eq!(without.negatives, with.negatives);
            assert!(without.energies.iter().all(|e| e.is_nan()));
            assert!(without.stats.energy_neg.is_nan());
            // The next call continues the same chains either way.
            let (a, b) = (
                s.generate(&e, kernel.as_ref(), k, None).unwrap(),
                t.generate(&e, kernel.as_ref(), k, None).unwrap(),
            );
            assert_eq!(a.negatives, b.negatives);
        }
    }
}

#[test]
fn the_number_of_chains_may_change_between_calls() {
    // Chain i draws from stream (seed, i) whatever the call's size: a
    // stream a call does not use waits, a new one starts at its beginning.
    let e = DiagGaussian::new(vec![0.0, 1.0], vec![1.0, 0.5]).unwrap();
    let ula = Ula::new(0.05).unwrap();
    let init = Init::Gaussian { std: 1.0 };
    let mut a = NegativeSampler::new(Method::ShortRun, init.clone(), 4, 2, 9).unwrap();
    let mut b = NegativeSampler::new(Method::ShortRun, init.clone(), 4, 2, 9).unwrap();
    let mut c = NegativeSampler::new(Method::ShortRun, init.clone(), 8, 2, 9).unwrap();
    a.generate(&e, &ula, 5, None).unwrap();
    b.generate(&e, &ula, 5, None).unwrap();
    a.set_chains(8).unwrap();
    let grown = a.generate(&e, &ula, 5, None).unwrap().negatives;
    let second = b.generate(&e, &ula, 5, None).unwrap().negatives;
    let fresh = c.generate(&e, &ula, 5, None).unwrap().negatives;
    assert_eq!(grown.nrows(), 8);
    assert_eq!(grown.slice(ndarray::s![..4, ..]), second);
    assert_eq!(
        grown.slice(ndarray::s![4.., ..]),
        fresh.slice(ndarray::s![4.., ..])
    );
    // Fewer chains: the first ones, continuing their streams.
    a.set_chains(3).unwrap();
    b.set_chains(3).unwrap();
    let (x, y) = (
        a.generate(&e, &ula, 5, None).unwrap().negatives,
        b.generate(&e, &ula, 5, None).unwrap().negatives,
    );
    assert_eq!((x.nrows(), x), (3, y));
    assert_eq!(a.n_chains(), 3);
    // A state saved after growing restores with every stream.
    let r = NegativeSampler::restore(a.state()).unwrap();
    assert_eq!(r.state().n_chains, 8);
    // A replay buffer takes each call's negatives, whatever their number.
    let replay = Method::Replay {
        capacity: 100,
        reinit: 0.05,
        policy: ReplayPolicy::Append,
    };
    let mut r = NegativeSampler::new(replay, init.clone(), 16, 2, 1).unwrap();
    r.generate(&e, &ula, 3, None).unwrap();
    r.set_chains(5).unwrap();
    assert_eq!(r.generate(&e, &ula, 3, None).unwrap().negatives.nrows(), 5);
    assert_eq!(r.buffer_len(), 21);
    // PCD keeps its first call's chains; before it, any number.
    let mut p = NegativeSampler::new(Method::Pcd, init, 4, 2, 1).unwrap();
    p.set_chains(6).unwrap();
    assert_eq!(p.generate(&e, &ula, 3, None).unwrap().negatives.nrows(), 6);
    assert!(p.set_chains(6).is_ok());
    let err = p.set_chains(2).unwrap_err().to_string();
    assert!(err.contains("pcd"), "{err}");
    assert!(p.set_chains(0).is_err());
}
