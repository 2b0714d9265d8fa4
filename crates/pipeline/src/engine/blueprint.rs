//! Models whose weights are generated rather than read: the embedded demo (tiny configs,
//! seeded host-side draws, the same model on every machine) and the benchmark models (the real
//! configs, drawn by the device's own generator). Both describe their models as a [`Blueprint`]
//! and build them here, through the models' normal loaders.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use cadence_codec::{Oobleck, OobleckConfig, TurboConfig, TurboVaed, WanConfig, WanVae};
use cadence_core::{RandomWeights, Result, TensorSpec, WeightSource};
use cadence_model::weights::expected_tensors;
use cadence_model::{DitConfig, DitModel, DitVariant, LoadOptions};
use cadence_text::{
    PromptEncoder, TextEncoder, TextEncoderConfig, Tokenizer, WeightsIdentity, ENCODER_PREFIX,
};

use super::builder::{codec_memory, Codecs, Configs, VideoDecoderModel};
use crate::dit_velocity::DitVelocity;
use crate::memory::CodecMemory;

/// Where the random values come from.
#[derive(Debug, Clone)]
pub(super) enum Draw {
    /// A pure function of the seed, drawn on the host: reproducible everywhere (the demo).
    Seeded(u64),
    /// The given device's generator: fast at the real sizes (15B values on a GPU in about a
    /// second), not reproducible. A model placed elsewhere (parked in host memory) is drawn
    /// here and copied.
    OnDevice(Device),
}

/// The video decoder to build.
#[derive(Debug, Clone)]
pub(super) enum DecoderPlan {
    /// Turbo-VAED with this configuration.
    Turbo(TurboConfig),
    /// The Wan2.2 VAE's decoder (the blueprint's `wan` must be set).
    Wan,
}

/// Every model of an engine, as configurations.
#[derive(Debug, Clone)]
pub(super) struct Blueprint {
    /// The text encoder.
    pub(super) text: TextEncoderConfig,
    /// The tokenizer's `tokenizer.json`.
    pub(super) tokenizer_json: String,
    /// Names the generated text weights (shown in errors; keys the prompt cache).
    pub(super) text_identity: &'static str,
    /// The base-stage DiT.
    pub(super) dit: (DitConfig, DitVariant),
    /// The super-resolution DiT, if any.
    pub(super) sr: Option<(DitConfig, DitVariant)>,
    /// The video decoder.
    pub(super) decoder: DecoderPlan,
    /// The Wan2.2 VAE (image encoder, and decoder under [`DecoderPlan::Wan`]).
    pub(super) wan: Option<WanConfig>,
    /// The audio VAE.
    pub(super) oobleck: OobleckConfig,
    /// How the values are drawn.
    pub(super) draw: Draw,
}

/// Each model draws from its own stream (seed offset), fixed so the demo never changes.
mod stream {
    pub const TEXT: u64 = 0;
    pub const DIT: u64 = 1;
    pub const SR_DIT: u64 = 2;
    pub const TURBO: u64 = 3;
    pub const WAN: u64 = 4;
    pub const AUDIO: u64 = 5;
}

impl Blueprint {
    /// The weights of the tensors `specs` (keys under `prefix`) from stream `offset`.
    fn source(&self, specs: &[TensorSpec], prefix: &str, offset: u64) -> Generated {
        Generated {
            random: match &self.draw {
                Draw::Seeded(seed) => RandomWeights::seeded(specs, prefix, seed + offset),
                Draw::OnDevice(_) => RandomWeights::on_device(specs, prefix),
            },
            draw_on: match &self.draw {
                Draw::Seeded(_) => None,
                Draw::OnDevice(d) => Some(d.clone()),
            },
        }
    }

    /// The configurations, for the memory plan.
    pub(super) fn configs(&self) -> Configs {
        Configs {
            text: self.text.clone(),
            base: self.dit.0.clone(),
            sr: self.sr.as_ref().map(|(c, _)| c.clone()),
        }
    }

    /// The codecs, on `device` in `dtype` (the audio VAE in f32, as in production).
    pub(super) fn codecs(&self, dtype: DType, device: &Device) -> Result<Codecs> {
        let in_memory =
            |specs: Vec<TensorSpec>, dtype: DType, offset| -> Result<VarBuilder<'static>> {
                let tensors = self.source(&specs, "", offset).tensors(dtype, device)?;
                Ok(VarBuilder::from_tensors(tensors, dtype, device))
            };
        let video_decoder = match &self.decoder {
            DecoderPlan::Turbo(config) => VideoDecoderModel::Turbo(Box::new(TurboVaed::new(
                &in_memory(TurboVaed::tensor_specs(config)?, dtype, stream::TURBO)?,
                config,
            )?)),
            DecoderPlan::Wan => VideoDecoderModel::Wan,
        };
        let wan = self
            .wan
            .as_ref()
            .map(|config| {
                WanVae::new(
                    &in_memory(WanVae::tensor_specs(config)?, dtype, stream::WAN)?,
                    config,
                )
            })
            .transpose()?;
        let audio_vae = Oobleck::new(
            &in_memory(
                Oobleck::tensor_specs(&self.oobleck)?,
                DType::F32,
                stream::AUDIO,
            )?,
            &self.oobleck,
        )?;
        Codecs::new(
            video_decoder,
            self.decoder_config(),
            wan,
            self.wan.clone(),
            audio_vae,
            &self.oobleck,
            dtype,
        )
    }

    /// The codecs' memory, without building them.
    pub(super) fn codec_memory(&self, dtype: DType) -> Result<CodecMemory> {
        codec_memory(
            self.decoder_config().as_ref(),
            self.wan.as_ref(),
            &self.oobleck,
            dtype,
        )
    }

    fn decoder_config(&self) -> Option<TurboConfig> {
        match &self.decoder {
            DecoderPlan::Turbo(c) => Some(c.clone()),
            DecoderPlan::Wan => None,
        }
    }

    /// The text encoder and tokenizer, on `device` in `dtype`.
    pub(super) fn text(&self, dtype: DType, device: &Device) -> Result<PromptEncoder> {
        Ok(PromptEncoder::new(
            Tokenizer::from_json(&self.tokenizer_json)?,
            TextEncoder::from_source(
                &self.source(&self.text.tensor_specs(), ENCODER_PREFIX, stream::TEXT),
                WeightsIdentity::named(self.text_identity),
                &self.text,
                dtype,
                device,
            )?,
        ))
    }

    /// The base DiT (`sr` false) or the super-resolution one, on `device`.
    pub(super) fn dit(
        &self,
        sr: bool,
        options: &LoadOptions,
        device: &Device,
    ) -> Result<Option<DitVelocity>> {
        let (spec, offset) = if sr {
            (self.sr.as_ref(), stream::SR_DIT)
        } else {
            (Some(&self.dit), stream::DIT)
        };
        spec.map(|(config, variant)| {
            let weights = self.source(&expected_tensors(config), "", offset);
            let model = DitModel::load_with(&weights, config.clone(), options, device)?;
            Ok(DitVelocity::new(model, *variant))
        })
        .transpose()
    }
}

/// Generated weights, drawn where [`Draw`] says and delivered where the loader asks.
struct Generated {
    random: RandomWeights,
    /// The device whose generator draws (`None`: the seeded host generator).
    draw_on: Option<Device>,
}

impl Generated {
    /// Every tensor on `device` in `dtype` (for builders that take a map).
    fn tensors(
        &self,
        dtype: DType,
        device: &Device,
    ) -> Result<std::collections::HashMap<String, Tensor>> {
        self.keys()
            .into_iter()
            .map(|k| {
                let t = self.load(&k, dtype, device)?;
                Ok((k, t))
            })
            .collect()
    }
}

impl WeightSource for Generated {
    fn contains(&self, key: &str) -> bool {
        self.random.contains(key)
    }

    fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.random.shape(key)
    }

    fn keys(&self) -> Vec<String> {
        self.random.keys()
    }

    fn load(&self, key: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        match &self.draw_on {
            Some(drawer) => Ok(self.random.load(key, dtype, drawer)?.to_device(device)?),
            None => self.random.load(key, dtype, device),
        }
    }

    fn describe(&self) -> String {
        match &self.draw_on {
            Some(d) => format!("random weights drawn on {d:?}"),
            None => "seeded random weights".into(),
        }
    }
}

/// Ids below this are the special tokens; byte `b` is token `BYTE_OFFSET + b`.
pub(super) const BYTE_OFFSET: usize = 4;

/// A `tokenizer.json` with the Gemma special tokens and one token per byte: every string
/// encodes through byte fallback, so any prompt (any script) works. Generated engines use it
/// in place of the real 256k-entry vocabulary (a prompt becomes one token per byte).
pub(super) fn byte_tokenizer_json() -> String {
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

/// Stable Audio Open's Oobleck layout (real strides: 2048 samples per latent) with `channels`
/// base channels (128 in the released model).
pub(super) fn oobleck_config(channels: usize) -> Result<OobleckConfig> {
    let side = |latent_dim: usize, io: &str| {
        serde_json::json!({"type": "oobleck", "config": {
            io: 2, "channels": channels, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
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
