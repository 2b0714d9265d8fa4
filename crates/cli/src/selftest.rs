//! `cadence selftest`: does this build, on this device, still reproduce the reference?
//!
//! Every golden fixture case ([`cadence_parity::fixtures::all_cases`]: `$CADENCE_FIXTURES`, else
//! `../shared/fixtures` beside the source tree) goes to the parity checker of the crate that
//! owns its `kind`, on the chosen device. The checkers are the same code the crates' CPU tests
//! run, so a GPU build is held to the same fixtures and tolerances.
//!
//! Precision per case: `dit_forward` cases compute in the dtype their `case.json` names; the
//! video codecs run their f32 check and then their production bf16 check
//! ([`cadence_parity::codecs::check_case_bf16`]); everything else is f32. On CUDA, f32 matrix
//! products stay full f32 (TF32 is switched off here explicitly), so the f32 tolerances apply
//! unchanged.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use cadence_parity::fixtures::{self, Case};
use cadence_parity::{checker_for, known_kinds, CheckFn, Checker};
use candle_core::Device;

use crate::args::SelftestArgs;
use crate::device;
use crate::errors::{CliError, ExitKind};

/// What happened to one case.
enum Outcome {
    /// Every check passed; the label says in which precision(s).
    Passed { seconds: f64, precision: String },
    /// A check failed, panicked, or no checker owns the kind.
    Failed(String),
    /// Left out by `--kind`.
    Skipped,
}

/// Runs `cadence selftest`: one line per case on stdout, then the totals.
pub fn run(args: &SelftestArgs) -> Result<(), CliError> {
    let known = known_kinds();
    if let Some(unknown) = args.kind.iter().find(|k| !known.contains(&k.as_str())) {
        return Err(CliError::usage(format!(
            "--kind {unknown} is not a fixture kind any checker knows; known kinds: {}",
            known.join(", ")
        )));
    }
    let selected = device::select(args.device)?;
    let device = selected.device;
    // Parity needs full-precision f32 products; a GPU build must not quietly use TF32.
    candle_core::cuda::set_gemm_reduced_precision_f32(false);
    // The error names the folder and the variable that sets it.
    let cases = fixtures::all_cases().map_err(|e| CliError::input(e.to_string()))?;
    let root = fixtures::root();
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    println!(
        "selftest on {}: {} case(s) under {}",
        selected.name,
        cases.len(),
        root.display()
    );

    let mut failed = Vec::new();
    let (mut passed, mut skipped) = (0usize, 0usize);
    for case in &cases {
        let outcome = if args.kind.is_empty() || args.kind.contains(&case.kind) {
            run_case(case, &device)
        } else {
            Outcome::Skipped
        };
        match outcome {
            Outcome::Passed { seconds, precision } => {
                passed += 1;
                println!("ok {} ({}) {seconds:.2}s {precision}", case.name, case.kind);
            }
            Outcome::Failed(reason) => {
                println!("FAIL {} ({}): {reason}", case.name, case.kind);
                failed.push(format!("{} ({})", case.name, case.kind));
            }
            Outcome::Skipped => skipped += 1,
        }
    }
    // A requested kind with no case would otherwise pass having checked nothing.
    for kind in &args.kind {
        if !cases.iter().any(|c| &c.kind == kind) {
            println!(
                "FAIL (none) ({kind}): no case of this kind under {}",
                root.display()
            );
            failed.push(format!("kind {kind} (no case)"));
        }
    }
    println!(
        "{passed} passed, {} failed, {skipped} skipped",
        failed.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(
            ExitKind::Other,
            format!(
                "{} of {} checks failed on {}: {}",
                failed.len(),
                passed + failed.len(),
                selected.name,
                failed.join(", ")
            ),
        ))
    }
}

/// Runs every check of `case` on `device`, timing them together.
fn run_case(case: &Case, device: &Device) -> Outcome {
    let Some(checker) = checker_for(&case.kind) else {
        return Outcome::Failed(format!(
            "no checker for kind {}; the kinds this build checks are: {}",
            case.kind,
            known_kinds().join(", ")
        ));
    };
    let start = Instant::now();
    let mut precision = case.compute().unwrap_or("f32").to_string();
    if let Err(reason) = guarded(checker, checker.check, case, device) {
        return Outcome::Failed(reason);
    }
    if let Some((kinds, production)) = checker.production {
        if kinds.contains(&case.kind.as_str()) {
            if let Err(reason) = guarded(checker, production, case, device) {
                return Outcome::Failed(format!("production bf16 check: {reason}"));
            }
            precision.push_str(" + bf16");
        }
    }
    Outcome::Passed {
        seconds: start.elapsed().as_secs_f64(),
        precision,
    }
}

/// One check, with a panic inside it reported as a failure of the case instead of ending the
/// run (the remaining cases still say whether they pass).
fn guarded(checker: &Checker, check: CheckFn, case: &Case, device: &Device) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| check(case, device))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(one_line(&e.to_string())),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(format!(
                "{} panicked: {}",
                checker.component,
                one_line(message)
            ))
        }
    }
}

/// Multi-line reasons folded onto the case's line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_on_one_line() {
        assert_eq!(one_line("a\n  b\n\nc"), "a; b; c");
    }
}
