//! The floating-point element types the core is generic over: `f32` and `f64`.

use std::fmt::Debug;

/// A floating-point element type of tensors: `f32` or `f64`.
///
/// `'static` lets the matrix multiply dispatch on the concrete type.
pub trait Real:
    num_traits::Float + num_traits::NumAssign + Send + Sync + Default + Debug + 'static
{
    /// Converts from `f64`, rounding to nearest.
    fn of(v: f64) -> Self;
    /// Widens to `f64`.
    fn f64(self) -> f64;
    /// The error function, erf(x).
    fn erf(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn of(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erf(self)
    }
}
