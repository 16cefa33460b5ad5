//! How costs scale: threads against one thread, a MALA step against
//! chains and dimension.

use super::*;

/// Least-squares slope of log(cost) against log(size).
fn loglog_slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + x.ln() / n, b + y.ln() / n)
    });
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        let dx = x.ln() - mx;
        (a + dx * (y.ln() - my), b + dx * dx)
    });
    sxy / sxx
}

/// 1-thread against the current pool (speed-up on W1, W3, W5), and the
/// cost of a MALA step against chains (64..4096) and dimension (10..1000).
pub fn scaling(workloads: &[Workload], opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let threads = rayon::current_num_threads();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::param("threads", e.to_string()))?;
    let mut out = Vec::new();
    let q = opts.quick;
    for w in workloads {
        let f = |o: &BenchOptions| -> Result<Option<Measurement>> {
            Ok(match w {
                Workload::W1 => Some(w1_with(
                    o,
                    if q { 64 } else { 1024 },
                    if q { 20 } else { 200 },
                )?),
                Workload::W3 => Some(w3_with(
                    o,
                    if q { 64 } else { 1024 },
                    if q { 5 } else { 30 },
                    Precision::F64,
                )?),
                Workload::W5 => Some(w5_with(
                    o,
                    if q { 64 } else { 1024 },
                    if q { 10 } else { 200 },
                    Precision::F64,
                )?),
                _ => None,
            })
        };
        let Some(many) = f(opts)? else { continue };
        let Some(single) = one.install(|| f(opts))? else {
            continue;
        };
        let speedup = many.value / single.value;
        let mut r = Measurement::new(
            "scaling",
            &format!("{} {}", w.name(), many.target),
            &format!("speed-up 1 -> {threads} threads"),
            speedup,
            many.wall_s,
        )
        .size(&many.size);
        r.note(format!(
            "{} {}: {:.0} with 1 thread, {:.0} with {threads}",
            many.figure, many.target, single.value, many.value
        ));
        out.push(r);
    }
    if workloads.contains(&Workload::W1) {
        // Cost per step against chains (dim 100) and against dimension (1024 chains).
        let steps = if q { 5 } else { 100 };
        let kernel = Mala::new(0.01)?;
        let mut by_chains = Vec::new();
        let chain_sizes: &[usize] = if q {
            &[64, 256]
        } else {
            &[64, 256, 1024, 4096]
        };
        let g = boltz::energy::DiagGaussian::new(vec![0.0; 100], vec![1.0; 100])?;
        for &n in chain_sizes {
            let (wall, _, _) = timed(opts, |seed| {
                run_chains(&g, &kernel, gaussian_start(n, 100, 1.0, seed), steps, seed)
            })?;
            by_chains.push((n as f64, wall / steps as f64));
        }
        let mut by_dim = Vec::new();
        let dims: &[usize] = if q { &[10, 100] } else { &[10, 100, 1000] };
        for &d in dims {
            let g = boltz::energy::DiagGaussian::new(vec![0.0; d], vec![1.0; d])?;
            let n = if q { 64 } else { 1024 };
            let (wall, _, _) = timed(opts, |seed| {
                run_chains(&g, &kernel, gaussian_start(n, d, 1.0, seed), steps, seed)
            })?;
            by_dim.push((d as f64, wall / steps as f64));
        }
        for (what, pts) in [("chains", by_chains), ("dimension", by_dim)] {
            let slope = loglog_slope(&pts);
            let mut r = Measurement::new(
                "scaling",
                "gauss MALA step",
                &format!("cost exponent in {what}"),
                slope,
                pts.iter().map(|p| p.1).sum::<f64>() * steps as f64,
            );
            let v: Vec<String> = pts
                .iter()
                .map(|(x, t)| format!("{x:.0}: {:.1} us/step", t * 1e6))
                .collect();
            r.note(format!(
                "least-squares slope of log(seconds per step) on log({what}); {}",
                v.join(", ")
            ));
            out.push(r);
        }
    }
    Ok(out)
}
