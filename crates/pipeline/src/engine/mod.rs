//! The library API: load the components once, then turn requests into clips.
//!
//! ```no_run
//! use cadence_pipeline::engine::{CancelToken, Clip, Engine};
//! use cadence_pipeline::GenerationRequest;
//! use cadence_weights::Dit;
//! # fn main() -> cadence_core::Result<()> {
//! // The embedded tiny demo model; real weights: Engine::load(&root, &manifest, &mode, options, &mut ())
//! let engine = Engine::demo(Dit::Distill)?;
//! let mut clip = Clip::default();
//! let report = engine.generate(
//!     &GenerationRequest::new("a woman smiles and says hello"),
//!     &mut clip,
//!     &mut (),
//!     &CancelToken::new(),
//! )?;
//! println!("{} frames, {} audio samples", report.info.frames, clip.audio.len());
//! # Ok(())
//! # }
//! ```
//!
//! A generation runs: text encoding (the 9B encoder is loaded for it and dropped afterwards
//! unless [`EngineOptions::keep_text_encoder`]), reference image/audio encoding, the sampling
//! loops, then the video decoder streaming frames to a [`ClipSink`] window by window, then the
//! audio track. Muxing is the sink's business (the CLI's sink writes an MP4).

mod demo;
mod flops;
mod generated;
mod load;
mod progress;
mod random;
mod sink;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

use cadence_codec::oobleck::BottleneckNoise;
use cadence_codec::{
    encode_reference_audio, latent_to_waveform_44100, Oobleck, ReferenceAudioConfig, TurboVaed,
    WanVae,
};
use cadence_core::{Error, Result};
use cadence_media::{
    load_reference_audio, load_reference_image, load_stereo_audio, AudioInputOptions,
};
use cadence_model::{DitVariant, LoadOptions, WeightFormat};
use cadence_text::{negative_prompt_key, EncodedPrompt, NegativePromptCache, PromptEncoder};
use cadence_weights::{Dit, Resolution};

use crate::model::{Stage, TextContext};
use crate::noise::{NoiseSource, SeededNoise};
use crate::request::{GenerationRequest, Limits, ValidatedRequest};
use crate::sampler::{
    audio_latent_from_vae_layout, AudioOutput, ImageLatents, SampledLatents, Sampler,
    SamplerConfig, SamplingInputs, SamplingObserver, StepRecord,
};
use crate::shapes::{LatentSize, FPS};

pub use flops::DitWork;
pub use progress::{CancelToken, DenoiseStats, GenerationReport, Progress, StageKind, TextStats};
pub use sink::{Clip, ClipInfo, ClipSink, Mp4Sink};

use flops::{text_encoder_flops, Counted, Denoiser};
use progress::StageTimer;

/// Sample rate of the clip's audio track.
pub const OUTPUT_SAMPLE_RATE: u32 = cadence_codec::audio_glue::OUTPUT_SAMPLE_RATE;
/// Channels of the clip's audio track.
pub const OUTPUT_CHANNELS: u16 = 2;

/// Where and how the components run.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Device of the DiTs and the codecs.
    pub device: Device,
    /// Compute dtype of the DiTs and the video codecs (bf16 on GPUs, f32 on CPUs).
    pub dtype: DType,
    /// Device of the text encoder (the CPU keeps 18 GB of GPU memory free for the DiT).
    pub text_device: Device,
    /// Keep the text encoder loaded between generations instead of loading it per request.
    pub keep_text_encoder: bool,
    /// How the DiTs hold their GEMM weights: dense in `dtype` (the reference numerics, the
    /// default) or FP8 quantised at load (half the memory; Hopper's fast GEMMs).
    pub dit_weights: WeightFormat,
}

impl EngineOptions {
    /// Everything on the CPU in f32.
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
            text_device: Device::Cpu,
            keep_text_encoder: false,
            dit_weights: WeightFormat::Dense,
        }
    }

    /// How the DiTs are loaded under these options.
    fn dit_load_options(&self) -> LoadOptions {
        LoadOptions {
            compute: self.dtype,
            weights: self.dit_weights,
        }
    }
}

/// How the engine gets a text encoder when it needs one.
enum TextSource {
    /// Loaded and kept.
    Resident(Box<PromptEncoder>),
    /// Loaded from this folder for each generation, then dropped.
    OnDisk(PathBuf),
}

/// The video decoder.
enum VideoDecoder {
    /// Turbo-VAED, the default (fast, windowed).
    Turbo(Box<TurboVaed>),
    /// The Wan2.2 VAE's own decoder (the engine's `wan` field).
    Wan,
}

/// Loaded components and the sampling recipe.
pub struct Engine {
    options: EngineOptions,
    text: TextSource,
    negative_cache: Option<NegativePromptCache>,
    sampler: SamplerConfig,
    dit: Denoiser,
    sr_dit: Option<Denoiser>,
    video_decoder: VideoDecoder,
    /// The Wan VAE: encodes reference images (TI2V); decodes when it is the video decoder.
    wan: Option<WanVae>,
    audio_vae: Oobleck,
    /// Whether these are the embedded tiny random models.
    demo: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sampler", &self.sampler)
            .field("super_resolution", &self.sr_dit.is_some())
            .field("image_encoder", &self.wan.is_some())
            .field("demo", &self.demo)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Whether this engine runs the embedded tiny random models.
    pub fn is_demo(&self) -> bool {
        self.demo
    }

    /// The sampling recipe (steps, guidance, SR stage).
    pub fn sampler_config(&self) -> &SamplerConfig {
        &self.sampler
    }

    /// Overrides the number of denoising steps of the base stage.
    pub fn set_base_steps(&mut self, steps: usize) -> Result<()> {
        if steps == 0 {
            return Err(Error::InvalidInput("steps must be at least 1".into()));
        }
        self.sampler.base.num_steps = steps;
        Ok(())
    }

    /// Generates one clip into `sink`. Deterministic for a given request (seed included),
    /// engine and device. Cancelling `cancel` stops at the next step with [`Error::Cancelled`].
    pub fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn ClipSink,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<GenerationReport> {
        let mut timer =
            StageTimer::new(progress, &[&self.options.device, &self.options.text_device]);
        let valid = request.validate(&Limits::default())?;
        for w in &valid.warnings {
            timer.warn(w.to_string());
        }
        self.check_request(&valid)?;
        let device = self.options.device.clone();

        let (text, null_text, text_stats) = timer.run(StageKind::EncodeText, None, |_| {
            self.encode_text(&valid.request.prompt)
        })?;
        cancel.check()?;
        let image = match &valid.request.image {
            Some(path) => Some(timer.run(StageKind::EncodeImage, None, |_| {
                self.encode_image(path, &valid)
            })?),
            None => None,
        };
        cancel.check()?;
        let user_audio = match &valid.request.audio {
            Some(path) => Some(timer.run(StageKind::EncodeAudio, None, |_| {
                self.encode_audio(path, &valid)
            })?),
            None => None,
        };
        cancel.check()?;

        let shapes = valid.shapes(user_audio.as_ref().map(|a| a.frames))?;
        let inputs = SamplingInputs {
            shapes,
            text,
            null_text,
            image,
            user_audio: user_audio.as_ref().map(|a| a.latent.clone()),
            device: device.clone(),
        };
        let mut recipe = self.sampler.clone();
        let mut sampler_sr = None;
        match (&self.sr_dit, valid.sr) {
            (Some(sr), Some(_)) => sampler_sr = Some(sr),
            _ => recipe.sr = None,
        }
        let base_steps = recipe.base.num_steps;
        let sr_steps = recipe.sr.as_ref().map_or(0, |s| s.num_steps);
        let base_model = Counted::new(&self.dit);
        let sr_model = sampler_sr.map(Counted::new);
        let mut sampler = Sampler::new(&base_model, recipe);
        if let Some(sr) = &sr_model {
            sampler = sampler.with_sr_model(sr);
        }
        let mut noise = SeededNoise::new(valid.request.seed);
        let (latents, denoise) = {
            let mut observer = StepObserver {
                timer: &mut timer,
                cancel,
                running: None,
                step_start: std::time::Instant::now(),
                base_steps,
                sr_steps,
                stages: Vec::new(),
            };
            let latents = sampler.sample(&inputs, &mut noise, &mut observer)?;
            observer.finish_running();
            (latents, observer.stages)
        };
        let denoise = denoise
            .into_iter()
            .map(|(stage, step_times)| DenoiseStats {
                stage,
                step_times,
                work: match (stage, &sr_model) {
                    (StageKind::DenoiseSuperResolution, Some(sr)) => sr.take(),
                    _ => base_model.take(),
                },
            })
            .collect();

        let size = valid.sr.unwrap_or(valid.base);
        let frames = (latents.video.dim(2)? - 1) * crate::shapes::VAE_TEMPORAL_STRIDE + 1;
        let info = ClipInfo {
            width: size.width_px() as u32,
            height: size.height_px() as u32,
            fps: FPS as u32,
            frames,
            sample_rate: OUTPUT_SAMPLE_RATE,
            channels: OUTPUT_CHANNELS,
        };
        sink.start(&info)?;
        timer.run(StageKind::DecodeVideo, Some(frames as u64), |p| {
            self.decode_video(&latents, sink, p, cancel)
        })?;
        timer.run(StageKind::DecodeAudio, None, |_| {
            let wave = match latents.audio_output {
                AudioOutput::DecodeLatent => self.decode_audio(&latents)?,
                AudioOutput::UserOriginal => user_audio
                    .as_ref()
                    .map(|a| a.original_44100.clone())
                    .ok_or_else(|| {
                        Error::InvalidInput(
                            "the sampler asked for user audio, but none was given".into(),
                        )
                    })?,
            };
            sink.audio(&wave)
        })?;
        Ok(GenerationReport {
            info,
            seed: valid.request.seed,
            timings: timer.timings,
            warnings: timer.warnings,
            demo: self.demo,
            denoise,
            text: text_stats,
        })
    }

    /// [`Engine::generate`] into memory, with no progress reporting.
    pub fn generate_clip(&self, request: &GenerationRequest) -> Result<(Clip, GenerationReport)> {
        let mut clip = Clip::default();
        let report = self.generate(request, &mut clip, &mut (), &CancelToken::new())?;
        Ok((clip, report))
    }

    /// Fails, naming the missing component, when the request needs one this engine lacks.
    fn check_request(&self, valid: &ValidatedRequest) -> Result<()> {
        if valid.sr.is_some() && self.sr_dit.is_none() {
            return Err(Error::InvalidInput(
                "a super-resolution size was requested, but no super-resolution model is loaded; \
                 load the engine for 540p or 1080p (cadence fetch --resolution 540p|1080p)"
                    .into(),
            ));
        }
        if valid.request.image.is_some() && self.wan.is_none() {
            return Err(Error::InvalidInput(
                "a reference image was given, but the Wan2.2 VAE (the image encoder) is not loaded; \
                 load the engine for image-to-video (cadence fetch --image)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The prompt's context and, when guidance needs it, the negative prompt's, with the work
    /// the encoder did.
    fn encode_text(&self, prompt: &str) -> Result<(TextContext, Option<TextContext>, TextStats)> {
        let loaded;
        let encoder: &PromptEncoder = match &self.text {
            TextSource::Resident(e) => e,
            TextSource::OnDisk(dir) => {
                loaded = load::prompt_encoder(dir, &self.options)?;
                &loaded
            }
        };
        let device = &self.options.device;
        let encoded = encoder.encode(prompt, device)?;
        let mut tokens = vec![encoded.token_count];
        let text = text_context(&encoded)?;
        let null_text = if self.sampler.needs_negative_prompt() {
            let cached = self.negative_is_cached(encoder)?;
            let negative = encoder.encode_negative(self.negative_cache.as_ref(), device)?;
            if !cached {
                tokens.push(negative.token_count);
            }
            Some(text_context(&negative)?)
        } else {
            None
        };
        let config = encoder.encoder().config();
        let flops = tokens.iter().map(|&t| text_encoder_flops(config, t)).sum();
        Ok((text, null_text, TextStats { tokens, flops }))
    }

    /// Whether the negative prompt's context will come from the cache rather than the encoder.
    fn negative_is_cached(&self, encoder: &PromptEncoder) -> Result<bool> {
        let Some(cache) = &self.negative_cache else {
            return Ok(false);
        };
        let e = encoder.encoder();
        let key = negative_prompt_key(
            encoder.tokenizer(),
            e.identity(),
            e.dtype(),
            e.attention_mode(),
            encoder.context_rows(),
        )?;
        Ok(cache.path(&key).is_file())
    }

    /// The reference image's latent at the base size and, with SR, at the SR size.
    fn encode_image(
        &self,
        path: &std::path::Path,
        valid: &ValidatedRequest,
    ) -> Result<ImageLatents> {
        let wan = self
            .wan
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("no image encoder is loaded".into()))?;
        let encode_at = |size: LatentSize| -> Result<Tensor> {
            let image =
                load_reference_image(path, size.width_px() as u32, size.height_px() as u32)?;
            let pixels = image
                .to_tensor(&self.options.device)?
                .to_dtype(self.options.dtype)?;
            Ok(wan
                .encode_image(&pixels, &CancelToken::new())?
                .to_dtype(DType::F32)?)
        };
        Ok(ImageLatents {
            base: encode_at(valid.base)?,
            sr: valid.sr.map(encode_at).transpose()?,
        })
    }

    /// The user's audio: its latent in the DiT layout and the waveform for the clip.
    fn encode_audio(&self, path: &std::path::Path, valid: &ValidatedRequest) -> Result<UserAudio> {
        let seconds = valid.request.seconds as f64;
        let input = load_reference_audio(path, &AudioInputOptions::default())?;
        let waveform = Tensor::new(input.samples.as_slice(), &self.options.device)?;
        let mut noise = SeededBottleneck(SeededNoise::new(valid.request.seed ^ AUDIO_NOISE_STREAM));
        let encoded = encode_reference_audio(
            &self.audio_vae,
            &waveform,
            Some(seconds),
            &ReferenceAudioConfig::default(),
            &mut noise,
            &CancelToken::new(),
        )?;
        let latent = audio_latent_from_vae_layout(&encoded.latent)?;
        let frames = latent.dim(1)?;
        // The clip carries the user's own sound, resampled once to the output rate; the
        // reference instead decodes the (altered) latent (its issue #44).
        let channels = OUTPUT_CHANNELS as usize;
        let mut original_44100 = load_stereo_audio(path, OUTPUT_SAMPLE_RATE)?;
        original_44100.truncate(frames * OUTPUT_SAMPLE_RATE as usize / FPS * channels);
        Ok(UserAudio {
            latent,
            frames,
            original_44100,
        })
    }

    /// Decodes the video latent window by window into the sink.
    fn decode_video(
        &self,
        latents: &SampledLatents,
        sink: &mut dyn ClipSink,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<()> {
        let latent = latents.video.to_dtype(self.options.dtype)?;
        let mut on_chunk = |chunk: cadence_codec::video::VideoChunk| -> Result<()> {
            cancel.check()?;
            let frames = chunk.frames_u8()?; // [1, t, H, W, 3]
            let count = frames.dim(1)?;
            let bytes = frames.flatten_all()?.to_vec1::<u8>()?;
            sink.frames(&bytes, count)?;
            progress.advance(StageKind::DecodeVideo, count as u64);
            Ok(())
        };
        match &self.video_decoder {
            VideoDecoder::Turbo(turbo) => turbo.decode_streaming(&latent, cancel, &mut on_chunk),
            VideoDecoder::Wan => self
                .wan
                .as_ref()
                .ok_or_else(|| Error::Config("the Wan decoder is selected but not loaded".into()))?
                .decode_streaming(&latent, cancel, &mut on_chunk),
        }
    }

    /// The generated audio latent to interleaved stereo at 44.1 kHz.
    fn decode_audio(&self, latents: &SampledLatents) -> Result<Vec<f32>> {
        let wave = latent_to_waveform_44100(&self.audio_vae, &latents.audio, &CancelToken::new())?; // [N, 2]
        Ok(wave.clamp(-1f32, 1f32)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// A seed offset so the audio VAE's bottleneck noise never repeats the latents' noise.
const AUDIO_NOISE_STREAM: u64 = 0x0A0D_10E5_EED5_0001;

/// The encoded user audio.
struct UserAudio {
    /// `[1, A, 64]` f32.
    latent: Tensor,
    /// `A`.
    frames: usize,
    /// The user's sound at 44.1 kHz, interleaved stereo, cut to the clip.
    original_44100: Vec<f32>,
}

/// The audio VAE's bottleneck noise from the seeded generator.
struct SeededBottleneck(SeededNoise);

impl BottleneckNoise for SeededBottleneck {
    fn sample(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        self.0.standard_normal(shape, device)
    }
}

/// An encoded prompt as the sampler takes it: `[1, rows, hidden]` f32 and the valid rows.
fn text_context(prompt: &EncodedPrompt) -> Result<TextContext> {
    TextContext::new(prompt.context_f32()?, prompt.original_len)
}

/// Bridges the sampler's step events to stage and step timing, progress and cancellation.
struct StepObserver<'t, 'p> {
    timer: &'t mut StageTimer<'p>,
    cancel: &'t CancelToken,
    running: Option<(StageKind, std::time::Instant)>,
    /// When the current step began (the end of the previous one, or the stage's start).
    step_start: std::time::Instant,
    base_steps: usize,
    sr_steps: usize,
    /// Each stage that ran, with its steps' times.
    stages: Vec<(StageKind, Vec<std::time::Duration>)>,
}

impl StepObserver<'_, '_> {
    /// Ends the running stage. Its last step already synchronised the devices.
    fn finish_running(&mut self) {
        if let Some((stage, start)) = self.running.take() {
            self.timer.finish(stage, start.elapsed());
        }
    }
}

/// The base stage's DiT variant and sampling recipe for `dit`.
fn base_stage(dit: Dit) -> (DitVariant, SamplerConfig) {
    match dit {
        Dit::Base => (DitVariant::Base, SamplerConfig::base()),
        Dit::Distill => (DitVariant::Distilled, SamplerConfig::distilled()),
    }
}

/// The super-resolution DiT variant a resolution needs, if any.
fn super_resolution_stage(resolution: Resolution) -> Option<DitVariant> {
    match resolution {
        Resolution::P256 => None,
        Resolution::P540 => Some(DitVariant::Sr540p),
        Resolution::P1080 => Some(DitVariant::Sr1080p),
    }
}

impl SamplingObserver for StepObserver<'_, '_> {
    fn stage_started(&mut self, stage: Stage, _video: &Tensor, _audio: &Tensor) -> Result<()> {
        self.cancel.check()?;
        self.finish_running();
        let (kind, steps) = match stage {
            Stage::Base => (StageKind::DenoiseBase, self.base_steps),
            Stage::SuperResolution => (StageKind::DenoiseSuperResolution, self.sr_steps),
        };
        self.timer.start(kind, Some(steps as u64));
        let now = std::time::Instant::now();
        self.running = Some((kind, now));
        self.step_start = now;
        self.stages.push((kind, Vec::with_capacity(steps)));
        Ok(())
    }

    fn step_finished(&mut self, record: &StepRecord<'_>) -> Result<()> {
        let _ = record;
        self.timer.synchronize()?;
        let now = std::time::Instant::now();
        if let Some((_, steps)) = self.stages.last_mut() {
            steps.push(now - self.step_start);
        }
        self.step_start = now;
        if let Some((kind, _)) = self.running {
            self.timer.advance(kind, 1);
        }
        self.cancel.check()
    }
}

#[cfg(test)]
mod tests;
