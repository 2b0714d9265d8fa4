//! The benchmark's results: a serde document (`bench.json`) and a markdown rendering
//! (`bench.md`), built from the raw runs.

use std::fmt::Write as _;

use serde::Serialize;

use crate::gemm::GemmPeak;
use crate::memory::MemoryInfo;
use crate::runner::{RunRecord, StageSample};
use crate::stats::Stat;

/// Everything a benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The cadence version that ran.
    pub cadence_version: &'static str,
    /// When it finished, in seconds since the Unix epoch.
    pub created_unix_seconds: u64,
    /// Main device of the runs (`cuda:0`, `cpu`).
    pub device: String,
    /// Whether any scenario ran on random weights (no real weights were used for it).
    pub random_weights: bool,
    /// Whether the runs used the embedded tiny demo model.
    pub demo: bool,
    /// What the numbers mean, given where the weights came from.
    pub note: String,
    /// Warm runs per scenario (the medians are over these).
    pub runs: usize,
    /// Cold runs per scenario.
    pub cold_runs: usize,
    /// The reference rate, measured on the device in this run.
    pub gemm_peak: GemmPeak,
    /// Whether GPU memory was measured, and the device's totals.
    pub memory: MemoryInfo,
    /// One entry per scenario.
    pub scenarios: Vec<ScenarioReport>,
}

/// One resolution and model.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// `256p distilled`.
    pub name: String,
    /// `256p`, `540p`, `1080p`.
    pub resolution: String,
    /// `distilled` or `base`.
    pub model: String,
    /// `demo`, `random` or `installed`.
    pub weights: &'static str,
    /// Main device.
    pub device: String,
    /// The memory placement the engine ran with (precision, DiTs, text encoder).
    pub placement: String,
    /// The peak device memory its plan estimated, in bytes (compare with
    /// `peak_memory_bytes`, measured).
    pub planned_peak_bytes: u64,
    /// Compute dtype of the DiTs and the video decoder.
    pub dtype: String,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Base-stage width in pixels (below the output when super-resolution follows).
    pub base_width: u32,
    /// Base-stage height in pixels.
    pub base_height: u32,
    /// Clip length in seconds (frames / fps).
    pub clip_seconds: f64,
    /// Video frames.
    pub frames: usize,
    /// Tokens of each prompt the text encoder ran (prompt, then negative prompt).
    pub text_tokens: Vec<usize>,
    /// Warnings the request raised (size rounding, ...).
    pub warnings: Vec<String>,
    /// The first runs, each building the engine anew: `load_models` (construction and
    /// upload) is one of their stages and part of their total.
    pub cold: Phase,
    /// Runs with the engine already built.
    pub warm: Phase,
    /// Highest GPU memory use over the scenario, in bytes (`null` when not measured).
    pub peak_memory_bytes: Option<u64>,
}

/// The runs of one kind (cold or warm).
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// How many.
    pub runs: usize,
    /// Seconds per clip: every stage including muxing (and, cold, building the models).
    pub total_seconds: Stat,
    /// The stages in the order they ran.
    pub stages: Vec<StageReport>,
}

/// One stage over the runs of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// Machine name: `load_models`, `encode_text`, `denoise_base`, `denoise_sr`,
    /// `decode_video`, `decode_audio`, `mux`.
    pub stage: &'static str,
    /// For people: `denoise (base)`.
    pub label: String,
    /// Wall time per run.
    pub seconds: Stat,
    /// Denoising steps (denoise stages).
    pub steps: Option<usize>,
    /// Wall time of one step, over every step of every run (denoise stages).
    pub step_seconds: Option<Stat>,
    /// DiT forward passes per run (denoise stages; two per guided step).
    pub forwards: Option<usize>,
    /// Operations per run, in TFLOP (where they are counted).
    pub tflop: Option<f64>,
    /// `tflop` over the median time.
    pub tflops: Option<f64>,
    /// `tflops` over the measured GEMM peak.
    pub fraction_of_gemm_peak: Option<f64>,
    /// Why no operation count is given, where it is not.
    pub flops_note: Option<&'static str>,
    /// Highest GPU memory use during the stage over the runs, in bytes.
    pub peak_memory_bytes: Option<u64>,
}

/// Why a stage has no operation count.
fn no_count_reason(stage: &str) -> &'static str {
    match stage {
        "load_models" => "building the models: no arithmetic to count",
        "mux" => "H.264/AAC encoding and muxing on the CPU: operations not counted",
        _ => "convolutional codec: operations not counted",
    }
}

impl Phase {
    /// Summarises `runs` (at least one; the first sets the stage order).
    pub(crate) fn of(runs: &[RunRecord], gemm_tflops: f64) -> Option<Self> {
        let first = runs.first()?;
        let stages = first
            .stages
            .iter()
            .map(|s| stage_report(s.key, &s.label, runs, gemm_tflops))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            runs: runs.len(),
            total_seconds: Stat::of(runs.iter().map(|r| r.total).collect())?,
            stages,
        })
    }
}

/// The stage `key` over `runs`.
fn stage_report(
    key: &'static str,
    label: &str,
    runs: &[RunRecord],
    gemm_tflops: f64,
) -> Option<StageReport> {
    let samples: Vec<&StageSample> = runs
        .iter()
        .filter_map(|r| r.stages.iter().find(|s| s.key == key))
        .collect();
    let seconds = Stat::of(samples.iter().map(|s| s.seconds).collect())?;
    let first = samples.first()?;
    let step_seconds = Stat::of(
        samples
            .iter()
            .flat_map(|s| s.step_seconds.iter().copied())
            .collect(),
    );
    let tflop = first.flops.map(|f| f as f64 / 1e12);
    let tflops = tflop.map(|t| t / seconds.median);
    Some(StageReport {
        stage: key,
        label: label.to_string(),
        steps: step_seconds.as_ref().map(|_| first.step_seconds.len()),
        step_seconds,
        forwards: first.forwards,
        tflop,
        tflops,
        fraction_of_gemm_peak: tflops.map(|t| t / gemm_tflops),
        flops_note: first.flops.is_none().then(|| no_count_reason(key)),
        peak_memory_bytes: samples.iter().filter_map(|s| s.peak_memory).max(),
        seconds,
    })
}

impl BenchReport {
    /// The JSON document (pretty-printed).
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A markdown summary: the setting, then one table per scenario.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let g = &self.gemm_peak;
        // Writing into a String cannot fail.
        let _ = writeln!(md, "# Cadence benchmark\n");
        let _ = writeln!(md, "- device: {}", self.device);
        let _ = writeln!(md, "- weights: {}", self.note);
        let _ = writeln!(
            md,
            "- GEMM peak: {:.1} TFLOP/s ({}x{}x{} {}, {:.3} ms per product)",
            g.tflops,
            g.shape.m,
            g.shape.k,
            g.shape.n,
            g.dtype,
            g.seconds * 1e3
        );
        let _ = writeln!(
            md,
            "- runs: {} cold (building the models each time) and {} warm per scenario; \
             medians",
            self.cold_runs, self.runs
        );
        match (&self.memory.reason, self.memory.total_bytes) {
            (None, Some(total)) => {
                let _ = writeln!(
                    md,
                    "- GPU memory: {} total, {} in use before the runs",
                    gib(Some(total)),
                    gib(self.memory.baseline_bytes)
                );
            }
            (reason, _) => {
                let _ = writeln!(
                    md,
                    "- GPU memory: not measured ({})",
                    reason.as_deref().unwrap_or("unknown reason")
                );
            }
        }
        for s in &self.scenarios {
            md.push_str(&scenario_markdown(s));
        }
        md
    }
}

fn scenario_markdown(s: &ScenarioReport) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n## {} ({}x{} from {}x{}, {:.2} s, {} frames; {} weights, {} on {}; {}, planned peak {:.1} GB)\n",
        s.name,
        s.width,
        s.height,
        s.base_width,
        s.base_height,
        s.clip_seconds,
        s.frames,
        s.weights,
        s.dtype,
        s.device,
        s.placement,
        s.planned_peak_bytes as f64 / 1e9
    );
    let _ = writeln!(
        md,
        "| stage | cold s | warm s (median) | steps | ms / step | TFLOP | TFLOP/s | of GEMM peak | peak GPU memory |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    // Stage rows in the cold order (it has load_models first); warm figures beside them.
    for cold in &s.cold.stages {
        let warm = s.warm.stages.iter().find(|w| w.stage == cold.stage);
        let shown = warm.unwrap_or(cold);
        let _ = writeln!(
            md,
            "| {} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
            cold.label,
            cold.seconds.median,
            warm.map_or("–".into(), |w| format!("{:.3}", w.seconds.median)),
            opt(shown.steps.map(|n| n.to_string())),
            opt(shown
                .step_seconds
                .as_ref()
                .map(|t| format!("{:.1}", t.median * 1e3))),
            opt(shown.tflop.map(significant)),
            opt(shown.tflops.map(significant)),
            opt(shown
                .fraction_of_gemm_peak
                .map(|f| format!("{:.0} %", f * 100.0))),
            gib(cold
                .peak_memory_bytes
                .max(warm.and_then(|w| w.peak_memory_bytes))),
        );
    }
    let _ = writeln!(
        md,
        "| **per clip** | **{:.3}** | **{:.3}** | | | | | | {} |",
        s.cold.total_seconds.median,
        s.warm.total_seconds.median,
        gib(s.peak_memory_bytes)
    );
    md
}

/// Three significant digits (`798`, `12.3`, `0.0421`), so the demo's tiny figures are not
/// printed as zeros.
fn significant(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "–".into())
}

/// Bytes as GiB with one decimal, `–` when absent.
fn gib(bytes: Option<u64>) -> String {
    bytes.map_or("–".into(), |b| {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_keep_three_significant_digits() {
        assert_eq!(significant(798.4), "798");
        assert_eq!(significant(12.345), "12.3");
        assert_eq!(significant(0.042_13), "0.0421");
        assert_eq!(significant(0.0), "0");
    }
}
