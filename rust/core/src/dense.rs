//! The dense (fully connected) layer, `z = x Wᵀ + b` with weight (out, in), as `torch.nn.Linear`.
//!
//! Backward by the chain rule, with δ = ∂L/∂z:
//! ∂L/∂W = δᵀ x, ∂L/∂b = Σ_batch δ, ∂L/∂x = δ W.

use crate::activation::Activation;
use crate::matmul::{
    matmul_streaming, matmul_then, product_block, product_columns_transposed, split_output,
    split_pair, split_two, Along, Block, Operand, Split,
};
use crate::scratch::with_scratch;
use crate::threads::Disjoint;
use crate::Real;

/// Batches of at most this many rows against weights of at least this many bytes (a core's L1
/// cache) take the forward product computed transposed, `zᵀ = W xᵀ`
/// (`product_columns_transposed`), turned back while the bias is added.
/// Written as `z = x Wᵀ`, gemm reads the stored weights (out × in) as a row-major left operand,
/// which it packs by strided gathers that wait on memory once the weights outgrow the cache;
/// written transposed, its kernels run along the batch and read `W` where it lies, row by row,
/// copying only `x`. Measured on the product alone (one core of an AMD EPYC with AVX-512):
/// 1.5-1.6× faster at 256 rows against 2048 × 2048 and 2048 × 1024 weights, 1.15× against
/// 512 × 512, 1.05× for 784 × 256 at 128 rows, 1.5× for 784 × 256 and 6× for 2048 × 2048 at
/// 32 rows. From 512 rows on, enough rows share each packed panel of `W` that the usual path
/// catches up (1.05-1.2× slower transposed at 1024 rows against 784 × 256 and 512 × 512
/// weights). Smaller weights take the usual path: copying them into gemm's panels costs next
/// to nothing, and turning a transposed product back would be a pass of its own (about 5% of
/// the tiny 10-32-32-1 network's steps).
const TRANSPOSED_MAX_ROWS: usize = 256;
/// The size of weights from which the forward is computed transposed (see above).
const TRANSPOSED_MIN_BYTES: usize = 32 << 10;
/// Batches of at most this many rows are thin: their input gradient against weights larger
/// than `STREAM_BYTES` streams the weights.
const THIN_ROWS: usize = 64;
/// Weights larger than this many bytes do not fit in a core's L2 cache (2 MB here): a thin
/// input-gradient product streams them (`matmul_streaming`). Measured at 32 rows: 1.5× faster
/// or more for 1024² and 2048² weights, 10-20% slower for 512² and 784 × 512 ones, which stay
/// cached.
const STREAM_BYTES: usize = 2 << 20;
/// Output features of the narrowest block a transposed forward gives a thread: narrower
/// blocks (a 32-wide layer on two threads) wrote half rows of `z`, two threads to a cache line
/// and one activation call per half row, and trained slower on two threads than on one.
const MIN_FEATURES_PER_BLOCK: usize = 64;
/// Batches of at least this many rows, against weights of at most `ROWS_SPLIT_MAX_BYTES`,
/// divide a transposed forward by samples instead of by features: each core then reads its own
/// half of `x`, which the caller's core has just gathered, and all of `W`, which both cores
/// read every step and so find in the shared L3 cache. Measured on two threads of a 2-core AMD
/// EPYC (Zen 3), best epochs of alternating runs: mnist (784-256-128-10, batch 128) 4.5% and
/// 784-128-128-10 at batch 256 7% faster, 784-512-512-10 at batch 256 the same; with
/// 784-2048-2048-10 at batch 256, whose weights each core would read whole, 2% slower, hence
/// the bound on the weights.
const ROWS_SPLIT_MIN_ROWS: usize = 128;
const ROWS_SPLIT_MAX_BYTES: usize = 2 << 20;
/// Columns of the transposed product turned back at a time: their rows stay in L1 while
/// every row of the output takes its run of them.
const TURN_COLS: usize = 16;

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
        let transposed =
            n <= TRANSPOSED_MAX_ROWS && std::mem::size_of_val(w.data) >= TRANSPOSED_MIN_BYTES;
        let split = if transposed {
            // Each thread computes a block of output features from its own rows of W; blocks
            // narrower than `MIN_FEATURES_PER_BLOCK` features, or batches large enough for
            // `ROWS_SPLIT_MIN_ROWS` against weights shared cheaply, divide the samples instead,
            // each thread reading all of W.
            let by_features = Split::over_threads_along(Along::Cols, n, out, fan_in, parallel);
            let by_samples =
                n >= ROWS_SPLIT_MIN_ROWS && std::mem::size_of_val(w.data) <= ROWS_SPLIT_MAX_BYTES;
            if out / by_features.parts >= MIN_FEATURES_PER_BLOCK && !by_samples {
                by_features
            } else {
                Split::over_threads_along(Along::Rows, n, out, fan_in, parallel)
            }
        } else {
            Split::over_threads(n, out, fan_in, parallel)
        };
        let product = |block: &mut Block<'_, T>| {
            if transposed {
                let (rows, cols) = (block.rows.clone(), block.cols.clone());
                let x = Operand::new(
                    &x.data[rows.start * fan_in..rows.end * fan_in],
                    rows.len(),
                    fan_in,
                );
                with_scratch(rows.len() * cols.len(), |zt| {
                    product_columns_transposed(zt, x, w, cols.clone());
                    turn_back(zt, block, bias);
                });
                return;
            }
            // The bias goes in first and the product accumulates onto it: one pass over z.
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
    /// `grads` (at this layer's offsets) and, when asked, ∂L/∂x (n × in) into `dx` — or, with
    /// `below`, the gradient one step further down: ∂L/∂x times the derivative of the
    /// activation whose output `x` is, applied to each thread's block of the product while it
    /// is in cache, in place of a pass of its own on one thread.
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
        below: Option<Below<'_, T>>,
        parallel: bool,
    ) {
        let (fan_in, out) = (self.in_features, self.out_features);
        let delta = &delta[..n * out];
        let Some(dx) = dx else {
            return self.weight_and_bias_gradients(x, n, delta, grads, parallel);
        };
        // ∂L/∂x = δ W: (n × out)(out × in)
        let dx = &mut dx[..n * fan_in];
        let weight = Operand::new(self.weight(params), out, fan_in);
        let delta_by_rows = Operand::new(delta, n, out);
        let then = |block: &mut Block<'_, T>| {
            if let Some(below) = &below {
                below.apply(block, fan_in);
            }
        };
        if n <= THIN_ROWS && std::mem::size_of_val(weight.data) > STREAM_BYTES {
            self.weight_and_bias_gradients(x, n, delta, grads, parallel);
            return matmul_streaming(dx, delta_by_rows, weight, parallel, then);
        }
        // The weight gradient and the input gradient read the same δ and nothing of each other:
        // one job runs them side by side, each over half the threads.
        let shapes = ((out, fan_in, n), (n, fan_in, out));
        let Some((dw_split, dx_split)) = Split::pair_over_threads(shapes.0, shapes.1, parallel)
        else {
            self.weight_and_bias_gradients(x, n, delta, grads, parallel);
            return matmul_then(dx, delta_by_rows, weight, false, parallel, then);
        };
        let x = Operand::new(&x[..n * fan_in], n, fan_in);
        let (dw, db) = self.gradient_slices(grads);
        let db = db.map(Disjoint::new);
        split_two(
            (dw, out, fan_in, dw_split),
            (dx, n, fan_in, dx_split),
            |block| self.weight_block(block, dw_split, delta, x, db.as_ref()),
            |mut block| {
                product_block(&mut block, delta_by_rows, weight, false);
                then(&mut block);
            },
        );
    }

    /// ∂L/∂W = δᵀ x, (out × n)(n × in), and ∂L/∂b = Σ_batch δ, in one job on the team: each
    /// block of ∂L/∂W also sums the bias gradient of its share of the output features (its own
    /// rows of ∂L/∂W, or a proportional share when the blocks are columns), row after row of δ
    /// as one thread would, so the bits do not depend on the split.
    fn weight_and_bias_gradients<T: Real>(
        &self,
        x: &[T],
        n: usize,
        delta: &[T],
        grads: &mut [T],
        parallel: bool,
    ) {
        let (fan_in, out) = (self.in_features, self.out_features);
        let (dw, db) = self.gradient_slices(grads);
        let x = Operand::new(&x[..n * fan_in], n, fan_in);
        let split = Split::over_threads(out, fan_in, n, parallel);
        let db = db.map(Disjoint::new);
        split_output(dw, out, fan_in, split, |block| {
            self.weight_block(block, split, delta, x, db.as_ref())
        });
    }

    /// One block of ∂L/∂W = δᵀ x under `split` (of the whole `out × in`), and the bias
    /// gradient of its share of the output features into `db`.
    fn weight_block<T: Real>(
        &self,
        mut block: Block<'_, T>,
        split: Split,
        delta: &[T],
        x: Operand<'_, T>,
        db: Option<&Disjoint<'_, T>>,
    ) {
        let (fan_in, out) = (self.in_features, self.out_features);
        let dt = Operand::t(delta, x.rows, out);
        product_block(&mut block, dt, x, false);
        let Some(db) = db else { return };
        let features = match split.along {
            Along::Rows => block.rows.clone(),
            Along::Cols => block.cols.start * out / fan_in..block.cols.end * out / fan_in,
        };
        // SAFETY: the blocks of one split are disjoint ranges of rows, or of columns whose
        // proportional shares of 0..out are disjoint too; each block sums its own.
        let sums = unsafe { db.range(features.clone()) };
        sums.fill(T::zero());
        for row in delta.chunks_exact(out) {
            let row = &row[features.clone()];
            sums.iter_mut().zip(row).for_each(|(s, &d)| *s += d);
        }
    }

    /// This layer's weight gradient and, if it has a bias, its bias gradient, in `grads`.
    fn gradient_slices<'a, T>(&self, grads: &'a mut [T]) -> (&'a mut [T], Option<&'a mut [T]>) {
        let (w, len) = (self.weight_offset, self.weight_len());
        let Some(b) = self.bias_offset else {
            return (&mut grads[w..w + len], None);
        };
        let out = self.out_features;
        if b >= w + len {
            let (low, high) = grads.split_at_mut(b);
            (&mut low[w..w + len], Some(&mut high[..out]))
        } else {
            let (low, high) = grads.split_at_mut(w);
            (&mut high[..len], Some(&mut low[b..b + out]))
        }
    }
}

/// The activation below a dense layer, whose input `x` is that activation's output `h`, from
/// `z`: its derivative is applied to the dense layer's input gradient block by block.
#[derive(Debug, Clone, Copy)]
pub struct Below<'a, T> {
    pub activation: Activation,
    /// The activation's input and output (n × in).
    pub z: &'a [T],
    pub h: &'a [T],
}

impl<T: Real> Below<'_, T> {
    /// ∂L/∂z = ∂L/∂h ⊙ f'(z) over `block` of ∂L/∂h, rows of `width`, in place.
    fn apply(&self, block: &mut Block<'_, T>, width: usize) {
        let (rows, cols) = (block.rows.clone(), block.cols.clone());
        if cols == (0..width) {
            // Whole rows lie one after another: one call over them all.
            let at = rows.start * width..rows.end * width;
            let d = block.rows_in_place();
            self.activation
                .backward_in_place(&self.z[at.clone()], &self.h[at], d);
            return;
        }
        for r in rows {
            let at = r * width + cols.start..r * width + cols.end;
            let d = block.row(r);
            self.activation
                .backward_in_place(&self.z[at.clone()], &self.h[at], d);
        }
    }
}

/// Writes the transposed product `zt` (row `j` holds column `block.cols.start + j` of every
/// row) into `block`, adding the bias of each column.
fn turn_back<T: Real>(zt: &[T], block: &mut Block<'_, T>, bias: Option<&[T]>) {
    let (rows, cols) = (block.rows.clone(), block.cols.clone());
    let n = rows.len();
    for first in (0..cols.len()).step_by(TURN_COLS) {
        let last = (first + TURN_COLS).min(cols.len());
        for (i, r) in rows.clone().enumerate() {
            let out = &mut block.row(r)[first..last];
            let column = (first..last).map(|j| zt[j * n + i]);
            match bias {
                Some(bias) => {
                    let bias = &bias[cols.start + first..cols.start + last];
                    for ((z, v), b) in out.iter_mut().zip(column).zip(bias) {
                        *z = v + *b;
                    }
                }
                None => out.iter_mut().zip(column).for_each(|(z, v)| *z = v),
            }
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
        layer.backward(
            &params,
            &x,
            2,
            &delta,
            &mut grads,
            Some(&mut dx),
            None,
            false,
        );
        // dW = δᵀ x
        assert_eq!(&grads[..6], &[2.0, 0.5, -1.0, 4.0, 2.0, 0.0]);
        assert_eq!(&grads[6..], &[1.5, 2.0]);
        // dx = δ W
        assert_eq!(dx, [1.0, 2.0, 3.0, 8.5, 11.0, 13.5]);
    }

    /// z = x Wᵀ + b in f64 by three loops.
    fn naive_forward(x: &[f64], w: &[f64], b: &[f64], n: usize, fan_in: usize) -> Vec<f64> {
        let out = b.len();
        let mut z = vec![0.0; n * out];
        for r in 0..n {
            for o in 0..out {
                let dot: f64 = (0..fan_in)
                    .map(|i| x[r * fan_in + i] * w[o * fan_in + i])
                    .sum();
                z[r * out + o] = dot + b[o];
            }
        }
        z
    }

    fn layer_and_params(fan_in: usize, out: usize) -> (Dense, Vec<f64>) {
        let layer = Dense {
            in_features: fan_in,
            out_features: out,
            weight_offset: 3,
            bias_offset: Some(3 + fan_in * out),
        };
        let params = (0..3 + fan_in * out + out)
            .map(|i| ((i * 7919 % 1013) as f64 / 1013.0 - 0.5) * 0.2)
            .collect();
        (layer, params)
    }

    #[test]
    fn both_forward_paths_give_the_product_with_bias_and_activation() {
        // 300 × 170 f64 weights (408 KB) take the transposed product up to 256 rows, split by
        // output features, 784 × 32 (200 KB) too, split by samples (too few features for
        // blocks of them), 30 × 20 (4.8 KB) the usual one; every batch size splits over
        // threads when it is worth it.
        for (fan_in, out) in [(300, 170), (784, 32), (30, 20)] {
            let (layer, params) = layer_and_params(fan_in, out);
            let w = &params[3..3 + fan_in * out];
            let b = &params[3 + fan_in * out..];
            for n in [1, 32, 64, 65, 256, 257, 600] {
                // What an earlier product left in this thread's scratch must not leak into z.
                with_scratch::<f64, _>(n * out, |left_over| left_over.fill(f64::NAN));
                let x: Vec<f64> = (0..n * fan_in).map(|i| (i as f64 * 0.37).sin()).collect();
                let want = naive_forward(&x, w, b, n, fan_in);
                for parallel in [false, true] {
                    let mut z = vec![f64::NAN; n * out];
                    layer.forward(&params, &x, n, &mut z, parallel);
                    for (got, want) in z.iter().zip(&want) {
                        assert!((got - want).abs() < 1e-12, "{n} rows: {got} vs {want}");
                    }
                    let mut h = vec![f64::NAN; n * out];
                    let then = Then::Activate(Activation::Relu, &mut h);
                    let mut z2 = vec![f64::NAN; n * out];
                    layer.forward_then(&params, &x, n, &mut z2, then, parallel);
                    assert_eq!(z, z2);
                    assert!(h.iter().zip(&z).all(|(h, z)| *h == z.max(0.0)));
                    let mut again = vec![0.0; n * out];
                    layer.forward(&params, &x, n, &mut again, parallel);
                    assert_eq!(z, again, "the same call gives the same bits");
                }
            }
        }
    }

    #[test]
    fn the_activation_below_rides_along_the_input_gradient() {
        // ∂L/∂W of 170 × 300 (split into blocks of columns) and of 300 × 170 (blocks of rows),
        // so that both ways of sharing the bias gradient out are taken.
        for (fan_in, out) in [(300, 170), (170, 300)] {
            let (layer, params) = layer_and_params(fan_in, out);
            let n = 96;
            let z: Vec<f64> = (0..n * fan_in).map(|i| (i as f64 * 0.37).sin()).collect();
            let mut h = vec![0.0; z.len()];
            Activation::Tanh.forward(&z, &mut h);
            let delta: Vec<f64> = (0..n * out).map(|i| (i as f64 * 0.11).cos()).collect();
            // One thread, the activation's backward a pass of its own.
            let mut want_grads = vec![0.0; params.len()];
            let mut dh = vec![0.0; n * fan_in];
            layer.backward(
                &params,
                &h,
                n,
                &delta,
                &mut want_grads,
                Some(&mut dh),
                None,
                false,
            );
            let mut want_dz = vec![0.0; n * fan_in];
            Activation::Tanh.backward(&z, &h, &dh, &mut want_dz);
            for parallel in [false, true] {
                let below = Below {
                    activation: Activation::Tanh,
                    z: &z,
                    h: &h,
                };
                let mut grads = vec![f64::NAN; params.len()];
                let mut dz = vec![f64::NAN; n * fan_in];
                layer.backward(
                    &params,
                    &h,
                    n,
                    &delta,
                    &mut grads,
                    Some(&mut dz),
                    Some(below),
                    parallel,
                );
                let bias = 3 + fan_in * out..;
                assert_eq!(grads[bias.clone()], want_grads[bias], "the bias's bits");
                for (got, want) in grads[3..].iter().zip(&want_grads[3..]) {
                    assert!((got - want).abs() < 1e-12, "∂L/∂W: {got} vs {want}");
                }
                for (got, want) in dz.iter().zip(&want_dz) {
                    assert!((got - want).abs() < 1e-12, "∂L/∂z: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn a_thin_batch_against_weights_larger_than_the_cache_gets_its_input_gradient() {
        // 1100 × 500 f64 weights: 4.4 MB, streamed.
        let (fan_in, out, n) = (500, 1100, 8);
        let (layer, params) = layer_and_params(fan_in, out);
        let w = &params[3..3 + fan_in * out];
        let x: Vec<f64> = (0..n * fan_in).map(|i| (i as f64 * 0.11).cos()).collect();
        let delta: Vec<f64> = (0..n * out).map(|i| (i as f64 * 0.23).sin()).collect();
        let mut grads = vec![0.0; params.len()];
        let mut dx = vec![f64::NAN; n * fan_in];
        layer.backward(
            &params,
            &x,
            n,
            &delta,
            &mut grads,
            Some(&mut dx),
            None,
            true,
        );
        for r in 0..n {
            for j in 0..fan_in {
                let want: f64 = (0..out)
                    .map(|o| delta[r * out + o] * w[o * fan_in + j])
                    .sum();
                let got = dx[r * fan_in + j];
                assert!((got - want).abs() < 1e-10, "dx[{r}, {j}]: {got} vs {want}");
            }
        }
    }
}
