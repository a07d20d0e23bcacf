//! A small seeded generator (xoshiro256++ seeded by SplitMix64), written out here so that the
//! same seed gives the same bits on every platform and every version of every dependency.

/// xoshiro256++: fast, statistically strong, and fully determined by its seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..bound` (`bound > 0`), without modulo bias (Lemire's method).
    pub fn below(&mut self, bound: usize) -> usize {
        let bound = bound as u64;
        let mut m = (self.next_u64() as u128) * (bound as u128);
        // A draw is refused when its low half is below 2^64 mod bound, which is below bound:
        // the division that finds it is only needed for the rare draw whose low half is too
        // (Lemire's method; the accepted draws, and so the stream, are the same as always
        // dividing). The division costs more than the rest of a shuffle's step.
        if (m as u64) < bound {
            let threshold = bound.wrapping_neg() % bound.max(1);
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (bound as u128);
            }
        }
        (m >> 64) as usize
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<X>(&mut self, items: &mut [X]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// The generator's state, for saving.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// A generator restored from `state`.
    pub fn from_state(s: [u64; 4]) -> Self {
        Rng { s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_different_seeds_differ() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn uniform_is_in_range_with_mean_near_half() {
        let mut r = Rng::new(1);
        let xs: Vec<f64> = (0..100_000).map(|_| r.uniform()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn below_covers_the_range_evenly() {
        let mut r = Rng::new(3);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            counts[r.below(5)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn below_draws_what_dividing_every_time_draws() {
        // The textbook form: the threshold computed for every draw.
        fn below_by_division(r: &mut Rng, bound: u64) -> u64 {
            loop {
                let m = (r.next_u64() as u128) * (bound as u128);
                if (m as u64) >= bound.wrapping_neg() % bound {
                    return (m >> 64) as u64;
                }
            }
        }
        // Bounds past 2^63 refuse nearly half of all draws, so the loop is taken too.
        for bound in [1u64, 2, 3, 7, 1000, 16_384, (1 << 63) + 1, u64::MAX - 5] {
            let (mut a, mut b) = (Rng::new(11), Rng::new(11));
            for _ in 0..2000 {
                assert_eq!(
                    a.below(bound as usize) as u64,
                    below_by_division(&mut b, bound)
                );
            }
            assert_eq!(
                a.state(),
                b.state(),
                "bound {bound}: the same draws consumed"
            );
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = Rng::new(5);
        let mut v: Vec<usize> = (0..100).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
