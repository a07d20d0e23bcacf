//! A sequential network: its layers, one flat buffer each of parameters and gradients, the
//! optimizer's state, and per-batch work buffers that are sized once and then reused.

mod batches;
mod epoch;
mod layout;
mod metrics;
mod pass;
mod row_split;
mod scratch;
mod stats;
mod training_state;

use rayon::prelude::*;

use crate::dropout::MaskKey;
use crate::init::init_dense;
use crate::loss::{self, Targets};
use crate::optim::{self, Optimizer};
use crate::rng::Rng;
use crate::{memory, threads, Error, NetworkSpec, Real, Result, Samples};

pub use batches::{epoch_steps, Ranks};
pub use epoch::{EpochOutcome, EpochSettings, Progress, Reduce, REDUCE_SLOTS};
pub use layout::{tensors, Layer, ParamInfo, Tensors};
pub use metrics::MetricSums;

use layout::{build_layers, Layout};
use pass::{Model, Work, INFERENCE_CHUNK};
use row_split::{parts, split_gradients, Replica};
use scratch::ScratchPool;
use stats::GradStats;

/// A sequential network over element type `T` (`f32` or `f64`).
#[derive(Debug, Clone)]
pub struct Network<T> {
    spec: NetworkSpec,
    layers: Vec<Layer>,
    /// `widths[i]` is layer i's input width; the last entry is the network's output width.
    widths: Vec<usize>,
    param_info: Vec<ParamInfo>,
    params: Vec<T>,
    grads: Vec<T>,
    optimizer: Optimizer<T>,
    rng: Rng,
    /// Buffers of a step run on one thread.
    work: Work<T>,
    /// Per-thread buffers of a step split over threads.
    replicas: Vec<Replica<T>>,
    epoch: epoch::EpochBuffers<T>,
    scratch: ScratchPool<T>,
    grad_stats: GradStats,
    /// Metric sums of the training steps since the last reset (each epoch's start).
    metrics: MetricSums,
    /// Largest global gradient norm a step may apply; larger ones are scaled down to it.
    clip_grad_norm: Option<f64>,
    /// Batch-norm running statistics and the dropout masks' step (network/training_state.rs).
    training: training_state::TrainingState<T>,
}

/// How a step's gradients are clipped before the optimizer takes them.
#[derive(Debug, Clone, Copy, Default)]
struct Clipping {
    /// Their global L2 norm at most this (torch's clip_grad_norm_).
    norm: Option<f64>,
    /// Then each element within ±this (torch's clip_grad_value_).
    value: Option<f64>,
}

impl<T: Real> Network<T> {
    /// A network built from `spec`, its weights drawn from `spec.seed`.
    pub fn new(spec: NetworkSpec) -> Result<Self> {
        let Layout {
            layers,
            widths,
            param_info,
            n_params,
            buffer_info,
            n_buffers,
            tracked_names,
            ..
        } = build_layers(&spec.layers)?;
        loss::check_spec(&spec.loss, widths.last().copied().unwrap_or(0))?;
        // Parameters, gradients, the epoch's starting copy and the optimizer's state buffers,
        // plus the batch-norm buffers: refused up front rather than aborting in an allocation.
        let per_param = 3 + crate::optim::MAX_STATE;
        memory::check_alloc::<T>(
            memory::sum([memory::product(&[n_params, per_param]), Some(n_buffers)]),
            "layers",
            "the network's parameters, gradients and optimizer state",
        )?;
        let mut rng = Rng::new(spec.seed);
        let mut params = vec![T::zero(); n_params];
        for (i, layer) in layers.iter().enumerate() {
            let next = match layers.get(i + 1) {
                Some(Layer::Activation(a)) => Some(*a),
                Some(Layer::Prelu(p)) => Some(p.as_initialized()),
                _ => None,
            };
            let next = next.as_ref();
            match layer {
                Layer::Dense(d) => init_dense(d, next, &mut rng, &mut params),
                Layer::Conv(c) => c.init(next, &mut rng, &mut params),
                Layer::Embeddings(e) => e.init(&mut rng, &mut params),
                Layer::Prelu(p) => p.init(&mut params),
                _ => {}
            }
        }
        training_state::init_norm(&layers, &mut params);
        let mut optimizer = Optimizer::new(spec.optimizer.clone(), n_params);
        optimizer.set_param_names(
            param_info
                .iter()
                .map(|p| (p.name.as_str(), p.offset, p.len())),
        )?;
        Ok(Network {
            spec,
            layers,
            widths,
            param_info,
            grads: vec![T::zero(); n_params],
            params,
            optimizer,
            rng,
            work: Work::default(),
            replicas: Vec::new(),
            epoch: Default::default(),
            scratch: ScratchPool::default(),
            grad_stats: GradStats::default(),
            metrics: MetricSums::default(),
            clip_grad_norm: None,
            training: training_state::TrainingState::new(buffer_info, n_buffers, tracked_names),
        })
    }

    /// The description the network was built from.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// The layers as run.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Features each input sample must have.
    pub fn input_width(&self) -> usize {
        self.widths[0]
    }

    /// Values the network outputs per sample.
    pub fn output_width(&self) -> usize {
        self.widths[self.widths.len() - 1]
    }

    /// Names, shapes and offsets of the parameter tensors, in order.
    pub fn param_info(&self) -> &[ParamInfo] {
        &self.param_info
    }

    /// All parameters, flat, in `param_info` order.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// The gradients of the last `gradients`/`train_step` call, flat like `params`.
    pub fn grads(&self) -> &[T] {
        &self.grads
    }

    /// The optimizer and its state.
    pub fn optimizer(&self) -> &Optimizer<T> {
        &self.optimizer
    }

    /// The optimizer, to change its learning rate.
    pub fn optimizer_mut(&mut self) -> &mut Optimizer<T> {
        &mut self.optimizer
    }

    /// The generator that shuffles (and will draw dropout masks).
    pub fn rng(&self) -> &Rng {
        &self.rng
    }

    /// Restores the generator from a saved [`Rng::state`] (to resume training exactly). The
    /// all-zero state is refused: xoshiro would stay at zero forever.
    pub fn set_rng_state(&mut self, state: [u64; 4]) -> Result<()> {
        if state == [0; 4] {
            return Err(Error::value(
                "rng_state",
                "the all-zero generator state is invalid",
            ));
        }
        self.rng = Rng::from_state(state);
        Ok(())
    }

    /// Replaces every parameter (flat, `param_info` order).
    pub fn set_params(&mut self, values: &[T]) -> Result<()> {
        if values.len() != self.params.len() {
            return Err(Error::shape(
                "parameters",
                format!("{} values", self.params.len()),
                format!("{}", values.len()),
            ));
        }
        crate::real::check_finite(values, "parameters")?;
        self.params.copy_from_slice(values);
        Ok(())
    }

    fn model(&self) -> Model<'_, T> {
        Model {
            layers: &self.layers,
            widths: &self.widths,
            params: &self.params,
            buffers: self.training.running(),
            loss: &self.spec.loss,
            key: Default::default(),
        }
    }

    /// Multiply-adds of one sample's forward pass.
    fn macs_per_row(&self) -> usize {
        // A dense layer's products are as many as its weights; a convolution's are more.
        let products: usize = self.layers.iter().map(Layer::macs).sum();
        self.params.len().max(products)
    }

    fn check_input(&self, x: &[T], n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::value("X", "needs at least one sample, got 0"));
        }
        let want = n.checked_mul(self.input_width());
        if want != Some(x.len()) {
            return Err(Error::shape(
                "X",
                format!("{n} samples of {} features", self.input_width()),
                format!("{} values", x.len()),
            ));
        }
        crate::real::check_finite_rows(x, self.input_width(), "X")?;
        // Embedding layers come first: their input is `x`, whose indices they check.
        for layer in &self.layers {
            if let Layer::Embeddings(e) = layer {
                e.check_indices(x, n)?;
            }
        }
        Ok(())
    }

    /// Refuses `n` samples whose outputs (n × output width) could not be allocated: an error
    /// naming X instead of an abort. Inference runs in chunks and needs no more.
    pub fn check_output_memory(&self, n: usize) -> Result<()> {
        memory::check_alloc::<T>(
            n.checked_mul(self.output_width()),
            "X",
            &format!("the outputs of {n} samples"),
        )
    }

    /// Refuses a training batch of `n` samples whose work buffers (every layer's output, two
    /// backward buffers of the widest layer and a convolution's scratch) could not be
    /// allocated.
    pub fn check_batch_memory(&self, n: usize) -> Result<()> {
        let max_width = self.widths.iter().copied().max().unwrap_or(0);
        let per_row = memory::sum(
            self.widths[1..]
                .iter()
                .map(|&w| Some(w))
                .chain([max_width.checked_mul(2)])
                // A convolution's column matrix, the largest one's.
                .chain([self.layers.iter().map(|l| l.scratch_len(1)).max()]),
        );
        memory::check_alloc::<T>(
            per_row.and_then(|r| r.checked_mul(n)),
            "X",
            &format!("a batch of {n} samples"),
        )
    }

    /// The metric sums (accuracy, errors: [`MetricSums`]) of the inference outputs of `n`
    /// samples `x` against `targets`, as a training epoch sums its steps' outputs: the one
    /// definition of every summed metric, for validation data and `evaluate`.
    pub fn metric_sums(&self, x: &[T], targets: Targets<'_, T>, n: usize) -> Result<MetricSums> {
        let width = self.output_width();
        loss::check_targets(&self.spec.loss, targets, n, width)?;
        self.check_output_memory(n)?;
        let mut out = vec![T::zero(); n.saturating_mul(width)];
        self.forward(x, n, &mut out)?;
        let mut sums = MetricSums::default();
        sums.add(&self.spec.loss, &out, targets, n, width);
        Ok(sums)
    }

    /// Inference: the outputs of `n` samples `x` (n × input width) into `out` (n × output width).
    ///
    /// Touches no state of the network, so it may run from many threads at once. Large inputs
    /// are split into chunks run in parallel; a call allocates nothing once warm.
    pub fn forward(&self, x: &[T], n: usize, out: &mut [T]) -> Result<()> {
        self.check_input(x, n)?;
        let (w_in, w_out) = (self.input_width(), self.output_width());
        self.check_output_memory(n)?;
        // panic-free: check_output_memory bounded n × output width by memory::MAX_ELEMENTS.
        if out.len() != n * w_out {
            return Err(Error::shape(
                "out",
                format!("{} values", n * w_out),
                format!("{}", out.len()),
            ));
        }
        let model = self.model();
        if parts(n, self.macs_per_row(), threads::num_threads()) == 1 || n <= INFERENCE_CHUNK {
            self.scratch.with(|s| model.infer(x, n, out, s, true));
        } else {
            threads::install(|| {
                x.par_chunks(INFERENCE_CHUNK * w_in)
                    .zip(out.par_chunks_mut(INFERENCE_CHUNK * w_out))
                    .for_each(|(xc, oc)| {
                        self.scratch
                            .with(|s| model.infer(xc, xc.len() / w_in, oc, s, false))
                    })
            });
        }
        Ok(())
    }

    /// The mean loss of `n` samples in inference mode.
    pub fn loss(&self, x: &[T], targets: Targets<'_, T>, n: usize) -> Result<f64> {
        self.check_output_memory(n)?;
        // panic-free: check_output_memory bounded n × output width by memory::MAX_ELEMENTS.
        let mut out = vec![T::zero(); n * self.output_width()];
        self.forward(x, n, &mut out)?;
        loss::evaluate(&self.spec.loss, &out, n, self.output_width(), targets, None)
    }

    /// Forward, loss and backward of `batch` in training mode: fills `grads`, returns the
    /// loss, Σ_i w_i·l_i / n with per-sample weights (see `loss::evaluate_weighted`), else the
    /// mean. Changes no parameter. On bad targets or weights nothing is changed.
    pub fn gradients(&mut self, batch: Samples<'_, T>) -> Result<f64> {
        let mut grads = std::mem::take(&mut self.grads);
        let value = self.gradients_into(batch, 0, &mut grads);
        self.grads = grads;
        value
    }

    /// `gradients` into the caller's `grads` (as long as the parameters), the dropout masks
    /// keyed as rows `row_offset..row_offset + n` of a larger step: a data-parallel rank
    /// computing its share of a step draws the masks that the step's rows would get.
    fn gradients_into(
        &mut self,
        batch: Samples<'_, T>,
        row_offset: usize,
        grads: &mut [T],
    ) -> Result<f64> {
        self.check_training_data(batch)?;
        self.check_batch_memory(batch.n)?;
        self.check_training_batch(batch.n)?;
        self.checked_gradients_into(batch, row_offset, grads)
    }

    /// `gradients_into` of samples already checked (an epoch checks all of its samples, and
    /// its shares' sizes, before its first step).
    fn checked_gradients_into(
        &mut self,
        batch: Samples<'_, T>,
        row_offset: usize,
        grads: &mut [T],
    ) -> Result<f64> {
        let n = batch.n;
        // Batch norm needs the statistics of the whole batch: a network with it runs a step
        // on one thread (its products still use the pool). Dropout's masks are keyed by the
        // global row, so any split gives the same masks.
        let p = if self.training.has_batch_norm() {
            1
        } else {
            parts(n, self.macs_per_row(), threads::num_threads())
        };
        let model = Model {
            layers: &self.layers,
            widths: &self.widths,
            params: &self.params,
            buffers: self.training.running(),
            loss: &self.spec.loss,
            key: MaskKey {
                row_offset,
                ..self.training.key(self.spec.seed)
            },
        };
        let value = if p == 1 {
            let value = model.gradients(&mut self.work, grads, batch, true)?;
            self.metrics.merge(&self.work.metrics);
            value
        } else {
            self.replicas.resize_with(p, Replica::default);
            let replicas = &mut self.replicas;
            let value = split_gradients(model, replicas, grads, batch)?;
            for r in &self.replicas[..p] {
                self.metrics.merge(r.metrics());
            }
            value
        };
        self.finish_training_forward(batch.x, n);
        Ok(value)
    }

    /// One forward, backward and optimizer step on `batch`; returns the loss before the step
    /// (the weighted loss of `gradients` with per-sample weights).
    ///
    /// A step whose loss or gradients are not finite is not applied: the network keeps the
    /// weights of the last finite step and the error says what diverged.
    pub fn train_step(&mut self, batch: Samples<'_, T>) -> Result<f64> {
        let value = self.gradients(batch)?;
        let mut grads = std::mem::take(&mut self.grads);
        let clip = Clipping {
            norm: self.clip_grad_norm,
            value: None,
        };
        let applied = self.descend(value, &mut grads, clip);
        self.grads = grads;
        applied.map(|()| value)
    }

    /// The optimizer step of a batch whose loss was `value` and gradients `grads`: refused
    /// (`Error::Diverged`, nothing changed) when either is not finite, else the gradients are
    /// measured, clipped in place to `clip.norm` and then each to ±`clip.value`, and applied.
    fn descend(&mut self, value: f64, grads: &mut [T], clip: Clipping) -> Result<()> {
        let norm = self.grad_stats.measure(&self.param_info, grads);
        if !value.is_finite() || !norm.is_finite() {
            return Err(Error::Diverged {
                epoch: None,
                batch: None,
                loss: value,
                norm,
            });
        }
        self.grad_stats.record();
        // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1; then
        // clip_grad_value_ (as Keras orders them). The update applies both as it goes.
        let scale = clip
            .norm
            .map(|max_norm| max_norm / (norm + 1e-6))
            .filter(|&coef| coef < 1.0);
        let clip = optim::Clip {
            scale,
            value: clip.value,
        };
        self.optimizer.step_clipped(&mut self.params, grads, clip);
        Ok(())
    }

    /// Clips every later step's gradients to this global L2 norm (`None`: no clipping).
    pub fn set_clip_grad_norm(&mut self, max_norm: Option<f64>) -> Result<()> {
        if let Some(m) = max_norm {
            if !(m.is_finite() && m > 0.0) {
                return Err(Error::value(
                    "clip_grad_norm",
                    format!("must be a number > 0, got {m}"),
                ));
            }
        }
        self.clip_grad_norm = max_norm;
        Ok(())
    }

    /// The global gradient norm clipping, if set.
    pub fn clip_grad_norm(&self) -> Option<f64> {
        self.clip_grad_norm
    }

    /// One optimizer step with the given flat gradients.
    pub fn apply_gradients(&mut self, grads: &[T]) -> Result<()> {
        self.optimizer.try_step(&mut self.params, grads)
    }
}
