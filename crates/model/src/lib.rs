//! The daVinci-MagiHuman diffusion transformer (DiT): a 40-layer single-stream transformer that
//! denoises video and audio latents together with text features in one token sequence.
//!
//! - [`config`] / [`variant`]: the architecture and the four published presets.
//! - [`packing`]: latents and text to the token stream (patchify, coordinates, modality spans,
//!   local-attention ranges) and back; reused by the pipeline and the super-resolution stage.
//! - [`rope`]: the Fourier rope table.
//! - [`weights`]: checkpoint key names and shapes, derived from the config.
//! - [`layer`] / [`dit`]: the forward pass (a layer with its per-modality experts, the whole
//!   model), written against the op boundary of `cadence-kernels` so device kernels slot in
//!   without touching this crate.
//! - [`precision`]: dense (bf16) or FP8 GEMM weights, chosen at load ([`LoadOptions`]);
//!   [`fp8_checkpoint`] writes FP8 checkpoints; [`footprint`] is the device memory of the
//!   weights and of one forward pass, for the pipeline's memory plan.
//!
//! The forward pass follows the fixtures' SPEC exactly, including every bf16 rounding point
//! of the reference, and is proven by parity tests against the official implementation.

#![warn(missing_docs)]

pub mod config;
pub mod dit;
pub mod flops;
pub mod footprint;
pub mod fp8_checkpoint;
pub mod layer;
pub mod packing;
pub mod precision;
pub mod rope;
pub mod variant;
pub mod weights;

pub use config::DitConfig;
pub use dit::{DitModel, DitOutput};
pub use packing::{pack, unpack, Packed, PackingConfig};
pub use precision::{LoadOptions, WeightFormat};
pub use variant::DitVariant;
