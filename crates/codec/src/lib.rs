//! Cadence codecs: the Wan2.2 VAE, Turbo-VAED and the Stable Audio Open "Oobleck" VAE.
pub mod audio_glue;
pub mod conv;
pub mod loader;
pub mod oobleck;
pub mod turbo;
pub mod video;
pub mod wan;

pub use audio_glue::{encode_reference_audio, latent_to_waveform_44100, ReferenceAudioConfig};
pub use loader::StateDict;
pub use oobleck::{Oobleck, OobleckConfig};
pub use turbo::{TurboConfig, TurboVaed};
pub use wan::{WanConfig, WanVae};
