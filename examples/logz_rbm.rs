//! AIS on the suite's RBMs: `rbm20` against its exact log Z for a growing
//! number of temperatures, then `rbm500` (no exact answer) with the same
//! schedules, showing the estimate settle as its error bar shrinks.
//!
//! Base: the base-rate model (independent Bernoulli visibles with the
//! digits' pixel means, clipped to [0.01, 0.99]); path: the parameter path
//! of Salakhutdinov & Murray (2008); one block-Gibbs sweep per temperature;
//! 1024 particles.
//!
//! Run: `cargo run --release --example logz_rbm`

use boltz::ais::{self, AisConfig, AisProblem, Base};
use boltz::model;

fn main() -> boltz::Result<()> {
    // The RBMs were trained on the bundled digits: anneal from their base-rate model.
    let base = Base::base_rate(boltz::suite::digits()?.view())?;
    for (name, temps) in [
        ("rbm20", [10, 100, 1000, 5000]),
        ("rbm500", [10, 100, 1000, 2000]),
    ] {
        let m = model::load(name)?;
        let rbm = m.rbm().expect("an RBM");
        let exact = match name {
            "rbm20" => Some(boltz::exact::rbm_log_z(rbm)?),
            _ => None,
        };
        let problem = AisProblem::new(m.energy(None)?, &base)?;
        println!(
            "{name}{}",
            exact.map_or(String::new(), |e| format!(
                " (exact log Z {e:.6} by summing 2^20 hidden states)"
            ))
        );
        println!(
            "{:>7} {:>12} {:>10} {:>10} {:>9} {:>8}",
            "temps", "log Z", "stderr", "error", "ESS", "wall s"
        );
        for t in temps {
            let config = AisConfig {
                temps: t,
                seed: 7,
                ..AisConfig::new()
            };
            let r = ais::ais(&problem, &config)?;
            let e = &r.estimates[0];
            let err = exact.map_or("-".to_string(), |x| format!("{:+.5}", e.log_z - x));
            println!(
                "{t:>7} {:>12.5} {:>10.5} {err:>10} {:>9.1} {:>8.2}",
                e.log_z, e.stderr, e.ess, r.wall_s
            );
        }
        println!();
    }
    Ok(())
}
