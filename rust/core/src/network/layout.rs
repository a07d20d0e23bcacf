//! From a description to runtime layers: their widths, and where each parameter tensor lives in
//! the flat parameter buffer.

use crate::activation::Activation;
use crate::dense::Dense;
use crate::{Error, LayerSpec, Result};

/// A layer as the network runs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    Dense(Dense),
    Activation(Activation),
}

/// A named parameter tensor inside the flat parameter buffer (torch's `Sequential` naming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// "0.weight", "0.bias", "2.weight", ...
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl ParamInfo {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The runtime layers, their widths and where their parameters live.
pub(super) struct Layout {
    pub layers: Vec<Layer>,
    /// `widths[i]` is layer i's input width; the last entry is the network's output width.
    pub widths: Vec<usize>,
    pub param_info: Vec<ParamInfo>,
    pub n_params: usize,
}

fn dense_error(i: usize, message: String) -> Error {
    Error::spec(&format!("layers[{i}]"), message)
}

/// Builds the runtime layers from the description, checking that their widths chain.
pub(super) fn build_layers(specs: &[LayerSpec]) -> Result<Layout> {
    let first_width = specs
        .iter()
        .find_map(|s| match s {
            LayerSpec::Dense { in_features, .. } => Some(*in_features),
            _ => None,
        })
        .ok_or_else(|| Error::spec("layers", "the network needs at least one Dense layer"))?;
    let mut widths = vec![first_width];
    let mut layers = Vec::with_capacity(specs.len());
    let mut param_info = Vec::new();
    let mut offset = 0usize;
    for (i, spec) in specs.iter().enumerate() {
        let width = widths[widths.len() - 1];
        let layer = match *spec {
            LayerSpec::Dense {
                in_features,
                out_features,
                bias,
            } => {
                if in_features == 0 || out_features == 0 {
                    return Err(dense_error(
                        i,
                        format!(
                            "Dense needs in_features and out_features >= 1, \
                             got ({in_features}, {out_features})"
                        ),
                    ));
                }
                if in_features != width {
                    return Err(dense_error(
                        i,
                        format!(
                            "Dense in_features is {in_features} but the layer before gives \
                             {width} features"
                        ),
                    ));
                }
                let weight_len = in_features
                    .checked_mul(out_features)
                    .filter(|&n| n <= (1 << 40))
                    .ok_or_else(|| dense_error(i, "Dense layer too large".to_string()))?;
                let dense = Dense {
                    in_features,
                    out_features,
                    weight_offset: offset,
                    bias_offset: bias.then_some(offset + weight_len),
                };
                param_info.push(ParamInfo {
                    name: format!("{i}.weight"),
                    shape: vec![out_features, in_features],
                    offset,
                });
                if let Some(b) = dense.bias_offset {
                    param_info.push(ParamInfo {
                        name: format!("{i}.bias"),
                        shape: vec![out_features],
                        offset: b,
                    });
                }
                offset += dense.n_params();
                Layer::Dense(dense)
            }
            ref other => match Activation::from_spec(other) {
                Some(a) => Layer::Activation(a),
                None => return Err(dense_error(i, "unknown layer".to_string())),
            },
        };
        widths.push(match layer {
            Layer::Dense(d) => d.out_features,
            Layer::Activation(_) => width,
        });
        layers.push(layer);
    }
    Ok(Layout {
        layers,
        widths,
        param_info,
        n_params: offset,
    })
}
