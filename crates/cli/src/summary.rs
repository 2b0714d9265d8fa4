//! What a finished `cadence generate` reports: one line for people, or with `--json` a
//! machine-readable summary on stdout (sizes, seed, per-stage timings including the mux).

use std::path::PathBuf;
use std::time::Duration;

use cadence_media::Mp4Summary;
use cadence_pipeline::engine::{GenerationReport, StageKind};
use cadence_pipeline::memory::gb;
use serde::Serialize;

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The clip written.
    pub output: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether the embedded tiny random model made it.
    pub demo: bool,
    /// `distilled` or `base`.
    pub model: &'static str,
    /// The DiTs' GEMM weights: `bf16` (dense) or `fp8`.
    pub precision: &'static str,
    /// `cpu` or `cuda:0`.
    pub device: String,
    /// Seed of the generation.
    pub seed: u64,
    /// Denoising steps of the base stage.
    pub steps: usize,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video frames.
    pub frames: u64,
    /// Video duration in seconds.
    pub seconds: f64,
    /// Audio sample rate in Hz.
    pub sample_rate: u32,
    /// Audio channels.
    pub channels: u16,
    /// How the models were placed in device memory.
    pub memory: MemorySummary,
    /// Every stage in order: model loading, the pipeline's stages, then `mux`.
    pub timings: Vec<Timing>,
    /// Wall time of the whole command.
    pub total_seconds: f64,
    /// What was changed about the request (rounded sizes, ...).
    pub warnings: Vec<String>,
    /// The version of cadence that made it.
    pub cadence_version: &'static str,
}

/// The memory plan the clip ran under.
#[derive(Debug, Serialize)]
pub struct MemorySummary {
    /// The budget in GB (10⁹ bytes).
    pub budget_gb: f64,
    /// The plan's peak in GB.
    pub peak_gb: f64,
    /// Where the DiTs were: `resident`, `visiting` or `streamed`.
    pub dits: String,
    /// Where the text encoder was: `resident`, `visiting`, `streamed` or `host`.
    pub text_encoder: String,
}

/// One stage's wall time.
#[derive(Debug, Serialize)]
pub struct Timing {
    /// Machine name: `load_models`, `encode_text`, ..., `mux`.
    pub stage: &'static str,
    /// Wall-clock time the stage took.
    pub seconds: f64,
}

/// Everything a summary is made from, gathered by [`crate::generate`].
pub struct Finished<'a> {
    /// The engine's report.
    pub report: &'a GenerationReport,
    /// The MP4 writer's summary.
    pub mp4: &'a Mp4Summary,
    /// Time spent loading (or building) the models.
    pub load: Duration,
    /// Time the MP4 writer cost.
    pub mux: Duration,
    /// Wall time of the command.
    pub total: Duration,
    /// `distilled` or `base`.
    pub model: &'static str,
    /// Device name.
    pub device: String,
    /// Base-stage steps.
    pub steps: usize,
}

impl Summary {
    /// The summary of a finished run.
    pub fn new(f: Finished<'_>) -> Self {
        let load = (StageKind::LoadModels, f.load);
        let timings = std::iter::once(timing(load))
            .chain(f.report.timings.iter().copied().map(timing))
            .chain(std::iter::once(Timing {
                stage: "mux",
                seconds: f.mux.as_secs_f64(),
            }))
            .collect();
        let info = &f.report.info;
        Self {
            output: f.mp4.path.clone().unwrap_or_default(),
            bytes: f.mp4.bytes,
            demo: f.report.demo,
            model: f.model,
            precision: f.report.plan.arrangement.precision.name(),
            device: f.device,
            seed: f.report.seed,
            steps: f.steps,
            width: info.width,
            height: info.height,
            fps: info.fps,
            frames: f.mp4.frames,
            seconds: f.mp4.video_seconds,
            sample_rate: info.sample_rate,
            channels: info.channels,
            memory: MemorySummary {
                budget_gb: gb(f.report.plan.budget),
                peak_gb: gb(f.report.plan.peak()),
                dits: f.report.plan.arrangement.dits.to_string(),
                text_encoder: f.report.plan.arrangement.text_encoder.to_string(),
            },
            timings,
            total_seconds: f.total.as_secs_f64(),
            warnings: f.report.warnings.clone(),
            cadence_version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// The JSON text (pretty-printed).
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let demo = if self.demo {
            " [demo model: random weights, the picture is noise]"
        } else {
            ""
        };
        format!(
            "wrote {} ({}x{}, {:.2} s at {} fps with {} Hz audio, seed {}) in {:.1} s{demo}",
            self.output.display(),
            self.width,
            self.height,
            self.seconds,
            self.fps,
            self.sample_rate,
            self.seed,
            self.total_seconds
        )
    }
}

fn timing((stage, d): (StageKind, Duration)) -> Timing {
    Timing {
        stage: stage.key(),
        seconds: d.as_secs_f64(),
    }
}
