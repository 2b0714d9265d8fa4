//! One sampling stage: the reference's `evaluate_with_latent`.
//!
//! Per step `i` with integer timestep `t`:
//! 1. TI2V: latent frame 0 is overwritten with the encoded image (the scheduler sees it too);
//! 2. conditional forward, plus the unconditional one (negative prompt) when guided, then CFG;
//! 3. the stage's [`Solver`] steps the video with the guided velocity, and the audio unless the
//!    audio is held;
//! 4. after the last step TI2V overwrites frame 0 once more.

use candle_core::Tensor;

use cadence_core::{Error, Result};

use super::observer::{SamplingObserver, StepRecord};
use crate::cfg::{check_pair, guide, guide_per_frame, BaseGuidance, SrGuidance};
use crate::noise::NoiseSource;
use crate::scheduler::{FlowSchedule, Solver, SolverKind};
use crate::velocity::{Stage, StepInfo, TextContext, Velocity, VelocityInput, VelocityModel};

/// Which CFG rule the stage applies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Guidance<'a> {
    /// One conditional pass (`cfg_number = 1`).
    None,
    /// Base stage: timestep-switched video scale, fixed audio scale.
    Base(&'a BaseGuidance),
    /// SR stage: per-latent-frame video scale; audio velocities are not used.
    Sr(&'a SrGuidance),
}

/// What happens to the audio latent during the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioTreatment {
    /// Stepped with the stage's solver.
    Step,
    /// Never changed.
    Fixed,
    /// Never changed, but the solver's per-step audio draw is still made (and discarded) so the
    /// draw order matches the reference.
    FixedKeepingDraws,
}

/// One stage, ready to run.
pub(crate) struct StageRun<'a> {
    pub stage: Stage,
    pub model: &'a dyn VelocityModel,
    pub schedule: FlowSchedule,
    pub solver: SolverKind,
    pub guidance: Guidance<'a>,
    pub audio: AudioTreatment,
    pub text: &'a TextContext,
    pub null_text: Option<&'a TextContext>,
    /// Encoded first frame `[1, 48, >=1, h, w]` (TI2V).
    pub image: Option<&'a Tensor>,
}

impl StageRun<'_> {
    /// Runs every step on `(video, audio)` and returns the final latents.
    pub fn run(
        &self,
        video: Tensor,
        audio: Tensor,
        noise: &mut dyn NoiseSource,
        observer: &mut dyn SamplingObserver,
    ) -> Result<(Tensor, Tensor)> {
        observer.stage_started(self.stage, &video, &audio)?;
        let sr_scales = match self.guidance {
            Guidance::Sr(g) => g.per_frame_scales(video.dim(2)?),
            _ => Vec::new(),
        };
        let num_steps = self.schedule.num_steps();
        let mut video_solver: Box<dyn Solver> = self.solver.build(&self.schedule)?;
        let mut audio_solver = self.solver.build(&self.schedule)?;
        let (mut video, mut audio) = (video, audio);

        for index in 0..num_steps {
            if let Some(image) = self.image {
                video = pin_first_frame(&video, image)?;
            }
            let info = StepInfo {
                stage: self.stage,
                index,
                num_steps,
                timestep: self.schedule.timesteps()[index],
                sigma: self.schedule.sigmas()[index],
            };
            let cond_input = VelocityInput {
                video: &video,
                audio: &audio,
                text: self.text,
                step: info,
            };
            let (guided_video, guided_audio, model_calls) = match self.guidance {
                Guidance::None => {
                    let v = self.model.velocity(&cond_input)?;
                    let v = self.checked_velocity(v, &video, &audio)?;
                    let audio_velocity = (self.stage == Stage::Base).then_some(v.audio);
                    (v.video, audio_velocity, 1)
                }
                Guidance::Base(g) => {
                    let (c, u) = self.cfg_pair(&cond_input)?;
                    let v = guide(&u.video, &c.video, g.video_scale_at(info.timestep))?;
                    (v, Some(guide(&u.audio, &c.audio, g.audio_scale)?), 2)
                }
                Guidance::Sr(_) => {
                    let (c, u) = self.cfg_pair(&cond_input)?;
                    (guide_per_frame(&u.video, &c.video, &sr_scales)?, None, 2)
                }
            };

            let model_video = video;
            video = video_solver.step(index, &guided_video, &model_video, noise)?;
            match (self.audio, &guided_audio) {
                (AudioTreatment::Step, Some(velocity)) => {
                    audio = audio_solver.step(index, velocity, &audio, noise)?;
                }
                (AudioTreatment::Step, None) => {
                    return Err(Error::InvalidInput(format!(
                        "{:?} stage cannot step audio: it computes no audio velocity",
                        self.stage
                    )))
                }
                (AudioTreatment::FixedKeepingDraws, _) => {
                    noise.standard_normal(audio.dims(), audio.device())?;
                }
                _ => {}
            }
            observer.step_finished(&StepRecord {
                info,
                model_calls,
                model_video: &model_video,
                guided_video: &guided_video,
                guided_audio: guided_audio.as_ref(),
                video: &video,
                audio: &audio,
            })?;
        }
        if let Some(image) = self.image {
            video = pin_first_frame(&video, image)?;
        }
        Ok((video, audio))
    }

    /// The conditional and unconditional velocities of one CFG step, checked.
    fn cfg_pair(&self, cond_input: &VelocityInput<'_>) -> Result<(Velocity, Velocity)> {
        let null_text = self.null_text.ok_or_else(|| {
            Error::InvalidInput(format!(
                "{:?} stage uses CFG but no negative-prompt context was given",
                self.stage
            ))
        })?;
        let uncond_input = VelocityInput {
            text: null_text,
            ..*cond_input
        };
        let (c, u) = self.model.velocity_pair(cond_input, &uncond_input)?;
        let c = self.checked_velocity(c, cond_input.video, cond_input.audio)?;
        let u = self.checked_velocity(u, cond_input.video, cond_input.audio)?;
        check_pair("video velocity", &c.video, &u.video)?;
        check_pair("audio velocity", &c.audio, &u.audio)?;
        Ok((c, u))
    }

    /// Checks that the model returned velocities shaped like its inputs.
    fn checked_velocity(&self, v: Velocity, video: &Tensor, audio: &Tensor) -> Result<Velocity> {
        if v.video.dims() != video.dims() || v.audio.dims() != audio.dims() {
            return Err(Error::InvalidInput(format!(
                "{:?} model returned velocities {:?} / {:?} for latents {:?} / {:?}",
                self.stage,
                v.video.dims(),
                v.audio.dims(),
                video.dims(),
                audio.dims()
            )));
        }
        Ok(v)
    }
}

/// `video[:, :, 0] = image[:, :, 0]` (TI2V), as a new tensor.
pub(crate) fn pin_first_frame(video: &Tensor, image: &Tensor) -> Result<Tensor> {
    let (v, i) = (video.dims(), image.dims());
    if v.len() != 5 || i.len() != 5 || v[..2] != i[..2] || v[3..] != i[3..] || i[2] == 0 {
        return Err(Error::InvalidInput(format!(
            "image latent {i:?} does not fit video latent {v:?} (need [1, C, >=1, h, w] with the \
             video's C, h, w)"
        )));
    }
    let first = image.narrow(2, 0, 1)?.to_dtype(video.dtype())?;
    if v[2] == 1 {
        return Ok(first);
    }
    Ok(Tensor::cat(&[&first, &video.narrow(2, 1, v[2] - 1)?], 2)?)
}
