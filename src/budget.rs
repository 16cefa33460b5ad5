//! One budget for every count a user gives: the memory a setting implies
//! is computed with arithmetic that cannot overflow and compared with what
//! the machine has, before anything is allocated; counts that only cost
//! time have ceilings where one step of a loop would otherwise outlast a
//! stop request (a trajectory of 4e9 leapfrog steps, say).

use crate::error::{Error, Result};
use std::sync::OnceLock;

/// Most bytes one run may hold: the smallest of the machine's available
/// memory (`/proc/meminfo`; 8 GiB where it cannot be read), the cgroup's
/// memory limit (`/sys/fs/cgroup/memory.max`), three quarters of the
/// process's address-space limit (`ulimit -v`, from `/proc/self/limits`)
/// and `BOLTZ_MAX_MEMORY` (bytes) when set.
pub fn limit_bytes() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let machine = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                let field = |name: &str| {
                    t.lines()
                        .find(|l| l.starts_with(name))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse::<usize>().ok())
                        .map(|kib| kib.saturating_mul(1024))
                };
                field("MemAvailable:").or_else(|| field("MemTotal:"))
            })
            .unwrap_or(8 << 30);
        let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok());
        let rlimit = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Max address space"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse::<usize>().ok())
            })
            .map(|b| b / 4 * 3);
        let asked = std::env::var("BOLTZ_MAX_MEMORY")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok());
        [Some(machine), cgroup, rlimit, asked]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(machine)
    })
}

/// The product of `counts` times `bytes_each`, `None` on overflow.
pub fn bytes(counts: &[usize], bytes_each: usize) -> Option<usize> {
    counts
        .iter()
        .try_fold(bytes_each, |acc, &c| acc.checked_mul(c))
}

fn gib(b: f64) -> String {
    format!("{:.1} GiB", b / (1u64 << 30) as f64)
}

/// Checks that `bytes` (as computed by [`bytes`]; `None` = overflowed)
/// fit the budget; `setting` names what the user set and `what` says what
/// the memory holds. The error says how much it would need.
///
/// ```
/// use boltz::budget;
/// assert!(budget::check("chains", "states", budget::bytes(&[4, 10], 8)).is_ok());
/// let e = budget::check("chains", "states", budget::bytes(&[1 << 40, 1 << 40], 8));
/// assert!(e.unwrap_err().to_string().contains("would need"));
/// ```
pub fn check(setting: &str, what: &str, bytes: Option<usize>) -> Result<usize> {
    let limit = limit_bytes();
    match bytes {
        Some(b) if b <= limit => Ok(b),
        Some(b) => Err(Error::param(
            setting,
            format!(
                "{what} would need {} of memory, more than the {} available",
                gib(b as f64),
                gib(limit as f64)
            ),
        )),
        None => Err(Error::param(
            setting,
            format!(
                "{what} would need more memory than can be counted (the sizes overflow), more than the {} available",
                gib(limit as f64)
            ),
        )),
    }
}

/// Refuses a count above `max`: counts whose one unit of work would
/// outlast a stop request, or whose sheer number is a typo.
pub fn at_most(setting: &str, value: usize, max: usize, why: &str) -> Result<()> {
    if value > max {
        return Err(Error::param(
            setting,
            format!("{value} is more than the {max} boltz allows ({why})"),
        ));
    }
    Ok(())
}
