//! A request made ready before any model runs: checked against the limits, its image and
//! audio read and decoded, so a broken input fails in a second, not after minutes of loading.

use std::path::{Path, PathBuf};

use cadence_core::{Error, Result};
use cadence_media::{
    load_reference_audio, load_reference_image, AudioInputOptions, ReferenceAudio,
};

use crate::request::{GenerationRequest, InputSource, Limits, ValidatedRequest};

/// A validated request with its inputs read.
pub struct PreparedRequest {
    pub(super) valid: ValidatedRequest,
    pub(super) inputs: DecodedInputs,
}

impl PreparedRequest {
    /// Validates `request` against `limits` and reads its image and audio.
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

/// The request's inputs, read once.
pub(super) struct DecodedInputs {
    pub(super) image: Option<ImageInput>,
    pub(super) audio: Option<AudioInput>,
}

impl DecodedInputs {
    fn read(valid: &ValidatedRequest) -> Result<Self> {
        let image = valid
            .request
            .image
            .as_ref()
            .map(|source| -> Result<ImageInput> {
                let path = path_only(source)?;
                // Checked now, at the base size, so a broken image fails before any work.
                let (w, h) = (valid.base.width_px() as u32, valid.base.height_px() as u32);
                load_reference_image(path, w, h)?;
                Ok(ImageInput(path.to_path_buf()))
            })
            .transpose()?;
        let audio = valid
            .request
            .audio
            .as_ref()
            .map(|source| -> Result<AudioInput> {
                let path = path_only(source)?;
                let reference = load_reference_audio(path, &AudioInputOptions::default())?;
                Ok(AudioInput {
                    path: path.to_path_buf(),
                    reference,
                })
            })
            .transpose()?;
        Ok(Self { image, audio })
    }
}

/// The path of a file input (in-memory inputs arrive with the media crate's decoders).
fn path_only(source: &InputSource) -> Result<&Path> {
    match source {
        InputSource::Path(p) => Ok(p),
        InputSource::Bytes(_) => Err(Error::InvalidInput(
            "in-memory inputs are not supported yet; give a file".into(),
        )),
    }
}

/// The reference image.
pub(super) struct ImageInput(pub(super) PathBuf);

/// The user's audio.
pub(super) struct AudioInput {
    pub(super) path: PathBuf,
    pub(super) reference: ReferenceAudio,
}
