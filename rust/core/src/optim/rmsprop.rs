//! RMSprop, `torch.optim.RMSprop`: gradients scaled by a running root mean square, optionally
//! centered (minus the running mean's square) and with momentum.

use serde::{Deserialize, Serialize};

use super::{lerp, saturate, Rule};
use crate::Real;

/// RMSprop's hyperparameters, with torch.optim.RMSprop's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmsProp {
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default = "alpha")]
    pub alpha: f64,
    #[serde(default = "eps")]
    pub eps: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Parameter tensors left undecayed: those whose name contains one of these (see
    /// [`super::Optimizer::set_param_names`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_decay: Vec<String>,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub centered: bool,
}

fn lr() -> f64 {
    1e-2
}
fn alpha() -> f64 {
    0.99
}
fn eps() -> f64 {
    1e-8
}

impl Rule for RmsProp {
    fn lr(&self) -> f64 {
        self.lr
    }

    /// torch's state: the squares' average, then the momentum buffer and the gradients'
    /// average when momentum and centering are on.
    fn state_names(&self) -> Vec<&'static str> {
        let mut names = vec!["square_avg"];
        if self.momentum > 0.0 {
            names.push("momentum_buffer");
        }
        if self.centered {
            names.push("grad_avg");
        }
        names
    }

    fn non_negative_state(&self) -> Vec<&'static str> {
        vec!["square_avg"]
    }

    /// `sq = α·sq + (1-α)·g²`; `avg = √(sq - ga²) + eps` with `ga = lerp(ga, g, 1-α)` when
    /// centered, else `√sq + eps`; `buf = momentum·buf + g/avg`, `p -= lr·buf`, or without
    /// momentum `p -= lr·g/avg`.
    #[inline(always)]
    fn step<T: Real>(
        &self,
        lr: f64,
        _t: u64,
        params: &mut [T],
        grads: &[T],
        state: &mut [&mut [T]],
    ) {
        let wd = T::of(self.weight_decay);
        let decay = self.weight_decay != 0.0;
        let alpha = T::of(self.alpha);
        let w = T::of(1.0 - self.alpha);
        let eps = T::of(self.eps);
        let neg_lr = T::of(-lr);
        let momentum = T::of(self.momentum);
        let (square_avg, rest) = match state.split_first_mut() {
            Some((first, rest)) => (first, rest),
            None => return,
        };
        let (momentum_buffer, rest) = if self.momentum > 0.0 {
            match rest.split_first_mut() {
                Some((first, rest)) => (Some(first), rest),
                None => return,
            }
        } else {
            (None, rest)
        };
        let grad_avg = if self.centered {
            match rest.first_mut() {
                Some(first) => Some(first),
                None => return,
            }
        } else {
            None
        };
        // One parameter's update: its new value and the new state values (`ga`, `b`: the
        // gradient average when centered, the momentum buffer with momentum; zero when the
        // buffer is not kept). Every new value is used from a register, never read back (see
        // Adam's step).
        let update = |p: T, g: T, sq: T, ga: Option<T>, b: Option<T>| {
            let g = if decay { g + wd * p } else { g };
            let sq = saturate(sq * alpha + w * g * g);
            let ga = ga.map(|ga| saturate(lerp(ga, g, w)));
            let avg = match ga {
                Some(ga) => {
                    // Never below 0: beyond the type's range, where torch's would be NaN.
                    let variance = sq - saturate(ga * ga);
                    if variance < T::zero() {
                        T::zero()
                    } else {
                        variance.sqrt()
                    }
                }
                None => sq.sqrt(),
            } + eps;
            let b = b.map(|b| saturate(b * momentum + g / avg));
            let p = match b {
                Some(b) => saturate(p + neg_lr * b),
                None => saturate(p + neg_lr * g / avg),
            };
            let kept = |x: Option<T>| x.unwrap_or(T::zero());
            (p, sq, kept(ga), kept(b))
        };
        // A loop of its own for each set of buffers, so that each one vectorizes.
        let elements = params.iter_mut().zip(grads).zip(square_avg.iter_mut());
        match (momentum_buffer, grad_avg) {
            (None, None) => {
                for ((p, &g), sq) in elements {
                    (*p, *sq, _, _) = update(*p, g, *sq, None, None);
                }
            }
            (Some(buf), None) => {
                for (((p, &g), sq), b) in elements.zip(buf.iter_mut()) {
                    (*p, *sq, _, *b) = update(*p, g, *sq, None, Some(*b));
                }
            }
            (None, Some(avg)) => {
                for (((p, &g), sq), ga) in elements.zip(avg.iter_mut()) {
                    (*p, *sq, *ga, _) = update(*p, g, *sq, Some(*ga), None);
                }
            }
            (Some(buf), Some(avg)) => {
                let state = buf.iter_mut().zip(avg.iter_mut());
                for (((p, &g), sq), (b, ga)) in elements.zip(state) {
                    (*p, *sq, *ga, *b) = update(*p, g, *sq, Some(*ga), Some(*b));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, grad, START};
    use crate::OptimizerSpec;

    #[allow(clippy::too_many_arguments)]
    /// torch.optim.RMSprop's rule for one scalar parameter, `steps` steps from START[i].
    fn reference(
        i: usize,
        steps: u64,
        lr: f64,
        alpha: f64,
        eps: f64,
        wd: f64,
        mom: f64,
        centered: bool,
    ) -> f64 {
        let (mut p, mut sq, mut ga, mut buf) = (START[i], 0.0f64, 0.0f64, 0.0f64);
        for t in 1..=steps {
            let g = grad(i, t, p) + wd * p;
            sq = alpha * sq + (1.0 - alpha) * g * g;
            let avg = if centered {
                ga = alpha * ga + (1.0 - alpha) * g;
                (sq - ga * ga).sqrt() + eps
            } else {
                sq.sqrt() + eps
            };
            if mom > 0.0 {
                buf = mom * buf + g / avg;
                p -= lr * buf;
            } else {
                p -= lr * g / avg;
            }
        }
        p
    }

    #[test]
    fn matches_torch_rule() {
        let cases = [
            (1e-2, 0.99, 1e-8, 0.0, 0.0, false),
            (1e-2, 0.9, 1e-8, 0.1, 0.0, false),
            (1e-2, 0.99, 1e-8, 0.0, 0.9, false),
            (1e-2, 0.9, 1e-6, 0.0, 0.0, true),
            (5e-3, 0.8, 1e-8, 0.05, 0.5, true),
        ];
        for (lr, alpha, eps, weight_decay, momentum, centered) in cases {
            let spec = OptimizerSpec::RmsProp(crate::optim::RmsProp {
                lr,
                alpha,
                eps,
                weight_decay,
                no_decay: Vec::new(),
                momentum,
                centered,
            });
            check(&spec, |i, t| {
                reference(i, t, lr, alpha, eps, weight_decay, momentum, centered)
            });
        }
    }

    #[test]
    fn state_names_follow_options() {
        let spec = OptimizerSpec::RmsProp(crate::optim::RmsProp {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            momentum: 0.9,
            centered: true,
        });
        let opt = super::super::Optimizer::<f32>::new(spec, 3);
        assert_eq!(
            opt.state_names(),
            ["square_avg", "momentum_buffer", "grad_avg"]
        );
        assert_eq!(opt.state().len(), 3);
    }
}
