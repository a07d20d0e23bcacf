//! NumPy arrays as the core reads them: contiguous slices of the network's dtype, the targets
//! the loss wants, optional sample weights; errors name the argument.

use bpcore_core::{LossSpec, Samples, Targets};
use numpy::{Element, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A contiguous view of a NumPy array's data, or a ValueError naming `arg`.
pub fn slice<'a, T: Element, D: numpy::ndarray::Dimension>(
    a: &'a numpy::PyReadonlyArray<'_, T, D>,
    arg: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: must be a C-contiguous array")))
}

pub fn matrix<'py, T: Element>(
    x: &Bound<'py, PyAny>,
    arg: &str,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    x.extract::<PyReadonlyArray2<'py, T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg}: expected a 2-d {} array",
            std::any::type_name::<T>()
        ))
    })
}

/// Targets as the loss wants them: int64 labels (n,) or values (n, width) of the network's dtype.
pub enum HeldTargets<'py, T: Element> {
    Labels(PyReadonlyArray1<'py, i64>),
    Values(PyReadonlyArray2<'py, T>),
}

impl<'py, T: Element> HeldTargets<'py, T> {
    pub fn extract(loss: &LossSpec, y: &Bound<'py, PyAny>) -> PyResult<Self> {
        if matches!(loss, LossSpec::CrossEntropy { .. }) {
            let labels = y.extract::<PyReadonlyArray1<'py, i64>>().map_err(|_| {
                PyTypeError::new_err("y: expected a 1-d int64 array of class labels")
            })?;
            Ok(HeldTargets::Labels(labels))
        } else {
            Ok(HeldTargets::Values(matrix::<T>(y, "y")?))
        }
    }

    pub fn view(&self) -> PyResult<Targets<'_, T>> {
        Ok(match self {
            HeldTargets::Labels(l) => Targets::Labels(slice(l, "y")?),
            HeldTargets::Values(v) => Targets::Values(slice(v, "y")?),
        })
    }
}

pub fn flat<'py, T: Element>(
    v: &Bound<'py, PyAny>,
    arg: &str,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    v.extract::<PyReadonlyArray1<'py, T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg}: expected a 1-d {} array",
            std::any::type_name::<T>()
        ))
    })
}

/// The optional per-sample weights: a 1-d array of the network's dtype (checked by the core).
pub fn weights<'py, T: Element>(
    w: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<PyReadonlyArray1<'py, T>>> {
    w.filter(|w| !w.is_none())
        .map(|w| flat::<T>(w, "sample_weight"))
        .transpose()
}

/// A view of the held weights.
pub fn weights_view<'a, T: Element>(
    w: &'a Option<PyReadonlyArray1<'_, T>>,
) -> PyResult<Option<&'a [T]>> {
    w.as_ref().map(|w| slice(w, "sample_weight")).transpose()
}

/// A batch held from Python for one call: inputs, targets and optional weights, borrowed
/// read-only.
pub struct HeldBatch<'py, T: Element> {
    x: PyReadonlyArray2<'py, T>,
    targets: HeldTargets<'py, T>,
    weights: Option<PyReadonlyArray1<'py, T>>,
}

impl<'py, T: Element> HeldBatch<'py, T> {
    pub fn extract(
        loss: &LossSpec,
        x: &Bound<'py, PyAny>,
        y: &Bound<'py, PyAny>,
        sample_weight: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        Ok(HeldBatch {
            x: matrix::<T>(x, "X")?,
            targets: HeldTargets::extract(loss, y)?,
            weights: weights::<T>(sample_weight)?,
        })
    }

    /// The held batch as the core's samples.
    pub fn view(&self) -> PyResult<Samples<'_, T>> {
        let x = slice(&self.x, "X")?;
        let samples = Samples::new(x, self.targets.view()?, self.x.shape()[0]);
        Ok(samples.weighted(weights_view(&self.weights)?))
    }
}
