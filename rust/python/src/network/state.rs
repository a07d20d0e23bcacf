//! The training state beyond parameters and buffers, for saving and resuming exactly: the
//! optimizer's state buffers and step count, and the shuffling generator's state. Conversion
//! only; the core checks lengths and values.

use bpcore_core::{Network, Real};
use numpy::{Element, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{Inner, NativeNetwork};
use crate::arrays::{flat, slice};
use crate::errors::guarded;

fn load_optimizer_state<T: Real + Element>(
    net: &mut Network<T>,
    steps: u64,
    buffers: &[Bound<'_, PyAny>],
) -> PyResult<()> {
    // Borrowed, not copied: a loaded file's state reaches the optimizer's buffers in one copy.
    let held = buffers
        .iter()
        .map(|b| flat::<T>(b, "optimizer state"))
        .collect::<PyResult<Vec<_>>>()?;
    let state = held
        .iter()
        .map(|a| slice(a, "optimizer state"))
        .collect::<PyResult<Vec<_>>>()?;
    guarded(|| net.optimizer_mut().load_state(steps, &state))
}

#[pymethods]
impl NativeNetwork {
    /// torch's names of the optimizer's state buffers, in `optimizer_state()`'s order.
    fn optimizer_state_names(&self) -> PyResult<Vec<String>> {
        Ok(dispatch!(&*self.read("optimizer_state_names")?, net => net
            .optimizer()
            .state_names()
            .iter()
            .map(|s| s.to_string())
            .collect()))
    }

    /// (steps taken, copies of the flat state buffers, each as long as the parameters).
    fn optimizer_state(&self, py: Python<'_>) -> PyResult<(u64, Vec<Py<PyAny>>)> {
        Ok(dispatch!(&*self.read("optimizer_state")?, net => (
            net.optimizer().steps(),
            net.optimizer()
                .state()
                .iter()
                .map(|b| PyArray1::from_slice(py, b).into_any().unbind())
                .collect(),
        )))
    }

    /// Restores the optimizer's step count and state buffers (flat, the network's dtype, in
    /// `optimizer_state_names()` order); on an error nothing changes.
    fn load_optimizer_state(&self, steps: u64, buffers: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        dispatch!(&mut *self.write("load_optimizer_state")?, net => load_optimizer_state(net, steps, &buffers))
    }

    /// The shuffling generator's state: four 64-bit words.
    fn rng_state(&self) -> PyResult<Vec<u64>> {
        Ok(dispatch!(&*self.read("rng_state")?, net => net.rng().state().to_vec()))
    }

    /// Restores the shuffling generator from `rng_state()`'s four words (not all zero).
    fn set_rng_state(&self, state: Vec<u64>) -> PyResult<()> {
        let words: [u64; 4] = state.as_slice().try_into().map_err(|_| {
            PyValueError::new_err(format!(
                "rng_state: expected 4 integers, got {}",
                state.len()
            ))
        })?;
        dispatch!(&mut *self.write("set_rng_state")?, net => guarded(|| net.set_rng_state(words)))
    }
}
