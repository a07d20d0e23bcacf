//! Tests of `network/data_parallel.rs`: ranks simulated in one process, their buffers summed
//! by hand where MPI's Allreduce would sum them.
use super::*;
use crate::{LayerSpec, LossSpec, NetworkSpec, OptimizerSpec};

fn spec() -> NetworkSpec {
    NetworkSpec {
        layers: vec![
            LayerSpec::Dense {
                in_features: 5,
                out_features: 8,
                bias: true,
            },
            LayerSpec::Tanh,
            LayerSpec::Dropout { p: 0.3 },
            LayerSpec::Dense {
                in_features: 8,
                out_features: 3,
                bias: true,
            },
        ],
        loss: LossSpec::CrossEntropy {
            label_smoothing: 0.0,
        },
        optimizer: OptimizerSpec::Adam {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        },
        seed: 11,
    }
}

fn data(n: usize) -> (Vec<f64>, Vec<i64>) {
    let x = (0..n * 5)
        .map(|i| ((i * 29) % 13) as f64 / 6.0 - 1.0)
        .collect();
    let labels = (0..n as i64).map(|i| (i * 5) % 3).collect();
    (x, labels)
}

/// Every rank's share of the global batch `rows` (x, labels), in rank order.
fn shares(x: &[f64], labels: &[i64], sizes: &[usize]) -> Vec<(Vec<f64>, Vec<i64>)> {
    let mut start = 0;
    sizes
        .iter()
        .map(|&k| {
            let part = (
                x[start * 5..(start + k) * 5].to_vec(),
                labels[start..start + k].to_vec(),
            );
            start += k;
            part
        })
        .collect()
}

#[test]
fn summed_shares_take_the_global_batch_step() {
    // Uneven shares, an empty one, and dropout: the masks follow the global row.
    for sizes in [vec![4, 4], vec![7, 3], vec![5, 0, 2]] {
        let total: usize = sizes.iter().sum();
        let (x, labels) = data(total);
        let mut single = Network::<f64>::new(spec()).unwrap();
        let mut ranks: Vec<_> = sizes.iter().map(|_| single.clone()).collect();
        for _step in 0..3 {
            let expected = single
                .train_step(&x, Targets::Labels(&labels), total)
                .unwrap();
            let mut sum = vec![0.0; single.reduce_len()];
            let mut buffers = Vec::new();
            let mut offset = 0;
            for (net, (xs, ls)) in ranks.iter_mut().zip(shares(&x, &labels, &sizes)) {
                let mut buf = vec![f64::NAN; net.reduce_len()];
                let n = ls.len();
                net.shared_step_gradients(&xs, Targets::Labels(&ls), None, n, offset, &mut buf)
                    .unwrap();
                offset += n;
                sum.iter_mut().zip(&buf).for_each(|(s, b)| *s += b);
                buffers.push(buf);
            }
            for net in &mut ranks {
                let mut reduced = sum.clone();
                let (loss, rows) = net.apply_reduced(&mut reduced).unwrap();
                assert_eq!(rows, total);
                assert!(
                    (loss - expected).abs() < 1e-12,
                    "{sizes:?}: {loss} vs {expected}"
                );
            }
        }
        for net in &ranks {
            for (a, b) in net.params().iter().zip(single.params()) {
                assert!((a - b).abs() < 1e-12, "{sizes:?}: {a} vs {b}");
            }
            assert_eq!(net.training_forwards(), single.training_forwards());
        }
    }
}

#[test]
fn a_refused_reduction_changes_nothing() {
    let (x, labels) = data(4);
    let mut net = Network::<f64>::new(spec()).unwrap();
    let before = net.params().to_vec();
    let mut buf = vec![0.0; net.reduce_len()];
    net.shared_step_gradients(&x, Targets::Labels(&labels), None, 4, 0, &mut buf)
        .unwrap();
    let p = net.params().len();

    let mut failed = buf.clone();
    failed[p + 2] = 1.0;
    assert!(matches!(
        net.apply_reduced(&mut failed),
        Err(Error::Value { .. })
    ));

    let mut empty = vec![0.0; net.reduce_len()];
    assert!(matches!(
        net.apply_reduced(&mut empty),
        Err(Error::Value { .. })
    ));

    let mut diverged = buf.clone();
    diverged[0] = f64::NAN;
    assert!(matches!(
        net.apply_reduced(&mut diverged),
        Err(Error::Diverged { .. })
    ));

    let mut short = buf[..p].to_vec();
    assert!(matches!(
        net.apply_reduced(&mut short),
        Err(Error::Shape { .. })
    ));
    assert_eq!(net.params(), &before[..]);
    assert_eq!(net.optimizer().steps(), 0);
}

#[test]
fn an_epoch_reports_the_reduced_steps() {
    let (x, labels) = data(6);
    let mut net = Network::<f64>::new(spec()).unwrap();
    net.begin_shared_epoch();
    let mut buf = vec![0.0; net.reduce_len()];
    for _ in 0..2 {
        net.shared_step_gradients(&x, Targets::Labels(&labels), None, 6, 0, &mut buf)
            .unwrap();
        net.apply_reduced(&mut buf).unwrap();
    }
    let outcome = net.end_shared_epoch();
    assert_eq!(outcome.metrics.rows, 12);
    assert_eq!(outcome.grad_norms.len(), 4);
    assert!(outcome.grad_norms.iter().all(|g| g.is_finite() && *g > 0.0));
    assert!(outcome.update_ratios.iter().all(|r| *r > 0.0));
}
