//! Max and average pooling over (C, H, W) rows, as `torch.nn.MaxPool2d` and `AvgPool2d` (and
//! their 1-d forms, the case H = 1), channel by channel.
//!
//! Backward: max pooling routes each output's gradient to the input its window took (the first
//! largest, as torch); average pooling spreads it evenly over the window, padding included in
//! the count (torch's count_include_pad=True).

use crate::conv::{Window, PADDING};
use crate::Real;

/// Which reduction a pooling layer takes over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Average,
}

/// A pooling layer: its window (dilation 1) and its reduction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub window: Window,
    pub kind: PoolKind,
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
        Pool {
            window,
            kind,
            taps: plane.tap_table(),
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

    /// Calls `f(output index, the input plane, the window's taps in it)` for every output of
    /// the rows of `x`, plane by plane.
    fn for_each_window<T: Real>(&self, x: &[T], mut f: impl FnMut(usize, &[T], &[usize])) {
        let (plane, positions) = (self.window.in_h * self.window.in_w, self.window.positions());
        for (s, xs) in x.chunks_exact(plane * self.window.channels).enumerate() {
            for (c, xc) in xs.chunks_exact(plane).enumerate() {
                let first = (s * self.window.channels + c) * positions;
                for (p, taps) in self.taps.chunks_exact(self.kernel_len()).enumerate() {
                    f(first + p, xc, taps);
                }
            }
        }
    }

    /// The index (in its plane) of the value max pooling takes from a window: the first
    /// largest (a NaN wins, as in torch, so that it propagates).
    fn argmax<T: Real>(xc: &[T], taps: &[usize]) -> Option<usize> {
        let mut best: Option<(usize, T)> = None;
        for &at in taps.iter().filter(|&&at| at != PADDING) {
            let v = xc[at];
            let better = match best {
                None => true,
                Some((_, b)) => v > b || (v.is_nan() && !b.is_nan()),
            };
            if better {
                best = Some((at, v));
            }
        }
        best.map(|(at, _)| at)
    }

    /// The pooled outputs of `n` rows of `x` (n × C·H·W) into `z` (n × C·OH·OW).
    pub fn forward<T: Real>(&self, x: &[T], n: usize, z: &mut [T]) {
        let count = T::of(self.kernel_len() as f64);
        let x = &x[..n * self.window.in_len()];
        self.for_each_window(x, |out, xc, taps| {
            z[out] = match self.kind {
                // The largest value, a NaN propagating (v > NaN is false, so a NaN stays).
                PoolKind::Max => taps.iter().fold(T::neg_infinity(), |best, &at| {
                    if at == PADDING {
                        return best;
                    }
                    let v = xc[at];
                    if v > best || v.is_nan() {
                        v
                    } else {
                        best
                    }
                }),
                PoolKind::Average => {
                    let inside = taps.iter().filter(|&&at| at != PADDING);
                    inside.fold(T::zero(), |sum, &at| sum + xc[at]) / count
                }
            };
        });
    }

    /// ∂L/∂x (n × C·H·W) into `dx` from δ = ∂L/∂z and the forward's input `x`.
    pub fn backward<T: Real>(&self, x: &[T], n: usize, delta: &[T], dx: &mut [T]) {
        let count = T::of(self.kernel_len() as f64);
        let in_len = self.window.in_len();
        let plane = self.window.in_h * self.window.in_w;
        let positions = self.window.positions();
        let dx = &mut dx[..n * in_len];
        dx.fill(T::zero());
        self.for_each_window(&x[..n * in_len], |out, xc, taps| {
            // The plane of this output: (sample, channel) = out / positions.
            let base = out / positions * plane;
            match self.kind {
                PoolKind::Max => {
                    if let Some(at) = Self::argmax(xc, taps) {
                        dx[base + at] += delta[out];
                    }
                }
                PoolKind::Average => {
                    let share = delta[out] / count;
                    for &at in taps.iter().filter(|&&at| at != PADDING) {
                        dx[base + at] += share;
                    }
                }
            }
        });
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
}
