//! A layer's pass divided by samples: the batch's rows are cut into parts of consecutive
//! samples, each part with its own slices of the input, the output and the scratch, and the
//! parts run side by side on bpcore's team (see `threads`).
//!
//! For the layers whose per-sample work is mostly outside a product (a convolution's column
//! matrix, pooling): a split inside each product would leave that work on one thread. How a
//! pass is cut depends only on the number of samples, never on the number of threads, and each
//! part writes only its own slices, so a result is the same bits on any thread count.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

/// Most parts a pass is cut into (their slots live on the caller's stack: nothing allocated).
pub const MAX_PARTS: usize = 16;

/// The samples of part `i` of `parts` over `n` samples: as equal as they divide.
pub fn share(n: usize, parts: usize, i: usize) -> Range<usize> {
    n * i / parts..n * (i + 1) / parts
}

/// Runs `f(i, part)` for each of `parts` (at most [`MAX_PARTS`]; the rest are ignored), on
/// bpcore's team when `parallel`, else one after the other on this thread. Returns when all
/// are done.
pub fn run_each<S: Send>(
    parts: impl IntoIterator<Item = S>,
    parallel: bool,
    f: impl Fn(usize, S) + Sync,
) {
    let slots: [Mutex<Option<S>>; MAX_PARTS] = std::array::from_fn(|_| Mutex::new(None));
    let mut count = 0;
    for (slot, part) in slots.iter().zip(parts) {
        *locked(slot) = Some(part);
        count += 1;
    }
    // Each slot is taken once, by whichever thread claims its index: the lock is never waited on.
    let each = |i: usize| {
        if let Some(part) = locked(&slots[i]).take() {
            f(i, part);
        }
    };
    if parallel {
        crate::threads::run_parts(count, &each);
    } else {
        (0..count).for_each(each);
    }
}

/// The slot's content, also after a panic elsewhere poisoned its lock (the slot holds only a
/// part's slices, which a panic leaves as they were).
fn locked<S>(slot: &Mutex<S>) -> MutexGuard<'_, S> {
    match slot.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Splits the first `len` values off the front of `rest`, leaving the remainder there.
pub fn take_front<'a, T>(rest: &mut &'a mut [T], len: usize) -> &'a mut [T] {
    let (head, tail) = std::mem::take(rest).split_at_mut(len);
    *rest = tail;
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_samples_in_order() {
        for n in [1, 7, 32, 128] {
            for parts in 1..=MAX_PARTS.min(n) {
                let all: Vec<usize> = (0..parts).flat_map(|i| share(n, parts, i)).collect();
                assert_eq!(all, (0..n).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn every_part_runs_once_with_its_own_slice() {
        for parallel in [false, true] {
            let mut out = vec![0usize; 40];
            let mut rest = &mut out[..];
            let parts: Vec<_> = (0..5)
                .map(|i| take_front(&mut rest, share(40, 5, i).len()))
                .collect();
            run_each(parts, parallel, |i, part: &mut [usize]| part.fill(i + 1));
            let want: Vec<usize> = (0..40).map(|s| s / 8 + 1).collect();
            assert_eq!(out, want);
        }
    }
}
