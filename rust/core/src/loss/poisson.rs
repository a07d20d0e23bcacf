//! Poisson negative log-likelihood on log-rates, `torch.nn.PoissonNLLLoss(log_input=True,
//! full=False)`: the output x is log λ, and each element's loss is e^x - y·x, its gradient
//! e^x - y. With `log_input` torch's `eps` never enters; without `full` the Stirling term of
//! log y! is left out (it does not depend on the output).

use super::elementwise;
use crate::{Error, Real, Result};

/// Every target must be a count-like value >= 0 (NaN is not): a Poisson rate's observations.
pub(super) fn check_targets<T: Real>(y: &[T]) -> Result<()> {
    match y
        .iter()
        .enumerate()
        .find(|(_, &v)| v.f64().is_nan() || v.f64() < 0.0)
    {
        None => Ok(()),
        Some((i, v)) => Err(Error::value(
            "y",
            format!("poisson targets must be >= 0, got {v:?} at index {i}"),
        )),
    }
}

/// The mean of e^x - y·x over the elements and, into `grad`, (e^x - y)/N.
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
        |x, t| x.exp() - t * x,
        |x, t| x.exp() - t,
    )
}

#[cfg(test)]
mod tests {
    use super::super::finite_difference::{check_gradient, check_weighted, eval};
    use crate::{Error, LossSpec, Targets};

    const OUT: [f64; 6] = [0.5, -1.0, 2.0, 0.0, -0.3, 1.5];
    const Y: [f64; 6] = [1.0, 0.0, 7.0, 2.0, 0.0, 3.0];

    #[test]
    fn value_and_gradient_by_hand() {
        let (got, grad) = eval(&LossSpec::Poisson, &OUT, 3, 2, Targets::Values(&Y));
        let n = OUT.len() as f64;
        let want: f64 = OUT
            .iter()
            .zip(&Y)
            .map(|(x, y)| x.exp() - y * x)
            .sum::<f64>()
            / n;
        assert!((got - want).abs() < 1e-14, "{got} {want}");
        for ((g, x), y) in grad.iter().zip(&OUT).zip(&Y) {
            assert!((g - (x.exp() - y) / n).abs() < 1e-15);
        }
        // x = 0, y = 1: e^0 - 0 = 1, gradient 1 - 1 = 0 (the rate fits the count).
        let (got, grad) = eval(&LossSpec::Poisson, &[0.0f64], 1, 1, Targets::Values(&[1.0]));
        assert_eq!((got, grad), (1.0, vec![0.0]));
    }

    #[test]
    fn f32_matches_f64() {
        let out: Vec<f32> = OUT.iter().map(|&x| x as f32).collect();
        let y: Vec<f32> = Y.iter().map(|&x| x as f32).collect();
        let (got, grad) = eval(&LossSpec::Poisson, &out, 2, 3, Targets::Values(&y));
        let (want, want_grad) = eval(&LossSpec::Poisson, &OUT, 2, 3, Targets::Values(&Y));
        assert!((got - want).abs() < 1e-6);
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((*g as f64 - w).abs() < 1e-6);
        }
    }

    #[test]
    fn sample_weights_scale_each_row() {
        check_weighted(&LossSpec::Poisson, &OUT, 3, 2, Targets::Values(&Y));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(&LossSpec::Poisson, &OUT, 2, 3, Targets::Values(&Y));
    }

    #[test]
    fn negative_targets_are_errors_and_leave_grad() {
        let mut grad = [7.0f64; 2];
        for bad in [-1.0, f64::NAN] {
            let got = super::super::evaluate(
                &LossSpec::Poisson,
                &[0.0, 1.0],
                1,
                2,
                Targets::Values(&[2.0, bad]),
                Some(&mut grad),
            );
            match got {
                Err(Error::Value { arg, message }) => {
                    assert_eq!(arg, "y");
                    assert!(message.contains("index 1"), "{message}");
                }
                other => panic!("{other:?}"), // panic-free: test code
            }
            assert_eq!(grad, [7.0; 2]);
        }
    }
}
