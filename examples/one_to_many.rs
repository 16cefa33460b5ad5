//! One x, many y: the `ring` energy F(x, y) = (|x|^2 + |y|^2 - 1)^2 / (2 * 0.1^2).
//!
//! For a fixed context x with |x| < 1, every y on the circle of radius
//! sqrt(1 - |x|^2) is equally compatible: P(y|x) is a whole ring, not a
//! point. This samples P(y|x) with MALA for several x, prints the fraction
//! of draws in each quadrant and the mean radius, and writes an SVG scatter
//! plot to `one_to_many.svg` in the folder given (default `scratch/`; the
//! committed figure is `results/one_to_many.svg`).
//!
//! Run: `cargo run --release --example one_to_many [-- OUT_DIR]`

use boltz::kernels::Mala;
use boltz::model;
use boltz::sampler::{NoObserver, SampleConfig, sample};
use ndarray::Array2;

fn main() -> boltz::Result<()> {
    let ring = model::load("ring:1:2")?;
    let contexts = [0.0, 0.5, 0.9, 1.2];
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut svg = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"420\" height=\"420\" viewBox=\"-1.3 -1.3 2.6 2.6\">\n<rect x=\"-1.3\" y=\"-1.3\" width=\"2.6\" height=\"2.6\" fill=\"white\"/>\n",
    );
    println!(
        "{:>5} {:>8} {:>8} {:>8} {:>8} {:>12} {:>14}",
        "x", "q1", "q2", "q3", "q4", "mean |y|", "sqrt(1-x^2)"
    );
    for (k, &x) in contexts.iter().enumerate() {
        let energy = ring.energy(Some(Array2::from_elem((1, 1), x)))?;
        let mut config = SampleConfig::new();
        (
            config.n_chains,
            config.warmup,
            config.draws,
            config.thin,
            config.seed,
        ) = (16, 1000, 500, 4, 3);
        let out = sample(
            energy.as_ref(),
            &Mala::new(0.01)?,
            &config,
            None,
            &mut NoObserver,
        )?;
        let mut quadrant = [0usize; 4];
        let mut radius = 0.0;
        let n = out.samples.shape()[0] * out.samples.shape()[1];
        for c in 0..out.samples.shape()[0] {
            for t in 0..out.samples.shape()[1] {
                let (a, b) = (out.samples[[c, t, 0]], out.samples[[c, t, 1]]);
                let q = match (a >= 0.0, b >= 0.0) {
                    (true, true) => 0,
                    (false, true) => 1,
                    (false, false) => 2,
                    (true, false) => 3,
                };
                quadrant[q] += 1;
                radius += (a * a + b * b).sqrt();
                if t % 4 == 0 {
                    svg.push_str(&format!(
                        "<circle cx=\"{a:.4}\" cy=\"{:.4}\" r=\"0.008\" fill=\"{}\"/>\n",
                        -b, colours[k]
                    ));
                }
            }
        }
        let frac = |q: usize| quadrant[q] as f64 / n as f64;
        let expected = if x < 1.0 {
            format!("{:.3}", (1.0 - x * x).sqrt())
        } else {
            "none (|x|>1)".into()
        };
        println!(
            "{x:>5.2} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>12.3} {:>14}",
            frac(0),
            frac(1),
            frac(2),
            frac(3),
            radius / n as f64,
            expected
        );
    }
    svg.push_str("</svg>\n");
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "scratch".into()));
    std::fs::create_dir_all(&dir).map_err(|e| boltz::Error::io(&dir, e))?;
    let path = dir.join("one_to_many.svg");
    boltz::io::write_atomic(&path, svg.as_bytes())?;
    println!(
        "each x < 1 spreads its draws evenly over all four quadrants: one x, a whole circle of y."
    );
    println!("wrote {}", path.display());
    Ok(())
}
