//! Which samples make up each step of an epoch, for a process training alone or for one rank
//! of a data-parallel group whose ranks each hold a shard of the data.
//!
//! The shards, in rank order, are one data set of N samples (rank 0's rows first). Step s is
//! rows `s·batch_size..(s+1)·batch_size` of every shard, in rank order, so every rank works on
//! every step and its share of a step is as large as every other rank's while the shards last:
//! no rank waits on a larger share. Shuffled, each shard is first permuted by the network's
//! generator, shard after shard in rank order: every rank computes the same permutations from
//! the same generator state, so all agree on the generator's next state without talking. Each
//! share is taken in ascending sample order (which changes no step's result but its summation
//! order and dropout keys, and reads the shard forwards).
//!
//! Alone, a shuffled epoch is the sorted chunks of one permutation of the samples. A
//! data-parallel epoch takes the steps of a plain epoch without shuffling on the samples laid
//! out step after step; [`epoch_order`] gives that layout, so that a test or a user can see
//! which samples each step takes instead of re-deriving this rule.

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
    /// Each shard's permutation in turn (shuffled epochs only).
    permutation: Vec<usize>,
    /// For each sample of this rank's shard, the chunk of the permutation it fell in, and each
    /// chunk's next place in `order` (`sort_shares`' buffers).
    chunk_of: Vec<usize>,
    next_place: Vec<usize>,
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
        let mut permutation = std::mem::take(&mut self.permutation);
        for (r, &rows) in ranks.shard_rows.iter().enumerate() {
            permutation.clear();
            permutation.extend(0..rows);
            rng.shuffle(&mut permutation);
            if r == ranks.rank {
                self.sort_shares(&permutation, batch_size.max(1));
            }
        }
        self.permutation = permutation;
        // Step s's share is at s·batch_size.. of `order`, as it is of the shard in order.
        self.in_order(ranks, batch_size);
    }

    /// Appends to `order` each `batch_size` chunk of `permutation` in ascending order, in
    /// one counting pass instead of a sort per chunk (which was most of a small-batch epoch's
    /// planning): each sample is tagged with its chunk, and the samples, visited in ascending
    /// order, dealt to their chunks' places. Sorting gives the same lists.
    fn sort_shares(&mut self, permutation: &[usize], batch_size: usize) {
        let rows = permutation.len();
        self.chunk_of.clear();
        self.chunk_of.resize(rows, 0);
        for (at, &sample) in permutation.iter().enumerate() {
            self.chunk_of[sample] = at / batch_size;
        }
        let first = self.order.len();
        self.order.resize(first + rows, 0);
        self.next_place.clear();
        self.next_place
            .extend((0..rows.div_ceil(batch_size)).map(|c| first + c * batch_size));
        for (sample, &chunk) in self.chunk_of.iter().enumerate() {
            let place = &mut self.next_place[chunk];
            self.order[*place] = sample;
            *place += 1;
        }
    }

    fn in_order(&mut self, ranks: Ranks<'_>, batch_size: usize) {
        let share = |rows: usize, s: usize| rows.saturating_sub(s * batch_size).min(batch_size);
        for s in 0..epoch_steps(ranks.shard_rows, batch_size) {
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
            if step.rows == 0 {
                // An empty share starts at 0: its shard may have run out before s·batch_size.
                step.start = 0;
            }
            self.steps.push(step);
        }
    }

    /// The sample indices (into its shard) of this rank's share of `step`, from the plan's
    /// `order` when it was made shuffled.
    pub fn share_of(&self, step: &Step, shuffled: bool) -> impl Iterator<Item = usize> + '_ {
        let range = step.start..step.start + step.rows;
        let (listed, counted) = if shuffled {
            (&self.order[range], 0..0)
        } else {
            (&self.order[..0], range)
        };
        listed.iter().copied().chain(counted)
    }
}

/// How many steps an epoch over shards of `shard_rows` samples takes in batches of
/// `batch_size` per rank, shuffled or not: as many as the largest shard's batches.
pub fn epoch_steps(shard_rows: &[usize], batch_size: usize) -> usize {
    let most = shard_rows.iter().copied().max().unwrap_or(0);
    most.div_ceil(batch_size.max(1))
}

/// The samples every step of the next `epochs` epochs takes, over every rank, as indices into
/// the whole data set (the shards in rank order), drawing from a copy of `shuffle`'s
/// generator: one list per epoch, of one list per step, rank 0's share first. A data-parallel
/// fit over shards of these sizes takes exactly these steps; so does a plain fit without
/// shuffling on the samples laid out in this order, in batches of `batch_size × ranks`, when
/// every step but the last is full (as with shards that differ by at most one sample).
pub fn epoch_order(
    shard_rows: &[usize],
    batch_size: usize,
    shuffle: Option<&Rng>,
    epochs: usize,
) -> Vec<Vec<Vec<usize>>> {
    let first: Vec<usize> = shard_rows
        .iter()
        .scan(0, |end, &rows| {
            let start = *end;
            *end += rows;
            Some(start)
        })
        .collect();
    let mut rng = shuffle.cloned();
    let mut plans: Vec<Plan> = vec![Plan::default(); shard_rows.len()];
    let mut epochs_out = Vec::with_capacity(epochs);
    for _ in 0..epochs {
        let at_start = rng.clone();
        for (rank, plan) in plans.iter_mut().enumerate() {
            // Every rank draws from the same state; the last leaves the next epoch's.
            rng.clone_from(&at_start);
            let ranks = Ranks { rank, shard_rows };
            plan.make(ranks, batch_size.max(1), rng.as_mut());
        }
        let steps = plans.first().map_or(0, |p| p.steps.len());
        let shuffled = rng.is_some();
        let epoch = (0..steps)
            .map(|s| {
                let mut all = Vec::new();
                for (r, plan) in plans.iter().enumerate() {
                    all.extend(
                        plan.share_of(&plan.steps[s], shuffled)
                            .map(|i| first[r] + i),
                    );
                }
                all
            })
            .collect();
        epochs_out.push(epoch);
    }
    epochs_out
}

#[cfg(test)]
#[path = "tests/batches.rs"]
mod tests;
