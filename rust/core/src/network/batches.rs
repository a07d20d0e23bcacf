//! Which samples make up each step of an epoch, for a process training alone or for one rank
//! of a data-parallel group whose ranks each hold a shard of the data.
//!
//! The shards, in rank order, are one data set of N samples (rank 0's rows first). A rank's
//! share of a step is the part of the step's samples in its shard, and every rank computes
//! the same plan from the same generator state and the shards' sizes, so that all agree on
//! every step's size without talking:
//!
//! - shuffled: the network's generator permutes the N samples and the steps are consecutive
//!   chunks of `batch_size × ranks` of that permutation, each chunk in ascending sample order.
//!   Alone, these are the batches of an ordinary shuffled epoch; on many ranks, the very same
//!   batches, so data-parallel training takes the steps of one process on the whole data set.
//!   (Sorting a chunk changes no step's result but the dropout keys and the summation order,
//!   and it makes each rank's share a contiguous run of the chunk.)
//! - in order: step s is rows `s·batch_size..(s+1)·batch_size` of every shard, so that every
//!   rank works on every step even when the ranks' data are not mixed.

use crate::rng::Rng;

/// The data-parallel group a process's samples are one shard of, seen from that process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranks<'a> {
    /// This process's rank, an index into `shard_rows`.
    pub rank: usize,
    /// The samples of every rank's shard, in rank order.
    pub shard_rows: &'a [usize],
}

/// One step of an epoch as one rank takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Step {
    /// Where this rank's share starts: in the plan's `order` when shuffled, else in its shard.
    pub start: usize,
    /// Samples of this rank's share (0 when its shard has none in this step).
    pub rows: usize,
    /// The index of the share's first sample among the step's samples of every rank: the row
    /// its dropout masks are keyed by.
    pub offset: usize,
    /// Samples of the step over every rank.
    pub global_rows: usize,
}

/// An epoch's steps for one rank, with its buffers kept between epochs.
#[derive(Debug, Clone, Default)]
pub(super) struct Plan {
    pub steps: Vec<Step>,
    /// Shuffled: this rank's sample indices (into its shard), share after share.
    pub order: Vec<usize>,
    /// The permutation of every rank's samples (shuffled epochs only).
    global: Vec<usize>,
    /// The smallest share of a step that is not empty, over every rank and step, with the rank
    /// and step it is in (batch norm needs two samples in every share it computes).
    pub smallest_share: Option<(usize, usize, usize)>,
}

impl Plan {
    /// Plans an epoch over the shards of `ranks` in steps of `batch_size` samples per rank,
    /// shuffled by `shuffle`'s generator when given.
    pub fn make(&mut self, ranks: Ranks<'_>, batch_size: usize, shuffle: Option<&mut Rng>) {
        self.steps.clear();
        self.order.clear();
        self.smallest_share = None;
        match shuffle {
            Some(rng) => self.shuffled(ranks, batch_size, rng),
            None => self.in_order(ranks, batch_size),
        }
    }

    fn note_share(&mut self, rows: usize, rank: usize, step: usize) {
        if rows > 0 && !matches!(self.smallest_share, Some((least, _, _)) if least <= rows) {
            self.smallest_share = Some((rows, rank, step));
        }
    }

    fn shuffled(&mut self, ranks: Ranks<'_>, batch_size: usize, rng: &mut Rng) {
        let total: usize = ranks.shard_rows.iter().sum();
        let mut global = std::mem::take(&mut self.global);
        global.clear();
        global.extend(0..total);
        rng.shuffle(&mut global);
        // The first sample of every shard in the whole data set, and the end of the last.
        let bounds: Vec<usize> = std::iter::once(0)
            .chain(ranks.shard_rows.iter().scan(0, |end, &rows| {
                *end += rows;
                Some(*end)
            }))
            .collect();
        let step_rows = batch_size.saturating_mul(ranks.shard_rows.len()).max(1);
        for (s, chunk) in global.chunks_mut(step_rows).enumerate() {
            chunk.sort_unstable();
            for r in 0..ranks.shard_rows.len() {
                let lo = chunk.partition_point(|&i| i < bounds[r]);
                let hi = chunk.partition_point(|&i| i < bounds[r + 1]);
                self.note_share(hi - lo, r, s);
                if r == ranks.rank {
                    self.steps.push(Step {
                        start: self.order.len(),
                        rows: hi - lo,
                        offset: lo,
                        global_rows: chunk.len(),
                    });
                    self.order
                        .extend(chunk[lo..hi].iter().map(|&i| i - bounds[r]));
                }
            }
        }
        self.global = global;
    }

    fn in_order(&mut self, ranks: Ranks<'_>, batch_size: usize) {
        let share = |rows: usize, s: usize| rows.saturating_sub(s * batch_size).min(batch_size);
        let most = ranks.shard_rows.iter().copied().max().unwrap_or(0);
        for s in 0..most.div_ceil(batch_size) {
            let mut step = Step {
                start: s * batch_size,
                rows: 0,
                offset: 0,
                global_rows: 0,
            };
            for (r, &shard) in ranks.shard_rows.iter().enumerate() {
                let rows = share(shard, s);
                self.note_share(rows, r, s);
                if r == ranks.rank {
                    step.rows = rows;
                    step.offset = step.global_rows;
                }
                step.global_rows += rows;
            }
            self.steps.push(step);
        }
    }
}

#[cfg(test)]
#[path = "tests/batches.rs"]
mod tests;
