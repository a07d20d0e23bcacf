//! One epoch of training from Python: the epoch runs on bpcore's pool with the GIL released
//! while the calling (main) thread looks for Ctrl-C and reports progress. On a rank of a
//! data-parallel group, each step's buffer is summed by the caller's `reduce` (an MPI
//! Allreduce), called from the epoch's thread.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bpcore_core::network::{EpochOutcome, EpochSettings, MetricSums, Progress, Ranks, Reduce};
use bpcore_core::{Error, Network, Real};
use numpy::Element;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::HeldBatch;
use crate::errors::{guarded, to_pyerr};

/// CPython's flag for a writable memoryview (`PyBUF_WRITE` in `Include/pybuffer.h`).
const PYBUF_WRITE: std::os::raw::c_int = 0x200;

/// How often a running epoch looks for Ctrl-C (and at most how long between progress reports
/// that are due: a shorter progress interval polls as often as it asks).
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The arguments of `NativeNetwork.fit_epoch` besides the data.
pub struct EpochCall<'a, 'py> {
    pub batch_size: usize,
    pub shuffle: bool,
    pub progress: Option<&'a Bound<'py, PyAny>>,
    pub progress_interval: f64,
    pub epoch: Option<usize>,
    pub ranks: Option<(usize, Vec<usize>)>,
    pub reduce: Option<&'a Bound<'py, PyAny>>,
    pub step_lrs: Option<Vec<f64>>,
    pub clip_grad_norm: Option<f64>,
    pub clip_grad_value: Option<f64>,
    pub gradient_accumulation_steps: usize,
    pub weighted_mean: bool,
    pub decay_per_divisor: bool,
}

/// What the epoch has done so far, shared between the pool thread that trains and the caller's
/// thread that reports it: one snapshot under a lock, so that a report never pairs one step's
/// batch count with another's samples or loss.
struct SharedProgress(Mutex<Progress>);

impl SharedProgress {
    fn new() -> Self {
        SharedProgress(Mutex::new(Progress {
            batches: 0,
            samples: 0,
            loss_sum: 0.0,
        }))
    }

    fn set(&self, progress: Progress) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = progress;
    }

    fn get(&self) -> Progress {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The caller's Python `reduce(step, buffer, failure)`, and the exception it raised, if any.
struct PythonReduce {
    hook: Py<PyAny>,
    raised: Option<PyErr>,
}

impl<T: Element> Reduce<T> for PythonReduce {
    fn sum(&mut self, step: usize, buffer: &mut [T], failure: Option<&Error>) -> Result<(), Error> {
        let called = Python::attach(|py| -> PyResult<()> {
            let bytes = isize::try_from(std::mem::size_of_val(buffer))
                .map_err(|_| PyRuntimeError::new_err("buffer: too large for a memoryview"))?;
            // SAFETY: `buffer` is valid and exclusively ours for this call; the view over it
            // is released below, before the call returns, so Python cannot reach the memory
            // afterwards (a view still exported by then makes `release` raise instead).
            let view = unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    pyo3::ffi::PyMemoryView_FromMemory(
                        buffer.as_mut_ptr().cast(),
                        bytes,
                        PYBUF_WRITE,
                    ),
                )?
            };
            let failure = failure.map(|e| to_pyerr(e.clone()).into_value(py));
            let result = self.hook.call1(py, (step, &view, failure)).map(drop);
            let released = view.call_method0("release").map(drop);
            result.and(released)
        });
        called.map_err(|e| {
            self.raised = Some(e);
            Error::Stopped("the reduction raised an exception".into())
        })
    }
}

pub fn fit_epoch<T: Real + Element>(
    py: Python<'_>,
    net: &mut Network<T>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    sample_weight: Option<&Bound<'_, PyAny>>,
    call: EpochCall<'_, '_>,
) -> PyResult<Py<PyAny>> {
    let held = HeldBatch::<T>::extract(&net.spec().loss, x, y, sample_weight)?;
    let data = held.view()?;
    let report = call.progress.map(|p| p.clone().unbind());
    let mut reduce = call.reduce.map(|hook| PythonReduce {
        hook: hook.clone().unbind(),
        raised: None,
    });
    let settings = EpochSettings {
        batch_size: call.batch_size,
        shuffle: call.shuffle,
        number: call.epoch,
        ranks: call.ranks.as_ref().map(|(rank, shards)| Ranks {
            rank: *rank,
            shard_rows: shards,
        }),
        step_lrs: call.step_lrs.as_deref(),
        clip_grad_norm: call.clip_grad_norm,
        clip_grad_value: call.clip_grad_value,
        gradient_accumulation_steps: call.gradient_accumulation_steps,
        weighted_mean: call.weighted_mean,
        decay_per_divisor: call.decay_per_divisor,
    };
    let interval = Duration::from_secs_f64(call.progress_interval.clamp(0.01, 3600.0));
    let shared = SharedProgress::new();
    let mut interrupt: Option<PyErr> = None;
    let mut last_report = Instant::now();
    let outcome = py.detach(|| {
        guarded(|| {
            bpcore_core::threads::run_polling(
                |stop| {
                    let mut on_batch = |p: Progress| {
                        shared.set(p);
                        stop.load(Ordering::Relaxed)
                    };
                    let reduce = reduce.as_mut().map(|r| r as &mut dyn Reduce<T>);
                    net.fit_epoch(data, &settings, reduce, &mut on_batch)
                },
                SIGNAL_CHECK_INTERVAL.min(interval),
                // Signal handlers run only on the main thread: this one, while the epoch runs
                // on bpcore's pool. A progress report that raises stops the epoch like Ctrl-C.
                || {
                    Python::attach(|py| {
                        let mut result = py.check_signals();
                        if let (Ok(()), Some(report)) = (&result, &report) {
                            if last_report.elapsed() >= interval {
                                last_report = Instant::now();
                                let Progress {
                                    batches,
                                    samples,
                                    loss_sum,
                                } = shared.get();
                                let mean = if samples > 0 {
                                    loss_sum / samples as f64
                                } else {
                                    f64::NAN
                                };
                                result = report.call1(py, (batches, samples, mean)).map(drop);
                            }
                        }
                        match result {
                            Ok(()) => false,
                            Err(e) => {
                                interrupt = Some(e);
                                true
                            }
                        }
                    })
                },
            )
        })
    });
    if let Some(e) = reduce.and_then(|r| r.raised) {
        return Err(e);
    }
    if let Some(e) = interrupt {
        return Err(e);
    }
    outcome_dict(py, &outcome?)
}

/// An epoch's outcome as the dict `fit_epoch` returns.
fn outcome_dict(py: Python<'_>, outcome: &EpochOutcome) -> PyResult<Py<PyAny>> {
    let result = PyDict::new(py);
    result.set_item("loss", outcome.loss)?;
    result.set_item("batches", outcome.batches)?;
    result.set_item("stopped", outcome.stopped)?;
    result.set_item("grad_norms", &outcome.grad_norms)?;
    result.set_item("update_ratios", &outcome.update_ratios)?;
    result.set_item("weight_norms", &outcome.weight_norms)?;
    result.set_item("penalty", outcome.penalty)?;
    result.set_item("metric_sums", sums_dict(py, &outcome.metrics)?)?;
    Ok(result.into_any().unbind())
}

/// The core's metric sums as a dict of its fields (numbers, and per-column lists).
pub fn sums_dict(py: Python<'_>, m: &MetricSums) -> PyResult<Py<PyAny>> {
    let sums = PyDict::new(py);
    sums.set_item("rows", m.rows)?;
    sums.set_item("correct", m.correct)?;
    sums.set_item("exact", m.exact)?;
    sums.set_item("abs_err", m.abs_err)?;
    sums.set_item("sq_err", &m.sq_err)?;
    sums.set_item("y_sum", &m.y_sum)?;
    sums.set_item("y_sq_sum", &m.y_sq_sum)?;
    Ok(sums.into_any().unbind())
}
