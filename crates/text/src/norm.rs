//! Gemma's RMSNorm: `y = x / sqrt(mean(x^2) + eps) * (1 + w)`, computed in f32 by the
//! kernels' `rms_norm` (the op every norm of the DiT runs too).
//!
//! Two details differ from the usual RMSNorm and both change every output: the stored weight is
//! an offset (the scale is `1 + w`, so a zero weight is the identity), and the whole computation
//! including the scale runs in f32 before a single cast back to the model dtype.

use candle_core::{DType, Device, Tensor};

use cadence_core::{Result, WeightSource};

/// Gemma's RMSNorm over the last dimension (scale `1 + w`).
#[derive(Debug, Clone)]
pub struct GemmaRmsNorm {
    /// `1 + w` in f32.
    scale: Tensor,
    eps: f64,
}
cadence_core::tensor_tree!(GemmaRmsNorm { scale });

impl GemmaRmsNorm {
    /// Loads the stored weight `key` and precomputes its `1 + w` scale in f32.
    pub fn load(ckpt: &dyn WeightSource, key: &str, eps: f64, device: &Device) -> Result<Self> {
        let w = ckpt.load(key, DType::F32, device)?;
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
