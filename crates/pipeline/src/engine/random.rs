//! The real-size models with random weights, for benchmarks where the real weights are absent.
//!
//! Every model has its published configuration (T5Gemma-9B encoder, the 15B DiTs, Turbo-VAED,
//! the Wan2.2 VAE, Stable Audio Open's Oobleck), so time and memory match a run with the real
//! weights; the clip is noise. Prompts are tokenized one token per byte (the real 256k-entry
//! vocabulary ships with the weights).

use candle_core::Device;

use cadence_codec::{TurboConfig, WanConfig};
use cadence_core::Result;
use cadence_text::TextEncoderConfig;

use super::blueprint::{byte_tokenizer_json, oobleck_config, Blueprint, DecoderPlan, Draw};
use crate::models::{Mode, VideoDecoder};

/// Base channels of Stable Audio Open 1.0's Oobleck.
const OOBLECK_CHANNELS: usize = 128;

impl Blueprint {
    /// The models `mode` needs at their real sizes, drawn by `device`'s generator.
    pub(super) fn published(mode: &Mode, device: &Device) -> Result<Self> {
        let variant = mode.dit.variant();
        Ok(Self {
            text: TextEncoderConfig::t5gemma_9b(),
            tokenizer_json: byte_tokenizer_json(),
            text_identity: "cadence random T5Gemma-9B encoder",
            dit: (variant.config(), variant),
            sr: mode.resolution.sr_variant().map(|v| (v.config(), v)),
            decoder: match mode.video_decoder {
                VideoDecoder::Turbo => DecoderPlan::Turbo(TurboConfig::turbo_v3_wan22()),
                VideoDecoder::Wan => DecoderPlan::Wan,
            },
            wan: mode.needs_wan().then(WanConfig::wan22_ti2v_5b),
            oobleck: oobleck_config(OOBLECK_CHANNELS)?,
            draw: Draw::OnDevice(device.clone()),
        })
    }
}
