//! Edit lists (`edts/elst`): which part of a track's media timeline is presented.
//!
//! Writing: the AAC encoder's priming samples precede the first real sample in the decoded
//! audio. One edit with `media_time = priming` and `segment_duration = valid samples` tells every
//! player (ffmpeg, Chromium, Firefox, QuickTime) to start the soundtrack at the first real sample,
//! so audio and video start together; without it audio plays late by the priming (23 ms for
//! syom, 46 ms for FDK). Video gets an explicit identity edit.
//!
//! Reading: decoders of M4A files (symphonia among them) hand out the priming samples too. The
//! reference-audio loader reads the edit list here and trims accordingly.

use std::io::{Read, Seek, SeekFrom};

use cadence_core::{Error, Result};
use mp4_atom::{Elst, ElstEntry, ReadFrom};

/// One presented segment of a track, in the track's media timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackEdit {
    /// First presented media tick (the encoder priming for AAC, 0 for video).
    pub media_time: u64,
    /// Presented length in media ticks.
    pub media_duration: u64,
}

/// Converts `ticks` from one timescale to another, rounding to nearest.
pub fn rescale(ticks: u64, from: u32, to: u32) -> u64 {
    ((u128::from(ticks) * u128::from(to) + u128::from(from) / 2) / u128::from(from)) as u64
}

impl TrackEdit {
    /// The presented length in the movie timescale (`tkhd` duration, `elst` segment).
    pub fn movie_duration(&self, media_timescale: u32, movie_timescale: u32) -> u64 {
        rescale(self.media_duration, media_timescale, movie_timescale)
    }

    /// The `elst` box for this edit.
    pub fn to_elst(&self, media_timescale: u32, movie_timescale: u32) -> Elst {
        Elst {
            entries: vec![ElstEntry {
                segment_duration: self.movie_duration(media_timescale, movie_timescale),
                media_time: Some(self.media_time),
                media_rate: 1i16.into(),
            }],
        }
    }
}

/// What an edit list means for a decoded stream, in media ticks (= samples for audio whose
/// media timescale is its sample rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresentedRange {
    /// Silence to insert before the media (from leading empty edits).
    pub leading_silence: u64,
    /// Decoded ticks to drop at the start (encoder priming).
    pub skip: u64,
    /// Ticks to keep after the skipped ones; `None` keeps everything to the end.
    pub length: Option<u64>,
}

/// Interprets an edit list: any number of empty edits followed by at most one normal edit at
/// rate 1 (what encoders and muxers write). Anything else is reported as unsupported.
pub fn presented_range(
    elst: &Elst,
    media_timescale: u32,
    movie_timescale: u32,
) -> Result<PresentedRange> {
    let mut range = PresentedRange::default();
    let mut seen_media = false;
    for entry in &elst.entries {
        match entry.media_time {
            None if !seen_media => {
                range.leading_silence +=
                    rescale(entry.segment_duration, movie_timescale, media_timescale);
            }
            Some(t) if !seen_media && entry.media_rate.integer() == 1 => {
                seen_media = true;
                range.skip = t;
                range.length = (entry.segment_duration > 0)
                    .then(|| rescale(entry.segment_duration, movie_timescale, media_timescale));
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "edit list {:?} is not supported (only leading empty edits and one \
                     normal-speed edit are)",
                    elst.entries
                )))
            }
        }
    }
    Ok(range)
}

/// Reads the edit list of the first sound track of an MP4/M4A stream (`name` is how errors
/// call it). Returns `None` when the stream is not MP4 or the track has no edit list, else the
/// range and the media timescale.
pub fn read_audio_edit(
    reader: &mut (impl Read + Seek),
    name: &dyn std::fmt::Display,
) -> Result<Option<(PresentedRange, u32)>> {
    let corrupt = |what: String| Error::InvalidInput(format!("{name}: {what} (corrupt MP4 file)"));
    let Some(moov) = find_moov(reader).map_err(|e| corrupt(e.to_string()))? else {
        return Ok(None);
    };
    let movie_timescale = moov.mvhd.timescale;
    for trak in &moov.trak {
        if trak.mdia.hdlr.handler != mp4_atom::FourCC::new(b"soun") {
            continue;
        }
        let media_timescale = trak.mdia.mdhd.timescale;
        let Some(elst) = trak.edts.as_ref().and_then(|e| e.elst.as_ref()) else {
            return Ok(None);
        };
        if media_timescale == 0 || movie_timescale == 0 {
            return Err(corrupt("MP4 timescale is 0".into()));
        }
        let range = presented_range(elst, media_timescale, movie_timescale)
            .map_err(|e| Error::InvalidInput(format!("{name}: {e}")))?;
        return Ok(Some((range, media_timescale)));
    }
    Ok(None)
}

/// Walks the top-level boxes and decodes `moov`. `None` if the stream does not look like MP4.
fn find_moov(file: &mut (impl Read + Seek)) -> std::io::Result<Option<mp4_atom::Moov>> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut pos = 0u64;
    while pos + 8 <= len {
        file.seek(SeekFrom::Start(pos))?;
        let mut head = [0u8; 16];
        file.read_exact(&mut head[..8])?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = [head[4], head[5], head[6], head[7]];
        if pos == 0 && &kind != b"ftyp" {
            return Ok(None);
        }
        let size = match size32 {
            0 => len - pos,
            1 => {
                file.read_exact(&mut head[8..16])?;
                u64::from_be_bytes([
                    head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
                ])
            }
            s => u64::from(s),
        };
        if size < 8 || size > len - pos {
            return Err(std::io::Error::other(format!(
                "MP4 box '{}' of {size} bytes at offset {pos} in a {len}-byte file",
                String::from_utf8_lossy(&kind)
            )));
        }
        if &kind == b"moov" {
            file.seek(SeekFrom::Start(pos))?;
            return mp4_atom::Moov::read_from(file)
                .map(Some)
                .map_err(|e| std::io::Error::other(format!("cannot parse moov: {e}")));
        }
        pos += size;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back_an_aac_priming_edit() {
        let edit = TrackEdit {
            media_time: 1024,
            media_duration: 88200,
        };
        let elst = edit.to_elst(44100, 44100);
        assert_eq!(elst.entries[0].segment_duration, 88200);
        let r = presented_range(&elst, 44100, 44100).unwrap();
        assert_eq!(
            r,
            PresentedRange {
                leading_silence: 0,
                skip: 1024,
                length: Some(88200)
            }
        );
        // A 1000-tick movie timescale rounds to whole milliseconds.
        assert_eq!(edit.movie_duration(44100, 1000), 2000);
    }

    #[test]
    fn empty_edit_becomes_leading_silence_and_odd_lists_are_rejected() {
        let elst = Elst {
            entries: vec![
                ElstEntry {
                    segment_duration: 500,
                    media_time: None,
                    media_rate: 1i16.into(),
                },
                ElstEntry {
                    segment_duration: 0,
                    media_time: Some(2048),
                    media_rate: 1i16.into(),
                },
            ],
        };
        let r = presented_range(&elst, 48000, 1000).unwrap();
        assert_eq!(r.leading_silence, 24000);
        assert_eq!(r.skip, 2048);
        assert_eq!(r.length, None);

        let mut twice = elst.clone();
        twice.entries.push(twice.entries[1].clone());
        assert!(presented_range(&twice, 48000, 1000).is_err());
    }
}
