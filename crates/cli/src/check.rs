//! `cadence check`: is every file a mode needs on disk and sound, and do the checkpoints hold
//! the tensors the models expect?

use std::path::Path;
use std::str::FromStr;

use cadence_core::{Checkpoint, TensorSpec};
use cadence_model::DitVariant;
use cadence_pipeline::models::ids;
use cadence_text::{TextEncoderConfig, ENCODER_PREFIX};
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

/// Opens DiT and text-encoder checkpoints and compares every tensor name and shape with what
/// the loaders will ask for; other components are checked at the file level only.
pub struct ModelLayout;

impl LayoutCheck for ModelLayout {
    fn check(&self, component: &Component, dir: &Path) -> Vec<String> {
        let expected = match expected_tensors(&component.id, dir) {
            Ok(Some(e)) => e,
            Ok(None) => return Vec::new(),
            Err(e) => return vec![e.to_string()],
        };
        let (prefix, specs) = expected;
        let checkpoint = match Checkpoint::open(dir) {
            Ok(c) => c,
            Err(e) => return vec![e.to_string()],
        };
        let report = checkpoint.mismatch_report(prefix, &specs);
        let lines: Vec<String> = report.lines().map(|l| l.trim().to_string()).collect();
        condense(lines)
    }
}

/// The key prefix and tensors a component's loader expects, decided as the loaders decide:
/// the folder's `config.json` when there is one, else the published model's preset.
fn expected_tensors(
    id: &str,
    dir: &Path,
) -> cadence_core::Result<Option<(&'static str, Vec<TensorSpec>)>> {
    let config = dir.join("config.json");
    if let Ok(variant) = DitVariant::from_str(id) {
        let dit = if config.is_file() {
            cadence_model::DitConfig::from_json_file(&config)?
        } else {
            variant.config()
        };
        return Ok(Some(("", cadence_model::weights::expected_tensors(&dit))));
    }
    if id == ids::T5GEMMA {
        let text = if config.is_file() {
            TextEncoderConfig::from_file(&config)?
        } else {
            TextEncoderConfig::t5gemma_9b()
        };
        return Ok(Some((ENCODER_PREFIX, text.tensor_specs())));
    }
    Ok(None)
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
    fn only_dits_and_the_text_encoder_have_tensor_checks() {
        let dir = Path::new("/nonexistent");
        for id in ["base", "distill", "540p_sr", "1080p_sr"] {
            let (prefix, specs) = expected_tensors(id, dir).unwrap().unwrap();
            assert_eq!(prefix, "");
            assert!(
                specs.iter().any(|s| s.name.starts_with("block.layers.39.")),
                "{id}"
            );
        }
        let (prefix, specs) = expected_tensors("t5gemma", dir).unwrap().unwrap();
        assert_eq!(prefix, "model.encoder.");
        assert!(specs.iter().any(|s| s.name == "embed_tokens.weight"));
        for id in ["turbo_vae", "stable_audio", "wan_vae"] {
            assert!(expected_tensors(id, dir).unwrap().is_none(), "{id}");
        }
    }
}
