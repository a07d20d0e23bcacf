//! `bpcore.bpcore.matmul`: the core's matrix product, exposed so the benchmark can compare it
//! with NumPy's BLAS on the same machine.

use bpcore_core::matmul::{matmul as core_matmul, Operand};
use bpcore_core::Real;
use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::errors::guarded;

fn product<T: Real + Element>(
    py: Python<'_>,
    a: PyReadonlyArray2<'_, T>,
    b: PyReadonlyArray2<'_, T>,
) -> PyResult<Py<PyAny>> {
    let (m, k) = (a.shape()[0], a.shape()[1]);
    let (k2, n) = (b.shape()[0], b.shape()[1]);
    if k != k2 {
        return Err(PyValueError::new_err(format!(
            "b: expected {k} rows to match a's columns, got {k2}"
        )));
    }
    let contiguous = |_| PyValueError::new_err("a, b: must be C-contiguous");
    let (a_s, b_s) = (
        a.as_slice().map_err(contiguous)?,
        b.as_slice().map_err(contiguous)?,
    );
    let mut c = vec![T::zero(); m * n];
    py.detach(|| {
        guarded(|| {
            core_matmul(
                &mut c,
                Operand::new(a_s, m, k),
                Operand::new(b_s, k, n),
                false,
                true,
            );
            Ok(())
        })
    })?;
    Ok(PyArray1::from_vec(py, c)
        .reshape([m, n])?
        .into_any()
        .unbind())
}

/// `a @ b` for C-contiguous 2-d float32 or float64 arrays of one dtype.
#[pyfunction]
pub fn matmul(py: Python<'_>, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    if let (Ok(a), Ok(b)) = (
        a.extract::<PyReadonlyArray2<f32>>(),
        b.extract::<PyReadonlyArray2<f32>>(),
    ) {
        return product(py, a, b);
    }
    if let (Ok(a), Ok(b)) = (
        a.extract::<PyReadonlyArray2<f64>>(),
        b.extract::<PyReadonlyArray2<f64>>(),
    ) {
        return product(py, a, b);
    }
    Err(PyTypeError::new_err(
        "a, b: expected two 2-d arrays, both float32 or both float64",
    ))
}
