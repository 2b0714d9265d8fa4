//! A generation request and its validation.
//!
//! Validation follows the reference where it is lenient on purpose and is strict where it would
//! fail late or silently:
//! * pixel sizes that are not multiples of 32 are rounded **down** as the reference does
//!   (`16 * (px / 16 / 2 * 2)`), and each rounding is reported (a [`RequestWarning`] in the
//!   result and a `tracing` warning);
//! * sizes that would round to 0, an empty prompt, a clip length outside [`Limits`], or an SR size
//!   with only one side given are errors (the reference silently skips SR in the last case);
//! * everything is bounded before any heavy work ([`Limits`]): the prompt's bytes here, its
//!   tokens once tokenized, the sizes and the clip length; the engine then checks the memory
//!   the request needs against its budget.

use std::fmt;

use cadence_core::{Error, Result};
use cadence_media::{DecodedAudio, DecodedImage, MediaSource};

use crate::shapes::{audio_frames_for_seconds, LatentShapes, LatentSize, PIXEL_MULTIPLE};

/// The first-frame image of a request: an encoded file (a path, or its bytes in memory such as
/// an upload) or pixels the caller already decoded. Decoded once per generation, whatever the
/// number of sizes it is needed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageInput {
    /// A PNG, JPEG or WebP file or its bytes.
    Encoded(MediaSource),
    /// RGB8 pixels.
    Decoded(DecodedImage),
}

/// The driving audio of a request: an encoded file (a path or bytes) or samples the caller
/// already decoded. Decoded once per generation, for both the model and the soundtrack.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioInput {
    /// A WAV, FLAC, MP3, AAC/M4A or ALAC file or its bytes.
    Encoded(MediaSource),
    /// Interleaved samples.
    Decoded(DecodedAudio),
}

/// `From` a path, bytes or a [`MediaSource`] (an encoded file) and from the decoded form, for
/// both input kinds.
macro_rules! input_from {
    ($input:ident, $decoded:ty) => {
        impl From<MediaSource> for $input {
            fn from(source: MediaSource) -> Self {
                Self::Encoded(source)
            }
        }

        impl From<std::path::PathBuf> for $input {
            fn from(path: std::path::PathBuf) -> Self {
                Self::Encoded(path.into())
            }
        }

        impl From<Vec<u8>> for $input {
            fn from(bytes: Vec<u8>) -> Self {
                Self::Encoded(bytes.into())
            }
        }

        impl From<$decoded> for $input {
            fn from(decoded: $decoded) -> Self {
                Self::Decoded(decoded)
            }
        }
    };
}
input_from!(ImageInput, DecodedImage);
input_from!(AudioInput, DecodedAudio);

/// What the user asks for: one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The prompt (the pipeline is tuned for the "enhanced prompt" style).
    pub prompt: String,
    /// Reference image for the first frame (TI2V), if any.
    pub image: Option<ImageInput>,
    /// User audio to drive the video (audio-driven mode), if any.
    pub audio: Option<AudioInput>,
    /// Clip length in whole seconds (in audio-driven mode: at most this much of the audio).
    pub seconds: u32,
    /// Base-stage width in pixels.
    pub width: u32,
    /// Base-stage height in pixels.
    pub height: u32,
    /// Super-resolution width in pixels (with `sr_height`).
    pub sr_width: Option<u32>,
    /// Super-resolution height in pixels (with `sr_width`).
    pub sr_height: Option<u32>,
    /// Seed of every random draw of the generation.
    pub seed: u64,
}

impl GenerationRequest {
    /// A text-to-video request with the example scripts' settings: 4 s at 448x256, seed 42.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            image: None,
            audio: None,
            seconds: 4,
            width: 448,
            height: 256,
            sr_width: None,
            sr_height: None,
            seed: 42,
        }
    }

    /// Checks the request against `limits` and derives the sizes the pipeline will use.
    pub fn validate(&self, limits: &Limits) -> Result<ValidatedRequest> {
        if self.prompt.trim().is_empty() {
            return Err(Error::InvalidInput(
                "the prompt is empty; describe the clip to generate".into(),
            ));
        }
        if self.prompt.len() > limits.max_prompt_bytes {
            return Err(Error::InvalidInput(format!(
                "the prompt is {} bytes, over the limit of {} bytes ({} tokens at most reach the                  text encoder, and the video model reads only the first {}); shorten it",
                self.prompt.len(),
                limits.max_prompt_bytes,
                limits.max_prompt_tokens,
                cadence_text::CONTEXT_ROWS
            )));
        }
        if !(limits.min_seconds..=limits.max_seconds).contains(&self.seconds) {
            return Err(Error::InvalidInput(format!(
                "seconds = {} is out of range: allowed {}..={} whole seconds",
                self.seconds, limits.min_seconds, limits.max_seconds
            )));
        }
        let mut warnings = Vec::new();
        let base = checked_size(
            SizeKind::Base,
            self.width,
            self.height,
            limits,
            &mut warnings,
        )?;
        let sr = match (self.sr_width, self.sr_height) {
            (None, None) => None,
            (Some(w), Some(h)) => Some(checked_size(
                SizeKind::SuperResolution,
                w,
                h,
                limits,
                &mut warnings,
            )?),
            (w, h) => {
                return Err(Error::InvalidInput(format!(
                    "super-resolution needs both sr_width and sr_height (got {w:?} x {h:?})"
                )))
            }
        };
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let conditioning = match (self.image.is_some(), self.audio.is_some()) {
            (false, false) => Conditioning::TextToVideo,
            (true, false) => Conditioning::TextImageToVideo,
            (false, true) => Conditioning::TextAudioToVideo,
            (true, true) => Conditioning::TextImageAudioToVideo,
        };
        Ok(ValidatedRequest {
            request: self.clone(),
            conditioning,
            base,
            sr,
            warnings,
        })
    }
}

/// Bounds a request is checked against before any heavy work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Shortest clip in seconds.
    pub min_seconds: u32,
    /// Longest clip in seconds. The reference has no bound; the released examples use 4-5 s and
    /// the attention cost grows with the square of the length, so the default stops runaway
    /// requests at 20 s. Raise it deliberately for longer clips.
    pub max_seconds: u32,
    /// Longest prompt in bytes, checked before tokenizing (cheap, and bounds the tokenizer).
    pub max_prompt_bytes: usize,
    /// Most prompt tokens the text encoder is given. The DiT reads the first
    /// [`cadence_text::CONTEXT_ROWS`] (640) rows of the encoding; the reference encodes the
    /// whole prompt first (later tokens still shape earlier rows through attention), so longer
    /// prompts are accepted up to this cap, which keeps the encoder's attention (quadratic in
    /// tokens) below 1 GB at the real size.
    pub max_prompt_tokens: usize,
    /// Longest side of any stage in pixels.
    pub max_side_px: u32,
    /// Most pixels of any stage (width x height).
    pub max_pixels: u64,
}

impl Default for Limits {
    /// 1-20 s; prompts up to 16 KiB and 2048 tokens; stages up to the largest the published
    /// models make (the 1080p super-resolution output, 1920x1088).
    fn default() -> Self {
        Self {
            min_seconds: 1,
            max_seconds: 20,
            max_prompt_bytes: 16 << 10,
            max_prompt_tokens: 2048,
            max_side_px: 1920,
            max_pixels: 1920 * 1088,
        }
    }
}

/// Which inputs condition the clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditioning {
    /// Prompt only: video and audio are generated.
    TextToVideo,
    /// Prompt + first-frame image.
    TextImageToVideo,
    /// Prompt + user audio: the video follows the given audio.
    TextAudioToVideo,
    /// Prompt + first-frame image + user audio.
    TextImageAudioToVideo,
}

impl Conditioning {
    /// Whether the first latent frame is pinned to an encoded image.
    pub fn has_image(self) -> bool {
        matches!(
            self,
            Conditioning::TextImageToVideo | Conditioning::TextImageAudioToVideo
        )
    }

    /// Whether the audio comes from the user (audio-driven).
    pub fn has_user_audio(self) -> bool {
        matches!(
            self,
            Conditioning::TextAudioToVideo | Conditioning::TextImageAudioToVideo
        )
    }
}

/// Which size of a request a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeKind {
    /// `width x height`.
    Base,
    /// `sr_width x sr_height`.
    SuperResolution,
}

/// Something the pipeline changed about a request instead of refusing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestWarning {
    /// A size was not a multiple of 32 px and was rounded down.
    SizeRounded {
        /// Which size.
        kind: SizeKind,
        /// Requested `(width, height)` in pixels.
        requested: (u32, u32),
        /// Used `(width, height)` in pixels.
        used: (usize, usize),
    },
}

impl fmt::Display for RequestWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestWarning::SizeRounded {
                kind,
                requested,
                used,
            } => {
                let what = match kind {
                    SizeKind::Base => "size",
                    SizeKind::SuperResolution => "super-resolution size",
                };
                write!(
                    f,
                    "{what} {}x{} is not a multiple of {PIXEL_MULTIPLE} px; using {}x{}",
                    requested.0, requested.1, used.0, used.1
                )
            }
        }
    }
}

/// A request that passed validation, with the sizes the pipeline will actually use.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedRequest {
    /// The request as given.
    pub request: GenerationRequest,
    /// Which inputs condition the clip.
    pub conditioning: Conditioning,
    /// Base latent size (pixels: `16 h x 16 w`).
    pub base: LatentSize,
    /// SR latent size, when asked for.
    pub sr: Option<LatentSize>,
    /// What was changed (also logged with `tracing::warn`).
    pub warnings: Vec<RequestWarning>,
}

impl ValidatedRequest {
    /// The latent shapes of the generation.
    ///
    /// `user_audio_frames` is the length of the encoded user audio: required in audio-driven
    /// modes (it sets the clip length), refused otherwise (`A = 25 * seconds + 1` then).
    pub fn shapes(&self, user_audio_frames: Option<usize>) -> Result<LatentShapes> {
        let frames =
            match (self.conditioning.has_user_audio(), user_audio_frames) {
                (true, Some(frames)) => frames,
                (false, None) => audio_frames_for_seconds(self.request.seconds as usize),
                (true, None) => return Err(Error::InvalidInput(
                    "audio-driven request: the encoded user audio length is needed for the shapes"
                        .into(),
                )),
                (false, Some(_)) => {
                    return Err(Error::InvalidInput(
                        "the request has no user audio, but an audio length was given".into(),
                    ))
                }
            };
        LatentShapes::new(frames, self.base, self.sr)
    }
}

fn checked_size(
    kind: SizeKind,
    width: u32,
    height: u32,
    limits: &Limits,
    warnings: &mut Vec<RequestWarning>,
) -> Result<LatentSize> {
    let what = match kind {
        SizeKind::Base => "size",
        SizeKind::SuperResolution => "super-resolution size",
    };
    if width.max(height) > limits.max_side_px
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(Error::InvalidInput(format!(
            "{what} {width}x{height} is larger than the models make: at most {} px a side and              {} pixels (1920x1088); choose a smaller size or a resolution preset",
            limits.max_side_px, limits.max_pixels
        )));
    }
    let size = LatentSize::from_pixels(width as usize, height as usize).map_err(|e| match e {
        Error::InvalidInput(m) if kind == SizeKind::SuperResolution => {
            Error::InvalidInput(format!("super-resolution {m}"))
        }
        other => other,
    })?;
    let used = (size.width_px(), size.height_px());
    if used != (width as usize, height as usize) {
        warnings.push(RequestWarning::SizeRounded {
            kind,
            requested: (width, height),
            used,
        });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_and_reports() {
        let mut r = GenerationRequest::new("a cat");
        r.width = 480;
        r.height = 272;
        let v = r.validate(&Limits::default()).unwrap();
        assert_eq!((v.base.width_px(), v.base.height_px()), (480, 256));
        assert_eq!(
            v.warnings,
            vec![RequestWarning::SizeRounded {
                kind: SizeKind::Base,
                requested: (480, 272),
                used: (480, 256)
            }]
        );
        assert!(v.warnings[0].to_string().contains("480x256"));
    }

    #[test]
    fn exact_sizes_do_not_warn() {
        let mut r = GenerationRequest::new("a cat");
        r.sr_width = Some(896);
        r.sr_height = Some(512);
        let v = r.validate(&Limits::default()).unwrap();
        assert!(v.warnings.is_empty());
        assert_eq!(v.sr.map(|s| (s.width, s.height)), Some((56, 32)));
        assert_eq!(v.conditioning, Conditioning::TextToVideo);
        let shapes = v.shapes(None).unwrap();
        assert_eq!(shapes.base_video(), [1, 48, 26, 16, 28]);
        assert_eq!(shapes.sr_video(), Some([1, 48, 26, 32, 56]));
    }

    #[test]
    fn rejects_bad_requests() {
        let limits = Limits::default();
        let mut r = GenerationRequest::new("  ");
        assert!(r.validate(&limits).is_err());
        r.prompt = "ok".into();
        r.seconds = 0;
        let e = r.validate(&limits).unwrap_err().to_string();
        assert!(e.contains("seconds = 0"), "{e}");
        r.seconds = 21;
        assert!(r.validate(&limits).is_err());
        r.seconds = 4;
        r.width = 16;
        assert!(r.validate(&limits).is_err());
        r.width = 448;
        r.sr_width = Some(896);
        let e = r.validate(&limits).unwrap_err().to_string();
        assert!(e.contains("sr_height"), "{e}");
        r.sr_width = None;
        (r.width, r.height) = (100_000, 100_000);
        let e = r.validate(&limits).unwrap_err().to_string();
        assert!(e.contains("100000x100000") && e.contains("1920"), "{e}");
        (r.width, r.height) = (1920, 1920);
        assert!(
            r.validate(&limits).is_err(),
            "each side fits but the area does not"
        );
        (r.width, r.height) = (448, 256);
        r.prompt = "a".repeat(200_000);
        let e = r.validate(&limits).unwrap_err().to_string();
        assert!(e.contains("200000 bytes") && e.contains("16384"), "{e}");
    }

    #[test]
    fn audio_driven_shapes_need_the_audio_length() {
        let mut r = GenerationRequest::new("speak");
        r.audio = Some(std::path::PathBuf::from("voice.wav").into());
        let v = r.validate(&Limits::default()).unwrap();
        assert_eq!(v.conditioning, Conditioning::TextAudioToVideo);
        assert!(v.shapes(None).is_err());
        let s = v.shapes(Some(100)).unwrap();
        assert_eq!((s.audio_frames, s.latent_frames), (100, 25));
    }
}
