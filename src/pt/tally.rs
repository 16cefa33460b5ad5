//! What a tempering run measured, computed from its per-chain tallies
//! ([`LadderTally`], kept in [`crate::tally`] so that shard files can hold
//! them): each ladder's temperatures, swaps, round trips, local-move
//! acceptance and stepping-stone sums. The run's figures ([`super::PtStats`]) are
//! computed from these alone, chains in order, so the tallies of the shards
//! of a run, put together ([`LadderTally::concat`]), give the one-process
//! run's figures bit for bit.

use super::stone::stepping_stone;
use super::{PtStats, Round};
use crate::tally::{LadderGroup, LadderTally};

impl LadderTally {
    /// The run's figures: the executor's per-chain tallies, the time and
    /// the tuning are left for the caller (empty, 0 and `None`).
    ///
    /// The stepping stone is taken per ladder `g` over its chains' draws,
    /// `Z_g = Z_0 prod_r mean_t f_{g,r+1}(x_t) / f_{g,r}(x_t)` (the mean
    /// over the group's chains and steps), and `log Z = log mean Z_g` over
    /// the ladders, each weighted by its chains (the mean of unbiased
    /// estimates of `Z`, as the merge of independent islands). Its standard
    /// error is the larger of the delta method over the ladders' own
    /// batch-means errors, `sqrt(sum_g w_g^2 se_g^2)` with `w_g` a ladder's
    /// share of the sum, and, with 8 ladders or more, the spread of their
    /// `Z_g / mean Z` (a chain whose target replica holds one mode longer
    /// than its batches differs from the others as a whole). With one
    /// pooled ladder this is the pooled estimate and its batch-means
    /// error. Pooled figures (swap acceptance per pair, acceptance per
    /// replica) are sums over the ladders in order; the temperatures shown
    /// are the ladders' means.
    pub fn stats(&self) -> PtStats {
        let r = self.replicas;
        let pairs = r - 1;
        let groups = &self.groups;
        let (g_n, c) = (groups.len() as f64, self.chains());
        let sampling: u64 = self.ss_n.iter().sum();
        let mean_over = |get: &dyn Fn(&LadderGroup, usize) -> f64, k: usize| {
            (0..k)
                .map(|i| groups.iter().map(|g| get(g, i)).sum::<f64>() / g_n)
                .collect::<Vec<f64>>()
        };
        let swap_accept: Vec<f64> = (0..pairs)
            .map(|p| {
                let n = self.swap_attempts[p];
                if n > 0 {
                    groups.iter().map(|g| g.swap_accept[p]).sum::<f64>() / n as f64
                } else {
                    f64::NAN
                }
            })
            .collect();
        let lambda = swap_accept.iter().map(|a| 1.0 - a).sum::<f64>();
        let rounds = self
            .round_ends
            .iter()
            .enumerate()
            .map(|(k, &end)| Round {
                end,
                lambda: groups.iter().map(|g| g.round_lambda[k]).sum::<f64>() / g_n,
                betas: mean_over(&|g, i| g.round_betas[k][i], r),
            })
            .collect();
        let trips: u64 = groups.iter().map(|g| g.trips).sum();
        let (log_z, log_z_stderr, log_z_pairs) = self.log_z();
        let steps = |i: usize| {
            groups
                .iter()
                .flat_map(|g| (0..g.chains).map(move |k| g.step_sizes[k * r + i]))
                .collect::<Vec<f64>>()
        };
        PtStats {
            kernel: self.kernel.clone(),
            replicas: r,
            mode: self.mode,
            betas: mean_over(&|g, i| g.betas[i], r),
            ladders: groups.iter().map(|g| g.betas.clone()).collect(),
            swap_accept,
            lambda,
            rounds,
            round_trips: trips,
            round_trip_rate: if sampling > 0 {
                trips as f64 / (c as f64 * sampling as f64)
            } else {
                f64::NAN
            },
            round_trip_bound: 1.0 / (2.0 + 2.0 * lambda),
            log_z,
            log_z_stderr,
            log_z_pairs,
            acceptance: (0..r)
                .map(|i| {
                    groups.iter().map(|g| g.acceptance[i]).sum::<f64>()
                        / (c as f64 * sampling as f64)
                })
                .collect(),
            chain_acceptance: Vec::new(),
            chain_divergences: Vec::new(),
            step_size: (0..r)
                .map(|i| crate::kernels::StepSizes::per_chain(steps(i)).median())
                .collect(),
            divergences: 0,
            warmup_divergences: 0,
            energy_evals: self.energy_evals,
            grad_evals: self.grad_evals,
            wall_s: 0.0,
            tuning: None,
        }
    }

    /// The stepping-stone `log Z`, its standard error and the ladders'
    /// mean `log Z_{r+1} / Z_r` of each pair (see [`LadderTally::stats`]).
    fn log_z(&self) -> (f64, f64, Vec<f64>) {
        let r = self.replicas;
        let groups = &self.groups;
        let per: Vec<(f64, f64, Vec<f64>)> = groups
            .iter()
            .map(|g| stepping_stone(&g.ss, &self.ss_n, g.chains, r, 0.0))
            .collect();
        if per.iter().any(|(l, _, _)| l.is_nan()) {
            return (f64::NAN, f64::NAN, vec![f64::NAN; r - 1]);
        }
        let g_n = groups.len() as f64;
        let pairs = (0..r - 1)
            .map(|p| per.iter().map(|(_, _, m)| m[p]).sum::<f64>() / g_n)
            .collect();
        let top = per.iter().map(|(l, _, _)| *l).fold(f64::MIN, f64::max);
        // Each ladder's Z relative to the largest, weighted by its chains.
        let z: Vec<f64> = per
            .iter()
            .zip(groups)
            .map(|((l, _, _), g)| g.chains as f64 * (l - top).exp())
            .collect();
        let sum: f64 = z.iter().sum();
        let log_z = self.log_z0 + top + (sum / self.chains() as f64).ln();
        let within = z
            .iter()
            .zip(&per)
            .map(|(zg, (_, se, _))| (zg / sum * se).powi(2))
            .sum::<f64>()
            .sqrt();
        let se = if groups.len() >= 8 {
            // Z_g / mean Z: mean 1, spread over the ladders (of one chain each).
            let v: Vec<f64> = z.iter().map(|zg| zg * g_n / sum).collect();
            let var = v.iter().map(|x| (x - 1.0).powi(2)).sum::<f64>() / (g_n - 1.0);
            // And the spread of their log Z_g, which a heavy right tail of
            // Z_g (a chain whose target replica held a mode long) does not
            // hide as the few large Z_g of a short sample do.
            let logs: Vec<f64> = per.iter().map(|(l, _, _)| *l).collect();
            let mean = logs.iter().sum::<f64>() / g_n;
            let var_log = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (g_n - 1.0);
            within.max((var / g_n).sqrt()).max((var_log / g_n).sqrt())
        } else {
            within
        };
        (log_z, se, pairs)
    }
}
