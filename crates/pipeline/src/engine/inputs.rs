//! A request made ready before any model runs: checked against the limits, its image and
//! audio decoded once (from a file, from bytes in memory, or given decoded), so a broken input
//! fails in a second, not after minutes of loading.

use cadence_core::Result;
use cadence_media::{AudioInputOptions, DecodedAudio, DecodedImage, ReferenceAudio};

use crate::request::{AudioInput, GenerationRequest, ImageInput, Limits, ValidatedRequest};

/// A validated request with its inputs decoded.
pub struct PreparedRequest {
    pub(super) valid: ValidatedRequest,
    pub(super) inputs: DecodedInputs,
}

impl PreparedRequest {
    /// Validates `request` against `limits` and decodes its image and audio.
    pub fn new(request: &GenerationRequest, limits: &Limits) -> Result<Self> {
        let valid = request.validate(limits)?;
        let inputs = DecodedInputs::read(&valid)?;
        Ok(Self { valid, inputs })
    }

    /// The request, with the sizes the pipeline will use.
    pub fn validated(&self) -> &ValidatedRequest {
        &self.valid
    }
}

/// The request's inputs, decoded once.
pub(super) struct DecodedInputs {
    /// The first frame, cut to each stage's size when encoded.
    pub(super) image: Option<DecodedImage>,
    pub(super) audio: Option<UserAudioInput>,
}

/// The user's audio: decoded once, and the model's mono input made from it.
pub(super) struct UserAudioInput {
    /// For the clip's soundtrack.
    pub(super) decoded: DecodedAudio,
    /// For the audio encoder.
    pub(super) reference: ReferenceAudio,
}

impl DecodedInputs {
    fn read(valid: &ValidatedRequest) -> Result<Self> {
        let image = match &valid.request.image {
            None => None,
            Some(ImageInput::Encoded(source)) => Some(DecodedImage::decode(source)?),
            Some(ImageInput::Decoded(pixels)) => Some(pixels.clone()),
        };
        if let Some(image) = &image {
            // Cut once at the base size now, so an unusable image fails before any work.
            image.reference(valid.base.width_px() as u32, valid.base.height_px() as u32)?;
        }
        let audio = match &valid.request.audio {
            None => None,
            Some(input) => {
                let decoded = match input {
                    AudioInput::Encoded(source) => DecodedAudio::decode(source)?,
                    AudioInput::Decoded(samples) => samples.clone(),
                };
                let reference = decoded.reference(&AudioInputOptions::default())?;
                Some(UserAudioInput { decoded, reference })
            }
        };
        Ok(Self { image, audio })
    }
}
