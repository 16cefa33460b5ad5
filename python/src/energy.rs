//! The `Energy` class (suite targets, model files, native MLPs, callbacks) and its constructors.

use super::*;

/// Energies (n,) and gradients (n, dim) as numpy arrays.
pub(crate) type EnergyAndGrad<'py> = (Bound<'py, numpy::PyArray1<f64>>, Bound<'py, PyArray2<f64>>);

/// An energy boltz can sample: a suite target, a model file, a native MLP
/// or a Python callback. `dim` is the dimension of `y`, `x_dim` that of
/// the context `x` (0 for unconditional models).
#[pyclass(subclass, module = "boltz._native", frozen)]
pub(crate) struct Energy {
    /// The model: replaced whole (never edited) by `load_weights`, so a
    /// job that took a copy runs on one set of weights throughout.
    model: std::sync::RwLock<Model>,
    pub(crate) callback: Option<Arc<Callback>>,
}

impl Energy {
    pub(crate) fn of(model: Model, callback: Option<Arc<Callback>>) -> Self {
        Energy {
            model: std::sync::RwLock::new(model),
            callback,
        }
    }

    /// The model as it is now (a cheap copy: its parameters are shared).
    pub(crate) fn model(&self) -> Model {
        match self.model.read() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn callbacks(&self) -> Vec<Arc<Callback>> {
        self.callback.iter().cloned().collect()
    }
}

#[pymethods]
impl Energy {
    /// Dimension of a state `y`.
    #[getter]
    pub(crate) fn dim(&self) -> usize {
        self.model().dim()
    }
    /// Dimension of the context `x` (0: unconditional).
    #[getter]
    pub(crate) fn x_dim(&self) -> usize {
        self.model().x_dim()
    }
    /// The model's name (suite name, file path, or the callback's name).
    #[getter]
    pub(crate) fn name(&self) -> String {
        self.model().name.clone()
    }
    /// The family (`gaussian`, `mixture`, `funnel`, `ring`, `mlp`, `rbm`, `custom`).
    #[getter]
    pub(crate) fn kind(&self) -> &'static str {
        self.model().kind()
    }
    /// The precision of the energy's arithmetic, `f64` or `f32`.
    #[getter]
    pub(crate) fn precision(&self) -> &'static str {
        self.model().precision().name()
    }
    /// This energy computing in `precision` (`f64` or `f32`; f32 only for
    /// `mlp` and `rbm` models): a new Energy, this one unchanged.
    pub(crate) fn with_precision(&self, precision: &str) -> PyResult<Energy> {
        if self.callback.is_some() {
            return Err(BoltzError::new_err(
                "invalid value for `precision`: a callback energy computes in its own precision",
            ));
        }
        let p = boltz::energy::Precision::parse(precision).map_err(to_py)?;
        let model = self.model().with_precision(p).map_err(to_py)?;
        Ok(Energy::of(model, None))
    }
    /// Whether states are binary vectors (0.0 / 1.0).
    #[getter]
    pub(crate) fn binary(&self) -> bool {
        self.model()
            .energy(self.model().default_context.clone())
            .is_ok_and(|e| e.space() == StateSpace::Binary)
    }
    /// The torch device the energy computes on (`cpu` but for a callback
    /// given another, as `torch_energy` on a GPU module): arguments that
    /// are tensors on another device than the CPU or this one are refused.
    #[getter]
    pub(crate) fn device(&self) -> String {
        self.callback
            .as_ref()
            .map_or_else(|| "cpu".into(), |c| c.device.clone())
    }
    /// Exact log Z at beta 1 where known (closed form or enumeration), else None.
    #[getter]
    pub(crate) fn exact_log_z(&self) -> Option<f64> {
        self.model().exact_log_z
    }
    /// `(calls, seconds inside fn, seconds of the whole evaluations)` of a
    /// callback energy so far (None for native energies): the difference of
    /// the last two is the callback path's overhead (lock, copies, checks).
    pub(crate) fn callback_stats(&self) -> Option<(u64, f64, f64)> {
        self.callback.as_ref().map(|c| {
            (
                c.calls.load(Ordering::Relaxed),
                c.inside_ns.load(Ordering::Relaxed) as f64 * 1e-9,
                c.total_ns.load(Ordering::Relaxed) as f64 * 1e-9,
            )
        })
    }
    /// `(energies (n,), gradients (n, dim))` of the rows of `y` (n, dim); a
    /// conditional energy takes `x` (n, x_dim) or one row for all.
    #[pyo3(signature = (y, x=None))]
    pub(crate) fn energy_and_grad<'py>(
        &self,
        py: Python<'py>,
        y: PyReadonlyArray2<'py, f64>,
        x: Option<PyReadonlyArray2<'py, f64>>,
    ) -> PyResult<EnergyAndGrad<'py>> {
        let (n, d) = y.as_array().dim();
        let model_dim = self.model().dim();
        if d != model_dim {
            return Err(BoltzError::new_err(format!(
                "shape mismatch in y: expected (n, {model_dim}), got ({n}, {d})"
            )));
        }
        // The copy, the energies and the gradients, before any of them.
        boltz::budget::check(
            "y",
            "points and gradients",
            boltz::budget::bytes(&[n, 2 * d + 1], 8),
        )
        .map_err(to_py)?;
        let y = y.as_array().to_owned();
        let x = owned2(x);
        if self.model().x_dim() == 0 && x.as_ref().is_some_and(|x| x.ncols() > 0) {
            return Err(BoltzError::new_err(format!(
                "invalid value for `x`: model `{}` is not conditional",
                self.model().name
            )));
        }
        let x = x.filter(|_| self.model().x_dim() > 0);
        let model = self.model();
        let (e, g) = run_job(py, &self.callbacks(), move |stop| {
            let n = y.nrows();
            if model.x_dim() > 0 && x.is_none() {
                return Err(boltz::Error::param(
                    "x",
                    format!(
                        "model `{}` is conditional F(x, y): give contexts x (n or 1 rows, {} columns)",
                        model.name,
                        model.x_dim()
                    ),
                ));
            }
            if let Some(x) = &x
                && x.nrows() != n
                && x.nrows() != 1
            {
                return Err(boltz::Error::shape(
                    "x",
                    format!("({n} or 1, {})", model.x_dim()),
                    format!("{:?}", x.shape()),
                ));
            }
            let energy = model.energy(x)?;
            // In blocks of rows, looking for Ctrl-C between them (the
            // energies of a row do not depend on its block); rows with a
            // context each go in one piece.
            const BLOCK: usize = 4096;
            if n <= BLOCK || energy.fixed_rows().is_some() {
                return boltz::energy::evaluate_with_grad(energy.as_ref(), y.view());
            }
            let mut e = ndarray::Array1::zeros(n);
            let mut g = ndarray::Array2::zeros((n, y.ncols()));
            for lo in (0..n).step_by(BLOCK) {
                if stop.load(Ordering::Relaxed) {
                    return Err(boltz::Error::Interrupted("stopped".into()));
                }
                let hi = (lo + BLOCK).min(n);
                let rows = y.slice(ndarray::s![lo..hi, ..]);
                let (eb, gb) = boltz::energy::evaluate_with_grad(energy.as_ref(), rows)?;
                e.slice_mut(ndarray::s![lo..hi]).assign(&eb);
                g.slice_mut(ndarray::s![lo..hi, ..]).assign(&gb);
            }
            Ok((e, g))
        })?;
        Ok((e.into_pyarray(py), g.into_pyarray(py)))
    }

    /// Loads new parameters of the same shapes into this energy, in place
    /// (a training step's weights): an `mlp`'s weights (in x out, as
    /// `mlp_energy` takes them) and biases per layer, or an `rbm`'s
    /// `[W]` (V x H) and `[visible_bias, hidden_bias]`. Samplers built on
    /// this energy (a `Negatives` with its chains and buffer) see the new
    /// weights from their next call; a call in progress finishes on the
    /// old ones. Shapes must match and every number be finite (else an
    /// error, the old weights kept).
    pub(crate) fn load_weights(
        &self,
        py: Python<'_>,
        weights: Vec<PyReadonlyArray2<'_, f64>>,
        biases: Vec<numpy::PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<()> {
        let w: Vec<ndarray::Array2<f64>> =
            weights.iter().map(|a| a.as_array().to_owned()).collect();
        let b: Vec<ndarray::Array1<f64>> = biases.iter().map(|a| a.as_array().to_owned()).collect();
        let current = self.model();
        let next = py.detach(|| current.with_weights(w, b)).map_err(to_py)?;
        match self.model.write() {
            Ok(mut m) => *m = next,
            Err(p) => *p.into_inner() = next,
        }
        Ok(())
    }

    /// The fingerprint of the model's architecture and settings (not its
    /// weights): what a `Negatives` state is tied to.
    #[getter]
    pub(crate) fn architecture(&self) -> String {
        self.model().architecture_fingerprint()
    }

    pub(crate) fn __repr__(&self) -> String {
        format!(
            "boltz.Energy(name={:?}, kind={:?}, dim={}, x_dim={})",
            self.model().name,
            self.model().kind(),
            self.model().dim(),
            self.model().x_dim()
        )
    }
}

/// CallbackEnergy(fn, dim, x_dim=0, binary=False, name=None, leapfrog=None)
///
/// An energy given by a Python function, evaluated for all chains at once.
///
/// `fn(y)` (or `fn(y, x)` when `x_dim > 0`) receives the positions of all
/// chains as one C-contiguous float64 array of shape (n, dim) (and their
/// contexts, (n, x_dim)) and returns `(energies, gradients)`: float64
/// arrays of shapes (n,) and (n, dim), the gradient with respect to `y`.
/// It is called once per energy evaluation, from one thread, with the
/// interpreter lock taken only for the call; the array passed in is a
/// buffer boltz reuses from call to call (copy it to keep it). An
/// exception inside `fn`, or a result of the wrong shape or dtype, ends
/// the run with an exception that names the problem; non-finite energies
/// are divergences, as everywhere. `binary=True`: states are 0/1 vectors
/// (Gibbs, exact enumeration up to 20 bits).
///
/// `leapfrog` (unconditional continuous energies): the energy's own
/// integrator, `leapfrog(y, p, g, eps, inv_mass, h_max, steps) -> (ys,
/// ps, gs, es)`, so that NUTS and HMC make one call per trajectory
/// segment (NUTS: per doubling; HMC: per transition) instead of one per
/// leapfrog step. From positions `y`, momenta `p` and gradients `g`
/// (float64, (n, dim)), signed step sizes `eps` (n,) (0: the row stays)
/// and diagonal inverse masses `inv_mass` (n, dim), it takes `steps`
/// steps of `p -= (eps/2) g; y += (eps inv_mass) p; (e, g) = energy and
/// gradient at y; p -= (eps/2) g` and returns every step's state: float64
/// arrays of shapes (steps, n, dim) (positions, momenta, gradients) and
/// (steps, n) (energies). A row whose Hamiltonian `e + sum(inv_mass p^2)
/// / 2` after a step is not below `h_max` (n,) (or is NaN) stops there:
/// nothing more is evaluated for it and its later states are NaN (NUTS
/// gives its divergence bound, so nothing past a divergence is evaluated;
/// HMC gives inf). With exactly that arithmetic the draws equal `fn`'s
/// alone; the other kernels call `fn`. `jax_energy` and `torch_energy`
/// build one.
///
/// `device` (default `cpu`): the torch device `fn` computes on, as torch
/// names it (`cuda:0`). Calls given torch tensors on that device take
/// them (each batch crosses to the CPU once a call, as every argument
/// does); tensors on any other device but the CPU are refused.
/// `torch_energy` sets it to its module's device.
#[pyclass(extends = Energy, module = "boltz._native", frozen)]
pub(crate) struct CallbackEnergy {}

#[pymethods]
impl CallbackEnergy {
    #[new]
    #[pyo3(signature = (func, dim, x_dim=None, binary=None, name=None, leapfrog=None, device=None))]
    pub(crate) fn new(
        func: Bound<'_, PyAny>,
        dim: Bound<'_, PyAny>,
        x_dim: Option<Bound<'_, PyAny>>,
        binary: Option<Bound<'_, PyAny>>,
        name: Option<String>,
        leapfrog: Option<Bound<'_, PyAny>>,
        device: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        if !func.is_callable() {
            return Err(BoltzError::new_err(
                "invalid value for `fn`: must be callable as fn(y) or fn(y, x)",
            ));
        }
        let dim = int_arg(&dim, "dim")?;
        let x_dim = x_dim.map_or(Ok(0), |x| int_arg(&x, "x_dim"))?;
        let binary = match binary {
            None => false,
            Some(b) => b.extract::<bool>().map_err(|_| {
                BoltzError::new_err(format!(
                    "invalid value for `binary`: expected True or False, got {b}"
                ))
            })?,
        };
        takes_args(&func, if x_dim > 0 { 2 } else { 1 })?;
        if dim == 0 {
            return Err(BoltzError::new_err("invalid value for `dim`: must be >= 1"));
        }
        if dim > 1 << 24 || x_dim > 1 << 24 {
            return Err(BoltzError::new_err(
                "invalid value for `dim`: absurdly large (at most 2^24)",
            ));
        }
        if binary && x_dim > 0 {
            return Err(BoltzError::new_err(
                "invalid value for `binary`: binary callbacks take no context (x_dim 0)",
            ));
        }
        let leapfrog = leapfrog.filter(|l| !l.is_none());
        if let Some(l) = &leapfrog {
            if !l.is_callable() {
                return Err(BoltzError::new_err(
                    "invalid value for `leapfrog`: must be callable as leapfrog(y, p, g, eps, inv_mass, h_max, steps)",
                ));
            }
            if x_dim > 0 || binary {
                return Err(BoltzError::new_err(
                    "invalid value for `leapfrog`: only an unconditional continuous energy (x_dim 0, binary False) takes one",
                ));
            }
            takes_args(l, 7)?;
        }
        let name = name.unwrap_or_else(|| {
            func.getattr("__name__")
                .and_then(|n| n.extract::<String>())
                .unwrap_or_else(|_| "callback".into())
        });
        let cb = Arc::new(Callback {
            func: func.unbind(),
            leapfrog: leapfrog.map(Bound::unbind),
            device: device.unwrap_or_else(|| "cpu".into()),
            dim,
            x_dim,
            conditional: x_dim > 0,
            binary,
            state: Mutex::new(CallbackState::default()),
            stop: Mutex::new(None),
            calls: AtomicU64::new(0),
            inside_ns: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
        });
        let model = if x_dim > 0 {
            Model::custom_conditional(name, Arc::new(CallbackXY(cb.clone())))
        } else {
            Model::custom(name, Arc::new(CallbackY(cb.clone())))
        };
        Ok(PyClassInitializer::from(Energy::of(model, Some(cb))).add_subclass(CallbackEnergy {}))
    }
}

/// A count given from Python: an int (not a bool, not a float), >= 0.
fn int_arg(v: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    let bad = |why: String| BoltzError::new_err(format!("invalid value for `{name}`: {why}"));
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(bad(format!("expected an integer, got {v}")));
    }
    let i: i128 = v
        .extract()
        .map_err(|_| bad(format!("expected an integer, got {v}")))?;
    usize::try_from(i).map_err(|_| bad(format!("must be >= 0, got {i}")))
}

/// Whether `func` can be called with `n` positional arguments (`fn(y)`, or
/// `fn(y, x)` for a conditional energy; 7 for `leapfrog`); functions
/// whose signature cannot be read (some builtins) pass.
fn takes_args(func: &Bound<'_, PyAny>, n: usize) -> PyResult<()> {
    let py = func.py();
    let Ok(sig) = py
        .import("inspect")
        .and_then(|i| i.getattr("signature"))
        .and_then(|s| s.call1((func,)))
    else {
        return Ok(());
    };
    let args: Vec<Py<PyAny>> = (0..n).map(|_| py.None()).collect();
    if sig
        .call_method1("bind", pyo3::types::PyTuple::new(py, args)?)
        .is_err()
    {
        let (name, shape, why) = match n {
            1 => ("fn", "fn(y)", ""),
            2 => (
                "fn",
                "fn(y, x)",
                ": a conditional energy (x_dim > 0) is called with the contexts too",
            ),
            _ => (
                "leapfrog",
                "leapfrog(y, p, g, eps, inv_mass, h_max, steps)",
                "",
            ),
        };
        return Err(BoltzError::new_err(format!(
            "invalid value for `{name}`: it must take {n} argument{} ({shape}){why}",
            if n == 1 { "" } else { "s" },
        )));
    }
    Ok(())
}

/// Loads a suite target (`gauss-ill`, `gmm-ring`, `funnel`, `mlp`, `rbm20`,
/// ...) or a JSON model file, as the command-line tool does.
#[pyfunction]
pub(crate) fn load_model(py: Python<'_>, spec: String) -> PyResult<Energy> {
    let model = run_job(py, &[], move |_| boltz::model::load(&spec))?;
    Ok(Energy::of(model, None))
}

/// The native MLP energy `net([x ; y]) + 0.5 l2 |y|^2` from layers given as
/// (weight (in, out), bias (out,)) float64 arrays and activation names.
#[pyfunction]
#[pyo3(signature = (weights, biases, activations, x_dim=0, l2=0.0, name=None))]
pub(crate) fn mlp_energy(
    weights: Vec<PyReadonlyArray2<'_, f64>>,
    biases: Vec<numpy::PyReadonlyArray1<'_, f64>>,
    activations: Vec<String>,
    x_dim: usize,
    l2: f64,
    name: Option<String>,
) -> PyResult<Energy> {
    if weights.len() != biases.len() || weights.len() != activations.len() {
        return Err(BoltzError::new_err(format!(
            "invalid value for `layers`: {} weights, {} biases and {} activations",
            weights.len(),
            biases.len(),
            activations.len()
        )));
    }
    let mut layers = Vec::new();
    for (i, ((w, b), a)) in weights.iter().zip(&biases).zip(&activations).enumerate() {
        let activation = boltz::energy::Activation::parse(a).ok_or_else(|| {
            BoltzError::new_err(format!(
                "invalid value for `activations[{i}]`: unknown activation `{a}` (silu, relu, tanh, softplus, none)"
            ))
        })?;
        layers.push(boltz::energy::Layer {
            weight: w.as_array().to_owned(),
            bias: b.as_array().to_owned(),
            activation,
        });
    }
    let mlp = boltz::energy::Mlp::new(x_dim, l2, layers).map_err(to_py)?;
    let model = Model::new(
        name.unwrap_or_else(|| "mlp".into()),
        boltz::model::Family::Mlp(Arc::new(mlp)),
    );
    Ok(Energy::of(model, None))
}
