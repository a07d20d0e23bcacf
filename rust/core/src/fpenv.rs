//! Denormal floats flushed to zero while bpcore computes.
//!
//! Optimizer state decays geometrically where gradients are zero (Adam's first moment by β1 each
//! step for a dead ReLU unit) and reaches the subnormal range within about a thousand steps;
//! every instruction touching a subnormal then takes a microcode assist, and training slowed
//! seven-fold in our measurements. Flushing them (FTZ and DAZ) changes only values below
//! 1.2e-38 (f32) or 2.2e-308 (f64), which no loss can see.

/// Runs `f` with subnormals flushed to zero on this thread, then restores the caller's mode.
pub fn flush_denormals<R>(f: impl FnOnce() -> R) -> R {
    let saved = imp::enable();
    let restore = Restore(saved);
    let result = f();
    drop(restore);
    result
}

/// Sets flush-to-zero for the rest of this thread's life (bpcore's own pool threads).
pub fn flush_denormals_forever() {
    imp::enable();
}

struct Restore(u32);

impl Drop for Restore {
    fn drop(&mut self) {
        imp::restore(self.0);
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    // MXCSR bits: flush-to-zero (results) and denormals-are-zero (inputs).
    const FTZ: u32 = 1 << 15;
    const DAZ: u32 = 1 << 6;

    /// Turns both bits on; returns the previous control word.
    #[allow(deprecated)] // the intrinsics are deprecated for their misuse risk, not removed
    pub fn enable() -> u32 {
        // SAFETY: reading and writing MXCSR only changes this thread's float rounding modes.
        unsafe {
            let saved = std::arch::x86_64::_mm_getcsr();
            std::arch::x86_64::_mm_setcsr(saved | FTZ | DAZ);
            saved
        }
    }

    #[allow(deprecated)]
    pub fn restore(saved: u32) {
        // SAFETY: as above; `saved` came from `_mm_getcsr` on this thread.
        unsafe { std::arch::x86_64::_mm_setcsr(saved) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn enable() -> u32 {
        0
    }

    pub fn restore(_saved: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormals_flush_inside_and_survive_outside() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f32);
        assert!(tiny * half > 0.0);
        let inside = flush_denormals(|| std::hint::black_box(tiny) * std::hint::black_box(half));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(inside, 0.0);
        }
        assert!(std::hint::black_box(tiny) * std::hint::black_box(half) > 0.0);
    }
}
