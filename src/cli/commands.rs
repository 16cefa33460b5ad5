//! One function per subcommand.

use boltz::error::Result;
use boltz::io::{read_npy, write_npy};
use ndarray::Array2;
use std::path::Path;

/// Reads an (n, d) array (a 1-D array is one row).
pub fn read_matrix(path: &Path, what: &str) -> Result<Array2<f64>> {
    read_npy(path)?.into_2d(&format!("{what} ({})", path.display()), true)
}

pub fn suite(json: bool) -> Result<()> {
    let rows = boltz::suite::list()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serialisable")
        );
        return Ok(());
    }
    println!(
        "{:<10} {:>5} {:>6} {:>14}  description",
        "name", "dim", "x_dim", "exact log Z"
    );
    for r in rows {
        let lz = r.log_z.map_or("-".to_string(), |v| format!("{v:.9}"));
        println!(
            "{:<10} {:>5} {:>6} {:>14}  {}",
            r.name, r.dim, r.x_dim, lz, r.description
        );
    }
    Ok(())
}

pub fn energy(
    model: &str,
    points: &Path,
    context: Option<&Path>,
    out: &Path,
    grad: Option<&Path>,
) -> Result<()> {
    let model = boltz::model::load(model)?;
    let y = read_matrix(points, "points")?;
    let ctx = context.map(|p| read_matrix(p, "context")).transpose()?;
    let energy = model.energy(ctx)?;
    if let Some(grad_path) = grad {
        let (e, g) = boltz::energy::evaluate_with_grad(energy.as_ref(), y.view())?;
        write_npy(out, &[e.len()], e.as_slice().expect("contiguous"))?;
        write_npy(
            grad_path,
            &[g.nrows(), g.ncols()],
            g.as_slice().expect("contiguous"),
        )?;
    } else {
        let e = boltz::energy::evaluate(energy.as_ref(), y.view())?;
        write_npy(out, &[e.len()], e.as_slice().expect("contiguous"))?;
    }
    Ok(())
}
