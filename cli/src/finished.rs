//! `boltz diagnose` and `boltz merge`: commands on the files of finished
//! runs (draws from anywhere, the shards of one run).

use crate::commands::{print_pt, print_warnings};
use boltz::error::{Error, Result};
use boltz::io::read_npy;
use std::path::Path;

/// `boltz diagnose`: R-hat, ESS and MCSE of an array of draws.
pub fn diagnose(samples: &Path, matrix: &str, output: &crate::OutputArgs) -> Result<()> {
    let mut outputs = boltz::io::Outputs::new(&[samples]);
    output.declare(&mut outputs)?;
    let arr = read_npy(samples).map_err(|e| e.for_flag("--samples"))?;
    let bad_shape = |e: ndarray::ShapeError| {
        Error::shape(
            format!("--samples ({})", samples.display()),
            "a C-order array",
            e.to_string(),
        )
    };
    let mut notes = Vec::new();
    let x = match (arr.shape.len(), matrix) {
        (3, _) => {
            let (c, n, d) = (arr.shape[0], arr.shape[1], arr.shape[2]);
            arr.into_dyn()
                .into_shape_with_order((c, n, d))
                .map_err(bad_shape)?
        }
        (2, "draws-dim") => {
            notes.push(format!(
                "a 2-D array {:?} is read as one chain of (draws, dim); --matrix chains-draws reads it as (chains, draws) of one coordinate",
                arr.shape
            ));
            let (n, d) = (arr.shape[0], arr.shape[1]);
            arr.into_dyn()
                .into_shape_with_order((1, n, d))
                .map_err(bad_shape)?
        }
        (2, "chains-draws") => {
            let (c, n) = (arr.shape[0], arr.shape[1]);
            arr.into_dyn()
                .into_shape_with_order((c, n, 1))
                .map_err(bad_shape)?
        }
        (2, other) => {
            return Err(Error::param(
                "--matrix",
                format!("unknown layout `{other}` (draws-dim, chains-draws)"),
            ));
        }
        _ => {
            return Err(Error::shape(
                format!("--samples ({})", samples.display()),
                "(chains, draws, dim), or a 2-D array",
                format!("{:?}", arr.shape),
            ));
        }
    };
    let mut report = boltz::jobs::diagnose(x.view()).map_err(|e| e.for_flag("--samples"))?;
    // How a 2-D array was read comes first.
    notes.append(&mut report.notes);
    report.notes = notes;
    let v = crate::json_value(&report)?;
    let text = output.emit(&v, &mut outputs)?;
    outputs.commit()?;
    if !text {
        return Ok(());
    }
    println!(
        "{} chains x {} draws x {} dims",
        report.chains, report.draws, report.dim
    );
    for n in &report.notes {
        println!("  note: {n}");
    }
    println!(
        "{:>5} {:>12} {:>12} {:>10} {:>9} {:>9} {:>7}",
        "coord", "mean", "sd", "mcse", "ess_bulk", "ess_tail", "rhat"
    );
    let summaries = &report.coordinates;
    let show = summaries.len().min(20);
    for (j, s) in summaries.iter().enumerate().take(show) {
        println!(
            "{j:>5} {:>12.5} {:>12.5} {:>10.2e} {:>9.1} {:>9.1} {:>7.4}",
            s.mean, s.sd, s.mcse_mean, s.ess_bulk, s.ess_tail, s.rhat
        );
    }
    if summaries.len() > show {
        println!(
            "  ... {} more coordinates (use --json for all)",
            summaries.len() - show
        );
    }
    println!(
        "ess_bulk_min {:.1}  ess_tail_min {:.1}  rhat_max {:.4}",
        report.ess_bulk_min, report.ess_tail_min, report.rhat_max
    );
    print_warnings(&report.warnings);
    Ok(())
}

/// `boltz merge`: the shards of one run joined.
pub fn merge(
    files: &[std::path::PathBuf],
    out: Option<&Path>,
    energies: Option<&Path>,
    output: &crate::OutputArgs,
) -> Result<()> {
    let inputs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let mut outputs = boltz::io::Outputs::new(&inputs);
    if let Some(o) = out {
        outputs.declare("--out", o)?;
    }
    if let Some(e) = energies {
        outputs.declare("--energies", e)?;
    }
    output.declare(&mut outputs)?;
    let m = boltz::jobs::merge(files)?;
    match m.kind.as_str() {
        "logz" if out.is_some() || energies.is_some() => {
            return Err(Error::param(
                "--out",
                "draws (sample shards) or log P (prob shards) are merged into --out; these are log Z shards",
            ));
        }
        "prob" if energies.is_some() => {
            return Err(Error::param("--energies", "is for sample shards"));
        }
        _ => {}
    }
    if let (Some(o), Some(s)) = (out, &m.samples) {
        outputs.stage_array(o, s)?;
    }
    if let (Some(o), Some(lp)) = (out, &m.log_prob) {
        outputs.stage_array(o, lp)?;
    }
    if let (Some(o), Some(e)) = (energies, &m.energies) {
        outputs.stage_array(o, e)?;
    }
    let r = &m.report;
    let text = output.emit(r, &mut outputs)?;
    outputs.commit()?;
    if !text {
        return Ok(());
    }
    let shards = r["shards"].as_u64().unwrap_or(0);
    if m.kind != "sample" {
        let show = |key: &str| match &r[key] {
            serde_json::Value::Array(a) => a
                .iter()
                .take(5)
                .map(|v| v.as_f64().map_or("NaN".into(), |x| format!("{x:.6}")))
                .collect::<Vec<_>>()
                .join(", "),
            v => v.as_f64().map_or("NaN".into(), |x| format!("{x:.6}")),
        };
        println!(
            "log Z of {} by ais, {shards} shards merged ({} particles per context)",
            r["model"].as_str().unwrap_or("?"),
            r["particles"]
        );
        match (r["log_z"].as_f64(), r["stderr"].as_f64(), r["ess"].as_f64()) {
            // One context: the one-process run's lines.
            (Some(lz), Some(se), Some(ess)) => {
                println!(
                    "  log Z = {} +- {se:.6}  (ESS {ess:.1} of {})",
                    crate::logz::fixed6(lz),
                    r["particles"]
                );
                if let Some(ex) = r["exact_log_z"].as_f64() {
                    let err = lz - ex;
                    println!(
                        "  exact log Z = {}: error {err:+.6} ({:.2} standard errors)",
                        crate::logz::fixed6(ex),
                        err / se
                    );
                }
            }
            _ => println!(
                "  log Z = {} +- {}  (ESS {}; the first 5 contexts, all in --json or --report)",
                show("log_z"),
                show("stderr"),
                show("ess")
            ),
        }
    } else if let Some(s) = &m.samples {
        let (c, d, k) = s.dim();
        println!(
            "{} on {}: {shards} shards merged, {c} chains x {d} draws x {k} dims{}",
            r["sampler"].as_str().unwrap_or("?"),
            r["model"].as_str().unwrap_or("?"),
            out.map_or(String::new(), |o| format!(" -> {}", o.display()))
        );
        for key in ["acceptance", "ess_bulk_min", "ess_tail_min", "rhat_max"] {
            println!("  {key:<13} {:.4}", r[key].as_f64().unwrap_or(f64::NAN));
        }
        if let Some(p) = &m.pt {
            print_pt(p);
        }
    }
    print_warnings(&m.warnings);
    Ok(())
}
