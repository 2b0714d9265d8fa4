//! `cadence fetch`: download what a mode needs into the Hugging Face cache.

use cadence_weights::{fetch, FetchOptions, FetchReport, HubSettings, Token};
use indicatif::HumanBytes;

use crate::args::FetchArgs;
use crate::errors::{from_weights, weights_error, CliError, ExitKind};
use crate::logging::Output;
use crate::progress::FetchProgress;
use crate::select;

/// Runs `cadence fetch`.
pub fn run(args: &FetchArgs, out: &Output) -> Result<(), CliError> {
    let manifest = select::manifest(args.manifest.as_deref())?;
    let (ids, what) = args.select.components(&manifest)?;
    let mut hub = HubSettings::from_env().map_err(from_weights)?;
    if let Some(token) = &args.token {
        hub.token = Some(Token::explicit(token.trim()));
    }
    hub.offline |= args.offline;
    let where_to = format!("into {}", hub.cache_dir.display());
    let options = FetchOptions::new(hub);
    tracing::info!("fetching {what} ({}) {where_to}", ids.join(", "));
    let mut progress = FetchProgress::new(out);
    let report = fetch(&manifest, &ids, &options, &mut progress).map_err(from_weights)?;
    outcome(&report)
}

/// Success, or one sentence for the first failure (each failure was logged as it happened).
fn outcome(report: &FetchReport) -> Result<(), CliError> {
    if report.is_complete() {
        tracing::info!(
            "done: every file is in place ({} downloaded)",
            HumanBytes(report.downloaded_bytes())
        );
        return Ok(());
    }
    let errors: Vec<_> = report.errors().collect();
    let skipped: Vec<&str> = report.not_attempted().collect();
    let not_tried = if skipped.is_empty() {
        String::new()
    } else {
        format!(" ({} not tried after it)", skipped.join(", "))
    };
    match errors.first() {
        Some((_, first)) => {
            let mut err = weights_error(first);
            if errors.len() > 1 {
                err.message = format!(
                    "{} files could not be fetched{not_tried}; the first: {}",
                    errors.len(),
                    err.message
                );
            } else if !not_tried.is_empty() {
                err.message.push_str(&not_tried);
            }
            Err(err)
        }
        None => Err(CliError::new(
            ExitKind::Download,
            format!(
                "the download stopped before {}; run `cadence fetch` again",
                skipped.join(", ")
            ),
        )),
    }
}
