//! Inference buffers shared by concurrent callers: each call borrows a pair from the pool and
//! gives it back, so repeated predictions allocate nothing once warm.

use std::sync::Mutex;

use super::pass::Scratch;

/// A pool of inference buffers. Cloning a network gives the clone an empty pool.
#[derive(Debug, Default)]
pub(super) struct ScratchPool<T>(Mutex<Vec<Scratch<T>>>);

impl<T> Clone for ScratchPool<T> {
    fn clone(&self) -> Self {
        ScratchPool(Mutex::new(Vec::new()))
    }
}

impl<T: Default> ScratchPool<T> {
    /// Runs `f` with buffers from the pool (fresh ones if none is free).
    pub fn with<R>(&self, f: impl FnOnce(&mut Scratch<T>) -> R) -> R {
        let mut scratch = self
            .0
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_default();
        let result = f(&mut scratch);
        if let Ok(mut free) = self.0.lock() {
            free.push(scratch);
        }
        result
    }
}
