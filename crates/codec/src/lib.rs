//! Cadence codecs: the Wan2.2 VAE, Turbo-VAED and the Stable Audio Open "Oobleck" VAE.
pub mod conv;
pub mod loader;
pub mod turbo;
pub mod video;
pub mod wan;

pub use loader::StateDict;
pub use turbo::{TurboConfig, TurboVaed};
pub use wan::{WanConfig, WanVae};
