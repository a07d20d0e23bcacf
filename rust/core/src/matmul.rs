//! Matrix products on row-major buffers, through the `gemm` crate (which picks AVX2/FMA/AVX-512
//! kernels at run time). Transposed operands are read through strides, never copied.

use crate::Real;
use gemm::Parallelism;

/// Below this many multiply-adds a product runs on one thread: splitting it makes every thread
/// pack the shared operand, which costs more than it saves (measured: a 32×784 by 784×256
/// product ran slower on two threads than on one).
const PARALLEL_MIN_WORK: usize = 1 << 24;

/// A row-major `rows × cols` matrix in `data`, read as itself or as its transpose.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
}

impl<'a, T> Operand<'a, T> {
    /// `data` read as a `rows × cols` matrix.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        Operand {
            data,
            rows,
            cols,
            transposed: false,
        }
    }

    /// `data`, a stored `rows × cols` matrix, read as its `cols × rows` transpose.
    pub fn t(data: &'a [T], rows: usize, cols: usize) -> Self {
        Operand {
            data,
            rows,
            cols,
            transposed: true,
        }
    }

    /// Rows and columns of the matrix as read.
    fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// (row stride, column stride) of the matrix as read.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`), `c` row-major `m × n`.
///
/// With `parallel`, a product large enough to pay for it is split over bpcore's pool; callers
/// that already run one task per thread pass `false`.
///
/// Shapes are the caller's contract; a mismatch is a bug in the core and stops here with a
/// panic rather than reading out of bounds.
pub fn matmul<T: Real>(
    c: &mut [T],
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k) = a.shape();
    let (k2, n) = b.shape();
    // Soundness guard for the unsafe call below, not a user-input check: callers size buffers.
    assert!(
        k == k2 && a.data.len() >= m * k && b.data.len() >= k * n && c.len() >= m * n,
        "matmul: shapes do not fit"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::zero());
        }
        return;
    }
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    let threads = if parallel && m * n * k >= PARALLEL_MIN_WORK {
        crate::threads::num_threads()
    } else {
        1
    };
    let run = |c: &mut [T], parallelism: Parallelism| {
        // SAFETY: the assert above keeps every index the strides reach inside the three slices;
        // `c` does not alias `a` or `b` (it is borrowed mutably); T is f32 or f64, which gemm
        // supports.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                accumulate,
                a.data.as_ptr(),
                a_cs,
                a_rs,
                b.data.as_ptr(),
                b_cs,
                b_rs,
                T::one(),
                T::one(),
                false,
                false,
                false,
                parallelism,
            )
        }
    };
    if threads > 1 {
        crate::threads::install(|| run(c, Parallelism::Rayon(threads)));
    } else {
        run(c, Parallelism::None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn transpose(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
        let mut t = vec![0.0; x.len()];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = x[i * cols + j];
            }
        }
        t
    }

    #[test]
    fn all_transpose_combinations_match_the_naive_product() {
        let (m, n, k) = (7, 5, 9);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, n, k);
        let at = transpose(&a, m, k);
        let bt = transpose(&b, k, n);
        for (ao, bo) in [
            (Operand::new(&a[..], m, k), Operand::new(&b[..], k, n)),
            (Operand::t(&at[..], k, m), Operand::new(&b[..], k, n)),
            (Operand::new(&a[..], m, k), Operand::t(&bt[..], n, k)),
            (Operand::t(&at[..], k, m), Operand::t(&bt[..], n, k)),
        ] {
            let mut c = vec![1.0; m * n];
            matmul(&mut c, ao, bo, false, true);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-12);
            }
            matmul(&mut c, ao, bo, true, true);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn large_product_in_f32_matches() {
        let (m, n, k) = (130, 70, 200);
        let a: Vec<f64> = (0..m * k).map(|i| ((i % 13) as f64 - 6.0) / 7.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i % 7) as f64 - 3.0) / 5.0).collect();
        let want = naive(&a, &b, m, n, k);
        let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        let b32: Vec<f32> = b.iter().map(|&x| x as f32).collect();
        let mut c = vec![0f32; m * n];
        matmul(
            &mut c,
            Operand::new(&a32[..], m, k),
            Operand::new(&b32[..], k, n),
            false,
            true,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((*x as f64 - y).abs() < 1e-3);
        }
    }
}
