//! Max and average pooling over (C, H, W) rows, as `torch.nn.MaxPool2d` and `AvgPool2d` (and
//! their 1-d forms, the case H = 1), channel by channel.
//!
//! Backward: max pooling routes each output's gradient to the input its window took (the first
//! largest, as torch); average pooling spreads it evenly over the window, padding included in
//! the count (torch's count_include_pad=True).

use crate::conv::{Window, PADDING};
use crate::sample_parts::{run_each, share, take_front};
use crate::Real;

/// Which reduction a pooling layer takes over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Average,
}

/// Below this many input values a pass stays on the calling thread: a hand-off to the team
/// costs about a microsecond, the pooling of this many values a few.
const MIN_VALUES_TO_SPLIT: usize = 1 << 14;
/// A pass over many samples is cut into this many parts (for up to four threads).
const PARTS: usize = 4;

/// A pooling layer: its window (dilation 1) and its reduction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub window: Window,
    pub kind: PoolKind,
    /// Without padding every window lies inside its plane: `Some` of the offset in the plane
    /// of each output position's window (its top-left tap) and of each of the window's kh·kw
    /// taps from there. `None` with padding: then `taps` is read.
    unpadded: Option<(Vec<usize>, Vec<usize>)>,
    /// For each output position of one plane, the indices in the plane of its window's
    /// kh·kw taps, or [`PADDING`].
    taps: Vec<usize>,
}

impl Pool {
    /// The `kind` pooling of `window`.
    pub fn new(window: Window, kind: PoolKind) -> Self {
        let plane = Window {
            channels: 1,
            ..window
        };
        let (oh, ow) = window.output().unwrap_or((0, 0));
        let ((kh, kw), (sh, sw), in_w) = (window.kernel, window.stride, window.in_w);
        let unpadded = (window.padding == (0, 0)).then(|| {
            let origins = (0..oh * ow).map(|p| p / ow * sh * in_w + p % ow * sw);
            let offsets = (0..kh * kw).map(|t| t / kw * in_w + t % kw);
            (origins.collect(), offsets.collect())
        });
        let taps = if unpadded.is_some() {
            Vec::new()
        } else {
            plane.tap_table()
        };
        Pool {
            window,
            kind,
            unpadded,
            taps,
        }
    }

    /// Values of one output row, C·OH·OW.
    pub fn out_len(&self) -> usize {
        self.window.channels * self.window.positions()
    }

    /// Taps of one window: kh·kw.
    fn kernel_len(&self) -> usize {
        self.window.kernel.0 * self.window.kernel.1
    }

    /// Whether this is max pooling over 2 × 2 tiles (stride 2, no padding), which has kernels
    /// of its own.
    fn is_max_2x2(&self) -> bool {
        let w = &self.window;
        self.kind == PoolKind::Max
            && w.kernel == (2, 2)
            && w.stride == (2, 2)
            && w.padding == (0, 0)
    }

    /// Parts a pass over `n` samples is cut into (`sample_parts`): the results are the same
    /// for any cut, each output being computed on its own.
    fn parts(&self, n: usize) -> usize {
        if n * self.window.in_len() < MIN_VALUES_TO_SPLIT {
            1
        } else {
            PARTS.min(n)
        }
    }

    /// The reduction of one window of the plane `xc`, its taps in order (ky, kx).
    #[inline(always)]
    fn reduce<T: Real>(&self, xc: &[T], taps: impl Iterator<Item = usize>) -> T {
        match self.kind {
            // The largest value, a NaN propagating (v > NaN is false, so a NaN stays); `|`
            // rather than `||` and a select rather than a branch: which value wins is data, a
            // branch on it mispredicts half the time.
            PoolKind::Max => taps.fold(T::neg_infinity(), |best, at| {
                let v = xc[at];
                select((v > best) | v.is_nan(), v, best)
            }),
            PoolKind::Average => {
                let sum = taps.fold(T::zero(), |sum, at| sum + xc[at]);
                sum / T::of(self.kernel_len() as f64)
            }
        }
    }

    /// Adds an output's gradient `d` onto the inputs of its window (taps in order (ky, kx))
    /// in `dxc`: onto the value max pooling took, the first largest (a NaN wins, as in torch,
    /// so that it propagates), or evenly over the window.
    #[inline(always)]
    fn route<T: Real>(&self, xc: &[T], taps: impl Iterator<Item = usize>, d: T, dxc: &mut [T]) {
        match self.kind {
            PoolKind::Max => {
                // The first tap, then each later one that is larger (or the first NaN), by
                // selects as in `reduce`; a window holds at least one tap.
                let mut taps = taps;
                let Some(first) = taps.next() else { return };
                let (mut at, mut best) = (first, xc[first]);
                for t in taps {
                    let v = xc[t];
                    let better = (v > best) | (v.is_nan() & !best.is_nan());
                    at = if better { t } else { at };
                    best = select(better, v, best);
                }
                dxc[at] += d;
            }
            PoolKind::Average => {
                let share = d / T::of(self.kernel_len() as f64);
                taps.for_each(|at| dxc[at] += share);
            }
        }
    }

    /// The pooled outputs of `n` rows of `x` (n × C·H·W) into `z` (n × C·OH·OW), part by
    /// part of samples on bpcore's threads when there are values enough.
    pub fn forward<T: Real>(&self, x: &[T], n: usize, z: &mut [T]) {
        let (in_len, out_len, parts) = (self.window.in_len(), self.out_len(), self.parts(n));
        let mut z_rest = &mut z[..n * out_len];
        let each = (0..parts).map(|i| {
            let rows = share(n, parts, i);
            let x = &x[rows.start * in_len..rows.end * in_len];
            (x, take_front(&mut z_rest, rows.len() * out_len))
        });
        run_each(each, parts > 1, |_, (x, z)| self.forward_rows(x, z));
    }

    // Out of line: one call per part (or per chunk), and a name of its own in a profile.
    #[inline(never)]
    fn forward_rows<T: Real>(&self, x: &[T], z: &mut [T]) {
        let (plane, positions) = (self.window.in_h * self.window.in_w, self.window.positions());
        if self.is_max_2x2() && self.window.in_h % 2 == 0 && matches!(self.window.in_w, 2 | 4) {
            return max_2x2_forward_rows(x, z, self.window.in_w);
        }
        if self.is_max_2x2() {
            return max_2x2_forward(x, z, self.window.in_w, plane, positions);
        }
        for (xc, zc) in x.chunks_exact(plane).zip(z.chunks_exact_mut(positions)) {
            match &self.unpadded {
                Some((origins, offsets)) => {
                    for (z, &origin) in zc.iter_mut().zip(origins) {
                        *z = self.reduce(xc, offsets.iter().map(|&t| origin + t));
                    }
                }
                None => {
                    for (z, taps) in zc.iter_mut().zip(self.taps.chunks_exact(self.kernel_len())) {
                        *z = self.reduce(xc, taps.iter().copied().filter(|&at| at != PADDING));
                    }
                }
            }
        }
    }

    /// ∂L/∂x (n × C·H·W) into `dx` from δ = ∂L/∂z and the forward's input `x`, part by part
    /// of samples as the forward.
    pub fn backward<T: Real>(&self, x: &[T], n: usize, delta: &[T], dx: &mut [T]) {
        let (in_len, out_len, parts) = (self.window.in_len(), self.out_len(), self.parts(n));
        let mut dx_rest = &mut dx[..n * in_len];
        let each = (0..parts).map(|i| {
            let rows = share(n, parts, i);
            let x = &x[rows.start * in_len..rows.end * in_len];
            let delta = &delta[rows.start * out_len..rows.end * out_len];
            (x, delta, take_front(&mut dx_rest, rows.len() * in_len))
        });
        run_each(each, parts > 1, |_, (x, delta, dx)| {
            self.backward_rows(x, delta, dx)
        });
    }

    // Out of line: one call per part (or per chunk), and a name of its own in a profile.
    #[inline(never)]
    fn backward_rows<T: Real>(&self, x: &[T], delta: &[T], dx: &mut [T]) {
        let (plane, positions) = (self.window.in_h * self.window.in_w, self.window.positions());
        if self.is_max_2x2() && tiled_exactly(&self.window) {
            return max_2x2_backward_rows(x, delta, dx, self.window.in_w);
        }
        dx.fill(T::zero());
        if self.is_max_2x2() {
            return max_2x2_backward(x, delta, dx, self.window.in_w, plane, positions);
        }
        let planes = x.chunks_exact(plane).zip(delta.chunks_exact(positions));
        for ((xc, dc), dxc) in planes.zip(dx.chunks_exact_mut(plane)) {
            match &self.unpadded {
                Some((origins, offsets)) => {
                    for (&d, &origin) in dc.iter().zip(origins) {
                        self.route(xc, offsets.iter().map(|&t| origin + t), d, dxc);
                    }
                }
                None => {
                    for (&d, taps) in dc.iter().zip(self.taps.chunks_exact(self.kernel_len())) {
                        let inside = taps.iter().copied().filter(|&at| at != PADDING);
                        self.route(xc, inside, d, dxc);
                    }
                }
            }
        }
    }
}

// Max pooling over 2 × 2 tiles, the common case, output by output with the four taps in
// registers and selects instead of branches, so that the loops over a row of outputs vectorize
// (compiled for AVX-512 and AVX2 too, chosen at run time, as the activations).

/// Each plane of `x` (`plane` values, rows of `in_w`) max-pooled into its `positions`
/// outputs in `z`, a NaN propagating.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn max_2x2_forward<T: Real>(x: &[T], z: &mut [T], in_w: usize, plane: usize, positions: usize) {
    let ow = in_w / 2;
    for (xc, zc) in x.chunks_exact(plane).zip(z.chunks_exact_mut(positions)) {
        for (oy, out) in zc.chunks_exact_mut(ow.max(1)).enumerate() {
            let (top, bottom) = tile_rows(xc, in_w, oy, ow);
            for ((z, a), b) in out
                .iter_mut()
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                *z = max_of_tile(a[0], a[1], b[0], b[1]);
            }
        }
    }
}

/// `max_2x2_forward` for planes tiled exactly with rows of 2 or 4 values, pair of rows by
/// pair of rows at a constant width as `max_2x2_backward_rows` (rows of 8 outputs or more
/// vectorize along the row, which is faster than across pairs of rows that wide).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn max_2x2_forward_rows<T: Real>(x: &[T], z: &mut [T], in_w: usize) {
    match in_w {
        2 => row_pairs_forward::<T, 2>(x, z),
        _ => row_pairs_forward::<T, 4>(x, z),
    }
}

/// `max_2x2_forward_rows` for rows of `W` values.
#[inline(always)]
fn row_pairs_forward<T: Real, const W: usize>(x: &[T], z: &mut [T]) {
    for (x, out) in x.chunks_exact(2 * W).zip(z.chunks_exact_mut(W / 2)) {
        let (top, bottom) = x.split_at(W);
        let tiles = top.chunks_exact(2).zip(bottom.chunks_exact(2));
        for (z, (a, b)) in out.iter_mut().zip(tiles) {
            *z = max_of_tile(a[0], a[1], b[0], b[1]);
        }
    }
}

/// ∂L/∂x of 2 × 2 max pooling into `dx` (zeroed by the caller): each output's gradient onto
/// the first tap, in order (ky, kx), that equals the tile's maximum (or is its first NaN),
/// as `Pool::route` picks it.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn max_2x2_backward<T: Real>(
    x: &[T],
    delta: &[T],
    dx: &mut [T],
    in_w: usize,
    plane: usize,
    positions: usize,
) {
    let ow = in_w / 2;
    let planes = x.chunks_exact(plane).zip(delta.chunks_exact(positions));
    for ((xc, dc), dxc) in planes.zip(dx.chunks_exact_mut(plane)) {
        for (oy, ds) in dc.chunks_exact(ow.max(1)).enumerate() {
            let (top, bottom) = tile_rows(xc, in_w, oy, ow);
            let (dtop, dbottom) = dxc[2 * oy * in_w..].split_at_mut(in_w);
            let (dtop, dbottom) = (&mut dtop[..2 * ow], &mut dbottom[..2 * ow]);
            // A block of outputs at a time: first each tap's share into its own lane array
            // (interleaved loads, as in the forward), then the four arrays stored in place.
            for (start, ds) in (0..).step_by(BLOCK).zip(ds.chunks(BLOCK)) {
                // Lanes by iterators, not indices: no bounds check to stop the vectorizer.
                let zero = T::zero();
                let (mut s0, mut s1, mut s2, mut s3) =
                    ([zero; BLOCK], [zero; BLOCK], [zero; BLOCK], [zero; BLOCK]);
                let tiles = top[2 * start..]
                    .chunks_exact(2)
                    .zip(bottom[2 * start..].chunks_exact(2));
                let lanes = s0
                    .iter_mut()
                    .zip(s1.iter_mut())
                    .zip(s2.iter_mut().zip(s3.iter_mut()));
                for (((a, b), &d), ((s0, s1), (s2, s3))) in tiles.zip(ds).zip(lanes) {
                    let m = max_of_tile(a[0], a[1], b[0], b[1]);
                    // A NaN is the maximum only if the tile holds one, so `v == m or v is NaN`
                    // finds the first maximum or the first NaN; the gradient not yet placed
                    // moves on tap by tap.
                    let hit = |v: T| (v == m) | v.is_nan();
                    *s0 = select(hit(a[0]), d, zero);
                    let rest = select(hit(a[0]), zero, d);
                    *s1 = select(hit(a[1]), rest, zero);
                    let rest = select(hit(a[1]), zero, rest);
                    *s2 = select(hit(b[0]), rest, zero);
                    *s3 = select(hit(b[0]), zero, rest);
                }
                let len = ds.len();
                let dtop = dtop[2 * start..2 * (start + len)].chunks_exact_mut(2);
                let dbottom = dbottom[2 * start..2 * (start + len)].chunks_exact_mut(2);
                let lanes = s0.iter().zip(&s1).zip(s2.iter().zip(&s3));
                for ((da, db), ((&g0, &g1), (&g2, &g3))) in dtop.zip(dbottom).zip(lanes) {
                    (da[0], da[1]) = (g0, g1);
                    (db[0], db[1]) = (g2, g3);
                }
            }
        }
    }
}

/// Whether 2 × 2 tiles cover every plane of `window` (even sides) with rows of a width that
/// `max_2x2_backward_rows` has a kernel for: then a part's rows are a sequence of pairs of
/// input rows, the planes one after the other, each pair one row of outputs. (Rows of 16 or
/// more vectorize along the row as well.)
fn tiled_exactly(window: &Window) -> bool {
    window.in_h % 2 == 0 && matches!(window.in_w, 2 | 4 | 8)
}

/// ∂L/∂x of 2 × 2 max pooling into `dx` (every value written) for planes tiled exactly
/// (`tiled_exactly`), pair of rows by pair of rows with the width a constant, so that a pair's
/// tiles are one short vector each (the planes of small images have rows too short for a
/// loop along them to vectorize). Routes as `max_2x2_backward`.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn max_2x2_backward_rows<T: Real>(x: &[T], delta: &[T], dx: &mut [T], in_w: usize) {
    match in_w {
        2 => row_pairs_backward::<T, 2>(x, delta, dx),
        4 => row_pairs_backward::<T, 4>(x, delta, dx),
        _ => row_pairs_backward::<T, 8>(x, delta, dx),
    }
}

/// `max_2x2_backward_rows` for rows of `W` values.
#[inline(always)]
fn row_pairs_backward<T: Real, const W: usize>(x: &[T], delta: &[T], dx: &mut [T]) {
    let pairs = x.chunks_exact(2 * W).zip(dx.chunks_exact_mut(2 * W));
    for ((x, dx), ds) in pairs.zip(delta.chunks_exact(W / 2)) {
        // Rows of 8: pairs of rows 16 values apart, more than the vectorizer takes across
        // loop turns without a gather per value (about twice as slow); a pair hidden from it
        // turn by turn is vectorized within, its four tiles as one short vector.
        let x = if W == 8 { std::hint::black_box(x) } else { x };
        let (top, bottom) = x.split_at(W);
        let (dtop, dbottom) = dx.split_at_mut(W);
        let tiles = top.chunks_exact(2).zip(bottom.chunks_exact(2));
        let dtiles = dtop.chunks_exact_mut(2).zip(dbottom.chunks_exact_mut(2));
        for (((a, b), &d), (da, db)) in tiles.zip(ds).zip(dtiles) {
            let [g0, g1, g2, g3] = route_in_tile([a[0], a[1], b[0], b[1]], d);
            (da[0], da[1], db[0], db[1]) = (g0, g1, g2, g3);
        }
    }
}

/// The shares of gradient `d` of a tile's four values (in order (ky, kx)): all of it on the
/// first that equals the tile's maximum or is its first NaN, as `Pool::route` picks.
#[inline(always)]
fn route_in_tile<T: Real>(v: [T; 4], d: T) -> [T; 4] {
    let zero = T::zero();
    let m = max_of_tile(v[0], v[1], v[2], v[3]);
    // A NaN is the maximum only if the tile holds one, so `v == m or v is NaN` finds the
    // first maximum or the first NaN; the gradient not yet placed moves on tap by tap.
    let hit = |v: T| (v == m) | v.is_nan();
    let s0 = select(hit(v[0]), d, zero);
    let rest = select(hit(v[0]), zero, d);
    let s1 = select(hit(v[1]), rest, zero);
    let rest = select(hit(v[1]), zero, rest);
    let s2 = select(hit(v[2]), rest, zero);
    let s3 = select(hit(v[2]), zero, rest);
    [s0, s1, s2, s3]
}

/// Outputs of a row that the 2 × 2 backward takes at a time.
const BLOCK: usize = 16;

/// The two input rows of output row `oy`, each cut to the `2·ow` values its tiles cover.
#[inline(always)]
fn tile_rows<T>(xc: &[T], in_w: usize, oy: usize, ow: usize) -> (&[T], &[T]) {
    let top = &xc[2 * oy * in_w..][..2 * ow];
    let bottom = &xc[(2 * oy + 1) * in_w..][..2 * ow];
    (top, bottom)
}

/// The largest of a tile's four values, a NaN propagating (as `Pool::reduce`).
#[inline(always)]
fn max_of_tile<T: Real>(a: T, b: T, c: T, d: T) -> T {
    let keep = |best: T, v: T| select((v > best) | v.is_nan(), v, best);
    keep(keep(keep(a, b), c), d)
}

/// `a` when `take`, else `b`, written for a conditional move rather than a branch.
#[inline(always)]
fn select<T: Real>(take: bool, a: T, b: T) -> T {
    if take {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(kind: PoolKind) -> Pool {
        Pool::new(
            Window {
                channels: 1,
                in_h: 3,
                in_w: 4,
                kernel: (2, 2),
                stride: (2, 2),
                padding: (1, 1),
                dilation: (1, 1),
            },
            kind,
        )
    }

    #[test]
    fn max_and_average_by_hand() {
        // 1..=12 in a 3 × 4 plane; padded by one, windows of 2 × 2 every 2.
        let x: Vec<f64> = (1..=12).map(f64::from).collect();
        let max = pool(PoolKind::Max);
        assert_eq!(max.window.output(), Some((2, 3)));
        let mut z = vec![0.0; 6];
        max.forward(&x, 1, &mut z);
        assert_eq!(z, [1.0, 3.0, 4.0, 9.0, 11.0, 12.0]);
        let mut dx = vec![0.0; 12];
        max.backward(&x, 1, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut dx);
        assert_eq!(
            dx,
            [1.0, 0.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 5.0, 6.0]
        );
        let avg = pool(PoolKind::Average);
        avg.forward(&x, 1, &mut z);
        assert_eq!(z, [0.25, 1.25, 1.0, 3.5, 8.5, 5.0]);
        avg.backward(&x, 1, &[4.0, 4.0, 4.0, 4.0, 4.0, 4.0], &mut dx);
        assert_eq!(dx, [1.0; 12]);
    }

    #[test]
    fn the_2x2_kernels_pick_as_the_general_path_with_ties_and_nans() {
        // Odd sides, so that a row and a column are left out of every tile; even ones, tiled
        // exactly, in each width with a kernel of its own and one without.
        for (channels, in_h, in_w) in [(3, 5, 7), (3, 4, 8), (2, 6, 4), (1, 2, 2), (2, 4, 16)]
            .into_iter()
            .chain([(2, 4, 6), (2, 3, 4)])
        {
            let window = Window {
                channels,
                in_h,
                in_w,
                kernel: (2, 2),
                stride: (2, 2),
                padding: (0, 0),
                dilation: (1, 1),
            };
            assert_eq!(
                tiled_exactly(&window),
                in_h % 2 == 0 && in_w <= 8 && in_w != 6 && in_w != 7
            );
            agrees_with_the_general_path(window);
        }
    }

    fn agrees_with_the_general_path(window: Window) {
        let pool = Pool::new(window, PoolKind::Max);
        assert!(pool.is_max_2x2());
        let n = 2;
        // Few distinct values (ties in most tiles), a NaN now and then, infinities.
        let x: Vec<f64> = (0..n * window.in_len())
            .map(|i| match i % 17 {
                5 => f64::NAN,
                11 => f64::NEG_INFINITY,
                _ => ((i * 7) % 3) as f64,
            })
            .collect();
        let delta: Vec<f64> = (0..n * pool.out_len()).map(|i| i as f64 + 1.0).collect();
        let mut z = vec![0.0; n * pool.out_len()];
        pool.forward(&x, n, &mut z);
        // Not zeros: every value of ∂L/∂x must be written, the ones no tile covers too.
        let mut dx = vec![7.0; x.len()];
        pool.backward(&x, n, &delta, &mut dx);
        // The general path, window by window.
        let Some((origins, offsets)) = &pool.unpadded else {
            panic!("no padding: the windows are by origin") // panic-free: test code
        };
        let (plane, positions) = (window.in_h * window.in_w, window.positions());
        let mut want_dx = vec![0.0; x.len()];
        for s in 0..n * window.channels {
            let xc = &x[s * plane..(s + 1) * plane];
            for (p, &origin) in origins.iter().enumerate() {
                let want = pool.reduce(xc, offsets.iter().map(|&t| origin + t));
                let got = z[s * positions + p];
                assert!(got == want || (got.is_nan() && want.is_nan()));
                let d = delta[s * positions + p];
                let dxc = &mut want_dx[s * plane..(s + 1) * plane];
                pool.route(xc, offsets.iter().map(|&t| origin + t), d, dxc);
            }
        }
        assert_eq!(dx, want_dx);
    }
}
