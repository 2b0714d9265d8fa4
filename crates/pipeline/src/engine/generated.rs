//! Engines whose weights are generated rather than read: the embedded demo (tiny configs,
//! seeded host-side draws, the same model on every machine) and the benchmark engine (the real
//! configs, drawn by the device's own generator). Both describe their components as a
//! [`Blueprint`] and build it here, through the components' normal loaders.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use cadence_codec::{Oobleck, OobleckConfig, TurboConfig, TurboVaed, WanConfig, WanVae};
use cadence_core::{RandomWeights, Result, TensorSpec, WeightSource};
use cadence_model::weights::expected_tensors;
use cadence_model::{DitConfig, DitModel, DitVariant};
use cadence_text::{
    PromptEncoder, TextEncoder, TextEncoderConfig, Tokenizer, WeightsIdentity, ENCODER_PREFIX,
};

use super::flops::Denoiser;
use super::{Engine, EngineOptions, TextSource, VideoDecoder};
use crate::sampler::SamplerConfig;

/// Where the random values come from.
#[derive(Debug, Clone)]
pub(super) enum Draw {
    /// A pure function of the seed, drawn on the host: reproducible everywhere (the demo).
    Seeded(u64),
    /// The given device's generator: fast at the real sizes (15B values on a GPU in about a
    /// second), not reproducible. A component that runs elsewhere (a text encoder on the CPU)
    /// is drawn here and copied.
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

/// Every component of an engine, as configurations.
#[derive(Debug, Clone)]
pub(super) struct Blueprint {
    /// The text encoder (always resident: there is no file to re-read per generation).
    pub(super) text: TextEncoderConfig,
    /// The tokenizer's `tokenizer.json`.
    pub(super) tokenizer_json: String,
    /// Names the generated text weights (keys the negative-prompt cache, which generated
    /// engines do not use, and shows in errors).
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
    /// The sampling recipe.
    pub(super) sampler: SamplerConfig,
}

/// Each component draws from its own stream (seed offset), fixed so the demo never changes.
mod component {
    pub const TEXT: u64 = 0;
    pub const DIT: u64 = 1;
    pub const SR_DIT: u64 = 2;
    pub const TURBO: u64 = 3;
    pub const WAN: u64 = 4;
    pub const AUDIO: u64 = 5;
}

impl Blueprint {
    /// Builds every component on the devices of `options`: the DiTs and the video codecs in
    /// `options.dtype`, the text encoder in `options.dtype` on `options.text_device`, the audio
    /// VAE in f32 (as in production).
    pub(super) fn build(self, options: EngineOptions, draw: &Draw, demo: bool) -> Result<Engine> {
        let device = options.device.clone();
        let dtype = options.dtype;
        let dit_options = options.dit_load_options();
        let source = |specs: &[TensorSpec], prefix: &str, component: u64| Generated {
            random: match draw {
                Draw::Seeded(seed) => RandomWeights::seeded(specs, prefix, seed + component),
                Draw::OnDevice(_) => RandomWeights::on_device(specs, prefix),
            },
            draw_on: match draw {
                Draw::Seeded(_) => None,
                Draw::OnDevice(d) => Some(d.clone()),
            },
        };

        let text = PromptEncoder::new(
            Tokenizer::from_json(&self.tokenizer_json)?,
            TextEncoder::from_source(
                &source(&self.text.tensor_specs(), ENCODER_PREFIX, component::TEXT),
                WeightsIdentity::named(self.text_identity),
                &self.text,
                dtype,
                &options.text_device,
            )?,
        );
        let dit_model = |(config, variant): (DitConfig, DitVariant), component| -> Result<_> {
            let weights = source(&expected_tensors(&config), "", component);
            let model = DitModel::load_with(&weights, config, &dit_options, &device)?;
            Ok(Denoiser::new(model, variant))
        };
        let dit = dit_model(self.dit, component::DIT)?;
        let sr_dit = self
            .sr
            .map(|sr| dit_model(sr, component::SR_DIT))
            .transpose()?;

        let in_memory =
            |specs: Vec<TensorSpec>, dtype: DType, component| -> Result<VarBuilder<'static>> {
                let tensors = source(&specs, "", component).tensors(dtype, &device)?;
                Ok(VarBuilder::from_tensors(tensors, dtype, &device))
            };
        let video_decoder = match &self.decoder {
            DecoderPlan::Turbo(config) => VideoDecoder::Turbo(Box::new(TurboVaed::new(
                &in_memory(TurboVaed::tensor_specs(config)?, dtype, component::TURBO)?,
                config,
            )?)),
            DecoderPlan::Wan => VideoDecoder::Wan,
        };
        let wan = self
            .wan
            .as_ref()
            .map(|config| {
                WanVae::new(
                    &in_memory(WanVae::tensor_specs(config)?, dtype, component::WAN)?,
                    config,
                )
            })
            .transpose()?;
        let audio_vae = Oobleck::new(
            &in_memory(
                Oobleck::tensor_specs(&self.oobleck)?,
                DType::F32,
                component::AUDIO,
            )?,
            &self.oobleck,
        )?;

        Ok(Engine {
            options,
            text: TextSource::Resident(Box::new(text)),
            negative_cache: None,
            sampler: self.sampler,
            dit,
            sr_dit,
            video_decoder,
            wan,
            audio_vae,
            demo,
        })
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
