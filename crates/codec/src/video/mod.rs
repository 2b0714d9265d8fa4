//! Pieces both video codecs share: the latent normalisation, patchify, frame output.

pub mod frame_groups;
pub mod frames;
pub mod latent_norm;
pub mod patchify;
pub mod upsample;

pub use frames::{frames_u8, VideoChunk};
pub use latent_norm::LatentNorm;
pub use patchify::{patchify, unpatchify};
