//! Mean absolute error, `torch.nn.L1Loss`: mean of |x - y|, gradient sign(x - y)/N, sign(0) = 0.

use super::elementwise::{self, sign};
use crate::Real;

/// The mean of |output - y| and, into `grad`, sign(output - y)/N.
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
        |x, t| (x - t).abs(),
        |x, t| sign(x - t),
    )
}

#[cfg(test)]
mod tests {
    use super::super::finite_difference::{check_gradient, check_weighted, eval};
    use crate::{LossSpec, Targets};

    #[test]
    fn value_and_gradient_by_hand() {
        let out = [1.0f64, -2.0, 0.5, 3.0];
        let y = [0.0f64, -1.0, 0.5, 1.0];
        let (got, grad) = eval(&LossSpec::L1, &out, 1, 4, Targets::Values(&y));
        assert!((got - (1.0 + 1.0 + 0.0 + 2.0) / 4.0).abs() < 1e-15);
        assert_eq!(grad, vec![0.25, -0.25, 0.0, 0.25]);
    }

    #[test]
    fn f32_value_and_gradient() {
        let out = [1.0f32, -2.0, 0.5, 3.0];
        let y = [0.0f32, -1.0, 0.5, 1.0];
        let (got, grad) = eval(&LossSpec::L1, &out, 2, 2, Targets::Values(&y));
        assert!((got - 1.0).abs() < 1e-12);
        assert_eq!(grad, vec![0.25f32, -0.25, 0.0, 0.25]);
    }

    #[test]
    fn sample_weights_scale_each_row() {
        let out = [0.3, -1.2, 2.5, 0.0, 0.9, -0.4, 1.1, 0.2];
        let y = [0.1, 0.2, -0.3, 1.5, 0.7, 0.0, 0.9, -1.0];
        check_weighted(&LossSpec::L1, &out, 4, 2, Targets::Values(&y));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Away from the kink at x = y, where the finite difference is not the subgradient.
        let out = [0.3, -1.2, 2.5, 0.0, 0.9, -0.4];
        let y = [0.1, 0.2, -0.3, 1.5, 0.7, 0.0];
        check_gradient(&LossSpec::L1, &out, 2, 3, Targets::Values(&y));
    }
}
