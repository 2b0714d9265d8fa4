//! The one error type shared by every Cadence crate.
//!
//! Every variant carries enough context (a path, a key, a value) for the message to name the
//! bad input and, where there is one, the fix. Library code returns these; only the CLI turns
//! them into exit codes.

use std::path::PathBuf;

/// Result alias used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Cadence, grouped by who has to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying OS error.
        source: std::io::Error,
    },

    /// A checkpoint file or folder is missing, unreadable, or not in a layout we recognise.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What is wrong and what to do about it.
        message: String,
    },

    /// The tensors in a checkpoint do not match what the model expects.
    #[error("checkpoint {} does not match the model:\n{report}", path.display())]
    KeyMismatch {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// Every missing, unexpected and mis-shaped key, one per line.
        report: String,
    },

    /// Model weights the requested mode needs are not installed; the message names the
    /// component and the command that fetches it.
    #[error("{0}")]
    MissingWeights(String),

    /// A configuration value is invalid or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A request or input tensor is invalid; the message names it and says what is allowed.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A JSON document could not be parsed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The parser error, with line and column.
        source: serde_json::Error,
    },

    /// The caller cancelled the work (for example with Ctrl-C); nothing was written.
    #[error("cancelled")]
    Cancelled,

    /// A broken invariant of Cadence itself (a bug), not something the caller can fix.
    #[error("internal error: {0}")]
    Internal(String),

    /// An error from the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Who has to act on an [`Error`]: what a caller branches on (a server answers 400 for
/// [`ErrorKind::InvalidInput`] and 500 for [`ErrorKind::Internal`]; the CLI picks its exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request or one of its inputs is unusable; the message says what is allowed.
    InvalidInput,
    /// Model weights (or their configuration files) are missing, incomplete or damaged.
    Weights,
    /// The device (or the host) ran out of memory.
    OutOfMemory,
    /// The GPU or its driver failed.
    Device,
    /// The caller cancelled the work.
    Cancelled,
    /// Reading or writing a file outside the inputs and the weights failed (an unwritable
    /// output folder, a full disk).
    Io,
    /// A bug in Cadence.
    Internal,
}

impl Error {
    /// Who has to act on this error. Tensor-library errors are classified by their message
    /// (candle reports CUDA failures as text): out of memory, other CUDA failures, or internal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Checkpoint { .. }
            | Error::KeyMismatch { .. }
            | Error::MissingWeights(_)
            | Error::Config(_)
            | Error::Json { .. } => ErrorKind::Weights,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::OutOfMemory => {
                ErrorKind::OutOfMemory
            }
            Error::Io { .. } => ErrorKind::Io,
            Error::Candle(e) => {
                let text = e.to_string().to_ascii_lowercase();
                if text.contains("out of memory") || text.contains("out_of_memory") {
                    ErrorKind::OutOfMemory
                } else if text.contains("cuda") || text.contains("driver") {
                    ErrorKind::Device
                } else {
                    ErrorKind::Internal
                }
            }
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A checkpoint problem at `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Reads and parses a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_say_who_acts() {
        assert_eq!(
            Error::InvalidInput("x".into()).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(Error::MissingWeights("x".into()).kind(), ErrorKind::Weights);
        assert_eq!(Error::Internal("x".into()).kind(), ErrorKind::Internal);
        assert_eq!(Error::Cancelled.kind(), ErrorKind::Cancelled);
        let oom = candle_core::Error::Msg("CUDA_ERROR_OUT_OF_MEMORY: out of memory".into());
        assert_eq!(Error::from(oom).kind(), ErrorKind::OutOfMemory);
        let cuda = candle_core::Error::Msg("DriverError(CUDA_ERROR_LAUNCH_FAILED)".into());
        assert_eq!(Error::from(cuda).kind(), ErrorKind::Device);
        let shape = candle_core::Error::Msg("shape mismatch in matmul".into());
        assert_eq!(Error::from(shape).kind(), ErrorKind::Internal);
        let disk = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
        assert_eq!(Error::io("out.mp4", disk).kind(), ErrorKind::Io);
    }
}
