//! Python callbacks as energies: the call, its checks and the buffers it fills.

use super::*;

/// Buffers reused from call to call, and the first error of the current run.
#[derive(Default)]
pub(crate) struct CallbackState {
    /// Positions handed to `fn` (n x dim), reused while `n` stays the same.
    pub(crate) y: Option<Py<PyArray2<f64>>>,
    /// Contexts handed to `fn` (n x x_dim), for conditional energies.
    pub(crate) x: Option<Py<PyArray2<f64>>>,
    /// The first error of the run (an exception in `fn`, a wrong shape or dtype).
    pub(crate) error: Option<PyErr>,
}

/// A Python function `fn(y) -> (energies, gradients)` (or `fn(y, x)`) as a
/// batched energy: called once per evaluation for the whole batch, with the
/// interpreter lock taken only for the call.
pub(crate) struct Callback {
    pub(crate) func: Py<PyAny>,
    /// The energy's own leapfrog integrator
    /// `leapfrog(y, p, g, eps, inv_mass, h_max, steps) -> (ys, ps, gs, es)`, if
    /// given (unconditional continuous energies only).
    pub(crate) leapfrog: Option<Py<PyAny>>,
    /// The torch device `func` computes on (`CallbackEnergy`'s `device`).
    pub(crate) device: String,
    pub(crate) dim: usize,
    pub(crate) x_dim: usize,
    pub(crate) conditional: bool,
    pub(crate) binary: bool,
    pub(crate) state: Mutex<CallbackState>,
    /// The stop flag of the run using this energy: an error sets it so the
    /// run ends after the current step; once set, calls return NaN at once.
    pub(crate) stop: Mutex<Option<Arc<AtomicBool>>>,
    /// Calls of `fn`, nanoseconds spent inside it, and nanoseconds of the
    /// whole evaluation (lock, copies, checks): the overhead figures.
    pub(crate) calls: AtomicU64,
    pub(crate) inside_ns: AtomicU64,
    pub(crate) total_ns: AtomicU64,
}

/// A callback's result checked: a float64 numpy array of `shape`.
pub(crate) fn checked<'py>(
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

/// A reusable (n x d) float64 buffer holding `src` (refilled in place:
/// what Python keeps of an earlier call's buffer sees the new values).
pub(crate) fn fill_buffer<'py>(
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
    // SAFETY: the buffer is this call's alone: taken out of the shared
    // state (or made here), so no other Rust code has a view of it, and
    // written with the interpreter lock held (Python threads that released
    // the lock and kept an earlier call's buffer could race, which the
    // borrow tracking of `try_readwrite` does not see either; it costs
    // ~1 us a call).
    copy_into(unsafe { buf.as_array_mut() }, src);
    buf
}

/// A view of a float64 array a callback returned, read while the
/// interpreter lock is held (shape and dtype checked by [`checked`]).
fn returned<'a, D: ndarray::Dimension>(
    arr: &'a Bound<'_, numpy::PyArray<f64, D>>,
) -> ndarray::ArrayView<'a, f64, D> {
    // SAFETY: read with the interpreter lock held. The only Python arrays
    // this crate writes are its callbacks' own input buffers
    // (`fill_buffer`, before the call), so no Rust code writes this one
    // while it is read. Python threads that released the lock could; the
    // borrow tracking of `readonly()` does not see them either, and costs
    // ~1 us a call.
    unsafe { arr.as_array() }
}

thread_local! {
    /// Whether this (non-Python) thread keeps a Python thread state.
    static KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives a boltz pool thread a Python thread state it keeps from call to
/// call. Without it every `Python::attach` on the thread creates a thread
/// state and deletes it on release (CPython maps a 16 KB frame stack for
/// it and unmaps it again: a TLB shootdown across cores per callback).
/// Only on threads Python does not know (no thread state yet), with the
/// interpreter lock not held: the state is made, then the lock released
/// at once, the state kept (PyGILState's count stays 1), so later
/// attaches only take the lock.
fn keep_thread_state() {
    // Only the pool's threads, which live as long as the pool (a state
    // kept by a thread that ends would stay behind).
    if KEPT.with(|k| k.get()) || rayon::current_thread_index().is_none() {
        return;
    }
    KEPT.with(|k| k.set(true));
    // SAFETY: this thread holds no thread state (so not the lock either);
    // PyGILState_Ensure makes one and takes the lock, PyEval_SaveThread
    // releases the lock, keeping the state for this thread's later
    // PyGILState_Ensure / Release pairs (PyO3's attach).
    unsafe {
        if pyo3::ffi::Py_IsInitialized() != 0
            && pyo3::ffi::PyGILState_GetThisThreadState().is_null()
        {
            let _ = pyo3::ffi::PyGILState_Ensure();
            let _ = pyo3::ffi::PyEval_SaveThread();
        }
    }
}

/// `src` into `dst` (both one shape): one memmove when both are
/// contiguous, else element by element.
fn copy_into<D: ndarray::Dimension>(
    mut dst: ndarray::ArrayViewMut<f64, D>,
    src: ndarray::ArrayView<f64, D>,
) {
    match (dst.as_slice_mut(), src.as_slice()) {
        (Some(d), Some(s)) if d.len() == s.len() => d.copy_from_slice(s),
        _ => dst.assign(&src),
    }
}

impl Callback {
    pub(crate) fn stopped(&self) -> bool {
        self.stop
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|f| f.load(Ordering::SeqCst)))
            .unwrap_or(false)
    }

    /// Records the first error of the run and stops the run.
    pub(crate) fn fail(&self, e: PyErr) {
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
    pub(crate) fn arm(&self, stop: Arc<AtomicBool>) {
        if let Ok(mut s) = self.stop.lock() {
            *s = Some(stop);
        }
        if let Ok(mut st) = self.state.lock() {
            st.error = None;
        }
    }

    /// The run's first error, taken.
    pub(crate) fn take_error(&self) -> Option<PyErr> {
        self.state.lock().ok().and_then(|mut st| st.error.take())
    }

    pub(crate) fn eval(
        &self,
        x: Option<ArrayView2<f64>>,
        y: ArrayView2<f64>,
        mut energy: ArrayViewMut1<f64>,
        mut grad: Option<ArrayViewMut2<f64>>,
    ) {
        let n = y.nrows();
        let ok = n > 0
            && self.attached(|py| {
                // The buffers are taken out of the shared state for the
                // call and put back after it: `fn` may release the
                // interpreter lock (numpy, torch), and another thread's
                // evaluation of the same energy then fills buffers of its
                // own instead of this call's input (a lock held across the
                // call would deadlock with the interpreter lock).
                let (mut ybuf, mut xbuf) = {
                    let mut st = self
                        .state
                        .lock()
                        .map_err(|_| BoltzError::new_err("callback state poisoned"))?;
                    (st.y.take(), st.x.take())
                };
                let yb = fill_buffer(py, &mut ybuf, y);
                let args = if self.conditional {
                    let xv = x.ok_or_else(|| BoltzError::new_err("no contexts"))?;
                    let xb = fill_buffer(py, &mut xbuf, xv);
                    PyTuple::new(py, [yb.into_any(), xb.into_any()])?
                } else {
                    PyTuple::new(py, [yb.into_any()])?
                };
                let res = self.timed_call(self.func.bind(py), args);
                if let Ok(mut st) = self.state.lock() {
                    if st.y.is_none() {
                        st.y = ybuf;
                    }
                    if st.x.is_none() {
                        st.x = xbuf;
                    }
                }
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
                copy_into(
                    energy.view_mut(),
                    returned(e.cast::<numpy::PyArray1<f64>>()?),
                );
                if let Some(gr) = grad.as_mut() {
                    copy_into(
                        gr.view_mut(),
                        returned(g.cast::<PyArray2<f64>>()?),
                    );
                }
                Ok(())
            });
        if !ok {
            energy.fill(f64::NAN);
            if let Some(g) = grad.as_mut() {
                g.fill(f64::NAN);
            }
        }
    }

    /// Runs `body` with the interpreter lock unless the run has stopped:
    /// the thread's Python state kept, the first error recorded (which
    /// stops the run), the whole evaluation timed. Whether `body` succeeded
    /// (the caller fills NaN where it did not).
    fn attached(&self, body: impl for<'py> FnOnce(Python<'py>) -> PyResult<()>) -> bool {
        let start = Instant::now();
        let mut ok = false;
        if !self.stopped() {
            keep_thread_state();
            match Python::attach(body) {
                Ok(()) => ok = true,
                Err(e) => self.fail(e),
            }
        }
        self.total_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        ok
    }

    /// `f(*args)`, counted as one call and timed as time inside the user's
    /// function.
    fn timed_call<'py>(
        &self,
        f: &Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let t = Instant::now();
        let res = f.call1(args);
        self.inside_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        res
    }
}

impl Callback {
    /// A segment of `path.steps()` leapfrog steps from `start` through the
    /// Python integrator: one call, its four arrays checked and copied
    /// into `path` (NaN and the run stopped on any error, as for `fn`).
    pub(crate) fn segment(&self, start: LeapfrogStart<'_>, path: &mut LeapfrogPath) {
        let Some(lf) = self.leapfrog.as_ref() else {
            path.fail();
            return;
        };
        let ok = self.attached(|py| {
                let (steps, n, d) = (path.steps(), start.y.nrows(), self.dim);
                let args = PyTuple::new(
                    py,
                    [
                        start.y.to_owned().into_pyarray(py).into_any(),
                        start.p.to_owned().into_pyarray(py).into_any(),
                        start.g.to_owned().into_pyarray(py).into_any(),
                        start.eps.to_owned().into_pyarray(py).into_any(),
                        start.inv_mass.to_owned().into_pyarray(py).into_any(),
                        start.h_max.to_owned().into_pyarray(py).into_any(),
                        steps.into_pyobject(py)?.into_any(),
                    ],
                )?;
                let res = self.timed_call(lf.bind(py), args)?;
                let four: Option<[Bound<PyAny>; 4]> = res.extract().ok();
                let [ys, ps, gs, es] = four.ok_or_else(|| {
                    BoltzError::new_err(format!(
                        "leapfrog must return four arrays (positions, momenta and gradients of shape ({steps}, {n}, {d}), energies of shape ({steps}, {n})), got {}",
                        res.get_type().name().map(|s| s.to_string()).unwrap_or_default()
                    ))
                })?;
                for (arr, out, what) in [
                    (&ys, &mut path.y, "leapfrog positions"),
                    (&ps, &mut path.p, "leapfrog momenta"),
                    (&gs, &mut path.g, "leapfrog gradients"),
                ] {
                    let a = checked(arr, what, &[steps, n, d])?;
                    out.assign(&returned(a.cast::<PyArray3<f64>>()?));
                }
                let e = checked(&es, "leapfrog energies", &[steps, n])?;
                path.e
                    .assign(&returned(e.cast::<PyArray2<f64>>()?));
                Ok(())
            });
        if !ok {
            path.fail();
        }
    }
}

/// A callback in `y` only (`x_dim` 0).
pub(crate) struct CallbackY(pub(crate) Arc<Callback>);
/// A conditional callback `fn(y, x)`.
pub(crate) struct CallbackXY(pub(crate) Arc<Callback>);

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
    fn as_leapfrog(&self) -> Option<&dyn Leapfrog> {
        self.0.leapfrog.as_ref().map(|_| self as &dyn Leapfrog)
    }
}

impl Leapfrog for CallbackY {
    fn leapfrog(&self, start: LeapfrogStart<'_>, path: &mut LeapfrogPath) {
        self.0.segment(start, path);
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
