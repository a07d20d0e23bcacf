//! The description of a network: layers, loss, optimizer and seed, as plain data.
//!
//! The Python layer builds this as JSON (`{"type": "dense", "in_features": 4, ...}`); the same
//! JSON goes into saved files. Field names and defaults are torch's.

use serde::{Deserialize, Serialize};

/// One layer of a sequential network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// `y = x Wᵀ + b`, weight (out_features, in_features), as `torch.nn.Linear`.
    Dense {
        in_features: usize,
        out_features: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    Relu,
    LeakyRelu {
        #[serde(default = "leaky_slope")]
        negative_slope: f64,
    },
    Sigmoid,
    Tanh,
    /// The exact GELU, `x Φ(x)` with the erf.
    Gelu,
    Elu {
        #[serde(default = "one")]
        alpha: f64,
    },
    /// `log(1 + exp(beta x)) / beta`, linear above `threshold` as torch.
    Softplus {
        #[serde(default = "one")]
        beta: f64,
        #[serde(default = "twenty")]
        threshold: f64,
    },
    Identity,
    /// `x σ(x)`, as `torch.nn.SiLU`.
    Silu,
    /// `x tanh(softplus(x))`, as `torch.nn.Mish`.
    Mish,
    /// `x` for x > 0, else `a x` with the slope `a` learned: one for all features, or one per
    /// channel (the first axis of a shaped row, the feature of a flat one), as
    /// `torch.nn.PReLU(num_parameters, init)`.
    Prelu {
        #[serde(default = "one_usize")]
        num_parameters: usize,
        #[serde(default = "prelu_init")]
        init: f64,
    },
    /// Inverted dropout: in training each value is zeroed with probability `p` and the kept
    /// ones are scaled by 1/(1-p); identity in inference, as `torch.nn.Dropout`.
    Dropout {
        #[serde(default = "half")]
        p: f64,
    },
    /// `torch.nn.BatchNorm1d(num_features, eps, momentum)` with affine weight and bias and
    /// running statistics: batch statistics in training, running ones in inference.
    #[serde(rename = "batch_norm1d")]
    BatchNorm1d {
        num_features: usize,
        #[serde(default = "norm_eps")]
        eps: f64,
        #[serde(default = "bn_momentum")]
        momentum: f64,
    },
    /// `torch.nn.LayerNorm(normalized_shape, eps)` over each sample's features, with affine
    /// weight and bias.
    LayerNorm {
        normalized_shape: usize,
        #[serde(default = "norm_eps")]
        eps: f64,
    },
    /// Reads each row as an array of `shape` (C, H, W or C, L), row-major as torch's NCHW;
    /// first in a network it states the input's shape. `torch.nn.Unflatten(1, shape)`.
    Reshape {
        shape: Vec<usize>,
    },
    /// Makes the row flat again, as `torch.nn.Flatten()`.
    Flatten,
    /// `torch.nn.Conv1d` on (C, L) rows, weight (out, in, k).
    Conv1d {
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        #[serde(default = "one_usize")]
        stride: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default = "one_usize")]
        dilation: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// `torch.nn.Conv2d` on (C, H, W) rows, weight (out, in, kh, kw).
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel_size: (usize, usize),
        #[serde(default = "ones_pair")]
        stride: (usize, usize),
        #[serde(default)]
        padding: (usize, usize),
        #[serde(default = "ones_pair")]
        dilation: (usize, usize),
        #[serde(default = "yes")]
        bias: bool,
    },
    /// `torch.nn.MaxPool1d(kernel_size, stride, padding)` on (C, L) rows.
    MaxPool1d {
        kernel_size: usize,
        stride: usize,
        #[serde(default)]
        padding: usize,
    },
    /// `torch.nn.MaxPool2d(kernel_size, stride, padding)` on (C, H, W) rows.
    MaxPool2d {
        kernel_size: (usize, usize),
        stride: (usize, usize),
        #[serde(default)]
        padding: (usize, usize),
    },
    /// `torch.nn.AvgPool1d(kernel_size, stride, padding)`, padding counted in the mean.
    AvgPool1d {
        kernel_size: usize,
        stride: usize,
        #[serde(default)]
        padding: usize,
    },
    /// `torch.nn.Embedding(num_embeddings, embedding_dim)` over rows of (L,) indices, giving
    /// (L, embedding_dim); it reads the network's input, so only reshapes may come before it.
    Embedding {
        num_embeddings: usize,
        embedding_dim: usize,
    },
    /// Rows of `in_features` columns: each listed `(column, num_embeddings, embedding_dim)`
    /// is an index looked up in a table of its own, the others pass through as numbers, and
    /// the results are concatenated in column order. First in a network, like Embedding.
    Embeddings {
        in_features: usize,
        columns: Vec<(usize, usize, usize)>,
    },
    /// `torch.nn.AvgPool2d(kernel_size, stride, padding)`, padding counted in the mean.
    AvgPool2d {
        kernel_size: (usize, usize),
        stride: (usize, usize),
        #[serde(default)]
        padding: (usize, usize),
    },
}

/// The loss, mean-reduced, as `torch.nn`'s losses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossSpec {
    Mse,
    L1,
    Huber {
        #[serde(default = "one")]
        delta: f64,
    },
    /// `torch.nn.CrossEntropyLoss(weight, label_smoothing)`: with class weights `weight` (one
    /// per class), the mean divides by the sum of the targets' class weights.
    CrossEntropy {
        #[serde(default)]
        label_smoothing: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<Vec<f64>>,
    },
    /// `torch.nn.BCEWithLogitsLoss(pos_weight)`: `pos_weight` (one per output, or one for all)
    /// multiplies the positive term of each output's loss.
    BceWithLogits {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pos_weight: Option<Vec<f64>>,
    },
    /// `torch.nn.PoissonNLLLoss(log_input=True, full=False)`: the output is a log-rate.
    Poisson,
}

pub use crate::optim::OptimizerSpec;

/// A whole sequential network: what `Network::new` builds from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub layers: Vec<LayerSpec>,
    pub loss: LossSpec,
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub seed: u64,
}

/// Most layers a network may have: far beyond any trained MLP, and small enough that a saved
/// file's description stays cheap to read (the loader refuses more before parsing them).
pub const MAX_LAYERS: usize = 10_000;

impl LossSpec {
    /// Parses a loss's JSON form; an error names `loss`.
    pub fn from_json(text: &str) -> crate::Result<Self> {
        serde_json::from_str(text).map_err(|e| crate::Error::spec("loss", e.to_string()))
    }
}

impl NetworkSpec {
    /// Parses the JSON form; errors name the part that did not parse, or `layers` when there
    /// are more than [`MAX_LAYERS`].
    pub fn from_json(text: &str) -> crate::Result<Self> {
        let spec: Self =
            serde_json::from_str(text).map_err(|e| crate::Error::spec("spec", e.to_string()))?;
        if spec.layers.len() > MAX_LAYERS {
            return Err(crate::Error::spec(
                "layers",
                format!(
                    "{} layers, more than the limit of {MAX_LAYERS}",
                    spec.layers.len()
                ),
            ));
        }
        Ok(spec)
    }

    /// The JSON form, as saved in files.
    pub fn to_json(&self) -> String {
        // panic-free: the spec holds only numbers, booleans and enums, which always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn yes() -> bool {
    true
}
fn one_usize() -> usize {
    1
}
fn ones_pair() -> (usize, usize) {
    (1, 1)
}
fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn norm_eps() -> f64 {
    1e-5
}
fn bn_momentum() -> f64 {
    0.1
}
fn twenty() -> f64 {
    20.0
}
fn leaky_slope() -> f64 {
    0.01
}
fn prelu_init() -> f64 {
    0.25
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_layers(n: usize) -> String {
        let mut layers = vec![r#"{"type":"dense","in_features":2,"out_features":2}"#; 1];
        layers.extend(std::iter::repeat(r#"{"type":"relu"}"#).take(n - 1));
        format!(
            r#"{{"layers":[{}],"loss":{{"type":"mse"}},"optimizer":{{"type":"adam"}}}}"#,
            layers.join(",")
        )
    }

    #[test]
    fn the_layer_count_is_bounded() {
        assert_eq!(
            NetworkSpec::from_json(&with_layers(MAX_LAYERS))
                .map(|s| s.layers.len())
                .ok(),
            Some(MAX_LAYERS)
        );
        let e = NetworkSpec::from_json(&with_layers(MAX_LAYERS + 1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "layers: 10001 layers, more than the limit of 10000"
        );
    }
}
