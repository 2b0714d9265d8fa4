//! Build an engine from model folders and generate one clip as an MP4 in memory, with the
//! library API only (no downloader, no command line).
//!
//! ```sh
//! # the embedded tiny demo model (random weights, CPU):
//! cargo run --release -p cadence-pipeline --example generate -- "a woman smiles"
//! # real weights: a folder with one sub-folder per component, named by its id
//! # (distill/, t5gemma/, turbo_vae/, stable_audio/):
//! CADENCE_MODELS=/data/magihuman cargo run --release -p cadence-pipeline --example generate -- "a woman smiles"
//! ```

use cadence_pipeline::engine::{
    CancelToken, EngineBuilder, Mp4Sink, Progress, StageKind, WeightsSource,
};
use cadence_pipeline::{GenerationRequest, Mode, ModelDirs};

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
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "a woman smiles and says hello".into());
    let mode = Mode::distilled_t2v();
    let weights = match std::env::var_os("CADENCE_MODELS") {
        Some(root) => {
            let mut dirs = ModelDirs::new();
            for id in mode.components() {
                dirs.insert(id, std::path::Path::new(&root).join(id));
            }
            WeightsSource::Folders(dirs)
        }
        None => WeightsSource::Demo,
    };
    let engine = EngineBuilder::new(weights).mode(mode).build(&mut Log)?;
    eprintln!("placement: {:?}", engine.arrangement());

    let mut request = GenerationRequest::new(prompt);
    request.seconds = 2;
    // The MP4 goes into memory (any `Write` works: a socket, a buffer, a file).
    let mut sink = Mp4Sink::unnamed();
    let report = engine.generate(&request, &mut sink, &mut Log, &CancelToken::new())?;
    let mut mp4 = Vec::new();
    sink.finish_into(&mut mp4)?;
    println!(
        "an MP4 of {} bytes in memory: {}x{}, {} frames, seed {}{}",
        mp4.len(),
        report.info.width,
        report.info.height,
        report.info.frames,
        report.seed,
        if report.demo {
            " (tiny random demo model)"
        } else {
            ""
        }
    );
    Ok(())
}
