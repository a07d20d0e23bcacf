//! Tests of `network/row_split.rs`.
use super::*;
use crate::{Samples, Targets};

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
            weight: None,
        },
        optimizer: OptimizerSpec::Sgd(crate::optim::Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay: Vec::new(),
        }),
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
    let whole = net.model().gradients(
        &mut Work::default(),
        &mut single,
        Samples::new(&x, t, n).weighted(None),
        false,
    );
    for p in [2, 3, 5] {
        let mut replicas = vec![Replica::default(); p];
        let mut grads = vec![0.0; net.params.len()];
        let model = net.model();
        let split = split_gradients(
            model,
            &mut replicas,
            &mut grads,
            Samples::new(&x, t, n).weighted(None),
        )
        .unwrap();
        assert!((split - *whole.as_ref().unwrap()).abs() < 1e-14);
        for (a, b) in grads.iter().zip(&single) {
            assert!(
                (a - b).abs() < 1e-14 * (1.0 + b.abs()),
                "{p} shares: {a} vs {b}"
            );
        }
    }
    // The network's own entry point agrees too, whatever it chose.
    net.gradients(Samples::new(&x, t, n)).unwrap();
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
        optimizer: OptimizerSpec::Sgd(crate::optim::Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay: Vec::new(),
        }),
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
        .gradients(
            &mut Work::default(),
            &mut single,
            Samples::new(&x, t, n).weighted(Some(&w)),
            false,
        )
        .unwrap();
    for p in [2, 3, 4] {
        let mut replicas = vec![Replica::default(); p];
        let mut grads = vec![0.0; net.params.len()];
        let model = net.model();
        let split = split_gradients(
            model,
            &mut replicas,
            &mut grads,
            Samples::new(&x, t, n).weighted(Some(&w)),
        )
        .unwrap();
        assert!((split - whole).abs() < 1e-14 * (1.0 + whole.abs()));
        for (a, b) in grads.iter().zip(&single) {
            assert!((a - b).abs() < 1e-14 * (1.0 + b.abs()), "{p}: {a} vs {b}");
        }
    }
}

#[test]
fn only_large_batches_are_split_by_rows() {
    // Smaller ones are split inside each product instead.
    assert_eq!(parts(16, 1376, 2), 1);
    assert_eq!(parts(128, 234_752, 2), 1);
    assert_eq!(parts(1024, 234_752, 2), 2);
    assert_eq!(parts(4096, 234_752, 4), 4);
    assert_eq!(parts(12, 1_000_000, 4), 1);
    assert_eq!(parts(32, 234_752, 2), 1);
    assert_eq!(parts(256, 6_316_042, 2), 1);
    assert_eq!(parts(1000, 1_000_000, 1), 1);
}

#[test]
fn split_class_weighted_gradients_equal_the_single_pass() {
    use crate::network::Network;
    use crate::{LayerSpec, LossSpec, NetworkSpec, OptimizerSpec};
    // Class 3 weighs 0 and the shares hold the classes unevenly: each share's part of the
    // batch is its part of Σ w_{y_i}, not of the rows.
    let spec = NetworkSpec {
        layers: vec![LayerSpec::Dense {
            in_features: 3,
            out_features: 4,
            bias: true,
        }],
        loss: LossSpec::CrossEntropy {
            label_smoothing: 0.1,
            weight: Some(vec![0.5, 4.0, 1.0, 0.0]),
        },
        optimizer: OptimizerSpec::Sgd(crate::optim::Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay: Vec::new(),
        }),
        seed: 2,
    };
    let net = Network::<f64>::new(spec).unwrap();
    let n = 19;
    let x: Vec<f64> = (0..n * 3)
        .map(|i| ((i * 13) % 11) as f64 / 5.0 - 1.0)
        .collect();
    let labels: Vec<i64> = (0..n as i64)
        .map(|i| if i < 6 { 1 } else { i % 4 })
        .collect();
    let t = Targets::Labels(&labels);
    let mut single = vec![0.0; net.params.len()];
    let batch = Samples::new(&x, t, n);
    let whole = net
        .model()
        .gradients(&mut Work::default(), &mut single, batch, false)
        .unwrap();
    for p in [2, 3, 5] {
        let mut replicas = vec![Replica::default(); p];
        let mut grads = vec![0.0; net.params.len()];
        let split = split_gradients(net.model(), &mut replicas, &mut grads, batch).unwrap();
        assert!((split - whole).abs() < 1e-14, "{p}: {split} vs {whole}");
        for (a, b) in grads.iter().zip(&single) {
            assert!((a - b).abs() < 1e-14 * (1.0 + b.abs()), "{p}: {a} vs {b}");
        }
    }
}
