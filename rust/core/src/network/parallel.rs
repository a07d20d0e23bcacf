//! A training step split over bpcore's threads by rows of the batch: each thread runs the whole
//! forward and backward pass on its share with its own buffers, and the shares' gradients are
//! averaged, weighted by their rows. One synchronization per step instead of one per product
//! is what lets small and medium networks gain from a second core.

use rayon::prelude::*;

use super::pass::{Model, Work};
use crate::loss::Targets;
use crate::{Real, Result};

/// Fewer rows than this per thread and each thread's packing of the weights (which every
/// thread repeats) costs more than its share of the products saves; measured on the small
/// (batch 32) and mnist (batch 128) benchmark networks.
const MIN_ROWS_PER_PART: usize = 64;
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
/// loss; the gradients, linear in the L_k, combine the same way.
pub(super) fn split_gradients<T: Real>(
    model: Model<'_, T>,
    replicas: &mut [Replica<T>],
    grads: &mut [T],
    x: &[T],
    targets: Targets<'_, T>,
    weights: Option<&[T]>,
    n: usize,
) -> Result<f64> {
    let (w_in, w_out) = (model.widths[0], model.widths[model.widths.len() - 1]);
    let p = replicas.len();
    crate::threads::install(|| {
        replicas.par_iter_mut().enumerate().for_each(|(i, r)| {
            let (a, b) = share(n, p, i);
            r.grads.resize(grads.len(), T::zero());
            let t = targets.rows(a, b, w_out);
            let x_part = &x[a * w_in..b * w_in];
            // Dropout masks are keyed by the row's index in the whole batch.
            let mut share_model = model;
            share_model.key.row_offset += a;
            let w = weights.map(|w| &w[a..b]);
            r.loss =
                Some(share_model.gradients(&mut r.work, &mut r.grads, x_part, t, w, b - a, false));
        });
        let mut loss = 0.0;
        for (i, r) in replicas.iter_mut().enumerate() {
            let (a, b) = share(n, p, i);
            let value = r.loss.take().unwrap_or(Ok(f64::NAN))?;
            loss += value * (b - a) as f64 / n as f64;
        }
        let replicas = &*replicas;
        grads
            .par_chunks_mut(REDUCE_CHUNK)
            .enumerate()
            .for_each(|(c, out)| {
                let off = c * REDUCE_CHUNK;
                out.fill(T::zero());
                for (i, r) in replicas.iter().enumerate() {
                    let (a, b) = share(n, p, i);
                    let w = T::of((b - a) as f64 / n as f64);
                    let part = &r.grads[off..off + out.len()];
                    out.iter_mut().zip(part).for_each(|(o, &g)| *o += w * g);
                }
            });
        Ok(loss)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_rows_evenly() {
        for (n, p) in [(10, 3), (128, 2), (7, 7), (1000, 4)] {
            let bounds: Vec<_> = (0..p).map(|i| share(n, p, i)).collect();
            assert_eq!(bounds[0].0, 0);
            assert_eq!(bounds[p - 1].1, n);
            for w in bounds.windows(2) {
                assert_eq!(w[0].1, w[1].0);
            }
            let sizes: Vec<_> = bounds.iter().map(|(a, b)| b - a).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn split_gradients_equal_the_single_pass() {
        use crate::network::Network;
        use crate::{LayerSpec, LossSpec, NetworkSpec, OptimizerSpec};
        let spec = NetworkSpec {
            layers: vec![
                LayerSpec::Dense {
                    in_features: 6,
                    out_features: 9,
                    bias: true,
                },
                LayerSpec::Gelu,
                LayerSpec::Dense {
                    in_features: 9,
                    out_features: 4,
                    bias: true,
                },
            ],
            loss: LossSpec::CrossEntropy {
                label_smoothing: 0.1,
            },
            optimizer: OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            seed: 4,
        };
        let mut net = Network::<f64>::new(spec).unwrap();
        let n = 23;
        let x: Vec<f64> = (0..n * 6)
            .map(|i| ((i * 37) % 17) as f64 / 8.0 - 1.0)
            .collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| (i * 7) % 4).collect();
        let t = Targets::Labels(&labels);
        let mut single = vec![0.0; net.params.len()];
        let whole = net
            .model()
            .gradients(&mut Work::default(), &mut single, &x, t, None, n, false);
        for p in [2, 3, 5] {
            let mut replicas = vec![Replica::default(); p];
            let mut grads = vec![0.0; net.params.len()];
            let model = net.model();
            let split = split_gradients(model, &mut replicas, &mut grads, &x, t, None, n).unwrap();
            assert!((split - *whole.as_ref().unwrap()).abs() < 1e-14);
            for (a, b) in grads.iter().zip(&single) {
                assert!(
                    (a - b).abs() < 1e-14 * (1.0 + b.abs()),
                    "{p} shares: {a} vs {b}"
                );
            }
        }
        // The network's own entry point agrees too, whatever it chose.
        net.gradients(&x, t, n).unwrap();
        for (a, b) in net.grads().iter().zip(&single) {
            assert!((a - b).abs() < 1e-14 * (1.0 + b.abs()));
        }
    }

    #[test]
    fn split_weighted_gradients_equal_the_single_pass() {
        use crate::network::Network;
        use crate::{LayerSpec, LossSpec, NetworkSpec, OptimizerSpec};
        let spec = NetworkSpec {
            layers: vec![
                LayerSpec::Dense {
                    in_features: 5,
                    out_features: 7,
                    bias: true,
                },
                LayerSpec::Tanh,
                LayerSpec::Dense {
                    in_features: 7,
                    out_features: 3,
                    bias: true,
                },
            ],
            loss: LossSpec::Huber { delta: 0.5 },
            optimizer: OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            seed: 2,
        };
        let net = Network::<f64>::new(spec).unwrap();
        let n = 29;
        let x: Vec<f64> = (0..n * 5)
            .map(|i| ((i * 13) % 11) as f64 / 5.0 - 1.0)
            .collect();
        let y: Vec<f64> = (0..n * 3)
            .map(|i| ((i * 7) % 5) as f64 / 2.0 - 1.0)
            .collect();
        // Uneven weights, zeros included, so that the shares' weight sums differ.
        let w: Vec<f64> = (0..n).map(|i| ((i * 5) % 7) as f64 / 3.0).collect();
        let t = Targets::Values(&y);
        let mut single = vec![0.0; net.params.len()];
        let whole = net
            .model()
            .gradients(&mut Work::default(), &mut single, &x, t, Some(&w), n, false)
            .unwrap();
        for p in [2, 3, 4] {
            let mut replicas = vec![Replica::default(); p];
            let mut grads = vec![0.0; net.params.len()];
            let model = net.model();
            let split =
                split_gradients(model, &mut replicas, &mut grads, &x, t, Some(&w), n).unwrap();
            assert!((split - whole).abs() < 1e-14 * (1.0 + whole.abs()));
            for (a, b) in grads.iter().zip(&single) {
                assert!((a - b).abs() < 1e-14 * (1.0 + b.abs()), "{p}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn small_steps_stay_on_one_thread() {
        assert_eq!(parts(16, 1376, 2), 1);
        assert_eq!(parts(128, 234_752, 2), 2);
        assert_eq!(parts(12, 1_000_000, 4), 1);
        assert_eq!(parts(32, 234_752, 2), 1);
        assert_eq!(parts(256, 6_316_042, 2), 1);
        assert_eq!(parts(1000, 1_000_000, 1), 1);
    }
}
