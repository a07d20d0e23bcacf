//! From a description to runtime layers: their widths, and where each parameter tensor lives in
//! the flat parameter buffer.

use crate::activation::Activation;
use crate::batch_norm::BatchNorm;
use crate::conv::{Conv, Window};
use crate::dense::Dense;
use crate::dropout::Dropout;
use crate::embedding::{Embeddings, Table};
use crate::layer_norm::LayerNorm;
use crate::pool::{Pool, PoolKind};
use crate::prelu::Prelu;
use crate::{memory, Error, LayerSpec, Result};

/// A layer as the network runs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    Dense(Dense),
    Activation(Activation),
    Dropout(Dropout),
    BatchNorm(BatchNorm),
    LayerNorm(LayerNorm),
    Conv(Conv),
    Pool(Pool),
    Embeddings(Embeddings),
    Prelu(Prelu),
    /// Reshape and Flatten: the row's values unchanged, read in another shape.
    Reshape,
}

impl Layer {
    /// Whether the layer has trainable parameters.
    pub fn has_params(&self) -> bool {
        matches!(
            self,
            Layer::Dense(_)
                | Layer::BatchNorm(_)
                | Layer::LayerNorm(_)
                | Layer::Conv(_)
                | Layer::Embeddings(_)
                | Layer::Prelu(_)
        )
    }

    /// Multiply-adds of one sample's forward pass through the layer's products (0 for a
    /// layer without them).
    pub fn macs(&self) -> usize {
        match self {
            Layer::Dense(d) => d.weight_len(),
            Layer::Conv(c) => c.macs(),
            _ => 0,
        }
    }

    /// Scratch values the layer's forward or backward needs for `n` rows, besides its input
    /// and output.
    pub fn scratch_len(&self, n: usize) -> usize {
        match self {
            Layer::Conv(c) => c.scratch_len(n),
            _ => 0,
        }
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
    /// Each layer's output shape per sample ([features], or [channels, length] and so on).
    pub output_shapes: Vec<Vec<usize>>,
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
    /// Each layer's output shape per sample.
    pub output_shapes: Vec<Vec<usize>>,
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
        output_shapes: layout.output_shapes,
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
            LayerSpec::Reshape { shape } => shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)),
            LayerSpec::Embeddings { in_features, .. } => Some(*in_features),
            _ => None,
        })
        .filter(|_| specs.iter().any(|s| matches!(s, LayerSpec::Dense { .. })))
        .ok_or_else(|| Error::spec("layers", "the network needs at least one Dense layer"))?;
    let mut widths = vec![first_width];
    // Each row's shape as the next layer reads it: flat until a Reshape says otherwise.
    let mut shape = vec![first_width];
    let mut layers = Vec::with_capacity(specs.len());
    let mut param_info = Vec::new();
    let mut offset = 0usize;
    let mut buffer_info = Vec::new();
    let mut n_buffers = 0usize;
    let mut tracked_names = Vec::new();
    let mut output_shapes = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let width = widths[widths.len() - 1];
        if let Some(kind) = needs_flat(spec).filter(|_| shape.len() != 1) {
            return Err(dense_error(
                i,
                format!(
                    "{kind} needs flat features but the layer before gives an array of shape \
                     {shape:?}: put a Flatten before it"
                ),
            ));
        }
        let mut out_shape = shape.clone();
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
            LayerSpec::Reshape { shape: ref to } => {
                let len = to.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if to.is_empty() || to.contains(&0) || len != Some(width) {
                    return Err(dense_error(
                        i,
                        format!(
                            "Reshape to {to:?} needs {} values but the layer before gives \
                             {width} (the shape must be sizes >= 1 whose product is that)",
                            len.map_or("too many".to_string(), |n| n.to_string())
                        ),
                    ));
                }
                out_shape = to.clone();
                Layer::Reshape
            }
            LayerSpec::Flatten => {
                out_shape = vec![width];
                Layer::Reshape
            }
            LayerSpec::Conv1d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                bias,
            } => {
                let geometry = Geometry {
                    kernel: (1, kernel_size),
                    stride: (1, stride),
                    padding: (0, padding),
                    dilation: (1, dilation),
                };
                let window = window_of(i, "Conv1d", &shape, in_channels, geometry)?;
                let conv = push_conv(
                    &mut param_info,
                    &mut offset,
                    i,
                    window,
                    out_channels,
                    bias,
                    false,
                )?;
                out_shape = vec![out_channels, window.output().map_or(0, |o| o.1)];
                Layer::Conv(conv)
            }
            LayerSpec::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                bias,
            } => {
                let geometry = Geometry {
                    kernel: kernel_size,
                    stride,
                    padding,
                    dilation,
                };
                let window = window_of(i, "Conv2d", &shape, in_channels, geometry)?;
                let conv = push_conv(
                    &mut param_info,
                    &mut offset,
                    i,
                    window,
                    out_channels,
                    bias,
                    true,
                )?;
                let (oh, ow) = window.output().unwrap_or((0, 0));
                out_shape = vec![out_channels, oh, ow];
                Layer::Conv(conv)
            }
            LayerSpec::MaxPool1d {
                kernel_size,
                stride,
                padding,
            }
            | LayerSpec::AvgPool1d {
                kernel_size,
                stride,
                padding,
            } => {
                let (kind, name) = match spec {
                    LayerSpec::MaxPool1d { .. } => (PoolKind::Max, "MaxPool1d"),
                    _ => (PoolKind::Average, "AvgPool1d"),
                };
                let geometry = Geometry {
                    kernel: (1, kernel_size),
                    stride: (1, stride),
                    padding: (0, padding),
                    dilation: (1, 1),
                };
                let pool = pool_of(i, name, &shape, kind, geometry)?;
                out_shape = vec![shape[0], pool.window.output().map_or(0, |o| o.1)];
                Layer::Pool(pool)
            }
            LayerSpec::MaxPool2d {
                kernel_size,
                stride,
                padding,
            }
            | LayerSpec::AvgPool2d {
                kernel_size,
                stride,
                padding,
            } => {
                let (kind, name) = match spec {
                    LayerSpec::MaxPool2d { .. } => (PoolKind::Max, "MaxPool2d"),
                    _ => (PoolKind::Average, "AvgPool2d"),
                };
                let geometry = Geometry {
                    kernel: kernel_size,
                    stride,
                    padding,
                    dilation: (1, 1),
                };
                let pool = pool_of(i, name, &shape, kind, geometry)?;
                let (oh, ow) = pool.window.output().unwrap_or((0, 0));
                out_shape = vec![shape[0], oh, ow];
                Layer::Pool(pool)
            }
            LayerSpec::Embedding {
                num_embeddings,
                embedding_dim,
            } => {
                check_reads_input(i, "Embedding", &layers)?;
                if i == 0 {
                    return Err(dense_error(
                        i,
                        "Embedding reads rows of L indices: start the network with \
                         Reshape((L,)), which states L"
                            .to_string(),
                    ));
                }
                if shape.len() != 1 {
                    return Err(dense_error(
                        i,
                        format!(
                            "Embedding reads rows of (L,) indices but the layer before gives \
                             the shape {shape:?}"
                        ),
                    ));
                }
                let table = push_table(
                    &mut param_info,
                    &mut offset,
                    format!("{i}.weight"),
                    (i, num_embeddings, embedding_dim),
                )?;
                out_shape = vec![width, embedding_dim];
                Layer::Embeddings(Embeddings {
                    columns: vec![Some(0); width],
                    tables: vec![table],
                })
            }
            LayerSpec::Embeddings {
                in_features,
                ref columns,
            } => {
                check_reads_input(i, "Embeddings", &layers)?;
                if in_features != width {
                    return Err(dense_error(
                        i,
                        format!(
                            "Embeddings in_features is {in_features} but the layer before \
                             gives {width} features"
                        ),
                    ));
                }
                let mut embedded = vec![None; in_features];
                let mut tables = Vec::with_capacity(columns.len());
                for (k, &(column, rows, dim)) in columns.iter().enumerate() {
                    if column >= in_features || embedded[column].is_some() {
                        return Err(dense_error(
                            i,
                            format!(
                                "Embeddings column {column} is not a column of the \
                                 {in_features} features, or is listed twice"
                            ),
                        ));
                    }
                    embedded[column] = Some(k);
                    let name = format!("{i}.tables.{column}.weight");
                    let table = push_table(&mut param_info, &mut offset, name, (i, rows, dim))?;
                    tables.push(table);
                }
                let layer = Embeddings {
                    columns: embedded,
                    tables,
                };
                out_shape = vec![layer.out_len()];
                Layer::Embeddings(layer)
            }
            LayerSpec::Prelu {
                num_parameters,
                init,
            } => {
                let channels = shape[0];
                if num_parameters != 1 && num_parameters != channels {
                    return Err(dense_error(
                        i,
                        format!(
                            "PReLU num_parameters is {num_parameters} but the layer before \
                             gives {channels} {}: give 1 or {channels}",
                            if shape.len() == 1 {
                                "features"
                            } else {
                                "channels"
                            }
                        ),
                    ));
                }
                if !init.is_finite() {
                    return Err(dense_error(
                        i,
                        format!("PReLU init must be a finite number, got {init}"),
                    ));
                }
                param_info.push(ParamInfo {
                    name: format!("{i}.weight"),
                    shape: vec![num_parameters],
                    offset,
                });
                let prelu = Prelu::new(width, num_parameters, init, offset);
                offset += num_parameters;
                Layer::Prelu(prelu)
            }
            ref other => match Activation::from_spec(other) {
                Some(a) => Layer::Activation(a),
                None => return Err(dense_error(i, "unknown layer".to_string())),
            },
        };
        if let Layer::Dense(d) = &layer {
            out_shape = vec![d.out_features];
        }
        widths.push(match &layer {
            Layer::Dense(d) => d.out_features,
            Layer::Conv(c) => c.out_len(),
            Layer::Pool(p) => p.out_len(),
            Layer::Embeddings(e) => e.out_len(),
            Layer::Activation(_)
            | Layer::Prelu(_)
            | Layer::Dropout(_)
            | Layer::BatchNorm(_)
            | Layer::LayerNorm(_)
            | Layer::Reshape => width,
        });
        output_shapes.push(out_shape.clone());
        shape = out_shape;
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
        output_shapes,
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

/// The name of a layer that reads its input as flat features, if `spec` is one.
fn needs_flat(spec: &LayerSpec) -> Option<&'static str> {
    match spec {
        LayerSpec::Dense { .. } => Some("Dense"),
        LayerSpec::BatchNorm1d { .. } => Some("BatchNorm1d"),
        LayerSpec::LayerNorm { .. } => Some("LayerNorm"),
        _ => None,
    }
}

/// Kernel, stride, padding and dilation of a convolution or pooling layer, (height, width).
#[derive(Clone, Copy)]
struct Geometry {
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
}

/// The window of layer `i` (`kind`) over rows of `shape`: (C, L) for the 1-d layers, read as
/// (C, 1, L), and (C, H, W) for the 2-d ones; `channels`, if given, must be C.
fn window_of(
    i: usize,
    kind: &str,
    shape: &[usize],
    channels: usize,
    g: Geometry,
) -> Result<Window> {
    let two_d = kind.ends_with("2d");
    let (rank, layout) = if two_d {
        (3, "(C, H, W)")
    } else {
        (2, "(C, L)")
    };
    if shape.len() != rank {
        return Err(dense_error(
            i,
            format!(
                "{kind} reads each row as {layout} but the layer before gives the shape \
                 {shape:?}: start the network with Reshape({layout}) of your input"
            ),
        ));
    }
    if channels != shape[0] {
        return Err(dense_error(
            i,
            format!(
                "{kind} in_channels is {channels} but the layer before gives {} channels",
                shape[0]
            ),
        ));
    }
    let sizes = [g.kernel, g.stride, g.dilation];
    if sizes.iter().any(|&(a, b)| a == 0 || b == 0) {
        return Err(dense_error(
            i,
            format!("{kind} kernel_size, stride and dilation must be >= 1"),
        ));
    }
    let window = Window {
        channels,
        in_h: if two_d { shape[1] } else { 1 },
        in_w: shape[rank - 1],
        kernel: g.kernel,
        stride: g.stride,
        padding: g.padding,
        dilation: g.dilation,
    };
    if window.output().is_none() {
        let input = &shape[1..];
        return Err(dense_error(
            i,
            format!("{kind}'s window does not fit in its padded input of size {input:?}"),
        ));
    }
    // The layer's tap table (an index per output position and tap) is built with it.
    let (oh, ow) = window.output().unwrap_or((0, 0));
    let entries = memory::product(&[oh, ow, window.taps()]);
    memory::check_alloc::<usize>(
        entries,
        &format!("layers[{i}]"),
        &format!("{kind}'s windows"),
    )?;
    Ok(window)
}

/// A convolution's parameters at `offset`, named as torch's: "i.weight" (out, in, k...) and
/// "i.bias" (out); the kernel's height is left out of a 1-d layer's weight.
fn push_conv(
    param_info: &mut Vec<ParamInfo>,
    offset: &mut usize,
    i: usize,
    window: Window,
    out_channels: usize,
    bias: bool,
    two_d: bool,
) -> Result<Conv> {
    if out_channels == 0 || window.channels == 0 {
        return Err(dense_error(
            i,
            "in_channels and out_channels must be >= 1".to_string(),
        ));
    }
    let weight_len = out_channels
        .checked_mul(window.taps())
        .filter(|&n| n <= (1 << 40))
        .ok_or_else(|| dense_error(i, "the weight is too large (over 2^40 values)".to_string()))?;
    let conv = Conv::new(
        window,
        out_channels,
        *offset,
        bias.then_some(*offset + weight_len),
    );
    let mut weight_shape = vec![out_channels, window.channels];
    if two_d {
        weight_shape.push(window.kernel.0);
    }
    weight_shape.push(window.kernel.1);
    param_info.push(ParamInfo {
        name: format!("{i}.weight"),
        shape: weight_shape,
        offset: *offset,
    });
    if let Some(b) = conv.bias_offset {
        param_info.push(ParamInfo {
            name: format!("{i}.bias"),
            shape: vec![out_channels],
            offset: b,
        });
    }
    *offset += conv.n_params();
    Ok(conv)
}

/// A pooling layer of `kind` over rows of `shape`; torch's limit on padding (at most half the
/// kernel) is kept, so that no window lies in the padding alone.
fn pool_of(i: usize, name: &str, shape: &[usize], kind: PoolKind, g: Geometry) -> Result<Pool> {
    if g.padding.0 * 2 > g.kernel.0 || g.padding.1 * 2 > g.kernel.1 {
        return Err(dense_error(
            i,
            format!("{name} padding must be at most half of kernel_size"),
        ));
    }
    let channels = shape.first().copied().unwrap_or(0);
    let window = window_of(i, name, shape, channels, g)?;
    Ok(Pool::new(window, kind))
}

/// An embedding layer reads indices from the network's input: only reshapes may come before.
fn check_reads_input(i: usize, kind: &str, before: &[Layer]) -> Result<()> {
    if before.iter().all(|l| matches!(l, Layer::Reshape)) {
        return Ok(());
    }
    Err(dense_error(
        i,
        format!("{kind} looks up indices of the network's input, so it must come first"),
    ))
}

/// An embedding table of layer `i` with `rows` × `dim` values at `offset`, named `name`.
fn push_table(
    param_info: &mut Vec<ParamInfo>,
    offset: &mut usize,
    name: String,
    (i, rows, dim): (usize, usize, usize),
) -> Result<Table> {
    let len = rows
        .checked_mul(dim)
        .filter(|n| (1..=(1 << 40)).contains(n))
        .ok_or_else(|| {
            dense_error(
                i,
                format!(
                    "an embedding table needs num_embeddings and embedding_dim >= 1 and at \
                     most 2^40 values, got ({rows}, {dim})"
                ),
            )
        })?;
    param_info.push(ParamInfo {
        name,
        shape: vec![rows, dim],
        offset: *offset,
    });
    let table = Table {
        rows,
        dim,
        offset: *offset,
    };
    *offset += len;
    Ok(table)
}
