//! Refusing sizes that cannot be allocated, before anything is allocated or changed.
//!
//! A failed allocation in Rust aborts the process: no error, no unwinding, the Python
//! interpreter gone with everything it held. So every size that user input controls (the
//! parameters of a network, the work buffers of a batch) is computed here with checked
//! arithmetic and, when large, probed with a fallible reservation first; an impossible size
//! becomes an ordinary error naming the argument. Small sizes are not probed, so that a warm
//! training step still allocates nothing.

use crate::{Error, Result};

/// Below this many bytes no probe is made: such an allocation is not the one that fails.
const PROBE_BYTES: usize = 1 << 30;

/// Most elements any one buffer may hold (2^40: 4 TiB of f32), far above any real machine,
/// so that element counts and their byte sizes never overflow `usize`.
pub const MAX_ELEMENTS: usize = 1 << 40;

/// `Ok` when `count` values of `T` (`None`: the count overflowed) can be allocated; else an
/// error naming `arg` and saying how much `what` would need.
pub fn check_alloc<T>(count: Option<usize>, arg: &str, what: &str) -> Result<()> {
    let size = std::mem::size_of::<T>().max(1);
    let too_large = || {
        Error::value(
            arg,
            format!(
                "{what} would need {} values ({}); more memory than can be allocated",
                count.map_or_else(|| "more than 2^64".to_string(), |c| c.to_string()),
                count
                    .and_then(|c| c.checked_mul(size))
                    .map_or_else(|| "over 16 EiB".to_string(), human_bytes),
            ),
        )
    };
    let count = count.filter(|&c| c <= MAX_ELEMENTS).ok_or_else(too_large)?;
    // panic-free: count <= 2^40 and size <= 8, so the product fits in a 64-bit usize.
    let bytes = count * size;
    if bytes >= PROBE_BYTES {
        let mut probe: Vec<T> = Vec::new();
        probe.try_reserve_exact(count).map_err(|_| too_large())?;
    }
    Ok(())
}

/// `a * b`, or `None` on overflow: the sizes `check_alloc` takes.
pub fn product(factors: &[usize]) -> Option<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
}

/// `a + b + ...`, or `None` on overflow.
pub fn sum(terms: impl IntoIterator<Item = Option<usize>>) -> Option<usize> {
    terms
        .into_iter()
        .try_fold(0usize, |acc, t| acc.checked_add(t?))
}

fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sizes_pass_without_a_probe() {
        assert!(check_alloc::<f32>(Some(1000), "X", "the batch").is_ok());
        assert!(check_alloc::<f64>(Some(0), "X", "the batch").is_ok());
    }

    #[test]
    fn overflowing_and_impossible_sizes_are_errors_naming_the_argument() {
        for count in [None, Some(usize::MAX), Some(MAX_ELEMENTS + 1)] {
            let e = check_alloc::<f32>(count, "layers[0]", "the parameters").unwrap_err();
            assert!(
                e.to_string().starts_with("layers[0]: the parameters"),
                "{e}"
            );
        }
    }

    #[test]
    fn products_and_sums_report_overflow() {
        assert_eq!(product(&[3, 4, 5]), Some(60));
        assert_eq!(product(&[usize::MAX, 2]), None);
        assert_eq!(sum([Some(1), Some(2)]), Some(3));
        assert_eq!(sum([Some(usize::MAX), Some(1)]), None);
        assert_eq!(sum([Some(1), None]), None);
    }
}
