//! Shared foundations of Cadence: the error type, memory-mapped checkpoint loading with key
//! verification, the `VarBuilder` every model loads through, error metrics and the recording of
//! intermediate tensors.

#![warn(missing_docs)]

pub mod cancel;
pub mod checkpoint;
pub mod compare;
pub mod error;
pub mod random;
pub mod sizes;
pub mod tensors;
pub mod trace;
pub mod var_builder;

pub use cancel::CancelToken;
pub use checkpoint::{Checkpoint, TensorSpec, WeightSource};
pub use error::{Error, ErrorKind, Result};
pub use random::RandomWeights;
pub use tensors::TensorTree;
