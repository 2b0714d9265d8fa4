//! The embedded demo: every component at a tiny size with seeded random weights.
//!
//! It runs the whole pipeline (text encoder, DiT, super-resolution DiT with frame-window
//! attention, Wan2.2 encoder, Turbo-VAED, Oobleck) on the CPU in seconds, with no download, so
//! a newcomer can see the product work and the tests can run every mode end to end. The clips
//! it makes are noise: the weights are random (seeded, so the demo model is the same
//! everywhere), served to the components' normal loaders as a [`RandomWeights`] source.

use candle_core::DType;
use candle_nn::VarBuilder;

use cadence_codec::{Oobleck, OobleckConfig, TurboConfig, TurboVaed, WanConfig, WanVae};
use cadence_core::{RandomWeights, Result, TensorSpec};
use cadence_model::weights::expected_tensors;
use cadence_model::{DitConfig, DitModel, DitVariant};
use cadence_text::{
    LayerKind, PromptEncoder, TextEncoder, TextEncoderConfig, Tokenizer, WeightsIdentity,
    ENCODER_PREFIX,
};
use cadence_weights::Dit;

use super::{Engine, EngineOptions, TextSource, VideoDecoder};
use crate::dit_velocity::DitVelocity;
use crate::sampler::{SamplerConfig, SrStage};

/// Seed of the demo weights (fixed: the demo model is the same on every machine).
const WEIGHTS_SEED: u64 = 0xCADE_0CE5;

/// Width of the tiny text encoder's output rows (the DiT's `text_in_channels`).
const TEXT_WIDTH: usize = 32;

impl Engine {
    /// The embedded tiny random model: every component, on the CPU in f32. `dit` picks the
    /// sampling recipe (distilled: 8 steps; base: 32 guided steps). Super-resolution and
    /// image input are available, as with the real weights.
    pub fn demo(dit: Dit) -> Result<Self> {
        let options = EngineOptions::cpu();
        let device = &options.device;
        // Each component draws from its own seed.
        let weights = |specs: &[TensorSpec], prefix: &str, component: u64| {
            RandomWeights::seeded(specs, prefix, WEIGHTS_SEED + component)
        };

        let text_config = tiny_text_config();
        let text = PromptEncoder::new(
            Tokenizer::from_json(&byte_tokenizer_json())?,
            TextEncoder::from_source(
                &weights(&text_config.tensor_specs(), ENCODER_PREFIX, 0),
                WeightsIdentity::named("cadence demo text encoder"),
                &text_config,
                DType::F32,
                device,
            )?,
        );
        let dit_model = |config: DitConfig, component| {
            DitModel::load(
                &weights(&expected_tensors(&config), "", component),
                config,
                DType::F32,
                device,
            )
        };
        let (variant, sampler) = match dit {
            Dit::Base => (DitVariant::Base, SamplerConfig::base()),
            Dit::Distill => (DitVariant::Distilled, SamplerConfig::distilled()),
        };
        let base = dit_model(tiny_dit_config(false), 1)?;
        let sr = dit_model(tiny_dit_config(true), 2)?;

        let in_memory = |specs: Vec<TensorSpec>, component| -> Result<VarBuilder<'static>> {
            let tensors = weights(&specs, "", component).tensors(DType::F32, device)?;
            Ok(VarBuilder::from_tensors(tensors, DType::F32, device))
        };
        let turbo_config = tiny_turbo_config();
        let turbo = TurboVaed::new(
            &in_memory(TurboVaed::tensor_specs(&turbo_config)?, 3)?,
            &turbo_config,
        )?;
        let wan_config = tiny_wan_config();
        let wan = WanVae::new(
            &in_memory(WanVae::tensor_specs(&wan_config)?, 4)?,
            &wan_config,
        )?;
        let audio_config = tiny_oobleck_config()?;
        let audio_vae = Oobleck::new(
            &in_memory(Oobleck::tensor_specs(&audio_config)?, 5)?,
            &audio_config,
        )?;

        Ok(Self {
            options,
            text: TextSource::Resident(Box::new(text)),
            negative_cache: None,
            sampler: sampler.with_sr(SrStage::default()),
            dit: DitVelocity::new(base, variant),
            sr_dit: Some(DitVelocity::new(sr, DitVariant::Sr1080p)),
            video_decoder: VideoDecoder::Turbo(Box::new(turbo)),
            wan: Some(wan),
            audio_vae,
            demo: true,
        })
    }
}

/// A 2-layer T5Gemma-style encoder (one sliding, one full layer) over a byte vocabulary.
fn tiny_text_config() -> TextEncoderConfig {
    TextEncoderConfig {
        vocab_size: BYTE_OFFSET + 256,
        hidden_size: TEXT_WIDTH,
        intermediate_size: 64,
        num_heads: 2,
        num_kv_heads: 1,
        head_dim: 16,
        query_pre_attn_scalar: 16.0,
        sliding_window: 8,
        attn_logit_softcapping: Some(50.0),
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        layer_kinds: vec![LayerKind::Sliding, LayerKind::Full],
    }
}

/// A 3-layer DiT with the real structure: sandwich layers 0 and 2, gelu7 in layer 0, gated GQA
/// (4 query heads over 2 key/value heads); the SR variant adds frame-window attention in layer 1.
fn tiny_dit_config(super_resolution: bool) -> DitConfig {
    DitConfig {
        num_layers: 3,
        hidden_size: 64,
        head_dim: 16,
        num_query_groups: 2,
        text_in_channels: TEXT_WIDTH,
        mm_layers: vec![0, 2],
        gelu7_layers: vec![0],
        local_attn_layers: if super_resolution { vec![1] } else { vec![] },
        ..DitConfig::base()
    }
}

/// Turbo-VAED with the real layout at the fixtures' tiny widths.
fn tiny_turbo_config() -> TurboConfig {
    TurboConfig {
        decoder_block_out_channels: vec![4, 4, 8, 8],
        ..TurboConfig::turbo_v3_wan22()
    }
}

/// The Wan2.2 VAE with the real layout at the fixtures' tiny widths.
fn tiny_wan_config() -> WanConfig {
    WanConfig {
        dim: 4,
        dec_dim: 6,
        ..WanConfig::wan22_ti2v_5b()
    }
}

/// Oobleck with the real strides (2048 samples per latent) and 4 base channels.
fn tiny_oobleck_config() -> Result<OobleckConfig> {
    let side = |latent_dim: usize, io: &str| {
        serde_json::json!({"type": "oobleck", "config": {
            io: 2, "channels": 4, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
            "latent_dim": latent_dim, "use_snake": true, "final_tanh": false}})
    };
    let pretransform = serde_json::json!({
        "encoder": side(128, "in_channels"),
        "decoder": side(64, "out_channels"),
        "bottleneck": {"type": "vae"},
        "latent_dim": 64, "downsampling_ratio": 2048, "io_channels": 2
    });
    OobleckConfig::from_pretransform(&pretransform, 44_100)
}

/// Ids below this are the special tokens; byte `b` is token `BYTE_OFFSET + b`.
const BYTE_OFFSET: usize = 4;

/// A `tokenizer.json` with the Gemma special tokens and one token per byte: every string
/// encodes through byte fallback, so any prompt (any script) works.
fn byte_tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    for (id, token) in ["<pad>", "<eos>", "<bos>", "<unk>"].iter().enumerate() {
        vocab.insert(token.to_string(), id.into());
    }
    for b in 0..256usize {
        vocab.insert(format!("<0x{b:02X}>"), (BYTE_OFFSET + b).into());
    }
    let special = |id: usize, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<pad>"), special(1, "<eos>"), special(2, "<bos>"), special(3, "<unk>")],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "ByteFallback"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": true,
                  "vocab": vocab, "merges": []}
    })
    .to_string()
}
