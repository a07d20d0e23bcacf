//! One epoch of mini-batch training: shuffle with the network's generator, then a training step
//! per batch, all inside Rust.

use super::Network;
use crate::loss::{self, Targets};
use crate::{Error, Real, Result};

/// What one epoch of `fit_epoch` did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochOutcome {
    /// Mean training loss over the samples seen (each batch's mean loss weighted by its size);
    /// with sample weights, Σ w_i·l_i / (samples seen), the weighted loss of the epoch.
    pub loss: f64,
    /// Batches completed.
    pub batches: usize,
    /// Whether `on_batch` ended the epoch early.
    pub stopped: bool,
    /// Per parameter tensor (`param_info` order): the mean gradient norm over the epoch's steps.
    pub grad_norms: Vec<f64>,
    /// Per parameter tensor: ‖change over the epoch‖ / ‖value at its start‖.
    pub update_ratios: Vec<f64>,
    /// The training metrics' sums over the epoch's steps, from the steps' own outputs.
    pub metrics: super::MetricSums,
}

/// Where an epoch stands, as `on_batch` sees it before each batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub batches: usize,
    pub samples: usize,
    /// Σ over finished batches of batch loss × batch size.
    pub loss_sum: f64,
}

/// Buffers a shuffled epoch gathers its batches into, kept between epochs.
#[derive(Debug, Clone, Default)]
pub(super) struct Batch<T> {
    x: Vec<T>,
    values: Vec<T>,
    labels: Vec<i64>,
    weights: Vec<T>,
    order: Vec<usize>,
    /// The parameters when the epoch began, to measure how far it moved them.
    pub(super) params_at_start: Vec<T>,
}

/// Copies the rows `idx` of a row-major `width`-wide buffer into `dst`.
fn gather<X: Copy>(src: &[X], width: usize, idx: &[usize], dst: &mut Vec<X>) {
    dst.clear();
    for &i in idx {
        // panic-free: idx is a permutation of 0..n and check_input proved src.len() == n × width.
        dst.extend_from_slice(&src[i * width..(i + 1) * width]);
    }
}

impl<T: Real> Network<T> {
    /// Checks `n` training samples as every step of an epoch would, all at once: the inputs
    /// finite and of the input width, the targets right for the loss (labels in range), the
    /// optional weights one per sample, finite and >= 0.
    pub fn check_training_data(
        &self,
        x: &[T],
        targets: Targets<'_, T>,
        weights: Option<&[T]>,
        n: usize,
    ) -> Result<()> {
        self.check_input(x, n)?;
        loss::check_targets(&self.spec.loss, targets, n, self.output_width())?;
        if let Some(w) = weights {
            loss::check_weights(w, n)?;
        }
        Ok(())
    }

    /// One epoch of mini-batch training over `n` samples: shuffled by the network's generator
    /// when `shuffle`, the last batch smaller when `batch_size` does not divide `n`.
    /// `on_batch` sees the progress before each batch (for Ctrl-C and progress bars); a `true`
    /// ends the epoch there. A diverging step ends it with `Error::Diverged` naming the batch,
    /// the network holding the weights of the last finite step.
    pub fn fit_epoch(
        &mut self,
        x: &[T],
        targets: Targets<'_, T>,
        n: usize,
        batch_size: usize,
        shuffle: bool,
        on_batch: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<EpochOutcome> {
        self.fit_epoch_weighted(x, targets, None, n, batch_size, shuffle, on_batch)
    }

    /// `fit_epoch` with optional per-sample weights (one per sample, finite, >= 0, checked once
    /// for all samples before any step): each step trains on its batch's weighted loss
    /// Σ w_i·l_i / batch rows, the weights gathered with their rows when shuffling.
    #[allow(clippy::too_many_arguments)]
    pub fn fit_epoch_weighted(
        &mut self,
        x: &[T],
        targets: Targets<'_, T>,
        weights: Option<&[T]>,
        n: usize,
        batch_size: usize,
        shuffle: bool,
        on_batch: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<EpochOutcome> {
        // Every batch's data are checked now, so that a bad label cannot stop the epoch
        // half-way with the network changed; likewise a last batch too small for batch norm.
        self.check_training_data(x, targets, weights, n)?;
        if batch_size == 0 {
            return Err(Error::value("batch_size", "must be at least 1, got 0"));
        }
        // A batch never holds more than the n samples (batch_size may exceed them).
        self.check_batch_memory(batch_size.min(n))?;
        let last_batch = match n % batch_size {
            0 => batch_size.min(n),
            rest => rest,
        };
        self.check_training_batch(last_batch).map_err(|_| {
            Error::value(
                "batch_size",
                format!(
                    "BatchNorm1d needs at least 2 samples per training batch, but {n} samples \
                     in batches of {batch_size} leave a last batch of {last_batch}; choose \
                     another batch_size"
                ),
            )
        })?;
        self.begin_epoch_stats();
        let mut batch = std::mem::take(&mut self.batch);
        batch.order.clear();
        batch.order.extend(0..n);
        if shuffle {
            self.rng.shuffle(&mut batch.order);
        }
        let outcome = self.run_batches(
            x, targets, weights, &mut batch, batch_size, shuffle, on_batch,
        );
        self.batch = batch;
        let outcome = outcome?;
        Ok(EpochOutcome {
            loss: outcome.loss,
            batches: outcome.batches,
            stopped: outcome.stopped,
            ..self.epoch_stats()
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn run_batches(
        &mut self,
        x: &[T],
        targets: Targets<'_, T>,
        weights: Option<&[T]>,
        batch: &mut Batch<T>,
        batch_size: usize,
        shuffle: bool,
        on_batch: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<EpochOutcome> {
        let (w_in, w_out) = (self.input_width(), self.output_width());
        let mut outcome = EpochOutcome {
            loss: 0.0,
            batches: 0,
            stopped: false,
            grad_norms: Vec::new(),
            update_ratios: Vec::new(),
            metrics: super::MetricSums::default(),
        };
        let mut seen = 0usize;
        let Batch {
            x: bx,
            values: bv,
            labels: bl,
            weights: bw,
            order,
            ..
        } = batch;
        for idx in order.chunks(batch_size) {
            let progress = Progress {
                batches: outcome.batches,
                samples: seen,
                loss_sum: outcome.loss,
            };
            if on_batch(progress) {
                outcome.stopped = true;
                break;
            }
            let rows = idx.len();
            let value = if shuffle {
                gather(x, w_in, idx, bx);
                let t = match targets {
                    Targets::Labels(l) => {
                        gather(l, 1, idx, bl);
                        Targets::Labels(&bl[..])
                    }
                    Targets::Values(v) => {
                        gather(v, w_out, idx, bv);
                        Targets::Values(&bv[..])
                    }
                };
                let w = weights.map(|w| {
                    gather(w, 1, idx, bw);
                    &bw[..]
                });
                self.train_step_weighted(bx, t, w, rows)
            } else {
                // Unshuffled batches are contiguous: train on slices of the data, no copy.
                let (a, b) = (idx[0], idx[0] + rows);
                let (bx, t) = (&x[a * w_in..b * w_in], targets.rows(a, b, w_out));
                self.train_step_weighted(bx, t, weights.map(|w| &w[a..b]), rows)
            };
            let value = value.map_err(|e| match e {
                Error::Diverged { what, .. } => Error::Diverged {
                    batch: Some(outcome.batches),
                    what,
                },
                other => other,
            })?;
            outcome.loss += value * rows as f64;
            seen += rows;
            outcome.batches += 1;
        }
        if seen > 0 {
            outcome.loss /= seen as f64;
        }
        Ok(outcome)
    }
}
