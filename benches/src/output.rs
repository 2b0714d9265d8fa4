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

/// `bytes` to `path` through a temporary file in the same folder and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
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
}
