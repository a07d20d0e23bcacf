//! Losses, mean-reduced as `torch.nn`'s: each gives its value and its gradient with respect to
//! the network's output.
//!
//! The value is accumulated in `f64` whatever the element type; the gradient is computed per
//! element in `f64` and rounded once to `T`. Targets are checked in full before anything is
//! computed, so a rejected call leaves `grad` untouched.

mod bce_with_logits;
mod cross_entropy;
mod elementwise;
mod huber;
mod l1;
mod mse;
mod poisson;

use crate::{Error, LossSpec, Real, Result};

/// What the output is compared with: class labels (cross_entropy) or values of the output's shape.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a, T> {
    /// One class index per sample, in `0..width`.
    Labels(&'a [i64]),
    /// One value per output element, row-major `n × width`.
    Values(&'a [T]),
}

impl<'a, T> Targets<'a, T> {
    /// The targets of rows `start..end` (for values, `width` per row).
    pub fn rows(self, start: usize, end: usize, width: usize) -> Self {
        match self {
            Targets::Labels(l) => Targets::Labels(&l[start..end]),
            Targets::Values(v) => Targets::Values(&v[start * width..end * width]),
        }
    }
}

/// The mean loss of `output` (`n × width`, row-major) against `targets`.
///
/// When `grad` is given (length `n × width`), it receives ∂L/∂output of the mean loss.
/// Targets that do not fit the loss or the output (wrong kind, length, label out of range)
/// are an error naming `y`, and `grad` is then left unspecified.
pub fn evaluate<T: Real>(
    spec: &LossSpec,
    output: &[T],
    n: usize,
    width: usize,
    targets: Targets<'_, T>,
    grad: Option<&mut [T]>,
) -> Result<f64> {
    evaluate_weighted(spec, output, n, width, targets, None, grad)
}

/// The loss of `output` against `targets` with per-sample weights, Keras's `sample_weight`:
/// Σ_i w_i·l_i / n, where l_i is sample i's loss (the mean over its output elements for the
/// element-wise losses, its smoothed cross-entropy for cross_entropy) and n the number of
/// samples ("sum over batch size": zero weights still count in n). `None` is the plain mean,
/// as [`evaluate`]; all-ones weights give the same value and gradient bit for bit.
///
/// `grad` receives the gradient of that weighted loss. Bad weights (see [`check_weights`])
/// are an error naming `sample_weight`, checked before anything is written.
pub fn evaluate_weighted<T: Real>(
    spec: &LossSpec,
    output: &[T],
    n: usize,
    width: usize,
    targets: Targets<'_, T>,
    weights: Option<&[T]>,
    grad: Option<&mut [T]>,
) -> Result<f64> {
    let len = element_count("output", n, width)?;
    check_len("output", len, output.len(), n, width)?;
    if let Some(g) = grad.as_deref() {
        check_len("grad", len, g.len(), n, width)?;
    }
    if let Some(w) = weights {
        check_weights(w, n)?;
    }
    check_spec(spec, width)?;
    match *spec {
        LossSpec::Mse => {
            let y = values(spec, targets, n, width)?;
            Ok(mse::loss(output, y, width, weights, grad))
        }
        LossSpec::L1 => {
            let y = values(spec, targets, n, width)?;
            Ok(l1::loss(output, y, width, weights, grad))
        }
        LossSpec::Huber { delta } => {
            let y = values(spec, targets, n, width)?;
            Ok(huber::loss(output, y, width, delta, weights, grad))
        }
        LossSpec::BceWithLogits { ref pos_weight } => {
            let y = values(spec, targets, n, width)?;
            bce_with_logits::check_targets(y)?;
            let pos_weight = pos_weight.as_deref();
            Ok(bce_with_logits::loss(
                output, y, width, pos_weight, weights, grad,
            ))
        }
        LossSpec::Poisson => {
            let y = values(spec, targets, n, width)?;
            poisson::check_targets(y)?;
            Ok(poisson::loss(output, y, width, weights, grad))
        }
        LossSpec::CrossEntropy {
            label_smoothing,
            ref weight,
        } => {
            let labels = labels(targets, n, width)?;
            Ok(cross_entropy::loss(
                output,
                width,
                labels,
                label_smoothing,
                weight.as_deref(),
                weights,
                grad,
            ))
        }
    }
}

/// Checks the loss's own values against an output of `width` columns: cross_entropy's class
/// `weight` one per class, bce_with_logits's `pos_weight` one per output (or one for all),
/// each finite and >= 0. An error naming the weight otherwise.
pub fn check_spec(spec: &LossSpec, width: usize) -> Result<()> {
    let (arg, given, per) = match spec {
        LossSpec::CrossEntropy {
            weight: Some(w), ..
        } => ("weight", w, "class"),
        LossSpec::BceWithLogits {
            pos_weight: Some(w),
        } => ("pos_weight", w, "output"),
        _ => return Ok(()),
    };
    let fits = given.len() == width || (arg == "pos_weight" && given.len() == 1);
    if !fits {
        return Err(Error::value(
            arg,
            format!(
                "expected one value per {per} ({width} for the network's {width} outputs), \
                 got {}",
                given.len()
            ),
        ));
    }
    match given
        .iter()
        .enumerate()
        .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
    {
        None => Ok(()),
        Some((i, w)) => Err(Error::value(
            arg,
            format!("weights must be finite and >= 0, got {w} at index {i}"),
        )),
    }
}

/// What the mean loss of `n` samples with these targets divides by: the sum of the targets'
/// class weights for cross_entropy with class weights (torch's weighted mean), else `n`.
///
/// A batch split into shares (threads, ranks) whose shares' losses are L_k = S_k / D_k
/// recombines exactly as Σ_k L_k·(D_k / D), with D = Σ_k D_k: a share's part of the batch is
/// its part of this divisor, not of the samples. The targets must have been checked.
pub fn divisor<T>(spec: &LossSpec, targets: Targets<'_, T>, n: usize) -> f64 {
    match (spec, targets) {
        (LossSpec::CrossEntropy { weight, .. }, Targets::Labels(labels)) => {
            cross_entropy::label_weight_sum(labels, weight.as_deref())
        }
        _ => n as f64,
    }
}

/// What the loss of `n` samples with per-sample `weights` divides by under Keras's reduction
/// "mean_with_sample_weight" (scikit-learn's weighted mean): the sum of the weights, each
/// times its target's class weight for cross_entropy with class weights, so that all-ones
/// weights give [`divisor`]. Without weights, [`divisor`]. Weights and targets must have
/// been checked.
///
/// The loss [`evaluate_weighted`] computes is S / `divisor`; the weighted mean is S / this, so
/// a share's loss times its `divisor` is its part of the sum S, and shares (threads, ranks,
/// accumulated batches) recombine as Σ_k S_k / Σ_k D_k.
pub fn weighted_divisor<T: Real>(
    spec: &LossSpec,
    targets: Targets<'_, T>,
    weights: Option<&[T]>,
    n: usize,
) -> f64 {
    let Some(weights) = weights else {
        return divisor(spec, targets, n);
    };
    match (spec, targets) {
        (
            LossSpec::CrossEntropy {
                weight: Some(class_weight),
                ..
            },
            Targets::Labels(labels),
        ) => cross_entropy::weighted_label_weight_sum(labels, class_weight, weights),
        _ => weights.iter().map(|w| w.f64()).sum(),
    }
}

/// Whether a batch's divisor (see [`divisor`]) depends on its targets rather than its size
/// alone: then a share's part of a step is only known once every share's divisor is.
pub fn divisor_depends_on_targets(spec: &LossSpec) -> bool {
    matches!(
        spec,
        LossSpec::CrossEntropy {
            weight: Some(_),
            ..
        }
    )
}

/// Per-sample weights must be one per sample, finite and >= 0: else an error naming
/// `sample_weight` (a shape error for the length, a value error for the values).
pub fn check_weights<T: Real>(weights: &[T], n: usize) -> Result<()> {
    if weights.len() != n {
        return Err(Error::shape(
            "sample_weight",
            format!("{n} weights (one per sample)"),
            format!("{} weights", weights.len()),
        ));
    }
    crate::real::check_finite(weights, "sample_weight")?;
    match weights.iter().enumerate().find(|(_, &w)| w < T::zero()) {
        None => Ok(()),
        Some((i, w)) => Err(Error::value(
            "sample_weight",
            format!("weights must be >= 0, got {w:?} at index {i}"),
        )),
    }
}

/// Checks, without computing anything, that `targets` fit the loss and an output of
/// `n × width`: the kind of targets, their length, the labels' range (cross_entropy), the
/// values' range (bce_with_logits). The same errors as [`evaluate`]'s, naming `y`.
pub fn check_targets<T: Real>(
    spec: &LossSpec,
    targets: Targets<'_, T>,
    n: usize,
    width: usize,
) -> Result<()> {
    check_spec(spec, width)?;
    match *spec {
        LossSpec::CrossEntropy { .. } => labels(targets, n, width).map(drop),
        LossSpec::BceWithLogits { .. } => {
            values(spec, targets, n, width).and_then(bce_with_logits::check_targets)
        }
        LossSpec::Poisson => values(spec, targets, n, width).and_then(poisson::check_targets),
        LossSpec::Mse | LossSpec::L1 | LossSpec::Huber { .. } => {
            values(spec, targets, n, width).map(drop)
        }
    }
}

/// The loss's name as the Python API spells it.
pub fn name(spec: &LossSpec) -> &'static str {
    match spec {
        LossSpec::Mse => "mse",
        LossSpec::L1 => "l1",
        LossSpec::Huber { .. } => "huber",
        LossSpec::CrossEntropy { .. } => "cross_entropy",
        LossSpec::BceWithLogits { .. } => "bce_with_logits",
        LossSpec::Poisson => "poisson",
    }
}

/// Whether the loss takes integer class labels (`Targets::Labels`) rather than values.
pub fn takes_labels(spec: &LossSpec) -> bool {
    matches!(spec, LossSpec::CrossEntropy { .. })
}

fn check_len(arg: &str, expected: usize, got: usize, n: usize, width: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::shape(
            arg,
            format!("{expected} elements ({n} × {width})"),
            format!("{got} elements"),
        ))
    }
}

/// The value targets of a loss that takes them, checked against the output's length.
fn values<'a, T: Real>(
    spec: &LossSpec,
    targets: Targets<'a, T>,
    n: usize,
    width: usize,
) -> Result<&'a [T]> {
    match targets {
        Targets::Values(y) => {
            check_len("y", element_count("y", n, width)?, y.len(), n, width)?;
            crate::real::check_finite_rows(y, width, "y")?;
            Ok(y)
        }
        Targets::Labels(_) => Err(Error::value(
            "y",
            format!(
                "{} expects float targets of the output's shape, got integer class labels",
                name(spec)
            ),
        )),
    }
}

/// The class labels of cross_entropy: one per sample, each in `0..width`.
fn labels<'a, T>(targets: Targets<'a, T>, n: usize, width: usize) -> Result<&'a [i64]> {
    match targets {
        Targets::Labels(labels) if labels.len() == n => {
            cross_entropy::check_labels(labels, width)?;
            Ok(labels)
        }
        Targets::Labels(labels) => Err(Error::shape(
            "y",
            format!("{n} labels (one per sample)"),
            format!("{} labels", labels.len()),
        )),
        Targets::Values(_) => Err(Error::value(
            "y",
            "cross_entropy expects integer class labels, one per sample, got float values",
        )),
    }
}

/// `n × width`, or a shape error naming `arg` if it overflows.
fn element_count(arg: &str, n: usize, width: usize) -> Result<usize> {
    n.checked_mul(width)
        .ok_or_else(|| Error::shape(arg, "n × width to fit in memory", format!("{n} × {width}")))
}

#[cfg(test)]
mod finite_difference;

#[cfg(test)]
mod tests {
    use super::*;

    fn value_specs() -> [LossSpec; 4] {
        [
            LossSpec::Mse,
            LossSpec::L1,
            LossSpec::Huber { delta: 1.0 },
            LossSpec::BceWithLogits { pos_weight: None },
        ]
    }

    #[test]
    fn wrong_kind_of_targets_is_a_value_error() {
        let out = [0.1f64, 0.2, 0.3, 0.4];
        for spec in value_specs() {
            let got = evaluate(&spec, &out, 2, 2, Targets::Labels(&[0, 1]), None);
            assert!(
                matches!(&got, Err(Error::Value { arg, message }) if arg == "y" && message.contains(name(&spec))),
                "{got:?}"
            );
        }
        let spec = LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: None,
        };
        let got = evaluate(&spec, &out, 2, 2, Targets::Values(&out), None);
        assert!(
            matches!(&got, Err(Error::Value { arg, .. }) if arg == "y"),
            "{got:?}"
        );
    }

    #[test]
    fn wrong_lengths_are_shape_errors() {
        let out = [0.1f32, 0.2, 0.3, 0.4];
        let ce = LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: None,
        };
        let shape_arg = |r: Result<f64>| match r {
            Err(Error::Shape { arg, .. }) => arg,
            other => panic!("{other:?}"), // panic-free: test code
        };
        for spec in value_specs() {
            assert_eq!(
                shape_arg(evaluate(&spec, &out, 2, 3, Targets::Values(&out), None)),
                "output"
            );
            assert_eq!(
                shape_arg(evaluate(
                    &spec,
                    &out,
                    2,
                    2,
                    Targets::Values(&out[..3]),
                    None
                )),
                "y"
            );
            let mut short = [0.0f32; 3];
            let got = evaluate(&spec, &out, 2, 2, Targets::Values(&out), Some(&mut short));
            assert_eq!(shape_arg(got), "grad");
        }
        assert_eq!(
            shape_arg(evaluate(&ce, &out, 2, 2, Targets::Labels(&[0]), None)),
            "y"
        );
        assert_eq!(
            shape_arg(evaluate(&ce, &out, 1, 2, Targets::Labels(&[0]), None)),
            "output"
        );
        assert_eq!(
            shape_arg(evaluate(
                &ce,
                &out,
                usize::MAX,
                2,
                Targets::Labels(&[0]),
                None
            )),
            "output"
        );
    }

    #[test]
    fn check_targets_agrees_with_evaluate() {
        let out = [0.1f64, 0.2, 0.3, 0.4];
        let ce = LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: None,
        };
        let cases: [(&LossSpec, Targets<'_, f64>); 8] = [
            (&ce, Targets::Labels(&[0, 1])),
            (&ce, Targets::Labels(&[0, 2])),
            (&ce, Targets::Labels(&[0])),
            (&ce, Targets::Values(&out)),
            (&LossSpec::Mse, Targets::Values(&out)),
            (&LossSpec::Mse, Targets::Values(&out[..1])),
            (
                &LossSpec::BceWithLogits { pos_weight: None },
                Targets::Values(&[0.0, 1.0, 0.5, 2.0]),
            ),
            (&LossSpec::L1, Targets::Labels(&[0, 1])),
        ];
        for (spec, targets) in cases {
            let checked = check_targets(spec, targets, 2, 2);
            let evaluated = evaluate(spec, &out, 2, 2, targets, None);
            assert_eq!(checked.err(), evaluated.err(), "{spec:?} {targets:?}");
        }
        assert!(check_targets(&LossSpec::Mse, Targets::Values(&out), usize::MAX, 2).is_err());
    }

    #[test]
    fn bad_weights_are_errors_naming_sample_weight_and_leave_grad() {
        let out = [0.1f64, 0.2, 0.3, 0.4];
        let mut grad = [7.0f64; 4];
        let cases: [(&[f64], &str); 5] = [
            (&[1.0], "2 weights"),
            (&[1.0, 1.0, 1.0], "2 weights"),
            (&[1.0, -0.5], "-0.5 at index 1"),
            (&[f64::NAN, 1.0], "NaN or infinity"),
            (&[1.0, f64::INFINITY], "NaN or infinity"),
        ];
        for (w, word) in cases {
            let got = evaluate_weighted(
                &LossSpec::Mse,
                &out,
                2,
                2,
                Targets::Values(&out),
                Some(w),
                Some(&mut grad),
            );
            let err = got.expect_err("bad weights");
            assert!(err.to_string().starts_with("sample_weight: "), "{err}");
            assert!(err.to_string().contains(word), "{err}");
            assert_eq!(grad, [7.0; 4], "a rejected call changes nothing");
        }
        assert!(check_weights(&[0.0f32, 3.0], 2).is_ok());
        assert!(check_weights(&[-0.0f32, 3.0], 2).is_ok());
    }

    #[test]
    fn loss_weights_are_checked_against_the_outputs() {
        let ce = |w: Vec<f64>| LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: Some(w),
        };
        let bce = |w: Vec<f64>| LossSpec::BceWithLogits {
            pos_weight: Some(w),
        };
        assert!(check_spec(&ce(vec![1.0, 2.0, 0.0]), 3).is_ok());
        assert!(check_spec(&bce(vec![2.0]), 3).is_ok());
        assert!(check_spec(&bce(vec![2.0, 1.0, 1.0]), 3).is_ok());
        let cases = [
            (
                ce(vec![1.0, 2.0]),
                "weight: expected one value per class (3 for",
            ),
            (ce(vec![1.0]), "got 1"),
            (ce(vec![1.0, -1.0, 1.0]), "got -1 at index 1"),
            (ce(vec![1.0, 1.0, f64::NAN]), "got NaN at index 2"),
            (
                bce(vec![1.0, 2.0]),
                "pos_weight: expected one value per output",
            ),
            (bce(vec![f64::INFINITY]), "finite"),
        ];
        for (spec, words) in cases {
            let err = check_spec(&spec, 3).expect_err("bad weights");
            assert!(err.to_string().contains(words), "{err}");
            let out = [0.0f64; 6];
            let targets = match spec {
                LossSpec::CrossEntropy { .. } => Targets::Labels(&[0, 1]),
                _ => Targets::Values(&out),
            };
            let mut grad = [7.0f64; 6];
            let got = evaluate(&spec, &out, 2, 3, targets, Some(&mut grad));
            assert_eq!(got.err(), Some(err.clone()));
            assert_eq!(check_targets(&spec, targets, 2, 3).err(), Some(err));
            assert_eq!(grad, [7.0; 6], "a rejected call changes nothing");
        }
    }

    #[test]
    fn shares_recombine_by_their_part_of_the_divisor() {
        let out = [0.5f64, -1.0, 2.0, 0.1, -0.3, 0.0, 0.7, 1.2, -0.8, 0.4];
        let labels = [1i64, 0, 1, 1, 0];
        let spec = LossSpec::CrossEntropy {
            label_smoothing: 0.1,
            weight: Some(vec![3.0, 0.5]),
        };
        let t = Targets::<f64>::Labels(&labels);
        assert_eq!(divisor(&spec, t, 5), 3.0 * 2.0 + 0.5 * 3.0);
        assert_eq!(
            divisor(&LossSpec::Mse, Targets::<f64>::Values(&out), 5),
            5.0
        );
        assert!(divisor_depends_on_targets(&spec));
        assert!(!divisor_depends_on_targets(&LossSpec::Mse));
        // panic-free: test code
        let whole = evaluate(&spec, &out, 5, 2, t, None).unwrap();
        let mut combined = 0.0;
        for (a, b) in [(0, 2), (2, 5)] {
            let share = evaluate(&spec, &out[2 * a..2 * b], b - a, 2, t.rows(a, b, 2), None);
            // panic-free: test code
            combined += share.unwrap() * divisor(&spec, t.rows(a, b, 2), b - a) / 7.5;
        }
        assert!((whole - combined).abs() < 1e-15, "{whole} {combined}");
    }

    #[test]
    fn the_weighted_divisor_sums_the_weights_times_the_class_weights() {
        let labels = [1i64, 0, 1];
        let w = [2.0f64, 0.5, 0.0];
        let t = Targets::<f64>::Labels(&labels);
        let ce = LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: Some(vec![3.0, 0.25]),
        };
        assert_eq!(
            weighted_divisor(&ce, t, Some(&w), 3),
            2.0 * 0.25 + 0.5 * 3.0
        );
        assert_eq!(weighted_divisor(&ce, t, None, 3), divisor(&ce, t, 3));
        assert_eq!(
            weighted_divisor(&ce, t, Some(&[1.0; 3]), 3),
            divisor(&ce, t, 3)
        );
        let y = Targets::<f64>::Values(&[0.0; 3]);
        assert_eq!(weighted_divisor(&LossSpec::Mse, y, Some(&w), 3), 2.5);
        assert_eq!(weighted_divisor(&LossSpec::Mse, y, None, 3), 3.0);
    }

    #[test]
    fn names_and_kinds() {
        assert_eq!(name(&LossSpec::Huber { delta: 2.0 }), "huber");
        assert!(takes_labels(&LossSpec::CrossEntropy {
            label_smoothing: 0.1,
            weight: None,
        }));
        assert!(!takes_labels(&LossSpec::Mse));
    }
}
