//! Saving and restoring the training state (optimizer buffers and steps, the shuffling
//! generator, the training-forward counter) resumes training exactly.

use bpcore_core::network::EpochSettings;
use bpcore_core::{LayerSpec, LossSpec, Network, NetworkSpec, OptimizerSpec, Samples, Targets};

/// The settings of an epoch of one process in steps of `batch_size`.
fn settings(batch_size: usize, shuffle: bool) -> EpochSettings<'static> {
    EpochSettings {
        batch_size,
        shuffle,
        number: None,
        ranks: None,
        ..EpochSettings::default()
    }
}

fn spec() -> NetworkSpec {
    NetworkSpec {
        layers: vec![
            LayerSpec::Dense {
                in_features: 2,
                out_features: 6,
                bias: true,
            },
            LayerSpec::Dropout { p: 0.25 },
            LayerSpec::Tanh,
            LayerSpec::Dense {
                in_features: 6,
                out_features: 1,
                bias: true,
            },
        ],
        loss: LossSpec::Mse,
        optimizer: OptimizerSpec::Adam(bpcore_core::optim::Adam {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            amsgrad: false,
        }),
        seed: 9,
    }
}

fn epoch(net: &mut Network<f64>, x: &[f64], y: &[f64]) {
    let outcome = net.fit_epoch(
        Samples::new(x, Targets::Values(y), 8),
        &settings(3, true),
        None,
        &mut |_| false,
    );
    assert!(outcome.is_ok());
}

#[test]
fn a_restored_state_trains_on_identically() {
    let x: Vec<f64> = (0..16).map(|i| (i as f64 * 0.37).sin()).collect();
    let y: Vec<f64> = (0..8).map(|i| (i as f64 * 0.5).cos()).collect();
    let mut a = Network::<f64>::new(spec()).expect("valid spec");
    epoch(&mut a, &x, &y);

    let mut b = Network::<f64>::new(spec()).expect("valid spec");
    b.set_params(a.params()).expect("same layout");
    let state = a.optimizer().state().to_vec();
    b.optimizer_mut()
        .load_state(a.optimizer().steps(), &state)
        .expect("same optimizer");
    b.set_rng_state(a.rng().state()).expect("a valid state");
    b.set_training_forwards(a.training_forwards());

    epoch(&mut a, &x, &y);
    epoch(&mut b, &x, &y);
    assert_eq!(a.params(), b.params());
    assert_eq!(a.optimizer().state(), b.optimizer().state());
}

#[test]
fn the_all_zero_generator_state_is_refused() {
    let mut net = Network::<f32>::new(spec()).expect("valid spec");
    let before = net.rng().state();
    assert!(net.set_rng_state([0; 4]).is_err());
    assert_eq!(net.rng().state(), before);
}
