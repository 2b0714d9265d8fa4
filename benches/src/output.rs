//! Writing the report files: each is written beside its final name and renamed into place,
//! so a reader (or an interrupted run) never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use cadence_core::{Error, Result};

use crate::report::BenchReport;

/// File name of the JSON document.
pub const JSON_FILE: &str = "bench.json";
/// File name of the markdown rendering.
pub const MARKDOWN_FILE: &str = "bench.md";

/// Writes `bench.json` and `bench.md` into `dir` (created if missing); returns their paths.
pub fn write_report(dir: &Path, report: &BenchReport) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    for (name, text) in [
        (JSON_FILE, report.to_json() + "\n"),
        (MARKDOWN_FILE, report.to_markdown()),
    ] {
        let path = dir.join(name);
        write_atomically(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// `bytes` to `path` through a temporary file in the same folder and a rename. The file is
/// created with mode 0666 less the umask, as other tools' files are (tempfile's default is
/// 0600 whatever the umask).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_replaces_the_file_whole_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// Set in the child process of the umask test: the folder to write the report into.
    const CHILD_DIR: &str = "CADENCE_BENCH_MODES_DIR";

    /// `bench.json` and `bench.md` get 0644 under umask 022 and 0600 under 077. The umask is
    /// process-wide, so each is set in a child process, not in the test's shared process.
    #[cfg(unix)]
    #[test]
    fn report_files_honour_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = std::env::var_os(CHILD_DIR) {
            let dir = Path::new(&dir);
            write_atomically(&dir.join(JSON_FILE), b"{}").unwrap();
            write_atomically(&dir.join(MARKDOWN_FILE), b"# bench").unwrap();
            return;
        }
        for (umask, mode) in [("022", 0o644), ("077", 0o600)] {
            let dir = tempfile::tempdir().unwrap();
            let status = std::process::Command::new("sh")
                .args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
                .arg(std::env::current_exe().unwrap())
                .args(["output::tests::report_files_honour_the_umask", "--exact"])
                .env(CHILD_DIR, dir.path())
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "the child under umask {umask} failed");
            for name in [JSON_FILE, MARKDOWN_FILE] {
                let meta = std::fs::metadata(dir.path().join(name)).unwrap();
                assert_eq!(
                    meta.permissions().mode() & 0o777,
                    mode,
                    "{name} under {umask}"
                );
            }
        }
    }
}
