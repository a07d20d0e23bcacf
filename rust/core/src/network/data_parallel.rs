//! The two halves of a data-parallel training step, for ranks that each hold a share of every
//! global batch: each rank computes its share's gradients into one contiguous buffer, the
//! caller sums those buffers across ranks (one MPI Allreduce), and each rank applies the same
//! optimizer step from the sum. Parameters that start equal stay equal, and the result is the
//! step one process would take on the whole global batch.
//!
//! The buffer is laid out as `[gradients | rows | loss sum | failures]`: a rank's gradients are
//! its mean-loss gradients times its rows, so that the sum over ranks divided by the summed
//! rows is the mean over the global batch however unevenly it is shared; the loss the same.
//! The failures slot is the caller's, to tell every rank in the same reduction that one rank
//! could not compute its share.

use super::stats::update_ratios;
use super::{EpochOutcome, MetricSums, Network};
use crate::loss::Targets;
use crate::{Error, Real, Result};

/// Slots after the gradients in the buffer a data-parallel step reduces.
pub const REDUCE_EXTRA_SLOTS: usize = 3;
/// Largest share of a step a float32 buffer counts exactly (2^24).
const MAX_EXACT_ROWS_F32: usize = 1 << 24;

impl<T: Real> Network<T> {
    /// Length of the buffer a data-parallel step reduces: the gradients and three slots.
    pub fn reduce_len(&self) -> usize {
        self.params.len() + REDUCE_EXTRA_SLOTS
    }

    fn check_reduce_buffer(&self, buffer: &[T]) -> Result<()> {
        if buffer.len() != self.reduce_len() {
            return Err(Error::shape(
                "buffer",
                format!(
                    "{} values (the parameters and {REDUCE_EXTRA_SLOTS} slots)",
                    self.reduce_len()
                ),
                format!("{} values", buffer.len()),
            ));
        }
        Ok(())
    }

    /// Starts an epoch of data-parallel steps: resets the gradient statistics and the training
    /// metrics, and notes the parameters to measure how far the epoch moves them.
    pub fn begin_shared_epoch(&mut self) {
        self.begin_epoch_stats();
    }

    /// This rank's share of a step: forward, loss and backward of its `n` rows (0 when its data
    /// has run out), written into `buffer` as described in the module docs, the dropout masks
    /// keyed as rows `row_offset..` of the global batch. Returns the share's mean loss.
    /// Changes no parameter; an empty share still counts the training forward, so that every
    /// rank keys the next step's masks alike.
    #[allow(clippy::too_many_arguments)]
    pub fn shared_step_gradients(
        &mut self,
        x: &[T],
        targets: Targets<'_, T>,
        weights: Option<&[T]>,
        n: usize,
        row_offset: usize,
        buffer: &mut [T],
    ) -> Result<f64> {
        self.check_reduce_buffer(buffer)?;
        if std::mem::size_of::<T>() == 4 && n >= MAX_EXACT_ROWS_F32 {
            return Err(Error::value(
                "batch_size",
                format!("a float32 data-parallel step counts fewer than 2^24 rows, got {n}"),
            ));
        }
        let p = self.params.len();
        let (grads, slots) = buffer.split_at_mut(p);
        if n == 0 {
            if !x.is_empty() {
                return Err(Error::shape(
                    "X",
                    "0 values for 0 rows",
                    format!("{}", x.len()),
                ));
            }
            grads.fill(T::zero());
            slots.fill(T::zero());
            self.set_training_forwards(self.training_forwards() + 1);
            return Ok(0.0);
        }
        let value = self.gradients_into(x, targets, weights, n, row_offset, grads)?;
        let rows = T::of(n as f64);
        grads.iter_mut().for_each(|g| *g *= rows);
        slots[0] = rows;
        slots[1] = T::of(value * n as f64);
        slots[2] = T::zero();
        Ok(value)
    }

    /// The optimizer step from a buffer summed over every rank: divides by the summed rows,
    /// then measures, clips and applies the gradients as `train_step` does. Returns the global
    /// batch's mean loss and rows. A non-finite loss or gradient is refused with
    /// `Error::Diverged` and changes nothing, on every rank alike since all see the same sums.
    pub fn apply_reduced(&mut self, buffer: &mut [T]) -> Result<(f64, usize)> {
        self.check_reduce_buffer(buffer)?;
        let p = self.params.len();
        let (grads, slots) = buffer.split_at_mut(p);
        let rows = slots[0].f64();
        if !(rows >= 1.0 && rows.fract() == 0.0) || slots[2] != T::zero() {
            return Err(Error::value(
                "buffer",
                format!(
                    "not a reduced step: {rows} rows and {} failures; every rank must \
                     contribute to the sum",
                    slots[2].f64()
                ),
            ));
        }
        let value = slots[1].f64() / rows;
        let scale = T::of(1.0 / rows);
        grads.iter_mut().for_each(|g| *g *= scale);
        self.descend(value, grads)?;
        Ok((value, rows as usize))
    }

    /// What the epoch's data-parallel steps did: gradient norms and update ratios (equal on
    /// every rank) and this rank's training-metric sums (the caller sums them over ranks).
    /// The loss and batch count are the caller's, from `apply_reduced`.
    pub fn end_shared_epoch(&self) -> EpochOutcome {
        self.epoch_stats()
    }

    pub(super) fn begin_epoch_stats(&mut self) {
        self.batch.params_at_start.clear();
        self.batch.params_at_start.extend_from_slice(&self.params);
        self.grad_stats.reset();
        self.metrics.clear();
    }

    pub(super) fn epoch_stats(&self) -> EpochOutcome {
        let info = &self.param_info;
        EpochOutcome {
            loss: 0.0,
            batches: 0,
            stopped: false,
            grad_norms: self.grad_stats.mean_norms(info.len()),
            update_ratios: update_ratios(info, &self.batch.params_at_start, &self.params),
            metrics: MetricSums::clone(&self.metrics),
        }
    }
}

#[cfg(test)]
#[path = "tests/data_parallel.rs"]
mod tests;
