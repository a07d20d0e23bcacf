//! Batch normalization over a batch of feature vectors, as `torch.nn.BatchNorm1d`.
//!
//! Training: per feature f, the batch mean μ_f and biased variance σ²_f over the n rows,
//! x̂ = (x - μ) / √(σ² + eps), y = γ x̂ + β; the running statistics move towards the batch's,
//! running_mean ← (1 - m) running_mean + m μ, running_var ← (1 - m) running_var + m s², with the
//! unbiased variance s² = σ² n/(n-1). Inference: the running statistics take the batch's place.
//!
//! Backward in training goes through the batch statistics too (every row's output depends on
//! every row's input through μ and σ²). With g = ∂L/∂y and r = 1/√(σ² + eps):
//! ∂L/∂γ = Σ_rows g x̂, ∂L/∂β = Σ_rows g, and
//! ∂L/∂x = γ r (g - mean_rows(g) - x̂ mean_rows(g x̂)).
//!
//! Statistics are accumulated in f64 whatever `T` (torch's CPU kernels accumulate in double).

use crate::real::saturating_of;
use crate::Real;

/// Where a batch-norm layer's parameters and running statistics live.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNorm {
    pub features: usize,
    pub eps: f64,
    pub momentum: f64,
    /// Offsets of γ and β (each `features` long) in the parameter buffer.
    pub weight_offset: usize,
    pub bias_offset: usize,
    /// Offset of the running mean in the network's buffer of running statistics; the running
    /// variance follows it.
    pub buffer_offset: usize,
    /// Which batch-norm layer this is (its `num_batches_tracked` counter).
    pub ordinal: usize,
}

impl BatchNorm {
    /// Per feature, the mean and the sum of squared deviations of `n` rows of `x`, into
    /// `stats[..features]` and `stats[features..2 * features]` (two passes, for accuracy).
    pub fn batch_stats<T: Real>(&self, x: &[T], n: usize, stats: &mut [f64]) {
        let f = self.features;
        let (mean, ss) = stats[..2 * f].split_at_mut(f);
        mean.fill(0.0);
        ss.fill(0.0);
        let rows = || x[..n * f].chunks_exact(f);
        for row in rows() {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v.f64());
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        for row in rows() {
            ss.iter_mut()
                .zip(row)
                .zip(&*mean)
                .for_each(|((s, &v), &m)| {
                    let d = v.f64() - m;
                    *s += d * d
                });
        }
    }

    /// y = γ (x - μ)/√(v + eps) + β for `n` rows, with per-feature `mean` and variance `var`.
    fn normalize<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        mean: impl Fn(usize) -> f64,
        var: impl Fn(usize) -> f64,
        y: &mut [T],
    ) {
        let f = self.features;
        let gamma = &params[self.weight_offset..self.weight_offset + f];
        let beta = &params[self.bias_offset..self.bias_offset + f];
        for (xr, yr) in x[..n * f]
            .chunks_exact(f)
            .zip(y[..n * f].chunks_exact_mut(f))
        {
            for j in 0..f {
                let r = 1.0 / (var(j) + self.eps).sqrt();
                let xhat = (xr[j].f64() - mean(j)) * r;
                yr[j] = T::of(xhat * gamma[j].f64() + beta[j].f64());
            }
        }
    }

    /// Training forward: normalizes by the batch's statistics, which are left in `stats`
    /// (2 × features; see `batch_stats`). Needs n ≥ 2 (checked by the network).
    pub fn forward_train<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        stats: &mut [f64],
        y: &mut [T],
    ) {
        self.batch_stats(x, n, stats);
        let f = self.features;
        let (mean, ss) = stats.split_at(f);
        let nf = n as f64;
        self.normalize(params, x, n, |j| mean[j], |j| ss[j] / nf, y);
    }

    /// Inference forward: normalizes by the running statistics `running` (mean, then var).
    pub fn forward_infer<T: Real>(
        &self,
        params: &[T],
        running: &[T],
        x: &[T],
        n: usize,
        y: &mut [T],
    ) {
        let f = self.features;
        let o = self.buffer_offset;
        let (mean, var) = (&running[o..o + f], &running[o + f..o + 2 * f]);
        self.normalize(params, x, n, |j| mean[j].f64(), |j| var[j].f64(), y);
    }

    /// The training backward through the batch statistics: ∂L/∂γ and ∂L/∂β into `grads`, and
    /// ∂L/∂x into `dx` when asked. `stats` is scratch of 4 × features.
    // One argument per term of the chain rule, as `Dense::backward`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Real>(
        &self,
        params: &[T],
        x: &[T],
        n: usize,
        dy: &[T],
        stats: &mut [f64],
        grads: &mut [T],
        dx: Option<&mut [T]>,
    ) {
        let f = self.features;
        self.batch_stats(x, n, stats);
        let (ms, sums) = stats[..4 * f].split_at_mut(2 * f);
        let (mean, ss) = ms.split_at(f);
        // sum_g[j] = Σ_rows g, sum_gx[j] = Σ_rows g x̂: ∂L/∂β and ∂L/∂γ.
        let (sum_g, sum_gx) = sums.split_at_mut(f);
        sum_g.fill(0.0);
        sum_gx.fill(0.0);
        let nf = n as f64;
        let inv_std = |j: usize| 1.0 / (ss[j] / nf + self.eps).sqrt();
        for (xr, gr) in x[..n * f].chunks_exact(f).zip(dy[..n * f].chunks_exact(f)) {
            for j in 0..f {
                let g = gr[j].f64();
                sum_g[j] += g;
                sum_gx[j] += g * (xr[j].f64() - mean[j]) * inv_std(j);
            }
        }
        for j in 0..f {
            grads[self.weight_offset + j] = T::of(sum_gx[j]);
            grads[self.bias_offset + j] = T::of(sum_g[j]);
        }
        let Some(dx) = dx else { return };
        let gamma = &params[self.weight_offset..self.weight_offset + f];
        let rows = x[..n * f]
            .chunks_exact(f)
            .zip(dy[..n * f].chunks_exact(f))
            .zip(dx[..n * f].chunks_exact_mut(f));
        for ((xr, gr), dr) in rows {
            for j in 0..f {
                let r = inv_std(j);
                let xhat = (xr[j].f64() - mean[j]) * r;
                let d = gr[j].f64() - sum_g[j] / nf - xhat * sum_gx[j] / nf;
                dr[j] = T::of(gamma[j].f64() * r * d);
            }
        }
    }

    /// Moves the running statistics towards the batch's (`stats` from `batch_stats` of `n`
    /// rows), as torch: momentum times the batch value plus (1 - momentum) times the old one,
    /// the variance unbiased. A value beyond `T`'s range saturates at its largest finite value
    /// (torch would store infinity): the statistics stay finite, so a saved network loads.
    pub fn update_running<T: Real>(&self, stats: &[f64], n: usize, running: &mut [T]) {
        let f = self.features;
        let (mean, ss) = stats[..2 * f].split_at(f);
        let o = self.buffer_offset;
        let m = self.momentum;
        let unbiased = (n as f64 - 1.0).max(1.0);
        for j in 0..f {
            let rm = &mut running[o + j];
            *rm = saturating_of(m * mean[j] + (1.0 - m) * rm.f64());
            let rv = &mut running[o + f + j];
            *rv = saturating_of(m * (ss[j] / unbiased) + (1.0 - m) * rv.f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(f: usize) -> BatchNorm {
        BatchNorm {
            features: f,
            eps: 1e-5,
            momentum: 0.1,
            weight_offset: 0,
            bias_offset: f,
            buffer_offset: 0,
            ordinal: 0,
        }
    }

    fn sample(n: usize, f: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let x: Vec<f64> = (0..n * f)
            .map(|i| ((i * 37 + 11) % 23) as f64 / 7.0 - 1.3)
            .collect();
        let params: Vec<f64> = (0..2 * f).map(|i| 0.7 + 0.3 * i as f64).collect();
        // A fixed upstream gradient, so that L = Σ g ⊙ y has a non-trivial backward.
        let g: Vec<f64> = (0..n * f)
            .map(|i| ((i * 13 + 5) % 11) as f64 / 5.0 - 1.0)
            .collect();
        (x, params, g)
    }

    fn objective(l: &BatchNorm, params: &[f64], x: &[f64], n: usize, g: &[f64]) -> f64 {
        let mut y = vec![0.0; x.len()];
        let mut stats = vec![0.0; 2 * l.features];
        l.forward_train(params, x, n, &mut stats, &mut y);
        y.iter().zip(g).map(|(a, b)| a * b).sum()
    }

    #[test]
    fn training_output_is_normalized() {
        let (n, f) = (9, 3);
        let l = layer(f);
        let (x, _, _) = sample(n, f);
        let params: Vec<f64> = [vec![1.0; f], vec![0.0; f]].concat();
        let mut y = vec![0.0; n * f];
        let mut stats = vec![0.0; 2 * f];
        l.forward_train(&params, &x, n, &mut stats, &mut y);
        for j in 0..f {
            let col: Vec<f64> = (0..n).map(|r| y[r * f + j]).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            assert!(mean.abs() < 1e-12);
            let expect = stats[f + j] / n as f64 / (stats[f + j] / n as f64 + 1e-5);
            assert!((var - expect).abs() < 1e-12);
        }
    }

    #[test]
    fn backward_matches_central_differences() {
        let (n, f) = (7, 4);
        let l = layer(f);
        let (x, params, g) = sample(n, f);
        let mut grads = vec![0.0; 2 * f];
        let mut dx = vec![0.0; n * f];
        let mut scratch = vec![0.0; 4 * f];
        l.backward(&params, &x, n, &g, &mut scratch, &mut grads, Some(&mut dx));
        let eps = 1e-6;
        for i in 0..n * f {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let fd = (objective(&l, &params, &xp, n, &g) - objective(&l, &params, &xm, n, &g))
                / (2.0 * eps);
            assert!((fd - dx[i]).abs() < 1e-7, "dx[{i}]: {fd} vs {}", dx[i]);
        }
        for i in 0..2 * f {
            let (mut pp, mut pm) = (params.clone(), params.clone());
            pp[i] += eps;
            pm[i] -= eps;
            let fd = (objective(&l, &pp, &x, n, &g) - objective(&l, &pm, &x, n, &g)) / (2.0 * eps);
            assert!(
                (fd - grads[i]).abs() < 1e-7,
                "param {i}: {fd} vs {}",
                grads[i]
            );
        }
    }

    #[test]
    fn running_statistics_of_huge_inputs_saturate_instead_of_overflowing() {
        // Inputs of ±1e20: their variance, 1e40, is beyond f32's range.
        let (n, f) = (4, 1);
        let l = layer(f);
        let x = [1e20f32, -1e20, 1e20, -1e20];
        let mut stats = vec![0.0; 2 * f];
        l.batch_stats(&x, n, &mut stats);
        let mut running = vec![0.0f32, 1.0];
        l.update_running(&stats, n, &mut running);
        assert_eq!(running, [0.0, f32::MAX]);
        l.update_running(&stats, n, &mut running);
        assert_eq!(running, [0.0, f32::MAX]);
    }

    #[test]
    fn running_statistics_follow_torch() {
        let (n, f) = (5, 2);
        let l = layer(f);
        let x = [1.0f32, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0, 5.0, 50.0];
        let mut stats = vec![0.0; 2 * f];
        l.batch_stats(&x, n, &mut stats);
        let mut running = vec![0.0f32, 0.0, 1.0, 1.0];
        l.update_running(&stats, n, &mut running);
        // mean (3, 30); unbiased variances 2.5 and 250.
        let want = [0.3f32, 3.0, 0.9 + 0.25, 0.9 + 25.0];
        for (a, b) in running.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{running:?}");
        }
        // Inference then uses them: y = (x - rm)/√(rv + eps).
        let params = [1.0f32, 1.0, 0.0, 0.0];
        let mut y = vec![0.0f32; 2];
        l.forward_infer(&params, &running, &x[..2], 1, &mut y);
        assert!((y[0] - (1.0 - 0.3) / (1.15f32 + 1e-5).sqrt()).abs() < 1e-6);
    }
}
