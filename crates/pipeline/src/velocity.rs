//! The interface between the sampling loop and the denoising transformer.
//!
//! The real DiT (crate `cadence-model`) implements [`VelocityModel`]; so does the SR model, which
//! is a second instance with local attention. The sampler never looks inside: it hands over the
//! current latents and a text context and gets velocities back.

use candle_core::Tensor;

use cadence_core::{Error, Result};

/// Encoded prompt as the DiT consumes it: padded features and the number of valid rows.
///
/// The text encoder pads (or trims) to a fixed length (640 in the pipeline); the DiT only reads
/// `features[:, :len]`, so the padding never reaches the model.
#[derive(Debug, Clone)]
pub struct TextContext {
    /// `[1, L_pad, D]` f32 (D = 3584 for T5Gemma).
    pub features: Tensor,
    /// Valid rows, `1 <= len <= L_pad`.
    pub len: usize,
}

impl TextContext {
    /// Checks the layout (`[1, L_pad, D]`, `1 <= len <= L_pad`) and wraps it.
    pub fn new(features: Tensor, len: usize) -> Result<Self> {
        let dims = features.dims();
        if dims.len() != 3 || dims[0] != 1 {
            return Err(Error::InvalidInput(format!(
                "text context must be [1, L, D], got {dims:?}"
            )));
        }
        if len == 0 || len > dims[1] {
            return Err(Error::InvalidInput(format!(
                "text context length {len} is outside 1..={} (the padded length)",
                dims[1]
            )));
        }
        Ok(Self { features, len })
    }
}

/// Which stage of the pipeline a model call or step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The base-resolution stage (base or distilled model).
    Base,
    /// The super-resolution refinement stage (SR model).
    SuperResolution,
}

/// Where in the schedule a model call happens.
///
/// The DiT is timestep-free (it infers the noise level from the latents), so it may ignore this;
/// it is passed for models that want it and for logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Stage of the call.
    pub stage: Stage,
    /// Step index within the stage, `0..num_steps`.
    pub index: usize,
    /// Steps of the stage.
    pub num_steps: usize,
    /// Integer timestep of the step (999 at the first step).
    pub timestep: i64,
    /// Sigma of the incoming latents.
    pub sigma: f32,
}

/// One model evaluation's inputs.
#[derive(Debug, Clone, Copy)]
pub struct VelocityInput<'a> {
    /// Video latent `[1, 48, T, h, w]` f32.
    pub video: &'a Tensor,
    /// Audio latent `[1, A, 64]` f32 (frames-major); `audio_feat_len` is `A`.
    pub audio: &'a Tensor,
    /// The conditioning text (the prompt, or the negative prompt for the unconditional pass).
    pub text: &'a TextContext,
    /// Schedule position.
    pub step: StepInfo,
}

/// Predicted velocities, same shapes (and f32) as the inputs' latents.
#[derive(Debug, Clone)]
pub struct Velocity {
    /// Video velocity `[1, 48, T, h, w]`.
    pub video: Tensor,
    /// Audio velocity `[1, A, 64]`.
    pub audio: Tensor,
}

/// A denoiser that predicts flow velocities for the joint video + audio latents.
pub trait VelocityModel {
    /// One forward pass.
    fn velocity(&self, input: &VelocityInput<'_>) -> Result<Velocity>;

    /// The conditional and unconditional passes of one CFG step. They see identical latents and
    /// differ only in the text; a model may batch them. The default runs them one after another.
    fn velocity_pair(
        &self,
        cond: &VelocityInput<'_>,
        uncond: &VelocityInput<'_>,
    ) -> Result<(Velocity, Velocity)> {
        Ok((self.velocity(cond)?, self.velocity(uncond)?))
    }
}
