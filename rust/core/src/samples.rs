//! One value for the samples a call computes on: their inputs, their targets, optional
//! per-sample weights and how many there are. Passed whole through the network, so that no
//! function takes four positional arguments that must agree, and no `_weighted` twin exists
//! only to pass `None`.

use crate::loss::Targets;

/// `n` samples: inputs (`n ×` input width, row-major), their targets, and optional weights
/// (one per sample, see `loss::evaluate_weighted`).
#[derive(Debug, Clone, Copy)]
pub struct Samples<'a, T> {
    pub x: &'a [T],
    pub targets: Targets<'a, T>,
    pub weights: Option<&'a [T]>,
    pub n: usize,
}

impl<'a, T> Samples<'a, T> {
    /// `n` unweighted samples.
    pub fn new(x: &'a [T], targets: Targets<'a, T>, n: usize) -> Self {
        Samples {
            x,
            targets,
            weights: None,
            n,
        }
    }

    /// The same samples with per-sample `weights` (`None`: unweighted).
    pub fn weighted(self, weights: Option<&'a [T]>) -> Self {
        Samples { weights, ..self }
    }

    /// Samples `start..end`, with inputs `width_in` and (value) targets `width_out` wide.
    pub fn rows(self, start: usize, end: usize, width_in: usize, width_out: usize) -> Self {
        Samples {
            x: &self.x[start * width_in..end * width_in],
            targets: self.targets.rows(start, end, width_out),
            weights: self.weights.map(|w| &w[start..end]),
            n: end - start,
        }
    }
}
