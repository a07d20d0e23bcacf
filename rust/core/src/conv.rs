//! Convolution over (C, H, W) rows, as `torch.nn.Conv2d` (and `Conv1d`, the case H = 1), on
//! the matrix product: each output position's receptive field is copied into one row of a
//! column matrix (im2col), so that the whole batch's convolution is one product with the
//! weight, (n·P × K)(K × O), P output positions, K = C·kh·kw.
//!
//! Backward by the chain rule, with δ = ∂L/∂z laid out as the product's output (n·P × O):
//! ∂L/∂W = δᵀ col, ∂L/∂b = Σ δ, ∂L/∂col = δ W, and ∂L/∂x sums each column entry back onto the
//! input value it was copied from (col2im).

use crate::activation::Activation;
use crate::dense::Dense;
use crate::init::uniform_bound;
use crate::matmul::{matmul, Operand};
use crate::rng::Rng;
use crate::Real;

/// The spatial arrangement shared by convolution and pooling: an input of `channels` planes of
/// `in_h × in_w`, a window of `kernel`, moved by `stride` over the input padded by `padding`,
/// its taps `dilation` apart; (height, width) pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl Window {
    /// Output height and width, torch's floor((in + 2p - d(k - 1) - 1) / s) + 1; `None` when
    /// the dilated window does not fit in the padded input.
    pub fn output(&self) -> Option<(usize, usize)> {
        let side = |input: usize, k: usize, s: usize, p: usize, d: usize| {
            let span = d.checked_mul(k - 1)?.checked_add(1)?;
            let padded = input.checked_add(p.checked_mul(2)?)?;
            (k >= 1 && s >= 1 && padded >= span).then(|| (padded - span) / s + 1)
        };
        let (kh, kw) = self.kernel;
        let h = side(
            self.in_h,
            kh,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
        )?;
        let w = side(
            self.in_w,
            kw,
            self.stride.1,
            self.padding.1,
            self.dilation.1,
        )?;
        Some((h, w))
    }

    /// Values of one input row, C·H·W.
    pub fn in_len(&self) -> usize {
        self.channels * self.in_h * self.in_w
    }

    /// Output positions per channel.
    pub fn positions(&self) -> usize {
        let (h, w) = self.output().unwrap_or((0, 0));
        h * w
    }

    /// Taps of the window over all channels: C·kh·kw.
    pub fn taps(&self) -> usize {
        self.channels * self.kernel.0 * self.kernel.1
    }

    /// For every output position (row-major) and every tap of its window (as (channel, ky,
    /// kx)), the index of the input value it reads, or [`PADDING`]: P × C·kh·kw entries, built
    /// once with the layer so that a pass is one gather through it.
    pub fn tap_table(&self) -> Vec<usize> {
        let k = self.taps();
        let mut table = vec![PADDING; self.positions() * k];
        self.for_each_tap(|p, tap, at| table[p * k + tap] = at);
        table
    }

    /// Calls `f(position, tap, input index)` for every tap of every output position that
    /// falls inside the input (padding taps are skipped).
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow) = self.output().unwrap_or((0, 0));
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        let (dh, dw) = self.dilation;
        for oy in 0..oh {
            for ox in 0..ow {
                let p = oy * ow + ox;
                for c in 0..self.channels {
                    for ky in 0..kh {
                        // The padded row index minus the padding; outside [0, in_h) is padding.
                        let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                        if iy >= self.in_h {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * sw + kx * dw).wrapping_sub(pw);
                            if ix < self.in_w {
                                let tap = (c * kh + ky) * kw + kx;
                                f(p, tap, (c * self.in_h + iy) * self.in_w + ix);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Values of a chunk's column matrix and product: 256 KB of f32, inside a core's L2 cache.
const CHUNK_VALUES: usize = 1 << 16;

/// A tap of a window that falls in the padding (reads a zero).
pub const PADDING: usize = usize::MAX;

/// Where a convolution's parameters live in the network's flat parameter buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conv {
    pub window: Window,
    pub out_channels: usize,
    /// Offset of the weight (out × in × kh × kw, row-major) in the parameter buffer.
    pub weight_offset: usize,
    /// Offset of the bias (out) in the parameter buffer, if the layer has one.
    pub bias_offset: Option<usize>,
    /// The window's `tap_table`.
    taps: Vec<usize>,
}

impl Conv {
    /// The layer of `window` with `out_channels` filters, its weight at `weight_offset` and
    /// its bias, if any, at `bias_offset`.
    pub fn new(
        window: Window,
        out_channels: usize,
        weight_offset: usize,
        bias_offset: Option<usize>,
    ) -> Self {
        Conv {
            window,
            out_channels,
            weight_offset,
            bias_offset,
            taps: window.tap_table(),
        }
    }

    /// Elements of the weight.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.window.taps()
    }

    /// All parameters of the layer: weight, then bias.
    pub fn n_params(&self) -> usize {
        self.weight_len() + self.bias_offset.map_or(0, |_| self.out_channels)
    }

    /// Values of one output row, O·OH·OW.
    pub fn out_len(&self) -> usize {
        self.out_channels * self.window.positions()
    }

    /// Multiply-adds of one sample's forward pass.
    pub fn macs(&self) -> usize {
        self.weight_len() * self.window.positions()
    }

    /// Samples per chunk of a pass: the column matrix and product of a chunk stay within
    /// about [`CHUNK_VALUES`] values, so that they are still in cache when the product reads
    /// them (a whole batch's column matrix outgrows it).
    fn chunk(&self, n: usize) -> usize {
        let per_row = self.window.positions() * (self.window.taps() + self.out_channels);
        (CHUNK_VALUES / per_row.max(1)).clamp(1, n.max(1))
    }

    /// Scratch values the forward or backward of `n` rows needs: the column matrix and the
    /// product's output of one chunk (rows·P × K and rows·P × O).
    pub fn scratch_len(&self, n: usize) -> usize {
        self.chunk(n) * self.window.positions() * (self.window.taps() + self.out_channels)
    }

    /// Fills the weight from `rng` as a dense layer of the same fans (in·kh·kw inputs,
    /// out·kh·kw outputs, torch's fans of a convolution) followed by `next`, and zeroes the
    /// bias.
    pub fn init<T: Real>(&self, next: Option<&Activation>, rng: &mut Rng, params: &mut [T]) {
        let kernel = self.window.kernel.0 * self.window.kernel.1;
        let fans = Dense {
            in_features: self.window.taps(),
            out_features: self.out_channels * kernel,
            weight_offset: 0,
            bias_offset: None,
        };
        let bound = uniform_bound(&fans, next);
        let w = self.weight_offset;
        for p in &mut params[w..w + self.weight_len()] {
            *p = T::of((2.0 * rng.uniform() - 1.0) * bound);
        }
        if let Some(b) = self.bias_offset {
            params[b..b + self.out_channels].fill(T::zero());
        }
    }

    fn weight<'a, T>(&self, params: &'a [T]) -> &'a [T] {
        &params[self.weight_offset..self.weight_offset + self.weight_len()]
    }

    /// The column matrix of `n` rows of `x` into `col` (n·P × K), zeros at padding taps.
    fn im2col<T: Real>(&self, x: &[T], n: usize, col: &mut [T]) {
        let rows = self.taps.len();
        let in_len = self.window.in_len();
        for (xs, cs) in x[..n * in_len]
            .chunks_exact(in_len)
            .zip(col[..n * rows].chunks_exact_mut(rows))
        {
            for (c, &at) in cs.iter_mut().zip(&self.taps) {
                *c = if at == PADDING { T::zero() } else { xs[at] };
            }
        }
    }

    /// z = conv(x, W) + b for `n` rows of `x` (n × C·H·W) into `z` (n × O·OH·OW), through
    /// `scratch` (grown to `scratch_len(n)` when short), chunk by chunk of samples.
    pub fn forward<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        z: &mut [T],
        scratch: &mut Vec<T>,
        parallel: bool,
    ) {
        let (p_len, k, o) = (
            self.window.positions(),
            self.window.taps(),
            self.out_channels,
        );
        let (in_len, out_len, chunk) = (self.window.in_len(), self.out_len(), self.chunk(n));
        grow(scratch, self.scratch_len(n));
        let (col, product) = scratch.split_at_mut(chunk * p_len * k);
        let bias = self.bias_offset.map(|b| &params[b..b + o]);
        for start in (0..n).step_by(chunk) {
            let rows = chunk.min(n - start);
            self.im2col(&x[start * in_len..], rows, col);
            // product (rows·P × O) = col (rows·P × K) · Wᵀ (K × O)
            matmul(
                &mut product[..rows * p_len * o],
                Operand::new(&col[..rows * p_len * k], rows * p_len, k),
                Operand::t(self.weight(params), o, k),
                false,
                parallel,
            );
            let zc = &mut z[start * out_len..(start + rows) * out_len];
            for (zs, ps) in zc
                .chunks_exact_mut(out_len)
                .zip(product.chunks_exact(p_len * o))
            {
                for (c, plane) in zs.chunks_exact_mut(p_len).enumerate() {
                    let b = bias.map_or(T::zero(), |b| b[c]);
                    for (out, row) in plane.iter_mut().zip(ps.chunks_exact(o)) {
                        *out = row[c] + b;
                    }
                }
            }
        }
    }

    /// Given δ = ∂L/∂z (n × O·OH·OW) and the forward's input `x`, writes ∂L/∂W and ∂L/∂b into
    /// `grads` (at this layer's offsets) and, when asked, ∂L/∂x (n × C·H·W) into `dx`; chunk by
    /// chunk of samples, ∂L/∂W and ∂L/∂b summed over the chunks.
    // As Dense::backward: one argument per term of the chain rule, plus the scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        delta: &[T],
        grads: &mut [T],
        mut dx: Option<&mut [T]>,
        scratch: &mut Vec<T>,
        parallel: bool,
    ) {
        let (p_len, k, o) = (
            self.window.positions(),
            self.window.taps(),
            self.out_channels,
        );
        let (in_len, out_len, chunk) = (self.window.in_len(), self.out_len(), self.chunk(n));
        grow(scratch, self.scratch_len(n));
        let (col, delta_rows) = scratch.split_at_mut(chunk * p_len * k);
        let w = self.weight_offset;
        if let Some(b) = self.bias_offset {
            grads[b..b + o].fill(T::zero());
        }
        for start in (0..n).step_by(chunk) {
            let rows = chunk.min(n - start);
            let (col, delta_rows) = (
                &mut col[..rows * p_len * k],
                &mut delta_rows[..rows * p_len * o],
            );
            // δ as the product's output: row (sample, position), column output channel.
            let dc = &delta[start * out_len..(start + rows) * out_len];
            for (ds, dr) in dc
                .chunks_exact(out_len)
                .zip(delta_rows.chunks_exact_mut(p_len * o))
            {
                for (c, plane) in ds.chunks_exact(p_len).enumerate() {
                    for (&d, row) in plane.iter().zip(dr.chunks_exact_mut(o)) {
                        row[c] = d;
                    }
                }
            }
            self.im2col(&x[start * in_len..], rows, col);
            // ∂L/∂W (+)= δᵀ col: (O × rows·P)(rows·P × K)
            matmul(
                &mut grads[w..w + self.weight_len()],
                Operand::t(delta_rows, rows * p_len, o),
                Operand::new(col, rows * p_len, k),
                start > 0,
                parallel,
            );
            if let Some(b) = self.bias_offset {
                let db = &mut grads[b..b + o];
                for row in delta_rows.chunks_exact(o) {
                    db.iter_mut().zip(row).for_each(|(s, &d)| *s += d);
                }
            }
            if let Some(dx) = dx.as_deref_mut() {
                // ∂L/∂col = δ W: (rows·P × O)(O × K), then each entry back onto its input.
                matmul(
                    col,
                    Operand::new(delta_rows, rows * p_len, o),
                    Operand::new(self.weight(params), o, k),
                    false,
                    parallel,
                );
                let dxc = &mut dx[start * in_len..(start + rows) * in_len];
                dxc.fill(T::zero());
                for (dxs, cs) in dxc
                    .chunks_exact_mut(in_len)
                    .zip(col.chunks_exact(p_len * k))
                {
                    for (&c, &at) in cs.iter().zip(&self.taps) {
                        if at != PADDING {
                            dxs[at] += c;
                        }
                    }
                }
            }
        }
    }
}

/// Grows `buffer` to at least `len` values (allocating only when it must).
fn grow<T: Real>(buffer: &mut Vec<T>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, T::zero());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution by its definition, for one sample.
    fn direct(conv: &Conv, params: &[f64], x: &[f64]) -> Vec<f64> {
        let win = conv.window;
        let (oh, ow) = win.output().unwrap(); // panic-free: test code
        let (kh, kw) = win.kernel;
        let mut z = vec![0.0; conv.out_len()];
        for o in 0..conv.out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = conv.bias_offset.map_or(0.0, |b| params[b + o]);
                    for c in 0..win.channels {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * win.stride.0 + ky * win.dilation.0) as isize
                                    - win.padding.0 as isize;
                                let ix = (ox * win.stride.1 + kx * win.dilation.1) as isize
                                    - win.padding.1 as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= win.in_h as isize
                                    || ix >= win.in_w as isize
                                {
                                    continue;
                                }
                                let wi = ((o * win.channels + c) * kh + ky) * kw + kx;
                                let xi = (c * win.in_h + iy as usize) * win.in_w + ix as usize;
                                sum += params[wi] * x[xi];
                            }
                        }
                    }
                    z[(o * oh + oy) * ow + ox] = sum;
                }
            }
        }
        z
    }

    fn layer() -> Conv {
        let window = Window {
            channels: 2,
            in_h: 5,
            in_w: 6,
            kernel: (3, 2),
            stride: (2, 1),
            padding: (1, 1),
            dilation: (1, 2),
        };
        let weight_len = 3 * window.taps();
        Conv::new(window, 3, 0, Some(weight_len))
    }

    #[test]
    fn forward_matches_the_definition_and_backward_the_adjoint() {
        let conv = layer();
        // More samples than one chunk holds (242 of this layer), so that chunks are summed.
        let n = 500;
        assert!(conv.chunk(n) < n && n % conv.chunk(n) != 0);
        let params: Vec<f64> = (0..conv.n_params())
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 7.0)
            .collect();
        let in_len = conv.window.in_len();
        let x: Vec<f64> = (0..n * in_len)
            .map(|i| ((i * 5 % 13) as f64 - 6.0) / 5.0)
            .collect();
        let mut z = vec![0.0; n * conv.out_len()];
        let mut scratch = Vec::new();
        conv.forward(&params, &x, n, &mut z, &mut scratch, false);
        for s in 0..n {
            let want = direct(&conv, &params, &x[s * in_len..(s + 1) * in_len]);
            for (a, b) in z[s * conv.out_len()..].iter().zip(&want) {
                assert!((a - b).abs() < 1e-12);
            }
        }
        // L = Σ δ·z is linear, so its gradients are exact: ∂L/∂x·x + ∂L/∂W·W + ∂L/∂b·b = L.
        let delta: Vec<f64> = (0..z.len()).map(|i| ((i % 5) as f64 - 2.0) / 3.0).collect();
        let mut grads = vec![0.0; params.len()];
        let mut dx = vec![0.0; x.len()];
        conv.backward(
            &params,
            &x,
            n,
            &delta,
            &mut grads,
            Some(&mut dx),
            &mut scratch,
            false,
        );
        let loss: f64 = z.iter().zip(&delta).map(|(a, b)| a * b).sum();
        let through_x: f64 = dx.iter().zip(&x).map(|(a, b)| a * b).sum();
        let wl = conv.weight_len();
        let through_w: f64 = grads[..wl]
            .iter()
            .zip(&params[..wl])
            .map(|(a, b)| a * b)
            .sum();
        // z is bilinear in (x, W): Σ δ z = Σ ∂L/∂x·x = Σ ∂L/∂W·W + Σ ∂L/∂b·b.
        let through_b: f64 = grads[wl..]
            .iter()
            .zip(&params[wl..])
            .map(|(a, b)| a * b)
            .sum();
        assert!((loss - through_w - through_b).abs() < 1e-9);
        let bias_part: f64 = (0..n)
            .map(|s| {
                let zs = &delta[s * conv.out_len()..(s + 1) * conv.out_len()];
                zs.chunks(conv.window.positions())
                    .enumerate()
                    .map(|(c, plane)| plane.iter().sum::<f64>() * params[wl + c])
                    .sum::<f64>()
            })
            .sum();
        assert!((loss - bias_part - through_x).abs() < 1e-9);
    }

    #[test]
    fn output_sizes_follow_torch() {
        let mut w = layer().window;
        assert_eq!(w.output(), Some((3, 6)));
        w.kernel = (8, 2);
        assert_eq!(w.output(), None);
    }
}
