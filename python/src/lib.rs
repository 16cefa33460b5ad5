//! `boltz._native`: the Python package's native module.
//!
//! A thin front over the library's jobs ([`boltz::jobs`]): it turns numpy
//! arrays into ndarray values, runs each job on a worker thread with the
//! interpreter lock released, polls for Ctrl-C (`KeyboardInterrupt` within
//! a fraction of a second), turns library errors into `BoltzError` (a
//! `ValueError`) and a Rust panic into a `BoltzError` too, so that the
//! interpreter never dies with it. The Python layer (`pysrc/boltz`) adds
//! defaults, docstrings, dtype conversion and the torch helpers.

use boltz::energy::{ConditionalEnergy, Energy as EnergyTrait, StateSpace};
use boltz::jobs::{LogzJob, NegativesJob, SampleJob};
use boltz::run::{Control, Observer, Progress};
use boltz::{Model, NegativeSampler};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use numpy::{
    IntoPyArray, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray3,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

create_exception!(
    boltz,
    BoltzError,
    PyValueError,
    "An error from boltz: bad input (a setting out of range, a shape that does not fit, a file that cannot be read) or a failed run. The message is the command-line tool's one-line message."
);

/// A library error as a Python exception: a stop is `KeyboardInterrupt`,
/// everything else `BoltzError` with the library's one-line message.
fn to_py(e: boltz::Error) -> PyErr {
    match e {
        boltz::Error::Interrupted(m) => PyKeyboardInterrupt::new_err(m),
        other => BoltzError::new_err(other.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Callback energies
// ---------------------------------------------------------------------------

/// Buffers reused from call to call, and the first error of the current run.
#[derive(Default)]
struct CallbackState {
    /// Positions handed to `fn` (n x dim), reused while `n` stays the same.
    y: Option<Py<PyArray2<f64>>>,
    /// Contexts handed to `fn` (n x x_dim), for conditional energies.
    x: Option<Py<PyArray2<f64>>>,
    /// The first error of the run (an exception in `fn`, a wrong shape or dtype).
    error: Option<PyErr>,
}

/// A Python function `fn(y) -> (energies, gradients)` (or `fn(y, x)`) as a
/// batched energy: called once per evaluation for the whole batch, with the
/// interpreter lock taken only for the call.
struct Callback {
    func: Py<PyAny>,
    dim: usize,
    x_dim: usize,
    conditional: bool,
    binary: bool,
    state: Mutex<CallbackState>,
    /// The stop flag of the run using this energy: an error sets it so the
    /// run ends after the current step; once set, calls return NaN at once.
    stop: Mutex<Option<Arc<AtomicBool>>>,
    /// Calls of `fn`, nanoseconds spent inside it, and nanoseconds of the
    /// whole evaluation (lock, copies, checks): the overhead figures.
    calls: AtomicU64,
    inside_ns: AtomicU64,
    total_ns: AtomicU64,
}

/// A callback's result checked: a float64 numpy array of `shape`.
fn checked<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    shape: &[usize],
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let arr = obj.cast::<PyUntypedArray>().map_err(|_| {
        BoltzError::new_err(format!(
            "callback: {what} must be a numpy array of float64 with shape {shape:?}, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "an unknown type".into())
        ))
    })?;
    let dt = arr.dtype();
    if !dt.is_equiv_to(&numpy::dtype::<f64>(obj.py())) {
        return Err(BoltzError::new_err(format!(
            "callback: {what} have dtype {}, expected float64 (convert with .astype(numpy.float64))",
            dt.str()
                .map(|s| s.to_string())
                .unwrap_or_else(|_| "?".into())
        )));
    }
    if arr.shape() != shape {
        return Err(BoltzError::new_err(format!(
            "callback: {what} have shape {:?}, expected {shape:?}",
            arr.shape()
        )));
    }
    Ok(arr.clone())
}

/// A reusable (n x d) float64 buffer holding `src`.
fn fill_buffer<'py>(
    py: Python<'py>,
    slot: &mut Option<Py<PyArray2<f64>>>,
    src: ArrayView2<f64>,
) -> Bound<'py, PyArray2<f64>> {
    let fits = slot
        .as_ref()
        .is_some_and(|b| b.bind(py).dims() == [src.nrows(), src.ncols()]);
    if !fits {
        *slot = Some(PyArray2::<f64>::zeros(py, [src.nrows(), src.ncols()], false).unbind());
    }
    let buf = slot.as_ref().map(|b| b.bind(py).clone());
    let buf = buf.unwrap_or_else(|| PyArray2::<f64>::zeros(py, [src.nrows(), src.ncols()], false));
    if let Ok(mut w) = buf.try_readwrite() {
        let mut dst = w.as_array_mut();
        match (dst.as_slice_mut(), src.as_slice()) {
            (Some(d), Some(s)) => d.copy_from_slice(s),
            _ => dst.assign(&src),
        }
    }
    buf
}

impl Callback {
    fn stopped(&self) -> bool {
        self.stop
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|f| f.load(Ordering::SeqCst)))
            .unwrap_or(false)
    }

    /// Records the first error of the run and stops the run.
    fn fail(&self, e: PyErr) {
        if let Ok(mut st) = self.state.lock()
            && st.error.is_none()
        {
            st.error = Some(e);
        }
        if let Ok(s) = self.stop.lock()
            && let Some(f) = s.as_ref()
        {
            f.store(true, Ordering::SeqCst);
        }
    }

    /// Arms the callback for a run stopped by `stop`; clears old errors.
    fn arm(&self, stop: Arc<AtomicBool>) {
        if let Ok(mut s) = self.stop.lock() {
            *s = Some(stop);
        }
        if let Ok(mut st) = self.state.lock() {
            st.error = None;
        }
    }

    /// The run's first error, taken.
    fn take_error(&self) -> Option<PyErr> {
        self.state.lock().ok().and_then(|mut st| st.error.take())
    }

    fn eval(
        &self,
        x: Option<ArrayView2<f64>>,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: Option<ArrayViewMut2<f64>>,
    ) {
        let start = Instant::now();
        let n = y.nrows();
        let mut ok = false;
        if !self.stopped() && n > 0 {
            let r = Python::attach(|py| -> PyResult<()> {
                let mut st = self
                    .state
                    .lock()
                    .map_err(|_| BoltzError::new_err("callback state poisoned"))?;
                let yb = fill_buffer(py, &mut st.y, y);
                let args = if self.conditional {
                    let xv = x.ok_or_else(|| BoltzError::new_err("no contexts"))?;
                    let xb = fill_buffer(py, &mut st.x, xv);
                    PyTuple::new(py, [yb.into_any(), xb.into_any()])?
                } else {
                    PyTuple::new(py, [yb.into_any()])?
                };
                drop(st);
                let t = Instant::now();
                let res = self.func.bind(py).call1(args);
                self.inside_ns
                    .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                self.calls.fetch_add(1, Ordering::Relaxed);
                let res = res?;
                let pair = res.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
                let (e, g) = match pair {
                    Some(t) => (t.get_item(0)?, t.get_item(1)?),
                    None => {
                        let seq: Option<(Bound<PyAny>, Bound<PyAny>)> = res.extract().ok();
                        seq.ok_or_else(|| {
                            BoltzError::new_err(format!(
                                "callback must return a pair (energies of shape ({n},), gradients of shape ({n}, {})), got {}",
                                self.dim,
                                res.get_type().name().map(|s| s.to_string()).unwrap_or_default()
                            ))
                        })?
                    }
                };
                let e = checked(&e, "energies", &[n])?;
                let g = checked(&g, "gradients", &[n, self.dim])?;
                energy.assign(&e.cast::<numpy::PyArray1<f64>>()?.readonly().as_array());
                if let Some(gr) = grad.as_mut() {
                    gr.assign(&g.cast::<PyArray2<f64>>()?.readonly().as_array());
                }
                Ok(())
            });
            match r {
                Ok(()) => ok = true,
                Err(e) => self.fail(e),
            }
        }
        if !ok {
            energy.fill(f64::NAN);
            if let Some(g) = grad.as_mut() {
                g.fill(f64::NAN);
            }
        }
        self.total_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// A callback in `y` only (`x_dim` 0).
struct CallbackY(Arc<Callback>);
/// A conditional callback `fn(y, x)`.
struct CallbackXY(Arc<Callback>);

impl EnergyTrait for CallbackY {
    fn dim(&self) -> usize {
        self.0.dim
    }
    fn energy_batch(&self, y: ArrayView2<f64>, energy: ArrayViewMut1<f64>) {
        self.0.eval(None, y, energy, None);
    }
    fn energy_grad_batch(
        &self,
        y: ArrayView2<f64>,
        energy: ArrayViewMut1<f64>,
        grad: ArrayViewMut2<f64>,
    ) {
        self.0.eval(None, y, energy, Some(grad));
    }
    fn space(&self) -> StateSpace {
        if self.0.binary {
            StateSpace::Binary
        } else {
            StateSpace::Continuous
        }
    }
}

impl ConditionalEnergy for CallbackXY {
    fn x_dim(&self) -> usize {
        self.0.x_dim
    }
    fn y_dim(&self) -> usize {
        self.0.dim
    }
    fn energy_batch(&self, x: ArrayView2<f64>, y: ArrayView2<f64>, energy: ArrayViewMut1<f64>) {
        self.0.eval(Some(x), y, energy, None);
    }
    fn energy_grad_batch(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView2<f64>,
        energy: ArrayViewMut1<f64>,
        grad: ArrayViewMut2<f64>,
    ) {
        self.0.eval(Some(x), y, energy, Some(grad));
    }
}

// ---------------------------------------------------------------------------
// Running jobs
// ---------------------------------------------------------------------------

/// Progress on stderr, a few times a second (`progress=True`).
struct StderrProgress {
    on: bool,
    last: Option<Instant>,
}

impl Observer for StderrProgress {
    fn observe(&mut self, p: &Progress) {
        if !self.on {
            return;
        }
        let done = p.step >= p.total;
        if !done
            && self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(Instant::now());
        let phase = p.phase.name();
        eprint!(
            "\rboltz {phase}: {}/{} steps, accept {:.2}, step {:.3e}, divergences {}   ",
            p.step, p.total, p.accept_rate, p.step_size, p.divergences
        );
        if done {
            eprintln!();
        }
    }
}

/// How often a waiting call takes the interpreter lock to look for Ctrl-C:
/// often enough to stop within a fraction of a second, rarely enough not to
/// take the lock from a callback running on the worker (each look forces a
/// switch of the lock).
const POLL: Duration = Duration::from_millis(100);

/// Runs `job` on a worker thread with the interpreter lock released;
/// Ctrl-C (checked every 100 ms) sets the stop flag and raises
/// `KeyboardInterrupt`; the first error of a callback energy is raised as
/// it is; a panic becomes a `BoltzError`.
fn run_job<T: Send + 'static>(
    py: Python<'_>,
    callbacks: &[Arc<Callback>],
    job: impl FnOnce(Arc<AtomicBool>) -> boltz::Result<T> + Send + 'static,
) -> PyResult<T> {
    let stop = Arc::new(AtomicBool::new(false));
    for c in callbacks {
        c.arm(stop.clone());
    }
    let s2 = stop.clone();
    let handle = std::thread::Builder::new()
        .name("boltz-job".into())
        .spawn(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(s2))))
        .map_err(|e| BoltzError::new_err(format!("cannot start a worker thread: {e}")))?;
    let mut interrupt: Option<PyErr> = None;
    let mut waited_after_stop = Duration::ZERO;
    loop {
        let finished = py.detach(|| {
            let t = Instant::now();
            while t.elapsed() < POLL {
                if handle.is_finished() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            handle.is_finished()
        });
        if finished {
            break;
        }
        if interrupt.is_none() {
            if let Err(e) = py.check_signals() {
                stop.store(true, Ordering::SeqCst);
                interrupt = Some(e);
            }
        } else {
            waited_after_stop += POLL;
            // Every loop stops within a step; one that does not (a long
            // native step) is left to finish on its own.
            if waited_after_stop > Duration::from_secs(2) {
                return Err(interrupt.unwrap_or_else(|| PyKeyboardInterrupt::new_err("")));
            }
        }
    }
    let joined = handle
        .join()
        .map_err(|_| BoltzError::new_err("the worker thread failed"))?;
    let callback_error = callbacks.iter().find_map(|c| c.take_error());
    for c in callbacks {
        if let Ok(mut s) = c.stop.lock() {
            *s = None;
        }
    }
    if let Some(e) = interrupt {
        return Err(e);
    }
    if let Some(e) = callback_error {
        return Err(e);
    }
    match joined {
        Ok(r) => r.map_err(to_py),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(BoltzError::new_err(format!(
                "internal error (a panic in boltz, please report it): {msg}"
            )))
        }
    }
}

fn control(stop: Arc<AtomicBool>) -> Control {
    Control {
        stop: Some(stop),
        ..Control::default()
    }
}

fn owned2(a: Option<PyReadonlyArray2<'_, f64>>) -> Option<Array2<f64>> {
    a.map(|a| a.as_array().to_owned())
}

// ---------------------------------------------------------------------------
// Energies
// ---------------------------------------------------------------------------

/// Energies (n,) and gradients (n, dim) as numpy arrays.
type EnergyAndGrad<'py> = (Bound<'py, numpy::PyArray1<f64>>, Bound<'py, PyArray2<f64>>);

/// An energy boltz can sample: a suite target, a model file, a native MLP
/// or a Python callback. `dim` is the dimension of `y`, `x_dim` that of
/// the context `x` (0 for unconditional models).
#[pyclass(subclass, module = "boltz._native", frozen)]
struct Energy {
    model: Model,
    callback: Option<Arc<Callback>>,
}

impl Energy {
    fn callbacks(&self) -> Vec<Arc<Callback>> {
        self.callback.iter().cloned().collect()
    }
}

#[pymethods]
impl Energy {
    /// Dimension of a state `y`.
    #[getter]
    fn dim(&self) -> usize {
        self.model.dim()
    }
    /// Dimension of the context `x` (0: unconditional).
    #[getter]
    fn x_dim(&self) -> usize {
        self.model.x_dim()
    }
    /// The model's name (suite name, file path, or the callback's name).
    #[getter]
    fn name(&self) -> String {
        self.model.name.clone()
    }
    /// The family (`gaussian`, `mixture`, `funnel`, `ring`, `mlp`, `rbm`, `custom`).
    #[getter]
    fn kind(&self) -> &'static str {
        self.model.kind()
    }
    /// The precision of the energy's arithmetic, `f64` or `f32`.
    #[getter]
    fn precision(&self) -> &'static str {
        self.model.precision().name()
    }
    /// This energy computing in `precision` (`f64` or `f32`; f32 only for
    /// `mlp` and `rbm` models): a new Energy, this one unchanged.
    fn with_precision(&self, precision: &str) -> PyResult<Energy> {
        if self.callback.is_some() {
            return Err(BoltzError::new_err(
                "invalid value for `precision`: a callback energy computes in its own precision",
            ));
        }
        let p = boltz::energy::Precision::parse(precision).map_err(to_py)?;
        let model = self.model.clone().with_precision(p).map_err(to_py)?;
        Ok(Energy {
            model,
            callback: None,
        })
    }
    /// Whether states are binary vectors (0.0 / 1.0).
    #[getter]
    fn binary(&self) -> bool {
        self.model
            .energy(self.model.default_context.clone())
            .is_ok_and(|e| e.space() == StateSpace::Binary)
    }
    /// Exact log Z at beta 1 where known (closed form or enumeration), else None.
    #[getter]
    fn exact_log_z(&self) -> Option<f64> {
        self.model.exact_log_z
    }
    /// `(calls, seconds inside fn, seconds of the whole evaluations)` of a
    /// callback energy so far (None for native energies): the difference of
    /// the last two is the callback path's overhead (lock, copies, checks).
    fn callback_stats(&self) -> Option<(u64, f64, f64)> {
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
    fn energy_and_grad<'py>(
        &self,
        py: Python<'py>,
        y: PyReadonlyArray2<'py, f64>,
        x: Option<PyReadonlyArray2<'py, f64>>,
    ) -> PyResult<EnergyAndGrad<'py>> {
        let y = y.as_array().to_owned();
        let x = owned2(x);
        if self.model.x_dim() == 0 && x.as_ref().is_some_and(|x| x.ncols() > 0) {
            return Err(BoltzError::new_err(format!(
                "invalid value for `x`: model `{}` is not conditional",
                self.model.name
            )));
        }
        let x = x.filter(|_| self.model.x_dim() > 0);
        let model = self.model.clone();
        let (e, g) = run_job(py, &self.callbacks(), move |_| {
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
            boltz::energy::evaluate_with_grad(energy.as_ref(), y.view())
        })?;
        Ok((e.into_pyarray(py), g.into_pyarray(py)))
    }

    fn __repr__(&self) -> String {
        format!(
            "boltz.Energy(name={:?}, kind={:?}, dim={}, x_dim={})",
            self.model.name,
            self.model.kind(),
            self.model.dim(),
            self.model.x_dim()
        )
    }
}

/// CallbackEnergy(fn, dim, x_dim=0, binary=False, name=None)
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
#[pyclass(extends = Energy, module = "boltz._native", frozen)]
struct CallbackEnergy {}

#[pymethods]
impl CallbackEnergy {
    #[new]
    #[pyo3(signature = (func, dim, x_dim=0, binary=false, name=None))]
    fn new(
        func: Bound<'_, PyAny>,
        dim: usize,
        x_dim: usize,
        binary: bool,
        name: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        if !func.is_callable() {
            return Err(BoltzError::new_err(
                "invalid value for `fn`: must be callable as fn(y) or fn(y, x)",
            ));
        }
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
        let name = name.unwrap_or_else(|| {
            func.getattr("__name__")
                .and_then(|n| n.extract::<String>())
                .unwrap_or_else(|_| "callback".into())
        });
        let cb = Arc::new(Callback {
            func: func.unbind(),
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
        Ok(PyClassInitializer::from(Energy {
            model,
            callback: Some(cb),
        })
        .add_subclass(CallbackEnergy {}))
    }
}

/// Loads a suite target (`gauss-ill`, `gmm-ring`, `funnel`, `mlp`, `rbm20`,
/// ...) or a JSON model file, as the command-line tool does.
#[pyfunction]
fn load_model(py: Python<'_>, spec: String) -> PyResult<Energy> {
    let model = run_job(py, &[], move |_| boltz::model::load(&spec))?;
    Ok(Energy {
        model,
        callback: None,
    })
}

/// The native MLP energy `net([x ; y]) + 0.5 l2 |y|^2` from layers given as
/// (weight (in, out), bias (out,)) float64 arrays and activation names.
#[pyfunction]
#[pyo3(signature = (weights, biases, activations, x_dim=0, l2=0.0, name=None))]
fn mlp_energy(
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
    Ok(Energy {
        model,
        callback: None,
    })
}

// ---------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------

fn json(v: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| BoltzError::new_err(format!("cannot encode: {e}")))
}

/// `init` given as a spec (`gaussian:STD`, `uniform:LO,HI`,
/// `dispersed:MIN,MAX`, `coins`), or the default. Binary models start
/// from coin flips whatever the spec.
fn init_from(spec: Option<&str>, default: boltz::init::Init) -> PyResult<boltz::init::Init> {
    match spec {
        None => Ok(default),
        Some(s) => boltz::init::Init::parse(s, "init").map_err(to_py),
    }
}

/// [`settings`] (a name free for the shard functions' `settings` argument).
fn settings_of<T>(what: &str, s: &str) -> PyResult<T>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    settings(what, s)
}

/// Job settings sent as JSON by the Python layer (missing: the defaults).
fn settings<T>(what: &str, s: &str) -> PyResult<T>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    boltz::jobs::from_json(what, s).map_err(to_py)
}

/// Draws and the report (a JSON string) of a sample job: `job` is a
/// `SampleJob` as JSON, `init_spec` a starting distribution (`gaussian:1`).
#[pyfunction]
#[pyo3(signature = (energy, job, context, init, init_spec, progress))]
fn sample<'py>(
    py: Python<'py>,
    energy: PyRef<'py, Energy>,
    job: &str,
    context: Option<PyReadonlyArray2<'py, f64>>,
    init: Option<PyReadonlyArray2<'py, f64>>,
    init_spec: Option<String>,
    progress: bool,
) -> PyResult<(Bound<'py, numpy::PyArray3<f64>>, String)> {
    let mut job: SampleJob = settings("sample", job)?;
    job.init = init_from(init_spec.as_deref(), job.init.clone())?;
    let (model, context, init) = (energy.model.clone(), owned2(context), owned2(init));
    let (samples, report) = run_job(py, &energy.callbacks(), move |stop| {
        let mut obs = StderrProgress {
            on: progress,
            last: None,
        };
        let run = boltz::jobs::sample(&model, context, &job, init, &mut obs, &control(stop), None)?;
        if !run.output.complete {
            return Err(boltz::Error::Interrupted("sampling was stopped".into()));
        }
        Ok((run.output.samples, run.report))
    })?;
    Ok((samples.into_pyarray(py), json(&report)?))
}

/// log Z (a JSON report, per-context arrays) of a `LogzJob` given as JSON,
/// and with `points` (N, dim) their log P(y|x) too: (k, N), or (N,) when
/// `paired`.
#[pyfunction]
#[pyo3(signature = (energy, job, context, data, points, paired, progress))]
#[allow(clippy::too_many_arguments)]
fn logz<'py>(
    py: Python<'py>,
    energy: PyRef<'py, Energy>,
    job: &str,
    context: Option<PyReadonlyArray2<'py, f64>>,
    data: Option<PyReadonlyArray2<'py, f64>>,
    points: Option<PyReadonlyArray2<'py, f64>>,
    paired: bool,
    progress: bool,
) -> PyResult<(Option<Bound<'py, numpy::PyArrayDyn<f64>>>, String)> {
    let mut job: LogzJob = settings("logz", job)?;
    job.data = owned2(data);
    let (model, context, points) = (energy.model.clone(), owned2(context), owned2(points));
    let (logp, report) = run_job(py, &energy.callbacks(), move |stop| {
        let mut obs = StderrProgress {
            on: progress,
            last: None,
        };
        let control = control(stop);
        let (logp, run) = match &points {
            Some(p) => {
                let (lp, run) = boltz::jobs::prob(
                    &model,
                    context,
                    p.view(),
                    paired,
                    &job,
                    &control,
                    None,
                    &mut obs,
                )?;
                (Some(lp), run)
            }
            None => (
                None,
                boltz::jobs::logz(&model, context, &job, &control, None, &mut obs)?,
            ),
        };
        if !run.report.complete {
            return Err(boltz::Error::Interrupted("AIS was stopped".into()));
        }
        Ok((logp, run.report))
    })?;
    Ok((logp.map(|l| l.into_pyarray(py)), json(&report)?))
}

/// One shard of a sample or log Z / log P job (`kind` `sample` or `logz`;
/// `job` as JSON with its `shard`), as the bytes of its shard file;
/// `settings` names the run (a merge requires them equal).
#[pyfunction]
#[pyo3(signature = (energy, kind, job, settings, context, data, points, paired, init_spec))]
#[allow(clippy::too_many_arguments)]
fn run_shard<'py>(
    py: Python<'py>,
    energy: PyRef<'py, Energy>,
    kind: &str,
    job: &str,
    settings: String,
    context: Option<PyReadonlyArray2<'py, f64>>,
    data: Option<PyReadonlyArray2<'py, f64>>,
    points: Option<PyReadonlyArray2<'py, f64>>,
    paired: bool,
    init_spec: Option<String>,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let name = std::path::PathBuf::from("shard");
    let (model, context, points) = (energy.model.clone(), owned2(context), owned2(points));
    let bytes = match kind {
        "sample" => {
            let mut job: SampleJob = settings_of("sample", job)?;
            job.init = init_from(init_spec.as_deref(), job.init.clone())?;
            run_job(py, &energy.callbacks(), move |stop| {
                let run = boltz::jobs::sample(
                    &model,
                    context,
                    &job,
                    None,
                    &mut boltz::NoObserver,
                    &control(stop),
                    None,
                )?;
                boltz::jobs::merge::sample_shard(&run, &job, &settings, &name)
            })?
        }
        "logz" => {
            let mut job: LogzJob = settings_of("logz", job)?;
            job.data = owned2(data);
            run_job(py, &energy.callbacks(), move |stop| {
                let control = control(stop);
                match &points {
                    Some(p) => {
                        let (lp, run) = boltz::jobs::prob(
                            &model,
                            context,
                            p.view(),
                            paired,
                            &job,
                            &control,
                            None,
                            &mut boltz::NoObserver,
                        )?;
                        let prob = Some((&lp, paired, p.nrows()));
                        boltz::jobs::merge::logz_shard(&run, &job, &settings, prob, &name)
                    }
                    None => {
                        let run = boltz::jobs::logz(
                            &model,
                            context,
                            &job,
                            &control,
                            None,
                            &mut boltz::NoObserver,
                        )?;
                        boltz::jobs::merge::logz_shard(&run, &job, &settings, None, &name)
                    }
                }
            })?
        }
        other => {
            return Err(BoltzError::new_err(format!(
                "invalid value for `kind`: `{other}` (sample, logz)"
            )));
        }
    };
    Ok(pyo3::types::PyBytes::new(py, &bytes))
}

/// The merge of shard files (`boltz merge`): the report as JSON, the
/// merged draws (sample shards) and log P (prob shards).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn merge_shards<'py>(
    py: Python<'py>,
    paths: Vec<String>,
) -> PyResult<(
    String,
    Option<Bound<'py, numpy::PyArray3<f64>>>,
    Option<Bound<'py, numpy::PyArrayDyn<f64>>>,
)> {
    let paths: Vec<std::path::PathBuf> = paths.into_iter().map(Into::into).collect();
    let m = run_job(py, &[], move |_| boltz::jobs::merge(&paths))?;
    Ok((
        json(&m.report)?,
        m.samples.map(|s| s.into_pyarray(py)),
        m.log_prob.map(|l| l.into_pyarray(py)),
    ))
}

/// Per-coordinate diagnostics of a (chains, draws, dim) array, as JSON.
#[pyfunction]
fn diagnose(py: Python<'_>, samples: PyReadonlyArray3<'_, f64>) -> PyResult<String> {
    let s = samples.as_array().to_owned();
    let report = run_job(py, &[], move |_| boltz::jobs::diagnose(s.view()))?;
    json(&report)
}

/// The comparison of samplers on one energy, as JSON (the CLI's report).
#[pyfunction]
#[pyo3(signature = (energy, samplers, chains, warmup, draws, seed, ula_step, beta, context))]
#[allow(clippy::too_many_arguments)]
fn compare(
    py: Python<'_>,
    energy: PyRef<'_, Energy>,
    samplers: Option<Vec<String>>,
    chains: usize,
    warmup: usize,
    draws: usize,
    seed: u64,
    ula_step: Option<f64>,
    beta: f64,
    context: Option<PyReadonlyArray2<'_, f64>>,
) -> PyResult<String> {
    let config = boltz::CompareConfig {
        chains,
        warmup,
        draws,
        seed,
        ula_step,
        beta,
        ..Default::default()
    };
    let (model, context) = (energy.model.clone(), owned2(context));
    let report = run_job(py, &energy.callbacks(), move |stop| {
        boltz::compare::compare_model(
            &model,
            context,
            samplers.as_deref(),
            &config,
            &control(stop),
        )
    })?;
    json(&report)
}

// ---------------------------------------------------------------------------
// Negatives
// ---------------------------------------------------------------------------

/// Negative samples call after call (persistent chains, replay buffer and
/// every random stream kept between calls).
#[pyclass(module = "boltz._native")]
struct Negatives {
    energy: Py<Energy>,
    job: NegativesJob,
    sampler: Arc<Mutex<Option<NegativeSampler>>>,
    last_report: Option<String>,
}

impl Negatives {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, Option<NegativeSampler>>> {
        self.sampler
            .lock()
            .map_err(|_| BoltzError::new_err("the negatives state was poisoned by a panic"))
    }

    /// What a saved state belongs to: the model's fingerprint and every
    /// setting (a state file describes its own sampler).
    fn tag(&self, py: Python<'_>) -> PyResult<String> {
        let e = self.energy.bind(py).get();
        Ok(format!(
            "model {} job {}",
            e.model.fingerprint(),
            json(&self.job)?
        ))
    }
}

#[pymethods]
impl Negatives {
    /// A sampler of `energy` with a `NegativesJob` given as JSON and a
    /// starting distribution spec (`gaussian:1`, `uniform:0,1`, ...).
    #[new]
    #[pyo3(signature = (energy, job, init=None))]
    fn new(energy: Py<Energy>, job: &str, init: Option<String>, py: Python<'_>) -> PyResult<Self> {
        let mut job: NegativesJob = settings("negatives", job)?;
        job.init = init_from(init.as_deref(), boltz::init::Init::Gaussian { std: 1.0 })?;
        // Check every setting now, not at the first call.
        job.method().map_err(to_py)?;
        let e = energy
            .bind(py)
            .get()
            .model
            .energy(energy.bind(py).get().model.default_context.clone());
        if let Ok(e) = e {
            job.kernel(e.as_ref()).map_err(to_py)?;
        }
        Ok(Negatives {
            energy,
            job,
            sampler: Arc::new(Mutex::new(None)),
            last_report: None,
        })
    }

    /// One call: (chains, dim) negatives; the report as JSON.
    #[pyo3(signature = (data=None, context=None, chains=None))]
    fn sample<'py>(
        &mut self,
        py: Python<'py>,
        data: Option<PyReadonlyArray2<'py, f64>>,
        context: Option<PyReadonlyArray2<'py, f64>>,
        chains: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let data = owned2(data);
        let existing = self.lock()?.as_ref().map(|s| s.state().n_chains);
        let n = match (existing, chains, &data) {
            (Some(k), Some(c), _) if c != k => {
                return Err(BoltzError::new_err(format!(
                    "invalid value for `chains`: this sampler runs {k} chains (fixed at its first call)"
                )));
            }
            (Some(k), _, _) => k,
            (None, Some(c), _) => c,
            (None, None, Some(d)) => d.nrows(),
            (None, None, None) => {
                return Err(BoltzError::new_err(
                    "invalid value for `chains`: give data (one positive per chain) or chains",
                ));
            }
        };
        let (model, callbacks) = {
            let e = self.energy.bind(py).get();
            (e.model.clone(), e.callbacks())
        };
        let context = owned2(context);
        let tag = self.tag(py)?;
        let job = self.job.clone();
        // The sampler stays in the shared slot whatever happens (an
        // exception in a callback or Ctrl-C leave it as it was before the
        // call); a new one is kept only after a call that succeeded.
        let slot = self.sampler.clone();
        let (batch, kernel, warnings, s) = run_job(py, &callbacks, move |stop| {
            let energy = model.energy(context)?;
            let mut guard = slot
                .lock()
                .map_err(|_| boltz::Error::param("negatives", "state poisoned by a panic"))?;
            let mut fresh = match guard.as_ref() {
                Some(_) => None,
                None => Some(job.sampler(energy.as_ref(), n)?.with_tag(tag)),
            };
            let sampler = match fresh.as_mut() {
                Some(f) => f,
                None => guard
                    .as_mut()
                    .ok_or_else(|| boltz::Error::param("negatives", "no state"))?,
            };
            let (batch, kernel, warnings) = boltz::jobs::negatives::call(
                sampler,
                energy.as_ref(),
                &job,
                data.as_ref().map(|d| d.view()),
                &control(stop),
            )?;
            let s = (sampler.state().calls, sampler.buffer_len());
            if let Some(f) = fresh {
                *guard = Some(f);
            }
            Ok((batch, kernel, warnings, Some(s)))
        })?;

        self.last_report = Some(json(&serde_json::json!({
            "model": self.energy.bind(py).get().model.name,
            "method": self.job.method,
            "kernel": kernel,
            "beta": self.job.beta,
            "chains": batch.negatives.nrows(),
            "steps": self.job.steps,
            "call": s.map(|x| x.0),
            "stats": batch.stats,
            "buffer": s.map(|x| x.1),
            "energies": batch.energies.to_vec(),
            "warnings": warnings,
        }))?);
        Ok(batch.negatives.into_pyarray(py))
    }

    /// The settings, as JSON.
    #[getter]
    fn settings(&self) -> PyResult<String> {
        json(&self.job)
    }

    /// The report of the last call, as JSON (None before the first call).
    #[getter]
    fn last_report(&self) -> Option<String> {
        self.last_report.clone()
    }

    /// The whole state (chains, buffer, every stream) as JSON; None before the first call.
    fn state_json(&self) -> PyResult<Option<String>> {
        self.lock()?.as_ref().map(|s| json(&s.state())).transpose()
    }

    /// Restores a state from [`Negatives::state_json`].
    fn load_state_json(&mut self, py: Python<'_>, state: Option<String>) -> PyResult<()> {
        let Some(state) = state else {
            *self.lock()? = None;
            return Ok(());
        };
        let st: boltz::negatives::NegativeState = serde_json::from_str(&state)
            .map_err(|e| BoltzError::new_err(format!("invalid negatives state: {e}")))?;
        let dim = self.energy.bind(py).get().model.dim();
        let tag = self.tag(py)?;
        if st.dim != dim || st.tag != tag {
            return Err(BoltzError::new_err(format!(
                "invalid negatives state: saved for dimension {} and `{}`, this sampler has dimension {dim} and `{}`",
                st.dim, st.tag, tag
            )));
        }
        *self.lock()? = Some(NegativeSampler::restore(st).map_err(to_py)?);
        Ok(())
    }

    /// Saves the state to `path` (versioned, checksummed, atomic).
    fn save(&self, path: std::path::PathBuf) -> PyResult<()> {
        let guard = self.lock()?;
        let s = guard.as_ref().ok_or_else(|| {
            BoltzError::new_err("nothing to save: the sampler has not been called yet")
        })?;
        s.save(&path).map_err(to_py)
    }

    /// A sampler continuing the state saved by [`Negatives::save`] on
    /// `energy` (the same model: its fingerprint is checked), with the
    /// settings stored in the file.
    #[staticmethod]
    fn load(py: Python<'_>, path: std::path::PathBuf, energy: Py<Energy>) -> PyResult<Self> {
        let s = NegativeSampler::load_any(&path).map_err(to_py)?;
        let tag = s.state().tag;
        let fp = energy.bind(py).get().model.fingerprint();
        let bad =
            |why: String| BoltzError::new_err(format!("checkpoint {}: {why}", path.display()));
        let rest = tag
            .strip_prefix("model ")
            .and_then(|r| r.split_once(" job "))
            .ok_or_else(|| bad("not a state saved by boltz.Negatives".into()))?;
        if rest.0 != fp {
            return Err(bad(format!(
                "saved for another model (fingerprint {}, this energy has {fp})",
                rest.0
            )));
        }
        let job: NegativesJob =
            serde_json::from_str(rest.1).map_err(|e| bad(format!("bad settings: {e}")))?;
        if s.state().dim != energy.bind(py).get().model.dim() {
            return Err(bad("saved for another dimension".into()));
        }
        Ok(Negatives {
            energy,
            job,
            sampler: Arc::new(Mutex::new(Some(s))),
            last_report: None,
        })
    }
}

/// Panics on a worker thread (and in the thread pool): the test that a
/// panic becomes a `BoltzError` and leaves the interpreter running.
#[pyfunction]
fn _panic_for_tests(py: Python<'_>, in_pool: bool) -> PyResult<()> {
    run_job(py, &[], move |_| {
        if in_pool {
            use rayon::prelude::*;
            let v: Vec<usize> = (0..64usize)
                .into_par_iter()
                .map(|i| {
                    if i == 17 {
                        panic!("test panic in the pool")
                    } else {
                        i
                    }
                })
                .collect();
            Ok(v.len())
        } else {
            panic!("test panic")
        }
    })
    .map(|_| ())
}

/// The kernel registry as JSON (`boltz kernels --json`'s list).
#[pyfunction]
fn kernels_json() -> PyResult<String> {
    json(&boltz::kernels::listing())
}

/// Threads of the pool boltz computes on.
#[pyfunction]
fn threads() -> usize {
    rayon::current_num_threads()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("BoltzError", m.py().get_type::<BoltzError>())?;
    m.add_class::<Energy>()?;
    m.add_class::<CallbackEnergy>()?;
    m.add_class::<Negatives>()?;
    m.add_function(wrap_pyfunction!(load_model, m)?)?;
    m.add_function(wrap_pyfunction!(kernels_json, m)?)?;
    m.add_function(wrap_pyfunction!(mlp_energy, m)?)?;
    m.add_function(wrap_pyfunction!(sample, m)?)?;
    m.add_function(wrap_pyfunction!(logz, m)?)?;
    m.add_function(wrap_pyfunction!(run_shard, m)?)?;
    m.add_function(wrap_pyfunction!(merge_shards, m)?)?;
    m.add_function(wrap_pyfunction!(diagnose, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(threads, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let _ = (Array1::<f64>::zeros(0), ());
    Ok(())
}
