//! Mean squared error, `torch.nn.MSELoss`: mean of (x - y)², gradient 2(x - y)/N.

use super::elementwise;
use crate::Real;

/// The mean of (output - y)² and, into `grad`, 2(output - y)/N.
/// With `weights` (one per row of `width`), Σ_i w_i·l_i / n instead: see `elementwise::mean`.
pub(super) fn loss<T: Real>(
    output: &[T],
    y: &[T],
    width: usize,
    weights: Option<&[T]>,
    grad: Option<&mut [T]>,
) -> f64 {
    elementwise::mean(
        output,
        y,
        width,
        weights,
        grad,
        |x, t| (x - t) * (x - t),
        |x, t| 2.0 * (x - t),
    )
}

#[cfg(test)]
mod tests {
    use super::super::finite_difference::{check_gradient, check_weighted, eval};
    use crate::{LossSpec, Targets};

    #[test]
    fn value_and_gradient_by_hand() {
        let out = [1.0f64, -2.0, 0.5, 3.0, 0.0, 4.0];
        let y = [0.0f64, -1.0, 0.5, 1.0, 2.0, 4.5];
        let d: Vec<f64> = out.iter().zip(&y).map(|(a, b)| a - b).collect();
        let want = d.iter().map(|d| d * d).sum::<f64>() / 6.0;
        let (got, grad) = eval(&LossSpec::Mse, &out, 2, 3, Targets::Values(&y));
        assert!((got - want).abs() < 1e-15);
        for (g, d) in grad.iter().zip(&d) {
            assert!((g - 2.0 * d / 6.0).abs() < 1e-15);
        }
    }

    #[test]
    fn f32_matches_f64() {
        let out = [1.0f32, -2.0, 0.25, 3.5];
        let y = [0.5f32, -1.0, 0.0, 1.0];
        let (got, grad) = eval(&LossSpec::Mse, &out, 2, 2, Targets::Values(&y));
        let want = (0.25 + 1.0 + 0.0625 + 6.25) / 4.0;
        assert!((got - want).abs() < 1e-12);
        assert!((grad[3] - 2.5f32 * 2.0 / 4.0).abs() < 1e-7);
    }

    #[test]
    fn sample_weights_scale_each_row() {
        let out = [0.3, -1.2, 2.5, 0.0, 0.7, -0.4, 1.1, 0.2];
        let y = [0.1, 0.2, -0.3, 1.5, 0.7, 0.0, 0.9, -1.0];
        check_weighted(&LossSpec::Mse, &out, 4, 2, Targets::Values(&y));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let out = [0.3, -1.2, 2.5, 0.0, 0.7, -0.4];
        let y = [0.1, 0.2, -0.3, 1.5, 0.7, 0.0];
        check_gradient(&LossSpec::Mse, &out, 3, 2, Targets::Values(&y));
    }
}
