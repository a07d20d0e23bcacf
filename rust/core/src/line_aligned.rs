//! An allocator that starts every buffer of a kilobyte or more on a cache line.
//!
//! The system allocator aligns to 16 bytes; glibc's large blocks start 16 bytes into a page.
//! A matrix split between threads by columns (a dense layer's output, its weight gradient)
//! then has, in every row, one cache line that both threads write, which moves between their
//! cores for each row; and each AVX-512 load of a layer's rows straddles two lines. Measured
//! on an Intel Xeon with two threads, the products of one step of the mnist network
//! (784-256-128-10) took 606 µs with their buffers 16 bytes off a line and 568 µs on lines at
//! batch 128, 191 against 165 µs at batch 32; whole epochs (medians of five alternating runs)
//! trained 4% faster at batch 128 and 3.5% at batch 32, and 4% faster on one thread.
//!
//! The native module installs it as its global allocator; smaller blocks keep the system's
//! alignment, so that its many small allocations cost no padding.

use std::alloc::{GlobalAlloc, Layout, System};

/// Bytes of a cache line on x86-64 processors and most ARM ones.
const LINE: usize = 64;
/// Blocks from this many bytes start on a line.
const MIN_BYTES: usize = 1024;

/// The system allocator, with blocks of `MIN_BYTES` or more aligned to `LINE`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineAligned;

/// The layout a block is allocated with: `layout`, on a line when it is large. The same
/// function of the same layout for allocating and freeing, so each block is freed as it was
/// allocated.
fn on_line(layout: Layout) -> Layout {
    if layout.size() < MIN_BYTES || layout.align() >= LINE {
        return layout;
    }
    Layout::from_size_align(layout.size(), LINE).unwrap_or(layout)
}

// SAFETY: every call forwards to `System` with the layout `on_line` gives, which keeps the
// size and only raises the alignment, so the block satisfies the caller's layout; each block is
// freed (or reallocated) with the layout it was allocated with, `on_line` of the caller's.
unsafe impl GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `on_line` keeps the caller's non-zero size.
        unsafe { System.alloc(on_line(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(on_line(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated here with `on_line(layout)`.
        unsafe { System.dealloc(ptr, on_line(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = on_line(layout);
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, fits isize.
        let new = on_line(unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) });
        if new.align() == old.align() {
            // SAFETY: `ptr` was allocated with `old`; `System.realloc` keeps its alignment.
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // The block crosses `MIN_BYTES`: a new block of the other alignment, and a copy.
        // SAFETY: `new` has the caller's non-zero size.
        let moved = unsafe { System.alloc(new) };
        if !moved.is_null() {
            // SAFETY: both blocks hold at least the smaller size and do not overlap; `ptr` was
            // allocated with `old`.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_start_on_a_line_and_keep_their_contents_when_they_grow_or_shrink() {
        let a = LineAligned;
        for (size, grown) in [(8, 4096), (4096, 100_000), (100_000, 16), (2000, 1500)] {
            // panic-free: test code
            let layout = Layout::from_size_align(size, 4).unwrap();
            // SAFETY: a non-zero size; each block is freed once with its layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert!(size < MIN_BYTES || p as usize % LINE == 0, "{size} bytes");
                for i in 0..size {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = a.realloc(p, layout, grown);
                assert!(!q.is_null());
                assert!(grown < MIN_BYTES || q as usize % LINE == 0, "{grown} bytes");
                for i in 0..size.min(grown) {
                    assert_eq!(*q.add(i), (i % 251) as u8);
                }
                // panic-free: test code
                a.dealloc(q, Layout::from_size_align(grown, 4).unwrap());
                let z = a.alloc_zeroed(layout);
                assert!((0..size).all(|i| *z.add(i) == 0));
                a.dealloc(z, layout);
            }
        }
    }
}
