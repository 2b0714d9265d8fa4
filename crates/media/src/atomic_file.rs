//! Files that appear at their final path only when complete, and leave nothing behind otherwise.
//!
//! Every writer in this crate (MP4, WAV, PNG) writes into a temporary file in the destination
//! folder and renames it over the destination only after the last byte is written and flushed
//! to disk; renaming within one folder is atomic on POSIX file systems.
//!
//! On Linux the temporary file has no name while it is written (`O_TMPFILE`): a process killed
//! outright (SIGKILL, a second Ctrl-C that skips destructors) leaves nothing at all, because
//! the kernel frees an unnamed file with its last descriptor. At commit it is linked to a
//! hidden `.<name>.XXXXXX.partial` (through `/proc/self/fd`, which needs no privilege) and
//! renamed at once, so a hidden file can outlive the process only if it dies between those two
//! system calls. Elsewhere, or on file systems without `O_TMPFILE`, the file is created under
//! that hidden name and deleted on drop.
//!
//! Temporaries are created with mode 0666 and the kernel applies the umask, so outputs get the
//! same permissions as any other tool's (tempfile's default is 0600).

use std::fs::File;
use std::path::{Path, PathBuf};

use cadence_core::{Error, Result};
use tempfile::NamedTempFile;

/// Mode of new files before the umask, as `open(2)` callers such as `cp` and ffmpeg use.
#[cfg(unix)]
const CREATE_MODE: u32 = 0o666;

/// A temporary file beside `dest` that becomes `dest` on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    dir: PathBuf,
    temp: Temp,
}

#[derive(Debug)]
enum Temp {
    /// An `O_TMPFILE` file: no name until committed.
    Unnamed(File),
    /// A hidden named file, deleted on drop.
    Named(NamedTempFile),
}

impl AtomicFile {
    /// Creates the temporary file in `dest`'s folder (which must exist).
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = destination_dir(dest)?;
        let temp = match unnamed_file_in(&dir) {
            Some(file) => Temp::Unnamed(file),
            None => Temp::Named(named_file_in(&dir, dest).map_err(|e| Error::io(&dir, e))?),
        };
        Ok(Self {
            dest: dest.to_path_buf(),
            dir,
            temp,
        })
    }

    /// The open temporary file, to write the content into.
    pub fn file(&mut self) -> &mut File {
        match &mut self.temp {
            Temp::Unnamed(f) => f,
            Temp::Named(t) => t.as_file_mut(),
        }
    }

    /// The final destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes the content to disk and renames the temporary file to the destination,
    /// replacing any file already there.
    pub fn commit(mut self) -> Result<()> {
        self.file()
            .sync_all()
            .map_err(|e| Error::io(&self.dest, e))?;
        let renamed = match self.temp {
            Temp::Named(t) => t.persist(&self.dest).map(drop).map_err(|e| e.error),
            Temp::Unnamed(file) => link_unnamed(&file, &self.dest, &self.dir)?
                .persist(&self.dest)
                .map_err(|e| e.error),
        };
        renamed.map_err(|e| Error::io(&self.dest, e))
    }
}

/// The folder `dest` will be written in; it must exist.
pub(crate) fn destination_dir(dest: &Path) -> Result<PathBuf> {
    if dest.file_name().is_none() {
        return Err(Error::InvalidInput(format!(
            "{} is not a file path; name the file to write",
            dest.display()
        )));
    }
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
    Ok(dir)
}

/// The prefix of hidden temporaries: `.<name>.` (then `XXXXXX.partial`).
fn hidden_prefix(dest: &Path) -> String {
    format!(
        ".{}.",
        dest.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// A hidden named temporary file in `dir`, mode 0666 less the umask.
fn named_file_in(dir: &Path, dest: &Path) -> std::io::Result<NamedTempFile> {
    let prefix = hidden_prefix(dest);
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(CREATE_MODE));
    }
    builder.tempfile_in(dir)
}

/// An unnamed file in `dir` (Linux `O_TMPFILE`), if the file system supports it and
/// `/proc/self/fd` is there to link it later; `None` means "use a named file".
#[cfg(target_os = "linux")]
fn unnamed_file_in(dir: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if !Path::new("/proc/self/fd").is_dir() {
        return None;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::TMPFILE.bits() as i32)
        .mode(CREATE_MODE)
        .open(dir)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn unnamed_file_in(_dir: &Path) -> Option<File> {
    None
}

/// Gives an unnamed file a hidden name in `dir`, ready to be renamed.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, dest: &Path, dir: &Path) -> Result<NamedTempFile<()>> {
    use std::os::fd::AsRawFd;
    let fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    let prefix = hidden_prefix(dest);
    tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".partial")
        .make_in(dir, |path| {
            rustix::fs::linkat(
                rustix::fs::CWD,
                fd.as_str(),
                rustix::fs::CWD,
                path,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            )
            .map_err(std::io::Error::from)
        })
        .map_err(|e| Error::io(dest, e))
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &File, dest: &Path, _dir: &Path) -> Result<NamedTempFile<()>> {
    Err(Error::io(
        dest,
        std::io::Error::other("unnamed temporary files exist only on Linux"),
    ))
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
        #[cfg(target_os = "linux")]
        assert!(
            entries(dir.path()).is_empty(),
            "an O_TMPFILE file has no name while written"
        );
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
