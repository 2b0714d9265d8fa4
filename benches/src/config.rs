//! What to benchmark: the scenarios, where their models come from, how many runs.

use candle_core::Device;

use cadence_pipeline::engine::EngineBuilder;
use cadence_pipeline::GenerationRequest;

use crate::gemm::GemmShape;

/// The default prompt: an English description of about 200 bytes. The random-weight engines
/// tokenize one token per byte, so it gives them about the 200 prompt tokens that
/// `BENCHMARKS.md`'s compute floor assumes; the real tokenizer makes fewer tokens of it. The
/// report states the count either way.
pub const PROMPT: &str = "A woman in a red coat stands on a windy pier at dusk, \
looks into the camera and says: the boats are late again tonight, but the sea is calm. Gulls \
cry overhead and waves lap at the posts.";

/// One configuration to time: an engine (its models, weights, device and placement) and the
/// request each run generates.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `256p`, `540p`, `1080p` (for the report).
    pub resolution: String,
    /// `distilled` or `base` (for the report).
    pub model: String,
    /// The engine, built anew for each cold run.
    pub builder: EngineBuilder,
    /// Where its weights come from, for the report: `demo`, `random` or `installed`.
    pub weights: &'static str,
    /// What each run generates (prompt, length, sizes, seed).
    pub request: GenerationRequest,
    /// The device the engine computes on (the demo: the CPU).
    pub device: Device,
    /// Its name (`cuda:0`, `cpu`).
    pub device_name: String,
}

impl Scenario {
    /// `256p distilled`.
    pub fn name(&self) -> String {
        format!("{} {}", self.resolution, self.model)
    }

    /// Whether it runs the embedded demo model.
    pub fn is_demo(&self) -> bool {
        self.weights == "demo"
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
