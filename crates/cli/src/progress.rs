//! Progress of downloads and of generation stages: indicatif bars on a terminal, log lines
//! otherwise (see [`crate::logging`]).

use std::collections::HashMap;
use std::time::Duration;

use cadence_pipeline::engine::{Progress, StageKind};
use cadence_weights::{FileOutcome, RemoteFile};
use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressStyle};

use crate::logging::Output;

/// Bar of a download: bytes, speed and time left.
const FILE_TEMPLATE: &str =
    "{prefix:.bold} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}";
/// Bar of a stage with a known number of steps: steps and time left.
const STEPS_TEMPLATE: &str =
    "{spinner:.green} {prefix:<28.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg}, \
                              {elapsed} elapsed, eta {eta}";
/// A finished stage.
const DONE_TEMPLATE: &str = "  {prefix:<28.bold} {msg}";
/// Spinner of a stage of unknown length.
const SPINNER_TEMPLATE: &str = "{spinner:.green} {prefix:<28.bold} {elapsed} elapsed";

fn style(template: &str) -> ProgressStyle {
    // The templates are constants, so this only fails while editing them; fall back to the
    // plain default rather than panic.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// [`cadence_weights::Progress`]: one bar per file being downloaded.
pub struct FetchProgress {
    out: Output,
    bars: HashMap<String, ProgressBar>,
}

impl FetchProgress {
    /// Reports to `out`.
    pub fn new(out: &Output) -> Self {
        Self {
            out: out.clone(),
            bars: HashMap::new(),
        }
    }
}

impl cadence_weights::Progress for FetchProgress {
    fn download_started(&mut self, file: &RemoteFile, total: u64, already: u64) {
        if !self.out.bars {
            let resumed = if already > 0 {
                format!(", resuming at {}", HumanBytes(already))
            } else {
                String::new()
            };
            tracing::info!("downloading {file} ({}{resumed})", HumanBytes(total));
            return;
        }
        let bar = ProgressBar::new(total)
            .with_style(style(FILE_TEMPLATE))
            .with_prefix(file.path.clone())
            .with_position(already);
        let bar = self.out.multi.add(bar);
        // A restart from byte 0 replaces the old bar.
        if let Some(old) = self.bars.insert(file.path.clone(), bar) {
            old.finish_and_clear();
        }
    }

    fn bytes_received(&mut self, file: &RemoteFile, bytes: u64) {
        if let Some(bar) = self.bars.get(&file.path) {
            bar.inc(bytes);
        }
    }

    fn retrying(
        &mut self,
        file: &RemoteFile,
        attempt: u32,
        offset: u64,
        error: &cadence_weights::Error,
    ) {
        tracing::warn!(
            "{file}: {error} (retry {attempt}, resuming at {})",
            HumanBytes(offset)
        );
    }

    fn file_finished(&mut self, file: &RemoteFile, outcome: &FileOutcome) {
        if let Some(bar) = self.bars.remove(&file.path) {
            bar.finish_and_clear();
        }
        match outcome {
            FileOutcome::Downloaded {
                bytes,
                resumed_from,
                ..
            } => {
                let resumed = if *resumed_from > 0 {
                    format!(" (resumed after {})", HumanBytes(*resumed_from))
                } else {
                    String::new()
                };
                tracing::info!("downloaded {file}: {}{resumed}", HumanBytes(*bytes));
            }
            FileOutcome::Present { .. } => tracing::info!("already cached: {file}"),
            FileOutcome::AbsentOptional => {
                tracing::info!("not in the repository (optional): {file}")
            }
            // The error names the file and the fix.
            FileOutcome::Failed(error) => tracing::warn!("{error}"),
        }
    }
}

/// [`cadence_pipeline::engine::Progress`]: one bar per generation stage, with its time.
pub struct StageProgress {
    out: Output,
    active: HashMap<StageKind, ProgressBar>,
}

impl StageProgress {
    /// Reports to `out`.
    pub fn new(out: &Output) -> Self {
        Self {
            out: out.clone(),
            active: HashMap::new(),
        }
    }
}

impl Progress for StageProgress {
    fn stage_started(&mut self, stage: StageKind, total_steps: Option<u64>) {
        if !self.out.bars {
            match total_steps {
                Some(n) => tracing::info!("{stage}: {n} {}", unit(stage)),
                None => tracing::info!("{stage}"),
            }
            return;
        }
        // Configured before it joins the bars: a standalone bar would draw itself once.
        let bar = match total_steps {
            Some(n) => ProgressBar::new(n)
                .with_style(style(STEPS_TEMPLATE))
                .with_message(unit(stage)),
            None => ProgressBar::new_spinner().with_style(style(SPINNER_TEMPLATE)),
        };
        let bar = self.out.multi.add(bar.with_prefix(stage.to_string()));
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = self.active.insert(stage, bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&mut self, stage: StageKind, steps: u64) {
        if let Some(bar) = self.active.get(&stage) {
            bar.inc(steps);
        }
    }

    fn stage_finished(&mut self, stage: StageKind, elapsed: Duration) {
        match self.active.remove(&stage) {
            Some(bar) => {
                bar.set_style(style(DONE_TEMPLATE));
                bar.finish_with_message(format!("done in {}", seconds(elapsed)));
            }
            None => tracing::info!("{stage}: done in {}", seconds(elapsed)),
        }
    }

    fn warning(&mut self, message: &str) {
        tracing::warn!("{message}");
    }
}

impl Drop for StageProgress {
    /// A failed or interrupted run leaves no spinning bar behind.
    fn drop(&mut self) {
        for (_, bar) in self.active.drain() {
            bar.abandon();
        }
    }
}

/// What a stage counts.
fn unit(stage: StageKind) -> &'static str {
    match stage {
        StageKind::LoadModels => "components",
        StageKind::DecodeVideo => "frames",
        _ => "steps",
    }
}

/// `1.23 s` below a minute, `2 minutes` above.
pub fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        HumanDuration(d).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for t in [
            FILE_TEMPLATE,
            STEPS_TEMPLATE,
            SPINNER_TEMPLATE,
            DONE_TEMPLATE,
        ] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(Duration::from_millis(1234)), "1.23 s");
        assert_eq!(seconds(Duration::from_secs(120)), "2 minutes");
    }
}
