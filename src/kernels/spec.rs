//! One description of every kernel: its name, the states it moves on and
//! how to build it from a [`KernelSpec`]. `sample`, `compare`, AIS and
//! negatives all build their kernels here, so adding a kernel is its own
//! file (with an `INFO` constant) plus one line in [`KERNELS`].

use super::{Kernel, automala, gibbs, hmc, mala, nuts, rwm, ula};
use crate::energy::{Energy, StateSpace};
use crate::error::{Error, Result};

/// What the registry knows of one kernel.
pub struct KernelInfo {
    /// The name users write (`mala`, `hmc`, ...).
    pub name: &'static str,
    /// One line on what it is.
    pub about: &'static str,
    /// The states it moves on.
    pub space: StateSpace,
    /// Builds the kernel from a spec (the spec's name is this one's).
    pub build: fn(&KernelSpec) -> Result<Box<dyn Kernel>>,
}

/// Every kernel boltz offers, in the order help texts list them.
pub const KERNELS: &[KernelInfo] = &[
    ula::INFO,
    mala::INFO,
    automala::INFO,
    hmc::INFO,
    automala::INFO_HMC,
    nuts::INFO,
    rwm::INFO,
    automala::INFO_RWM,
    gibbs::INFO,
];

/// NUTS's default most doublings (Stan's).
fn default_max_depth() -> usize {
    10
}

/// A kernel by name with its settings: what a user (or the command line)
/// chooses, checked against an energy and built in one place.
///
/// Settings a kernel does not use are ignored by it. Step sizes are the
/// starting point of warm-up adaptation (or the fixed step without it);
/// `None` takes the kernel's default (0.1; 0.01 for ULA).
///
/// ```
/// use boltz::kernels::KernelSpec;
/// let energy = boltz::model::load("gauss-ill")?.energy(None)?;
/// let spec = KernelSpec::new("hmc")?.leapfrog(8).target_accept(0.9)?;
/// let kernel = spec.build_for(energy.as_ref())?;
/// assert_eq!(kernel.name(), "hmc");
/// // The binary-means-Gibbs rule lives here and only here:
/// assert_eq!(KernelSpec::for_energy(energy.as_ref()).name(), "mala");
/// # Ok::<(), boltz::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KernelSpec {
    name: String,
    /// Starting (or fixed) step size, in the kernel's units.
    pub step_size: Option<f64>,
    /// Acceptance rate for step-size adaptation (default: the kernel's usual).
    pub target_accept: Option<f64>,
    /// HMC: leapfrog steps per transition (default 16).
    pub leapfrog: usize,
    /// NUTS: most trajectory doublings per transition (default 10, at
    /// most 16; `2^max_depth - 1` leapfrog steps).
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// HMC: step-size jitter, uniform in `step * (1 +- jitter)` (default 0.2).
    pub jitter: f64,
    /// ULA: noise standard deviation (default `sqrt(2 step)`).
    pub noise: Option<f64>,
    /// ULA: clamp each gradient entry to `[-c, c]`.
    pub grad_clip: Option<f64>,
    /// ULA: clamp positions to the box `[lo, hi]` after each step.
    pub clamp: Option<(f64, f64)>,
    /// Gibbs on RBMs: recompute each chain's free energy after every sweep
    /// (default true; false is faster when only states are needed).
    pub track_energy: bool,
}

impl KernelSpec {
    /// The kernel named `name` with default settings; an unknown name is
    /// an error listing the known ones.
    pub fn new(name: &str) -> Result<Self> {
        let name = name.trim();
        if !KERNELS.iter().any(|k| k.name == name) {
            return Err(Error::param(
                "kernel",
                format!("unknown kernel `{name}` ({})", Self::names().join(", ")),
            ));
        }
        Ok(KernelSpec {
            name: name.to_string(),
            step_size: None,
            target_accept: None,
            leapfrog: 16,
            max_depth: default_max_depth(),
            jitter: 0.2,
            noise: None,
            grad_clip: None,
            clamp: None,
            track_energy: true,
        })
    }

    /// The default kernel for an energy: Gibbs for binary states, MALA
    /// for continuous ones.
    pub fn for_energy(energy: &dyn Energy) -> Self {
        let name = match energy.space() {
            StateSpace::Binary => "gibbs",
            StateSpace::Continuous => "mala",
        };
        Self::new(name).expect("registered")
    }

    /// The names of every kernel, in [`KERNELS`] order.
    pub fn names() -> Vec<&'static str> {
        KERNELS.iter().map(|k| k.name).collect()
    }

    /// The kernel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry entry.
    pub fn info(&self) -> &'static KernelInfo {
        KERNELS
            .iter()
            .find(|k| k.name == self.name)
            .expect("checked in new")
    }

    /// Sets the starting step size (> 0).
    pub fn step_size(mut self, step_size: f64) -> Result<Self> {
        crate::error::check_positive("step size", step_size)?;
        self.step_size = Some(step_size);
        Ok(self)
    }

    /// Sets the acceptance rate adaptation aims for, in (0, 1).
    pub fn target_accept(mut self, target: f64) -> Result<Self> {
        self.target_accept = Some(super::check_target_accept(target)?);
        Ok(self)
    }

    /// Sets HMC's leapfrog steps per transition.
    pub fn leapfrog(mut self, steps: usize) -> Self {
        self.leapfrog = steps;
        self
    }

    /// The step size to build with: the spec's, else `default`.
    pub(crate) fn step_or(&self, default: f64) -> f64 {
        self.step_size.unwrap_or(default)
    }

    /// Checks that the kernel can move on `energy`'s states.
    pub fn check(&self, energy: &dyn Energy) -> Result<()> {
        let info = self.info();
        if info.space == energy.space() {
            return Ok(());
        }
        Err(Error::param(
            "kernel",
            match energy.space() {
                StateSpace::Binary => format!(
                    "the model has binary states: only gibbs applies, not {}",
                    self.name
                ),
                StateSpace::Continuous => {
                    format!("{} needs binary states; the model is continuous", self.name)
                }
            },
        ))
    }

    /// Builds the kernel (settings checked).
    pub fn build(&self) -> Result<Box<dyn Kernel>> {
        (self.info().build)(self)
    }

    /// Checks the kernel against `energy`, then builds it.
    pub fn build_for(&self, energy: &dyn Energy) -> Result<Box<dyn Kernel>> {
        self.check(energy)?;
        self.build()
    }
}
