//! boltz samples from energy-based models.
//!
//! An energy `F(y)` (or `F(x, y)` with a context `x`) scores states: low
//! energy means likely. At inverse temperature `beta` the target is the
//! Gibbs-Boltzmann density `exp(-beta F(y)) / Z`. boltz provides
//! - a parallel, batched energy core ([`energy`]) with the reference
//!   families (Gaussian, mixture, funnel, ring, MLP, RBM);
//! - transition kernels ([`kernels`]: ULA, MALA, HMC, RWM, Gibbs) and the
//!   chain driver with warm-up adaptation, checkpoints and observers
//!   ([`sampler`]);
//! - negative samples for contrastive training and the contrastive losses
//!   ([`negatives`]);
//! - annealed importance sampling of log Z and log P(y|x), with reverse-AIS
//!   bounds ([`ais`]), and exact references ([`exact`]): enumeration and
//!   quadrature;
//! - diagnostics: R-hat, bulk and tail ESS, MCSE, KS and chi-square tests
//!   ([`diagnostics`]);
//! - the reference suite of targets ([`suite`]) and model files ([`io`]);
//! - the suite's workloads as checked, timed measurements ([`bench`]) and
//!   samplers compared on a user's own model ([`compare`]).
//!
//! # Reproducibility contract
//! A run is a pure function of its seed: chain `i` draws only from its own
//! ChaCha stream keyed by `(seed, i)` ([`rng`]); energies are computed in
//! blocks of rows whose size never depends on the thread count, and
//! reductions over chains are done in chain order. Output is bit-identical
//! for any number of rayon threads.

pub mod ais;
pub mod bench;
pub mod compare;
pub mod diagnostics;
pub mod energy;
pub mod error;
pub mod exact;
pub mod io;
pub mod kernels;
pub mod linalg;
pub mod model;
pub mod negatives;
pub mod rng;
pub mod sampler;
pub mod suite;

pub use energy::{ConditionalEnergy, Conditioned, Energy, RowEnergy, StateSpace};
pub use error::{Error, Result};
pub use model::{Family, Model};
