//! Adagrad, `torch.optim.Adagrad`: gradients scaled by the root of their accumulated squares,
//! with a learning rate that decays with the step count.

use serde::{Deserialize, Serialize};

use super::{saturate, Rule};
use crate::Real;

/// Adagrad's hyperparameters, with torch.optim.Adagrad's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adagrad {
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default)]
    pub lr_decay: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Parameter tensors left undecayed: those whose name contains one of these (see
    /// [`super::Optimizer::set_param_names`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_decay: Vec<String>,
    #[serde(default = "eps")]
    pub eps: f64,
    #[serde(default)]
    pub initial_accumulator_value: f64,
}

fn lr() -> f64 {
    1e-2
}
fn eps() -> f64 {
    1e-10
}

impl Rule for Adagrad {
    fn lr(&self) -> f64 {
        self.lr
    }

    /// torch's state: the accumulated squares.
    fn state_names(&self) -> Vec<&'static str> {
        vec!["sum"]
    }

    fn non_negative_state(&self) -> Vec<&'static str> {
        vec!["sum"]
    }

    /// The sum starts at `initial_accumulator_value`.
    fn initial_state(&self) -> f64 {
        self.initial_accumulator_value
    }

    /// Step `t` (from 1): `clr = lr / (1 + (t-1)·lr_decay)`, `g = grad + wd·p`, `sum += g²`,
    /// `p -= clr·g / (√sum + eps)`.
    #[inline(always)]
    fn step<T: Real>(
        &self,
        lr: f64,
        t: u64,
        params: &mut [T],
        grads: &[T],
        state: &mut [&mut [T]],
    ) {
        let [sum] = state else { return };
        let neg_clr = T::of(-lr / (1.0 + (t as f64 - 1.0) * self.lr_decay));
        let wd = T::of(self.weight_decay);
        let decay = self.weight_decay != 0.0;
        let eps = T::of(self.eps);
        for ((p, &g), s) in params.iter_mut().zip(grads).zip(sum.iter_mut()) {
            let g = if decay { g + wd * *p } else { g };
            *s = saturate(*s + g * g);
            let std = s.sqrt() + eps;
            *p = saturate(*p + neg_clr * g / std);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, grad, START};
    use crate::OptimizerSpec;

    /// torch.optim.Adagrad's rule for one scalar parameter, `steps` steps from START[i].
    fn reference(
        i: usize,
        steps: u64,
        lr: f64,
        lr_decay: f64,
        wd: f64,
        eps: f64,
        init: f64,
    ) -> f64 {
        let (mut p, mut sum) = (START[i], init);
        for t in 1..=steps {
            let clr = lr / (1.0 + (t - 1) as f64 * lr_decay);
            let g = grad(i, t, p) + wd * p;
            sum += g * g;
            p -= clr * g / (sum.sqrt() + eps);
        }
        p
    }

    #[test]
    fn matches_torch_rule() {
        let cases = [
            (1e-2, 0.0, 0.0, 1e-10, 0.0),
            (0.1, 0.01, 0.0, 1e-10, 0.0),
            (0.1, 0.0, 0.1, 1e-10, 0.5),
            (0.05, 0.1, 0.02, 1e-6, 0.1),
        ];
        for (lr, lr_decay, weight_decay, eps, initial_accumulator_value) in cases {
            let spec = OptimizerSpec::Adagrad(crate::optim::Adagrad {
                lr,
                lr_decay,
                weight_decay,
                no_decay: Vec::new(),
                eps,
                initial_accumulator_value,
            });
            check(&spec, |i, t| {
                reference(
                    i,
                    t,
                    lr,
                    lr_decay,
                    weight_decay,
                    eps,
                    initial_accumulator_value,
                )
            });
        }
    }

    #[test]
    fn first_step_by_hand() {
        // sum = g², so p moves by lr·g/|g| = lr·sign(g).
        let spec = OptimizerSpec::Adagrad(crate::optim::Adagrad {
            lr: 0.25,
            lr_decay: 0.0,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            eps: 0.0,
            initial_accumulator_value: 0.0,
        });
        let mut opt = super::super::Optimizer::<f32>::new(spec, 2);
        let mut p = [1.0f32, 1.0];
        opt.step(&mut p, &[4.0, -0.5]);
        assert_eq!(p, [0.75, 1.25]);
        assert_eq!(opt.state(), [vec![16.0f32, 0.25]]);
    }
}
