//! The library API: build an engine once, then turn requests into clips.
//!
//! ```no_run
//! use cadence_pipeline::engine::{CancelToken, Clip, EngineBuilder};
//! use cadence_pipeline::GenerationRequest;
//! # fn main() -> cadence_core::Result<()> {
//! // The embedded tiny demo model; real weights: EngineBuilder::new(WeightsSource::Folders(dirs))
//! let engine = EngineBuilder::demo().build(&mut ())?;
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
//! A generation runs: the request's checks (limits, then the memory it needs against the
//! engine's budget), text encoding (or the prompt cache), reference image/audio encoding, the
//! sampling loops, the video decoder streaming frames to a [`ClipSink`] window by window, then
//! the audio track. Between stages the models move as the engine's memory plan says
//! ([`crate::memory`]): a visiting model comes to the device for its stage and leaves after it,
//! a streamed one brings its layers a few at a time. Muxing is the sink's business
//! ([`Mp4Sink`] writes an MP4).

mod blueprint;
mod builder;
mod demo;
mod inputs;
mod load;
mod placement;
mod progress;
mod prompt_cache;
mod random;
mod sink;
mod work;

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use cadence_codec::oobleck::BottleneckNoise;
use cadence_codec::{encode_reference_audio, latent_to_waveform_44100, ReferenceAudioConfig};
use cadence_core::{Error, Result};
use cadence_kernels::dispatch::KernelPolicy;
use cadence_media::DecodedImage;
use cadence_text::{
    negative_prompt_key, EncodedPrompt, NegativePromptCache, PromptEncoder, NEGATIVE_PROMPT,
};

use crate::dit_velocity::DitVelocity;
use crate::memory::{
    arrange, part, Arrangement, MemoryBudget, MemoryJob, MemoryModels, MemoryPlan, MemoryStage,
};
use crate::models::Mode;
use crate::noise::{NoiseSource, SeededNoise};
use crate::request::{GenerationRequest, Limits, ValidatedRequest};
use crate::sampler::{
    audio_latent_from_vae_layout, AudioOutput, ImageLatents, SampledLatents, Sampler,
    SamplerConfig, SamplingInputs, SamplingObserver, StepRecord,
};
use crate::shapes::{LatentSize, FPS};
use crate::velocity::{Stage, TextContext};

pub use builder::{EngineBuilder, WeightsSource};
pub use inputs::PreparedRequest;
pub use placement::StageResidency;
pub use progress::{CancelToken, DenoiseStats, GenerationReport, Progress, StageKind, TextStats};
pub use sink::{Clip, ClipInfo, ClipSink, Mp4Sink};
pub use work::DitWork;

use builder::{CodecModels, VideoDecoderModel};
use inputs::UserAudioInput;
use placement::{lock, missing, Ledger, Slot};
use progress::StageTimer;
use prompt_cache::PromptCache;
use work::{text_encoder_flops, Counted};

/// Sample rate of the clip's audio track.
pub const OUTPUT_SAMPLE_RATE: u32 = cadence_codec::audio_path::OUTPUT_SAMPLE_RATE;
/// Channels of the clip's audio track.
pub const OUTPUT_CHANNELS: u16 = 2;

/// Loaded models, where the memory plan keeps them, and the sampling recipe. Built by
/// [`EngineBuilder`]; one generation at a time (calls from several threads take turns).
pub struct Engine {
    device: Device,
    dtype: DType,
    mode: Mode,
    demo: bool,
    text: Mutex<Slot<PromptEncoder>>,
    dit: Mutex<Slot<DitVelocity>>,
    sr_dit: Option<Mutex<Slot<DitVelocity>>>,
    codecs: CodecModels,
    memory: MemoryModels,
    budget: MemoryBudget,
    arrangement: Arrangement,
    limits: Limits,
    kernels: KernelPolicy,
    sampler: SamplerConfig,
    negative_cache: Option<NegativePromptCache>,
    prompts: PromptCache,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("mode", &self.mode)
            .field("device", &self.device)
            .field("arrangement", &self.arrangement)
            .field("sampler", &self.sampler)
            .field("demo", &self.demo)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Whether this engine runs the embedded tiny random models.
    pub fn is_demo(&self) -> bool {
        self.demo
    }

    /// The mode it was built for (which models it holds).
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The device its models compute on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The bounds requests are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How the models are placed (precision and placements of the memory plan).
    pub fn arrangement(&self) -> Arrangement {
        self.arrangement
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

    /// The memory plan of `request` on this engine (its placements, its budget): what
    /// [`Engine::generate`] checks before any work. Fails with the limit and the fix when the
    /// request is out of bounds or does not fit.
    pub fn plan(&self, request: &GenerationRequest) -> Result<MemoryPlan> {
        let valid = request.validate(&self.limits)?;
        self.request_plan(&valid, None)
    }

    /// Generates one clip into `sink`: [`PreparedRequest::new`] with this engine's limits,
    /// then [`Engine::generate_prepared`].
    pub fn generate(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn ClipSink,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<GenerationReport> {
        let prepared = PreparedRequest::new(request, &self.limits)?;
        self.generate_prepared(&prepared, sink, progress, cancel)
    }

    /// Generates one clip into `sink`. Deterministic for a given request (seed included),
    /// engine and device, whatever the placements. Before any model runs, the prompt's tokens
    /// and the memory the clip needs are checked against the engine's limits and budget.
    /// Cancelling `cancel` stops within a step (or a decoder window) with [`Error::Cancelled`].
    pub fn generate_prepared(
        &self,
        prepared: &PreparedRequest,
        sink: &mut dyn ClipSink,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<GenerationReport> {
        self.kernels
            .scope(|| self.generate_scoped(prepared, sink, progress, cancel))
    }

    fn generate_scoped(
        &self,
        prepared: &PreparedRequest,
        sink: &mut dyn ClipSink,
        progress: &mut dyn Progress,
        cancel: &CancelToken,
    ) -> Result<GenerationReport> {
        let mut timer = StageTimer::new(progress, &[&self.device]);
        let (valid, inputs) = (&prepared.valid, &prepared.inputs);
        for w in &valid.warnings {
            timer.warn(w.to_string());
        }
        self.check_request(valid)?;
        let tokens = self.count_tokens(&valid.request.prompt)?;
        let plan = self.request_plan(valid, Some(tokens))?;
        cancel.check()?;
        let mut ledger = Ledger::default();

        let (text, null_text, text_stats) = timer.run(StageKind::EncodeText, None, |_| {
            self.encode_text(&valid.request.prompt)
        })?;
        cancel.check()?;
        let image = match &inputs.image {
            Some(image) => Some(timer.run(StageKind::EncodeImage, None, |_| {
                self.encode_image(image, valid, cancel)
            })?),
            None => None,
        };
        cancel.check()?;
        let user_audio = match &inputs.audio {
            Some(audio) => Some(timer.run(StageKind::EncodeAudio, None, |_| {
                self.encode_audio(audio, valid, cancel)
            })?),
            None => None,
        };
        ledger.record(MemoryStage::Encode, self.residency());
        lock(&self.text).leave();
        cancel.check()?;

        let shapes = valid.shapes(user_audio.as_ref().map(|a| a.frames))?;
        let sampling = SamplingInputs {
            shapes,
            text,
            null_text,
            image,
            user_audio: user_audio.as_ref().map(|a| a.latent.clone()),
            device: self.device.clone(),
        };
        let mut recipe = self.sampler.clone();
        if valid.sr.is_none() {
            recipe.sr = None;
        }
        let base_steps = recipe.base.num_steps;
        let sr_steps = recipe.sr.as_ref().map_or(0, |s| s.num_steps);
        let base_model = Counted::new(&self.dit);
        let sr_model = match (&self.sr_dit, valid.sr) {
            (Some(slot), Some(_)) => Some(Counted::new(slot)),
            _ => None,
        };
        let mut sampler = Sampler::new(&base_model, recipe);
        if let Some(sr) = &sr_model {
            sampler = sampler.with_sr_model(sr);
        }
        let mut noise = SeededNoise::new(valid.request.seed);
        let (latents, denoise) = {
            let mut observer = StepObserver {
                engine: self,
                ledger: &mut ledger,
                timer: &mut timer,
                cancel,
                running: None,
                step_start: std::time::Instant::now(),
                base_steps,
                sr_steps,
                stages: Vec::new(),
            };
            let latents = sampler.sample(&sampling, &mut noise, &mut observer)?;
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
        for slot in self.dit_slots() {
            lock(slot).leave();
        }

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
            let mut wave = match latents.audio_output {
                AudioOutput::DecodeLatent => {
                    let mut wave = self.decode_audio(&latents, cancel)?;
                    if self.demo {
                        quiet_noise(&mut wave, OUTPUT_CHANNELS as usize);
                    }
                    wave
                }
                AudioOutput::UserOriginal => user_audio
                    .as_ref()
                    .map(|a| a.original_44100.clone())
                    .ok_or_else(|| {
                        Error::Internal(
                            "the sampler asked for user audio, but none was given".into(),
                        )
                    })?,
            };
            // The soundtrack ends with the last frame (the audio latents outlast the video
            // frames by up to 3 frames' worth).
            wave.truncate(info.audio_samples());
            leave_headroom(&mut wave);
            sink.audio(&wave)
        })?;
        ledger.record(MemoryStage::Decode, self.residency());
        Ok(GenerationReport {
            info,
            seed: valid.request.seed,
            timings: timer.timings,
            warnings: timer.warnings,
            demo: self.demo,
            denoise,
            text: text_stats,
            plan,
            residency: ledger.stages,
        })
    }

    /// [`Engine::generate`] into memory, with no progress reporting.
    pub fn generate_clip(&self, request: &GenerationRequest) -> Result<(Clip, GenerationReport)> {
        let mut clip = Clip::default();
        let report = self.generate(request, &mut clip, &mut (), &CancelToken::new())?;
        Ok((clip, report))
    }

    /// Fails, naming the missing model, when the request needs one this engine lacks.
    fn check_request(&self, valid: &ValidatedRequest) -> Result<()> {
        if valid.sr.is_some() && self.sr_dit.is_none() {
            return Err(Error::InvalidInput(format!(
                "a super-resolution size was requested, but this engine ({}) has no \
                 super-resolution model; build it for 540p or 1080p",
                self.mode
            )));
        }
        if valid.request.image.is_some() && self.codecs.wan.is_none() {
            return Err(Error::InvalidInput(format!(
                "a reference image was given, but this engine ({}) has no image encoder (the \
                 Wan2.2 VAE); build it for image-to-video",
                self.mode
            )));
        }
        Ok(())
    }

    /// The number of tokens the text encoder would see, refused above the limit before any
    /// encoding (the encoder's attention grows with the square of it).
    fn count_tokens(&self, prompt: &str) -> Result<usize> {
        let tokens = lock(&self.text).model().tokenize(prompt)?.len();
        if tokens > self.limits.max_prompt_tokens {
            return Err(Error::InvalidInput(format!(
                "the prompt is {tokens} tokens, over the limit of {} (the video model reads only \
                 the first {}); shorten it",
                self.limits.max_prompt_tokens,
                cadence_text::CONTEXT_ROWS
            )));
        }
        Ok(tokens)
    }

    /// The plan of a validated request under this engine's placements; an error when it does
    /// not fit the budget. `tokens` is the prompt's length once known (the limit before). User
    /// audio is cut to the clip's length, so the clip's length bounds it.
    fn request_plan(&self, valid: &ValidatedRequest, tokens: Option<usize>) -> Result<MemoryPlan> {
        let tokens = tokens.unwrap_or(self.limits.max_prompt_tokens);
        let audio_frames = crate::shapes::audio_frames_for_seconds(valid.request.seconds as usize);
        let job = MemoryJob {
            shapes: crate::shapes::LatentShapes::new(audio_frames, valid.base, valid.sr)?,
            text_tokens: tokens,
            image: valid.request.image.is_some(),
        };
        let plan = arrange(&job, &self.memory, self.arrangement, self.budget.max_memory);
        if !plan.fits() {
            return Err(Error::InvalidInput(format!(
                "this clip needs about {:.1} GB of {} memory with this engine's placement ({}), \
                 over its budget of {:.1} GB; make it shorter or smaller, or build the engine \
                 with more offloading or a larger budget",
                crate::memory::gb(plan.peak()),
                if self.device.is_cpu() {
                    "host"
                } else {
                    "device"
                },
                plan.summary(),
                crate::memory::gb(plan.budget)
            )));
        }
        Ok(plan)
    }

    /// Each model's bytes on the device now, named as the plan names them.
    fn residency(&self) -> Vec<(&'static str, u64)> {
        let mut out = vec![
            (part::CODECS, self.memory.codecs.weights),
            (part::TEXT_ENCODER, lock(&self.text).device_bytes()),
            (part::BASE_DIT, lock(&self.dit).device_bytes()),
        ];
        if let Some(sr) = &self.sr_dit {
            out.push((part::SR_DIT, lock(sr).device_bytes()));
        }
        out
    }

    fn dit_slots(&self) -> impl Iterator<Item = &Mutex<Slot<DitVelocity>>> {
        std::iter::once(&self.dit).chain(self.sr_dit.as_ref())
    }

    /// The prompt's context and, when guidance needs it, the negative prompt's, with the work
    /// the encoder did. The text encoder comes to the device if it visits (and stays there
    /// until the encode stage is recorded).
    fn encode_text(&self, prompt: &str) -> Result<(TextContext, Option<TextContext>, TextStats)> {
        let mut slot = lock(&self.text);
        // Tokens of each prompt the encoder itself ran on (cached prompts cost nothing).
        let mut ran = Vec::new();
        let (context, _) = self.prompts.get_or_encode(prompt, || {
            slot.enter()?;
            let encoded = slot.model().encode(prompt, &self.device)?;
            ran.push(encoded.token_count);
            Ok(encoded)
        })?;
        let negative = if self.sampler.needs_negative_prompt() {
            let (negative, _) = self.prompts.get_or_encode(NEGATIVE_PROMPT, || {
                if self.negative_cache_hit(slot.model())? {
                    return slot
                        .model()
                        .encode_negative(self.negative_cache.as_ref(), &self.device);
                }
                slot.enter()?;
                let encoded = slot
                    .model()
                    .encode_negative(self.negative_cache.as_ref(), &self.device)?;
                ran.push(encoded.token_count);
                Ok(encoded)
            })?;
            Some(negative)
        } else {
            None
        };
        let config = slot.model().encoder().config().clone();
        drop(slot);
        let flops = ran.iter().map(|&t| text_encoder_flops(&config, t)).sum();
        Ok((
            text_context(&context, &self.device)?,
            negative
                .map(|n| text_context(&n, &self.device))
                .transpose()?,
            TextStats { tokens: ran, flops },
        ))
    }

    /// Whether the negative prompt's context will come from the on-disk cache.
    fn negative_cache_hit(&self, encoder: &PromptEncoder) -> Result<bool> {
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
        image: &DecodedImage,
        valid: &ValidatedRequest,
        cancel: &CancelToken,
    ) -> Result<ImageLatents> {
        let wan = self
            .codecs
            .wan
            .as_ref()
            .ok_or_else(|| missing("image encoder"))?;
        let encode_at = |size: LatentSize| -> Result<Tensor> {
            let pixels = image.reference(size.width_px() as u32, size.height_px() as u32)?;
            let pixels = pixels.to_tensor(&self.device)?.to_dtype(self.dtype)?;
            Ok(wan.encode_image(&pixels, cancel)?.to_dtype(DType::F32)?)
        };
        Ok(ImageLatents {
            base: encode_at(valid.base)?,
            sr: valid.sr.map(encode_at).transpose()?,
        })
    }

    /// The user's audio: its latent in the DiT layout and the waveform for the clip.
    fn encode_audio(
        &self,
        audio: &UserAudioInput,
        valid: &ValidatedRequest,
        cancel: &CancelToken,
    ) -> Result<UserAudio> {
        let seconds = valid.request.seconds as f64;
        let waveform = Tensor::new(audio.reference.samples.as_slice(), &self.device)?;
        let mut noise = SeededBottleneck(SeededNoise::new(valid.request.seed ^ AUDIO_NOISE_STREAM));
        let encoded = encode_reference_audio(
            &self.codecs.audio_vae,
            &waveform,
            Some(seconds),
            &ReferenceAudioConfig::default(),
            &mut noise,
            cancel,
        )?;
        let latent = audio_latent_from_vae_layout(&encoded.latent)?;
        let frames = latent.dim(1)?;
        // The clip carries the user's own sound, resampled once to the output rate; the
        // reference instead decodes the (altered) latent (its issue #44).
        let channels = OUTPUT_CHANNELS as usize;
        let mut original_44100 = audio.decoded.stereo(OUTPUT_SAMPLE_RATE)?;
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
        let latent = latents.video.to_dtype(self.dtype)?;
        let mut on_chunk = |chunk: cadence_codec::video::VideoChunk| -> Result<()> {
            cancel.check()?;
            let frames = chunk.frames_u8()?; // [1, t, H, W, 3]
            let count = frames.dim(1)?;
            let bytes = frames.flatten_all()?.to_vec1::<u8>()?;
            sink.frames(&bytes, count)?;
            progress.advance(StageKind::DecodeVideo, count as u64);
            Ok(())
        };
        match &self.codecs.video_decoder {
            VideoDecoderModel::Turbo(turbo) => {
                turbo.decode_streaming(&latent, cancel, &mut on_chunk)
            }
            VideoDecoderModel::Wan => self
                .codecs
                .wan
                .as_ref()
                .ok_or_else(|| missing("Wan2.2 decoder"))?
                .decode_streaming(&latent, cancel, &mut on_chunk),
        }
    }

    /// The generated audio latent to interleaved stereo at 44.1 kHz.
    fn decode_audio(&self, latents: &SampledLatents, cancel: &CancelToken) -> Result<Vec<f32>> {
        let wave = latent_to_waveform_44100(&self.codecs.audio_vae, &latents.audio, cancel)?; // [N, 2]
        Ok(wave.clamp(-1f32, 1f32)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// The loudest sample a clip carries: -1 dBFS. AAC encoders overshoot a waveform that reaches
/// full scale (decoders then clip), so louder tracks are scaled down to this peak, as a whole
/// (a gain, no distortion).
const PEAK: f32 = 0.891;

/// Scales `wave` down to [`PEAK`] when it is louder.
fn leave_headroom(wave: &mut [f32]) {
    let peak = wave.iter().fold(0f32, |m, s| m.max(s.abs()));
    if peak > PEAK {
        let gain = PEAK / peak;
        wave.iter_mut().for_each(|s| *s *= gain);
    }
}

/// The demo's random audio VAE makes loud noise with a large DC offset: centre each channel
/// and bring it to -20 dBFS RMS, so the demo plays at a safe level on speakers.
fn quiet_noise(wave: &mut [f32], channels: usize) {
    const RMS: f32 = 0.1;
    for c in 0..channels {
        let n = (wave.len() / channels).max(1) as f32;
        let mean = wave.iter().skip(c).step_by(channels).sum::<f32>() / n;
        let power = wave
            .iter()
            .skip(c)
            .step_by(channels)
            .map(|s| (s - mean).powi(2))
            .sum::<f32>()
            / n;
        let gain = if power > 0.0 { RMS / power.sqrt() } else { 0.0 };
        wave.iter_mut()
            .skip(c)
            .step_by(channels)
            .for_each(|s| *s = (*s - mean) * gain);
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

/// An encoded prompt as the sampler takes it: `[1, rows, hidden]` f32 on `device`, and the
/// valid rows.
fn text_context(prompt: &EncodedPrompt, device: &Device) -> Result<TextContext> {
    TextContext::new(
        prompt.context_f32()?.to_device(device)?,
        prompt.original_len,
    )
}

/// Bridges the sampler's step events to stage and step timing, progress, cancellation and the
/// DiTs' placement (a visiting DiT arrives when its stage starts and leaves when it ends).
struct StepObserver<'t, 'p> {
    engine: &'t Engine,
    ledger: &'t mut Ledger,
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
    /// Ends the running stage: records what was on the device and lets its DiT go. Its last
    /// step already synchronised the devices.
    fn finish_running(&mut self) {
        if let Some((stage, start)) = self.running.take() {
            self.timer.finish(stage, start.elapsed());
            let memory_stage = match stage {
                StageKind::DenoiseSuperResolution => MemoryStage::SuperResolution,
                _ => MemoryStage::Base,
            };
            self.ledger.record(memory_stage, self.engine.residency());
            if let Some(slot) = self.slot(stage) {
                lock(slot).leave();
            }
        }
    }

    fn slot(&self, stage: StageKind) -> Option<&Mutex<Slot<DitVelocity>>> {
        match stage {
            StageKind::DenoiseSuperResolution => self.engine.sr_dit.as_ref(),
            _ => Some(&self.engine.dit),
        }
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
        if let Some(slot) = self.slot(kind) {
            lock(slot).enter()?;
        }
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
