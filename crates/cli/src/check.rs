//! `cadence check`: is every file a mode needs on disk and sound, and would the loaders accept
//! it? Each component is verified by its loader's own check (format, pickle rules, keys,
//! shapes, dtypes, completeness), so `check` reports what `generate` would refuse, with the
//! same reason.

use std::path::Path;
use std::str::FromStr;

use cadence_codec::{oobleck, turbo, wan, Oobleck, TurboVaed, WanConfig, WanVae};
use cadence_core::Error;
use cadence_model::{DitModel, DitVariant};
use cadence_pipeline::models::ids;
use cadence_text::TextEncoder;
use cadence_weights::{check, CheckOptions, CheckReport, Component, FileStatus, LayoutCheck};

use crate::args::CheckArgs;
use crate::errors::{from_weights, CliError, ExitKind};
use crate::select;

/// Tensor problems listed per component before the rest is summarised as a count.
const MAX_LAYOUT_LINES: usize = 8;

/// Runs `cadence check`; prints the report on stdout.
pub fn run(args: &CheckArgs) -> Result<(), CliError> {
    let manifest = select::manifest(args.weights.manifest.as_deref())?;
    let (ids, what) = args.select.components(&manifest)?;
    let root = select::weights_root(args.weights.weights_dir.as_deref())?;
    let options = CheckOptions {
        hashes: args.hashes,
    };
    let report =
        check(&manifest, &ids, &root, &options, Some(&ModelLayout)).map_err(from_weights)?;
    print!("{}", render(&report));
    if report.is_ok() {
        println!(
            "all {} component(s) of {what} are complete",
            report.components.len()
        );
        return Ok(());
    }
    let problems = report.problems();
    let first = problems
        .first()
        .map_or("a component is incomplete", String::as_str);
    Err(CliError::new(
        ExitKind::Weights,
        format!(
            "{} problem(s) with the weights for {what}, first: {first} (run `cadence fetch` \
             with the same flags to download what is missing)",
            problems.len()
        ),
    ))
}

/// The report as lines: each component with its place, then each file's state.
fn render(report: &CheckReport) -> String {
    let mut out = String::new();
    for c in &report.components {
        let state = if c.is_ok() { "ok" } else { "INCOMPLETE" };
        match &c.located {
            Some(at) => out.push_str(&format!(
                "{:<14} {state:<10} {} ({})\n",
                c.id,
                at.dir.display(),
                at.source
            )),
            None => out.push_str(&format!(
                "{:<14} {state:<10} not found (looked in {})\n",
                c.id,
                report.searched.join(", ")
            )),
        }
        for f in &c.files {
            let status = match &f.status {
                FileStatus::Present => "present".to_string(),
                FileStatus::Missing => "missing".to_string(),
                FileStatus::AbsentOptional => "absent (optional)".to_string(),
                FileStatus::Corrupt(why) => format!("CORRUPT: {why}"),
            };
            out.push_str(&format!("    {:<40} {status}\n", f.name));
        }
        for problem in &c.layout {
            out.push_str(&format!("    tensors: {problem}\n"));
        }
    }
    out
}

/// Runs each component's loader verification on its folder.
pub struct ModelLayout;

impl LayoutCheck for ModelLayout {
    fn check(&self, component: &Component, dir: &Path) -> Vec<String> {
        match verify_component(&component.id, dir) {
            Ok(()) => Vec::new(),
            Err(Error::KeyMismatch { report, .. }) => {
                condense(report.lines().map(|l| l.trim().to_string()).collect())
            }
            Err(e) => vec![e.to_string()],
        }
    }
}

/// The check the loader of component `id` makes before reading a weight, on `dir`: the same
/// function, so the verdict and its reason are the loader's. Components without weights of
/// their own pass.
fn verify_component(id: &str, dir: &Path) -> cadence_core::Result<()> {
    if let Ok(variant) = DitVariant::from_str(id) {
        return DitModel::check_dir(dir, variant);
    }
    match id {
        ids::T5GEMMA => TextEncoder::check_dir(dir),
        ids::TURBO_VAE => TurboVaed::check_files(
            dir.join(turbo::CHECKPOINT_FILE),
            dir.join(turbo::CONFIG_FILE),
        ),
        ids::WAN_VAE => {
            WanVae::check_files(dir.join(wan::CHECKPOINT_FILE), &WanConfig::wan22_ti2v_5b())
        }
        ids::STABLE_AUDIO => Oobleck::check_files(
            dir.join(oobleck::CHECKPOINT_FILE),
            dir.join(oobleck::CONFIG_FILE),
        ),
        _ => Ok(()),
    }
}

/// At most [`MAX_LAYOUT_LINES`] problems, then how many more there are.
fn condense(mut lines: Vec<String>) -> Vec<String> {
    if lines.len() > MAX_LAYOUT_LINES {
        let more = lines.len() - MAX_LAYOUT_LINES;
        lines.truncate(MAX_LAYOUT_LINES);
        lines.push(format!("... and {more} more tensor problem(s)"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reports_are_summarised() {
        let lines: Vec<String> = (0..20).map(|i| format!("missing: k{i}")).collect();
        let out = condense(lines);
        assert_eq!(out.len(), MAX_LAYOUT_LINES + 1);
        assert_eq!(out.last().unwrap(), "... and 12 more tensor problem(s)");
        assert_eq!(condense(vec!["a".into()]), ["a"]);
    }

    #[test]
    fn every_component_with_weights_is_verified() {
        let dir = Path::new("/nonexistent-cadence-weights");
        for id in [
            "base",
            "distill",
            "540p_sr",
            "1080p_sr",
            "t5gemma",
            "turbo_vae",
            "wan_vae",
            "stable_audio",
        ] {
            assert!(verify_component(id, dir).is_err(), "{id} was not checked");
        }
        assert!(verify_component("a_future_tokenizer_only_component", dir).is_ok());
    }
}
