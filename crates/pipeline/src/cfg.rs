//! Classifier-free guidance (CFG): `v = v_uncond + s * (v_cond - v_uncond)`.
//!
//! The scale depends on the stage: the base stage switches the *video* scale on the integer
//! timestep (5.0 while `t > 500`, then 2.0), the SR stage uses a per-latent-frame scale (the
//! "CFG trick": at most 2.0 for the first 13 latent frames, 3.5 after, against over-exposure), and
//! audio always uses 5.0.

use candle_core::{DType, Tensor};

use cadence_core::{Error, Result};

/// `uncond + scale * (cond - uncond)`, elementwise in the tensors' dtype.
pub fn guide(uncond: &Tensor, cond: &Tensor, scale: f64) -> Result<Tensor> {
    Ok((uncond + (cond - uncond)?.affine(scale, 0.0)?)?)
}

/// [`guide`] with one scale per latent frame: `scales[f]` applies to `video[:, :, f]`.
pub fn guide_per_frame(uncond: &Tensor, cond: &Tensor, scales: &[f32]) -> Result<Tensor> {
    let dims = uncond.dims();
    if dims.len() != 5 || dims[2] != scales.len() {
        return Err(Error::InvalidInput(format!(
            "per-frame guidance needs a [B, C, T, H, W] video with T = {} frames, got {dims:?}",
            scales.len()
        )));
    }
    let scales = Tensor::from_slice(scales, (1, 1, scales.len(), 1, 1), uncond.device())?
        .to_dtype(uncond.dtype())?;
    Ok((uncond + (cond - uncond)?.broadcast_mul(&scales)?)?)
}

/// Guidance of the base stage (`cfg_number = 2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaseGuidance {
    /// Video scale while `t > switch_timestep` (`video_txt_guidance_scale`, 5.0).
    pub video_scale: f64,
    /// Video scale once `t <= switch_timestep` (hard-coded 2.0 in the reference).
    pub late_video_scale: f64,
    /// The switch: strict `t > switch_timestep` keeps `video_scale` (500).
    pub switch_timestep: i64,
    /// Audio scale at every step (`audio_txt_guidance_scale`, 5.0).
    pub audio_scale: f64,
}

impl Default for BaseGuidance {
    fn default() -> Self {
        Self {
            video_scale: 5.0,
            late_video_scale: 2.0,
            switch_timestep: 500,
            audio_scale: 5.0,
        }
    }
}

impl BaseGuidance {
    /// The video scale at integer timestep `t`.
    pub fn video_scale_at(&self, timestep: i64) -> f64 {
        if timestep > self.switch_timestep {
            self.video_scale
        } else {
            self.late_video_scale
        }
    }
}

/// Guidance of the SR stage (`sr_cfg_number = 2`); its audio guidance is computed by the
/// reference and thrown away, so it has none here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SrGuidance {
    /// Video scale (`sr_video_txt_guidance_scale`, 3.5).
    pub video_scale: f64,
    /// The CFG trick (`use_cfg_trick`, on by default); `None` disables it.
    pub early_frames: Option<EarlyFrameCap>,
}

/// Caps the SR video scale for the first latent frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyFrameCap {
    /// Latent frames `0..frames` are capped (`cfg_trick_start_frame`, 13).
    pub frames: usize,
    /// The cap (`cfg_trick_value`, 2.0); the scale there is `min(cap, video_scale)`.
    pub max_scale: f64,
}

impl Default for SrGuidance {
    fn default() -> Self {
        Self {
            video_scale: 3.5,
            early_frames: Some(EarlyFrameCap {
                frames: 13,
                max_scale: 2.0,
            }),
        }
    }
}

impl SrGuidance {
    /// The f32 video scale of each of `latent_frames` frames.
    pub fn per_frame_scales(&self, latent_frames: usize) -> Vec<f32> {
        (0..latent_frames)
            .map(|f| match self.early_frames {
                Some(cap) if f < cap.frames => cap.max_scale.min(self.video_scale) as f32,
                _ => self.video_scale as f32,
            })
            .collect()
    }
}

/// Checks that a guidance pair has matching shapes and a float dtype (a clear error instead of a
/// broadcasting surprise when a model returns the wrong layout).
pub(crate) fn check_pair(name: &str, cond: &Tensor, uncond: &Tensor) -> Result<()> {
    if cond.dims() != uncond.dims() || cond.dtype() != uncond.dtype() {
        return Err(Error::InvalidInput(format!(
            "{name}: conditional {:?} {:?} and unconditional {:?} {:?} velocities differ",
            cond.dims(),
            cond.dtype(),
            uncond.dims(),
            uncond.dtype()
        )));
    }
    if !matches!(cond.dtype(), DType::F32 | DType::F64) {
        return Err(Error::InvalidInput(format!(
            "{name}: velocities must be f32, got {:?}",
            cond.dtype()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_switch_is_strict() {
        let g = BaseGuidance::default();
        assert_eq!(g.video_scale_at(501), 5.0);
        assert_eq!(g.video_scale_at(500), 2.0);
    }

    #[test]
    fn sr_scales() {
        let g = SrGuidance::default();
        let s = g.per_frame_scales(15);
        assert_eq!(&s[..13], &[2.0; 13]);
        assert_eq!(&s[13..], &[3.5; 2]);
        let off = SrGuidance {
            early_frames: None,
            ..g
        };
        assert_eq!(off.per_frame_scales(3), vec![3.5; 3]);
    }
}
