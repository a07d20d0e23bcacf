//! Adam and AdamW, `torch.optim.Adam` / `torch.optim.AdamW`: one rule, with L2 weight decay
//! added to the gradient (Adam) or decoupled, shrinking the parameters first (AdamW).

use super::lerp;
use crate::Real;

/// One step's hyperparameters.
pub(super) struct Adam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    /// AdamW: `p *= 1 - lr·wd` instead of `g += wd·p`.
    pub decoupled: bool,
}

/// torch's state: the moment estimates, and their running maximum with amsgrad.
pub(super) fn state_names(amsgrad: bool) -> Vec<&'static str> {
    if amsgrad {
        vec!["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    } else {
        vec!["exp_avg", "exp_avg_sq"]
    }
}

impl Adam {
    /// Step `t` (from 1): `m = lerp(m, g, 1-β1)`, `v = β2·v + (1-β2)·g²`,
    /// `p -= lr/(1-β1^t) · m / (√v̂ / √(1-β2^t) + eps)` with `v̂ = v` or its running maximum.
    #[inline(always)]
    pub(super) fn step<T: Real>(
        &self,
        t: u64,
        params: &mut [T],
        grads: &[T],
        state: &mut [&mut [T]],
    ) {
        let (beta1, beta2) = self.betas;
        let t = t as f64;
        let bias_correction1 = 1.0 - beta1.powf(t);
        let bias_correction2 = 1.0 - beta2.powf(t);
        let neg_step_size = T::of(-self.lr / bias_correction1);
        let bias_correction2_sqrt = T::of(bias_correction2.sqrt());
        let eps = T::of(self.eps);
        let shrink = T::of(1.0 - self.lr * self.weight_decay);
        let wd = T::of(self.weight_decay);
        let coupled = !self.decoupled && self.weight_decay != 0.0;
        let w1 = T::of(1.0 - beta1);
        let b2 = T::of(beta2);
        let w2 = T::of(1.0 - beta2);
        // The gradient after weight decay; the parameter first shrunk when decay is decoupled.
        let decay = |p: &mut T, g: T| {
            if self.decoupled {
                *p *= shrink;
                g
            } else if coupled {
                g + wd * *p
            } else {
                g
            }
        };
        match (self.amsgrad, state) {
            (true, [m, v, v_max]) => {
                let moments = m.iter_mut().zip(v.iter_mut()).zip(v_max.iter_mut());
                for ((p, &g), ((m, v), v_max)) in params.iter_mut().zip(grads).zip(moments) {
                    let g = decay(p, g);
                    *m = lerp(*m, g, w1);
                    *v = *v * b2 + w2 * g * g;
                    // torch.maximum: NaN wins.
                    if v.is_nan() || *v > *v_max {
                        *v_max = *v;
                    }
                    let denom = v_max.sqrt() / bias_correction2_sqrt + eps;
                    *p += neg_step_size * *m / denom;
                }
            }
            (false, [m, v]) => {
                let moments = m.iter_mut().zip(v.iter_mut());
                for ((p, &g), (m, v)) in params.iter_mut().zip(grads).zip(moments) {
                    let g = decay(p, g);
                    *m = lerp(*m, g, w1);
                    *v = *v * b2 + w2 * g * g;
                    let denom = v.sqrt() / bias_correction2_sqrt + eps;
                    *p += neg_step_size * *m / denom;
                }
            }
            // `new` allocates the buffers state_names gives; nothing else can reach here.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, grad, START};
    use crate::OptimizerSpec;

    #[allow(clippy::too_many_arguments)]
    /// torch.optim.Adam / AdamW's rule for one scalar parameter, `steps` steps from START[i].
    fn reference(
        i: usize,
        steps: u64,
        lr: f64,
        b: (f64, f64),
        eps: f64,
        wd: f64,
        ams: bool,
        decoupled: bool,
    ) -> f64 {
        let (b1, b2) = b;
        let (mut p, mut m, mut v, mut v_max) = (START[i], 0.0f64, 0.0f64, 0.0f64);
        for t in 1..=steps {
            let mut g = grad(i, t, p);
            if decoupled {
                p *= 1.0 - lr * wd;
            } else {
                g += wd * p;
            }
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let bc1 = 1.0 - b1.powi(t as i32);
            let bc2 = 1.0 - b2.powi(t as i32);
            v_max = v_max.max(v);
            let v_hat = if ams { v_max } else { v };
            p -= lr / bc1 * m / (v_hat.sqrt() / bc2.sqrt() + eps);
        }
        p
    }

    #[test]
    fn matches_torch_rule() {
        let cases = [
            (1e-3, (0.9, 0.999), 1e-8, 0.0, false),
            (0.05, (0.9, 0.999), 1e-8, 0.0, false),
            (0.05, (0.8, 0.99), 1e-6, 0.1, false),
            (0.05, (0.9, 0.999), 1e-8, 0.0, true),
            (0.1, (0.5, 0.9), 1e-3, 0.01, true),
        ];
        for (lr, betas, eps, weight_decay, amsgrad) in cases {
            let adam = OptimizerSpec::Adam {
                lr,
                betas,
                eps,
                weight_decay,
                amsgrad,
            };
            check(&adam, |i, t| {
                reference(i, t, lr, betas, eps, weight_decay, amsgrad, false)
            });
            let adamw = OptimizerSpec::AdamW {
                lr,
                betas,
                eps,
                weight_decay,
                amsgrad,
            };
            check(&adamw, |i, t| {
                reference(i, t, lr, betas, eps, weight_decay, amsgrad, true)
            });
        }
        // AdamW's default decay.
        let adamw = OptimizerSpec::AdamW {
            lr: 0.1,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
        };
        check(&adamw, |i, t| {
            reference(i, t, 0.1, (0.9, 0.999), 1e-8, 1e-2, false, true)
        });
    }

    #[test]
    fn first_step_moves_by_lr() {
        // At t = 1, m̂ = g and v̂ = g², so each parameter moves by lr·g/(|g| + eps) ≈ lr.
        let spec = OptimizerSpec::Adam {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        };
        let mut opt = super::super::Optimizer::<f64>::new(spec, 2);
        let mut p = [1.0, 1.0];
        opt.step(&mut p, &[3.0, -0.5]);
        assert!((p[0] - (1.0 - 0.01 * 3.0 / (3.0 + 1e-8))).abs() < 1e-15);
        assert!((p[1] - (1.0 + 0.01 * 0.5 / (0.5 + 1e-8))).abs() < 1e-15);
        assert_eq!(opt.state_names(), ["exp_avg", "exp_avg_sq"]);
    }
}
