//! From a description to runtime layers: their widths, and where each parameter tensor lives in
//! the flat parameter buffer.

use crate::activation::Activation;
use crate::batch_norm::BatchNorm;
use crate::dense::Dense;
use crate::dropout::Dropout;
use crate::layer_norm::LayerNorm;
use crate::{Error, LayerSpec, Result};

/// A layer as the network runs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    Dense(Dense),
    Activation(Activation),
    Dropout(Dropout),
    BatchNorm(BatchNorm),
    LayerNorm(LayerNorm),
}

impl Layer {
    /// Whether the layer has trainable parameters.
    pub fn has_params(&self) -> bool {
        matches!(
            self,
            Layer::Dense(_) | Layer::BatchNorm(_) | Layer::LayerNorm(_)
        )
    }
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
    /// Running means and variances of the batch-norm layers, in one flat buffer (not
    /// parameters: the optimizer never sees them).
    pub buffer_info: Vec<ParamInfo>,
    pub n_buffers: usize,
    /// "i.num_batches_tracked" of each batch-norm layer, in order.
    pub tracked_names: Vec<String>,
}

/// The tensors a network of `spec` holds, read from the description alone (nothing of their
/// size is allocated): what a saved file must hold, in the core's own names and order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensors {
    /// The parameters, in the flat buffer's order.
    pub params: Vec<ParamInfo>,
    /// The batch-norm running statistics, in their flat buffer's order.
    pub buffers: Vec<ParamInfo>,
    /// "i.num_batches_tracked" of each batch-norm layer (0-d int64 counts).
    pub counters: Vec<String>,
    /// The optimizer's state buffers (each as long as the parameters), by torch's names.
    pub optimizer_state: Vec<&'static str>,
    /// Those of them that are sums or averages of squares, never negative.
    pub non_negative_state: Vec<&'static str>,
}

/// The tensors of a network built from `spec`, or the error building it would give.
pub fn tensors(spec: &crate::NetworkSpec) -> Result<Tensors> {
    let layout = build_layers(&spec.layers)?;
    Ok(Tensors {
        params: layout.param_info,
        buffers: layout.buffer_info,
        counters: layout.tracked_names,
        optimizer_state: spec.optimizer.state_names(),
        non_negative_state: spec.optimizer.non_negative_state(),
    })
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
            LayerSpec::BatchNorm1d { num_features, .. } => Some(*num_features),
            LayerSpec::LayerNorm {
                normalized_shape, ..
            } => Some(*normalized_shape),
            _ => None,
        })
        .filter(|_| specs.iter().any(|s| matches!(s, LayerSpec::Dense { .. })))
        .ok_or_else(|| Error::spec("layers", "the network needs at least one Dense layer"))?;
    let mut widths = vec![first_width];
    let mut layers = Vec::with_capacity(specs.len());
    let mut param_info = Vec::new();
    let mut offset = 0usize;
    let mut buffer_info = Vec::new();
    let mut n_buffers = 0usize;
    let mut tracked_names = Vec::new();
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
                    .ok_or_else(|| {
                        dense_error(
                            i,
                            format!(
                                "Dense({in_features}, {out_features}) is too large: \
                                 in_features × out_features must be at most 2^40"
                            ),
                        )
                    })?;
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
            LayerSpec::Dropout { p } => {
                if !(0.0..1.0).contains(&p) {
                    return Err(dense_error(
                        i,
                        format!("Dropout p must be in [0, 1), got {p}"),
                    ));
                }
                Layer::Dropout(Dropout { p, layer: i })
            }
            LayerSpec::BatchNorm1d {
                num_features,
                eps,
                momentum,
            } => {
                check_norm(i, "BatchNorm1d", "num_features", num_features, width, eps)?;
                if !(0.0..=1.0).contains(&momentum) {
                    return Err(dense_error(
                        i,
                        format!("BatchNorm1d momentum must be in [0, 1], got {momentum}"),
                    ));
                }
                let (weight_offset, bias_offset) =
                    push_affine(&mut param_info, &mut offset, i, num_features);
                for (k, what) in ["running_mean", "running_var"].iter().enumerate() {
                    buffer_info.push(ParamInfo {
                        name: format!("{i}.{what}"),
                        shape: vec![num_features],
                        offset: n_buffers + k * num_features,
                    });
                }
                let bn = BatchNorm {
                    features: num_features,
                    eps,
                    momentum,
                    weight_offset,
                    bias_offset,
                    buffer_offset: n_buffers,
                    ordinal: tracked_names.len(),
                };
                n_buffers += 2 * num_features;
                tracked_names.push(format!("{i}.num_batches_tracked"));
                Layer::BatchNorm(bn)
            }
            LayerSpec::LayerNorm {
                normalized_shape,
                eps,
            } => {
                check_norm(
                    i,
                    "LayerNorm",
                    "normalized_shape",
                    normalized_shape,
                    width,
                    eps,
                )?;
                let (weight_offset, bias_offset) =
                    push_affine(&mut param_info, &mut offset, i, normalized_shape);
                Layer::LayerNorm(LayerNorm {
                    features: normalized_shape,
                    eps,
                    weight_offset,
                    bias_offset,
                })
            }
            ref other => match Activation::from_spec(other) {
                Some(a) => Layer::Activation(a),
                None => return Err(dense_error(i, "unknown layer".to_string())),
            },
        };
        widths.push(match layer {
            Layer::Dense(d) => d.out_features,
            Layer::Activation(_)
            | Layer::Dropout(_)
            | Layer::BatchNorm(_)
            | Layer::LayerNorm(_) => width,
        });
        layers.push(layer);
    }
    Ok(Layout {
        layers,
        widths,
        param_info,
        n_params: offset,
        buffer_info,
        n_buffers,
        tracked_names,
    })
}

/// A normalization layer's feature count must be the incoming width and its eps positive.
fn check_norm(
    i: usize,
    kind: &str,
    arg: &str,
    features: usize,
    width: usize,
    eps: f64,
) -> Result<()> {
    if features != width {
        return Err(dense_error(
            i,
            format!("{kind} {arg} is {features} but the layer before gives {width} features"),
        ));
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(dense_error(
            i,
            format!("{kind} eps must be a finite number > 0, got {eps}"),
        ));
    }
    Ok(())
}

/// Places the weight γ and bias β (`features` each) of a normalization layer `i` at `offset`,
/// names them as torch ("i.weight", "i.bias"), and returns their offsets.
fn push_affine(
    param_info: &mut Vec<ParamInfo>,
    offset: &mut usize,
    i: usize,
    features: usize,
) -> (usize, usize) {
    let (w, b) = (*offset, *offset + features);
    for (name, at) in [("weight", w), ("bias", b)] {
        param_info.push(ParamInfo {
            name: format!("{i}.{name}"),
            shape: vec![features],
            offset: at,
        });
    }
    *offset += 2 * features;
    (w, b)
}
