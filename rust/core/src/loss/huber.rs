//! Huber loss, `torch.nn.HuberLoss(delta)`: quadratic for |x - y| <= delta, linear beyond.

use super::elementwise::{self, sign};
use crate::Real;

/// The mean Huber loss and, into `grad`, its derivative / N.
/// With `weights` (one per row of `width`), Σ_i w_i·l_i / n instead: see `elementwise::mean`.
pub(super) fn loss<T: Real>(
    output: &[T],
    y: &[T],
    width: usize,
    delta: f64,
    weights: Option<&[T]>,
    grad: Option<&mut [T]>,
) -> f64 {
    elementwise::mean(
        output,
        y,
        width,
        weights,
        grad,
        |x, t| {
            let d = (x - t).abs();
            if d <= delta {
                0.5 * d * d
            } else {
                delta * (d - 0.5 * delta)
            }
        },
        |x, t| {
            let d = x - t;
            if d.abs() <= delta {
                d
            } else {
                delta * sign(d)
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::finite_difference::{check_gradient, check_weighted, eval};
    use crate::{LossSpec, Targets};

    fn huber(d: f64, delta: f64) -> (f64, f64) {
        if d.abs() <= delta {
            (0.5 * d * d, d)
        } else {
            (delta * (d.abs() - 0.5 * delta), delta * d.signum())
        }
    }

    #[test]
    fn value_and_gradient_by_hand() {
        let out = [1.0f64, -2.0, 0.5, 3.0, 0.0, 4.0];
        let y = [0.0f64, -1.0, 0.25, 1.0, 2.0, 4.5];
        for delta in [1.0, 0.3, 2.0] {
            let spec = LossSpec::Huber { delta };
            let (got, grad) = eval(&spec, &out, 3, 2, Targets::Values(&y));
            let mut want = 0.0;
            for ((g, o), t) in grad.iter().zip(&out).zip(&y) {
                let (l, s) = huber(o - t, delta);
                want += l / 6.0;
                assert!((g - s / 6.0).abs() < 1e-15);
            }
            assert!((got - want).abs() < 1e-14);
        }
        // Hand values, delta = 1: d = 1 (0.5), -1 (0.5), 0.25 (0.03125), 2 (1.5), -2 (1.5), -0.5 (0.125).
        let (got, grad) = eval(
            &LossSpec::Huber { delta: 1.0 },
            &out,
            3,
            2,
            Targets::Values(&y),
        );
        assert!((got - 4.15625 / 6.0).abs() < 1e-15);
        assert!((grad[3] - 1.0 / 6.0).abs() < 1e-15 && (grad[4] + 1.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn f32_value() {
        let out = [1.0f32, -2.0, 0.5, 3.0];
        let y = [0.0f32, -1.0, 0.25, 1.0];
        let (got, grad) = eval(
            &LossSpec::Huber { delta: 1.0 },
            &out,
            2,
            2,
            Targets::Values(&y),
        );
        assert!((got - (0.5 + 0.5 + 0.03125 + 1.5) / 4.0).abs() < 1e-12);
        assert_eq!(grad, vec![0.25f32, -0.25, 0.0625, 0.25]);
    }

    #[test]
    fn sample_weights_scale_each_row() {
        let out = [0.3, -1.2, 2.5, 0.0, 0.9, -0.4, 1.1, 0.2];
        let y = [0.1, 0.2, -0.3, 1.5, 0.7, 0.0, 0.9, -1.0];
        let spec = LossSpec::Huber { delta: 0.5 };
        check_weighted(&spec, &out, 4, 2, Targets::Values(&y));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let out = [0.3, -1.2, 2.5, 0.0, 0.9, -0.4];
        let y = [0.1, 0.2, -0.3, 1.5, 0.7, 0.0];
        for delta in [1.0, 0.5, 3.0] {
            check_gradient(&LossSpec::Huber { delta }, &out, 2, 3, Targets::Values(&y));
        }
    }
}
