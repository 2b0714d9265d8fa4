//! [`EngineBuilder`]: one way to build an engine, whatever the weights: checkpoint folders, the
//! embedded demo, or random weights at the real sizes. It plans the device memory for the
//! largest clip the engine is built for, loads each model where the plan keeps it, and hands
//! the placed models to the [`Engine`].

use std::sync::Mutex;
use std::time::Instant;

use candle_core::{DType, Device};

use cadence_codec::{Oobleck, OobleckConfig, TurboConfig, TurboVaed, WanConfig, WanVae};
use cadence_core::{Error, Result, TensorSpec};
use cadence_kernels::device_memory::device_memory;
use cadence_kernels::dispatch::KernelPolicy;
use cadence_model::DitConfig;
use cadence_text::{NegativePromptCache, TextEncoderConfig, CONTEXT_ROWS};

use super::blueprint::Blueprint;
use super::load::Folders;
use super::placement::Slot;
use super::prompt_cache::PromptCache;
use super::{Engine, Progress, StageKind};
use crate::memory::{
    plan_memory, CodecMemory, MemoryBudget, MemoryJob, MemoryModels, MemoryPlan, Offload,
    Placement, PrecisionChoice, HOST_RESERVE, RESERVE,
};
use crate::models::{Mode, ModelDirs};
use crate::request::{GenerationRequest, Limits};
use crate::sampler::{SamplerConfig, SrStage};
use crate::shapes::{audio_frames_for_seconds, LatentShapes, LatentSize};

/// Where an engine's weights come from.
#[derive(Debug, Clone)]
pub enum WeightsSource {
    /// Checkpoint folders, one per component (`cadence-weights` finds them in the Hugging Face
    /// cache or a weights directory).
    Folders(ModelDirs),
    /// The embedded tiny models with seeded random weights: the whole pipeline on any CPU in
    /// seconds, the same model everywhere; the clips are noise. Always on the CPU in f32.
    Demo,
    /// The published architectures with random weights drawn on the device: representative time
    /// and memory for benchmarks; the clips are noise.
    Random,
}

/// Builds an [`Engine`].
///
/// ```no_run
/// use cadence_pipeline::engine::{EngineBuilder, WeightsSource};
/// use cadence_pipeline::{ModelDirs, Mode};
/// # fn main() -> cadence_core::Result<()> {
/// let mut dirs = ModelDirs::new();
/// for id in Mode::distilled_t2v().components() {
///     dirs.insert(id, format!("/data/magihuman/{id}"));
/// }
/// let engine = EngineBuilder::new(WeightsSource::Folders(dirs))
///     .mode(Mode::distilled_t2v())
///     .max_memory(Some(24_000_000_000))
///     .build(&mut ())?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    weights: WeightsSource,
    mode: Mode,
    device: Device,
    precision: PrecisionChoice,
    max_memory: Option<u64>,
    offload: Offload,
    limits: Limits,
    kernels: KernelPolicy,
    /// The clip the memory plan is made for (default: 5 s at the mode's preset).
    design: Option<MemoryJob>,
    negative_cache: bool,
    prompt_cache: usize,
}

impl EngineBuilder {
    /// An engine for the distilled 256p text-to-video mode on the CPU, planned for 5-second
    /// clips; change any of it with the methods below.
    pub fn new(weights: WeightsSource) -> Self {
        Self {
            negative_cache: matches!(weights, WeightsSource::Folders(_)),
            weights,
            mode: Mode::distilled_t2v(),
            device: Device::Cpu,
            precision: PrecisionChoice::Auto,
            max_memory: None,
            offload: Offload::Auto,
            limits: Limits::default(),
            kernels: KernelPolicy::default(),
            design: None,
            prompt_cache: 16,
        }
    }

    /// The embedded demo (see [`WeightsSource::Demo`]).
    pub fn demo() -> Self {
        Self::new(WeightsSource::Demo)
    }

    /// Which models to load: base DiT, resolution (super-resolution DiT), image encoder, video
    /// decoder.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The device the models compute on (the demo always runs on the CPU).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The DiTs' GEMM precision (auto: bf16 when the DiTs fit resident, FP8 otherwise).
    pub fn precision(mut self, precision: PrecisionChoice) -> Self {
        self.precision = precision;
        self
    }

    /// The device memory the engine may use (default: what the device has free when the
    /// engine is built; on the CPU, the host's available memory).
    pub fn max_memory(mut self, bytes: Option<u64>) -> Self {
        self.max_memory = bytes;
        self
    }

    /// Which offloading the plan may use (default: whatever the budget needs).
    pub fn offload(mut self, offload: Offload) -> Self {
        self.offload = offload;
        self
    }

    /// The bounds every request is checked against.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The kernels this engine's ops use (default: the automatic choice, or the environment's).
    pub fn kernels(mut self, kernels: KernelPolicy) -> Self {
        self.kernels = kernels;
        self
    }

    /// Makes the memory plan for `request` (its length, sizes and image) instead of a 5 s clip
    /// at the mode's preset. Larger requests are refused later when they would not fit the
    /// budget under the placements chosen now.
    pub fn plan_for(mut self, request: &GenerationRequest) -> Result<Self> {
        let valid = request.validate(&self.limits)?;
        let seconds = valid.request.seconds as usize;
        self.design = Some(MemoryJob {
            shapes: LatentShapes::new(audio_frames_for_seconds(seconds), valid.base, valid.sr)?,
            text_tokens: CONTEXT_ROWS,
            image: valid.request.image.is_some(),
        });
        Ok(self)
    }

    /// How many encoded prompts the engine keeps (0: none).
    pub fn prompt_cache(mut self, entries: usize) -> Self {
        self.prompt_cache = entries;
        self
    }

    /// The plan the engine would use, without loading anything (real weights: from the
    /// folders' configurations; demo and random: from theirs). Needs no device memory.
    pub fn plan(&self) -> Result<MemoryPlan> {
        let (device, dtype) = self.placement_target();
        let source = self.source(&device)?;
        let configs = source.configs()?;
        let codecs = source.codec_memory(dtype)?;
        plan_memory(
            &self.design_job()?,
            &configs.memory_models(dtype, codecs),
            &self.budget(&device)?,
        )
    }

    /// Loads every model the mode needs, placed as the memory plan says.
    pub fn build(self, progress: &mut dyn Progress) -> Result<Engine> {
        let started = Instant::now();
        progress.stage_started(StageKind::LoadModels, None);
        let (device, dtype) = self.placement_target();
        let source = self.source(&device)?;
        let configs = source.configs()?;
        let codecs = source.codecs(dtype, &device)?;
        let memory = configs.memory_models(dtype, codecs.memory);
        let budget = self.budget(&device)?;
        let plan = plan_memory(&self.design_job()?, &memory, &budget)?;
        let arrangement = plan.arrangement;
        tracing::info!("memory plan: {}", plan.summary());

        // Each model is loaded where its placement keeps it between uses: on the device when
        // resident, else in host memory (the slot then parks or streams it).
        let home = |placement: Placement| match placement {
            Placement::Resident => device.clone(),
            _ => Device::Cpu,
        };
        // The text encoder computes in bf16 on GPUs and on the host path, f32 on CPU engines.
        let text_dtype = text_dtype(&device);
        let text = source.text(text_dtype, &home(arrangement.text_encoder))?;
        let dit_options = arrangement.precision.load_options(dtype);
        let dit_home = home(arrangement.dits);
        let dit = source
            .dit(false, &dit_options, &dit_home)?
            .ok_or_else(|| Error::Internal("no base DiT in the mode".into()))?;
        let sr_dit = source.dit(true, &dit_options, &dit_home)?;

        let mut sampler = match self.mode.dit {
            crate::models::BaseModel::Base => SamplerConfig::base(),
            crate::models::BaseModel::Distilled => SamplerConfig::distilled(),
        };
        if sr_dit.is_some() {
            sampler = sampler.with_sr(SrStage::default());
        }
        let identity = text.encoder().identity().as_str().to_string();
        let negative_cache = self
            .negative_cache
            .then(NegativePromptCache::default_dir)
            .flatten()
            .map(NegativePromptCache::new);
        let engine = Engine {
            device: device.clone(),
            dtype,
            mode: self.mode,
            demo: matches!(self.weights, WeightsSource::Demo),
            text: Mutex::new(Slot::new(text, arrangement.text_encoder, &device)?),
            dit: Mutex::new(Slot::new(dit, arrangement.dits, &device)?),
            sr_dit: sr_dit
                .map(|m| Slot::new(m, arrangement.dits, &device).map(Mutex::new))
                .transpose()?,
            codecs: codecs.models,
            memory,
            budget: MemoryBudget {
                max_memory: plan.budget,
                ..budget
            },
            arrangement,
            limits: self.limits,
            kernels: self.kernels,
            sampler,
            negative_cache,
            prompts: PromptCache::new(self.prompt_cache, identity),
        };
        progress.stage_finished(StageKind::LoadModels, started.elapsed());
        Ok(engine)
    }

    /// The device and compute dtype the models are placed for (the demo: the CPU in f32).
    fn placement_target(&self) -> (Device, DType) {
        let device = match self.weights {
            WeightsSource::Demo => Device::Cpu,
            _ => self.device.clone(),
        };
        let dtype = if device.is_cpu() {
            DType::F32
        } else {
            DType::BF16
        };
        (device, dtype)
    }

    fn source(&self, device: &Device) -> Result<Source<'_>> {
        Ok(match &self.weights {
            WeightsSource::Folders(dirs) => Source::Folders(Folders::new(dirs, self.mode)?),
            WeightsSource::Demo => Source::Blueprint(Box::new(Blueprint::demo(&self.mode)?)),
            WeightsSource::Random => {
                Source::Blueprint(Box::new(Blueprint::published(&self.mode, device)?))
            }
        })
    }

    /// The clip the plan is made for ([`EngineBuilder::plan_for`], else 5 s at the mode's
    /// resolution preset).
    fn design_job(&self) -> Result<MemoryJob> {
        if let Some(job) = self.design {
            return Ok(job);
        }
        let ((w, h), sr) = self.mode.resolution.stage_sizes(None);
        let base = LatentSize::from_pixels(w as usize, h as usize)?;
        let sr = sr
            .map(|(w, h)| LatentSize::from_pixels(w as usize, h as usize))
            .transpose()?;
        Ok(MemoryJob {
            image: self.mode.image,
            ..MemoryJob::clip(DESIGN_SECONDS, base, sr)?
        })
    }

    fn budget(&self, device: &Device) -> Result<MemoryBudget> {
        let max_memory = match self.max_memory {
            Some(bytes) => bytes,
            None => device_memory(device).map(|m| m.free).ok_or_else(|| {
                Error::InvalidInput(
                    "the device's memory cannot be read; give a budget (--max-memory)".into(),
                )
            })?,
        };
        Ok(MemoryBudget {
            max_memory,
            precision: self.precision,
            offload: self.offload,
        })
    }
}

/// The default clip length the plan is made for: the reference's usual 5 s.
const DESIGN_SECONDS: usize = 5;

/// The compute dtype of the text encoder on `device`: bf16 as the reference on GPUs, f32 on
/// CPU engines (the demo).
fn text_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

/// Models read from folders, or generated.
enum Source<'a> {
    Folders(Folders<'a>),
    Blueprint(Box<Blueprint>),
}

impl Source<'_> {
    fn configs(&self) -> Result<Configs> {
        match self {
            Self::Folders(f) => f.configs(),
            Self::Blueprint(b) => Ok(b.configs()),
        }
    }

    fn codecs(&self, dtype: DType, device: &Device) -> Result<Codecs> {
        match self {
            Self::Folders(f) => f.codecs(dtype, device),
            Self::Blueprint(b) => b.codecs(dtype, device),
        }
    }

    /// The codecs' memory without loading them (for a plan made before loading anything).
    fn codec_memory(&self, dtype: DType) -> Result<CodecMemory> {
        match self {
            Self::Folders(f) => f.codec_memory(dtype),
            Self::Blueprint(b) => b.codec_memory(dtype),
        }
    }

    fn text(&self, dtype: DType, device: &Device) -> Result<cadence_text::PromptEncoder> {
        match self {
            Self::Folders(f) => f.text(dtype, device),
            Self::Blueprint(b) => b.text(dtype, device),
        }
    }

    fn dit(
        &self,
        sr: bool,
        options: &cadence_model::LoadOptions,
        device: &Device,
    ) -> Result<Option<crate::dit_velocity::DitVelocity>> {
        match self {
            Self::Folders(f) => f.dit(sr, options, device),
            Self::Blueprint(b) => b.dit(sr, options, device),
        }
    }
}

/// The configurations the memory plan sizes.
#[derive(Debug, Clone)]
pub(super) struct Configs {
    pub(super) text: TextEncoderConfig,
    pub(super) base: DitConfig,
    pub(super) sr: Option<DitConfig>,
}

impl Configs {
    fn memory_models(&self, dtype: DType, codecs: CodecMemory) -> MemoryModels {
        MemoryModels {
            text: self.text.clone(),
            text_dtype: text_dtype_for(dtype),
            base: self.base.clone(),
            sr: self.sr.clone(),
            compute: dtype,
            codecs,
            reserve: if dtype == DType::F32 {
                HOST_RESERVE
            } else {
                RESERVE
            },
        }
    }
}

/// The text encoder's dtype for an engine computing in `dtype` (see [`text_dtype`]).
fn text_dtype_for(dtype: DType) -> DType {
    if dtype == DType::F32 {
        DType::F32
    } else {
        DType::BF16
    }
}

/// The video decoder the engine was built with.
pub(super) enum VideoDecoderModel {
    /// Turbo-VAED, the default (fast, windowed).
    Turbo(Box<TurboVaed>),
    /// The Wan2.2 VAE's own decoder (the codecs' `wan`).
    Wan,
}

/// The codecs, always on the device (about 1 GB at the real sizes).
pub(super) struct CodecModels {
    pub(super) video_decoder: VideoDecoderModel,
    /// The Wan VAE: encodes reference images (TI2V); decodes when it is the video decoder.
    pub(super) wan: Option<WanVae>,
    pub(super) audio_vae: Oobleck,
}

/// The loaded codecs and what the plan needs to know of them.
pub(super) struct Codecs {
    pub(super) models: CodecModels,
    pub(super) memory: CodecMemory,
}

impl Codecs {
    /// Measures the codecs by their tensor specs (their weights in `dtype`, Oobleck's in f32).
    pub(super) fn new(
        video_decoder: VideoDecoderModel,
        turbo: Option<TurboConfig>,
        wan: Option<WanVae>,
        wan_config: Option<WanConfig>,
        audio_vae: Oobleck,
        oobleck: &OobleckConfig,
        dtype: DType,
    ) -> Result<Self> {
        let memory = codec_memory(turbo.as_ref(), wan_config.as_ref(), oobleck, dtype)?;
        Ok(Self {
            models: CodecModels {
                video_decoder,
                wan,
                audio_vae,
            },
            memory,
        })
    }
}

/// The plan's view of the codecs: their weights' bytes and the decoders' widths.
pub(super) fn codec_memory(
    turbo: Option<&TurboConfig>,
    wan: Option<&WanConfig>,
    oobleck: &OobleckConfig,
    dtype: DType,
) -> Result<CodecMemory> {
    let bytes = |specs: Vec<TensorSpec>, dtype: DType| -> u64 {
        specs
            .iter()
            .map(|s| (s.shape.iter().product::<usize>() * dtype.size_in_bytes()) as u64)
            .sum()
    };
    let mut weights = bytes(Oobleck::tensor_specs(oobleck)?, DType::F32);
    if let Some(c) = turbo {
        weights += bytes(TurboVaed::tensor_specs(c)?, dtype);
    }
    if let Some(c) = wan {
        weights += bytes(WanVae::tensor_specs(c)?, dtype);
    }
    let decode_channels = match (turbo, wan) {
        (Some(t), _) => t.decoder_block_out_channels.get(1).copied().unwrap_or(0),
        (None, Some(w)) => w.dec_dim * w.dim_mult.get(1).copied().unwrap_or(1),
        (None, None) => 0,
    };
    Ok(CodecMemory {
        weights,
        decode_channels,
        dtype_bytes: dtype.size_in_bytes() as u64,
        audio_channels: oobleck.decoder.channels,
    })
}
