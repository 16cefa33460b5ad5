//! W8: log Z of trained EBMs (issue 27). The digits EBMs shipped in
//! `examples/models` (an MLP trained by replay-buffer SGLD in PyTorch at
//! beta 10 and at beta 1) by annealed SMC whose pilot starts at the digits
//! they were trained on, and the digits Gaussian mixture (20 full-covariance
//! components fitted by scikit-learn, log Z exactly 0) from the
//! over-dispersed pilot: what `boltz logz --method smc` does with the
//! defaults. The EBMs have no exact answer, so the check is that the timed
//! repeats (independent seeds) agree within their error bars; the mixture's
//! estimate is also held against 0.

use super::*;
use crate::commands::read_matrix;
use boltz::jobs::{LogzJob, chi_square, logz};
use std::path::PathBuf;

/// The repository's `examples/models` (W8's models and data ship there,
/// not in the binary).
fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/models")
}

pub(super) fn w8(opts: &BenchOptions) -> Result<Vec<Measurement>> {
    let dir = models_dir();
    let digits = read_matrix(&dir.join("digits.npy"), "data")?;
    let particles = if opts.quick { 128 } else { 1024 };
    let mut out = Vec::new();
    // (model, beta, start the pilot at the data)
    for (name, beta, with_data) in [
        ("digits-ebm-b10", 10.0, true),
        ("digits-ebm-b1", 1.0, true),
        ("digits-gmm", 1.0, false),
    ] {
        let m = model::load(&dir.join(name).join("model.json").to_string_lossy())?;
        let job = LogzJob {
            method: Some("smc".into()),
            particles,
            beta,
            data: with_data.then(|| digits.clone()),
            ..LogzJob::default()
        };
        let mut runs = Vec::new();
        let (wall, first, walls) = timed(opts, |seed| {
            let r = logz(
                &m,
                None,
                &LogzJob {
                    seed,
                    ..job.clone()
                },
                &Default::default(),
                None,
                &mut NoObserver,
            )?
            .report;
            runs.push((r.log_z[0], r.stderr[0]));
            Ok(r)
        })?;
        let exact = m.exact_log_z;
        let (figure, value) = match exact {
            Some(x) => ("|logZ_hat - logZ|", (first.log_z[0] - x).abs()),
            None => ("logZ_hat", first.log_z[0]),
        };
        let mut r = Measurement::new("W8", &format!("{name} (beta {beta})"), figure, value, wall)
            .size(&[particles]);
        r.logz_hat = Some(first.log_z[0]);
        r.se = Some(first.stderr[0]);
        r.note(format!(
            "annealed SMC, boltz defaults ({particles} particles, adaptive temperatures, 5 MALA moves each, 8 islands), pilot {}; logZ_hat {:.4} +- {:.4}{}; {} temperatures, {} energy evaluations (pilot included)",
            if with_data {
                "started at the 1797 digits"
            } else {
                "from over-dispersed starts"
            },
            first.log_z[0],
            first.stderr[0],
            exact.map_or(String::new(), |x| format!(" (exact {x:.4})")),
            first.smc.as_ref().map_or(0, |s| s["temperatures"][0].as_u64().unwrap_or(0)),
            first.energy_evals
        ));
        // The timed repeats (and the untimed warm-up run) are independent
        // estimates: a chi-square of their spread against their error bars.
        let (x2, p) = chi_square(&runs);
        r.check(
            runs.len() < 2 || p >= 0.01,
            format!(
                "{} independent runs agree (chi-square {x2:.2}, p {p:.3}; estimates {})",
                runs.len(),
                runs.iter()
                    .map(|(l, s)| format!("{l:.3} +- {s:.3}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        if let Some(x) = exact {
            let z = (first.log_z[0] - x) / first.stderr[0].max(1e-12);
            r.check(
                z.abs() <= 3.0,
                format!("|error| <= 3 reported se ({z:+.2} se)"),
            );
        }
        r.check(
            first.warnings.is_empty(),
            format!("no warnings ({})", first.warnings.messages().join(" / ")),
        );
        r.note(fmt_walls(&walls));
        out.push(r);
    }
    Ok(out)
}
