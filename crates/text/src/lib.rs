//! The text side of daVinci-MagiHuman: the T5Gemma-9B encoder, its tokenizer, and the prompt
//! path that turns a prompt into the DiT's text context.
//!
//! The prompt is encoded by the encoder half of `google/t5gemma-9b-9b-ul2` (Gemma-2 style,
//! bidirectional, 42 layers, 9.24 B parameters), exactly as the official pipeline runs it:
//!
//! 1. [`Tokenizer::encode`]: the bare tokens, no `<bos>`/`<eos>` (T5Gemma's tokenizer flags),
//!    no truncation.
//! 2. [`TextEncoder::forward`]: embedding times `sqrt(H)` rounded to the model dtype, 42
//!    sandwich-normed layers (sliding window on even layers, full on odd ones), final RMSNorm.
//!    Attention is **not** soft-capped: the reference's attention backend drops the config's
//!    soft-cap. [`AttentionMode::EagerSoftcap`] applies it for comparison.
//! 3. [`EncodedPrompt::from_hidden`]: cast to f16, zero-pad or trim to [`CONTEXT_ROWS`] rows,
//!    `original_len = min(tokens, 640)`.
//!
//! [`PromptEncoder`] chains the three. The negative prompt of classifier-free guidance ships
//! as [`NEGATIVE_PROMPT`]; its context is cached on disk by [`NegativePromptCache`], keyed by
//! the weights' fingerprint, so the encoder runs for it once per checkpoint.
//!
//! # Loading
//!
//! [`TextEncoder::open`] takes the checkpoint folder (9 bf16 shards plus
//! `model.safetensors.index.json`, holding the whole encoder-decoder). The files are memory
//! mapped; only the 464 `model.encoder.*` tensors are read, after their names and shapes are
//! checked against the ones [`TextEncoderConfig::tensor_specs`] derives from the config. The 716
//! decoder tensors are never read.
//!
//! # Memory at the real size
//!
//! From the checkpoint manifest (`num_encoder_params` = 9,241,705,984):
//!
//! | what | elements | bf16 | f32 |
//! |---|---|---|---|
//! | embedding table | 256000 x 3584 = 917,504,000 | 1.84 GB | 3.67 GB |
//! | one layer (4 projections + 3 MLP matrices) | 198,195,200 | 396 MB | 793 MB |
//! | 42 layers | 8,324,198,400 | 16.65 GB | 33.30 GB |
//! | **weights in total** | 9,241,705,984 | **18.48 GB (17.2 GiB)** | 36.97 GB |
//!
//! The 169 norm vectors are kept as f32 `1 + w` (2.4 MB). Activations for a prompt of `L`
//! tokens are small beside the weights: the residual stream is `L x 3584`, the MLP holds about
//! three `L x 14336` tensors, attention (the kernels' op, one kv head at a time) about three
//! f32 score tensors of `2 x L x L`. At `L = 640`: about 10 MB of scores and 55 MB of MLP
//! activations (bf16), so the peak is about **18.6 GB** on the encoder's device. Scores grow
//! with `L^2` (about 400 MB at `L = 4096`).
//! Loading keeps no second copy: each tensor is read from the mapped file (page cache, not
//! process memory) one at a time; only when the stored dtype differs from the compute dtype
//! (bf16 file, f32 compute) is there a transient copy of one tensor, at most the 1.84 GB
//! embedding table.
//!
//! Two consequences for the pipeline:
//! * the encoder is needed only to encode: drop the [`TextEncoder`] (or the [`PromptEncoder`])
//!   before loading the DiT; [`EncodedPrompt`]s own their memory (4.6 MB each at 640 x 3584
//!   f16) and stay valid;
//! * the device is a constructor parameter, so the encoder can run on the CPU (18.5 GB of RAM)
//!   while the DiT occupies the GPU; [`PromptEncoder::encode`] takes the device the context
//!   should end up on.

mod attention;
mod batch;
mod cache;
mod config;
mod encoder;
mod layer;
mod mask;
mod mlp;
mod negative;
mod norm;
mod prompt;
mod rope;
mod tokenizer;

pub use attention::AttentionMode;
pub use batch::TokenBatch;
pub use cache::{CacheKey, NegativePromptCache, WeightsIdentity};
pub use config::{LayerKind, TextEncoderBytes, TextEncoderConfig, ENCODER_PREFIX};
pub use encoder::TextEncoder;
pub use negative::{negative_prompt_key, NEGATIVE_PROMPT};
pub use prompt::{
    prompt_from_bytes, prompt_from_os_str, EncodedPrompt, PromptEncoder, CONTEXT_DTYPE,
    CONTEXT_ROWS,
};
pub use tokenizer::{Tokenizer, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};
