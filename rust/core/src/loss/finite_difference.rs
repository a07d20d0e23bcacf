//! Test support: evaluating a loss into a fresh gradient, and checking that gradient against
//! central finite differences in `f64`.

use super::{evaluate, Targets};
use crate::{LossSpec, Real};

/// The loss and its gradient, panicking (it is a test) on an error.
pub(super) fn eval<T: Real>(
    spec: &LossSpec,
    output: &[T],
    n: usize,
    width: usize,
    targets: Targets<'_, T>,
) -> (f64, Vec<T>) {
    let mut grad = vec![T::of(f64::NAN); output.len()];
    let loss = evaluate(spec, output, n, width, targets, Some(&mut grad));
    match loss {
        Ok(loss) => (loss, grad),
        Err(e) => panic!("{e}"), // panic-free: test code
    }
}

/// Asserts that the analytic gradient matches central differences, relative error < 1e-6.
pub(super) fn check_gradient(
    spec: &LossSpec,
    output: &[f64],
    n: usize,
    width: usize,
    targets: Targets<'_, f64>,
) {
    let (_, grad) = eval(spec, output, n, width, targets);
    let h = 1e-6;
    let mut moved = output.to_vec();
    for (i, g) in grad.iter().enumerate() {
        let x = output[i];
        moved[i] = x + h;
        let up = eval(spec, &moved, n, width, targets).0;
        moved[i] = x - h;
        let down = eval(spec, &moved, n, width, targets).0;
        moved[i] = x;
        let numeric = (up - down) / (2.0 * h);
        let scale = g.abs().max(numeric.abs()).max(1e-3);
        let rel = (g - numeric).abs() / scale;
        assert!(
            rel < 1e-6,
            "{spec:?} element {i}: analytic {g}, numeric {numeric}, rel {rel}"
        );
    }
}
