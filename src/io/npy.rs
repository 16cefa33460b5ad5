//! Reading and writing `.npy` files (NumPy format 1.0 - 3.0).
//!
//! The reader accepts little-endian `f8`, `f4`, `i8`, `i4`, `u1` and `b1`
//! arrays in C or Fortran order and returns `f64` values in C order. It
//! checks the header against the file's length *before* allocating, so a
//! header claiming 10^15 elements is an error, not an allocation.

use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayD, IxDyn, ShapeBuilder};
use std::path::Path;

/// Most elements an array may have (2^31, 16 GiB of f64).
pub const MAX_ELEMENTS: usize = 1 << 31;

/// An array read from an npy file: its shape and its values in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The shape, as in the header.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f64>,
}

impl NpyArray {
    /// As an n-dimensional array.
    pub fn into_dyn(self) -> ArrayD<f64> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.data).expect("shape matches data")
    }

    /// As a matrix; a 1-D array becomes one row only if `promote_1d`.
    pub fn into_2d(self, what: &str, promote_1d: bool) -> Result<Array2<f64>> {
        match self.shape.len() {
            2 => Ok(
                Array2::from_shape_vec((self.shape[0], self.shape[1]), self.data).expect("shape"),
            ),
            1 if promote_1d => {
                Ok(Array2::from_shape_vec((1, self.shape[0]), self.data).expect("shape"))
            }
            _ => Err(Error::shape(
                what,
                "a 2-D array",
                format!("{:?}", self.shape),
            )),
        }
    }

    /// As a vector (1-D, or 2-D with one row or one column).
    pub fn into_1d(self, what: &str) -> Result<Array1<f64>> {
        let ok = match self.shape.len() {
            0 => true,
            1 => true,
            2 => self.shape[0] == 1 || self.shape[1] == 1,
            _ => false,
        };
        if ok {
            Ok(Array1::from(self.data))
        } else {
            Err(Error::shape(
                what,
                "a 1-D array",
                format!("{:?}", self.shape),
            ))
        }
    }
}

/// Reads an npy file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    if path.is_dir() {
        return Err(Error::Npy {
            path: path.into(),
            reason: "is a directory, not an npy file".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_npy_bytes(&bytes, path)
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Npy {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Parses npy bytes; `path` only names the source in errors.
pub fn read_npy_bytes(bytes: &[u8], path: &Path) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not an npy file (bad magic bytes)"));
    }
    let major = bytes[6];
    let (hlen, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(path, "truncated header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(path, format!("unsupported npy version {v}"))),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad(path, "truncated header"))?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| bad(path, "header is not text"))?;
    let descr = dict_str(header, "descr").ok_or_else(|| bad(path, "header has no 'descr'"))?;
    let fortran = match dict_raw(header, "fortran_order") {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err(bad(path, "header has no valid 'fortran_order'")),
    };
    let shape = parse_shape(header).ok_or_else(|| bad(path, "header has no valid 'shape'"))?;
    let (size, conv): (usize, fn(&[u8]) -> f64) = match descr.as_str() {
        "<f8" => (8, |b| f64::from_le_bytes(b.try_into().expect("8 bytes"))),
        "<f4" => (4, |b| {
            f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64
        }),
        "<i8" => (8, |b| {
            i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64
        }),
        "<i4" => (4, |b| {
            i32::from_le_bytes(b.try_into().expect("4 bytes")) as f64
        }),
        "|u1" | "<u1" => (1, |b| b[0] as f64),
        "|b1" => (1, |b| if b[0] != 0 { 1.0 } else { 0.0 }),
        d => {
            return Err(bad(
                path,
                format!(
                    "unsupported dtype '{d}' (use float64, float32, int64, int32, uint8 or bool, little-endian)"
                ),
            ));
        }
    };
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&c| c <= MAX_ELEMENTS)
        .ok_or_else(|| {
            bad(
                path,
                format!("shape {shape:?} is too large (more than {MAX_ELEMENTS} elements)"),
            )
        })?;
    let body = &bytes[end..];
    if body.len() != count * size {
        return Err(bad(
            path,
            format!(
                "data has {} bytes but shape {shape:?} of '{descr}' needs {} (truncated or corrupt)",
                body.len(),
                count * size
            ),
        ));
    }
    let mut data: Vec<f64> = body.chunks_exact(size).map(conv).collect();
    if fortran && shape.len() > 1 {
        let f = ArrayD::from_shape_vec(IxDyn(&shape).f(), data).expect("shape checked");
        data = f.as_standard_layout().iter().copied().collect();
    }
    Ok(NpyArray { shape, data })
}

fn dict_raw<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}'");
    let pat2 = format!("\"{key}\"");
    let i = header.find(&pat1).or_else(|| header.find(&pat2))?;
    let rest = &header[i + key.len() + 2..];
    let colon = rest.find(':')?;
    Some(rest[colon + 1..].trim_start())
}

fn dict_str(header: &str, key: &str) -> Option<String> {
    let v = dict_raw(header, key)?;
    let q = v.chars().next()?;
    if q != '\'' && q != '"' {
        return None;
    }
    let end = v[1..].find(q)?;
    Some(v[1..1 + end].to_string())
}

fn parse_shape(header: &str) -> Option<Vec<usize>> {
    let v = dict_raw(header, "shape")?;
    let v = v.strip_prefix('(')?;
    let close = v.find(')')?;
    v[..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>().ok())
        .collect()
}

/// Encodes `data` (C order) of the given shape as an npy (f8, version 1.0).
pub fn npy_bytes(shape: &[usize], data: &[f64]) -> Vec<u8> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_s}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 8 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes an f64 array atomically as npy.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    super::write_atomic(path, &npy_bytes(shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data: Vec<f64> = (0..12).map(|i| i as f64 * 0.5 - 1.0).collect();
        let b = npy_bytes(&[3, 4], &data);
        assert_eq!(b.len() % 16, 0);
        let a = read_npy_bytes(&b, Path::new("x.npy")).unwrap();
        assert_eq!(a.shape, vec![3, 4]);
        assert_eq!(a.data, data);
    }

    #[test]
    fn absurd_header_is_refused_before_allocation() {
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000000,), }\n";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&[0u8; 16]);
        let e = read_npy_bytes(&b, Path::new("x.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too large"), "{e}");
    }
}
