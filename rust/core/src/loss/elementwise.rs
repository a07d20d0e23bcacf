//! The shared loop of the losses that compare the output with targets element by element
//! (mse, l1, huber, bce_with_logits): the mean of `value(x, y)` and, divided by the element
//! count, its derivative `slope(x, y)` with respect to `x`.

use crate::Real;

/// The mean of `value(x, y)` over the elements, accumulated in `f64`; when `grad` is given it
/// receives `slope(x, y) / count` per element. The caller has checked that the lengths match.
pub(super) fn mean<T: Real>(
    output: &[T],
    y: &[T],
    grad: Option<&mut [T]>,
    value: impl Fn(f64, f64) -> f64,
    slope: impl Fn(f64, f64) -> f64,
) -> f64 {
    let count = output.len() as f64;
    let sum: f64 = output
        .iter()
        .zip(y)
        .map(|(&x, &t)| value(x.f64(), t.f64()))
        .sum();
    if let Some(grad) = grad {
        for ((g, &x), &t) in grad.iter_mut().zip(output).zip(y) {
            *g = T::of(slope(x.f64(), t.f64()) / count);
        }
    }
    sum / count
}

/// The sign of `d`, with sign(0) = 0 as torch's `sign` (NaN stays NaN).
pub(super) fn sign(d: f64) -> f64 {
    if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else {
        d * 0.0
    }
}
