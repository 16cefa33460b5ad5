//! The stepping-stone estimate of log Z from a tempering run's batch sums,
//! with its batch-means standard error.

use super::SS_BATCHES;

/// `ln(e^a + e^b)`.
pub(super) fn ln_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// Batches of the stepping-stone error over `steps` sampling steps.
pub(super) fn ss_batches(steps: usize) -> usize {
    SS_BATCHES.min(steps).max(1)
}

/// The stepping-stone estimate, its standard error and the per-pair terms
/// from the batch sums.
pub(super) fn stepping_stone(
    ss: &[f64],
    ss_n: &[u64],
    chains: usize,
    replicas: usize,
    log_z0: f64,
) -> (f64, f64, Vec<f64>) {
    let pairs = replicas - 1;
    let batches = ss_n.len();
    let steps: u64 = ss_n.iter().sum();
    if steps == 0 {
        return (f64::NAN, f64::NAN, vec![f64::NAN; pairs]);
    }
    let total = (steps as f64 * chains as f64).ln();
    let log_m: Vec<f64> = (0..pairs)
        .map(|p| {
            let mut acc = f64::MIN;
            for cb in 0..chains * batches {
                acc = ln_add(acc, ss[cb * pairs + p]);
            }
            acc - total
        })
        .collect();
    let log_z = log_z0 + log_m.iter().sum::<f64>();
    // Batch means of the estimate's influence function at 64, 32, 16 and 8
    // batches per chain (adjacent batches merged); the largest standard
    // error counts, so that batches shorter than the chains' memory (slow
    // round trips) do not make it too small.
    let mut se = f64::NAN;
    let mut width = 1;
    while width <= batches {
        let merged = batches.div_ceil(width);
        // Down to 8 batches per chain, then whole chains as the units
        // (with at least 8 chains): a chain whose target replica holds
        // one mode longer than an eighth of the run differs from the
        // others as a whole.
        if merged < 8.min(batches) && !(merged == 1 && chains >= 8) {
            if width >= batches {
                break;
            }
            width = batches;
            continue;
        }
        let mut psi = Vec::with_capacity(chains * merged);
        for chain in 0..chains {
            for k in 0..merged {
                let ks = k * width..((k + 1) * width).min(batches);
                let nk: u64 = ss_n[ks.clone()].iter().sum();
                if nk == 0 {
                    continue;
                }
                let ln_n = (nk as f64).ln();
                psi.push(
                    (0..pairs)
                        .map(|p| {
                            let lse = ks.clone().fold(f64::MIN, |acc, b| {
                                ln_add(acc, ss[(chain * batches + b) * pairs + p])
                            });
                            (lse - ln_n - log_m[p]).exp() - 1.0
                        })
                        .sum::<f64>(),
                );
            }
        }
        if psi.len() >= 2 {
            let m = psi.len() as f64;
            let mean = psi.iter().sum::<f64>() / m;
            let var = psi.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0);
            let e = (var / m).sqrt();
            se = if se.is_nan() { e } else { se.max(e) };
        }
        width *= 2;
    }
    (log_z, se, log_m)
}
