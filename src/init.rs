//! Where chains start: the distributions of starting positions shared by
//! `sample`, the AIS pilot and negatives, and their text form
//! (`gaussian:STD`, `uniform:LO,HI`, `dispersed:LO,HI`, `coins`).

use crate::error::{Error, Result};
use crate::rng::ChainRng;
use rand::RngExt;

/// A distribution of starting positions, drawn per chain from the chain's
/// own stream.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Init {
    /// Each coordinate uniform on `[lo, hi]` (images: [0, 1] or [-1, 1]).
    Uniform {
        /// Lower end.
        lo: f64,
        /// Upper end.
        hi: f64,
    },
    /// Each coordinate `N(0, std^2)`.
    Gaussian {
        /// Standard deviation.
        std: f64,
    },
    /// Fair coin flips (binary models).
    Bernoulli,
    /// Over-dispersed starts, the default of [`crate::sampler`]: each chain
    /// draws its own half-width `R` log-uniformly on `[min, max]`, then
    /// each coordinate uniformly on `(-R, R)`. Chains start both near the
    /// origin (as Stan's `(-2, 2)`) and far from it, so that chains of a
    /// target with separated modes tend to fall into different basins and
    /// R-hat across chains can see it. Binary states: coin flips.
    Dispersed {
        /// Smallest half-width (> 0).
        min: f64,
        /// Largest half-width (>= min).
        max: f64,
    },
    /// Given points (an npy file on the command line): chain `i` starts at
    /// row `i mod rows`.
    Rows {
        /// Number of rows (>= 1).
        rows: usize,
        /// Columns: the state dimension.
        dim: usize,
        /// The points, row-major (rows x dim).
        values: Vec<f64>,
    },
}

impl Default for Init {
    /// `Dispersed { min: 2, max: 20 }`.
    fn default() -> Self {
        Init::Dispersed {
            min: 2.0,
            max: 20.0,
        }
    }
}

impl Init {
    /// Parses `gaussian:STD`, `uniform:LO,HI`, `dispersed:MIN,MAX` or
    /// `coins`; `what` names the setting in errors.
    ///
    /// ```
    /// use boltz::init::Init;
    /// assert_eq!(Init::parse("gaussian:2", "init")?, Init::Gaussian { std: 2.0 });
    /// assert!(Init::parse("gaussian:-1", "init").is_err());
    /// # Ok::<(), boltz::Error>(())
    /// ```
    pub fn parse(s: &str, what: &str) -> Result<Init> {
        let bad = || {
            Error::param(
                what,
                format!(
                    "expected gaussian:STD, uniform:LO,HI, dispersed:MIN,MAX or coins (or a file), got `{s}`"
                ),
            )
        };
        let pair = |v: &str| -> Result<(f64, f64)> {
            let (a, b) = v.split_once(',').ok_or_else(bad)?;
            Ok((
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ))
        };
        let init = match s.split_once(':') {
            Some(("gaussian", v)) => Init::Gaussian {
                std: v.trim().parse().map_err(|_| bad())?,
            },
            Some(("uniform", v)) => {
                let (lo, hi) = pair(v)?;
                Init::Uniform { lo, hi }
            }
            Some(("dispersed", v)) => {
                let (min, max) = pair(v)?;
                Init::Dispersed { min, max }
            }
            None if s == "coins" => Init::Bernoulli,
            _ => return Err(bad()),
        };
        init.validate(what)?;
        Ok(init)
    }

    /// Given points as starts: chain `i` starts at row `i mod rows`.
    pub fn rows(points: ndarray::ArrayView2<f64>) -> Result<Init> {
        let init = Init::Rows {
            rows: points.nrows(),
            dim: points.ncols(),
            values: points.iter().copied().collect(),
        };
        init.validate("init")?;
        Ok(init)
    }

    /// A short description for settings checks and reports (a hash of
    /// the points for [`Init::Rows`]).
    pub fn describe(&self) -> String {
        match self {
            Init::Rows { rows, dim, values } => {
                let mut h = crate::hash::Fnv1a::new();
                h.update_f64s(values);
                format!("rows {rows}x{dim} fnv1a {:016x}", h.finish())
            }
            other => format!("{other:?}"),
        }
    }

    /// Checks the parameters (finite, positive widths, `lo < hi`; rows
    /// finite and of the stated shape).
    pub fn validate(&self, what: &str) -> Result<()> {
        if let Init::Rows { rows, dim, values } = self {
            if *rows == 0 || rows.checked_mul(*dim) != Some(values.len()) {
                return Err(Error::param(
                    what,
                    format!("{} values are not {rows} rows of {dim}", values.len()),
                ));
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(Error::param(
                    what,
                    "the starting points contain a non-finite value",
                ));
            }
            return Ok(());
        }
        match *self {
            Init::Uniform { lo, hi } if !(lo.is_finite() && hi.is_finite() && lo < hi) => {
                Err(Error::param(
                    what,
                    format!("uniform box needs finite lo < hi, got [{lo}, {hi}]"),
                ))
            }
            Init::Gaussian { std } => crate::error::check_positive(what, std),
            Init::Dispersed { min, max }
                if !(min.is_finite() && max.is_finite() && min > 0.0 && min <= max) =>
            {
                Err(Error::param(
                    what,
                    format!("dispersed half-widths need finite 0 < min <= max, got [{min}, {max}]"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Fills `out` with chain `i`'s draw. `binary`: coin flips for every
    /// variant but given rows (a binary state has no scale to disperse).
    pub(crate) fn draw(&self, i: usize, rng: &mut ChainRng, out: &mut [f64], binary: bool) {
        if let Init::Rows { rows, dim, values } = self {
            let r = i % rows;
            out.copy_from_slice(&values[r * dim..(r + 1) * dim]);
            return;
        }
        if binary || matches!(self, Init::Bernoulli) {
            for o in out.iter_mut() {
                *o = f64::from(u8::from(rng.random::<bool>()));
            }
            return;
        }
        match *self {
            Init::Gaussian { std } => {
                crate::rng::fill_standard_normal(rng, out);
                out.iter_mut().for_each(|o| *o *= std);
            }
            Init::Uniform { lo, hi } => {
                for o in out.iter_mut() {
                    *o = lo + (hi - lo) * rng.random::<f64>();
                }
            }
            Init::Dispersed { min, max } => {
                let r = min * (max / min).powf(rng.random::<f64>());
                for o in out.iter_mut() {
                    *o = r * (2.0 * rng.random::<f64>() - 1.0);
                }
            }
            Init::Bernoulli | Init::Rows { .. } => unreachable!("handled above"),
        }
    }
}
