//! W2: ESS per second of every Metropolis kernel on the ill-conditioned
//! Gaussian and the funnel.

use super::*;

/// Error of `var(v)` against 9 in units of its Monte Carlo standard error
/// (the MCSE of the mean of `(v - mean v)^2`, ESS-based).
fn variance_z(draws: ndarray::ArrayView2<f64>, exact: f64) -> (f64, f64, f64) {
    let mean = draws.mean().unwrap_or(f64::NAN);
    let sq = draws.mapv(|v| (v - mean) * (v - mean));
    let var = sq.mean().unwrap_or(f64::NAN);
    let se = diagnostics::mcse_mean(sq.view());
    (var, se, (var - exact) / se)
}

pub(super) fn w2(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (chains, warmup, draws) = if opts.quick {
        (8, 200, 400)
    } else {
        (64, 1000, 2000)
    };
    let mut out = Vec::new();
    // The suite's size on both targets, then the funnel at a length where
    // a correct sampler's R-hat gets under 1.01: 80_000 draws (every 4th
    // kept) after 2000 warm-up, for the kernels that can pass there (the
    // others fail at the suite's size already; autoMALA would need about
    // 4M steps per chain, see tests/funnel.rs).
    let long = if opts.quick {
        (8, 200, 800, 2)
    } else {
        (64, 2000, 20_000, 4)
    };
    for (target, is_long) in [("gauss-ill", false), ("funnel", false), ("funnel", true)] {
        let (chains, warmup, draws, thin) = if is_long {
            long
        } else {
            (chains, warmup, draws, 1)
        };
        let m = model::load(target)?;
        let e = m.energy(None)?;
        let (_, var) = m
            .moments()
            .ok_or_else(|| Error::Numerical(format!("{target} has no moments")))?;
        // Every Metropolis kernel of the spec (ULA is biased by design); on
        // the funnel also HMC at 0.95, which follows the neck further. The
        // AutoStep kernels choose their steps (no target acceptance).
        let mut samplers: Vec<(&str, Option<f64>)> = vec![
            ("mala", Some(0.574)),
            ("automala", None),
            ("hmc", Some(0.8)),
            ("autohmc", None),
            ("nuts", Some(0.8)),
            ("rwm", Some(0.234)),
            ("autorwm", None),
        ];
        if target == "funnel" {
            samplers.insert(3, ("hmc", Some(0.95)));
        }
        if is_long {
            samplers.retain(|(n, t)| {
                ["autohmc", "nuts", "mala"].contains(n) || (*n == "hmc" && *t == Some(0.95))
            });
        }
        let label_target = if is_long { "funnel (long)" } else { target };
        for (name, target_accept) in samplers {
            let size = (chains, warmup, draws, thin);
            let k = (name, target_accept);
            out.push(w2_row(
                opts,
                (target, label_target),
                e.as_ref(),
                &var,
                k,
                size,
            )?);
        }
    }
    Ok(out)
}

/// One W2 row: `kernel` (name, target acceptance) on `target` (name,
/// label) for `size` (chains, warm-up, draws, thinning), timed and checked
/// against the target's variances `var`.
fn w2_row(
    opts: &BenchOptions,
    (target, label_target): (&str, &str),
    e: &dyn Energy,
    var: &[f64],
    (name, target_accept): (&str, Option<f64>),
    (chains, warmup, draws, thin): (usize, usize, usize, usize),
) -> Result<Measurement> {
    let mut cfg = SampleConfig::new();
    cfg.n_chains = chains;
    cfg.warmup = warmup;
    cfg.draws = draws;
    cfg.thin = thin;
    cfg.record_energies = false;
    // HMC 16 leapfrog steps, AutoStep HMC 8 (each of its steps runs
    // at least 3 trajectories); the random walks start at 0.5.
    let mut spec = KernelSpec::new(name)?
        .step_size(if name.ends_with("rwm") { 0.5 } else { 0.1 })?
        .leapfrog(if name == "autohmc" { 8 } else { 16 });
    if let Some(t) = target_accept {
        spec = spec.target_accept(t)?;
    }
    let k = spec.build_for(e)?;
    // Gradient evaluations (energy evaluations for the gradient-free
    // random walks), warm-up included.
    let gradient_free = k.grad_evals_per_step() == 0;
    let (wall, (o, evals), walls) = timed(opts, |seed| {
        cfg.seed = seed;
        let o = sample(e, k.as_ref(), &cfg, None, &mut NoObserver)?;
        let evals = if gradient_free {
            o.stats.energy_evals
        } else {
            o.stats.grad_evals
        };
        Ok((o.samples, evals))
    })?;
    let d = o.shape()[2];
    let ess: Vec<f64> = (0..d)
        .map(|j| diagnostics::ess_bulk(o.slice(s![.., .., j])))
        .collect();
    let min_ess = ess.iter().copied().fold(f64::INFINITY, f64::min);
    let worst_rhat = (0..d)
        .map(|j| diagnostics::rhat(o.slice(s![.., .., j])))
        .fold(0.0, f64::max);
    let label = match target_accept {
        Some(t) => format!("boltz {name} (target accept {t})"),
        None => format!("boltz {name} (step chosen per step)"),
    };
    let per = if gradient_free {
        "energy evaluation"
    } else {
        "gradient evaluation"
    };
    let mut r = Measurement::new("W2", label_target, "min bulk ESS / s", min_ess / wall, wall)
        .size(&[chains, draws, warmup]);
    let kept = if thin > 1 {
        format!(" (one kept every {thin} steps, {} steps)", draws * thin)
    } else {
        String::new()
    };
    r.note(format!(
        "{label}; {chains} chains x {draws} draws{kept} after {warmup} warm-up (per-chain dual averaging and diagonal mass); wall includes warm-up; min bulk ESS {min_ess:.0}; worst R-hat {worst_rhat:.4}; {evals} {per}s; min bulk ESS per {per} {:.3e} (warm-up included)",
        min_ess / evals as f64
    ));
    if target == "gauss-ill" {
        let pooled: Vec<f64> = (0..d)
            .map(|j| {
                let c = o.slice(s![.., .., j]);
                let mu = c.mean().unwrap_or(f64::NAN);
                c.mapv(|v| (v - mu) * (v - mu)).mean().unwrap_or(f64::NAN) / var[j]
            })
            .collect();
        let (lo, hi) = pooled
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        r.note(format!("pooled var/s^2 in [{lo:.3}, {hi:.3}]"));
        let zmax = (0..d)
            .map(|j| {
                let (v, se, _) = variance_z(o.slice(s![.., .., j]), var[j]);
                ((v - var[j]) / se).abs()
            })
            .fold(0.0, f64::max);
        r.check(
            zmax < 4.0 && worst_rhat < 1.05,
            format!("every variance within 4 MCSE of s^2 (max |z| {zmax:.2}), R-hat < 1.05"),
        );
    } else {
        let (v, se, z) = variance_z(o.slice(s![.., .., 0]), var[0]);
        let v_draws = o.slice(s![.., .., 0]);
        let below = v_draws.iter().filter(|x| **x < -3.0).count() as f64 / v_draws.len() as f64;
        r.note(format!(
            "v mean {:.3} (exact 0), var(v) {v:.3} +- {se:.3} (exact 9, z = {z:.2}), P(v < -3) {below:.3} (exact 0.159)",
            v_draws.mean().unwrap_or(f64::NAN)
        ));
        r.check(
            z.abs() < 3.0 && worst_rhat < 1.01,
            "var(v) = 9 within 3 MCSE and R-hat < 1.01 (else this ESS/s is of a biased or unmixed chain)",
        );
    }
    r.note(fmt_walls(&walls));
    Ok(r)
}
