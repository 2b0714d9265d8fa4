//! What the user sees when something fails: one sentence that names the problem and the fix,
//! and an exit code a script can act on.
//!
//! Library errors ([`cadence_core::Error`], [`cadence_weights::Error`]) already name the bad
//! input; this module decides who has to act (the [`ExitKind`]) and adds the `cadence`
//! command that fixes it where the library cannot know it.

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

/// Exit codes, documented in `cadence --help` ([`EXIT_CODES_HELP`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Anything not covered below (an internal error, an unwritable cache).
    Other,
    /// The command line itself is wrong (clap reports these with the same code).
    Usage,
    /// Weights are missing, incomplete or damaged.
    Weights,
    /// A user input is unusable: prompt, image, audio, sizes, output path.
    Input,
    /// The device cannot run the request: no GPU, no CUDA build, out of memory.
    Device,
    /// A download failed (network, access to a gated model, token).
    Download,
    /// Stopped by Ctrl-C.
    Interrupted,
}

impl ExitKind {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Other => 1,
            ExitKind::Usage => 2,
            ExitKind::Weights => 3,
            ExitKind::Input => 4,
            ExitKind::Device => 5,
            ExitKind::Download => 6,
            ExitKind::Interrupted => 130,
        }
    }
}

impl From<ExitKind> for ExitCode {
    fn from(kind: ExitKind) -> Self {
        ExitCode::from(kind.code())
    }
}

/// The exit-code table shown at the end of `cadence --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    other error
  2    bad command line (unknown flag, missing value)
  3    weights missing, incomplete or damaged (see `cadence check`, then `cadence fetch`)
  4    bad input: prompt, image, audio, size, output path
  5    device: no GPU, a build without CUDA, out of memory
  6    download failed (network, gated model access, token)
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP); no partial output is left behind";

/// A failure ready to print: `error: <message>`, then exit with `kind`'s code.
#[derive(Debug)]
pub struct CliError {
    /// Who has to act.
    pub kind: ExitKind,
    /// One sentence with the fix.
    pub message: String,
}

impl CliError {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A bad user input.
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Input, message)
    }

    /// An unusable command line (for checks clap cannot express).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Usage, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// What the program was doing when a library error came back; it decides who is at fault
/// when the error itself does not say (an unreadable file is the user's input during the
/// input checks, the weights while loading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the prompt file, the reference image or audio, checking the output path.
    Inputs,
    /// Loading models.
    Loading,
    /// Running the pipeline and writing the clip.
    Generating,
}

/// How to fix a weights problem, appended to weights errors.
const WEIGHTS_FIX: &str =
    "run `cadence check` to list every problem and `cadence fetch` to download what is missing";

/// A library error as the user sees it: the library's sentence, the exit code of its kind, and
/// the `cadence` command that fixes it where the library cannot know it.
pub fn from_core(error: cadence_core::Error, phase: Phase) -> CliError {
    use cadence_core::{Error as E, ErrorKind as K};
    match (error.kind(), error) {
        (K::Cancelled, _) => CliError::new(
            ExitKind::Interrupted,
            "interrupted before the clip was finished; no output was written",
        ),
        (K::InvalidInput, E::InvalidInput(message)) => CliError::input(message),
        (K::OutOfMemory, e) => CliError::new(
            ExitKind::Device,
            format!(
                "out of memory ({}): generate a shorter clip (--seconds), a lower --resolution, \
                 give a smaller --max-memory so the models are offloaded, or run on a device \
                 with more memory",
                first_line(&e.to_string())
            ),
        ),
        (K::Device, e) => CliError::new(
            ExitKind::Device,
            format!(
                "the GPU failed ({}): check the driver with `nvidia-smi`, or use --device cpu",
                first_line(&e.to_string())
            ),
        ),
        (K::Weights, E::KeyMismatch { path, report }) => {
            let lines: Vec<&str> = report.lines().map(str::trim).collect();
            let first = lines.first().copied().unwrap_or("mismatched tensors");
            CliError::new(
                ExitKind::Weights,
                format!(
                    "checkpoint {} does not match the model ({} problem(s), first: {first}); \
                     {WEIGHTS_FIX}",
                    path.display(),
                    lines.len()
                ),
            )
        }
        (K::Weights, e) => CliError::new(ExitKind::Weights, format!("{e}; {WEIGHTS_FIX}")),
        (K::Io, E::Io { path, source }) => match phase {
            Phase::Inputs | Phase::Generating => CliError::input(format!(
                "{}: {source}; check the path and its permissions",
                path.display()
            )),
            Phase::Loading => CliError::new(
                ExitKind::Weights,
                format!("{}: {source}; {WEIGHTS_FIX}", path.display()),
            ),
        },
        (_, e) => CliError::new(
            ExitKind::Other,
            format!("{e} (a bug in cadence; please report it with the command that caused it)"),
        ),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim()
}

/// Classifies a weights error (manifest, fetch, local lookup).
pub fn from_weights(error: cadence_weights::Error) -> CliError {
    weights_error(&error)
}

/// [`from_weights`] for a borrowed error (those of a fetch report).
pub fn weights_error(error: &cadence_weights::Error) -> CliError {
    use cadence_weights::Error as E;
    let kind = match error {
        E::NotFoundLocally { .. } | E::BadIndex { .. } | E::NotCached { .. } => ExitKind::Weights,
        E::Manifest { .. } | E::UnknownComponent { .. } => ExitKind::Input,
        E::Io { .. } | E::NoCacheDir | E::NoSpace { .. } => ExitKind::Other,
        _ => ExitKind::Download,
    };
    CliError::new(kind, error.to_string())
}

/// An unreadable or missing user-supplied file, in one sentence.
pub fn unreadable(what: &str, path: &Path, error: &std::io::Error) -> CliError {
    CliError::input(format!(
        "cannot read the {what} {}: {error}; check the path",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let kinds = [
            ExitKind::Other,
            ExitKind::Usage,
            ExitKind::Weights,
            ExitKind::Input,
            ExitKind::Device,
            ExitKind::Download,
            ExitKind::Interrupted,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        for k in kinds {
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {:<4} ", k.code())),
                "{k:?} missing from the help"
            );
        }
    }

    #[test]
    fn core_errors_land_with_the_right_party() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = from_core(cadence_core::Error::io("x.png", io()), Phase::Inputs);
        assert_eq!(e.kind, ExitKind::Input);
        let e = from_core(
            cadence_core::Error::io("shard.safetensors", io()),
            Phase::Loading,
        );
        assert_eq!(e.kind, ExitKind::Weights);
        assert!(e.message.contains("cadence fetch"), "{}", e.message);
        let e = from_core(
            cadence_core::Error::KeyMismatch {
                path: "distill".into(),
                report: "  missing: a (expected shape [1])\n  missing: b (expected shape [2])\n"
                    .into(),
            },
            Phase::Loading,
        );
        assert_eq!(e.kind, ExitKind::Weights);
        assert!(
            e.message.contains("2 problem(s), first: missing: a"),
            "{}",
            e.message
        );
        assert!(!e.message.contains('\n'));
        let e = from_core(cadence_core::Error::Cancelled, Phase::Generating);
        assert_eq!(e.kind, ExitKind::Interrupted);
        let oom = candle_core::Error::Msg("CUDA_ERROR_OUT_OF_MEMORY: out of memory".into());
        let e = from_core(oom.into(), Phase::Generating);
        assert_eq!(e.kind, ExitKind::Device);
        assert!(e.message.contains("--resolution"), "{}", e.message);
    }
}
