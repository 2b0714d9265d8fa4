//! The `ftyp` and `moov` boxes of the finished file, built with `mp4-atom`.
//!
//! The movie header comes first in the file ("fast start"), so players can start before the
//! whole file has arrived; it is built once every sample is known (see [`super::sample_table`]).

use cadence_core::{Error, Result};
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Audio, Avc1, Codec, Dinf, Dref, DrefEntry, Edts, Encode, Esds, FourCC, Ftyp, Hdlr, Mdhd, Mdia,
    Minf, Moov, Mp4a, Mvhd, Smhd, Stbl, Stsd, Tkhd, Trak, Url, Visual, Vmhd,
};

use super::edit_list::TrackEdit;
use super::sample_table::SampleTable;

/// Seconds from 1904-01-01 (the MP4 epoch) to 1970-01-01.
const MP4_EPOCH_OFFSET: u64 = 2_082_844_800;

/// Everything about the video track the header needs.
pub struct VideoTrack<'a> {
    /// Displayed width in pixels.
    pub width: u16,
    /// Displayed height in pixels.
    pub height: u16,
    /// Media ticks per second.
    pub timescale: u32,
    /// Ticks per frame.
    pub frame_ticks: u32,
    /// Decoder configuration (parameter sets).
    pub avcc: mp4_atom::Avcc,
    /// Samples and chunks.
    pub table: &'a SampleTable,
    /// Presented range.
    pub edit: TrackEdit,
}

/// Everything about the audio track the header needs.
pub struct AudioTrack<'a> {
    /// Sample rate = media timescale.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// AudioSpecificConfig from the encoder.
    pub asc: Vec<u8>,
    /// Target bit rate, for the `esds` descriptor.
    pub bitrate_bps: u32,
    /// Samples and chunks (one AAC access unit per sample).
    pub table: &'a SampleTable,
    /// Samples per access unit.
    pub frame_samples: u32,
    /// Presented range (the priming removed).
    pub edit: TrackEdit,
}

fn encode(what: &str, atom: &impl Encode) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    atom.encode(&mut buf)
        .map_err(|e| Error::InvalidInput(format!("cannot encode the MP4 {what} box: {e}")))?;
    Ok(buf)
}

/// The `ftyp` box: ISO base media with AVC, as ffmpeg and Apple's tools write it.
pub fn ftyp() -> Result<Vec<u8>> {
    encode(
        "ftyp",
        &Ftyp {
            major_brand: FourCC::new(b"isom"),
            minor_version: 0x200,
            compatible_brands: vec![
                FourCC::new(b"isom"),
                FourCC::new(b"iso2"),
                FourCC::new(b"avc1"),
                FourCC::new(b"mp41"),
            ],
        },
    )
}

/// The time the file says it was made, in seconds since 1904: `$SOURCE_DATE_EPOCH` (Unix
/// seconds; the reproducible-builds convention) when set, so a seeded run can give a
/// byte-identical file, else now. A malformed value is an error naming the variable rather
/// than a silently different file.
pub fn creation_time() -> Result<u64> {
    mp4_time(
        std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
        std::time::SystemTime::now(),
    )
}

fn mp4_time(source_date_epoch: Option<&str>, now: std::time::SystemTime) -> Result<u64> {
    let unix = match source_date_epoch {
        Some(value) => value.trim().parse::<u64>().map_err(|_| {
            Error::InvalidInput(format!(
                "SOURCE_DATE_EPOCH={value:?} is not a whole number of seconds since 1970; \
                 set it to one (e.g. 0) or unset it"
            ))
        })?,
        // A clock before 1970 is left at the Unix epoch.
        None => now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    Ok(unix + MP4_EPOCH_OFFSET)
}

fn dinf() -> Dinf {
    Dinf {
        dref: Dref {
            entries: vec![DrefEntry::Url(Url {
                location: String::new(),
            })],
        },
    }
}

/// Builds the `moov` box. `data_offset` is the file offset of the first media byte; `wide`
/// selects 64-bit chunk offsets; `time` is the creation time (see [`creation_time`]).
pub fn moov(
    video: &VideoTrack<'_>,
    audio: Option<&AudioTrack<'_>>,
    movie_timescale: u32,
    data_offset: u64,
    wide: bool,
    time: u64,
) -> Result<Vec<u8>> {
    let mut traks = vec![video_trak(video, movie_timescale, data_offset, wide, time)];
    let mut duration = video.edit.movie_duration(video.timescale, movie_timescale);
    if let Some(a) = audio {
        traks.push(audio_trak(a, movie_timescale, data_offset, wide, time)?);
        duration = duration.max(a.edit.movie_duration(a.sample_rate, movie_timescale));
    }
    let moov = Moov {
        mvhd: Mvhd {
            creation_time: time,
            modification_time: time,
            timescale: movie_timescale,
            duration,
            rate: 1u16.into(),
            volume: 1u8.into(),
            next_track_id: traks.len() as u32 + 1,
            ..Mvhd::default()
        },
        trak: traks,
        ..Moov::default()
    };
    encode("moov", &moov)
}

/// The parts in which the two tracks differ.
struct TrakParts {
    track_id: u32,
    /// Track header fields specific to the kind (size, volume, group).
    tkhd: Tkhd,
    handler: &'static [u8; 4],
    name: &'static str,
    media_timescale: u32,
    media_duration: u64,
    movie_duration: u64,
    elst: mp4_atom::Elst,
    minf: Minf,
}

fn trak(p: TrakParts, time: u64) -> Trak {
    Trak {
        tkhd: Tkhd {
            creation_time: time,
            modification_time: time,
            track_id: p.track_id,
            duration: p.movie_duration,
            enabled: true,
            in_movie: true,
            ..p.tkhd
        },
        edts: Some(Edts { elst: Some(p.elst) }),
        mdia: Mdia {
            mdhd: Mdhd {
                creation_time: time,
                modification_time: time,
                timescale: p.media_timescale,
                duration: p.media_duration,
                language: "und".into(),
            },
            hdlr: Hdlr {
                handler: FourCC::new(p.handler),
                name: p.name.into(),
            },
            minf: p.minf,
        },
        ..Trak::default()
    }
}

fn stbl(table: &SampleTable, codec: Codec, delta: u32, data_offset: u64, wide: bool) -> Stbl {
    let (stco, co64) = table.chunk_offsets(data_offset, wide);
    Stbl {
        stsd: Stsd {
            codecs: vec![codec],
        },
        stts: table.stts(delta),
        stss: table.stss(),
        stsc: table.stsc(),
        stsz: table.stsz(),
        stco,
        co64,
        ..Stbl::default()
    }
}

fn video_trak(v: &VideoTrack<'_>, movie_ts: u32, data_offset: u64, wide: bool, time: u64) -> Trak {
    let codec = Codec::Avc1(Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width: v.width,
            height: v.height,
            compressor: "Cadence H.264 (openh264)".into(),
            ..Visual::default()
        },
        avcc: v.avcc.clone(),
        ..Avc1::default()
    });
    let minf = Minf {
        vmhd: Some(Vmhd::default()),
        dinf: dinf(),
        stbl: stbl(v.table, codec, v.frame_ticks, data_offset, wide),
        ..Minf::default()
    };
    trak(
        TrakParts {
            track_id: 1,
            tkhd: Tkhd {
                width: v.width.into(),
                height: v.height.into(),
                ..Tkhd::default()
            },
            handler: b"vide",
            name: "VideoHandler",
            media_timescale: v.timescale,
            media_duration: v.table.len() as u64 * u64::from(v.frame_ticks),
            movie_duration: v.edit.movie_duration(v.timescale, movie_ts),
            elst: v.edit.to_elst(v.timescale, movie_ts),
            minf,
        },
        time,
    )
}

fn audio_trak(
    a: &AudioTrack<'_>,
    movie_ts: u32,
    data_offset: u64,
    wide: bool,
    time: u64,
) -> Result<Trak> {
    let rate = u16::try_from(a.sample_rate).map_err(|_| {
        Error::InvalidInput(format!(
            "audio sample rate {} Hz does not fit an MP4 audio sample entry",
            a.sample_rate
        ))
    })?;
    let codec = Codec::Mp4a(Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: a.channels,
            sample_size: 16,
            sample_rate: rate.into(),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: 2,
                dec_config: DecoderConfig {
                    // ISO/IEC 14496-1 objectTypeIndication 0x40 = MPEG-4 audio, streamType 5 = audio.
                    object_type_indication: 0x40,
                    stream_type: 5,
                    max_bitrate: a.bitrate_bps,
                    avg_bitrate: a.bitrate_bps,
                    dec_specific: Some(DecoderSpecific {
                        profile: a.asc.first().map_or(2, |b| b >> 3),
                        freq_index: 0,
                        chan_conf: a.channels as u8,
                        raw: a.asc.clone(),
                    }),
                    ..DecoderConfig::default()
                },
                sl_config: SLConfig {},
                ..EsDescriptor::default()
            },
        },
        btrt: None,
        taic: None,
    });
    let minf = Minf {
        smhd: Some(Smhd::default()),
        dinf: dinf(),
        stbl: stbl(a.table, codec, a.frame_samples, data_offset, wide),
        ..Minf::default()
    };
    Ok(trak(
        TrakParts {
            track_id: 2,
            tkhd: Tkhd {
                volume: 1u8.into(),
                alternate_group: 1,
                ..Tkhd::default()
            },
            handler: b"soun",
            name: "SoundHandler",
            media_timescale: a.sample_rate,
            media_duration: a.table.len() as u64 * u64::from(a.frame_samples),
            movie_duration: a.edit.movie_duration(a.sample_rate, movie_ts),
            elst: a.edit.to_elst(a.sample_rate, movie_ts),
            minf,
        },
        time,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn source_date_epoch_overrides_the_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            mp4_time(None, now).unwrap(),
            1_700_000_000 + MP4_EPOCH_OFFSET
        );
        assert_eq!(mp4_time(Some("0"), now).unwrap(), MP4_EPOCH_OFFSET);
        assert_eq!(mp4_time(Some(" 42\n"), now).unwrap(), 42 + MP4_EPOCH_OFFSET);
        let err = mp4_time(Some("yesterday"), now).unwrap_err().to_string();
        assert!(
            err.contains("SOURCE_DATE_EPOCH") && err.contains("unset it"),
            "{err}"
        );
    }
}
