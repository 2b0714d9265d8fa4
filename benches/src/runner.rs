//! Running the scenarios: build, generate, mux, time; then summarise.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use candle_core::{DType, Device};

use cadence_core::{Error, Result};
use cadence_pipeline::engine::{
    CancelToken, ClipInfo, Engine, GenerationReport, Mp4Sink, Progress, StageKind,
};

use crate::config::{BenchConfig, Scenario};
use crate::gemm::{dtype_name, measure_gemm_peak, GemmPeak};
use crate::memory::MemoryMonitor;
use crate::report::{BenchReport, Phase, ScenarioReport};

/// One stage of one run.
#[derive(Debug, Clone)]
pub(crate) struct StageSample {
    /// Machine name (see [`crate::StageReport::stage`]).
    pub(crate) key: &'static str,
    /// For people.
    pub(crate) label: String,
    pub(crate) seconds: f64,
    /// Each step's seconds (denoise stages; empty otherwise).
    pub(crate) step_seconds: Vec<f64>,
    /// DiT passes (denoise stages).
    pub(crate) forwards: Option<usize>,
    /// Operations, where counted.
    pub(crate) flops: Option<u64>,
    /// Highest GPU memory use during the stage.
    pub(crate) peak_memory: Option<u64>,
}

/// One clip's measurements.
#[derive(Debug, Clone)]
pub(crate) struct RunRecord {
    /// Seconds for the clip, every stage included.
    pub(crate) total: f64,
    /// In the order they ran.
    pub(crate) stages: Vec<StageSample>,
    /// The engine's report.
    pub(crate) report: GenerationReport,
}

/// Runs every scenario of `config`, reporting progress lines through `log`.
pub fn run(config: &BenchConfig, log: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    let first = config
        .scenarios
        .first()
        .ok_or_else(|| Error::InvalidInput("no scenario to benchmark".into()))?;
    if config.runs == 0 || config.cold_runs == 0 {
        return Err(Error::InvalidInput(
            "a benchmark needs at least one warm and one cold run".into(),
        ));
    }
    let (device, dtype) = engine_placement(first);
    let memory = MemoryMonitor::start(&device);
    log(&format!(
        "measuring the GEMM peak ({}x{}x{} {} on {})",
        config.gemm.m,
        config.gemm.k,
        config.gemm.n,
        dtype_name(dtype),
        first.device_name
    ));
    let gemm = gemm_peak(&device, dtype, config)?;
    log(&format!("GEMM peak: {:.2} TFLOP/s", gemm.tflops));

    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let scenarios = config
        .scenarios
        .iter()
        .map(|s| run_scenario(s, config, &gemm, &memory, scratch.path(), log))
        .collect::<Result<Vec<_>>>()?;

    let demo = config.scenarios.iter().any(Scenario::is_demo);
    let random = config.scenarios.iter().any(|s| s.weights == "random");
    Ok(BenchReport {
        cadence_version: env!("CARGO_PKG_VERSION"),
        created_unix_seconds: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        device: first.device_name.clone(),
        random_weights: random || demo,
        demo,
        note: note(demo, random),
        runs: config.runs,
        cold_runs: config.cold_runs,
        gemm_peak: gemm,
        memory: memory.info(),
        scenarios,
    })
}

/// What the weights mean for the numbers.
fn note(demo: bool, random: bool) -> String {
    if demo {
        "the embedded tiny demo model (random weights, CPU): these numbers measure the \
         pipeline's plumbing, not the 15B model"
            .into()
    } else if random {
        "random weights at the real sizes (the real weights are not installed): time and \
         memory are representative, the clips are noise; prompts are tokenized one token per \
         byte; cold runs time drawing the weights on the device, not reading them from disk"
            .into()
    } else {
        "the installed real weights; cold runs include reading them (the OS page cache may \
         already hold them)"
            .into()
    }
}

/// The device and dtype the engine computes on (f32 on the CPU, bf16 on GPUs).
fn engine_placement(scenario: &Scenario) -> (Device, DType) {
    let dtype = if scenario.device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    };
    (scenario.device.clone(), dtype)
}

/// Times one product to choose a batch size of about a quarter second, then measures.
fn gemm_peak(device: &Device, dtype: DType, config: &BenchConfig) -> Result<GemmPeak> {
    let probe = measure_gemm_peak(device, dtype, config.gemm, 1)?;
    let reps = (0.25 / probe.seconds).clamp(1.0, 50.0) as usize;
    measure_gemm_peak(device, dtype, config.gemm, reps)
}

fn run_scenario(
    scenario: &Scenario,
    config: &BenchConfig,
    gemm: &GemmPeak,
    memory: &MemoryMonitor,
    scratch: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<ScenarioReport> {
    let name = scenario.name();
    let mut engine: Option<Engine> = None;
    let mut cold = Vec::with_capacity(config.cold_runs);
    for i in 0..config.cold_runs {
        // The previous engine goes first: two 15B models do not fit beside each other.
        drop(engine.take());
        memory.take_peak();
        let start = Instant::now();
        let built = build(scenario)?;
        synchronize(scenario)?;
        let construct = start.elapsed();
        let construct_peak = memory.take_peak();
        let mut record = generate_once(&built, scenario, memory, scratch)?;
        record.stages.insert(
            0,
            StageSample {
                key: StageKind::LoadModels.key(),
                label: StageKind::LoadModels.to_string(),
                seconds: construct.as_secs_f64(),
                step_seconds: Vec::new(),
                forwards: None,
                flops: None,
                peak_memory: construct_peak,
            },
        );
        record.total += construct.as_secs_f64();
        log(&format!(
            "{name}: cold run {}/{}: {:.2} s ({:.2} s building the models)",
            i + 1,
            config.cold_runs,
            record.total,
            construct.as_secs_f64()
        ));
        cold.push(record);
        engine = Some(built);
    }
    let engine = engine.ok_or_else(|| Error::InvalidInput("no cold run".into()))?;
    let mut warm = Vec::with_capacity(config.runs);
    for i in 0..config.runs {
        let record = generate_once(&engine, scenario, memory, scratch)?;
        log(&format!(
            "{name}: warm run {}/{}: {:.2} s",
            i + 1,
            config.runs,
            record.total
        ));
        warm.push(record);
    }
    drop(engine);
    summarise(scenario, &cold, &warm, gemm)
}

/// The scenario's report from its runs.
fn summarise(
    scenario: &Scenario,
    cold: &[RunRecord],
    warm: &[RunRecord],
    gemm: &GemmPeak,
) -> Result<ScenarioReport> {
    let missing = || Error::InvalidInput(format!("{}: no run to summarise", scenario.name()));
    let first = cold.first().ok_or_else(missing)?;
    let info: ClipInfo = first.report.info;
    let cold_phase = Phase::of(cold, gemm.tflops).ok_or_else(missing)?;
    let warm_phase = Phase::of(warm, gemm.tflops).ok_or_else(missing)?;
    let peak = cold
        .iter()
        .chain(warm)
        .flat_map(|r| r.stages.iter().filter_map(|s| s.peak_memory))
        .max();
    let (_, dtype) = engine_placement(scenario);
    let plan = &first.report.plan;
    Ok(ScenarioReport {
        name: scenario.name(),
        resolution: scenario.resolution.clone(),
        model: scenario.model.clone(),
        weights: scenario.weights,
        device: scenario.device_name.clone(),
        placement: plan.summary(),
        planned_peak_bytes: plan.peak(),
        dtype: dtype_name(dtype),
        width: info.width,
        height: info.height,
        base_width: scenario.request.width,
        base_height: scenario.request.height,
        clip_seconds: info.seconds(),
        frames: info.frames,
        text_tokens: first.report.text.tokens.clone(),
        warnings: first.report.warnings.clone(),
        cold: cold_phase,
        warm: warm_phase,
        peak_memory_bytes: peak,
    })
}

/// A fresh engine for `scenario`.
fn build(scenario: &Scenario) -> Result<Engine> {
    scenario.builder.clone().build(&mut ())
}

/// Waits for the work queued on the scenario's device (weights drawn or uploaded
/// asynchronously must count as construction).
fn synchronize(scenario: &Scenario) -> Result<()> {
    Ok(scenario.device.synchronize()?)
}

/// One clip through the engine and the MP4 writer, as `cadence generate` makes it.
fn generate_once(
    engine: &Engine,
    scenario: &Scenario,
    memory: &MemoryMonitor,
    scratch: &Path,
) -> Result<RunRecord> {
    let path = scratch.join("clip.mp4");
    let mut sink = Mp4Sink::new(&path);
    let mut peaks = StagePeaks {
        memory,
        peaks: Vec::new(),
    };
    let start = Instant::now();
    let report = engine.generate(
        &scenario.request,
        &mut sink,
        &mut peaks,
        &CancelToken::new(),
    )?;
    memory.take_peak();
    let mux_start = Instant::now();
    sink.finish()?;
    let mux = mux_start.elapsed();
    let total = start.elapsed();
    let mux_peak = memory.take_peak();
    // Only the timing matters; the next run writes the same path.
    let _ = std::fs::remove_file(&path);

    let mut stages: Vec<StageSample> = report
        .timings
        .iter()
        .map(|&(stage, elapsed)| stage_sample(stage, elapsed, &report, &peaks.peaks))
        .collect();
    stages.push(StageSample {
        key: "mux",
        label: "mux".into(),
        seconds: mux.as_secs_f64(),
        step_seconds: Vec::new(),
        forwards: None,
        flops: None,
        peak_memory: mux_peak,
    });
    Ok(RunRecord {
        total: total.as_secs_f64(),
        stages,
        report,
    })
}

/// A stage of the engine's report, with its steps, work and memory.
fn stage_sample(
    stage: StageKind,
    elapsed: Duration,
    report: &GenerationReport,
    peaks: &[(StageKind, Option<u64>)],
) -> StageSample {
    let denoise = report.denoise.iter().find(|d| d.stage == stage);
    let flops = match stage {
        StageKind::EncodeText => Some(report.text.flops),
        _ => denoise.map(|d| d.work.flops),
    };
    StageSample {
        key: stage.key(),
        label: stage.to_string(),
        seconds: elapsed.as_secs_f64(),
        step_seconds: denoise.map_or_else(Vec::new, |d| {
            d.step_times.iter().map(Duration::as_secs_f64).collect()
        }),
        forwards: denoise.map(|d| d.work.forwards),
        flops,
        peak_memory: peaks
            .iter()
            .find(|(s, _)| *s == stage)
            .and_then(|(_, p)| *p),
    }
}

/// Reads the memory peak of each stage as the engine reports its start and end.
struct StagePeaks<'m> {
    memory: &'m MemoryMonitor,
    peaks: Vec<(StageKind, Option<u64>)>,
}

impl Progress for StagePeaks<'_> {
    fn stage_started(&mut self, _stage: StageKind, _total: Option<u64>) {
        self.memory.take_peak();
    }

    fn stage_finished(&mut self, stage: StageKind, _elapsed: Duration) {
        self.peaks.push((stage, self.memory.take_peak()));
    }
}
