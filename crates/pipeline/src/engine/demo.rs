//! The embedded demo: every component at a tiny size with seeded random weights.
//!
//! It runs the whole pipeline (text encoder, DiT, super-resolution DiT with frame-window
//! attention, Wan2.2 encoder, Turbo-VAED, Oobleck) on the CPU in seconds, with no download, so
//! a newcomer can see the product work and the tests can run every mode end to end. The clips
//! it makes are noise: the weights are random (seeded, so the demo model is the same
//! everywhere), served to the components' normal loaders as a
//! [`RandomWeights`](cadence_core::RandomWeights) source.

use cadence_codec::{OobleckConfig, TurboConfig, WanConfig};
use cadence_core::Result;
use cadence_model::{DitConfig, DitVariant};
use cadence_text::{LayerKind, TextEncoderConfig};

use super::blueprint::{
    byte_tokenizer_json, oobleck_config, Blueprint, DecoderPlan, Draw, BYTE_OFFSET,
};
use crate::models::Mode;

/// Seed of the demo weights (fixed: the demo model is the same on every machine).
const WEIGHTS_SEED: u64 = 0xCADE_0CE5;

/// Width of the tiny text encoder's output rows (the DiT's `text_in_channels`).
const TEXT_WIDTH: usize = 32;

impl Blueprint {
    /// The embedded tiny random models `mode` needs. One tiny super-resolution DiT (with
    /// frame-window attention, like the 1080p model) serves both SR resolutions.
    pub(super) fn demo(mode: &Mode) -> Result<Self> {
        let sr = mode
            .resolution
            .sr_variant()
            .map(|_| (tiny_dit_config(true), DitVariant::Sr1080p));
        Ok(Self {
            text: tiny_text_config(),
            tokenizer_json: byte_tokenizer_json(),
            text_identity: "cadence demo text encoder",
            dit: (tiny_dit_config(false), mode.dit.variant()),
            sr,
            decoder: match mode.video_decoder {
                crate::models::VideoDecoder::Turbo => DecoderPlan::Turbo(tiny_turbo_config()),
                crate::models::VideoDecoder::Wan => DecoderPlan::Wan,
            },
            wan: mode.needs_wan().then(tiny_wan_config),
            oobleck: tiny_oobleck_config()?,
            draw: Draw::Seeded(WEIGHTS_SEED),
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
    oobleck_config(4)
}
