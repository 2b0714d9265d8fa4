//! Progress reporting, cancellation and the per-stage timings of a generation.

use std::fmt;
use std::time::{Duration, Instant};

use candle_core::Device;

pub use cadence_core::CancelToken;
use cadence_core::Result;

use super::placement::StageResidency;
use super::sink::ClipInfo;
use super::work::DitWork;
use crate::memory::MemoryPlan;

/// The stages of a generation, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageKind {
    /// Loading model weights.
    LoadModels,
    /// Encoding the prompt (and the negative prompt) with the text encoder.
    EncodeText,
    /// Encoding the reference image with the Wan VAE.
    EncodeImage,
    /// Encoding the user's audio with the audio VAE.
    EncodeAudio,
    /// Denoising at the base resolution.
    DenoiseBase,
    /// Denoising at the super-resolution size.
    DenoiseSuperResolution,
    /// Decoding video latents to frames.
    DecodeVideo,
    /// Decoding (or preparing) the audio track.
    DecodeAudio,
}

impl StageKind {
    /// A short machine-readable name (used in JSON summaries).
    pub fn key(self) -> &'static str {
        match self {
            Self::LoadModels => "load_models",
            Self::EncodeText => "encode_text",
            Self::EncodeImage => "encode_image",
            Self::EncodeAudio => "encode_audio",
            Self::DenoiseBase => "denoise_base",
            Self::DenoiseSuperResolution => "denoise_sr",
            Self::DecodeVideo => "decode_video",
            Self::DecodeAudio => "decode_audio",
        }
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LoadModels => "load models",
            Self::EncodeText => "encode text",
            Self::EncodeImage => "encode image",
            Self::EncodeAudio => "encode audio",
            Self::DenoiseBase => "denoise (base)",
            Self::DenoiseSuperResolution => "denoise (super-resolution)",
            Self::DecodeVideo => "decode video",
            Self::DecodeAudio => "decode audio",
        })
    }
}

/// Receives progress; every method has an empty default. Steps are denoising steps for the
/// denoise stages and frames for video decoding.
pub trait Progress {
    /// A stage begins; `total_steps` when it is known.
    fn stage_started(&mut self, stage: StageKind, total_steps: Option<u64>) {
        let _ = (stage, total_steps);
    }
    /// `steps` more steps of `stage` are done.
    fn advance(&mut self, stage: StageKind, steps: u64) {
        let _ = (stage, steps);
    }
    /// A stage ended after `elapsed`.
    fn stage_finished(&mut self, stage: StageKind, elapsed: Duration) {
        let _ = (stage, elapsed);
    }
    /// Something the user should know (a rounded size, a trimmed prompt).
    fn warning(&mut self, message: &str) {
        let _ = message;
    }
}

impl Progress for () {}

/// What a finished generation reports.
#[derive(Debug, Clone)]
pub struct GenerationReport {
    /// The clip's shape.
    pub info: ClipInfo,
    /// The seed used.
    pub seed: u64,
    /// Wall time of every stage that ran, in order.
    pub timings: Vec<(StageKind, Duration)>,
    /// Warnings raised on the way (also sent to [`Progress::warning`]).
    pub warnings: Vec<String>,
    /// Whether the embedded tiny random demo model produced it.
    pub demo: bool,
    /// Each denoising stage that ran: its steps' times and the DiT's work.
    pub denoise: Vec<DenoiseStats>,
    /// The text encoder's work.
    pub text: TextStats,
    /// The memory plan the request ran under.
    pub plan: MemoryPlan,
    /// What was on the device in each stage, measured from the models (checked against
    /// `plan` by the tests).
    pub residency: Vec<StageResidency>,
}

/// One denoising stage in detail.
#[derive(Debug, Clone, PartialEq)]
pub struct DenoiseStats {
    /// [`StageKind::DenoiseBase`] or [`StageKind::DenoiseSuperResolution`].
    pub stage: StageKind,
    /// Wall time of each step, in order (the devices are synchronised at the end of each, so
    /// on a GPU a step's time is its work, not the time to queue it). The first step also
    /// carries the stage's set-up (initial noise, the SR stage's upsampling).
    pub step_times: Vec<Duration>,
    /// The DiT's forward passes and their operation count.
    pub work: DitWork,
}

/// What the text encoder computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextStats {
    /// Tokens of each prompt the encoder ran (the prompt, then the negative prompt when
    /// guidance needs it and it was not served from the cache).
    pub tokens: Vec<usize>,
    /// Their operations (a multiply-add is 2): linear layers and attention products.
    pub flops: u64,
}

/// Times stages and forwards events to a [`Progress`].
///
/// Device work is asynchronous (a GPU call returns once queued), so every time is read after
/// synchronising the devices the engine uses; otherwise a stage would be charged for the work
/// queued by the one before it.
pub(crate) struct StageTimer<'p> {
    progress: &'p mut dyn Progress,
    devices: Vec<Device>,
    pub(crate) timings: Vec<(StageKind, Duration)>,
    pub(crate) warnings: Vec<String>,
}

impl<'p> StageTimer<'p> {
    /// A timer that synchronises `devices` (each once, duplicates dropped) before reading the
    /// clock.
    pub(crate) fn new(progress: &'p mut dyn Progress, devices: &[&Device]) -> Self {
        let mut unique: Vec<Device> = Vec::new();
        for d in devices {
            if !unique.iter().any(|u| u.same_device(d)) {
                unique.push((*d).clone());
            }
        }
        Self {
            progress,
            devices: unique,
            timings: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Waits until every device has finished the work queued on it (nothing on the CPU).
    pub(crate) fn synchronize(&self) -> Result<()> {
        for d in &self.devices {
            d.synchronize()?;
        }
        Ok(())
    }

    /// Runs `f` as `stage`, timing it.
    pub(crate) fn run<T>(
        &mut self,
        stage: StageKind,
        total: Option<u64>,
        f: impl FnOnce(&mut dyn Progress) -> Result<T>,
    ) -> Result<T> {
        self.start(stage, total);
        let start = Instant::now();
        let out = f(&mut *self.progress)?;
        self.synchronize()?;
        self.finish(stage, start.elapsed());
        Ok(out)
    }

    /// A stage begins (for stages that span callbacks, see [`StageTimer::run`] otherwise).
    pub(crate) fn start(&mut self, stage: StageKind, total: Option<u64>) {
        self.progress.stage_started(stage, total);
    }

    /// Progress within a started stage.
    pub(crate) fn advance(&mut self, stage: StageKind, steps: u64) {
        self.progress.advance(stage, steps);
    }

    /// A started stage ended after `elapsed`.
    pub(crate) fn finish(&mut self, stage: StageKind, elapsed: Duration) {
        self.progress.stage_finished(stage, elapsed);
        self.timings.push((stage, elapsed));
    }

    pub(crate) fn warn(&mut self, message: String) {
        self.progress.warning(&message);
        self.warnings.push(message);
    }
}
