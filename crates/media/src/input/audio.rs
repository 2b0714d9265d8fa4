//! The reference audio: decode any common file, honour MP4 edit lists, downmix to mono and
//! resample to the rate the audio VAE runs at.
//!
//! The reference pipeline loads reference audio with whisper's `load_audio` (codecs/SPEC.md
//! §5.4): ffmpeg decodes, downmixes to **mono** (`-ac 1`, which for stereo is `(L + R)·√½`,
//! not the average), resamples to **51200 Hz** and saturates to 16-bit PCM. This loader does the
//! same in f32 without ffmpeg: symphonia decodes WAV, FLAC, MP3 (gapless), AAC/M4A and ALAC; the
//! M4A edit list (encoder priming), which symphonia's MP4 reader parses but does not apply, is
//! applied here; rubato resamples; the result is clipped to [-1, 1].

use std::fs::File;
use std::path::Path;

use cadence_core::{Error, Result};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::resample::resample;
use crate::mp4::edit_list::{read_audio_edit, rescale};

/// The rate the pipeline's audio VAE runs at (one 2048-sample latent per 25 fps frame).
pub const PIPELINE_AUDIO_RATE: u32 = 51_200;

/// Limits and target of [`load_reference_audio`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioInputOptions {
    /// Output sample rate in Hz.
    pub sample_rate: u32,
    /// Shortest accepted result in output samples (default 2048 = one audio latent, 40 ms).
    pub min_samples: usize,
    /// A file whose peak stays below this (linear, default 0.001 = −60 dBFS) is rejected as
    /// silent: it would condition the model on nothing.
    pub silence_peak: f32,
}

impl Default for AudioInputOptions {
    fn default() -> Self {
        Self {
            sample_rate: PIPELINE_AUDIO_RATE,
            min_samples: 2048,
            silence_peak: 1e-3,
        }
    }
}

/// Decoded, mono, resampled reference audio.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceAudio {
    /// Mono samples in [-1, 1] at `sample_rate`.
    pub samples: Vec<f32>,
    /// Output sample rate in Hz.
    pub sample_rate: u32,
    /// Sample rate of the file.
    pub source_rate: u32,
    /// Channel count of the file.
    pub source_channels: usize,
}

impl ReferenceAudio {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("reference audio {}: {what}", path.display()))
}

/// Decoded interleaved samples at the file's own rate.
struct Decoded {
    interleaved: Vec<f32>,
    rate: u32,
    channels: usize,
}

/// Loads `path` as mono audio at `opts.sample_rate`, with clear errors for empty, corrupt,
/// unsupported, too short and silent files.
pub fn load_reference_audio(path: &Path, opts: &AudioInputOptions) -> Result<ReferenceAudio> {
    let decoded = decode_checked(path)?;
    let mono = downmix_to_mono(&decoded.interleaved, decoded.channels);
    let mut samples = resample(&mono, 1, decoded.rate, opts.sample_rate)?;
    for v in &mut samples {
        *v = v.clamp(-1.0, 1.0);
    }
    if samples.len() < opts.min_samples {
        return Err(invalid(
            path,
            format!(
                "too short: {:.1} ms of audio, at least {:.1} ms ({} samples at {} Hz) are needed",
                samples.len() as f64 * 1000.0 / f64::from(opts.sample_rate),
                opts.min_samples as f64 * 1000.0 / f64::from(opts.sample_rate),
                opts.min_samples,
                opts.sample_rate
            ),
        ));
    }
    let peak = mono.iter().fold(0f32, |m, v| m.max(v.abs()));
    if peak < opts.silence_peak {
        return Err(invalid(
            path,
            format!(
                "the audio is silent (peak {:.1} dBFS, below the {:.1} dBFS threshold)",
                20.0 * f64::from(peak.max(1e-12)).log10(),
                20.0 * f64::from(opts.silence_peak).log10()
            ),
        ));
    }
    Ok(ReferenceAudio {
        samples,
        sample_rate: opts.sample_rate,
        source_rate: decoded.rate,
        source_channels: decoded.channels,
    })
}

/// Loads `path` as interleaved **stereo** at `sample_rate`, for putting the user's own sound
/// into the clip: mono files play on both channels, files with more channels keep their first
/// two (front left and right), nothing is downmixed. Clipped to [-1, 1].
pub fn load_stereo_audio(path: &Path, sample_rate: u32) -> Result<Vec<f32>> {
    let decoded = decode_checked(path)?;
    let stereo: Vec<f32> = match decoded.channels {
        1 => decoded.interleaved.iter().flat_map(|&v| [v, v]).collect(),
        n => decoded
            .interleaved
            .chunks_exact(n)
            .flat_map(|f| [f[0], f[1]])
            .collect(),
    };
    let mut out = resample(&stereo, 2, decoded.rate, sample_rate)?;
    for v in &mut out {
        *v = v.clamp(-1.0, 1.0);
    }
    Ok(out)
}

/// Decodes `path` with its edit list applied; fails on empty files and files without samples.
fn decode_checked(path: &Path) -> Result<Decoded> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if len == 0 {
        return Err(invalid(path, "the file is empty (0 bytes)"));
    }
    let mut decoded = decode(path)?;
    apply_mp4_edit_list(path, &mut decoded)?;
    if decoded.interleaved.is_empty() {
        return Err(invalid(
            path,
            "the file is empty: it contains no audio samples",
        ));
    }
    Ok(decoded)
}

/// Mono as ffmpeg's default `-ac 1` matrix makes it: stereo `(L + R)·√½`; other layouts are
/// averaged.
pub fn downmix_to_mono(interleaved: &[f32], channels: usize) -> Vec<f32> {
    match channels {
        1 => interleaved.to_vec(),
        2 => interleaved
            .chunks_exact(2)
            .map(|f| (f[0] + f[1]) * std::f32::consts::FRAC_1_SQRT_2)
            .collect(),
        n => interleaved
            .chunks_exact(n)
            .map(|f| f.iter().sum::<f32>() / n as f32)
            .collect(),
    }
}

/// Decodes every packet of the default audio track to interleaved f32.
fn decode(path: &Path) -> Result<Decoded> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let unsupported = || {
        invalid(
            path,
            "not a supported audio file (WAV, FLAC, MP3, AAC/M4A or ALAC), or its header is \
             corrupt; convert it, e.g. `ffmpeg -i <file> out.wav`",
        )
    };
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymphoniaError::IoError(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
                Error::io(path, io)
            }
            _ => unsupported(),
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| invalid(path, "the file has no audio track"))?;
    let track_id = track.id;
    // Frames the container declares, when counted in samples (time base 1/rate).
    let declared = match (track.num_frames, track.time_base) {
        (Some(n), Some(tb)) if tb.numer.get() == 1 => Some((n, tb.denom.get())),
        _ => None,
    };
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| invalid(path, "the audio track has no codec parameters"))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(
            &params,
            // Verification checks the FLAC MD5 of the decoded audio (others ignore it).
            &AudioDecoderOptions::default().verify(true),
        )
        .map_err(|e| {
            invalid(
                path,
                format!("its audio codec is not supported ({e}); convert it to WAV or FLAC"),
            )
        })?;

    let mut out = Decoded {
        interleaved: Vec::new(),
        rate: params.sample_rate.unwrap_or(0),
        channels: params.channels.as_ref().map_or(0, |c| c.count()),
    };
    let mut scratch: Vec<f32> = Vec::new();
    let at = |out: &Decoded| {
        let frames = out.interleaved.len() / out.channels.max(1);
        frames as f64 / f64::from(out.rate.max(1))
    };
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                return Err(invalid(
                    path,
                    format!("corrupt or truncated after {:.3} s: {e}", at(&out)),
                ))
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = decoder.decode(&packet).map_err(|e| {
            invalid(
                path,
                format!("corrupt audio data after {:.3} s: {e}", at(&out)),
            )
        })?;
        let spec = buf.spec();
        let (rate, channels) = (spec.rate(), spec.channels().count());
        if out.interleaved.is_empty() {
            out.rate = rate;
            out.channels = channels;
        } else if rate != out.rate || channels != out.channels {
            return Err(invalid(
                path,
                format!(
                    "the stream changes format mid-way ({} Hz x {} to {rate} Hz x {channels}); \
                     this is not supported",
                    out.rate, out.channels
                ),
            ));
        }
        buf.copy_to_vec_interleaved(&mut scratch);
        out.interleaved.extend_from_slice(&scratch);
    }
    if out.channels == 0 || out.rate == 0 {
        return Err(invalid(
            path,
            "the file is empty: it contains no audio samples",
        ));
    }
    if decoder.finalize().verify_ok == Some(false) {
        return Err(invalid(
            path,
            "corrupt audio data: the decoded audio fails the file's checksum",
        ));
    }
    if let Some((frames, rate)) = declared {
        let got = (out.interleaved.len() / out.channels) as u64;
        let want = rescale(frames, rate, out.rate);
        // Lossy decoders may trim up to a frame of padding; a real loss is much larger.
        if got + 4096.max(want / 200) < want {
            return Err(invalid(
                path,
                format!(
                    "corrupt or truncated: decoded {:.3} s of the {:.3} s the file declares",
                    got as f64 / f64::from(out.rate),
                    want as f64 / f64::from(out.rate)
                ),
            ));
        }
    }
    Ok(out)
}

/// Trims the encoder priming and padding an MP4/M4A edit list hides (no-op for other files).
fn apply_mp4_edit_list(path: &Path, d: &mut Decoded) -> Result<()> {
    let Some((range, media_timescale)) = read_audio_edit(path)? else {
        return Ok(());
    };
    let to_samples = |ticks: u64| rescale(ticks, media_timescale, d.rate) as usize;
    let frames = d.interleaved.len() / d.channels;
    let skip = to_samples(range.skip).min(frames);
    let keep = range
        .length
        .map_or(frames - skip, |l| to_samples(l).min(frames - skip));
    let silence = to_samples(range.leading_silence);
    let mut trimmed = vec![0f32; silence * d.channels];
    trimmed.extend_from_slice(&d.interleaved[skip * d.channels..(skip + keep) * d.channels]);
    d.interleaved = trimmed;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_downmix_matches_ffmpeg_matrix() {
        let m = downmix_to_mono(&[0.5, 0.0, 0.2, 0.2], 2);
        assert!((m[0] - 0.353_553_4).abs() < 1e-6);
        assert!((m[1] - 0.282_842_7).abs() < 1e-6);
        assert!((downmix_to_mono(&[0.3, 0.6, 0.9], 3)[0] - 0.6).abs() < 1e-6);
    }
}
