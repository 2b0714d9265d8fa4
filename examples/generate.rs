//! Generate one clip with the library API and write it as an MP4.
//!
//! ```sh
//! # the embedded tiny demo model (random weights, CPU):
//! cargo run --release -p cadence-pipeline --example generate -- "a woman smiles" clip.mp4
//! # real weights from a folder laid out like weights.toml (or the Hugging Face cache):
//! CADENCE_WEIGHTS=/data/ckpts cargo run --release -p cadence-pipeline --example generate -- "a woman smiles" clip.mp4
//! ```

use std::path::PathBuf;

use cadence_pipeline::engine::{CancelToken, Engine, EngineOptions, Mp4Sink, Progress, StageKind};
use cadence_pipeline::GenerationRequest;
use cadence_weights::{Dit, HubSettings, Manifest, Mode, WeightsRoot};

/// Prints each stage as it ends.
struct Log;

impl Progress for Log {
    fn stage_finished(&mut self, stage: StageKind, elapsed: std::time::Duration) {
        eprintln!("{stage}: {:.2} s", elapsed.as_secs_f64());
    }
    fn warning(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let prompt = args
        .next()
        .unwrap_or_else(|| "a woman smiles and says hello".into());
    let output = PathBuf::from(args.next().unwrap_or_else(|| "clip.mp4".into()));

    let engine = match std::env::var_os("CADENCE_WEIGHTS") {
        Some(dir) => {
            let hub = HubSettings::from_env()?;
            let root = WeightsRoot::from_settings(Some(PathBuf::from(dir).as_path()), &hub);
            Engine::load(
                &root,
                &Manifest::embedded()?,
                &Mode::distilled_t2v(),
                EngineOptions::cpu(),
                &mut Log,
            )?
        }
        None => Engine::demo(Dit::Distill)?,
    };
    let mut request = GenerationRequest::new(prompt);
    request.seconds = 2;
    let mut sink = Mp4Sink::new(&output);
    let report = engine.generate(&request, &mut sink, &mut Log, &CancelToken::new())?;
    let (summary, mux) = sink.finish()?;
    eprintln!("mux: {:.2} s", mux.as_secs_f64());
    println!(
        "wrote {} ({}x{}, {} frames, {:.2} s, seed {}{})",
        output.display(),
        report.info.width,
        report.info.height,
        summary.frames,
        summary.video_seconds,
        report.seed,
        if report.demo {
            ", tiny random demo model"
        } else {
            ""
        }
    );
    Ok(())
}
