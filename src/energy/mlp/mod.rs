//! Conditional MLP energies with a hand-written batched backward pass.

use super::{ConditionalEnergy, Precision, Real, add_row};
use crate::error::{Error, Result};
use crate::linalg::{Gemm, Packed, matmul, matmul_packed};
use crate::simd::SimdLevel;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip, s};
use rayon::prelude::*;

/// Rows per parallel block: each block is one set of matrix products.
const MLP_BLOCK: usize = 256;

mod activation;
pub use activation::Activation;
use activation::activate;

/// One dense layer: `h_out = act(h_in W + bias)`, W is (in x out).
#[derive(Clone, Debug)]
pub struct Layer {
    /// Weights, (in x out).
    pub weight: Array2<f64>,
    /// Bias, (out).
    pub bias: Array1<f64>,
    /// Non-linearity applied after the affine map.
    pub activation: Activation,
}

/// Gradients of a weighted sum of energies with respect to the MLP's parameters.
#[derive(Clone, Debug)]
pub struct MlpGrads {
    /// One per layer, shaped like the layer's weight.
    pub weights: Vec<Array2<f64>>,
    /// One per layer, shaped like the layer's bias.
    pub biases: Vec<Array1<f64>>,
}

/// `F(x, y) = net([x ; y]) + 0.5 * l2 * |y|^2`, `net` a stack of dense
/// layers whose last has one output. The `l2` term keeps `exp(-F)`
/// normalisable in `y` when the network alone does not.
///
/// Gradients with respect to `y` come from a batched backward pass (matrix
/// products per block of 64 rows); [`Mlp::param_grad`] gives the gradient
/// with respect to the weights and biases, for training.
#[derive(Clone, Debug)]
pub struct Mlp {
    x_dim: usize,
    l2: f64,
    layers: Vec<Layer>,
    /// The layers prepared for the f64 passes.
    double: Vec<Prepared<f64>>,
    /// The layers rounded to f32 and prepared, when the MLP computes in f32.
    single: Option<Vec<Prepared<f32>>>,
}

struct Tape {
    /// Inputs of each layer (h_0 = [x ; y], h_1, ...).
    inputs: Vec<Array2<f64>>,
    /// Derivatives of each layer's activation at its pre-activations
    /// (empty when no gradient is needed).
    deriv: Vec<Array2<f64>>,
    energy: Array1<f64>,
}

impl Mlp {
    /// Builds and checks an MLP: shapes chain, the last layer has one output,
    /// the first takes `x_dim + y_dim` inputs with `y_dim >= 1`, all finite, `l2 >= 0`.
    pub fn new(x_dim: usize, l2: f64, layers: Vec<Layer>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::param("layers", "an MLP needs at least one layer"));
        }
        if !(l2.is_finite() && l2 >= 0.0) {
            return Err(Error::param(
                "l2",
                format!("must be finite and >= 0, got {l2}"),
            ));
        }
        for (i, l) in layers.iter().enumerate() {
            if l.bias.len() != l.weight.ncols() {
                return Err(Error::shape(
                    format!("layers[{i}].bias"),
                    format!("({})", l.weight.ncols()),
                    format!("({})", l.bias.len()),
                ));
            }
            if i > 0 && layers[i - 1].weight.ncols() != l.weight.nrows() {
                return Err(Error::shape(
                    format!("layers[{i}].weight"),
                    format!(
                        "({}, _) to follow layer {} with {} outputs",
                        layers[i - 1].weight.ncols(),
                        i - 1,
                        layers[i - 1].weight.ncols()
                    ),
                    format!("{:?}", l.weight.shape()),
                ));
            }
            if l.weight.iter().chain(l.bias.iter()).any(|v| !v.is_finite()) {
                return Err(Error::param(
                    format!("layers[{i}]"),
                    "contains a non-finite number",
                ));
            }
        }
        let last = layers.last().expect("non-empty");
        if last.weight.ncols() != 1 {
            return Err(Error::shape(
                format!("layers[{}].weight", layers.len() - 1),
                "one output column (an energy is a scalar)",
                format!("{:?}", last.weight.shape()),
            ));
        }
        if layers[0].weight.nrows() <= x_dim {
            return Err(Error::shape(
                "layers[0].weight",
                format!("more than x_dim = {x_dim} input rows (x_dim + y_dim)"),
                format!("{:?}", layers[0].weight.shape()),
            ));
        }
        Ok(Mlp {
            double: prepare(&layers, x_dim, |v| v),
            x_dim,
            l2,
            layers,
            single: None,
        })
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Changes the layers in place (training): `update` gets them mutably;
    /// afterwards the shapes must be unchanged and every number finite,
    /// else an error is returned and the previous layers are restored.
    /// The f32 copy (if the MLP computes in f32) is refreshed.
    pub fn update_layers(&mut self, update: impl FnOnce(&mut [Layer])) -> Result<()> {
        let before = self.layers.clone();
        update(&mut self.layers);
        let same_shapes = before
            .iter()
            .zip(&self.layers)
            .all(|(a, b)| a.weight.dim() == b.weight.dim() && a.bias.len() == b.bias.len());
        let finite = self
            .layers
            .iter()
            .all(|l| l.weight.iter().chain(l.bias.iter()).all(|v| v.is_finite()));
        if !same_shapes || !finite {
            self.layers = before;
            return Err(Error::param(
                "layers",
                if same_shapes {
                    "an update made a weight or bias non-finite (previous layers kept)"
                } else {
                    "an update changed a layer's shape (previous layers kept)"
                },
            ));
        }
        self.double = prepare(&self.layers, self.x_dim, |v| v);
        if self.single.is_some() {
            self.single = Some(prepare(&self.layers, self.x_dim, |v| v as f32));
        }
        Ok(())
    }

    /// The precision of the energy and gradient arithmetic (f64 unless
    /// set with [`Mlp::with_precision`]).
    pub fn precision(&self) -> Precision {
        if self.single.is_some() {
            Precision::F32
        } else {
            Precision::F64
        }
    }

    /// This MLP computing its energies and `y`-gradients in `precision`:
    /// with [`Precision::F32`] the matrix products, activations and backward
    /// pass run in f32 on the weights rounded to f32 (inputs rounded,
    /// outputs widened to f64; the `l2` term stays f64).
    /// [`Mlp::param_grad`] always computes in f64.
    ///
    /// ```
    /// use boltz::energy::{Mlp, Precision};
    /// use boltz::{Family, model::load};
    /// let Family::Mlp(m) = load("mlp")?.family else { unreachable!() };
    /// let single = (*m).clone().with_precision(Precision::F32);
    /// assert_eq!(single.precision(), Precision::F32);
    /// # Ok::<(), boltz::Error>(())
    /// ```
    pub fn with_precision(mut self, precision: Precision) -> Mlp {
        self.single = match precision {
            Precision::F64 => None,
            Precision::F32 => Some(prepare(&self.layers, self.x_dim, |v| v as f32)),
        };
        self
    }

    /// The `l2` coefficient.
    pub fn l2(&self) -> f64 {
        self.l2
    }

    fn forward(&self, x: ArrayView2<f64>, y: ArrayView2<f64>, need_grad: bool) -> Tape {
        let n = y.nrows();
        let mut h = Array2::zeros((n, self.x_dim + y.ncols()));
        h.slice_mut(s![.., ..self.x_dim]).assign(&x);
        h.slice_mut(s![.., self.x_dim..]).assign(&y);
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut deriv = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let mut z = Array2::zeros((n, layer.weight.ncols()));
            matmul(h.view(), layer.weight.view(), z.view_mut(), false);
            add_row(z.view_mut(), layer.bias.view());
            let act = layer.activation;
            if need_grad {
                // z becomes the derivative in place; out the activation.
                let mut out = Array2::zeros(z.raw_dim());
                Zip::from(&mut out).and(&mut z).for_each(|o, a| {
                    let (f, df) = act.apply_with_derivative(*a);
                    *o = f;
                    *a = df;
                });
                deriv.push(z);
                inputs.push(h);
                h = out;
            } else {
                z.mapv_inplace(|a| act.apply(a));
                inputs.push(h);
                h = z;
            }
        }
        let mut energy = h.column(0).to_owned();
        if self.l2 > 0.0 {
            Zip::from(&mut energy)
                .and(y.rows())
                .for_each(|e, r| *e += 0.5 * self.l2 * r.dot(&r));
        }
        Tape {
            inputs,
            deriv,
            energy,
        }
    }

    /// Backward pass from `dF_i/d(out_i) = coef_i`; returns dz of each layer.
    fn backward(&self, tape: &Tape, coef: Option<ArrayView2<f64>>) -> Vec<Array2<f64>> {
        let n = tape.energy.len();
        let mut delta = match coef {
            Some(c) => c.to_owned(),
            None => Array2::ones((n, 1)),
        };
        let mut dz_all = vec![Array2::zeros((0, 0)); self.layers.len()];
        for l in (0..self.layers.len()).rev() {
            let mut dz = delta;
            dz *= &tape.deriv[l];
            if l > 0 {
                let w = &self.layers[l].weight;
                delta = Array2::zeros((n, w.nrows()));
                matmul(dz.view(), w.t(), delta.view_mut(), false);
            } else {
                delta = Array2::zeros((0, 0));
            }
            dz_all[l] = dz;
        }
        dz_all
    }

    /// Energies (and gradients) of one block of rows at this MLP's precision.
    fn block(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        e: ArrayViewMut1<f64>,
        grad: Option<ArrayViewMut2<f64>>,
    ) {
        match &self.single {
            Some(layers) => block_in::<f32>(self, layers, x, y, e, grad),
            None => block_in::<f64>(self, &self.double, x, y, e, grad),
        }
    }

    /// `sum_i coef_i * dF(x_i, y_i)/d(theta)` for every weight and bias.
    /// `coef` has one entry per row; a loss's gradient w.r.t. each energy
    /// goes there, so one call gives the loss's parameter gradient.
    pub fn param_grad(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        coef: &[f64],
    ) -> Result<MlpGrads> {
        let n = y.nrows();
        if x.nrows() != n
            || coef.len() != n
            || x.ncols() != self.x_dim
            || y.ncols() != ConditionalEnergy::y_dim(self)
        {
            return Err(Error::shape(
                "param_grad",
                format!(
                    "x ({n}, {}), y ({n}, {}), coef ({n})",
                    self.x_dim,
                    ConditionalEnergy::y_dim(self)
                ),
                format!(
                    "x {:?}, y {:?}, coef ({})",
                    x.shape(),
                    y.shape(),
                    coef.len()
                ),
            ));
        }
        let tape = self.forward(x, y, true);
        let c = Array2::from_shape_vec((n, 1), coef.to_vec()).expect("n x 1");
        let dz = self.backward(&tape, Some(c.view()));
        let weights = (0..self.layers.len())
            .map(|l| tape.inputs[l].t().dot(&dz[l]))
            .collect();
        let biases = dz.iter().map(|d| d.sum_axis(Axis(0))).collect();
        Ok(MlpGrads { weights, biases })
    }
}

impl ConditionalEnergy for Mlp {
    fn x_dim(&self) -> usize {
        self.x_dim
    }
    fn y_dim(&self) -> usize {
        self.layers[0].weight.nrows() - self.x_dim
    }
    fn energy_batch(&self, x: ArrayView2<f64>, y: ArrayView2<f64>, mut energy: ArrayViewMut1<f64>) {
        energy
            .axis_chunks_iter_mut(Axis(0), MLP_BLOCK)
            .into_par_iter()
            .enumerate()
            .for_each(|(b, eb)| {
                let r = b * MLP_BLOCK..b * MLP_BLOCK + eb.len();
                self.block(x.slice(s![r.clone(), ..]), y.slice(s![r, ..]), eb, None);
            });
    }
    fn energy_grad_batch(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: ArrayViewMut2<f64>,
    ) {
        energy
            .axis_chunks_iter_mut(Axis(0), MLP_BLOCK)
            .into_par_iter()
            .zip(grad.axis_chunks_iter_mut(Axis(0), MLP_BLOCK))
            .enumerate()
            .for_each(|(b, (eb, gb))| {
                let r = b * MLP_BLOCK..b * MLP_BLOCK + eb.len();
                self.block(x.slice(s![r.clone(), ..]), y.slice(s![r, ..]), eb, Some(gb));
            });
    }
}

/// The float types an MLP computes in, with their per-thread workspace and
/// their activation loop.
trait MlpFloat: Real + Gemm {
    fn with_work<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R;
    fn activate(level: SimdLevel, act: Activation, z: &mut [Self], out: &mut [Self], deriv: bool);
}

macro_rules! mlp_float {
    ($t:ty) => {
        impl MlpFloat for $t {
            fn with_work<R>(f: impl FnOnce(&mut Vec<Vec<$t>>) -> R) -> R {
                thread_local! {
                    static WORK: std::cell::RefCell<Vec<Vec<$t>>> =
                        const { std::cell::RefCell::new(Vec::new()) };
                }
                WORK.with(|cell| f(&mut cell.borrow_mut()))
            }
            fn activate(
                level: SimdLevel,
                act: Activation,
                z: &mut [$t],
                out: &mut [$t],
                deriv: bool,
            ) {
                activate(level, act, z, out, deriv)
            }
        }
    };
}
mlp_float!(f64);
mlp_float!(f32);

/// A layer ready for the batched passes in the float type `T`: its weight
/// packed for the forward product, its transpose (the first layer's `y`
/// rows only) for the backward one, and its bias.
#[derive(Clone, Debug)]
struct Prepared<T> {
    fwd: Packed<T>,
    bwd: Packed<T>,
    bias: Array1<T>,
}

/// The layers prepared in `T` (`round` maps an f64 to `T`).
fn prepare<T: Gemm>(layers: &[Layer], x_dim: usize, round: impl Fn(f64) -> T) -> Vec<Prepared<T>> {
    layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let w = layer.weight.mapv(&round);
            let rows = if l == 0 { x_dim } else { 0 };
            Prepared {
                fwd: Packed::new(w.view()),
                bwd: Packed::new(w.slice(s![rows.., ..]).t()),
                bias: layer.bias.mapv(&round),
            }
        })
        .collect()
}

/// Sizes the per-thread buffers of [`block_in`] for `n` rows: the input
/// (`in0` wide), each layer's output and derivative, and two for the
/// backward pass (wide enough for any layer and the `y_dim` gradient).
fn size_work<T: MlpFloat>(
    work: &mut Vec<Vec<T>>,
    widths: &[usize],
    n: usize,
    in0: usize,
    y_dim: usize,
) {
    let maxw = widths.iter().copied().chain([in0]).max().unwrap_or(1);
    let mut sizes = vec![n * in0];
    for w in widths {
        sizes.push(n * w);
        sizes.push(n * w);
    }
    sizes.push(n * maxw.max(y_dim));
    sizes.push(n * maxw.max(y_dim));
    if work.len() < sizes.len() {
        work.resize(sizes.len(), Vec::new());
    }
    for (b, &len) in work.iter_mut().zip(&sizes) {
        if b.len() < len {
            b.resize(len, T::ZERO);
        }
    }
}

/// Energies (and gradients) of one block of rows, computed in `T`, in a
/// per-thread workspace (no allocation once warm): forward through the
/// layers with the activation's derivative kept, then the backward pass for
/// `dF/dy`. Inputs are rounded to `T`, outputs widened to f64; the `l2`
/// term is added in f64.
fn block_in<T: MlpFloat>(
    mlp: &Mlp,
    params: &[Prepared<T>],
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
    mut e: ArrayViewMut1<f64>,
    grad: Option<ArrayViewMut2<f64>>,
) {
    let n = y.nrows();
    let nl = mlp.layers.len();
    let x_dim = mlp.x_dim;
    let need_grad = grad.is_some();
    let in0 = mlp.layers[0].weight.nrows();
    let y_dim = in0 - x_dim;
    let level = crate::simd::simd_level();
    T::with_work(|work| {
        // Buffers: 0 = input, 1 + 2l = output of layer l, 2 + 2l = its
        // derivative, then two for the backward pass.
        let widths: Vec<usize> = mlp.layers.iter().map(|l| l.weight.ncols()).collect();
        size_work(work, &widths, n, in0, y_dim);
        let (first, rest) = work.split_at_mut(1);
        for (i, row) in first[0][..n * in0].chunks_exact_mut(in0).enumerate() {
            for (d, v) in row[..x_dim].iter_mut().zip(x.row(i)) {
                *d = T::of(*v);
            }
            for (d, v) in row[x_dim..].iter_mut().zip(y.row(i)) {
                *d = T::of(*v);
            }
        }
        // Forward.
        for l in 0..nl {
            let layer = &params[l];
            let w = widths[l];
            let (before, after) = rest.split_at_mut(2 * l);
            let input: &[T] = if l == 0 {
                &first[0][..n * in0]
            } else {
                &before[2 * l - 2][..n * widths[l - 1]]
            };
            let in_w = if l == 0 { in0 } else { widths[l - 1] };
            let (outb, derb) = after.split_at_mut(1);
            let z = &mut derb[0][..n * w];
            let a = ArrayView2::from_shape((n, in_w), input).expect("shape");
            matmul_packed(
                a,
                &layer.fwd,
                ArrayViewMut2::from_shape((n, w), &mut *z).expect("shape"),
                false,
            );
            let bias = layer.bias.as_slice().expect("contiguous");
            for row in z.chunks_exact_mut(w) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += *b;
                }
            }
            T::activate(
                level,
                mlp.layers[l].activation,
                z,
                &mut outb[0][..n * w],
                need_grad,
            );
        }
        let last = &rest[2 * nl - 2][..n];
        for i in 0..n {
            e[i] = last[i].wide();
        }
        if mlp.l2 > 0.0 {
            Zip::from(&mut e)
                .and(y.rows())
                .for_each(|e, r| *e += 0.5 * mlp.l2 * r.dot(&r));
        }
        if let Some(g) = grad {
            backward(mlp, params, &widths, rest, y, g);
        }
    });
}

/// The backward pass of [`block_in`]: `dF/dy` of `n` rows from the forward
/// buffers in `rest` (output, then derivative, per layer; then two spare
/// buffers), written widened into `g`, plus the `l2` term.
fn backward<T: MlpFloat>(
    mlp: &Mlp,
    params: &[Prepared<T>],
    widths: &[usize],
    rest: &mut [Vec<T>],
    y: ArrayView2<f64>,
    mut g: ArrayViewMut2<f64>,
) {
    let (n, y_dim) = y.dim();
    let nl = widths.len();
    // Backward: dz_l = delta_l * f'_l, delta_{l-1} = dz_l W_l^T.
    let (layers_buf, back) = rest.split_at_mut(2 * nl);
    let (da, db) = back.split_at_mut(1);
    // Both buffers hold n * max(maxw, y_dim); each use slices what it needs.
    let mut dz: &mut [T] = &mut da[0][..];
    dz[..n * widths[nl - 1]].copy_from_slice(&layers_buf[2 * nl - 1][..n * widths[nl - 1]]);
    let mut spare: &mut [T] = &mut db[0][..];
    for l in (1..nl).rev() {
        let w = widths[l];
        let in_w = widths[l - 1];
        let next = &mut spare[..n * in_w];
        matmul_packed(
            ArrayView2::from_shape((n, w), &dz[..n * w]).expect("shape"),
            &params[l].bwd,
            ArrayViewMut2::from_shape((n, in_w), &mut *next).expect("shape"),
            false,
        );
        let d = &layers_buf[2 * l - 1][..n * in_w];
        for (v, dv) in next.iter_mut().zip(d) {
            *v = *v * *dv;
        }
        let old = std::mem::take(&mut dz);
        dz = next;
        spare = old;
    }
    let gy = &mut spare[..n * y_dim];
    matmul_packed(
        ArrayView2::from_shape((n, widths[0]), &dz[..n * widths[0]]).expect("shape"),
        &params[0].bwd,
        ArrayViewMut2::from_shape((n, y_dim), &mut *gy).expect("shape"),
        false,
    );
    for (mut grow, gs) in g.rows_mut().into_iter().zip(gy.chunks_exact(y_dim)) {
        for (d, v) in grow.iter_mut().zip(gs) {
            *d = v.wide();
        }
    }
    if mlp.l2 > 0.0 {
        g.scaled_add(mlp.l2, &y);
    }
}
