//! Latent shapes of a generation, derived from pixel sizes and clip length.
//!
//! * Pixels to latent: `h = H_px / 16 / 2 * 2` (integer division: the VAE's 16x spatial stride,
//!   then a multiple of the DiT's 2x2 patch), so the usable pixel size is `16 h`, a multiple of 32.
//! * Audio frames (one per video frame at 25 fps): `A = 25 * seconds + 1`, or the length of the
//!   encoded user audio in audio-driven mode.
//! * Latent frames: `T = (A - 1) / 4 + 1` (the VAE's 4x temporal stride plus the first frame).
//! * Video latent `[1, 48, T, h, w]`, audio latent `[1, A, 64]`, both f32.

use cadence_core::{Error, Result};

/// Channels of the video latent (Wan2.2 VAE `z_dim`).
pub const VIDEO_CHANNELS: usize = 48;
/// Channels of the audio latent (Oobleck VAE).
pub const AUDIO_CHANNELS: usize = 64;
/// Frames per second of the generated video (and audio latents per second).
pub const FPS: usize = 25;
/// Spatial stride of the video VAE (pixels per latent cell).
pub const VAE_SPATIAL_STRIDE: usize = 16;
/// Temporal stride of the video VAE (frames per latent frame after the first).
pub const VAE_TEMPORAL_STRIDE: usize = 4;
/// Spatial patch of the DiT; latent sizes are multiples of it.
pub const PATCH: usize = 2;
/// Pixel sizes are usable as-is only when they are multiples of this (16 * 2).
pub const PIXEL_MULTIPLE: usize = VAE_SPATIAL_STRIDE * PATCH;

/// A spatial size in latent cells (`height x width`), both multiples of [`PATCH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatentSize {
    /// Latent rows `h`.
    pub height: usize,
    /// Latent columns `w`.
    pub width: usize,
}

impl LatentSize {
    /// The latent size for a pixel size, rounded down as the reference does; an error if a side
    /// is below [`PIXEL_MULTIPLE`] pixels (it would round to zero).
    pub fn from_pixels(width_px: usize, height_px: usize) -> Result<Self> {
        let side = |px: usize, what: &str| -> Result<usize> {
            let cells = px / VAE_SPATIAL_STRIDE / PATCH * PATCH;
            if cells == 0 {
                return Err(Error::InvalidInput(format!(
                    "{what} {px} px is too small: sizes are rounded down to a multiple of \
                     {PIXEL_MULTIPLE} px, so it must be at least {PIXEL_MULTIPLE}"
                )));
            }
            Ok(cells)
        };
        Ok(Self {
            height: side(height_px, "height")?,
            width: side(width_px, "width")?,
        })
    }

    /// Pixel width the VAE decodes to (`16 w`).
    pub fn width_px(&self) -> usize {
        self.width * VAE_SPATIAL_STRIDE
    }

    /// Pixel height the VAE decodes to (`16 h`).
    pub fn height_px(&self) -> usize {
        self.height * VAE_SPATIAL_STRIDE
    }
}

/// Every latent shape of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatentShapes {
    /// Audio latent frames `A` (= video frames of the decoded clip).
    pub audio_frames: usize,
    /// Video latent frames `T = (A - 1) / 4 + 1`.
    pub latent_frames: usize,
    /// Base-stage latent size.
    pub base: LatentSize,
    /// SR-stage latent size, when the request asks for super-resolution.
    pub sr: Option<LatentSize>,
}

impl LatentShapes {
    /// Shapes for a clip of `audio_frames` frames (`25 * seconds + 1` for generated audio, the
    /// encoded length for user audio).
    pub fn new(audio_frames: usize, base: LatentSize, sr: Option<LatentSize>) -> Result<Self> {
        if audio_frames == 0 {
            return Err(Error::InvalidInput(
                "a clip needs at least one audio latent frame".into(),
            ));
        }
        Ok(Self {
            audio_frames,
            latent_frames: latent_frames_for(audio_frames),
            base,
            sr,
        })
    }

    /// `[1, 48, T, h, w]` of the base stage.
    pub fn base_video(&self) -> [usize; 5] {
        self.video_at(self.base)
    }

    /// `[1, 48, T, h_sr, w_sr]` of the SR stage, if any.
    pub fn sr_video(&self) -> Option<[usize; 5]> {
        self.sr.map(|s| self.video_at(s))
    }

    /// `[1, A, 64]`.
    pub fn audio(&self) -> [usize; 3] {
        [1, self.audio_frames, AUDIO_CHANNELS]
    }

    /// `[1, 48, 1, h, w]`: the encoded conditioning image at `size`.
    pub fn image_at(&self, size: LatentSize) -> [usize; 5] {
        [1, VIDEO_CHANNELS, 1, size.height, size.width]
    }

    fn video_at(&self, size: LatentSize) -> [usize; 5] {
        [
            1,
            VIDEO_CHANNELS,
            self.latent_frames,
            size.height,
            size.width,
        ]
    }
}

/// `25 * seconds + 1`: audio latent frames of a generated clip.
pub fn audio_frames_for_seconds(seconds: usize) -> usize {
    seconds * FPS + 1
}

/// `(A - 1) / 4 + 1`: video latent frames for `A >= 1` audio frames.
pub fn latent_frames_for(audio_frames: usize) -> usize {
    audio_frames.saturating_sub(1) / VAE_TEMPORAL_STRIDE + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples() {
        assert_eq!(audio_frames_for_seconds(4), 101);
        assert_eq!(latent_frames_for(101), 26);
        let s = LatentSize::from_pixels(448, 256).unwrap();
        assert_eq!((s.width, s.height), (28, 16));
        let r = LatentSize::from_pixels(480, 272).unwrap();
        assert_eq!((r.width_px(), r.height_px()), (480, 256));
        assert!(LatentSize::from_pixels(31, 256).is_err());
        let shapes = LatentShapes::new(101, s, None).unwrap();
        assert_eq!(shapes.base_video(), [1, 48, 26, 16, 28]);
        assert_eq!(shapes.audio(), [1, 101, 64]);
    }
}
