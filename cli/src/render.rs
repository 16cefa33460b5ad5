//! The comparison table as markdown and as an SVG bar chart (`boltz compare --out`).

use boltz::compare::CompareReport;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| crate::workloads::sig(x, digits))
}

/// The table as markdown (the same columns `boltz compare` prints).
pub fn markdown(report: &CompareReport) -> String {
    let c = &report.config;
    let mut t = format!(
        "# Samplers on `{}` (dim {})\n\n{} chains x {} draws after {} warm-up steps, seed {}, {} threads. ESS: rank-normalised split-chain (bulk) and 5%/95% quantile (tail), the worst coordinate. Per eval: per gradient evaluation (energy evaluation for gradient-free samplers), warm-up included.{}\n\n",
        report.model,
        report.dim,
        c.chains,
        c.draws,
        c.warmup,
        c.seed,
        report.threads,
        if report.moments_known {
            " Mean error: largest |mean - exact| in exact sds, and in Monte Carlo standard errors (z); variance error: largest |var / exact - 1|."
        } else {
            " The model's moments are not known in closed form: no error columns."
        }
    );
    t.push_str("| sampler | step | wall s | bulk ESS/s | tail ESS/s | bulk ESS/eval | tail ESS/eval | accept | divergences | worst R-hat | mean err (sd) | mean err (z) | var err |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &report.rows {
        t.push_str(&format!(
            "| {} | {} | {:.3} | {} | {} | {} | {} | {:.3} | {} | {:.3} | {} | {} | {} |\n",
            r.sampler,
            if r.step_size.is_nan() {
                "-".to_string()
            } else {
                crate::workloads::sig(r.step_size, 3)
            },
            r.wall_s,
            crate::workloads::sig(r.ess_bulk_per_s, 4),
            crate::workloads::sig(r.ess_tail_per_s, 4),
            crate::workloads::sig(r.ess_bulk_per_eval, 3),
            crate::workloads::sig(r.ess_tail_per_eval, 3),
            r.acceptance,
            r.divergences,
            r.rhat_max,
            opt(r.mean_error, 3),
            opt(r.mean_error_z, 3),
            opt(r.var_error, 3),
        ));
    }
    let unranked: Vec<&str> = report
        .rows
        .iter()
        .filter(|r| !r.warnings.is_empty())
        .map(|r| r.sampler.as_str())
        .collect();
    t.push_str(&format!(
        "\nRanking by bulk ESS/s (samplers whose draws pass every check): {}{}\n",
        if report.ranking.is_empty() {
            "none".to_string()
        } else {
            report.ranking.join(", ")
        },
        if unranked.is_empty() {
            String::new()
        } else {
            format!("; not ranked (warned below): {}", unranked.join(", "))
        }
    ));
    let warned: Vec<String> = report
        .rows
        .iter()
        .flat_map(|r| {
            r.warnings
                .iter()
                .map(move |w| format!("- {}: {w}\n", r.sampler))
        })
        .collect();
    if !warned.is_empty() {
        t.push_str("\nWarnings:\n\n");
        t.extend(warned);
    }
    t
}

/// A bar chart of bulk and tail ESS per second, one pair of bars per
/// sampler, as a standalone SVG document.
pub fn svg(report: &CompareReport) -> String {
    let (w, h) = (640.0, 360.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let vmax = report
        .rows
        .iter()
        .flat_map(|r| [r.ess_bulk_per_s, r.ess_tail_per_s])
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-12);
    // A "nice" top of the axis: 1, 2 or 5 times a power of ten.
    let p = 10f64.powf(vmax.log10().floor());
    let top_v = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= vmax)
        .unwrap_or(10.0 * p);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">ESS per second on {} ({} chains x {} draws, {} threads)</text>\n",
        w / 2.0,
        xml_escape(&report.model),
        report.config.chains,
        report.config.draws,
        report.threads
    );
    for k in 0..=5 {
        let v = top_v * k as f64 / 5.0;
        let y = top + ph - ph * k as f64 / 5.0;
        s.push_str(&format!(
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                left + pw,
                left - 6.0,
                y + 4.0,
                crate::workloads::sig(v, 3)
            ));
    }
    let n = report.rows.len().max(1) as f64;
    let slot = pw / n;
    let bw = slot * 0.3;
    for (i, r) in report.rows.iter().enumerate() {
        let x0 = left + slot * i as f64 + slot * 0.2;
        for (k, (v, color)) in [(r.ess_bulk_per_s, "#3366cc"), (r.ess_tail_per_s, "#ff9933")]
            .iter()
            .enumerate()
        {
            let v = if v.is_finite() { *v } else { 0.0 };
            let bh = ph * v / top_v;
            let x = x0 + bw * k as f64;
            s.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{}: {} ESS/s</title></rect>\n",
                    top + ph - bh,
                    if k == 0 { "bulk" } else { "tail" },
                    crate::workloads::sig(v, 4)
                ));
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            x0 + bw,
            top + ph + 18.0,
            r.sampler
        ));
    }
    s.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"black\"/>\n",
            top + ph,
            left + pw,
            top + ph,
            top + ph
        ));
    let ly = h - 12.0;
    s.push_str(&format!(
            "<rect x=\"{left}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"#3366cc\"/><text x=\"{}\" y=\"{ly}\">bulk ESS/s (worst coordinate)</text>\n<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"#ff9933\"/><text x=\"{}\" y=\"{ly}\">tail ESS/s (worst coordinate)</text>\n</svg>\n",
            ly - 10.0,
            left + 16.0,
            left + 230.0,
            ly - 10.0,
            left + 246.0
        ));
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
