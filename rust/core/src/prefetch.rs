//! Software prefetch: asks the cache to fetch memory a kernel is about to read at a stride the
//! hardware prefetchers do not follow (one short run per row of a large matrix).

/// Bytes of one cache line.
const LINE: usize = 64;

/// Hints that `values` will be read soon, into the core's L2 cache. Only a hint: nothing is
/// read, nothing can fault, and where there is no prefetch instruction nothing happens.
#[inline]
pub fn prefetch_l2<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = std::mem::size_of_val(values);
        let first = values.as_ptr().cast::<i8>();
        for offset in (0..bytes).step_by(LINE) {
            // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 processor has (it is part of
            // the target's baseline, so no run-time detection is needed); it reads nothing and
            // cannot fault, and the address stays inside the slice anyway (offset < bytes).
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                    first.wrapping_add(offset),
                )
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_changes_nothing() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        prefetch_l2(&values);
        prefetch_l2(&values[999..]);
        prefetch_l2::<f64>(&[]);
        assert_eq!(values[999], 999.0);
    }
}
