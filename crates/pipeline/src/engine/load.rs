//! Building an [`Engine`] from installed weights.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cadence_codec::{Oobleck, TurboVaed, WanConfig, WanVae};
use cadence_core::{Error, Result};
use cadence_model::{DitModel, DitVariant};
use cadence_text::{NegativePromptCache, PromptEncoder, TextEncoder, Tokenizer};
use cadence_weights::modes::ids;
use cadence_weights::{Manifest, Mode, VideoDecoder as DecoderChoice, WeightsRoot};

use super::flops::Denoiser;
use super::{Engine, EngineOptions, Progress, StageKind, TextSource, VideoDecoder};
use crate::sampler::SrStage;

/// File names inside the component folders (as `weights.toml` lists them).
const TURBO_CHECKPOINT: &str = "checkpoint-340000.ckpt";
const TURBO_CONFIG: &str = "TurboV3-Wan22-TinyShallow_7_7.json";
const WAN_CHECKPOINT: &str = "Wan2.2_VAE.pth";
const AUDIO_CHECKPOINT: &str = "model.safetensors";
const AUDIO_CONFIG: &str = "model_config.json";

/// Loads a tokenizer and text encoder from a T5Gemma folder.
pub(super) fn prompt_encoder(dir: &Path, options: &EngineOptions) -> Result<PromptEncoder> {
    Ok(PromptEncoder::new(
        Tokenizer::from_dir(dir)?,
        TextEncoder::open(dir, options.dtype, &options.text_device)?,
    ))
}

impl Engine {
    /// Loads everything `mode` needs from `root` (a weights directory and/or the Hugging Face
    /// cache). A component that is not installed is an [`Error::MissingWeights`] naming it and
    /// the `cadence fetch` command that installs it.
    pub fn load(
        root: &WeightsRoot,
        manifest: &Manifest,
        mode: &Mode,
        options: EngineOptions,
        progress: &mut dyn Progress,
    ) -> Result<Self> {
        progress.stage_started(StageKind::LoadModels, Some(mode.components().len() as u64));
        let start = Instant::now();
        // Locate everything before reading any weights, so a missing piece fails fast.
        let dirs: Vec<(&str, PathBuf)> = mode
            .components()
            .into_iter()
            .map(|id| Ok((id, locate(root, manifest, mode, id)?)))
            .collect::<Result<_>>()?;
        let dir = |id: &str| -> Result<&Path> {
            dirs.iter()
                .find(|(i, _)| *i == id)
                .map(|(_, d)| d.as_path())
                .ok_or_else(|| Error::Config(format!("component {id} is not part of mode {mode}")))
        };
        let step = |progress: &mut dyn Progress| progress.advance(StageKind::LoadModels, 1);
        let (dev, dtype) = (&options.device, options.dtype);
        let dit_options = options.dit_load_options();

        let text = if options.keep_text_encoder {
            TextSource::Resident(Box::new(prompt_encoder(dir(ids::T5GEMMA)?, &options)?))
        } else {
            TextSource::OnDisk(dir(ids::T5GEMMA)?.to_path_buf())
        };
        step(progress);

        let (variant, mut sampler) = super::base_stage(mode.dit);
        let dit = Denoiser::new(
            DitModel::load_dir_with(dir(component_id(variant))?, variant, &dit_options, dev)?,
            variant,
        );
        step(progress);

        let sr_dit = super::super_resolution_stage(mode.resolution)
            .map(|variant| -> Result<Denoiser> {
                sampler = sampler.clone().with_sr(SrStage::default());
                let model = DitModel::load_dir_with(
                    dir(component_id(variant))?,
                    variant,
                    &dit_options,
                    dev,
                )?;
                step(progress);
                Ok(Denoiser::new(model, variant))
            })
            .transpose()?;

        let wan = if mode.image || mode.video_decoder == DecoderChoice::Wan {
            let wan = WanVae::load(
                dir(ids::WAN_VAE)?.join(WAN_CHECKPOINT),
                &WanConfig::wan22_ti2v_5b(),
                dtype,
                dev,
            )?;
            step(progress);
            Some(wan)
        } else {
            None
        };
        let video_decoder = match mode.video_decoder {
            DecoderChoice::Turbo => {
                let d = dir(ids::TURBO_VAE)?;
                let turbo =
                    TurboVaed::load(d.join(TURBO_CHECKPOINT), d.join(TURBO_CONFIG), dtype, dev)?;
                step(progress);
                VideoDecoder::Turbo(Box::new(turbo))
            }
            DecoderChoice::Wan => VideoDecoder::Wan,
        };
        let audio = dir(ids::STABLE_AUDIO)?;
        let audio_vae = Oobleck::load(audio.join(AUDIO_CHECKPOINT), audio.join(AUDIO_CONFIG), dev)?;
        step(progress);
        progress.stage_finished(StageKind::LoadModels, start.elapsed());

        Ok(Self {
            options,
            text,
            negative_cache: NegativePromptCache::default_dir().map(NegativePromptCache::new),
            sampler,
            dit,
            sr_dit,
            video_decoder,
            wan,
            audio_vae,
            demo: false,
        })
    }
}

/// The `weights.toml` component holding a DiT variant.
fn component_id(variant: DitVariant) -> &'static str {
    match variant {
        DitVariant::Base => ids::BASE,
        DitVariant::Distilled => ids::DISTILL,
        DitVariant::Sr540p => ids::SR_540P,
        DitVariant::Sr1080p => ids::SR_1080P,
    }
}

/// The folder of component `id`, or the error that says how to install it.
fn locate(root: &WeightsRoot, manifest: &Manifest, mode: &Mode, id: &str) -> Result<PathBuf> {
    let component = manifest.get(id).map_err(|e| Error::Config(e.to_string()))?;
    root.component_dir(component)
        .map(|located| located.dir)
        .map_err(|e| {
            Error::MissingWeights(format!(
                "{e} ({mode} needs it; `cadence fetch` downloads what a mode needs)"
            ))
        })
}
