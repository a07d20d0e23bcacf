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
use crate::loss::{self, Targets};
use crate::{Error, Real, Result};

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
        if n < 2 && self.training.has_batch_norm() {
            return Err(Error::value(
                "X",
                format!("BatchNorm1d in training mode needs more than 1 sample per batch, got {n}"),
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
                training.tracked[b.ordinal] += 1;
            }
        }
        training.forwards += 1;
    }

    /// The mean loss of `n` samples in training mode: dropout masks drawn and batch-norm running
    /// statistics moved, as by `gradients`, but no gradient computed.
    pub fn training_loss(&mut self, x: &[T], targets: Targets<'_, T>, n: usize) -> Result<f64> {
        self.check_input(x, n)?;
        self.check_batch_memory(n)?;
        self.check_training_batch(n)?;
        loss::check_targets(&self.spec.loss, targets, n, self.output_width())?;
        let model = Model {
            layers: &self.layers,
            widths: &self.widths,
            params: &self.params,
            buffers: &self.training.running,
            loss: &self.spec.loss,
            key: self.training.key(self.spec.seed),
        };
        let value = model.training_loss(&mut self.work, x, targets, n)?;
        self.finish_training_forward(x, n);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parallel::{split_gradients, Replica};
    use super::super::pass::Work;
    use super::*;
    use crate::{LayerSpec, LossSpec, NetworkSpec, OptimizerSpec};

    fn spec(layers: Vec<LayerSpec>) -> NetworkSpec {
        NetworkSpec {
            layers,
            loss: LossSpec::Mse,
            optimizer: OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            seed: 11,
        }
    }

    fn dense(i: usize, o: usize) -> LayerSpec {
        LayerSpec::Dense {
            in_features: i,
            out_features: o,
            bias: true,
        }
    }

    fn data(n: usize, w: usize) -> Vec<f64> {
        (0..n * w)
            .map(|i| ((i * 31 + 7) % 19) as f64 / 9.0 - 1.0)
            .collect()
    }

    #[test]
    fn training_forwards_move_running_statistics_and_inference_does_not() {
        let mut net = Network::<f64>::new(spec(vec![
            dense(3, 4),
            LayerSpec::BatchNorm1d {
                num_features: 4,
                eps: 1e-5,
                momentum: 0.1,
            },
            LayerSpec::Relu,
            dense(4, 2),
        ]))
        .unwrap();
        assert_eq!(net.buffer_info().len(), 2);
        assert_eq!(net.tracked_names(), ["1.num_batches_tracked"]);
        assert_eq!(net.running_stats(), &[0., 0., 0., 0., 1., 1., 1., 1.]);
        let (n, x, y) = (6, data(6, 3), data(6, 2));
        let mut out = vec![0.0; n * 2];
        net.forward(&x, n, &mut out).unwrap();
        net.loss(&x, Targets::Values(&y), n).unwrap();
        assert_eq!(net.batches_tracked(), [0]);
        net.gradients(&x, Targets::Values(&y), n).unwrap();
        net.training_loss(&x, Targets::Values(&y), n).unwrap();
        assert_eq!(net.batches_tracked(), [2]);
        assert_eq!(net.training_forwards(), 2);
        // The batch statistics of layer 1's input, twice through the momentum.
        let mut h = vec![0.0; n * 4];
        crate::dense::Dense {
            in_features: 3,
            out_features: 4,
            weight_offset: 0,
            bias_offset: Some(12),
        }
        .forward(net.params(), &x, n, &mut h, false);
        for j in 0..4 {
            let col: Vec<f64> = (0..n).map(|r| h[r * 4 + j]).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let want_mean = 0.1 * mean + 0.9 * (0.1 * mean);
            let want_var = 0.1 * var + 0.9 * (0.1 * var + 0.9);
            assert!((net.running_stats()[j] - want_mean).abs() < 1e-12);
            assert!((net.running_stats()[4 + j] - want_var).abs() < 1e-12);
        }
        // One sample cannot be batch-normalized in training; nothing changes.
        let err = net.gradients(&x[..3], Targets::Values(&y[..2]), 1);
        assert!(matches!(err, Err(Error::Value { .. })));
        assert_eq!(net.batches_tracked(), [2]);
        // set_buffers checks and changes nothing on error.
        assert!(net.set_buffers(&[0.0; 7], &[0]).is_err());
        assert!(net
            .set_buffers(&[0., 0., 0., 0., 1., -1., 1., 1.], &[0])
            .is_err());
        assert!(net.set_buffers(&[0.0; 8], &[-1]).is_err());
        assert_eq!(net.batches_tracked(), [2]);
        net.set_buffers(&[1.0; 8], &[5]).unwrap();
        assert_eq!(net.running_stats(), &[1.0; 8]);
        assert_eq!(net.batches_tracked(), [5]);
    }

    #[test]
    fn dropout_and_layer_norm_steps_split_over_threads_like_one_pass() {
        let net = Network::<f64>::new(spec(vec![
            dense(6, 9),
            LayerSpec::LayerNorm {
                normalized_shape: 9,
                eps: 1e-5,
            },
            LayerSpec::Gelu,
            LayerSpec::Dropout { p: 0.4 },
            dense(9, 3),
        ]))
        .unwrap();
        let (n, x, y) = (23, data(23, 6), data(23, 3));
        let t = Targets::Values(&y);
        let mut model = net.model();
        model.key = net.training.key(net.spec.seed);
        let mut single = vec![0.0; net.params().len()];
        let whole = model
            .gradients(&mut Work::default(), &mut single, &x, t, None, n, false)
            .unwrap();
        for p in [2, 3, 5] {
            let mut replicas = vec![Replica::default(); p];
            let mut grads = vec![0.0; single.len()];
            let split = split_gradients(model, &mut replicas, &mut grads, &x, t, None, n).unwrap();
            assert!((split - whole).abs() < 1e-14);
            for (a, b) in grads.iter().zip(&single) {
                assert!((a - b).abs() < 1e-13 * (1.0 + b.abs()), "{p}: {a} vs {b}");
            }
        }
    }
}
