//! The op boundary: every operation a custom GPU kernel may replace.
//!
//! Model and codec code call these functions and nothing below them. Each op has a reference
//! implementation built from candle tensor ops, which runs on the CPU (the parity reference) and
//! on any other candle device. A device-specific kernel (the Hopper kernels of `kernels/*.cu`)
//! is chosen inside the op, so adding one never touches model code.
//!
//! Numerics follow the reference model: norms, rope, activations and softmax in f32; attention
//! and GEMM inputs in the model's compute dtype (bf16 in production, f32 for the tight checks).
//! GEMMs ([`linear`]) also take FP8 weights ([`fp8`]) for Hopper's FP8 tensor cores.

pub mod activation;
pub mod attention;
pub mod conv3d;
#[cfg(feature = "cuda")]
mod cuda_launch;
#[cfg(feature = "cuda")]
mod cuda_view;
pub mod device_memory;
pub mod dispatch;
pub mod fp8;
pub mod linear;
pub mod norm;
pub mod rope;
pub mod transfer;

pub use attention::{attention, AttentionMask};
pub use linear::{linear, LinearWeight};
