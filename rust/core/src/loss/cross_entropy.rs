//! Cross-entropy on class labels, `torch.nn.CrossEntropyLoss(label_smoothing)`: the softmax
//! lives here, computed as a log-sum-exp with the row's maximum subtracted, so that logits of
//! any size give a finite loss and gradient.

use crate::scratch::with_scratch;
use crate::{Error, Real, Result};

/// Every label must name a class: `0 <= label < width`.
pub(super) fn check_labels(labels: &[i64], width: usize) -> Result<()> {
    for (i, &label) in labels.iter().enumerate() {
        let fits = usize::try_from(label).is_ok_and(|c| c < width);
        if !fits {
            // Named inclusively: "0 to 2" for three classes, since "0..3" reads as if 3 were one.
            let classes = match width {
                0 => "none: the network has no outputs".to_string(),
                1 => "only 0 (the network has 1 output)".to_string(),
                _ => format!("0 to {} (the network has {width} outputs)", width - 1),
            };
            return Err(Error::value(
                "y",
                format!("label {label} at index {i} is not a class; the classes are {classes}"),
            ));
        }
    }
    Ok(())
}

/// The class weight of every label (labels checked): what torch's weighted mean divides by,
/// summed. Without class weights every sample counts 1.
pub(super) fn label_weight_sum(labels: &[i64], class_weight: Option<&[f64]>) -> f64 {
    match class_weight {
        None => labels.len() as f64,
        Some(w) => labels.iter().map(|&y| class_weight_of(w, y)).sum(),
    }
}

/// Σ_i s_i·w_{y_i}: the samples' weights s times their targets' class weights w (labels
/// checked, one weight per label).
pub(super) fn weighted_label_weight_sum<T: Real>(
    labels: &[i64],
    class_weight: &[f64],
    weights: &[T],
) -> f64 {
    labels
        .iter()
        .zip(weights)
        .map(|(&y, s)| s.f64() * class_weight_of(class_weight, y))
        .sum()
}

fn class_weight_of(class_weight: &[f64], label: i64) -> f64 {
    usize::try_from(label)
        .ok()
        .and_then(|c| class_weight.get(c))
        .copied()
        .unwrap_or(0.0)
}

/// torch's cross-entropy with class weights w (all 1 without `class_weight`) and label
/// smoothing ε over C classes. Sample i with label y and log-probabilities log p_c has
///
/// `l_i = (1-ε)·w_y·(-log p_y) + (ε/C)·Σ_c w_c·(-log p_c)`
///
/// and the batch's loss is `Σ_i s_i·l_i / D`, where s_i is its sample weight (1 without
/// `weights`) and D = Σ_i w_{y_i} the sum of the targets' class weights (n without class
/// weights: the plain mean). Into `grad`, row i gets
/// `s_i·(p_c·((1-ε)·w_y + (ε/C)·Σ_k w_k) - (1-ε)·w_y·[c = y] - (ε/C)·w_c) / D`, which is
/// `s_i·(p_c - q_c) / n` without class weights. A batch whose D is 0 (every target of class
/// weight 0) has loss 0 and gradient 0, where torch gives NaN (0/0): such a mini-batch
/// teaches nothing, and a NaN would end training as diverged. Labels are checked, lengths
/// match.
pub(super) fn loss<T: Real>(
    output: &[T],
    width: usize,
    labels: &[i64],
    smoothing: f64,
    class_weight: Option<&[f64]>,
    weights: Option<&[T]>,
    grad: Option<&mut [T]>,
) -> f64 {
    if width == 0 {
        // Only an empty batch gets here (a label cannot fit no class): the mean of nothing.
        return f64::NAN;
    }
    let divisor = label_weight_sum(labels, class_weight);
    if class_weight.is_some() && divisor == 0.0 {
        if let Some(g) = grad {
            g.fill(T::zero());
        }
        return 0.0;
    }
    let classes = width as f64;
    let uniform = smoothing / classes;
    let all_weights: f64 = class_weight.map_or(classes, |w| w.iter().sum());
    let rows = output.chunks_exact(width).zip(labels);
    let mut total = 0.0;
    let mut grad_rows = grad.map(|g| g.chunks_exact_mut(width));
    let mut row_weights = weights.map(|w| w.iter());
    // exp(x - max) of a row's values, the sum's terms and, divided by it, each probability: in
    // this thread's scratch, so that a training step allocates nothing for them.
    let scratch = if grad_rows.is_some() { width } else { 0 };
    with_scratch::<f64, _>(scratch, |shifted| {
        for (row, &label) in rows {
            // Multiplying by 1.0 is exact: unweighted is the all-ones case, bit for bit.
            let s = row_weights
                .as_mut()
                .and_then(Iterator::next)
                .map_or(1.0, |w| w.f64());
            let w_label = class_weight.map_or(1.0, |w| class_weight_of(w, label));
            let label = usize::try_from(label).unwrap_or(usize::MAX);
            let (lse, sum) = log_sum_exp(row, shifted);
            let mut at_label = 0.0;
            let mut all = 0.0;
            for (c, &x) in row.iter().enumerate() {
                let neg_log_p = lse - x.f64();
                all += class_weight.map_or(1.0, |w| w[c]) * neg_log_p;
                if c == label {
                    at_label = neg_log_p;
                }
            }
            total += s * ((1.0 - smoothing) * w_label * at_label + uniform * all);
            let Some(g_row) = grad_rows.as_mut().and_then(|rows| rows.next()) else {
                continue;
            };
            let p_scale = (1.0 - smoothing) * w_label + uniform * all_weights;
            for (c, (g, &x)) in g_row.iter_mut().zip(row).enumerate() {
                // exp(x - lse) = exp(x - max) / Σ: one exponential per value, not two.
                let p = match (sum, shifted.get(c)) {
                    (Some(sum), Some(&e)) => e / sum,
                    _ => (x.f64() - lse).exp(),
                };
                let w_c = class_weight.map_or(1.0, |w| w[c]);
                let at = if c == label {
                    (1.0 - smoothing) * w_label
                } else {
                    0.0
                };
                let target = at + uniform * w_c;
                let d = if class_weight.is_some() {
                    p * p_scale - target
                } else {
                    // Unweighted, the smoothed target sums to 1: p - q, as before.
                    p - target
                };
                *g = T::of(s * d / divisor);
            }
        }
    });
    total / divisor
}

/// log Σ exp(x), shifted by the maximum so that no exponential overflows. When `shifted` holds
/// a value per element of the row, also each exp(x - max) into it and their sum Σ exp(x - max);
/// `None` for the sum when `shifted` is shorter, or when the maximum is not finite (no shift
/// helps then; the arithmetic gives torch's inf/NaN).
fn log_sum_exp<T: Real>(row: &[T], shifted: &mut [f64]) -> (f64, Option<f64>) {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x.f64()));
    if !max.is_finite() {
        return (row.iter().map(|&x| x.f64().exp()).sum::<f64>().ln(), None);
    }
    let exps = row.iter().map(|&x| (x.f64() - max).exp());
    let Some(shifted) = shifted.get_mut(..row.len()) else {
        return (max + exps.sum::<f64>().ln(), None);
    };
    shifted.iter_mut().zip(exps).for_each(|(e, v)| *e = v);
    let sum = shifted.iter().sum::<f64>();
    (max + sum.ln(), Some(sum))
}

#[cfg(test)]
mod tests {
    use super::super::finite_difference::{check_gradient, check_weighted, eval};
    use crate::{Error, LossSpec, Targets};

    /// The textbook formula, without the max shift (fine for small logits).
    fn naive(out: &[f64], width: usize, labels: &[i64], eps: f64) -> (f64, Vec<f64>) {
        let n = labels.len() as f64;
        let mut loss = 0.0;
        let mut grad = Vec::new();
        for (row, &y) in out.chunks(width).zip(labels) {
            let z: f64 = row.iter().map(|x| x.exp()).sum();
            let p: Vec<f64> = row.iter().map(|x| x.exp() / z).collect();
            for (c, pc) in p.iter().enumerate() {
                let q = if c as i64 == y { 1.0 - eps } else { 0.0 } + eps / width as f64;
                loss -= q * pc.ln() / n;
                grad.push((pc - q) / n);
            }
        }
        (loss, grad)
    }

    const OUT: [f64; 8] = [0.5, -1.0, 2.0, 0.1, -0.3, 0.0, 0.7, 1.2];

    #[test]
    fn value_and_gradient_by_hand() {
        let labels = [2i64, 0];
        for eps in [0.0, 0.1, 0.5] {
            let spec = LossSpec::CrossEntropy {
                label_smoothing: eps,
                weight: None,
            };
            let (got, grad) = eval(&spec, &OUT, 2, 4, Targets::Labels(&labels));
            let (want, want_grad) = naive(&OUT, 4, &labels, eps);
            assert!((got - want).abs() < 1e-14, "{got} {want}");
            for (g, w) in grad.iter().zip(&want_grad) {
                assert!((g - w).abs() < 1e-15);
            }
        }
        // One sample, two equal logits: -ln(1/2).
        let spec = LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: None,
        };
        let (got, grad) = eval(&spec, &[3.0f64, 3.0], 1, 2, Targets::Labels(&[1]));
        assert!((got - std::f64::consts::LN_2).abs() < 1e-15);
        assert!((grad[0] - 0.5).abs() < 1e-15 && (grad[1] + 0.5).abs() < 1e-15);
    }

    /// torch's weighted mean written out: Σ_i l_i / Σ_i w_{y_i}, with
    /// l_i = -Σ_c q_ic·w_c·log p_ic and q the smoothed target distribution.
    fn naive_weighted(
        out: &[f64],
        width: usize,
        labels: &[i64],
        eps: f64,
        w: &[f64],
    ) -> (f64, Vec<f64>) {
        let divisor: f64 = labels.iter().map(|&y| w[y as usize]).sum();
        let mut loss = 0.0;
        let mut grad = Vec::new();
        for (row, &y) in out.chunks(width).zip(labels) {
            let z: f64 = row.iter().map(|x| x.exp()).sum();
            let p: Vec<f64> = row.iter().map(|x| x.exp() / z).collect();
            let q = |c: usize| if c as i64 == y { 1.0 - eps } else { 0.0 } + eps / width as f64;
            // ∂l/∂z_c = Σ_k q_k·w_k·(p_c - [c = k]) = p_c·Σ_k q_k·w_k - q_c·w_c.
            let qw: f64 = (0..width).map(|k| q(k) * w[k]).sum();
            for (c, pc) in p.iter().enumerate() {
                loss -= q(c) * w[c] * pc.ln() / divisor;
                grad.push((pc * qw - q(c) * w[c]) / divisor);
            }
        }
        (loss, grad)
    }

    fn weighted_spec(eps: f64, w: &[f64]) -> LossSpec {
        LossSpec::CrossEntropy {
            label_smoothing: eps,
            weight: Some(w.to_vec()),
        }
    }

    #[test]
    fn class_weights_as_torch_divide_by_the_targets_weights() {
        let labels = [2i64, 0];
        let w = [0.5, 2.0, 3.0, 0.25];
        for eps in [0.0, 0.1, 0.5] {
            let (got, grad) = eval(
                &weighted_spec(eps, &w),
                &OUT,
                2,
                4,
                Targets::Labels(&labels),
            );
            let (want, want_grad) = naive_weighted(&OUT, 4, &labels, eps, &w);
            assert!((got - want).abs() < 1e-14, "{eps}: {got} {want}");
            for (g, wg) in grad.iter().zip(&want_grad) {
                assert!((g - wg).abs() < 1e-15, "{eps}: {g} {wg}");
            }
            check_gradient(
                &weighted_spec(eps, &w),
                &OUT,
                2,
                4,
                Targets::Labels(&labels),
            );
        }
        // Equal class weights, whatever their size, are the unweighted mean.
        for eps in [0.0, 0.3] {
            let plain = LossSpec::CrossEntropy {
                label_smoothing: eps,
                weight: None,
            };
            let (a, ga) = eval(&plain, &OUT, 4, 2, Targets::Labels(&[1, 0, 1, 1]));
            let (b, gb) = eval(
                &weighted_spec(eps, &[3.0, 3.0]),
                &OUT,
                4,
                2,
                Targets::Labels(&[1, 0, 1, 1]),
            );
            assert!((a - b).abs() < 1e-14);
            ga.iter()
                .zip(&gb)
                .for_each(|(x, y)| assert!((x - y).abs() < 1e-15));
        }
    }

    #[test]
    fn class_weights_with_sample_weights() {
        // Sample weights multiply each sample's term; the divisor stays Σ w_{y_i}.
        let spec = weighted_spec(0.1, &[0.5, 2.0]);
        let labels = [1i64, 0, 1, 1];
        let s = [2.0, 0.0, 1.0, 0.5];
        let mut grad = vec![0.0; 8];
        // panic-free: test code
        let got = super::super::evaluate_weighted(
            &spec,
            &OUT,
            4,
            2,
            Targets::Labels(&labels),
            Some(&s),
            Some(&mut grad),
        )
        .unwrap();
        let (_, unweighted_grad) = eval(&spec, &OUT, 4, 2, Targets::Labels(&labels));
        let divisor = 2.0 + 0.5 + 2.0 + 2.0;
        let mut want = 0.0;
        for i in 0..4 {
            let (li, _) =
                naive_weighted(&OUT[2 * i..2 * i + 2], 2, &labels[i..=i], 0.1, &[0.5, 2.0]);
            // naive_weighted divides row i by its own class weight: undo it.
            want += s[i] * li * [0.5, 2.0][labels[i] as usize] / divisor;
            for c in 0..2 {
                let g = grad[2 * i + c];
                assert!((g - s[i] * unweighted_grad[2 * i + c]).abs() < 1e-15);
            }
        }
        assert!((got - want).abs() < 1e-14, "{got} {want}");
    }

    #[test]
    fn a_batch_of_weight_zero_teaches_nothing() {
        let spec = weighted_spec(0.2, &[0.0, 1.0, 1.0, 1.0]);
        let (got, grad) = eval(&spec, &OUT, 2, 4, Targets::Labels(&[0, 0]));
        assert_eq!(got, 0.0);
        assert!(grad.iter().all(|&g| g == 0.0));
    }

    #[test]
    fn f32_matches_f64() {
        let out32: Vec<f32> = OUT.iter().map(|&x| x as f32).collect();
        let labels = [1i64, 3];
        let spec = LossSpec::CrossEntropy {
            label_smoothing: 0.2,
            weight: None,
        };
        let (got, grad) = eval(&spec, &out32, 2, 4, Targets::Labels(&labels));
        let out64: Vec<f64> = out32.iter().map(|&x| x as f64).collect();
        let (want, want_grad) = naive(&out64, 4, &labels, 0.2);
        assert!((got - want).abs() < 1e-12);
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((*g as f64 - w).abs() < 1e-7);
        }
    }

    #[test]
    fn sample_weights_scale_each_row() {
        for eps in [0.0, 0.1] {
            let spec = LossSpec::CrossEntropy {
                label_smoothing: eps,
                weight: None,
            };
            check_weighted(&spec, &OUT, 4, 2, Targets::Labels(&[1, 0, 1, 1]));
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for eps in [0.0, 0.1] {
            let spec = LossSpec::CrossEntropy {
                label_smoothing: eps,
                weight: None,
            };
            check_gradient(&spec, &OUT, 4, 2, Targets::Labels(&[1, 0, 1, 1]));
            check_gradient(&spec, &OUT, 2, 4, Targets::Labels(&[3, 0]));
        }
    }

    #[test]
    fn huge_logits_stay_finite() {
        let out = [1000.0f64, -1000.0, 0.0, -1000.0, 1000.0, 1000.0];
        let labels = [1i64, 0];
        for eps in [0.0, 0.1] {
            let spec = LossSpec::CrossEntropy {
                label_smoothing: eps,
                weight: None,
            };
            let (got, grad) = eval(&spec, &out, 2, 3, Targets::Labels(&labels));
            assert!(got.is_finite() && grad.iter().all(|g| g.is_finite()));
            let out32: Vec<f32> = out.iter().map(|&x| x as f32).collect();
            let (got32, grad32) = eval(&spec, &out32, 2, 3, Targets::Labels(&labels));
            assert!(got32.is_finite() && grad32.iter().all(|g| g.is_finite()));
            assert!((got32 - got).abs() < 1e-9 * got.abs());
        }
        // Sample 0: -log p_1 = 2000; sample 1: -log p_0 = 2000 + ln 2.
        let spec = LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: None,
        };
        let (got, grad) = eval(&spec, &out, 2, 3, Targets::Labels(&labels));
        assert!((got - (4000.0 + std::f64::consts::LN_2) / 2.0).abs() < 1e-9);
        assert_eq!(grad[0], 0.5);
        assert_eq!(grad[1], -0.5);
    }

    #[test]
    fn labels_out_of_range_are_errors() {
        let spec = LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: None,
        };
        let mut grad = [7.0f64; 8];
        for bad in [4i64, -1, -100, i64::MAX, i64::MIN] {
            let err = super::super::evaluate(
                &spec,
                &OUT,
                2,
                4,
                Targets::Labels(&[0, bad]),
                Some(&mut grad),
            );
            match err {
                Err(Error::Value { arg, message }) => {
                    assert_eq!(arg, "y");
                    assert!(
                        message.contains(&format!("label {bad} at index 1")),
                        "{message}"
                    );
                    assert!(message.contains("the classes are 0 to 3 "), "{message}");
                }
                other => panic!("{other:?}"), // panic-free: test code
            }
            assert_eq!(grad, [7.0; 8], "a rejected call changes nothing");
        }
    }

    #[test]
    fn empty_batch_and_no_classes_do_not_panic() {
        let spec = LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: None,
        };
        let empty: [f64; 0] = [];
        let got = super::super::evaluate(&spec, &empty, 0, 0, Targets::Labels(&[]), None);
        assert!(got.is_ok_and(f64::is_nan));
        let got = super::super::evaluate(&spec, &empty, 0, 3, Targets::Labels(&[]), None);
        assert!(got.is_ok_and(f64::is_nan));
        let got = super::super::evaluate(&spec, &empty, 2, 0, Targets::Labels(&[0, 0]), None);
        assert!(matches!(got, Err(Error::Value { .. })));
    }
}
