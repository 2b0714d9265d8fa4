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

    /// An error from the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
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
