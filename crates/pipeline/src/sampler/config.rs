//! Configuration of the sampling stages (what the reference's `EvaluationConfig` and the
//! `example/*/config.json` files choose).

use crate::cfg::{BaseGuidance, SrGuidance};
use crate::scheduler::SolverKind;

/// The default flow shift of every stage.
pub const DEFAULT_SHIFT: f64 = 5.0;

/// How the whole generation samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// The base-resolution stage.
    pub base: BaseStage,
    /// The super-resolution stage; used when the request asks for an SR size.
    pub sr: Option<SrStage>,
    /// Treatment of user audio in audio-driven mode.
    pub audio_driven: AudioDrivenPolicy,
}

impl SamplerConfig {
    /// The base model (`example/base`): 32 UniPC steps with CFG against the negative prompt.
    pub fn base() -> Self {
        Self {
            base: BaseStage {
                num_steps: 32,
                shift: DEFAULT_SHIFT,
                solver: SolverKind::UNIPC,
                guidance: Some(BaseGuidance::default()),
            },
            sr: None,
            audio_driven: AudioDrivenPolicy::default(),
        }
    }

    /// The distilled model (`example/distill`): 8 stochastic steps, no CFG.
    pub fn distilled() -> Self {
        Self {
            base: BaseStage {
                num_steps: 8,
                shift: DEFAULT_SHIFT,
                solver: SolverKind::DISTILLED,
                guidance: None,
            },
            sr: None,
            audio_driven: AudioDrivenPolicy::default(),
        }
    }

    /// Adds a super-resolution stage (`example/sr_540p`, `sr_1080p` use [`SrStage::default`]).
    pub fn with_sr(mut self, sr: SrStage) -> Self {
        self.sr = Some(sr);
        self
    }

    /// Whether any stage runs the unconditional (negative-prompt) pass.
    pub fn needs_negative_prompt(&self) -> bool {
        self.base.guidance.is_some() || self.sr.as_ref().is_some_and(|s| s.guidance.is_some())
    }
}

/// The base-resolution stage.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseStage {
    /// Solver steps (32 base, 8 distilled).
    pub num_steps: usize,
    /// Flow shift of the schedule (5.0).
    pub shift: f64,
    /// How velocities become the next latents (UniPC base, distilled update distilled).
    pub solver: SolverKind,
    /// CFG against the negative prompt (`cfg_number = 2`, the base model); `None` is one
    /// conditional pass per step (`cfg_number = 1`, the distilled model).
    pub guidance: Option<BaseGuidance>,
}

/// The super-resolution stage: refine the upsampled, re-noised base latent with the SR model.
#[derive(Debug, Clone, PartialEq)]
pub struct SrStage {
    /// Solver steps (`sr_num_inference_steps`, 5). The schedule restarts at t = 999.
    pub num_steps: usize,
    /// Flow shift (5.0).
    pub shift: f64,
    /// How velocities become the next latents (UniPC, as the reference).
    pub solver: SolverKind,
    /// CFG of the SR stage; `None` is `sr_cfg_number = 1`, the setting of both SR example configs.
    pub guidance: Option<SrGuidance>,
    /// Zero-SNR training step whose signal level the upsampled latent is re-noised to (220);
    /// `None` skips re-noising and its draw (the reference's `noise_value = 0`).
    pub renoise_step: Option<usize>,
    /// Weight of fresh noise in the SR model's audio conditioning (0.7).
    pub audio_noise_scale: f64,
}

impl Default for SrStage {
    fn default() -> Self {
        Self {
            num_steps: 5,
            shift: DEFAULT_SHIFT,
            solver: SolverKind::UNIPC,
            guidance: None,
            renoise_step: Some(220),
            audio_noise_scale: 0.7,
        }
    }
}

/// What audio-driven generation does with the user's audio.
///
/// The reference keeps the user's audio latent fixed under CFG, but its distilled path steps it
/// like generated audio (`step_ddim` ignores `is_a2v`), and every path re-decodes the final audio
/// latent through the audio VAE instead of keeping the user's sound (GitHub issue #44 of
/// GAIR-NLP/daVinci-MagiHuman).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioDrivenPolicy {
    /// The user's audio latent is never changed by any stage, and the clip carries the user's
    /// original waveform ([`super::AudioOutput::UserOriginal`]). Under CFG this samples exactly
    /// what the reference samples; in distilled mode the video differs from the reference
    /// because the model keeps seeing the true audio. The noise draws stay in the reference's
    /// order (the distilled audio draw is made and discarded) so only the audio treatment differs.
    #[default]
    KeepUserAudio,
    /// Reproduce the reference: distilled steps update the user audio latent and the clip
    /// decodes the final audio latent. For parity checks against the official evaluator.
    MatchReference,
}
