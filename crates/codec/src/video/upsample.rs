//! Upsampling steps shared by the two video decoders.

use candle_core::{Result, Tensor};

/// Nearest-neighbour ×2 in height and width (`nearest-exact` for an integer factor).
pub fn upsample_nearest_2x(x: &Tensor) -> Result<Tensor> {
    let (b, c, t, h, w) = x.dims5()?;
    x.reshape(vec![b, c, t, h, 1, w, 1])?
        .broadcast_as(vec![b, c, t, h, 2, w, 2])?
        .reshape((b, c, t, 2 * h, 2 * w))
}

/// `[B, 2C, T, H, W] -> [B, C, 2T, H, W]`: channels `[0, C)` become frame `2t`, `[C, 2C)` frame
/// `2t + 1`.
pub fn interleave_halves(x: &Tensor) -> Result<Tensor> {
    let (b, c2, t, h, w) = x.dims5()?;
    let c = c2 / 2;
    x.reshape(vec![b, 2, c, t, h, w])?
        .permute(vec![0, 2, 3, 1, 4, 5])?
        .reshape((b, c, 2 * t, h, w))
}
