//! Video latents to token rows and back.
//!
//! Input tokens are **channel-major**: feature `c·p² + a·p + b` of the token at `(t, i, j)` holds
//! `x[c, t, p·i+a, p·j+b]`. Output rows are **patch-major**: column `(a·p + b)·C + c` goes to
//! `v[c, t, p·i+a, p·j+b]`. The two orders differ in the reference, and mixing them up
//! scrambles the video, so each direction has its own function.

use candle_core::Tensor;

use cadence_core::{Error, Result};

use super::layout::TokenLayout;

/// `(1, C, T, H, W)` latent to `(T·H/p·W/p, C·p²)` token rows (raster order over `t, i, j`).
pub fn patchify(video: &Tensor, p: usize) -> Result<Tensor> {
    let (batch, c, t, h, w) = video.dims5()?;
    if batch != 1 {
        return Err(Error::InvalidInput(format!(
            "video batch must be 1, got {batch}"
        )));
    }
    if h % p != 0 || w % p != 0 {
        return Err(Error::InvalidInput(format!(
            "latent height {h} and width {w} must be multiples of the patch size {p}"
        )));
    }
    let (hp, wp) = (h / p, w / p);
    // (C, T, hp, a, wp, b) -> (T, hp, wp, C, a, b)
    let x = video
        .to_dtype(candle_core::DType::F32)?
        .reshape((c, t, hp, p, wp, p))?
        .permute((1, 2, 4, 0, 3, 5))?
        .contiguous()?;
    Ok(x.reshape((t * hp * wp, c * p * p))?)
}

/// `(Nv, p²·C)` patch-major output rows to a `(1, C, T, H, W)` latent.
pub fn unpatchify(rows: &Tensor, layout: &TokenLayout) -> Result<Tensor> {
    let TokenLayout {
        latent_channels: c,
        frames: t,
        rows: hp,
        cols: wp,
        patch: p,
        ..
    } = *layout;
    if rows.dims() != [layout.video_tokens(), c * p * p] {
        return Err(Error::InvalidInput(format!(
            "video output rows {:?} do not match the layout ({} tokens × {} features)",
            rows.dims(),
            layout.video_tokens(),
            c * p * p
        )));
    }
    // (T, hp, wp, a, b, C) -> (C, T, hp, a, wp, b)
    let x = rows
        .reshape((t, hp, wp, p, p, c))?
        .permute((5, 0, 1, 3, 2, 4))?
        .contiguous()?;
    Ok(x.reshape((1, c, t, hp * p, wp * p))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn feature_orders_are_channel_major_in_and_patch_major_out() {
        let (c, t, h, w, p) = (3, 2, 4, 6, 2);
        let n = c * t * h * w;
        let video = Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .reshape((1, c, t, h, w))
            .unwrap();
        let rows = patchify(&video, p).unwrap();
        let value =
            |ci: usize, ti: usize, y: usize, x: usize| (((ci * t + ti) * h + y) * w + x) as f32;
        let r = rows.to_vec2::<f32>().unwrap();
        // token (t=1, i=1, j=2) in a 2x3 token grid, feature c*4 + a*2 + b
        let (ti, i, j) = (1, 1, 2);
        let tok = (ti * 2 + i) * 3 + j;
        for ci in 0..c {
            for a in 0..p {
                for b in 0..p {
                    assert_eq!(
                        r[tok][ci * 4 + a * 2 + b],
                        value(ci, ti, 2 * i + a, 2 * j + b)
                    );
                }
            }
        }
        // Output rows in patch-major order reproduce the latent.
        let layout = TokenLayout {
            latent_channels: c,
            frames: t,
            rows: h / p,
            cols: w / p,
            patch: p,
            audio: 0,
            text: 0,
        };
        let patch_major = rows
            .reshape((12, c, p * p))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((12, c * p * p))
            .unwrap();
        let back = unpatchify(&patch_major, &layout).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            video.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
