//! The Cadence benchmark harness: how long a clip takes, stage by stage, on this machine.
//!
//! For each scenario (a resolution and a base model) it builds the engine and generates
//! clips through the same [`Engine::generate`](cadence_pipeline::engine::Engine::generate)
//! and MP4 writer as `cadence generate`, and reports:
//!
//! * **seconds per clip and per stage** (text encoding, each denoising stage and its steps,
//!   video decoding, audio decoding, muxing), as the median of the runs, **cold** (the first
//!   run, including building the models and moving them to the device) and **warm** (later
//!   runs with the engine already built). Every time is read after synchronising the device,
//!   so GPU work is charged to the stage that queued it;
//! * **peak GPU memory**, overall and per stage, from the CUDA driver's free-memory figure
//!   sampled every millisecond on a second thread (`cuda` feature; otherwise `null` with the
//!   reason);
//! * **achieved TFLOP/s** per stage where the operations are counted (the DiT stages by
//!   [`cadence_model::flops`] from the shapes each pass saw; the text encoder from its
//!   configuration), against a **GEMM peak measured in the same run**: a model-shaped matrix
//!   product (by default the DiT's fused QKV projection over 4096 tokens) in the compute dtype.
//!
//! Three sources of models, as an [`EngineBuilder`](cadence_pipeline::engine::EngineBuilder)
//! takes them: the real weights when installed, random weights at the real sizes when they are
//! not (the timings are representative, the clips are noise), and the embedded tiny demo model
//! (exercises the harness on a CPU, its numbers measure plumbing, not the model). The report
//! always says which, and the memory placement each scenario ran with.
//!
//! ```no_run
//! # fn main() -> cadence_core::Result<()> {
//! use cadence_bench::{run, BenchConfig, GemmShape, Scenario};
//! use cadence_pipeline::engine::EngineBuilder;
//! use cadence_pipeline::GenerationRequest;
//!
//! let mut request = GenerationRequest::new(cadence_bench::PROMPT);
//! (request.width, request.height, request.seconds) = (448, 256, 5);
//! let config = BenchConfig {
//!     scenarios: vec![Scenario {
//!         resolution: "256p".into(),
//!         model: "distilled".into(),
//!         builder: EngineBuilder::demo(),
//!         weights: "demo",
//!         request,
//!         device: candle_core::Device::Cpu,
//!         device_name: "cpu".into(),
//!     }],
//!     runs: 3,
//!     cold_runs: 1,
//!     gemm: GemmShape::demo(),
//! };
//! let report = run(&config, &mut |line: &str| eprintln!("{line}"))?;
//! println!("{}", report.to_markdown());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod config;
mod gemm;
mod memory;
mod output;
mod report;
mod runner;
mod stats;

pub use config::{BenchConfig, Scenario, PROMPT};
pub use gemm::{measure_gemm_peak, GemmPeak, GemmShape};
pub use memory::{MemoryInfo, MemoryMonitor};
pub use output::{write_report, JSON_FILE, MARKDOWN_FILE};
pub use report::{BenchReport, Phase, ScenarioReport, StageReport};
pub use runner::run;
pub use stats::Stat;
