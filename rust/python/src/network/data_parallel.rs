//! The halves of a data-parallel step (issue 7): this rank's gradients into the buffer that
//! `bpcore.data_parallel` sums over every rank with one MPI Allreduce, and the optimizer step
//! from the sum. Conversion only; the layout and the math are the core's.

use bpcore_core::{Network, Real};
use numpy::{Element, PyReadwriteArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::{Inner, NativeNetwork};
use crate::arrays::HeldBatch;
use crate::errors::guarded;
use crate::fit::outcome_dict;

/// The reduction buffer, borrowed writable: a 1-d C-contiguous array of the network's dtype.
fn buffer<'py, T: Element>(b: &Bound<'py, PyAny>) -> PyResult<PyReadwriteArray1<'py, T>> {
    b.extract::<PyReadwriteArray1<'py, T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "buffer: expected a writable 1-d {} array",
            std::any::type_name::<T>()
        ))
    })
}

/// The borrowed buffer's values, or a ValueError when it is not contiguous.
fn values<'a, T: Element>(a: &'a mut PyReadwriteArray1<'_, T>) -> PyResult<&'a mut [T]> {
    a.as_slice_mut()
        .map_err(|_| PyValueError::new_err("buffer: must be a C-contiguous array"))
}

fn shared_step_gradients<T: Real + Element>(
    py: Python<'_>,
    net: &mut Network<T>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    buf: &Bound<'_, PyAny>,
    row_offset: usize,
    sample_weight: Option<&Bound<'_, PyAny>>,
) -> PyResult<f64> {
    let held = HeldBatch::<T>::extract(&net.spec().loss, x, y, sample_weight)?;
    let b = held.view()?;
    let mut held_buffer = buffer::<T>(buf)?;
    let out = values(&mut held_buffer)?;
    py.detach(|| {
        guarded(|| net.shared_step_gradients(b.x, b.targets, b.weights, b.n, row_offset, out))
    })
}

fn apply_reduced<T: Real + Element>(
    py: Python<'_>,
    net: &mut Network<T>,
    buf: &Bound<'_, PyAny>,
) -> PyResult<(f64, usize)> {
    let mut held_buffer = buffer::<T>(buf)?;
    let out = values(&mut held_buffer)?;
    py.detach(|| guarded(|| net.apply_reduced(out)))
}

#[pymethods]
impl NativeNetwork {
    /// Length of the buffer a data-parallel step reduces: the parameters, then the rows, the
    /// loss sum and the failures slot.
    #[getter]
    fn reduce_len(&self) -> usize {
        dispatch!(&self.inner, net => net.reduce_len())
    }

    /// Starts an epoch of data-parallel steps (gradient statistics, metrics, update ratios).
    fn begin_shared_epoch(&mut self) {
        dispatch!(&mut self.inner, net => net.begin_shared_epoch())
    }

    /// This rank's share of a step into `buffer` (its gradients and loss times its rows, and
    /// its rows); `row_offset` is its first row's index in the global batch. Returns the
    /// share's mean loss. `x` may have 0 rows when this rank's data has run out.
    #[pyo3(signature = (x, y, buffer, row_offset, sample_weight=None))]
    fn shared_step_gradients(
        &mut self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        buffer: &Bound<'_, PyAny>,
        row_offset: usize,
        sample_weight: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<f64> {
        dispatch!(&mut self.inner, net => shared_step_gradients(py, net, x, y, buffer, row_offset, sample_weight))
    }

    /// The optimizer step from `buffer` summed over every rank; returns the global batch's
    /// (mean loss, rows). Raises TrainingDivergedError, changing nothing, if it is not finite.
    fn apply_reduced(
        &mut self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
    ) -> PyResult<(f64, usize)> {
        dispatch!(&mut self.inner, net => apply_reduced(py, net, buffer))
    }

    /// The epoch's gradient norms, update ratios and this rank's metric sums, as `fit_epoch`'s
    /// dict (its "loss" and "batches" are the caller's to fill in).
    fn end_shared_epoch(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        dispatch!(&self.inner, net => outcome_dict(py, &net.end_shared_epoch()))
    }
}
