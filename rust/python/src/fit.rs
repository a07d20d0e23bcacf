//! One epoch of training from Python: the epoch runs on bpcore's pool with the GIL released
//! while the calling (main) thread looks for Ctrl-C and reports progress.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bpcore_core::network::{EpochOutcome, Progress};
use bpcore_core::{Network, Real};
use numpy::Element;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::HeldBatch;
use crate::errors::guarded;

/// How often a running epoch looks for Ctrl-C.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// What the epoch has done so far, shared between the pool thread that trains and the caller's
/// thread that reports it.
#[derive(Default)]
struct SharedProgress {
    batches: AtomicUsize,
    samples: AtomicUsize,
    loss_sum_bits: AtomicU64,
}

#[allow(clippy::too_many_arguments)]
pub fn fit_epoch<T: Real + Element>(
    py: Python<'_>,
    net: &mut Network<T>,
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    batch_size: usize,
    shuffle: bool,
    progress: Option<&Bound<'_, PyAny>>,
    progress_interval: f64,
    sample_weight: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let held = HeldBatch::<T>::extract(&net.spec().loss, x, y, sample_weight)?;
    let b = held.view()?;
    let report = progress.map(|p| p.clone().unbind());
    let interval = Duration::from_secs_f64(progress_interval.clamp(0.01, 3600.0));
    let shared = SharedProgress::default();
    let mut interrupt: Option<PyErr> = None;
    let mut last_report = Instant::now();
    let outcome = py.detach(|| {
        guarded(|| {
            bpcore_core::threads::run_polling(
                |stop| {
                    let mut on_batch = |p: Progress| {
                        shared.batches.store(p.batches, Ordering::Relaxed);
                        shared.samples.store(p.samples, Ordering::Relaxed);
                        shared
                            .loss_sum_bits
                            .store(p.loss_sum.to_bits(), Ordering::Relaxed);
                        stop.load(Ordering::Relaxed)
                    };
                    net.fit_epoch_weighted(
                        b.x,
                        b.targets,
                        b.weights,
                        b.n,
                        batch_size,
                        shuffle,
                        &mut on_batch,
                    )
                },
                SIGNAL_CHECK_INTERVAL,
                // Signal handlers run only on the main thread: this one, while the epoch runs
                // on bpcore's pool. A progress report that raises stops the epoch like Ctrl-C.
                || {
                    Python::attach(|py| {
                        let mut result = py.check_signals();
                        if let (Ok(()), Some(report)) = (&result, &report) {
                            if last_report.elapsed() >= interval {
                                last_report = Instant::now();
                                let samples = shared.samples.load(Ordering::Relaxed);
                                let loss_sum =
                                    f64::from_bits(shared.loss_sum_bits.load(Ordering::Relaxed));
                                let mean = if samples > 0 {
                                    loss_sum / samples as f64
                                } else {
                                    f64::NAN
                                };
                                let batches = shared.batches.load(Ordering::Relaxed);
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
    if let Some(e) = interrupt {
        return Err(e);
    }
    outcome_dict(py, &outcome?)
}

/// An epoch's outcome as the dict `fit_epoch` returns.
pub fn outcome_dict(py: Python<'_>, outcome: &EpochOutcome) -> PyResult<Py<PyAny>> {
    let result = PyDict::new(py);
    result.set_item("loss", outcome.loss)?;
    result.set_item("batches", outcome.batches)?;
    result.set_item("stopped", outcome.stopped)?;
    result.set_item("grad_norms", &outcome.grad_norms)?;
    result.set_item("update_ratios", &outcome.update_ratios)?;
    let m = &outcome.metrics;
    let sums = PyDict::new(py);
    sums.set_item("rows", m.rows)?;
    sums.set_item("correct", m.correct)?;
    sums.set_item("abs_err", m.abs_err)?;
    sums.set_item("sq_err", &m.sq_err)?;
    sums.set_item("y_sum", &m.y_sum)?;
    sums.set_item("y_sq_sum", &m.y_sq_sum)?;
    result.set_item("metric_sums", sums)?;
    Ok(result.into_any().unbind())
}
