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
    #[error("training diverged{}: {what}", batch.map(|b| format!(" at batch {b}")).unwrap_or_default())]
    Diverged { batch: Option<usize>, what: String },
}

/// The core's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
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
