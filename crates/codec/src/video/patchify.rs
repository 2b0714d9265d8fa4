//! Space-to-channel patchify with patch size 2, as both video codecs use it.
//!
//! `patchify: [B, C, T, 2h, 2w] -> [B, 4C, T, h, w]` with
//! `out[c*4 + r*2 + q, t, i, j] = in[c, t, 2i + q, 2j + r]`: the row offset `q` varies fastest,
//! then the column offset `r`, then the colour (the public MLX port swaps the two offsets).

use candle_core::{Result, Tensor};

/// `[B, C, T, 2h, 2w] -> [B, 4C, T, h, w]`.
pub fn patchify(x: &Tensor) -> Result<Tensor> {
    let (b, c, t, h2, w2) = x.dims5()?;
    if h2 % 2 != 0 || w2 % 2 != 0 {
        candle_core::bail!("patchify: height {h2} and width {w2} must be even");
    }
    let (h, w) = (h2 / 2, w2 / 2);
    // dims: 0 b, 1 c, 2 t, 3 h, 4 q, 5 w, 6 r  ->  b, c, r, q, t, h, w
    x.reshape(vec![b, c, t, h, 2, w, 2])?
        .permute(vec![0, 1, 6, 4, 2, 3, 5])?
        .reshape((b, c * 4, t, h, w))
}

/// The inverse of [`patchify`]: `[B, 4C, T, h, w] -> [B, C, T, 2h, 2w]`.
pub fn unpatchify(x: &Tensor) -> Result<Tensor> {
    let (b, c4, t, h, w) = x.dims5()?;
    if c4 % 4 != 0 {
        candle_core::bail!("unpatchify: {c4} channels is not a multiple of 4");
    }
    let c = c4 / 4;
    // dims: 0 b, 1 c, 2 r, 3 q, 4 t, 5 h, 6 w  ->  b, c, t, h, q, w, r
    x.reshape(vec![b, c, 2, 2, t, h, w])?
        .permute(vec![0, 1, 4, 5, 3, 6, 2])?
        .reshape((b, c, t, h * 2, w * 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn channel_order_and_inverse() {
        let x = Tensor::arange(0f32, 2.0 * 3.0 * 4.0 * 6.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 3, 4, 6))
            .unwrap();
        let p = patchify(&x).unwrap();
        let (c, r, q, t, i, j) = (1, 1, 0, 2, 1, 2);
        let got = p
            .get(0)
            .unwrap()
            .get(c * 4 + r * 2 + q)
            .unwrap()
            .get(t)
            .unwrap()
            .get(i)
            .unwrap()
            .get(j)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = x
            .get(0)
            .unwrap()
            .get(c)
            .unwrap()
            .get(t)
            .unwrap()
            .get(2 * i + q)
            .unwrap()
            .get(2 * j + r)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(got, want);
        let back = unpatchify(&p).unwrap();
        let diff = (back - &x).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
