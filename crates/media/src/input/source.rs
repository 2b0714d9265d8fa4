//! Where an input's bytes come from: a file, or bytes a caller already holds (an upload), so a
//! server never has to write its inputs to disk.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cadence_core::{Error, Result};

/// The encoded bytes of an image or audio input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// A file on disk, read when decoded.
    Path(PathBuf),
    /// The file's bytes in memory (shared, so cloning a request does not copy them).
    Bytes(Arc<[u8]>),
}

impl MediaSource {
    /// The path, for a file source.
    pub fn path(&self) -> Option<&Path> {
        match self {
            MediaSource::Path(p) => Some(p),
            MediaSource::Bytes(_) => None,
        }
    }

    /// Length in bytes (a file's size on disk).
    pub(crate) fn len(&self) -> Result<u64> {
        match self {
            MediaSource::Path(p) => Ok(std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len()),
            MediaSource::Bytes(b) => Ok(b.len() as u64),
        }
    }

    /// Wraps an I/O error met while reading this source.
    pub(crate) fn io_error(&self, e: std::io::Error) -> Error {
        match self {
            MediaSource::Path(p) => Error::io(p, e),
            // Reading memory fails only on a malformed stream, never on the device.
            MediaSource::Bytes(_) => Error::InvalidInput(format!("{self}: {e}")),
        }
    }
}

/// How error messages name the input: the path, or the size of the in-memory bytes.
impl fmt::Display for MediaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaSource::Path(p) => write!(f, "{}", p.display()),
            MediaSource::Bytes(b) => write!(f, "(in-memory bytes, {} B)", b.len()),
        }
    }
}

impl From<PathBuf> for MediaSource {
    fn from(p: PathBuf) -> Self {
        MediaSource::Path(p)
    }
}

impl From<&Path> for MediaSource {
    fn from(p: &Path) -> Self {
        MediaSource::Path(p.to_path_buf())
    }
}

impl From<Vec<u8>> for MediaSource {
    fn from(b: Vec<u8>) -> Self {
        MediaSource::Bytes(b.into())
    }
}

impl From<Arc<[u8]>> for MediaSource {
    fn from(b: Arc<[u8]>) -> Self {
        MediaSource::Bytes(b)
    }
}
