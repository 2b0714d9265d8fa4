//! Loading the models of a mode from checkpoint folders ([`ModelDirs`]).

use std::path::Path;

use candle_core::{DType, Device};

use cadence_codec::{Oobleck, OobleckConfig, TurboConfig, TurboVaed, WanConfig, WanVae};
use cadence_core::Result;
use cadence_model::dit::CONFIG_FILE;
use cadence_model::{DitConfig, DitModel, DitVariant, LoadOptions};
use cadence_text::{PromptEncoder, TextEncoder, TextEncoderConfig, Tokenizer};

use super::builder::{codec_memory, Codecs, Configs, VideoDecoderModel};
use crate::dit_velocity::DitVelocity;
use crate::memory::CodecMemory;
use crate::models::{ids, Mode, ModelDirs, VideoDecoder};

/// File names inside the component folders (as `weights.toml` lists them).
const TURBO_CHECKPOINT: &str = "checkpoint-340000.ckpt";
const TURBO_CONFIG: &str = "TurboV3-Wan22-TinyShallow_7_7.json";
const WAN_CHECKPOINT: &str = "Wan2.2_VAE.pth";
const AUDIO_CHECKPOINT: &str = "model.safetensors";
const AUDIO_CONFIG: &str = "model_config.json";

/// The component folders of one mode, checked to be all there.
pub(super) struct Folders<'a> {
    dirs: &'a ModelDirs,
    mode: Mode,
}

impl<'a> Folders<'a> {
    pub(super) fn new(dirs: &'a ModelDirs, mode: Mode) -> Result<Self> {
        dirs.require(&mode)?;
        Ok(Self { dirs, mode })
    }

    fn dir(&self, id: &str) -> Result<&Path> {
        self.dirs.get(id, &self.mode)
    }

    fn sr_variant(&self) -> Option<DitVariant> {
        self.mode.resolution.sr_variant()
    }

    /// The models' configurations, read from their folders (presets where a folder has none).
    pub(super) fn configs(&self) -> Result<Configs> {
        let text_config = self.dir(ids::T5GEMMA)?.join("config.json");
        let text = if text_config.is_file() {
            TextEncoderConfig::from_file(&text_config)?
        } else {
            TextEncoderConfig::t5gemma_9b()
        };
        let dit_config = |variant: DitVariant| -> Result<DitConfig> {
            let path = self.dir(component(variant))?.join(CONFIG_FILE);
            if path.is_file() {
                DitConfig::from_json_file(&path)
            } else {
                Ok(variant.config())
            }
        };
        Ok(Configs {
            text,
            base: dit_config(self.mode.dit.variant())?,
            sr: self.sr_variant().map(dit_config).transpose()?,
        })
    }

    /// The codecs' memory from their configurations, without loading them.
    pub(super) fn codec_memory(&self, dtype: DType) -> Result<CodecMemory> {
        let turbo = match self.mode.video_decoder {
            VideoDecoder::Turbo => Some(TurboConfig::from_file(
                self.dir(ids::TURBO_VAE)?.join(TURBO_CONFIG),
            )?),
            VideoDecoder::Wan => None,
        };
        let wan = self.mode.needs_wan().then(WanConfig::wan22_ti2v_5b);
        let audio =
            OobleckConfig::from_model_config(self.dir(ids::STABLE_AUDIO)?.join(AUDIO_CONFIG))?;
        codec_memory(turbo.as_ref(), wan.as_ref(), &audio, dtype)
    }

    /// The codecs, on `device` in `dtype` (the audio VAE in f32, as in production).
    pub(super) fn codecs(&self, dtype: DType, device: &Device) -> Result<Codecs> {
        let wan_config = self.mode.needs_wan().then(WanConfig::wan22_ti2v_5b);
        let wan = wan_config
            .as_ref()
            .map(|c| {
                WanVae::load(
                    self.dir(ids::WAN_VAE)?.join(WAN_CHECKPOINT),
                    c,
                    dtype,
                    device,
                )
            })
            .transpose()?;
        let (video_decoder, turbo_config) = match self.mode.video_decoder {
            VideoDecoder::Turbo => {
                let d = self.dir(ids::TURBO_VAE)?;
                let config = TurboConfig::from_file(d.join(TURBO_CONFIG))?;
                let turbo = TurboVaed::load(
                    d.join(TURBO_CHECKPOINT),
                    d.join(TURBO_CONFIG),
                    dtype,
                    device,
                )?;
                (VideoDecoderModel::Turbo(Box::new(turbo)), Some(config))
            }
            VideoDecoder::Wan => (VideoDecoderModel::Wan, None),
        };
        let audio = self.dir(ids::STABLE_AUDIO)?;
        let audio_config = OobleckConfig::from_model_config(audio.join(AUDIO_CONFIG))?;
        let audio_vae = Oobleck::load(
            audio.join(AUDIO_CHECKPOINT),
            audio.join(AUDIO_CONFIG),
            device,
        )?;
        Codecs::new(
            video_decoder,
            turbo_config,
            wan,
            wan_config,
            audio_vae,
            &audio_config,
            dtype,
        )
    }

    /// The tokenizer and text encoder, on `device` in `dtype`.
    pub(super) fn text(&self, dtype: DType, device: &Device) -> Result<PromptEncoder> {
        let dir = self.dir(ids::T5GEMMA)?;
        Ok(PromptEncoder::new(
            Tokenizer::from_dir(dir)?,
            TextEncoder::open(dir, dtype, device)?,
        ))
    }

    /// The base DiT (`sr` false) or the super-resolution one, on `device`.
    pub(super) fn dit(
        &self,
        sr: bool,
        options: &LoadOptions,
        device: &Device,
    ) -> Result<Option<DitVelocity>> {
        let variant = if sr {
            self.sr_variant()
        } else {
            Some(self.mode.dit.variant())
        };
        variant
            .map(|v| {
                let model = DitModel::load_dir_with(self.dir(component(v))?, v, options, device)?;
                Ok(DitVelocity::new(model, v))
            })
            .transpose()
    }
}

/// The component holding a DiT variant.
fn component(variant: DitVariant) -> &'static str {
    match variant {
        DitVariant::Base => ids::BASE,
        DitVariant::Distilled => ids::DISTILL,
        DitVariant::Sr540p => ids::SR_540P,
        DitVariant::Sr1080p => ids::SR_1080P,
    }
}
