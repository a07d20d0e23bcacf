//! `bpcore.bpcore`: the native module. Conversion, dtype dispatch, error mapping and GIL release
//! only; the numerics live in `bpcore-core`.

mod arrays;
mod errors;
mod fit;
mod matmul;
mod network;

use pyo3::prelude::*;

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

#[pymodule]
fn bpcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<network::NativeNetwork>()?;
    let diverged = m.py().get_type::<errors::TrainingDivergedError>();
    errors::add_divergence_attributes(&diverged)?;
    m.add("TrainingDivergedError", diverged)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(matmul::matmul, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
