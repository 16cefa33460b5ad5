//! The kernel arguments every command that runs a kernel takes (`sample`,
//! `logz`, `prob`, `negatives`, `compare`): one struct, flattened into each,
//! whose help texts come from the library's registry
//! ([`boltz::kernels::SETTINGS`], [`boltz::kernels::KERNELS`]) and which
//! fills one [`KernelSettings`]. A flag not given takes the library's default.

use boltz::error::{Error, Result};
use boltz::kernels::{KERNELS, KernelSettings, SETTINGS};

/// The help text of setting `name`: what it sets, which kernels read it
/// and its default, from the registry.
pub fn setting_help(name: &str) -> String {
    let Some(s) = SETTINGS.iter().find(|s| s.name == name) else {
        return String::new();
    };
    let users: Vec<&str> = KERNELS
        .iter()
        .filter(|k| k.settings.contains(&name))
        .map(|k| k.name)
        .collect();
    format!("{}: {} (default: {})", users.join(", "), s.about, s.default)
}

/// The registry's kernel names, comma-separated (help texts).
pub fn kernel_names() -> String {
    boltz::KernelSpec::names().join(", ")
}

/// Help of `--kernel` where it names the kernel (logz, prob, negatives).
pub fn kernel_help() -> String {
    format!(
        "The transition kernel: {} (default: gibbs for binary models, else the command's; `boltz kernels` lists them with their settings)",
        kernel_names()
    )
}

/// Help of `sample --sampler`.
pub fn sampler_help() -> String {
    format!(
        "The transition kernel: {} (`boltz kernels` lists them with their settings); or pt: non-reversible parallel tempering with --kernel as the local move, for targets with separated modes",
        kernel_names()
    )
}

/// The kernel's settings on the command line.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelArgs {
    #[arg(long, value_name = "STEP|auto", allow_hyphen_values = true, help = format!("{} `auto` is the default", setting_help("step_size")))]
    pub step_size: Option<String>,
    #[arg(long, help = setting_help("target_accept"))]
    pub target_accept: Option<f64>,
    #[arg(long, help = setting_help("leapfrog"))]
    pub leapfrog: Option<usize>,
    #[arg(long, help = setting_help("max_depth"))]
    pub max_depth: Option<usize>,
    #[arg(long, help = setting_help("jitter"))]
    pub jitter: Option<f64>,
    #[arg(long, help = setting_help("noise"))]
    pub noise: Option<f64>,
    #[arg(long, value_name = "C", help = setting_help("grad_clip"))]
    pub grad_clip: Option<f64>,
    #[arg(long, value_name = "LO,HI", allow_hyphen_values = true, help = setting_help("clamp"))]
    pub clamp: Option<String>,
}

impl KernelArgs {
    /// The settings these flags give (the library's default for each one not given).
    pub fn settings(&self) -> Result<KernelSettings> {
        let d = KernelSettings::default();
        let step_size = match self.step_size.as_deref() {
            None | Some("auto") => None,
            Some(s) => Some(s.trim().parse::<f64>().map_err(|_| {
                Error::param(
                    "--step-size",
                    format!("expected `auto` or a number, got `{s}`"),
                )
            })?),
        };
        let settings = KernelSettings {
            step_size,
            target_accept: self.target_accept,
            leapfrog: self.leapfrog.unwrap_or(d.leapfrog),
            max_depth: self.max_depth.unwrap_or(d.max_depth),
            jitter: self.jitter,
            noise: self.noise,
            grad_clip: self.grad_clip,
            clamp: self.clamp.as_deref().map(parse_pair).transpose()?,
        };
        // Setting names in errors become flags in main's `with_flags`.
        settings.check()?;
        Ok(settings)
    }
}

/// Parses `LO,HI` (`--clamp`).
fn parse_pair(s: &str) -> Result<(f64, f64)> {
    let bad = || Error::param("--clamp", format!("expected two numbers LO,HI, got `{s}`"));
    match s.split(',').collect::<Vec<_>>().as_slice() {
        [a, b] => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}
