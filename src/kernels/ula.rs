//! Unadjusted Langevin dynamics (ULA), in the textbook and the EBM-practice forms.

use super::{
    ChainState, ChainStep, Kernel, KernelInfo, KernelSpec, Tuning, evaluate_proposals,
    for_each_block,
};
use crate::energy::Energy;
use crate::error::{Error, Result, check_positive};
use crate::rng::{ChainRng, fill_standard_normal};

/// Settings of [`Ula`] in the EBM-practice form.
#[derive(Clone, Debug, PartialEq)]
pub struct UlaConfig {
    /// Multiplies the gradient: `y' = y - step_size * grad + noise * xi`.
    pub step_size: f64,
    /// Standard deviation of the added Gaussian noise (>= 0).
    pub noise: f64,
    /// Clamp each gradient entry to `[-c, c]` before the step (IGEBM uses 0.01).
    pub grad_clip: Option<f64>,
    /// Clamp positions to the box `[lo, hi]` after the step (images: [0, 1]).
    pub clamp: Option<(f64, f64)>,
}

/// Unadjusted Langevin: `y' = y - step_size * grad E(y) + noise * xi`.
///
/// With `noise = sqrt(2 step_size)` this is the Euler-Maruyama
/// discretisation of the Langevin diffusion targeting `exp(-E)`
/// ([`Ula::new`]); its stationary law is biased by O(step_size) (for a
/// Gaussian of variance s^2 it has variance `s^2 / (1 - step_size / (2 s^2))`).
/// With a separate `noise`, gradient clipping and a box ([`Ula::practice`]) it
/// is the sampler of short-run EBM training (Nijkamp et al. 2019; Du & Mordatch
/// 2019). Nothing is rejected: a chain whose new state has a non-finite
/// energy or gradient stays at its last finite state and the step counts as
/// a divergence.
#[derive(Clone, Debug)]
pub struct Ula {
    config: UlaConfig,
    coupled: bool,
}

/// ULA's registry entry: the exact Langevin discretisation, or the
/// EBM-practice form when a noise, gradient clip or clamp is given.
pub(crate) const INFO: KernelInfo = KernelInfo {
    name: "ula",
    about: "unadjusted Langevin (biased by O(step)); EBM-practice noise, clip and clamp",
    space: crate::energy::StateSpace::Continuous,
    settings: &["step_size", "noise", "grad_clip", "clamp"],
    invariance: super::Invariance::Unadjusted,
    test_settings: |scale, _| super::KernelSettings {
        step_size: Some(0.4 * scale * scale),
        ..Default::default()
    },
    build: |spec: &KernelSpec| {
        let s = &spec.settings;
        let step = spec.step_or(0.01);
        if s.noise.is_none() && s.grad_clip.is_none() && s.clamp.is_none() {
            return Ok(Box::new(Ula::new(step)?));
        }
        Ok(Box::new(Ula::practice(UlaConfig {
            step_size: step,
            noise: s.noise.unwrap_or((2.0 * step).sqrt()),
            grad_clip: s.grad_clip,
            clamp: s.clamp,
        })?))
    },
};

/// Checks ULA's EBM-practice settings: a noise scale finite and >= 0, a
/// gradient clip > 0, a clamp box with finite `lo < hi` (the kernel and
/// [`super::KernelSettings::check`] share it).
pub(crate) fn check_practice(
    noise: Option<f64>,
    grad_clip: Option<f64>,
    clamp: Option<(f64, f64)>,
) -> Result<()> {
    if let Some(n) = noise
        && !(n.is_finite() && n >= 0.0)
    {
        return Err(Error::param(
            "noise",
            format!("must be finite and >= 0, got {n}"),
        ));
    }
    if let Some(c) = grad_clip {
        check_positive("grad_clip", c)?;
    }
    if let Some((lo, hi)) = clamp
        && !(lo.is_finite() && hi.is_finite() && lo < hi)
    {
        return Err(Error::param(
            "clamp",
            format!("needs finite lo < hi, got [{lo}, {hi}]"),
        ));
    }
    Ok(())
}

impl Ula {
    /// Textbook ULA with time step `step_size`: noise `sqrt(2 step_size)`.
    pub fn new(step_size: f64) -> Result<Self> {
        check_positive("step_size", step_size)?;
        Ok(Ula {
            config: UlaConfig {
                step_size,
                noise: (2.0 * step_size).sqrt(),
                grad_clip: None,
                clamp: None,
            },
            coupled: true,
        })
    }

    /// The EBM-practice form with separate step and noise.
    pub fn practice(config: UlaConfig) -> Result<Self> {
        check_positive("step_size", config.step_size)?;
        check_practice(Some(config.noise), config.grad_clip, config.clamp)?;
        Ok(Ula {
            config,
            coupled: false,
        })
    }

    /// The current settings.
    pub fn config(&self) -> &UlaConfig {
        &self.config
    }

    /// Fills every chain's proposal `y - step * grad + noise * xi` (the
    /// gradient clipped and the result clamped as configured), drawing
    /// `xi` from the chain's stream.
    fn propose(
        &self,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        let c = &self.config;
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                let step = tuning.step_size().get(b.first + i);
                let noise = if self.coupled {
                    (2.0 * step).sqrt()
                } else {
                    c.noise
                };
                let d = b.position.ncols();
                let r = i * d..(i + 1) * d;
                let xi = &mut b.momentum.as_slice_mut().expect("standard layout")[r.clone()];
                fill_standard_normal(&mut b.rngs[i], xi);
                let y = &b.position.as_slice().expect("standard layout")[r.clone()];
                let g = &b.grad.as_slice().expect("standard layout")[r.clone()];
                let xi = &b.momentum.as_slice().expect("standard layout")[r.clone()];
                let out = &mut b.proposal.as_slice_mut().expect("standard layout")[r];
                if c.grad_clip.is_none() && c.clamp.is_none() {
                    for j in 0..d {
                        out[j] = y[j] - step * g[j] + noise * xi[j];
                    }
                } else {
                    for j in 0..d {
                        let mut gj = g[j];
                        if let Some(clip) = c.grad_clip {
                            gj = gj.clamp(-clip, clip);
                        }
                        let mut v = y[j] - step * gj + noise * xi[j];
                        if let Some((lo, hi)) = c.clamp {
                            v = v.clamp(lo, hi);
                        }
                        out[j] = v;
                    }
                }
            }
        });
    }
}

impl Kernel for Ula {
    fn uses_mass(&self) -> bool {
        false
    }
    fn name(&self) -> &'static str {
        "ula"
    }

    fn step(
        &self,
        energy: &dyn Energy,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) {
        self.propose(tuning, state, rngs, steps);
        evaluate_proposals(energy, state, true);
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                if b.proposal_finite(i, true) {
                    b.accept(i);
                    b.steps[i] = ChainStep::exact();
                } else {
                    b.steps[i] = ChainStep::divergent();
                }
            }
        });
    }

    fn initial_tuning(&self) -> Tuning {
        Tuning::new(self.config.step_size)
    }
    fn proposal_is_last_eval(&self) -> bool {
        true
    }
    fn step_unevaluated(
        &self,
        tuning: &Tuning,
        state: &mut ChainState,
        rngs: &mut [ChainRng],
        steps: &mut [ChainStep],
    ) -> bool {
        self.propose(tuning, state, rngs, steps);
        for_each_block(state, rngs, steps, |mut b| {
            for i in 0..b.rngs.len() {
                if b.proposal.row(i).iter().all(|v| v.is_finite()) {
                    b.position.row_mut(i).assign(&b.proposal.row(i));
                    b.energy[i] = f64::NAN;
                    b.steps[i] = ChainStep::exact();
                } else {
                    b.steps[i] = ChainStep::divergent();
                }
            }
        });
        true
    }
    fn target_accept(&self) -> Option<f64> {
        None
    }
    fn grad_evals_per_step(&self) -> usize {
        1
    }
}
