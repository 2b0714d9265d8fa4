//! FP8 (OCP e4m3, "e4m3fn") quantisation for the GEMMs of the DiT on Hopper.
//!
//! An FP8 GEMM on Hopper's tensor cores runs at about twice the dense bf16 rate and halves the
//! weights' memory (15.3 GB instead of 30.6 GB for the 15B DiT). This module holds the math
//! every device shares:
//!
//! * the element format: candle's [`DType::F8E4M3`](candle_core::DType::F8E4M3), backed by the
//!   `float8` crate on the host and by `__nv_fp8_e4m3` on CUDA. Both round to nearest, ties to
//!   even, and saturate to ±448 (`__NV_SATFINITE`; `float8` ports `cuda_fp8.hpp`); the tests of
//!   this module check the host conversion against a brute-force nearest-even search over every
//!   finite e4m3 value, every midpoint and the saturation and subnormal edges, so no conversion
//!   of our own is needed;
//! * [`Fp8Matrix`]: a row-scaled FP8 matrix, `value[r, c] = data[r, c] · scale[r]`, with
//!   `scale[r] = absmax(row r) / 448` (an all-zero row gets scale 1 and zero data). Weights are
//!   scaled per output channel (rows of `(out, in)`), activations per token (rows of
//!   `(tokens, in)`) or, as an option, per tensor ([`Scaling`]);
//! * [`scale_key`]: the naming convention of FP8 safetensors files.
//!
//! The GEMM itself is [`crate::linear::linear`], the op boundary for bf16 and FP8 weights. The
//! error bounds that follow from e4m3's 3-bit mantissa, which the tests enforce, are the parity
//! crate's (`cadence_parity::fp8_bounds`).
//!
//! # FP8 safetensors files
//!
//! A quantised weight `K` (e.g. `block.layers.3.mlp.up_gate_proj.weight`) is stored as two
//! tensors: `K` itself, dtype `F8_E4M3`, in its original shape `(out, in)` (no alignment
//! padding), and `K_scale` ([`scale_key`]), dtype `F32`, shape `(out,)`, one dequantisation
//! scale per row. This follows the `weight_scale` naming of the FP8 checkpoints of vLLM and
//! compressed-tensors, so the files read naturally to anyone who has seen those.
//! A loader knows a weight is quantised from the presence of its `_scale` tensor.

mod matrix;

pub use matrix::{Fp8Matrix, CHUNK_ELEMENTS, QUANTISE_TEMPORARY_BYTES};

/// The largest finite e4m3 value; scales map each row's absolute maximum onto it.
pub const E4M3_MAX: f32 = 448.0;

/// Columns of [`Fp8Matrix::data`] are padded with zeros to a multiple of this.
///
/// cuBLASLt's FP8 kernels need the leading dimension of both operands (the reduction length
/// `in` in our row-major layout) to be a multiple of 16 bytes. The DiT's swiglu down-projection
/// reduces over 13,652 columns, which is not; padding the weight once at load (13,664 columns,
/// +0.09 %) and each activation as it is quantised keeps every GEMM on the FP8 path. Zero
/// columns add exact zeros to every dot product.
pub const COLUMN_ALIGN: usize = 16;

/// Suffix of the scale tensor that accompanies an FP8 weight in a safetensors file.
pub const SCALE_SUFFIX: &str = "_scale";

/// The key of the per-row scales of the FP8 weight stored under `key` (`key` + `_scale`).
pub fn scale_key(key: &str) -> String {
    format!("{key}{SCALE_SUFFIX}")
}

/// How many rows share one scale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Scaling {
    /// One scale per row: per output channel for weights, per token for activations. The
    /// default, because tokens of different modalities (and outlier tokens) differ in
    /// magnitude by orders of magnitude, and a shared scale would push the small ones into
    /// e4m3's subnormal range.
    #[default]
    PerRow,
    /// One scale for the whole matrix (the classic "per-tensor" FP8 recipe); cheaper to compute
    /// on a device (a single reduction), less accurate when rows differ in magnitude.
    PerTensor,
}

#[cfg(test)]
mod tests;
