//! A sequential network: its layers, one flat buffer each of parameters and gradients, the
//! optimizer's state, and per-batch work buffers that are sized once and then reused.

use crate::activation::Activation;
use crate::dense::Dense;
use crate::init::init_dense;
use crate::loss::{self, Targets};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::{Error, LayerSpec, NetworkSpec, Real, Result};

/// Rows per chunk when running inference, so memory stays bounded for any input size.
const INFERENCE_CHUNK: usize = 1024;

/// A layer as the network runs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    Dense(Dense),
    Activation(Activation),
}

/// A named parameter tensor inside the flat parameter buffer (torch's `Sequential` naming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// "0.weight", "0.bias", "2.weight", ...
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl ParamInfo {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one epoch of `fit_epoch` did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochOutcome {
    /// Mean training loss over the samples seen (each batch's mean loss weighted by its size).
    pub loss: f64,
    /// Batches completed.
    pub batches: usize,
    /// Whether `should_stop` ended the epoch early.
    pub stopped: bool,
}

/// Buffers of one training step, for up to `rows` samples.
#[derive(Debug, Clone, Default)]
struct Work<T> {
    rows: usize,
    /// The output of each layer (rows × its width); kept for the backward pass.
    outputs: Vec<Vec<T>>,
    /// ∂L/∂(output of the current layer) and of its input, swapped layer by layer.
    delta: Vec<T>,
    delta_next: Vec<T>,
    /// A shuffled mini-batch, gathered from the data set.
    batch_x: Vec<T>,
    batch_values: Vec<T>,
    batch_labels: Vec<i64>,
    order: Vec<usize>,
}

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
    work: Work<T>,
}

/// The runtime layers, their widths and where their parameters live.
struct Layout {
    layers: Vec<Layer>,
    widths: Vec<usize>,
    param_info: Vec<ParamInfo>,
    n_params: usize,
}

/// Builds the runtime layers and their widths from the description, checking that they chain.
fn build_layers(specs: &[LayerSpec]) -> Result<Layout> {
    let first_width = specs
        .iter()
        .find_map(|s| match s {
            LayerSpec::Dense { in_features, .. } => Some(*in_features),
            _ => None,
        })
        .ok_or_else(|| Error::spec("layers", "the network needs at least one Dense layer"))?;
    let mut widths = vec![first_width];
    let mut layers = Vec::with_capacity(specs.len());
    let mut info = Vec::new();
    let mut offset = 0;
    for (i, spec) in specs.iter().enumerate() {
        let width = widths[widths.len() - 1];
        let layer = match *spec {
            LayerSpec::Dense {
                in_features,
                out_features,
                bias,
            } => {
                if in_features == 0 || out_features == 0 {
                    return Err(Error::spec(
                        &format!("layers[{i}]"),
                        format!("Dense needs in_features and out_features >= 1, got ({in_features}, {out_features})"),
                    ));
                }
                if in_features != width {
                    return Err(Error::spec(
                        &format!("layers[{i}]"),
                        format!("Dense in_features is {in_features} but the layer before gives {width} features"),
                    ));
                }
                let weight_len = in_features
                    .checked_mul(out_features)
                    .filter(|&n| n <= (1 << 40))
                    .ok_or_else(|| Error::spec(&format!("layers[{i}]"), "Dense layer too large"))?;
                let dense = Dense {
                    in_features,
                    out_features,
                    weight_offset: offset,
                    bias_offset: bias.then_some(offset + weight_len),
                };
                info.push(ParamInfo {
                    name: format!("{i}.weight"),
                    shape: vec![out_features, in_features],
                    offset,
                });
                if let Some(b) = dense.bias_offset {
                    info.push(ParamInfo {
                        name: format!("{i}.bias"),
                        shape: vec![out_features],
                        offset: b,
                    });
                }
                offset += dense.n_params();
                Layer::Dense(dense)
            }
            ref other => match Activation::from_spec(other) {
                Some(a) => Layer::Activation(a),
                None => return Err(Error::spec(&format!("layers[{i}]"), "unknown layer")),
            },
        };
        widths.push(match layer {
            Layer::Dense(d) => d.out_features,
            Layer::Activation(_) => width,
        });
        layers.push(layer);
    }
    Ok(Layout {
        layers,
        widths,
        param_info: info,
        n_params: offset,
    })
}

/// Copies the rows `idx` of a row-major `width`-wide buffer into `dst`.
fn gather<X: Copy>(src: &[X], width: usize, idx: &[usize], dst: &mut Vec<X>) {
    dst.clear();
    for &i in idx {
        dst.extend_from_slice(&src[i * width..(i + 1) * width]);
    }
}

impl<T: Real> Network<T> {
    /// A network built from `spec`, its weights drawn from `spec.seed`.
    pub fn new(spec: NetworkSpec) -> Result<Self> {
        let Layout {
            layers,
            widths,
            param_info,
            n_params,
        } = build_layers(&spec.layers)?;
        let mut rng = Rng::new(spec.seed);
        let mut params = vec![T::zero(); n_params];
        for (i, layer) in layers.iter().enumerate() {
            if let Layer::Dense(d) = layer {
                let next = match layers.get(i + 1) {
                    Some(Layer::Activation(a)) => Some(a),
                    _ => None,
                };
                init_dense(d, next, &mut rng, &mut params);
            }
        }
        let optimizer = Optimizer::new(spec.optimizer.clone(), n_params);
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

    /// Replaces every parameter (flat, `param_info` order).
    pub fn set_params(&mut self, values: &[T]) -> Result<()> {
        if values.len() != self.params.len() {
            return Err(Error::shape(
                "parameters",
                format!("{} values", self.params.len()),
                format!("{}", values.len()),
            ));
        }
        self.params.copy_from_slice(values);
        Ok(())
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
        Ok(())
    }

    fn run_layer(&self, i: usize, input: &[T], n: usize, output: &mut [T]) {
        match &self.layers[i] {
            Layer::Dense(d) => d.forward(&self.params, input, n, output),
            Layer::Activation(a) => {
                let len = n * self.widths[i];
                a.forward(&input[..len], &mut output[..len])
            }
        }
    }

    /// Inference: the outputs of `n` samples `x` (n × input width) into `out` (n × output width).
    ///
    /// Touches no state of the network, so it may run from many threads at once.
    pub fn forward(&self, x: &[T], n: usize, out: &mut [T]) -> Result<()> {
        self.check_input(x, n)?;
        let (w_in, w_out) = (self.input_width(), self.output_width());
        if out.len() != n * w_out {
            return Err(Error::shape(
                "out",
                format!("{} values", n * w_out),
                format!("{}", out.len()),
            ));
        }
        let max_width = self.widths.iter().copied().max().unwrap_or(0);
        let chunk = n.min(INFERENCE_CHUNK);
        let mut cur = vec![T::zero(); chunk * max_width];
        let mut next = vec![T::zero(); chunk * max_width];
        for start in (0..n).step_by(chunk) {
            let rows = chunk.min(n - start);
            for i in 0..self.layers.len() {
                let input = if i == 0 {
                    &x[start * w_in..(start + rows) * w_in]
                } else {
                    &cur[..rows * self.widths[i]]
                };
                self.run_layer(i, input, rows, &mut next);
                std::mem::swap(&mut cur, &mut next);
            }
            out[start * w_out..(start + rows) * w_out].copy_from_slice(&cur[..rows * w_out]);
        }
        Ok(())
    }

    /// The mean loss of `n` samples in inference mode.
    pub fn loss(&self, x: &[T], targets: Targets<'_, T>, n: usize) -> Result<f64> {
        let mut out = vec![T::zero(); n.saturating_mul(self.output_width())];
        self.forward(x, n, &mut out)?;
        loss::evaluate(&self.spec.loss, &out, n, self.output_width(), targets, None)
    }

    fn ensure_work(&mut self, n: usize) {
        if self.work.rows >= n && self.work.outputs.len() == self.layers.len() {
            return;
        }
        let max_width = self.widths.iter().copied().max().unwrap_or(0);
        self.work.rows = n;
        self.work.outputs = self.widths[1..]
            .iter()
            .map(|&w| vec![T::zero(); n * w])
            .collect();
        self.work.delta = vec![T::zero(); n * max_width];
        self.work.delta_next = vec![T::zero(); n * max_width];
    }

    /// Training-mode forward of `n` samples, keeping every layer's output in the work buffers.
    fn forward_train(&mut self, x: &[T], n: usize) {
        let mut outputs = std::mem::take(&mut self.work.outputs);
        for i in 0..self.layers.len() {
            let (before, rest) = outputs.split_at_mut(i);
            let input: &[T] = if i == 0 { x } else { &before[i - 1] };
            self.run_layer(i, input, n, &mut rest[0]);
        }
        self.work.outputs = outputs;
    }

    /// Backward from ∂L/∂output in `work.delta` down to every parameter's gradient.
    fn backward(&mut self, x: &[T], n: usize) {
        let Work {
            outputs,
            delta,
            delta_next,
            ..
        } = &mut self.work;
        for i in (0..self.layers.len()).rev() {
            let input: &[T] = if i == 0 { x } else { &outputs[i - 1] };
            // The input's gradient is only needed when a layer below it has parameters.
            let need_dx = self.layers[..i]
                .iter()
                .any(|l| matches!(l, Layer::Dense(_)));
            match &self.layers[i] {
                Layer::Dense(d) => {
                    let dx = need_dx.then_some(&mut delta_next[..]);
                    d.backward(&self.params, input, n, delta, &mut self.grads, dx);
                }
                Layer::Activation(a) => {
                    if need_dx {
                        let len = n * self.widths[i];
                        a.backward(
                            &input[..len],
                            &outputs[i][..len],
                            &delta[..len],
                            &mut delta_next[..len],
                        );
                    }
                }
            }
            if !need_dx {
                break;
            }
            std::mem::swap(delta, delta_next);
        }
    }

    /// Forward, loss and backward in training mode: fills `grads`, returns the mean loss.
    /// Changes no parameter. On a bad `targets` nothing is changed.
    pub fn gradients(&mut self, x: &[T], targets: Targets<'_, T>, n: usize) -> Result<f64> {
        self.check_input(x, n)?;
        self.ensure_work(n);
        self.forward_train(x, n);
        let w = self.output_width();
        let out = &self.work.outputs[self.layers.len() - 1][..n * w];
        let value = loss::evaluate(
            &self.spec.loss,
            out,
            n,
            w,
            targets,
            Some(&mut self.work.delta[..n * w]),
        )?;
        self.backward(x, n);
        Ok(value)
    }

    /// One forward, backward and optimizer step on `n` samples; returns the loss before the step.
    pub fn train_step(&mut self, x: &[T], targets: Targets<'_, T>, n: usize) -> Result<f64> {
        let value = self.gradients(x, targets, n)?;
        self.optimizer.step(&mut self.params, &self.grads);
        Ok(value)
    }

    /// One optimizer step with the given flat gradients.
    pub fn apply_gradients(&mut self, grads: &[T]) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(Error::shape(
                "gradients",
                format!("{} values", self.params.len()),
                format!("{}", grads.len()),
            ));
        }
        self.optimizer.step(&mut self.params, grads);
        Ok(())
    }

    /// One epoch of mini-batch training over `n` samples: shuffled by the network's generator
    /// when `shuffle`, the last batch smaller when `batch_size` does not divide `n`.
    /// `should_stop` is asked before each batch (Ctrl-C); a `true` ends the epoch there.
    pub fn fit_epoch(
        &mut self,
        x: &[T],
        targets: Targets<'_, T>,
        n: usize,
        batch_size: usize,
        shuffle: bool,
        should_stop: &mut dyn FnMut() -> bool,
    ) -> Result<EpochOutcome> {
        self.check_input(x, n)?;
        if batch_size == 0 {
            return Err(Error::value("batch_size", "must be at least 1, got 0"));
        }
        // Every batch's targets are checked now, so that a bad label cannot stop the epoch
        // half-way with the network changed.
        loss::check_targets(&self.spec.loss, targets, n, self.output_width())?;
        let batch_size = batch_size.min(n);
        self.ensure_work(batch_size);
        let mut work_order = std::mem::take(&mut self.work.order);
        work_order.clear();
        work_order.extend(0..n);
        if shuffle {
            self.rng.shuffle(&mut work_order);
        }
        let result = self.run_batches(x, targets, &work_order, batch_size, shuffle, should_stop);
        self.work.order = work_order;
        result
    }

    fn run_batches(
        &mut self,
        x: &[T],
        targets: Targets<'_, T>,
        order: &[usize],
        batch_size: usize,
        shuffle: bool,
        should_stop: &mut dyn FnMut() -> bool,
    ) -> Result<EpochOutcome> {
        let (w_in, w_out) = (self.input_width(), self.output_width());
        let mut bx = std::mem::take(&mut self.work.batch_x);
        let mut bv = std::mem::take(&mut self.work.batch_values);
        let mut bl = std::mem::take(&mut self.work.batch_labels);
        let mut outcome = EpochOutcome {
            loss: 0.0,
            batches: 0,
            stopped: false,
        };
        let mut seen = 0usize;
        let mut result = Ok(());
        for idx in order.chunks(batch_size) {
            if should_stop() {
                outcome.stopped = true;
                break;
            }
            let rows = idx.len();
            let step = if shuffle {
                gather(x, w_in, idx, &mut bx);
                let t = match targets {
                    Targets::Labels(l) => {
                        gather(l, 1, idx, &mut bl);
                        Targets::Labels(&bl[..])
                    }
                    Targets::Values(v) => {
                        gather(v, w_out, idx, &mut bv);
                        Targets::Values(&bv[..])
                    }
                };
                self.train_step(&bx, t, rows)
            } else {
                // Unshuffled batches are contiguous: train on slices of the data, no copy.
                let (a, b) = (idx[0], idx[0] + rows);
                let t = match targets {
                    Targets::Labels(l) => Targets::Labels(&l[a..b]),
                    Targets::Values(v) => Targets::Values(&v[a * w_out..b * w_out]),
                };
                self.train_step(&x[a * w_in..b * w_in], t, rows)
            };
            match step {
                Ok(value) => {
                    outcome.loss += value * rows as f64;
                    seen += rows;
                    outcome.batches += 1;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.work.batch_x = bx;
        self.work.batch_values = bv;
        self.work.batch_labels = bl;
        result?;
        if seen > 0 {
            outcome.loss /= seen as f64;
        }
        Ok(outcome)
    }
}
