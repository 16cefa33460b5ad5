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
    let bytes = super::read_input(path)?;
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
    let dict = parse_header(header).map_err(|e| bad(path, format!("bad header: {e}")))?;
    let get = |k: &str| dict.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(PyValue::Str(d)) => d.clone(),
        _ => return Err(bad(path, "header has no 'descr' string")),
    };
    let fortran = match get("fortran_order") {
        Some(PyValue::Bool(f)) => *f,
        _ => return Err(bad(path, "header has no valid 'fortran_order'")),
    };
    let shape = match get("shape") {
        Some(PyValue::Tuple(t)) => t.clone(),
        _ => return Err(bad(path, "header has no valid 'shape'")),
    };
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
    crate::budget::check(
        &format!("{}", path.display()),
        &format!("the array of shape {shape:?} as float64"),
        crate::budget::bytes(&[count], 8),
    )?;
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

/// A value of the npy header's Python dict literal.
#[derive(Debug, PartialEq)]
enum PyValue {
    Str(String),
    Bool(bool),
    Int(usize),
    Tuple(Vec<usize>),
}

/// Parses the header as the Python dict literal it is: string keys, and
/// string, `True`/`False`, integer or integer-tuple values; a repeated key
/// is an error. (Searching the text for `'descr'` would find one inside a
/// string.)
fn parse_header(h: &str) -> std::result::Result<Vec<(String, PyValue)>, String> {
    let b = h.trim_end_matches(['\n', ' ', '\0']).as_bytes();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] as char).is_ascii_whitespace() {
            *i += 1;
        }
    };
    let string = |i: &mut usize| -> std::result::Result<String, String> {
        let q = b[*i];
        let start = *i + 1;
        let end = b[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or("unterminated string")?;
        *i = start + end + 1;
        String::from_utf8(b[start..start + end].to_vec()).map_err(|_| "bad string".into())
    };
    let int = |i: &mut usize| -> std::result::Result<usize, String> {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        let v = std::str::from_utf8(&b[start..*i])
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .ok_or("expected a non-negative integer")?;
        if *i < b.len() && b[*i] == b'L' {
            *i += 1;
        }
        Ok(v)
    };
    ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return Err("expected '{'".into());
    }
    i += 1;
    let mut out: Vec<(String, PyValue)> = Vec::new();
    loop {
        ws(&mut i);
        match b.get(i) {
            Some(b'}') => {
                i += 1;
                break;
            }
            Some(b'\'' | b'"') => {}
            _ => return Err("expected a quoted key or '}'".into()),
        }
        let key = string(&mut i)?;
        ws(&mut i);
        if b.get(i) != Some(&b':') {
            return Err(format!("expected ':' after '{key}'"));
        }
        i += 1;
        ws(&mut i);
        let value = match b.get(i) {
            Some(b'\'' | b'"') => PyValue::Str(string(&mut i)?),
            Some(b'T') if b[i..].starts_with(b"True") => {
                i += 4;
                PyValue::Bool(true)
            }
            Some(b'F') if b[i..].starts_with(b"False") => {
                i += 5;
                PyValue::Bool(false)
            }
            Some(b'(') => {
                i += 1;
                let mut t = Vec::new();
                loop {
                    ws(&mut i);
                    if b.get(i) == Some(&b')') {
                        i += 1;
                        break;
                    }
                    t.push(int(&mut i)?);
                    ws(&mut i);
                    match b.get(i) {
                        Some(b',') => i += 1,
                        Some(b')') => {}
                        _ => return Err("expected ',' or ')' in a tuple".into()),
                    }
                }
                PyValue::Tuple(t)
            }
            Some(c) if c.is_ascii_digit() => PyValue::Int(int(&mut i)?),
            _ => return Err(format!("unsupported value for '{key}'")),
        };
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("key '{key}' appears twice"));
        }
        out.push((key, value));
        ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            _ => return Err("expected ',' or '}'".into()),
        }
    }
    ws(&mut i);
    if i != b.len() {
        return Err("text after the dict".into());
    }
    Ok(out)
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
