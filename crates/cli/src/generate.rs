//! `cadence generate`: check every input first, load (or build the demo) engine, generate into
//! an MP4, report.
//!
//! Inputs are checked before any model is loaded, so a typo in a path costs a second, not the
//! minutes it takes to load 15B weights.

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cadence_media::{load_reference_audio, load_reference_image, AudioInputOptions};
use cadence_pipeline::engine::{Engine, Mp4Sink, Progress, StageKind};
use cadence_pipeline::{GenerationRequest, Limits};
use cadence_weights::{
    check, CheckOptions, Manifest, Mode, Resolution as ModeResolution, WeightsRoot,
};

use crate::args::{GenerateArgs, Model, Precision, Resolution};
use crate::device::{self, Selected};
use crate::errors::{from_core, unreadable, CliError, ExitKind, Phase};
use crate::interrupt::Interrupt;
use crate::logging::Output;
use crate::progress::StageProgress;
use crate::select;
use crate::summary::{Finished, Summary};

/// The prompt of `cadence generate --demo` without one.
const DEMO_PROMPT: &str = "A presenter smiles at the camera and says: welcome to Cadence.";

/// Default clip length: the official examples' 4 s.
const SECONDS: u32 = 4;
/// Default clip length with the demo model: short, so the first run takes well under a minute
/// on two cores (the tiny decoders still work at full pixel size).
const DEMO_SECONDS: u32 = 2;

/// Pixel area of the base stage the models were trained at (448x256).
const BASE_AREA: f64 = 448.0 * 256.0;

/// Runs `cadence generate`.
pub fn run(args: &GenerateArgs, out: &Output) -> Result<(), CliError> {
    let started = Instant::now();
    // First, so that Ctrl-C at any point exits with the documented code and message.
    let interrupt = Interrupt::install()?;
    let prompt = prompt(args)?;
    let seed = args.seed.unwrap_or_else(random_seed);
    let mode = args
        .mode
        .to_mode(args.image.is_some(), args.audio.is_some());
    let plan = plan(args, &mode, out)?;
    let request = request(args, &plan, prompt, seed);
    check_inputs(&request)?;
    let output = output_path(args.output.as_deref(), seed)?;
    // A malformed SOURCE_DATE_EPOCH would only stop the MP4 writer after the whole generation.
    cadence_media::mp4::moov::creation_time().map_err(|e| from_core(e, Phase::Inputs))?;
    let mut device = device::select(args.device, mode.resolution != ModeResolution::P256)?;
    device.options.dit_weights = args.precision.weight_format();

    let mut progress = StageProgress::new(out);
    let load_start = Instant::now();
    let (mut engine, device_name) = load(plan, &mode, device, out, &mut progress)?;
    let load = load_start.elapsed();
    if let Some(steps) = args.steps {
        engine
            .set_base_steps(steps)
            .map_err(|e| from_core(e, Phase::Inputs))?;
    }

    let mut sink = interrupt.guard(Mp4Sink::new(&output));
    let report = engine
        .generate(&request, &mut sink, &mut progress, interrupt.token())
        .map_err(|e| from_core(e, Phase::Generating))?;
    let (mp4, mux) = sink
        .into_inner()
        .finish()
        .map_err(|e| from_core(e, Phase::Generating))?;
    drop(progress);

    let summary = Summary::new(Finished {
        report: &report,
        mp4: &mp4,
        load,
        mux,
        total: started.elapsed(),
        model: match args.mode.model {
            Model::Distilled => "distilled",
            Model::Base => "base",
        },
        precision: match args.precision {
            Precision::Bf16 => "bf16",
            Precision::Fp8 => "fp8",
        },
        device: device_name,
        steps: engine.sampler_config().base.num_steps,
    });
    if args.json {
        println!("{}", summary.to_json());
    } else if !out.quiet {
        println!("{}", summary.line());
    }
    Ok(())
}

/// The prompt from the command line or `--prompt-file`.
fn prompt(args: &GenerateArgs) -> Result<String, CliError> {
    if let Some(path) = &args.prompt_file {
        let bytes = std::fs::read(path).map_err(|e| unreadable("prompt file", path, &e))?;
        let what = format!("the prompt file {}", path.display());
        let text = utf8(&bytes, &what, "save it as UTF-8")?.trim();
        if text.is_empty() {
            return Err(CliError::input(format!(
                "the prompt file {} is empty; write the prompt in it",
                path.display()
            )));
        }
        return Ok(text.to_string());
    }
    match (&args.prompt, args.demo) {
        (Some(p), _) => Ok(utf8(
            p.as_encoded_bytes(),
            "the prompt",
            "set the terminal's locale to UTF-8, or put the prompt in a UTF-8 file for \
             --prompt-file",
        )?
        .to_string()),
        (None, true) => Ok(DEMO_PROMPT.into()),
        (None, false) => Err(CliError::usage(
            "no prompt: give one in quotes (cadence generate \"A woman smiles and says hello.\") \
             or with --prompt-file FILE",
        )),
    }
}

/// `bytes` as text, or an error naming `what`, the first invalid byte and `fix`.
fn utf8<'a>(bytes: &'a [u8], what: &str, fix: &str) -> Result<&'a str, CliError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        CliError::input(format!(
            "{what} is not UTF-8 text (byte 0x{:02X} at offset {at}); {fix}",
            bytes[at]
        ))
    })
}

/// A seed from the OS's randomness (std's hasher keys), small enough to type back.
fn random_seed() -> u64 {
    RandomState::new().hash_one(std::process::id()) % 1_000_000_000
}

/// The base-stage size and, with super-resolution, the output size of a preset, or of the
/// `custom` output shape (`--width/--height`) under that preset.
pub fn stage_sizes(
    resolution: Resolution,
    custom: Option<(u32, u32)>,
) -> ((u32, u32), Option<(u32, u32)>) {
    let output = custom.unwrap_or(match resolution {
        Resolution::P256 => (448, 256),
        Resolution::P540 => (896, 512),
        Resolution::P1080 => (1920, 1088),
    });
    match resolution {
        Resolution::P256 => (output, None),
        Resolution::P540 | Resolution::P1080 => (base_size(output), Some(output)),
    }
}

/// The request: sizes from the preset or `--width/--height`, the inputs, the length, the seed.
fn request(args: &GenerateArgs, plan: &Plan, prompt: String, seed: u64) -> GenerationRequest {
    let (base, sr) = stage_sizes(args.mode.resolution, args.width.zip(args.height));
    GenerationRequest {
        prompt,
        image: args.image.clone(),
        audio: args.audio.clone(),
        seconds: args.seconds.unwrap_or(match plan {
            Plan::Demo => DEMO_SECONDS,
            Plan::Weights { .. } => SECONDS,
        }),
        width: base.0,
        height: base.1,
        sr_width: sr.map(|s| s.0),
        sr_height: sr.map(|s| s.1),
        seed,
    }
}

/// The base-stage size for a super-resolution output: the output's shape scaled to the area
/// the base models work at (448x256), on the 32-pixel grid, never larger than the output. The
/// presets come out as the official examples have them (896x512 and 1920x1088 from 448x256).
fn base_size((w, h): (u32, u32)) -> (u32, u32) {
    if w == 0 || h == 0 {
        return (w, h); // refused by the request's validation, with its message
    }
    let scale = (BASE_AREA / (f64::from(w) * f64::from(h))).sqrt().min(1.0);
    let side = |px: u32| ((f64::from(px) * scale / 32.0).round() as u32).max(1) * 32;
    (side(w).min(w), side(h).min(h))
}

/// Validates the request and reads the reference image and audio once, before any model is
/// loaded, so bad inputs fail in a second with a clear message.
fn check_inputs(request: &GenerationRequest) -> Result<(), CliError> {
    let valid = request
        .validate(&Limits::default())
        .map_err(|e| from_core(e, Phase::Inputs))?;
    if let Some(image) = &request.image {
        let (w, h) = (valid.base.width_px() as u32, valid.base.height_px() as u32);
        load_reference_image(image, w, h).map_err(|e| from_core(e, Phase::Inputs))?;
    }
    if let Some(audio) = &request.audio {
        load_reference_audio(audio, &AudioInputOptions::default())
            .map_err(|e| from_core(e, Phase::Inputs))?;
    }
    Ok(())
}

/// `--output`, or `cadence-<seed>.mp4`; its folder must exist and take a new file.
fn output_path(output: Option<&Path>, seed: u64) -> Result<PathBuf, CliError> {
    let path = output.map_or_else(
        || PathBuf::from(format!("cadence-{seed}.mp4")),
        Path::to_path_buf,
    );
    if path.is_dir() {
        return Err(CliError::input(format!(
            "--output {} is a folder; give a file name such as {}",
            path.display(),
            path.join(format!("cadence-{seed}.mp4")).display()
        )));
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(CliError::input(format!(
            "the folder {} of --output does not exist; create it or choose another path",
            folder.display()
        )));
    }
    // The writer creates its temporary file there only after generation; find out now.
    tempfile::NamedTempFile::new_in(&folder).map_err(|e| {
        CliError::input(format!(
            "cannot write in {} ({e}); choose another --output",
            folder.display()
        ))
    })?;
    Ok(path)
}

/// Where the models come from.
enum Plan {
    /// The embedded tiny random model.
    Demo,
    /// Installed weights, every file present.
    Weights {
        manifest: Manifest,
        root: WeightsRoot,
    },
}

/// The real models when installed, else the demo (with a notice) unless weights were asked
/// for explicitly. Every file is checked here, so a missing or damaged one is named before
/// minutes of loading.
fn plan(args: &GenerateArgs, mode: &Mode, out: &Output) -> Result<Plan, CliError> {
    if args.demo {
        return Ok(Plan::Demo);
    }
    let manifest = select::manifest(args.weights.manifest.as_deref())?;
    let root = select::weights_root(args.weights.weights_dir.as_deref())?;
    let ids = mode.components();
    let installed = ids
        .iter()
        .filter_map(|id| manifest.get(id).ok())
        .any(|c| root.locate(c).is_some());
    let fetch_flags = args
        .mode
        .fetch_flags(args.image.is_some(), args.audio.is_some());
    if !installed && args.weights.weights_dir.is_none() {
        notice(
            out,
            &format!(
                "no weights are installed: running the embedded tiny demo model (random weights, \
                 the picture is noise); get the real ones with `cadence fetch{fetch_flags}` or \
                 point --weights-dir at them"
            ),
        );
        return Ok(Plan::Demo);
    }
    let report = check(&manifest, &ids, &root, &CheckOptions::default(), None)
        .map_err(crate::errors::from_weights)?;
    if let Some(first) = report.problems().first() {
        return Err(CliError::new(
            ExitKind::Weights,
            format!(
                "the weights for {mode} are incomplete: {first} (`cadence check{fetch_flags}` \
                 lists every problem, `cadence fetch{fetch_flags}` downloads what is missing)"
            ),
        ));
    }
    Ok(Plan::Weights { manifest, root })
}

/// Loads the planned engine; returns it with the name of the device it runs on.
fn load(
    plan: Plan,
    mode: &Mode,
    device: Selected,
    out: &Output,
    progress: &mut StageProgress,
) -> Result<(Engine, String), CliError> {
    match plan {
        Plan::Demo => demo(mode, device, out, progress),
        Plan::Weights { manifest, root } => {
            let engine = Engine::load(&root, &manifest, mode, device.options, progress)
                .map_err(|e| from_core(e, Phase::Loading))?;
            Ok((engine, device.name))
        }
    }
}

/// The embedded tiny model, on the CPU whatever `--device` said.
fn demo(
    mode: &Mode,
    device: Selected,
    out: &Output,
    progress: &mut StageProgress,
) -> Result<(Engine, String), CliError> {
    if device.name != "cpu" {
        notice(out, "the demo model runs on the CPU");
    }
    progress.stage_started(StageKind::LoadModels, None);
    let start = Instant::now();
    let engine = Engine::demo_with(mode.dit, device.options.dit_weights)
        .map_err(|e| from_core(e, Phase::Loading))?;
    progress.stage_finished(StageKind::LoadModels, start.elapsed());
    Ok((engine, "cpu".into()))
}

/// A one-line notice on stderr (not with --quiet).
fn notice(out: &Output, message: &str) {
    if !out.quiet {
        out.multi.suspend(|| eprintln!("notice: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn super_resolution_presets_start_from_the_official_base_size() {
        assert_eq!(base_size((896, 512)), (448, 256));
        assert_eq!(base_size((1920, 1088)), (448, 256));
        // Portrait keeps its shape; small outputs are not enlarged.
        assert_eq!(base_size((512, 896)), (256, 448));
        assert_eq!(base_size((320, 192)), (320, 192));
        assert_eq!(base_size((0, 512)), (0, 512));
    }

    #[test]
    fn random_seeds_differ_and_stay_short() {
        let a = random_seed();
        assert!(a < 1_000_000_000);
        assert!((0..8).map(|_| random_seed()).any(|b| b != a));
    }
}
