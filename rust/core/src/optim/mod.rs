//! Optimizers with torch.optim's update rules, step for step, over one flat parameter buffer.
//!
//! Each rule lives in its own file and follows torch's single-tensor (CPU) implementation
//! operation by operation: per-step scalars (bias corrections, decayed learning rates) are
//! computed in `f64`, as Python floats are, and rounded to `T`; element-wise arithmetic is in `T`
//! in torch's order (`addcmul`, `addcdiv`, `lerp`). State buffers are allocated once, in `new`.
//!
//! An optimizer is one file: its hyperparameters as a spec struct (serde gives torch's
//! defaults), and its [`Rule`]: the state it keeps, by torch's names, and its update. The
//! `optimizers!` list below makes each one a variant of [`OptimizerSpec`] under its spec name.

mod adagrad;
mod adam;
mod rmsprop;
mod sgd;

pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

use serde::{Deserialize, Serialize};

use std::ops::Range;

use crate::threads::Disjoint;
use crate::{Error, Real, Result};

/// What an optimizer is: its state and its element-wise update.
pub trait Rule {
    /// The configured (initial) learning rate.
    fn lr(&self) -> f64;
    /// The state buffers it keeps, each as long as the parameters, by torch's per-parameter
    /// state keys (its saved names), in a fixed order.
    fn state_names(&self) -> Vec<&'static str>;
    /// The state buffers that are sums or averages of squares: never negative (a loaded one
    /// with a negative value is refused).
    fn non_negative_state(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// What every state buffer starts at.
    fn initial_state(&self) -> f64 {
        0.0
    }
    /// Step `t` (from 1) at learning rate `lr` on any contiguous share of the parameters,
    /// with the same share of each state buffer (in `state_names` order).
    fn step<T: Real>(&self, lr: f64, t: u64, params: &mut [T], grads: &[T], state: &mut [&mut [T]]);
}

/// Every rule's weight decay and the tensors it leaves out, torch's `weight_decay` and what
/// torch users reach with a parameter group of `weight_decay=0` (Keras's
/// `exclude_from_weight_decay`).
macro_rules! decay_fields {
    ($($variant:ident,)*) => {
        impl OptimizerSpec {
            /// The weight decay (L2 added to the gradient, or AdamW's decoupled shrinking).
            pub fn weight_decay(&self) -> f64 {
                match self { $(Self::$variant(rule) => rule.weight_decay,)* }
            }
            fn set_weight_decay(&mut self, weight_decay: f64) {
                match self { $(Self::$variant(rule) => rule.weight_decay = weight_decay,)* }
            }
            /// The name fragments of the parameter tensors left undecayed.
            pub fn no_decay(&self) -> &[String] {
                match self { $(Self::$variant(rule) => &rule.no_decay,)* }
            }
        }
    };
}

decay_fields! { Sgd, Adam, AdamW, RmsProp, Adagrad, }

/// Declares [`OptimizerSpec`], one variant per optimizer, and its dispatch to their rules.
macro_rules! optimizers {
    ($($name:literal => $variant:ident,)*) => {
        /// The optimizer and its hyperparameters, with torch.optim's defaults, tagged by
        /// `"type"` in a spec.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum OptimizerSpec {
            $(#[serde(rename = $name)] $variant($variant),)*
        }

        impl OptimizerSpec {
            /// Every optimizer's spec name.
            pub const NAMES: &'static [&'static str] = &[$($name,)*];

            /// The optimizer named `name` with all its defaults.
            pub fn defaults(name: &str) -> Result<Self> {
                serde_json::from_value(serde_json::json!({ "type": name }))
                    .map_err(|e| Error::spec("optimizer", e.to_string()))
            }

            /// Every optimizer's hyperparameters with their defaults, as a JSON object by
            /// spec name (without the `"type"` tag).
            pub fn defaults_json() -> Result<String> {
                let mut all = serde_json::Map::new();
                for &name in Self::NAMES {
                    let mut fields = serde_json::to_value(Self::defaults(name)?)
                        .map_err(|e| Error::spec("optimizer", e.to_string()))?;
                    if let Some(map) = fields.as_object_mut() {
                        map.remove("type");
                    }
                    all.insert(name.to_string(), fields);
                }
                Ok(serde_json::Value::Object(all).to_string())
            }

            /// The configured (initial) learning rate.
            pub fn lr(&self) -> f64 {
                match self { $(Self::$variant(rule) => rule.lr(),)* }
            }
            /// See [`Rule::state_names`].
            pub fn state_names(&self) -> Vec<&'static str> {
                match self { $(Self::$variant(rule) => rule.state_names(),)* }
            }
            /// See [`Rule::non_negative_state`].
            pub fn non_negative_state(&self) -> Vec<&'static str> {
                match self { $(Self::$variant(rule) => rule.non_negative_state(),)* }
            }
            fn initial_state(&self) -> f64 {
                match self { $(Self::$variant(rule) => rule.initial_state(),)* }
            }
            #[inline(always)]
            fn apply<T: Real>(&self, lr: f64, t: u64, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
                match self { $(Self::$variant(rule) => rule.step(lr, t, p, g, s),)* }
            }
        }
    };
}

optimizers! {
    "sgd" => Sgd,
    "adam" => Adam,
    "adamw" => AdamW,
    "rmsprop" => RmsProp,
    "adagrad" => Adagrad,
}

/// An optimizer and its state: one flat buffer per kind of state, each as long as the parameters.
#[derive(Debug, Clone)]
pub struct Optimizer<T> {
    spec: OptimizerSpec,
    lr: f64,
    steps: u64,
    state: Vec<Vec<T>>,
    n_params: usize,
    /// Parameter ranges `[start, end)` left undecayed (the tensors `no_decay` names), sorted.
    undecayed: Vec<(usize, usize)>,
    /// The next steps' factor on the weight decay (see [`Optimizer::set_decay_scale`]).
    decay_scale: f64,
    /// The spec with the decay times `decay_scale`, for the decayed ranges.
    decayed_spec: OptimizerSpec,
    /// The spec without decay, for the undecayed ranges.
    undecayed_spec: OptimizerSpec,
}

impl<T: Real> Optimizer<T> {
    /// A fresh optimizer for `n_params` parameters.
    pub fn new(spec: OptimizerSpec, n_params: usize) -> Self {
        let lr = spec.lr();
        let state = fresh_state(&spec, n_params);
        let mut undecayed_spec = spec.clone();
        undecayed_spec.set_weight_decay(0.0);
        Optimizer {
            decayed_spec: spec.clone(),
            undecayed_spec,
            spec,
            lr,
            steps: 0,
            state,
            n_params,
            undecayed: Vec::new(),
            decay_scale: 1.0,
        }
    }

    /// Names the parameter tensors, `(name, offset, length)` in order: those whose name
    /// contains one of the spec's `no_decay` fragments are not decayed. An error naming
    /// `no_decay` if a fragment matches no tensor (a misspelt name would silently decay all).
    pub fn set_param_names<'a>(
        &mut self,
        tensors: impl Iterator<Item = (&'a str, usize, usize)> + Clone,
    ) -> Result<()> {
        let fragments = self.spec.no_decay();
        if let Some(unused) = fragments.iter().find(|f| {
            !tensors
                .clone()
                .any(|(name, _, _)| name.contains(f.as_str()))
        }) {
            let names: Vec<&str> = tensors.map(|(name, _, _)| name).collect();
            return Err(Error::value(
                "no_decay",
                format!(
                    "{unused:?} is in the name of no parameter tensor (they are {})",
                    names.join(", ")
                ),
            ));
        }
        let mut undecayed: Vec<(usize, usize)> = Vec::new();
        for (name, offset, len) in tensors {
            if !fragments.iter().any(|f| name.contains(f.as_str())) || len == 0 {
                continue;
            }
            match undecayed.last_mut() {
                Some(last) if last.1 == offset => last.1 = offset + len,
                _ => undecayed.push((offset, offset + len)),
            }
        }
        self.undecayed = undecayed;
        Ok(())
    }

    /// Multiplies the spec's weight decay by `scale` (finite, >= 0) in the next steps, until
    /// set again: a loop whose decay is per unit of a step's loss divisor sets it every step.
    pub fn set_decay_scale(&mut self, scale: f64) {
        self.decay_scale = scale;
        self.decayed_spec
            .set_weight_decay(self.spec.weight_decay() * scale);
    }

    /// ½·weight_decay·‖p‖² over the decayed parameters, at the current decay scale: the L2
    /// term whose gradient the coupled decay adds (a loop reporting the regularized loss adds
    /// it, as Keras adds its regularizers' losses), in f64.
    pub fn decay_penalty(&self, params: &[T]) -> f64 {
        let decay = self.decayed_spec.weight_decay();
        if decay == 0.0 {
            return 0.0;
        }
        let mut sum = 0.0;
        self.for_each_range(params.len().min(self.n_params), |start, end, spec| {
            if spec.weight_decay() != 0.0 {
                sum += params[start..end]
                    .iter()
                    .map(|p| p.f64() * p.f64())
                    .sum::<f64>();
            }
        });
        0.5 * decay * sum
    }

    /// The rule of every range of the first `n` parameters, in order: `f(start, end, spec)`.
    /// With every tensor decayed at the spec's own rate, one range of the spec itself.
    fn for_each_range(&self, n: usize, mut f: impl FnMut(usize, usize, &OptimizerSpec)) {
        if self.undecayed.is_empty() && self.decay_scale == 1.0 {
            f(0, n, &self.spec);
            return;
        }
        let mut at = 0;
        for &(start, end) in &self.undecayed {
            let (start, end) = (start.min(n), end.min(n));
            if start > at {
                f(at, start, &self.decayed_spec);
            }
            if end > start {
                f(start, end, &self.undecayed_spec);
            }
            at = at.max(end);
        }
        if n > at {
            f(at, n, &self.decayed_spec);
        }
    }

    /// One update of `params` by `grads` (equal lengths, the parameters' count).
    ///
    /// Lengths are the caller's contract (see [`Optimizer::try_step`] for a checked step); if
    /// they differ, only the common prefix is updated, and nothing panics.
    pub fn step(&mut self, params: &mut [T], grads: &[T]) {
        let n = params.len().min(grads.len());
        self.update(&mut params[..n], Gradients::Given(&grads[..n]));
    }

    /// [`Optimizer::step`] with `grads` clipped first as `clip` says, each block of them just
    /// before its update, while it is in cache: the same numbers as clipping the whole buffer
    /// and then stepping, in one pass over memory instead of two or three. `grads` is left
    /// clipped.
    pub fn step_clipped(&mut self, params: &mut [T], grads: &mut [T], clip: Clip) {
        let n = params.len().min(grads.len());
        let grads = &mut grads[..n];
        if clip.is_none() {
            self.update(&mut params[..n], Gradients::Given(grads));
        } else {
            self.update(
                &mut params[..n],
                Gradients::Clipped(Disjoint::new(grads), clip),
            );
        }
    }

    /// The update of `params` by `grads` (equal lengths), block by block: on the thread team
    /// from `PARALLEL_MIN_PARAMS` parameters. Every rule is element-wise, so how the blocks
    /// are shared out does not change a bit of the result.
    fn update(&mut self, params: &mut [T], grads: Gradients<'_, T>) {
        self.steps = self.steps.saturating_add(1);
        let (lr, t) = (self.lr, self.steps);
        let n = params.len().min(self.n_params);
        let k = self.state.len().min(MAX_STATE);
        let params = Disjoint::new(&mut params[..n]);
        let mut buffers = std::mem::take(&mut self.state);
        let mut state: [Option<Disjoint<'_, T>>; MAX_STATE] = Default::default();
        for (slot, buffer) in state.iter_mut().zip(buffers.iter_mut()) {
            *slot = Some(Disjoint::new(&mut buffer[..n]));
        }
        self.for_each_range(n, |start, end, spec| {
            let update = Update { spec, lr, t };
            let block = |range: Range<usize>| {
                let range = start + range.start..start + range.end;
                // SAFETY: `for_blocks` hands out each range once and the ranges of
                // `for_each_range` are disjoint, so no two blocks share an element of the
                // parameters, gradients or state.
                let (p, g) = unsafe { (params.range(range.clone()), grads.block(range.clone())) };
                let mut s: [&mut [T]; MAX_STATE] = Default::default();
                for (slot, buffer) in s.iter_mut().zip(&state) {
                    if let Some(buffer) = buffer {
                        // SAFETY: as above.
                        *slot = unsafe { buffer.range(range.clone()) };
                    }
                }
                apply_simd(&update, p, g, &mut s[..k]);
            };
            let len = end - start;
            if len >= PARALLEL_MIN_PARAMS {
                crate::threads::for_blocks(len, UPDATE_BLOCK, &block);
            } else {
                (0..len.div_ceil(UPDATE_BLOCK))
                    .for_each(|i| block(i * UPDATE_BLOCK..((i + 1) * UPDATE_BLOCK).min(len)));
            }
        });
        self.state = buffers;
    }

    /// [`Optimizer::step`] after checking that `params` and `grads` have the parameters' count,
    /// that the gradients are finite, and that the step leaves every parameter and state value
    /// finite in `T` (see [`Optimizer::step_stays_finite`]); on an error nothing changes.
    pub fn try_step(&mut self, params: &mut [T], grads: &[T]) -> Result<()> {
        if params.len() != self.n_params {
            return Err(Error::shape(
                "params",
                format!("{} parameters", self.n_params),
                format!("{}", params.len()),
            ));
        }
        if grads.len() != self.n_params {
            return Err(Error::shape(
                "grads",
                format!("{} gradients", self.n_params),
                format!("{}", grads.len()),
            ));
        }
        crate::real::check_finite(grads, "gradients")?;
        if !self.step_stays_finite(params, grads) {
            return Err(Error::value(
                "gradients",
                format!(
                    "the step would make a parameter or the optimizer's state overflow {} \
                     (too large for the learning rate and hyperparameters)",
                    if std::mem::size_of::<T>() == 4 {
                        "float32"
                    } else {
                        "float64"
                    }
                ),
            ));
        }
        self.step(params, grads);
        Ok(())
    }

    /// Whether [`Optimizer::step`] with these `params` and `grads` would leave every parameter
    /// and state value finite without saturating at the type's range, found by running the same update on copies, one small block at
    /// a time (nothing is allocated or changed). A block is independent of the others: every
    /// rule is element-wise. It costs about one and a half steps (1M f32 parameters: 1.7 ms
    /// against Adam's 1.1 ms step on one thread), so it guards checked steps, not every step.
    pub fn step_stays_finite(&self, params: &[T], grads: &[T]) -> bool {
        let n = params.len().min(grads.len()).min(self.n_params);
        let mut finite = true;
        self.for_each_range(n, |start, end, spec| {
            finite = finite && self.range_stays_finite(spec, params, grads, start, end);
        });
        finite
    }

    /// [`Optimizer::step_stays_finite`] for the parameters `start..end` under `spec`.
    fn range_stays_finite(
        &self,
        spec: &OptimizerSpec,
        params: &[T],
        grads: &[T],
        start: usize,
        n: usize,
    ) -> bool {
        const BLOCK: usize = 1024;
        let update = Update {
            spec,
            lr: self.lr,
            t: self.steps.saturating_add(1),
        };
        let k = self.state.len().min(MAX_STATE);
        let mut p = [T::zero(); BLOCK];
        let mut s = [[T::zero(); BLOCK]; MAX_STATE];
        let mut start = start;
        while start < n {
            let end = (start + BLOCK).min(n);
            let len = end - start;
            p[..len].copy_from_slice(&params[start..end]);
            for (copy, buffer) in s.iter_mut().zip(&self.state) {
                copy[..len].copy_from_slice(&buffer[start..end]);
            }
            {
                let mut slices: [&mut [T]; MAX_STATE] = Default::default();
                for (slot, copy) in slices.iter_mut().zip(s.iter_mut()) {
                    *slot = &mut copy[..len];
                }
                apply_simd(&update, &mut p[..len], &grads[start..end], &mut slices[..k]);
            }
            // The update holds values to the type's range: one that reached its end overflowed.
            let within = |values: &[T]| values.iter().all(|v| v.abs() < T::max_value());
            let finite = within(&p[..len]) && s[..k].iter().all(|copy| within(&copy[..len]));
            if !finite {
                return false;
            }
            start = end;
        }
        true
    }

    /// The learning rate the next step uses.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate of the next steps (schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// How many steps have been taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The configuration.
    pub fn spec(&self) -> &OptimizerSpec {
        &self.spec
    }

    /// The state buffers, in a fixed order per optimizer (for saving and tests).
    pub fn state(&self) -> &[Vec<T>] {
        &self.state
    }

    /// How many parameters the optimizer updates.
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// The names of the state buffers, torch's per-parameter state keys, in [`Optimizer::state`]'s
    /// order (e.g. `["exp_avg", "exp_avg_sq"]`; torch's `step` is [`Optimizer::steps`]).
    pub fn state_names(&self) -> Vec<&'static str> {
        self.spec.state_names()
    }

    /// Back to the state of a fresh optimizer: no steps taken, state as `new` made it. The
    /// learning rate is kept (a schedule owns it).
    pub fn reset(&mut self) {
        self.steps = 0;
        let initial = T::of(self.spec.initial_state());
        for buffer in &mut self.state {
            buffer.fill(initial);
        }
    }

    /// Restores a saved state (`steps` and buffers as [`Optimizer::state`] gives them, or
    /// borrowed slices of them), copying into the existing buffers; every value must be finite.
    /// On an error nothing changes.
    pub fn load_state<S: AsRef<[T]>>(&mut self, steps: u64, state: &[S]) -> Result<()> {
        if state.len() != self.state.len() {
            return Err(Error::shape(
                "state",
                format!("{} buffers ({:?})", self.state.len(), self.state_names()),
                format!("{} buffers", state.len()),
            ));
        }
        let non_negative = self.spec.non_negative_state();
        for (name, buffer) in self.state_names().iter().zip(state) {
            let buffer = buffer.as_ref();
            if buffer.len() != self.n_params {
                return Err(Error::shape(
                    "state",
                    format!("{name} of {} elements", self.n_params),
                    format!("{} elements", buffer.len()),
                ));
            }
            crate::real::check_finite(buffer, &format!("state[{name:?}]"))?;
            if non_negative.contains(name) {
                if let Some(i) = buffer.iter().position(|&v| v < T::zero()) {
                    return Err(Error::value(
                        &format!("state[{name:?}]"),
                        format!(
                            "is a sum or average of squares, never negative, but element {i} \
                             is {}",
                            buffer[i].f64()
                        ),
                    ));
                }
            }
        }
        for (mine, theirs) in self.state.iter_mut().zip(state) {
            mine.copy_from_slice(theirs.as_ref());
        }
        self.steps = steps;
        Ok(())
    }
}

/// Most state buffers an optimizer keeps (Adam with amsgrad, RMSprop centered with momentum).
pub const MAX_STATE: usize = 3;
/// Parameters per block of an update: each of its buffers' blocks (32 KB in f32) stays in
/// cache between clipping and the rule, and there are enough blocks to share out.
const UPDATE_BLOCK: usize = 8 * 1024;
/// Below this many parameters an update runs on one thread.
const PARALLEL_MIN_PARAMS: usize = 2 * UPDATE_BLOCK;

/// Gradient clipping of one step, torch's order: `scale` as `clip_grad_norm_` computed it (the
/// gradients times `max_norm / (norm + 1e-6)` when that is below 1), then every gradient held
/// to ±`value` as `clip_grad_value_` does.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Clip {
    pub scale: Option<f64>,
    pub value: Option<f64>,
}

impl Clip {
    fn is_none(&self) -> bool {
        self.scale.is_none() && self.value.is_none()
    }
}

/// Held to ±limit, multiplied in `T` as the whole-buffer clipping did.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn clip_simd<T: Real>(clip: Clip, grads: &mut [T]) {
    if let Some(scale) = clip.scale {
        let c = T::of(scale);
        grads.iter_mut().for_each(|g| *g *= c);
    }
    if let Some(limit) = clip.value {
        let (low, high) = (T::of(-limit), T::of(limit));
        for g in grads.iter_mut() {
            if *g > high {
                *g = high;
            } else if *g < low {
                *g = low;
            }
        }
    }
}

/// The gradients an update reads: as given, or clipped block by block as it goes.
enum Gradients<'a, T> {
    Given(&'a [T]),
    Clipped(Disjoint<'a, T>, Clip),
}

impl<'a, T: Real> Gradients<'a, T> {
    /// The gradients of `range`, clipped first if they are to be.
    ///
    /// # Safety
    /// For clipped gradients, no other live reference may reach `range` (see
    /// [`Disjoint::range`]).
    unsafe fn block(&self, range: Range<usize>) -> &'a [T] {
        match self {
            Gradients::Given(g) => {
                let g: &'a [T] = g;
                g.get(range).unwrap_or_default()
            }
            Gradients::Clipped(g, clip) => {
                // SAFETY: the caller's guarantee.
                let g = unsafe { g.range(range) };
                clip_simd(*clip, g);
                g
            }
        }
    }
}

/// One step's rule and constants, applied to any contiguous share of the parameters: every
/// rule here is element-wise, so shares can run on different threads.
struct Update<'a> {
    spec: &'a OptimizerSpec,
    lr: f64,
    t: u64,
}

// The update loops compiled for AVX-512 and AVX2 too, chosen at run time (the crate is built
// for baseline x86-64, whose SSE2 loops ran a 235k-parameter Adam step in 185 µs).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn apply_simd<T: Real>(update: &Update<'_>, params: &mut [T], grads: &[T], state: &mut [&mut [T]]) {
    update.apply(params, grads, state)
}

impl Update<'_> {
    #[inline(always)]
    fn apply<T: Real>(&self, params: &mut [T], grads: &[T], state: &mut [&mut [T]]) {
        self.spec.apply(self.lr, self.t, params, grads, state)
    }
}

fn fresh_state<T: Real>(spec: &OptimizerSpec, n_params: usize) -> Vec<Vec<T>> {
    let initial = T::of(spec.initial_state());
    spec.state_names()
        .iter()
        .map(|_| vec![initial; n_params])
        .collect()
}

/// `x` held to `T`'s finite range (NaN stays NaN): where an update's exact result is beyond
/// the type's range, the parameter or state keeps the largest finite value instead of an
/// infinity (torch's result) that no file could hold. Within the range it is `x` itself, so
/// every update stays torch's step for step.
#[inline(always)]
fn saturate<T: Real>(x: T) -> T {
    let max = T::max_value();
    if x > max {
        max
    } else if x < -max {
        -max
    } else {
        x
    }
}

/// torch's `lerp`: `a + w (b - a)`, computed from the nearer end for accuracy as torch does.
#[inline(always)]
fn lerp<T: Real>(a: T, b: T, w: T) -> T {
    if w.abs() < T::of(0.5) {
        a + w * (b - a)
    } else {
        b - (b - a) * (T::one() - w)
    }
}

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    fn adam() -> OptimizerSpec {
        OptimizerSpec::Adam(crate::optim::Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            amsgrad: true,
        })
    }

    #[test]
    fn new_allocates_named_state() {
        let opt = Optimizer::<f32>::new(adam(), 5);
        assert_eq!(
            opt.state_names(),
            ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
        );
        assert_eq!(opt.state().len(), 3);
        assert!(opt.state().iter().all(|b| b.len() == 5));
        assert_eq!((opt.steps(), opt.lr(), opt.n_params()), (0, 1e-3, 5));
    }

    #[test]
    fn try_step_checks_lengths_and_changes_nothing_on_error() {
        let mut opt = Optimizer::<f64>::new(adam(), 3);
        let mut p = [1.0, 2.0, 3.0];
        assert!(matches!(
            opt.try_step(&mut p, &[0.1, 0.2]),
            Err(Error::Shape { ref arg, .. }) if arg == "grads"
        ));
        assert!(matches!(
            opt.try_step(&mut p[..2], &[0.1, 0.2]),
            Err(Error::Shape { ref arg, .. }) if arg == "params"
        ));
        assert_eq!((opt.steps(), p), (0, [1.0, 2.0, 3.0]));
        assert!(opt.try_step(&mut p, &[0.1, 0.2, 0.3]).is_ok());
        assert_eq!(opt.steps(), 1);
        // Mismatched lengths through the unchecked step do not panic.
        opt.step(&mut p, &[0.1]);
        opt.step(&mut p[..1], &[0.1, 0.2, 0.3]);
    }

    #[test]
    fn reset_and_load_state() {
        let spec = OptimizerSpec::Adagrad(crate::optim::Adagrad {
            lr: 0.1,
            lr_decay: 0.0,
            weight_decay: 0.0,
            no_decay: Vec::new(),
            eps: 1e-10,
            initial_accumulator_value: 0.5,
        });
        let mut opt = Optimizer::<f64>::new(spec, 2);
        assert_eq!(opt.state(), [vec![0.5, 0.5]]);
        let mut p = [1.0, 2.0];
        opt.step(&mut p, &[1.0, 1.0]);
        let saved = opt.state().to_vec();
        assert_eq!(saved, [vec![1.5, 1.5]]);
        opt.set_lr(0.05);
        opt.reset();
        assert_eq!((opt.steps(), opt.lr()), (0, 0.05));
        assert_eq!(opt.state(), [vec![0.5, 0.5]]);
        assert!(opt.load_state(1, &saved).is_ok());
        assert_eq!((opt.steps(), opt.state()), (1, saved.as_slice()));
        assert!(opt.load_state(3, &[vec![1.0]]).is_err());
        assert!(opt.load_state::<Vec<f64>>(3, &[]).is_err());
        assert_eq!(opt.steps(), 1);
    }

    #[test]
    fn an_update_split_in_shares_equals_the_whole() {
        let n = PARALLEL_MIN_PARAMS * 3 + 17;
        let grads: Vec<f64> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0)
            .collect();
        let specs = [
            OptimizerSpec::Adam(crate::optim::Adam {
                lr: 0.01,
                betas: (0.9, 0.99),
                eps: 1e-8,
                weight_decay: 0.1,
                no_decay: Vec::new(),
                amsgrad: true,
            }),
            OptimizerSpec::RmsProp(crate::optim::RmsProp {
                lr: 0.01,
                alpha: 0.9,
                eps: 1e-8,
                weight_decay: 0.0,
                no_decay: Vec::new(),
                momentum: 0.5,
                centered: true,
            }),
            OptimizerSpec::Sgd(crate::optim::Sgd {
                lr: 0.1,
                momentum: 0.9,
                dampening: 0.1,
                nesterov: false,
                weight_decay: 0.01,
                no_decay: Vec::new(),
            }),
        ];
        for spec in specs {
            let mut whole = Optimizer::<f64>::new(spec.clone(), n);
            let mut split = Optimizer::<f64>::new(spec, n);
            let (mut p_whole, mut p_split) = (vec![0.5; n], vec![0.5; n]);
            for t in 1..=3 {
                let update = Update {
                    spec: &whole.spec,
                    lr: whole.lr,
                    t,
                };
                let mut slices: Vec<&mut [f64]> =
                    whole.state.iter_mut().map(|b| &mut b[..]).collect();
                update.apply(&mut p_whole, &grads, &mut slices);
                // In blocks, shared out over the team.
                split.step(&mut p_split, &grads);
            }
            assert_eq!(p_whole, p_split);
            assert_eq!(whole.state, split.state);
            assert_ne!(p_whole, vec![0.5; n]);
        }
    }

    #[test]
    fn a_clipped_step_equals_clipping_first_then_stepping() {
        let n = PARALLEL_MIN_PARAMS + 5;
        let grads: Vec<f32> = (0..n)
            .map(|i| ((i * 31) % 200) as f32 / 50.0 - 2.0)
            .collect();
        for clip in [
            Clip {
                scale: Some(0.3),
                value: None,
            },
            Clip {
                scale: None,
                value: Some(1.5),
            },
            Clip {
                scale: Some(0.7),
                value: Some(0.5),
            },
        ] {
            let (mut fused, mut apart) = (Optimizer::new(adam(), n), Optimizer::new(adam(), n));
            let (mut p_fused, mut p_apart) = (vec![0.25f32; n], vec![0.25f32; n]);
            let mut g_fused = grads.clone();
            fused.step_clipped(&mut p_fused, &mut g_fused, clip);
            let mut g_apart = grads.clone();
            clip_simd(clip, &mut g_apart);
            apart.step(&mut p_apart, &g_apart);
            assert_eq!(g_fused, g_apart);
            assert_eq!(p_fused, p_apart);
            assert_eq!(fused.state(), apart.state());
            let limit = clip.value.unwrap_or(f64::INFINITY) as f32;
            assert!(g_fused.iter().all(|g| g.abs() <= limit));
        }
        // The value clipping had something to clip.
        assert!(grads.iter().any(|g| g.abs() > 1.5));
    }

    #[test]
    fn a_step_that_would_overflow_is_refused_and_changes_nothing() {
        // Gradients of 1e30: their squares overflow f32, so exp_avg_sq would become infinite.
        let mut opt = Optimizer::<f32>::new(adam(), 300);
        let mut p = vec![0.5f32; 300];
        let mut g = vec![0.1f32; 300];
        g[299] = 1e30;
        assert!(!opt.step_stays_finite(&p, &g));
        let e = opt.try_step(&mut p, &g).unwrap_err();
        assert!(
            e.to_string().starts_with("gradients: the step would make"),
            "{e}"
        );
        assert_eq!((opt.steps(), p.as_slice()), (0, &[0.5f32; 300][..]));
        assert!(opt.state().iter().all(|b| b.iter().all(|&v| v == 0.0)));
        g[299] = f32::INFINITY;
        let e = opt.try_step(&mut p, &g).unwrap_err();
        assert!(e.to_string().contains("NaN or infinity"), "{e}");
        // A learning rate that carries a parameter past f32's range, through SGD.
        let sgd = OptimizerSpec::Sgd(crate::optim::Sgd {
            lr: 1e38,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            no_decay: Vec::new(),
        });
        let mut opt = Optimizer::<f32>::new(sgd, 2);
        let mut p = [1.0f32, 1.0];
        assert!(opt.try_step(&mut p, &[10.0, 0.0]).is_err());
        assert_eq!(p, [1.0, 1.0]);
        // The dry run predicts exactly what the step does when it stays finite.
        let mut opt = Optimizer::<f64>::new(adam(), 600);
        let mut p: Vec<f64> = (0..600).map(|i| (i as f64).sin()).collect();
        let g: Vec<f64> = (0..600).map(|i| (i as f64 * 0.3).cos()).collect();
        assert!(opt.step_stays_finite(&p, &g));
        let mut q = p.clone();
        opt.clone().step(&mut q, &g);
        // panic-free: test code
        opt.try_step(&mut p, &g).expect("a finite step");
        assert_eq!(p, q);
    }

    #[test]
    fn an_unchecked_step_past_the_range_saturates_instead_of_overflowing() {
        // Gradients of 1e30: their squares overflow f32; torch's exp_avg_sq would be inf.
        let specs = [
            adam(),
            OptimizerSpec::RmsProp(crate::optim::RmsProp {
                lr: 0.01,
                alpha: 0.9,
                eps: 1e-8,
                weight_decay: 0.0,
                no_decay: Vec::new(),
                momentum: 0.9,
                centered: true,
            }),
            OptimizerSpec::Adagrad(crate::optim::Adagrad {
                lr: 0.1,
                lr_decay: 0.0,
                weight_decay: 0.0,
                no_decay: Vec::new(),
                eps: 1e-10,
                initial_accumulator_value: 0.0,
            }),
            OptimizerSpec::Sgd(crate::optim::Sgd {
                lr: 1e38,
                momentum: 0.9,
                dampening: 0.0,
                nesterov: false,
                weight_decay: 0.0,
                no_decay: Vec::new(),
            }),
        ];
        for spec in specs {
            let mut opt = Optimizer::<f32>::new(spec.clone(), 2);
            let mut p = [0.5f32, -0.5];
            for _ in 0..3 {
                opt.step(&mut p, &[1e30, -3e38]);
            }
            assert!(p.iter().all(|v| v.is_finite()), "{spec:?}: {p:?}");
            for buffer in opt.state() {
                assert!(buffer.iter().all(|v| v.is_finite()), "{spec:?}: {buffer:?}");
            }
            assert!(
                !Optimizer::<f32>::new(spec.clone(), 2)
                    .step_stays_finite(&[0.5, -0.5], &[1e30, -3e38]),
                "{spec:?}: the checked step still refuses it"
            );
        }
        // Within the range every rule is torch's step for step: the rules' own tests.
    }

    #[test]
    fn load_state_refuses_non_finite_values_and_changes_nothing() {
        let mut opt = Optimizer::<f32>::new(adam(), 2);
        let good = [0.25f32, 0.5];
        let bad = [0.25f32, f32::INFINITY];
        let e = opt
            .load_state(4, &[&good[..], &bad[..], &good[..]])
            .unwrap_err();
        assert!(e.to_string().starts_with("state[\"exp_avg_sq\"]"), "{e}");
        assert_eq!(opt.steps(), 0);
        assert!(opt.state().iter().all(|b| b == &[0.0, 0.0]));
        // panic-free: test code
        opt.load_state(4, &[&good[..], &good[..], &good[..]])
            .expect("finite state");
        assert_eq!((opt.steps(), opt.state()[1].as_slice()), (4, &good[..]));
    }

    #[test]
    fn no_decay_tensors_and_the_decay_scale_change_only_their_ranges() {
        let sgd = |no_decay: Vec<String>| {
            OptimizerSpec::Sgd(crate::optim::Sgd {
                lr: 0.5,
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
                weight_decay: 0.1,
                no_decay,
            })
        };
        let tensors = [
            ("0.weight", 0, 2),
            ("0.bias", 2, 1),
            ("1.weight", 3, 2),
            ("1.bias", 5, 1),
        ];
        let mut opt = Optimizer::<f64>::new(sgd(vec!["bias".into()]), 6);
        // panic-free: test code
        opt.set_param_names(tensors.iter().copied()).expect("names");
        assert_eq!(opt.undecayed, [(2, 3), (5, 6)]);
        let mut p = [2.0; 6];
        opt.step(&mut p, &[0.0; 6]);
        assert_eq!(p, [1.9, 1.9, 2.0, 1.9, 1.9, 2.0]);
        opt.set_decay_scale(0.5);
        assert!(opt.step_stays_finite(&p, &[0.0; 6]));
        opt.step(&mut p, &[0.0; 6]);
        let shrunk = 1.9 - 0.5 * 0.05 * 1.9;
        assert_eq!(p, [shrunk, shrunk, 2.0, shrunk, shrunk, 2.0]);
        // Without no_decay and at scale 1, the step is the spec's own, bit for bit.
        let mut plain = Optimizer::<f64>::new(sgd(Vec::new()), 6);
        // panic-free: test code
        plain
            .set_param_names(tensors.iter().copied())
            .expect("names");
        let (mut a, mut b) = ([1.5; 6], [1.5; 6]);
        plain.step(&mut a, &[0.3; 6]);
        Optimizer::<f64>::new(sgd(Vec::new()), 6).step(&mut b, &[0.3; 6]);
        assert_eq!(a, b);
        let mut bad = Optimizer::<f64>::new(sgd(vec!["bais".into()]), 6);
        let e = bad.set_param_names(tensors.iter().copied()).unwrap_err();
        assert!(e.to_string().starts_with("no_decay: \"bais\""), "{e}");
    }

    #[test]
    fn lerp_matches_torch() {
        assert_eq!(lerp(1.0f64, 3.0, 0.25), 1.5);
        assert_eq!(lerp(1.0f64, 3.0, 0.75), 2.5);
        assert_eq!(lerp(1.0f32, 3.0, 0.1), 1.0 + 0.1 * 2.0);
    }
}
