//! Is every file of a component on disk and sound?
//!
//! For each component, [`check`] finds its folder ([`WeightsRoot`]) and gives every expected
//! file a [`FileStatus`]: the explicit files, the safetensors index and each shard the index
//! names (or the single-file fallback). A file is corrupt when its size or sha256 differs from
//! the manifest's, when its container does not hold together (a safetensors header that is
//! unreadable or does not account for the file's length, JSON that does not parse, a
//! PyTorch zip without its end record), or, for a shard, when it lacks tensors the index puts
//! in it. With [`CheckOptions::hashes`], files whose sha256 is known (from the manifest, or the
//! Hub's LFS blob name in the cache) are hashed too. A [`LayoutCheck`] can then compare tensor
//! names and shapes with what each model expects.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::formats::{is_sha256, safetensors_tensors, sha256_file, validate, Format, ShardIndex};
use crate::manifest::{Component, FileSpec, Manifest};
use crate::root::{Located, WeightsRoot};

/// How thorough [`check`] is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Hash files whose sha256 is known (reads every byte: minutes for the large models).
    pub hashes: bool,
}

/// The state of one expected file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// There and sound.
    Present,
    /// Not there (or a cache link whose blob is gone).
    Missing,
    /// Not there, and not needed.
    AbsentOptional,
    /// There but damaged; the reason says how.
    Corrupt(String),
}

impl fmt::Display for FileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileStatus::Present => write!(f, "present"),
            FileStatus::Missing => write!(f, "missing: fetch the component again"),
            FileStatus::AbsentOptional => write!(f, "absent (optional)"),
            FileStatus::Corrupt(why) => write!(f, "corrupt: {why}; delete it and fetch again"),
        }
    }
}

/// One expected file and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// Name relative to the component folder.
    pub name: String,
    /// Where it is (or would be) on disk; `None` when the component folder was not found.
    pub path: Option<PathBuf>,
    /// Its state.
    pub status: FileStatus,
}

/// One component's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentCheck {
    /// Component id.
    pub id: String,
    /// Its folder, if found.
    pub located: Option<Located>,
    /// Every expected file. Without a readable index the shards are unknown and not listed.
    pub files: Vec<FileCheck>,
    /// Problems the [`LayoutCheck`] found (run only when every file is present and sound).
    pub layout: Vec<String>,
}

impl ComponentCheck {
    /// True when every required file is present and sound and the layout check found nothing.
    pub fn is_ok(&self) -> bool {
        self.located.is_some()
            && self.layout.is_empty()
            && self
                .files
                .iter()
                .all(|f| matches!(f.status, FileStatus::Present | FileStatus::AbsentOptional))
    }
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// One entry per requested component, in request order.
    pub components: Vec<ComponentCheck>,
    /// The places searched, for messages.
    pub searched: Vec<String>,
}

impl CheckReport {
    /// True when every component is complete and sound.
    pub fn is_ok(&self) -> bool {
        self.components.iter().all(ComponentCheck::is_ok)
    }

    /// One line per problem, ready to print.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.components {
            if c.located.is_none() {
                out.push(format!(
                    "{}: not found (looked in {}): fetch it, or pass the folder that holds it with --weights-dir",
                    c.id,
                    self.searched.join(", ")
                ));
                continue;
            }
            for f in &c.files {
                if matches!(f.status, FileStatus::Missing | FileStatus::Corrupt(_)) {
                    let at = f.path.as_deref().unwrap_or(Path::new(&f.name));
                    out.push(format!("{}: {} is {}", c.id, at.display(), f.status));
                }
            }
            out.extend(c.layout.iter().map(|p| format!("{}: {p}", c.id)));
        }
        out
    }
}

/// Tensor-level validation of a component folder, supplied by the crates that know each
/// model's expected keys and shapes (e.g. through `cadence_core::Checkpoint::verify`).
pub trait LayoutCheck {
    /// Problems with the tensors of `component` in `dir`, one sentence each; empty when fine.
    fn check(&self, component: &Component, dir: &Path) -> Vec<String>;
}

impl<F: Fn(&Component, &Path) -> Vec<String>> LayoutCheck for F {
    fn check(&self, component: &Component, dir: &Path) -> Vec<String> {
        self(component, dir)
    }
}

/// Checks the components `ids` of `manifest` where `root` finds them.
pub fn check<S: AsRef<str>>(
    manifest: &Manifest,
    ids: &[S],
    root: &WeightsRoot,
    options: &CheckOptions,
    layout: Option<&dyn LayoutCheck>,
) -> Result<CheckReport> {
    let components = manifest
        .select(ids)?
        .into_iter()
        .map(|c| check_component(c, root, options, layout))
        .collect();
    Ok(CheckReport {
        components,
        searched: root.sources().iter().map(|s| s.to_string()).collect(),
    })
}

fn check_component(
    c: &Component,
    root: &WeightsRoot,
    options: &CheckOptions,
    layout: Option<&dyn LayoutCheck>,
) -> ComponentCheck {
    let Some(located) = root.locate(c) else {
        let expected = c
            .files
            .iter()
            .map(|f| (f.name.clone(), f.optional))
            .chain(c.index.iter().map(|i| (i.clone(), false)));
        let files = expected
            .map(|(name, optional)| FileCheck {
                name,
                path: None,
                status: if optional {
                    FileStatus::AbsentOptional
                } else {
                    FileStatus::Missing
                },
            })
            .collect();
        return ComponentCheck {
            id: c.id.clone(),
            located: None,
            files,
            layout: Vec::new(),
        };
    };
    let mut files: Vec<FileCheck> = c
        .files
        .iter()
        .map(|spec| check_file(&located, &spec.name, Some(spec), options))
        .collect();
    if let Some(index) = &c.index {
        check_sharded(c, index, &located, options, &mut files);
    }
    let mut done = ComponentCheck {
        id: c.id.clone(),
        located: Some(located),
        files,
        layout: Vec::new(),
    };
    if let (true, Some(layout), Some(at)) = (done.is_ok(), layout, &done.located) {
        done.layout = layout.check(c, &at.dir);
    }
    done
}

/// The index and its shards, or the single-file fallback when there is no index.
fn check_sharded(
    c: &Component,
    index: &str,
    at: &Located,
    options: &CheckOptions,
    files: &mut Vec<FileCheck>,
) {
    let index_path = at.file(index);
    if !index_path.is_file() {
        if let Some(single) = c.unsharded.as_deref().filter(|s| at.file(s).is_file()) {
            files.push(FileCheck {
                name: index.to_string(),
                path: Some(index_path),
                status: FileStatus::AbsentOptional,
            });
            files.push(check_file(at, single, c.spec(single), options));
            return;
        }
        files.push(FileCheck {
            name: index.to_string(),
            path: Some(index_path),
            status: FileStatus::Missing,
        });
        return;
    }
    let idx = match ShardIndex::read(&index_path) {
        Ok(idx) => idx,
        Err(e) => {
            // The status adds the advice; the error's own copy of it would say it twice.
            let why = match e {
                Error::BadIndex { detail, .. } => {
                    format!("not a usable safetensors index ({detail})")
                }
                other => other.to_string(),
            };
            files.push(FileCheck {
                name: index.to_string(),
                path: Some(index_path),
                status: FileStatus::Corrupt(why),
            });
            return;
        }
    };
    files.push(FileCheck {
        name: index.to_string(),
        path: Some(index_path),
        status: FileStatus::Present,
    });
    for shard in idx.shards() {
        let mut fc = check_file(at, shard, c.spec(shard), options);
        if fc.status == FileStatus::Present {
            if let Some(path) = &fc.path {
                fc.status = shard_holds_its_tensors(path, &idx, shard);
            }
        }
        files.push(fc);
    }
}

/// Every tensor the index places in `shard` must be in the shard's header.
fn shard_holds_its_tensors(path: &Path, idx: &ShardIndex, shard: &str) -> FileStatus {
    let names = match safetensors_tensors(path) {
        Ok(n) => n,
        Err(why) => return FileStatus::Corrupt(why),
    };
    let lacking: Vec<&str> = idx
        .tensors_in(shard)
        .filter(|t| !names.contains(*t))
        .collect();
    match lacking.first() {
        None => FileStatus::Present,
        Some(first) => FileStatus::Corrupt(format!(
            "the index puts {} tensor(s) in it that it does not hold (first: {first})",
            lacking.len()
        )),
    }
}

fn check_file(
    at: &Located,
    name: &str,
    spec: Option<&FileSpec>,
    options: &CheckOptions,
) -> FileCheck {
    let path = at.file(name);
    let optional = spec.is_some_and(|s| s.optional);
    let status = file_status(&path, name, spec, options, optional);
    FileCheck {
        name: name.to_string(),
        path: Some(path),
        status,
    }
}

fn file_status(
    path: &Path,
    name: &str,
    spec: Option<&FileSpec>,
    options: &CheckOptions,
    optional: bool,
) -> FileStatus {
    let Ok(meta) = std::fs::metadata(path) else {
        return if optional {
            FileStatus::AbsentOptional
        } else {
            FileStatus::Missing
        };
    };
    if !meta.is_file() {
        return FileStatus::Corrupt("not a regular file".into());
    }
    if let Some(size) = spec.and_then(|s| s.size) {
        if meta.len() != size {
            return FileStatus::Corrupt(format!("{} bytes, expected {size}", meta.len()));
        }
    }
    if let Err(why) = validate(path, Format::of(name)) {
        return FileStatus::Corrupt(why);
    }
    if options.hashes {
        if let Some(expected) = spec
            .and_then(|s| s.sha256.clone())
            .or_else(|| blob_sha256(path))
        {
            match sha256_file(path) {
                Ok(actual) if actual.eq_ignore_ascii_case(&expected) => {}
                Ok(actual) => {
                    return FileStatus::Corrupt(format!("sha256 {actual}, expected {expected}"))
                }
                Err(e) => return FileStatus::Corrupt(format!("unreadable ({e})")),
            }
        }
    }
    FileStatus::Present
}

/// The sha256 a cache link vouches for: LFS blobs are named by it.
fn blob_sha256(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    let name = target.file_name()?.to_str()?;
    is_sha256(name).then(|| name.to_ascii_lowercase())
}
