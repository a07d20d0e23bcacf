//! Test support: running an optimizer for several steps on gradients that depend on the
//! parameters and the step, and comparing every step with a scalar reference in `f64`.

use super::Optimizer;
use crate::{OptimizerSpec, Real};

/// How many steps each comparison runs.
pub(super) const STEPS: u64 = 8;

/// The starting parameters.
pub(super) const START: [f64; 5] = [0.5, -1.25, 2.0, 0.0, -0.1];

/// The gradient of parameter `i` with value `p` at step `t`: a quadratic's with a drifting
/// target, so that the gradients change sign and size along the way.
pub(super) fn grad(i: usize, t: u64, p: f64) -> f64 {
    (0.5 + 0.3 * i as f64) * p - 0.4 + 0.07 * t as f64 * (-1.0f64).powi(i as i32)
}

/// Runs `spec` in `f64` and `f32` for [`STEPS`] steps, asserting after each step that every
/// parameter matches `reference(i, steps)` (the scalar formula's parameter `i` after `steps`
/// steps from `START[i]`): to 1e-12 relative in `f64`, 1e-5 in `f32`.
pub(super) fn check(spec: &OptimizerSpec, reference: impl Fn(usize, u64) -> f64) {
    run::<f64>(spec, &reference, 1e-12);
    run::<f32>(spec, &reference, 1e-5);
}

fn run<T: Real>(spec: &OptimizerSpec, reference: &impl Fn(usize, u64) -> f64, tol: f64) {
    let mut opt = Optimizer::<T>::new(spec.clone(), START.len());
    let mut params: Vec<T> = START.iter().map(|&p| T::of(p)).collect();
    let mut grads = vec![T::zero(); START.len()];
    for t in 1..=STEPS {
        for (i, (g, p)) in grads.iter_mut().zip(&params).enumerate() {
            *g = T::of(grad(i, t, p.f64()));
        }
        opt.step(&mut params, &grads);
        assert_eq!(opt.steps(), t);
        for (i, p) in params.iter().enumerate() {
            let want = reference(i, t);
            let err = (p.f64() - want).abs() / want.abs().max(1.0);
            assert!(
                err < tol,
                "{spec:?} {}: step {t} param {i}: got {p:?}, want {want}",
                std::any::type_name::<T>()
            );
        }
    }
}
