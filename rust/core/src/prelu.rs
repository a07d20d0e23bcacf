//! The parametric ReLU, as `torch.nn.PReLU(num_parameters, init)`: y = x for x > 0, else a x,
//! with the slope a learned — one for the whole row, or one per channel (the first axis of a
//! row read as (C, ...), each feature of a flat row).
//!
//! Backward, with g = ∂L/∂y: ∂L/∂x = g for x > 0, else a g; ∂L/∂a_c = Σ g x over the batch
//! and the positions of channel c where x ≤ 0 (torch's `x > 0 ? 0 : x g`). The sums are
//! accumulated in f64 whatever `T`.

use crate::activation::Activation;
use crate::Real;

/// Where a PReLU layer's slopes live and which values each one scales.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prelu {
    /// Values of one row.
    pub width: usize,
    /// Learned slopes: 1, or the row's channels.
    pub slopes: usize,
    /// Consecutive values of a row that share one slope (`width / slopes`).
    pub per_slope: usize,
    /// The slopes' initial value.
    pub init: f64,
    /// Offset of the slopes in the parameter buffer.
    pub weight_offset: usize,
}

impl Prelu {
    /// A layer over rows of `width` values with `slopes` slopes (1 or a divisor of `width`:
    /// the channel count) at `weight_offset`.
    pub fn new(width: usize, slopes: usize, init: f64, weight_offset: usize) -> Self {
        Prelu {
            width,
            slopes,
            per_slope: width / slopes.max(1),
            init,
            weight_offset,
        }
    }

    /// Sets every slope to its initial value, as torch.
    pub fn init<T: Real>(&self, params: &mut [T]) {
        params[self.weight_offset..self.weight_offset + self.slopes].fill(T::of(self.init));
    }

    /// What the layer is at its initial slope, for the initialization of the layer before it
    /// (torch's gain for leaky_relu of that slope).
    pub fn as_initialized(&self) -> Activation {
        Activation::LeakyRelu {
            negative_slope: self.init,
        }
    }

    fn weights<'a, T: Real>(&self, params: &'a [T]) -> &'a [T] {
        &params[self.weight_offset..self.weight_offset + self.slopes]
    }

    /// y = prelu(x) for `n` rows.
    pub fn forward<T: Real>(&self, params: &[T], x: &[T], n: usize, y: &mut [T]) {
        let a = self.weights(params);
        let len = n * self.width;
        let runs = x[..len]
            .chunks_exact(self.per_slope)
            .zip(y[..len].chunks_exact_mut(self.per_slope));
        for (k, (xs, ys)) in runs.enumerate() {
            let slope = a[k % self.slopes];
            for (&v, out) in xs.iter().zip(ys) {
                *out = if v > T::zero() { v } else { slope * v };
            }
        }
    }

    /// ∂L/∂a into `grads`, accumulated over the `n` rows in `acc` (scratch of `slopes`), and
    /// ∂L/∂x into `dx` when asked.
    // One argument per term of the chain rule, as `Dense::backward`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        dy: &[T],
        acc: &mut [f64],
        grads: &mut [T],
        dx: Option<&mut [T]>,
    ) {
        let a = self.weights(params);
        let len = n * self.width;
        let sums = &mut acc[..self.slopes];
        sums.fill(0.0);
        let runs = x[..len]
            .chunks_exact(self.per_slope)
            .zip(dy[..len].chunks_exact(self.per_slope));
        for (k, (xs, gs)) in runs.enumerate() {
            let run: f64 = xs
                .iter()
                .zip(gs)
                .filter(|(&v, _)| v <= T::zero())
                .map(|(&v, &g)| v.f64() * g.f64())
                .sum();
            sums[k % self.slopes] += run;
        }
        let out = &mut grads[self.weight_offset..self.weight_offset + self.slopes];
        out.iter_mut()
            .zip(sums.iter())
            .for_each(|(o, &s)| *o = T::of(s));
        let Some(dx) = dx else { return };
        let runs = x[..len]
            .chunks_exact(self.per_slope)
            .zip(dy[..len].chunks_exact(self.per_slope))
            .zip(dx[..len].chunks_exact_mut(self.per_slope));
        for (k, ((xs, gs), ds)) in runs.enumerate() {
            let slope = a[k % self.slopes];
            for ((&v, &g), d) in xs.iter().zip(gs).zip(ds) {
                *d = if v > T::zero() { g } else { slope * g };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two rows of (C=2, L=3), slopes 0.25 and -0.5 at offset 1 of the parameters.
    fn layer() -> (Prelu, Vec<f64>, Vec<f64>) {
        let p = Prelu::new(6, 2, 0.25, 1);
        let params = vec![9.0, 0.25, -0.5];
        let x = vec![
            1.0, -2.0, 0.0, -1.0, 3.0, -4.0, -1.5, 2.0, 0.5, 0.7, -0.2, 1.0,
        ];
        (p, params, x)
    }

    #[test]
    fn each_channel_has_its_own_slope() {
        let (p, params, x) = layer();
        let mut y = vec![0.0; 12];
        p.forward(&params, &x, 2, &mut y);
        let want = [
            1.0, -0.5, 0.0, 0.5, 3.0, 2.0, -0.375, 2.0, 0.5, 0.7, 0.1, 1.0,
        ];
        assert_eq!(y, want);
    }

    #[test]
    fn backward_matches_central_differences() {
        let (p, params, x) = layer();
        let dy: Vec<f64> = (0..12).map(|i| 0.3 * i as f64 - 1.1).collect();
        let loss = |params: &[f64], x: &[f64]| {
            let mut y = vec![0.0; 12];
            p.forward(params, x, 2, &mut y);
            y.iter().zip(&dy).map(|(a, b)| a * b).sum::<f64>()
        };
        let (mut grads, mut dx, mut acc) = (vec![0.0; 3], vec![0.0; 12], vec![0.0; 2]);
        p.backward(&params, &x, 2, &dy, &mut acc, &mut grads, Some(&mut dx));
        let eps = 1e-6;
        for c in 1..3 {
            let (mut up, mut down) = (params.clone(), params.clone());
            up[c] += eps;
            down[c] -= eps;
            let fd = (loss(&up, &x) - loss(&down, &x)) / (2.0 * eps);
            assert!(
                (fd - grads[c]).abs() < 1e-8,
                "slope {c}: {fd} vs {}",
                grads[c]
            );
        }
        assert_eq!(grads[0], 0.0, "other parameters are left alone");
        for i in (0..12).filter(|&i| x[i] != 0.0) {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += eps;
            down[i] -= eps;
            let fd = (loss(&params, &up) - loss(&params, &down)) / (2.0 * eps);
            assert!((fd - dx[i]).abs() < 1e-8, "x[{i}]: {fd} vs {}", dx[i]);
        }
    }

    #[test]
    fn one_slope_scales_the_whole_row() {
        let p = Prelu::new(4, 1, 0.25, 0);
        let mut params = vec![0.0f32];
        p.init(&mut params);
        let mut y = vec![0.0f32; 8];
        let x = [-4.0, 1.0, -8.0, 2.0, 4.0, -1.0, 0.0, -2.0];
        p.forward(&params, &x, 2, &mut y);
        assert_eq!(y, [-1.0, 1.0, -2.0, 2.0, 4.0, -0.25, 0.0, -0.5]);
        let (mut grads, mut acc) = (vec![0.0f32], vec![0.0; 1]);
        p.backward(&params, &x, 2, &[1.0; 8], &mut acc, &mut grads, None);
        assert_eq!(grads, [-15.0]);
    }
}
