//! Convolution over (C, H, W) rows, as `torch.nn.Conv2d` (and `Conv1d`, the case H = 1), on
//! the matrix product: each tap of the window over every output position is copied into one
//! row of a column matrix (im2col, transposed), so that a chunk of samples' convolution is one
//! product with the weight, (O × K)(K × s·P): s samples, P output positions, K = C·kh·kw. Its
//! output holds each sample's O planes of P values as a block of columns, which the layer's
//! output reads plane by plane (contiguous copies, the bias added on the way).
//!
//! Backward by the chain rule, with δ = ∂L/∂z laid out as the product's output (O × s·P):
//! ∂L/∂W = δ colᵀ, ∂L/∂b = Σ δ, ∂L/∂col = Wᵀ δ, and ∂L/∂x sums each column entry back onto the
//! input value it was copied from (col2im).
//!
//! A pass is cut into parts of samples that run on bpcore's threads side by side
//! (`sample_parts`): copying the column matrix costs more here than the products, so a split
//! inside each product would leave most of the work on one thread.

use crate::activation::Activation;
use crate::dense::Dense;
use crate::init::uniform_bound;
use crate::matmul::{matmul, Operand};
use crate::rng::Rng;
use crate::sample_parts::{run_each, share, take_front, MAX_PARTS};
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
/// A pass is cut into at least this many parts of samples when the batch has samples enough
/// (see `MIN_SAMPLES_PER_PART`), so that both threads of a two-core team, or all four of a
/// four-core one, get an equal share even where one chunk would hold the whole batch.
const MIN_PARTS: usize = 4;
/// Fewer samples than this in a part and its products are too thin for gemm's kernels.
const MIN_SAMPLES_PER_PART: usize = 4;

/// A tap of a window that falls in the padding (reads a zero).
pub const PADDING: usize = usize::MAX;

/// How a pass over `n` samples is cut: `parts` parts of consecutive samples (`sample_parts`),
/// each taken `chunk` samples at a time through its scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    parts: usize,
    chunk: usize,
}

/// Where a convolution's parameters live in the network's flat parameter buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conv {
    pub window: Window,
    pub out_channels: usize,
    /// Offset of the weight (out × in × kh × kw, row-major) in the parameter buffer.
    pub weight_offset: usize,
    /// Offset of the bias (out) in the parameter buffer, if the layer has one.
    pub bias_offset: Option<usize>,
    /// For each tap (ky, kx) of one channel's window and each output position, the index in
    /// the input plane of the value it reads, or the plane's size where it reads padding (the
    /// zero kept after a copy of the plane): kh·kw × P, so that copying a column matrix is a
    /// gather without a branch. Empty when `shifted` is read instead.
    reads: Vec<usize>,
    /// When every tap reads the plane shifted (see [`Shifted`]): its shifts and masks.
    shifted: Option<Shifted>,
}

/// The taps of a window with stride 1 whose output has the input's size (a "same"
/// convolution): tap t of output position i reads the plane's value i + shift(t), or padding.
/// So a tap's row of the column matrix is one contiguous copy of the plane (placed between
/// zero margins, so that every shifted read stays in bounds) with the padding masked out,
/// and its adjoint one contiguous masked sum: no index per value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shifted {
    /// Zeros before and after the plane in its copy: the largest shift either way.
    margin: usize,
    /// For each tap, where its reads start in the plane's copy: margin + shift.
    starts: Vec<usize>,
    /// For each tap and output position (kh·kw × P), whether the read is inside the plane.
    inside: Vec<bool>,
    /// For each tap and input position (kh·kw × H·W), whether the tap's read of some output
    /// position lands on it (the one at the position minus the shift).
    lands: Vec<bool>,
}

impl Shifted {
    /// The shifts of `reads` (kh·kw taps × P positions, `len` where padding is read) over a
    /// plane of `len` values, if each tap's reads are one shift of the positions.
    fn of(reads: &[usize], positions: usize, len: usize) -> Option<Self> {
        if positions != len || positions == 0 {
            return None;
        }
        let mut shifts = Vec::new();
        for tap in reads.chunks_exact(positions) {
            let mut valid = tap.iter().enumerate().filter(|&(_, &at)| at != len);
            let shift = valid.next().map_or(0, |(i, &at)| at as isize - i as isize);
            if !valid.all(|(i, &at)| at as isize - i as isize == shift) {
                return None;
            }
            shifts.push(shift);
        }
        let margin = shifts.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        let inside: Vec<bool> = reads.iter().map(|&at| at != len).collect();
        let lands = (0..reads.len())
            .map(|i| {
                let (tap, e) = (i / len, i % len);
                let from = e.checked_add_signed(-shifts[tap]).filter(|&p| p < len);
                from.is_some_and(|p| inside[tap * len + p])
            })
            .collect();
        Some(Shifted {
            margin,
            starts: shifts
                .iter()
                .map(|&s| margin.wrapping_add_signed(s))
                .collect(),
            inside,
            lands,
        })
    }

    /// Values of the plane's copy with its margins.
    fn plane_len(&self, len: usize) -> usize {
        len + 2 * self.margin
    }
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
        let plane = window.in_h * window.in_w;
        let one_channel = Window {
            channels: 1,
            ..window
        };
        let (kernel, positions) = (window.kernel.0 * window.kernel.1, window.positions());
        let by_position = one_channel.tap_table();
        let reads = (0..kernel * positions)
            .map(
                |i| match by_position[i % positions * kernel + i / positions] {
                    PADDING => plane,
                    at => at,
                },
            )
            .collect::<Vec<_>>();
        let shifted = Shifted::of(&reads, positions, plane);
        Conv {
            window,
            out_channels,
            weight_offset,
            bias_offset,
            reads: if shifted.is_some() { Vec::new() } else { reads },
            shifted,
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

    /// The cut of a pass over `n` samples: enough parts that a chunk's column matrix and
    /// product stay within about [`CHUNK_VALUES`] values (in cache when the product reads
    /// them), and at least [`MIN_PARTS`] when the batch has [`MIN_SAMPLES_PER_PART`] samples
    /// for each. From `n` alone, so that every thread count computes the same sums.
    fn plan(&self, n: usize) -> Plan {
        let per_sample = self.window.positions() * (self.window.taps() + self.out_channels);
        let by_cache = (CHUNK_VALUES / per_sample.max(1)).max(1);
        let parts = n
            .div_ceil(by_cache)
            .max(MIN_PARTS.min(n / MIN_SAMPLES_PER_PART))
            .clamp(1, MAX_PARTS.min(n.max(1)));
        Plan {
            parts,
            chunk: n.div_ceil(parts).min(by_cache).max(1),
        }
    }

    /// Scratch values of one part taking `chunk` samples at a time: the column matrix and the
    /// product (or δ) of a chunk, a copy of one input plane and a zero, and the part's own
    /// ∂L/∂W and ∂L/∂b (last).
    fn part_len(&self, chunk: usize) -> usize {
        let (p, k, o) = (
            self.window.positions(),
            self.window.taps(),
            self.out_channels,
        );
        chunk * p * (k + o) + self.plane_scratch_len() + o * k + o
    }

    /// Values of the copy of one input plane that `gather` and `scatter` work in: the plane
    /// and a zero, or the plane between the margins of its shifts.
    fn plane_scratch_len(&self) -> usize {
        let len = self.plane_len();
        self.shifted.as_ref().map_or(len + 1, |s| s.plane_len(len))
    }

    /// Values of one input plane, H·W.
    fn plane_len(&self) -> usize {
        self.window.in_h * self.window.in_w
    }

    /// Scratch values the forward or backward of `n` rows needs: every part's.
    pub fn scratch_len(&self, n: usize) -> usize {
        let plan = self.plan(n);
        plan.parts * self.part_len(plan.chunk)
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

    /// The transposed column matrix of `samples` rows of `x` into `col` (K × samples·P):
    /// entry (tap, output) the input value that tap of that output's window reads, 0 in the
    /// padding; plane by plane through `plane` (H·W + 1 values, the last a zero).
    // Out of line: one call per part (or per chunk), and a name of its own in a profile.
    #[inline(never)]
    fn gather<T: Real>(&self, x: &[T], samples: usize, col: &mut [T], plane: &mut [T]) {
        let (p, in_len, len) = (
            self.window.positions(),
            self.window.in_len(),
            self.plane_len(),
        );
        let (kernel, row) = (self.window.kernel.0 * self.window.kernel.1, samples * p);
        if let Some(shifted) = &self.shifted {
            return gather_shifted(shifted, &x[..samples * in_len], in_len, row, col, plane);
        }
        plane[len] = T::zero();
        for c in 0..self.window.channels {
            let rows = &mut col[c * kernel * row..(c + 1) * kernel * row];
            for j in 0..samples {
                plane[..len].copy_from_slice(&x[j * in_len + c * len..][..len]);
                for (reads, tap) in self.reads.chunks_exact(p).zip(rows.chunks_exact_mut(row)) {
                    let out = &mut tap[j * p..(j + 1) * p];
                    // `min`: the reads are at most `len` by construction; saying so lets the
                    // loop run without a bounds check per value, as vector gathers.
                    let plane = &plane[..=len];
                    out.iter_mut()
                        .zip(reads)
                        .for_each(|(o, &i)| *o = plane[i.min(len)]);
                }
            }
        }
    }

    /// The adjoint of `gather`: ∂L/∂x of `samples` rows into `dx` from ∂L/∂col, each entry
    /// added onto the input value it was copied from (the padding's onto the spare slot of
    /// `plane`), taps in order.
    // Out of line: one call per part (or per chunk), and a name of its own in a profile.
    #[inline(never)]
    fn scatter<T: Real>(&self, col: &[T], samples: usize, dx: &mut [T], plane: &mut [T]) {
        let (p, in_len, len) = (
            self.window.positions(),
            self.window.in_len(),
            self.plane_len(),
        );
        let (kernel, row) = (self.window.kernel.0 * self.window.kernel.1, samples * p);
        if let Some(shifted) = &self.shifted {
            let dx = &mut dx[..samples * in_len];
            return scatter_shifted(shifted, col, in_len, row, dx, plane);
        }
        for c in 0..self.window.channels {
            let rows = &col[c * kernel * row..(c + 1) * kernel * row];
            for j in 0..samples {
                plane.fill(T::zero());
                for (reads, tap) in self.reads.chunks_exact(p).zip(rows.chunks_exact(row)) {
                    let grads = &tap[j * p..(j + 1) * p];
                    let plane = &mut plane[..=len];
                    grads
                        .iter()
                        .zip(reads)
                        .for_each(|(&g, &i)| plane[i.min(len)] += g);
                }
                dx[j * in_len + c * len..][..len].copy_from_slice(&plane[..len]);
            }
        }
    }

    /// z = conv(x, W) + b for `n` rows of `x` (n × C·H·W) into `z` (n × O·OH·OW), through
    /// `scratch` (grown to `scratch_len(n)` when short), part by part of samples (on bpcore's
    /// threads when `parallel`).
    pub fn forward<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        z: &mut [T],
        scratch: &mut Vec<T>,
        parallel: bool,
    ) {
        if n == 0 {
            return;
        }
        let plan = self.plan(n);
        let (in_len, out_len, part_len) = (
            self.window.in_len(),
            self.out_len(),
            self.part_len(plan.chunk),
        );
        grow(scratch, plan.parts * part_len);
        let mut z_rest = &mut z[..n * out_len];
        let parts = scratch
            .chunks_exact_mut(part_len)
            .enumerate()
            .take(plan.parts);
        let parts = parts.map(|(i, work)| {
            let rows = share(n, plan.parts, i);
            let x = &x[rows.start * in_len..rows.end * in_len];
            (x, take_front(&mut z_rest, rows.len() * out_len), work)
        });
        run_each(parts, parallel, |_, (x, z, work)| {
            self.forward_part(params, x, z, work, plan.chunk)
        });
    }

    /// The forward of the rows of `x` into `z`, `chunk` samples at a time through `work`.
    // Out of line: one call per part (or per chunk), and a name of its own in a profile.
    #[inline(never)]
    fn forward_part<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        z: &mut [T],
        work: &mut [T],
        chunk: usize,
    ) {
        let (p, k, o) = (
            self.window.positions(),
            self.window.taps(),
            self.out_channels,
        );
        let (in_len, out_len) = (self.window.in_len(), self.out_len());
        let (col, rest) = work.split_at_mut(chunk * p * k);
        let (product, rest) = rest.split_at_mut(chunk * p * o);
        let plane = &mut rest[..self.plane_scratch_len()];
        let bias = self.bias_offset.map(|b| &params[b..b + o]);
        for (xs, zs) in x.chunks(chunk * in_len).zip(z.chunks_mut(chunk * out_len)) {
            let samples = xs.len() / in_len;
            let (col, product) = (&mut col[..k * samples * p], &mut product[..o * samples * p]);
            self.gather(xs, samples, col, plane);
            // product (O × samples·P) = W (O × K) · col (K × samples·P)
            matmul(
                product,
                Operand::new(self.weight(params), o, k),
                Operand::new(col, k, samples * p),
                false,
                false,
            );
            planes_out(product, samples, p, bias, zs);
        }
    }

    /// Given δ = ∂L/∂z (n × O·OH·OW) and the forward's input `x`, writes ∂L/∂W and ∂L/∂b into
    /// `grads` (at this layer's offsets) and, when asked, ∂L/∂x (n × C·H·W) into `dx`; part by
    /// part of samples as the forward, each part's ∂L/∂W and ∂L/∂b summed in the order of the
    /// parts.
    // As Dense::backward: one argument per term of the chain rule, plus the scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        delta: &[T],
        grads: &mut [T],
        dx: Option<&mut [T]>,
        scratch: &mut Vec<T>,
        parallel: bool,
    ) {
        let (w, wl, o) = (self.weight_offset, self.weight_len(), self.out_channels);
        grads[w..w + wl].fill(T::zero());
        if let Some(b) = self.bias_offset {
            grads[b..b + o].fill(T::zero());
        }
        if n == 0 {
            return;
        }
        let plan = self.plan(n);
        let (in_len, out_len, part_len) = (
            self.window.in_len(),
            self.out_len(),
            self.part_len(plan.chunk),
        );
        grow(scratch, plan.parts * part_len);
        let mut dx_rest = dx.map(|dx| &mut dx[..n * in_len]);
        let parts = scratch
            .chunks_exact_mut(part_len)
            .enumerate()
            .take(plan.parts);
        let parts = parts.map(|(i, work)| {
            let rows = share(n, plan.parts, i);
            let x = &x[rows.start * in_len..rows.end * in_len];
            let delta = &delta[rows.start * out_len..rows.end * out_len];
            let dx = dx_rest
                .as_mut()
                .map(|rest| take_front(rest, rows.len() * in_len));
            (x, delta, dx, work)
        });
        run_each(parts, parallel, |_, (x, delta, dx, work)| {
            self.backward_part(params, x, delta, dx, work, plan.chunk)
        });
        // Each part left its ∂L/∂W and ∂L/∂b at the end of its scratch.
        let sums = part_len - (wl + o)..part_len;
        for work in scratch.chunks_exact(part_len).take(plan.parts) {
            let (dw, db) = work[sums.clone()].split_at(wl);
            grads[w..w + wl]
                .iter_mut()
                .zip(dw)
                .for_each(|(g, &d)| *g += d);
            if let Some(b) = self.bias_offset {
                grads[b..b + o]
                    .iter_mut()
                    .zip(db)
                    .for_each(|(g, &d)| *g += d);
            }
        }
    }

    /// The backward of the rows of `x` (their δ in `delta`), `chunk` samples at a time through
    /// `work`: ∂L/∂W and ∂L/∂b of these rows at the end of `work`, ∂L/∂x into `dx` when asked.
    // Out of line: one call per part (or per chunk), and a name of its own in a profile.
    #[inline(never)]
    fn backward_part<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        delta: &[T],
        mut dx: Option<&mut [T]>,
        work: &mut [T],
        chunk: usize,
    ) {
        let (p, k, o) = (
            self.window.positions(),
            self.window.taps(),
            self.out_channels,
        );
        let (in_len, out_len) = (self.window.in_len(), self.out_len());
        let (col, rest) = work.split_at_mut(chunk * p * k);
        let (delta_cols, rest) = rest.split_at_mut(chunk * p * o);
        let (plane, rest) = rest.split_at_mut(self.plane_scratch_len());
        let (dw, db) = rest.split_at_mut(o * k);
        db.fill(T::zero());
        for (start, xs) in (0..).step_by(chunk).zip(x.chunks(chunk * in_len)) {
            let samples = xs.len() / in_len;
            let ds = &delta[start * out_len..(start + samples) * out_len];
            let (col, delta_cols) = (
                &mut col[..k * samples * p],
                &mut delta_cols[..o * samples * p],
            );
            planes_in(ds, samples, p, delta_cols);
            add_channel_sums(ds, p, db);
            self.gather(xs, samples, col, plane);
            // ∂L/∂W (+)= δ colᵀ: (O × samples·P)(samples·P × K)
            matmul(
                dw,
                Operand::new(delta_cols, o, samples * p),
                Operand::t(col, k, samples * p),
                start > 0,
                false,
            );
            if let Some(dx) = dx.as_deref_mut() {
                // ∂L/∂col = Wᵀ δ: (K × O)(O × samples·P), then each entry back onto its input.
                matmul(
                    col,
                    Operand::t(self.weight(params), o, k),
                    Operand::new(delta_cols, o, samples * p),
                    false,
                    false,
                );
                let dx = &mut dx[start * in_len..(start + samples) * in_len];
                self.scatter(col, samples, dx, plane);
            }
        }
    }
}

// The column matrix of a "same" convolution by shifted copies (`Shifted`), compiled for AVX-512
// and AVX2 too, chosen at run time, as the activations.

/// The transposed column matrix (K × row, K = C·kh·kw, row = samples·P) of the samples'
/// rows `xs` into `col`: tap t's row of a plane is the plane's values from its shift on,
/// padding masked to zero. Read straight from `xs` where the shifted reads stay inside it (the
/// values of a neighbouring plane they reach are masked out), else from a copy of the plane
/// in `ext` between zero margins. (Not from a copy every time: a read of a copy just stored
/// at another offset waits for the store.) Tap by tap, each along all samples: a plane's row
/// of a tap is one block of lanes or a few.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn gather_shifted<T: Real>(
    shifted: &Shifted,
    xs: &[T],
    in_len: usize,
    row: usize,
    col: &mut [T],
    ext: &mut [T],
) {
    let Shifted {
        margin,
        starts,
        inside,
        ..
    } = shifted;
    let (taps, len, margin) = (starts.len(), inside.len() / starts.len().max(1), *margin);
    let (len, in_len) = (len.max(1), in_len.max(1));
    let in_place = |at: usize| at >= margin && at + len + margin <= xs.len();
    let copy = |o: &mut T, v: T, m: bool| *o = if m { v } else { T::zero() };
    for c in 0..in_len / len {
        let rows = col[c * taps * row..(c + 1) * taps * row].chunks_exact_mut(row.max(1));
        for ((rows, &start), mask) in rows.zip(starts).zip(inside.chunks_exact(len)) {
            for (j, out) in rows.chunks_exact_mut(len).enumerate() {
                let at = j * in_len + c * len;
                if in_place(at) {
                    for_lanes(out, &xs[at - margin + start..][..len], mask, copy);
                }
            }
        }
    }
    // The planes whose reads would leave `xs` (the first and the last).
    let ext = &mut ext[..len + 2 * margin];
    // The margins stay zero: only the plane between them is written below.
    ext.fill(T::zero());
    for (j, x) in xs.chunks_exact(in_len).enumerate() {
        for (c, plane) in x.chunks_exact(len).enumerate() {
            if in_place(j * in_len + c * len) {
                continue;
            }
            ext[margin..margin + len].copy_from_slice(plane);
            let rows = col[c * taps * row..(c + 1) * taps * row].chunks_exact_mut(row.max(1));
            for ((out, &start), mask) in rows.zip(starts).zip(inside.chunks_exact(len)) {
                let out = &mut out[j * len..(j + 1) * len];
                for_lanes(out, &ext[start..start + len], mask, copy);
            }
        }
    }
}

/// The adjoint of `gather_shifted`: ∂L/∂x of the samples' rows `dxs` from ∂L/∂col, each
/// input value's terms summed from +0 in the order of the taps (as the gather through `reads`
/// sums them), the terms of other planes and of the padding masked to zero (adding a +0
/// changes no such sum's bits: a sum from +0 is never -0). Tap by tap onto the planes
/// themselves, reading each tap's row of ∂L/∂col shifted back where that stays inside the
/// row; else (the first and last samples' planes) through `ext` as the gather's copy.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn scatter_shifted<T: Real>(
    shifted: &Shifted,
    col: &[T],
    in_len: usize,
    row: usize,
    dxs: &mut [T],
    ext: &mut [T],
) {
    let Shifted {
        margin,
        starts,
        inside,
        lands,
    } = shifted;
    let (taps, len, margin) = (starts.len(), inside.len() / starts.len().max(1), *margin);
    let (len, in_len) = (len.max(1), in_len.max(1));
    let samples = dxs.len() / in_len;
    let in_place = |j: usize| j * len >= margin && (j + 1) * len + margin <= row;
    let add = |a: &mut T, g: T, m: bool| *a += if m { g } else { T::zero() };
    let ext = &mut ext[..len + 2 * margin];
    for c in 0..in_len / len {
        let plane = |j: usize| j * in_len + c * len..j * in_len + (c + 1) * len;
        for j in (0..samples).filter(|&j| in_place(j)) {
            dxs[plane(j)].fill(T::zero());
        }
        let rows = || col[c * taps * row..(c + 1) * taps * row].chunks_exact(row.max(1));
        for ((grads, &start), mask) in rows().zip(starts).zip(lands.chunks_exact(len)) {
            for j in (0..samples).filter(|&j| in_place(j)) {
                // Input value e takes the term of output e - shift = e + margin - start.
                let from = j * len + margin - start;
                for_lanes(&mut dxs[plane(j)], &grads[from..from + len], mask, add);
            }
        }
        for j in (0..samples).filter(|&j| !in_place(j)) {
            ext.fill(T::zero());
            for ((grads, &start), mask) in rows().zip(starts).zip(inside.chunks_exact(len)) {
                let grads = &grads[j * len..(j + 1) * len];
                for_lanes(&mut ext[start..start + len], grads, mask, add);
            }
            dxs[plane(j)].copy_from_slice(&ext[margin..margin + len]);
        }
    }
}

/// The layer's output `zs` (samples × O·P) from the product (O × samples·P): each sample's
/// output is its column block of the product, channel by channel, plus the channel's bias.
/// (Compiled for AVX-512 and AVX2 too, as the column copies.)
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn planes_out<T: Real>(product: &[T], samples: usize, p: usize, bias: Option<&[T]>, zs: &mut [T]) {
    let (row, out_len) = ((samples * p).max(1), (zs.len() / samples.max(1)).max(1));
    for (c, channel) in product.chunks_exact(row).enumerate() {
        let b = bias.map_or(T::zero(), |b| b[c]);
        for (zs, plane) in zs
            .chunks_exact_mut(out_len)
            .zip(channel.chunks_exact(p.max(1)))
        {
            zip_lanes(&mut zs[c * p..(c + 1) * p], plane, |z, v| *z = v + b);
        }
    }
}

/// δ (samples × O·P) laid out as the product's output (O × samples·P) in `delta_cols`: each
/// sample's planes as a column block, as `planes_out` reads them.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn planes_in<T: Real>(ds: &[T], samples: usize, p: usize, delta_cols: &mut [T]) {
    let (row, out_len) = ((samples * p).max(1), (ds.len() / samples.max(1)).max(1));
    for (c, channel) in delta_cols.chunks_exact_mut(row).enumerate() {
        for (plane, ds) in channel
            .chunks_exact_mut(p.max(1))
            .zip(ds.chunks_exact(out_len))
        {
            zip_lanes(plane, &ds[c * p..(c + 1) * p], |d, v| *d = v);
        }
    }
}

/// Values per block of `zip_lanes` and `for_lanes`: a whole AVX-512 vector of f32, so that
/// short planes (16 values) still take whole vectors.
const LANES: usize = 16;

/// `f(out, value)` along two equal slices, in blocks of `LANES`.
#[inline(always)]
fn zip_lanes<T: Real>(out: &mut [T], values: &[T], f: impl Fn(&mut T, T)) {
    let mut outs = out.chunks_exact_mut(LANES);
    let mut values = values.chunks_exact(LANES);
    for (o, v) in (&mut outs).zip(&mut values) {
        o.iter_mut().zip(v).for_each(|(o, &v)| f(o, v));
    }
    let rest = outs.into_remainder().iter_mut().zip(values.remainder());
    rest.for_each(|(o, &v)| f(o, v));
}

/// `f(out, value, mask)` along three equal slices, in blocks of `LANES`.
#[inline(always)]
fn for_lanes<T: Real>(out: &mut [T], values: &[T], mask: &[bool], f: impl Fn(&mut T, T, bool)) {
    let mut outs = out.chunks_exact_mut(LANES);
    let mut values = values.chunks_exact(LANES);
    let mut masks = mask.chunks_exact(LANES);
    for ((o, v), m) in (&mut outs).zip(&mut values).zip(&mut masks) {
        o.iter_mut()
            .zip(v)
            .zip(m)
            .for_each(|((o, &v), &m)| f(o, v, m));
    }
    let rest = outs.into_remainder().iter_mut().zip(values.remainder());
    rest.zip(masks.remainder())
        .for_each(|((o, &v), &m)| f(o, v, m));
}

/// Adds onto each `db[c]` the sum of channel c of the rows of `ds` (planes of `p` values,
/// as many planes a row as `db` has values), summed from zero sample by sample in order as one
/// fold over the channel would, but channels a group at a time: a fold is a chain of
/// dependent adds, and a group's chains run side by side.
fn add_channel_sums<T: Real>(ds: &[T], p: usize, db: &mut [T]) {
    const GROUP: usize = 8;
    if p == 0 {
        return;
    }
    let out_len = db.len() * p;
    for (c0, dbs) in (0..).step_by(GROUP).zip(db.chunks_mut(GROUP)) {
        let mut sums = [T::zero(); GROUP];
        for row in ds.chunks_exact(out_len.max(1)) {
            let planes = &row[c0 * p..(c0 + dbs.len()) * p];
            if dbs.len() == GROUP {
                // Each plane cut to `p` values, so that `at < p` is their bounds check.
                let plane = |k: usize| &planes[k * p..][..p];
                let group: [&[T]; GROUP] = [0, 1, 2, 3, 4, 5, 6, 7].map(plane);
                for at in 0..p {
                    for (sum, plane) in sums.iter_mut().zip(&group) {
                        *sum += plane[at];
                    }
                }
            } else {
                for (sum, plane) in sums.iter_mut().zip(planes.chunks_exact(p)) {
                    *sum = plane.iter().fold(*sum, |s, &d| s + d);
                }
            }
        }
        dbs.iter_mut().zip(sums).for_each(|(d, s)| *d += s);
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

    /// The same layer with its column matrix copied through `reads` (the general path).
    fn through_reads(conv: &Conv) -> Conv {
        let mut general = Conv::new(conv.window, conv.out_channels, 0, conv.bias_offset);
        if general.shifted.take().is_some() {
            // Rebuilt as `new` builds it before finding the shifts: with padding at H·W.
            let (len, p) = (conv.plane_len(), conv.window.positions());
            let kernel = conv.window.kernel.0 * conv.window.kernel.1;
            let one = Window {
                channels: 1,
                ..conv.window
            };
            let table = one.tap_table();
            general.reads = (0..kernel * p)
                .map(|i| match table[i % p * kernel + i / p] {
                    PADDING => len,
                    at => at,
                })
                .collect();
        }
        general
    }

    #[test]
    fn same_convolutions_copy_shifted_planes_to_the_same_bits() {
        // "Same" windows (stride 1, output the input's size): odd and even sides, dilation,
        // more padding on one axis, a 1-wide plane, one with as many positions as a block of
        // lanes and one with fewer and more.
        let windows = [
            (3, 8, 8, (3, 3), (1, 1), (1, 1)),
            (16, 4, 4, (3, 3), (1, 1), (1, 1)),
            (2, 5, 7, (3, 5), (1, 2), (1, 1)),
            (2, 6, 5, (3, 3), (2, 2), (2, 2)),
            (1, 1, 9, (1, 3), (0, 1), (1, 1)),
        ];
        for (channels, in_h, in_w, kernel, padding, dilation) in windows {
            let window = Window {
                channels,
                in_h,
                in_w,
                kernel,
                stride: (1, 1),
                padding,
                dilation,
            };
            let conv = Conv::new(window, 3, 0, Some(3 * window.taps()));
            assert!(conv.shifted.is_some(), "{window:?} reads shifted planes");
            let general = through_reads(&conv);
            let n = 37;
            // A NaN and infinities among the inputs: the padding's masks must keep them out.
            let x: Vec<f64> = (0..n * window.in_len())
                .map(|i| match i % 29 {
                    3 => f64::NAN,
                    7 => f64::INFINITY,
                    _ => ((i * 5 % 13) as f64 - 6.0) / 5.0,
                })
                .collect();
            let params: Vec<f64> = (0..conv.n_params())
                .map(|i| ((i * 7 % 11) as f64 - 5.0) / 7.0)
                .collect();
            let delta: Vec<f64> = (0..n * conv.out_len())
                .map(|i| match i % 31 {
                    4 => f64::NEG_INFINITY,
                    _ => ((i % 5) as f64 - 2.0) / 3.0,
                })
                .collect();
            let run = |conv: &Conv| {
                let mut z = vec![0.0; n * conv.out_len()];
                let mut scratch = Vec::new();
                conv.forward(&params, &x, n, &mut z, &mut scratch, false);
                let mut grads = vec![0.0; params.len()];
                let mut dx = vec![0.0; x.len()];
                let dx_of = Some(&mut dx[..]);
                conv.backward(
                    &params,
                    &x,
                    n,
                    &delta,
                    &mut grads,
                    dx_of,
                    &mut scratch,
                    true,
                );
                let bits = |v: &[f64]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                (bits(&z), bits(&grads), bits(&dx))
            };
            assert_eq!(run(&conv), run(&general), "{window:?}");
        }
        // Stride 2, or an output smaller than the input: no single shift per tap.
        assert!(layer().shifted.is_none());
        let valid = Window {
            channels: 1,
            in_h: 5,
            in_w: 5,
            kernel: (3, 3),
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
        };
        assert!(Conv::new(valid, 1, 0, None).shifted.is_none());
    }

    #[test]
    fn channel_sums_are_the_folds_over_each_channel() {
        // 11 channels: a whole group and a part of one; values whose sums round.
        let (n, o, p) = (5, 11, 7);
        let ds: Vec<f32> = (0..n * o * p).map(|i| 1.0 / (i as f32 + 3.0)).collect();
        let mut db = vec![0.5f32; o];
        add_channel_sums(&ds, p, &mut db);
        for (c, &got) in db.iter().enumerate() {
            let fold = (0..n)
                .flat_map(|s| &ds[(s * o + c) * p..(s * o + c + 1) * p])
                .fold(0.0f32, |s, &d| s + d);
            assert_eq!(got.to_bits(), (0.5 + fold).to_bits(), "channel {c}");
        }
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
        // More samples than the parts take in one chunk each (242 of this layer), so that
        // chunks are summed within the parts as well as the parts after them.
        let n = 5000;
        let plan = conv.plan(n);
        assert_eq!(plan.parts, MAX_PARTS);
        assert!(plan.chunk < n.div_ceil(plan.parts));
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
