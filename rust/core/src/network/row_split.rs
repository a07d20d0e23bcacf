//! A training step split over bpcore's threads by rows of the batch: each thread runs the whole
//! forward and backward pass on its share with its own buffers, and the shares' gradients are
//! averaged, weighted by their rows. For large batches only: smaller ones split each product
//! over the team's threads instead (`matmul`), whose workers spin between the products so that
//! a synchronization per product costs little.

use rayon::prelude::*;

use super::pass::{Model, Work};
use crate::{loss, Real, Result, Samples};

/// Fewer rows than this per thread and a step is better split inside each product (see
/// `matmul`: each thread packs only its slice of the weights, and no per-thread gradients are
/// summed): the row split makes every thread pack all the weights and sum a copy of all the
/// gradients, which only rows enough amortize. Inference over many rows splits by chunks of
/// rows from the same count.
const MIN_ROWS_PER_PART: usize = 512;
/// Below this many multiply-adds per thread, waking a thread costs more than it saves.
const MIN_MACS_PER_PART: usize = 1 << 18;
/// Above this many parameters each share's own gradient buffer no longer fits in a core's
/// cache, and summing them costs more than one product split inside gemm: measured on the wide
/// benchmark network (6.3M parameters), where gemm's own split trained 8% faster.
const MAX_PARAMS_TO_SPLIT: usize = 1 << 20;
/// Parameters per task when summing the shares' gradients.
const REDUCE_CHUNK: usize = 1 << 14;

/// One thread's share of a step: its buffers, its gradients and its mean loss.
#[derive(Debug, Clone, Default)]
pub(super) struct Replica<T> {
    work: Work<T>,
    grads: Vec<T>,
    loss: Option<Result<f64>>,
}

impl<T> Replica<T> {
    /// The metric sums of this share's last pass.
    pub fn metrics(&self) -> &super::metrics::MetricSums {
        &self.work.metrics
    }
}

/// How many shares a step of `n` rows should be split into on `threads` threads.
pub(super) fn parts(n: usize, macs_per_row: usize, threads: usize) -> usize {
    if macs_per_row > MAX_PARAMS_TO_SPLIT {
        return 1;
    }
    let by_rows = n / MIN_ROWS_PER_PART;
    let by_work = n.saturating_mul(macs_per_row) / MIN_MACS_PER_PART;
    threads.min(by_rows).min(by_work).max(1)
}

/// Rows `[start, end)` of share `i` of `p` over `n` rows.
fn share(n: usize, p: usize, i: usize) -> (usize, usize) {
    (n * i / p, n * (i + 1) / p)
}

/// The gradients of `n` samples computed in `replicas.len()` shares, averaged into `grads`.
/// Targets and weights must already be checked for all rows; `grads` is untouched on error.
///
/// With per-sample weights the split stays exact: share k of n_k rows computes
/// L_k = Σ_{i∈k} w_i·l_i / n_k, and Σ_k L_k·n_k/n = Σ_i w_i·l_i / n, the whole batch's weighted
/// loss; the gradients, linear in the L_k, combine the same way. A loss whose mean divides by
/// its targets' class weights instead of n combines by each share's part of that divisor
/// (`loss::divisor`), which is n_k/n for every other loss.
pub(super) fn split_gradients<T: Real>(
    model: Model<'_, T>,
    replicas: &mut [Replica<T>],
    grads: &mut [T],
    batch: Samples<'_, T>,
) -> Result<f64> {
    let n = batch.n;
    let (w_in, w_out) = (model.widths[0], model.widths[model.widths.len() - 1]);
    let p = replicas.len();
    let whole = loss::divisor(model.loss, batch.targets, n);
    let divisor_of = |i: usize| {
        let (a, b) = share(n, p, i);
        loss::divisor(model.loss, batch.targets.rows(a, b, w_out), b - a)
    };
    // A batch of class weight 0 has loss and gradient 0 in every share.
    let part_of = |i: usize| {
        if whole > 0.0 {
            divisor_of(i) / whole
        } else {
            0.0
        }
    };
    crate::threads::install(|| {
        replicas.par_iter_mut().enumerate().for_each(|(i, r)| {
            let (a, b) = share(n, p, i);
            r.grads.resize(grads.len(), T::zero());
            // Dropout masks are keyed by the row's index in the whole batch.
            let mut share_model = model;
            share_model.key.row_offset += a;
            let part = batch.rows(a, b, w_in, w_out);
            r.loss = Some(share_model.gradients(&mut r.work, &mut r.grads, part, false));
        });
        let mut loss = 0.0;
        for (i, r) in replicas.iter_mut().enumerate() {
            let value = r.loss.take().unwrap_or(Ok(f64::NAN))?;
            if whole > 0.0 {
                loss += value * divisor_of(i) / whole;
            }
        }
        let replicas = &*replicas;
        grads
            .par_chunks_mut(REDUCE_CHUNK)
            .enumerate()
            .for_each(|(c, out)| {
                let off = c * REDUCE_CHUNK;
                out.fill(T::zero());
                for (i, r) in replicas.iter().enumerate() {
                    let w = T::of(part_of(i));
                    let part = &r.grads[off..off + out.len()];
                    out.iter_mut().zip(part).for_each(|(o, &g)| *o += w * g);
                }
            });
        Ok(loss)
    })
}

#[cfg(test)]
#[path = "tests/row_split.rs"]
mod tests;
