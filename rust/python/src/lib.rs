//! `bpcore.bpcore`: the native module. Conversion, dtype dispatch, error mapping and GIL release
//! only; the numerics live in `bpcore-core`.

mod arrays;
mod errors;
mod fit;
mod matmul;
mod network;

use pyo3::prelude::*;

/// Large buffers start on cache lines (see `line_aligned`).
#[global_allocator]
static ALLOCATOR: bpcore_core::line_aligned::LineAligned = bpcore_core::line_aligned::LineAligned;

/// Uses `n` threads for bpcore's parallel work from now on.
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    errors::guarded(|| bpcore_core::threads::set_num_threads(n))
}

/// The number of threads bpcore's parallel work runs on.
#[pyfunction]
fn get_num_threads() -> usize {
    bpcore_core::threads::num_threads()
}

/// The tensors a network of the JSON description `spec_json` holds, from the description alone:
/// {"params": [(name, shape, offset)], "buffers": [...], "counters": [name],
/// "optimizer_state": [name], "non_negative_state": [name], "output_shapes": [[size]]}, in
/// the core's names and order (what a file must hold; the optimizer's sums of squares are
/// never negative; each layer's output shape per sample).
#[pyfunction]
fn describe_tensors(py: Python<'_>, spec_json: &str) -> PyResult<Py<PyAny>> {
    let spec = errors::guarded(|| bpcore_core::NetworkSpec::from_json(spec_json))?;
    let t = errors::guarded(|| bpcore_core::network::tensors(&spec))?;
    let info = |list: &[bpcore_core::network::ParamInfo]| -> Vec<(String, Vec<usize>, usize)> {
        list.iter()
            .map(|p| (p.name.clone(), p.shape.clone(), p.offset))
            .collect()
    };
    let out = pyo3::types::PyDict::new(py);
    out.set_item("params", info(&t.params))?;
    out.set_item("buffers", info(&t.buffers))?;
    out.set_item("counters", &t.counters)?;
    out.set_item("optimizer_state", &t.optimizer_state)?;
    out.set_item("non_negative_state", &t.non_negative_state)?;
    out.set_item("output_shapes", &t.output_shapes)?;
    Ok(out.into_any().unbind())
}

/// Every optimizer's hyperparameters with their defaults, by spec name: the core's, which the
/// Python optimizers and the reference take as theirs.
#[pyfunction]
fn optimizer_defaults(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let text = errors::guarded(bpcore_core::OptimizerSpec::defaults_json)?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// How many steps an epoch over shards of `shard_rows` samples takes in batches of
/// `batch_size` per rank (one shard: a process alone), shuffled or not.
#[pyfunction]
fn epoch_steps(shard_rows: Vec<usize>, batch_size: usize) -> usize {
    bpcore_core::network::epoch_steps(&shard_rows, batch_size)
}

/// Whether the loss of the JSON description `loss_json` takes integer class labels rather
/// than values of the output's shape.
#[pyfunction]
fn loss_takes_labels(loss_json: &str) -> PyResult<bool> {
    let spec: bpcore_core::LossSpec =
        errors::guarded(|| bpcore_core::LossSpec::from_json(loss_json))?;
    Ok(bpcore_core::loss::takes_labels(&spec))
}

#[pymodule]
fn bpcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<network::NativeNetwork>()?;
    let diverged = m.py().get_type::<errors::TrainingDivergedError>();
    errors::add_divergence_attributes(&diverged)?;
    m.add("TrainingDivergedError", diverged)?;
    m.add(
        "NetworkBusyError",
        m.py().get_type::<errors::NetworkBusyError>(),
    )?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(describe_tensors, m)?)?;
    m.add_function(wrap_pyfunction!(optimizer_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(epoch_steps, m)?)?;
    m.add_function(wrap_pyfunction!(loss_takes_labels, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(matmul::matmul, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
