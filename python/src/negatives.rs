//! The `Negatives` class: negative samples call after call.

use super::*;

/// Negative samples call after call (persistent chains, replay buffer and
/// every random stream kept between calls).
///
/// Safe to share between Python threads: calls on one object take turns
/// (a call waits, without the interpreter lock, for the one in progress),
/// so each call continues the state the previous one left.
#[pyclass(module = "boltz._native", frozen)]
pub(crate) struct Negatives {
    pub(crate) energy: Py<Energy>,
    pub(crate) job: NegativesJob,
    pub(crate) sampler: Arc<Mutex<Option<NegativeSampler>>>,
    pub(crate) last_report: Mutex<Option<String>>,
    /// Held for the whole of a call (or a state read or write).
    pub(crate) turn: Mutex<()>,
}

impl Negatives {
    pub(crate) fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, Option<NegativeSampler>>> {
        self.sampler
            .lock()
            .map_err(|_| BoltzError::new_err("the negatives state was poisoned by a panic"))
    }

    /// What a saved state belongs to: the model's architecture (not its
    /// weights: a state follows the model through training) and every
    /// setting (a state file describes its own sampler).
    pub(crate) fn tag(&self, py: Python<'_>) -> PyResult<String> {
        let e = self.energy.bind(py).get();
        Ok(format!(
            "model {} job {}",
            e.model().architecture_fingerprint(),
            json(&self.job)?
        ))
    }

    /// Runs `f` when no other thread's call on this object is in progress.
    /// Waiting releases the interpreter lock (the call in progress may need
    /// it for a Python energy) and looks for Ctrl-C.
    fn in_turn<R>(&self, py: Python<'_>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
        let _turn = loop {
            match self.turn.try_lock() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    py.detach(|| std::thread::sleep(Duration::from_millis(1)));
                    py.check_signals()?;
                }
            }
        };
        f()
    }

    /// One call (in turn): the negatives; the report kept for `last_report`.
    fn call(
        &self,
        py: Python<'_>,
        data: Option<Array2<f64>>,
        context: Option<Array2<f64>>,
        chains: Option<usize>,
    ) -> PyResult<Array2<f64>> {
        // The chains of this call: as given, else one per row of data
        // (a batch), else the last call's. PCD and pt keep their first
        // call's chains: data of another size only gives the energy gap.
        let existing = self
            .lock()?
            .as_ref()
            .map(|s| (s.n_chains(), s.chains_fixed()));
        let n = match (existing, chains, &data) {
            (_, Some(c), _) => c,
            (Some((k, true)), None, _) => k,
            (_, None, Some(d)) => d.nrows(),
            (Some((k, false)), None, None) => k,
            (None, None, None) => {
                return Err(BoltzError::new_err(
                    "invalid value for `chains`: give data (one positive per chain) or chains",
                ));
            }
        };
        let (model, callbacks) = {
            let e = self.energy.bind(py).get();
            (e.model(), e.callbacks())
        };
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
            let before = sampler.n_chains();
            sampler.set_chains(n)?;
            let out = boltz::jobs::negatives::call(
                sampler,
                energy.as_ref(),
                &job,
                data.as_ref().map(|d| d.view()),
                &control(stop),
            );
            if out.is_err() {
                // A failed call leaves the next one's chains as they were
                // (the new streams it added are the ones a later call of
                // that size starts anyway).
                sampler.set_chains(before)?;
            }
            let (batch, kernel, warnings) = out?;
            let s = (sampler.calls(), sampler.buffer_len());
            if let Some(f) = fresh {
                *guard = Some(f);
            }
            Ok((batch, kernel, warnings, Some(s)))
        })?;

        let mut v = serde_json::json!({
            "model": self.energy.bind(py).get().model().name,
            "method": self.job.method,
            "kernel": kernel,
            "beta": self.job.beta,
            "chains": batch.negatives.nrows(),
            "steps": self.job.steps,
            "call": s.map(|x| x.0),
            "stats": batch.stats,
            "buffer": s.map(|x| x.1),
            "energies": self.job.end_energies.then(|| batch.energies.to_vec()),
        });
        warnings.write_into(&mut v);
        let report = json(&v)?;
        *self
            .last_report
            .lock()
            .map_err(|_| BoltzError::new_err("the last report was poisoned by a panic"))? =
            Some(report);
        Ok(batch.negatives)
    }

    /// Restores a state (in turn); `None` forgets it.
    fn load_state(&self, py: Python<'_>, state: Option<String>) -> PyResult<()> {
        let Some(state) = state else {
            *self.lock()? = None;
            return Ok(());
        };
        let st: boltz::negatives::NegativeState = serde_json::from_str(&state)
            .map_err(|e| BoltzError::new_err(format!("invalid negatives state: {e}")))?;
        let dim = self.energy.bind(py).get().model().dim();
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
}

#[pymethods]
impl Negatives {
    /// A sampler of `energy` with a `NegativesJob` given as JSON and a
    /// starting distribution spec (`gaussian:1`, `uniform:0,1`, ...).
    #[new]
    #[pyo3(signature = (energy, job, init=None))]
    pub(crate) fn new(
        energy: Py<Energy>,
        job: &str,
        init: Option<String>,
        py: Python<'_>,
    ) -> PyResult<Self> {
        let mut job: NegativesJob = settings("negatives", job)?;
        job.init = init_from(init.as_deref(), boltz::init::Init::Gaussian { std: 1.0 })?;
        // Check every setting now, not at the first call.
        job.method().map_err(to_py)?;
        let e = energy
            .bind(py)
            .get()
            .model()
            .energy(energy.bind(py).get().model().default_context.clone());
        if let Ok(e) = e {
            job.kernel(e.as_ref()).map_err(to_py)?;
        }
        Ok(Negatives {
            energy,
            job,
            sampler: Arc::new(Mutex::new(None)),
            last_report: Mutex::new(None),
            turn: Mutex::new(()),
        })
    }

    /// One call: (chains, dim) negatives; the report as JSON.
    #[pyo3(signature = (data=None, context=None, chains=None))]
    pub(crate) fn sample<'py>(
        &self,
        py: Python<'py>,
        data: Option<PyReadonlyArray2<'py, f64>>,
        context: Option<PyReadonlyArray2<'py, f64>>,
        chains: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let data = owned2(data);
        let context = owned2(context);
        self.in_turn(py, || self.call(py, data, context, chains))
            .map(|n| n.into_pyarray(py))
    }

    /// The settings, as JSON.
    #[getter]
    pub(crate) fn settings(&self) -> PyResult<String> {
        json(&self.job)
    }

    /// The report of the last call, as JSON (None before the first call).
    #[getter]
    pub(crate) fn last_report(&self) -> Option<String> {
        self.last_report.lock().ok().and_then(|r| r.clone())
    }

    /// The whole state (chains, buffer, every stream) as JSON; None before the first call.
    pub(crate) fn state_json(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.in_turn(py, || {
            self.lock()?.as_ref().map(|s| json(&s.state())).transpose()
        })
    }

    /// Restores a state from [`Negatives::state_json`].
    pub(crate) fn load_state_json(&self, py: Python<'_>, state: Option<String>) -> PyResult<()> {
        self.in_turn(py, || self.load_state(py, state))
    }

    /// Saves the state to `path` (versioned, checksummed, atomic).
    pub(crate) fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        self.in_turn(py, || {
            let guard = self.lock()?;
            let s = guard.as_ref().ok_or_else(|| {
                BoltzError::new_err("nothing to save: the sampler has not been called yet")
            })?;
            s.save(&path).map_err(to_py)
        })
    }

    /// A sampler continuing the state saved by [`Negatives::save`] on
    /// `energy` (the same architecture and settings: its weights may have
    /// changed since, as in training), with the
    /// settings stored in the file.
    #[staticmethod]
    pub(crate) fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        energy: Py<Energy>,
    ) -> PyResult<Self> {
        let s = NegativeSampler::load_any(&path).map_err(to_py)?;
        let tag = s.tag().to_string();
        let fp = energy.bind(py).get().model().architecture_fingerprint();
        let bad =
            |why: String| BoltzError::new_err(format!("checkpoint {}: {why}", path.display()));
        let rest = tag
            .strip_prefix("model ")
            .and_then(|r| r.split_once(" job "))
            .ok_or_else(|| bad("not a state saved by boltz.Negatives".into()))?;
        if rest.0 != fp {
            return Err(bad(format!(
                "saved for another model (architecture {}, this energy has {fp})",
                rest.0
            )));
        }
        let job: NegativesJob =
            serde_json::from_str(rest.1).map_err(|e| bad(format!("bad settings: {e}")))?;
        if s.dim() != energy.bind(py).get().model().dim() {
            return Err(bad("saved for another dimension".into()));
        }
        Ok(Negatives {
            energy,
            job,
            sampler: Arc::new(Mutex::new(Some(s))),
            last_report: Mutex::new(None),
            turn: Mutex::new(()),
        })
    }
}
