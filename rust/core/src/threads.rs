//! bpcore's own threads: a rayon pool for coarse work (a whole epoch, inference over chunks),
//! so that it neither fights with nor waits behind other rayon users in the same process, and a
//! team of persistent workers (`team`) for the blocks of one product, which spin between the
//! products of a step instead of sleeping.
//!
//! Sized by `set_num_threads`, else `BPCORE_NUM_THREADS`, else the limit the process was given
//! for other libraries' pools (`OMP_NUM_THREADS`, then `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`:
//! joblib's worker processes are started with these set to their share of the cores), else all
//! cores. A pool made before a `fork()` is unusable in the child; call `set_num_threads` there
//! to build a fresh one.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use crate::{Error, Result};

mod team;

use team::Team;
pub use team::MAX_PARTS;

/// The rayon pool and the team, always of the same size.
struct Threads {
    rayon: rayon::ThreadPool,
    team: Team,
}

type Pool = Arc<Threads>;

fn slot() -> &'static RwLock<Option<Pool>> {
    static SLOT: OnceLock<RwLock<Option<Pool>>> = OnceLock::new();
    SLOT.get_or_init(|| RwLock::new(None))
}

/// The variables that size the pool when `set_num_threads` has not, in the order consulted:
/// bpcore's own, then the limits set for OpenMP and BLAS pools.
const THREAD_VARIABLES: [&str; 4] = [
    "BPCORE_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
];

fn default_threads() -> usize {
    threads_from(|name| std::env::var(name).ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The first of `THREAD_VARIABLES` that `lookup` gives a usable count for. OpenMP's list form
/// ("4,2": 4 threads at the outer level) counts its first entry; a value that is not a count in
/// `1..=MAX_THREADS` is passed over.
fn threads_from(lookup: impl Fn(&str) -> Option<String>) -> Option<usize> {
    THREAD_VARIABLES.iter().find_map(|name| {
        let value = lookup(name)?;
        let first = value.split(',').next()?.trim().parse::<usize>().ok()?;
        (1..=MAX_THREADS).contains(&first).then_some(first)
    })
}

fn build(n: usize) -> Result<Pool> {
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("bpcore-{i}"))
        .start_handler(|_| crate::fpenv::flush_denormals_forever())
        .build()
        .map_err(|e| Error::value("n", format!("cannot start {n} threads: {e}")))?;
    Ok(Arc::new(Threads {
        rayon,
        team: Team::new(n),
    }))
}

fn pool() -> Result<Pool> {
    if let Some(p) = slot().read().ok().and_then(|g| g.clone()) {
        return Ok(p);
    }
    let mut guard = slot()
        .write()
        .map_err(|_| Error::value("threads", "pool lock poisoned"))?;
    if let Some(p) = guard.as_ref() {
        return Ok(p.clone());
    }
    let p = build(default_threads())?;
    *guard = Some(p.clone());
    Ok(p)
}

/// Most threads bpcore's pool may have: far above any core count, low enough that a typo
/// (an extra zero or three) cannot exhaust the process's threads.
pub const MAX_THREADS: usize = 1024;

/// Uses `n` threads from now on (`1 <= n <= MAX_THREADS`).
pub fn set_num_threads(n: usize) -> Result<()> {
    if !(1..=MAX_THREADS).contains(&n) {
        return Err(Error::value(
            "n",
            format!("the number of threads must be in [1, {MAX_THREADS}], got {n}"),
        ));
    }
    let p = build(n)?;
    let mut guard = slot()
        .write()
        .map_err(|_| Error::value("threads", "pool lock poisoned"))?;
    *guard = Some(p);
    Ok(())
}

/// The number of threads bpcore's work runs on.
pub fn num_threads() -> usize {
    pool().map_or(1, |p| p.rayon.current_num_threads())
}

/// Runs `f` inside bpcore's pool (or on this thread if no pool can be started).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Ok(p) => p.rayon.install(f),
        Err(_) => f(),
    }
}

/// Runs `part(i)` for each `i < parts` on bpcore's team (this thread and its workers claim
/// parts until none is left) and returns when all are done; a panic in a part is raised here.
/// While another caller holds the team, or with no team, the parts run on this thread: which
/// thread runs a part never changes what it computes.
pub fn run_parts(parts: usize, part: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        // One part (most products of small networks): no look-up of the pool.
        (0..parts).for_each(part);
        return;
    }
    match pool() {
        Ok(p) => p.team.run(parts, part),
        Err(_) => (0..parts).for_each(part),
    }
}

/// Runs `a` on this thread and `b` on one of the team's workers (or both here, one after the
/// other, while the team is taken), and returns when both are done: `rayon::join` for the work
/// between the products of a step, which then finds the team's workers awake instead of waking
/// a sleeping pool thread while a team worker spins on the same core.
pub fn join(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    let (a, b) = (Mutex::new(Some(a)), Mutex::new(Some(b)));
    run_parts(2, &|i: usize| {
        if i == 0 {
            run_once(&a)
        } else {
            run_once(&b)
        }
    });
}

/// A slice the parts of one team job write side by side, each part in ranges of its own: the
/// work between a step's products (an optimizer update, gradient norms) cut into blocks.
pub struct Disjoint<'a, T> {
    base: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: a part only reaches the elements of the ranges it was handed (see `range`), and no
// two parts are handed overlapping ranges, so sharing the pointer shares no element.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    /// Shares `slice` out for the duration of the borrow.
    pub fn new(slice: &'a mut [T]) -> Self {
        Disjoint {
            base: slice.as_mut_ptr(),
            len: slice.len(),
            _borrow: PhantomData,
        }
    }

    /// The elements `range` (clamped to the slice).
    ///
    /// # Safety
    /// No other live reference may reach these elements: the caller hands each range of one
    /// job to one part only.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range(&self, range: Range<usize>) -> &'a mut [T] {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        // SAFETY: `start..end` lies inside the slice `new` borrowed for 'a; the caller
        // guarantees that nothing else reaches it.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(start), end - start) }
    }
}

/// Runs `block(range)` for consecutive ranges of `block_len` elements covering `0..n`, on
/// bpcore's team when there are several (each part takes a run of whole blocks), else here.
/// The ranges do not depend on the thread count, so neither does what element-wise work
/// computes in them.
pub fn for_blocks(n: usize, block_len: usize, block: &(dyn Fn(Range<usize>) + Sync)) {
    let block_len = block_len.max(1);
    let blocks = n.div_ceil(block_len);
    let run = |b: Range<usize>| {
        for i in b {
            block(i * block_len..((i + 1) * block_len).min(n));
        }
    };
    if blocks <= 1 {
        run(0..blocks);
        return;
    }
    let threads = num_threads();
    if threads <= 1 {
        run(0..blocks);
        return;
    }
    // A few parts per thread, so that a thread the system descheduled holds up little work.
    let parts = blocks.min(4 * threads).min(MAX_PARTS);
    let per_part = blocks.div_ceil(parts);
    let parts = blocks.div_ceil(per_part);
    run_parts(parts, &|p: usize| {
        run(p * per_part..((p + 1) * per_part).min(blocks))
    });
}

/// Takes the task out of `slot` and runs it (nothing if it already ran).
fn run_once(slot: &Mutex<Option<impl FnOnce()>>) {
    let task = match slot.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    if let Some(task) = task {
        task();
    }
}

/// Runs `work` on bpcore's pool while this thread calls `poll` every `interval` until the work
/// is done; once `poll` returns true, the flag handed to `work` is set, asking it to stop.
///
/// A whole training epoch runs this way: inside the pool its parallel steps cost a join, not a
/// wake-up of sleeping threads per step, while the caller's thread (the one Python delivers
/// Ctrl-C to) stays free to look for signals.
pub fn run_polling<R: Send>(
    work: impl FnOnce(&AtomicBool) -> R + Send,
    interval: Duration,
    mut poll: impl FnMut() -> bool,
) -> R {
    let stop = AtomicBool::new(false);
    let Ok(threads) = pool() else {
        return work(&stop);
    };
    let pool = &threads.rayon;
    let (done, finished) = sync_channel(1);
    let mut result = None;
    pool.in_place_scope(|scope| {
        let stop = &stop;
        scope.spawn(move |_| {
            // The receiver outlives the scope, so the send cannot fail.
            let _ = done.send(work(stop));
        });
        loop {
            match finished.recv_timeout(interval) {
                Ok(r) => {
                    result = Some(r);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if poll() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                // The work panicked; the scope re-raises that panic when it closes.
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    match result {
        Some(r) => r,
        // Reached only if the work panicked, and then the scope above has already re-raised its
        // panic (which the binding's guard turns into a Python exception).
        None => unreachable!("work finished without a result"), // panic-free: see above
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_bpcore_then_openmp_then_blas_limits() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(threads_from(env(&[])), None);
        assert_eq!(threads_from(env(&[("OMP_NUM_THREADS", "1")])), Some(1));
        assert_eq!(threads_from(env(&[("OMP_NUM_THREADS", " 4,2 ")])), Some(4));
        assert_eq!(threads_from(env(&[("MKL_NUM_THREADS", "3")])), Some(3));
        let both = env(&[("BPCORE_NUM_THREADS", "2"), ("OMP_NUM_THREADS", "1")]);
        assert_eq!(threads_from(both), Some(2));
        let bad_first = env(&[("BPCORE_NUM_THREADS", "many"), ("OMP_NUM_THREADS", "1")]);
        assert_eq!(threads_from(bad_first), Some(1));
        assert_eq!(threads_from(env(&[("OMP_NUM_THREADS", "0")])), None);
        assert_eq!(threads_from(env(&[("OMP_NUM_THREADS", "100000")])), None);
    }

    #[test]
    fn join_runs_both_sides_and_lets_them_borrow_mutably() {
        let (mut left, mut right) = (vec![0u32; 1000], vec![0u32; 1000]);
        for round in 0..100u32 {
            join(
                || left.iter_mut().for_each(|x| *x += round),
                || right.iter_mut().for_each(|x| *x += 2 * round),
            );
        }
        assert!(left.iter().all(|&x| x == 4950));
        assert!(right.iter().all(|&x| x == 9900));
    }

    #[test]
    fn blocks_cover_every_element_once_and_may_write_their_own_ranges() {
        for (n, block_len) in [(0, 4), (1, 4), (10, 4), (12, 4), (1000, 7), (100_000, 64)] {
            let mut seen = vec![0u32; n];
            let shared = Disjoint::new(&mut seen);
            for_blocks(n, block_len, &|range| {
                assert!(range.len() <= block_len && range.start % block_len == 0);
                // SAFETY: for_blocks hands out each range once.
                unsafe { shared.range(range) }
                    .iter_mut()
                    .for_each(|x| *x += 1);
            });
            assert!(seen.iter().all(|&x| x == 1), "n = {n}, block {block_len}");
        }
    }

    #[test]
    fn polling_sees_the_work_through_and_can_stop_it() {
        let quick = run_polling(|_| 41 + 1, Duration::from_millis(1), || false);
        assert_eq!(quick, 42);
        let mut polls = 0;
        let stopped_after = run_polling(
            |stop| {
                let mut spins = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                    spins += 1;
                }
                spins
            },
            Duration::from_millis(2),
            || {
                polls += 1;
                polls >= 3
            },
        );
        assert!(polls >= 3 && stopped_after > 0);
    }
}
