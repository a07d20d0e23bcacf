//! Tests of `network/epoch.rs`: data-parallel ranks simulated by threads of one process, whose
//! buffers a shared sum adds up where MPI's Allreduce would.
use std::sync::{Barrier, Mutex};

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
            weight: None,
        },
        optimizer: OptimizerSpec::Adam(crate::optim::Adam {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            amsgrad: false,
        }),
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

/// An Allreduce between threads: each adds its buffer, waits for all, takes the sum.
struct SharedSum {
    sum: Mutex<Vec<f64>>,
    barrier: Barrier,
}

impl SharedSum {
    fn new(ranks: usize) -> Self {
        SharedSum {
            sum: Mutex::new(Vec::new()),
            barrier: Barrier::new(ranks),
        }
    }
}

impl Reduce<f64> for &SharedSum {
    fn sum(&mut self, _step: usize, buffer: &mut [f64], _failure: Option<&Error>) -> Result<()> {
        {
            let mut sum = self.sum.lock().unwrap();
            sum.resize(buffer.len(), 0.0);
            sum.iter_mut().zip(&*buffer).for_each(|(s, b)| *s += b);
        }
        self.barrier.wait();
        buffer.copy_from_slice(&self.sum.lock().unwrap());
        if self.barrier.wait().is_leader() {
            self.sum.lock().unwrap().iter_mut().for_each(|s| *s = 0.0);
        }
        self.barrier.wait();
        Ok(())
    }
}

/// Leaves every buffer as it is: the sum over a group of one.
struct Alone;

impl Reduce<f64> for Alone {
    fn sum(&mut self, _step: usize, _buffer: &mut [f64], _failure: Option<&Error>) -> Result<()> {
        Ok(())
    }
}

fn settings(batch_size: usize, shuffle: bool, ranks: Option<Ranks<'_>>) -> EpochSettings<'_> {
    EpochSettings {
        batch_size,
        shuffle,
        number: Some(1),
        ranks,
        ..EpochSettings::default()
    }
}

/// Each rank's network after `epochs` epochs on its shard, every rank a thread.
fn train_ranks(
    sizes: &[usize],
    batch_size: usize,
    shuffle: bool,
    epochs: usize,
) -> Vec<(Network<f64>, Vec<f64>)> {
    let total: usize = sizes.iter().sum();
    let (x, labels) = data(total);
    let shared = SharedSum::new(sizes.len());
    let starts: Vec<usize> = sizes
        .iter()
        .scan(0, |end, &k| {
            *end += k;
            Some(*end - k)
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..sizes.len())
            .map(|rank| {
                let (shared, x, labels) = (&shared, &x, &labels);
                let (a, n) = (starts[rank], sizes[rank]);
                scope.spawn(move || {
                    let mut net = Network::<f64>::new(spec()).unwrap();
                    let mut losses = Vec::new();
                    let ranks = Ranks {
                        rank,
                        shard_rows: sizes,
                    };
                    let shard = Samples::new(
                        &x[a * 5..(a + n) * 5],
                        Targets::Labels(&labels[a..a + n]),
                        n,
                    );
                    for _ in 0..epochs {
                        let mut reduce = shared;
                        let outcome = net
                            .fit_epoch(
                                shard,
                                &settings(batch_size, shuffle, Some(ranks)),
                                Some(&mut reduce),
                                &mut |_| false,
                            )
                            .unwrap();
                        losses.push(outcome.loss);
                    }
                    (net, losses)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn assert_close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-12, "{what}: {x} vs {y}");
    }
}

/// The network after one process takes `steps` (sample indices into the whole data set)
/// one `train_step` each, with each step's loss.
fn train_steps(steps: &[Vec<usize>], total: usize) -> (Network<f64>, Vec<f64>) {
    let (x, labels) = data(total);
    let mut single = Network::<f64>::new(spec()).unwrap();
    let losses = steps
        .iter()
        .map(|rows| {
            let xs: Vec<f64> = rows
                .iter()
                .flat_map(|&i| x[i * 5..(i + 1) * 5].to_vec())
                .collect();
            let ls: Vec<i64> = rows.iter().map(|&i| labels[i]).collect();
            single
                .train_step(Samples::new(&xs, Targets::Labels(&ls), rows.len()))
                .unwrap()
        })
        .collect();
    (single, losses)
}

#[test]
fn shuffled_ranks_train_as_one_process_taking_the_epoch_order() {
    // Uneven shards and dropout: the masks follow the sample's row in the step.
    for sizes in [vec![12, 11], vec![7, 1, 9]] {
        let total: usize = sizes.iter().sum();
        let fresh = Network::<f64>::new(spec()).unwrap();
        let epochs = fresh.epoch_order(&sizes, 3, true, 3).unwrap();
        let steps: Vec<Vec<usize>> = epochs.iter().flatten().cloned().collect();
        let (single, step_losses) = train_steps(&steps, total);
        // An epoch's loss is its steps' losses weighted by their samples.
        let mut want = Vec::new();
        let mut taken = 0;
        for epoch in &epochs {
            let (mut sum, mut rows) = (0.0, 0);
            for step in epoch {
                sum += step_losses[taken] * step.len() as f64;
                rows += step.len();
                taken += 1;
            }
            want.push(sum / rows as f64);
        }
        let mut drawn = fresh.rng().clone();
        for _ in 0..3 {
            for &rows in &sizes {
                drawn.shuffle(&mut (0..rows).collect::<Vec<_>>());
            }
        }
        for (net, losses) in train_ranks(&sizes, 3, true, 3) {
            assert_close(&losses, &want, &format!("{sizes:?} losses"));
            assert_close(net.params(), single.params(), &format!("{sizes:?} params"));
            assert_eq!(net.training_forwards(), single.training_forwards());
            assert_eq!(
                net.rng().state(),
                drawn.state(),
                "every shard drawn, in rank order"
            );
        }
    }
}

#[test]
fn a_shuffled_share_never_waits_on_a_larger_one() {
    let fresh = Network::<f64>::new(spec()).unwrap();
    for epoch in fresh.epoch_order(&[40, 40], 8, true, 4).unwrap() {
        assert!(epoch.iter().all(|step| step.len() == 16));
        for step in epoch {
            assert_eq!(
                step.iter().filter(|&&i| i < 40).count(),
                8,
                "rank 0's share"
            );
        }
    }
}

#[test]
fn in_order_ranks_give_every_step_their_next_rows() {
    let sizes = [5, 3];
    let (x, labels) = data(8);
    let mut single = Network::<f64>::new(spec()).unwrap();
    // Rank 0 holds samples 0..5, rank 1 samples 5..8; batches of 2 per rank.
    for rows in [vec![0, 1, 5, 6], vec![2, 3, 7], vec![4]] {
        let xs: Vec<f64> = rows
            .iter()
            .flat_map(|&i| x[i * 5..(i + 1) * 5].to_vec())
            .collect();
        let ls: Vec<i64> = rows.iter().map(|&i| labels[i]).collect();
        single
            .train_step(Samples::new(&xs, Targets::Labels(&ls), rows.len()))
            .unwrap();
    }
    for (net, _) in train_ranks(&sizes, 2, false, 1) {
        assert_close(net.params(), single.params(), "params");
    }
}

#[test]
fn one_rank_that_reduces_steps_as_a_lone_process_bit_for_bit() {
    let (x, labels) = data(20);
    let all = Samples::new(&x[..], Targets::Labels(&labels), 20);
    let mut lone = Network::<f64>::new(spec()).unwrap();
    let mut grouped = lone.clone();
    let shards = [20];
    let ranks = Ranks {
        rank: 0,
        shard_rows: &shards,
    };
    for _ in 0..2 {
        let a = lone.fit_epoch(all, &settings(6, true, None), None, &mut |_| false);
        let b = grouped.fit_epoch(
            all,
            &settings(6, true, Some(ranks)),
            Some(&mut Alone),
            &mut |_| false,
        );
        assert_eq!(a.unwrap(), b.unwrap());
    }
    assert_eq!(lone.params(), grouped.params());
}

/// Another rank fails in step 1: its failures slot arrives in the sum.
struct FailsAtStep(usize);

impl Reduce<f64> for FailsAtStep {
    fn sum(&mut self, step: usize, buffer: &mut [f64], _failure: Option<&Error>) -> Result<()> {
        if step == self.0 {
            *buffer.last_mut().unwrap() += 1.0;
        }
        Ok(())
    }
}

#[test]
fn a_failed_rank_stops_every_rank_before_the_step() {
    let (x, labels) = data(8);
    let mut net = Network::<f64>::new(spec()).unwrap();
    let shards = [8, 8];
    let ranks = Ranks {
        rank: 0,
        shard_rows: &shards,
    };
    let all = Samples::new(&x[..], Targets::Labels(&labels), 8);
    let err = net
        .fit_epoch(
            all,
            &settings(2, false, Some(ranks)),
            Some(&mut FailsAtStep(1)),
            &mut |_| false,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Stopped(_)), "{err:?}");
    assert_eq!(net.optimizer().steps(), 1);
    // Alone with many shards, or with the wrong shard size, an epoch is refused up front.
    let unreduced = net.fit_epoch(all, &settings(2, false, Some(ranks)), None, &mut |_| false);
    assert!(matches!(unreduced, Err(Error::Value { .. })));
    let wrong = Ranks {
        rank: 1,
        shard_rows: &[8, 7],
    };
    let mismatched = net.fit_epoch(
        all,
        &settings(2, false, Some(wrong)),
        Some(&mut Alone),
        &mut |_| false,
    );
    assert!(matches!(mismatched, Err(Error::Value { .. })));
    assert_eq!(net.optimizer().steps(), 1);
}

#[test]
fn a_divergence_names_its_epoch_and_batch() {
    let (x, labels) = data(8);
    let mut net = Network::<f64>::new(spec()).unwrap();
    let all = Samples::new(&x[..], Targets::Labels(&labels), 8);
    net.fit_epoch(all, &settings(4, false, None), None, &mut |_| false)
        .unwrap();
    let good = net.params().to_vec();
    // Weights so large that the outputs overflow.
    let huge: Vec<f64> = good.iter().map(|_| f64::MAX).collect();
    net.set_params(&huge).unwrap();
    let err = net
        .fit_epoch(all, &settings(4, false, None), None, &mut |_| false)
        .unwrap_err();
    match err {
        Error::Diverged { epoch, batch, .. } => {
            assert_eq!((epoch, batch), (Some(1), Some(0)));
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
    assert_eq!(
        net.params(),
        &huge[..],
        "the diverging step was not applied"
    );
}

#[test]
fn an_epoch_reports_its_steps() {
    let (x, labels) = data(6);
    let mut net = Network::<f64>::new(spec()).unwrap();
    let all = Samples::new(&x[..], Targets::Labels(&labels), 6);
    let outcome = net
        .fit_epoch(all, &settings(3, true, None), None, &mut |_| false)
        .unwrap();
    assert_eq!(outcome.batches, 2);
    assert_eq!(outcome.metrics.rows, 6);
    assert_eq!(outcome.grad_norms.len(), 4);
    assert!(outcome.grad_norms.iter().all(|g| g.is_finite() && *g > 0.0));
    assert!(outcome.update_ratios.iter().all(|r| *r > 0.0));
}

#[test]
fn step_learning_rates_are_those_of_one_train_step_each() {
    let (x, labels) = data(10);
    let all = Samples::new(&x[..], Targets::Labels(&labels), 10);
    let rates = [0.1, 0.05, 0.0, 0.2];
    let mut net = Network::<f64>::new(spec()).unwrap();
    let settings = EpochSettings {
        batch_size: 3,
        step_lrs: Some(&rates),
        ..EpochSettings::default()
    };
    net.fit_epoch(all, &settings, None, &mut |_| false).unwrap();
    let mut single = Network::<f64>::new(spec()).unwrap();
    for (s, &lr) in rates.iter().enumerate() {
        single.optimizer_mut().set_lr(lr);
        let end = (3 * s + 3).min(10);
        let batch = Samples::new(
            &x[3 * s * 5..end * 5],
            Targets::Labels(&labels[3 * s..end]),
            end - 3 * s,
        );
        single.train_step(batch).unwrap();
    }
    assert_close(net.params(), single.params(), "params");
    assert_eq!(net.optimizer().lr(), 0.2, "the last step's rate stays");
    let short = EpochSettings {
        step_lrs: Some(&rates[..3]),
        ..settings
    };
    let before = net.params().to_vec();
    let e = net
        .fit_epoch(all, &short, None, &mut |_| false)
        .unwrap_err();
    assert!(e.to_string().contains("4 steps, got 3 rates"), "{e}");
    let negative = [0.1, -1.0, 0.1, 0.1];
    let e = net
        .fit_epoch(
            all,
            &EpochSettings {
                step_lrs: Some(&negative),
                ..settings
            },
            None,
            &mut |_| false,
        )
        .unwrap_err();
    assert!(e.to_string().starts_with("step_lrs:"), "{e}");
    assert!(e.to_string().ends_with("got -1 at step 1"), "{e}");
    assert_eq!(net.params(), &before[..], "a refused epoch changes nothing");
}

#[test]
fn clip_grad_value_clamps_each_gradient_after_the_norm() {
    let (x, labels) = data(6);
    let all = Samples::new(&x[..], Targets::Labels(&labels), 6);
    let mut net = Network::<f64>::new(spec()).unwrap();
    let settings = EpochSettings {
        batch_size: 6,
        clip_grad_value: Some(1e-3),
        ..EpochSettings::default()
    };
    let mut by_hand = Network::<f64>::new(spec()).unwrap();
    by_hand.gradients(all).unwrap();
    let clipped: Vec<f64> = by_hand
        .grads()
        .iter()
        .map(|g| g.clamp(-1e-3, 1e-3))
        .collect();
    assert!(
        by_hand.grads().iter().any(|g| g.abs() > 1e-3),
        "some gradient is clipped"
    );
    by_hand.apply_gradients(&clipped).unwrap();
    net.fit_epoch(all, &settings, None, &mut |_| false).unwrap();
    assert_close(net.params(), by_hand.params(), "params");
    let bad = EpochSettings {
        clip_grad_value: Some(0.0),
        ..settings
    };
    let e = net.fit_epoch(all, &bad, None, &mut |_| false).unwrap_err();
    assert!(e.to_string().starts_with("clip_grad_value:"), "{e}");
}
