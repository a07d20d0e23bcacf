//! Seeded initialization of dense layers: He (Kaiming) uniform before the ReLU family, Glorot
//! (Xavier) uniform otherwise, biases zero.
//!
//! He keeps the variance of activations steady through rectifiers, which zero half their input;
//! Glorot balances forward and backward variance for saturating or linear units. Both answer the
//! vanishing/exploding gradients of deep networks at the start of training.

use crate::activation::Activation;
use crate::dense::Dense;
use crate::rng::Rng;
use crate::Real;

/// The bound `b` of U(-b, b) for a dense layer followed by `next` (if an activation).
pub fn uniform_bound(layer: &Dense, next: Option<&Activation>) -> f64 {
    let (fan_in, fan_out) = (layer.in_features as f64, layer.out_features as f64);
    match next.and_then(Activation::he_gain) {
        // He: std = gain / √fan_in, and U(-b, b) has std b/√3.
        Some(gain) => gain * (3.0 / fan_in.max(1.0)).sqrt(),
        None => (6.0 / (fan_in + fan_out).max(1.0)).sqrt(),
    }
}

/// Fills `layer`'s weight in `params` from `rng` and zeroes its bias.
pub fn init_dense<T: Real>(
    layer: &Dense,
    next: Option<&Activation>,
    rng: &mut Rng,
    params: &mut [T],
) {
    let bound = uniform_bound(layer, next);
    let w = layer.weight_offset;
    for p in &mut params[w..w + layer.weight_len()] {
        *p = T::of((2.0 * rng.uniform() - 1.0) * bound);
    }
    if let Some(b) = layer.bias_offset {
        params[b..b + layer.out_features].fill(T::zero());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn he_and_glorot_scales() {
        let layer = Dense {
            in_features: 400,
            out_features: 100,
            weight_offset: 0,
            bias_offset: Some(40_000),
        };
        let mut params = vec![1.0f64; layer.n_params()];
        init_dense(
            &layer,
            Some(&Activation::Relu),
            &mut Rng::new(0),
            &mut params,
        );
        let w = &params[..40_000];
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        assert!(
            (var - 2.0 / 400.0).abs() < 0.05 * 2.0 / 400.0,
            "He variance {var}"
        );
        assert!(params[40_000..].iter().all(|&b| b == 0.0));

        init_dense(
            &layer,
            Some(&Activation::Tanh),
            &mut Rng::new(0),
            &mut params,
        );
        let var = params[..40_000].iter().map(|x| x * x).sum::<f64>() / 40_000.0;
        assert!(
            (var - 2.0 / 500.0).abs() < 0.05 * 2.0 / 500.0,
            "Glorot variance {var}"
        );
    }
}
