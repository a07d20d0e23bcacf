//! Per-thread scratch buffers for the kernels: grown to the largest size asked for and then
//! reused, so that a training step allocates nothing once the first step has run.

use std::any::Any;
use std::cell::RefCell;

use crate::Real;

thread_local! {
    static F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static F64: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` elements of this thread's scratch buffer of `T` (their values are left
/// over from earlier calls: `f` must write before it reads). A call nested inside another on
/// the same thread gets a buffer of its own.
pub fn with_scratch<T: Real, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let lent = if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        F32.with(|cell| lend(cell, len, f))
    } else {
        F64.with(|cell| lend(cell, len, f))
    };
    match lent {
        Ok(result) => result,
        // Nested, or a type without a buffer of its own: a buffer for this call alone.
        Err(f) => f(&mut vec![T::zero(); len]),
    }
}

/// `f` run on `len` elements of the buffer in `cell`, or `f` handed back if that buffer is in
/// use or holds another type.
fn lend<T: Real, R, F: FnOnce(&mut [T]) -> R>(
    cell: &RefCell<dyn Any>,
    len: usize,
    f: F,
) -> Result<R, F> {
    let Ok(mut guard) = cell.try_borrow_mut() else {
        return Err(f);
    };
    let Some(buffer) = guard.downcast_mut::<Vec<T>>() else {
        return Err(f);
    };
    if buffer.len() < len {
        buffer.resize(len, T::zero());
    }
    Ok(f(&mut buffer[..len]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_reused_and_a_nested_call_gets_its_own() {
        let first = with_scratch::<f32, _>(8, |s| {
            s.fill(1.0);
            s.as_ptr() as usize
        });
        let again = with_scratch::<f32, _>(4, |s| {
            assert_eq!(s, [1.0; 4]);
            s.as_ptr() as usize
        });
        assert_eq!(first, again);
        let sum = with_scratch::<f64, _>(3, |outer| {
            outer.fill(2.0);
            let inner = with_scratch::<f64, _>(3, |inner| {
                inner.fill(5.0);
                inner.iter().sum::<f64>()
            });
            inner + outer.iter().sum::<f64>()
        });
        assert_eq!(sum, 21.0);
    }
}
