//! Why negatives matter: train a small MLP energy on 2-D data (8 Gaussians
//! on a ring), once with the positives-only energy loss and once with
//! contrastive divergence on replay-buffer negatives, and compare
//! - the energy range over a grid (collapse: the positives-only run pushes
//!   energy down everywhere, and the shape it learns is not the data's);
//! - the held-out log-likelihood, with log Z by exact 2-D quadrature.
//!
//! Writes `train_toy.json` into the folder given (default `scratch/`; the
//! committed figures are `results/train_toy.json`).
//! Run: `cargo run --release --example train_toy [-- OUT_DIR]`

use boltz::energy::{Activation, Conditioned, Layer, Mlp, MlpGrads};
use boltz::kernels::Ula;
use boltz::negatives::{Init, Loss, Method, NegativeSampler, ReplayPolicy};
use boltz::rng::chain_rng;
use ndarray::{Array1, Array2, Axis, s};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

const HIDDEN: usize = 64;
const L2: f64 = 0.1;

/// 8 Gaussians (std 0.2) on the circle of radius 2.
fn data(n: usize, seed: u64) -> Array2<f64> {
    let mut rng = chain_rng(seed, 0);
    let mut y = Array2::zeros((n, 2));
    for i in 0..n {
        let k = rng.random_range(0..8) as f64;
        let a = 2.0 * std::f64::consts::PI * k / 8.0;
        let (z1, z2): (f64, f64) = (
            StandardNormal.sample(&mut rng),
            StandardNormal.sample(&mut rng),
        );
        y[[i, 0]] = 2.0 * a.cos() + 0.2 * z1;
        y[[i, 1]] = 2.0 * a.sin() + 0.2 * z2;
    }
    y
}

fn init_mlp(seed: u64) -> Mlp {
    let mut rng = chain_rng(seed, 1);
    let mut layer = |i: usize, o: usize, act| {
        let scale = (1.0 / i as f64).sqrt();
        Layer {
            weight: Array2::from_shape_fn((i, o), |_| {
                scale * Distribution::<f64>::sample(&StandardNormal, &mut rng)
            }),
            bias: Array1::zeros(o),
            activation: act,
        }
    };
    let layers = vec![
        layer(2, HIDDEN, Activation::Silu),
        layer(HIDDEN, HIDDEN, Activation::Silu),
        layer(HIDDEN, 1, Activation::None),
    ];
    Mlp::new(0, L2, layers).expect("valid shapes")
}

/// Adam on every weight and bias.
struct Adam {
    m: Vec<Array2<f64>>,
    v: Vec<Array2<f64>>,
    mb: Vec<Array1<f64>>,
    vb: Vec<Array1<f64>>,
    t: i32,
}

impl Adam {
    fn new(mlp: &Mlp) -> Self {
        let w = |l: &Layer| Array2::zeros(l.weight.raw_dim());
        let b = |l: &Layer| Array1::zeros(l.bias.raw_dim());
        Adam {
            m: mlp.layers().iter().map(w).collect(),
            v: mlp.layers().iter().map(w).collect(),
            mb: mlp.layers().iter().map(b).collect(),
            vb: mlp.layers().iter().map(b).collect(),
            t: 0,
        }
    }
    fn step(&mut self, mlp: &mut Mlp, g: &MlpGrads, lr: f64) {
        let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
        self.t += 1;
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        mlp.update_layers(|layers| {
            for (l, layer) in layers.iter_mut().enumerate() {
                self.m[l] = &self.m[l] * b1 + &g.weights[l] * (1.0 - b1);
                self.v[l] = &self.v[l] * b2 + &g.weights[l].mapv(|x| x * x) * (1.0 - b2);
                layer.weight = &layer.weight
                    - &((&self.m[l] / c1) / ((&self.v[l] / c2).mapv(f64::sqrt) + eps) * lr);
                self.mb[l] = &self.mb[l] * b1 + &g.biases[l] * (1.0 - b1);
                self.vb[l] = &self.vb[l] * b2 + &g.biases[l].mapv(|x| x * x) * (1.0 - b2);
                layer.bias = &layer.bias
                    - &((&self.mb[l] / c1) / ((&self.vb[l] / c2).mapv(f64::sqrt) + eps) * lr);
            }
        })
        .expect("Adam keeps shapes; finite gradients keep weights finite");
    }
}

fn energy_of(mlp: &Mlp) -> Conditioned {
    Conditioned::new(Arc::new(mlp.clone()), Array2::zeros((1, 0))).expect("no context")
}

/// (held-out mean log-likelihood, energy min, energy max over the grid).
fn evaluate(mlp: &Mlp, held_out: &Array2<f64>) -> (f64, f64, f64) {
    let e = energy_of(mlp);
    let log_z = boltz::exact::log_z_grid(&e, &[-7.0, -7.0], &[7.0, 7.0], 560).expect("2-D");
    let f = boltz::energy::evaluate(&e, held_out.view()).expect("shape");
    let ll = f.iter().map(|v| -v - log_z).sum::<f64>() / f.len() as f64;
    let grid = Array2::from_shape_fn((81 * 81, 2), |(i, j)| {
        if j == 0 {
            -4.0 + 0.1 * (i % 81) as f64
        } else {
            -4.0 + 0.1 * (i / 81) as f64
        }
    });
    let g = boltz::energy::evaluate(&e, grid.view()).expect("shape");
    let (lo, hi) = g
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    (ll, lo, hi)
}

fn train(
    loss: Loss,
    train: &Array2<f64>,
    held_out: &Array2<f64>,
    iters: usize,
) -> boltz::Result<serde_json::Value> {
    let mut mlp = init_mlp(3);
    let mut adam = Adam::new(&mlp);
    let batch = 128;
    let mut sampler = NegativeSampler::new(
        Method::Replay {
            capacity: 10_000,
            reinit: 0.05,
            // JEM's buffer: noise first, each negative back to its entry
            // (held-out -2.33 here; IGEBM's append policy gives -2.84).
            policy: ReplayPolicy::WriteBack,
        },
        Init::Uniform { lo: -4.0, hi: 4.0 },
        batch,
        2,
        5,
    )?;
    let kernel = Ula::new(0.005)?;
    let mut rng = chain_rng(9, 0);
    let no_ctx = Array2::<f64>::zeros((batch, 0));
    for it in 0..iters {
        let idx: Vec<usize> = (0..batch)
            .map(|_| rng.random_range(0..train.nrows()))
            .collect();
        let pos = train.select(Axis(0), &idx);
        let e = energy_of(&mlp);
        let f_pos = boltz::energy::evaluate(&e, pos.view())?;
        let (neg, f_neg) = match loss {
            Loss::Energy => (Array2::zeros((0, 2)), Array1::zeros(0)),
            _ => {
                let b = sampler.generate(&e, &kernel, 40, Some(pos.view()))?;
                (b.negatives, b.energies)
            }
        };
        let g = loss.evaluate(
            f_pos.as_slice().expect("contiguous"),
            f_neg.as_slice().expect("contiguous"),
        )?;
        let mut grads = mlp.param_grad(no_ctx.view(), pos.view(), &g.d_pos)?;
        if neg.nrows() > 0 {
            let gn = mlp.param_grad(no_ctx.slice(s![..neg.nrows(), ..]), neg.view(), &g.d_neg)?;
            for l in 0..grads.weights.len() {
                grads.weights[l] += &gn.weights[l];
                grads.biases[l] += &gn.biases[l];
            }
        }
        adam.step(&mut mlp, &grads, 2e-3);
        if (it + 1) % 500 == 0 {
            let (ll, lo, hi) = evaluate(&mlp, held_out);
            println!(
                "  {:?} iter {:>5}: held-out log-likelihood {ll:8.3}, grid energy [{lo:9.3}, {hi:9.3}]",
                loss,
                it + 1
            );
        }
    }
    let (ll, lo, hi) = evaluate(&mlp, held_out);
    Ok(
        serde_json::json!({ "loss": format!("{loss:?}"), "iterations": iters, "held_out_log_likelihood": ll, "grid_energy_min": lo, "grid_energy_max": hi, "grid_energy_range": hi - lo }),
    )
}

fn main() -> boltz::Result<()> {
    let train_set = data(2000, 1);
    let held_out = data(1000, 2);
    let iters = 2000;
    println!(
        "8 Gaussians on a ring; MLP 2-{HIDDEN}-{HIDDEN}-1 (silu) + 0.5 * {L2} |y|^2; Adam, batch 128, {iters} iterations"
    );
    let energy_only = train(Loss::Energy, &train_set, &held_out, iters)?;
    let contrastive = train(
        Loss::ContrastiveDivergence { alpha: 0.01 },
        &train_set,
        &held_out,
        iters,
    )?;
    let init = init_mlp(3);
    let (ll0, lo0, hi0) = evaluate(&init, &held_out);
    let out = serde_json::json!({
        "data": "8 Gaussians (std 0.2) on a circle of radius 2; 2000 train, 1000 held out",
        "model": format!("MLP 2-{HIDDEN}-{HIDDEN}-1 silu, l2 {L2}"),
        "initial": { "held_out_log_likelihood": ll0, "grid_energy_range": hi0 - lo0 },
        "positives_only": energy_only,
        "contrastive_replay_buffer": contrastive,
    });
    println!(
        "initial:        held-out log-likelihood {ll0:.3}, grid energy range {:.3}",
        hi0 - lo0
    );
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "positives only: held-out log-likelihood {:.3}, grid energy range {:.3}",
        f(&energy_only, "held_out_log_likelihood"),
        f(&energy_only, "grid_energy_range")
    );
    println!(
        "contrastive:    held-out log-likelihood {:.3}, grid energy range {:.3}",
        f(&contrastive, "held_out_log_likelihood"),
        f(&contrastive, "grid_energy_range")
    );
    println!(
        "(the data's own log-likelihood per point is about -1.70: 8 equal Gaussians of std 0.2)"
    );
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "scratch".into()));
    std::fs::create_dir_all(&dir).map_err(|e| boltz::Error::io(&dir, e))?;
    let path = dir.join("train_toy.json");
    boltz::io::write_json_atomic(&path, &out)?;
    println!("wrote {}", path.display());
    Ok(())
}
