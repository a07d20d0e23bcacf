//! One epoch of mini-batch training, all inside Rust: the same loop for a process training
//! alone and for every rank of a data-parallel group.
//!
//! Each step computes this process's share of the step's gradients (network/batches.rs says
//! which samples), lets the caller's [`Reduce`] sum the shares over the ranks, and applies the
//! optimizer step to the sum. Alone, the share is the whole batch and nothing is reduced.
//!
//! A rank's share goes into one contiguous buffer, `[gradients | loss | divisor | failures]`:
//! its gradients and mean loss scaled by its part of the step's samples (so that the sum over
//! ranks is the mean over the whole step, however unevenly it is shared), and a failures slot
//! that tells every rank in the same reduction that one rank could not compute its share.
//! Since every rank applies the same sums, parameters that start equal stay equal.
//!
//! A step whose loss divides by something its targets decide (cross_entropy's class weights,
//! the weights' sum under `weighted_mean`) cannot know its part beforehand: each share then
//! adds its gradients and loss as sums (the mean times its own divisor, `loss::divisor`) and
//! its divisor (`loss::weighted_divisor`) into the divisor slot, and the step divides the sums
//! by the divisors' sum once they are reduced, Σ_k S_k / Σ_k D_k. Accumulated batches add up
//! the same way.

use super::batches::{Plan, Ranks, Step};
use super::stats::{squared_norms, update_ratios};
use super::training_state::BATCH_NORM_MIN_ROWS;
use super::{Clipping, MetricSums, Network};
use crate::loss::{self, Targets};
use crate::threads::Disjoint;
use crate::{Error, Real, Result, Samples};

/// Slots after the gradients in a data-parallel step's buffer: the loss, the divisor, then the
/// failures.
pub const REDUCE_SLOTS: usize = 3;
/// The failures slot's place after the gradients.
const FAILURES: usize = REDUCE_SLOTS - 1;
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
    /// How a step's loss divides its samples' weighted losses: `false`, Keras's default
    /// reduction "sum_over_batch_size", Σ w_i·l_i / n (torch's mean of `w * l`); `true`,
    /// "mean_with_sample_weight", Σ w_i·l_i / Σ w_i (scikit-learn's MLPs). A weight of 2 is then
    /// a duplicated sample in its batch. With cross_entropy's class weights c, the divisor is
    /// Σ w_i·c_{y_i}.
    pub weighted_mean: bool,
    /// Whether the optimizer's weight decay is per unit of a step's divisor: each step decays
    /// by weight_decay / D, D its loss's divisor (its samples, or their weights' sum under
    /// `weighted_mean`), as scikit-learn adds ½·alpha·‖W‖² to a batch's sum before dividing.
    pub decay_per_divisor: bool,
}

impl Default for EpochSettings<'_> {
    /// Batches of 1, in order, alone, with the optimizer's learning rate, no value clipping, a
    /// step per batch, Keras's "sum_over_batch_size" and the optimizer's own decay.
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
            weighted_mean: false,
            decay_per_divisor: false,
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
    /// Per parameter tensor: ‖value at the epoch's end‖.
    pub weight_norms: Vec<f64>,
    /// The training metrics' sums over this process's shares, from the steps' own outputs.
    pub metrics: MetricSums,
    /// Under `decay_per_divisor`, the L2 term of the decay, ½·(weight_decay / D)·‖W‖² of the
    /// decayed parameters before each optimizer step, averaged as `loss` is (each step's term
    /// times its samples, over the samples seen): scikit-learn's loss adds it. 0 otherwise.
    pub penalty: f64,
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
        // panic-free (both loops): idx holds sample indices below n, and check_training_data
        // proved src.len() == n × width.
        if width == 1 {
            // Labels, weights, one target: a value each, not a copy call each.
            for (value, &i) in out.iter_mut().zip(&idx[block]) {
                *value = src[i];
            }
            return;
        }
        for (row, &i) in out.chunks_exact_mut(width.max(1)).zip(&idx[block]) {
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
        let outcome = outcome.map(|outcome| {
            let (info, after) = (&self.param_info, &self.params);
            let squares = squared_norms(info, after);
            EpochOutcome {
                update_ratios: update_ratios(info, &buffers.params_at_start, after, &squares),
                weight_norms: squares.iter().map(|s| s.sqrt()).collect(),
                ..outcome
            }
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
            weight_norms: Vec::new(),
            metrics: MetricSums::default(),
            penalty: 0.0,
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
        let mut accumulated_divisor = 0.0;
        // Σ over optimizer steps of the decay's L2 term times the step's samples.
        let mut penalty = 0.0;
        // Whether each share adds sums and divisors (see the module docs) rather than means.
        let ranks = settings.ranks.map_or(1, |r| r.shard_rows.len());
        let by_sums = (settings.weighted_mean && data.weights.is_some())
            || (loss::divisor_depends_on_targets(&self.spec.loss) && (ranks > 1 || k > 1));
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
                None => self
                    .checked_gradients_into(share, step.offset, &mut grads)
                    .map(|value| {
                        if by_sums {
                            let divisor = self.share_divisor(share, settings);
                            as_sums(&mut grads, value, share, &self.spec.loss, divisor)
                        } else {
                            (value, share.n as f64)
                        }
                    }),
                Some(r) => self.reduced_gradients(share, step, s, reduced, r, by_sums, settings),
            };
            // The step's mean gradient: the whole batch's alone, the sum of the shares on ranks.
            let step_grads = match reduce {
                None => &mut grads[..],
                Some(_) => &mut reduced[..self.params.len()],
            };
            let last = s % k == k - 1 || s + 1 == plan.steps.len();
            let taken = computed.and_then(|(value, divisor)| {
                if by_sums {
                    // Sums and divisors: the step divides once its group's are all in.
                    if s % k == 0 {
                        accumulated_loss = 0.0;
                        accumulated_divisor = 0.0;
                    }
                    accumulated_loss += value;
                    accumulated_divisor += divisor;
                    let grads = if k == 1 {
                        &mut step_grads[..]
                    } else {
                        if s % k == 0 {
                            accumulated.clear();
                            accumulated.extend_from_slice(step_grads);
                        } else {
                            for (a, &g) in accumulated.iter_mut().zip(step_grads.iter()) {
                                *a += g;
                            }
                        }
                        &mut accumulated[..]
                    };
                    if last {
                        let mean = divide(grads, accumulated_loss, accumulated_divisor);
                        self.set_step_decay(settings, accumulated_divisor);
                        penalty += self.step_penalty(settings, group_rows[s / k]);
                        self.descend(mean, grads, clip)?;
                    }
                    return Ok(if divisor > 0.0 { value / divisor } else { 0.0 });
                }
                // Not by sums: the loss divides by the samples, or alone by its targets' weights.
                let divisor = if loss::divisor_depends_on_targets(&self.spec.loss) {
                    loss::divisor(&self.spec.loss, share.targets, share.n)
                } else {
                    group_rows[s / k] as f64
                };
                self.set_step_decay(settings, divisor);
                if last {
                    penalty += self.step_penalty(settings, group_rows[s / k]);
                }
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
                if last {
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
        if settings.decay_per_divisor {
            self.optimizer.set_decay_scale(1.0);
        }
        result?;
        if seen > 0 {
            outcome.loss /= seen as f64;
            outcome.penalty = penalty / seen as f64;
        }
        outcome.grad_norms = self.grad_stats.mean_norms(self.param_info.len());
        outcome.metrics = MetricSums::clone(&self.metrics);
        Ok(outcome)
    }

    /// A share's part of its step's divisor when shares add sums: [`loss::weighted_divisor`]
    /// under `weighted_mean`, else [`loss::divisor`].
    fn share_divisor(&self, share: Samples<'_, T>, settings: &EpochSettings<'_>) -> f64 {
        let spec = &self.spec.loss;
        if settings.weighted_mean {
            loss::weighted_divisor(spec, share.targets, share.weights, share.n)
        } else {
            loss::divisor(spec, share.targets, share.n)
        }
    }

    /// Under `decay_per_divisor`, the next step's weight decay over its `divisor` (none for
    /// a step whose divisor is 0: it has no loss either).
    fn set_step_decay(&mut self, settings: &EpochSettings<'_>, divisor: f64) {
        if settings.decay_per_divisor {
            let scale = if divisor > 0.0 { 1.0 / divisor } else { 0.0 };
            self.optimizer.set_decay_scale(scale);
        }
    }

    /// Under `decay_per_divisor`, the L2 term of the step about to be taken (its decay set)
    /// times its `rows` samples; else 0.
    fn step_penalty(&self, settings: &EpochSettings<'_>, rows: usize) -> f64 {
        if settings.decay_per_divisor {
            self.optimizer.decay_penalty(&self.params) * rows as f64
        } else {
            0.0
        }
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
    /// ranks (the step's mean gradient, in `buffer`'s first `params` elements; `by_sums`: its
    /// sum, see the module docs). Returns the step's (mean loss, divisor) over every rank
    /// (`by_sums`: its (loss sum, divisor)).
    #[allow(clippy::too_many_arguments)]
    fn reduced_gradients(
        &mut self,
        share: Samples<'_, T>,
        step: &Step,
        index: usize,
        buffer: &mut [T],
        reduce: &mut dyn Reduce<T>,
        by_sums: bool,
        settings: &EpochSettings<'_>,
    ) -> Result<(f64, f64)> {
        let p = self.params.len();
        let (own, failure) = match self.share_into(share, step, buffer, by_sums, settings) {
            Ok(value) => (value, None),
            Err(e) => {
                buffer.fill(T::zero());
                buffer[p + FAILURES] = T::one();
                ((f64::NAN, f64::NAN), Some(e))
            }
        };
        reduce.sum(index, buffer, failure.as_ref())?;
        if let Some(e) = failure {
            return Err(e);
        }
        let slots = &buffer[p..];
        if slots[FAILURES] != T::zero() {
            return Err(Error::Stopped(format!(
                "{} ranks could not compute their share",
                slots[FAILURES].f64()
            )));
        }
        // A share that is the whole step keeps its loss and divisor in f64 (the buffer may be
        // f32), so that a group of one reports what a lone process does.
        if step.rows == step.global_rows {
            return Ok(own);
        }
        let divisor = if by_sums {
            slots[1].f64()
        } else {
            step.global_rows as f64
        };
        Ok((slots[0].f64(), divisor))
    }

    /// This rank's share of a step in the layout of the module docs; returns the share's own
    /// (loss, divisor), as sums with `by_sums`. An empty share still counts the training
    /// forward, so that every rank keys the next step's masks alike.
    fn share_into(
        &mut self,
        share: Samples<'_, T>,
        step: &Step,
        buffer: &mut [T],
        by_sums: bool,
        settings: &EpochSettings<'_>,
    ) -> Result<(f64, f64)> {
        let p = self.params.len();
        let (grads, slots) = buffer.split_at_mut(p);
        if share.n == 0 {
            grads.fill(T::zero());
            slots.fill(T::zero());
            self.set_training_forwards(self.training_forwards().saturating_add(1));
            return Ok((0.0, 0.0));
        }
        let value = self.checked_gradients_into(share, step.offset, grads)?;
        if by_sums {
            let divisor = self.share_divisor(share, settings);
            let (sum, divisor) = as_sums(grads, value, share, &self.spec.loss, divisor);
            slots[0] = T::of(sum);
            slots[1] = T::of(divisor);
            slots[FAILURES] = T::zero();
            return Ok((sum, divisor));
        }
        // Exactly 1 alone (and x × 1 is x), so one rank in a group steps as a lone process.
        let part = share.n as f64 / step.global_rows as f64;
        if part != 1.0 {
            let scale = T::of(part);
            grads.iter_mut().for_each(|g| *g *= scale);
        }
        slots[0] = T::of(value * part);
        slots[1] = T::zero();
        slots[FAILURES] = T::zero();
        Ok((value, step.global_rows as f64))
    }

    fn begin_epoch_stats(&mut self, buffers: &mut EpochBuffers<T>) {
        buffers.params_at_start.clear();
        buffers.params_at_start.extend_from_slice(&self.params);
        self.grad_stats.reset();
        self.metrics.clear();
    }
}

/// A share's mean gradient (in `grads`) and loss `value` turned into sums: times the mean's
/// own divisor ([`loss::divisor`] of the share). Returns (loss sum, `divisor`).
fn as_sums<T: Real>(
    grads: &mut [T],
    value: f64,
    share: Samples<'_, T>,
    spec: &crate::LossSpec,
    divisor: f64,
) -> (f64, f64) {
    let own = loss::divisor(spec, share.targets, share.n);
    let scale = T::of(own);
    grads.iter_mut().for_each(|g| *g *= scale);
    (value * own, divisor)
}

/// Summed gradients divided by the summed `divisor` into the mean, in place; returns the mean
/// loss of the summed `loss`. A divisor of 0 (every weight 0) has loss and gradient 0.
fn divide<T: Real>(grads: &mut [T], loss: f64, divisor: f64) -> f64 {
    if divisor > 0.0 {
        let d = T::of(divisor);
        grads.iter_mut().for_each(|g| *g /= d);
        loss / divisor
    } else {
        grads.fill(T::zero());
        0.0
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
