//! The one error type of the core. Every fallible operation returns `Result<T, Error>`;
//! the binding crate maps each variant to a Python exception in one place.

/// What went wrong, with the name of the argument that caused it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// An array had the wrong shape or length.
    #[error("{arg}: expected {expected}, got {got}")]
    Shape {
        arg: String,
        expected: String,
        got: String,
    },
    /// A value was out of range or otherwise invalid.
    #[error("{arg}: {message}")]
    Value { arg: String, message: String },
    /// A network description could not be understood.
    #[error("{arg}: {message}")]
    Spec { arg: String, message: String },
    /// The loss or a gradient stopped being finite; the step that produced it was not applied.
    #[error("training diverged{}{}: {}", epoch.map(|e| format!(" in epoch {e}")).unwrap_or_default(), batch.map(|b| format!(" at batch {b}")).unwrap_or_default(), divergence_reason(*loss, *norm))]
    Diverged {
        /// The epoch of `fit_epoch` it happened in (1-based, as the caller numbered it).
        epoch: Option<usize>,
        /// The batch of the epoch (0-based).
        batch: Option<usize>,
        /// The step's loss (NaN or infinite when the loss diverged).
        loss: f64,
        /// The global L2 norm of the step's gradients (NaN or infinite when they diverged).
        norm: f64,
    },
    /// A hook of the caller's (a data-parallel reduction, a progress report) ended the work;
    /// the caller holds the reason.
    #[error("stopped by the caller: {0}")]
    Stopped(String),
}

/// What diverged, in words: the loss, or else a gradient.
fn divergence_reason(loss: f64, norm: f64) -> String {
    if loss.is_finite() {
        format!("a gradient is not finite (global norm {norm})")
    } else {
        format!("the loss is {loss}")
    }
}

/// The core's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// For a divergence: "loss" when the loss stopped being finite, else "gradient".
    pub fn divergence(&self) -> Option<&'static str> {
        match self {
            Error::Diverged { loss, .. } if !loss.is_finite() => Some("loss"),
            Error::Diverged { .. } => Some("gradient"),
            _ => None,
        }
    }

    /// A shape error: `arg` should have been `expected` but was `got`.
    pub fn shape(arg: &str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Error::Shape {
            arg: arg.to_string(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// A value error about `arg`.
    pub fn value(arg: &str, message: impl Into<String>) -> Self {
        Error::Value {
            arg: arg.to_string(),
            message: message.into(),
        }
    }

    /// A network-description error about `arg`.
    pub fn spec(arg: &str, message: impl Into<String>) -> Self {
        Error::Spec {
            arg: arg.to_string(),
            message: message.into(),
        }
    }
}
