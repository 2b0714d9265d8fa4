//! What to benchmark: the scenarios, where their models come from, how many runs.

use cadence_pipeline::engine::EngineOptions;
use cadence_pipeline::GenerationRequest;
use cadence_weights::{Manifest, Mode, WeightsRoot};

use crate::gemm::GemmShape;

/// The default prompt: an English description of about 200 bytes. The random-weight engines
/// tokenize one token per byte, so it gives them about the 200 prompt tokens that
/// `BENCHMARKS.md`'s compute floor assumes; the real tokenizer makes fewer tokens of it. The
/// report states the count either way.
pub const PROMPT: &str = "A woman in a red coat stands on a windy pier at dusk, \
looks into the camera and says: the boats are late again tonight, but the sea is calm. Gulls \
cry overhead and waves lap at the posts.";

/// Where a scenario's models come from.
#[derive(Debug, Clone)]
pub enum Models {
    /// The embedded tiny random model on the CPU (`Engine::demo`): checks the harness, not the
    /// model's speed.
    Demo,
    /// The real architectures with random weights drawn on the device (`Engine::random`):
    /// representative time and memory; the clips are noise.
    Random,
    /// The installed real weights (`Engine::load`).
    Installed {
        /// Where the weights are.
        root: WeightsRoot,
        /// The manifest naming them.
        manifest: Manifest,
    },
}

impl Models {
    /// `demo`, `random` or `installed`, as the report says it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Demo => "demo",
            Self::Random => "random",
            Self::Installed { .. } => "installed",
        }
    }
}

/// One configuration to time: a mode (model and resolution) and the request it runs.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `256p`, `540p`, `1080p` (for the report).
    pub resolution: String,
    /// `distilled` or `base` (for the report).
    pub model: String,
    /// The models the engine needs.
    pub mode: Mode,
    /// What each run generates (prompt, length, sizes, seed).
    pub request: GenerationRequest,
    /// Devices and precision of the engine (ignored by [`Models::Demo`], which is CPU f32).
    pub options: EngineOptions,
    /// Name of the main device (`cuda:0`, `cpu`).
    pub device_name: String,
    /// Name of the text encoder's device.
    pub text_device_name: String,
    /// Where the weights come from.
    pub models: Models,
}

impl Scenario {
    /// `256p distilled`.
    pub fn name(&self) -> String {
        format!("{} {}", self.resolution, self.model)
    }
}

/// A whole benchmark.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The scenarios, run one after another (each builds its engine and drops it afterwards).
    pub scenarios: Vec<Scenario>,
    /// Warm runs per scenario (the engine already built); at least 1.
    pub runs: usize,
    /// Cold runs per scenario, each building the engine anew; at least 1.
    pub cold_runs: usize,
    /// The GEMM whose measured rate is the peak the stages are compared with.
    pub gemm: GemmShape,
}
