//! The whole network through its public API: gradients by finite differences, training,
//! determinism and refused input.

use bpcore_core::network::EpochSettings;
use bpcore_core::{
    Error, LayerSpec, LossSpec, Network, NetworkSpec, OptimizerSpec, Samples, Targets,
};

/// The settings of an epoch of one process in steps of `batch_size`.
fn epoch(batch_size: usize, shuffle: bool) -> EpochSettings<'static> {
    EpochSettings {
        batch_size,
        shuffle,
        number: None,
        ranks: None,
        ..EpochSettings::default()
    }
}

fn spec(loss: LossSpec, seed: u64) -> NetworkSpec {
    NetworkSpec {
        layers: vec![
            LayerSpec::Dense {
                in_features: 3,
                out_features: 5,
                bias: true,
            },
            LayerSpec::Tanh,
            LayerSpec::Dense {
                in_features: 5,
                out_features: 4,
                bias: false,
            },
            LayerSpec::Gelu,
            LayerSpec::Dense {
                in_features: 4,
                out_features: 2,
                bias: true,
            },
        ],
        loss,
        optimizer: OptimizerSpec::Adam(bpcore_core::optim::Adam {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            amsgrad: false,
        }),
        seed,
    }
}

fn inputs(n: usize) -> Vec<f64> {
    (0..n * 3)
        .map(|i| ((i * 7919) % 23) as f64 / 11.0 - 1.0)
        .collect()
}

#[test]
fn gradients_match_central_differences() {
    let x = inputs(6);
    let labels = [0i64, 1, 1, 0, 1, 0];
    let values: Vec<f64> = (0..12).map(|i| (i as f64 * 0.3).sin()).collect();
    for loss in [
        LossSpec::CrossEntropy {
            label_smoothing: 0.1,
            weight: None,
        },
        LossSpec::Mse,
        LossSpec::Huber { delta: 0.5 },
    ] {
        let targets = match loss {
            LossSpec::CrossEntropy { .. } => Targets::Labels(&labels[..]),
            _ => Targets::Values(&values[..]),
        };
        let mut net = Network::<f64>::new(spec(loss.clone(), 1)).unwrap();
        net.gradients(Samples::new(&x, targets, 6)).unwrap();
        let analytic = net.grads().to_vec();
        let base = net.params().to_vec();
        for i in 0..base.len() {
            let h = 1e-6;
            let mut p = base.clone();
            p[i] += h;
            net.set_params(&p).unwrap();
            let up = net.loss(&x, targets, 6).unwrap();
            p[i] -= 2.0 * h;
            net.set_params(&p).unwrap();
            let down = net.loss(&x, targets, 6).unwrap();
            let numeric = (up - down) / (2.0 * h);
            let err = (numeric - analytic[i]).abs() / (1e-8 + numeric.abs().max(analytic[i].abs()));
            assert!(
                err < 1e-5,
                "{loss:?} param {i}: {numeric} vs {}",
                analytic[i]
            );
        }
    }
}

#[test]
fn training_lowers_the_loss_and_a_seed_fixes_everything() {
    let x = inputs(40);
    let labels: Vec<i64> = x.chunks(3).map(|r| i64::from(r[0] + r[1] > 0.0)).collect();
    let loss = LossSpec::CrossEntropy {
        label_smoothing: 0.0,
        weight: None,
    };
    let run = || {
        let mut net = Network::<f32>::new(spec(loss.clone(), 9)).unwrap();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let first = net.loss(&x32, Targets::Labels(&labels), 40).unwrap();
        for _ in 0..60 {
            net.fit_epoch(
                Samples::new(&x32, Targets::Labels(&labels), 40),
                &epoch(8, true),
                None,
                &mut |_| false,
            )
            .unwrap();
        }
        let last = net.loss(&x32, Targets::Labels(&labels), 40).unwrap();
        (first, last, net.params().to_vec())
    };
    let (first, last, params) = run();
    assert!(last < 0.3 * first, "{first} -> {last}");
    let (_, _, again) = run();
    assert_eq!(
        params.iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
        again.iter().map(|p| p.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn an_unshuffled_epoch_is_the_sequence_of_its_batches() {
    let x = inputs(10);
    let values: Vec<f64> = (0..20).map(|i| (i as f64).cos()).collect();
    let mut a = Network::<f64>::new(spec(LossSpec::Mse, 2)).unwrap();
    let mut b = a.clone();
    let outcome = a
        .fit_epoch(
            Samples::new(&x, Targets::Values(&values), 10),
            &epoch(4, false),
            None,
            &mut |_| false,
        )
        .unwrap();
    assert_eq!(outcome.batches, 3);
    let mut total = 0.0;
    for (start, rows) in [(0, 4), (4, 4), (8, 2)] {
        let t = Targets::Values(&values[start * 2..(start + rows) * 2]);
        total += rows as f64
            * b.train_step(Samples::new(&x[start * 3..(start + rows) * 3], t, rows))
                .unwrap();
    }
    assert_eq!(a.params(), b.params());
    assert!((outcome.loss - total / 10.0).abs() < 1e-15);
}

#[test]
fn should_stop_ends_the_epoch_between_batches() {
    let x = inputs(10);
    let values = vec![0.5; 20];
    let mut net = Network::<f64>::new(spec(LossSpec::Mse, 2)).unwrap();
    let mut calls = 0;
    let outcome = net
        .fit_epoch(
            Samples::new(&x, Targets::Values(&values), 10),
            &epoch(2, true),
            None,
            &mut |_| {
                calls += 1;
                calls > 2
            },
        )
        .unwrap();
    assert_eq!((outcome.batches, outcome.stopped), (2, true));
    assert_eq!(net.optimizer().steps(), 2);
}

#[test]
fn refused_input_changes_nothing() {
    let x = inputs(4);
    let mut net = Network::<f64>::new(spec(
        LossSpec::CrossEntropy {
            label_smoothing: 0.0,
            weight: None,
        },
        3,
    ))
    .unwrap();
    let before = net.clone();
    let bad_label = [0i64, 1, 2, 0];
    let err = net
        .train_step(Samples::new(&x, Targets::Labels(&bad_label), 4))
        .unwrap_err();
    assert!(
        matches!(err, Error::Value { ref arg, .. } if arg == "y"),
        "{err:?}"
    );
    let err = net
        .fit_epoch(
            Samples::new(&x, Targets::Labels(&bad_label), 4),
            &epoch(1, true),
            None,
            &mut |_| false,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Value { ref arg, .. } if arg == "y"),
        "{err:?}"
    );
    let err = net
        .train_step(Samples::new(&x[..5], Targets::Labels(&[0, 1]), 2))
        .unwrap_err();
    assert!(
        matches!(err, Error::Shape { ref arg, .. } if arg == "X"),
        "{err:?}"
    );
    assert!(net.apply_gradients(&[1.0]).is_err());
    assert_eq!(net.params(), before.params());
    assert_eq!(net.rng(), before.rng());
    assert_eq!(net.optimizer().steps(), 0);
}

#[test]
fn descriptions_that_do_not_chain_are_refused() {
    let mut s = spec(LossSpec::Mse, 0);
    s.layers[2] = LayerSpec::Dense {
        in_features: 6,
        out_features: 4,
        bias: true,
    };
    let err = Network::<f32>::new(s).unwrap_err();
    assert!(
        matches!(err, Error::Spec { ref arg, .. } if arg == "layers[2]"),
        "{err:?}"
    );
    let only_activations = NetworkSpec {
        layers: vec![LayerSpec::Relu],
        ..spec(LossSpec::Mse, 0)
    };
    assert!(Network::<f32>::new(only_activations).is_err());
    assert!(NetworkSpec::from_json(r#"{"layers": [{"type": "conv"}]}"#).is_err());
}

#[test]
fn json_description_round_trips_with_torch_defaults() {
    let s = NetworkSpec::from_json(
        r#"{"layers": [{"type": "dense", "in_features": 2, "out_features": 1}, {"type": "leaky_relu"}],
            "loss": {"type": "huber"}, "optimizer": {"type": "adamw"}}"#,
    )
    .unwrap();
    assert_eq!(
        s.layers[1],
        LayerSpec::LeakyRelu {
            negative_slope: 0.01
        }
    );
    assert_eq!(s.loss, LossSpec::Huber { delta: 1.0 });
    assert!(
        matches!(s.optimizer, OptimizerSpec::AdamW(bpcore_core::optim::AdamW { weight_decay, lr, .. }) if weight_decay == 0.01 && lr == 1e-3)
    );
    assert_eq!(NetworkSpec::from_json(&s.to_json()).unwrap(), s);
}

fn sgd_spec(lr: f64) -> NetworkSpec {
    NetworkSpec {
        optimizer: OptimizerSpec::Sgd(bpcore_core::optim::Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay: Vec::new(),
        }),
        ..spec(LossSpec::Mse, 5)
    }
}

#[test]
fn a_diverging_epoch_stops_at_the_batch_with_finite_weights() {
    let x = inputs(32);
    let values = vec![1e3; 64];
    let mut net = Network::<f32>::new(sgd_spec(50.0)).unwrap();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let v32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let mut err = None;
    for _ in 0..50 {
        if let Err(e) = net.fit_epoch(
            Samples::new(&x32, Targets::Values(&v32), 32),
            &epoch(4, false),
            None,
            &mut |_| false,
        ) {
            err = Some(e);
            break;
        }
    }
    match err {
        Some(e @ Error::Diverged { batch: Some(_), .. }) => assert!(e.divergence().is_some()),
        other => panic!("expected divergence, got {other:?}"),
    }
    assert!(net.params().iter().all(|p| p.is_finite()));
}

#[test]
fn clipping_scales_the_step_to_the_global_norm() {
    let x = inputs(8);
    let values = vec![5.0; 16];
    let mut net = Network::<f64>::new(sgd_spec(1.0)).unwrap();
    let mut free = net.clone();
    net.set_clip_grad_norm(Some(0.01)).unwrap();
    let before = net.params().to_vec();
    net.train_step(Samples::new(&x, Targets::Values(&values), 8))
        .unwrap();
    free.train_step(Samples::new(&x, Targets::Values(&values), 8))
        .unwrap();
    let moved = |p: &[f64]| {
        p.iter()
            .zip(&before)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    };
    assert!(
        (moved(net.params()) - 0.01).abs() < 1e-8,
        "{}",
        moved(net.params())
    );
    assert!(moved(free.params()) > 0.1);
    assert!(net.set_clip_grad_norm(Some(-1.0)).is_err());
    assert_eq!(net.clip_grad_norm(), Some(0.01));
}

#[test]
fn an_epoch_reports_gradient_norms_update_ratios_and_weight_norms_per_tensor() {
    let x = inputs(16);
    let values = vec![0.3; 32];
    let mut net = Network::<f64>::new(sgd_spec(0.1)).unwrap();
    let outcome = net
        .fit_epoch(
            Samples::new(&x, Targets::Values(&values), 16),
            &epoch(4, true),
            None,
            &mut |_| false,
        )
        .unwrap();
    assert_eq!(outcome.grad_norms.len(), net.param_info().len());
    assert_eq!(outcome.update_ratios.len(), net.param_info().len());
    assert!(outcome.grad_norms.iter().all(|g| g.is_finite() && *g > 0.0));
    assert!(outcome
        .update_ratios
        .iter()
        .all(|r| r.is_finite() && *r > 0.0));
    // The norms of the weights the epoch ended with, tensor by tensor.
    let params = net.params();
    let want: Vec<f64> = net
        .param_info()
        .iter()
        .map(|p| {
            let tensor = &params[p.offset..p.offset + p.len()];
            tensor.iter().map(|v| v * v).sum::<f64>().sqrt()
        })
        .collect();
    assert_eq!(outcome.weight_norms.len(), want.len());
    for (got, want) in outcome.weight_norms.iter().zip(&want) {
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    }
}
