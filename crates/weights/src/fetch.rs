//! Fetching components from the Hugging Face Hub into the Hugging Face cache.
//!
//! For each component: its explicit files, then its safetensors index, then every shard the
//! index names (shard names are only known once the index is read). A file already in the
//! cache costs one metadata request; offline mode ([`HubSettings::offline`]) resolves from the
//! cache without any request. The first answer for a repository pins its commit, so a branch
//! that moves during a fetch cannot mix files of two commits in one snapshot.
//!
//! # Why the transfer is not `hf_hub::api::sync::ApiRepo::download`
//!
//! hf-hub 0.4's sync API does resume from its `.part` file, but it renames the `.part` to the
//! final blob as soon as the byte stream ends, without comparing the length to the announced
//! size or the contents to the sha256 — so a truncated or corrupted transfer would sit in the
//! cache under its final name, looking complete. It also appends whatever a ranged request
//! returns without checking for `206 Partial Content` (a server that ignores `Range` corrupts
//! the file), reads neither `HF_TOKEN` nor `HF_HUB_OFFLINE`, and has no offline mode.
//! hf-hub 1.0 is async, built on tokio, reqwest and hf-xet: far too much to build for a
//! downloader on this project's 2-core CI. So the transfer is [`crate::resume`]'s (HTTP
//! `Range` on a `.part`, verified before the rename), on ureq, the client hf-hub's sync API
//! itself uses, and the cache layout is hf-hub's ([`crate::cache`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::RepoCache;
use crate::error::{Error, Result};
use crate::formats::ShardIndex;
use crate::http::{resolve_url, Context, Failure, Http, Meta};
use crate::hub::HubSettings;
use crate::manifest::{Component, Manifest, RemoteFile};
use crate::progress::Progress;
use crate::resume::{backoff, part_path, Transfer};

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Endpoint, cache, token, offline switch.
    pub hub: HubSettings,
    /// Further attempts after a failed request or a broken transfer (each resumes where the
    /// previous one stopped).
    pub retries: u32,
    /// Wait before the first retry; doubles after each, up to a minute.
    pub retry_wait: Duration,
}

impl FetchOptions {
    /// Options for `hub` with the default retry policy (5 retries, from 2 s).
    pub fn new(hub: HubSettings) -> Self {
        Self {
            hub,
            retries: 5,
            retry_wait: Duration::from_secs(2),
        }
    }

    /// Options from the environment (see [`HubSettings::from_env`]).
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(HubSettings::from_env()?))
    }
}

/// What happened to one file.
#[derive(Debug)]
pub enum FileOutcome {
    /// Downloaded (or finished downloading) and verified.
    Downloaded {
        /// The file in the cache snapshot.
        path: PathBuf,
        /// Bytes transferred by this fetch.
        bytes: u64,
        /// Bytes an earlier, interrupted attempt had left.
        resumed_from: u64,
    },
    /// Already in the cache.
    Present {
        /// The file in the cache snapshot.
        path: PathBuf,
    },
    /// An optional file the repository does not have (or, offline, the cache lacks).
    AbsentOptional,
    /// Could not be fetched.
    Failed(Error),
}

/// One file's result.
#[derive(Debug)]
pub struct FetchedFile {
    /// The file on the Hub.
    pub file: RemoteFile,
    /// What happened.
    pub outcome: FileOutcome,
}

/// One component's result.
#[derive(Debug)]
pub struct ComponentFetch {
    /// Component id.
    pub id: String,
    /// The component's folder in the cache, once any of its files is there.
    pub dir: Option<PathBuf>,
    /// Every file tried, in order. After an error that dooms the whole repository (no access)
    /// the remaining files are not tried.
    pub files: Vec<FetchedFile>,
    /// False when the run stopped (endpoint unreachable) before this component.
    pub attempted: bool,
}

/// The result of [`fetch`].
#[derive(Debug, Default)]
pub struct FetchReport {
    /// One entry per requested component, in request order.
    pub components: Vec<ComponentFetch>,
}

impl FetchReport {
    /// True when every requested component was fetched completely.
    pub fn is_complete(&self) -> bool {
        self.components.iter().all(|c| {
            c.attempted
                && c.files
                    .iter()
                    .all(|f| !matches!(f.outcome, FileOutcome::Failed(_)))
        })
    }

    /// Every failure, with its file.
    pub fn errors(&self) -> impl Iterator<Item = (&RemoteFile, &Error)> {
        self.components
            .iter()
            .flat_map(|c| c.files.iter())
            .filter_map(|f| match &f.outcome {
                FileOutcome::Failed(e) => Some((&f.file, e)),
                _ => None,
            })
    }

    /// Components not tried because the run stopped early.
    pub fn not_attempted(&self) -> impl Iterator<Item = &str> {
        self.components
            .iter()
            .filter(|c| !c.attempted)
            .map(|c| c.id.as_str())
    }

    /// Bytes transferred by this fetch.
    pub fn downloaded_bytes(&self) -> u64 {
        self.components
            .iter()
            .flat_map(|c| c.files.iter())
            .map(|f| match f.outcome {
                FileOutcome::Downloaded { bytes, .. } => bytes,
                _ => 0,
            })
            .sum()
    }
}

/// Fetches the components `ids` of `manifest` into the cache of `options.hub`.
///
/// Errors of single files are in the report (see [`FetchReport::errors`]); `Err` means nothing
/// could be tried (an unknown component id).
pub fn fetch<S: AsRef<str>>(
    manifest: &Manifest,
    ids: &[S],
    options: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<FetchReport> {
    let components = manifest.select(ids)?;
    let mut fetcher = Fetcher {
        options,
        http: (!options.hub.offline).then(|| Http::new(&options.hub)),
        pinned: HashMap::new(),
        progress,
    };
    let mut report = FetchReport::default();
    let mut stopped = false;
    for c in components {
        if stopped {
            report.components.push(ComponentFetch {
                id: c.id.clone(),
                dir: None,
                files: Vec::new(),
                attempted: false,
            });
            continue;
        }
        let (done, stop_run) = fetcher.component(c);
        stopped = stop_run;
        report.components.push(done);
    }
    Ok(report)
}

struct Fetcher<'a> {
    options: &'a FetchOptions,
    /// None in offline mode.
    http: Option<Http>,
    /// Commit each (repository, revision) resolved to in this run.
    pinned: HashMap<(String, String), String>,
    progress: &'a mut dyn Progress,
}

/// How far a failure reaches.
fn reach(outcome: &FileOutcome) -> (bool, bool) {
    match outcome {
        FileOutcome::Failed(e) => (e.stops_component() || e.stops_run(), e.stops_run()),
        _ => (false, false),
    }
}

impl Fetcher<'_> {
    /// Fetches one component; the flag says whether the whole run must stop.
    fn component(&mut self, c: &Component) -> (ComponentFetch, bool) {
        let mut files = Vec::new();
        let mut stop = (false, false);
        for spec in &c.files {
            let f = self.file(c, &spec.name, spec.optional);
            stop = reach(&f.outcome);
            files.push(f);
            if stop.0 {
                break;
            }
        }
        if let (false, Some(index)) = (stop.0, &c.index) {
            stop = self.sharded(c, index, &mut files);
        }
        let dir = RepoCache::new(&self.options.hub.cache_dir, &c.repo, &c.revision)
            .snapshot()
            .map(|s| match &c.subfolder {
                Some(sub) => s.join(sub),
                None => s,
            })
            .filter(|d| d.is_dir());
        let done = ComponentFetch {
            id: c.id.clone(),
            dir,
            files,
            attempted: true,
        };
        (done, stop.1)
    }

    /// The index, then its shards (or the single-file fallback when the index does not exist).
    fn sharded(
        &mut self,
        c: &Component,
        index: &str,
        files: &mut Vec<FetchedFile>,
    ) -> (bool, bool) {
        let mut parsed = None;
        let f = self.file_checked(c, index, c.unsharded.is_some(), &mut |path| {
            parsed = Some(ShardIndex::read(path)?);
            Ok(())
        });
        let stop = reach(&f.outcome);
        files.push(f);
        if stop.0 {
            return stop;
        }
        let shards: Vec<String> = match &parsed {
            Some(idx) => idx.shards().into_iter().map(str::to_string).collect(),
            None => c.unsharded.iter().cloned().collect(),
        };
        for shard in shards {
            let f = self.file(c, &shard, false);
            let stop = reach(&f.outcome);
            files.push(f);
            if stop.0 {
                return stop;
            }
        }
        (false, false)
    }

    /// Resolves one file and reports it.
    fn file(&mut self, c: &Component, name: &str, optional: bool) -> FetchedFile {
        self.file_checked(c, name, optional, &mut |_| Ok(()))
    }

    /// Resolves one file, runs `check` on it once it is local, and reports it.
    fn file_checked(
        &mut self,
        c: &Component,
        name: &str,
        optional: bool,
        check: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> FetchedFile {
        let file = c.remote(name);
        let outcome = match self.resolve(c, name) {
            Ok(o) => match &o {
                FileOutcome::Downloaded { path, .. } | FileOutcome::Present { path } => {
                    match check(path) {
                        Ok(()) => o,
                        Err(e) => FileOutcome::Failed(e),
                    }
                }
                _ => o,
            },
            Err(Error::FileNotFound { .. } | Error::NotCached { .. }) if optional => {
                FileOutcome::AbsentOptional
            }
            Err(e) => FileOutcome::Failed(e),
        };
        self.progress.file_finished(&file, &outcome);
        FetchedFile { file, outcome }
    }

    fn resolve(&mut self, c: &Component, name: &str) -> Result<FileOutcome> {
        let hub = &self.options.hub;
        let cache = RepoCache::new(&hub.cache_dir, &c.repo, &c.revision);
        let file = c.remote(name);
        let Some(http) = &self.http else {
            return match cache.lookup(&file.path) {
                Some(path) => Ok(FileOutcome::Present { path }),
                None => Err(Error::NotCached {
                    file: Box::new(file),
                    cache: hub.cache_dir.clone(),
                }),
            };
        };
        let key = (c.repo.clone(), c.revision.clone());
        let revision = self.pinned.get(&key).unwrap_or(&c.revision);
        let url = resolve_url(&hub.endpoint, &c.repo, revision, &file.path);
        let ctx = Context {
            component: c,
            file: &file,
            endpoint: &hub.endpoint,
            token: hub.token.as_ref(),
            url: &url,
        };
        let meta = self.metadata(http, &url).map_err(|f| ctx.error(f, 0))?;
        self.pinned.insert(key, meta.commit.clone());
        let sha256 = agree_with_manifest(c, name, &file, &meta)?;

        let blob = cache.blob(&meta.etag);
        let complete = std::fs::metadata(&blob).is_ok_and(|m| m.len() == meta.size);
        let resumed_from = if complete {
            None
        } else {
            // A blob of the wrong size was not written by a verified download: replace it.
            if blob.exists() {
                std::fs::remove_file(&blob).map_err(io_at(&blob))?;
            }
            let blobs = blob.parent().unwrap_or(&hub.cache_dir);
            std::fs::create_dir_all(blobs).map_err(io_at(blobs))?;
            ensure_space(&file, &part_path(&blob), meta.size, blobs)?;
            let transfer = Transfer {
                http,
                ctx: &ctx,
                size: meta.size,
                sha256: sha256.as_deref(),
                retries: self.options.retries,
                retry_wait: self.options.retry_wait,
            };
            Some(transfer.run(&blob, &cache.lock(&meta.etag), &mut *self.progress)?)
        };
        let path = cache
            .link(&meta.commit, &file.path, &meta.etag)
            .map_err(io_at(&cache.pointer(&meta.commit, &file.path)))?;
        cache
            .write_ref(&meta.commit)
            .map_err(io_at(&hub.cache_dir))?;
        Ok(match resumed_from {
            None => FileOutcome::Present { path },
            Some(resumed_from) => FileOutcome::Downloaded {
                path,
                bytes: meta.size - resumed_from,
                resumed_from,
            },
        })
    }

    /// The metadata request, retried like a transfer when the failure is transient.
    fn metadata(&self, http: &Http, url: &str) -> std::result::Result<Meta, Failure> {
        let mut attempt = 0;
        loop {
            match http.metadata(url) {
                Err(f) if f.is_transient() && attempt < self.options.retries => {
                    attempt += 1;
                    std::thread::sleep(backoff(self.options.retry_wait, attempt));
                }
                other => return other,
            }
        }
    }
}

/// Wraps an I/O error with the path it concerns, for `map_err`.
fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |e| Error::io(path, e)
}

/// Checks the Hub's size and hash against the manifest's; returns the sha256 to verify
/// against (the manifest's, else the Hub's for LFS files).
fn agree_with_manifest(
    c: &Component,
    name: &str,
    file: &RemoteFile,
    meta: &Meta,
) -> Result<Option<String>> {
    let spec = c.spec(name);
    let disagree = |field, manifest: String, upstream: String| Error::ManifestDisagrees {
        file: Box::new(file.clone()),
        field,
        manifest,
        upstream,
    };
    if let Some(size) = spec.and_then(|s| s.size) {
        if size != meta.size {
            return Err(disagree("size", size.to_string(), meta.size.to_string()));
        }
    }
    let pinned = spec.and_then(|s| s.sha256.clone());
    if let (Some(m), Some(h)) = (&pinned, &meta.sha256) {
        if !m.eq_ignore_ascii_case(h) {
            return Err(disagree("sha256", m.clone(), h.clone()));
        }
    }
    Ok(pinned.or_else(|| meta.sha256.clone()))
}

/// Fails early when the disk cannot take the rest of the file.
fn ensure_space(file: &RemoteFile, part: &Path, size: u64, dir: &Path) -> Result<()> {
    let have = std::fs::metadata(part).map_or(0, |m| m.len());
    let needed = size.saturating_sub(have);
    // Where free space cannot be measured, the write itself will report a full disk.
    let Ok(available) = fs4::available_space(dir) else {
        return Ok(());
    };
    if available < needed {
        return Err(Error::NoSpace {
            file: Box::new(file.clone()),
            needed,
            available,
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}
