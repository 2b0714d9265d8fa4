//! AAC-LC encoding of the soundtrack.
//!
//! Two encoders sit behind one trait:
//! * [`syom`](https://crates.io/crates/syom) — pure Rust, MIT, the default;
//! * Fraunhofer FDK AAC through the `fdk-aac` crate — only with the opt-in cargo feature
//!   `fdk-aac`, because the FDK code is under the Fraunhofer FDK licence, which is not a free
//!   software licence and grants no patent rights (the crate's own metadata says MIT, so licence
//!   scanners miss this).
//!
//! AAC decoders output an encoder-specific delay ("priming": 1024 samples for syom, 2048 for
//! FDK at 44.1 kHz LC) before the first real sample. The encoder reports it here and the MP4
//! edit list removes it (see [`super::edit_list`]).

use cadence_core::{Error, Result};

/// Samples per channel in one AAC-LC access unit.
pub const AAC_FRAME: u32 = 1024;

/// One encoded AAC access unit (always [`AAC_FRAME`] samples per channel long).
pub type AccessUnit = Vec<u8>;

/// What the finished encoder produced, for the edit list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacTimeline {
    /// Decoded samples per channel before the first input sample.
    pub priming: u64,
    /// Input samples per channel (the valid, presented length).
    pub samples: u64,
}

/// An AAC-LC encoder producing raw access units.
pub trait AacEncoder: Send {
    /// The AudioSpecificConfig for the `esds` box.
    fn audio_specific_config(&self) -> Vec<u8>;
    /// Encodes interleaved samples in [-1, 1] and appends finished access units to `out`.
    fn encode(&mut self, interleaved: &[f32], out: &mut Vec<AccessUnit>) -> Result<()>;
    /// Flushes the encoder, appends the last access units and reports the timeline.
    fn finish(&mut self, out: &mut Vec<AccessUnit>) -> Result<AacTimeline>;
}

/// Which AAC encoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AacBackend {
    /// The pure-Rust `syom` encoder (MIT).
    #[default]
    Syom,
    /// Fraunhofer FDK AAC (feature `fdk-aac`; non-free licence, see the module docs).
    #[cfg(feature = "fdk-aac")]
    Fdk,
}

/// Creates the chosen encoder for `channels` interleaved channels.
pub fn new_encoder(
    backend: AacBackend,
    sample_rate: u32,
    channels: u16,
    bitrate_bps: u32,
) -> Result<Box<dyn AacEncoder>> {
    match backend {
        AacBackend::Syom => Ok(Box::new(SyomAac::new(sample_rate, channels, bitrate_bps)?)),
        #[cfg(feature = "fdk-aac")]
        AacBackend::Fdk => Ok(Box::new(fdk::FdkAac::new(
            sample_rate,
            channels,
            bitrate_bps,
        )?)),
    }
}

fn aac_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("AAC encoder: {what}: {e}"))
}

/// Checks that every sample is finite, naming the first bad one.
fn check_finite(interleaved: &[f32], channels: usize) -> Result<()> {
    match interleaved.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidInput(format!(
            "audio sample {} of channel {} is {} (NaN or infinite); the audio must be finite",
            i / channels,
            i % channels,
            interleaved[i]
        ))),
    }
}

/// The pure-Rust default encoder.
struct SyomAac {
    inner: syom::Encoder,
    channels: usize,
    planes: Vec<Vec<f32>>,
}

impl SyomAac {
    fn new(sample_rate: u32, channels: u16, bitrate_bps: u32) -> Result<Self> {
        // Lookahead codes transients (clicks, plosives) on short windows: less pre-echo.
        let opts = syom::EncodeOptions::raw()
            .with_bitrate_bps(bitrate_bps)
            .with_lookahead(true);
        let inner = syom::Encoder::new(sample_rate, usize::from(channels), &opts)
            .map_err(|e| aac_error("cannot configure", e))?;
        Ok(Self {
            inner,
            channels: usize::from(channels),
            planes: vec![Vec::new(); usize::from(channels)],
        })
    }
}

impl AacEncoder for SyomAac {
    fn audio_specific_config(&self) -> Vec<u8> {
        self.inner.asc().to_vec()
    }

    fn encode(&mut self, interleaved: &[f32], out: &mut Vec<AccessUnit>) -> Result<()> {
        check_finite(interleaved, self.channels)?;
        for (c, plane) in self.planes.iter_mut().enumerate() {
            plane.clear();
            // syom rejects |x| > 1 instead of clipping; clip like any PCM conversion would.
            plane.extend(
                interleaved
                    .iter()
                    .skip(c)
                    .step_by(self.channels)
                    .map(|v| v.clamp(-1.0, 1.0)),
            );
        }
        let planes: Vec<&[f32]> = self.planes.iter().map(Vec::as_slice).collect();
        self.inner
            .feed(&planes, |frame| {
                out.push(frame.au.to_vec());
                Ok(())
            })
            .map_err(|e| aac_error("encoding failed", e))?;
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<AccessUnit>) -> Result<AacTimeline> {
        let info = self
            .inner
            .finish(|frame| {
                out.push(frame.au.to_vec());
                Ok(())
            })
            .map_err(|e| aac_error("flush failed", e))?;
        Ok(AacTimeline {
            priming: info.priming,
            samples: info.samples,
        })
    }
}

#[cfg(feature = "fdk-aac")]
mod fdk {
    //! Fraunhofer FDK AAC (non-free licence; opt-in feature `fdk-aac`).

    use super::{aac_error, check_finite, AacEncoder, AacTimeline, AccessUnit, AAC_FRAME};
    use cadence_core::Result;
    use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

    pub(super) struct FdkAac {
        inner: Encoder,
        channels: usize,
        asc: Vec<u8>,
        priming: u64,
        samples: u64,
        units: u64,
        pcm: Vec<i16>,
        out_buf: Vec<u8>,
    }

    impl FdkAac {
        pub(super) fn new(sample_rate: u32, channels: u16, bitrate_bps: u32) -> Result<Self> {
            let mode = match channels {
                1 => ChannelMode::Mono,
                2 => ChannelMode::Stereo,
                n => return Err(aac_error("unsupported channel count", n)),
            };
            let inner = Encoder::new(EncoderParams {
                bit_rate: BitRate::Cbr(bitrate_bps),
                sample_rate,
                transport: Transport::Raw,
                channels: mode,
                audio_object_type: AudioObjectType::Mpeg4LowComplexity,
            })
            .map_err(|e| aac_error("cannot configure", e))?;
            let info = inner.info().map_err(|e| aac_error("no encoder info", e))?;
            let asc = info.confBuf[..info.confSize as usize].to_vec();
            Ok(Self {
                inner,
                channels: usize::from(channels),
                asc,
                priming: u64::from(info.nDelay),
                samples: 0,
                units: 0,
                pcm: Vec::new(),
                out_buf: vec![0; 8192],
            })
        }

        /// Feeds `pcm` completely, collecting every access unit the encoder emits.
        fn feed(&mut self, out: &mut Vec<AccessUnit>) -> Result<()> {
            let mut offset = 0;
            while offset < self.pcm.len() {
                let info = self
                    .inner
                    .encode(&self.pcm[offset..], &mut self.out_buf)
                    .map_err(|e| aac_error("encoding failed", e))?;
                if info.output_size > 0 {
                    out.push(self.out_buf[..info.output_size].to_vec());
                    self.units += 1;
                }
                if info.input_consumed == 0 && info.output_size == 0 {
                    return Err(aac_error("encoding stalled", "no input consumed"));
                }
                offset += info.input_consumed;
            }
            self.pcm.clear();
            Ok(())
        }
    }

    impl AacEncoder for FdkAac {
        fn audio_specific_config(&self) -> Vec<u8> {
            self.asc.clone()
        }

        fn encode(&mut self, interleaved: &[f32], out: &mut Vec<AccessUnit>) -> Result<()> {
            check_finite(interleaved, self.channels)?;
            self.pcm.extend(
                interleaved
                    .iter()
                    .map(|v| (v.clamp(-1.0, 1.0) * 32767.0).round() as i16),
            );
            self.samples += (interleaved.len() / self.channels) as u64;
            self.feed(out)
        }

        fn finish(&mut self, out: &mut Vec<AccessUnit>) -> Result<AacTimeline> {
            // The safe wrapper has no end-of-stream flush: push silence until every input
            // sample (after the priming delay) is inside an emitted access unit. The edit list
            // hides the padding.
            let needed = (self.priming + self.samples).div_ceil(u64::from(AAC_FRAME));
            while self.units < needed {
                self.pcm.extend(std::iter::repeat_n(
                    0i16,
                    AAC_FRAME as usize * self.channels,
                ));
                self.feed(out)?;
            }
            Ok(AacTimeline {
                priming: self.priming,
                samples: self.samples,
            })
        }
    }
}
