//! Cadence codecs: the three autoencoders around the daVinci-MagiHuman DiT.
//!
//! | codec | type | used for | checkpoint |
//! |---|---|---|---|
//! | Turbo-VAED | [`TurboVaed`] | default video decoder (latents -> RGB) | `turbo_vae/checkpoint-340000.ckpt` + JSON config |
//! | Wan2.2 VAE | [`WanVae`] | conditioning image / video encoder, fallback decoder | `Wan2.2-TI2V-5B/Wan2.2_VAE.pth` |
//! | Oobleck | [`Oobleck`] | audio latents <-> waveform | `stable-audio-open-1.0/model.safetensors` + `model_config.json` |
//!
//! Everything is written against candle's device-agnostic tensor ops; the one op candle lacks,
//! 3-D convolution, lives behind the op boundary ([`cadence_kernels::conv3d`]). The video codecs
//! take their compute dtype as a parameter (bf16 in production; f32 reproduces the reference
//! fixtures); the audio VAE runs in f32. Loaders for the three real container formats are in
//! [`loader`], with a restricted unpickler that never executes anything.
//!
//! ```no_run
//! # fn main() -> cadence_core::Result<()> {
//! use cadence_codec::{TurboVaed, WanConfig, WanVae, Oobleck};
//! use cadence_core::CancelToken;
//! use candle_core::{DType, Device};
//! let dev = Device::Cpu;
//! let turbo = TurboVaed::load("turbo_vae/checkpoint-340000.ckpt",
//!     "turbo_vae/TurboV3-Wan22-TinyShallow_7_7.json", DType::BF16, &dev)?;
//! # let latent = candle_core::Tensor::zeros((1, 48, 2, 4, 6), DType::F32, &dev)?;
//! let cancel = CancelToken::new(); // another thread may cancel() it: the decode stops soon
//! turbo.decode_streaming(&latent, &cancel, |chunk| {
//!     let frames = chunk.frames_u8()?; // [B, t, H, W, 3] uint8, frames chunk.first_frame..
//!     # let _ = frames;
//!     Ok(())
//! })?;
//! let wan = WanVae::load("Wan2.2-TI2V-5B/Wan2.2_VAE.pth", &WanConfig::wan22_ti2v_5b(),
//!     DType::BF16, &dev)?;
//! let audio = Oobleck::load("stable-audio-open-1.0/model.safetensors",
//!     "stable-audio-open-1.0/model_config.json", &dev)?;
//! # let _ = (wan, audio);
//! # Ok(()) }
//! ```
//!
//! # Memory: decoding 5 s of 1080p
//!
//! A 5 s clip at 25 fps and 1920×1088 has `25·5/4 + 1 = 32` latent frames of `68×120`
//! and decodes to 125 frames. Both decoders work on a bounded piece of time and hand finished
//! frames to the caller (`decode_streaming`) before computing the next piece, so no activation
//! ever spans the clip.
//!
//! **Turbo-VAED** (default). The latent is padded to 35 frames and decoded in 5 independent
//! windows of at most 9 latents = 36 output frames. Inside a window the largest activation is
//! the input of `up_blocks.2`'s resnets after its spatial upsampler: 128 channels × 36 frames ×
//! 544 × 960 = **A = 2.41·10⁹ values** (4.8 GB in bf16, 9.6 GB in f32). The code keeps at most
//! three tensors of that size alive (a resnet's input, the normalised/activated tensor, the conv
//! output; then input, conv output, sum), because norms and activations run a few frames at a
//! time ([`video::frame_groups`], ≤ 64 MiB per group) and [`cadence_kernels::conv3d`] writes
//! into a preallocated output with per-frame-group temporaries (≈ 6 frames of 134 MB in bf16).
//! Peak activation memory: `3·A` + temporaries ≈ **15 GB in bf16** (GPU production),
//! ≈ 30 GB in f32. The streamed chunk is at most 28 frames (`[1, 3, 28, 1088, 1920]` f32,
//! 0.7 GB; 0.18 GB as uint8). Decoding the whole clip at once would instead need 137 frames at
//! that stage: one such activation alone is 9.2·10⁹ values (18 GB in bf16), three are 55 GB.
//!
//! **Wan2.2 VAE** (fallback). The decoder runs one latent frame (4 output frames) at a time.
//! The largest per-chunk activation is 512 channels × 4 frames × 544 × 960 = 1.07·10⁹ values
//! (2.1 GB bf16), about four of which are alive at once (8.6 GB); the temporal caches hold two
//! input frames per causal conv, 3.7·10⁹ values summed over all 32 of them (7.5 GB bf16, most
//! of it in the 544×960 stages). Peak ≈ **16 GB in bf16**, independent of the clip length.
//!
//! The collecting `decode` helpers materialise the whole float video (125 frames: 3.1 GB f32);
//! the pipeline uses `decode_streaming`.

pub mod audio_path;
pub mod conv;
pub mod loader;
pub mod oobleck;
pub mod turbo;
pub mod video;
pub mod wan;

pub use audio_path::{encode_reference_audio, latent_to_waveform_44100, ReferenceAudioConfig};
pub use loader::StateDict;
pub use oobleck::{Oobleck, OobleckConfig};
pub use turbo::{TurboConfig, TurboVaed};
pub use wan::{WanConfig, WanVae};
