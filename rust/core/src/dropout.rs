//! Inverted dropout, as `torch.nn.Dropout(p)`: in training each value is kept with probability
//! 1 - p and scaled by 1/(1-p), so the expected output equals the input; in inference it is the
//! identity.
//!
//! The mask is not drawn from a stream but computed: whether element (row, col) of layer `layer`
//! is kept in the network's training forward number `step` is a hash of
//! (seed, step, layer, row, col). A row's mask therefore does not depend on which thread runs
//! it or how a batch is split, and the backward pass recomputes it instead of storing it.
//! `bpcore.reference` implements the same hash, so tests compare with identical masks.
//!
//! Backward, by the chain rule on y = x · m / (1-p) with m ∈ {0, 1}: ∂L/∂x = ∂L/∂y · m / (1-p).

use crate::Real;

/// The golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finalizer: a bijection of u64 whose output bits each depend on every input bit.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Folds `value` into the hash `h`.
#[inline(always)]
fn combine(h: u64, value: u64) -> u64 {
    mix((h ^ value).wrapping_add(GOLDEN))
}

/// What fixes the masks of one training forward: the network's seed, the count of training
/// forwards before this one, and the global index of the first row of the (part of the) batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskKey {
    pub seed: u64,
    pub step: u64,
    pub row_offset: usize,
}

impl MaskKey {
    /// The hash of a whole row of layer `layer`; elements add their column.
    pub fn row(&self, layer: usize, row: usize) -> u64 {
        let h = combine(self.seed, self.step);
        let h = combine(h, layer as u64);
        combine(h, (self.row_offset + row) as u64)
    }
}

/// Uniform in [0, 1) with 53 bits for element `col` of the row whose hash is `row_hash`.
#[inline(always)]
pub fn uniform(row_hash: u64, col: usize) -> f64 {
    (combine(row_hash, col as u64) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A dropout layer: its probability of zeroing and its index in the network (part of the key).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub p: f64,
    pub layer: usize,
}

impl Dropout {
    /// The factor kept values are multiplied by, 1/(1-p), rounded to `T` as torch does.
    fn scale<T: Real>(&self) -> T {
        T::one() / T::of(1.0 - self.p)
    }

    /// Training forward of `n` rows of `width` values: y = x · m / (1-p).
    pub fn forward<T: Real>(&self, key: MaskKey, x: &[T], n: usize, width: usize, y: &mut [T]) {
        self.each(key, n, width, x, y)
    }

    /// ∂L/∂x = ∂L/∂y · m / (1-p), with the mask of the forward of the same `key`.
    pub fn backward<T: Real>(&self, key: MaskKey, dy: &[T], n: usize, width: usize, dx: &mut [T]) {
        self.each(key, n, width, dy, dx)
    }

    /// out = inp · m / (1-p): the forward and the backward are the same map.
    fn each<T: Real>(&self, key: MaskKey, n: usize, width: usize, inp: &[T], out: &mut [T]) {
        let scale = self.scale::<T>();
        let rows = inp[..n * width]
            .chunks_exact(width)
            .zip(out[..n * width].chunks_exact_mut(width));
        for (r, (i_row, o_row)) in rows.enumerate() {
            let h = key.row(self.layer, r);
            for (c, (&v, o)) in i_row.iter().zip(o_row.iter_mut()).enumerate() {
                *o = if uniform(h, c) >= self.p {
                    v * scale
                } else {
                    T::zero()
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_rate_and_scale() {
        let layer = Dropout { p: 0.3, layer: 2 };
        let key = MaskKey {
            seed: 5,
            step: 0,
            row_offset: 0,
        };
        let (n, w) = (400, 250);
        let x = vec![1.0f64; n * w];
        let mut y = vec![0.0; n * w];
        layer.forward(key, &x, n, w, &mut y);
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / (n * w) as f64;
        // 100 000 Bernoulli(0.7) draws: standard deviation 0.0015.
        assert!((kept - 0.7).abs() < 0.006, "kept {kept}");
        assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.7));
        let mean = y.iter().sum::<f64>() / (n * w) as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        // Columns and rows are each kept at the rate too (no structure in the hash).
        for c in [0, 1, 17, 249] {
            let col = (0..n).filter(|r| y[r * w + c] != 0.0).count() as f64 / n as f64;
            assert!((col - 0.7).abs() < 0.1, "column {c}: {col}");
        }
    }

    #[test]
    fn masks_depend_on_the_key_not_on_the_split() {
        let layer = Dropout { p: 0.5, layer: 1 };
        let key = MaskKey {
            seed: 9,
            step: 3,
            row_offset: 0,
        };
        let (n, w) = (10, 7);
        let x: Vec<f32> = (0..n * w).map(|i| i as f32 + 1.0).collect();
        let mut whole = vec![0.0; n * w];
        layer.forward(key, &x, n, w, &mut whole);
        // Rows 4.. computed as a share of their own, with their global offset.
        let mut part = vec![0.0; (n - 4) * w];
        let shifted = MaskKey {
            row_offset: 4,
            ..key
        };
        layer.forward(shifted, &x[4 * w..], n - 4, w, &mut part);
        assert_eq!(&whole[4 * w..], &part[..]);
        // Another step, seed or layer gives another mask.
        for other in [MaskKey { step: 4, ..key }, MaskKey { seed: 10, ..key }] {
            let mut y = vec![0.0; n * w];
            layer.forward(other, &x, n, w, &mut y);
            assert_ne!(y, whole);
        }
        let mut y = vec![0.0; n * w];
        Dropout { p: 0.5, layer: 3 }.forward(key, &x, n, w, &mut y);
        assert_ne!(y, whole);
    }

    #[test]
    fn backward_uses_the_forward_mask() {
        let layer = Dropout { p: 0.25, layer: 0 };
        let key = MaskKey::default();
        let (n, w) = (6, 5);
        let x: Vec<f64> = (0..n * w).map(|i| 0.5 + i as f64).collect();
        let mut y = vec![0.0; n * w];
        layer.forward(key, &x, n, w, &mut y);
        let ones = vec![1.0; n * w];
        let mut dx = vec![0.0; n * w];
        layer.backward(key, &ones, n, w, &mut dx);
        for i in 0..n * w {
            assert_eq!(dx[i] * x[i], y[i]);
        }
    }

    #[test]
    fn the_hash_is_pinned() {
        // bpcore.reference implements the same hash; its tests pin the same values.
        let key = MaskKey {
            seed: 7,
            step: 5,
            row_offset: 0,
        };
        assert_eq!(key.row(1, 2), 0xA6AC_6A00_E3F5_01CC);
        assert_eq!(uniform(key.row(1, 2), 3), 0.991_137_402_719_256_7);
        assert_eq!(MaskKey::default().row(0, 0), 0x2382_75BC_38FC_BE91);
        assert_eq!(
            uniform(MaskKey::default().row(0, 0), 0),
            0.129_645_618_299_747_4
        );
    }
}
