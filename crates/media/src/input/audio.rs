//! The reference audio: decode any common file (or its bytes in memory) once, honour MP4 edit
//! lists, then downmix to mono and resample to the rate the audio VAE runs at, or keep stereo
//! at the clip's rate.
//!
//! The reference pipeline loads reference audio with whisper's `load_audio` (codecs/SPEC.md
//! §5.4): ffmpeg decodes, downmixes to **mono** (`-ac 1`, which for stereo is `(L + R)·√½`,
//! not the average), resamples to **51200 Hz** and saturates to 16-bit PCM. This loader does the
//! same in f32 without ffmpeg: symphonia decodes WAV, FLAC, MP3 (gapless), AAC/M4A and ALAC; the
//! M4A edit list (encoder priming), which symphonia's MP4 reader parses but does not apply, is
//! applied here; rubato resamples; the result is clipped to [-1, 1].

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;
use std::sync::Arc;

use cadence_core::{Error, Result};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::resample::resample;
use super::source::MediaSource;
use crate::mp4::edit_list::{read_audio_edit, rescale, PresentedRange};

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

/// Longest input decoded, in interleaved samples: five minutes of 48 kHz stereo (115 MB as
/// f32). A clip uses seconds of audio; the cap keeps a tiny file that claims hours of audio (or
/// compresses silence) from exhausting memory.
pub const MAX_INPUT_SAMPLES: usize = 300 * 48_000 * 2;

/// Loudest sample accepted, 60 dB over full scale: over-range float audio (a few dB) is
/// real, this much is corrupt data.
pub const MAX_SAMPLE_MAGNITUDE: f32 = 1000.0;

/// Sample rates accepted, in Hz: telephone audio to twice the highest studio rate. The
/// resampler's work grows with the rate, so a header claiming gigahertz would stall it.
pub const INPUT_RATES: std::ops::RangeInclusive<u32> = 1000..=768_000;

/// Most channels accepted (7.1 surround).
pub const MAX_INPUT_CHANNELS: usize = 8;

/// Reference audio decoded once, at the file's own rate and channels, from which the model's
/// mono input ([`DecodedAudio::reference`]) and the clip's stereo soundtrack
/// ([`DecodedAudio::stereo`]) are both made.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    interleaved: Vec<f32>,
    rate: u32,
    channels: usize,
    /// How error messages name the input.
    name: String,
}

impl DecodedAudio {
    /// Decodes a WAV, FLAC, MP3, AAC/M4A or ALAC file or in-memory bytes, with its MP4 edit
    /// list applied; fails on empty, corrupt, unsupported and over-long inputs.
    pub fn decode(source: &MediaSource) -> Result<Self> {
        if source.len()? == 0 {
            return Err(invalid(
                source,
                "the file is empty (0 bytes); give a WAV, FLAC, MP3 or M4A file",
            ));
        }
        let mut decoded = match source {
            MediaSource::Path(p) => {
                let file = File::open(p).map_err(|e| Error::io(p, e))?;
                decode(source, Box::new(file))?
            }
            MediaSource::Bytes(b) => decode(source, Box::new(Cursor::new(Arc::clone(b))))?,
        };
        let edit = match source {
            MediaSource::Path(p) => {
                let file = File::open(p).map_err(|e| Error::io(p, e))?;
                read_audio_edit(&mut BufReader::new(file), source)?
            }
            MediaSource::Bytes(b) => read_audio_edit(&mut Cursor::new(b.as_ref()), source)?,
        };
        if let Some((range, media_timescale)) = edit {
            decoded.apply_edit(&range, media_timescale);
            // An edit may add leading silence.
            decoded.check_limits()?;
        }
        if decoded.interleaved.is_empty() {
            return Err(invalid(
                source,
                "the file is empty: it contains no audio samples",
            ));
        }
        Ok(decoded)
    }

    /// Wraps samples a caller already decoded: interleaved f32 in [-1, 1] at `rate` Hz.
    pub fn from_interleaved(samples: Vec<f32>, rate: u32, channels: usize) -> Result<Self> {
        let name = "(caller-supplied samples)";
        if rate == 0 || !(1..=MAX_INPUT_CHANNELS).contains(&channels) {
            return Err(Error::InvalidInput(format!(
                "reference audio {name}: {rate} Hz x {channels} channels; the rate must be \
                 positive and the channels 1..={MAX_INPUT_CHANNELS}"
            )));
        }
        if samples.is_empty() || !samples.len().is_multiple_of(channels) {
            return Err(Error::InvalidInput(format!(
                "reference audio {name}: {} samples is not a non-empty whole number of \
                 {channels}-channel frames",
                samples.len()
            )));
        }
        let audio = Self {
            interleaved: samples,
            rate,
            channels,
            name: name.into(),
        };
        audio.check_limits()?;
        Ok(audio)
    }

    /// The file's sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// The file's channel count.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Interleaved samples at [`sample_rate`](Self::sample_rate).
    pub fn samples(&self) -> &[f32] {
        &self.interleaved
    }

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        (self.interleaved.len() / self.channels) as f64 / f64::from(self.rate)
    }

    /// The model's input: mono at `opts.sample_rate`, with clear errors for too short and
    /// silent audio.
    pub fn reference(&self, opts: &AudioInputOptions) -> Result<ReferenceAudio> {
        let mono = downmix_to_mono(&self.interleaved, self.channels);
        let mut samples = resample(&mono, 1, self.rate, opts.sample_rate)?;
        for v in &mut samples {
            *v = v.clamp(-1.0, 1.0);
        }
        if samples.len() < opts.min_samples {
            return Err(self.invalid(format!(
                "too short: {:.1} ms of audio, at least {:.1} ms ({} samples at {} Hz) are needed",
                samples.len() as f64 * 1000.0 / f64::from(opts.sample_rate),
                opts.min_samples as f64 * 1000.0 / f64::from(opts.sample_rate),
                opts.min_samples,
                opts.sample_rate
            )));
        }
        let peak = mono.iter().fold(0f32, |m, v| m.max(v.abs()));
        if peak < opts.silence_peak {
            return Err(self.invalid(format!(
                "the audio is silent (peak {:.1} dBFS, below the {:.1} dBFS threshold)",
                20.0 * f64::from(peak.max(1e-12)).log10(),
                20.0 * f64::from(opts.silence_peak).log10()
            )));
        }
        Ok(ReferenceAudio {
            samples,
            sample_rate: opts.sample_rate,
            source_rate: self.rate,
            source_channels: self.channels,
        })
    }

    /// Interleaved **stereo** at `sample_rate`, for putting the user's own sound into the clip:
    /// mono plays on both channels, more channels keep their first two (front left and right),
    /// nothing is downmixed. Clipped to [-1, 1].
    pub fn stereo(&self, sample_rate: u32) -> Result<Vec<f32>> {
        let stereo: Vec<f32> = match self.channels {
            1 => self.interleaved.iter().flat_map(|&v| [v, v]).collect(),
            n => self
                .interleaved
                .chunks_exact(n)
                .flat_map(|f| [f[0], f[1]])
                .collect(),
        };
        let mut out = resample(&stereo, 2, self.rate, sample_rate)?;
        for v in &mut out {
            *v = v.clamp(-1.0, 1.0);
        }
        Ok(out)
    }

    fn invalid(&self, what: impl std::fmt::Display) -> Error {
        Error::InvalidInput(format!("reference audio {}: {what}", self.name))
    }

    /// Refuses sample rates outside [`INPUT_RATES`], more than [`MAX_INPUT_SAMPLES`], and NaN,
    /// infinite or absurdly loud samples (a float WAV can hold any f32: they would poison the
    /// model, and values near f32's range overflow the resampler's FFT).
    fn check_limits(&self) -> Result<()> {
        if !INPUT_RATES.contains(&self.rate) {
            return Err(self.invalid(format!(
                "the sample rate {} Hz is outside {}..={} Hz: the file is corrupt, or resample \
                 it, e.g. `ffmpeg -i <file> -ar 48000 out.wav`",
                self.rate,
                INPUT_RATES.start(),
                INPUT_RATES.end()
            )));
        }
        if self.interleaved.len() > MAX_INPUT_SAMPLES {
            return Err(self.invalid(too_long(self.rate, self.channels)));
        }
        let bad = |v: &f32| !v.is_finite() || v.abs() > MAX_SAMPLE_MAGNITUDE;
        if let Some(i) = self.interleaved.iter().position(bad) {
            return Err(self.invalid(format!(
                "sample {} of channel {} is {}: samples must be finite and within \
                 ±{MAX_SAMPLE_MAGNITUDE} (60 dB over full scale); the file is corrupt, or not audio",
                i / self.channels,
                i % self.channels,
                self.interleaved[i]
            )));
        }
        Ok(())
    }

    /// Trims the encoder priming and padding an MP4/M4A edit list hides.
    fn apply_edit(&mut self, range: &PresentedRange, media_timescale: u32) {
        let to_samples = |ticks: u64| rescale(ticks, media_timescale, self.rate) as usize;
        let frames = self.interleaved.len() / self.channels;
        let skip = to_samples(range.skip).min(frames);
        let keep = range
            .length
            .map_or(frames - skip, |l| to_samples(l).min(frames - skip));
        // Leading silence counts against the size cap like decoded samples.
        let silence = to_samples(range.leading_silence).min(MAX_INPUT_SAMPLES / self.channels);
        let mut trimmed = vec![0f32; silence * self.channels];
        trimmed.extend_from_slice(
            &self.interleaved[skip * self.channels..(skip + keep) * self.channels],
        );
        self.interleaved = trimmed;
    }
}

fn invalid(source: &MediaSource, what: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("reference audio {source}: {what}"))
}

fn too_long(rate: u32, channels: usize) -> String {
    format!(
        "longer than this loader decodes ({:.0} s at {rate} Hz x {channels} channels, \
         {MAX_INPUT_SAMPLES} samples); trim it, e.g. `ffmpeg -i <file> -t 60 out.wav`",
        MAX_INPUT_SAMPLES as f64 / channels.max(1) as f64 / f64::from(rate.max(1))
    )
}

/// Loads `path` as mono audio at `opts.sample_rate` (decodes on every call; decode once with
/// [`DecodedAudio`] when the stereo soundtrack is needed too).
pub fn load_reference_audio(path: &Path, opts: &AudioInputOptions) -> Result<ReferenceAudio> {
    DecodedAudio::decode(&MediaSource::from(path))?.reference(opts)
}

/// Loads `path` as interleaved stereo at `sample_rate` (see [`DecodedAudio::stereo`]).
pub fn load_stereo_audio(path: &Path, sample_rate: u32) -> Result<Vec<f32>> {
    DecodedAudio::decode(&MediaSource::from(path))?.stereo(sample_rate)
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

/// [`decode_packets`], with a panic inside the decoder turned into an error naming the input.
///
/// symphonia has panicked on malformed headers (a WAVE channel mask of more than 32 channels
/// overflows a shift in its RIFF reader, found by `cadence-fuzz`); a bad file must be refused,
/// never abort the caller. Nothing of the decoder survives the panic: its state is dropped.
fn decode(
    source: &MediaSource,
    stream: Box<dyn symphonia::core::io::MediaSource>,
) -> Result<DecodedAudio> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_packets(source, stream)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown");
        Err(invalid(
            source,
            format!(
                "the decoder failed on malformed data ({what}): the file is corrupt; \
                     convert it, e.g. `ffmpeg -i <file> out.wav`"
            ),
        ))
    })
}

/// Decodes every packet of the default audio track to interleaved f32.
fn decode_packets(
    source: &MediaSource,
    stream: Box<dyn symphonia::core::io::MediaSource>,
) -> Result<DecodedAudio> {
    let mss = MediaSourceStream::new(stream, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = source
        .path()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
    {
        hint.with_extension(ext);
    }

    let unsupported = || {
        invalid(
            source,
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
                source.io_error(io)
            }
            _ => unsupported(),
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| invalid(source, "the file has no audio track"))?;
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
        .ok_or_else(|| invalid(source, "the audio track has no codec parameters"))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(
            &params,
            // Verification checks the FLAC MD5 of the decoded audio (others ignore it).
            &AudioDecoderOptions::default().verify(true),
        )
        .map_err(|e| {
            invalid(
                source,
                format!("its audio codec is not supported ({e}); convert it to WAV or FLAC"),
            )
        })?;

    let mut out = DecodedAudio {
        interleaved: Vec::new(),
        rate: params.sample_rate.unwrap_or(0),
        channels: params.channels.as_ref().map_or(0, |c| c.count()),
        name: source.to_string(),
    };
    let mut scratch: Vec<f32> = Vec::new();
    let at = |out: &DecodedAudio| {
        let frames = out.interleaved.len() / out.channels.max(1);
        frames as f64 / f64::from(out.rate.max(1))
    };
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                return Err(invalid(
                    source,
                    format!("corrupt or truncated after {:.3} s: {e}", at(&out)),
                ))
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = decoder.decode(&packet).map_err(|e| {
            invalid(
                source,
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
                source,
                format!(
                    "the stream changes format mid-way ({} Hz x {} to {rate} Hz x {channels}); \
                     this is not supported",
                    out.rate, out.channels
                ),
            ));
        }
        if channels > MAX_INPUT_CHANNELS {
            return Err(invalid(
                source,
                format!(
                    "{channels} channels; at most {MAX_INPUT_CHANNELS} are supported: downmix \
                     it, e.g. `ffmpeg -i <file> -ac 2 out.wav`"
                ),
            ));
        }
        buf.copy_to_vec_interleaved(&mut scratch);
        if out.interleaved.len() + scratch.len() > MAX_INPUT_SAMPLES {
            return Err(invalid(source, too_long(rate, channels)));
        }
        out.interleaved.extend_from_slice(&scratch);
    }
    if out.channels == 0 || out.rate == 0 {
        return Err(invalid(
            source,
            "the file is empty: it contains no audio samples",
        ));
    }
    if decoder.finalize().verify_ok == Some(false) {
        return Err(invalid(
            source,
            "corrupt audio data: the decoded audio fails the file's checksum",
        ));
    }
    if let Some((frames, rate)) = declared {
        let got = (out.interleaved.len() / out.channels) as u64;
        let want = rescale(frames, rate, out.rate);
        // Lossy decoders may trim up to a frame of padding; a real loss is much larger.
        if got + 4096.max(want / 200) < want {
            return Err(invalid(
                source,
                format!(
                    "corrupt or truncated: decoded {:.3} s of the {:.3} s the file declares",
                    got as f64 / f64::from(out.rate),
                    want as f64 / f64::from(out.rate)
                ),
            ));
        }
    }
    out.check_limits()?;
    Ok(out)
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
