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
    /// tanh(x), in a form the compiler can vectorize where that keeps the type's accuracy.
    fn tanh_fast(self) -> Self;
}

/// tanh for f32 as a rational function (odd degree 13 over even degree 6, Eigen's coefficients)
/// on [-7.9, 7.9], where f32 tanh is ±1 beyond: within 4e-7 relative of the exact value, and
/// free of the libm call that keeps a loop scalar.
#[inline(always)]
fn tanh_rational_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const ALPHA: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const BETA: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let xc = x.clamp(-CLAMP, CLAMP);
    let x2 = xc * xc;
    let mut p = ALPHA[6];
    for &a in ALPHA[..6].iter().rev() {
        p = p * x2 + a;
    }
    let mut q = BETA[3];
    for &b in BETA[..3].iter().rev() {
        q = q * x2 + b;
    }
    // Near 0 tanh(x) = x to f32 precision, and x keeps the sign of zero.
    if x.abs() < 4e-4 {
        x
    } else {
        xc * p / q
    }
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
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        tanh_rational_f32(self)
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
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
}

/// `v` rounded to `T`, values beyond `T`'s range (infinities included) saturating to its
/// largest finite value of the same sign: for state that must stay representable (a running
/// variance of inputs near 1e20 in f32), where rounding would give an infinity no file can hold.
/// NaN stays NaN.
#[inline]
pub fn saturating_of<T: Real>(v: f64) -> T {
    let max = T::max_value().f64();
    T::of(v.clamp(-max, max))
}

/// Lanes of the reductions below: independent running sums, so that the adds neither wait on
/// each other nor stop the compiler from vectorizing (a single running sum is a chain of adds
/// the compiler may not reorder).
const LANES: usize = 16;

/// Σ over `values` of `f(v)`, in `LANES` running sums of `T`.
#[inline(always)]
fn lane_sum<T: Real>(values: &[T], f: impl Fn(T) -> T) -> T {
    let mut sums = [T::zero(); LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (s, &v) in sums.iter_mut().zip(chunk) {
            *s += f(v);
        }
    }
    let tail = rest.iter().fold(T::zero(), |acc, &v| acc + f(v));
    sums.iter().fold(tail, |acc, &s| acc + s)
}

/// Whether every value is finite (no NaN, no infinity), in one pass that vectorizes:
/// `0 · v` is 0 for a finite `v` and NaN otherwise.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn all_finite<T: Real>(values: &[T]) -> bool {
    values
        .chunks(4096)
        .all(|c| lane_sum(c, |v| v * T::zero()) == T::zero())
}

/// Σ v² in f64: blocks summed in `T` (vectorized), the blocks' sums added in f64. A block
/// whose squares overflow `T` though its values are finite (float32 values beyond 1.8e19) is
/// summed again in f64, so that only a NaN or an infinity among the values gives a sum that
/// is not finite.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn sum_squares<T: Real>(values: &[T]) -> f64 {
    values
        .chunks(1024)
        .map(|c| {
            let fast = lane_sum(c, |v| v * v).f64();
            if fast.is_finite() {
                fast
            } else {
                c.iter().map(|v| v.f64() * v.f64()).sum()
            }
        })
        .sum()
}

/// `Ok` if every value is finite, else an error naming `arg` and the first bad value's index.
pub fn check_finite<T: Real>(values: &[T], arg: &str) -> crate::Result<()> {
    match first_non_finite(values) {
        None => Ok(()),
        Some((i, v)) => Err(crate::Error::value(
            arg,
            format!("contains NaN or infinity ({v:?} at flat index {i})"),
        )),
    }
}

/// `check_finite` for a row-major matrix of rows of `width` values: the error names the first
/// bad value's row and column, as the user indexes the array (`X[row, column]`).
pub fn check_finite_rows<T: Real>(values: &[T], width: usize, arg: &str) -> crate::Result<()> {
    match first_non_finite(values) {
        None => Ok(()),
        Some((i, v)) => {
            let (row, column) = (i / width.max(1), i % width.max(1));
            Err(crate::Error::value(
                arg,
                format!("contains NaN or infinity ({v:?} at row {row}, column {column}; flat index {i})"),
            ))
        }
    }
}

/// Values per block of a finiteness test shared out over the thread team: a whole training
/// set is tested before each fit, and one core tests a 188 MB one in about 20 ms.
const FINITE_BLOCK: usize = 1 << 18;

/// Whether every value is finite, testing blocks of a large slice on the thread team.
fn all_finite_shared<T: Real>(values: &[T]) -> bool {
    if values.len() < 2 * FINITE_BLOCK {
        return all_finite(values);
    }
    let finite = std::sync::atomic::AtomicBool::new(true);
    crate::threads::for_blocks(values.len(), FINITE_BLOCK, &|range| {
        use std::sync::atomic::Ordering::Relaxed;
        if finite.load(Relaxed) && !values.get(range).is_some_and(all_finite) {
            finite.store(false, Relaxed);
        }
    });
    finite.into_inner()
}

/// The index and value of the first NaN or infinity, found by the vectorized test first.
fn first_non_finite<T: Real>(values: &[T]) -> Option<(usize, T)> {
    if all_finite_shared(values) {
        return None;
    }
    values
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
        .map(|(i, &v)| (i, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_tanh_is_within_a_few_ulp_of_the_exact_value() {
        let mut worst = 0.0f64;
        for i in -120_000..=120_000 {
            let x = i as f32 * 1e-4;
            let exact = (x as f64).tanh();
            let got = x.tanh_fast() as f64;
            worst = worst.max((got - exact).abs() / exact.abs().max(1e-30));
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(1e30f32.tanh_fast(), 1.0);
        assert_eq!((-1e30f32).tanh_fast(), -1.0);
        assert!(f32::NAN.tanh_fast().is_nan());
        assert_eq!(0.5f64.tanh_fast(), 0.5f64.tanh());
    }

    #[test]
    fn saturating_of_keeps_values_in_range() {
        assert_eq!(saturating_of::<f32>(1e40), f32::MAX);
        assert_eq!(saturating_of::<f32>(-1e300), -f32::MAX);
        assert_eq!(saturating_of::<f32>(f64::INFINITY), f32::MAX);
        assert_eq!(saturating_of::<f64>(f64::NEG_INFINITY), -f64::MAX);
        assert_eq!(saturating_of::<f32>(0.1), 0.1f32);
        assert_eq!(saturating_of::<f64>(1e300), 1e300);
        assert!(saturating_of::<f32>(f64::NAN).is_nan());
    }

    #[test]
    fn sum_squares_of_finite_values_beyond_the_types_root_stays_finite() {
        let big = [1e24f32, -2e24, 3.0];
        let want = (1e24f32 as f64).powi(2) + (2e24f32 as f64).powi(2) + 9.0;
        assert!((sum_squares(&big) - want).abs() <= 1e-12 * want);
        assert!(sum_squares(&[1.0f32, f32::INFINITY]).is_infinite());
        assert!(sum_squares(&[1.0f32, f32::NAN]).is_nan());
    }

    #[test]
    fn sum_squares_adds_every_element() {
        let v: Vec<f32> = (0..5003).map(|i| (i % 7) as f32 - 3.0).collect();
        let want: f64 = v.iter().map(|&x| (x as f64) * (x as f64)).sum();
        assert_eq!(sum_squares(&v), want);
        assert_eq!(sum_squares::<f64>(&[]), 0.0);
    }

    #[test]
    fn non_finite_values_are_named_by_row_and_column() {
        let x = [1.0f64, 2.0, 3.0, 4.0, f64::NAN, 6.0];
        let message = check_finite_rows(&x, 3, "X").unwrap_err().to_string(); // panic-free: test code
        assert!(message.contains("NaN at row 1, column 1"), "{message}");
        assert!(check_finite_rows(&x[..3], 3, "X").is_ok());
    }

    #[test]
    fn all_finite_finds_any_nan_or_infinity() {
        let mut v = vec![1.5f32; 5000];
        assert!(all_finite(&v));
        assert!(all_finite::<f64>(&[]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            v[4321] = bad;
            assert!(!all_finite(&v));
        }
        v[4321] = f32::MAX;
        assert!(all_finite(&v));
    }
}
