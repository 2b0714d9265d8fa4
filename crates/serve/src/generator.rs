//! The one module that knows the engine's API (`cadence_pipeline::engine`) and the media
//! crate's input checks. The rest of the server sees only [`ClipGenerator`], [`Catalog`] and
//! the plain types below, so porting to a new engine API touches this file alone.
//!
//! Uploads (held as bytes by the store) go to the engine as in-memory inputs, decoded once;
//! `steps` is set on the engine per job.

use std::path::Path;
use std::time::Duration;

use cadence_core::{CancelToken, Error as CoreError, ErrorKind};
use cadence_media::{DecodedAudio, DecodedImage, MediaSource};
use cadence_pipeline::engine::{
    ClipInfo, ClipSink, Engine, EngineBuilder, Mp4Sink, Progress, StageKind, WeightsSource,
};
use cadence_pipeline::memory::{Offload, PrecisionChoice};
use cadence_pipeline::{GenerationRequest, Limits, Mode, ModelDirs, Resolution, VideoDecoder};
use cadence_weights::{HubSettings, Manifest, WeightsRoot};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::args::{DeviceArg, ServeArgs};

/// The engine's pixel grid: sizes are rounded down to multiples of this.
const GRID: u32 = 32;
/// Smallest side of a base-stage clip.
const MIN_SIDE: u32 = 64;
/// Largest side of a base-stage clip.
const MAX_SIDE: u32 = 1024;
/// Largest base-stage area: the models were trained at 448x256; larger areas cost quadratic
/// attention for little gain.
const MAX_BASE_AREA: u32 = 512 * 512;
/// Size of a base-stage clip when the request names none (the official examples').
const DEFAULT_BASE_SIZE: (u32, u32) = (448, 256);
/// Most denoising steps a request may ask for.
const MAX_STEPS: usize = 100;
/// Clip length when the request names none (the OpenAI API's default).
const DEFAULT_SECONDS: u32 = 4;
/// Longest `input_audio`: the clip uses at most `seconds` of it, and the engine decodes it whole.
const MAX_AUDIO_SECONDS: f64 = 60.0;
/// Quality of the thumbnail JPEG.
const THUMBNAIL_QUALITY: u8 = 85;

/// The super-resolution outputs served: the official examples' presets, landscape and
/// portrait (the library picks each one's base-stage size).
const SR_540P: &[(u32, u32)] = &[(896, 512), (512, 896)];
const SR_1080P: &[(u32, u32)] = &[(1920, 1088), (1088, 1920)];

/// One clip to make, as the API accepted it (stored with the job as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInput {
    /// A served model name (see [`Catalog`]).
    pub model: String,
    pub prompt: String,
    /// Clip length in whole seconds.
    pub seconds: u32,
    /// Output size in pixels, on the engine's grid.
    pub width: u32,
    pub height: u32,
    pub seed: u64,
    /// Denoising steps of the base stage; the model's own when `None`.
    pub steps: Option<usize>,
    /// Whether an `input_reference` image was uploaded.
    pub image: bool,
    /// Whether an `input_audio` file was uploaded.
    pub audio: bool,
    /// Whether the size is a super-resolution output (made from a smaller base stage).
    pub super_resolution: bool,
}

/// The uploaded files of a job.
#[derive(Debug, Clone, Default)]
pub struct Uploads {
    pub image: Option<Vec<u8>>,
    pub audio: Option<Vec<u8>>,
}

/// What a finished generation reports: the object shows what was made, not what was asked.
#[derive(Debug, Clone)]
pub struct Generated {
    pub width: u32,
    pub height: u32,
    /// Length of the clip, rounded to whole seconds (audio-driven clips follow the audio).
    pub seconds: u32,
    /// A JPEG of the first frame.
    pub thumbnail: Vec<u8>,
    /// Seconds spent in each stage, by stage name.
    pub stages: Vec<(&'static str, f64)>,
}

/// Where a running generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// Stage name (`encode_text`, `denoise_base`, `decode_video`, ...).
    pub stage: &'static str,
    /// Steps (or frames) of the stage done.
    pub step: u64,
    /// Steps (or frames) of the stage, when known.
    pub steps: Option<u64>,
    /// Of the whole clip, 0-99 (100 is set once the clip is stored).
    pub percent: u8,
}

/// Who has to act on a failed generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenErrorKind {
    /// The request or an upload is unusable.
    BadInput,
    /// Weights are missing or damaged.
    Weights,
    /// The device ran out of memory.
    OutOfMemory,
    /// The device failed.
    Device,
    /// The job was stopped (deleted, or the server is shutting down).
    Cancelled,
    /// Anything else.
    Internal,
}

/// A failed generation: its kind and a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GenError {
    pub kind: GenErrorKind,
    pub message: String,
}

impl GenError {
    fn new(kind: GenErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The `error.code` of a failed video object.
    pub fn code(&self) -> &'static str {
        match self.kind {
            GenErrorKind::BadInput => "invalid_input",
            GenErrorKind::Weights => "weights_unavailable",
            GenErrorKind::OutOfMemory => "out_of_memory",
            GenErrorKind::Device => "device_error",
            GenErrorKind::Cancelled => "cancelled",
            GenErrorKind::Internal => "internal_error",
        }
    }
}

impl From<CoreError> for GenError {
    fn from(e: CoreError) -> Self {
        let kind = match e.kind() {
            ErrorKind::Cancelled => GenErrorKind::Cancelled,
            ErrorKind::InvalidInput => GenErrorKind::BadInput,
            ErrorKind::Weights => GenErrorKind::Weights,
            ErrorKind::OutOfMemory => GenErrorKind::OutOfMemory,
            ErrorKind::Device => GenErrorKind::Device,
            ErrorKind::Io | ErrorKind::Internal => GenErrorKind::Internal,
        };
        Self::new(kind, e.to_string())
    }
}

/// Memory of a GPU, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct GpuMemory {
    pub used: u64,
    pub total: u64,
}

/// Makes clips; one per worker thread, owned by it.
pub trait ClipGenerator {
    /// Generates `job` into an MP4 at `out` (nothing is left there on error), reporting each
    /// stage and step to `progress`; stops with [`GenErrorKind::Cancelled`] within one
    /// denoising step of `cancel` firing.
    fn generate(
        &mut self,
        job: &JobInput,
        uploads: &Uploads,
        out: &Path,
        progress: &mut dyn FnMut(Update),
        cancel: &CancelToken,
    ) -> Result<Generated, GenError>;

    /// The device's memory, on a GPU.
    fn gpu_memory(&self) -> Option<GpuMemory>;
}

/// A request's fields as the API received them, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct Requested {
    pub prompt: String,
    pub model: Option<String>,
    pub seconds: Option<String>,
    pub size: Option<String>,
    pub seed: Option<u64>,
    pub steps: Option<usize>,
    pub negative_prompt: Option<String>,
    pub precision: Option<String>,
    pub image: bool,
    pub audio: bool,
}

/// A request the server cannot make: the field and a sentence naming the limit and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub param: &'static str,
    pub message: String,
}

impl InputError {
    fn new(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param,
            message: message.into(),
        }
    }
}

/// How a served model's sizes are chosen.
#[derive(Debug, Clone)]
enum Sizes {
    /// Base stage only: any size on the grid within the limits.
    Base,
    /// Base stage then super-resolution: one of these outputs.
    SuperResolution(&'static [(u32, u32)]),
}

/// One model name the API accepts.
#[derive(Debug, Clone)]
struct ServedModel {
    name: String,
    sizes: Sizes,
}

impl ServedModel {
    fn describe_sizes(&self) -> String {
        match &self.sizes {
            Sizes::Base => format!(
                "WxH with sides from {MIN_SIDE} to {MAX_SIDE} px (rounded down to multiples of \
                 {GRID}) and at most {MAX_BASE_AREA} pixels, e.g. 448x256 or 256x448"
            ),
            Sizes::SuperResolution(list) => list
                .iter()
                .map(|(w, h)| format!("{w}x{h}"))
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }

    fn default_size(&self) -> (u32, u32) {
        match &self.sizes {
            Sizes::Base => DEFAULT_BASE_SIZE,
            Sizes::SuperResolution(list) => list[0],
        }
    }
}

/// What the engine is loaded with: decided by the flags, the same on every server of a fleet,
/// so an API-only front knows what the workers make.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    demo: bool,
    mode: Mode,
    precision: PrecisionChoice,
    max_memory: Option<u64>,
    offload: Offload,
    weights_dir: Option<std::path::PathBuf>,
    /// The longest clip served: what the memory plan is made for.
    max_seconds: u32,
}

impl EngineConfig {
    pub fn from_args(args: &ServeArgs) -> Self {
        Self {
            demo: args.demo,
            mode: Mode {
                dit: args.model,
                // The demo's image encoder is tiny: always there.
                image: args.image || args.demo,
                reference_audio: true,
                resolution: args.resolution,
                video_decoder: VideoDecoder::Turbo,
            },
            precision: args.memory.precision,
            max_memory: args.memory.max_memory,
            offload: args.memory.offload,
            weights_dir: args.weights_dir.clone(),
            max_seconds: args.max_seconds.min(Limits::default().max_seconds),
        }
    }
}

/// The model names, sizes and options this server (or fleet) accepts, and the checks of a
/// request against them.
#[derive(Debug, Clone)]
pub struct Catalog {
    models: Vec<ServedModel>,
    image: bool,
    precision: PrecisionChoice,
    max_seconds: u32,
    max_prompt_chars: usize,
}

impl Catalog {
    pub fn new(config: &EngineConfig, max_seconds: u32, max_prompt_chars: usize) -> Self {
        let base = format!("magihuman-{}", config.mode.dit.name());
        let mut models = vec![ServedModel {
            name: base.clone(),
            sizes: Sizes::Base,
        }];
        let sr = match config.mode.resolution {
            Resolution::P256 => None,
            Resolution::P540 => Some(SR_540P),
            Resolution::P1080 => Some(SR_1080P),
        };
        if let Some(list) = sr {
            models.push(ServedModel {
                name: format!("{base}-{}", config.mode.resolution.name()),
                sizes: Sizes::SuperResolution(list),
            });
        }
        Self {
            models,
            image: config.mode.image,
            precision: config.precision,
            // The engine's own bound is the ceiling.
            max_seconds: max_seconds.min(Limits::default().max_seconds),
            max_prompt_chars,
        }
    }

    /// The served model names, the default first.
    pub fn model_names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    /// Checks a request's fields and turns them into a job (uploads are checked by
    /// [`check_uploads`]). `seed` is used when the request names none.
    pub fn resolve(&self, r: &Requested, seed: u64) -> Result<JobInput, InputError> {
        let chars = r.prompt.chars().count();
        if r.prompt.trim().is_empty() {
            return Err(InputError::new(
                "prompt",
                "prompt is empty; describe the clip to generate",
            ));
        }
        if chars > self.max_prompt_chars {
            return Err(InputError::new(
                "prompt",
                format!(
                    "prompt has {chars} characters, more than this server's limit of {}; \
                     shorten it",
                    self.max_prompt_chars
                ),
            ));
        }
        let model = match &r.model {
            None => &self.models[0],
            Some(name) => self
                .models
                .iter()
                .find(|m| &m.name == name)
                .ok_or_else(|| {
                    InputError::new(
                        "model",
                        format!(
                            "model {name:?} is not served here; this server makes {}",
                            self.models
                                .iter()
                                .map(|m| format!("{} ({})", m.name, m.describe_sizes()))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    )
                })?,
        };
        let seconds = match &r.seconds {
            None => DEFAULT_SECONDS.min(self.max_seconds),
            Some(s) => s
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=self.max_seconds).contains(n))
                .ok_or_else(|| {
                    InputError::new(
                        "seconds",
                        format!(
                            "seconds {s:?} is not a whole number from 1 to {}; send e.g. \"4\"",
                            self.max_seconds
                        ),
                    )
                })?,
        };
        let (width, height) = match &r.size {
            None => model.default_size(),
            Some(s) => self.size(model, s)?,
        };
        if let Some(steps) = r.steps {
            if !(1..=MAX_STEPS).contains(&steps) {
                return Err(InputError::new(
                    "steps",
                    format!("steps {steps} is out of range; send 1 to {MAX_STEPS}"),
                ));
            }
        }
        if r.negative_prompt.as_deref().is_some_and(|n| !n.is_empty()) {
            return Err(InputError::new(
                "negative_prompt",
                "negative_prompt is not supported yet: the engine uses the reference's fixed \
                 negative prompt; leave the field out",
            ));
        }
        if let Some(p) = &r.precision {
            let served = match self.precision {
                PrecisionChoice::Bf16 => Some("bf16"),
                PrecisionChoice::Fp8 => Some("fp8"),
                PrecisionChoice::Auto => None,
            };
            if served != Some(p.as_str()) {
                let fix = match served {
                    Some(name) => {
                        format!("this server runs {name}; leave the field out or send {name:?}")
                    }
                    None => {
                        "this server picks the precision from its memory plan; leave the field \
                             out (or start it with --precision bf16 or fp8)"
                            .to_string()
                    }
                };
                return Err(InputError::new(
                    "precision",
                    format!("precision {p:?} is not served here: {fix}"),
                ));
            }
        }
        if r.image && !self.image {
            return Err(InputError::new(
                "input_reference",
                "this server was started without the image encoder, so it cannot take an \
                 input_reference; restart it with --image (after `cadence fetch --image`)",
            ));
        }
        let job = JobInput {
            model: model.name.clone(),
            prompt: r.prompt.clone(),
            seconds,
            width,
            height,
            seed: r.seed.unwrap_or(seed),
            steps: r.steps,
            image: r.image,
            audio: r.audio,
            super_resolution: matches!(model.sizes, Sizes::SuperResolution(_)),
        };
        // The engine's own checks, with its messages.
        let (req, _) = request(&job, &Uploads::default());
        req.validate(&Limits::default())
            .map_err(|e| InputError::new("prompt", e.to_string()))?;
        Ok(job)
    }

    /// `WxH` for `model`, on the grid, or an error listing what the model makes.
    fn size(&self, model: &ServedModel, text: &str) -> Result<(u32, u32), InputError> {
        let bad = || {
            InputError::new(
                "size",
                format!(
                    "size {text:?} cannot be made by {}; it makes {}",
                    model.name,
                    model.describe_sizes()
                ),
            )
        };
        let (w, h) = text
            .split_once(['x', 'X'])
            .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)))
            .ok_or_else(bad)?;
        match &model.sizes {
            Sizes::Base => {
                let (w, h) = (w / GRID * GRID, h / GRID * GRID);
                let side = MIN_SIDE..=MAX_SIDE;
                if side.contains(&w) && side.contains(&h) && w * h <= MAX_BASE_AREA {
                    Ok((w, h))
                } else {
                    Err(bad())
                }
            }
            Sizes::SuperResolution(list) => list
                .iter()
                .copied()
                .find(|&out| out == (w, h))
                .ok_or_else(bad),
        }
    }
}

/// The engine's request for `job` with its uploads, and whether the model runs
/// super-resolution.
fn request(job: &JobInput, uploads: &Uploads) -> (GenerationRequest, bool) {
    let size = (job.width, job.height);
    // Any super-resolution preset computes the base size the same way.
    let ((w, h), sr_size) = if job.super_resolution {
        Resolution::P540.stage_sizes(Some(size))
    } else {
        (size, None)
    };
    let source = |bytes: &Option<Vec<u8>>| bytes.as_deref().map(|b| MediaSource::Bytes(b.into()));
    let request = GenerationRequest {
        prompt: job.prompt.clone(),
        image: job
            .image
            .then(|| source(&uploads.image))
            .flatten()
            .map(Into::into),
        audio: job
            .audio
            .then(|| source(&uploads.audio))
            .flatten()
            .map(Into::into),
        seconds: job.seconds,
        width: w,
        height: h,
        sr_width: sr_size.map(|s| s.0),
        sr_height: sr_size.map(|s| s.1),
        seed: job.seed,
    };
    (request, sr_size.is_some())
}

/// Decodes the uploads as the engine will, so an unusable file is refused when it is
/// submitted rather than failing the job later. Blocking: decodes whole files.
pub fn check_uploads(job: &JobInput, uploads: &Uploads) -> Result<(), InputError> {
    let (req, _) = request(job, uploads);
    if let (true, Some(bytes)) = (job.image, &uploads.image) {
        let source = MediaSource::Bytes(bytes.as_slice().into());
        DecodedImage::decode(&source)
            .and_then(|image| image.reference(req.width, req.height))
            .map_err(|e| {
                InputError::new(
                    "input_reference",
                    format!(
                        "input_reference is not a usable image ({}); send a PNG, JPEG or WebP file",
                        short(&e, &source)
                    ),
                )
            })?;
    }
    if let (true, Some(bytes)) = (job.audio, &uploads.audio) {
        let audio_error = |why: String| {
            InputError::new(
                "input_audio",
                format!(
                    "input_audio is not usable audio ({why}); send a WAV, FLAC, MP3 or M4A file"
                ),
            )
        };
        let seconds = audio_seconds(bytes, MAX_AUDIO_SECONDS).map_err(audio_error)?;
        if seconds > MAX_AUDIO_SECONDS {
            return Err(InputError::new(
                "input_audio",
                format!(
                    "input_audio lasts more than {MAX_AUDIO_SECONDS} s; the clip uses at most \
                     its first --max-seconds, so send only those (e.g. ffmpeg -i voice.mp3 -t 10 \
                     voice.wav)"
                ),
            ));
        }
        let source = MediaSource::Bytes(bytes.as_slice().into());
        DecodedAudio::decode(&source)
            .and_then(|audio| audio.reference(&Default::default()))
            .map_err(|e| audio_error(short(&e, &source)))?;
    }
    Ok(())
}

/// Seconds of audio in `bytes`, from the container's packet timestamps: packets are read, not
/// decoded, so memory stays bounded whatever the file claims. Stops reading past `limit`.
fn audio_seconds(bytes: &[u8], limit: f64) -> Result<f64, String> {
    use symphonia::core::formats::probe::Hint;
    use symphonia::core::formats::{FormatOptions, TrackType};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;

    let source = MediaSourceStream::new(
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        Default::default(),
    );
    let mut format = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            source,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| format!("unrecognised format: {e}"))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or("no audio track")?;
    let (id, time_base) = (track.id, track.time_base.ok_or("no time base")?);
    let seconds = |ticks: u64| {
        ticks as f64 * f64::from(time_base.numer.get()) / f64::from(time_base.denom.get())
    };
    let mut end = track.duration.map_or(0, |d| d.get());
    while seconds(end) <= limit {
        match format.next_packet() {
            Ok(Some(p)) if p.track_id == id => {
                end = end.max((p.pts.get().max(0) as u64).saturating_add(p.dur.get()));
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return Err(format!("corrupt: {e}")),
        }
    }
    Ok(seconds(end))
}

/// A media error's message without the name the library gives the in-memory `source` (the
/// client knows which upload it sent).
fn short(e: &CoreError, source: &MediaSource) -> String {
    let message = match e {
        CoreError::InvalidInput(m) => m.clone(),
        other => other.to_string(),
    };
    message.replace(&format!(" {source}"), "")
}

/// [`ClipGenerator`] over the [`Engine`].
pub struct EngineGenerator {
    engine: Engine,
    /// The model's own number of base steps, restored after a job that set its own.
    default_steps: usize,
    device: Device,
}

/// Loads the engine of `config` on `device` (blocking; minutes for real weights), placed as
/// its memory plan says for the longest clip served.
pub fn load(config: &EngineConfig, device: DeviceArg) -> Result<EngineGenerator, GenError> {
    let device = match device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda(i) => cuda_device(i)?,
    };
    let weights = if config.demo {
        if !device.is_cpu() {
            return Err(GenError::new(
                GenErrorKind::Device,
                "the demo model runs on the CPU only; use --devices cpu",
            ));
        }
        WeightsSource::Demo
    } else {
        WeightsSource::Folders(model_dirs(config)?)
    };
    let ((width, height), sr) = config.mode.resolution.stage_sizes(None);
    let mut design = GenerationRequest::new("plan");
    (design.width, design.height, design.seconds) = (width, height, config.max_seconds);
    (design.sr_width, design.sr_height) = (sr.map(|s| s.0), sr.map(|s| s.1));
    let engine = EngineBuilder::new(weights)
        .mode(config.mode)
        .device(device.clone())
        .precision(config.precision)
        .max_memory(config.max_memory)
        .offload(config.offload)
        .plan_for(&design)?
        .build(&mut ())?;
    let default_steps = engine.sampler_config().base.num_steps;
    Ok(EngineGenerator {
        engine,
        default_steps,
        device,
    })
}

/// The component folders of the installed weights (a weights folder, or the HF cache).
fn model_dirs(config: &EngineConfig) -> Result<ModelDirs, GenError> {
    let weights = |e: cadence_weights::Error| GenError::new(GenErrorKind::Weights, e.to_string());
    let hub = HubSettings::from_env().map_err(weights)?;
    let root = WeightsRoot::from_settings(config.weights_dir.as_deref(), &hub);
    let manifest = Manifest::embedded().map_err(weights)?;
    let mut dirs = ModelDirs::new();
    for id in config.mode.components() {
        let component = manifest.get(id).map_err(weights)?;
        dirs.insert(id, root.component_dir(component).map_err(weights)?.dir);
    }
    Ok(dirs)
}

fn cuda_device(index: usize) -> Result<Device, GenError> {
    Device::new_cuda(index).map_err(|e| {
        GenError::new(
            GenErrorKind::Device,
            format!(
                "GPU {index} is not usable ({}); check `nvidia-smi`, a build with --features \
                 cuda, or use --devices cpu",
                e.to_string().lines().next().unwrap_or("unknown error")
            ),
        )
    })
}

impl ClipGenerator for EngineGenerator {
    fn generate(
        &mut self,
        job: &JobInput,
        uploads: &Uploads,
        out: &Path,
        progress: &mut dyn FnMut(Update),
        cancel: &CancelToken,
    ) -> Result<Generated, GenError> {
        let (request, sr) = request(job, uploads);
        self.engine
            .set_base_steps(job.steps.unwrap_or(self.default_steps))?;
        let mut relay = Relay {
            callback: progress,
            sr,
            step: 0,
            total: None,
            stages: Vec::new(),
        };
        let mut sink = ThumbnailSink {
            mp4: Mp4Sink::new(out),
            info: None,
            first_frame: None,
        };
        let report = self
            .engine
            .generate(&request, &mut sink, &mut relay, cancel)?;
        let (frame, info) = (sink.first_frame.take(), sink.info);
        sink.mp4.finish()?;
        let thumbnail = match (frame, info) {
            (Some(rgb), Some(info)) => jpeg(&rgb, info.width, info.height)?,
            _ => {
                return Err(GenError::new(
                    GenErrorKind::Internal,
                    "the clip has no frames",
                ))
            }
        };
        Ok(Generated {
            width: report.info.width,
            height: report.info.height,
            seconds: (report.info.seconds().round() as u32).max(1),
            thumbnail,
            stages: relay.stages,
        })
    }

    fn gpu_memory(&self) -> Option<GpuMemory> {
        gpu_memory(&self.device)
    }
}

#[cfg(feature = "cuda")]
fn gpu_memory(device: &Device) -> Option<GpuMemory> {
    let Device::Cuda(cuda) = device else {
        return None;
    };
    let (free, total) = cuda.cuda_stream().context().mem_get_info().ok()?;
    Some(GpuMemory {
        used: (total - free) as u64,
        total: total as u64,
    })
}

#[cfg(not(feature = "cuda"))]
fn gpu_memory(_device: &Device) -> Option<GpuMemory> {
    None
}

/// A frame as a JPEG.
fn jpeg(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, GenError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, THUMBNAIL_QUALITY)
        .encode(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| GenError::new(GenErrorKind::Internal, format!("thumbnail: {e}")))?;
    Ok(out)
}

/// Writes the MP4 and keeps the first frame for the thumbnail.
struct ThumbnailSink {
    mp4: Mp4Sink,
    info: Option<ClipInfo>,
    first_frame: Option<Vec<u8>>,
}

impl ClipSink for ThumbnailSink {
    fn start(&mut self, info: &ClipInfo) -> cadence_core::Result<()> {
        self.info = Some(*info);
        self.mp4.start(info)
    }

    fn frames(&mut self, rgb: &[u8], count: usize) -> cadence_core::Result<()> {
        if self.first_frame.is_none() && count > 0 {
            self.first_frame = Some(rgb[..rgb.len() / count].to_vec());
        }
        self.mp4.frames(rgb, count)
    }

    fn audio(&mut self, interleaved: &[f32]) -> cadence_core::Result<()> {
        self.mp4.audio(interleaved)
    }
}

/// Turns the engine's stage events into [`Update`]s with an overall percentage.
struct Relay<'a> {
    callback: &'a mut dyn FnMut(Update),
    /// Whether a super-resolution stage runs (it shares the denoising span).
    sr: bool,
    step: u64,
    total: Option<u64>,
    stages: Vec<(&'static str, f64)>,
}

impl Relay<'_> {
    /// The span of the overall percentage a stage covers. Denoising dominates on GPUs;
    /// decoding is a fair share on the CPU.
    fn span(&self, stage: StageKind) -> (u8, u8) {
        match (stage, self.sr) {
            (StageKind::LoadModels | StageKind::EncodeText, _) => (0, 5),
            (StageKind::EncodeImage | StageKind::EncodeAudio, _) => (5, 8),
            (StageKind::DenoiseBase, false) => (8, 80),
            (StageKind::DenoiseBase, true) => (8, 45),
            (StageKind::DenoiseSuperResolution, _) => (45, 80),
            (StageKind::DecodeVideo, _) => (80, 97),
            (StageKind::DecodeAudio, _) => (97, 99),
        }
    }

    fn emit(&mut self, stage: StageKind) {
        let (lo, hi) = self.span(stage);
        let done = match self.total {
            Some(t) if t > 0 => (self.step.min(t) as f64 / t as f64 * f64::from(hi - lo)) as u8,
            _ => 0,
        };
        (self.callback)(Update {
            stage: stage.key(),
            step: self.step,
            steps: self.total,
            percent: lo + done,
        });
    }
}

impl Progress for Relay<'_> {
    fn stage_started(&mut self, stage: StageKind, total_steps: Option<u64>) {
        self.step = 0;
        self.total = total_steps;
        self.emit(stage);
    }

    fn advance(&mut self, stage: StageKind, steps: u64) {
        self.step += steps;
        self.emit(stage);
    }

    fn stage_finished(&mut self, stage: StageKind, elapsed: Duration) {
        self.stages.push((stage.key(), elapsed.as_secs_f64()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(flags: &[&str]) -> Catalog {
        let args = crate::args::parse_for_tests(flags);
        Catalog::new(
            &EngineConfig::from_args(&args),
            args.max_seconds,
            args.max_prompt_chars,
        )
    }

    fn requested(prompt: &str) -> Requested {
        Requested {
            prompt: prompt.into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_round_sizes_and_name_what_is_served() {
        let c = catalog(&["--demo", "--resolution", "540p"]);
        assert_eq!(
            c.model_names(),
            ["magihuman-distilled", "magihuman-distilled-540p"]
        );
        let job = c.resolve(&requested("a cat"), 7).unwrap();
        assert_eq!(
            (job.width, job.height, job.seconds, job.seed),
            (448, 256, 4, 7)
        );
        let mut r = requested("a cat");
        r.size = Some("100x70".into());
        let job = c.resolve(&r, 7).unwrap();
        assert_eq!((job.width, job.height), (96, 64));
        r.model = Some("magihuman-distilled-540p".into());
        r.size = Some("512x896".into());
        let job = c.resolve(&r, 7).unwrap();
        let (req, sr) = request(&job, &Uploads::default());
        assert!(sr);
        assert_eq!(
            (req.width, req.height, req.sr_width, req.sr_height),
            (256, 448, Some(512), Some(896))
        );
    }

    #[test]
    fn refusals_name_the_field_and_what_is_allowed() {
        let c = catalog(&[]);
        let mut r = requested("a cat");
        r.model = Some("sora-2".into());
        let e = c.resolve(&r, 1).unwrap_err();
        assert_eq!(e.param, "model");
        assert!(
            e.message.contains("magihuman-distilled (WxH"),
            "{}",
            e.message
        );
        let mut r = requested("a cat");
        r.size = Some("720x1280".into());
        let e = c.resolve(&r, 1).unwrap_err();
        assert!(e.message.contains("e.g. 448x256"), "{}", e.message);
        for bad in ["0", "11", "4.5", "four"] {
            let mut r = requested("a cat");
            r.seconds = Some(bad.into());
            assert_eq!(c.resolve(&r, 1).unwrap_err().param, "seconds", "{bad}");
        }
        let e = c.resolve(&requested(&"a".repeat(4001)), 1).unwrap_err();
        assert!(e.message.contains("4001 characters"), "{}", e.message);
        let mut r = requested("a cat");
        r.image = true;
        assert_eq!(c.resolve(&r, 1).unwrap_err().param, "input_reference");
        let mut r = requested("a cat");
        r.precision = Some("fp8".into());
        let e = c.resolve(&r, 1).unwrap_err().message;
        assert!(
            e.contains("picks the precision from its memory plan"),
            "{e}"
        );
        let forced = catalog(&["--demo", "--precision", "bf16"]);
        let e = forced.resolve(&r, 1).unwrap_err().message;
        assert!(e.contains("runs bf16"), "{e}");
        r.precision = Some("bf16".into());
        assert!(forced.resolve(&r, 1).is_ok());
        let mut r = requested("a cat");
        r.steps = Some(0);
        assert_eq!(c.resolve(&r, 1).unwrap_err().param, "steps");
    }

    /// A 16-bit mono WAV of `seconds` of a 440 Hz tone at 8 kHz.
    fn wav(seconds: u32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..seconds * 8000 {
            let t = i as f32 / 8000.0;
            w.write_sample(((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn long_or_broken_audio_is_refused_before_it_is_decoded() {
        let c = catalog(&["--demo"]);
        let mut r = requested("she speaks");
        r.audio = true;
        r.size = Some("64x64".into());
        let job = c.resolve(&r, 1).unwrap();
        let check = |bytes: Vec<u8>| {
            let uploads = Uploads {
                image: None,
                audio: Some(bytes),
            };
            check_uploads(&job, &uploads)
        };
        assert_eq!(audio_seconds(&wav(3), 60.0).unwrap(), 3.0);
        check(wav(3)).unwrap();
        let e = check(wav(61)).unwrap_err();
        assert_eq!(e.param, "input_audio");
        assert!(e.message.contains("more than 60 s"), "{}", e.message);
        let e = check(b"RIFF\x10\x00\x00\x00WAVEjunk".to_vec()).unwrap_err();
        assert!(e.message.contains("not usable audio"), "{}", e.message);
        // Refusals name the upload, not the library's name for in-memory bytes.
        let mut silent = wav(1);
        let n = silent.len();
        silent[n - 16_000..].fill(0);
        let e = check(silent).unwrap_err();
        assert!(e.message.contains("silent"), "{}", e.message);
        assert!(!e.message.contains("in-memory bytes"), "{}", e.message);
    }

    #[test]
    fn engine_errors_keep_their_kind() {
        assert_eq!(
            GenError::from(CoreError::Cancelled).kind,
            GenErrorKind::Cancelled
        );
        let e = GenError::from(CoreError::InvalidInput("bad".into()));
        assert_eq!(
            (e.kind, e.code()),
            (GenErrorKind::BadInput, "invalid_input")
        );
        let e = GenError::from(CoreError::MissingWeights("no distill".into()));
        assert_eq!(e.kind, GenErrorKind::Weights);
    }
}
