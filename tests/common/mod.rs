//! Helpers shared by the library's statistical tests.
#![allow(dead_code)]

use boltz::diagnostics::{ess_bulk, ess_tail};
use boltz::energy::Energy;
use boltz::init::Init;
use boltz::kernels::Kernel;
use boltz::sampler::{NoObserver, SampleConfig, SampleOutput, sample};
use ndarray::ArrayView2;

/// Runs `chains` chains of `kernel` from the default start.
pub fn run(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    chains: usize,
    warmup: usize,
    draws: usize,
    thin: usize,
    seed: u64,
) -> SampleOutput {
    run_from(
        energy,
        kernel,
        chains,
        warmup,
        draws,
        thin,
        seed,
        Init::default(),
    )
}

#[allow(clippy::too_many_arguments)]
pub fn run_from(
    energy: &dyn Energy,
    kernel: &dyn Kernel,
    chains: usize,
    warmup: usize,
    draws: usize,
    thin: usize,
    seed: u64,
    init: Init,
) -> SampleOutput {
    let mut c = SampleConfig::new();
    c.init = init;
    c.n_chains = chains;
    c.warmup = warmup;
    c.draws = draws;
    c.thin = thin;
    c.seed = seed;
    sample(energy, kernel, &c, None, &mut NoObserver).unwrap()
}

/// Thins (chains, draws) to one draw per two autocorrelation times (the
/// longer of the bulk's and the tails'), so that the pooled draws are
/// close enough to independent for KS and chi-square tests (one time alone
/// left chi-square statistics inflated by ~10% for RWM).
pub fn thinned(x: ArrayView2<f64>) -> Vec<f64> {
    let ess = ess_bulk(x).min(ess_tail(x)).max(1.0);
    let step = 2 * ((x.len() as f64 / ess).ceil() as usize).max(1);
    let mut v = Vec::new();
    for row in x.rows() {
        v.extend(row.iter().step_by(step).copied());
    }
    v
}

/// Sets the stop flag at the `n`-th progress report: a run stopped part-way,
/// whose checkpoint the resume paths can take.
pub struct StopAfter(pub usize, pub std::sync::Arc<std::sync::atomic::AtomicBool>);

impl boltz::run::Observer for StopAfter {
    fn observe(&mut self, _: &boltz::run::Progress) {
        self.0 = self.0.saturating_sub(1);
        if self.0 == 0 {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// How many rows of `y` differ from those of `start` (chains that moved:
/// an invariance test needs enough of them not to be vacuous).
pub fn moved_rows(y: ArrayView2<f64>, start: ArrayView2<f64>) -> usize {
    y.rows()
        .into_iter()
        .zip(start.rows())
        .filter(|(a, b)| a != b)
        .count()
}
