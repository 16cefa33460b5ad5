//! The jobs: sample, log Z, shards and their merge, diagnose, compare.

use super::*;

pub(crate) fn json(v: &impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| BoltzError::new_err(format!("cannot encode: {e}")))
}

/// `init` given as a spec (`gaussian:STD`, `uniform:LO,HI`,
/// `dispersed:MIN,MAX`, `coins`), or the default. Binary models start
/// from coin flips whatever the spec.
pub(crate) fn init_from(
    spec: Option<&str>,
    default: boltz::init::Init,
) -> PyResult<boltz::init::Init> {
    match spec {
        None => Ok(default),
        Some(s) => boltz::init::Init::parse(s, "init").map_err(to_py),
    }
}

/// [`settings`] (a name free for the shard functions' `settings` argument).
pub(crate) fn settings_of<T>(what: &str, s: &str) -> PyResult<T>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    settings(what, s)
}

/// Job settings sent as JSON by the Python layer (missing: the defaults).
pub(crate) fn settings<T>(what: &str, s: &str) -> PyResult<T>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    boltz::jobs::from_json(what, s).map_err(to_py)
}

/// Draws and the report (a JSON string) of a sample job: `job` is a
/// `SampleJob` as JSON, `init_spec` a starting distribution (`gaussian:1`).
#[pyfunction]
#[pyo3(signature = (energy, job, context, init, init_spec, progress))]
pub(crate) fn sample<'py>(
    py: Python<'py>,
    energy: PyRef<'py, Energy>,
    job: &str,
    context: Option<PyReadonlyArray2<'py, f64>>,
    init: Option<PyReadonlyArray2<'py, f64>>,
    init_spec: Option<String>,
    progress: bool,
) -> PyResult<SampleResult<'py>> {
    let mut job: SampleJob = settings("sample", job)?;
    job.init = init_from(init_spec.as_deref(), job.init.clone())?;
    let (model, context, init) = (energy.model(), owned2(context), owned2(init));
    let (samples, report) = run_job(py, &energy.callbacks(), move |stop| {
        let mut obs = StderrProgress {
            on: progress,
            last: None,
        };
        let run = boltz::jobs::sample(&model, context, &job, init, &mut obs, &control(stop), None)?;
        if !run.output.complete {
            return Err(boltz::Error::Interrupted("sampling was stopped".into()));
        }
        let out = run.output;
        Ok((out.samples, (run.report, out.energies, out.draw_stats)))
    })?;
    let (report, energies, stats) = report;
    Ok((
        samples.into_pyarray(py),
        json(&report)?,
        energies.map(|e| e.into_pyarray(py)),
        stats.map(|s| draw_stats(py, s)).transpose()?,
    ))
}

/// Each draw's transition statistics under ArviZ's names, (chains, draws)
/// arrays each.
fn draw_stats(
    py: Python<'_>,
    s: boltz::sampler::DrawStats,
) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let d = pyo3::types::PyDict::new(py);
    d.set_item("acceptance_rate", s.accept_prob.into_pyarray(py))?;
    d.set_item("diverging", s.diverging.into_pyarray(py))?;
    d.set_item("n_steps", s.n_evals.mapv(i64::from).into_pyarray(py))?;
    d.set_item("step_size", s.step_size.into_pyarray(py))?;
    d.set_item("tree_depth", s.tree_depth.mapv(i64::from).into_pyarray(py))?;
    Ok(d)
}

/// `sample`'s result: the draws, the JSON report, and when the job asked
/// for them the draws' energies (chains, draws) and transition statistics
/// ([`draw_stats`]).
type SampleResult<'py> = (
    Bound<'py, numpy::PyArray3<f64>>,
    String,
    Option<Bound<'py, PyArray2<f64>>>,
    Option<Bound<'py, pyo3::types::PyDict>>,
);

/// log Z (a JSON report, per-context arrays) of a `LogzJob` given as JSON,
/// and with `points` (N, dim) their log P(y|x) too: (k, N), or (N,) when
/// `paired`.
#[pyfunction]
#[pyo3(signature = (energy, job, context, data, points, paired, progress, reverse_from=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn logz<'py>(
    py: Python<'py>,
    energy: PyRef<'py, Energy>,
    job: &str,
    context: Option<PyReadonlyArray2<'py, f64>>,
    data: Option<PyReadonlyArray2<'py, f64>>,
    points: Option<PyReadonlyArray2<'py, f64>>,
    paired: bool,
    progress: bool,
    reverse_from: Option<PyReadonlyArray2<'py, f64>>,
) -> PyResult<(Option<Bound<'py, numpy::PyArrayDyn<f64>>>, String)> {
    let mut job: LogzJob = settings("logz", job)?;
    job.data = owned2(data);
    job.reverse_from = owned2(reverse_from);
    let (model, context, points) = (energy.model(), owned2(context), owned2(points));
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
/// `settings` names the run (a merge requires them equal; the model's
/// fingerprint is added to them here, on the worker).
#[pyfunction]
#[pyo3(signature = (energy, kind, job, settings, context, data, points, paired, init_spec))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_shard<'py>(
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
    let (model, context, points) = (energy.model(), owned2(context), owned2(points));
    // The settings name the model by what it is, not by its path: workers
    // whose `model.json` differ write shards that do not merge.
    let settings = format!("{settings} model {}", model.fingerprint());
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
pub(crate) fn merge_shards<'py>(
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
pub(crate) fn diagnose(py: Python<'_>, samples: PyReadonlyArray3<'_, f64>) -> PyResult<String> {
    // The caller's array, this copy and the working copies: within the
    // budget before any of them is made here.
    let (c, d, k) = samples.as_array().dim();
    boltz::budget::check(
        "samples",
        "the diagnosis",
        boltz::jobs::diagnose::working_bytes(c, d, k, 2),
    )
    .map_err(to_py)?;
    let s = samples.as_array().to_owned();
    let report = run_job(py, &[], move |stop| {
        boltz::jobs::diagnose::diagnose_with(s.view(), Some(&stop))
    })?;
    json(&report)
}

/// The comparison of samplers on one energy, as JSON (the CLI's report).
#[pyfunction]
#[pyo3(signature = (energy, samplers, chains, warmup, draws, seed, ula_step, beta, context))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn compare(
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
    let (model, context) = (energy.model(), owned2(context));
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
