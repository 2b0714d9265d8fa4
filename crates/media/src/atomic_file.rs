//! Files that appear at their final path only when complete.
//!
//! Every writer in this crate (MP4, WAV, PNG) writes into a hidden temporary file in the
//! destination folder and renames it over the destination only after the last byte is written
//! and flushed to disk. A run that fails, panics or is dropped without finishing leaves no
//! half-written file at the destination: the temporary file is deleted on drop, and a process
//! killed outright leaves at most a hidden `.<name>.*.partial` file, never a corrupt `<name>`.
//! Renaming within one folder is atomic on POSIX file systems.

use std::fs::File;
use std::path::{Path, PathBuf};

use cadence_core::{Error, Result};
use tempfile::NamedTempFile;

/// A temporary file beside `dest` that becomes `dest` on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    temp: NamedTempFile,
}

impl AtomicFile {
    /// Creates the temporary file in `dest`'s folder (which must exist).
    pub fn create(dest: &Path) -> Result<Self> {
        let temp = scratch_file_beside(dest, "partial")?;
        Ok(Self {
            dest: dest.to_path_buf(),
            temp,
        })
    }

    /// The open temporary file, to write the content into.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// The final destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes the content to disk and renames the temporary file to the destination,
    /// replacing any file already there.
    pub fn commit(self) -> Result<()> {
        self.temp
            .as_file()
            .sync_all()
            .map_err(|e| Error::io(&self.dest, e))?;
        self.temp
            .persist(&self.dest)
            .map_err(|e| Error::io(&self.dest, e.error))?;
        Ok(())
    }
}

/// A hidden scratch file in `dest`'s folder, deleted when dropped. Used for the final file
/// (through [`AtomicFile`]) and for intermediate data that must live on the same disk.
pub(crate) fn scratch_file_beside(dest: &Path, suffix: &str) -> Result<NamedTempFile> {
    let name = dest
        .file_name()
        .ok_or_else(|| Error::InvalidInput(format!("{} is not a file path", dest.display())))?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::InvalidInput(format!(
            "cannot write {}: the folder {} does not exist; create it first",
            dest.display(),
            dir.display()
        )));
    }
    tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(&format!(".{suffix}"))
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");

        let mut f = AtomicFile::create(&dest).unwrap();
        f.file().write_all(b"hello").unwrap();
        assert!(!dest.exists(), "destination must not exist before commit");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        assert_eq!(entries(dir.path()), vec!["out.bin"]);

        let mut g = AtomicFile::create(&dest).unwrap();
        g.file().write_all(b"half").unwrap();
        drop(g);
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"hello",
            "old file untouched"
        );
        assert_eq!(entries(dir.path()), vec!["out.bin"], "temp file removed");
    }

    #[test]
    fn missing_folder_is_a_clear_error() {
        let err = AtomicFile::create(Path::new("/nonexistent-cadence-dir/x.mp4")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
