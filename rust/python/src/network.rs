//! The native `Network` class: a core network of either dtype behind one Python type.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use bpcore_core::{Network, NetworkSpec, Real};
use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{flat, matrix, slice, HeldBatch};
use crate::errors::{busy, guarded};

enum Inner {
    F32(Network<f32>),
    F64(Network<f64>),
}

/// Runs `$body` with `$net` bound to the network of whichever dtype this one has.
macro_rules! dispatch {
    ($inner:expr, $net:ident => $body:expr) => {
        match $inner {
            Inner::F32($net) => $body,
            Inner::F64($net) => $body,
        }
    };
}

// Saving and restoring the optimizer's and the generator's state.
mod state;

/// The native network. `bpcore.Network` wraps it; use that.
///
/// Frozen, with its network behind a lock of its own: a call that finds the network in use by
/// another thread (a training call while any other call runs, or any call while it trains) is
/// refused at once with `NetworkBusyError`, never made to wait.
#[pyclass(module = "bpcore.bpcore", name = "NativeNetwork", frozen)]
pub struct NativeNetwork {
    inner: RwLock<Inner>,
}

impl NativeNetwork {
    /// The network for reading (calls that change nothing may share it), or `NetworkBusyError`
    /// naming `method` when a training call holds it.
    fn read(&self, method: &str) -> PyResult<RwLockReadGuard<'_, Inner>> {
        match self.inner.try_read() {
            Ok(guard) => Ok(guard),
            // A panic is caught inside every call (errors::guarded), so a poisoned lock still
            // holds a whole network.
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(busy(method)),
        }
    }

    /// The network for a call that changes it, or `NetworkBusyError` naming `method` when any
    /// other call holds it.
    fn write(&self, method: &str) -> PyResult<RwLockWriteGuard<'_, Inner>> {
        match self.inner.try_write() {
            Ok(guard) => Ok(guard),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(busy(method)),
        }
    }
}

fn forward<T: Real + Element>(
    py: Python<'_>,
    net: &Network<T>,
    x: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    forward_array(py, net, &matrix::<T>(x, "X")?)
}

/// `forward` for an `x` that is already what the core reads (a C-contiguous 2-d array of the
/// network's dtype, at least one row of the input width), else `None`, with nothing checked or
/// converted: the caller then checks and converts it, once.
fn forward_as_is<T: Real + Element>(
    py: Python<'_>,
    net: &Network<T>,
    x: &Bound<'_, PyAny>,
) -> PyResult<Option<Py<PyAny>>> {
    let Ok(xa) = x.extract::<PyReadonlyArray2<'_, T>>() else {
        return Ok(None);
    };
    let shape = xa.shape();
    if !xa.is_c_contiguous() || shape[0] == 0 || shape[1] != net.input_width() {
        return Ok(None);
    }
    forward_array(py, net, &xa).map(Some)
}

fn forward_array<T: Real + Element>(
    py: Python<'_>,
    net: &Network<T>,
    xa: &PyReadonlyArray2<'_, T>,
) -> PyResult<Py<PyAny>> {
    let xs = slice(xa, "X")?;
    let n = xa.shape()[0];
    let w = net.output_width();
    guarded(|| net.check_output_memory(n))?;
    // panic-free: check_output_memory bounded n × output width by 2^40.
    let mut out = vec![T::zero(); n * w];
    py.detach(|| guarded(|| net.forward(xs, n, &mut out)))?;
    // Made (n, w) at once: a 1-d array reshaped would be a second array object, a few per
    // cent of a one-sample call.
    let out = Array2::from_shape_vec((n, w), out)
        .map_err(|e| PyValueError::new_err(format!("outputs: {e}")))?;
    Ok(out.into_pyarray(py).into_any().unbind())
}

fn loss<T: Real + Element>(
    py: Python<'_>,
    net: &Network<T>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let held = HeldBatch::<T>::extract(&net.spec().loss, x, y, None)?;
    let b = held.view()?;
    py.detach(|| guarded(|| net.loss(b.x, b.targets, b.n)))
}

fn metric_sums<T: Real + Element>(
    py: Python<'_>,
    net: &Network<T>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let held = HeldBatch::<T>::extract(&net.spec().loss, x, y, None)?;
    let b = held.view()?;
    let sums = py.detach(|| guarded(|| net.metric_sums(b.x, b.targets, b.n)))?;
    crate::fit::sums_dict(py, &sums)
}

fn gradients<T: Real + Element>(
    py: Python<'_>,
    net: &mut Network<T>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    sample_weight: Option<&Bound<'_, PyAny>>,
) -> PyResult<(f64, Py<PyAny>)> {
    let held = HeldBatch::<T>::extract(&net.spec().loss, x, y, sample_weight)?;
    let batch = held.view()?;
    let value = py.detach(|| guarded(|| net.gradients(batch)))?;
    Ok((
        value,
        PyArray1::from_slice(py, net.grads()).into_any().unbind(),
    ))
}

fn train_step<T: Real + Element>(
    py: Python<'_>,
    net: &mut Network<T>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    sample_weight: Option<&Bound<'_, PyAny>>,
) -> PyResult<f64> {
    let held = HeldBatch::<T>::extract(&net.spec().loss, x, y, sample_weight)?;
    let batch = held.view()?;
    py.detach(|| guarded(|| net.train_step(batch)))
}

fn check_training_data<T: Real + Element>(
    net: &Network<T>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    sample_weight: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let held = HeldBatch::<T>::extract(&net.spec().loss, x, y, sample_weight)?;
    let data = held.view()?;
    guarded(|| net.check_training_data(data))
}

fn apply_gradients<T: Real + Element>(
    py: Python<'_>,
    net: &mut Network<T>,
    g: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let ga = flat::<T>(g, "gradients")?;
    let gs = slice(&ga, "gradients")?;
    py.detach(|| guarded(|| net.apply_gradients(gs)))
}

fn set_params<T: Real + Element>(net: &mut Network<T>, p: &Bound<'_, PyAny>) -> PyResult<()> {
    let pa = flat::<T>(p, "parameters")?;
    let ps = slice(&pa, "parameters")?;
    guarded(|| net.set_params(ps))
}

#[pymethods]
impl NativeNetwork {
    /// Builds a network from its JSON description, with dtype "float32" or "float64".
    #[new]
    fn new(spec_json: &str, dtype: &str) -> PyResult<Self> {
        let spec = guarded(|| NetworkSpec::from_json(spec_json))?;
        let inner = match dtype {
            "float32" => Inner::F32(guarded(|| Network::new(spec))?),
            "float64" => Inner::F64(guarded(|| Network::new(spec))?),
            other => {
                return Err(PyValueError::new_err(format!(
                    "dtype: expected 'float32' or 'float64', got {other:?}"
                )))
            }
        };
        Ok(NativeNetwork {
            inner: RwLock::new(inner),
        })
    }

    /// "float32" or "float64".
    #[getter]
    fn dtype(&self) -> PyResult<&'static str> {
        Ok(match *self.read("dtype")? {
            Inner::F32(_) => "float32",
            Inner::F64(_) => "float64",
        })
    }

    /// The JSON description the network was built from.
    #[getter]
    fn spec_json(&self) -> PyResult<String> {
        Ok(dispatch!(&*self.read("spec_json")?, net => net.spec().to_json()))
    }

    /// Features per sample the network takes (the first layer's input width).
    #[getter]
    fn input_width(&self) -> PyResult<usize> {
        Ok(dispatch!(&*self.read("input_width")?, net => net.input_width()))
    }

    /// Outputs per sample the network gives (the last layer's output width).
    #[getter]
    fn output_width(&self) -> PyResult<usize> {
        Ok(dispatch!(&*self.read("output_width")?, net => net.output_width()))
    }

    /// (name, shape, offset) of each parameter tensor, in the flat buffers' order.
    fn param_info(&self) -> PyResult<Vec<(String, Vec<usize>, usize)>> {
        Ok(dispatch!(&*self.read("param_info")?, net => net
            .param_info()
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone(), p.offset))
            .collect()))
    }

    /// A copy of all parameters, flat.
    fn params(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(
            dispatch!(&*self.read("params")?, net => PyArray1::from_slice(py, net.params()).into_any().unbind()),
        )
    }

    /// Replaces all parameters from a flat array of the network's dtype.
    fn set_params(&self, p: &Bound<'_, PyAny>) -> PyResult<()> {
        dispatch!(&mut *self.write("set_params")?, net => set_params(net, p))
    }

    /// Inference outputs (n, output width).
    fn forward(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        dispatch!(&*self.read("forward")?, net => forward(py, net, x))
    }

    /// `forward` of an `x` already in the form the core reads, else `None` (then nothing ran):
    /// one-sample calls skip the checks and conversion that such an input does not need.
    fn forward_as_is(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        dispatch!(&*self.read("forward")?, net => forward_as_is(py, net, x))
    }

    /// The metric sums of the inference outputs of `x` against `y`, as `fit_epoch`'s
    /// "metric_sums" are of its steps' outputs (the one definition of the summed metrics).
    fn metric_sums(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        dispatch!(&*self.read("metric_sums")?, net => metric_sums(py, net, x, y))
    }

    /// Mean loss in inference mode.
    fn loss(&self, py: Python<'_>, x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>) -> PyResult<f64> {
        dispatch!(&*self.read("loss")?, net => loss(py, net, x, y))
    }

    /// (loss, flat gradients) in training mode, without an update; with `sample_weight` (1-d,
    /// the network's dtype) the loss is Σ w_i·l_i / n.
    #[pyo3(signature = (x, y, sample_weight=None))]
    fn gradients(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        sample_weight: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(f64, Py<PyAny>)> {
        dispatch!(&mut *self.write("gradients")?, net => gradients(py, net, x, y, sample_weight))
    }

    /// One training step (on the sample-weighted loss with `sample_weight`); returns the loss
    /// before it.
    #[pyo3(signature = (x, y, sample_weight=None))]
    fn train_step(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        sample_weight: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<f64> {
        dispatch!(&mut *self.write("train_step")?, net => train_step(py, net, x, y, sample_weight))
    }

    /// One optimizer step with the given flat gradients.
    fn apply_gradients(&self, py: Python<'_>, g: &Bound<'_, PyAny>) -> PyResult<()> {
        dispatch!(&mut *self.write("apply_gradients")?, net => apply_gradients(py, net, g))
    }

    /// One epoch of mini-batch training; returns a dict with the mean "loss", "batches" done,
    /// whether it "stopped" early, per-tensor "grad_norms", "update_ratios" and
    /// "weight_norms" (at the epoch's end), and this process's training "metric_sums".
    /// `progress(batches, samples, mean_loss)` is called from this thread every
    /// `progress_interval` seconds while the epoch runs.
    /// `sample_weight` (1-d, the network's dtype, one per sample) trains on the weighted
    /// loss. `epoch` numbers the epoch in a divergence error.
    ///
    /// Data-parallel, `ranks` is (this rank, every rank's shard size) and
    /// `reduce(step, buffer, failure)` sums `buffer` in place over the ranks (a writable
    /// memoryview of the network's dtype, valid during the call only, laid out
    /// `[gradients | loss | divisor | failures]`: the last element counts failed ranks); `failure` is this
    /// rank's exception when it could not compute its share. An exception `reduce` raises ends
    /// the epoch with that exception.
    ///
    /// `gradient_accumulation_steps` batches make one optimizer step (their mean gradient over
    /// all their samples); `step_lrs` gives the learning rate of each optimizer step (a
    /// per-step schedule's; the optimizer's is left at the last one); `clip_grad_norm` clips the
    /// gradients' global norm at every step of this epoch (None: the network's setting) and
    /// `clip_grad_value` every gradient element to ±it after that.
    ///
    /// `weighted_mean`: each step's loss is Σ w_i·l_i / Σ w_i (Keras's reduction
    /// "mean_with_sample_weight") instead of Σ w_i·l_i / n; `decay_per_divisor`: each step's
    /// weight decay is the optimizer's over the step's divisor (scikit-learn's alpha), and
    /// "penalty" its L2 term before each step, averaged over the samples as "loss" is.
    #[pyo3(signature = (x, y, batch_size, shuffle, progress=None, progress_interval=0.2, sample_weight=None, epoch=None, ranks=None, reduce=None, step_lrs=None, clip_grad_norm=None, clip_grad_value=None, gradient_accumulation_steps=1, weighted_mean=false, decay_per_divisor=false))]
    #[allow(clippy::too_many_arguments)]
    fn fit_epoch(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        batch_size: usize,
        shuffle: bool,
        progress: Option<&Bound<'_, PyAny>>,
        progress_interval: f64,
        sample_weight: Option<&Bound<'_, PyAny>>,
        epoch: Option<usize>,
        ranks: Option<(usize, Vec<usize>)>,
        reduce: Option<&Bound<'_, PyAny>>,
        step_lrs: Option<Vec<f64>>,
        clip_grad_norm: Option<f64>,
        clip_grad_value: Option<f64>,
        gradient_accumulation_steps: usize,
        weighted_mean: bool,
        decay_per_divisor: bool,
    ) -> PyResult<Py<PyAny>> {
        let call = crate::fit::EpochCall {
            batch_size,
            shuffle,
            progress,
            progress_interval,
            epoch,
            ranks,
            reduce,
            step_lrs,
            clip_grad_norm,
            clip_grad_value,
            gradient_accumulation_steps,
            weighted_mean,
            decay_per_divisor,
        };
        dispatch!(&mut *self.write("fit_epoch")?, net => crate::fit::fit_epoch(py, net, x, y, sample_weight, call))
    }

    /// Checks, changing nothing, that `epochs` epochs of `n` samples can run with these
    /// settings (`ranks` as `fit_epoch` takes them): batch norm meets no share of one sample in
    /// any epoch's steps.
    #[pyo3(signature = (n, batch_size, shuffle, epochs, ranks=None))]
    fn check_epochs(
        &self,
        n: usize,
        batch_size: usize,
        shuffle: bool,
        epochs: usize,
        ranks: Option<(usize, Vec<usize>)>,
    ) -> PyResult<()> {
        let settings = bpcore_core::network::EpochSettings {
            batch_size,
            shuffle,
            number: None,
            ranks: ranks
                .as_ref()
                .map(|(rank, shards)| bpcore_core::network::Ranks {
                    rank: *rank,
                    shard_rows: shards,
                }),
            ..Default::default()
        };
        dispatch!(&*self.read("check_epochs")?, net => guarded(|| net.check_epochs(n, &settings, epochs)))
    }

    /// The samples every step of the next `epochs` epochs takes over a group whose shards
    /// hold `shard_rows` samples, as indices into the whole data set (shards in rank order):
    /// one list per epoch of one array per step. The generator is not advanced.
    #[pyo3(signature = (shard_rows, batch_size, shuffle, epochs=1))]
    fn epoch_order<'py>(
        &self,
        py: Python<'py>,
        shard_rows: Vec<usize>,
        batch_size: usize,
        shuffle: bool,
        epochs: usize,
    ) -> PyResult<Vec<Vec<Bound<'py, PyArray1<i64>>>>> {
        let order = dispatch!(&*self.read("epoch_order")?, net => guarded(|| net.epoch_order(&shard_rows, batch_size, shuffle, epochs)))?;
        Ok(order
            .into_iter()
            .map(|epoch| {
                epoch
                    .into_iter()
                    .map(|step| {
                        let step: Vec<i64> = step.into_iter().map(|i| i as i64).collect();
                        PyArray1::from_vec(py, step)
                    })
                    .collect()
            })
            .collect())
    }

    /// Checks training data as `fit_epoch` will (inputs finite, targets right for the loss,
    /// `sample_weight` one per sample, finite, >= 0), so that `fit` can refuse them before it
    /// changes anything.
    #[pyo3(signature = (x, y, sample_weight=None))]
    fn check_training_data(
        &self,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        sample_weight: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        dispatch!(&*self.read("check_training_data")?, net => check_training_data(net, x, y, sample_weight))
    }

    /// The global gradient norm every step is clipped to, or None.
    #[getter]
    fn clip_grad_norm(&self) -> PyResult<Option<f64>> {
        Ok(dispatch!(&*self.read("clip_grad_norm")?, net => net.clip_grad_norm()))
    }

    #[setter]
    fn set_clip_grad_norm(&self, max_norm: Option<f64>) -> PyResult<()> {
        dispatch!(&mut *self.write("clip_grad_norm")?, net => guarded(|| net.set_clip_grad_norm(max_norm)))
    }

    /// The optimizer's current learning rate.
    #[getter]
    fn lr(&self) -> PyResult<f64> {
        Ok(dispatch!(&*self.read("lr")?, net => net.optimizer().lr()))
    }

    #[setter]
    fn set_lr(&self, lr: f64) -> PyResult<()> {
        dispatch!(&mut *self.write("lr")?, net => net.optimizer_mut().set_lr(lr));
        Ok(())
    }

    /// Length of a data-parallel step's buffer: the parameters, the loss, the divisor and
    /// the failures.
    #[getter]
    fn reduce_len(&self) -> PyResult<usize> {
        Ok(dispatch!(&*self.read("reduce_len")?, net => net.reduce_len()))
    }

    /// Optimizer steps taken.
    #[getter]
    fn steps(&self) -> PyResult<u64> {
        Ok(dispatch!(&*self.read("steps")?, net => net.optimizer().steps()))
    }

    // ----- Dropout, BatchNorm1d and LayerNorm: the training-mode loss and the batch-norm
    // buffers. Conversion only.

    /// Mean loss in training mode: dropout masks drawn, batch-norm running statistics moved.
    fn training_loss(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
    ) -> PyResult<f64> {
        dispatch!(&mut *self.write("training_loss")?, net => {
            let held = HeldBatch::extract(&net.spec().loss, x, y, None)?;
            let batch = held.view()?;
            py.detach(|| guarded(|| net.training_loss(batch)))
        })
    }

    /// (name, shape, offset) of each running statistic in the flat first part of `buffers()`.
    fn buffer_info(&self) -> PyResult<Vec<(String, Vec<usize>, usize)>> {
        Ok(dispatch!(&*self.read("buffer_info")?, net => net
            .buffer_info()
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone(), p.offset))
            .collect()))
    }

    /// The names "i.num_batches_tracked" of the batch-norm layers, in order.
    fn tracked_names(&self) -> PyResult<Vec<String>> {
        Ok(dispatch!(&*self.read("tracked_names")?, net => net.tracked_names().to_vec()))
    }

    /// (flat running statistics of the network's dtype, int64 num_batches_tracked counts).
    fn buffers(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        Ok(dispatch!(&*self.read("buffers")?, net => (
            PyArray1::from_slice(py, net.running_stats()).into_any().unbind(),
            PyArray1::from_slice(py, net.batches_tracked()).into_any().unbind(),
        )))
    }

    /// Replaces the running statistics (flat, network dtype) and the counts (int64).
    fn set_buffers(&self, running: &Bound<'_, PyAny>, tracked: &Bound<'_, PyAny>) -> PyResult<()> {
        let ta = flat::<i64>(tracked, "buffers")?;
        let ts = slice(&ta, "buffers")?;
        dispatch!(&mut *self.write("set_buffers")?, net => {
            let ra = flat(running, "buffers")?;
            let rs = slice(&ra, "buffers")?;
            guarded(|| net.set_buffers(rs, ts))
        })
    }

    /// Training-mode forwards run so far (the step that keys the next dropout masks).
    #[getter]
    fn training_forwards(&self) -> PyResult<u64> {
        Ok(dispatch!(&*self.read("training_forwards")?, net => net.training_forwards()))
    }

    #[setter]
    fn set_training_forwards(&self, forwards: u64) -> PyResult<()> {
        dispatch!(&mut *self.write("training_forwards")?, net => net.set_training_forwards(forwards));
        Ok(())
    }
}
