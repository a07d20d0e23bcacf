//! A team of persistent workers that run the parts of one product side by side with the caller.
//!
//! A training step issues a dozen products a few microseconds to a few hundred microseconds
//! long. Handing each one to a sleeping pool thread costs a futex wake-up per product; the
//! team's workers instead spin for a while after each part, so that the next product of the
//! step finds them awake, and only park when the caller has gone quiet (between epochs, or
//! when the step's single-threaded work runs long).
//!
//! The caller runs part 0 itself and waits, spinning, for the workers' parts: a call returns
//! only when every part is done, so the parts may borrow the caller's data. One caller uses the
//! team at a time; a second caller (another thread, or a part asking for a team itself) runs
//! its parts one after the other on its own thread, which computes the same values.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a worker spins for the next part before it parks: longer than the gaps between
/// the products of one step (the loss, an optimizer update of a few hundred thousand
/// parameters), short enough that an idle network costs no core for long.
const SPIN: Duration = Duration::from_micros(500);
/// Spins between looks at the clock (each look also yields the core to any waiting thread).
const SPINS_PER_LOOK: u32 = 64;

/// One part of a job: the part's index, run on the worker with that index.
type Part = dyn Fn(usize) + Sync;

/// What the caller and the workers share.
struct Shared {
    /// Bumped by the caller for each job; a worker runs a job when it sees a new value.
    generation: AtomicUsize,
    /// The current job's parts and how many there are. Written by the caller only while every
    /// worker has acknowledged the previous job, read by the workers after they see a new
    /// generation.
    job: UnsafeCell<(*const Part, usize)>,
    /// Workers that have not yet finished (or skipped) the current job.
    pending: AtomicUsize,
    /// Set by a worker whose part panicked; the caller re-raises the panic.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Whether worker i is parked (or about to park) and needs an unpark to see a new job.
    parked: Vec<AtomicBool>,
    shutdown: AtomicBool,
}

// SAFETY: `job` is written only by the one caller that holds the team (`busy`), and only while
// no worker reads it (between jobs, `pending == 0`); the part it points to is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced while the caller keeps it alive.
unsafe impl Send for Shared {}

/// A team of `size - 1` workers and the caller.
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the caller running a job.
    busy: AtomicBool,
    /// The process the workers were started in: after a `fork()` they do not exist.
    pid: u32,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team").field("size", &self.size()).finish()
    }
}

impl Team {
    /// A team of `size` threads: the caller and `size - 1` workers started now. Workers that
    /// cannot be started make the team smaller.
    pub fn new(size: usize) -> Team {
        let n_workers = size.saturating_sub(1);
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            job: UnsafeCell::new((std::ptr::null::<fn(usize)>() as *const Part, 0)),
            pending: AtomicUsize::new(0),
            panic: Mutex::new(None),
            parked: (0..n_workers).map(|_| AtomicBool::new(false)).collect(),
            shutdown: AtomicBool::new(false),
        });
        let mut workers = Vec::with_capacity(n_workers);
        for index in 0..n_workers {
            let shared = shared.clone();
            let started = thread::Builder::new()
                .name(format!("bpcore-team-{}", index + 1))
                .spawn(move || work(&shared, index));
            match started {
                Ok(handle) => workers.push(handle),
                Err(_) => break,
            }
        }
        Team {
            shared,
            workers,
            busy: AtomicBool::new(false),
            pid: std::process::id(),
        }
    }

    /// Threads that run parts at once: the caller and the workers.
    pub fn size(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `part(i)` for every `i < parts` (at most `size()` of them), part 0 on this thread
    /// and part `i` on worker `i`, and returns when all are done. A panic in any part is
    /// re-raised here once every part has finished.
    pub fn run(&self, parts: usize, part: &(dyn Fn(usize) + Sync)) {
        let parts = parts.min(self.size());
        if parts <= 1 || !self.try_hold() {
            (0..parts).for_each(part);
            return;
        }
        let n_workers = self.workers.len();
        let shared = &*self.shared;
        // SAFETY: the lifetime is erased only for the duration of this call: it returns after
        // `pending` reaches 0, when no worker holds the pointer any more.
        let erased =
            unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Part>(part) };
        // SAFETY: this thread holds the team and every worker acknowledged the last job.
        unsafe { *shared.job.get() = (erased, parts) };
        shared.pending.store(n_workers, Ordering::SeqCst);
        shared.generation.fetch_add(1, Ordering::SeqCst);
        for (flag, worker) in shared.parked.iter().zip(&self.workers) {
            if flag.load(Ordering::SeqCst) {
                worker.thread().unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| part(0)));
        let mut spins = 0u32;
        while shared.pending.load(Ordering::Acquire) != 0 {
            spins = spins.wrapping_add(1);
            if spins % SPINS_PER_LOOK == 0 {
                // The workers may have been descheduled on a busy machine: let them run.
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let theirs = shared.panic.lock().ok().and_then(|mut p| p.take());
        self.busy.store(false, Ordering::Release);
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            resume_unwind(payload);
        }
    }

    /// Takes the team for one job, unless another caller has it or its workers are gone.
    fn try_hold(&self) -> bool {
        if self.workers.is_empty() || std::process::id() != self.pid {
            return false;
        }
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for worker in &self.workers {
            worker.thread().unpark();
        }
        // Not joined: a worker may be mid-spin; it sees the flag and exits on its own.
    }
}

/// Worker `index`'s loop: wait for a job, run its part `index + 1` if it has one, acknowledge.
fn work(shared: &Shared, index: usize) {
    crate::fpenv::flush_denormals_forever();
    let mut seen = 0usize;
    loop {
        match wait_for_job(shared, index, seen) {
            Some(generation) => seen = generation,
            None => return,
        }
        // SAFETY: the caller wrote the job before bumping the generation (SeqCst), and keeps
        // it, and the part it points to, alive until this worker decrements `pending`.
        let (part, parts) = unsafe { *shared.job.get() };
        let mine = index + 1;
        if mine < parts {
            // SAFETY: see above; `part` points to the caller's live closure.
            let part = unsafe { &*part };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| part(mine))) {
                if let Ok(mut slot) = shared.panic.lock() {
                    slot.get_or_insert(payload);
                }
            }
        }
        shared.pending.fetch_sub(1, Ordering::Release);
    }
}

/// Spins, then parks, until the generation moves past `seen`; `None` on shutdown.
fn wait_for_job(shared: &Shared, index: usize, seen: usize) -> Option<usize> {
    let mut since = Instant::now();
    let mut spins = 0u32;
    loop {
        let generation = shared.generation.load(Ordering::Acquire);
        if generation != seen {
            return Some(generation);
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return None;
        }
        spins = spins.wrapping_add(1);
        if spins % SPINS_PER_LOOK != 0 {
            std::hint::spin_loop();
            continue;
        }
        if since.elapsed() < SPIN {
            // On a machine with more runnable threads than cores, let them have this one.
            thread::yield_now();
            continue;
        }
        // Announce the park, then look once more: the caller bumps the generation before it
        // reads the flag, so either it sees the flag and unparks, or this look sees the job.
        shared.parked[index].store(true, Ordering::SeqCst);
        if shared.generation.load(Ordering::SeqCst) == seen
            && !shared.shutdown.load(Ordering::SeqCst)
        {
            thread::park();
        }
        shared.parked[index].store(false, Ordering::SeqCst);
        since = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_part_runs_once_per_job() {
        let team = Team::new(3);
        let counts: Vec<AtomicU64> = (0..3).map(|_| AtomicU64::new(0)).collect();
        for job in 0..2000 {
            let parts = 1 + job % 3;
            team.run(parts, &|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
            if job % 500 == 0 {
                // Long enough for the workers to park, so that waking them is exercised too.
                thread::sleep(SPIN * 3);
            }
        }
        let got: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(got, [2000, 1333, 666]);
    }

    #[test]
    fn a_panicking_part_is_raised_in_the_caller_and_the_team_still_works() {
        let team = Team::new(2);
        let raised = catch_unwind(AssertUnwindSafe(|| {
            team.run(2, &|i| {
                if i == 1 {
                    panic!("part 1 fails");
                }
            })
        }));
        assert!(raised.is_err());
        let sum = AtomicU64::new(0);
        team.run(2, &|i| {
            sum.fetch_add(i as u64 + 1, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_nested_or_concurrent_caller_runs_its_parts_itself() {
        let team = Team::new(2);
        let inner = AtomicU64::new(0);
        team.run(2, &|_| {
            team.run(2, &|j| {
                inner.fetch_add(j as u64 + 1, Ordering::Relaxed);
            })
        });
        assert_eq!(inner.load(Ordering::Relaxed), 6);
    }
}
