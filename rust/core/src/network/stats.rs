//! What training shows about its gradients: per-tensor gradient norms, the global norm that
//! clipping and divergence checks use, and how far an epoch moved each tensor.
//!
//! Vanishing and exploding gradients are the classic failures of deep networks; these numbers
//! make them visible epoch by epoch at the cost of one pass over the gradients per step.

use super::layout::ParamInfo;
use crate::real::sum_squares;
use crate::threads::{self, Disjoint};
use crate::Real;

/// Per-tensor gradient statistics accumulated over the steps of an epoch.
#[derive(Debug, Clone, Default)]
pub(super) struct GradStats {
    /// Σ over steps of each tensor's gradient norm.
    norm_sums: Vec<f64>,
    steps: usize,
    /// Each tensor's squared gradient norm of the last step.
    last_sq: Vec<f64>,
    /// Where each tensor's chunks start in `chunk_sums`, and one past the last tensor's.
    first_chunk: Vec<usize>,
    /// Σ v² of each `SUM_CHUNK` values of a tensor, tensor after tensor.
    chunk_sums: Vec<f64>,
}

/// Values per partial sum of squares: `sum_squares`'s own block, so that adding a tensor's
/// chunk sums in order gives the bits `sum_squares` of the whole tensor gives.
const SUM_CHUNK: usize = 1024;
/// Chunks per block of the team's work.
const CHUNKS_PER_BLOCK: usize = 16;

impl GradStats {
    /// Measures `grads` tensor by tensor; returns the global norm (NaN or inf if any value is).
    /// The squares are summed in chunks on the thread team, and each tensor's chunks added
    /// in order: the result does not depend on the thread count.
    pub fn measure<T: Real>(&mut self, info: &[ParamInfo], grads: &[T]) -> f64 {
        self.plan_chunks(info);
        let chunks = *self.first_chunk.last().unwrap_or(&0);
        let first_chunk = &self.first_chunk;
        let sums = Disjoint::new(&mut self.chunk_sums[..chunks]);
        let block = |range: std::ops::Range<usize>| {
            // SAFETY: `for_blocks` hands out each range of chunks once.
            let sums = unsafe { sums.range(range.clone()) };
            for (sum, c) in sums.iter_mut().zip(range) {
                // The tensor holding chunk c: the last whose first chunk is at or before it.
                let t = first_chunk.partition_point(|&f| f <= c) - 1;
                let p = &info[t];
                let start = p.offset + (c - first_chunk[t]) * SUM_CHUNK;
                let end = (start + SUM_CHUNK).min(p.offset + p.len());
                *sum = grads.get(start..end).map_or(f64::NAN, sum_squares);
            }
        };
        threads::for_blocks(chunks, CHUNKS_PER_BLOCK, &block);
        self.last_sq.resize(info.len(), 0.0);
        for (t, sq) in self.last_sq.iter_mut().enumerate() {
            let own = &self.chunk_sums[self.first_chunk[t]..self.first_chunk[t + 1]];
            *sq = own.iter().sum();
        }
        self.last_sq.iter().sum::<f64>().sqrt()
    }

    /// Lays out the tensors' chunks (once: a network's tensors do not change).
    fn plan_chunks(&mut self, info: &[ParamInfo]) {
        if self.first_chunk.len() == info.len() + 1 {
            return;
        }
        self.first_chunk.clear();
        let mut next = 0;
        for p in info {
            self.first_chunk.push(next);
            next += p.len().div_ceil(SUM_CHUNK);
        }
        self.first_chunk.push(next);
        self.chunk_sums.resize(next, 0.0);
    }

    /// Counts the last measured step into the epoch's means.
    pub fn record(&mut self) {
        self.norm_sums.resize(self.last_sq.len(), 0.0);
        for (sum, sq) in self.norm_sums.iter_mut().zip(&self.last_sq) {
            *sum += sq.sqrt();
        }
        self.steps += 1;
    }

    /// Starts a new epoch.
    pub fn reset(&mut self) {
        self.norm_sums.iter_mut().for_each(|s| *s = 0.0);
        self.steps = 0;
    }

    /// Each tensor's mean gradient norm over the recorded steps.
    pub fn mean_norms(&self, n_tensors: usize) -> Vec<f64> {
        (0..n_tensors)
            .map(|i| {
                let sum = self.norm_sums.get(i).copied().unwrap_or(0.0);
                if self.steps == 0 {
                    f64::NAN
                } else {
                    sum / self.steps as f64
                }
            })
            .collect()
    }
}

/// ‖p‖² of each tensor of `params`.
pub(super) fn squared_norms<T: Real>(info: &[ParamInfo], params: &[T]) -> Vec<f64> {
    info.iter()
        .map(|p| sum_squares(&params[p.offset..p.offset + p.len()]))
        .collect()
}

/// ‖after − before‖ / ‖before‖ for each tensor: how far training moved it, relative to its size
/// (relative to ‖after‖ for a tensor that started at zero, as biases do); `after_squares` are
/// `after`'s `squared_norms`.
pub(super) fn update_ratios<T: Real>(
    info: &[ParamInfo],
    before: &[T],
    after: &[T],
    after_squares: &[f64],
) -> Vec<f64> {
    info.iter()
        .zip(after_squares)
        .map(|(p, &after_square)| {
            let range = p.offset..p.offset + p.len();
            let (b, a) = (&before[range.clone()], &after[range]);
            let moved: f64 = a
                .chunks(256)
                .zip(b.chunks(256))
                .map(|(a, b)| {
                    a.iter()
                        .zip(b)
                        .fold(T::zero(), |acc, (&x, &y)| acc + (x - y) * (x - y))
                        .f64()
                })
                .sum();
            let size = match sum_squares(b) {
                s if s > 0.0 => s,
                _ => after_square,
            };
            if size > 0.0 {
                (moved / size).sqrt()
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Vec<ParamInfo> {
        vec![
            ParamInfo {
                name: "0.weight".into(),
                shape: vec![2, 2],
                offset: 0,
            },
            ParamInfo {
                name: "0.bias".into(),
                shape: vec![2],
                offset: 4,
            },
        ]
    }

    #[test]
    fn norms_per_tensor_and_their_epoch_mean() {
        let mut stats = GradStats::default();
        let total = stats.measure(&info(), &[3.0f64, 0.0, 0.0, 4.0, 0.0, 2.0]);
        assert!((total - 29f64.sqrt()).abs() < 1e-15);
        stats.record();
        stats.measure(&info(), &[0.0f64, 0.0, 0.0, 1.0, 0.0, 0.0]);
        stats.record();
        assert_eq!(stats.mean_norms(2), vec![3.0, 1.0]);
        stats.reset();
        assert!(stats.mean_norms(2)[0].is_nan());
        assert!(stats
            .measure(&info(), &[f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0])
            .is_nan());
    }

    #[test]
    fn norms_per_tensor() {
        let params = [3.0f64, 0.0, 0.0, 4.0, 0.0, -2.0];
        let norms: Vec<f64> = squared_norms(&info(), &params)
            .iter()
            .map(|s| s.sqrt())
            .collect();
        assert_eq!(norms, vec![5.0, 2.0]);
    }

    #[test]
    fn update_ratio_is_relative_movement() {
        let before = [3.0f64, 0.0, 0.0, 4.0, 0.0, 0.0];
        let after = [3.0f64, 0.0, 0.0, 4.5, 0.0, 1.0];
        let ratios =
            |after: &[f64]| update_ratios(&info(), &before, after, &squared_norms(&info(), after));
        assert_eq!(ratios(&after), vec![0.1, 1.0]);
        assert_eq!(ratios(&before), vec![0.0, 0.0]);
    }
}
