//! `cadence bench`: turns the flags into a [`cadence_bench::BenchConfig`] (scenarios, devices,
//! where the weights come from), runs it, prints the table and writes the report files.

use std::path::Path;

use cadence_bench::{BenchConfig, GemmShape, Scenario};
use cadence_model::DitConfig;
use cadence_pipeline::engine::{EngineBuilder, WeightsSource};
use cadence_pipeline::{GenerationRequest, Mode};
use cadence_weights::{check, CheckOptions, Manifest, WeightsRoot};

use cadence_pipeline::{BaseModel, Resolution, VideoDecoder};

use crate::args::{BenchArgs, ModeArgs};
use crate::device;
use crate::errors::{from_core, CliError, ExitKind, Phase};
use crate::logging::Output;
use crate::select;

/// Tokens of the reference GEMM's left operand: about one 256p forward of the 15B DiT.
const GEMM_TOKENS: usize = 4096;

/// Runs `cadence bench`.
pub fn run(args: &BenchArgs, out: &Output) -> Result<(), CliError> {
    let say = |line: &str| {
        if !out.quiet {
            eprintln!("{line}");
        }
    };
    let installed = if args.demo || args.random_weights {
        None
    } else {
        installed_weights(args)
    };
    let mut scenarios = Vec::new();
    for resolution in choices(
        &args.resolution,
        &[Resolution::P256, Resolution::P540, Resolution::P1080],
    ) {
        for model in choices(&args.model, &[BaseModel::Distilled, BaseModel::Base]) {
            scenarios.push(scenario(args, resolution, model, installed.as_ref(), &say)?);
        }
    }
    if args.demo && args.device == crate::args::DeviceChoice::Cuda {
        say("notice: the demo model runs on the CPU");
    }
    let gemm = match (args.gemm, args.demo) {
        (Some((m, k, n)), _) => GemmShape { m, k, n },
        (None, true) => GemmShape::demo(),
        (None, false) => GemmShape::dit_qkv(&DitConfig::base(), GEMM_TOKENS),
    };
    // Checked after the cheap refusals, before minutes of runs.
    if let Some(dir) = &args.out {
        check_out_dir(dir)?;
    }
    let config = BenchConfig {
        scenarios,
        runs: args.runs as usize,
        cold_runs: args.cold_runs as usize,
        gemm,
    };
    let mut log = |line: &str| say(line);
    let report =
        cadence_bench::run(&config, &mut log).map_err(|e| from_core(e, Phase::Generating))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_markdown());
    }
    if let Some(dir) = &args.out {
        let written = cadence_bench::write_report(dir, &report)
            .map_err(|e| from_core(e, Phase::Generating))?;
        for path in written {
            say(&format!("wrote {}", path.display()));
        }
    }
    Ok(())
}

/// The flags given, or every choice when none was.
fn choices<T: Copy>(given: &[T], all: &[T]) -> Vec<T> {
    if given.is_empty() {
        all.to_vec()
    } else {
        given.to_vec()
    }
}

/// The output folder exists (or is created) and takes files, checked before minutes of runs.
fn check_out_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| tempfile::NamedTempFile::new_in(dir).map(drop))
        .map_err(|e| {
            CliError::input(format!(
                "cannot write in --out {} ({e}); choose another folder",
                dir.display()
            ))
        })
}

/// The manifest and search places, when they can be set up (else random weights it is).
fn installed_weights(args: &BenchArgs) -> Option<(Manifest, WeightsRoot)> {
    let manifest = select::manifest(args.weights.manifest.as_deref()).ok()?;
    let root = select::weights_root(args.weights.weights_dir.as_deref()).ok()?;
    Some((manifest, root))
}

/// One resolution and model: its request and engine.
fn scenario(
    args: &BenchArgs,
    resolution: Resolution,
    model: BaseModel,
    installed: Option<&(Manifest, WeightsRoot)>,
    say: &dyn Fn(&str),
) -> Result<Scenario, CliError> {
    let mode = ModeArgs {
        model,
        resolution,
        video_decoder: VideoDecoder::Turbo,
    }
    .to_mode(false, false);
    let ((width, height), sr) = mode.resolution.stage_sizes(None);
    let request = GenerationRequest {
        prompt: args
            .prompt
            .clone()
            .unwrap_or_else(|| cadence_bench::PROMPT.into()),
        image: None,
        audio: None,
        seconds: args.seconds,
        width,
        height,
        sr_width: sr.map(|s| s.0),
        sr_height: sr.map(|s| s.1),
        seed: args.seed,
    };
    let (device, device_name, weights, name) = if args.demo {
        (
            candle_core::Device::Cpu,
            "cpu".to_string(),
            WeightsSource::Demo,
            "demo",
        )
    } else {
        let selected = device::select(args.device)?;
        if selected.name == "cpu" && !args.allow_cpu {
            return Err(CliError::new(
                ExitKind::Device,
                "real sizes need a GPU (15B parameters per DiT): run on a CUDA build with \
                 --device cuda, try the harness with --demo (the tiny model, on the CPU), or \
                 pass --allow-cpu to run the real sizes on the CPU anyway (hours, ~100 GB RAM)",
            ));
        }
        let (weights, name) = weights_for(&mode, installed, say)?;
        (selected.device, selected.name, weights, name)
    };
    let builder = EngineBuilder::new(weights)
        .mode(mode)
        .device(device.clone())
        .precision(args.memory.precision)
        .max_memory(args.memory.max_memory)
        .offload(args.memory.offload)
        .plan_for(&request)
        .map_err(|e| from_core(e, Phase::Inputs))?;
    Ok(Scenario {
        resolution: resolution.name().into(),
        model: model.name().into(),
        builder,
        weights: name,
        request,
        device,
        device_name,
    })
}

/// The installed weights when every file `mode` needs is present and sound, else random
/// weights at the real sizes (with a notice naming the first problem).
fn weights_for(
    mode: &Mode,
    installed: Option<&(Manifest, WeightsRoot)>,
    say: &dyn Fn(&str),
) -> Result<(WeightsSource, &'static str), CliError> {
    let Some((manifest, root)) = installed else {
        return Ok((WeightsSource::Random, "random"));
    };
    let problem = match check(
        manifest,
        &mode.components(),
        root,
        &CheckOptions::default(),
        None,
    ) {
        Ok(report) => report.problems().into_iter().next(),
        Err(e) => Some(e.to_string()),
    };
    match problem {
        None => Ok((
            WeightsSource::Folders(select::model_dirs(root, manifest, mode)?),
            "installed",
        )),
        Some(first) => {
            say(&format!(
                "notice: {mode}: random weights at the real sizes (the real weights are not \
                 complete: {first})"
            ));
            Ok((WeightsSource::Random, "random"))
        }
    }
}
