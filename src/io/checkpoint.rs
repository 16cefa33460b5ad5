//! One versioned, checksummed container for every checkpoint and state
//! file boltz writes (sampling runs, AIS passes, negatives state).
//!
//! Layout (little-endian): the magic `BOLTZCKP`, the format version (u32),
//! the header length (u64), a JSON header `{"kind", "settings", "state"}`,
//! the number of f64 values (u64), the values (the bulk arrays: recorded
//! draws, replay buffers), and an FNV-1a 64 checksum of everything before
//! it. Files are written atomically. A reader checks the magic, version,
//! lengths and checksum, the kind, and that the run's settings are the
//! same as the caller's, before anything is used.

use crate::error::{Error, Result};
use std::path::Path;

/// The format version this boltz writes and reads.
pub const CHECKPOINT_VERSION: u32 = 3;
const MAGIC: &[u8; 8] = b"BOLTZCKP";

use crate::hash::fnv1a;

#[derive(serde::Serialize)]
struct HeaderOut<'a, T> {
    kind: &'a str,
    settings: &'a str,
    state: &'a T,
}

#[derive(serde::Deserialize)]
struct HeaderIn<T> {
    kind: String,
    settings: String,
    state: T,
}

/// Writes `state` (small, as JSON) and `data` (bulk f64 values) as a
/// checkpoint of `kind` made with `settings`, atomically.
pub fn write_checkpoint<T: serde::Serialize>(
    path: &Path,
    kind: &str,
    settings: &str,
    state: &T,
    data: &[f64],
) -> Result<()> {
    let out = checkpoint_bytes(path, kind, settings, state, data)?;
    crate::io::write_atomic(path, &out)
}

/// The bytes [`write_checkpoint`] writes (`path` only names it in errors),
/// for a checkpoint that is one output of a transaction
/// ([`crate::io::Outputs`]).
pub fn checkpoint_bytes<T: serde::Serialize>(
    path: &Path,
    kind: &str,
    settings: &str,
    state: &T,
    data: &[f64],
) -> Result<Vec<u8>> {
    let header = serde_json::to_vec(&HeaderOut {
        kind,
        settings,
        state,
    })
    .map_err(|e| Error::checkpoint(path, format!("cannot encode: {e}")))?;
    let mut out = Vec::with_capacity(36 + header.len() + 8 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// Reads a checkpoint of `kind` written with `settings`: its state and
/// bulk values. Refuses, with [`Error::Checkpoint`], files of another
/// format or version (naming it), corrupt or truncated ones, another kind,
/// and other settings.
pub fn read_checkpoint<T: serde::de::DeserializeOwned>(
    path: &Path,
    kind: &str,
    settings: &str,
) -> Result<(T, Vec<f64>)> {
    read_checkpoint_as(path, kind, Some(settings)).map(|(t, d, _)| (t, d))
}

/// [`read_checkpoint`] that also returns the stored settings; with
/// `settings` `None` any settings are accepted (the caller checks them
/// against the state, as a file that describes its own run).
pub fn read_checkpoint_as<T: serde::de::DeserializeOwned>(
    path: &Path,
    kind: &str,
    settings: Option<&str>,
) -> Result<(T, Vec<f64>, String)> {
    let bytes = super::read_input(path)?;
    let bad = |r: &str| Error::checkpoint(path, r.to_string());
    if bytes.starts_with(b"BOLTZCK1") || bytes.first() == Some(&b'{') {
        return Err(bad(&format!(
            "written by an older boltz (checkpoint format 1); this boltz reads format {CHECKPOINT_VERSION}: start the run again"
        )));
    }
    if bytes.len() < 36 || &bytes[..8] != MAGIC {
        return Err(bad("not a boltz checkpoint (bad magic bytes)"));
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != CHECKPOINT_VERSION {
        return Err(bad(&format!(
            "checkpoint format version {version}; this boltz reads version {CHECKPOINT_VERSION} (written by another boltz: start the run again)"
        )));
    }
    let body = bytes.len() - 8;
    if fnv1a(&bytes[..body]) != word(body) {
        return Err(bad("checksum mismatch (truncated or corrupt)"));
    }
    let hlen = usize::try_from(word(12)).map_err(|_| bad("absurd header length"))?;
    let hend = 20usize
        .checked_add(hlen)
        .filter(|&e| e + 8 <= body)
        .ok_or_else(|| bad("truncated header"))?;
    let n = usize::try_from(word(hend)).map_err(|_| bad("absurd data length"))?;
    if n.checked_mul(8).and_then(|b| b.checked_add(hend + 8)) != Some(body) {
        return Err(bad(
            "data length does not match the file (truncated or corrupt)",
        ));
    }
    // Kind first: a checkpoint of another kind has another state.
    let raw: serde_json::Value =
        serde_json::from_slice(&bytes[20..hend]).map_err(|e| bad(&format!("bad header: {e}")))?;
    if let Some(k) = raw.get("kind").and_then(|k| k.as_str())
        && k != kind
    {
        return Err(bad(&format!("a {k} checkpoint, not a {kind} one")));
    }
    let header: HeaderIn<T> =
        serde_json::from_slice(&bytes[20..hend]).map_err(|e| bad(&format!("bad header: {e}")))?;
    if header.kind != kind {
        return Err(bad(&format!(
            "a {} checkpoint, not a {kind} one",
            header.kind
        )));
    }
    if let Some(now) = settings.filter(|s| header.settings != *s) {
        return Err(bad(&format!(
            "written by a run with other settings ({}); resume with the same ones",
            settings_change(&header.settings, now)
        )));
    }
    let data = bytes[hend + 8..body]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    Ok((header.state, data, header.settings))
}

/// What differs between two runs' settings (`stored`, then `now`): for
/// settings written as JSON ([`crate::jobs::run_settings`]) each setting
/// that differs, by name (`max_depth 6, now 2`); otherwise the stored
/// settings whole.
pub fn settings_change(stored: &str, now: &str) -> String {
    fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    // The job's fields are named as the user sets them.
                    let key = match prefix {
                        "" | "job" => k.clone(),
                        p => format!("{p}.{k}"),
                    };
                    leaves(&key, x, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    let (Some(a), Some(b)) = (parse(stored), parse(now)) else {
        return stored.to_string();
    };
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    leaves("", &a, &mut la);
    leaves("", &b, &mut lb);
    let find = |l: &[(String, String)], k: &str| {
        l.iter()
            .find(|(n, _)| n == k)
            .map_or_else(|| "unset".to_string(), |(_, v)| v.clone())
    };
    let mut keys: Vec<&String> = la.iter().chain(lb.iter()).map(|(k, _)| k).collect();
    keys.sort_unstable();
    keys.dedup();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter_map(|k| {
            let (x, y) = (find(&la, k), find(&lb, k));
            (x != y).then(|| format!("{k} {x}, now {y}"))
        })
        .collect();
    if diffs.is_empty() {
        stored.to_string()
    } else {
        diffs.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        write_checkpoint(&p, "sample", "s1", &vec![1u32, 2], &[0.5, -1.0]).unwrap();
        let (st, data): (Vec<u32>, Vec<f64>) = read_checkpoint(&p, "sample", "s1").unwrap();
        assert_eq!((st, data), (vec![1, 2], vec![0.5, -1.0]));
        let msg = |r: Result<(Vec<u32>, Vec<f64>)>| r.unwrap_err().to_string();
        assert!(msg(read_checkpoint(&p, "ais", "s1")).contains("not a ais"));
        assert!(msg(read_checkpoint(&p, "sample", "s2")).contains("other settings"));
        let mut b = std::fs::read(&p).unwrap();
        b[30] ^= 1;
        std::fs::write(&p, &b).unwrap();
        assert!(msg(read_checkpoint(&p, "sample", "s1")).contains("checksum"));
        std::fs::write(&p, b"BOLTZCK1....").unwrap();
        assert!(msg(read_checkpoint(&p, "sample", "s1")).contains("format 1"));
        std::fs::write(&p, b"{\"version\": 1}").unwrap();
        assert!(msg(read_checkpoint(&p, "sample", "s1")).contains("format 1"));
    }
}
