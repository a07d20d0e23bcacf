//! Stochastic gradient descent, `torch.optim.SGD`, with momentum, dampening, Nesterov momentum
//! and (L2) weight decay.

use serde::{Deserialize, Serialize};

use super::{saturate, Rule};
use crate::Real;

/// SGD's hyperparameters, with torch.optim.SGD's defaults (its lr is 1e-3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sgd {
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub dampening: f64,
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default)]
    pub weight_decay: f64,
    /// Parameter tensors left undecayed: those whose name contains one of these (see
    /// [`super::Optimizer::set_param_names`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_decay: Vec<String>,
}

fn lr() -> f64 {
    1e-3
}

impl Rule for Sgd {
    fn lr(&self) -> f64 {
        self.lr
    }

    /// torch's state: a momentum buffer, only when there is momentum.
    fn state_names(&self) -> Vec<&'static str> {
        if self.momentum != 0.0 {
            vec!["momentum_buffer"]
        } else {
            vec![]
        }
    }

    /// Step `t` (from 1): `g = grad + wd·p`; with momentum, `buf = g` at the first step, else
    /// `buf = momentum·buf + (1 - dampening)·g`, and `g = g + momentum·buf` (Nesterov) or `buf`;
    /// `p -= lr·g`.
    #[inline(always)]
    fn step<T: Real>(
        &self,
        lr: f64,
        t: u64,
        params: &mut [T],
        grads: &[T],
        state: &mut [&mut [T]],
    ) {
        let wd = T::of(self.weight_decay);
        let decay = self.weight_decay != 0.0;
        let neg_lr = T::of(-lr);
        let momentum = T::of(self.momentum);
        let keep = T::of(1.0 - self.dampening);
        match state {
            [buf] if self.momentum != 0.0 => {
                for ((p, &g), b) in params.iter_mut().zip(grads).zip(buf.iter_mut()) {
                    let g = if decay { g + wd * *p } else { g };
                    *b = saturate(if t == 1 { g } else { *b * momentum + keep * g });
                    let g = if self.nesterov { g + momentum * *b } else { *b };
                    *p = saturate(*p + neg_lr * g);
                }
            }
            _ => {
                for (p, &g) in params.iter_mut().zip(grads) {
                    let g = if decay { g + wd * *p } else { g };
                    *p = saturate(*p + neg_lr * g);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, grad, START};
    use crate::OptimizerSpec;

    /// torch.optim.SGD's rule for one scalar parameter, `steps` steps from START[i].
    fn reference(
        i: usize,
        steps: u64,
        lr: f64,
        mom: f64,
        damp: f64,
        nesterov: bool,
        wd: f64,
    ) -> f64 {
        let mut p = START[i];
        let mut buf = 0.0;
        for t in 1..=steps {
            let mut g = grad(i, t, p) + wd * p;
            if mom != 0.0 {
                buf = if t == 1 {
                    g
                } else {
                    mom * buf + (1.0 - damp) * g
                };
                g = if nesterov { g + mom * buf } else { buf };
            }
            p -= lr * g;
        }
        p
    }

    #[test]
    fn matches_torch_rule() {
        let cases = [
            (0.1, 0.0, 0.0, false, 0.0),
            (0.05, 0.0, 0.0, false, 0.01),
            (0.1, 0.9, 0.0, false, 0.0),
            (0.1, 0.9, 0.3, false, 0.05),
            (0.05, 0.8, 0.0, true, 0.0),
            (0.05, 0.5, 0.0, true, 0.1),
        ];
        for (lr, momentum, dampening, nesterov, weight_decay) in cases {
            let spec = OptimizerSpec::Sgd(crate::optim::Sgd {
                lr,
                momentum,
                dampening,
                nesterov,
                weight_decay,
                no_decay: Vec::new(),
            });
            check(&spec, |i, t| {
                reference(i, t, lr, momentum, dampening, nesterov, weight_decay)
            });
        }
    }

    #[test]
    fn plain_step_by_hand() {
        let spec = OptimizerSpec::Sgd(crate::optim::Sgd {
            lr: 0.5,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay: Vec::new(),
        });
        let mut opt = super::super::Optimizer::<f32>::new(spec, 2);
        assert!(opt.state().is_empty());
        let mut p = [1.0f32, -2.0];
        opt.step(&mut p, &[0.5, 1.0]);
        assert_eq!(p, [0.75, -2.5]);
    }

    #[test]
    fn learning_rate_changes_take_effect() {
        let spec = OptimizerSpec::Sgd(crate::optim::Sgd {
            lr: 1.0,
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay: Vec::new(),
        });
        let mut opt = super::super::Optimizer::<f64>::new(spec, 1);
        let mut p = [0.0f64];
        opt.step(&mut p, &[1.0]); // buf = 1, p = -1
        opt.set_lr(0.5);
        opt.step(&mut p, &[1.0]); // buf = 1.9, p = -1 - 0.95
        assert!((p[0] + 1.95).abs() < 1e-15);
        assert_eq!(opt.state_names(), ["momentum_buffer"]);
        assert!((opt.state()[0][0] - 1.9).abs() < 1e-15);
    }
}
