//! bpcore's own thread pool, so that its parallel matrix products neither fight with nor wait
//! behind other rayon users in the same process.
//!
//! Sized by `set_num_threads`, else `BPCORE_NUM_THREADS`, else all cores. A pool made before a
//! `fork()` is unusable in the child; call `set_num_threads` there to build a fresh one.

use std::sync::{Arc, OnceLock, RwLock};

use crate::{Error, Result};

type Pool = Arc<rayon::ThreadPool>;

fn slot() -> &'static RwLock<Option<Pool>> {
    static SLOT: OnceLock<RwLock<Option<Pool>>> = OnceLock::new();
    SLOT.get_or_init(|| RwLock::new(None))
}

fn default_threads() -> usize {
    std::env::var("BPCORE_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(n: usize) -> Result<Pool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("bpcore-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::value("n", format!("cannot start {n} threads: {e}")))
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

/// Uses `n` threads from now on (`n >= 1`).
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::value(
            "n",
            "the number of threads must be at least 1, got 0",
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
    pool().map_or(1, |p| p.current_num_threads())
}

/// Runs `f` inside bpcore's pool (or on this thread if no pool can be started).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Ok(p) => p.install(f),
        Err(_) => f(),
    }
}
