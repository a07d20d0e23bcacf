//! Max and average pooling over (C, H, W) rows, as `torch.nn.MaxPool2d` and `AvgPool2d` (and
//! their 1-d forms, the case H = 1), channel by channel.
//!
//! Backward: max pooling routes each output's gradient to the input its window took (the first
//! largest, as torch); average pooling spreads it evenly over the window, padding included in
//! the count (torch's count_include_pad=True).

use crate::conv::Window;
use crate::Real;

/// Which reduction a pooling layer takes over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Average,
}

/// A pooling layer: its window (dilation 1) and its reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub window: Window,
    pub kind: PoolKind,
}

impl Pool {
    /// Values of one output row, C·OH·OW.
    pub fn out_len(&self) -> usize {
        self.window.channels * self.window.positions()
    }

    /// Calls `f(output index, input indices inside the input)` for each output of one row.
    fn for_each_output(&self, mut f: impl FnMut(usize, &mut dyn Iterator<Item = usize>)) {
        let w = self.window;
        let (oh, ow) = w.output().unwrap_or((0, 0));
        let (kh, kw) = w.kernel;
        for c in 0..w.channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = oy * w.stride.0;
                    let x0 = ox * w.stride.1;
                    let mut taps = (0..kh).flat_map(move |ky| {
                        (0..kw).filter_map(move |kx| {
                            // Padded coordinates minus the padding; outside the input is padding.
                            let iy = (y0 + ky).wrapping_sub(w.padding.0);
                            let ix = (x0 + kx).wrapping_sub(w.padding.1);
                            (iy < w.in_h && ix < w.in_w).then(|| (c * w.in_h + iy) * w.in_w + ix)
                        })
                    });
                    f((c * oh + oy) * ow + ox, &mut taps);
                }
            }
        }
    }

    /// The input index the max of output `taps` comes from: the first largest (a NaN wins, as
    /// in torch, so that it propagates).
    fn argmax<T: Real>(xs: &[T], taps: &mut dyn Iterator<Item = usize>) -> Option<usize> {
        let mut best: Option<usize> = None;
        for at in taps {
            let v = xs[at];
            match best {
                Some(b) if !(v > xs[b] || v.is_nan()) => {}
                _ => best = Some(at),
            }
            if v.is_nan() {
                break;
            }
        }
        best
    }

    /// The pooled outputs of `n` rows of `x` (n × C·H·W) into `z` (n × C·OH·OW).
    pub fn forward<T: Real>(&self, x: &[T], n: usize, z: &mut [T]) {
        let (in_len, out_len) = (self.window.in_len(), self.out_len());
        let count = T::of((self.window.kernel.0 * self.window.kernel.1) as f64);
        for s in 0..n {
            let xs = &x[s * in_len..(s + 1) * in_len];
            let zs = &mut z[s * out_len..(s + 1) * out_len];
            self.for_each_output(|out, taps| {
                zs[out] = match self.kind {
                    PoolKind::Max => Self::argmax(xs, taps).map_or(T::zero(), |at| xs[at]),
                    PoolKind::Average => taps.fold(T::zero(), |sum, at| sum + xs[at]) / count,
                };
            });
        }
    }

    /// ∂L/∂x (n × C·H·W) into `dx` from δ = ∂L/∂z and the forward's input `x`.
    pub fn backward<T: Real>(&self, x: &[T], n: usize, delta: &[T], dx: &mut [T]) {
        let (in_len, out_len) = (self.window.in_len(), self.out_len());
        let count = T::of((self.window.kernel.0 * self.window.kernel.1) as f64);
        dx[..n * in_len].fill(T::zero());
        for s in 0..n {
            let xs = &x[s * in_len..(s + 1) * in_len];
            let ds = &delta[s * out_len..(s + 1) * out_len];
            let dxs = &mut dx[s * in_len..(s + 1) * in_len];
            self.for_each_output(|out, taps| match self.kind {
                PoolKind::Max => {
                    if let Some(at) = Self::argmax(xs, taps) {
                        dxs[at] += ds[out];
                    }
                }
                PoolKind::Average => {
                    let share = ds[out] / count;
                    taps.for_each(|at| dxs[at] += share);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(kind: PoolKind) -> Pool {
        Pool {
            window: Window {
                channels: 1,
                in_h: 3,
                in_w: 4,
                kernel: (2, 2),
                stride: (2, 2),
                padding: (1, 1),
                dilation: (1, 1),
            },
            kind,
        }
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
