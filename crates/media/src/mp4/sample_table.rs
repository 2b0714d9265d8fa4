//! The media data of an MP4 being written and the per-track sample tables that index it.
//!
//! Encoded samples are appended, in presentation order per track, to an unnamed scratch file as
//! they are produced, so memory stays flat however long the clip is, and nothing can outlive
//! the process (the file is unlinked from the start). Runs of
//! consecutive samples of one track form a chunk (`stco`/`co64` + `stsc`). When the clip is
//! finished the `moov` box is built from these tables and placed in front of the data.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use cadence_core::{Error, Result};
use mp4_atom::{Co64, Stco, Stsc, StscEntry, Stss, Stsz, StszSamples, Stts, SttsEntry};

/// A run of consecutive samples of one track in the media data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    /// Byte offset from the start of the media data (the `mdat` payload).
    offset: u64,
    samples: u32,
}

/// Sizes, sync points and chunk layout of one track.
#[derive(Debug, Clone, Default)]
pub struct SampleTable {
    sizes: Vec<u32>,
    /// 1-based numbers of the sync samples.
    sync: Vec<u32>,
    chunks: Vec<Chunk>,
}

impl SampleTable {
    /// Number of samples written.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether no sample was written.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// The 0-based indices of the sync samples.
    pub fn sync_samples(&self) -> impl Iterator<Item = u32> + '_ {
        self.sync.iter().map(|s| s - 1)
    }

    fn push(&mut self, offset: u64, size: u32, is_sync: bool, continues_chunk: bool) {
        self.sizes.push(size);
        if is_sync {
            self.sync.push(self.sizes.len() as u32);
        }
        match self.chunks.last_mut() {
            Some(chunk) if continues_chunk => chunk.samples += 1,
            _ => self.chunks.push(Chunk { offset, samples: 1 }),
        }
    }

    /// `stts` for samples of constant duration.
    pub fn stts(&self, sample_delta: u32) -> Stts {
        Stts {
            entries: vec![SttsEntry {
                sample_count: self.sizes.len() as u32,
                sample_delta,
            }],
        }
    }

    /// `stss`, or `None` when every sample is a sync sample (audio).
    pub fn stss(&self) -> Option<Stss> {
        (self.sync.len() != self.sizes.len()).then(|| Stss {
            entries: self.sync.clone(),
        })
    }

    /// `stsc`, run-length coded over chunks with equal sample counts.
    pub fn stsc(&self) -> Stsc {
        let mut entries: Vec<StscEntry> = Vec::new();
        for (i, chunk) in self.chunks.iter().enumerate() {
            if entries
                .last()
                .is_none_or(|e| e.samples_per_chunk != chunk.samples)
            {
                entries.push(StscEntry {
                    first_chunk: i as u32 + 1,
                    samples_per_chunk: chunk.samples,
                    sample_description_index: 1,
                });
            }
        }
        Stsc { entries }
    }

    /// The `stsz` box: every sample's size, in decoding order.
    pub fn stsz(&self) -> Stsz {
        Stsz {
            samples: StszSamples::Different {
                sizes: self.sizes.clone(),
            },
        }
    }

    /// Chunk offsets as `stco` (32-bit) or `co64`, with `base` = file offset of the media data.
    pub fn chunk_offsets(&self, base: u64, wide: bool) -> (Option<Stco>, Option<Co64>) {
        let offsets = self.chunks.iter().map(|c| base + c.offset);
        if wide {
            (
                None,
                Some(Co64 {
                    entries: offsets.collect(),
                }),
            )
        } else {
            (
                Some(Stco {
                    entries: offsets.map(|o| o as u32).collect(),
                }),
                None,
            )
        }
    }
}

/// The media data (future `mdat` payload), written to a scratch file as samples arrive.
pub struct MediaData {
    out: BufWriter<File>,
    /// The folder of the scratch file, for error messages.
    dir: PathBuf,
    len: u64,
    last_track: Option<usize>,
}

impl MediaData {
    /// An unlinked scratch file in `dir` (the destination's folder, so it is on the same disk),
    /// or in the system's temporary folder.
    pub fn create(dir: Option<&Path>) -> Result<Self> {
        let dir = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let file = tempfile::tempfile_in(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            dir,
            len: 0,
            last_track: None,
        })
    }

    /// Payload bytes so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one sample of track number `track` and records it in `table`.
    pub fn append(
        &mut self,
        track: usize,
        table: &mut SampleTable,
        data: &[u8],
        is_sync: bool,
    ) -> Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            Error::InvalidInput(format!("an encoded sample of {} bytes", data.len()))
        })?;
        self.out
            .write_all(data)
            .map_err(|e| Error::io(&self.dir, e))?;
        table.push(self.len, size, is_sync, self.last_track == Some(track));
        self.last_track = Some(track);
        self.len += u64::from(size);
        Ok(())
    }

    /// Copies the whole payload into `sink`.
    pub fn copy_into(self, sink: &mut (impl Write + ?Sized)) -> Result<()> {
        let dir = self.dir;
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&dir, e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(&dir, e))?;
        std::io::copy(&mut file, sink).map_err(|e| Error::io(&dir, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_track_switches() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = MediaData::create(Some(dir.path())).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "unnamed");
        let (mut v, mut a) = (SampleTable::default(), SampleTable::default());
        data.append(0, &mut v, &[1; 10], true).unwrap();
        data.append(0, &mut v, &[2; 5], false).unwrap();
        data.append(1, &mut a, &[3; 4], true).unwrap();
        data.append(1, &mut a, &[4; 4], true).unwrap();
        data.append(0, &mut v, &[5; 7], false).unwrap();
        assert_eq!(data.len(), 30);

        let (stco, _) = v.chunk_offsets(100, false);
        assert_eq!(stco.unwrap().entries, vec![100, 123]);
        let (_, co64) = a.chunk_offsets(100, true);
        assert_eq!(co64.unwrap().entries, vec![115]);
        assert_eq!(v.stsc().entries.len(), 2);
        assert_eq!(v.stss().unwrap().entries, vec![1]);
        assert!(a.stss().is_none());

        let mut out = Vec::new();
        data.copy_into(&mut out).unwrap();
        assert_eq!(out.len(), 30);
        assert_eq!(&out[15..19], &[3; 4]);
    }
}
