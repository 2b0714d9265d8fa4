//! Decoded video chunks and their conversion to the uint8 frames the pipeline writes.

use candle_core::{DType, Result, Tensor};

/// A run of consecutive decoded frames, handed to the caller as soon as it is final.
#[derive(Debug, Clone)]
pub struct VideoChunk {
    /// Index of the chunk's first frame in the whole clip.
    pub first_frame: usize,
    /// `[B, 3, t, H, W]` float32 video in roughly `[-1, 1]` (Wan: clamped; Turbo: raw).
    pub video: Tensor,
}

impl VideoChunk {
    /// Number of frames in the chunk.
    pub fn len(&self) -> usize {
        self.video.dims().get(2).copied().unwrap_or(0)
    }

    /// Whether the chunk holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunk as `[B, t, H, W, 3]` uint8 frames (see [`frames_u8`]).
    pub fn frames_u8(&self) -> Result<Tensor> {
        frames_u8(&self.video)
    }
}

/// `[B, 3, T, H, W]` video in `[-1, 1]` to `[B, T, H, W, 3]` uint8 as the reference's
/// `decode_video` does: in f32, `clamp(v*0.5 + 0.5, 0, 1) * 255`, then **truncated** (not
/// rounded: rounding would change about half of the values).
pub fn frames_u8(video: &Tensor) -> Result<Tensor> {
    video
        .to_dtype(DType::F32)?
        .affine(0.5, 0.5)?
        .clamp(0f32, 1f32)?
        .affine(255.0, 0.0)?
        .floor()?
        .to_dtype(DType::U8)?
        .permute((0, 2, 3, 4, 1))?
        .contiguous()
}
