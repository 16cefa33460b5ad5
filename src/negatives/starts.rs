//! Where each call's chains start (fresh draws, the positives, persistent
//! chains or replay-buffer entries) and where their ends go back.

use super::{Method, NegativeSampler, ReplayPolicy};
use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView2};
use rand::RngExt;

impl NegativeSampler {
    /// Each chain's starting point for this call (fresh draws, the
    /// positives, persistent chains or buffer entries), how many were fresh,
    /// and the buffer slot each replayed chain came from.
    #[allow(clippy::type_complexity)]
    pub(super) fn starts(
        &mut self,
        positives: Option<ArrayView2<f64>>,
    ) -> Result<(Array2<f64>, usize, Vec<Option<usize>>)> {
        let (n, d) = (self.active, self.state.dim);
        let mut start = Array2::zeros((n, d));
        let mut reinitialised = 0;
        let mut replay_slots: Vec<Option<usize>> = vec![None; n];
        match self.state.method.clone() {
            Method::Pcd if !self.state.persistent.is_empty() => {
                start.assign(
                    &ArrayView2::from_shape((n, d), &self.state.persistent).expect("checked size"),
                );
            }
            // Short runs, and PCD's first call: every chain from noise.
            Method::ShortRun | Method::Pcd => {
                for i in 0..n {
                    self.fresh_start(i, &mut start);
                }
                reinitialised = n;
            }
            Method::Cd => {
                let p = positives.ok_or_else(|| {
                    Error::param("data", "CD starts its chains at the positives: give them")
                })?;
                if p.nrows() != n {
                    return Err(Error::shape(
                        "positives for CD",
                        format!("({n}, {d}), one per chain"),
                        format!("{:?}", p.shape()),
                    ));
                }
                start.assign(&p);
            }
            Method::Tempered { .. } => {
                return Err(Error::param(
                    "method",
                    "parallel-tempering negatives come from generate_tempered",
                ));
            }
            Method::Replay {
                reinit,
                policy,
                capacity,
            } => {
                if policy == ReplayPolicy::WriteBack && self.buffer_len() == 0 {
                    // JEM: the buffer starts full of noise.
                    let mut row = vec![0.0; d];
                    for _ in 0..capacity {
                        let j = self.buffer_len();
                        self.state.init.draw(j, &mut self.aux, &mut row, false);
                        self.state.buffer.extend_from_slice(&row);
                    }
                }
                let len = self.buffer_len();
                for i in 0..n {
                    let fresh = len == 0 || self.aux.random::<f64>() < reinit;
                    if fresh {
                        self.fresh_start(i, &mut start);
                        reinitialised += 1;
                        if policy == ReplayPolicy::WriteBack {
                            replay_slots[i] = Some(self.aux.random_range(0..len));
                        }
                    } else {
                        let k = self.aux.random_range(0..len);
                        start.row_mut(i).assign(
                            &ArrayView2::from_shape((len, d), &self.state.buffer)
                                .expect("checked size")
                                .row(k),
                        );
                        replay_slots[i] = Some(k);
                    }
                }
            }
        }
        Ok((start, reinitialised, replay_slots))
    }

    /// Chain `i`'s start drawn afresh from the starting distribution, with
    /// the chain's own stream, into row `i` of `start`.
    fn fresh_start(&mut self, i: usize, start: &mut Array2<f64>) {
        self.state.init.draw(
            i,
            &mut self.rngs[i],
            start.row_mut(i).as_slice_mut().expect("standard layout"),
            false,
        );
    }

    /// Writes the call's negatives back: persistent chains (PCD) or the
    /// replay buffer by its [`ReplayPolicy`].
    pub(super) fn write_back(&mut self, negatives: &Array2<f64>, replay_slots: &[Option<usize>]) {
        let (n, d) = (negatives.nrows(), self.state.dim);
        // Write back.
        match self.state.method.clone() {
            Method::Pcd => self.state.persistent = negatives.iter().copied().collect(),
            Method::Replay {
                capacity, policy, ..
            } => {
                for i in 0..n {
                    let row = negatives.row(i);
                    let len = self.buffer_len();
                    let slot = match policy {
                        ReplayPolicy::WriteBack => replay_slots[i],
                        ReplayPolicy::Append => None,
                    };
                    match slot {
                        Some(k) => self.state.buffer[k * d..(k + 1) * d]
                            .copy_from_slice(row.as_slice().expect("standard layout")),
                        None if len < capacity => self.state.buffer.extend(row.iter()),
                        None => {
                            let k = self.state.buffer_next % capacity;
                            self.state.buffer[k * d..(k + 1) * d]
                                .copy_from_slice(row.as_slice().expect("standard layout"));
                            self.state.buffer_next = (k + 1) % capacity;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
