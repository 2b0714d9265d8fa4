//! The real-size engine with random weights, for benchmarks where the real weights are absent.
//!
//! Every component has its published configuration (T5Gemma-9B encoder, the 15B DiTs,
//! Turbo-VAED, the Wan2.2 VAE, Stable Audio Open's Oobleck), so time and memory match a run with
//! the real weights; the clip is noise. Two differences, both visible in what the engine
//! reports: prompts are tokenized one token per byte (the real 256k-entry vocabulary ships with
//! the weights), and the text encoder stays resident whatever
//! [`EngineOptions::keep_text_encoder`] says (there is no file to re-read per clip, and drawing
//! 9B values per clip would time the generator, not the encoder).

use cadence_codec::{TurboConfig, WanConfig};
use cadence_core::Result;
use cadence_text::TextEncoderConfig;
use cadence_weights::{Mode, VideoDecoder as DecoderChoice};

use super::generated::{byte_tokenizer_json, oobleck_config, Blueprint, DecoderPlan, Draw};
use super::{Engine, EngineOptions};
use crate::sampler::SrStage;

/// Base channels of Stable Audio Open 1.0's Oobleck.
const OOBLECK_CHANNELS: usize = 128;

impl Engine {
    /// The components `mode` needs, at their real sizes, with random weights drawn by the
    /// generator of `options.device` (on a GPU: seconds for all of them). Placement and
    /// precision follow `options` exactly as [`Engine::load`] does; a component that runs on
    /// another device (a text encoder kept on the CPU) is drawn on `options.device` and copied.
    ///
    /// [`Engine::is_demo`] is false: these are the real architectures. The outputs are noise.
    pub fn random(mode: &Mode, options: EngineOptions) -> Result<Self> {
        let (variant, mut sampler) = super::base_stage(mode.dit);
        let sr = super::super_resolution_stage(mode.resolution).map(|v| (v.config(), v));
        if sr.is_some() {
            sampler = sampler.with_sr(SrStage::default());
        }
        let wanted_wan = mode.image || mode.video_decoder == DecoderChoice::Wan;
        let draw = Draw::OnDevice(options.device.clone());
        Blueprint {
            text: TextEncoderConfig::t5gemma_9b(),
            tokenizer_json: byte_tokenizer_json(),
            text_identity: "cadence random T5Gemma-9B encoder",
            dit: (variant.config(), variant),
            sr,
            decoder: match mode.video_decoder {
                DecoderChoice::Turbo => DecoderPlan::Turbo(TurboConfig::turbo_v3_wan22()),
                DecoderChoice::Wan => DecoderPlan::Wan,
            },
            wan: wanted_wan.then(WanConfig::wan22_ti2v_5b),
            oobleck: oobleck_config(OOBLECK_CHANNELS)?,
            sampler,
        }
        .build(options, &draw, false)
    }
}
