//! Tests of `network/training_state.rs`.
use super::super::pass::Work;
use super::super::row_split::{split_gradients, Replica};
use super::*;
use crate::{LayerSpec, LossSpec, NetworkSpec, OptimizerSpec};
use crate::{Samples, Targets};

fn spec(layers: Vec<LayerSpec>) -> NetworkSpec {
    NetworkSpec {
        layers,
        loss: LossSpec::Mse,
        optimizer: OptimizerSpec::Sgd(crate::optim::Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay: Vec::new(),
        }),
        seed: 11,
    }
}

fn dense(i: usize, o: usize) -> LayerSpec {
    LayerSpec::Dense {
        in_features: i,
        out_features: o,
        bias: true,
    }
}

fn data(n: usize, w: usize) -> Vec<f64> {
    (0..n * w)
        .map(|i| ((i * 31 + 7) % 19) as f64 / 9.0 - 1.0)
        .collect()
}

#[test]
fn training_forwards_move_running_statistics_and_inference_does_not() {
    let mut net = Network::<f64>::new(spec(vec![
        dense(3, 4),
        LayerSpec::BatchNorm1d {
            num_features: 4,
            eps: 1e-5,
            momentum: 0.1,
        },
        LayerSpec::Relu,
        dense(4, 2),
    ]))
    .unwrap();
    assert_eq!(net.buffer_info().len(), 2);
    assert_eq!(net.tracked_names(), ["1.num_batches_tracked"]);
    assert_eq!(net.running_stats(), &[0., 0., 0., 0., 1., 1., 1., 1.]);
    let (n, x, y) = (6, data(6, 3), data(6, 2));
    let mut out = vec![0.0; n * 2];
    net.forward(&x, n, &mut out).unwrap();
    net.loss(&x, Targets::Values(&y), n).unwrap();
    assert_eq!(net.batches_tracked(), [0]);
    net.gradients(Samples::new(&x, Targets::Values(&y), n))
        .unwrap();
    net.training_loss(Samples::new(&x, Targets::Values(&y), n))
        .unwrap();
    assert_eq!(net.batches_tracked(), [2]);
    assert_eq!(net.training_forwards(), 2);
    // The batch statistics of layer 1's input, twice through the momentum.
    let mut h = vec![0.0; n * 4];
    crate::dense::Dense {
        in_features: 3,
        out_features: 4,
        weight_offset: 0,
        bias_offset: Some(12),
    }
    .forward(net.params(), &x, n, &mut h, false);
    for j in 0..4 {
        let col: Vec<f64> = (0..n).map(|r| h[r * 4 + j]).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let want_mean = 0.1 * mean + 0.9 * (0.1 * mean);
        let want_var = 0.1 * var + 0.9 * (0.1 * var + 0.9);
        assert!((net.running_stats()[j] - want_mean).abs() < 1e-12);
        assert!((net.running_stats()[4 + j] - want_var).abs() < 1e-12);
    }
    // One sample cannot be batch-normalized in training; nothing changes.
    let err = net.gradients(Samples::new(&x[..3], Targets::Values(&y[..2]), 1));
    assert!(matches!(err, Err(Error::Value { .. })));
    assert_eq!(net.batches_tracked(), [2]);
    // set_buffers checks and changes nothing on error.
    assert!(net.set_buffers(&[0.0; 7], &[0]).is_err());
    assert!(net
        .set_buffers(&[0., 0., 0., 0., 1., -1., 1., 1.], &[0])
        .is_err());
    assert!(net.set_buffers(&[0.0; 8], &[-1]).is_err());
    assert_eq!(net.batches_tracked(), [2]);
    net.set_buffers(&[1.0; 8], &[5]).unwrap();
    assert_eq!(net.running_stats(), &[1.0; 8]);
    assert_eq!(net.batches_tracked(), [5]);
}

#[test]
fn dropout_and_layer_norm_steps_split_over_threads_like_one_pass() {
    let net = Network::<f64>::new(spec(vec![
        dense(6, 9),
        LayerSpec::LayerNorm {
            normalized_shape: 9,
            eps: 1e-5,
        },
        LayerSpec::Gelu,
        LayerSpec::Dropout { p: 0.4 },
        dense(9, 3),
    ]))
    .unwrap();
    let (n, x, y) = (23, data(23, 6), data(23, 3));
    let t = Targets::Values(&y);
    let mut model = net.model();
    model.key = net.training.key(net.spec.seed);
    let mut single = vec![0.0; net.params().len()];
    let whole = model
        .gradients(
            &mut Work::default(),
            &mut single,
            Samples::new(&x, t, n).weighted(None),
            false,
        )
        .unwrap();
    for p in [2, 3, 5] {
        let mut replicas = vec![Replica::default(); p];
        let mut grads = vec![0.0; single.len()];
        let split = split_gradients(
            model,
            &mut replicas,
            &mut grads,
            Samples::new(&x, t, n).weighted(None),
        )
        .unwrap();
        assert!((split - whole).abs() < 1e-14);
        for (a, b) in grads.iter().zip(&single) {
            assert!((a - b).abs() < 1e-13 * (1.0 + b.abs()), "{p}: {a} vs {b}");
        }
    }
}
