//! Binary cross-entropy on logits, `torch.nn.BCEWithLogitsLoss`: the sigmoid lives here, in the
//! form `max(x, 0) - x·y + ln(1 + e^{-|x|})` that no logit overflows.

use super::elementwise;
use crate::{Error, Real, Result};

/// Every target must be a probability in `[0, 1]` (NaN is not).
pub(super) fn check_targets<T: Real>(y: &[T]) -> Result<()> {
    for (i, &v) in y.iter().enumerate() {
        if !(0.0..=1.0).contains(&v.f64()) {
            return Err(Error::value(
                "y",
                format!("bce_with_logits targets must lie in [0, 1], got {v:?} at index {i}"),
            ));
        }
    }
    Ok(())
}

/// The mean binary cross-entropy of the logits `output` and, into `grad`, (σ(x) - y)/N.
/// With `pos_weight` (one per column of `width`, or one for all), torch's
/// `-(p·y·ln σ(x) + (1-y)·ln(1-σ(x)))` per element, in the form
/// `(1-y)·x + (1 + (p-1)·y)·ln(1 + e^{-x})` that no logit overflows, and gradient
/// `((1 + (p-1)·y)·σ(x) - p·y)/N`.
/// With `weights` (one per row of `width`), Σ_i w_i·l_i / n instead: see `elementwise::mean`.
pub(super) fn loss<T: Real>(
    output: &[T],
    y: &[T],
    width: usize,
    pos_weight: Option<&[f64]>,
    weights: Option<&[T]>,
    grad: Option<&mut [T]>,
) -> f64 {
    let Some(pos) = pos_weight else {
        return elementwise::mean(
            output,
            y,
            width,
            weights,
            grad,
            |x, t| x.max(0.0) - x * t + (-x.abs()).exp().ln_1p(),
            |x, t| sigmoid(x) - t,
        );
    };
    // The column of each element, cycling through the row; one pos_weight serves all.
    let column_weight = |i: usize| {
        if pos.len() == 1 {
            pos[0]
        } else {
            pos[i % width]
        }
    };
    let count = output.len() as f64;
    let row_weight = |i: usize| weights.map_or(1.0, |w| w[i / width].f64());
    let mut sum = 0.0;
    for (i, (&x, &t)) in output.iter().zip(y).enumerate() {
        let (x, t, p) = (x.f64(), t.f64(), column_weight(i));
        let log_weight = 1.0 + (p - 1.0) * t;
        let softplus_neg = (-x.abs()).exp().ln_1p() + (-x).max(0.0);
        sum += row_weight(i) * ((1.0 - t) * x + log_weight * softplus_neg);
    }
    if let Some(grad) = grad {
        for (i, (g, (&x, &t))) in grad.iter_mut().zip(output.iter().zip(y)).enumerate() {
            let (x, t, p) = (x.f64(), t.f64(), column_weight(i));
            let log_weight = 1.0 + (p - 1.0) * t;
            *g = T::of(row_weight(i) * (log_weight * sigmoid(x) - p * t) / count);
        }
    }
    sum / count
}

/// 1 / (1 + e^{-x}), from the side where the exponential cannot overflow.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::super::finite_difference::{check_gradient, check_weighted, eval};
    use crate::{Error, LossSpec, Targets};

    const OUT: [f64; 6] = [0.5, -1.0, 2.0, 0.0, -0.3, 3.0];
    const Y: [f64; 6] = [1.0, 0.0, 0.3, 0.5, 1.0, 0.0];

    /// The textbook formula, -(y ln σ(x) + (1-y) ln(1-σ(x))), fine for small logits.
    fn naive(out: &[f64], y: &[f64]) -> (f64, Vec<f64>) {
        let n = out.len() as f64;
        let mut loss = 0.0;
        let mut grad = Vec::new();
        for (x, t) in out.iter().zip(y) {
            let s = 1.0 / (1.0 + (-x).exp());
            loss -= (t * s.ln() + (1.0 - t) * (1.0 - s).ln()) / n;
            grad.push((s - t) / n);
        }
        (loss, grad)
    }

    #[test]
    fn value_and_gradient_by_hand() {
        let (got, grad) = eval(
            &LossSpec::BceWithLogits { pos_weight: None },
            &OUT,
            3,
            2,
            Targets::Values(&Y),
        );
        let (want, want_grad) = naive(&OUT, &Y);
        assert!((got - want).abs() < 1e-14, "{got} {want}");
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((g - w).abs() < 1e-15);
        }
        // x = 0: ln 2 whatever y; gradient (1/2 - y).
        let (got, grad) = eval(
            &LossSpec::BceWithLogits { pos_weight: None },
            &[0.0f64],
            1,
            1,
            Targets::Values(&[0.25]),
        );
        assert!((got - std::f64::consts::LN_2).abs() < 1e-15);
        assert_eq!(grad, vec![0.25]);
    }

    /// torch's pos_weight formula written out, -(p·y·ln σ(x) + (1-y)·ln(1-σ(x))), per column.
    fn naive_pos(out: &[f64], y: &[f64], width: usize, pos: &[f64]) -> (f64, Vec<f64>) {
        let n = out.len() as f64;
        let mut loss = 0.0;
        let mut grad = Vec::new();
        for (i, (x, t)) in out.iter().zip(y).enumerate() {
            let p = pos[if pos.len() == 1 { 0 } else { i % width }];
            let s = 1.0 / (1.0 + (-x).exp());
            loss -= (p * t * s.ln() + (1.0 - t) * (1.0 - s).ln()) / n;
            grad.push((-p * t * (1.0 - s) + (1.0 - t) * s) / n);
        }
        (loss, grad)
    }

    #[test]
    fn pos_weight_as_torch() {
        for pos in [vec![3.0, 0.5], vec![2.0], vec![0.0, 1.0]] {
            let spec = LossSpec::BceWithLogits {
                pos_weight: Some(pos.clone()),
            };
            let (got, grad) = eval(&spec, &OUT, 3, 2, Targets::Values(&Y));
            let (want, want_grad) = naive_pos(&OUT, &Y, 2, &pos);
            assert!((got - want).abs() < 1e-14, "{pos:?}: {got} {want}");
            for (g, w) in grad.iter().zip(&want_grad) {
                assert!((g - w).abs() < 1e-15, "{pos:?}: {g} {w}");
            }
            check_gradient(&spec, &OUT, 3, 2, Targets::Values(&Y));
            check_weighted(&spec, &OUT, 3, 2, Targets::Values(&Y));
        }
        // pos_weight 1 is the plain loss.
        let ones = LossSpec::BceWithLogits {
            pos_weight: Some(vec![1.0, 1.0]),
        };
        let plain = LossSpec::BceWithLogits { pos_weight: None };
        let (a, ga) = eval(&ones, &OUT, 3, 2, Targets::Values(&Y));
        let (b, gb) = eval(&plain, &OUT, 3, 2, Targets::Values(&Y));
        assert!((a - b).abs() < 1e-15);
        ga.iter()
            .zip(&gb)
            .for_each(|(x, y)| assert!((x - y).abs() < 1e-16));
        // Huge logits stay finite.
        let big = [1000.0f64, -1000.0];
        let spec = LossSpec::BceWithLogits {
            pos_weight: Some(vec![4.0]),
        };
        let (got, grad) = eval(&spec, &big, 1, 2, Targets::Values(&[0.0, 1.0]));
        assert!((got - (1000.0 + 4.0 * 1000.0) / 2.0).abs() < 1e-9, "{got}");
        assert_eq!(grad, vec![0.5, -2.0]);
    }

    #[test]
    fn f32_matches_f64() {
        let out: Vec<f32> = OUT.iter().map(|&x| x as f32).collect();
        let y: Vec<f32> = Y.iter().map(|&x| x as f32).collect();
        let (got, grad) = eval(
            &LossSpec::BceWithLogits { pos_weight: None },
            &out,
            2,
            3,
            Targets::Values(&y),
        );
        let out64: Vec<f64> = out.iter().map(|&x| x as f64).collect();
        let y64: Vec<f64> = y.iter().map(|&x| x as f64).collect();
        let (want, want_grad) = naive(&out64, &y64);
        assert!((got - want).abs() < 1e-12);
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((*g as f64 - w).abs() < 1e-7);
        }
    }

    #[test]
    fn sample_weights_scale_each_row() {
        let spec = LossSpec::BceWithLogits { pos_weight: None };
        check_weighted(&spec, &OUT, 3, 2, Targets::Values(&Y));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(
            &LossSpec::BceWithLogits { pos_weight: None },
            &OUT,
            2,
            3,
            Targets::Values(&Y),
        );
    }

    #[test]
    fn huge_logits_stay_finite() {
        let out = [1000.0f64, -1000.0, 1000.0, -1000.0];
        let y = [1.0f64, 0.0, 0.0, 1.0];
        let (got, grad) = eval(
            &LossSpec::BceWithLogits { pos_weight: None },
            &out,
            2,
            2,
            Targets::Values(&y),
        );
        assert!((got - 500.0).abs() < 1e-12, "{got}");
        assert_eq!(grad, vec![0.0, 0.0, 0.25, -0.25]);
        let out32 = [1000.0f32, -1000.0, 1000.0, -1000.0];
        let y32 = [1.0f32, 0.0, 0.0, 1.0];
        let (got, grad) = eval(
            &LossSpec::BceWithLogits { pos_weight: None },
            &out32,
            2,
            2,
            Targets::Values(&y32),
        );
        assert!((got - 500.0).abs() < 1e-12, "{got}");
        assert_eq!(grad, vec![0.0f32, 0.0, 0.25, -0.25]);
    }

    #[test]
    fn targets_outside_unit_interval_are_errors() {
        let mut grad = [7.0f64; 2];
        for bad in [1.5, -0.1, f64::NAN, f64::INFINITY] {
            let got = super::super::evaluate(
                &LossSpec::BceWithLogits { pos_weight: None },
                &[0.0, 1.0],
                1,
                2,
                Targets::Values(&[0.5, bad]),
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
