//! `cadence generate`: check every input first, build the engine (real weights or the demo),
//! generate into an MP4, report.
//!
//! Inputs are checked before any model is loaded (the request's limits, the image and audio
//! decoded, the output folder, the memory the clip needs), so a typo costs a second, not the
//! minutes it takes to load 15B weights. The policy (sizes, limits, placement) is the
//! library's; this file turns flags into a request and an [`EngineBuilder`].

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cadence_pipeline::engine::{EngineBuilder, Mp4Sink, PreparedRequest, WeightsSource};
use cadence_pipeline::{GenerationRequest, Limits, Mode};
use cadence_weights::{check, CheckOptions};

use crate::args::GenerateArgs;
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

/// Runs `cadence generate`.
pub fn run(args: &GenerateArgs, out: &Output) -> Result<(), CliError> {
    let started = Instant::now();
    // First, so that Ctrl-C or SIGTERM at any point exits with the documented code and message.
    let interrupt = Interrupt::install()?;
    let prompt = prompt(args, out)?;
    let seed = args.seed.unwrap_or_else(random_seed);
    let mode = args
        .mode
        .to_mode(args.image.is_some(), args.audio.is_some());
    let weights = weights(args, &mode, out)?;
    let demo = matches!(weights, WeightsSource::Demo);
    let request = request(args, &mode, demo, prompt, seed);
    let limits = Limits::default();
    let prepared =
        PreparedRequest::new(&request, &limits).map_err(|e| from_core(e, Phase::Inputs))?;
    let output = output_path(args.output.as_deref(), seed)?;
    // A malformed SOURCE_DATE_EPOCH would only stop the MP4 writer after the whole generation.
    cadence_media::mp4::moov::creation_time().map_err(|e| from_core(e, Phase::Inputs))?;
    let Selected { device, name } = device::select(args.device)?;
    let device_name = if demo {
        if name != "cpu" {
            notice(out, "the demo model runs on the CPU");
        }
        "cpu".to_string()
    } else {
        name
    };

    let builder = EngineBuilder::new(weights)
        .mode(mode)
        .device(device)
        .precision(args.memory.precision)
        .max_memory(args.memory.max_memory)
        .offload(args.memory.offload)
        .limits(limits)
        .plan_for(&request)
        .map_err(|e| from_core(e, Phase::Inputs))?;
    // The memory the clip needs, checked against the budget before minutes of loading.
    builder.plan().map_err(|e| from_core(e, Phase::Inputs))?;
    let mut progress = StageProgress::new(out);
    let load_start = Instant::now();
    let mut engine = builder
        .build(&mut progress)
        .map_err(|e| from_core(e, Phase::Loading))?;
    let load = load_start.elapsed();
    if let Some(steps) = args.steps {
        engine
            .set_base_steps(steps)
            .map_err(|e| from_core(e, Phase::Inputs))?;
    }

    let mut sink = interrupt.guard(Mp4Sink::new(&output));
    let report = engine
        .generate_prepared(&prepared, &mut sink, &mut progress, interrupt.token())
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
        model: args.mode.model.name(),
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
fn prompt(args: &GenerateArgs, out: &Output) -> Result<String, CliError> {
    if let Some(path) = &args.prompt_file {
        let bytes = read_bounded(path, Limits::default().max_prompt_bytes)?;
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
        (None, true) => {
            notice(
                out,
                &format!("no prompt given: the demo uses {DEMO_PROMPT:?}"),
            );
            Ok(DEMO_PROMPT.into())
        }
        (None, false) => Err(CliError::usage(
            "no prompt: give one in quotes (cadence generate \"A woman smiles and says hello.\") \
             or with --prompt-file FILE",
        )),
    }
}

/// The prompt file's bytes, refused (without reading it all) when over `limit`.
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| unreadable("prompt file", path, &e))?;
    if bytes.len() > limit {
        return Err(CliError::input(format!(
            "the prompt file {} is over the limit of {limit} bytes; shorten the prompt",
            path.display()
        )));
    }
    Ok(bytes)
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

/// The request: sizes from the preset (or `--width/--height`) by the library's rule, the
/// inputs, the length, the seed.
fn request(
    args: &GenerateArgs,
    mode: &Mode,
    demo: bool,
    prompt: String,
    seed: u64,
) -> GenerationRequest {
    let (base, sr) = mode.resolution.stage_sizes(args.width.zip(args.height));
    GenerationRequest {
        prompt,
        image: args.image.clone().map(Into::into),
        audio: args.audio.clone().map(Into::into),
        seconds: args
            .seconds
            .unwrap_or(if demo { DEMO_SECONDS } else { SECONDS }),
        width: base.0,
        height: base.1,
        sr_width: sr.map(|s| s.0),
        sr_height: sr.map(|s| s.1),
        seed,
    }
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

/// The installed weights' folders when installed, else the demo (with a notice) unless
/// weights were asked for explicitly. Every file is checked here, so a missing or damaged one
/// is named before minutes of loading.
fn weights(args: &GenerateArgs, mode: &Mode, out: &Output) -> Result<WeightsSource, CliError> {
    if args.demo {
        return Ok(WeightsSource::Demo);
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
        return Ok(WeightsSource::Demo);
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
    Ok(WeightsSource::Folders(select::model_dirs(
        &root, &manifest, mode,
    )?))
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
    fn random_seeds_differ_and_stay_short() {
        let a = random_seed();
        assert!(a < 1_000_000_000);
        assert!((0..8).map(|_| random_seed()).any(|b| b != a));
    }
}
