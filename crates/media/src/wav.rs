//! WAV output for debugging and for the pipeline's `.wav` side output.
//!
//! The reference pipeline writes its soundtrack with soundfile as 16-bit PCM; [`WavFormat::Pcm16`]
//! does the same (rounded, clipped). [`WavFormat::Float32`] keeps the exact samples.

use std::io::BufWriter;
use std::path::Path;

use cadence_core::{Error, Result};

use crate::atomic_file::AtomicFile;

/// Sample encoding of a written WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 16-bit signed integer PCM, as the reference pipeline writes.
    #[default]
    Pcm16,
    /// 32-bit IEEE float, lossless for f32 samples.
    Float32,
}

/// Writes interleaved samples (`channels` per frame, nominally in [-1, 1]) to `path`,
/// atomically.
pub fn write_wav(
    path: &Path,
    interleaved: &[f32],
    channels: u16,
    sample_rate: u32,
    format: WavFormat,
) -> Result<()> {
    if channels == 0 || !interleaved.len().is_multiple_of(usize::from(channels)) {
        return Err(Error::InvalidInput(format!(
            "{}: {} samples are not a whole number of {channels}-channel frames",
            path.display(),
            interleaved.len()
        )));
    }
    if sample_rate == 0 {
        return Err(Error::InvalidInput(format!(
            "{}: sample rate must be positive",
            path.display()
        )));
    }
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: match format {
            WavFormat::Pcm16 => 16,
            WavFormat::Float32 => 32,
        },
        sample_format: match format {
            WavFormat::Pcm16 => hound::SampleFormat::Int,
            WavFormat::Float32 => hound::SampleFormat::Float,
        },
    };
    let wav_error = |e: hound::Error| match e {
        hound::Error::IoError(io) => Error::io(path, io),
        other => Error::io(path, std::io::Error::other(other.to_string())),
    };
    let mut file = AtomicFile::create(path)?;
    {
        let mut w = hound::WavWriter::new(BufWriter::new(file.file()), spec).map_err(wav_error)?;
        for &v in interleaved {
            match format {
                WavFormat::Pcm16 => {
                    let s = (v.clamp(-1.0, 1.0) * 32767.0).round() as i16;
                    w.write_sample(s).map_err(wav_error)?;
                }
                WavFormat::Float32 => w.write_sample(v).map_err(wav_error)?,
            }
        }
        w.finalize().map_err(wav_error)?;
    }
    file.commit()
}
