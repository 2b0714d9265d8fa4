//! [`Mp4Writer`]: streaming H.264 + AAC-LC into one MP4 that plays everywhere.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use cadence_core::{Error, Result};

use super::aac::{new_encoder, AacBackend, AacEncoder, AccessUnit, AAC_FRAME};
use super::avc::{annex_b_to_sample, ParameterSets};
use super::edit_list::{rescale, TrackEdit};
use super::moov::{self, AudioTrack, VideoTrack};
use super::sample_table::{MediaData, SampleTable};
use super::segments::{EncodedFrame, SegmentPool, SegmentSettings};

/// How many segments of frames may be encoding while the writer appends: frame `n - lag` is
/// written when frame `n` is pushed. A constant (not the thread count), so the file's layout
/// is the same on every machine; 16 segments keep 16 encoder threads busy.
const WRITE_LAG_SEGMENTS: u64 = 16;
use crate::atomic_file::{destination_dir, AtomicFile};

/// Largest frame openh264 encodes (its level 5.2 limit), either orientation.
const MAX_LONG_SIDE: u32 = 3840;
const MAX_SHORT_SIDE: u32 = 2160;

/// The video stream: size, rate, quality and parallelism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoParams {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even; need not be a multiple of 16: 1080 is coded as 1088 and cropped
    /// in the sequence parameter set).
    pub height: u32,
    /// Frame rate numerator (frames per second = `fps_num / fps_den`).
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
    /// Target bit rate in bits per second (the encoder may overshoot rather than drop frames).
    pub bitrate_bps: u32,
    /// Frames per independently encoded segment; each starts with an IDR picture, so this is
    /// also the keyframe interval.
    pub segment_frames: u32,
    /// Encoder threads (segments encoded at once); 0 = one per available core.
    pub threads: usize,
}

impl VideoParams {
    /// `width` x `height` at `fps` frames per second with defaults: about 0.16 bits per pixel
    /// (8.4 Mbit/s at 1080p25), one-second segments, one thread per core.
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        let bits = u64::from(width) * u64::from(height) * u64::from(fps) * 16 / 100;
        Self {
            width,
            height,
            fps_num: fps,
            fps_den: 1,
            bitrate_bps: bits.clamp(200_000, 50_000_000) as u32,
            segment_frames: fps.max(2),
            threads: 0,
        }
    }

    /// Bytes of one RGB frame.
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    fn validate(&self) -> Result<()> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || w % 2 == 1 || h % 2 == 1 {
            return Err(Error::InvalidInput(format!(
                "video size {w}x{h}: width and height must be even and non-zero (H.264 4:2:0 \
                 chroma covers 2x2 pixels); crop or pad to an even size such as {}x{}",
                (w + 1) & !1,
                (h + 1) & !1
            )));
        }
        if w.max(h) > MAX_LONG_SIDE || w.min(h) > MAX_SHORT_SIDE {
            return Err(Error::InvalidInput(format!(
                "video size {w}x{h} exceeds the encoder's limit of {MAX_LONG_SIDE}x{MAX_SHORT_SIDE}"
            )));
        }
        if self.fps_num == 0 || self.fps_den == 0 {
            return Err(Error::InvalidInput(format!(
                "frame rate {}/{} must be positive",
                self.fps_num, self.fps_den
            )));
        }
        if self.bitrate_bps == 0 {
            return Err(Error::InvalidInput(
                "video bit rate must be positive".into(),
            ));
        }
        if self.segment_frames < 2 {
            return Err(Error::InvalidInput(format!(
                "segment_frames {} must be at least 2",
                self.segment_frames
            )));
        }
        Ok(())
    }

    /// Media timescale and ticks per frame: the frame rate numerator doubled until it is at
    /// least 10000 (as ffmpeg does: 25 fps -> 12800, 512 ticks per frame).
    fn timescale(&self) -> (u32, u32) {
        let mut scale = self.fps_num;
        let mut factor = 1;
        while scale < 10_000 {
            scale *= 2;
            factor *= 2;
        }
        (scale, self.fps_den * factor)
    }

    fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// The soundtrack: AAC-LC of interleaved f32 samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioParams {
    /// Sample rate in Hz of the pushed samples (the pipeline's is 44100).
    pub sample_rate: u32,
    /// Interleaved channels (1 or 2).
    pub channels: u16,
    /// AAC bit rate in bits per second.
    pub bitrate_bps: u32,
    /// Which AAC encoder (pure-Rust `syom` unless the `fdk-aac` feature is chosen).
    pub encoder: AacBackend,
}

impl Default for AudioParams {
    /// 44.1 kHz stereo at 192 kbit/s with the pure-Rust encoder.
    fn default() -> Self {
        Self {
            sample_rate: 44_100,
            channels: 2,
            bitrate_bps: 192_000,
            encoder: AacBackend::default(),
        }
    }
}

/// What [`Mp4Writer::finish`] or [`Mp4Writer::finish_into`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Mp4Summary {
    /// The file written (`None` when written into a caller's writer).
    pub path: Option<PathBuf>,
    /// Video frames.
    pub frames: u64,
    /// Presented audio samples per channel (0 if no audio was pushed); audio pushed past the
    /// last frame is not presented.
    pub audio_samples: u64,
    /// Video duration in seconds.
    pub video_seconds: f64,
    /// File size in bytes.
    pub bytes: u64,
}

/// Streams RGB frames and PCM audio into an MP4 (H.264 + AAC-LC, `moov` first, edit list).
///
/// Frames are converted and handed to the encoder threads as they arrive, and encoded samples
/// go straight to an unnamed scratch file, so memory does not grow with the clip and no
/// temporary file can outlive the process. The header comes first in the file, so the bytes
/// are written when the clip is complete: [`finish`](Self::finish) writes the file at the path
/// given to [`create`](Self::create) (atomically: nothing appears there before), and
/// [`finish_into`](Self::finish_into) writes the same bytes into any `Write` (a `Vec<u8>`, a
/// socket). Dropping the writer (or an error) leaves nothing behind.
///
/// ```no_run
/// use cadence_media::{AudioParams, Mp4Writer, VideoParams};
/// # fn main() -> cadence_core::Result<()> {
/// let video = VideoParams::new(448, 256, 25);
/// let mut w = Mp4Writer::new(video, AudioParams::default())?;
/// w.push_frames(&vec![0u8; video.frame_bytes() * 25])?; // T x H x W x 3
/// w.push_audio(&vec![0.0f32; 44_100 * 2])?; // interleaved stereo
/// let mut mp4 = Vec::new();
/// let summary = w.finish_into(&mut mp4)?;
/// # Ok(()) }
/// ```
pub struct Mp4Writer {
    /// Where [`finish`](Self::finish) writes; `None` for a writer made by [`Mp4Writer::new`].
    dest: Option<PathBuf>,
    video: VideoParams,
    audio: AudioParams,
    video_timescale: u32,
    frame_ticks: u32,
    pool: Option<SegmentPool>,
    aac: Box<dyn AacEncoder>,
    data: MediaData,
    video_table: SampleTable,
    audio_table: SampleTable,
    parameter_sets: Option<ParameterSets>,
    /// Encoded frames that finished before an earlier frame, by index.
    reorder: BTreeMap<u64, Vec<u8>>,
    /// Next frame index to append to the media data.
    next_frame: u64,
    /// Encoded audio waiting for the video to catch up (for interleaving).
    pending_audio: VecDeque<AccessUnit>,
    audio_units_written: u64,
    audio_samples: u64,
    /// Creation time written into the headers (seconds since 1904).
    created: u64,
    failed: bool,
}

impl Mp4Writer {
    /// Prepares to write `path` (its folder must exist) with [`finish`](Self::finish). Starts
    /// the encoder threads. The headers' creation time is `$SOURCE_DATE_EPOCH` when set (so
    /// equal inputs give equal files), else now.
    pub fn create(path: &Path, video: VideoParams, audio: AudioParams) -> Result<Self> {
        let dir = destination_dir(path)?;
        Self::start(Some(path.to_path_buf()), Some(&dir), video, audio)
    }

    /// Prepares to write into a caller's writer with [`finish_into`](Self::finish_into); the
    /// scratch data goes to an unnamed file in the system's temporary folder.
    pub fn new(video: VideoParams, audio: AudioParams) -> Result<Self> {
        Self::start(None, None, video, audio)
    }

    fn start(
        dest: Option<PathBuf>,
        scratch_dir: Option<&Path>,
        video: VideoParams,
        audio: AudioParams,
    ) -> Result<Self> {
        video.validate()?;
        if !(1..=2).contains(&audio.channels) {
            return Err(Error::InvalidInput(format!(
                "{} audio channels; the MP4 writer takes mono or stereo",
                audio.channels
            )));
        }
        let aac = new_encoder(
            audio.encoder,
            audio.sample_rate,
            audio.channels,
            audio.bitrate_bps,
        )?;
        let created = moov::creation_time()?;
        let data = MediaData::create(scratch_dir)?;
        let (video_timescale, frame_ticks) = video.timescale();
        let pool = SegmentPool::start(
            SegmentSettings {
                fps_num: video.fps_num,
                fps_den: video.fps_den,
                bitrate_bps: video.bitrate_bps,
                segment_frames: video.segment_frames,
                width: video.width,
                height: video.height,
            },
            video.threads(),
        )?;
        Ok(Self {
            dest,
            video,
            audio,
            video_timescale,
            frame_ticks,
            pool: Some(pool),
            aac,
            data,
            video_table: SampleTable::default(),
            audio_table: SampleTable::default(),
            parameter_sets: None,
            reorder: BTreeMap::new(),
            next_frame: 0,
            pending_audio: VecDeque::new(),
            audio_units_written: 0,
            audio_samples: 0,
            created,
            failed: false,
        })
    }

    /// Frames pushed so far.
    pub fn frames_pushed(&self) -> u64 {
        self.pool
            .as_ref()
            .map_or(self.next_frame, SegmentPool::pushed)
    }

    /// Pushes whole RGB frames, `T x H x W x 3` bytes, row-major, as the video decoder
    /// produces them. Blocks while the encoder threads are a segment behind.
    pub fn push_frames(&mut self, rgb: &[u8]) -> Result<()> {
        self.guard(|w| w.push_frames_inner(rgb))
    }

    /// Pushes interleaved audio samples (`[l0, r0, l1, r1, ...]` for stereo) in [-1, 1] at the
    /// configured sample rate; louder samples are clipped, NaN or infinity is an error.
    pub fn push_audio(&mut self, interleaved: &[f32]) -> Result<()> {
        self.guard(|w| w.push_audio_inner(interleaved))
    }

    /// Encodes what is left, writes the file (header first) beside the path given to
    /// [`create`](Self::create) and renames it into place.
    pub fn finish(self) -> Result<Mp4Summary> {
        let dest = self.dest.clone().ok_or_else(|| {
            Error::InvalidInput(
                "this MP4 writer was made without a path (Mp4Writer::new); finish it with \
                 finish_into"
                    .into(),
            )
        })?;
        let mut file = AtomicFile::create(&dest)?;
        let mut summary = self.finish_into(file.file())?;
        file.commit()?;
        summary.path = Some(dest);
        Ok(summary)
    }

    /// Encodes what is left and writes the whole file (header first) into `out`, which is not
    /// flushed. The bytes are the same as [`finish`](Self::finish) writes to a path.
    pub fn finish_into(mut self, out: &mut (impl Write + ?Sized)) -> Result<Mp4Summary> {
        self.guard(|_| Ok(()))?;
        let pool = self.pool.take().ok_or_else(|| self.failed_error())?;
        let pushed = pool.pushed();
        let rest = pool.finish()?;
        self.accept_frames(rest)?;
        if self.next_frame != pushed {
            return Err(Error::InvalidInput(format!(
                "{}: {} of {pushed} frames came back from the encoder",
                self.name(),
                self.next_frame
            )));
        }
        if pushed == 0 {
            return Err(Error::InvalidInput(format!(
                "{}: no video frames were pushed; an MP4 needs at least one",
                self.name()
            )));
        }
        let timeline = if self.audio_samples > 0 {
            let mut units = Vec::new();
            let t = self.aac.finish(&mut units)?;
            self.pending_audio.extend(units);
            self.write_audio_until(u64::MAX)?;
            Some(t)
        } else {
            None
        };
        self.write_file(timeline, out)
    }

    /// Runs `f`, refusing to continue after an earlier error.
    fn guard(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if self.failed {
            return Err(self.failed_error());
        }
        let r = f(self);
        self.failed = r.is_err();
        r
    }

    fn failed_error(&self) -> Error {
        Error::InvalidInput(format!(
            "{}: the MP4 writer already failed; drop it and start again",
            self.name()
        ))
    }

    /// How error messages name the output.
    fn name(&self) -> String {
        self.dest
            .as_ref()
            .map_or_else(|| "the MP4 output".into(), |p| p.display().to_string())
    }

    fn push_frames_inner(&mut self, rgb: &[u8]) -> Result<()> {
        let frame_bytes = self.video.frame_bytes();
        if !rgb.len().is_multiple_of(frame_bytes) {
            return Err(Error::InvalidInput(format!(
                "push_frames got {} bytes, not a whole number of {}x{} RGB frames ({frame_bytes} \
                 bytes each)",
                rgb.len(),
                self.video.width,
                self.video.height
            )));
        }
        let lag = WRITE_LAG_SEGMENTS * u64::from(self.video.segment_frames);
        for frame in rgb.chunks_exact(frame_bytes) {
            let Some(pool) = self.pool.as_mut() else {
                return Err(self.failed_error());
            };
            pool.push(frame.to_vec())?;
            let target = pool.pushed().saturating_sub(lag);
            self.write_frames_until(target)?;
        }
        Ok(())
    }

    fn push_audio_inner(&mut self, interleaved: &[f32]) -> Result<()> {
        let ch = usize::from(self.audio.channels);
        if !interleaved.len().is_multiple_of(ch) {
            return Err(Error::InvalidInput(format!(
                "push_audio got {} samples, not a whole number of {ch}-channel frames",
                interleaved.len()
            )));
        }
        let mut units = Vec::new();
        self.aac.encode(interleaved, &mut units)?;
        self.audio_samples += (interleaved.len() / ch) as u64;
        self.pending_audio.extend(units);
        self.write_audio_until(self.next_frame)
    }

    /// Appends frames in order until `target` frames are written, waiting for the encoders
    /// when the next one is not back yet. Called with a target that depends only on how many
    /// frames were pushed, so where audio and video interleave in the file never depends on
    /// thread timing: the same input gives the same bytes.
    fn write_frames_until(&mut self, target: u64) -> Result<()> {
        while self.next_frame < target {
            if !self.reorder.contains_key(&self.next_frame) {
                let Some(pool) = self.pool.as_mut() else {
                    return Err(self.failed_error());
                };
                let mut frames = pool.ready()?;
                if frames.is_empty() {
                    frames.push(pool.wait_one()?);
                }
                for f in frames {
                    self.reorder.insert(f.index, f.annex_b);
                }
                continue;
            }
            self.append_in_order(target)?;
        }
        Ok(())
    }

    /// Puts encoded frames in order and appends every frame whose predecessors are written.
    fn accept_frames(&mut self, frames: Vec<EncodedFrame>) -> Result<()> {
        for f in frames {
            self.reorder.insert(f.index, f.annex_b);
        }
        self.append_in_order(u64::MAX)
    }

    /// Appends, in order, the frames already back, up to `target` frames in all.
    fn append_in_order(&mut self, target: u64) -> Result<()> {
        while self.next_frame < target {
            let Some(annex_b) = self.reorder.remove(&self.next_frame) else {
                break;
            };
            let (sample, sets) = annex_b_to_sample(&annex_b)?;
            let has_sets = !sets.sps.is_empty() || !sets.pps.is_empty();
            if has_sets {
                match &self.parameter_sets {
                    None => self.parameter_sets = Some(sets),
                    Some(first) if *first == sets => {}
                    Some(_) => {
                        return Err(Error::InvalidInput(format!(
                            "frame {}: the encoder changed its parameter sets mid-stream",
                            self.next_frame
                        )))
                    }
                }
            }
            if self.next_frame == 0 && !(sample.is_sync && has_sets) {
                return Err(Error::InvalidInput(
                    "the first encoded frame is not an IDR picture with parameter sets".into(),
                ));
            }
            self.data
                .append(0, &mut self.video_table, &sample.data, sample.is_sync)?;
            self.next_frame += 1;
            self.write_audio_until(self.next_frame)?;
        }
        Ok(())
    }

    /// Appends pending audio units that start before the end of video frame `frames` - 1, so
    /// audio and video interleave about once per frame.
    fn write_audio_until(&mut self, frames: u64) -> Result<()> {
        while !self.pending_audio.is_empty() {
            // unit start (s) = k * 1024 / rate < frames * den / num
            let k = u128::from(self.audio_units_written);
            let lhs = k * u128::from(AAC_FRAME) * u128::from(self.video.fps_num);
            let rhs = u128::from(frames)
                * u128::from(self.video.fps_den)
                * u128::from(self.audio.sample_rate);
            if frames != u64::MAX && lhs >= rhs {
                break;
            }
            if let Some(unit) = self.pending_audio.pop_front() {
                self.data.append(1, &mut self.audio_table, &unit, true)?;
                self.audio_units_written += 1;
            }
        }
        Ok(())
    }

    fn write_file(
        self,
        timeline: Option<super::aac::AacTimeline>,
        out: &mut (impl Write + ?Sized),
    ) -> Result<Mp4Summary> {
        let sets = self
            .parameter_sets
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("the encoder produced no parameter sets".into()))?;
        let frames = self.video_table.len() as u64;
        let video = VideoTrack {
            width: self.video.width as u16,
            height: self.video.height as u16,
            timescale: self.video_timescale,
            frame_ticks: self.frame_ticks,
            avcc: sets.avcc()?,
            table: &self.video_table,
            edit: TrackEdit {
                media_time: 0,
                media_duration: frames * u64::from(self.frame_ticks),
            },
        };
        // The soundtrack ends with the last frame (the reference's mux keeps the shortest
        // stream): its edit presents at most the video's length, rounded to whole samples.
        let video_samples = rescale(
            frames * u64::from(self.video.fps_den),
            self.video.fps_num,
            self.audio.sample_rate,
        );
        let presented = timeline.map(|t| t.samples.min(video_samples));
        let audio = timeline.zip(presented).map(|(t, samples)| AudioTrack {
            sample_rate: self.audio.sample_rate,
            channels: self.audio.channels,
            asc: self.aac.audio_specific_config(),
            bitrate_bps: self.audio.bitrate_bps,
            table: &self.audio_table,
            frame_samples: AAC_FRAME,
            edit: TrackEdit {
                media_time: t.priming,
                media_duration: samples,
            },
        });
        let movie_timescale = match &audio {
            Some(a) => a.sample_rate,
            None => self.video_timescale,
        };

        let ftyp = moov::ftyp()?;
        let payload = self.data.len();
        let probe = moov::moov(
            &video,
            audio.as_ref(),
            movie_timescale,
            0,
            false,
            self.created,
        )?;
        let wide = ftyp.len() as u64 + probe.len() as u64 + 16 + payload > u64::from(u32::MAX);
        let sized = moov::moov(
            &video,
            audio.as_ref(),
            movie_timescale,
            0,
            wide,
            self.created,
        )?;
        let mdat_header = mdat_header(payload);
        let data_offset = (ftyp.len() + sized.len() + mdat_header.len()) as u64;
        let moov = moov::moov(
            &video,
            audio.as_ref(),
            movie_timescale,
            data_offset,
            wide,
            self.created,
        )?;
        if moov.len() != sized.len() {
            return Err(Error::InvalidInput(format!(
                "{}: moov size changed from {} to {} bytes while placing it",
                self.name(),
                sized.len(),
                moov.len()
            )));
        }
        let audio_samples = presented.unwrap_or(0);

        // Write errors (a full disk, a closed socket) are I/O errors of the output.
        let name = self.name();
        let io = |e: std::io::Error| Error::io(&name, e);
        {
            let mut out = BufWriter::with_capacity(1 << 20, &mut *out);
            out.write_all(&ftyp).map_err(io)?;
            out.write_all(&moov).map_err(io)?;
            out.write_all(&mdat_header).map_err(io)?;
            self.data.copy_into(&mut out)?;
            out.flush().map_err(io)?;
        }
        Ok(Mp4Summary {
            path: None,
            frames,
            audio_samples,
            video_seconds: frames as f64 * f64::from(self.video.fps_den)
                / f64::from(self.video.fps_num),
            bytes: data_offset + payload,
        })
    }
}

/// The `mdat` box header for `payload` bytes (64-bit size when needed).
fn mdat_header(payload: u64) -> Vec<u8> {
    match u32::try_from(payload + 8) {
        Ok(size) => [&size.to_be_bytes()[..], b"mdat"].concat(),
        Err(_) => [
            &1u32.to_be_bytes()[..],
            b"mdat",
            &(payload + 16).to_be_bytes(),
        ]
        .concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_oversized_frames_are_rejected_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mp4");
        let err = Mp4Writer::create(
            &path,
            VideoParams::new(1921, 1080, 25),
            AudioParams::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("1922x1080"), "{err}");
        let err = Mp4Writer::create(
            &path,
            VideoParams::new(4096, 2160, 25),
            AudioParams::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn writer_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Mp4Writer>();
    }

    #[test]
    fn timescale_matches_ffmpeg_convention() {
        assert_eq!(VideoParams::new(64, 64, 25).timescale(), (12800, 512));
        let ntsc = VideoParams {
            fps_num: 30000,
            fps_den: 1001,
            ..VideoParams::new(64, 64, 30)
        };
        assert_eq!(ntsc.timescale(), (30000, 1001));
    }

    #[test]
    fn mdat_header_sizes() {
        assert_eq!(mdat_header(10), vec![0, 0, 0, 18, b'm', b'd', b'a', b't']);
        assert_eq!(mdat_header(u64::from(u32::MAX)).len(), 16);
    }

    #[test]
    fn partial_frames_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mp4");
        let video = VideoParams::new(16, 16, 25);
        let mut w = Mp4Writer::create(&path, video, AudioParams::default()).unwrap();
        let err = w
            .push_frames(&vec![0; video.frame_bytes() + 1])
            .unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
        // After an error the writer refuses to go on and leaves nothing behind.
        assert!(w.push_frames(&vec![0; video.frame_bytes()]).is_err());
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
