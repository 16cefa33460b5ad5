//! Reading `.safetensors` files (the format torch, JAX and most model hubs
//! save weights in): an 8-byte little-endian header length, a JSON header
//! `{"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...}` and
//! the tensors' bytes (little-endian, row-major) after it.
//!
//! Every tensor is turned into float64 ([`NpyArray`]); the file is read
//! within the memory budget, and the header is checked entry by entry
//! (offsets inside the data, byte length equal to shape times dtype size,
//! no overflow).

use crate::error::{Error, Result};
use crate::io::npy::{MAX_ELEMENTS, NpyArray};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

#[derive(Clone, Debug)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

/// An opened `.safetensors` file.
pub struct SafeTensors {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    entries: BTreeMap<String, Entry>,
}

fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" => 1,
        _ => return None,
    })
}

/// IEEE half precision to f64.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

impl SafeTensors {
    /// Opens and checks `path`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let p = dir.path().join("w.safetensors");
    /// let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    /// let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    /// bytes.extend_from_slice(header);
    /// for v in [1.5f32, -2.0] { bytes.extend_from_slice(&v.to_le_bytes()); }
    /// std::fs::write(&p, &bytes)?;
    /// let t = boltz::io::SafeTensors::open(&p)?;
    /// assert_eq!(t.tensor("w")?.data, vec![1.5, -2.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_bytes(super::read_input(path)?, path)
    }

    /// The file's bytes, checked as [`SafeTensors::open`] does (`path`
    /// names it in errors).
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Self> {
        let bad = |r: String| Error::Model {
            path: path.to_path_buf(),
            reason: format!("not a valid safetensors file: {r}"),
        };
        if bytes.len() < 8 {
            return Err(bad("shorter than its 8-byte header length".into()));
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| bad("short".into()))?);
        if n > MAX_HEADER || n > (bytes.len() - 8) as u64 {
            return Err(bad(format!(
                "header length {n} exceeds the file ({} bytes) or 100 MB",
                bytes.len()
            )));
        }
        let data_start = 8 + n as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..data_start])
            .map_err(|e| bad(format!("header is not JSON: {e}")))?;
        let obj = header
            .as_object()
            .ok_or_else(|| bad("header is not a JSON object".into()))?;
        let data_len = bytes.len() - data_start;
        let mut entries = BTreeMap::new();
        for (name, v) in obj {
            if name == "__metadata__" {
                continue;
            }
            let at = |r: &str| bad(format!("tensor `{name}`: {r}"));
            let o = v.as_object().ok_or_else(|| at("not an object"))?;
            let dtype = o
                .get("dtype")
                .and_then(|d| d.as_str())
                .ok_or_else(|| at("no dtype"))?
                .to_string();
            let size = dtype_size(&dtype).ok_or_else(|| at(&format!("unknown dtype {dtype}")))?;
            let shape = o
                .get("shape")
                .and_then(|s| s.as_array())
                .ok_or_else(|| at("no shape"))?
                .iter()
                .map(|d| {
                    d.as_u64()
                        .and_then(|d| usize::try_from(d).ok())
                        .ok_or_else(|| at("shape entries must be non-negative integers"))
                })
                .collect::<Result<Vec<usize>>>()?;
            let offsets = o
                .get("data_offsets")
                .and_then(|s| s.as_array())
                .filter(|a| a.len() == 2)
                .ok_or_else(|| at("data_offsets must be [begin, end]"))?;
            let off = |i: usize| {
                offsets[i]
                    .as_u64()
                    .and_then(|d| usize::try_from(d).ok())
                    .ok_or_else(|| at("offsets must be non-negative integers"))
            };
            let (begin, end) = (off(0)?, off(1)?);
            if begin > end || end > data_len {
                return Err(at(&format!(
                    "data_offsets [{begin}, {end}] outside the {data_len} data bytes"
                )));
            }
            let count = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&c| c <= MAX_ELEMENTS)
                .ok_or_else(|| at("absurdly many elements"))?;
            if count.checked_mul(size) != Some(end - begin) {
                return Err(at(&format!(
                    "{} bytes for shape {shape:?} of {dtype} ({} expected)",
                    end - begin,
                    count * size
                )));
            }
            entries.insert(
                name.clone(),
                Entry {
                    dtype,
                    shape,
                    begin,
                    end,
                },
            );
        }
        Ok(SafeTensors {
            path: path.to_path_buf(),
            bytes,
            data_start,
            entries,
        })
    }

    /// The tensors' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(|s| s.as_str()).collect()
    }

    /// Tensor `name` as float64 values with its shape.
    pub fn tensor(&self, name: &str) -> Result<NpyArray> {
        let e = self.entries.get(name).ok_or_else(|| {
            let names = self.names();
            let shown: Vec<&str> = names.iter().copied().take(12).collect();
            Error::Model {
                path: self.path.clone(),
                reason: format!(
                    "no tensor `{name}` (it has {}{})",
                    shown.join(", "),
                    if names.len() > shown.len() {
                        ", ..."
                    } else {
                        ""
                    }
                ),
            }
        })?;
        let raw = &self.bytes[self.data_start + e.begin..self.data_start + e.end];
        let data: Vec<f64> = match e.dtype.as_str() {
            "F64" => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            "F32" => raw
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            "F16" => raw
                .chunks_exact(2)
                .map(|b| f16_to_f64(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            "BF16" => raw
                .chunks_exact(2)
                .map(|b| {
                    f64::from(f32::from_bits(
                        u32::from(u16::from_le_bytes([b[0], b[1]])) << 16,
                    ))
                })
                .collect(),
            "I64" => raw
                .chunks_exact(8)
                .map(|b| {
                    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64
                })
                .collect(),
            "U64" => raw
                .chunks_exact(8)
                .map(|b| {
                    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64
                })
                .collect(),
            "I32" => raw
                .chunks_exact(4)
                .map(|b| f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            "U32" => raw
                .chunks_exact(4)
                .map(|b| f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            "I16" => raw
                .chunks_exact(2)
                .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
                .collect(),
            "U16" => raw
                .chunks_exact(2)
                .map(|b| f64::from(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            "I8" => raw.iter().map(|&b| f64::from(b as i8)).collect(),
            _ => raw.iter().map(|&b| f64::from(b)).collect(),
        };
        Ok(NpyArray {
            shape: e.shape.clone(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.safetensors");
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        std::fs::write(&p, b).expect("write");
        (dir, p)
    }

    #[test]
    fn dtypes_convert_to_f64() {
        let mut data = Vec::new();
        data.extend_from_slice(&2.5f64.to_le_bytes());
        data.extend_from_slice(&0x3c00u16.to_le_bytes()); // f16 1.0
        data.extend_from_slice(&0xc000u16.to_le_bytes()); // f16 -2.0
        data.extend_from_slice(&((1.5f32.to_bits() >> 16) as u16).to_le_bytes()); // bf16 1.5
        let h = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"h":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"b":{"dtype":"BF16","shape":[],"data_offsets":[12,14]}}"#;
        let (_d, p) = file(h, &data);
        let t = SafeTensors::open(&p).expect("open");
        assert_eq!(t.names(), vec!["a", "b", "h"]);
        assert_eq!(t.tensor("a").expect("a").data, vec![2.5]);
        assert_eq!(t.tensor("h").expect("h").data, vec![1.0, -2.0]);
        let b = t.tensor("b").expect("b");
        assert_eq!((b.data, b.shape), (vec![1.5], vec![]));
        assert!(
            t.tensor("zz")
                .is_err_and(|e| e.to_string().contains("no tensor `zz`"))
        );
    }

    #[test]
    fn bad_headers_are_errors() {
        for (h, data, want) in [
            (
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                vec![0u8; 8],
                "bytes for shape",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}}"#,
                vec![0u8; 8],
                "outside",
            ),
            (
                r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#,
                vec![0u8; 8],
                "unknown dtype",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
                vec![0u8; 8],
                "absurdly",
            ),
            (r#"[1,2]"#, vec![], "not a JSON object"),
            (r#"{"a":"#, vec![], "not JSON"),
        ] {
            let (_d, p) = file(h, &data);
            let e = SafeTensors::open(&p)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(want), "{h}: {e}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("short.safetensors");
        std::fs::write(&p, u64::MAX.to_le_bytes()).expect("write");
        assert!(SafeTensors::open(&p).is_err_and(|e| e.to_string().contains("header length")));
    }
}
