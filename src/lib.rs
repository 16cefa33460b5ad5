//! boltz samples from energy-based models.
//!
//! An energy `F(y)` (or `F(x, y)` with a context `x`) scores states: low
//! energy means likely. At inverse temperature `beta` the target is the
//! Gibbs-Boltzmann density `exp(-beta F(y)) / Z`. boltz provides
//! - a parallel, batched energy core ([`energy`]) with the reference
//!   families (Gaussian, mixture, funnel, ring, MLP, RBM);
//! - transition kernels, one registry of them ([`kernels::KERNELS`]: ULA,
//!   MALA, autoMALA, HMC, AutoStep HMC, NUTS, RWM, AutoStep RWM, Gibbs; each
//!   with the [`kernels::KernelSettings`] it reads) and the chain driver
//!   with warm-up adaptation, checkpoints and observers ([`sampler`]);
//!   parallel tempering with any of them as the local move ([`pt`]);
//! - negative samples for contrastive training and the contrastive losses
//!   ([`negatives`]);
//! - annealed importance sampling of log Z and log P(y|x), with reverse-AIS
//!   bounds ([`ais`]), and exact references ([`exact`]): enumeration and
//!   quadrature;
//! - diagnostics: R-hat, bulk and tail ESS, MCSE, KS and chi-square tests
//!   ([`diagnostics`]);
//! - the reference suite of targets ([`suite`]) and model files ([`model`]);
//!   npy, safetensors and checkpoint files, written atomically ([`io`]);
//! - samplers compared side by side on any energy ([`compare`](mod@compare));
//! - one run loop with checkpoints, a stop flag and observers, and on it
//!   one chain engine ([`run::ChainRun`] driving a [`run::Transition`]) for
//!   the sampler, parallel tempering and the negatives' moves ([`run`]).
//!
//! The modules `jobs`, `shard` and `budget` are the command-line tool's
//! and the Python package's shared helpers (whole jobs with their
//! reports, shard files, the memory budget); they are public for those
//! fronts and hidden from this documentation.
//!
//! The `boltz` command-line tool is its own crate (`cli/` in the
//! workspace); depending on this library builds no CLI, terminal or
//! signal code.
//!
//! # From your own energy to draws, log Z and negatives
//!
//! ```
//! use boltz::{AisConfig, AisProblem, FnEnergy, KernelSpec, NegativeSampler, SampleConfig};
//! use boltz::{ais, negatives, sampler};
//! use std::sync::Arc;
//!
//! // F(y) = |y|^2 / 2 + y_0^4 / 4 in 5-D: energy and gradient in one closure.
//! let f = |y: &[f64]| 0.5 * y.iter().map(|v| v * v).sum::<f64>() + 0.25 * y[0].powi(4);
//! let energy = Arc::new(FnEnergy::new(5, f, move |y: &[f64], g: &mut [f64]| {
//!     g.copy_from_slice(y);
//!     g[0] += y[0].powi(3);
//!     f(y)
//! }));
//!
//! // 1. MALA draws, with warm-up adaptation of the step size and mass.
//! let kernel = KernelSpec::new("mala")?.build_for(energy.as_ref())?;
//! let mut config = SampleConfig::new();
//! (config.n_chains, config.warmup, config.draws) = (4, 300, 200);
//! let out = sampler::sample(energy.as_ref(), kernel.as_ref(), &config, None, &mut sampler::NoObserver)?;
//! assert_eq!(out.samples.dim(), (4, 200, 5));
//!
//! // 2. log Z by AIS from a pilot-fitted Gaussian base, with its error bar.
//! let base = ais::default_base(energy.as_ref(), 1.0, 0, None)?;
//! let mut aconfig = AisConfig::new();
//! (aconfig.particles, aconfig.temps) = (256, 200);
//! let z = ais::ais(&AisProblem::new(energy.clone(), &base)?, &aconfig)?;
//! let est = &z.estimates[0];
//! assert!(est.stderr < 0.1 && z.warnings.is_empty());
//!
//! // 3. Negatives for contrastive training: 20 ULA steps from the data.
//! let data = out.samples.index_axis(ndarray::Axis(1), 199).to_owned();
//! let mut neg = NegativeSampler::new(negatives::Method::Cd, negatives::Init::Gaussian { std: 1.0 }, 4, 5, 0)?;
//! let ula = KernelSpec::new("ula")?.step_size(0.01)?.build()?;
//! let batch = neg.generate(energy.as_ref(), ula.as_ref(), 20, Some(data.view()))?;
//! assert_eq!(batch.negatives.dim(), (4, 5));
//! # Ok::<(), boltz::Error>(())
//! ```
//!
//! # Reproducibility contract
//! A run is a pure function of its seed: chain `i` draws only from its own
//! ChaCha stream keyed by `(seed, i)` ([`rng`]); energies are computed in
//! blocks of rows whose size never depends on the thread count, and
//! reductions over chains are done in chain order. Output is bit-identical
//! for any number of rayon threads.

#![deny(missing_docs)]

pub mod ais;
#[doc(hidden)]
pub mod budget;
pub mod compare;
pub mod diagnostics;
pub mod energy;
pub mod error;
pub mod exact;
pub mod hash;
pub mod init;
pub mod io;
#[doc(hidden)]
pub mod jobs;
pub mod kernels;
pub mod linalg;
pub mod math;
pub mod model;
pub mod negatives;
pub mod pt;
pub mod rng;
pub mod run;
pub mod sampler;
#[doc(hidden)]
pub mod shard;
mod simd;
pub mod tally;
pub mod warning;

pub use ais::{AisConfig, AisProblem, AisResult, Base};
pub use compare::{CompareConfig, CompareReport, compare};
pub use energy::{ConditionalEnergy, Conditioned, Energy, FnEnergy, RowEnergy, StateSpace};
pub use error::{Error, Result};
pub use kernels::{Kernel, KernelSpec, Tuning};
pub use model::{Family, Model, suite};
pub use ndarray;
pub use negatives::{Loss, NegativeSampler};
/// The `rand` boltz is built on (a user crate need not pin its own).
pub use rand;
pub use run::{Control, NoObserver, Observer};
pub use sampler::{SampleConfig, SampleOutput};
pub use warning::{Warning, WarningKind, Warnings};
