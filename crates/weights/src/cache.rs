//! The Hugging Face cache layout, shared with `huggingface_hub` (Python) and `hf-hub` (Rust):
//!
//! ```text
//! <cache>/models--<owner>--<name>/
//!     blobs/<etag>                      file contents, named by the Hub's etag (sha256 for LFS)
//!     blobs/<etag>.part                 a download in progress (resumable)
//!     snapshots/<commit>/<path>         relative symlink to ../../blobs/<etag>
//!     refs/<revision>                   the commit a branch or tag pointed to when fetched
//! <cache>/.locks/models--<owner>--<name>/<etag>.lock
//! ```
//!
//! Folder naming and ref lookup are `hf-hub`'s own ([`hf_hub::Repo::folder_name`],
//! [`hf_hub::CacheRepo`]), so the three tools read each other's files.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, CacheRepo, Repo, RepoType};

/// One repository's corner of the cache, at one revision.
pub(crate) struct RepoCache {
    root: PathBuf,
    locks: PathBuf,
    revision: String,
    hub: CacheRepo,
}

/// True for a full 40-hex commit id, which needs no ref to resolve.
fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

impl RepoCache {
    pub(crate) fn new(cache_dir: &Path, repo_id: &str, revision: &str) -> Self {
        let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string());
        let folder = repo.folder_name();
        Self {
            root: cache_dir.join(&folder),
            locks: cache_dir.join(".locks").join(&folder),
            revision: revision.to_string(),
            hub: Cache::new(cache_dir.to_path_buf()).repo(repo),
        }
    }

    /// The stored contents of the file with this etag.
    pub(crate) fn blob(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }

    /// The lock guarding the download of the blob with this etag.
    pub(crate) fn lock(&self, etag: &str) -> PathBuf {
        self.locks.join(format!("{etag}.lock"))
    }

    /// Where `repo_path` appears in the snapshot of `commit`.
    pub(crate) fn pointer(&self, commit: &str, repo_path: &str) -> PathBuf {
        self.root.join("snapshots").join(commit).join(repo_path)
    }

    /// The commit the revision resolves to in this cache, if it was fetched.
    pub(crate) fn commit(&self) -> Option<String> {
        if is_commit(&self.revision) {
            return Some(self.revision.clone());
        }
        let text = std::fs::read_to_string(self.root.join("refs").join(&self.revision)).ok()?;
        Some(text.trim().to_string()).filter(|c| !c.is_empty())
    }

    /// The snapshot folder of the revision, if it was fetched.
    pub(crate) fn snapshot(&self) -> Option<PathBuf> {
        self.commit()
            .map(|c| self.root.join("snapshots").join(c))
            .filter(|p| p.is_dir())
    }

    /// The cached file `repo_path` at the revision, if present (a dangling link counts as absent).
    pub(crate) fn lookup(&self, repo_path: &str) -> Option<PathBuf> {
        let found = if is_commit(&self.revision) {
            Some(self.pointer(&self.revision, repo_path))
        } else {
            self.hub.get(repo_path)
        };
        found.filter(|p| p.is_file())
    }

    /// Records that the revision points to `commit` (not needed when the revision is a commit).
    pub(crate) fn write_ref(&self, commit: &str) -> std::io::Result<()> {
        if self.revision == commit {
            return Ok(());
        }
        self.hub.create_ref(commit)
    }

    /// Makes `repo_path` in the snapshot of `commit` point to the blob with `etag`.
    pub(crate) fn link(
        &self,
        commit: &str,
        repo_path: &str,
        etag: &str,
    ) -> std::io::Result<PathBuf> {
        let pointer = self.pointer(commit, repo_path);
        if let Some(parent) = pointer.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if pointer.symlink_metadata().is_ok() {
            std::fs::remove_file(&pointer)?;
        }
        // snapshots/<commit>/<path segments...>: one `..` per segment plus one for <commit>.
        let ups = repo_path.split('/').count() + 1;
        let mut target = PathBuf::new();
        for _ in 0..ups {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        place(&target, &self.blob(etag), &pointer)?;
        Ok(pointer)
    }
}

/// A relative symlink where the platform has them; a copy elsewhere.
#[cfg(unix)]
fn place(relative_target: &Path, _blob: &Path, pointer: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(relative_target, pointer)
}

#[cfg(not(unix))]
fn place(_relative_target: &Path, blob: &Path, pointer: &Path) -> std::io::Result<()> {
    std::fs::copy(blob, pointer).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_huggingface_hub() {
        let dir = tempfile::tempdir().unwrap();
        let c = RepoCache::new(dir.path(), "GAIR/daVinci-MagiHuman", "main");
        let commit = "a".repeat(40);
        let blob = c.blob("e1");
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, b"x").unwrap();
        assert!(c.lookup("distill/f").is_none());
        let pointer = c.link(&commit, "distill/f", "e1").unwrap();
        c.write_ref(&commit).unwrap();
        let repo = dir.path().join("models--GAIR--daVinci-MagiHuman");
        assert_eq!(
            pointer,
            repo.join("snapshots").join(&commit).join("distill/f")
        );
        assert_eq!(
            std::fs::read_link(&pointer).unwrap(),
            Path::new("../../../blobs/e1")
        );
        assert_eq!(
            std::fs::read_to_string(repo.join("refs/main")).unwrap(),
            commit
        );
        assert_eq!(c.lookup("distill/f").unwrap(), pointer);
        assert_eq!(std::fs::read(c.lookup("distill/f").unwrap()).unwrap(), b"x");
        assert_eq!(c.snapshot().unwrap(), repo.join("snapshots").join(&commit));

        // A commit revision resolves without a ref; a dangling link is absent.
        let pinned = RepoCache::new(dir.path(), "GAIR/daVinci-MagiHuman", &commit);
        assert_eq!(pinned.lookup("distill/f").unwrap(), pointer);
        std::fs::remove_file(&blob).unwrap();
        assert!(c.lookup("distill/f").is_none());
    }
}
