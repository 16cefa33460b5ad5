//! Criterion benchmarks of the hot loops: batched energy + gradient per
//! family (64 and 1024 chains; Gaussians of dimension 10, 100, 1000), one
//! step of ULA, MALA and HMC (a whole trajectory), a Gibbs sweep on rbm500,
//! AIS temperature steps, the diagnostics, and the W3 workload.
//! Every group runs in an explicit rayon pool whose size is in its name
//! (`BOLTZ_BENCH_THREADS`, default 2).

use boltz::energy::{self, Energy};
use boltz::kernels::{ChainState, ChainStep, Gibbs, Hmc, Kernel, Mala, Ula};
use boltz::model;
use boltz::rng::chain_rngs;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, Array3};
use std::hint::black_box;
use std::sync::Arc;

fn threads() -> usize {
    std::env::var("BOLTZ_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads())
        .build()
        .unwrap()
}

fn points(n: usize, d: usize, binary: bool) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |(i, j)| {
        let v = (((i * 31 + j * 17) % 97) as f64) / 97.0;
        if binary {
            f64::from(u8::from(v > 0.5))
        } else {
            2.0 * v - 1.0
        }
    })
}

fn target(name: &str, n: usize) -> Arc<dyn Energy> {
    let m = model::load(name).unwrap();
    match name {
        "mlp" => m
            .energy(Some(
                boltz::suite::mlp_contexts()
                    .unwrap()
                    .slice(ndarray::s![..n, ..])
                    .to_owned(),
            ))
            .unwrap(),
        _ => m.energy(None).unwrap(),
    }
}

fn energy_grad(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group(format!("energy_grad/{}threads", threads()));
    let mut cases: Vec<(String, Arc<dyn Energy>, bool)> = Vec::new();
    for d in [10, 100, 1000] {
        let e = energy::DiagGaussian::new(vec![0.0; d], vec![1.0; d]).unwrap();
        cases.push((format!("gauss{d}"), Arc::new(e), false));
    }
    for name in ["gmm-ring", "gmm-far", "funnel", "rbm500"] {
        cases.push((name.to_string(), target(name, 0), name.starts_with("rbm")));
    }
    for n in [64, 1024] {
        for (name, e, binary) in &cases {
            let y = points(n, e.dim(), *binary);
            let mut en = ndarray::Array1::zeros(n);
            let mut gr = Array2::zeros((n, e.dim()));
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new(name.as_str(), n), &n, |b, _| {
                pool.install(|| {
                    b.iter(|| {
                        e.energy_grad_batch(black_box(y.view()), en.view_mut(), gr.view_mut())
                    })
                })
            });
        }
        let e = target("mlp", n);
        let y = points(n, 32, false);
        let mut en = ndarray::Array1::zeros(n);
        let mut gr = Array2::zeros((n, 32));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("mlp", n), &n, |b, _| {
            pool.install(|| {
                b.iter(|| e.energy_grad_batch(black_box(y.view()), en.view_mut(), gr.view_mut()))
            })
        });
    }
    g.finish();
}

fn kernel_steps(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group(format!("kernel_step/{}threads", threads()));
    let n = 1024;
    let cases: Vec<(&str, &str, Box<dyn Kernel>)> = vec![
        ("mala", "gauss-ill", Box::new(Mala::new(0.01).unwrap())),
        ("ula", "gauss-ill", Box::new(Ula::new(0.01).unwrap())),
        ("ula", "mlp", Box::new(Ula::new(0.01).unwrap())),
        (
            "hmc16",
            "gauss-ill",
            Box::new(Hmc::new(0.05, 16, 0.0).unwrap()),
        ),
    ];
    for (kname, tname, kernel) in cases {
        let e = target(tname, n);
        let y = points(n, e.dim(), false).mapv(|v| 0.1 * v);
        let mut state = ChainState::new(e.as_ref(), y).unwrap();
        let mut rngs = chain_rngs(0, n);
        let mut steps = vec![ChainStep::default(); n];
        let tuning = kernel.initial_tuning();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{kname}/{tname}/{n}"), |b| {
            pool.install(|| {
                b.iter(|| kernel.step(e.as_ref(), &tuning, &mut state, &mut rngs, &mut steps))
            })
        });
    }
    let m = model::load("rbm500").unwrap();
    let e = m.energy(None).unwrap();
    let kernel = Gibbs::new(false);
    let tuning = kernel.initial_tuning();
    let mut state = ChainState::new(e.as_ref(), points(n, 64, true)).unwrap();
    let mut rngs = chain_rngs(0, n);
    let mut steps = vec![ChainStep::default(); n];
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("gibbs/rbm500/{n}"), |b| {
        pool.install(|| {
            b.iter(|| kernel.step(e.as_ref(), &tuning, &mut state, &mut rngs, &mut steps))
        })
    });
    g.finish();
}

fn diagnostics(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group(format!("diagnostics/{}threads", threads()));
    g.sample_size(10);
    let x = Array3::from_shape_fn((64, 2000, 100), |(c, t, j)| {
        (((c * 7919 + t * 104729 + j * 1299709) % 10007) as f64) / 10007.0
    });
    g.bench_function("summarize/64x2000x100", |b| {
        pool.install(|| b.iter(|| boltz::diagnostics::summarize(black_box(x.view())).unwrap()))
    });
    g.finish();
}

/// W3: unadjusted Langevin negatives on `mlp`, 1024 chains (one per
/// bundled context) x 100 steps, step 0.01, noise sqrt(2 * 0.01), y0 ~ N(0, I).
fn w3_negatives(c: &mut Criterion) {
    use boltz::negatives::{Init, Method, NegativeSampler};
    let pool = pool();
    let mut g = c.benchmark_group(format!("w3/{}threads", threads()));
    g.sample_size(10);
    let e = target("mlp", 1024);
    let kernel = Ula::new(0.01).unwrap();
    g.throughput(Throughput::Elements(1024 * 100));
    g.bench_function("ula_mlp_1024x100", |b| {
        pool.install(|| {
            b.iter(|| {
                let mut s = NegativeSampler::new(
                    Method::ShortRun,
                    Init::Gaussian { std: 1.0 },
                    1024,
                    32,
                    0,
                )
                .unwrap();
                s.generate(e.as_ref(), &kernel, 100, None).unwrap()
            })
        })
    });
    g.finish();
}

/// AIS temperature steps: 1024 particles x 50 temperatures (one MALA step
/// or Gibbs sweep each, fixed step, linear schedule), so that set-up is a
/// small part; throughput counts particle-temperatures.
fn ais_steps(c: &mut Criterion) {
    use boltz::ais::{self, AisConfig, AisProblem, Base, Schedule, ScheduleChoice};
    let pool = pool();
    let mut g = c.benchmark_group(format!("ais_temperature/{}threads", threads()));
    g.sample_size(10);
    let temps = 50;
    for name in ["gmm-ring", "gmm-far", "rbm20"] {
        let m = model::load(name).unwrap();
        let e = m.energy(None).unwrap();
        let mut cfg = AisConfig::new();
        cfg.temps = temps;
        cfg.schedule = ScheduleChoice::Fixed(Schedule::Linear);
        let base = match m.rbm() {
            Some(_) => Base::base_rate(boltz::suite::digits().unwrap().view()).unwrap(),
            None => {
                cfg.step_size = Some(0.05);
                Base::isotropic(e.dim(), 4.0).unwrap()
            }
        };
        g.throughput(Throughput::Elements((cfg.particles * temps) as u64));
        g.bench_function(format!("{name}/1024x{temps}"), |b| {
            pool.install(|| {
                b.iter(|| {
                    let problem = AisProblem::new(e.clone(), &base).unwrap();
                    ais::ais(&problem, &cfg).unwrap()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    energy_grad,
    kernel_steps,
    ais_steps,
    diagnostics,
    w3_negatives
);
criterion_main!(benches);
