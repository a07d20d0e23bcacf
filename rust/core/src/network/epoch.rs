//! One epoch of mini-batch training, all inside Rust: the same loop for a process training
//! alone and for every rank of a data-parallel group.
//!
//! Each step computes this process's share of the step's gradients (network/batches.rs says
//! which samples), lets the caller's [`Reduce`] sum the shares over the ranks, and applies the
//! optimizer step to the sum. Alone, the share is the whole batch and nothing is reduced.
//!
//! A rank's share goes into one contiguous buffer, `[gradients | loss | failures]`: its
//! gradients and mean loss scaled by its part of the step's samples (so that the sum over
//! ranks is the mean over the whole step, however unevenly it is shared), and a failures slot
//! that tells every rank in the same reduction that one rank could not compute its share.
//! Since every rank applies the same sums, parameters that start equal stay equal.

use super::batches::{Plan, Ranks, Step};
use super::stats::update_ratios;
use super::training_state::BATCH_NORM_MIN_ROWS;
use super::{Clipping, MetricSums, Network};
use crate::loss::{self, Targets};
use crate::threads::Disjoint;
use crate::{Error, Real, Result, Samples};

/// Slots after the gradients in a data-parallel step's buffer: the loss, then the failures.
pub const REDUCE_SLOTS: usize = 2;
/// Largest step whose sample count a float32 buffer's scale factors keep exact (2^24).
const MAX_EXACT_ROWS_F32: usize = 1 << 24;
/// Most samples `epoch_order` lists over all its epochs (a list of them is 8 bytes each).
const MAX_LISTED_SAMPLES: usize = 1 << 28;

/// The caller's sum of a data-parallel step's buffer over every rank, in place: one MPI
/// Allreduce. `failure` is this rank's error when it could not compute its share (its buffer
/// then holds zeros and a failures slot of 1). An `Err` ends the epoch with that error.
pub trait Reduce<T> {
    fn sum(&mut self, step: usize, buffer: &mut [T], failure: Option<&Error>) -> Result<()>;
}

/// How an epoch is cut into steps.
#[derive(Debug, Clone, Copy)]
pub struct EpochSettings<'a> {
    /// Samples per step and rank (the last step may have fewer).
    pub batch_size: usize,
    /// Whether the network's generator shuffles the samples (else they are taken in order).
    pub shuffle: bool,
    /// The epoch's number, for a divergence error to name (the caller's count, 1-based).
    pub number: Option<usize>,
    /// The data-parallel group the samples are one shard of; `None`: this process alone.
    pub ranks: Option<Ranks<'a>>,
    /// The learning rate of each step (a per-step schedule's), at least one per step; `None`:
    /// the optimizer's, unchanged.
    pub step_lrs: Option<&'a [f64]>,
    /// The gradients' global norm clipped to this at every step of the epoch; `None`: the
    /// network's own setting (`Network::clip_grad_norm`).
    pub clip_grad_norm: Option<f64>,
    /// Every gradient element clipped to ±this before each step, after the norm's clipping.
    pub clip_grad_value: Option<f64>,
    /// Batches whose gradients make one optimizer step (1: a step per batch); their mean over
    /// all their samples, as one batch of them all. A last group may have fewer batches.
    pub gradient_accumulation_steps: usize,
}

impl Default for EpochSettings<'_> {
    /// Batches of 1, in order, alone, with the optimizer's learning rate, no value clipping and
    /// a step per batch.
    fn default() -> Self {
        EpochSettings {
            batch_size: 1,
            shuffle: false,
            number: None,
            ranks: None,
            step_lrs: None,
            clip_grad_norm: None,
            clip_grad_value: None,
            gradient_accumulation_steps: 1,
        }
    }
}

impl<'a> EpochSettings<'a> {
    /// The group the samples are a shard of: `ranks`, or this process alone with `alone` (its
    /// one shard's size).
    fn ranks_or<'b>(&self, alone: &'b [usize]) -> Ranks<'b>
    where
        'a: 'b,
    {
        self.ranks.unwrap_or(Ranks {
            rank: 0,
            shard_rows: alone,
        })
    }
}

/// What one epoch of `fit_epoch` did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochOutcome {
    /// Mean training loss over the samples seen (each step's mean loss weighted by its size,
    /// over every rank); with sample weights, the weighted loss of the epoch.
    pub loss: f64,
    /// Steps completed.
    pub batches: usize,
    /// Whether `on_batch` ended the epoch early.
    pub stopped: bool,
    /// Per parameter tensor (`param_info` order): the mean gradient norm over the epoch's steps.
    pub grad_norms: Vec<f64>,
    /// Per parameter tensor: ‖change over the epoch‖ / ‖value at its start‖.
    pub update_ratios: Vec<f64>,
    /// The training metrics' sums over this process's shares, from the steps' own outputs.
    pub metrics: MetricSums,
}

/// Where an epoch stands, as `on_batch` sees it before each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub batches: usize,
    /// Samples of the finished steps, over every rank.
    pub samples: usize,
    /// Σ over finished steps of step loss × step samples.
    pub loss_sum: f64,
}

/// What an epoch keeps between epochs: its plan, the buffers a shuffled share is gathered
/// into, the reduction buffer, and the parameters when the epoch began.
#[derive(Debug, Clone, Default)]
pub(super) struct EpochBuffers<T> {
    plan: Plan,
    x: Vec<T>,
    values: Vec<T>,
    labels: Vec<i64>,
    weights: Vec<T>,
    reduced: Vec<T>,
    accumulated: Vec<T>,
    params_at_start: Vec<T>,
}

/// Copies the rows `idx` of a row-major `width`-wide buffer into `dst`.
fn gather<X: Copy + Default + Send + Sync>(
    src: &[X],
    width: usize,
    idx: &[usize],
    dst: &mut Vec<X>,
) {
    // Every element is written below: only a grown buffer is filled first.
    dst.truncate(idx.len() * width);
    dst.resize(idx.len() * width, X::default());
    let rows = Disjoint::new(&mut dst[..]);
    // Blocks of about 64 KB of f32 rows, copied on the team for a wide input.
    let block_rows = (GATHER_BLOCK / width.max(1)).max(1);
    crate::threads::for_blocks(idx.len(), block_rows, &|block| {
        // SAFETY: `for_blocks` hands out each block of rows once.
        let out = unsafe { rows.range(block.start * width..block.end * width) };
        for (row, &i) in out.chunks_exact_mut(width.max(1)).zip(&idx[block]) {
            // panic-free: idx holds sample indices below n, and check_training_data proved
            // src.len() == n × width.
            row.copy_from_slice(&src[i * width..(i + 1) * width]);
        }
    });
}

/// Values per block of a gathered batch.
const GATHER_BLOCK: usize = 16 * 1024;

impl<T: Real> Network<T> {
    /// Checks samples as every step of an epoch would, all at once: the inputs finite and of
    /// the input width, the targets right for the loss (labels in range), the optional weights
    /// one per sample, finite and >= 0.
    pub fn check_training_data(&self, data: Samples<'_, T>) -> Result<()> {
        self.check_input(data.x, data.n)?;
        loss::check_targets(&self.spec.loss, data.targets, data.n, self.output_width())?;
        if let Some(w) = data.weights {
            loss::check_weights(w, data.n)?;
        }
        Ok(())
    }

    /// Length of a data-parallel step's buffer: the parameters and [`REDUCE_SLOTS`].
    pub fn reduce_len(&self) -> usize {
        self.params.len() + REDUCE_SLOTS
    }

    /// One epoch of mini-batch training on `data`, cut into steps as `settings` say; on a rank
    /// of a data-parallel group, `reduce` sums every step's buffer over the ranks.
    ///
    /// `on_batch` sees the progress before each step (for Ctrl-C and progress bars); a `true`
    /// ends the epoch there. A diverging step ends it with `Error::Diverged` naming the epoch
    /// and batch, the network holding the weights of the last finite step. Everything is
    /// checked before the first step: a refused epoch changes nothing.
    pub fn fit_epoch(
        &mut self,
        data: Samples<'_, T>,
        settings: &EpochSettings<'_>,
        mut reduce: Option<&mut dyn Reduce<T>>,
        on_batch: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<EpochOutcome> {
        let alone = [data.n];
        let ranks = settings.ranks_or(&alone);
        // Every sample is checked now, so that a bad label cannot stop the epoch half-way with
        // the network changed.
        self.check_training_data(data)?;
        self.check_epoch(data.n, settings, &ranks, reduce.is_some())?;
        let mut buffers = std::mem::take(&mut self.epoch);
        let generator = self.rng.clone();
        let shuffle = settings.shuffle.then_some(&mut self.rng);
        buffers.plan.make(ranks, settings.batch_size, shuffle);
        let planned = self.check_plan(&buffers.plan, settings);
        if planned.is_err() {
            self.rng = generator; // refused before its first step: nothing changes
        }
        let outcome = planned.and_then(|()| {
            self.begin_epoch_stats(&mut buffers);
            self.run_steps(data, settings, &mut buffers, &mut reduce, on_batch)
        });
        let outcome = outcome.map(|outcome| EpochOutcome {
            update_ratios: update_ratios(&self.param_info, &buffers.params_at_start, &self.params),
            ..outcome
        });
        self.epoch = buffers;
        outcome
    }

    /// Checks, changing nothing, that `epochs` epochs of `n` samples can run as `settings`
    /// say: the settings themselves, and the shares' sizes of its plan (the same in every
    /// epoch, shuffled or not). A fit calls it before its first epoch, so that a
    /// batch norm that would meet a share of one sample is refused before anything changes.
    pub fn check_epochs(
        &self,
        n: usize,
        settings: &EpochSettings<'_>,
        epochs: usize,
    ) -> Result<()> {
        let alone = [n];
        let ranks = settings.ranks_or(&alone);
        self.check_epoch(n, settings, &ranks, ranks.shard_rows.len() > 1)?;
        if epochs == 0 {
            return Ok(());
        }
        // Shuffling permutes each shard but keeps the shares' sizes: every epoch's plan has
        // the first one's.
        let mut plan = Plan::default();
        plan.make(ranks, settings.batch_size, None);
        self.check_plan(&plan, settings)
    }

    /// The samples every step of the next `epochs` epochs takes, as the network's generator
    /// stands now (it is not advanced), over every rank of a group whose shards hold
    /// `shard_rows` samples: see [`super::batches::epoch_order`].
    pub fn epoch_order(
        &self,
        shard_rows: &[usize],
        batch_size: usize,
        shuffle: bool,
        epochs: usize,
    ) -> Result<Vec<Vec<Vec<usize>>>> {
        if batch_size == 0 {
            return Err(Error::value("batch_size", "must be at least 1, got 0"));
        }
        let total = shard_rows
            .iter()
            .try_fold(0usize, |sum, &rows| sum.checked_add(rows))
            .and_then(|n| n.checked_mul(epochs));
        if !matches!(total, Some(t) if t <= MAX_LISTED_SAMPLES) {
            return Err(Error::value(
                "epochs",
                format!("lists at most {MAX_LISTED_SAMPLES} samples over all epochs"),
            ));
        }
        let rng = shuffle.then_some(&self.rng);
        Ok(super::batches::epoch_order(
            shard_rows, batch_size, rng, epochs,
        ))
    }

    fn check_epoch(
        &self,
        n: usize,
        settings: &EpochSettings<'_>,
        ranks: &Ranks<'_>,
        reduces: bool,
    ) -> Result<()> {
        if settings.batch_size == 0 {
            return Err(Error::value("batch_size", "must be at least 1, got 0"));
        }
        if settings.gradient_accumulation_steps == 0 {
            return Err(Error::value(
                "gradient_accumulation_steps",
                "must be at least 1, got 0",
            ));
        }
        for (arg, clip) in [
            ("clip_grad_norm", settings.clip_grad_norm),
            ("clip_grad_value", settings.clip_grad_value),
        ] {
            if let Some(v) = clip.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(Error::value(arg, format!("must be a number > 0, got {v}")));
            }
        }
        let rates = settings.step_lrs.unwrap_or_default();
        if let Some((i, rate)) = rates
            .iter()
            .enumerate()
            .find(|(_, r)| !(r.is_finite() && **r >= 0.0))
        {
            return Err(Error::value(
                "step_lrs",
                format!("learning rates must be finite and >= 0, got {rate} at step {i}"),
            ));
        }
        if ranks.shard_rows.get(ranks.rank) != Some(&n) {
            return Err(Error::value(
                "ranks",
                format!(
                    "rank {} of shards {:?} does not hold the {n} samples given",
                    ranks.rank, ranks.shard_rows
                ),
            ));
        }
        if ranks.shard_rows.len() > 1 && !reduces {
            return Err(Error::value(
                "reduce",
                "a data-parallel epoch needs the sum over its ranks",
            ));
        }
        let step_rows = settings
            .batch_size
            .saturating_mul(ranks.shard_rows.len())
            .min(ranks.shard_rows.iter().sum());
        if reduces && std::mem::size_of::<T>() == 4 && step_rows >= MAX_EXACT_ROWS_F32 {
            return Err(Error::value(
                "batch_size",
                format!(
                    "a float32 data-parallel step counts fewer than 2^24 samples, got {step_rows}"
                ),
            ));
        }
        // A share never holds more than a step's samples (batch_size may exceed them).
        self.check_batch_memory(step_rows.min(n))
    }

    /// Refuses a plan with a share that batch norm cannot normalize (one sample).
    fn check_plan(&self, plan: &Plan, settings: &EpochSettings<'_>) -> Result<()> {
        if let Some(rates) = settings.step_lrs {
            let steps = plan
                .steps
                .len()
                .div_ceil(settings.gradient_accumulation_steps.max(1));
            if rates.len() < steps {
                return Err(Error::value(
                    "step_lrs",
                    format!(
                        "one learning rate per optimizer step: the epoch has {steps} steps, got \
                         {} rates",
                        rates.len()
                    ),
                ));
            }
        }
        let Some((rows, rank, step)) = plan.smallest_share else {
            return Ok(());
        };
        if self.check_training_batch(rows).is_ok() {
            return Ok(());
        }
        let batch_size = settings.batch_size;
        let whose = match settings.ranks {
            Some(r) if r.shard_rows.len() > 1 => {
                format!("rank {rank}'s share of step {step} has {rows}")
            }
            _ => format!(
                "{} samples in batches of {batch_size} leave a last batch of {rows}",
                plan.steps.iter().map(|s| s.rows).sum::<usize>()
            ),
        };
        Err(Error::value(
            "batch_size",
            format!(
                "BatchNorm1d needs at least {BATCH_NORM_MIN_ROWS} samples per training batch, \
                 but {whose}; choose another batch_size"
            ),
        ))
    }

    fn run_steps(
        &mut self,
        data: Samples<'_, T>,
        settings: &EpochSettings<'_>,
        buffers: &mut EpochBuffers<T>,
        reduce: &mut Option<&mut dyn Reduce<T>>,
        on_batch: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<EpochOutcome> {
        let mut outcome = EpochOutcome {
            loss: 0.0,
            batches: 0,
            stopped: false,
            grad_norms: Vec::new(),
            update_ratios: Vec::new(),
            metrics: MetricSums::default(),
        };
        let mut seen = 0usize;
        let mut grads = std::mem::take(&mut self.grads);
        let EpochBuffers {
            plan,
            x,
            values,
            labels,
            weights,
            reduced,
            accumulated,
            ..
        } = buffers;
        if reduce.is_some() {
            reduced.resize(self.reduce_len(), T::zero());
        }
        let k = settings.gradient_accumulation_steps.max(1);
        // Samples of each optimizer step over every rank: its k batches'.
        let group_rows: Vec<usize> = plan
            .steps
            .chunks(k)
            .map(|group| group.iter().map(|s| s.global_rows).sum())
            .collect();
        let mut accumulated_loss = 0.0;
        let clip = Clipping {
            norm: settings.clip_grad_norm.or(self.clip_grad_norm),
            value: settings.clip_grad_value,
        };
        let mut result = Ok(());
        for (s, step) in plan.steps.iter().enumerate() {
            let progress = Progress {
                batches: outcome.batches,
                samples: seen,
                loss_sum: outcome.loss,
            };
            if on_batch(progress) {
                outcome.stopped = true;
                break;
            }
            if let Some(rates) = settings.step_lrs {
                // One rate per optimizer step (of k accumulated batches).
                self.optimizer.set_lr(rates[s / k]);
            }
            let share = if settings.shuffle {
                let idx = &plan.order[step.start..step.start + step.rows];
                self.gather_share(data, idx, x, values, labels, weights)
            } else {
                let (w_in, w_out) = (self.input_width(), self.output_width());
                data.rows(step.start, step.start + step.rows, w_in, w_out)
            };
            let computed = match reduce.as_deref_mut() {
                None => self.checked_gradients_into(share, step.offset, &mut grads),
                Some(r) => self.reduced_gradients(share, step, s, reduced, r),
            };
            // The step's mean gradient: the whole batch's alone, the sum of the shares on ranks.
            let step_grads = match reduce {
                None => &mut grads[..],
                Some(_) => &mut reduced[..self.params.len()],
            };
            let taken = computed.and_then(|value| {
                if k == 1 {
                    return self.descend(value, step_grads, clip).map(|()| value);
                }
                // Accumulated: the optimizer step's gradient is the mean over its batches'
                // samples, as one batch of all of them.
                let (group, first) = (s / k, s % k == 0);
                let part = T::of(step.global_rows as f64 / group_rows[group] as f64);
                if first {
                    accumulated.clear();
                    accumulated.extend(step_grads.iter().map(|&g| g * part));
                    accumulated_loss = 0.0;
                } else {
                    for (a, &g) in accumulated.iter_mut().zip(step_grads.iter()) {
                        *a += g * part;
                    }
                }
                accumulated_loss += value * part.f64();
                if s % k == k - 1 || s + 1 == plan.steps.len() {
                    self.descend(accumulated_loss, accumulated, clip)?;
                }
                Ok(value)
            });
            let value = match taken {
                Ok(value) => value,
                Err(e) => {
                    result = Err(with_place(e, settings.number, s));
                    break;
                }
            };
            outcome.loss += value * step.global_rows as f64;
            seen += step.global_rows;
            outcome.batches += 1;
        }
        self.grads = grads;
        result?;
        if seen > 0 {
            outcome.loss /= seen as f64;
        }
        outcome.grad_norms = self.grad_stats.mean_norms(self.param_info.len());
        outcome.metrics = MetricSums::clone(&self.metrics);
        Ok(outcome)
    }

    /// The share of the samples `idx`, gathered into the epoch's buffers.
    fn gather_share<'b>(
        &self,
        data: Samples<'_, T>,
        idx: &[usize],
        x: &'b mut Vec<T>,
        values: &'b mut Vec<T>,
        labels: &'b mut Vec<i64>,
        weights: &'b mut Vec<T>,
    ) -> Samples<'b, T> {
        gather(data.x, self.input_width(), idx, x);
        let targets = match data.targets {
            Targets::Labels(l) => {
                gather(l, 1, idx, labels);
                Targets::Labels(&labels[..])
            }
            Targets::Values(v) => {
                gather(v, self.output_width(), idx, values);
                Targets::Values(&values[..])
            }
        };
        let w = data.weights.map(|w| {
            gather(w, 1, idx, weights);
            &weights[..]
        });
        Samples::new(&x[..], targets, idx.len()).weighted(w)
    }

    /// A data-parallel step's gradients: this rank's share into `buffer`, then the sum over the
    /// ranks (the step's mean gradient, in `buffer`'s first `params` elements). Returns the
    /// step's mean loss over every rank.
    fn reduced_gradients(
        &mut self,
        share: Samples<'_, T>,
        step: &Step,
        index: usize,
        buffer: &mut [T],
        reduce: &mut dyn Reduce<T>,
    ) -> Result<f64> {
        let p = self.params.len();
        let (own, failure) = match self.share_into(share, step, buffer) {
            Ok(value) => (value, None),
            Err(e) => {
                buffer.fill(T::zero());
                buffer[p + 1] = T::one();
                (f64::NAN, Some(e))
            }
        };
        reduce.sum(index, buffer, failure.as_ref())?;
        if let Some(e) = failure {
            return Err(e);
        }
        let slots = &buffer[p..];
        if slots[1] != T::zero() {
            return Err(Error::Stopped(format!(
                "{} ranks could not compute their share",
                slots[1].f64()
            )));
        }
        // A share that is the whole step keeps its loss in f64 (the buffer may be f32), so
        // that a group of one reports what a lone process does.
        let value = if step.rows == step.global_rows {
            own
        } else {
            slots[0].f64()
        };
        Ok(value)
    }

    /// This rank's share of a step in the layout of the module docs; returns the share's own
    /// loss. An empty share still counts the training forward, so that every rank keys the
    /// next step's masks alike.
    fn share_into(&mut self, share: Samples<'_, T>, step: &Step, buffer: &mut [T]) -> Result<f64> {
        let p = self.params.len();
        let (grads, slots) = buffer.split_at_mut(p);
        if share.n == 0 {
            grads.fill(T::zero());
            slots.fill(T::zero());
            self.set_training_forwards(self.training_forwards().saturating_add(1));
            return Ok(0.0);
        }
        let value = self.checked_gradients_into(share, step.offset, grads)?;
        // Exactly 1 alone (and x × 1 is x), so one rank in a group steps as a lone process.
        let part = share.n as f64 / step.global_rows as f64;
        if part != 1.0 {
            let scale = T::of(part);
            grads.iter_mut().for_each(|g| *g *= scale);
        }
        slots[0] = T::of(value * part);
        slots[1] = T::zero();
        Ok(value)
    }

    fn begin_epoch_stats(&mut self, buffers: &mut EpochBuffers<T>) {
        buffers.params_at_start.clear();
        buffers.params_at_start.extend_from_slice(&self.params);
        self.grad_stats.reset();
        self.metrics.clear();
    }
}

/// A divergence error with the epoch and batch it happened in.
fn with_place(e: Error, epoch: Option<usize>, batch: usize) -> Error {
    match e {
        Error::Diverged { loss, norm, .. } => Error::Diverged {
            epoch,
            batch: Some(batch),
            loss,
            norm,
        },
        other => other,
    }
}

#[cfg(test)]
#[path = "tests/epoch.rs"]
mod tests;
