//! Parallel tempering's figures: round trips and mode coverage against the
//! number of replicas on `gmm-ring` and `gmm-far` (MALA alone as R = 1),
//! then the stepping-stone log Z against AIS at the same number of energy
//! evaluations over five seeds on `gmm-ring`, `gmm-far`, `funnel` and
//! `rbm20`. Writes `ladder.md` and `ladder.jsonl` into the folder given
//! (default `scratch/`; the committed figures are `results/issue16`).
//!
//! Run: `cargo run --release --example pt_ladder [-- OUT_DIR]`

use boltz::ais::{self, AisConfig, AisProblem};
use boltz::diagnostics::ess;
use boltz::pt::{PtSettings, sample};
use boltz::sampler::SampleConfig;
use boltz::{KernelSpec, NoObserver};
use ndarray::{Array2, ArrayView3, Axis};
use std::fmt::Write as _;
use std::time::Instant;

/// Mode index of each draw, (chains, draws), and the mode weights.
fn modes(target: &str, s: ArrayView3<f64>) -> (Array2<usize>, Vec<f64>) {
    let (c, n, _) = s.dim();
    match target {
        "gmm-ring" => (
            Array2::from_shape_fn((c, n), |(i, t)| {
                let a = s[[i, t, 1]].atan2(s[[i, t, 0]]);
                ((a / (std::f64::consts::TAU / 8.0)).round() as i64).rem_euclid(8) as usize
            }),
            vec![0.125; 8],
        ),
        _ => (
            // gmm-far: modes at 4 (a e1 + b e2), (a, b) = (+,+), (+,-), (-,+), (-,-).
            Array2::from_shape_fn((c, n), |(i, t)| {
                usize::from(s[[i, t, 1]] < 0.0) + 2 * usize::from(s[[i, t, 0]] < 0.0)
            }),
            vec![0.1, 0.2, 0.3, 0.4],
        ),
    }
}

/// Chains that visited every mode, and the largest |fraction - weight| in MCSE.
fn coverage(m: &Array2<usize>, w: &[f64]) -> (usize, f64) {
    let all = m
        .axis_iter(Axis(0))
        .filter(|row| (0..w.len()).all(|k| row.iter().any(|x| *x == k)))
        .count();
    let worst = (0..w.len())
        .map(|k| {
            let ind = m.mapv(|x| f64::from(u8::from(x == k)));
            let p = ind.mean().unwrap_or(f64::NAN);
            let se = (p * (1.0 - p) / ess(ind.view())).sqrt();
            if se > 0.0 {
                ((p - w[k]) / se).abs()
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max);
    (all, worst)
}

fn main() -> boltz::Result<()> {
    let out_dir = std::env::args().nth(1).unwrap_or_else(|| "scratch".into());
    std::fs::create_dir_all(&out_dir).map_err(|e| boltz::Error::Numerical(e.to_string()))?;
    let mut md = String::new();
    let mut jsonl = String::new();
    let (chains, warmup, draws) = (16, 1000, 4000);
    writeln!(
        md,
        "# Parallel tempering: replicas, round trips, modes; log Z against AIS\n"
    )
    .ok();
    writeln!(md, "`cargo run --release --example pt_ladder` ({chains} chains, {warmup} warm-up + {draws} steps, MALA local moves, reference: the AIS pilot-fitted Gaussian; R = 1 is MALA alone from over-dispersed starts).\n").ok();
    for target in ["gmm-ring", "gmm-far"] {
        let e = boltz::model::load(target)?.energy(None)?;
        let base = ais::pilot_base(e.as_ref(), 1.0, 0)?;
        writeln!(md, "## {target}\n").ok();
        writeln!(md, "| replicas | Lambda | lowest swap acceptance | round trips per chain-step | bound 1/(2+2 Lambda) | chains visiting every mode | worst mode fraction, MCSE from its weight | energy evaluations | wall s |").ok();
        writeln!(md, "|---|---|---|---|---|---|---|---|---|").ok();
        for r in [1usize, 2, 3, 4, 6, 8, 12, 16, 24, 32] {
            let mut config = SampleConfig::new();
            (config.n_chains, config.warmup, config.draws) = (chains, warmup, draws);
            let t0 = Instant::now();
            let (samples, lambda, min_swap, rate, bound, evals) = if r == 1 {
                let out = boltz::sampler::sample(
                    e.as_ref(),
                    &boltz::kernels::Mala::new(0.1)?,
                    &config,
                    None,
                    &mut NoObserver,
                )?;
                let ev = out.stats.energy_evals;
                (out.samples, f64::NAN, f64::NAN, 0.0, f64::NAN, ev)
            } else {
                let out = sample(
                    e.as_ref(),
                    &base,
                    &KernelSpec::new("mala")?,
                    &config,
                    &PtSettings::new(r),
                    None,
                    &mut NoObserver,
                    &Default::default(),
                )?;
                let s = &out.stats;
                let min_swap = s.swap_accept.iter().copied().fold(f64::INFINITY, f64::min);
                (
                    out.samples,
                    s.lambda,
                    min_swap,
                    s.round_trip_rate,
                    s.round_trip_bound,
                    s.energy_evals,
                )
            };
            let wall = t0.elapsed().as_secs_f64();
            let (m, w) = modes(target, samples.view());
            let (all, worst) = coverage(&m, &w);
            writeln!(
                md,
                "| {} | {lambda:.3} | {min_swap:.3} | {rate:.4} | {bound:.4} | {all} of {chains} | {worst:.2} | {evals} | {wall:.2} |",
                if r == 1 { "1 (MALA alone)".to_string() } else { r.to_string() }
            )
            .ok();
            writeln!(
                jsonl,
                "{}",
                serde_json::json!({"figure": "ladder", "target": target, "replicas": r,
                    "lambda": lambda, "min_swap_accept": min_swap, "round_trip_rate": rate,
                    "round_trip_bound": bound, "chains_all_modes": all, "chains": chains,
                    "worst_mode_z": worst, "energy_evals": evals, "wall_s": wall})
            )
            .ok();
            println!(
                "{target} R {r}: Lambda {lambda:.3}, trips {rate:.4} (bound {bound:.4}), {all}/{chains} chains see every mode, worst mode z {worst:.2}"
            );
        }
        writeln!(md).ok();
    }

    // log Z: PT (16 x 16 x 4000 steps) and AIS (1024 x 1000) at the same
    // number of energy evaluations, five seeds each.
    writeln!(
        md,
        "## log Z: parallel tempering against AIS at the same number of energy evaluations\n"
    )
    .ok();
    writeln!(md, "PT: 16 chains x 16 replicas x 4000 steps (1000 warm-up), stepping stone, MALA local moves (Gibbs on the RBM parameter path), 1,024,000 evaluations plus the start. AIS: boltz defaults, 1024 particles x 1000 temperatures, 1,024,000 evaluations plus the start. Each method from its default reference: AIS from the pilot-fitted Gaussian, PT from that Gaussian centred at the origin and widened to the pilot's starting region (`boltz::pt::widen_reference`); rbm20: the RBM's own visible biases as a Bernoulli base for both (the library default). Pilot not counted. Seeds 0-4.\n").ok();
    writeln!(md, "| target | method | mean \\|error\\| | mean se | errors in se (z), seeds 0-4 | mean wall s |").ok();
    writeln!(md, "|---|---|---|---|---|---|").ok();
    for target in ["gmm-ring", "gmm-far", "funnel", "rbm20"] {
        let m = boltz::model::load(target)?;
        let exact = m.exact_log_z.unwrap_or(f64::NAN);
        let e = m.energy(None)?;
        let base = ais::default_base(e.as_ref(), 1.0, 0, None)?;
        // PT's reference as `logz --method pt` makes it: the AIS base
        // centred at the origin and widened (binary bases as they are).
        let pt_base = boltz::pt::widen_reference(&base)?;
        let kernel = if e.as_rbm().is_some() {
            "gibbs"
        } else {
            "mala"
        };
        for method in ["pt", "ais"] {
            let (mut errs, mut ses, mut zs, mut walls) = (vec![], vec![], vec![], vec![]);
            for seed in 0..5u64 {
                let t0 = Instant::now();
                let (lz, se) = if method == "pt" {
                    let mut config = SampleConfig::new();
                    (
                        config.n_chains,
                        config.warmup,
                        config.draws,
                        config.seed,
                        config.record_energies,
                    ) = (16, 1000, 3000, seed, false);
                    let out = sample(
                        e.as_ref(),
                        &pt_base,
                        &KernelSpec::new(kernel)?,
                        &config,
                        &PtSettings::new(16),
                        None,
                        &mut NoObserver,
                        &Default::default(),
                    )?;
                    (out.stats.log_z, out.stats.log_z_stderr)
                } else {
                    let mut cfg = AisConfig::new();
                    cfg.seed = seed;
                    let problem = AisProblem::new(e.clone(), &base)?;
                    let est = ais::ais(&problem, &cfg)?.estimates[0].clone();
                    (est.log_z, est.stderr)
                };
                walls.push(t0.elapsed().as_secs_f64());
                errs.push((lz - exact).abs());
                ses.push(se);
                zs.push((lz - exact) / se);
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let zt: Vec<String> = zs.iter().map(|z| format!("{z:+.2}")).collect();
            writeln!(
                md,
                "| {target} | {method} | {:.4} | {:.4} | {} | {:.2} |",
                mean(&errs),
                mean(&ses),
                zt.join(", "),
                mean(&walls)
            )
            .ok();
            writeln!(
                jsonl,
                "{}",
                serde_json::json!({"figure": "logz", "target": target, "method": method,
                    "abs_errors": errs, "stderr": ses, "z": zs, "walls": walls})
            )
            .ok();
            println!(
                "{target} {method}: |err| {:.4}, se {:.4}, z {}",
                mean(&errs),
                mean(&ses),
                zt.join(" ")
            );
        }
    }
    let w = |name: &str, text: &str| {
        std::fs::write(format!("{out_dir}/{name}"), text)
            .map_err(|e| boltz::Error::Numerical(e.to_string()))
    };
    w("ladder.md", &md)?;
    w("ladder.jsonl", &jsonl)?;
    println!("wrote {out_dir}/ladder.md and ladder.jsonl");
    Ok(())
}
