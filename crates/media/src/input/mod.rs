//! Reference inputs: the conditioning image and the reference audio, from a file or in-memory
//! bytes ([`MediaSource`]), each decoded once and prepared exactly as the pipeline consumes them.

pub mod audio;
pub mod image;
pub mod lanczos;
pub mod resample;
pub mod source;

pub use self::audio::{
    load_reference_audio, load_stereo_audio, AudioInputOptions, DecodedAudio, ReferenceAudio,
};
pub use self::image::{load_reference_image, DecodedImage, ReferenceImage};
pub use self::source::MediaSource;
