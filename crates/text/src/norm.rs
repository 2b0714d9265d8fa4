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
    /// `1 + w` in f32.
    scale: Tensor,
    eps: f64,
}
cadence_core::tensor_tree!(GemmaRmsNorm { scale });

impl GemmaRmsNorm {
    /// Loads `weight` (`[size]`) under `vb` and precomputes its `1 + w` scale in f32.
    pub fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let w = vb.get_with_hints_dtype(size, "weight", Init::Const(0.0), DType::F32)?;
        Ok(Self {
            scale: (w + 1.0)?,
            eps,
        })
    }

    /// Normalises `x` (any leading shape) and returns it in `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = cadence_kernels::norm::rms_norm(x, &self.scale, self.eps)?;
        Ok(y.to_dtype(x.dtype())?)
    }
}
