//! log P(y|x) of given points: the log Z job's estimate subtracted from
//! each point's log density (the CLI's `prob`).

use super::{LogzJob, LogzRun, logz};
use crate::ais;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::run::{Control, Observer};
use ndarray::{Array2, ArrayD};
use std::path::Path;

/// The checks of [`prob`] that need no points: a conditional model needs
/// contexts, `paired` needs a conditional model.
pub fn check_prob(model: &Model, have_contexts: bool, paired: bool) -> Result<()> {
    if model.conditional().is_some() && !have_contexts {
        return Err(Error::param(
            "context",
            format!(
                "model `{}` is conditional: prob needs contexts (k, {})",
                model.name,
                model.x_dim()
            ),
        ));
    }
    if paired && model.conditional().is_none() {
        return Err(Error::param(
            "paired",
            format!(
                "model `{}` is not conditional: its log P(y) is one per point already",
                model.name
            ),
        ));
    }
    Ok(())
}

/// log P(y|x) of `points` (N x dim): under every context (k x N), under
/// its own context (`paired`: N, as many contexts as points), or log P(y)
/// under an unconditional model (N). log Z comes from [`logz`] with `job`.
/// With `job.shard` the array is `-beta F(x, y)` (log Z left out: the
/// merge of the shards subtracts the whole run's).
///
/// ```
/// use boltz::jobs::{LogzJob, prob};
/// let model = boltz::model::load("gauss-ill")?;
/// let points = ndarray::Array2::zeros((3, 100));
/// let (logp, run) = prob(&model, None, points.view(), false, &LogzJob::default(), &Default::default(), None, &mut boltz::NoObserver)?;
/// assert_eq!(logp.shape(), &[3]);
/// assert_eq!(run.report.method, "exact");
/// # Ok::<(), boltz::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn prob(
    model: &Model,
    contexts: Option<Array2<f64>>,
    points: ndarray::ArrayView2<f64>,
    paired: bool,
    job: &LogzJob,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<(ArrayD<f64>, LogzRun)> {
    check_prob(model, contexts.is_some(), paired)?;
    if points.ncols() != model.dim() {
        return Err(Error::shape(
            "points",
            format!("(n, {})", model.dim()),
            format!("{:?}", points.shape()),
        ));
    }
    model.check_points(points, "points")?;
    if paired {
        let k = contexts.as_ref().map_or(0, |c| c.nrows());
        if k != points.nrows() {
            return Err(Error::shape(
                "paired",
                format!("as many contexts as points ({})", points.nrows()),
                format!("{k} contexts"),
            ));
        }
    }
    let run = logz(model, contexts, job, control, resume, observer)?;
    // A shard's log Z is partial: it returns `-beta F(x, y)` (log P with
    // log Z = 0, the same arithmetic), from which the merge subtracts the
    // merged log Z.
    let zeros = vec![0.0; run.report.log_z.len()];
    let log_z = if job.shard.is_some() {
        &zeros
    } else {
        &run.report.log_z
    };
    let logp: ArrayD<f64> = match (model.conditional(), &run.contexts) {
        (Some(c), Some(ctx)) if paired => {
            ais::log_prob_paired(c.as_ref(), ctx.view(), points, log_z, job.beta)?.into_dyn()
        }
        (Some(c), Some(ctx)) => {
            ais::log_prob(c.as_ref(), ctx.view(), points, log_z, job.beta)?.into_dyn()
        }
        _ => {
            let e = model.energy(None)?;
            ais::log_prob_unconditional(e.as_ref(), points, log_z[0], job.beta)?.into_dyn()
        }
    };
    Ok((logp, run))
}
