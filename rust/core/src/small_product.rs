//! Small float32 products `c = a · b` (or `c += a · b`) whose `b` and `c` are stored by rows,
//! in AVX2 with FMA: the weight and input gradients of layers a few dozen wide at small
//! batches. gemm's fixed cost of a call (its dispatch, the packing of its operands and the
//! allocation of its buffers) was most of such a product: 53 to 401 ns for products of 512 to
//! 5,120 multiply-adds, in a 10-32-32-1 network's step of about 4 µs at batch 16.
//!
//! Here `b` is read where it lies, a row at a time, and each block of four rows and sixteen
//! columns of `c` is summed in registers, every element over `p` in order (then added to `c`
//! when accumulating), so that the bits do not depend on how a split cut the output.
//!
//! A `b` stored by columns (a dense layer's `Wᵀ` in its forward) is first copied by rows
//! (`copy_by_rows`, in tiles turned in registers); `matmul` does so for products of few rows.

use std::any::TypeId;

use crate::Real;

/// Products of at most this many multiply-adds take this kernel where it applies, on a
/// processor with AVX-512. Larger ones are gemm's: its AVX-512 kernels outrun these AVX2 ones
/// once the sums outweigh the fixed cost (16 × 32 × 32: 209 ns in gemm, 345 ns here; 32 × 16 ×
/// 10: 401 ns in gemm, 180 ns here; an Intel Xeon).
pub const SMALL_MACS: usize = 8 * 1024;
/// The same bound on a processor with AVX2 but not AVX-512, where gemm's kernels are AVX2 too
/// and only its fixed cost differs: with the 32-wide layer's products of 16,384 multiply-adds
/// here, the 10-32-32-1 network at batch 16 trained 16% faster (best epochs of alternating
/// runs, 2.61 to 3.04 million samples/s; an AMD EPYC, Zen 3).
pub const SMALL_MACS_AVX2: usize = 32 * 1024;

/// The bound on this processor's small products.
fn small_macs() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return SMALL_MACS_AVX2;
        }
    }
    SMALL_MACS
}

/// A matrix given as its first element and its row and column strides, in elements.
#[derive(Debug, Clone, Copy)]
pub struct Strided<T> {
    pub ptr: *const T,
    pub rs: usize,
    pub cs: usize,
}

/// `c = a · b` (or `c += a · b` when `acc`) for `(m, n, k)`, with `c` (rows `c_rs` apart) and
/// `b` (rows `b.rs` apart) of unit column stride; `true` if it ran, `false` (nothing written)
/// where it does not apply: `T` not f32, a processor without AVX2 and FMA, `b` or `c` not
/// stored by rows, or a product larger than `small_macs()`.
///
/// # Safety
/// Each matrix must lie inside its allocation for its shape and strides (`c` m × n, `a`
/// m × k, `b` k × n), and `c` be reached by nothing else during the call.
pub unsafe fn small_product<T: Real>(
    (m, n, k): (usize, usize, usize),
    (c, c_rs): (*mut T, usize),
    acc: bool,
    a: Strided<T>,
    b: Strided<T>,
) -> bool {
    let macs = m.saturating_mul(n).saturating_mul(k);
    if macs == 0 || macs > small_macs() || b.cs != 1 || TypeId::of::<T>() != TypeId::of::<f32>() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx2")
            || !std::arch::is_x86_feature_detected!("fma")
        {
            return false;
        }
        let a = Strided {
            ptr: a.ptr.cast::<f32>(),
            rs: a.rs,
            cs: a.cs,
        };
        // SAFETY: T is f32 (checked above), so the pointers address f32 values; the processor
        // has AVX2 and FMA (checked above); the shapes and strides are the caller's contract.
        unsafe {
            product_avx2(
                (m, n, k),
                (c.cast::<f32>(), c_rs),
                acc,
                a,
                (b.ptr.cast(), b.rs),
            )
        };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (c, c_rs, acc, a);
        false
    }
}

/// Copies the `k × n` matrix stored by columns at `b` (element (p, j) at `p + j·cs`) into
/// `rows` (at least `k·n` elements) by rows (element (p, j) at `p·n + j`); `true` if it ran,
/// `false` (nothing written) for `T` other than f32 or a processor without AVX2. Tiles of
/// 8 × 8 are turned in registers, the edges one element at a time.
///
/// # Safety
/// `b` must hold the matrix: `(n - 1)·cs + k` elements from `b`, when `k` and `n` are not 0.
pub unsafe fn copy_by_rows<T: Real>(
    rows: &mut [T],
    b: *const T,
    cs: usize,
    k: usize,
    n: usize,
) -> bool {
    if TypeId::of::<T>() != TypeId::of::<f32>() || rows.len() < k * n {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return false;
        }
        let rows = rows.as_mut_ptr().cast::<f32>();
        // SAFETY: T is f32 (checked above); `rows` holds k·n elements (checked above); the
        // processor has AVX2 (checked above); `b` is the caller's contract.
        unsafe { transpose_avx2(rows, b.cast(), cs, k, n) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (b, cs);
        false
    }
}

/// `copy_by_rows` for f32 with AVX2.
///
/// # Safety
/// As `copy_by_rows`, with `rows` holding `k·n` elements and a processor with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_avx2(rows: *mut f32, b: *const f32, cs: usize, k: usize, n: usize) {
    use std::arch::x86_64::*;
    let (whole_j, whole_p) = (n / LANES * LANES, k / LANES * LANES);
    // SAFETY (this block): every read is of element (p, j) with p < k, j < n, inside `b`;
    // every write of element (p, j) of `rows`, inside its k·n elements.
    unsafe {
        for j in (0..whole_j).step_by(LANES) {
            for p in (0..whole_p).step_by(LANES) {
                // Columns j..j+8 from row p: eight registers, one per column of b.
                let col = |c: usize| _mm256_loadu_ps(b.add((j + c) * cs + p));
                let (c0, c1, c2, c3) = (col(0), col(1), col(2), col(3));
                let (c4, c5, c6, c7) = (col(4), col(5), col(6), col(7));
                let (t0, t1) = (_mm256_unpacklo_ps(c0, c1), _mm256_unpackhi_ps(c0, c1));
                let (t2, t3) = (_mm256_unpacklo_ps(c2, c3), _mm256_unpackhi_ps(c2, c3));
                let (t4, t5) = (_mm256_unpacklo_ps(c4, c5), _mm256_unpackhi_ps(c4, c5));
                let (t6, t7) = (_mm256_unpacklo_ps(c6, c7), _mm256_unpackhi_ps(c6, c7));
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let out = |r: usize, v: __m256| _mm256_storeu_ps(rows.add((p + r) * n + j), v);
                out(0, _mm256_permute2f128_ps::<0x20>(u0, u4));
                out(1, _mm256_permute2f128_ps::<0x20>(u1, u5));
                out(2, _mm256_permute2f128_ps::<0x20>(u2, u6));
                out(3, _mm256_permute2f128_ps::<0x20>(u3, u7));
                out(4, _mm256_permute2f128_ps::<0x31>(u0, u4));
                out(5, _mm256_permute2f128_ps::<0x31>(u1, u5));
                out(6, _mm256_permute2f128_ps::<0x31>(u2, u6));
                out(7, _mm256_permute2f128_ps::<0x31>(u3, u7));
            }
        }
        // The edges: rows p ≥ whole_p of every column, and columns j ≥ whole_j.
        for j in 0..n {
            let from = if j < whole_j { whole_p } else { 0 };
            for p in from..k {
                *rows.add(p * n + j) = *b.add(j * cs + p);
            }
        }
    }
}

/// Float32 lanes of an AVX2 register.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 8;
/// Rows of `c` summed together: four rows × two registers, eight running sums.
#[cfg(target_arch = "x86_64")]
const ROWS: usize = 4;

/// The kernel: blocks of `ROWS` rows (the last rows one at a time) by two registers of
/// columns, the last block of columns masked.
///
/// # Safety
/// As `small_product`, with f32 matrices, and the processor must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn product_avx2(
    (m, n, k): (usize, usize, usize),
    (c, c_rs): (*mut f32, usize),
    acc: bool,
    a: Strided<f32>,
    (b, b_rs): (*const f32, usize),
) {
    use std::arch::x86_64::*;
    // The lanes of a block of columns from `j` that lie inside the n columns, as masks.
    let masks = |j: usize| {
        let lanes = |from: usize| {
            let count = n.saturating_sub(from).min(LANES) as i32;
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(count),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        };
        (lanes(j), lanes(j + LANES))
    };
    let groups = m / ROWS * ROWS;
    for j in (0..n).step_by(2 * LANES) {
        let (low_mask, high_mask) = masks(j);
        // SAFETY (this block): the loads and stores touch only columns j..n of rows of b
        // (p < k) and c (i < m), inside their matrices: whole blocks lie inside, a masked-out
        // lane is not accessed, and the last block's store copies only its `tail` columns.
        unsafe {
            // A whole block of columns is read and written unmasked, the last one written through
            // a buffer on the stack: AMD's masked stores cost a dozen cycles each, most of a
            // 16 × 10 × 32 product on a Zen 4 core.
            let whole = j + 2 * LANES <= n;
            let tail = n.saturating_sub(j).min(2 * LANES);
            let load = |at: *const f32, mask: __m256i| {
                if whole {
                    _mm256_loadu_ps(at)
                } else {
                    _mm256_maskload_ps(at, mask)
                }
            };
            let store = |i: usize, low: __m256, high: __m256| {
                let at = c.add(i * c_rs + j);
                let (low, high) = if acc {
                    (
                        _mm256_add_ps(load(at, low_mask), low),
                        _mm256_add_ps(load(at.add(LANES), high_mask), high),
                    )
                } else {
                    (low, high)
                };
                if whole {
                    _mm256_storeu_ps(at, low);
                    _mm256_storeu_ps(at.add(LANES), high);
                } else {
                    let mut lanes = [0.0f32; 2 * LANES];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), low);
                    _mm256_storeu_ps(lanes.as_mut_ptr().add(LANES), high);
                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), at, tail);
                }
            };
            for i in (0..groups).step_by(ROWS) {
                let mut low = [_mm256_setzero_ps(); ROWS];
                let mut high = [_mm256_setzero_ps(); ROWS];
                for p in 0..k {
                    let row = b.add(p * b_rs + j);
                    let b_low = load(row, low_mask);
                    let b_high = load(row.add(LANES), high_mask);
                    for r in 0..ROWS {
                        let scale = _mm256_broadcast_ss(&*a.ptr.add((i + r) * a.rs + p * a.cs));
                        low[r] = _mm256_fmadd_ps(scale, b_low, low[r]);
                        high[r] = _mm256_fmadd_ps(scale, b_high, high[r]);
                    }
                }
                for r in 0..ROWS {
                    store(i + r, low[r], high[r]);
                }
            }
            for i in groups..m {
                let (mut low, mut high) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for p in 0..k {
                    let row = b.add(p * b_rs + j);
                    let scale = _mm256_broadcast_ss(&*a.ptr.add(i * a.rs + p * a.cs));
                    low = _mm256_fmadd_ps(scale, load(row, low_mask), low);
                    high = _mm256_fmadd_ps(scale, load(row.add(LANES), high_mask), high);
                }
                store(i, low, high);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// c = a · b (+ c) by the definition, in f64.
    fn naive(m: usize, n: usize, k: usize, a: &[f32], a_t: bool, b: &[f32], c: &[f32]) -> Vec<f64> {
        let a_at = |i: usize, p: usize| if a_t { a[p * m + i] } else { a[i * k + p] } as f64;
        (0..m * n)
            .map(|e| {
                let (i, j) = (e / n, e % n);
                c[e] as f64
                    + (0..k)
                        .map(|p| a_at(i, p) * b[p * n + j] as f64)
                        .sum::<f64>()
            })
            .collect()
    }

    #[test]
    fn small_products_match_the_definition_for_every_edge() {
        // Rows in and out of whole groups of four, columns in and out of whole pairs of
        // registers, `a` stored by rows or transposed (a weight gradient's δᵀ), with and
        // without accumulating.
        for (m, n, k) in [
            (1, 1, 1),
            (3, 5, 2),
            (4, 16, 3),
            (5, 17, 7),
            (16, 32, 32),
            (32, 10, 16),
            (1, 32, 16),
            // The largest product taken without AVX-512 (last: elsewhere it is gemm's).
            (32, 32, 32),
        ] {
            for a_t in [false, true] {
                for acc in [false, true] {
                    let a: Vec<f32> = (0..m * k)
                        .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1)
                        .collect();
                    let b: Vec<f32> = (0..k * n)
                        .map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1)
                        .collect();
                    let start: Vec<f32> = (0..m * n)
                        .map(|i| if acc { i as f32 * 0.01 } else { f32::NAN })
                        .collect();
                    let mut c = start.clone();
                    let (rs, cs) = if a_t { (1, m) } else { (k, 1) };
                    let a_s = Strided {
                        ptr: a.as_ptr(),
                        rs,
                        cs,
                    };
                    let b_s = Strided {
                        ptr: b.as_ptr(),
                        rs: n,
                        cs: 1,
                    };
                    // SAFETY: each buffer holds its matrix for these shapes and strides.
                    let ran =
                        unsafe { small_product((m, n, k), (c.as_mut_ptr(), n), acc, a_s, b_s) };
                    if !ran {
                        return; // no AVX2 and FMA here: gemm computes these products
                    }
                    let zeros = vec![0.0; m * n];
                    let want = naive(m, n, k, &a, a_t, &b, if acc { &start } else { &zeros });
                    for (got, want) in c.iter().zip(&want) {
                        assert!(
                            (*got as f64 - want).abs() < 1e-4,
                            "{m}x{n}x{k}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_matrix_by_columns_is_copied_by_rows_element_for_element() {
        // Whole tiles, edges on either side and both, and columns further apart than k.
        for (k, n, cs) in [
            (8, 8, 8),
            (10, 32, 10),
            (17, 9, 20),
            (3, 5, 3),
            (16, 24, 16),
        ] {
            let b: Vec<f32> = (0..(n - 1) * cs + k).map(|i| i as f32).collect();
            let mut rows = vec![f32::NAN; k * n];
            // SAFETY: `b` holds (n - 1)·cs + k elements, `rows` k·n.
            if !unsafe { copy_by_rows(&mut rows, b.as_ptr(), cs, k, n) } {
                return; // no AVX2 here: gemm reads such a b itself
            }
            for p in 0..k {
                for j in 0..n {
                    assert_eq!(rows[p * n + j], b[j * cs + p], "{k}x{n}: ({p}, {j})");
                }
            }
        }
    }

    #[test]
    fn what_does_not_apply_is_left_to_gemm() {
        let (a, b) = ([1.0f64; 4], [1.0f64; 4]);
        let mut c = [0.0f64; 4];
        let s = |ptr| Strided { ptr, rs: 2, cs: 1 };
        // SAFETY: 2 × 2 matrices in 4-element buffers.
        let ran = unsafe {
            small_product(
                (2, 2, 2),
                (c.as_mut_ptr(), 2),
                false,
                s(a.as_ptr()),
                s(b.as_ptr()),
            )
        };
        assert!(!ran, "float64 goes to gemm");
        assert_eq!(c, [0.0; 4]);
        let (a, b) = ([1.0f32; 4], [1.0f32; 4]);
        let mut c = [0.0f32; 4];
        let rows = Strided {
            ptr: a.as_ptr(),
            rs: 2,
            cs: 1,
        };
        let columns = Strided {
            ptr: b.as_ptr(),
            rs: 1,
            cs: 2,
        };
        // SAFETY: as above.
        let ran = unsafe { small_product((2, 2, 2), (c.as_mut_ptr(), 2), false, rows, columns) };
        assert!(!ran, "a b stored by columns goes to gemm");
    }
}
