//! Matrix products on row-major buffers, through the `gemm` crate (which picks AVX2/FMA/AVX-512
//! kernels at run time). Transposed operands are read through strides, never copied.
//!
//! A product worth splitting is divided into blocks of its output, one per thread of bpcore's
//! team (see `threads`): blocks of columns when the output is at least as wide as it is tall,
//! else blocks of rows. Each thread packs only the slice of the operand its block reads (a
//! block of columns of `c = a · b` reads all of `a` and its columns of `b`; for a dense layer's
//! forward, its block of the weights). Two products that do not depend on each other (a dense
//! layer's weight and input gradients) share one job, each over half the threads
//! (`split_two`). The blocks depend only on the shapes and the number of threads, and each is
//! computed the same on whichever thread claims it, so results are the same from run to run;
//! gemm may block the sums over `k` differently for a small block than for the whole product,
//! so different thread counts can differ in the last bits.

use std::marker::PhantomData;
use std::ops::Range;

use crate::small_product::{copy_by_rows, small_product, Strided};
use crate::Real;
use gemm::Parallelism;

/// Below this many multiply-adds per block, handing a block to a worker costs more than its
/// share of the product saves (a hand-off costs about a microsecond; gemm runs about 50
/// multiply-adds per nanosecond on one core here).
const MIN_MACS_PER_PART: usize = 1 << 16;
/// Blocks per thread. One: every block packs the operand all blocks share (all of `a` for a
/// block of columns) once more, which cost more than the balance that smaller blocks gave
/// (mnist at batch 32 and 128 on two threads trained faster with one block per thread than
/// with two). The blocks are still claimed, not assigned: a worker that wakes late finds its
/// block taken by the caller.
const PARTS_PER_THREAD: usize = 1;
/// Blocks of columns start on multiples of this many elements: whole cache lines, so that two
/// threads never write one line, and whole vectors for gemm's kernels.
const COLUMN_ALIGN: usize = 16;
/// Blocks of rows start on multiples of this many rows.
const ROW_ALIGN: usize = 4;

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

/// Along which dimension of the output a product is divided between threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Along {
    Rows,
    Cols,
}

/// How a `m × n` output is divided: along what, into how many blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub along: Along,
    pub parts: usize,
}

impl Split {
    /// One block: the whole output, on the calling thread.
    pub const NONE: Split = Split {
        along: Along::Rows,
        parts: 1,
    };

    /// The split of an `m × n` output of `k`-long sums along `along` over `threads`: as many
    /// parts as the work pays for and the dimension holds aligned blocks of.
    pub fn along(along: Along, m: usize, n: usize, k: usize, threads: usize) -> Split {
        let (len, align) = match along {
            Along::Rows => (m, ROW_ALIGN),
            Along::Cols => (n, COLUMN_ALIGN),
        };
        if threads <= 1 {
            return Split { along, parts: 1 };
        }
        let by_work = m.saturating_mul(n).saturating_mul(k) / MIN_MACS_PER_PART;
        let parts = (threads * PARTS_PER_THREAD)
            .min(by_work)
            .min(len / align)
            .clamp(1, crate::threads::MAX_PARTS);
        Split { along, parts }
    }

    /// The split `matmul` uses for an `m × n` output of `k`-long sums: along the longer side.
    pub fn for_shape(m: usize, n: usize, k: usize, threads: usize) -> Split {
        let along = if n >= m { Along::Cols } else { Along::Rows };
        Split::along(along, m, n, k, threads)
    }

    /// `for_shape` over bpcore's threads when `parallel`, else `NONE`. A product too small for
    /// two blocks does not even look up the thread count (a lock and a reference count: a few
    /// per cent of a step of the smallest networks).
    pub fn over_threads(m: usize, n: usize, k: usize, parallel: bool) -> Split {
        let along = if n >= m { Along::Cols } else { Along::Rows };
        Split::over_threads_along(along, m, n, k, parallel)
    }

    /// `over_threads`, divided along `along` whatever the shape.
    pub fn over_threads_along(along: Along, m: usize, n: usize, k: usize, parallel: bool) -> Split {
        let work = m.saturating_mul(n).saturating_mul(k);
        if !parallel || work < 2 * MIN_MACS_PER_PART {
            return Split::NONE;
        }
        Split::along(along, m, n, k, crate::threads::num_threads())
    }

    /// The splits of two products that do not depend on each other, of `(m, n, k)` each, run
    /// as one job (`split_two`), each over half of bpcore's threads: on two threads each product
    /// whole on its own thread, which packs no operand twice and cuts no row of an output
    /// between two cores. `None` without `parallel`, on one thread, or for two products too
    /// small together for two blocks.
    pub fn pair_over_threads(
        a: (usize, usize, usize),
        b: (usize, usize, usize),
        parallel: bool,
    ) -> Option<(Split, Split)> {
        let work = |(m, n, k): (usize, usize, usize)| m.saturating_mul(n).saturating_mul(k);
        if !parallel || work(a).saturating_add(work(b)) < 2 * MIN_MACS_PER_PART {
            return None;
        }
        let threads = crate::threads::num_threads();
        if threads < 2 {
            return None;
        }
        let half = threads.div_ceil(2);
        Some((
            Split::for_shape(a.0, a.1, a.2, half),
            Split::for_shape(b.0, b.1, b.2, half),
        ))
    }

    /// Block `i`'s range of the split dimension (of length `len`).
    fn range(&self, len: usize, i: usize) -> Range<usize> {
        let align = match self.along {
            Along::Rows => ROW_ALIGN,
            Along::Cols => COLUMN_ALIGN,
        };
        let units = len.div_ceil(align);
        let at = |i: usize| (units * i / self.parts * align).min(len);
        at(i)..at(i + 1)
    }
}

/// A rectangular block of a row-major matrix that one thread writes: rows `rows` and columns
/// `cols` of the whole, reached row by row. Blocks of one split never overlap.
pub struct Block<'a, T> {
    /// The whole matrix's first element.
    base: *mut T,
    /// Elements per row of the whole matrix.
    stride: usize,
    pub rows: Range<usize>,
    pub cols: Range<usize>,
    _borrow: PhantomData<&'a mut [T]>,
}

impl<T> Block<'_, T> {
    /// Row `r` of the whole matrix (`r` in `self.rows`), restricted to this block's columns.
    pub fn row(&mut self, r: usize) -> &mut [T] {
        // panic-free: callers ask only for rows of the block they were handed (`zb.rows`).
        assert!(self.rows.contains(&r), "block row out of range");
        // SAFETY: the block lies inside the matrix (checked by `split_output`) and no other
        // block of the split reaches these elements; `&mut self` keeps this row unique.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.add(r * self.stride + self.cols.start),
                self.cols.len(),
            )
        }
    }

    /// The block's rows as one slice, for a block of whole rows (all the matrix's columns),
    /// which lie one after another.
    pub fn rows_in_place(&mut self) -> &mut [T] {
        // panic-free: callers ask only for blocks of whole rows (their columns checked).
        assert!(
            self.cols.start == 0 && self.cols.end == self.stride,
            "not a block of whole rows"
        );
        // SAFETY: as for `row`: the rows lie inside the matrix and belong to this block alone.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.base.add(self.rows.start * self.stride),
                self.rows.len() * self.stride,
            )
        }
    }

    /// Pointer to the block's first element (for gemm), and the whole matrix's row stride.
    fn raw(&mut self) -> (*mut T, usize) {
        // SAFETY: inside the matrix, as for `row`.
        let first = unsafe {
            self.base
                .add(self.rows.start * self.stride + self.cols.start)
        };
        (first, self.stride)
    }
}

/// The base pointer of a matrix being split, handed to the team's threads.
struct Shared<T>(*mut T);
// SAFETY: each thread derives from it only its own block, and the blocks are disjoint.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The block `rows × cols` of the matrix with `stride` elements per row; the caller (the
    /// split functions above) has checked that the matrix holds it and hands out each block once.
    fn block<'a>(&self, stride: usize, rows: Range<usize>, cols: Range<usize>) -> Block<'a, T> {
        Block {
            base: self.0,
            stride,
            rows,
            cols,
            _borrow: PhantomData,
        }
    }
}

/// Runs `part` on each block of `c` (row-major `m × n`) under `split`, the blocks on bpcore's
/// team at once. Returns when every block is done.
pub fn split_output<T: Real>(
    c: &mut [T],
    m: usize,
    n: usize,
    split: Split,
    part: impl Fn(Block<'_, T>) + Sync,
) {
    // A soundness guard: the layers size `c` from their layout, the binding allocates it.
    // panic-free: every caller's `c` holds its m × n output.
    assert!(c.len() >= m * n, "split_output: the matrix does not fit");
    let base = Shared(c.as_mut_ptr());
    run_blocks(m, n, split, &|rows, cols| part(base.block(n, rows, cols)));
}

/// `split_output` over two matrices of one shape, `c` and `d`, split alike: `part` gets the
/// same block of each (a product's output and what is computed from it, as an activation).
pub fn split_pair<T: Real>(
    c: &mut [T],
    d: &mut [T],
    m: usize,
    n: usize,
    split: Split,
    part: impl Fn(Block<'_, T>, Block<'_, T>) + Sync,
) {
    // panic-free: a soundness guard; the layers size both from their layout.
    assert!(
        c.len() >= m * n && d.len() >= m * n,
        "split_pair: the matrices do not fit"
    );
    let (base_c, base_d) = (Shared(c.as_mut_ptr()), Shared(d.as_mut_ptr()));
    run_blocks(m, n, split, &|rows, cols| {
        part(
            base_c.block(n, rows.clone(), cols.clone()),
            base_d.block(n, rows, cols),
        )
    });
}

/// `split_output` over two matrices of their own shapes and splits, `c` (`m × n`) and `d`
/// (`dm × dn`), in one job on bpcore's team: two products that do not depend on each other (a
/// dense layer's weight and input gradients) side by side, each over its share of the threads
/// (`Split::pair_over_threads`), instead of one after the other over all of them.
pub fn split_two<T: Real>(
    (c, m, n, split): (&mut [T], usize, usize, Split),
    (d, dm, dn, d_split): (&mut [T], usize, usize, Split),
    part_c: impl Fn(Block<'_, T>) + Sync,
    part_d: impl Fn(Block<'_, T>) + Sync,
) {
    // panic-free: a soundness guard; the layers size both from their layout.
    assert!(
        c.len() >= m * n && d.len() >= dm * dn,
        "split_two: the matrices do not fit"
    );
    let (base_c, base_d) = (Shared(c.as_mut_ptr()), Shared(d.as_mut_ptr()));
    let each = |i: usize| {
        if i < split.parts {
            if let Some((rows, cols)) = block_of(m, n, split, i) {
                part_c(base_c.block(n, rows, cols));
            }
        } else if let Some((rows, cols)) = block_of(dm, dn, d_split, i - split.parts) {
            part_d(base_d.block(dn, rows, cols));
        }
    };
    crate::threads::run_parts(split.parts + d_split.parts, &each);
}

/// Block `i` of an `m × n` output under `split`: its rows and columns, `None` when empty.
fn block_of(m: usize, n: usize, split: Split, i: usize) -> Option<(Range<usize>, Range<usize>)> {
    let (rows, cols) = match split.along {
        Along::Rows => (split.range(m, i), 0..n),
        Along::Cols => (0..m, split.range(n, i)),
    };
    (!rows.is_empty() && !cols.is_empty()).then_some((rows, cols))
}

/// Calls `block(rows, cols)` for each non-empty block of an `m × n` output under `split`, on
/// bpcore's team.
fn run_blocks(
    m: usize,
    n: usize,
    split: Split,
    block: &(dyn Fn(Range<usize>, Range<usize>) + Sync),
) {
    let each = |i: usize| {
        if let Some((rows, cols)) = block_of(m, n, split, i) {
            block(rows, cols);
        }
    };
    crate::threads::run_parts(split.parts, &each);
}

/// `c = a · b` (or `c += a · b` when `accumulate`), `c` row-major `m × n`.
///
/// With `parallel`, a product large enough to pay for it is divided over bpcore's threads
/// (`Split::over_threads`); callers that already run one task per thread pass `false`.
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
    matmul_then(c, a, b, accumulate, parallel, |_| {});
}

/// `matmul`, then `then` on each block of `c` on the thread that computed it, while the block
/// is in that core's cache (an activation's derivative applied to a layer's input gradient).
pub fn matmul_then<T: Real>(
    c: &mut [T],
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    accumulate: bool,
    parallel: bool,
    then: impl Fn(&mut Block<'_, T>) + Sync,
) {
    let (m, k) = a.shape();
    let (_, n) = b.shape();
    let split = Split::over_threads(m, n, k, parallel);
    split_output(c, m, n, split, |mut block| {
        product_block(&mut block, a, b, accumulate);
        then(&mut block);
    });
}

/// The rows and columns of `c = a · b` (or `c += a · b`) that `block` covers, on this thread.
/// `a` and `b` must have the shapes of the whole product, `block` be a block of its `m × n`
/// output (checked: a mismatch panics, as in `matmul`).
pub fn product_block<T: Real>(
    block: &mut Block<'_, T>,
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    acc: bool,
) {
    let k = a.shape().1;
    product_block_over(block, a, b, 0..k, acc);
}

/// `product_block` with the sums over `k` restricted to `ks`: columns `ks` of `a` times rows
/// `ks` of `b`.
fn product_block_over<T: Real>(
    block: &mut Block<'_, T>,
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    ks: Range<usize>,
    acc: bool,
) {
    let (m, k) = a.shape();
    let (k2, n) = b.shape();
    let (rows, cols) = (block.rows.clone(), block.cols.clone());
    // Soundness guard for the unsafe call below, not a user-input check: callers size buffers.
    // panic-free: the layers' shapes come from their layout, and the binding checks a, b.
    assert!(
        k == k2
            && a.data.len() >= m * k
            && b.data.len() >= k * n
            && rows.end <= m
            && cols.end <= n
            && ks.start <= ks.end
            && ks.end <= k,
        "matmul: shapes do not fit"
    );
    let (c_ptr, c_rs) = block.raw();
    if ks.is_empty() {
        if !acc {
            for r in rows {
                block.row(r).fill(T::zero());
            }
        }
        return;
    }
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    // SAFETY: the assert above keeps a and b inside their shapes; the block's rows of `a`
    // (from column ks.start) and columns of `b` (from row ks.start) start inside them and the
    // strides stay inside for the block's extent and ks; `c`'s block is this thread's alone
    // (see `Block`); T is f32 or f64, which gemm supports.
    unsafe {
        gemm_into(
            (rows.len(), cols.len(), ks.len()),
            (c_ptr, c_rs as isize, 1),
            acc,
            (
                a.data
                    .as_ptr()
                    .offset(rows.start as isize * a_rs + ks.start as isize * a_cs),
                a_rs,
                a_cs,
            ),
            (
                b.data
                    .as_ptr()
                    .offset(cols.start as isize * b_cs + ks.start as isize * b_rs),
                b_rs,
                b_cs,
            ),
        )
    }
}

/// A `b` stored by columns of at most this many elements is copied by rows before its
/// product, when the product has at most `COPIED_B_MAX_ROWS` rows: beyond those, gemm's packing
/// of `b` is a small part of the product (128 × 32 × 32: 2.9 µs from `Wᵀ`, 2.8 µs by rows).
const COPIED_B_MAX: usize = 8 * 1024;
const COPIED_B_MAX_ROWS: usize = 64;

/// `c = a · b`, or `c += a · b` when `acc`, for an `m × n` output of `k`-long sums on this
/// thread: gemm's call with each matrix given as (first element, row stride, column stride).
///
/// # Safety
/// Each pointer with its strides must stay inside its matrix's allocation for the shape
/// (`c` m × n, `a` m × k, `b` k × n), `c` reached by nothing else for the call, and `T` f32 or
/// f64.
unsafe fn gemm_into<T: Real>(
    (m, n, k): (usize, usize, usize),
    (c, c_rs, c_cs): (*mut T, isize, isize),
    acc: bool,
    (a, a_rs, a_cs): (*const T, isize, isize),
    (b, b_rs, b_cs): (*const T, isize, isize),
) {
    // A small `b` stored by columns (a dense layer's `Wᵀ` in its forward) is copied by rows
    // first: gemm packs it by strided gathers, which cost more than the copy and the product
    // of a few rows (16 × 32 × 32: 738 ns from `Wᵀ`, 483 ns copied), and the small-product
    // kernel takes only a `b` by rows. A `b` of one column stays: gemm's gemv reads it as is.
    // The copy is f32's (`copy_by_rows`); float64 products stay gemm's.
    let is_f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    if is_f32 && b_rs == 1 && n > 1 && k * n <= COPIED_B_MAX && m <= COPIED_B_MAX_ROWS {
        let copied = crate::scratch::with_scratch(k * n, |rows: &mut [T]| {
            // SAFETY: the caller's contract keeps `b` inside its matrix: element (p, j) at
            // p + j·b_cs, for p < k and j < n.
            if !unsafe { copy_by_rows(rows, b, b_cs as usize, k, n) } {
                return false;
            }
            // SAFETY: `rows` holds b as a k × n matrix by rows; the rest is the caller's.
            unsafe {
                gemm_into(
                    (m, n, k),
                    (c, c_rs, c_cs),
                    acc,
                    (a, a_rs, a_cs),
                    (rows.as_ptr(), n as isize, 1),
                )
            };
            true
        });
        if copied {
            return;
        }
    }
    // Small products of `b` and `c` stored by rows skip gemm's fixed cost (`small_product`,
    // which takes `c` by rows and its strides as counts, and says whether it applies).
    let strides = [c_rs, c_cs, a_rs, a_cs, b_rs, b_cs];
    if c_cs == 1 && strides.iter().all(|&s| s > 0) {
        let strided = |ptr, rs: isize, cs: isize| Strided {
            ptr,
            rs: rs as usize,
            cs: cs as usize,
        };
        let (a, b) = (strided(a, a_rs, a_cs), strided(b, b_rs, b_cs));
        // SAFETY: the caller's contract (above) is small_product's.
        if unsafe { small_product((m, n, k), (c, c_rs as usize), acc, a, b) } {
            return;
        }
    }
    // SAFETY: the caller's contract above is gemm's own.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            c_cs,
            c_rs,
            acc,
            a,
            a_cs,
            a_rs,
            b,
            b_cs,
            b_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Columns `cols` of `a · b`, all `m` rows, written transposed into `ct`: row `j - cols.start`
/// of `ct` (row-major, `cols.len() × m`) is column `j` of the product.
///
/// For a product against a `b` stored transposed, as a dense layer's forward `x Wᵀ`: written
/// as `c`, gemm reads the stored `W` as a row-major left operand, packed by strided gathers
/// that wait on memory once `W` outgrows the cache. Written as `cᵀ` its kernels run along the
/// batch and read `W` where it lies, row by row, copying only `a`.
pub fn product_columns_transposed<T: Real>(
    ct: &mut [T],
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    cols: Range<usize>,
) {
    let (m, k) = a.shape();
    let (k2, n) = b.shape();
    // Soundness guard for the unsafe call below, as in `product_block`.
    // panic-free: only the dense layer calls it, with shapes from its layout.
    assert!(
        k == k2
            && a.data.len() >= m * k
            && b.data.len() >= k * n
            && cols.start <= cols.end
            && cols.end <= n
            && ct.len() >= m * cols.len(),
        "matmul: shapes do not fit"
    );
    if m == 0 || cols.is_empty() {
        return;
    }
    if k == 0 {
        ct[..m * cols.len()].fill(T::zero());
        return;
    }
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    // SAFETY: the assert above keeps a and b inside their shapes and `ct` large enough for
    // `cols.len()` rows of `m`; the columns of `b` start inside it and its strides stay inside
    // for `cols`; `ct` is borrowed mutably here alone; T is f32 or f64, which gemm supports.
    unsafe {
        gemm_into(
            (m, cols.len(), k),
            (ct.as_mut_ptr(), 1, m as isize),
            false,
            (a.data.as_ptr(), a_rs, a_cs),
            (
                b.data.as_ptr().offset(cols.start as isize * b_cs),
                b_rs,
                b_cs,
            ),
        )
    }
}

/// Rows of `b` per chunk of the sums in `matmul_streaming`: a chunk of a thread's columns of a
/// 2048-wide `b` fits in its L2 cache with room for `a` and `c`.
const STREAM_ROWS: usize = 64;

/// `c = a · b` as `matmul` (not accumulating), for a `b` stored as it is read (not transposed)
/// that is far larger than the cache and read at a small batch: the sums over `k` run in chunks
/// of `STREAM_ROWS` rows of `b`, and each thread prefetches its columns of a chunk's rows
/// before gemm reads them. gemm reads `b` in place a short run per row, at the stride of its
/// rows, which the hardware prefetchers do not follow: without the hint each run waits on
/// memory (a dense layer's input gradient `δ W` with 2048 × 2048 weights at batch 32 ran at a
/// third of the rate of the same product on cached weights).
/// `then` runs on each block of `c` once its sums are complete, as in `matmul_then`.
pub fn matmul_streaming<T: Real>(
    c: &mut [T],
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    parallel: bool,
    then: impl Fn(&mut Block<'_, T>) + Sync,
) {
    if b.transposed {
        return matmul_then(c, a, b, false, parallel, then);
    }
    let (m, k) = a.shape();
    let (_, n) = b.shape();
    let split = Split::over_threads(m, n, k, parallel);
    split_output(c, m, n, split, |mut block| {
        let mut start = 0;
        loop {
            let end = (start + STREAM_ROWS).min(k);
            for row in start..end {
                let first = row * n + block.cols.start;
                if let Some(run) = b.data.get(first..first + block.cols.len()) {
                    crate::prefetch::prefetch_l2(run);
                }
            }
            product_block_over(&mut block, a, b, start..end, start > 0);
            if end >= k {
                break;
            }
            start = end;
        }
        then(&mut block);
    });
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
    fn small_f32_products_of_a_b_stored_by_columns_match_the_naive_product() {
        // Copied by rows before the product: whole tiles of 8 × 8, edges of either side, one
        // column (left to gemm), and sums both started and accumulated.
        for (m, k, n) in [
            (16, 10, 32),
            (3, 17, 9),
            (5, 8, 8),
            (2, 1, 3),
            (64, 16, 24),
            (7, 9, 1),
        ] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i % 11) as f64 - 5.0) / 8.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i % 7) as f64 - 3.0) / 4.0).collect();
            let want = naive(&a, &b, m, n, k);
            let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
            let bt32: Vec<f32> = transpose(&b, k, n).iter().map(|&x| x as f32).collect();
            let mut c = vec![1f32; m * n];
            let (ao, bo) = (Operand::new(&a32[..], m, k), Operand::t(&bt32[..], n, k));
            matmul(&mut c, ao, bo, false, false);
            for (x, y) in c.iter().zip(&want) {
                assert!((*x as f64 - y).abs() < 1e-5, "{m}x{k}x{n}: {x} vs {y}");
            }
            matmul(&mut c, ao, bo, true, false);
            for (x, y) in c.iter().zip(&want) {
                assert!(
                    (*x as f64 - 2.0 * y).abs() < 1e-5,
                    "{m}x{k}x{n} accumulated"
                );
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

    #[test]
    fn blocks_of_rows_or_columns_add_up_to_the_product() {
        let (m, n, k) = (70, 90, 33);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.21).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.13).cos()).collect();
        let want = naive(&a, &b, m, n, k);
        let (ao, bo) = (Operand::new(&a[..], m, k), Operand::new(&b[..], k, n));
        for along in [Along::Rows, Along::Cols] {
            for parts in 1..=5 {
                let split = Split { along, parts };
                let mut c = vec![f64::NAN; m * n];
                split_output(&mut c, m, n, split, |mut block| {
                    product_block(&mut block, ao, bo, false)
                });
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-12, "{along:?} in {parts}: {x} vs {y}");
                }
                let mut again = vec![0.0; m * n];
                split_output(&mut again, m, n, split, |mut block| {
                    product_block(&mut block, ao, bo, false)
                });
                assert_eq!(c, again, "the same split gives the same bits");
            }
        }
    }

    #[test]
    fn two_products_split_in_one_job_match_each_alone() {
        let (m, n, k) = (40, 70, 9);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.31).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.17).cos()).collect();
        // c = a · b (m × n) and d = b · e (k × k), of shapes and splits of their own.
        let e: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.07).sin()).collect();
        let (want_c, want_d) = (naive(&a, &b, m, n, k), naive(&b, &e, k, k, n));
        let (ao, bo, eo) = (
            Operand::new(&a[..], m, k),
            Operand::new(&b[..], k, n),
            Operand::new(&e[..], n, k),
        );
        for (c_parts, d_parts) in [(1, 1), (2, 1), (1, 3), (3, 2)] {
            let c_split = Split {
                along: Along::Cols,
                parts: c_parts,
            };
            let d_split = Split {
                along: Along::Rows,
                parts: d_parts,
            };
            let (mut c, mut d) = (vec![f64::NAN; m * n], vec![f64::NAN; k * k]);
            split_two(
                (&mut c, m, n, c_split),
                (&mut d, k, k, d_split),
                |mut block| product_block(&mut block, ao, bo, false),
                |mut block| product_block(&mut block, bo, eo, false),
            );
            for (x, y) in c.iter().zip(&want_c).chain(d.iter().zip(&want_d)) {
                assert!(
                    (x - y).abs() < 1e-12,
                    "{c_parts} and {d_parts} parts: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn columns_of_a_product_come_out_transposed() {
        let (m, n, k) = (5, 40, 9);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.29).sin()).collect();
        let bt: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.17).cos()).collect();
        let want = naive(&a, &transpose(&bt, n, k), m, n, k);
        let (ao, bo) = (Operand::new(&a[..], m, k), Operand::t(&bt[..], n, k));
        for cols in [0..n, 3..21, 39..40, 7..7] {
            let mut ct = vec![f64::NAN; m * cols.len()];
            product_columns_transposed(&mut ct, ao, bo, cols.clone());
            for (j, col) in cols.clone().enumerate() {
                for r in 0..m {
                    let (got, want) = (ct[j * m + r], want[r * n + col]);
                    assert!((got - want).abs() < 1e-12, "({r}, {col}): {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn a_streamed_product_matches_in_chunks_of_the_sums() {
        // k spans several chunks and ends inside one.
        let (m, n, k) = (6, 50, 2 * STREAM_ROWS + 17);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.21).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.13).cos()).collect();
        let want = naive(&a, &b, m, n, k);
        for parallel in [false, true] {
            // `then` doubles each block: it must see the whole sums, not a chunk's.
            let double = |block: &mut Block<'_, f64>| {
                for r in block.rows.clone() {
                    block.row(r).iter_mut().for_each(|v| *v *= 2.0);
                }
            };
            let mut c = vec![f64::NAN; m * n];
            let (ao, bo) = (Operand::new(&a, m, k), Operand::new(&b, k, n));
            matmul_streaming(&mut c, ao, bo, parallel, double);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 1e-12, "{x} vs 2 × {y}");
            }
        }
    }

    #[test]
    fn blocks_cover_the_dimension_on_aligned_bounds() {
        for along in [Along::Rows, Along::Cols] {
            for len in [1, 15, 16, 17, 100, 784] {
                for parts in 1..=4 {
                    let split = Split { along, parts };
                    let ranges: Vec<_> = (0..parts).map(|i| split.range(len, i)).collect();
                    assert_eq!(ranges[0].start, 0);
                    assert_eq!(ranges[parts - 1].end, len);
                    for pair in ranges.windows(2) {
                        assert_eq!(pair[0].end, pair[1].start);
                    }
                    let align = if along == Along::Cols {
                        COLUMN_ALIGN
                    } else {
                        ROW_ALIGN
                    };
                    assert!(ranges.iter().all(|r| r.start % align == 0 || r.is_empty()));
                }
            }
        }
    }

    #[test]
    fn a_pair_of_matrices_is_split_alike() {
        let (m, n) = (9, 40);
        let mut c = vec![0.0f32; m * n];
        let mut d = vec![0.0f32; m * n];
        let split = Split {
            along: Along::Cols,
            parts: 3,
        };
        split_pair(&mut c, &mut d, m, n, split, |mut bc, mut bd| {
            for r in bc.rows.clone() {
                let first = bc.cols.start as f32;
                bc.row(r).iter_mut().for_each(|x| *x = first);
                bd.row(r).iter_mut().for_each(|x| *x = r as f32);
            }
        });
        let starts: Vec<f32> = (0..3).map(|i| split.range(n, i).start as f32).collect();
        for r in 0..m {
            for j in 0..n {
                let block = (0..3)
                    .rev()
                    .find(|&i| split.range(n, i).start <= j)
                    .unwrap_or(0);
                assert_eq!(c[r * n + j], starts[block]);
                assert_eq!(d[r * n + j], r as f32);
            }
        }
    }
}
