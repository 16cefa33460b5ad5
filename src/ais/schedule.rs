//! Temperature schedules `0 = b_0 < b_1 < ... < b_T = 1` for annealing.

use crate::error::{Error, Result};

/// How the `T + 1` inverse temperatures of an annealing run are spaced.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Schedule {
    /// `b_k = k / T`.
    Linear,
    /// `b_0 = 0`, then `b_k` geometric from `1e-4` (k = 1) to 1 (k = T):
    /// small steps where the base dominates.
    Geometric,
    /// `b_k = (s(k) - s(0)) / (s(T) - s(0))`, `s(k) = sigmoid(delta (2k/T - 1))`,
    /// delta = 4: dense at both ends (Grosse, Maddison & Salakhutdinov 2013 / 2015).
    Sigmoid,
    /// Salakhutdinov & Murray (2008): uniform spacing on [0, 0.5], [0.5, 0.9]
    /// and [0.9, 1] with 500, 4000 and 10000 of 14500 temperatures (the
    /// same proportions of T).
    Piecewise,
    /// Given explicitly (e.g. chosen by an adaptive pilot run, then frozen).
    Custom(Vec<f64>),
}

impl Schedule {
    /// Parses `linear`, `geometric`, `sigmoid`, `piecewise` (`adaptive` is
    /// handled by the AIS driver, which turns it into `Custom`).
    pub fn parse(name: &str) -> Result<Schedule> {
        Ok(match name {
            "linear" => Schedule::Linear,
            "geometric" => Schedule::Geometric,
            "sigmoid" => Schedule::Sigmoid,
            "piecewise" => Schedule::Piecewise,
            other => {
                return Err(Error::param(
                    "schedule",
                    format!(
                        "unknown schedule `{other}` (linear, geometric, sigmoid, piecewise, adaptive)"
                    ),
                ));
            }
        })
    }

    /// The `temps + 1` inverse temperatures, `b_0 = 0`, `b_T = 1`, increasing.
    pub fn betas(&self, temps: usize) -> Result<Vec<f64>> {
        if temps == 0 {
            return Err(Error::param("temps", "must be >= 1"));
        }
        let t = temps as f64;
        let b: Vec<f64> = match self {
            Schedule::Linear => (0..=temps).map(|k| k as f64 / t).collect(),
            Schedule::Geometric => {
                let lo: f64 = 1e-4;
                (0..=temps)
                    .map(|k| match k {
                        0 => 0.0,
                        _ if temps == 1 => 1.0,
                        _ => lo.powf(1.0 - (k - 1) as f64 / (t - 1.0)),
                    })
                    .collect()
            }
            Schedule::Sigmoid => {
                let s = |k: usize| 1.0 / (1.0 + (-4.0 * (2.0 * k as f64 / t - 1.0)).exp());
                let (s0, st) = (s(0), s(temps));
                (0..=temps).map(|k| (s(k) - s0) / (st - s0)).collect()
            }
            Schedule::Piecewise => {
                let n1 = ((t * 500.0 / 14500.0).round() as usize)
                    .max(1)
                    .min(temps.saturating_sub(2).max(1));
                let n2 = ((t * 4000.0 / 14500.0).round() as usize)
                    .max(1)
                    .min(temps.saturating_sub(n1 + 1).max(1));
                let n3 = temps.saturating_sub(n1 + n2).max(1);
                let mut b = vec![0.0];
                b.extend((1..=n1).map(|k| 0.5 * k as f64 / n1 as f64));
                b.extend((1..=n2).map(|k| 0.5 + 0.4 * k as f64 / n2 as f64));
                b.extend((1..=n3).map(|k| 0.9 + 0.1 * k as f64 / n3 as f64));
                b.truncate(temps + 1);
                *b.last_mut().expect("non-empty") = 1.0;
                b
            }
            Schedule::Custom(b) => {
                check(b)?;
                return Ok(b.clone());
            }
        };
        check(&b)?;
        Ok(b)
    }
}

fn check(b: &[f64]) -> Result<()> {
    let ok = b.len() >= 2
        && b[0] == 0.0
        && *b.last().expect("len >= 2") == 1.0
        && b.windows(2).all(|w| w[1] > w[0]);
    if ok {
        Ok(())
    } else {
        Err(Error::param(
            "schedule",
            "must increase strictly from 0 to 1",
        ))
    }
}

/// Respaces a schedule to `temps` steps, keeping its density: the new
/// `b` at position `k/temps` interpolates the old one at the same fraction.
pub fn respace(b: &[f64], temps: usize) -> Vec<f64> {
    let m = (b.len() - 1) as f64;
    let mut out: Vec<f64> = (0..=temps)
        .map(|k| {
            let x = k as f64 / temps as f64 * m;
            let i = (x.floor() as usize).min(b.len() - 2);
            let f = x - i as f64;
            b[i] + f * (b[i + 1] - b[i])
        })
        .collect();
    out[0] = 0.0;
    out[temps] = 1.0;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schedule_runs_from_zero_to_one() {
        for s in [
            Schedule::Linear,
            Schedule::Geometric,
            Schedule::Sigmoid,
            Schedule::Piecewise,
        ] {
            for t in [1, 2, 3, 10, 1000] {
                let b = s.betas(t).unwrap();
                assert_eq!(b.len(), t + 1, "{s:?} {t}");
                assert_eq!(b[0], 0.0);
                assert_eq!(b[t], 1.0);
                assert!(b.windows(2).all(|w| w[1] > w[0]), "{s:?} {t}: {b:?}");
            }
        }
        let r = respace(&Schedule::Geometric.betas(50).unwrap(), 200);
        assert_eq!(r.len(), 201);
        assert!(r.windows(2).all(|w| w[1] > w[0]));
    }
}
