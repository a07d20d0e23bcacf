//! Running sums for the training metrics Keras reports during an epoch (accuracy; mean absolute
//! error and R² for regression), taken from each training step's own outputs, so that reporting
//! them costs one pass over the outputs instead of another pass of the network over the data.

use crate::loss::Targets;
use crate::{LossSpec, Real};

/// Sums over the samples of the steps seen since the last `clear`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSums {
    pub rows: usize,
    /// Samples (cross_entropy: argmax = label) or output elements (bce_with_logits: logit > 0
    /// agrees with target > 0.5) predicted right.
    pub correct: f64,
    /// Samples whose every output element is predicted right (bce_with_logits: exact match,
    /// scikit-learn's accuracy of multi-label outputs).
    pub exact: f64,
    /// Σ |output − y| over all elements (value losses).
    pub abs_err: f64,
    /// Per output column: Σ (output − y)², Σ y, Σ y² (value losses; for R²).
    pub sq_err: Vec<f64>,
    pub y_sum: Vec<f64>,
    pub y_sq_sum: Vec<f64>,
}

impl MetricSums {
    /// Starts over, keeping the buffers.
    pub fn clear(&mut self) {
        self.rows = 0;
        self.correct = 0.0;
        self.exact = 0.0;
        self.abs_err = 0.0;
        for v in [&mut self.sq_err, &mut self.y_sum, &mut self.y_sq_sum] {
            v.iter_mut().for_each(|s| *s = 0.0);
        }
    }

    /// Adds the `n` rows of `output` (n × width) against their targets.
    pub fn add<T: Real>(
        &mut self,
        loss: &LossSpec,
        output: &[T],
        targets: Targets<'_, T>,
        n: usize,
        width: usize,
    ) {
        self.rows += n;
        match (loss, targets) {
            (LossSpec::CrossEntropy { .. }, Targets::Labels(labels)) => {
                for (row, &label) in output.chunks_exact(width).zip(labels) {
                    let best = row
                        .iter()
                        .enumerate()
                        .fold((0, T::neg_infinity()), |(bi, bv), (i, &v)| {
                            if v > bv {
                                (i, v)
                            } else {
                                (bi, bv)
                            }
                        })
                        .0;
                    if best as i64 == label {
                        self.correct += 1.0;
                    }
                }
            }
            (LossSpec::BceWithLogits { .. }, Targets::Values(y)) => {
                let half = T::of(0.5);
                let rows = output.chunks_exact(width).zip(y.chunks_exact(width));
                for (row, t_row) in rows {
                    let right = row
                        .iter()
                        .zip(t_row)
                        .filter(|&(&o, &t)| (o > T::zero()) == (t > half))
                        .count();
                    self.correct += right as f64;
                    if right == width {
                        self.exact += 1.0;
                    }
                }
            }
            (_, Targets::Values(y)) => {
                for v in [&mut self.sq_err, &mut self.y_sum, &mut self.y_sq_sum] {
                    v.resize(width, 0.0);
                }
                for (row, t_row) in output.chunks_exact(width).zip(y.chunks_exact(width)) {
                    for (c, (&o, &t)) in row.iter().zip(t_row).enumerate() {
                        let (o, t) = (o.f64(), t.f64());
                        self.abs_err += (o - t).abs();
                        self.sq_err[c] += (o - t) * (o - t);
                        self.y_sum[c] += t;
                        self.y_sq_sum[c] += t * t;
                    }
                }
            }
            // Labels with a value loss cannot pass the target checks that come first.
            (_, Targets::Labels(_)) => {}
        }
    }

    /// Adds another set of sums (a thread's share of a step).
    pub fn merge(&mut self, other: &MetricSums) {
        self.rows += other.rows;
        self.correct += other.correct;
        self.exact += other.exact;
        self.abs_err += other.abs_err;
        for (mine, theirs) in [
            (&mut self.sq_err, &other.sq_err),
            (&mut self.y_sum, &other.y_sum),
            (&mut self.y_sq_sum, &other.y_sq_sum),
        ] {
            if mine.len() < theirs.len() {
                mine.resize(theirs.len(), 0.0);
            }
            mine.iter_mut().zip(theirs).for_each(|(m, t)| *m += t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_for_both_classification_losses() {
        let mut m = MetricSums::default();
        let ce = LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: None,
        };
        m.add(
            &ce,
            &[0.1f64, 0.9, 2.0, -1.0, 0.0, 3.0],
            Targets::Labels(&[1, 0, 0]),
            3,
            2,
        );
        assert_eq!((m.rows, m.correct), (3, 2.0));
        m.clear();
        let logits = [1.0f32, -1.0, 0.5, -0.2];
        m.add(
            &LossSpec::BceWithLogits { pos_weight: None },
            &logits,
            Targets::Values(&[1.0, 1.0, 0.0, 0.0]),
            2,
            2,
        );
        assert_eq!((m.correct, m.exact), (2.0, 0.0));
        m.add(
            &LossSpec::BceWithLogits { pos_weight: None },
            &logits,
            Targets::Values(&[1.0, 0.0, 1.0, 0.0]),
            2,
            2,
        );
        assert_eq!((m.rows, m.correct, m.exact), (4, 6.0, 2.0));
    }

    #[test]
    fn regression_sums_per_column_and_merge() {
        let mut a = MetricSums::default();
        a.add(
            &LossSpec::Mse,
            &[1.0f64, 2.0],
            Targets::Values(&[0.0, 4.0]),
            1,
            2,
        );
        let mut b = MetricSums::default();
        b.add(
            &LossSpec::Mse,
            &[3.0f64, 3.0],
            Targets::Values(&[3.0, 1.0]),
            1,
            2,
        );
        a.merge(&b);
        assert_eq!(a.rows, 2);
        assert_eq!(a.abs_err, 1.0 + 2.0 + 0.0 + 2.0);
        assert_eq!(a.sq_err, vec![1.0, 8.0]);
        assert_eq!(a.y_sum, vec![3.0, 5.0]);
        assert_eq!(a.y_sq_sum, vec![9.0, 17.0]);
    }
}
