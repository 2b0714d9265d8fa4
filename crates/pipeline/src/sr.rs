//! Glue between the base stage and the super-resolution (SR) stage.
//!
//! 1. [`resize_trilinear`]: the base video latent is resized to the SR latent size with
//!    `F.interpolate(mode="trilinear", align_corners=True)` semantics (the time axis keeps its
//!    length, so it is an exact copy).
//! 2. [`renoise_video`]: the resized latent is re-noised to the zero-SNR signal level of training
//!    step 220: `x * s + n * sqrt(1 - s^2)`.
//! 3. [`noisy_audio_condition`]: the SR model sees `n * 0.7 + audio * 0.3` as fixed audio
//!    conditioning; the clip keeps the clean base audio.

use candle_core::{DType, Device, Tensor};

use cadence_core::{Error, Result};

/// Resizes a `[B, C, T, H, W]` tensor to `(T', H', W')` by trilinear interpolation with
/// `align_corners=True`.
///
/// Per axis, output index `d` reads source position `src = d * (in - 1) / (out - 1)` (0 when
/// `out == 1`), computed in f32 like torch, and blends `floor(src)` and `floor(src) + 1` (clamped)
/// with weights `1 - l` and `l`, `l = src - floor(src)`. Axes are blended innermost first
/// (W, then H, then T), the same association as torch's kernel. Runs on the tensor's device.
pub fn resize_trilinear(x: &Tensor, size: (usize, usize, usize)) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() != 5 {
        return Err(Error::InvalidInput(format!(
            "trilinear resize needs a [B, C, T, H, W] tensor, got {dims:?}"
        )));
    }
    let (t, h, w) = size;
    if t == 0 || h == 0 || w == 0 || dims[2..].contains(&0) {
        return Err(Error::InvalidInput(format!(
            "trilinear resize of {dims:?} to {size:?}: sizes must be positive"
        )));
    }
    let x = resize_axis(x, 4, w)?;
    let x = resize_axis(&x, 3, h)?;
    resize_axis(&x, 2, t)
}

/// Linear `align_corners=True` interpolation along one axis of a 5-D tensor.
fn resize_axis(x: &Tensor, axis: usize, out: usize) -> Result<Tensor> {
    let input = x.dim(axis)?;
    if input == out {
        // scale 1: every source position is an integer, the blend is an exact copy.
        return Ok(x.clone());
    }
    let scale = if out > 1 {
        (input - 1) as f32 / (out - 1) as f32
    } else {
        0.0
    };
    let mut lower = Vec::with_capacity(out);
    let mut upper = Vec::with_capacity(out);
    let mut w_lower = Vec::with_capacity(out);
    let mut w_upper = Vec::with_capacity(out);
    for d in 0..out {
        let src = scale * d as f32;
        let i0 = (src.floor() as usize).min(input - 1);
        let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        lower.push(i0 as u32);
        upper.push(i1 as u32);
        w_lower.push(1.0 - l1);
        w_upper.push(l1);
    }
    let device = x.device();
    let mut weight_shape = [1usize; 5];
    weight_shape[axis] = out;
    let weights = |w: Vec<f32>| -> Result<Tensor> {
        Ok(Tensor::from_vec(w, &weight_shape[..], device)?.to_dtype(x.dtype())?)
    };
    let a = x.index_select(&index(lower, device)?, axis)?;
    let b = x.index_select(&index(upper, device)?, axis)?;
    let blended = (a.broadcast_mul(&weights(w_lower)?)? + b.broadcast_mul(&weights(w_upper)?)?)?;
    Ok(blended)
}

fn index(values: Vec<u32>, device: &Device) -> Result<Tensor> {
    let n = values.len();
    Ok(Tensor::from_vec(values, n, device)?)
}

/// `latent * signal + noise * sqrt(1 - signal^2)`, the coefficients formed in f32 as the
/// reference does with its f32 table entry.
pub fn renoise_video(latent: &Tensor, noise: &Tensor, signal: f32) -> Result<Tensor> {
    same_shape("SR re-noise", latent, noise)?;
    let noise_coef = (1.0f32 - signal * signal).sqrt();
    Ok((latent.affine(f64::from(signal), 0.0)? + noise.affine(f64::from(noise_coef), 0.0)?)?)
}

/// `noise * noise_scale + audio * (1 - noise_scale)`: the SR model's audio conditioning.
pub fn noisy_audio_condition(audio: &Tensor, noise: &Tensor, noise_scale: f64) -> Result<Tensor> {
    same_shape("SR audio conditioning", audio, noise)?;
    Ok((noise.affine(noise_scale, 0.0)? + audio.affine(1.0 - noise_scale, 0.0)?)?)
}

fn same_shape(what: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(Error::InvalidInput(format!(
            "{what}: latent {:?} and noise {:?} shapes differ",
            a.dims(),
            b.dims()
        )));
    }
    if a.dtype() != DType::F32 {
        return Err(Error::InvalidInput(format!(
            "{what}: latents must be f32, got {:?}",
            a.dtype()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_corners_keeps_the_corners() {
        let x = Tensor::arange(0f32, 6., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 2, 3))
            .unwrap();
        let y = resize_trilinear(&x, (1, 3, 5)).unwrap();
        let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(
            v,
            vec![0.0, 0.5, 1.0, 1.5, 2.0, 1.5, 2.0, 2.5, 3.0, 3.5, 3.0, 3.5, 4.0, 4.5, 5.0]
        );
    }
}
