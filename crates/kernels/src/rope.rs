//! Applying the Fourier rope table to per-head query/key vectors.

use candle_core::{DType, Result, Tensor, D};

/// Rotates the first `2r` dims of every head of `x` (`(L, heads, D)`, f32) by the table
/// `rope = [sin | cos]` (`(L, 2r)`, one row per token, shared by all heads):
///
/// `y[j] = x[j] cos[j] - x[j+r] sin[j]`, `y[j+r] = x[j+r] cos[j] + x[j] sin[j]` for `j < r`;
/// dims from `2r` on pass through unchanged. This is a half split inside the rotated part
/// (pairs `(j, j+r)`), not interleaved pairs and not a split of the whole head.
pub fn apply_rope(x: &Tensor, rope: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let (tokens, _heads, dim) = x.dims3()?;
    let (rope_tokens, width) = rope.dims2()?;
    let r = width / 2;
    if rope_tokens != tokens || width % 2 != 0 || width > dim {
        candle_core::bail!(
            "rope table {:?} does not fit q/k of shape {:?}",
            rope.dims(),
            x.dims()
        );
    }
    // (L, 1, r) so the table broadcasts over heads.
    let sin = rope.narrow(D::Minus1, 0, r)?.unsqueeze(1)?;
    let cos = rope.narrow(D::Minus1, r, r)?.unsqueeze(1)?;
    let x1 = x.narrow(D::Minus1, 0, r)?;
    let x2 = x.narrow(D::Minus1, r, r)?;
    let y1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let y2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    if 2 * r == dim {
        Tensor::cat(&[y1, y2], D::Minus1)
    } else {
        let rest = x.narrow(D::Minus1, 2 * r, dim - 2 * r)?;
        Tensor::cat(&[y1, y2, rest], D::Minus1)
    }
}
