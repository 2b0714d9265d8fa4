//! The sampling loops: base (guided or not, UniPC or distilled) and the optional super-resolution stage,
//! exactly as the reference's `MagiEvaluator.evaluate` runs them.
//!
//! Random draws, in this order, all from the caller's [`NoiseSource`]:
//! 1. the audio latent `[1, A, 64]` (not in audio-driven mode);
//! 2. the video latent `[1, 48, T, h, w]`;
//! 3. distilled base stage: per step one video-shaped then one audio-shaped draw (the last step
//!    included);
//! 4. SR: the re-noise draw of the SR video shape (unless re-noising is off), then one draw of
//!    the audio shape for the SR model's noisy audio conditioning.
//!
//! The UniPC steps and the text encoder draw nothing.

pub mod config;
pub mod observer;
mod stage;

pub use config::{AudioDrivenPolicy, BaseStage, SamplerConfig, SrStage, DEFAULT_SHIFT};
pub use observer::{NoObserver, SamplingObserver, StepRecord};

use candle_core::{DType, Device, Tensor};

use cadence_core::{Error, Result};

use crate::noise::NoiseSource;
use crate::scheduler::ZeroSnrTable;
use crate::shapes::{LatentShapes, AUDIO_CHANNELS};
use crate::sr::{noisy_audio_condition, renoise_video, resize_trilinear};
use crate::velocity::{Stage, TextContext, VelocityModel};
use stage::{AudioTreatment, Guidance, StageRun};

/// Encoded first-frame image (TI2V), once per resolution the generation runs at.
#[derive(Debug, Clone)]
pub struct ImageLatents {
    /// `[1, 48, 1, h, w]` at the base size.
    pub base: Tensor,
    /// `[1, 48, 1, h_sr, w_sr]`, the image encoded again at the SR size (needed when SR runs).
    pub sr: Option<Tensor>,
}

/// Everything a generation samples from, already encoded.
#[derive(Debug, Clone)]
pub struct SamplingInputs {
    /// Latent shapes (from [`crate::request::ValidatedRequest::shapes`]).
    pub shapes: LatentShapes,
    /// The prompt's context.
    pub text: TextContext,
    /// The negative prompt's context (needed by guided stages).
    pub null_text: Option<TextContext>,
    /// First-frame image latents (TI2V).
    pub image: Option<ImageLatents>,
    /// User audio latent in the DiT layout `[1, A, 64]` (audio-driven); see
    /// [`audio_latent_from_vae_layout`].
    pub user_audio: Option<Tensor>,
    /// Device the latents live on (where the noise goes).
    pub device: Device,
}

/// Which audio the finished clip should carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioOutput {
    /// Decode [`SampledLatents::audio`] with the audio VAE.
    DecodeLatent,
    /// Use the user's original audio waveform (audio-driven, [`AudioDrivenPolicy::KeepUserAudio`]).
    UserOriginal,
}

/// The sampler's result: what goes to the decoders.
#[derive(Debug, Clone)]
pub struct SampledLatents {
    /// Final video latent (SR size when SR ran) `[1, 48, T, h, w]`.
    pub video: Tensor,
    /// Final audio latent `[1, A, 64]` (the base stage's; SR never changes audio).
    pub audio: Tensor,
    /// Where the clip's sound comes from.
    pub audio_output: AudioOutput,
}

/// Runs the configured stages with the given models.
pub struct Sampler<'m> {
    base_model: &'m dyn VelocityModel,
    sr_model: Option<&'m dyn VelocityModel>,
    config: SamplerConfig,
}

impl<'m> Sampler<'m> {
    /// A sampler for the base stage; add the SR model with [`Sampler::with_sr_model`].
    pub fn new(base_model: &'m dyn VelocityModel, config: SamplerConfig) -> Self {
        Self {
            base_model,
            sr_model: None,
            config,
        }
    }

    /// Adds the super-resolution model (required when a request asks for an SR size).
    pub fn with_sr_model(mut self, sr_model: &'m dyn VelocityModel) -> Self {
        self.sr_model = Some(sr_model);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Samples the clip's latents.
    pub fn sample(
        &self,
        inputs: &SamplingInputs,
        noise: &mut dyn NoiseSource,
        observer: &mut dyn SamplingObserver,
    ) -> Result<SampledLatents> {
        let shapes = &inputs.shapes;
        let sr_plan = self.sr_plan(inputs)?;
        if self.config.needs_negative_prompt() && inputs.null_text.is_none() {
            return Err(Error::InvalidInput(
                "this sampler configuration uses CFG: the negative prompt's context is required"
                    .into(),
            ));
        }
        if let Some(image) = &inputs.image {
            expect_dims(
                "image latent (base size)",
                &image.base,
                &shapes.image_at(shapes.base),
            )?;
        }
        let device = &inputs.device;
        let policy = self.config.audio_driven;

        let audio = match &inputs.user_audio {
            Some(user) => {
                expect_dims("user audio latent", user, &shapes.audio())?;
                user.to_device(device)?
            }
            None => noise.standard_normal(&shapes.audio(), device)?,
        };
        let video = noise.standard_normal(&shapes.base_video(), device)?;

        let base = &self.config.base;
        let audio_treatment = match (inputs.user_audio.is_some(), policy) {
            (false, _) => AudioTreatment::Step,
            (true, AudioDrivenPolicy::MatchReference) if base.solver.steps_user_audio => {
                AudioTreatment::Step
            }
            (true, _) if base.solver.draws_per_step => AudioTreatment::FixedKeepingDraws,
            (true, _) => AudioTreatment::Fixed,
        };
        let (video, audio) = StageRun {
            stage: Stage::Base,
            model: self.base_model,
            schedule: base.solver.schedule(base.num_steps, base.shift)?,
            solver: base.solver,
            guidance: base
                .guidance
                .as_ref()
                .map_or(Guidance::None, Guidance::Base),
            audio: audio_treatment,
            text: &inputs.text,
            null_text: inputs.null_text.as_ref(),
            image: inputs.image.as_ref().map(|i| &i.base),
        }
        .run(video, audio, noise, observer)?;

        let video = match sr_plan {
            Some(plan) => self.super_resolve(plan, inputs, &video, &audio, noise, observer)?,
            None => video,
        };
        let audio_output = match (inputs.user_audio.is_some(), policy) {
            (true, AudioDrivenPolicy::KeepUserAudio) => AudioOutput::UserOriginal,
            _ => AudioOutput::DecodeLatent,
        };
        Ok(SampledLatents {
            video,
            audio,
            audio_output,
        })
    }

    /// The SR stage's pieces when the request asks for SR, or an error naming what is missing.
    fn sr_plan<'a>(&'a self, inputs: &'a SamplingInputs) -> Result<Option<SrPlan<'a>>> {
        let Some(size) = inputs.shapes.sr else {
            return Ok(None);
        };
        let (Some(stage), Some(model)) = (self.config.sr.as_ref(), self.sr_model) else {
            return Err(Error::InvalidInput(
                "the request asks for super-resolution but the pipeline has no SR stage/model"
                    .into(),
            ));
        };
        let image = match &inputs.image {
            None => None,
            Some(ImageLatents { sr: Some(sr), .. }) => {
                expect_dims("image latent (SR size)", sr, &inputs.shapes.image_at(size))?;
                Some(sr)
            }
            Some(ImageLatents { sr: None, .. }) => {
                return Err(Error::InvalidInput(
                    "TI2V with super-resolution needs the image encoded at the SR size too".into(),
                ))
            }
        };
        Ok(Some(SrPlan {
            stage,
            model,
            image,
        }))
    }

    /// Upsample, re-noise and refine the base video with the SR model; audio is fixed
    /// conditioning and is not returned (the clip keeps the base audio).
    fn super_resolve(
        &self,
        plan: SrPlan<'_>,
        inputs: &SamplingInputs,
        base_video: &Tensor,
        base_audio: &Tensor,
        noise: &mut dyn NoiseSource,
        observer: &mut dyn SamplingObserver,
    ) -> Result<Tensor> {
        let shapes = &inputs.shapes;
        let [_, _, frames, height, width] = shapes
            .sr_video()
            .ok_or_else(|| Error::InvalidInput("SR stage without an SR size".into()))?;
        let resized = resize_trilinear(base_video, (frames, height, width))?;
        let video = match plan.stage.renoise_step {
            Some(step) => {
                let signal = ZeroSnrTable::new().signal_at(step)?;
                let draw = noise.standard_normal(resized.dims(), resized.device())?;
                renoise_video(&resized, &draw, signal)?
            }
            None => resized,
        };
        let draw = noise.standard_normal(base_audio.dims(), base_audio.device())?;
        let audio = noisy_audio_condition(base_audio, &draw, plan.stage.audio_noise_scale)?;
        let (video, _) = StageRun {
            stage: Stage::SuperResolution,
            model: plan.model,
            schedule: plan
                .stage
                .solver
                .schedule(plan.stage.num_steps, plan.stage.shift)?,
            solver: plan.stage.solver,
            guidance: plan
                .stage
                .guidance
                .as_ref()
                .map_or(Guidance::None, Guidance::Sr),
            audio: AudioTreatment::Fixed,
            text: &inputs.text,
            null_text: inputs.null_text.as_ref(),
            image: plan.image,
        }
        .run(video, audio, noise, observer)?;
        Ok(video)
    }
}

/// What the SR stage needs beyond the inputs.
struct SrPlan<'a> {
    stage: &'a SrStage,
    model: &'a dyn VelocityModel,
    image: Option<&'a Tensor>,
}

/// The audio VAE's `[1, 64, A]` latent in the DiT's frames-major layout `[1, A, 64]` (f32,
/// contiguous), as the reference's `permute(0, 2, 1)`.
pub fn audio_latent_from_vae_layout(latent: &Tensor) -> Result<Tensor> {
    let dims = latent.dims();
    if dims.len() != 3 || dims[0] != 1 || dims[1] != AUDIO_CHANNELS {
        return Err(Error::InvalidInput(format!(
            "audio VAE latent must be [1, {AUDIO_CHANNELS}, frames], got {dims:?}"
        )));
    }
    Ok(latent.transpose(1, 2)?.to_dtype(DType::F32)?.contiguous()?)
}

fn expect_dims(what: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    if t.dims() != want {
        return Err(Error::InvalidInput(format!(
            "{what} has shape {:?}, expected {want:?}",
            t.dims()
        )));
    }
    if t.dtype() != DType::F32 {
        return Err(Error::InvalidInput(format!(
            "{what} must be f32, got {:?}",
            t.dtype()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
