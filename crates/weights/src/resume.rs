//! One file's transfer into the cache: resumable, verified, and atomic.
//!
//! Bytes go to `blobs/<etag>.part`. A `.part` left by an interrupted attempt (this run or an
//! earlier one) is continued with `Range: bytes=<len>-`; since the blob is named by the Hub's
//! etag, the bytes already there belong to the same file version. The sha256 is computed while
//! writing (the kept prefix is hashed first), and only when the size and hash match is the
//! `.part` renamed to the blob: a file under its final name is always complete and verified.
//! A mismatch deletes the `.part` (a resume would only repeat it).
//!
//! A server that ignores `Range` answers 200 with the whole file; the `.part` is then restarted
//! from byte 0 rather than appended to. Downloads of the same blob by two processes are
//! serialised by an advisory lock that the OS drops if a process dies.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fs4::fs_std::FileExt;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::formats::hex;
use crate::http::{Context, Failure, Http};
use crate::progress::Progress;

/// Longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Write buffer; network reads are small, disk writes should not be.
const BUFFER: usize = 1 << 20;

/// What to download and how hard to try.
pub(crate) struct Transfer<'a> {
    pub(crate) http: &'a Http,
    pub(crate) ctx: &'a Context<'a>,
    /// Size the Hub announced.
    pub(crate) size: u64,
    /// Expected sha256 (manifest or Hub), if known.
    pub(crate) sha256: Option<&'a str>,
    /// Further attempts after the first.
    pub(crate) retries: u32,
    /// Wait before the first retry; doubles after each.
    pub(crate) retry_wait: Duration,
}

/// The `.part` companion of a blob.
pub(crate) fn part_path(blob: &Path) -> PathBuf {
    let mut name = blob.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

impl Transfer<'_> {
    /// Downloads into `blob` (through its `.part`), holding `lock`. Returns how many bytes an
    /// earlier attempt had left (0 for a fresh download).
    pub(crate) fn run(&self, blob: &Path, lock: &Path, progress: &mut dyn Progress) -> Result<u64> {
        let file = self.ctx.file;
        let _lock = acquire(lock).and_then(|held| {
            held.ok_or_else(|| Error::Busy {
                file: Box::new(file.clone()),
                lock: lock.to_path_buf(),
            })
        })?;
        let part = part_path(blob);
        let mut out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| Error::io(&part, e))?;
        let mut have = out.metadata().map_err(|e| Error::io(&part, e))?.len();
        if have > self.size {
            have = restart(&mut out, &part)?;
        }
        let resumed_from = have;
        let mut hasher = Sha256::new();
        if self.sha256.is_some() && have > 0 {
            std::io::copy(&mut (&out).take(have), &mut hasher).map_err(|e| Error::io(&part, e))?;
        }
        out.seek(SeekFrom::Start(have))
            .map_err(|e| Error::io(&part, e))?;
        progress.download_started(file, self.size, have);

        let mut attempt = 0u32;
        while have < self.size {
            let failure = match self.receive(&mut out, &part, &mut have, &mut hasher, progress)? {
                None => continue,
                Some(f) => f,
            };
            attempt += 1;
            if !failure.is_transient() || attempt > self.retries {
                return Err(self.ctx.error(failure, have));
            }
            progress.retrying(file, attempt, have, &self.ctx.error(failure, have));
            std::thread::sleep(backoff(self.retry_wait, attempt));
        }
        out.sync_all().map_err(|e| Error::io(&part, e))?;
        drop(out);

        if let Some(expected) = self.sha256 {
            let actual = hex(&hasher.finalize());
            if !actual.eq_ignore_ascii_case(expected) {
                std::fs::remove_file(&part).map_err(|e| Error::io(&part, e))?;
                return Err(Error::ChecksumMismatch {
                    file: Box::new(file.clone()),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        std::fs::rename(&part, blob).map_err(|e| Error::io(blob, e))?;
        Ok(resumed_from)
    }

    /// One request for the bytes from `have` on. `Ok(None)`: the request ended cleanly (the
    /// loop re-checks completeness); `Ok(Some(f))`: it failed in a way that may be retried.
    fn receive(
        &self,
        out: &mut File,
        part: &Path,
        have: &mut u64,
        hasher: &mut Sha256,
        progress: &mut dyn Progress,
    ) -> Result<Option<Failure>> {
        let file = self.ctx.file;
        let range = format!("bytes={have}-");
        let resp = match self.http.get(self.ctx.url, Some(&range), true) {
            Ok(r) => r,
            Err(f) => return Ok(Some(f)),
        };
        match resp.status() {
            206 => {
                let start = content_range_start(&resp);
                if start != Some(*have) {
                    return Err(self.ctx.error(
                        Failure::Bad(format!(
                            "asked for bytes from {have}, got Content-Range {start:?}"
                        )),
                        *have,
                    ));
                }
            }
            200 => {
                // The server ignored the range: it is sending the file from the start.
                if *have > 0 {
                    *have = restart(out, part)?;
                    *hasher = Sha256::new();
                    progress.download_started(file, self.size, 0);
                }
            }
            other => {
                return Err(self.ctx.error(
                    Failure::Bad(format!("status {other} to a download request")),
                    *have,
                ))
            }
        }
        let mut reader = resp.into_reader();
        let mut writer = BufWriter::with_capacity(BUFFER, &mut *out);
        let mut buf = vec![0u8; 64 * 1024];
        let outcome = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(Failure::Transport(e.to_string())),
            };
            if *have + n as u64 > self.size {
                drop(writer);
                std::fs::remove_file(part).map_err(|e| Error::io(part, e))?;
                return Err(Error::SizeMismatch {
                    file: Box::new(file.clone()),
                    expected: self.size,
                    actual: *have + n as u64,
                });
            }
            writer
                .write_all(&buf[..n])
                .map_err(|e| Error::io(part, e))?;
            hasher.update(&buf[..n]);
            *have += n as u64;
            progress.bytes_received(file, n as u64);
        };
        writer.flush().map_err(|e| Error::io(part, e))?;
        match outcome {
            // A clean end short of the size is a dropped connection all the same.
            None if *have < self.size => Ok(Some(Failure::Transport(format!(
                "the connection closed after {have} of {} bytes",
                self.size
            )))),
            other => Ok(other),
        }
    }
}

/// Empties the `.part` so the download starts again from byte 0.
fn restart(out: &mut File, part: &Path) -> Result<u64> {
    out.set_len(0)
        .and_then(|_| out.seek(SeekFrom::Start(0)))
        .map_err(|e| Error::io(part, e))?;
    Ok(0)
}

/// The first byte of a `Content-Range: bytes a-b/total` header.
fn content_range_start(resp: &ureq::Response) -> Option<u64> {
    let v = resp.header("content-range")?;
    let range = v.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// `first`, doubled per attempt after the first, capped at [`MAX_WAIT`].
pub(crate) fn backoff(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_WAIT)
}

/// Takes the download lock without waiting: `Ok(None)` when another process holds it.
fn acquire(lock: &Path) -> Result<Option<File>> {
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock)
        .map_err(|e| Error::io(lock, e))?;
    match file.try_lock_exclusive() {
        Ok(true) => Ok(Some(file)),
        Ok(false) => Ok(None),
        Err(e) => Err(Error::io(lock, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs(1);
        assert_eq!(backoff(s, 1), s);
        assert_eq!(backoff(s, 2), 2 * s);
        assert_eq!(backoff(s, 3), 4 * s);
        assert_eq!(backoff(s, 30), MAX_WAIT);
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }

    #[test]
    fn a_held_lock_is_reported_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(".locks/x.lock");
        let first = acquire(&lock).unwrap();
        assert!(first.is_some());
        assert!(acquire(&lock).unwrap().is_none());
        drop(first);
        assert!(acquire(&lock).unwrap().is_some());
    }
}
