//! One batch through the network and back: the forward pass, the loss, and the chain rule
//! layer by layer down to every parameter's gradient, over caller-owned buffers.

use super::layout::Layer;
use super::metrics::MetricSums;
use crate::activation::Activation;
use crate::dense::{Below, Then};
use crate::dropout::MaskKey;
use crate::loss;
use crate::{LossSpec, Real, Result, Samples};

/// Rows per chunk when running inference, so memory stays bounded for any input size.
pub(super) const INFERENCE_CHUNK: usize = 256;

/// What one pass reads: the layers, their widths, the parameters, the batch-norm running
/// statistics (inference) and the loss; and, for a training pass, what fixes its dropout masks.
#[derive(Clone, Copy)]
pub(super) struct Model<'a, T> {
    pub layers: &'a [Layer],
    pub widths: &'a [usize],
    pub params: &'a [T],
    pub buffers: &'a [T],
    pub loss: &'a LossSpec,
    pub key: MaskKey,
}

/// Buffers of one training pass over up to `rows` samples, kept between steps.
#[derive(Debug, Clone, Default)]
pub(super) struct Work<T> {
    rows: usize,
    /// The output of each layer (rows × its width); kept for the backward pass.
    outputs: Vec<Vec<T>>,
    /// ∂L/∂(output of the current layer) and of its input, swapped layer by layer.
    delta: Vec<T>,
    delta_next: Vec<T>,
    /// Per-feature statistics of a normalization layer (4 × the widest layer, f64).
    pub stats: Vec<f64>,
    /// A convolution's column matrix and product, grown to the largest layer's need.
    col: Vec<T>,
    /// The last pass's metric sums (accuracy, errors) from its own outputs.
    pub metrics: MetricSums,
}

/// Two ping-pong buffers for inference, which keeps no layer's output.
#[derive(Debug, Clone, Default)]
pub(super) struct Scratch<T> {
    a: Vec<T>,
    b: Vec<T>,
    /// A convolution's column matrix and product.
    col: Vec<T>,
}

impl<T: Real> Work<T> {
    /// Sizes the buffers for `rows` samples; allocates only when they must grow.
    pub fn ensure(&mut self, rows: usize, widths: &[usize]) {
        if self.rows >= rows && self.outputs.len() + 1 == widths.len() {
            return;
        }
        let max_width = widths.iter().copied().max().unwrap_or(0);
        self.rows = rows;
        self.outputs = widths[1..]
            .iter()
            .map(|&w| vec![T::zero(); rows * w])
            .collect();
        self.delta = vec![T::zero(); rows * max_width];
        self.delta_next = vec![T::zero(); rows * max_width];
        self.stats = vec![0.0; 4 * max_width];
    }

    /// The input of layer `i` in the last training forward (`x` for the first layer).
    pub fn input<'a>(&'a self, x: &'a [T], i: usize) -> &'a [T] {
        if i == 0 {
            x
        } else {
            &self.outputs[i - 1]
        }
    }
}

impl<T: Real> Model<'_, T> {
    fn max_width(&self) -> usize {
        self.widths.iter().copied().max().unwrap_or(0)
    }

    fn output_width(&self) -> usize {
        self.widths[self.widths.len() - 1]
    }

    /// Layer `i` in inference mode: dropout is the identity, batch norm uses the running
    /// statistics.
    fn run_layer(
        &self,
        i: usize,
        input: &[T],
        n: usize,
        output: &mut [T],
        col: &mut Vec<T>,
        parallel: bool,
    ) {
        let len = n * self.widths[i];
        match &self.layers[i] {
            Layer::Conv(c) => c.forward(self.params, input, n, output, col, parallel),
            Layer::Pool(p) => p.forward(input, n, output),
            Layer::Embeddings(e) => e.forward(self.params, input, n, output),
            Layer::Reshape => output[..len].copy_from_slice(&input[..len]),
            Layer::Dense(d) => d.forward(self.params, input, n, output, parallel),
            Layer::Activation(a) => a.forward(&input[..len], &mut output[..len]),
            Layer::Dropout(_) => output[..len].copy_from_slice(&input[..len]),
            Layer::BatchNorm(b) => b.forward_infer(self.params, self.buffers, input, n, output),
            Layer::LayerNorm(l) => l.forward(self.params, input, n, output),
            Layer::Prelu(p) => p.forward(self.params, input, n, output),
        }
    }

    /// Inference outputs of `n` samples into `out`, chunk by chunk through `scratch`.
    pub fn infer(
        &self,
        x: &[T],
        n: usize,
        out: &mut [T],
        scratch: &mut Scratch<T>,
        parallel: bool,
    ) {
        let (w_in, w_out) = (self.widths[0], self.output_width());
        let chunk = n.clamp(1, INFERENCE_CHUNK);
        let len = chunk * self.max_width();
        if scratch.a.len() < len {
            scratch.a.resize(len, T::zero());
            scratch.b.resize(len, T::zero());
        }
        let Scratch {
            a: cur,
            b: next,
            col,
        } = scratch;
        for start in (0..n).step_by(chunk) {
            let rows = chunk.min(n - start);
            let mut i = 0;
            while i < self.layers.len() {
                let input = if i == 0 {
                    &x[start * w_in..(start + rows) * w_in]
                } else {
                    &cur[..rows * self.widths[i]]
                };
                match (&self.layers[i], self.activation_after(i)) {
                    // The activation rides along the product, over its output in place.
                    (Layer::Dense(d), Some(act)) => {
                        let then = Then::ActivateInPlace(act);
                        d.forward_then(self.params, input, rows, next, then, parallel);
                        i += 1;
                    }
                    _ => self.run_layer(i, input, rows, next, col, parallel),
                }
                std::mem::swap(cur, next);
                i += 1;
            }
            out[start * w_out..(start + rows) * w_out].copy_from_slice(&cur[..rows * w_out]);
        }
    }

    /// Training-mode forward of `n` samples, keeping every layer's output in `work`.
    /// Dropout draws its masks from `self.key`; batch norm normalizes by the batch's own
    /// statistics (the network moves its running statistics afterwards).
    fn forward_train(&self, work: &mut Work<T>, x: &[T], n: usize, parallel: bool) {
        let mut i = 0;
        while i < self.layers.len() {
            let (before, rest) = work.outputs.split_at_mut(i);
            let input: &[T] = if i == 0 { x } else { &before[i - 1] };
            let (output, above) = rest.split_at_mut(1);
            let output = &mut output[0];
            match (&self.layers[i], self.activation_after(i)) {
                // The activation rides along the product: each thread applies it to its block.
                (Layer::Dense(d), Some(act)) => {
                    let then = Then::Activate(act, &mut above[0][..]);
                    d.forward_then(self.params, input, n, output, then, parallel);
                    i += 1;
                }
                (Layer::Dropout(d), _) => d.forward(self.key, input, n, self.widths[i], output),
                (Layer::BatchNorm(b), _) => {
                    b.forward_train(self.params, input, n, &mut work.stats, output)
                }
                _ => self.run_layer(i, input, n, output, &mut work.col, parallel),
            }
            i += 1;
        }
    }

    /// The activation layer right after layer `i`, if there is one.
    fn activation_after(&self, i: usize) -> Option<Activation> {
        match self.layers.get(i + 1) {
            Some(Layer::Activation(a)) => Some(*a),
            _ => None,
        }
    }

    /// The chain rule from ∂L/∂output (in `work.delta`) down to every parameter's gradient.
    fn backward(&self, work: &mut Work<T>, grads: &mut [T], x: &[T], n: usize, parallel: bool) {
        let Work {
            outputs,
            delta,
            delta_next,
            stats,
            col,
            ..
        } = work;
        let mut i = self.layers.len();
        while i > 0 {
            i -= 1;
            let input: &[T] = if i == 0 { x } else { &outputs[i - 1] };
            // The input's gradient is only needed when a layer below it has parameters.
            let need_dx = self.layers[..i].iter().any(Layer::has_params);
            let len = n * self.widths[i];
            match &self.layers[i] {
                Layer::Dense(d) => {
                    let dx = need_dx.then_some(&mut delta_next[..]);
                    // The activation below rides along the input gradient's product: each
                    // thread applies its derivative to its block, and the loop skips it.
                    let below = match (need_dx, i.checked_sub(1).map(|b| &self.layers[b])) {
                        (true, Some(Layer::Activation(activation))) => {
                            let z = if i == 1 { x } else { &outputs[i - 2][..] };
                            Some(Below {
                                activation: *activation,
                                z: &z[..len],
                                h: &input[..len],
                            })
                        }
                        _ => None,
                    };
                    let fused = below.is_some();
                    d.backward(
                        self.params,
                        input,
                        n,
                        &delta[..],
                        grads,
                        dx,
                        below,
                        parallel,
                    );
                    if fused {
                        i -= 1;
                    }
                }
                Layer::Activation(a) if need_dx => {
                    a.backward(
                        &input[..len],
                        &outputs[i][..len],
                        &delta[..len],
                        &mut delta_next[..len],
                    );
                }
                Layer::Dropout(d) if need_dx => {
                    d.backward(self.key, &delta[..len], n, self.widths[i], delta_next)
                }
                Layer::Conv(c) => {
                    let dx = need_dx.then_some(&mut delta_next[..]);
                    c.backward(self.params, input, n, &delta[..], grads, dx, col, parallel);
                }
                Layer::Pool(p) if need_dx => p.backward(input, n, &delta[..], delta_next),
                // First in the network (after reshapes): nothing below it needs ∂L/∂x.
                Layer::Embeddings(e) => e.backward(input, n, &delta[..], grads),
                Layer::Reshape => {
                    // The same values read in another shape: δ passes through as it is.
                    if !need_dx {
                        break;
                    }
                    continue;
                }
                Layer::Activation(_) | Layer::Dropout(_) | Layer::Pool(_) => {}
                Layer::BatchNorm(b) => {
                    let dx = need_dx.then_some(&mut delta_next[..]);
                    b.backward(self.params, input, n, &delta[..], stats, grads, dx);
                }
                Layer::LayerNorm(l) => {
                    let dx = need_dx.then_some(&mut delta_next[..]);
                    l.backward(self.params, input, n, &delta[..], stats, grads, dx);
                }
                Layer::Prelu(p) => {
                    let dx = need_dx.then_some(&mut delta_next[..]);
                    p.backward(self.params, input, n, &delta[..], stats, grads, dx);
                }
            }
            if !need_dx {
                break;
            }
            std::mem::swap(delta, delta_next);
        }
    }

    /// Forward, loss and backward of `batch`: writes `grads`, returns the mean loss
    /// (Σ w_i·l_i / n with per-sample weights, see `loss::evaluate_weighted`).
    /// `grads` is untouched when the targets or weights are refused.
    pub fn gradients(
        &self,
        work: &mut Work<T>,
        grads: &mut [T],
        batch: Samples<'_, T>,
        parallel: bool,
    ) -> Result<f64> {
        let Samples {
            x,
            targets,
            weights,
            n,
        } = batch;
        work.ensure(n, self.widths);
        self.forward_train(work, x, n, parallel);
        let w = self.output_width();
        let last = self.layers.len() - 1;
        let value = loss::evaluate_weighted(
            self.loss,
            &work.outputs[last][..n * w],
            n,
            w,
            targets,
            weights,
            Some(&mut work.delta[..n * w]),
        )?;
        work.metrics.clear();
        let out = &work.outputs[last][..n * w];
        work.metrics.add(self.loss, out, targets, n, w);
        self.backward(work, grads, x, n, parallel);
        Ok(value)
    }

    /// The loss of `batch` in training mode (forward only), the layers' outputs left in
    /// `work` as by `gradients`.
    pub fn training_loss(&self, work: &mut Work<T>, batch: Samples<'_, T>) -> Result<f64> {
        let Samples {
            x,
            targets,
            weights,
            n,
        } = batch;
        work.ensure(n, self.widths);
        self.forward_train(work, x, n, true);
        let w = self.output_width();
        let last = self.layers.len() - 1;
        let out = &work.outputs[last][..n * w];
        loss::evaluate_weighted(self.loss, out, n, w, targets, weights, None)
    }
}
