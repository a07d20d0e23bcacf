//! bpcore's core: dense networks trained by backpropagation, generic over `f32` and `f64`.
//!
//! Pure Rust, no Python: the `bpcore-python` crate wraps it. Buffers are row-major and
//! contiguous; a batch of `n` samples of width `w` is a slice of `n * w` elements.

pub mod activation;
pub mod batch_norm;
pub mod conv;
pub mod dense;
pub mod dropout;
pub mod embedding;
pub mod error;
pub mod fpenv;
pub mod init;
pub mod layer_norm;
pub mod line_aligned;
pub mod loss;
pub mod matmul;
pub mod memory;
pub mod network;
pub mod optim;
pub mod pool;
pub mod prefetch;
pub mod prelu;
pub mod real;
pub mod rng;
pub mod sample_parts;
pub mod samples;
pub mod scratch;
pub mod small_product;
pub mod spec;
pub mod threads;

pub use error::{Error, Result};
pub use loss::Targets;
pub use network::Network;
pub use real::Real;
pub use samples::Samples;
pub use spec::{LayerSpec, LossSpec, NetworkSpec, OptimizerSpec};
