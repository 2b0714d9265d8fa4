//! Where a generated clip goes: frames and audio are streamed to a [`ClipSink`] as the decoders
//! produce them, so a long clip is never held whole unless the caller wants it ([`Clip`]).

use cadence_core::{Error, Result};

/// The shape of the clip about to be streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Number of frames.
    pub frames: usize,
    /// Audio sample rate in Hz.
    pub sample_rate: u32,
    /// Audio channels (interleaved).
    pub channels: u16,
}

impl ClipInfo {
    /// Bytes of one RGB frame.
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Duration of the video in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / self.fps as f64
    }

    /// Interleaved audio samples of exactly the video's duration.
    pub fn audio_samples(&self) -> usize {
        self.frames * self.sample_rate as usize / self.fps as usize * self.channels as usize
    }
}

/// Receives a clip as it is produced: [`ClipSink::start`] once, then frames (in order) and
/// audio (in order), in any interleaving.
pub trait ClipSink {
    /// The clip's shape, before any data.
    fn start(&mut self, info: &ClipInfo) -> Result<()>;
    /// `count` RGB frames, each `height × width × 3` bytes, row-major.
    fn frames(&mut self, rgb: &[u8], count: usize) -> Result<()>;
    /// Interleaved samples in `[-1, 1]` at the clip's sample rate and channel count.
    fn audio(&mut self, interleaved: &[f32]) -> Result<()>;
}

/// A whole clip in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clip {
    /// The clip's shape (`None` until started).
    pub info: Option<ClipInfo>,
    /// All frames, `frames × height × width × 3` bytes.
    pub frames: Vec<u8>,
    /// All audio samples, interleaved.
    pub audio: Vec<f32>,
}

impl ClipSink for Clip {
    fn start(&mut self, info: &ClipInfo) -> Result<()> {
        self.info = Some(*info);
        self.frames.reserve(info.frames * info.frame_bytes());
        Ok(())
    }

    fn frames(&mut self, rgb: &[u8], count: usize) -> Result<()> {
        let info = self
            .info
            .ok_or_else(|| Error::Internal("frames arrived before the clip started".into()))?;
        if rgb.len() != count * info.frame_bytes() {
            return Err(Error::InvalidInput(format!(
                "{count} frames of {}x{} need {} bytes, got {}",
                info.width,
                info.height,
                count * info.frame_bytes(),
                rgb.len()
            )));
        }
        self.frames.extend_from_slice(rgb);
        Ok(())
    }

    fn audio(&mut self, interleaved: &[f32]) -> Result<()> {
        self.audio.extend_from_slice(interleaved);
        Ok(())
    }
}

/// Streams a clip into an MP4 (H.264 + AAC) as it is produced: to a file, where nothing
/// appears until [`Mp4Sink::finish`] succeeds, or into any writer (memory, a socket) with
/// [`Mp4Sink::finish_into`]. Dropping the sink unfinished (an error, Ctrl-C) leaves nothing:
/// its scratch data lives in unnamed temporary files.
pub struct Mp4Sink {
    /// The file to write; `None` for [`Mp4Sink::unnamed`].
    path: Option<std::path::PathBuf>,
    writer: Option<cadence_media::Mp4Writer>,
    /// Wall time spent waiting on the writer (conversion, encoding back-pressure, muxing).
    busy: std::time::Duration,
}

impl Mp4Sink {
    /// A sink that will write `path`.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: Some(path.into()),
            writer: None,
            busy: std::time::Duration::ZERO,
        }
    }

    /// A sink whose MP4 goes to a caller's writer ([`Mp4Sink::finish_into`]).
    pub fn unnamed() -> Self {
        Self {
            path: None,
            writer: None,
            busy: std::time::Duration::ZERO,
        }
    }

    fn writer(&mut self) -> Result<&mut cadence_media::Mp4Writer> {
        self.writer
            .as_mut()
            .ok_or_else(|| Error::Internal("data arrived before the clip started".into()))
    }

    fn take_writer(&mut self) -> Result<cadence_media::Mp4Writer> {
        self.writer
            .take()
            .ok_or_else(|| Error::Internal("no clip was written".into()))
    }

    /// Encodes what is left and moves the file into place. Returns the summary and the time
    /// the writer cost the generation (encoding mostly overlaps decoding on worker threads).
    pub fn finish(mut self) -> Result<(cadence_media::Mp4Summary, std::time::Duration)> {
        let start = std::time::Instant::now();
        let summary = self.take_writer()?.finish()?;
        Ok((summary, self.busy + start.elapsed()))
    }

    /// Encodes what is left and writes the whole MP4 (header first) into `out`: the same
    /// bytes [`Mp4Sink::finish`] puts in a file.
    pub fn finish_into(
        mut self,
        out: &mut (impl std::io::Write + ?Sized),
    ) -> Result<(cadence_media::Mp4Summary, std::time::Duration)> {
        let start = std::time::Instant::now();
        let summary = self.take_writer()?.finish_into(out)?;
        Ok((summary, self.busy + start.elapsed()))
    }
}

impl ClipSink for Mp4Sink {
    fn start(&mut self, info: &ClipInfo) -> Result<()> {
        let video = cadence_media::VideoParams::new(info.width, info.height, info.fps);
        let audio = cadence_media::AudioParams {
            sample_rate: info.sample_rate,
            channels: info.channels,
            ..Default::default()
        };
        self.writer = Some(match &self.path {
            Some(path) => cadence_media::Mp4Writer::create(path, video, audio)?,
            None => cadence_media::Mp4Writer::new(video, audio)?,
        });
        Ok(())
    }

    fn frames(&mut self, rgb: &[u8], _count: usize) -> Result<()> {
        let start = std::time::Instant::now();
        self.writer()?.push_frames(rgb)?;
        self.busy += start.elapsed();
        Ok(())
    }

    fn audio(&mut self, interleaved: &[f32]) -> Result<()> {
        let start = std::time::Instant::now();
        self.writer()?.push_audio(interleaved)?;
        self.busy += start.elapsed();
        Ok(())
    }
}
