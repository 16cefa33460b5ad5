//! One description of every kernel: its name, the states it moves on and
//! how to build it from a [`KernelSpec`]. `sample`, `compare`, AIS and
//! negatives all build their kernels here, so adding a kernel is its own
//! file (with an `INFO` constant) plus one line in [`KERNELS`].

use super::{Kernel, automala, gibbs, hmc, mala, nuts, rwm, ula};
use crate::energy::{Energy, StateSpace};
use crate::error::{Error, Result};
use std::sync::Arc;

/// Which invariance test a kernel's registry entry is held to (the
/// invariance tests iterate [`KERNELS`] and run each kernel by this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariance {
    /// Metropolis-adjusted on continuous states: started at exact draws of
    /// a target, the draws stay exact (funnel, ill-conditioned Gaussian,
    /// skewed target, mixture).
    Exact,
    /// Unadjusted (biased by its step): keeps its own discretised law,
    /// tested on a Gaussian whose stationary law under the kernel is known.
    Unadjusted,
    /// On binary states: exact draws of a binary target stay exact.
    Binary,
}

/// What the registry knows of one kernel.
pub struct KernelInfo {
    /// The name users write (`mala`, `hmc`, ...).
    pub name: &'static str,
    /// One line on what it is.
    pub about: &'static str,
    /// The states it moves on.
    pub space: StateSpace,
    /// The [`KernelSettings`] it reads, by their [`SETTINGS`] names (the
    /// others are ignored by it).
    pub settings: &'static [&'static str],
    /// The invariance test it is held to.
    pub invariance: Invariance,
    /// Settings for the invariance tests on a target of dimension `dim`
    /// whose smallest scale is about `scale`: a fixed step at which the
    /// chains move (at least 30% of them in 20 transitions).
    pub test_settings: fn(scale: f64, dim: usize) -> KernelSettings,
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

/// What the registry knows of one kernel setting (a field of
/// [`KernelSettings`], under the same name; the command line writes it
/// with dashes, `--max-depth`).
pub struct SettingInfo {
    /// The field's name (`max_depth`).
    pub name: &'static str,
    /// What it sets, with its units.
    pub about: &'static str,
    /// The default, as text.
    pub default: &'static str,
    /// A valid value other than the default, as the command line takes it
    /// (the tests change each setting to this one).
    pub example: &'static str,
}

/// Every field of [`KernelSettings`], in its order (a unit test checks
/// that the two agree).
pub const SETTINGS: &[SettingInfo] = &[
    SettingInfo {
        name: "step_size",
        about: "starting step size of warm-up adaptation, or the fixed step without it (the kernel's units: MALA's time step, HMC's leapfrog step, RWM's proposal sd)",
        default: "adapted (sample), pilot-tuned (logz), 0.01 (negatives)",
        example: "0.05",
    },
    SettingInfo {
        name: "target_accept",
        about: "acceptance rate step-size adaptation aims for, in (0, 1)",
        default: "the kernel's usual (MALA 0.574, HMC and NUTS 0.8, RWM 0.234)",
        example: "0.7",
    },
    SettingInfo {
        name: "leapfrog",
        about: "leapfrog steps per transition",
        default: "16",
        example: "4",
    },
    SettingInfo {
        name: "max_depth",
        about: "most trajectory doublings per transition (at most 2^D - 1 leapfrog steps; 1 to 16)",
        default: "10",
        example: "3",
    },
    SettingInfo {
        name: "jitter",
        about: "step-size jitter: each transition's step is uniform in step * (1 +- J), J in [0, 1)",
        default: "0.2 (sample, negatives), 0 (logz)",
        example: "0.1",
    },
    SettingInfo {
        name: "noise",
        about: "noise standard deviation of a step",
        default: "sqrt(2 step), the exact Langevin discretisation",
        example: "0.05",
    },
    SettingInfo {
        name: "grad_clip",
        about: "clamp each gradient entry to [-C, C] (entry-wise, not the norm)",
        default: "none",
        example: "5",
    },
    SettingInfo {
        name: "clamp",
        about: "clamp positions to the box [LO, HI] after each step",
        default: "none",
        example: "-10,10",
    },
];

/// The registry as JSON (what `boltz kernels --json` and Python's
/// `boltz.kernels()` show): for each kernel its name, what it is, its
/// states (`continuous` or `binary`), its invariance test and the settings
/// it reads, each with what it sets and its default.
///
/// ```
/// let list = boltz::kernels::listing();
/// let nuts = list.iter().find(|k| k["name"] == "nuts").unwrap();
/// assert!(nuts["settings"].as_array().unwrap().iter().any(|s| s["name"] == "max_depth"));
/// ```
pub fn listing() -> Vec<serde_json::Value> {
    KERNELS
        .iter()
        .map(|k| {
            let settings: Vec<serde_json::Value> = k
                .settings
                .iter()
                .filter_map(|n| SETTINGS.iter().find(|s| s.name == *n))
                .map(
                    |s| serde_json::json!({"name": s.name, "about": s.about, "default": s.default}),
                )
                .collect();
            serde_json::json!({
                "name": k.name,
                "about": k.about,
                "space": match k.space {
                    StateSpace::Continuous => "continuous",
                    StateSpace::Binary => "binary",
                },
                "invariance": match k.invariance {
                    Invariance::Exact => "exact",
                    Invariance::Unadjusted => "unadjusted",
                    Invariance::Binary => "binary",
                },
                "settings": settings,
            })
        })
        .collect()
}

/// NUTS's default most doublings (Stan's).
fn default_max_depth() -> usize {
    10
}

/// Every setting of every kernel: the one definition that sample, log Z
/// and negatives jobs embed (`#[serde(flatten)]`), the command line's
/// kernel arguments fill and checkpoints, shard headers and state files
/// store. Each kernel reads the ones its [`KernelInfo::settings`] names
/// and ignores the others; [`SETTINGS`] documents each.
///
/// ```
/// use boltz::kernels::{KernelSettings, KernelSpec};
/// let settings = KernelSettings { max_depth: 6, ..KernelSettings::default() };
/// let spec = KernelSpec::with_settings("nuts", settings)?;
/// assert_eq!(spec.settings.max_depth, 6);
/// # Ok::<(), boltz::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelSettings {
    /// Starting (or fixed) step size, in the kernel's units; `None` takes
    /// the job's default (sample: adapted in warm-up from the kernel's
    /// 0.1, ULA from MALA's; log Z: tuned per temperature by the pilot;
    /// negatives: 0.01).
    pub step_size: Option<f64>,
    /// Acceptance rate for step-size adaptation, in (0, 1) (default: the
    /// kernel's usual).
    pub target_accept: Option<f64>,
    /// HMC and AutoStep HMC: leapfrog steps per transition (default 16).
    pub leapfrog: usize,
    /// NUTS: most trajectory doublings per transition (default 10, at
    /// most 16; `2^max_depth - 1` leapfrog steps).
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// HMC: step-size jitter, uniform in `step * (1 +- jitter)`; `None`
    /// takes the job's default (0.2; AIS runs without jitter).
    pub jitter: Option<f64>,
    /// ULA: noise standard deviation (default `sqrt(2 step)`).
    pub noise: Option<f64>,
    /// ULA: clamp each gradient entry to `[-c, c]` (entry-wise).
    pub grad_clip: Option<f64>,
    /// ULA: clamp positions to the box `[lo, hi]` after each step.
    pub clamp: Option<(f64, f64)>,
}

impl Default for KernelSettings {
    fn default() -> Self {
        KernelSettings {
            step_size: None,
            target_accept: None,
            leapfrog: 16,
            max_depth: default_max_depth(),
            jitter: None,
            noise: None,
            grad_clip: None,
            clamp: None,
        }
    }
}

impl KernelSettings {
    /// HMC's step jitter when none is set (sampling and negatives).
    pub const DEFAULT_JITTER: f64 = 0.2;

    /// Checks the values that do not depend on the kernel (positive step,
    /// noise and clip, an acceptance target in (0, 1), an ordered clamp
    /// box); a kernel checks the rest when it is built.
    pub fn check(&self) -> Result<()> {
        if let Some(s) = self.step_size {
            crate::error::check_positive("step_size", s)?;
        }
        if let Some(t) = self.target_accept {
            super::check_target_accept(t)?;
        }
        super::ula::check_practice(self.noise, self.grad_clip, self.clamp)?;
        if let Some(j) = self.jitter {
            super::hmc::check_jitter(j)?;
        }
        Ok(())
    }

    /// The jitter to build with: the set one, else `default`.
    pub fn jitter_or(&self, default: f64) -> f64 {
        self.jitter.unwrap_or(default)
    }
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
    /// The settings ([`KernelSettings`]; the kernel reads those its
    /// registry entry names).
    #[serde(flatten)]
    pub settings: KernelSettings,
    /// Gibbs on RBMs: recompute each chain's free energy after every sweep
    /// (default true; false is faster when only states are needed).
    pub track_energy: bool,
    /// A kernel written outside boltz ([`KernelSpec::custom`]); not
    /// serialised (a spec read back from JSON names a registry kernel).
    #[serde(skip)]
    custom: Custom,
}

/// An outside kernel a spec carries, compared by identity.
#[derive(Clone, Default)]
struct Custom(Option<Arc<dyn Kernel>>);

impl std::fmt::Debug for Custom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(k) => write!(f, "Custom({})", k.name()),
            None => write!(f, "None"),
        }
    }
}

impl PartialEq for Custom {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

/// A shared kernel is a kernel (what [`KernelSpec::build`] returns for a
/// [`KernelSpec::custom`] one).
impl Kernel for Arc<dyn Kernel> {
    fn name(&self) -> &'static str {
        self.as_ref().name()
    }
    fn step(
        &self,
        energy: &dyn Energy,
        tuning: &super::Tuning,
        state: &mut super::ChainState,
        rngs: &mut [crate::rng::ChainRng],
        steps: &mut [super::ChainStep],
    ) {
        self.as_ref().step(energy, tuning, state, rngs, steps)
    }
    fn initial_tuning(&self) -> super::Tuning {
        self.as_ref().initial_tuning()
    }
    fn target_accept(&self) -> Option<f64> {
        self.as_ref().target_accept()
    }
    fn uses_mass(&self) -> bool {
        self.as_ref().uses_mass()
    }
    fn space(&self) -> StateSpace {
        self.as_ref().space()
    }
    fn chooses_step(&self) -> bool {
        self.as_ref().chooses_step()
    }
    fn grad_evals_per_step(&self) -> usize {
        self.as_ref().grad_evals_per_step()
    }
    fn has_step_size(&self) -> bool {
        self.as_ref().has_step_size()
    }
    fn proposal_is_last_eval(&self) -> bool {
        self.as_ref().proposal_is_last_eval()
    }
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
            settings: KernelSettings::default(),
            track_energy: true,
            custom: Custom::default(),
        })
    }

    /// A spec that carries a kernel written outside boltz: every runner
    /// that takes a spec (AIS's [`crate::AisConfig::kernel`], parallel
    /// tempering, [`crate::compare::compare`], negatives) then runs it,
    /// as [`crate::sampler::sample`] runs any `&dyn Kernel`. Its name is
    /// the kernel's; settings do not apply (the kernel holds its own).
    ///
    /// ```
    /// use boltz::kernels::{KernelSpec, Mala};
    /// let spec = KernelSpec::custom(Mala::new(0.2)?);
    /// assert_eq!(spec.name(), "mala");
    /// assert!(spec.build()?.uses_mass());
    /// # Ok::<(), boltz::Error>(())
    /// ```
    pub fn custom(kernel: impl Kernel + 'static) -> Self {
        Self::custom_shared(Arc::new(kernel))
    }

    /// [`KernelSpec::custom`] of a kernel already shared.
    pub fn custom_shared(kernel: Arc<dyn Kernel>) -> Self {
        KernelSpec {
            name: kernel.name().to_string(),
            settings: KernelSettings::default(),
            track_energy: true,
            custom: Custom(Some(kernel)),
        }
    }

    /// Whether the spec carries an outside kernel ([`KernelSpec::custom`]).
    pub fn is_custom(&self) -> bool {
        self.custom.0.is_some()
    }

    /// The kernel named `name` with `settings` (checked: [`KernelSettings::check`]).
    pub fn with_settings(name: &str, settings: KernelSettings) -> Result<Self> {
        settings.check()?;
        let mut spec = Self::new(name)?;
        spec.settings = settings;
        Ok(spec)
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

    /// The registry entry (`None` for an outside kernel, or a name read
    /// back from a file that no registered kernel has).
    pub fn info(&self) -> Option<&'static KernelInfo> {
        if self.is_custom() {
            return None;
        }
        KERNELS.iter().find(|k| k.name == self.name)
    }

    /// The registry entry, or an error naming the known kernels.
    fn registered(&self) -> Result<&'static KernelInfo> {
        self.info().ok_or_else(|| {
            Error::param(
                "kernel",
                format!(
                    "unknown kernel `{}` ({})",
                    self.name,
                    Self::names().join(", ")
                ),
            )
        })
    }

    /// The states the kernel moves on.
    pub fn space(&self) -> Result<StateSpace> {
        match &self.custom.0 {
            Some(k) => Ok(k.space()),
            None => Ok(self.registered()?.space),
        }
    }

    /// Sets the starting step size (> 0).
    pub fn step_size(mut self, step_size: f64) -> Result<Self> {
        crate::error::check_positive("step size", step_size)?;
        self.settings.step_size = Some(step_size);
        Ok(self)
    }

    /// Sets the acceptance rate adaptation aims for, in (0, 1).
    pub fn target_accept(mut self, target: f64) -> Result<Self> {
        self.settings.target_accept = Some(super::check_target_accept(target)?);
        Ok(self)
    }

    /// Sets HMC's leapfrog steps per transition.
    pub fn leapfrog(mut self, steps: usize) -> Self {
        self.settings.leapfrog = steps;
        self
    }

    /// The step size to build with: the spec's, else `default`.
    pub(crate) fn step_or(&self, default: f64) -> f64 {
        self.settings.step_size.unwrap_or(default)
    }

    /// Checks that the kernel can move on `energy`'s states.
    pub fn check(&self, energy: &dyn Energy) -> Result<()> {
        if self.space()? == energy.space() {
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
        if let Some(k) = &self.custom.0 {
            return Ok(Box::new(k.clone()));
        }
        self.settings.check()?;
        (self.registered()?.build)(self)
    }

    /// Checks the kernel against `energy`, then builds it.
    pub fn build_for(&self, energy: &dyn Energy) -> Result<Box<dyn Kernel>> {
        self.check(energy)?;
        self.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_table_names_every_field_of_kernel_settings_in_order() {
        let v = serde_json::to_value(KernelSettings::default()).unwrap();
        let fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut table: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        let mut sorted = fields.clone();
        sorted.sort_unstable();
        table.sort_unstable();
        assert_eq!(sorted, table, "SETTINGS and KernelSettings disagree");
    }

    #[test]
    fn every_kernel_reads_only_known_settings_and_builds_from_its_test_settings() {
        for k in KERNELS {
            for s in k.settings {
                assert!(
                    SETTINGS.iter().any(|t| t.name == *s),
                    "{}: unknown setting {s}",
                    k.name
                );
            }
            let spec = KernelSpec::with_settings(k.name, (k.test_settings)(1.0, 4)).unwrap();
            assert_eq!(spec.build().unwrap().name(), k.name);
        }
    }

    #[test]
    fn a_spec_serialises_with_its_settings_flattened() {
        let spec = KernelSpec::new("nuts").unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["max_depth"], 10);
        assert_eq!(v["name"], "nuts");
        let back: KernelSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back, spec);
    }
}
