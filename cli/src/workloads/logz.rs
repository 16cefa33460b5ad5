//! W4 and W6: log Z by AIS (and parallel tempering at its budget) with
//! the peers' settings, and conditional log Z over contexts.

use super::*;

/// The peers' W4 settings: linear grid, one MALA step per temperature with
/// a fixed step, base N(0, 4^2 I).
fn peer_step(target: &str) -> f64 {
    match target {
        "gmm-far" => 0.3,
        _ => 0.05,
    }
}

pub(super) fn w4(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (particles, temps) = if opts.quick { (128, 100) } else { (1024, 1000) };
    let mut out = Vec::new();
    for target in ["gmm-ring", "gmm-far", "funnel", "rbm20"] {
        let m = model::load(target)?;
        let exact = m
            .exact_log_z
            .ok_or_else(|| Error::Numerical(format!("{target} has no exact log Z")))?;
        let e = m.energy(None)?;
        for setting in ["peers", "boltz"] {
            let mut cfg = AisConfig::new();
            cfg.particles = particles;
            cfg.temps = temps;
            let rbm = m.rbm().cloned();
            let base = match (&rbm, setting) {
                // The peers anneal rbm20 from the base-rate model of the
                // digits it was trained on; so does this workload.
                (Some(_), _) => Base::base_rate(boltz::suite::digits()?.view())?,
                (None, "peers") => Base::isotropic(e.dim(), 4.0)?,
                (None, _) => ais::pilot_base(e.as_ref(), 1.0, opts.seed)?,
            };
            let desc = if setting == "peers" {
                cfg.schedule = ScheduleChoice::Fixed(Schedule::Linear);
                if rbm.is_some() {
                    "peers' settings: linear beta grid, base-rate model, parameter path, 1 Gibbs sweep/temp".to_string()
                } else {
                    let eps = peer_step(target);
                    cfg.step_size = Some(eps);
                    format!(
                        "peers' settings: linear beta grid, base N(0, 16 I), 1 MALA step/temp, step {eps}"
                    )
                }
            } else if rbm.is_some() {
                "boltz defaults: sigmoid schedule, base-rate model, parameter path, 1 Gibbs sweep/temp".to_string()
            } else {
                "boltz defaults: sigmoid schedule, pilot-fitted Gaussian base (1.5 x pilot sd), 1 MALA step/temp with pilot-tuned per-temperature steps".to_string()
            };
            let (wall, res, walls) = timed(opts, |seed| {
                cfg.seed = seed;
                let problem = AisProblem::new(e.clone(), &base)?;
                ais::ais(&problem, &cfg)
            })?;
            let est = &res.estimates[0];
            let err = est.log_z - exact;
            let mut r = Measurement::new("W4", target, "|logZ_hat - logZ|", err.abs(), wall)
                .size(&[particles, temps]);
            r.logz_hat = Some(est.log_z);
            r.se = Some(est.stderr);
            r.note(format!(
                "{desc}; {particles} particles x {temps} temps; logZ_hat {:.4} (exact {exact:.4}), error {err:+.4}, reported se {:.4}, weight ESS {:.0}, mean accept {:.3}, {} energy evaluations (pilot included)",
                est.log_z, est.stderr, est.ess, res.acceptance, res.energy_evals
            ));
            r.check(
                err.abs() <= 3.0 * est.stderr.max(1e-12),
                format!(
                    "|error| <= 3 reported se ({:.2} se)",
                    err.abs() / est.stderr
                ),
            );
            r.note(fmt_walls(&walls));
            r.target = format!("{target} ({setting})");
            out.push(r);
        }
        out.push(w4_pt(opts, target, e.as_ref(), exact, particles * temps)?);
    }
    Ok(out)
}

/// W4 by parallel tempering at AIS's budget: 16 chains x 16 replicas for
/// `evals / 256` steps (a quarter warm-up), MALA local moves (Gibbs on the
/// RBM parameter path), the stepping-stone estimate; the reference as
/// `logz --method pt` makes it (the pilot-fitted Gaussian centred at the
/// origin and widened; for rbm20 the digits' base-rate model).
fn w4_pt(
    opts: &BenchOptions,
    target: &str,
    e: &dyn Energy,
    exact: f64,
    evals: usize,
) -> Result<Measurement> {
    let (chains, replicas) = (16, 16);
    let steps = (evals / (chains * replicas)).max(8);
    let rbm = e.as_rbm().is_some();
    let base = if rbm {
        Base::base_rate(boltz::suite::digits()?.view())?
    } else {
        boltz::pt::widen_reference(&ais::pilot_base(e, 1.0, opts.seed)?)?
    };
    let spec = KernelSpec::new(if rbm { "gibbs" } else { "mala" })?;
    let (wall, out, walls) = timed(opts, |seed| {
        let mut config = SampleConfig::new();
        (
            config.n_chains,
            config.warmup,
            config.draws,
            config.seed,
            config.record_energies,
        ) = (chains, steps / 4, steps - steps / 4, seed, false);
        boltz::pt::sample(
            e,
            &base,
            &spec,
            &config,
            &boltz::pt::PtSettings::new(replicas),
            None,
            &mut NoObserver,
            &Default::default(),
        )
    })?;
    let s = &out.stats;
    let err = s.log_z - exact;
    let mut r = Measurement::new("W4", target, "|logZ_hat - logZ|", err.abs(), wall)
        .size(&[chains, replicas, steps]);
    r.logz_hat = Some(s.log_z);
    r.se = Some(s.log_z_stderr);
    r.note(format!(
        "parallel tempering at AIS's budget: {chains} chains x {replicas} replicas x {steps} steps ({} warm-up), {} local moves, stepping stone; logZ_hat {:.4} (exact {exact:.4}), error {err:+.4}, reported se {:.4}; Lambda {:.3}, {} round trips; {} energy evaluations (pilot not included)",
        steps / 4,
        s.kernel,
        s.log_z,
        s.log_z_stderr,
        s.lambda,
        s.round_trips,
        s.energy_evals
    ));
    r.check(
        err.abs() <= 3.0 * s.log_z_stderr.max(1e-12),
        format!(
            "|error| <= 3 reported se ({:.2} se)",
            err.abs() / s.log_z_stderr
        ),
    );
    r.note(fmt_walls(&walls));
    r.target = format!("{target} (pt)");
    Ok(r)
}

pub(super) fn w6(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (particles, temps) = if opts.quick { (128, 100) } else { (1024, 1000) };
    let xs = [0.0, 0.5, 0.9, 1.2];
    let mut out = Vec::new();
    for m_dim in [1usize, 3] {
        let model = model::load(&format!("ring:1:{m_dim}"))?;
        let cond = model
            .conditional()
            .ok_or_else(|| Error::Numerical("ring is not conditional".into()))?;
        let ctx = Array2::from_shape_fn((xs.len(), 1), |(i, _)| xs[i]);
        let mut rng = aux_rng(opts.seed, 6);
        let points = Array2::from_shape_fn((256, m_dim), |_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            0.7 * z
        });
        let exact: Vec<f64> = xs
            .iter()
            .map(|x| {
                cond.log_z_at(ndarray::aview1(&[*x]))
                    .ok_or_else(|| Error::Numerical("the ring has no radial log Z".into()))
            })
            .collect::<Result<_>>()?;
        let mut cfg = AisConfig::new();
        cfg.particles = particles;
        cfg.temps = temps;
        let pilot_rows = Array2::from_shape_fn((xs.len() * 8, 1), |(r, _)| xs[r / 8]);
        let pilot_e = boltz::Conditioned::new(cond.clone(), pilot_rows)?;
        let base = ais::pilot_base(&pilot_e, 1.0, opts.seed)?;
        let (wall, res, walls) = timed(opts, |seed| {
            cfg.seed = seed;
            let problem = AisProblem::conditional(cond.clone(), ctx.view(), particles, &base)?;
            ais::ais(&problem, &cfg)
        })?;
        let lz: Vec<f64> = res.estimates.iter().map(|e| e.log_z).collect();
        let lp = ais::log_prob(cond.as_ref(), ctx.view(), points.view(), &lz, 1.0)?;
        let lp_exact = ais::log_prob(cond.as_ref(), ctx.view(), points.view(), &exact, 1.0)?;
        let err = (&lp - &lp_exact)
            .mapv(f64::abs)
            .fold(0.0f64, |a, b| a.max(*b));
        let mut r = Measurement::new(
            "W6",
            &format!("ring n=1 m={m_dim}"),
            "max |log P error|",
            err,
            wall,
        )
        .size(&[xs.len(), 256, particles, temps]);
        let mut worst = 0.0f64;
        let mut parts = Vec::new();
        for (k, x) in xs.iter().enumerate() {
            let e = &res.estimates[k];
            let z = (e.log_z - exact[k]) / e.stderr.max(1e-12);
            worst = worst.max(z.abs());
            parts.push(format!(
                "x={x}: {:.4} +- {:.4} vs {:.4}",
                e.log_z, e.stderr, exact[k]
            ));
        }
        r.note(format!(
            "log Z(x) by AIS ({particles} particles x {temps} temps per context, boltz defaults) against the radial quadrature; log P at 256 points y ~ N(0, 0.49 I) per x; {}",
            parts.join(", ")
        ));
        r.check(
            worst <= 3.5,
            format!("every log Z(x) within 3.5 reported se (4 contexts; worst {worst:.2})"),
        );
        r.note(fmt_walls(&walls));
        out.push(r);
    }
    Ok(out)
}
