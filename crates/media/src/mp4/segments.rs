//! Parallel H.264 encoding in independent GOP segments.
//!
//! openh264 encodes one frame on one core (its own threading does nothing in the single-slice
//! mode we need), about 15 ms per 1080p frame with assembly. To use several cores the clip is
//! cut into segments of `segment_frames` frames; every segment is encoded by a fresh encoder,
//! so it starts with an IDR picture and depends on nothing before it, and segment `s` goes to
//! worker `s mod threads`. Concatenating the segments' access units in order gives one valid
//! stream. Because each segment gets a fresh encoder, the bitstream is identical for any number
//! of threads.
//!
//! Frames stream in as RGB and the workers convert them to I420 themselves, so the caller (the
//! video decoder's thread) only copies each frame into the queue and goes back to decoding: the
//! colour conversion (a few ms per 1080p frame) overlaps the decode instead of delaying it. A
//! worker's queue holds at most one segment of frames, so memory is bounded by
//! `threads x segment_frames` RGB frames (6.2 MB each at 1080p) however long the clip is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use cadence_core::{Error, Result};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, RateControlMode,
    UsageType, VuiConfig,
};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use openh264::{OpenH264API, Timestamp};

/// Encoder settings shared by every segment.
#[derive(Debug, Clone, Copy)]
pub struct SegmentSettings {
    /// Frame rate as a fraction (frames per second = num / den).
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
    /// Target bit rate in bits per second.
    pub bitrate_bps: u32,
    /// Frames per segment; every segment starts with an IDR.
    pub segment_frames: u32,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
}

/// One encoded frame in Annex B, with its index in the clip.
#[derive(Debug)]
pub struct EncodedFrame {
    /// 0-based frame index.
    pub index: u64,
    /// Annex B access unit as the encoder produced it.
    pub annex_b: Vec<u8>,
}

/// A frame handed to a worker.
struct Job {
    index: u64,
    starts_segment: bool,
    /// Packed RGB, `width x height x 3` bytes; the worker converts it.
    rgb: Vec<u8>,
}

/// One encoder thread: its job queue (closed to stop it) and its handle (taken when joined).
struct Worker {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// The pool of segment encoders.
pub struct SegmentPool {
    settings: SegmentSettings,
    workers: Vec<Worker>,
    results: Receiver<Result<EncodedFrame, String>>,
    /// Set when the pool is dropped unfinished: workers skip the frames still queued.
    cancelled: Arc<AtomicBool>,
    next_index: u64,
    received: u64,
}

impl SegmentPool {
    /// Starts `threads` worker threads.
    pub fn start(settings: SegmentSettings, threads: usize) -> Result<Self> {
        if settings.segment_frames < 2 {
            return Err(Error::Config(format!(
                "segment_frames is {}; it must be at least 2",
                settings.segment_frames
            )));
        }
        let (result_tx, results) = channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(threads.max(1));
        for w in 0..threads.max(1) {
            let (tx, rx) = sync_channel::<Job>(settings.segment_frames as usize);
            let out = result_tx.clone();
            let cancel = Arc::clone(&cancelled);
            let handle = std::thread::Builder::new()
                .name(format!("h264-segment-{w}"))
                .spawn(move || worker(settings, rx, out, &cancel))
                .map_err(|e| Error::Config(format!("cannot start an encoder thread: {e}")))?;
            workers.push(Worker {
                jobs: Some(tx),
                thread: Some(handle),
            });
        }
        Ok(Self {
            settings,
            workers,
            results,
            cancelled,
            next_index: 0,
            received: 0,
        })
    }

    /// Queues the next frame (packed RGB of the configured size); blocks while its worker's
    /// queue is full.
    pub fn push(&mut self, rgb: Vec<u8>) -> Result<()> {
        let expected = self.settings.width as usize * self.settings.height as usize * 3;
        if rgb.len() != expected {
            return Err(Error::InvalidInput(format!(
                "an RGB frame of {} bytes was queued; {}x{} frames have {expected}",
                rgb.len(),
                self.settings.width,
                self.settings.height
            )));
        }
        let seg_len = u64::from(self.settings.segment_frames);
        let segment = self.next_index / seg_len;
        let w = (segment % self.workers.len() as u64) as usize;
        let job = Job {
            index: self.next_index,
            starts_segment: self.next_index.is_multiple_of(seg_len),
            rgb,
        };
        let sent = match &self.workers[w].jobs {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if !sent {
            // The worker stopped: its error (if any) is waiting in the results.
            return Err(self.worker_failure());
        }
        self.next_index += 1;
        Ok(())
    }

    /// Frames pushed so far.
    pub fn pushed(&self) -> u64 {
        self.next_index
    }

    /// Waits for the next encoded frame to come back (in completion order).
    pub fn wait_one(&mut self) -> Result<EncodedFrame> {
        if self.received >= self.next_index {
            return Err(encoder_error(
                "waited for a frame that was never pushed".into(),
            ));
        }
        match self.results.recv() {
            Ok(Ok(frame)) => {
                self.received += 1;
                Ok(frame)
            }
            Ok(Err(msg)) => Err(encoder_error(msg)),
            Err(_) => Err(self.worker_failure()),
        }
    }

    /// Encoded frames that are ready, in completion order (not necessarily frame order).
    pub fn ready(&mut self) -> Result<Vec<EncodedFrame>> {
        let mut out = Vec::new();
        loop {
            match self.results.try_recv() {
                Ok(Ok(frame)) => {
                    self.received += 1;
                    out.push(frame);
                }
                Ok(Err(msg)) => return Err(encoder_error(msg)),
                Err(TryRecvError::Empty) => return Ok(out),
                Err(TryRecvError::Disconnected) => {
                    if self.received == self.next_index {
                        return Ok(out);
                    }
                    return Err(self.worker_failure());
                }
            }
        }
    }

    /// Ends the input, waits for every worker and returns the frames not yet collected.
    pub fn finish(mut self) -> Result<Vec<EncodedFrame>> {
        for worker in &mut self.workers {
            worker.jobs.take();
        }
        let mut out = Vec::new();
        while self.received < self.next_index {
            match self.results.recv() {
                Ok(Ok(frame)) => {
                    self.received += 1;
                    out.push(frame);
                }
                Ok(Err(msg)) => return Err(encoder_error(msg)),
                Err(_) => return Err(self.worker_failure()),
            }
        }
        self.join()?;
        Ok(out)
    }

    fn worker_failure(&mut self) -> Error {
        while let Ok(r) = self.results.try_recv() {
            if let Err(msg) = r {
                return encoder_error(msg);
            }
        }
        match self.join() {
            Err(e) => e,
            Ok(()) => encoder_error("an encoder thread stopped unexpectedly".into()),
        }
    }

    /// Closes the queues and joins every worker, reporting a panic as an error.
    fn join(&mut self) -> Result<()> {
        let mut panicked = false;
        for worker in &mut self.workers {
            worker.jobs.take();
            if let Some(h) = worker.thread.take() {
                panicked |= h.join().is_err();
            }
        }
        if panicked {
            return Err(encoder_error("an encoder thread panicked".into()));
        }
        Ok(())
    }
}

impl Drop for SegmentPool {
    fn drop(&mut self) {
        // Closing the queues ends the workers; drain so none blocks, then join. After a
        // successful finish the workers are already joined and this does nothing.
        self.cancelled.store(true, Ordering::Relaxed);
        for worker in &mut self.workers {
            worker.jobs.take();
        }
        while self.results.try_recv().is_ok() {}
        let _ = self.join();
    }
}

fn encoder_error(msg: String) -> Error {
    Error::InvalidInput(format!("H.264 encoding failed: {msg}"))
}

/// The openh264 configuration of every segment.
fn encoder_config(s: &SegmentSettings) -> EncoderConfig {
    EncoderConfig::new()
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(s.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(s.fps_num as f32 / s.fps_den as f32))
        // Dropping frames to meet the rate would desynchronise audio and video.
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(s.segment_frames))
        .complexity(Complexity::Medium)
        // openh264's RGB -> YUV conversion uses BT.601 limited-range coefficients.
        .vui(VuiConfig::bt601())
}

/// Lowers openh264's log level to errors before its lazy initialisation. The crate sets the
/// level only after initialising, so every segment printed openh264's warning that a bit rate
/// cannot be held without frame skipping (we never skip frames: see [`encoder_config`]) on the
/// user's terminal. Errors still print, and still fail the encode through return codes.
fn quiet_warnings(encoder: &mut Encoder) {
    let mut level = openh264_sys2::WELS_LOG_ERROR;
    // SAFETY: the encoder handle is live; openh264 accepts the trace-level option before
    // initialisation and reads one int from the pointer during the call.
    unsafe {
        encoder.raw_api().set_option(
            openh264_sys2::ENCODER_OPTION_TRACE_LEVEL,
            std::ptr::addr_of_mut!(level).cast(),
        );
    }
}

fn worker(
    settings: SegmentSettings,
    jobs: Receiver<Job>,
    out: Sender<Result<EncodedFrame, String>>,
    cancelled: &AtomicBool,
) {
    let mut encoder: Option<Encoder> = None;
    for job in jobs {
        if cancelled.load(Ordering::Relaxed) {
            return;
        }
        if job.starts_segment {
            // A fresh encoder per segment: the segment starts with an IDR and shares no state.
            match Encoder::with_api_config(OpenH264API::from_source(), encoder_config(&settings)) {
                Ok(mut e) => {
                    quiet_warnings(&mut e);
                    encoder = Some(e);
                }
                Err(e) => {
                    let _ = out.send(Err(format!("cannot create the encoder: {e}")));
                    return;
                }
            }
        }
        let Some(enc) = encoder.as_mut() else {
            let _ = out.send(Err(format!(
                "frame {} arrived before its segment start",
                job.index
            )));
            return;
        };
        let dims = (settings.width as usize, settings.height as usize);
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(&job.rgb, dims));
        let ms = job.index * 1000 * u64::from(settings.fps_den) / u64::from(settings.fps_num);
        let result = enc
            .encode_at(&yuv, Timestamp::from_millis(ms))
            .map(|bits| bits.to_vec())
            .map_err(|e| format!("frame {}: {e}", job.index));
        let failed = result.is_err();
        let sent = out.send(result.map(|annex_b| EncodedFrame {
            index: job.index,
            annex_b,
        }));
        if failed || sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SegmentSettings {
        SegmentSettings {
            fps_num: 25,
            fps_den: 1,
            bitrate_bps: 1_000_000,
            segment_frames: 4,
            width: 32,
            height: 16,
        }
    }

    #[test]
    fn workers_convert_and_encode_every_queued_frame() {
        let mut pool = SegmentPool::start(settings(), 2).unwrap();
        for i in 0..6u8 {
            pool.push(vec![i * 40; 32 * 16 * 3]).unwrap();
        }
        let frames = pool.finish().unwrap();
        let mut indices: Vec<u64> = frames.iter().map(|f| f.index).collect();
        indices.sort_unstable();
        assert_eq!(indices, (0..6).collect::<Vec<_>>());
        assert!(frames.iter().all(|f| !f.annex_b.is_empty()));
    }

    #[test]
    fn a_frame_of_the_wrong_size_is_refused_with_the_sizes() {
        let mut pool = SegmentPool::start(settings(), 1).unwrap();
        let err = pool.push(vec![0; 10]).unwrap_err().to_string();
        assert!(err.contains("10 bytes") && err.contains("32x16"), "{err}");
    }
}
