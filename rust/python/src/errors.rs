//! The one place core errors and panics become Python exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bpcore_core::Error;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

pyo3::create_exception!(
    bpcore,
    TrainingDivergedError,
    pyo3::exceptions::PyArithmeticError,
    "Training produced a non-finite loss or gradient; the step was not applied."
);

pyo3::create_exception!(
    bpcore,
    NetworkBusyError,
    pyo3::exceptions::PyRuntimeError,
    "The network is in use by another thread: a training call while any other call runs on \
     it, or any call while it trains. Nothing was changed; retry once the other call is done."
);

/// The refusal of a call that found the network in use by another thread.
pub fn busy(method: &str) -> PyErr {
    NetworkBusyError::new_err(format!(
        "network is busy: {method} cannot run while another thread trains this network, and a \
         training call cannot run while another thread uses it; nothing was changed (use a \
         lock to share it)"
    ))
}

/// The attributes of a `TrainingDivergedError`, with their values when none is known.
const DIVERGENCE_ATTRIBUTES: [&str; 5] = ["epoch", "batch", "reason", "loss", "norm"];

/// Gives the exception class its attributes' defaults (None), so that they exist on the class
/// as the type stub declares them.
pub fn add_divergence_attributes(class: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    for name in DIVERGENCE_ATTRIBUTES {
        class.setattr(name, class.py().None())?;
    }
    Ok(())
}

/// Shape, value and description errors are all the caller's input: ValueError. Divergence
/// gets its own exception, so that a training loop can catch it apart from bad input, and
/// carries the core's fields as attributes. A caller's hook that stopped the work is reported
/// by the binding itself; reaching here it is a bug.
pub fn to_pyerr(e: Error) -> PyErr {
    match e {
        Error::Diverged {
            epoch,
            batch,
            loss,
            norm,
        } => {
            let reason = e.divergence();
            let err = TrainingDivergedError::new_err(e.to_string());
            Python::attach(|py| {
                let value = err.value(py);
                let fields = [
                    epoch.into_bound_py_any(py),
                    batch.into_bound_py_any(py),
                    reason.into_bound_py_any(py),
                    loss.into_bound_py_any(py),
                    norm.into_bound_py_any(py),
                ];
                for (name, field) in DIVERGENCE_ATTRIBUTES.iter().zip(fields) {
                    if let Err(set) = field.and_then(|f| value.setattr(*name, f)) {
                        return set;
                    }
                }
                err
            })
        }
        Error::Stopped(_) => PyRuntimeError::new_err(e.to_string()),
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
