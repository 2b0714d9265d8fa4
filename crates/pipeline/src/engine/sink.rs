//! Where a generated clip goes: frames and audio are streamed to a [`ClipSink`] as the decoders
//! produce them, so a long clip is never held whole unless the caller wants it ([`Clip`]).

use cadence_core::{Error, Result};

/// The shape of the clip about to be streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Number of frames.
    pub frames: usize,
    /// Audio sample rate in Hz.
    pub sample_rate: u32,
    /// Audio channels (interleaved).
    pub channels: u16,
}

impl ClipInfo {
    /// Bytes of one RGB frame.
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Duration of the video in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / self.fps as f64
    }
}

/// Receives a clip as it is produced: [`ClipSink::start`] once, then frames (in order) and
/// audio (in order), in any interleaving.
pub trait ClipSink {
    /// The clip's shape, before any data.
    fn start(&mut self, info: &ClipInfo) -> Result<()>;
    /// `count` RGB frames, each `height × width × 3` bytes, row-major.
    fn frames(&mut self, rgb: &[u8], count: usize) -> Result<()>;
    /// Interleaved samples in `[-1, 1]` at the clip's sample rate and channel count.
    fn audio(&mut self, interleaved: &[f32]) -> Result<()>;
}

/// A whole clip in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clip {
    /// The clip's shape (`None` until started).
    pub info: Option<ClipInfo>,
    /// All frames, `frames × height × width × 3` bytes.
    pub frames: Vec<u8>,
    /// All audio samples, interleaved.
    pub audio: Vec<f32>,
}

impl ClipSink for Clip {
    fn start(&mut self, info: &ClipInfo) -> Result<()> {
        self.info = Some(*info);
        self.frames.reserve(info.frames * info.frame_bytes());
        Ok(())
    }

    fn frames(&mut self, rgb: &[u8], count: usize) -> Result<()> {
        let info = self
            .info
            .ok_or_else(|| Error::InvalidInput("frames arrived before the clip started".into()))?;
        if rgb.len() != count * info.frame_bytes() {
            return Err(Error::InvalidInput(format!(
                "{count} frames of {}x{} need {} bytes, got {}",
                info.width,
                info.height,
                count * info.frame_bytes(),
                rgb.len()
            )));
        }
        self.frames.extend_from_slice(rgb);
        Ok(())
    }

    fn audio(&mut self, interleaved: &[f32]) -> Result<()> {
        self.audio.extend_from_slice(interleaved);
        Ok(())
    }
}
