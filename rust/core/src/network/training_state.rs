//! What training mode keeps between steps besides the parameters: the batch-norm layers'
//! running statistics and batch counters (torch's buffers: in the network, never in the
//! optimizer), and the count of training forwards that keys the dropout masks.
//!
//! Every training-mode forward (`gradients`, `train_step`, each batch of `fit_epoch`, and
//! `training_loss`) is one step of this state, as every training-mode forward in torch is:
//! batch norm moves its running statistics and counts the batch, and dropout draws fresh masks.

use super::layout::{Layer, ParamInfo};
use super::pass::Model;
use super::Network;
use crate::dropout::MaskKey;
use crate::{Error, Real, Result, Samples};

/// Fewest samples a training batch of a network with batch norm may have.
pub(super) const BATCH_NORM_MIN_ROWS: usize = 2;

/// The running statistics of the batch-norm layers and the training-forward counter.
#[derive(Debug, Clone)]
pub(super) struct TrainingState<T> {
    /// Names, shapes and offsets of the running means and variances in `running`.
    info: Vec<ParamInfo>,
    running: Vec<T>,
    /// "i.num_batches_tracked" per batch-norm layer, and the counts.
    tracked_names: Vec<String>,
    tracked: Vec<i64>,
    /// Training forwards run so far: the `step` of the next dropout mask key.
    forwards: u64,
}

impl<T: Real> TrainingState<T> {
    /// Running means 0, variances 1 and counts 0, as torch's initial buffers.
    pub fn new(info: Vec<ParamInfo>, len: usize, tracked_names: Vec<String>) -> Self {
        let mut running = vec![T::zero(); len];
        for b in info.iter().filter(|b| b.name.ends_with(".running_var")) {
            running[b.offset..b.offset + b.len()].fill(T::one());
        }
        TrainingState {
            info,
            running,
            tracked: vec![0; tracked_names.len()],
            tracked_names,
            forwards: 0,
        }
    }

    pub fn running(&self) -> &[T] {
        &self.running
    }

    pub fn has_batch_norm(&self) -> bool {
        !self.tracked.is_empty()
    }

    /// The dropout key of the next training forward of a network seeded `seed`.
    pub fn key(&self, seed: u64) -> MaskKey {
        MaskKey {
            seed,
            step: self.forwards,
            row_offset: 0,
        }
    }
}

/// Sets the weight γ of every normalization layer to 1 (its bias β is already 0), as torch.
pub(super) fn init_norm<T: Real>(layers: &[Layer], params: &mut [T]) {
    for layer in layers {
        let (offset, len) = match layer {
            Layer::BatchNorm(b) => (b.weight_offset, b.features),
            Layer::LayerNorm(l) => (l.weight_offset, l.features),
            _ => continue,
        };
        params[offset..offset + len].fill(T::one());
    }
}

impl<T: Real> Network<T> {
    /// Names, shapes and offsets of the running means and variances ("i.running_mean",
    /// "i.running_var") in `running_stats()`.
    pub fn buffer_info(&self) -> &[ParamInfo] {
        &self.training.info
    }

    /// The running means and variances of the batch-norm layers, flat.
    pub fn running_stats(&self) -> &[T] {
        &self.training.running
    }

    /// The names "i.num_batches_tracked" of the batch-norm layers' counters, in order.
    pub fn tracked_names(&self) -> &[String] {
        &self.training.tracked_names
    }

    /// The batch-norm layers' counts of training batches.
    pub fn batches_tracked(&self) -> &[i64] {
        &self.training.tracked
    }

    /// Training forwards run so far (the dropout masks' step).
    pub fn training_forwards(&self) -> u64 {
        self.training.forwards
    }

    /// Sets the count of training forwards (to resume a saved network's dropout masks).
    pub fn set_training_forwards(&mut self, forwards: u64) {
        self.training.forwards = forwards;
    }

    /// Replaces the running statistics (flat, `buffer_info` order) and the batch counts.
    /// Values must be finite, variances and counts not negative; on error nothing changes.
    pub fn set_buffers(&mut self, running: &[T], tracked: &[i64]) -> Result<()> {
        let state = &self.training;
        if running.len() != state.running.len() {
            return Err(Error::shape(
                "buffers",
                format!("{} running-statistic values", state.running.len()),
                format!("{}", running.len()),
            ));
        }
        if tracked.len() != state.tracked.len() {
            return Err(Error::shape(
                "buffers",
                format!("{} num_batches_tracked counts", state.tracked.len()),
                format!("{}", tracked.len()),
            ));
        }
        crate::real::check_finite(running, "buffers")?;
        for b in state
            .info
            .iter()
            .filter(|b| b.name.ends_with(".running_var"))
        {
            if running[b.offset..b.offset + b.len()]
                .iter()
                .any(|&v| v < T::zero())
            {
                return Err(Error::value(
                    &format!("buffers[{:?}]", b.name),
                    "a variance must be >= 0",
                ));
            }
        }
        if let Some((name, c)) = state
            .tracked_names
            .iter()
            .zip(tracked)
            .find(|(_, &c)| c < 0)
        {
            return Err(Error::value(
                &format!("buffers[{name:?}]"),
                format!("must be >= 0, got {c}"),
            ));
        }
        self.training.running.copy_from_slice(running);
        self.training.tracked.copy_from_slice(tracked);
        Ok(())
    }

    /// Refuses a training batch batch norm cannot normalize: torch needs more than one value
    /// per feature.
    pub(super) fn check_training_batch(&self, n: usize) -> Result<()> {
        if n < BATCH_NORM_MIN_ROWS && self.training.has_batch_norm() {
            return Err(Error::value(
                "X",
                format!(
                    "BatchNorm1d in training mode needs more than {} sample per batch, got {n}",
                    BATCH_NORM_MIN_ROWS - 1
                ),
            ));
        }
        Ok(())
    }

    /// After a training forward of `x` (n rows) on one thread: moves every batch-norm layer's
    /// running statistics towards its batch's and counts the batch, then counts the forward.
    pub(super) fn finish_training_forward(&mut self, x: &[T], n: usize) {
        let Network {
            layers,
            work,
            training,
            ..
        } = self;
        for (i, layer) in layers.iter().enumerate() {
            if let Layer::BatchNorm(b) = layer {
                let mut stats = std::mem::take(&mut work.stats);
                b.batch_stats(work.input(x, i), n, &mut stats);
                b.update_running(&stats, n, &mut training.running);
                work.stats = stats;
                training.tracked[b.ordinal] = training.tracked[b.ordinal].saturating_add(1);
            }
        }
        // Saturates: a count at its limit stays there, and a file holding it still loads.
        training.forwards = training.forwards.saturating_add(1);
    }

    /// The loss of `batch` in training mode: dropout masks drawn and batch-norm running
    /// statistics moved, as by `gradients`, but no gradient computed.
    pub fn training_loss(&mut self, batch: Samples<'_, T>) -> Result<f64> {
        self.check_training_data(batch)?;
        self.check_batch_memory(batch.n)?;
        self.check_training_batch(batch.n)?;
        let model = Model {
            layers: &self.layers,
            widths: &self.widths,
            params: &self.params,
            buffers: &self.training.running,
            loss: &self.spec.loss,
            key: self.training.key(self.spec.seed),
        };
        let value = model.training_loss(&mut self.work, batch)?;
        self.finish_training_forward(batch.x, batch.n);
        Ok(value)
    }
}

#[cfg(test)]
#[path = "tests/training_state.rs"]
mod tests;
