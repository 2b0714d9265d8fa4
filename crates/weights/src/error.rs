//! Errors of weights management, each one a sentence that names the input at fault and the fix.
//!
//! The messages are written for the person at the terminal: the CLI prints them as they are.
//! Errors of one file do not stop a fetch (see [`crate::FetchReport`]); [`Error::stops_component`]
//! and [`Error::stops_run`] tell the fetcher when trying the next file is pointless.

use std::path::PathBuf;

use crate::manifest::RemoteFile;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the page to accept a gated model's licence lives. Licences are accepted on the Hub
/// itself even when downloads go through a mirror (`HF_ENDPOINT`).
const HUB_PAGE: &str = "https://huggingface.co";

/// Everything that can go wrong while describing, fetching or checking weights.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest (weights.toml) cannot be parsed or is inconsistent.
    #[error("{origin}: {message}")]
    Manifest {
        /// The file read, or `embedded weights.toml`.
        origin: String,
        /// What is wrong, naming the component and field.
        message: String,
    },

    /// A component id that the manifest does not define.
    #[error("unknown component `{id}`: weights.toml defines {}", known.join(", "))]
    UnknownComponent {
        /// The id asked for.
        id: String,
        /// Every id the manifest defines.
        known: Vec<String>,
    },

    /// A local file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// No cache folder could be derived from the environment.
    #[error("cannot locate the Hugging Face cache: there is no home directory; set HF_HOME or HF_HUB_CACHE")]
    NoCacheDir,

    /// A gated repository was asked for without a token.
    #[error("{repo} is gated: accept its licence at {HUB_PAGE}/{repo} and set HF_TOKEN (or run `huggingface-cli login`)")]
    GatedNoToken {
        /// The repository, `owner/name`.
        repo: String,
    },

    /// A gated repository refused the token: its owner has not accepted the licence.
    #[error("{repo} is gated and the token from {token_source} has no access to it: accept its licence at {HUB_PAGE}/{repo} while logged in as the token's owner")]
    GatedNoAccess {
        /// The repository, `owner/name`.
        repo: String,
        /// Where the token came from.
        token_source: String,
    },

    /// The Hub rejected the token itself (HTTP 401).
    #[error("the Hugging Face token from {token_source} was rejected for {repo} (HTTP 401): it is invalid or expired; create one at {HUB_PAGE}/settings/tokens and set HF_TOKEN")]
    BadToken {
        /// The repository asked for.
        repo: String,
        /// Where the token came from.
        token_source: String,
    },

    /// The repository does not exist (or is private and no token was given).
    #[error("repository {repo} was not found on {endpoint}: check the `repo` of component `{component}` in weights.toml (if it is private, set HF_TOKEN)")]
    RepoNotFound {
        /// The component whose repository is missing.
        component: String,
        /// The repository, `owner/name`.
        repo: String,
        /// The endpoint asked.
        endpoint: String,
    },

    /// The revision (branch, tag or commit) does not exist.
    #[error("revision `{revision}` of {repo} does not exist: fix the `revision` of component `{component}` in weights.toml")]
    RevisionNotFound {
        /// The component whose revision is missing.
        component: String,
        /// The repository, `owner/name`.
        repo: String,
        /// The revision asked for.
        revision: String,
    },

    /// The repository exists but not the file.
    #[error("{} was not found in {} at revision {}: the repository layout changed; update component `{}` in weights.toml or pin a revision that has the file", file.path, file.repo, file.revision, file.component)]
    FileNotFound {
        /// The file asked for.
        file: Box<RemoteFile>,
    },

    /// Any other HTTP error status.
    #[error("{url} answered HTTP {status}{detail}: try again later (a partial download is kept and resumes)")]
    Http {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The Hub's error message, with a leading separator, or empty.
        detail: String,
    },

    /// The connection failed or broke and the retries were used up.
    #[error("could not download {file} from {endpoint}: {detail}; check the network (or point HF_ENDPOINT to a reachable mirror) and fetch again: the {kept} bytes received so far are kept and the download resumes")]
    Network {
        /// The file being fetched.
        file: Box<RemoteFile>,
        /// The endpoint used.
        endpoint: String,
        /// The transport error.
        detail: String,
        /// Bytes of the file kept in its `.part` file for the next attempt.
        kept: u64,
    },

    /// Offline mode is on and the file is not in the cache.
    #[error("{file} is not in the Hugging Face cache ({}) and offline mode is on: fetch it once with network access (unset HF_HUB_OFFLINE)", cache.display())]
    NotCached {
        /// The file asked for.
        file: Box<RemoteFile>,
        /// The cache folder searched.
        cache: PathBuf,
    },

    /// The downloaded bytes do not hash to the expected sha256.
    #[error("checksum mismatch for {file}: expected sha256 {expected}, got {actual}; the download was deleted, fetch again (if it repeats, the mirror or weights.toml is wrong)")]
    ChecksumMismatch {
        /// The file fetched.
        file: Box<RemoteFile>,
        /// Expected sha256 (hex).
        expected: String,
        /// Sha256 of what was received (hex).
        actual: String,
    },

    /// The server sent more or fewer bytes than it announced.
    #[error("size mismatch for {file}: expected {expected} bytes, received {actual}; the download was deleted, fetch again")]
    SizeMismatch {
        /// The file fetched.
        file: Box<RemoteFile>,
        /// Announced size in bytes.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },

    /// weights.toml pins a size or hash that the Hub no longer serves.
    #[error("{file}: weights.toml says {field} {manifest} but the Hub serves {upstream}: the upstream file changed; update weights.toml or pin the revision it was written for")]
    ManifestDisagrees {
        /// The file asked for.
        file: Box<RemoteFile>,
        /// `size` or `sha256`.
        field: &'static str,
        /// The manifest's value.
        manifest: String,
        /// The Hub's value.
        upstream: String,
    },

    /// A safetensors index cannot be used.
    #[error("{}: not a usable safetensors index ({detail}); delete it and fetch again", path.display())]
    BadIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// Another process holds the download lock of the same file.
    #[error("{file} is being downloaded by another process (lock {}): wait for it to finish and fetch again", lock.display())]
    Busy {
        /// The file fetched.
        file: Box<RemoteFile>,
        /// The lock file.
        lock: PathBuf,
    },

    /// The disk holding the cache cannot take the file.
    #[error("{file} needs {needed} more bytes but only {available} are free in {}: free some space or point HF_HUB_CACHE to a larger disk", dir.display())]
    NoSpace {
        /// The file to download.
        file: Box<RemoteFile>,
        /// Bytes still to download.
        needed: u64,
        /// Bytes free on the disk.
        available: u64,
        /// The folder the file goes to.
        dir: PathBuf,
    },

    /// The server answered in a way the Hub never does.
    #[error("{url}: unexpected response ({detail}); the server does not behave like the Hugging Face Hub: check HF_ENDPOINT")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// What was unexpected.
        detail: String,
    },

    /// A component's folder is in none of the places searched.
    #[error("component `{component}` was not found locally (looked in {}): fetch it, or pass the folder that holds `{dir}/` with --weights-dir", looked.join(", "))]
    NotFoundLocally {
        /// The component id.
        component: String,
        /// Its folder name in a plain weights directory.
        dir: String,
        /// Every place searched.
        looked: Vec<String>,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when every other file of the same component would fail the same way (no access
    /// to the repository, or the repository or revision is missing).
    pub fn stops_component(&self) -> bool {
        matches!(
            self,
            Error::GatedNoToken { .. }
                | Error::GatedNoAccess { .. }
                | Error::BadToken { .. }
                | Error::RepoNotFound { .. }
                | Error::RevisionNotFound { .. }
        )
    }

    /// True when the remaining components cannot succeed either (the endpoint is unreachable).
    pub fn stops_run(&self) -> bool {
        matches!(self, Error::Network { .. })
    }
}
