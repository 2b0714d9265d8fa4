//! How the transformer block's GEMM weights are held: dense in the compute dtype (the
//! reference path, the default) or FP8 with per-output-channel scales (Hopper's fast path).
//!
//! FP8 covers the four GEMMs of every layer (`linear_qkv`, `linear_proj`, `up_gate_proj`,
//! `down_proj`): 99.86 % of the weights and about 99.9 % of the GEMM operations at every
//! resolution. The input embedders and the output heads stay f32, as in the reference: they
//! are 0.14 % of the weights, the text embedder runs once per prompt row, and the heads produce
//! the velocities themselves, where FP8's 2⁻⁴ relative rounding would land unfiltered in the
//! sampler.
//!
//! A weight is quantised as it is loaded: read in the compute dtype (bf16 in production, so
//! the FP8 values approximate exactly the weights the bf16 model uses), then scaled per output
//! row. A checkpoint written by [`crate::fp8_checkpoint`] already holds the FP8 values and
//! their scales (`<key>` as F8_E4M3, `<key>_scale` as f32); they are used as stored, or
//! dequantised when the model is loaded dense.

use candle_core::DType;
use candle_nn::{Init, VarBuilder};

use cadence_core::{Error, Result};
use cadence_kernels::fp8::{scale_key, Fp8Matrix, Scaling};
use cadence_kernels::LinearWeight;

/// How the block's GEMM weights are held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// In the compute dtype (bf16 in production): the reference numerics.
    #[default]
    Dense,
    /// FP8 e4m3 with one scale per output channel; activations are quantised per call as
    /// `activations` says (per token by default).
    Fp8 {
        /// Scaling of the activations entering each GEMM.
        activations: Scaling,
    },
}

impl WeightFormat {
    /// FP8 weights with per-token activation scales.
    pub const FP8: Self = Self::Fp8 {
        activations: Scaling::PerRow,
    };

    /// Bytes per GEMM weight element (ignoring the per-row scales and column padding).
    pub fn bytes_per_weight(&self, compute: DType) -> usize {
        match self {
            Self::Dense => compute.size_in_bytes(),
            Self::Fp8 { .. } => 1,
        }
    }
}

/// How a [`crate::DitModel`] is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// The dtype the model computes in: bf16 in production, f32 for the exact parity checks.
    pub compute: DType,
    /// How the block's GEMM weights are held.
    pub weights: WeightFormat,
}

impl LoadOptions {
    /// Dense weights in `compute` (what [`crate::DitModel::load`] does).
    pub fn dense(compute: DType) -> Self {
        Self {
            compute,
            weights: WeightFormat::Dense,
        }
    }

    /// FP8 weights with per-token activation scales, computing in `compute`.
    pub fn fp8(compute: DType) -> Self {
        Self {
            compute,
            weights: WeightFormat::FP8,
        }
    }
}

/// Reads the `(out, in)` GEMM weight `weight` under `vb` in `format`: a stored FP8 weight (with
/// its `weight_scale` tensor) as stored, or dequantised to `compute` for a dense model; a dense
/// stored weight as is, or quantised per output channel.
pub fn load_linear(
    vb: &VarBuilder,
    shape: (usize, usize),
    compute: DType,
    format: WeightFormat,
) -> Result<LinearWeight> {
    const WEIGHT: &str = "weight";
    let scale = scale_key(WEIGHT);
    let context = |e: candle_core::Error| {
        Error::InvalidInput(format!("tensor {}.{WEIGHT}: {e}", vb.prefix()))
    };
    let dense = || vb.get_with_hints_dtype(shape, WEIGHT, Init::Const(0.0), compute);
    // A stored FP8 weight: e4m3 `(out, in)` and its f32 `(out,)` scale.
    let stored = || -> Result<Fp8Matrix> {
        let data = vb.get_with_hints_dtype(shape, WEIGHT, Init::Const(0.0), DType::F8E4M3)?;
        let scale = vb.get_with_hints_dtype(shape.0, &scale, Init::Const(0.0), DType::F32)?;
        Fp8Matrix::from_parts(data, scale, shape.1).map_err(context)
    };
    Ok(match (format, vb.contains_tensor(&scale)) {
        (WeightFormat::Dense, false) => LinearWeight::Dense(dense()?),
        (WeightFormat::Dense, true) => LinearWeight::Dense(
            stored()?
                .dequantize()
                .and_then(|w| w.to_dtype(compute))
                .map_err(context)?,
        ),
        (WeightFormat::Fp8 { activations }, true) => LinearWeight::Fp8 {
            weight: stored()?,
            activations,
        },
        (WeightFormat::Fp8 { activations }, false) => LinearWeight::Fp8 {
            weight: Fp8Matrix::quantize_weight(&dense()?).map_err(context)?,
            activations,
        },
    })
}
