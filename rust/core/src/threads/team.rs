//! A team of persistent workers that run the parts of one product side by side with the caller.
//!
//! A training step issues a dozen products a few microseconds to a few hundred microseconds
//! long. Handing each one to a sleeping pool thread costs a futex wake-up per product; the
//! team's workers instead spin for a while after each job, so that the next product of the
//! step finds them awake, and only park when the caller has gone quiet (between epochs, or
//! when the step's single-threaded work runs long).
//!
//! The parts of a job are claimed one at a time from a shared counter, by the caller as well as
//! the workers, so a worker that the operating system has descheduled (on a busy machine) holds
//! up at most the part it is running: the caller takes the rest. Which thread runs a part does
//! not change what the part computes, so results do not depend on it. A call returns only when
//! every part is done, so the parts may borrow the caller's data. One caller uses the team at a
//! time; a second caller (another thread, or a part asking for a team itself) runs its parts
//! one after the other on its own thread.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a worker spins for the next job before it parks: longer than the gaps between
/// the products of one step (the loss, an optimizer update of a few hundred thousand
/// parameters), short enough that an idle network costs no core for long.
const SPIN: Duration = Duration::from_micros(500);
/// Spins between looks at the clock (each look also yields the core to any waiting thread).
const SPINS_PER_LOOK: u32 = 64;

/// Most parts one job may have (they are counted in `PART_BITS` bits of the claim word).
pub const MAX_PARTS: usize = (1 << PART_BITS) - 1;
const PART_BITS: u32 = 12;
const PART_MASK: u64 = (1 << PART_BITS) - 1;

/// The claim word: the job's generation, its number of parts and the next unclaimed part, in
/// one atomic so that a claim (a compare-exchange on it) can only succeed for the job it read.
fn pack(generation: u64, parts: usize, next: usize) -> u64 {
    (generation << (2 * PART_BITS)) | ((parts as u64) << PART_BITS) | next as u64
}

fn unpack(word: u64) -> (u64, usize, usize) {
    (
        word >> (2 * PART_BITS),
        ((word >> PART_BITS) & PART_MASK) as usize,
        (word & PART_MASK) as usize,
    )
}

/// One job, on the caller's stack for the duration of `Team::run`.
struct Job<'a> {
    part: &'a (dyn Fn(usize) + Sync),
    /// Parts finished (or panicked).
    done: AtomicUsize,
    /// The first panic of a part, re-raised by the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job<'_> {
    /// Runs part `i`, keeping a panic for the caller, and counts it done. The job may be gone
    /// the moment the count is in: nothing touches it after.
    fn run(&self, i: usize) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (self.part)(i))) {
            if let Ok(mut slot) = self.panic.lock() {
                slot.get_or_insert(payload);
            }
        }
        self.done.fetch_add(1, Ordering::Release);
    }
}

/// What the caller and the workers share.
struct Shared {
    /// `pack(generation, parts, next)` of the current job.
    claim: AtomicU64,
    /// The current job; valid for a thread that has claimed one of its parts, until it counts
    /// that part done (the caller waits for every part before the job leaves its stack).
    job: AtomicPtr<Job<'static>>,
    /// Whether worker i is parked (or about to park) and needs an unpark to see a new job.
    parked: Vec<AtomicBool>,
    shutdown: AtomicBool,
}

impl Shared {
    /// Claims and runs parts of the job `word` was read from until none is left; false at once
    /// if that job has no part left.
    fn help(&self, mut word: u64) -> bool {
        let mut ran = false;
        loop {
            let (generation, parts, next) = unpack(word);
            if next >= parts {
                return ran;
            }
            let job = self.job.load(Ordering::Acquire);
            let claimed = pack(generation, parts, next + 1);
            match self
                .claim
                .compare_exchange(word, claimed, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY: the claim succeeded, so the job `word` names is still running and
                    // waits for this part: `job` (stored before that job's claim word, read
                    // after it) is that job and alive until `run` counts the part done.
                    unsafe { (*job).run(next) };
                    ran = true;
                    word = self.claim.load(Ordering::Acquire);
                    if unpack(word).0 != generation {
                        return ran;
                    }
                }
                Err(now) => {
                    if unpack(now).0 != generation {
                        return ran;
                    }
                    word = now;
                }
            }
        }
    }
}

/// A team of `size - 1` workers and the caller.
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the caller running a job.
    busy: AtomicBool,
    /// The last job's generation (advanced only by the caller holding `busy`).
    generation: AtomicU64,
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
            claim: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
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
            generation: AtomicU64::new(0),
            pid: std::process::id(),
        }
    }

    /// Threads that run parts at once: the caller and the workers.
    pub fn size(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `part(i)` for every `i < parts`, on this thread and the team's workers, and returns
    /// when all are done. A panic in any part is re-raised here once every part has finished.
    pub fn run(&self, parts: usize, part: &(dyn Fn(usize) + Sync)) {
        if parts <= 1 || parts > MAX_PARTS || !self.try_hold() {
            (0..parts).for_each(part);
            return;
        }
        let shared = &*self.shared;
        let job = Job {
            part,
            done: AtomicUsize::new(0),
            panic: Mutex::new(None),
        };
        let generation = self.generation.load(Ordering::Relaxed).wrapping_add(1);
        self.generation.store(generation, Ordering::Relaxed);
        // The lifetime is erased only while this call runs: it returns after every part is
        // counted done, and a worker touches the job only between claiming a part and that.
        let erased = (&job as *const Job<'_>).cast_mut().cast::<Job<'static>>();
        shared.job.store(erased, Ordering::SeqCst);
        let word = pack(generation, parts, 0);
        shared.claim.store(word, Ordering::SeqCst);
        for (flag, worker) in shared.parked.iter().zip(&self.workers) {
            if flag.load(Ordering::SeqCst) {
                worker.thread().unpark();
            }
        }
        shared.help(word);
        let mut spins = 0u32;
        while job.done.load(Ordering::Acquire) < parts {
            spins = spins.wrapping_add(1);
            if spins % SPINS_PER_LOOK == 0 {
                // A worker holding the last part may have been descheduled: let it run.
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        self.busy.store(false, Ordering::Release);
        if let Some(payload) = job.panic.lock().ok().and_then(|mut p| p.take()) {
            // panic-free: re-raises only a part's own panic, and no part panics on user input
            // (the binding's guard would turn one into a Python exception).
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

/// Worker `index`'s loop: wait for a job it has not helped with, help, repeat.
fn work(shared: &Shared, index: usize) {
    crate::fpenv::flush_denormals_forever();
    let mut seen = 0u64;
    while let Some(word) = wait_for_job(shared, index, seen) {
        seen = unpack(word).0;
        shared.help(word);
    }
}

/// Spins, then parks, until a job newer than generation `seen` is posted; its claim word, or
/// `None` on shutdown.
fn wait_for_job(shared: &Shared, index: usize, seen: u64) -> Option<u64> {
    let mut since = Instant::now();
    let mut spins = 0u32;
    loop {
        let word = shared.claim.load(Ordering::Acquire);
        if unpack(word).0 != seen {
            return Some(word);
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
        // Announce the park, then look once more: the caller posts the job before it reads
        // the flag, so either it sees the flag and unparks, or this look sees the job.
        shared.parked[index].store(true, Ordering::SeqCst);
        if unpack(shared.claim.load(Ordering::SeqCst)).0 == seen
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
        let counts: Vec<AtomicU64> = (0..7).map(|_| AtomicU64::new(0)).collect();
        for job in 0..2000 {
            let parts = 1 + job % 7;
            team.run(parts, &|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
            if job % 500 == 0 {
                // Long enough for the workers to park, so that waking them is exercised too.
                thread::sleep(SPIN * 3);
            }
        }
        let got: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let want: Vec<u64> = (0..7)
            .map(|i| (0..2000).filter(|j| j % 7 >= i).count() as u64)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_claim_word_round_trips() {
        let word = pack(123_456_789, MAX_PARTS, 17);
        assert_eq!(unpack(word), (123_456_789, MAX_PARTS, 17));
    }

    #[test]
    fn a_panicking_part_is_raised_in_the_caller_and_the_team_still_works() {
        let team = Team::new(2);
        let raised = catch_unwind(AssertUnwindSafe(|| {
            team.run(4, &|i| {
                if i == 1 {
                    panic!("part 1 fails"); // panic-free: test code
                }
            })
        }));
        assert!(raised.is_err());
        let sum = AtomicU64::new(0);
        team.run(3, &|i| {
            sum.fetch_add(i as u64 + 1, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
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
