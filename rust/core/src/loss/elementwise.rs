//! The shared loop of the losses that compare the output with targets element by element
//! (mse, l1, huber, bce_with_logits): the (optionally sample-weighted) mean of `value(x, y)` and,
//! divided by the element count, its derivative `slope(x, y)` with respect to `x`.

use crate::Real;

/// Σ w_i·value(x, y) over the elements divided by their count, accumulated in `f64`, where w_i
/// is the weight of the element's row (1 without `weights`: the plain mean). When `grad` is
/// given it receives `w_i·slope(x, y) / count` per element. Since a sample's loss is the mean
/// over its `width` elements, this is Σ_i w_i·l_i / n. The caller has checked the lengths
/// (`weights`: one per row of `width` elements).
pub(super) fn mean<T: Real>(
    output: &[T],
    y: &[T],
    width: usize,
    weights: Option<&[T]>,
    grad: Option<&mut [T]>,
    value: impl Fn(f64, f64) -> f64,
    slope: impl Fn(f64, f64) -> f64,
) -> f64 {
    match weights {
        // Multiplying by 1.0 is exact: unweighted is the all-ones case, bit for bit.
        None => weighted_mean(output, y, std::iter::repeat(1.0), grad, value, slope),
        Some(w) => {
            let per_element = w
                .iter()
                .flat_map(move |&w| std::iter::repeat(w.f64()).take(width));
            weighted_mean(output, y, per_element, grad, value, slope)
        }
    }
}

fn weighted_mean<T: Real>(
    output: &[T],
    y: &[T],
    weights: impl Iterator<Item = f64> + Clone,
    grad: Option<&mut [T]>,
    value: impl Fn(f64, f64) -> f64,
    slope: impl Fn(f64, f64) -> f64,
) -> f64 {
    let count = output.len() as f64;
    let sum: f64 = output
        .iter()
        .zip(y)
        .zip(weights.clone())
        .map(|((&x, &t), w)| w * value(x.f64(), t.f64()))
        .sum();
    if let Some(grad) = grad {
        for (((g, &x), &t), w) in grad.iter_mut().zip(output).zip(y).zip(weights) {
            *g = T::of(w * slope(x.f64(), t.f64()) / count);
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
