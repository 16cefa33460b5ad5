//! `boltz._native`: the Python package's native module.
//!
//! A thin front over the library's jobs ([`boltz::jobs`]): it turns numpy
//! arrays into ndarray values, runs each job on a worker thread with the
//! interpreter lock released, polls for Ctrl-C (`KeyboardInterrupt` within
//! a fraction of a second), turns library errors into `BoltzError` (a
//! `ValueError`) and a Rust panic into a `BoltzError` too, so that the
//! interpreter never dies with it. The Python layer (`pysrc/boltz`) adds
//! defaults, docstrings, dtype conversion and the torch helpers.

use boltz::energy::{
    ConditionalEnergy, Energy as EnergyTrait, Leapfrog, LeapfrogPath, LeapfrogStart, StateSpace,
};
use boltz::jobs::{LogzJob, NegativesJob, SampleJob};
use boltz::run::{Control, Observer, Progress};
use boltz::{Model, NegativeSampler};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use numpy::{
    IntoPyArray, PyArray2, PyArray3, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2,
    PyReadonlyArray3, PyUntypedArray, PyUntypedArrayMethods,
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

mod callback;
mod energy;
mod jobs;
mod negatives;
mod runner;

use callback::*;
use energy::*;
use jobs::*;
use negatives::*;
use runner::*;

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

/// Refuses, with a `BoltzError` naming `what`, an array of `shape` and
/// `bytes_each` bytes per entry that would not fit the memory budget
/// (`BOLTZ_MAX_MEMORY`, the cgroup, `ulimit -v`, the machine's memory).
#[pyfunction]
fn check_memory(what: &str, shape: Vec<usize>, bytes_each: usize) -> PyResult<()> {
    boltz::budget::check(what, "the array", boltz::budget::bytes(&shape, bytes_each))
        .map(|_| ())
        .map_err(to_py)
}

/// Whether `spec` names a suite target (`rbm20`, `ring:2:3`, ...), which
/// `load_model` takes before any file of that name.
#[pyfunction]
fn is_suite_target(spec: &str) -> bool {
    // A malformed `ring:N:M` is an error of the suite's: still a suite name.
    !matches!(boltz::model::suite::target(spec), Ok(None))
}

/// Threads of the pool boltz computes on (this process's: a forked child
/// has its own).
#[pyfunction]
fn threads() -> PyResult<usize> {
    Ok(pool()?.current_num_threads())
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
    m.add_function(wrap_pyfunction!(is_suite_target, m)?)?;
    m.add_function(wrap_pyfunction!(check_memory, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let _ = (Array1::<f64>::zeros(0), ());
    Ok(())
}
