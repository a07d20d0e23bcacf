//! The one place core errors and panics become Python exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bpcore_core::Error;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(
    bpcore,
    TrainingDivergedError,
    pyo3::exceptions::PyArithmeticError,
    "Training produced a non-finite loss or gradient; the step was not applied."
);

/// Shape, value and description errors are all the caller's input: ValueError. Divergence
/// gets its own exception, so that a training loop can catch it apart from bad input.
pub fn to_pyerr(e: Error) -> PyErr {
    match e {
        Error::Diverged { .. } => TrainingDivergedError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// Runs `f` (with subnormals flushed, see `bpcore_core::fpenv`), turning a core error into
/// ValueError and a panic (a bug in bpcore) into RuntimeError, so that pyo3's PanicException
/// (a BaseException) never reaches the user.
pub fn guarded<R>(f: impl FnOnce() -> bpcore_core::Result<R>) -> Result<R, PyErr> {
    match catch_unwind(AssertUnwindSafe(|| bpcore_core::fpenv::flush_denormals(f))) {
        Ok(result) => result.map_err(to_pyerr),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(PyRuntimeError::new_err(format!(
                "internal error in bpcore ({what}); the network is unchanged if the error came \
                 before its update. Please report it."
            )))
        }
    }
}
