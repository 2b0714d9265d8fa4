//! Reference inputs: the conditioning image and the reference audio, prepared exactly as the
//! pipeline consumes them.

pub mod audio;
pub mod image;
pub mod lanczos;
pub mod resample;

pub use self::audio::{load_reference_audio, load_stereo_audio, AudioInputOptions, ReferenceAudio};
pub use self::image::{load_reference_image, ReferenceImage};
