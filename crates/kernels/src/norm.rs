//! RMSNorm, as every norm of the model computes it.

use candle_core::{DType, Result, Tensor, D};

/// `x * rsqrt(mean(x², last dim) + eps) * scale`, in f32, returned in f32.
///
/// `scale` has the width of the last dim and is the *effective* multiplier: the checkpoints
/// store an offset `w` and the model passes `1 + w` (computed once at load, the same f32 add
/// the reference does per call). Extra leading dims of `x` (heads) share the one `scale`.
pub fn rms_norm(x: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    reference_rms_norm(x, scale, eps)
}

fn reference_rms_norm(x: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv_rms)?.broadcast_mul(scale)
}
