//! Gemma's RMSNorm: `y = x / sqrt(mean(x^2) + eps) * (1 + w)`, computed in f32 by the
//! kernels' `rms_norm` (the op every norm of the DiT runs too).
//!
//! Two details differ from the usual RMSNorm and both change every output: the stored weight is
//! an offset (the scale is `1 + w`, so a zero weight is the identity), and the whole computation
//! including the scale runs in f32 before a single cast back to the model dtype.

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};

use cadence_core::Result;

/// Gemma's RMSNorm over the last dimension (scale `1 + w`).
#[derive(Debug, Clone)]
pub struct GemmaRmsNorm {
    /// The stored `w`, in f32.
    weight: Tensor,
    eps: f64,
}
cadence_core::tensor_tree!(GemmaRmsNorm { weight });

impl GemmaRmsNorm {
    /// Loads `weight` (`[size]`) under `vb`, in f32 whatever the model dtype.
    pub fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let weight = vb.get_with_hints_dtype(size, "weight", Init::Const(0.0), DType::F32)?;
        Ok(Self { weight, eps })
    }

    /// Normalises `x` (any leading shape) and returns it in `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // `1 + w` is formed here rather than at load, so that loading computes nothing (the
        // key list is recorded by building the encoder; see `TextEncoderConfig::tensor_specs`).
        let scale = (&self.weight + 1.0)?;
        let y = cadence_kernels::norm::rms_norm(x, &scale, self.eps)?;
        Ok(y.to_dtype(x.dtype())?)
    }
}
