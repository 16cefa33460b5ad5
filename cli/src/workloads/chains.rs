//! W1, W3 and W5: chain throughput (MALA on gauss-ill, ULA on the MLP,
//! block Gibbs on the RBM).

use super::*;

pub(super) fn w1_with(opts: &BenchOptions, n: usize, steps: usize) -> Result<Measurement> {
    let m = model::load("gauss-ill")?;
    let e = m.energy(None)?;
    let (_, var) = m
        .moments()
        .ok_or_else(|| Error::Numerical("gauss-ill has no moments".into()))?;
    let kernel = Mala::new(0.01)?;
    let (wall, (state, acc), walls) = timed(opts, |seed| {
        run_chains(
            e.as_ref(),
            &kernel,
            gaussian_start(n, 100, 1.0, seed),
            steps,
            seed,
        )
    })?;
    let mut r = Measurement::new(
        "W1",
        "gauss-ill",
        "grad evals/s",
        (n * steps) as f64 / wall,
        wall,
    )
    .size(&[n, steps]);
    r.note(format!(
        "{n} chains x {steps} steps, MALA step 0.01 (fixed), y0 ~ N(0, I) from each chain's stream; mean accept {acc:.3}"
    ));
    // Final positions: var/s^2 per coordinate. Over n chains the sample
    // variance of a Gaussian has sd sqrt(2/n) relative; the max over 100
    // coordinates stays within 4.5 sd with probability > 0.999.
    let ratio: Vec<f64> = (0..100)
        .map(|j| {
            let c = state.position.column(j);
            c.mapv(|v| v * v).mean().unwrap_or(f64::NAN) / var[j]
        })
        .collect();
    let (lo, hi) = ratio
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let mean_ratio = ratio.iter().sum::<f64>() / ratio.len() as f64;
    let tol = 4.5 * (2.0 / n as f64).sqrt();
    r.note(format!(
        "final E[y^2]/s^2 mean {mean_ratio:.3}, min {lo:.3}, max {hi:.3}"
    ));
    if steps >= 500 {
        r.check(
            lo > 1.0 - tol && hi < 1.0 + tol,
            format!("every coordinate's E[y^2]/s^2 within 1 +- {tol:.3} (4.5 sd)"),
        );
    }
    r.check(acc > 0.3 && acc < 1.0, "acceptance in (0.3, 1)");
    // Bytes and random numbers per step (memory- and RNG-bound loop).
    r.note(format!(
        "per chain-step: 100 normals + 1 uniform, ~{} bytes of state read/written (position, gradient, proposal, proposal gradient, noise: 5 x 100 f64 written, ~9 x 100 read)",
        14 * 100 * 8
    ));
    // The generator's own limit on this machine: ChaCha8 words alone, one
    // thread, against the 808 random bytes (101 x 64 bits) each chain-step
    // draws (a normal's slow path, ~1%, draws more).
    let gbs = chacha_bytes_per_s() / 1e9;
    let threads = rayon::current_num_threads() as f64;
    let need = r.value * 808.0 / 1e9;
    r.note(format!(
        "ChaCha8 alone {gbs:.2} GB/s per thread ({:.2} M chain-steps/s of random bits on {threads} threads); W1 draws {need:.2} GB/s of random bits, {:.0}% of that limit",
        gbs * 1e9 * threads / 808.0 / 1e6,
        100.0 * need / (gbs * threads)
    ));
    r.note(fmt_walls(&walls));
    Ok(r)
}

/// Bytes per second of one chain stream's ChaCha8 words (64 MiB, the best
/// of three), on this thread.
fn chacha_bytes_per_s() -> f64 {
    let mut rng = boltz::rng::chain_rng(1, 2);
    let mut buf = vec![0u64; 1 << 16];
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t0 = Instant::now();
        for _ in 0..16 {
            rng.fill_u64(&mut buf);
        }
        let s = t0.elapsed().as_secs_f64();
        best = best.max(16.0 * 8.0 * buf.len() as f64 / s);
        std::hint::black_box(&buf);
    }
    best
}

pub(super) fn w1(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (n, steps) = if opts.quick { (64, 50) } else { (1024, 1000) };
    Ok(vec![w1_with(opts, n, steps)?])
}

pub(super) fn w3_with(
    opts: &BenchOptions,
    n: usize,
    steps: usize,
    precision: Precision,
) -> Result<Measurement> {
    let m = model::load("mlp")?.with_precision(precision)?;
    let ctx = boltz::suite::mlp_contexts()?;
    let ctx = ctx.slice(s![..n.min(ctx.nrows()), ..]).to_owned();
    let e = m.energy(Some(ctx))?;
    let kernel = Ula::new(0.01)?;
    let (wall, (batch, e0), walls) = timed(opts, |seed| {
        let mut sampler =
            NegativeSampler::new(Method::ShortRun, Init::Gaussian { std: 1.0 }, n, 32, seed)?;
        let b = sampler.generate(e.as_ref(), &kernel, steps, None)?;
        Ok((b, seed))
    })?;
    // Energy at the start (the same N(0, I) draws, recomputed untimed).
    let start = {
        let mut s = NegativeSampler::new(Method::ShortRun, Init::Gaussian { std: 1.0 }, n, 32, e0)?;
        s.generate(e.as_ref(), &kernel, 0, None)?
    };
    let f0 = start.energies.mean().unwrap_or(f64::NAN);
    let f1 = batch.energies.mean().unwrap_or(f64::NAN);
    let mut r = Measurement::new(
        "W3",
        "mlp",
        "chain-steps/s",
        (n * steps) as f64 / wall,
        wall,
    )
    .size(&[n, steps])
    .dtype(precision);
    r.note(format!(
        "{n} chains (one per context row) x {steps} steps, ULA step 0.01, noise sqrt(0.02), y0 ~ N(0, I); mean F {f0:.3} -> {f1:.3}; divergences {}; mean distance moved {:.3}",
        batch.stats.divergences, batch.stats.distance_moved
    ));
    r.check(
        batch.energies.iter().all(|v| v.is_finite()) && batch.stats.divergences == 0,
        "every energy finite, no divergences",
    );
    r.check(f1 < f0, "mean energy decreased from the N(0, I) start");
    // One matrix-product count per chain-step: forward 48x256 + 256x256 +
    // 256x1, backward 256x256 + 256x32 (multiply-adds, x2 flops).
    let flops = 2.0 * (48.0 * 256.0 + 256.0 * 256.0 + 256.0 + 256.0 * 256.0 + 256.0 * 32.0);
    r.note(format!(
        "{:.1} GFLOP/s in the matrix products ({:.0} flop per chain-step)",
        flops * r.value / 1e9,
        flops
    ));
    r.note(fmt_walls(&walls));
    Ok(r)
}

pub(super) fn w3(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (n, steps) = if opts.quick { (64, 10) } else { (1024, 100) };
    Ok(vec![
        w3_with(opts, n, steps, Precision::F64)?,
        w3_with(opts, n, steps, Precision::F32)?,
    ])
}

pub(super) fn w5_with(
    opts: &BenchOptions,
    n: usize,
    sweeps: usize,
    precision: Precision,
) -> Result<Measurement> {
    let m = model::load("rbm500")?.with_precision(precision)?;
    let e = m.energy(None)?;
    let kernel = Gibbs::new(false);
    let (wall, (state, _), walls) = timed(opts, |seed| {
        let mut rng = aux_rng(seed, 5);
        let v0 = Array2::from_shape_fn((n, 64), |_| f64::from(u8::from(rng.random::<f64>() < 0.5)));
        run_chains(e.as_ref(), &kernel, v0, sweeps, seed)
    })?;
    let fe = evaluate(e.as_ref(), state.position.view())?;
    let mean_fe = fe.mean().unwrap_or(f64::NAN);
    let sd_fe = fe.std(0.0);
    let pixel = state.position.mean().unwrap_or(f64::NAN);
    let data_pixel = boltz::suite::digits()?.mean().unwrap_or(f64::NAN);
    let mut r = Measurement::new(
        "W5",
        "rbm500",
        "chain-sweeps/s",
        (n * sweeps) as f64 / wall,
        wall,
    )
    .size(&[n, sweeps])
    .dtype(precision);
    r.note(format!(
        "{n} chains x {sweeps} sweeps (v -> h -> v), v0 ~ Bern(0.5); final mean F(v) {mean_fe:.3} (sd {sd_fe:.3}), mean pixel {pixel:.4} (digits data {data_pixel:.4})"
    ));
    r.check(
        state.position.iter().all(|v| *v == 0.0 || *v == 1.0) && fe.iter().all(|v| v.is_finite()),
        "states binary, free energies finite",
    );
    if sweeps >= 500 {
        // The model was trained on the digits: its chains' pixel mean sits
        // near the data's (PCD-trained, not exact: within 0.05).
        r.check(
            (pixel - data_pixel).abs() < 0.05,
            "mean pixel within 0.05 of the digits' (the model was trained on them)",
        );
    }
    r.note(fmt_walls(&walls));
    Ok(r)
}

pub(super) fn w5(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let (n, sweeps) = if opts.quick { (64, 20) } else { (1024, 1000) };
    Ok(vec![
        w5_with(opts, n, sweeps, Precision::F64)?,
        w5_with(opts, n, sweeps, Precision::F32)?,
    ])
}
