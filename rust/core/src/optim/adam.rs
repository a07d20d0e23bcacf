//! Adam and AdamW, `torch.optim.Adam` / `torch.optim.AdamW`: one rule, with L2 weight decay
//! added to the gradient (Adam) or decoupled, shrinking the parameters first (AdamW).

use serde::{Deserialize, Serialize};

use super::{lerp, saturate, Rule};
use crate::Real;

/// Adam's hyperparameters, with torch.optim.Adam's defaults: weight decay added to the
/// gradient (L2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adam {
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default = "betas")]
    pub betas: (f64, f64),
    #[serde(default = "eps")]
    pub eps: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Parameter tensors left undecayed: those whose name contains one of these (see
    /// [`super::Optimizer::set_param_names`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_decay: Vec<String>,
    #[serde(default)]
    pub amsgrad: bool,
}

/// AdamW's hyperparameters, with torch.optim.AdamW's defaults: weight decay decoupled, the
/// parameters shrunk by `1 - lr·wd` before the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamW {
    #[serde(default = "lr")]
    pub lr: f64,
    #[serde(default = "betas")]
    pub betas: (f64, f64),
    #[serde(default = "eps")]
    pub eps: f64,
    #[serde(default = "adamw_weight_decay")]
    pub weight_decay: f64,
    /// Parameter tensors left undecayed: those whose name contains one of these (see
    /// [`super::Optimizer::set_param_names`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_decay: Vec<String>,
    #[serde(default)]
    pub amsgrad: bool,
}

fn lr() -> f64 {
    1e-3
}
fn betas() -> (f64, f64) {
    (0.9, 0.999)
}
fn eps() -> f64 {
    1e-8
}
fn adamw_weight_decay() -> f64 {
    1e-2
}

/// torch's state: the moment estimates, and their running maximum with amsgrad.
fn state_names(amsgrad: bool) -> Vec<&'static str> {
    if amsgrad {
        vec!["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    } else {
        vec!["exp_avg", "exp_avg_sq"]
    }
}

fn non_negative_state(amsgrad: bool) -> Vec<&'static str> {
    if amsgrad {
        vec!["exp_avg_sq", "max_exp_avg_sq"]
    } else {
        vec!["exp_avg_sq"]
    }
}

/// The rule of Adam (`decoupled` false) or AdamW (true): the same state and update.
macro_rules! adam_rule {
    ($spec:ident, $decoupled:expr) => {
        impl Rule for $spec {
            fn lr(&self) -> f64 {
                self.lr
            }
            fn state_names(&self) -> Vec<&'static str> {
                state_names(self.amsgrad)
            }
            fn non_negative_state(&self) -> Vec<&'static str> {
                non_negative_state(self.amsgrad)
            }
            #[inline(always)]
            fn step<T: Real>(&self, lr: f64, t: u64, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
                let (betas, eps, wd, amsgrad) =
                    (self.betas, self.eps, self.weight_decay, self.amsgrad);
                step(betas, eps, wd, amsgrad, $decoupled, lr, t, p, g, s)
            }
        }
    };
}

adam_rule!(Adam, false);
adam_rule!(AdamW, true);

/// Step `t` (from 1): `m = lerp(m, g, 1-β1)`, `v = β2·v + (1-β2)·g²`,
/// `p -= lr/(1-β1^t) · m / (√v̂ / √(1-β2^t) + eps)` with `v̂ = v` or its running maximum;
/// `decoupled` (AdamW): `p *= 1 - lr·wd` first instead of `g += wd·p`.
///
/// The update is computed as `p -= lr·√(1-β2^t)/(1-β1^t) · m / (√v̂ + eps·√(1-β2^t))`, the
/// same number with `√(1-β2^t)` multiplied through (equal up to rounding): one division per
/// parameter instead of two. The divisions and the square root share one unit of the core,
/// which bounds the whole update (a 235k-parameter step on an Intel Xeon core: 158 µs with two
/// divisions, 126 µs with one; 31 against 21 µs for 50k parameters, which stay in L2).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn step<T: Real>(
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    decoupled: bool,
    lr: f64,
    t: u64,
    params: &mut [T],
    grads: &[T],
    state: &mut [&mut [T]],
) {
    let (beta1, beta2) = betas;
    let t = t as f64;
    let bias_correction1 = 1.0 - beta1.powf(t);
    let bias_correction2 = 1.0 - beta2.powf(t);
    let bias_correction2_sqrt = bias_correction2.sqrt();
    let neg_step_size = T::of(-lr * bias_correction2_sqrt / bias_correction1);
    // A positive eps stays positive when scaled (a zero second moment then gives a zero step,
    // as torch's form does), even where the product falls below the type's normal range.
    let eps_scaled = T::of(eps * bias_correction2_sqrt);
    let eps_scaled = if eps > 0.0 {
        eps_scaled.max(T::min_positive_value())
    } else {
        eps_scaled
    };
    let shrink = T::of(1.0 - lr * weight_decay);
    let wd = T::of(weight_decay);
    let coupled = !decoupled && weight_decay != 0.0;
    let w1 = T::of(1.0 - beta1);
    let b2 = T::of(beta2);
    let w2 = T::of(1.0 - beta2);
    // The parameter and gradient after weight decay: the parameter shrunk when decay is
    // decoupled, else the decay added to the gradient.
    let decay = |p: T, g: T| {
        if decoupled {
            (p * shrink, g)
        } else if coupled {
            (p, g + wd * p)
        } else {
            (p, g)
        }
    };
    // Every new value is kept in a register and used from there, never read back: the state
    // buffers come as a slice of slices, which the compiler cannot prove apart, so a value
    // read back after another buffer's store is reloaded from memory, and that reload of a
    // 512-bit store waits for the store to retire, chaining each vector's square root and
    // divisions to the last one's (Adam ran at half its speed on a Zen 4 core).
    match (amsgrad, state) {
        (true, [m, v, v_max]) => {
            let moments = m.iter_mut().zip(v.iter_mut()).zip(v_max.iter_mut());
            for ((p, &g), ((m, v), v_max)) in params.iter_mut().zip(grads).zip(moments) {
                let (p_t, g) = decay(*p, g);
                let (m_t, v_t) = (saturate(lerp(*m, g, w1)), saturate(*v * b2 + w2 * g * g));
                // torch.maximum: NaN wins.
                let v_hat = if v_t.is_nan() || v_t > *v_max {
                    v_t
                } else {
                    *v_max
                };
                (*m, *v, *v_max) = (m_t, v_t, v_hat);
                let denom = v_hat.sqrt() + eps_scaled;
                *p = saturate(p_t + neg_step_size * m_t / denom);
            }
        }
        (false, [m, v]) => {
            let moments = m.iter_mut().zip(v.iter_mut());
            for ((p, &g), (m, v)) in params.iter_mut().zip(grads).zip(moments) {
                let (p_t, g) = decay(*p, g);
                let (m_t, v_t) = (saturate(lerp(*m, g, w1)), saturate(*v * b2 + w2 * g * g));
                (*m, *v) = (m_t, v_t);
                let denom = v_t.sqrt() + eps_scaled;
                *p = saturate(p_t + neg_step_size * m_t / denom);
            }
        }
        // `new` allocates the buffers state_names gives; nothing else can reach here.
        _ => {}
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
            let adam = OptimizerSpec::Adam(crate::optim::Adam {
                lr,
                betas,
                eps,
                weight_decay,
                no_decay: Vec::new(),
                amsgrad,
            });
            check(&adam, |i, t| {
                reference(i, t, lr, betas, eps, weight_decay, amsgrad, false)
            });
            let adamw = OptimizerSpec::AdamW(crate::optim::AdamW {
                lr,
                betas,
                eps,
                weight_decay,
                no_decay: Vec::new(),
                amsgrad,
            });
            check(&adamw, |i, t| {
                reference(i, t, lr, betas, eps, weight_decay, amsgrad, true)
            });
        }
        // AdamW's default decay.
        let adamw = OptimizerSpec::AdamW(crate::optim::AdamW {
            lr: 0.1,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            no_decay: Vec::new(),
            amsgrad: false,
        });
        check(&adamw, |i, t| {
            reference(i, t, 0.1, (0.9, 0.999), 1e-8, 1e-2, false, true)
        });
    }

    #[test]
    fn first_step_moves_by_lr() {
        // At t = 1, m̂ = g and v̂ = g², so each parameter moves by lr·g/(|g| + eps) ≈ lr.
        let spec = OptimizerSpec::Adam(crate::optim::Adam {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            amsgrad: false,
        });
        let mut opt = super::super::Optimizer::<f64>::new(spec, 2);
        let mut p = [1.0, 1.0];
        opt.step(&mut p, &[3.0, -0.5]);
        assert!((p[0] - (1.0 - 0.01 * 3.0 / (3.0 + 1e-8))).abs() < 1e-15);
        assert!((p[1] - (1.0 + 0.01 * 0.5 / (0.5 + 1e-8))).abs() < 1e-15);
        assert_eq!(opt.state_names(), ["exp_avg", "exp_avg_sq"]);
    }

    #[test]
    fn a_zero_gradient_with_a_tiny_eps_leaves_the_parameter_as_it_is() {
        // eps·√(1-β2) rounds to zero in f32 here; the step must stay 0/eps, not 0/0.
        let spec = OptimizerSpec::Adam(crate::optim::Adam {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-44,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            amsgrad: false,
        });
        let mut opt = super::super::Optimizer::<f32>::new(spec, 2);
        let mut p = [1.5f32, -2.0];
        opt.step(&mut p, &[0.0, 0.0]);
        assert_eq!(p, [1.5, -2.0]);
    }
}
