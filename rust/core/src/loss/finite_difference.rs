//! Test support: evaluating a loss into a fresh gradient, and checking that gradient against
//! central finite differences in `f64`.

use super::{evaluate, evaluate_weighted, Targets};
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

/// Asserts the sample-weighted loss's contract on one case: all-ones weights give the unweighted
/// value and gradient bit for bit; the value is Σ_i w_i·l_i / n with l_i the loss of row i
/// alone (a zero weight included in n); the gradient is row i's alone times w_i / n, and
/// matches central differences of the weighted loss.
pub(super) fn check_weighted(
    spec: &LossSpec,
    output: &[f64],
    n: usize,
    width: usize,
    targets: Targets<'_, f64>,
) {
    let weighted = |out: &[f64], w: &[f64]| {
        let mut grad = vec![f64::NAN; out.len()];
        let value = evaluate_weighted(spec, out, n, width, targets, Some(w), Some(&mut grad));
        match value {
            Ok(v) => (v, grad),
            Err(e) => panic!("{e}"), // panic-free: test code
        }
    };
    let (plain, plain_grad) = eval(spec, output, n, width, targets);
    let (ones, ones_grad) = weighted(output, &vec![1.0; n]);
    assert_eq!(plain.to_bits(), ones.to_bits(), "{spec:?}");
    assert_eq!(plain_grad, ones_grad, "{spec:?}");

    let w: Vec<f64> = (0..n).map(|i| [0.0, 2.5, 0.75, 1.0][i % 4]).collect();
    let (got, grad) = weighted(output, &w);
    let mut want = 0.0;
    for i in 0..n {
        let row = &output[i * width..(i + 1) * width];
        let (li, gi) = eval(spec, row, 1, width, targets.rows(i, i + 1, width));
        want += w[i] * li / n as f64;
        for (g, gr) in grad[i * width..(i + 1) * width].iter().zip(&gi) {
            assert!((g - w[i] * gr / n as f64).abs() < 1e-15, "{spec:?} row {i}");
        }
    }
    assert!(
        (got - want).abs() < 1e-14 * (1.0 + want.abs()),
        "{spec:?} {got} {want}"
    );

    let h = 1e-6;
    let mut moved = output.to_vec();
    for (i, g) in grad.iter().enumerate() {
        let x = output[i];
        moved[i] = x + h;
        let up = weighted(&moved, &w).0;
        moved[i] = x - h;
        let down = weighted(&moved, &w).0;
        moved[i] = x;
        let numeric = (up - down) / (2.0 * h);
        let rel = (g - numeric).abs() / g.abs().max(numeric.abs()).max(1e-3);
        assert!(rel < 1e-6, "{spec:?} element {i}: {g} vs {numeric}");
    }
}
