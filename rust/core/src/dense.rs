//! The dense (fully connected) layer, `z = x Wᵀ + b` with weight (out, in), as `torch.nn.Linear`.
//!
//! Backward by the chain rule, with δ = ∂L/∂z:
//! ∂L/∂W = δᵀ x, ∂L/∂b = Σ_batch δ, ∂L/∂x = δ W.

use crate::activation::Activation;
use crate::matmul::{matmul, product_block, split_output, split_pair, Block, Operand, Split};
use crate::Real;

/// What a dense layer's forward does with its output once the product is in.
#[derive(Debug)]
pub enum Then<'a, T> {
    /// Nothing: `z` is the layer's output.
    Nothing,
    /// The activation that follows the layer, from `z` into its output buffer (training keeps
    /// both for the backward pass).
    Activate(Activation, &'a mut [T]),
    /// The activation that follows the layer, over `z` itself (inference keeps no `z`).
    ActivateInPlace(Activation),
}

/// Where a dense layer's parameters live in the network's flat parameter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dense {
    pub in_features: usize,
    pub out_features: usize,
    /// Offset of the weight (out × in, row-major) in the parameter buffer.
    pub weight_offset: usize,
    /// Offset of the bias (out) in the parameter buffer, if the layer has one.
    pub bias_offset: Option<usize>,
}

impl Dense {
    /// Elements of the weight matrix.
    pub fn weight_len(&self) -> usize {
        self.in_features * self.out_features
    }

    /// All parameters of the layer: weight, then bias.
    pub fn n_params(&self) -> usize {
        self.weight_len() + self.bias_offset.map_or(0, |_| self.out_features)
    }

    fn weight<'a, T>(&self, params: &'a [T]) -> &'a [T] {
        &params[self.weight_offset..self.weight_offset + self.weight_len()]
    }

    /// z = x Wᵀ + b for `n` rows of `x` (n × in) into `z` (n × out).
    pub fn forward<T: Real>(&self, params: &[T], x: &[T], n: usize, z: &mut [T], parallel: bool) {
        self.forward_then(params, x, n, z, Then::Nothing, parallel);
    }

    /// `forward`, then what `then` says on each thread's block of `z` while it is in cache:
    /// the activation that follows the layer, into its own buffer or in place.
    pub fn forward_then<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        z: &mut [T],
        then: Then<'_, T>,
        parallel: bool,
    ) {
        let (fan_in, out) = (self.in_features, self.out_features);
        let z = &mut z[..n * out];
        let x = Operand::new(&x[..n * fan_in], n, fan_in);
        let w = Operand::t(self.weight(params), out, fan_in);
        let bias = self.bias_offset.map(|b| &params[b..b + out]);
        let split = Split::over_threads(n, out, fan_in, parallel);
        // The bias goes in first and the product accumulates onto it: one pass over z.
        let product = |block: &mut Block<'_, T>| {
            if let Some(bias) = bias {
                let cols = block.cols.clone();
                for r in block.rows.clone() {
                    block.row(r).copy_from_slice(&bias[cols.clone()]);
                }
            }
            product_block(block, x, w, bias.is_some());
        };
        match then {
            Then::Nothing => split_output(z, n, out, split, |mut zb| product(&mut zb)),
            Then::Activate(act, h) => {
                split_pair(z, &mut h[..n * out], n, out, split, |mut zb, mut hb| {
                    product(&mut zb);
                    for r in zb.rows.clone() {
                        act.forward(zb.row(r), hb.row(r));
                    }
                })
            }
            Then::ActivateInPlace(act) => split_output(z, n, out, split, |mut zb| {
                product(&mut zb);
                for r in zb.rows.clone() {
                    act.forward_in_place(zb.row(r));
                }
            }),
        }
    }

    /// Given δ = ∂L/∂z (n × out) and the forward's input `x`, writes ∂L/∂W and ∂L/∂b into
    /// `grads` (at this layer's offsets) and, when asked, ∂L/∂x (n × in) into `dx`.
    // Each argument is one term of the chain rule's three products; bundling them would only
    // hide which buffer each product reads and writes.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        delta: &[T],
        grads: &mut [T],
        dx: Option<&mut [T]>,
        parallel: bool,
    ) {
        let (fan_in, out) = (self.in_features, self.out_features);
        let delta = &delta[..n * out];
        let w = self.weight_offset;
        // ∂L/∂W = δᵀ x: (out × n)(n × in)
        matmul(
            &mut grads[w..w + self.weight_len()],
            Operand::t(delta, n, out),
            Operand::new(&x[..n * fan_in], n, fan_in),
            false,
            parallel,
        );
        if let Some(b) = self.bias_offset {
            let db = &mut grads[b..b + out];
            db.fill(T::zero());
            for row in delta.chunks_exact(out) {
                db.iter_mut().zip(row).for_each(|(s, &d)| *s += d);
            }
        }
        // ∂L/∂x = δ W: (n × out)(out × in)
        if let Some(dx) = dx {
            matmul(
                &mut dx[..n * fan_in],
                Operand::new(delta, n, out),
                Operand::new(self.weight(params), out, fan_in),
                false,
                parallel,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_by_hand() {
        // W = [[1, 2, 3], [4, 5, 6]], b = [0.5, -1], x = [[1, 0, -1], [2, 1, 0]]
        let layer = Dense {
            in_features: 3,
            out_features: 2,
            weight_offset: 0,
            bias_offset: Some(6),
        };
        let params = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5, -1.0];
        let x = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
        let mut z = [0.0; 4];
        layer.forward(&params, &x, 2, &mut z, false);
        assert_eq!(z, [-1.5, -3.0, 4.5, 12.0]);

        let delta = [1.0, 0.0, 0.5, 2.0];
        let mut grads = [0.0; 8];
        let mut dx = [0.0; 6];
        layer.backward(&params, &x, 2, &delta, &mut grads, Some(&mut dx), false);
        // dW = δᵀ x
        assert_eq!(&grads[..6], &[2.0, 0.5, -1.0, 4.0, 2.0, 0.0]);
        assert_eq!(&grads[6..], &[1.5, 2.0]);
        // dx = δ W
        assert_eq!(dx, [1.0, 2.0, 3.0, 8.5, 11.0, 13.5]);
    }
}
