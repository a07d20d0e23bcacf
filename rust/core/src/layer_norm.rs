//! Layer normalization of each sample over its features, as `torch.nn.LayerNorm(features)`:
//! μ and σ² (biased) of the row, x̂ = (x - μ)/√(σ² + eps), y = γ x̂ + β. The same in training and
//! inference.
//!
//! Backward per row, with g = ∂L/∂y, h = γ g and r = 1/√(σ² + eps) (μ and σ² depend on the whole
//! row): ∂L/∂x = r (h - mean(h) - x̂ mean(h x̂)); over the batch, ∂L/∂γ = Σ_rows g x̂ and
//! ∂L/∂β = Σ_rows g. The row statistics are accumulated in f64 whatever `T`.

use crate::Real;

/// Where a layer-norm layer's parameters live.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNorm {
    pub features: usize,
    pub eps: f64,
    /// Offsets of γ and β (each `features` long) in the parameter buffer.
    pub weight_offset: usize,
    pub bias_offset: usize,
}

impl LayerNorm {
    /// (μ, r = 1/√(σ² + eps)) of one row.
    fn row_stats<T: Real>(&self, row: &[T]) -> (f64, f64) {
        let f = row.len() as f64;
        let mean = row.iter().map(|v| v.f64()).sum::<f64>() / f;
        let var = row
            .iter()
            .map(|v| {
                let d = v.f64() - mean;
                d * d
            })
            .sum::<f64>()
            / f;
        (mean, 1.0 / (var + self.eps).sqrt())
    }

    /// y = γ x̂ + β for `n` rows.
    pub fn forward<T: Real>(&self, params: &[T], x: &[T], n: usize, y: &mut [T]) {
        let f = self.features;
        let gamma = &params[self.weight_offset..self.weight_offset + f];
        let beta = &params[self.bias_offset..self.bias_offset + f];
        for (xr, yr) in x[..n * f]
            .chunks_exact(f)
            .zip(y[..n * f].chunks_exact_mut(f))
        {
            let (mean, r) = self.row_stats(xr);
            for j in 0..f {
                let xhat = (xr[j].f64() - mean) * r;
                yr[j] = T::of(xhat * gamma[j].f64() + beta[j].f64());
            }
        }
    }

    /// ∂L/∂γ and ∂L/∂β into `grads`, accumulated over the `n` rows in `acc` (scratch of
    /// 2 × features), and ∂L/∂x into `dx` when asked.
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
        mut dx: Option<&mut [T]>,
    ) {
        let f = self.features;
        let ff = f as f64;
        let gamma = &params[self.weight_offset..self.weight_offset + f];
        let (sum_gx, sum_g) = acc[..2 * f].split_at_mut(f);
        sum_gx.fill(0.0);
        sum_g.fill(0.0);
        for (i, (xr, gr)) in x[..n * f]
            .chunks_exact(f)
            .zip(dy[..n * f].chunks_exact(f))
            .enumerate()
        {
            let (mean, r) = self.row_stats(xr);
            // mean(h) and mean(h x̂) over the row, h = γ g.
            let (mut mean_h, mut mean_hx) = (0.0, 0.0);
            for j in 0..f {
                let g = gr[j].f64();
                let xhat = (xr[j].f64() - mean) * r;
                sum_g[j] += g;
                sum_gx[j] += g * xhat;
                let h = gamma[j].f64() * g;
                mean_h += h;
                mean_hx += h * xhat;
            }
            let Some(dx) = dx.as_deref_mut() else {
                continue;
            };
            mean_h /= ff;
            mean_hx /= ff;
            let dr = &mut dx[i * f..(i + 1) * f];
            for j in 0..f {
                let xhat = (xr[j].f64() - mean) * r;
                let h = gamma[j].f64() * gr[j].f64();
                dr[j] = T::of(r * (h - mean_h - xhat * mean_hx));
            }
        }
        for j in 0..f {
            grads[self.weight_offset + j] = T::of(sum_gx[j]);
            grads[self.bias_offset + j] = T::of(sum_g[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_matches_central_differences() {
        let (n, f) = (4, 5);
        let l = LayerNorm {
            features: f,
            eps: 1e-5,
            weight_offset: 0,
            bias_offset: f,
        };
        let x: Vec<f64> = (0..n * f)
            .map(|i| ((i * 29 + 3) % 17) as f64 / 6.0 - 1.1)
            .collect();
        let params: Vec<f64> = (0..2 * f).map(|i| 1.2 - 0.2 * i as f64).collect();
        let g: Vec<f64> = (0..n * f)
            .map(|i| ((i * 7 + 2) % 9) as f64 / 4.0 - 1.0)
            .collect();
        let objective = |p: &[f64], x: &[f64]| {
            let mut y = vec![0.0; n * f];
            l.forward(p, x, n, &mut y);
            y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut grads = vec![0.0; 2 * f];
        let mut dx = vec![0.0; n * f];
        let mut acc = vec![0.0; 2 * f];
        l.backward(&params, &x, n, &g, &mut acc, &mut grads, Some(&mut dx));
        let eps = 1e-6;
        for i in 0..n * f {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let fd = (objective(&params, &xp) - objective(&params, &xm)) / (2.0 * eps);
            assert!((fd - dx[i]).abs() < 1e-7, "dx[{i}]: {fd} vs {}", dx[i]);
        }
        for i in 0..2 * f {
            let (mut pp, mut pm) = (params.clone(), params.clone());
            pp[i] += eps;
            pm[i] -= eps;
            let fd = (objective(&pp, &x) - objective(&pm, &x)) / (2.0 * eps);
            assert!(
                (fd - grads[i]).abs() < 1e-7,
                "param {i}: {fd} vs {}",
                grads[i]
            );
        }
    }

    #[test]
    fn rows_are_normalized() {
        let l = LayerNorm {
            features: 3,
            eps: 0.0,
            weight_offset: 0,
            bias_offset: 3,
        };
        let params = [1.0f32, 1.0, 1.0, 0.0, 0.0, 0.0];
        let mut y = [0.0f32; 3];
        l.forward(&params, &[1.0, 2.0, 3.0], 1, &mut y);
        let s = (2.0f32 / 3.0).sqrt();
        for (a, b) in y.iter().zip([-1.0 / s, 0.0, 1.0 / s]) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
