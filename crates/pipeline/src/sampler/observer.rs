//! Hooks into the sampling loop: progress reporting, tracing, cancellation and the parity tests'
//! per-step comparisons all see the same records.

use candle_core::Tensor;

use cadence_core::Result;

use crate::velocity::{Stage, StepInfo};

/// Everything one sampling step saw and produced.
#[derive(Debug, Clone, Copy)]
pub struct StepRecord<'a> {
    /// Stage and schedule position.
    pub info: StepInfo,
    /// Model evaluations of the step (2 with CFG, 1 without).
    pub model_calls: usize,
    /// The video latent the model saw (after the TI2V first-frame overwrite).
    pub model_video: &'a Tensor,
    /// The guided video velocity handed to the scheduler.
    pub guided_video: &'a Tensor,
    /// The guided audio velocity (base stage only: the SR stage never uses audio velocities).
    pub guided_audio: Option<&'a Tensor>,
    /// Video latent after the scheduler step.
    pub video: &'a Tensor,
    /// Audio latent after the step (unchanged when audio is held fixed).
    pub audio: &'a Tensor,
}

/// Receives the sampler's progress; an error aborts sampling (use it to cancel).
pub trait SamplingObserver {
    /// A stage is about to run on these latents.
    fn stage_started(&mut self, stage: Stage, video: &Tensor, audio: &Tensor) -> Result<()> {
        let _ = (stage, video, audio);
        Ok(())
    }

    /// Called after every denoising step with what it computed; by default nothing.
    fn step_finished(&mut self, record: &StepRecord<'_>) -> Result<()> {
        let _ = record;
        Ok(())
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl SamplingObserver for NoObserver {}
