//! Progress reporting of a fetch, as callbacks the CLI turns into progress bars.
//!
//! Every method has an empty default, so an implementation overrides only what it draws; `()`
//! reports nothing. Calls for one file come in this order: [`Progress::download_started`]
//! (again if the server restarted the file from byte 0), any number of
//! [`Progress::bytes_received`] and [`Progress::retrying`], then [`Progress::file_finished`].
//! A file resolved without downloading gets only [`Progress::file_finished`].

use crate::error::Error;
use crate::fetch::FileOutcome;
use crate::manifest::RemoteFile;

/// Receives fetch events. An `indicatif` bar per file maps onto it directly: create the bar in
/// `download_started` (length `total`, position `already`), `inc` it in `bytes_received`, finish
/// it in `file_finished`.
pub trait Progress {
    /// A transfer begins: `total` bytes, of which `already` are on disk from an earlier attempt.
    fn download_started(&mut self, file: &RemoteFile, total: u64, already: u64) {
        let _ = (file, total, already);
    }

    /// `bytes` more bytes of `file` were written to disk.
    fn bytes_received(&mut self, file: &RemoteFile, bytes: u64) {
        let _ = (file, bytes);
    }

    /// The transfer broke (`error`); attempt `attempt` resumes it at byte `offset`.
    fn retrying(&mut self, file: &RemoteFile, attempt: u32, offset: u64, error: &Error) {
        let _ = (file, attempt, offset, error);
    }

    /// `file` is done: downloaded, already present, absent but optional, or failed.
    fn file_finished(&mut self, file: &RemoteFile, outcome: &FileOutcome) {
        let _ = (file, outcome);
    }
}

impl Progress for () {}
