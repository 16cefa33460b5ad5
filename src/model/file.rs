//! JSON model files: energies without writing Rust.
//!
//! ```json
//! {"kind": "gaussian", "mean": [0, 0], "std": [1, 0.5]}
//! {"kind": "gaussian", "mean": [0, 0], "precision": [[2, 0.5], [0.5, 1]]}
//! {"kind": "mixture", "weights": [0.5, 0.5], "means": [[-2, 0], [2, 0]], "std": 0.5}
//! {"kind": "mixture", "amplitudes": [1, 1], "means": [[-2, 0], [2, 0]], "std": [0.5, 1]}
//! {"kind": "mixture", "weights": "w.npy", "means": "m.npy", "precision_cholesky": "u.npy"}
//!   (full covariances: `u` is (K, d, d), each the upper-triangular Cholesky
//!   factor of a precision, scikit-learn's `precisions_cholesky_`)
//! {"kind": "funnel", "dim": 10}
//! {"kind": "ring", "x_dim": 1, "y_dim": 2, "width": 0.1}
//! {"kind": "mlp", "x_dim": 16, "l2": 0.5, "layers": [{"weight": "w0.npy", "bias": "b0.npy", "activation": "silu"}, ...]}
//! {"kind": "rbm", "weights": "W.npy", "visible_bias": "b.npy", "hidden_bias": "c.npy"}
//! ```
//! An array is an inline (nested) JSON array or the path of an `.npy` file,
//! relative to the model file. A model with a `"safetensors": "w.safetensors"`
//! key takes its string arrays as tensor names in that file (weights saved
//! by torch: `{"kind": "mlp", "safetensors": "energy.safetensors", "layers":
//! [{"weight": "net.0.weight", "bias": "net.0.bias", "activation": "silu"}, ...]}`);
//! an MLP's weights are then in torch's `nn.Linear` layout (out x in) unless
//! `"layout": "in_out"` says otherwise (`"layout": "torch"` also reads npy
//! or inline weights in torch's layout). Unknown keys, wrong types, wrong shapes and
//! non-finite numbers are errors naming the file and the key. An `mlp` or
//! `rbm` takes `"dtype": "f32"` to compute its energies in single precision
//! ([`crate::energy::Precision`]; default `"f64"`).

use crate::energy::{
    Activation, DiagGaussian, FullGaussian, Funnel, Layer, Mixture, Mlp, Precision, Rbm, Ring,
};
use crate::error::{Error, Result};
use crate::io::npy::{MAX_ELEMENTS, NpyArray, read_npy};
use crate::io::safetensors::SafeTensors;
use crate::model::{Family, Model};
use ndarray::{Array1, Array2};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest dimension a model file may declare.
pub const MAX_DIM: u64 = 1 << 24;

struct Ctx<'a> {
    path: &'a Path,
    dir: PathBuf,
    /// The model's `safetensors` file: its string arrays name tensors in it
    /// (a string ending in `.npy` is still an npy file).
    tensors: Option<SafeTensors>,
}

impl Ctx<'_> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Model {
            path: self.path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn check_keys(&self, obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<()> {
        for k in obj.keys() {
            // Every model may take its arrays from a safetensors file.
            if at.is_empty() && k == "safetensors" {
                continue;
            }
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(format!(
                    "unknown key `{at}{k}` (allowed: {})",
                    allowed.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn get<'v>(&self, obj: &'v Map<String, Value>, key: &str, at: &str) -> Result<&'v Value> {
        obj.get(key)
            .ok_or_else(|| self.err(format!("missing key `{at}{key}`")))
    }

    fn number(&self, obj: &Map<String, Value>, key: &str, at: &str) -> Result<f64> {
        let v = self.get(obj, key, at)?;
        let x = v.as_f64().ok_or_else(|| {
            self.err(format!(
                "`{at}{key}` must be a number, got {}",
                type_name(v)
            ))
        })?;
        if !x.is_finite() {
            return Err(self.err(format!("`{at}{key}` is not finite")));
        }
        Ok(x)
    }

    fn size(&self, obj: &Map<String, Value>, key: &str, at: &str) -> Result<usize> {
        let v = self.get(obj, key, at)?;
        let x = v.as_u64().ok_or_else(|| {
            self.err(format!(
                "`{at}{key}` must be a non-negative integer, got {v}"
            ))
        })?;
        if x > MAX_DIM {
            return Err(self.err(format!(
                "`{at}{key}` = {x} is absurdly large (at most {MAX_DIM})"
            )));
        }
        Ok(x as usize)
    }

    fn array(&self, obj: &Map<String, Value>, key: &str, at: &str) -> Result<NpyArray> {
        let v = self.get(obj, key, at)?;
        let arr = match v {
            Value::String(name) if self.tensors.is_some() && !name.ends_with(".npy") => self
                .tensors
                .as_ref()
                .map(|t| t.tensor(name))
                .transpose()
                .map_err(|e| self.err(format!("`{at}{key}`: {e}")))?
                .ok_or_else(|| self.err("no safetensors file"))?,
            Value::String(file) => {
                let p = self.dir.join(file);
                read_npy(&p).map_err(|e| self.err(format!("`{at}{key}`: {e}")))?
            }
            Value::Array(_) => {
                let mut shape = Vec::new();
                let mut cur = v;
                while let Value::Array(a) = cur {
                    shape.push(a.len());
                    match a.first() {
                        Some(x) => cur = x,
                        None => break,
                    }
                }
                let mut data = Vec::new();
                flatten(v, &shape, 0, &mut data)
                    .map_err(|r| self.err(format!("`{at}{key}`: {r}")))?;
                NpyArray { shape, data }
            }
            Value::Number(n) => NpyArray {
                shape: vec![],
                data: vec![n.as_f64().unwrap_or(f64::NAN)],
            },
            other => {
                return Err(self.err(format!(
                    "`{at}{key}` must be an array or an npy path, got {}",
                    type_name(other)
                )));
            }
        };
        if let Some(i) = arr.data.iter().position(|x| !x.is_finite()) {
            return Err(self.err(format!(
                "`{at}{key}` has a non-finite number at flat index {i}"
            )));
        }
        Ok(arr)
    }

    fn vector(&self, obj: &Map<String, Value>, key: &str, at: &str) -> Result<Vec<f64>> {
        let a = self.array(obj, key, at)?;
        if a.shape.len() > 1 && !(a.shape.len() == 2 && (a.shape[0] == 1 || a.shape[1] == 1)) {
            return Err(self.err(format!("`{at}{key}` must be 1-D, got shape {:?}", a.shape)));
        }
        Ok(a.data)
    }

    fn matrix(&self, obj: &Map<String, Value>, key: &str, at: &str) -> Result<Array2<f64>> {
        let a = self.array(obj, key, at)?;
        if a.shape.len() != 2 {
            return Err(self.err(format!("`{at}{key}` must be 2-D, got shape {:?}", a.shape)));
        }
        Ok(Array2::from_shape_vec((a.shape[0], a.shape[1]), a.data).expect("shape"))
    }

    /// The optional `dtype` (`"f64"`, the default, or `"f32"`): the
    /// precision of an mlp's or rbm's arithmetic.
    fn dtype(&self, obj: &Map<String, Value>) -> Result<Precision> {
        match obj.get("dtype") {
            None => Ok(Precision::F64),
            Some(Value::String(s)) => Precision::parse(s)
                .map_err(|_| self.err(format!("`dtype`: unknown dtype `{s}` (f64 or f32)"))),
            Some(v) => Err(self.err(format!(
                "`dtype` must be a string (\"f64\" or \"f32\"), got {}",
                type_name(v)
            ))),
        }
    }

    fn wrap(&self, r: Result<Family>) -> Result<Family> {
        r.map_err(|e| match e {
            Error::Model { .. } => e,
            other => self.err(other.to_string()),
        })
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn flatten(
    v: &Value,
    shape: &[usize],
    depth: usize,
    out: &mut Vec<f64>,
) -> std::result::Result<(), String> {
    if out.len() > MAX_ELEMENTS {
        return Err("too many elements".into());
    }
    match (v, depth < shape.len()) {
        (Value::Array(a), true) => {
            if a.len() != shape[depth] {
                return Err(format!(
                    "ragged array: {} entries where {} were expected at depth {depth}",
                    a.len(),
                    shape[depth]
                ));
            }
            for x in a {
                flatten(x, shape, depth + 1, out)?;
            }
            Ok(())
        }
        (Value::Number(n), false) => {
            out.push(n.as_f64().ok_or("number out of range")?);
            Ok(())
        }
        (other, _) => Err(format!(
            "expected {} at depth {depth}, got {}",
            if depth < shape.len() {
                "an array"
            } else {
                "a number"
            },
            type_name(other)
        )),
    }
}

/// Reads a model file.
pub fn load_model_file(path: &Path) -> Result<Model> {
    let bytes = crate::io::read_input(path)?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Model {
        path: path.into(),
        reason: "is not UTF-8 text".into(),
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut ctx = Ctx {
        path,
        dir,
        tensors: None,
    };
    let value: Value =
        serde_json::from_str(&text).map_err(|e| ctx.err(format!("malformed JSON: {e}")))?;
    serde_json::from_str::<NoDuplicates>(&text).map_err(|e| ctx.err(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ctx.err(format!("must be a JSON object, got {}", type_name(&value))))?;
    let kind = ctx
        .get(obj, "kind", "")?
        .as_str()
        .ok_or_else(|| ctx.err("`kind` must be a string"))?;
    if let Some(v) = obj.get("safetensors") {
        let file = v.as_str().ok_or_else(|| {
            ctx.err(format!(
                "`safetensors` must be the path of a .safetensors file, got {}",
                type_name(v)
            ))
        })?;
        let p = ctx.dir.join(file);
        ctx.tensors =
            Some(SafeTensors::open(&p).map_err(|e| ctx.err(format!("`safetensors`: {e}")))?);
    }
    let family = match kind {
        "gaussian" => {
            let mean = ctx.vector(obj, "mean", "")?;
            match (obj.contains_key("std"), obj.contains_key("precision")) {
                (true, false) => {
                    ctx.check_keys(obj, &["kind", "mean", "std"], "")?;
                    let std = ctx.vector(obj, "std", "")?;
                    ctx.wrap(DiagGaussian::new(mean, std).map(|g| Family::Gaussian(Arc::new(g))))?
                }
                (false, true) => {
                    ctx.check_keys(obj, &["kind", "mean", "precision"], "")?;
                    let p = ctx.matrix(obj, "precision", "")?;
                    ctx.wrap(FullGaussian::new(mean, p).map(|g| Family::FullGaussian(Arc::new(g))))?
                }
                _ => return Err(ctx.err("gaussian needs exactly one of `std` and `precision`")),
            }
        }
        "mixture" => mixture_family(&ctx, obj)?,
        "funnel" => {
            ctx.check_keys(obj, &["kind", "dim", "scale"], "")?;
            let dim = ctx.size(obj, "dim", "")?;
            let scale = if obj.contains_key("scale") {
                ctx.number(obj, "scale", "")?
            } else {
                3.0
            };
            ctx.wrap(Funnel::new(dim, scale).map(|f| Family::Funnel(Arc::new(f))))?
        }
        "ring" => {
            ctx.check_keys(obj, &["kind", "x_dim", "y_dim", "width"], "")?;
            let x = ctx.size(obj, "x_dim", "")?;
            let y = ctx.size(obj, "y_dim", "")?;
            let w = ctx.number(obj, "width", "")?;
            ctx.wrap(Ring::new(x, y, w).map(|r| Family::Ring(Arc::new(r))))?
        }
        "mlp" => mlp_family(&ctx, obj)?,
        "rbm" => {
            ctx.check_keys(
                obj,
                &["kind", "weights", "visible_bias", "hidden_bias", "dtype"],
                "",
            )?;
            let w = ctx.matrix(obj, "weights", "")?;
            let b = ctx.vector(obj, "visible_bias", "")?;
            let c = ctx.vector(obj, "hidden_bias", "")?;
            let precision = ctx.dtype(obj)?;
            ctx.wrap(Rbm::new(w, b, c).map(|r| Family::Rbm(Arc::new(r.with_precision(precision)))))?
        }
        other => {
            return Err(ctx.err(format!(
                "unknown kind `{other}` (gaussian, mixture, funnel, ring, mlp, rbm)"
            )));
        }
    };
    Ok(Model::new(path.display().to_string(), family))
}

/// The `mixture` kinds: full covariances (`precision_cholesky`) or
/// diagonal ones (`weights` or `amplitudes`, `means`, `std`).
fn mixture_family(ctx: &Ctx<'_>, obj: &serde_json::Map<String, Value>) -> Result<Family> {
    if obj.contains_key("precision_cholesky") {
        ctx.check_keys(obj, &["kind", "weights", "means", "precision_cholesky"], "")?;
        let w = ctx.vector(obj, "weights", "")?;
        let means = ctx.matrix(obj, "means", "")?;
        let u = ctx.array(obj, "precision_cholesky", "")?;
        if u.shape.len() != 3 {
            return Err(ctx.err(format!(
                "`precision_cholesky` must be 3-D (K, d, d), got shape {:?}",
                u.shape
            )));
        }
        let u = ndarray::Array3::from_shape_vec((u.shape[0], u.shape[1], u.shape[2]), u.data)
            .expect("shape");
        ctx.wrap(
            crate::energy::FullMixture::new(w, means, u).map(|m| Family::FullMixture(Arc::new(m))),
        )
    } else {
        ctx.check_keys(obj, &["kind", "weights", "amplitudes", "means", "std"], "")?;
        let key = match (obj.contains_key("weights"), obj.contains_key("amplitudes")) {
            (true, false) => "weights",
            (false, true) => "amplitudes",
            _ => {
                return Err(ctx.err(
                    "mixture needs exactly one of `weights` (component probabilities of normalised Gaussians) and `amplitudes` (factors of unnormalised ones)",
                ));
            }
        };
        let w = ctx.vector(obj, key, "")?;
        let means = ctx.matrix(obj, "means", "")?;
        let std = match ctx.get(obj, "std", "")? {
            Value::Number(_) => vec![ctx.number(obj, "std", "")?; w.len()],
            _ => ctx.vector(obj, "std", "")?,
        };
        let m = if key == "weights" {
            Mixture::from_weights(w, means, std)
        } else {
            Mixture::from_amplitudes(w, means, std)
        };
        ctx.wrap(m.map(|m| Family::Mixture(Arc::new(m))))
    }
}

/// The `mlp` kind: layers of weights (torch's or in x out layout), biases
/// and activations.
fn mlp_family(ctx: &Ctx<'_>, obj: &serde_json::Map<String, Value>) -> Result<Family> {
    ctx.check_keys(
        obj,
        &["kind", "x_dim", "l2", "layers", "layout", "dtype"],
        "",
    )?;
    // Weights are (in x out) unless `layout` says torch's (out x in),
    // the default for tensors from a safetensors file.
    let torch_layout = match obj.get("layout") {
        None => ctx.tensors.is_some(),
        Some(Value::String(s)) if s == "torch" => true,
        Some(Value::String(s)) if s == "in_out" => false,
        Some(v) => {
            return Err(ctx.err(format!(
                "`layout` must be \"torch\" (out x in, nn.Linear's weight) or \"in_out\", got {v}"
            )));
        }
    };
    let x_dim = ctx.size(obj, "x_dim", "")?;
    let l2 = if obj.contains_key("l2") {
        ctx.number(obj, "l2", "")?
    } else {
        0.0
    };
    let layers_v = ctx
        .get(obj, "layers", "")?
        .as_array()
        .ok_or_else(|| ctx.err("`layers` must be an array of objects"))?;
    let mut layers = Vec::new();
    for (i, lv) in layers_v.iter().enumerate() {
        let at = format!("layers[{i}].");
        let lo = lv
            .as_object()
            .ok_or_else(|| ctx.err(format!("`layers[{i}]` must be an object")))?;
        ctx.check_keys(lo, &["weight", "bias", "activation"], &at)?;
        let weight = ctx.matrix(lo, "weight", &at)?;
        let weight = if torch_layout {
            weight.reversed_axes().as_standard_layout().into_owned()
        } else {
            weight
        };
        let bias = Array1::from(ctx.vector(lo, "bias", &at)?);
        let act = match lo.get("activation") {
            None => Activation::None,
            Some(Value::String(s)) => Activation::parse(s).ok_or_else(|| {
                ctx.err(format!(
                    "`{at}activation`: unknown activation `{s}` (silu, relu, tanh, softplus, none)"
                ))
            })?,
            Some(v) => {
                return Err(ctx.err(format!(
                    "`{at}activation` must be a string, got {}",
                    type_name(v)
                )));
            }
        };
        layers.push(Layer {
            weight,
            bias,
            activation: act,
        });
    }
    let precision = ctx.dtype(obj)?;
    ctx.wrap(
        Mlp::new(x_dim, l2, layers).map(|m| Family::Mlp(Arc::new(m.with_precision(precision)))),
    )
}

/// A JSON value walked only to refuse objects with a repeated key (serde's
/// maps keep the last silently: `"std"` twice would be accepted).
struct NoDuplicates;

impl<'de> serde::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> std::result::Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<NoDuplicates, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "key `{key}` appears twice in one object"
                )));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}
