//! Element-wise activations and their derivatives, as torch.nn's.
//!
//! Backward is the chain rule's local factor: ∂L/∂z = ∂L/∂h ⊙ f'(z).

use multiversion::multiversion;

use crate::{LayerSpec, Real};

/// An element-wise activation h = f(z).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu { negative_slope: f64 },
    Sigmoid,
    Tanh,
    Gelu,
    Elu { alpha: f64 },
    Softplus { beta: f64, threshold: f64 },
    Silu,
    Mish,
    Identity,
}

/// 1/√(2π), for the normal density in GELU's derivative.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Above this, Mish's softplus is x itself (torch.nn.Softplus's default threshold): the two
/// differ by less than e^-20 there, and e^x is never taken where it could overflow.
const MISH_SOFTPLUS_THRESHOLD: f64 = 20.0;

/// tanh(softplus(x)), Mish's gate.
#[inline(always)]
fn mish_gate<T: Real>(x: T) -> T {
    let softplus = if x > T::of(MISH_SOFTPLUS_THRESHOLD) {
        x
    } else {
        x.exp().ln_1p()
    };
    softplus.tanh_fast()
}

#[inline(always)]
fn sigmoid<T: Real>(x: T) -> T {
    // Two branches so that exp never overflows: e^(-|x|) ≤ 1.
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

impl Activation {
    /// The activation a layer description names, or `None` for a layer with parameters.
    pub fn from_spec(spec: &LayerSpec) -> Option<Self> {
        Some(match *spec {
            LayerSpec::Relu => Activation::Relu,
            LayerSpec::LeakyRelu { negative_slope } => Activation::LeakyRelu { negative_slope },
            LayerSpec::Sigmoid => Activation::Sigmoid,
            LayerSpec::Tanh => Activation::Tanh,
            LayerSpec::Gelu => Activation::Gelu,
            LayerSpec::Elu { alpha } => Activation::Elu { alpha },
            LayerSpec::Softplus { beta, threshold } => Activation::Softplus { beta, threshold },
            LayerSpec::Silu => Activation::Silu,
            LayerSpec::Mish => Activation::Mish,
            LayerSpec::Identity => Activation::Identity,
            LayerSpec::Dense { .. }
            | LayerSpec::Prelu { .. }
            | LayerSpec::Dropout { .. }
            | LayerSpec::BatchNorm1d { .. }
            | LayerSpec::LayerNorm { .. }
            | LayerSpec::Reshape { .. }
            | LayerSpec::Flatten
            | LayerSpec::Conv1d { .. }
            | LayerSpec::Conv2d { .. }
            | LayerSpec::MaxPool1d { .. }
            | LayerSpec::MaxPool2d { .. }
            | LayerSpec::AvgPool1d { .. }
            | LayerSpec::AvgPool2d { .. }
            | LayerSpec::Embedding { .. }
            | LayerSpec::Embeddings { .. } => return None,
        })
    }

    /// The gain He initialization uses before this activation, or `None` where Glorot's
    /// variance-preserving scale suits better (saturating and linear activations).
    ///
    /// torch's `calculate_gain` has no entry for GELU, SiLU or Mish: all three are smooth
    /// rectifiers (≈ 0 for x ≪ 0, ≈ x for x ≫ 0) that pass about half the variance as ReLU
    /// does, so they take ReLU's √2, as ELU does here.
    pub fn he_gain(&self) -> Option<f64> {
        match *self {
            Activation::Relu
            | Activation::Elu { .. }
            | Activation::Gelu
            | Activation::Silu
            | Activation::Mish => Some(2f64.sqrt()),
            Activation::LeakyRelu { negative_slope } => {
                Some((2.0 / (1.0 + negative_slope * negative_slope)).sqrt())
            }
            _ => None,
        }
    }

    /// h = f(z), element by element (`h.len() == z.len()`).
    pub fn forward<T: Real>(&self, z: &[T], h: &mut [T]) {
        forward_simd(*self, z, h)
    }

    /// z = f(z), element by element: the forward without a buffer of its own.
    pub fn forward_in_place<T: Real>(&self, z: &mut [T]) {
        forward_in_place_simd(*self, z)
    }

    /// ∂L/∂z = ∂L/∂h ⊙ f'(z), given the forward's input `z` and output `h`.
    pub fn backward<T: Real>(&self, z: &[T], h: &[T], dh: &[T], dz: &mut [T]) {
        backward_simd(*self, z, h, dh, dz)
    }

    /// `backward` with ∂L/∂h in `d`, overwritten by ∂L/∂z.
    pub fn backward_in_place<T: Real>(&self, z: &[T], h: &[T], d: &mut [T]) {
        backward_in_place_simd(*self, z, h, d)
    }

    /// f itself, handed to `each` once per call so that the loop over elements is compiled
    /// for one activation at a time.
    #[inline(always)]
    fn forward_with<T: Real, E: Elementwise<T>>(&self, each: E) {
        match *self {
            Activation::Relu => each.map(|z| if z > T::zero() { z } else { T::zero() }),
            Activation::LeakyRelu { negative_slope } => {
                let s = T::of(negative_slope);
                each.map(move |z| if z > T::zero() { z } else { z * s })
            }
            Activation::Sigmoid => each.map(sigmoid),
            Activation::Tanh => each.map(|z: T| z.tanh_fast()),
            Activation::Gelu => {
                let inv_sqrt2 = T::of(std::f64::consts::FRAC_1_SQRT_2);
                let half = T::of(0.5);
                each.map(move |z| half * z * (T::one() + (z * inv_sqrt2).erf()))
            }
            Activation::Elu { alpha } => {
                let a = T::of(alpha);
                each.map(move |z| if z > T::zero() { z } else { a * z.exp_m1() })
            }
            Activation::Softplus { beta, threshold } => {
                let (b, t) = (T::of(beta), T::of(threshold));
                each.map(move |z| {
                    if z * b > t {
                        z
                    } else {
                        (z * b).exp().ln_1p() / b
                    }
                })
            }
            Activation::Silu => each.map(|z| z * sigmoid(z)),
            Activation::Mish => each.map(|z| z * mish_gate(z)),
            Activation::Identity => each.map(|z| z),
        }
    }

    /// f' times the incoming gradient, handed to `each` once per call (as `forward_with`):
    /// `d(z, h, g)` is ∂L/∂z for the input `z`, output `h` and incoming gradient `g`.
    #[inline(always)]
    fn backward_with<T: Real, E: Chain<T>>(&self, each: E) {
        let (zero, one) = (T::zero(), T::one());
        match *self {
            Activation::Relu => each.map(|z, _, g| if z > zero { g } else { zero }),
            Activation::LeakyRelu { negative_slope } => {
                let s = T::of(negative_slope);
                each.map(move |z, _, g| if z > zero { g } else { g * s })
            }
            Activation::Sigmoid => each.map(|_, h, g| g * h * (one - h)),
            Activation::Tanh => each.map(|_, h, g| g * (one - h * h)),
            Activation::Gelu => {
                // d/dz [z Φ(z)] = Φ(z) + z φ(z)
                let inv_sqrt2 = T::of(std::f64::consts::FRAC_1_SQRT_2);
                let (half, c) = (T::of(0.5), T::of(INV_SQRT_2PI));
                each.map(move |z, _, g| {
                    let cdf = half * (one + (z * inv_sqrt2).erf());
                    let pdf = c * (-half * z * z).exp();
                    g * (cdf + z * pdf)
                })
            }
            Activation::Elu { alpha } => {
                let a = T::of(alpha);
                each.map(move |z, _, g| if z > zero { g } else { g * a * z.exp() })
            }
            Activation::Softplus { beta, threshold } => {
                let (b, t) = (T::of(beta), T::of(threshold));
                each.map(move |z, _, g| if z * b > t { g } else { g * sigmoid(z * b) })
            }
            Activation::Silu => {
                // d/dz [z σ(z)] = σ(z) (1 + z (1 - σ(z)))
                each.map(|z, _, g| {
                    let s = sigmoid(z);
                    g * s * (one + z * (one - s))
                })
            }
            Activation::Mish => {
                // d/dz [z t], t = tanh(softplus(z)): t + z (1 - t²) σ(z), as torch's kernel
                each.map(|z, _, g| {
                    let t = mish_gate(z);
                    g * (t + z * (one - t * t) * sigmoid(z))
                })
            }
            Activation::Identity => each.map(|_, _, g| g),
        }
    }
}

// The element loops compiled for AVX-512 and AVX2 too, chosen at run time: the crate itself is
// built for baseline x86-64 so that one wheel runs everywhere.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn forward_simd<T: Real>(act: Activation, z: &[T], h: &mut [T]) {
    act.forward_with(FromTo(z, h))
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn forward_in_place_simd<T: Real>(act: Activation, z: &mut [T]) {
    act.forward_with(InPlace(z))
}

/// Where an element-wise map reads and writes: `map(f)` applies `f` to every element.
trait Elementwise<T> {
    fn map(self, f: impl Fn(T) -> T);
}

/// From one buffer into another of the same length.
struct FromTo<'a, T>(&'a [T], &'a mut [T]);

impl<T: Copy> Elementwise<T> for FromTo<'_, T> {
    #[inline(always)]
    fn map(self, f: impl Fn(T) -> T) {
        self.0
            .iter()
            .zip(self.1.iter_mut())
            .for_each(|(&z, h)| *h = f(z))
    }
}

/// Over one buffer, in place.
struct InPlace<'a, T>(&'a mut [T]);

impl<T: Copy> Elementwise<T> for InPlace<'_, T> {
    #[inline(always)]
    fn map(self, f: impl Fn(T) -> T) {
        self.0.iter_mut().for_each(|z| *z = f(*z))
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn backward_simd<T: Real>(act: Activation, z: &[T], h: &[T], dh: &[T], dz: &mut [T]) {
    act.backward_with(Apart { z, h, dh, dz })
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn backward_in_place_simd<T: Real>(act: Activation, z: &[T], h: &[T], d: &mut [T]) {
    act.backward_with(Inside { z, h, d })
}

/// Where the chain rule's element-wise step reads and writes: `map(f)` sets each ∂L/∂z to
/// `f(z, h, ∂L/∂h)`.
trait Chain<T> {
    fn map(self, f: impl Fn(T, T, T) -> T);
}

/// ∂L/∂h read from one buffer, ∂L/∂z written into another.
struct Apart<'a, T> {
    z: &'a [T],
    h: &'a [T],
    dh: &'a [T],
    dz: &'a mut [T],
}

impl<T: Copy> Chain<T> for Apart<'_, T> {
    #[inline(always)]
    fn map(self, f: impl Fn(T, T, T) -> T) {
        let inputs = self.z.iter().zip(self.h).zip(self.dh);
        for (((&z, &h), &g), d) in inputs.zip(self.dz.iter_mut()) {
            *d = f(z, h, g)
        }
    }
}

/// ∂L/∂h overwritten by ∂L/∂z in one buffer.
struct Inside<'a, T> {
    z: &'a [T],
    h: &'a [T],
    d: &'a mut [T],
}

impl<T: Copy> Chain<T> for Inside<'_, T> {
    #[inline(always)]
    fn map(self, f: impl Fn(T, T, T) -> T) {
        let inputs = self.z.iter().zip(self.h);
        for ((&z, &h), d) in inputs.zip(self.d.iter_mut()) {
            *d = f(z, h, *d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Activation; 11] = [
        Activation::Relu,
        Activation::LeakyRelu {
            negative_slope: 0.1,
        },
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
        Activation::Elu { alpha: 1.5 },
        Activation::Softplus {
            beta: 1.0,
            threshold: 20.0,
        },
        Activation::Softplus {
            beta: 2.0,
            threshold: 3.0,
        },
        Activation::Silu,
        Activation::Mish,
        Activation::Identity,
    ];

    #[test]
    fn backward_in_place_gives_the_bits_of_backward() {
        let z: Vec<f64> = (0..37).map(|i| (i as f64 - 18.0) * 0.31).collect();
        let dh: Vec<f64> = (0..37).map(|i| (i as f64 * 0.7).cos()).collect();
        for act in ALL {
            let mut h = vec![0.0; z.len()];
            act.forward(&z, &mut h);
            let mut dz = vec![0.0; z.len()];
            act.backward(&z, &h, &dh, &mut dz);
            let mut d = dh.clone();
            act.backward_in_place(&z, &h, &mut d);
            assert_eq!(d, dz, "{act:?}");
        }
    }

    #[test]
    fn backward_matches_central_differences() {
        let z: Vec<f64> = [-3.0, -1.2, -0.3, 0.4, 0.9, 2.5].to_vec();
        let ones = vec![1.0; z.len()];
        for act in ALL {
            let mut h = vec![0.0; z.len()];
            act.forward(&z, &mut h);
            let mut dz = vec![0.0; z.len()];
            act.backward(&z, &h, &ones, &mut dz);
            for i in 0..z.len() {
                let eps = 1e-6;
                let (mut hp, mut hm) = (vec![0.0], vec![0.0]);
                act.forward(&[z[i] + eps], &mut hp);
                act.forward(&[z[i] - eps], &mut hm);
                let fd = (hp[0] - hm[0]) / (2.0 * eps);
                assert!(
                    (fd - dz[i]).abs() < 1e-7,
                    "{act:?} at {}: {fd} vs {}",
                    z[i],
                    dz[i]
                );
            }
        }
    }

    #[test]
    fn in_place_equals_into_another_buffer() {
        let z: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.3).collect();
        for act in ALL {
            let mut h = vec![0.0; z.len()];
            act.forward(&z, &mut h);
            let mut in_place = z.clone();
            act.forward_in_place(&mut in_place);
            assert_eq!(h, in_place, "{act:?}");
        }
    }

    #[test]
    fn known_values() {
        let z = [-1.0f64, 0.0, 2.0];
        let mut h = [0.0; 3];
        Activation::Gelu.forward(&z, &mut h);
        assert!((h[0] - -0.158_655_253_931_457_05).abs() < 1e-15);
        assert!((h[2] - 1.954_499_736_103_642).abs() < 1e-15);
        Activation::Elu { alpha: 1.0 }.forward(&z, &mut h);
        assert!((h[0] - (-1f64).exp_m1()).abs() < 1e-16);
        Activation::Sigmoid.forward(&[-1000.0f64, 1000.0], &mut h[..2]);
        assert_eq!(&h[..2], &[0.0, 1.0]);
        // torch.nn.functional.silu / mish of -1 and 2, in float64
        Activation::Silu.forward(&z, &mut h);
        assert!((h[0] - -0.268_941_421_369_995_1).abs() < 1e-15);
        assert!((h[2] - 1.761_594_155_955_764_6).abs() < 1e-15);
        Activation::Mish.forward(&z, &mut h);
        assert!((h[0] - -0.303_401_461_374_108_95).abs() < 1e-15);
        assert!((h[2] - 1.943_958_959_533_994_6).abs() < 1e-15);
        assert_eq!(h[1], 0.0);
    }

    #[test]
    fn mish_stays_finite_where_exp_overflows() {
        let z = [-1000.0f32, 30.0, 100.0, 1000.0];
        let mut h = [0.0f32; 4];
        Activation::Mish.forward(&z, &mut h);
        assert_eq!(h, [-0.0, 30.0, 100.0, 1000.0]);
        let mut dz = [0.0f32; 4];
        Activation::Mish.backward(&z, &h, &[1.0; 4], &mut dz);
        assert_eq!(dz, [0.0, 1.0, 1.0, 1.0]);
    }
}
