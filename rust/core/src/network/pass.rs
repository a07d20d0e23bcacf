//! One batch through the network and back: the forward pass, the loss, and the chain rule
//! layer by layer down to every parameter's gradient, over caller-owned buffers.

use super::layout::Layer;
use crate::loss::{self, Targets};
use crate::{LossSpec, Real, Result};

/// Rows per chunk when running inference, so memory stays bounded for any input size.
pub(super) const INFERENCE_CHUNK: usize = 256;

/// What one pass reads: the layers, their widths, the parameters and the loss.
#[derive(Clone, Copy)]
pub(super) struct Model<'a, T> {
    pub layers: &'a [Layer],
    pub widths: &'a [usize],
    pub params: &'a [T],
    pub loss: &'a LossSpec,
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
}

/// Two ping-pong buffers for inference, which keeps no layer's output.
#[derive(Debug, Clone, Default)]
pub(super) struct Scratch<T> {
    a: Vec<T>,
    b: Vec<T>,
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
    }
}

impl<T: Real> Model<'_, T> {
    fn max_width(&self) -> usize {
        self.widths.iter().copied().max().unwrap_or(0)
    }

    fn output_width(&self) -> usize {
        self.widths[self.widths.len() - 1]
    }

    fn run_layer(&self, i: usize, input: &[T], n: usize, output: &mut [T], parallel: bool) {
        match &self.layers[i] {
            Layer::Dense(d) => d.forward(self.params, input, n, output, parallel),
            Layer::Activation(a) => {
                let len = n * self.widths[i];
                a.forward(&input[..len], &mut output[..len])
            }
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
        let Scratch { a: cur, b: next } = scratch;
        for start in (0..n).step_by(chunk) {
            let rows = chunk.min(n - start);
            for i in 0..self.layers.len() {
                let input = if i == 0 {
                    &x[start * w_in..(start + rows) * w_in]
                } else {
                    &cur[..rows * self.widths[i]]
                };
                self.run_layer(i, input, rows, next, parallel);
                std::mem::swap(cur, next);
            }
            out[start * w_out..(start + rows) * w_out].copy_from_slice(&cur[..rows * w_out]);
        }
    }

    /// Training-mode forward of `n` samples, keeping every layer's output in `work`.
    fn forward_train(&self, work: &mut Work<T>, x: &[T], n: usize, parallel: bool) {
        for i in 0..self.layers.len() {
            let (before, rest) = work.outputs.split_at_mut(i);
            let input: &[T] = if i == 0 { x } else { &before[i - 1] };
            self.run_layer(i, input, n, &mut rest[0], parallel);
        }
    }

    /// The chain rule from ∂L/∂output (in `work.delta`) down to every parameter's gradient.
    fn backward(&self, work: &mut Work<T>, grads: &mut [T], x: &[T], n: usize, parallel: bool) {
        let Work {
            outputs,
            delta,
            delta_next,
            ..
        } = work;
        for i in (0..self.layers.len()).rev() {
            let input: &[T] = if i == 0 { x } else { &outputs[i - 1] };
            // The input's gradient is only needed when a layer below it has parameters.
            let need_dx = self.layers[..i]
                .iter()
                .any(|l| matches!(l, Layer::Dense(_)));
            match &self.layers[i] {
                Layer::Dense(d) => {
                    let dx = need_dx.then_some(&mut delta_next[..]);
                    d.backward(self.params, input, n, &delta[..], grads, dx, parallel);
                }
                Layer::Activation(a) if need_dx => {
                    let len = n * self.widths[i];
                    a.backward(
                        &input[..len],
                        &outputs[i][..len],
                        &delta[..len],
                        &mut delta_next[..len],
                    );
                }
                Layer::Activation(_) => {}
            }
            if !need_dx {
                break;
            }
            std::mem::swap(delta, delta_next);
        }
    }

    /// Forward, loss and backward of `n` samples: writes `grads`, returns the mean loss.
    /// `grads` is untouched when the targets are refused.
    pub fn gradients(
        &self,
        work: &mut Work<T>,
        grads: &mut [T],
        x: &[T],
        targets: Targets<'_, T>,
        n: usize,
        parallel: bool,
    ) -> Result<f64> {
        work.ensure(n, self.widths);
        self.forward_train(work, x, n, parallel);
        let w = self.output_width();
        let last = self.layers.len() - 1;
        let value = loss::evaluate(
            self.loss,
            &work.outputs[last][..n * w],
            n,
            w,
            targets,
            Some(&mut work.delta[..n * w]),
        )?;
        self.backward(work, grads, x, n, parallel);
        Ok(value)
    }
}
