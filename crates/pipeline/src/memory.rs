//! The device-memory plan of a generation: what is resident on the GPU in each stage, and which
//! offloading a `max_memory` budget needs.
//!
//! A generation runs four stages, one after the other:
//!
//! 1. **encode**: the T5Gemma-9B text encoder (9.24 B parameters, 18.5 GB in bf16) turns the
//!    prompt into the DiT's context, and the conditioning encoders run (the Wan2.2 VAE encoder
//!    for a first-frame image, the Oobleck encoder for user audio). The text encoder is needed
//!    for nothing else, so it **leaves the GPU** before the DiTs arrive (or runs on the host);
//! 2. **base**: the base (or distilled) DiT samples the 256p latent;
//! 3. **sr**: the super-resolution DiT refines it at 540p or 1080p (absent without SR);
//! 4. **decode**: Turbo-VAED and the Oobleck decoder turn the latents into frames and sound.
//!
//! Sizes come from the real configurations: the DiTs' weights and per-forward activations from
//! [`cadence_model::footprint`] (a 15.3 B model: 30.6 GB with bf16 GEMMs, 15.4 GB with FP8
//! ones; activations bounded by the model's token pieces), the text encoder's from
//! [`TextEncoderConfig`], the codecs' from their parameter counts and the decoders' window
//! arithmetic (`cadence_codec` docs: Turbo-VAED keeps three activations of
//! `128 ch × 36 frames × H/2 × W/2` alive, about 15 GB at 1080p in bf16).
//!
//! [`plan_memory`] picks, for a budget, the first arrangement of this ladder whose every stage
//! fits, so offloading happens only when needed:
//!
//! | rung | DiT weights | both DiTs resident | text encoder |
//! |---|---|---|---|
//! | 1 | bf16 (reference numerics) | yes | GPU, then freed |
//! | 2 | FP8 | yes | GPU, then freed |
//! | 3 | FP8 | no: the base DiT waits in host RAM while SR runs, and back | GPU, then freed |
//! | 4 | FP8 | no | runs on the host (CPU) |
//!
//! Each rung first keeps the DiTs on the GPU through the decode, then tries evicting them to
//! host RAM for it. A precision the user forces ([`PrecisionChoice`]) keeps only its rungs
//! (bf16: the same placements in bf16). Every arrangement adds [`RESERVE`] for the CUDA
//! context, library workspaces and the caching allocator's slack.
//!
//! Swapping and eviction cost nothing extra in a one-shot run (each model is loaded once
//! anyway); a warm engine serving many clips pays the host-device copies per clip
//! ([`MemoryPlan::transfer_per_clip`]: the 18.5 GB text encoder, plus 61 GB with FP8 DiTs
//! swapped, about 1.5 s over PCIe 5 at 50 GB/s).

use std::fmt::{self, Write as _};

use candle_core::DType;

use cadence_core::{Error, Result};
use cadence_model::footprint::{forward_activation_bytes, weight_bytes};
use cadence_model::packing::TokenLayout;
use cadence_model::{DitVariant, LoadOptions};
use cadence_text::{TextEncoderConfig, CONTEXT_ROWS};

use crate::shapes::{LatentShapes, LatentSize, AUDIO_CHANNELS, PATCH, VIDEO_CHANNELS};

/// One gigabyte (10⁹ bytes), the unit of `--max-memory` and of the tables.
pub const GB: u64 = 1_000_000_000;

/// Device memory held back from every plan: the CUDA context (about 0.5 GB on an H100), the
/// cuBLAS/cuBLASLt workspaces, the kernels' modules and the caching allocator's slack. An
/// estimate until the benchmark harness measures it.
pub const RESERVE: u64 = 2 * GB;

/// Turbo-VAED parameters (fixtures' codec manifest), held in bf16.
const TURBO_VAED_PARAMS: u64 = 107_122_892;
/// Wan2.2 VAE encoder parameters (first-frame image conditioning), held in bf16.
const WAN_ENCODER_PARAMS: u64 = 149_627_776;
/// Oobleck parameters (encoder and decoder, stored counts), held in f32.
const OOBLECK_PARAMS: u64 = 156_112_514;
/// Audio sample rate of the Oobleck decoder.
const AUDIO_RATE: u64 = 44_100;
/// Frames Turbo-VAED decodes per window (9 latent frames).
const DECODE_WINDOW_FRAMES: u64 = 36;

/// Which precision the DiTs' GEMM weights may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PrecisionChoice {
    /// bf16 when it fits with both DiTs resident, FP8 otherwise.
    #[default]
    Auto,
    /// bf16 only (offload instead of FP8).
    Bf16,
    /// FP8 only (Hopper's fast path, whatever the budget).
    Fp8,
}

/// The DiTs' GEMM weights in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DitPrecision {
    /// bf16: the reference numerics.
    Bf16,
    /// FP8 e4m3 with per-channel scales.
    Fp8,
}

impl DitPrecision {
    /// How the DiTs are loaded in this precision.
    pub fn load_options(self) -> LoadOptions {
        match self {
            Self::Bf16 => LoadOptions::dense(DType::BF16),
            Self::Fp8 => LoadOptions::fp8(DType::BF16),
        }
    }
}

/// Where the text encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoderPlacement {
    /// On the GPU, freed before the DiTs are loaded.
    Gpu,
    /// On the host (CPU compute, 18.5 GB of RAM): slower, but no GPU memory.
    Host,
}

/// How the base and SR DiTs share the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DitPlacement {
    /// One DiT only (no super-resolution).
    Single,
    /// Both on the GPU for the whole run.
    BothResident,
    /// One at a time: the base DiT waits in host RAM while the SR DiT runs.
    Swapped,
}

/// The stages of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryStage {
    /// Text and conditioning encoders.
    Encode,
    /// The base DiT's sampling loop.
    Base,
    /// The SR DiT's sampling loop.
    SuperResolution,
    /// The video and audio decoders.
    Decode,
}

impl fmt::Display for MemoryStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Encode => "encode",
            Self::Base => "base",
            Self::SuperResolution => "sr",
            Self::Decode => "decode",
        })
    }
}

/// What a generation needs memory for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryJob {
    /// The latent shapes (clip length, base and SR sizes).
    pub shapes: LatentShapes,
    /// Text rows the DiT reads (at most [`CONTEXT_ROWS`]).
    pub text_tokens: usize,
    /// Whether a first-frame image is encoded (TI2V).
    pub image: bool,
    /// Whether user audio is encoded (audio-driven mode).
    pub user_audio: bool,
    /// The SR model, when the job has a super-resolution stage.
    pub sr_variant: Option<DitVariant>,
}

impl MemoryJob {
    /// A text-to-video job of `seconds` at the base size, optionally refined to `sr`, with the
    /// longest prompt context (the worst case).
    pub fn clip(
        seconds: usize,
        base: LatentSize,
        sr: Option<(LatentSize, DitVariant)>,
    ) -> Result<Self> {
        let shapes = LatentShapes::new(
            crate::shapes::audio_frames_for_seconds(seconds),
            base,
            sr.map(|(s, _)| s),
        )?;
        Ok(Self {
            shapes,
            text_tokens: CONTEXT_ROWS,
            image: false,
            user_audio: false,
            sr_variant: sr.map(|(_, v)| v),
        })
    }

    /// DiT tokens of a forward at latent size `size`.
    pub fn tokens(&self, size: LatentSize) -> usize {
        TokenLayout {
            latent_channels: VIDEO_CHANNELS,
            frames: self.shapes.latent_frames,
            rows: size.height / PATCH,
            cols: size.width / PATCH,
            patch: PATCH,
            audio: self.shapes.audio_frames,
            text: self.text_tokens,
        }
        .len()
    }

    /// The size the decoders work at (the SR size when there is one).
    fn output_size(&self) -> LatentSize {
        self.shapes.sr.unwrap_or(self.shapes.base)
    }

    /// Seconds of audio (at 25 audio latents per second).
    fn seconds(&self) -> u64 {
        (self.shapes.audio_frames as u64).div_ceil(crate::shapes::FPS as u64)
    }
}

/// One stage's resident set: named parts and their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageMemory {
    /// The stage.
    pub stage: MemoryStage,
    /// `(what, bytes)`, reserve included.
    pub parts: Vec<(&'static str, u64)>,
}

impl StageMemory {
    /// The stage's total.
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|(_, b)| b).sum()
    }
}

/// The plan for one job under one budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The budget it was made for.
    pub budget: u64,
    /// The DiTs' GEMM weights.
    pub precision: DitPrecision,
    /// Where the text encoder runs.
    pub text_encoder: TextEncoderPlacement,
    /// How the DiTs share the GPU.
    pub dits: DitPlacement,
    /// Whether the DiTs leave the GPU (for host RAM) while the decoders run.
    pub dits_leave_for_decode: bool,
    /// The resident set of every stage the job has.
    pub stages: Vec<StageMemory>,
    /// Host RAM the offloaded models need.
    pub host_bytes: u64,
    /// Host-to-device and back copies per clip for a warm engine that keeps serving (a
    /// one-shot run loads each model once anyway): the text encoder when it leaves the GPU,
    /// the DiTs when they are swapped or evicted.
    pub transfer_per_clip: u64,
}

impl MemoryPlan {
    /// The largest stage.
    pub fn peak(&self) -> u64 {
        self.stages
            .iter()
            .map(StageMemory::total)
            .max()
            .unwrap_or(0)
    }

    /// Whether anything is offloaded.
    pub fn offloads(&self) -> bool {
        self.text_encoder == TextEncoderPlacement::Host
            || self.dits == DitPlacement::Swapped
            || self.dits_leave_for_decode
    }

    /// A markdown table: one row per stage with its parts.
    pub fn table(&self) -> String {
        let mut out = format!(
            "budget {:.1} GB: DiTs {:?}, {:?}, text encoder on {:?}{}; peak {:.1} GB\n\n| stage | GB | resident |\n|---|---|---|\n",
            gb(self.budget),
            self.precision,
            self.dits,
            self.text_encoder,
            if self.dits_leave_for_decode { ", DiTs leave for the decode" } else { "" },
            gb(self.peak()),
        );
        for s in &self.stages {
            let parts: Vec<String> = s
                .parts
                .iter()
                .map(|(what, b)| format!("{what} {:.1}", gb(*b)))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {:.1} | {} |",
                s.stage,
                gb(s.total()),
                parts.join(", ")
            );
        }
        out
    }
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / GB as f64
}

/// A memory budget: `--max-memory` and the precision the user allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes of device memory the run may use.
    pub max_memory: u64,
    /// Which DiT precision the plan may pick.
    pub precision: PrecisionChoice,
}

/// Parses a `--max-memory` value: a number of gigabytes, optionally with a unit (`24`, `24GB`,
/// `22.5G`, `80GiB`, `512MB`).
pub fn parse_memory_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        Error::InvalidInput(format!(
            "max memory {text:?} is not a size; write e.g. 24GB, 80GiB or 512MB"
        ))
    })?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "g" | "gb" => 1e9,
        "gib" => 1024f64.powi(3),
        "m" | "mb" => 1e6,
        "mib" => 1024f64.powi(2),
        "t" | "tb" => 1e12,
        other => {
            return Err(Error::InvalidInput(format!(
                "max memory {text:?}: unknown unit {other:?} (use GB, GiB, MB, MiB or TB)"
            )))
        }
    };
    if value.is_nan() || value <= 0.0 {
        return Err(Error::InvalidInput(format!(
            "max memory {text:?} must be positive"
        )));
    }
    Ok((value * scale) as u64)
}

/// The plan of the first rung of the ladder (module docs) whose every stage fits `budget`, or
/// an error naming the smallest budget any arrangement needs.
pub fn plan_memory(job: &MemoryJob, budget: &MemoryBudget) -> Result<MemoryPlan> {
    let rungs: &[(DitPrecision, bool, TextEncoderPlacement)] = match budget.precision {
        PrecisionChoice::Auto => &[
            (DitPrecision::Bf16, true, TextEncoderPlacement::Gpu),
            (DitPrecision::Fp8, true, TextEncoderPlacement::Gpu),
            (DitPrecision::Fp8, false, TextEncoderPlacement::Gpu),
            (DitPrecision::Fp8, false, TextEncoderPlacement::Host),
        ],
        PrecisionChoice::Bf16 => &[
            (DitPrecision::Bf16, true, TextEncoderPlacement::Gpu),
            (DitPrecision::Bf16, false, TextEncoderPlacement::Gpu),
            (DitPrecision::Bf16, false, TextEncoderPlacement::Host),
        ],
        PrecisionChoice::Fp8 => &[
            (DitPrecision::Fp8, true, TextEncoderPlacement::Gpu),
            (DitPrecision::Fp8, false, TextEncoderPlacement::Gpu),
            (DitPrecision::Fp8, false, TextEncoderPlacement::Host),
        ],
    };
    let mut smallest: Option<MemoryPlan> = None;
    for &(precision, resident, text_encoder) in rungs {
        for leave in [false, true] {
            let plan = arrange(
                job,
                budget.max_memory,
                precision,
                resident,
                text_encoder,
                leave,
            )?;
            if plan.peak() <= budget.max_memory {
                return Ok(plan);
            }
            if smallest.as_ref().is_none_or(|s| plan.peak() < s.peak()) {
                smallest = Some(plan);
            }
        }
    }
    let need = smallest.map(|p| p.peak()).unwrap_or(0);
    Err(Error::InvalidInput(format!(
        "this clip needs at least {:.1} GB of GPU memory even with FP8 DiTs and every model \
         offloaded that can be, and the budget is {:.1} GB; choose a lower resolution or a \
         shorter clip, or a GPU with more memory",
        gb(need),
        gb(budget.max_memory)
    )))
}

/// The stages of one arrangement.
fn arrange(
    job: &MemoryJob,
    budget: u64,
    precision: DitPrecision,
    resident: bool,
    text_encoder: TextEncoderPlacement,
    dits_leave_for_decode: bool,
) -> Result<MemoryPlan> {
    let options = precision.load_options();
    let base_config = DitVariant::Distilled.config();
    let base_weights = weight_bytes(&base_config, &options);
    let sr = job.shapes.sr.zip(job.sr_variant);
    let sr_weights = sr.map(|(_, v)| weight_bytes(&v.config(), &options));
    let dits = match sr {
        None => DitPlacement::Single,
        Some(_) if resident => DitPlacement::BothResident,
        Some(_) => DitPlacement::Swapped,
    };
    let both = base_weights + sr_weights.unwrap_or(0);
    let mut stages = Vec::new();

    // Encode: the text encoder (unless on the host) and the conditioning encoders.
    let mut encode = vec![("reserve", RESERVE)];
    if text_encoder == TextEncoderPlacement::Gpu {
        encode.push(("text encoder", text_encoder_bytes()));
        encode.push(("text activations", text_activation_bytes(job.text_tokens)));
    }
    if job.image {
        let size = job.output_size();
        encode.push(("Wan2.2 encoder", 2 * WAN_ENCODER_PARAMS));
        encode.push(("image activations", image_encode_bytes(size)));
    }
    if job.user_audio {
        encode.push(("Oobleck", 4 * OOBLECK_PARAMS));
    }
    stages.push(StageMemory {
        stage: MemoryStage::Encode,
        parts: encode,
    });

    // Sampling stages: the active DiT, the idle one when both stay, a forward's activations
    // and the sampler's latents.
    let sampler = sampler_bytes(job);
    let base_tokens = job.tokens(job.shapes.base);
    let mut base = vec![("reserve", RESERVE), ("base DiT", base_weights)];
    if let (Some(w), DitPlacement::BothResident) = (sr_weights, dits) {
        base.push(("SR DiT", w));
    }
    base.push((
        "DiT forward",
        forward_activation_bytes(&base_config, base_tokens, &options).total(),
    ));
    base.push(("latents", sampler));
    stages.push(StageMemory {
        stage: MemoryStage::Base,
        parts: base,
    });
    if let (Some((size, variant)), Some(w)) = (sr, sr_weights) {
        let mut s = vec![("reserve", RESERVE), ("SR DiT", w)];
        if dits == DitPlacement::BothResident {
            s.push(("base DiT", base_weights));
        }
        let tokens = job.tokens(size);
        s.push((
            "DiT forward",
            forward_activation_bytes(&variant.config(), tokens, &options).total(),
        ));
        s.push(("latents", sampler));
        stages.push(StageMemory {
            stage: MemoryStage::SuperResolution,
            parts: s,
        });
    }

    // Decode: the decoders; the DiTs stay unless they leave for it.
    let mut decode = vec![("reserve", RESERVE)];
    if !dits_leave_for_decode {
        let staying = match dits {
            DitPlacement::BothResident => both,
            DitPlacement::Swapped => sr_weights.unwrap_or(0),
            DitPlacement::Single => base_weights,
        };
        decode.push(("DiTs", staying));
    }
    let size = job.output_size();
    decode.push(("Turbo-VAED", 2 * TURBO_VAED_PARAMS));
    decode.push((
        "video decode",
        video_decode_bytes(size, job.shapes.latent_frames),
    ));
    decode.push(("Oobleck", 4 * OOBLECK_PARAMS));
    decode.push(("audio decode", audio_decode_bytes(job.seconds())));
    decode.push(("latents", sampler));
    stages.push(StageMemory {
        stage: MemoryStage::Decode,
        parts: decode,
    });

    // Host RAM for what waits off the GPU, and the copies a warm engine repeats per clip: the
    // text encoder comes back for each prompt (unless it runs on the host), a swapped or
    // evicted DiT goes out and back.
    let (text_host, text_transfer) = match text_encoder {
        TextEncoderPlacement::Host => (text_encoder_bytes(), 0),
        TextEncoderPlacement::Gpu => (0, text_encoder_bytes()),
    };
    let (dit_host, dit_transfer) = match (dits, dits_leave_for_decode) {
        (DitPlacement::Swapped, false) => (base_weights, 2 * both),
        (_, true) => (both, 2 * both),
        (_, false) => (0, 0),
    };
    Ok(MemoryPlan {
        budget,
        precision,
        text_encoder,
        dits,
        dits_leave_for_decode,
        stages,
        host_bytes: text_host + dit_host,
        transfer_per_clip: text_transfer + dit_transfer,
    })
}

/// The text encoder's weights in bf16.
fn text_encoder_bytes() -> u64 {
    2 * TextEncoderConfig::t5gemma_9b().num_params() as u64
}

/// The encoder's activations for `tokens` prompt tokens (`cadence_text` docs): three f32 score
/// tensors of `heads × L²`, three `L × intermediate` bf16 MLP tensors and a few f32 residuals.
fn text_activation_bytes(tokens: usize) -> u64 {
    let c = TextEncoderConfig::t5gemma_9b();
    let l = tokens as u64;
    3 * 4 * c.num_heads as u64 * l * l
        + 3 * 2 * l * c.intermediate_size as u64
        + 4 * 4 * l * c.hidden_size as u64
}

/// Encoding one conditioning image at `size` with the Wan2.2 encoder: about four bf16
/// activations of its first stage (160 channels at half the pixel resolution).
fn image_encode_bytes(size: LatentSize) -> u64 {
    let half = (size.height_px() / 2 * size.width_px() / 2) as u64;
    4 * 2 * 160 * half
}

/// Turbo-VAED's peak for one window at `size` (`cadence_codec` docs): three bf16 activations
/// of `128 × frames × H/2 × W/2`, six frames of conv temporaries, and the streamed f32 chunk of
/// up to 28 frames.
fn video_decode_bytes(size: LatentSize, latent_frames: usize) -> u64 {
    let frames = DECODE_WINDOW_FRAMES.min(4 * latent_frames.saturating_sub(1) as u64 + 1);
    let half = (size.height_px() / 2 * size.width_px() / 2) as u64;
    let pixels = (size.height_px() * size.width_px()) as u64;
    3 * 2 * 128 * frames * half + 6 * 2 * 128 * half + 28.min(frames) * 3 * 4 * pixels
}

/// The Oobleck decoder's activations: its widest full-rate stage (128 channels at 44.1 kHz),
/// doubled for the lower-rate stages, three alive at once, in f32.
fn audio_decode_bytes(seconds: u64) -> u64 {
    3 * 2 * 128 * AUDIO_RATE * seconds * 4
}

/// The sampler's latents: eight copies of the f32 video and audio latents (state, noise,
/// velocities with and without guidance, the multistep history) and two f16 text contexts.
fn sampler_bytes(job: &MemoryJob) -> u64 {
    let size = job.output_size();
    let video = (VIDEO_CHANNELS * job.shapes.latent_frames * size.height * size.width) as u64;
    let audio = (job.shapes.audio_frames * AUDIO_CHANNELS) as u64;
    let text_width = DitVariant::Distilled.config().text_in_channels;
    8 * 4 * (video + audio) + 2 * 2 * (CONTEXT_ROWS * text_width) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `seconds` at 448x256, refined to `sr` pixels by `variant` when given.
    fn job(seconds: usize, sr: Option<(usize, usize, DitVariant)>) -> MemoryJob {
        let base = LatentSize::from_pixels(448, 256).unwrap();
        let sr = sr.map(|(w, h, v)| (LatentSize::from_pixels(w, h).unwrap(), v));
        MemoryJob::clip(seconds, base, sr).unwrap()
    }

    fn p540() -> MemoryJob {
        job(5, Some((896, 512, DitVariant::Sr540p)))
    }

    fn p1080() -> MemoryJob {
        job(5, Some((1920, 1088, DitVariant::Sr1080p)))
    }

    fn budget(gb: u64, precision: PrecisionChoice) -> MemoryBudget {
        MemoryBudget {
            max_memory: gb * GB,
            precision,
        }
    }

    #[test]
    fn fp8_dits_both_resident_fit_1080p_in_70_gb() {
        let plan = plan_memory(&p1080(), &budget(70, PrecisionChoice::Fp8)).unwrap();
        println!("{}", plan.table());
        assert_eq!(plan.precision, DitPrecision::Fp8);
        assert_eq!(plan.dits, DitPlacement::BothResident);
        assert_eq!(plan.text_encoder, TextEncoderPlacement::Gpu);
        assert!(!plan.offloads());
        assert!(plan.peak() <= 70 * GB, "{:.1} GB", gb(plan.peak()));
        // The SR stage holds both DiTs and the 1080p forward's activations.
        let sr = &plan.stages[2];
        assert_eq!(sr.stage, MemoryStage::SuperResolution);
        let fp8 = weight_bytes(
            &DitVariant::Sr1080p.config(),
            &LoadOptions::fp8(DType::BF16),
        );
        assert!(sr.parts.contains(&("SR DiT", fp8)) && sr.parts.contains(&("base DiT", fp8)));
    }

    #[test]
    fn a_24_gb_card_gets_an_offloading_plan_for_540p() {
        let plan = plan_memory(&p540(), &budget(24, PrecisionChoice::Auto)).unwrap();
        println!("{}", plan.table());
        assert!(plan.offloads());
        assert_eq!(plan.precision, DitPrecision::Fp8);
        assert_eq!(plan.dits, DitPlacement::Swapped);
        assert!(plan.peak() <= 24 * GB);
        // Swapped: the SR stage holds the SR DiT only.
        assert!(!plan.stages[2].parts.iter().any(|(w, _)| *w == "base DiT"));
        assert!(
            plan.host_bytes
                >= weight_bytes(
                    &DitVariant::Distilled.config(),
                    &LoadOptions::fp8(DType::BF16)
                )
        );
    }

    #[test]
    fn offloading_only_when_needed() {
        // For every card and resolution, the plan is the first arrangement of the documented
        // ladder (module docs) that fits: nothing is offloaded that a cheaper rung avoids.
        let ladder: Vec<(DitPrecision, bool, TextEncoderPlacement, bool)> = [
            (DitPrecision::Bf16, true, TextEncoderPlacement::Gpu),
            (DitPrecision::Fp8, true, TextEncoderPlacement::Gpu),
            (DitPrecision::Fp8, false, TextEncoderPlacement::Gpu),
            (DitPrecision::Fp8, false, TextEncoderPlacement::Host),
        ]
        .into_iter()
        .flat_map(|(p, r, t)| [(p, r, t, false), (p, r, t, true)])
        .collect();
        let jobs = [("256p", job(5, None)), ("540p", p540()), ("1080p", p1080())];
        for gbs in [24, 32, 48, 80] {
            for (name, j) in &jobs {
                let b = budget(gbs, PrecisionChoice::Auto);
                let first_fit = ladder
                    .iter()
                    .map(|&(p, r, t, leave)| arrange(j, b.max_memory, p, r, t, leave).unwrap())
                    .find(|plan| plan.peak() <= b.max_memory);
                match (plan_memory(j, &b), first_fit) {
                    (Ok(plan), Some(first)) => {
                        println!("{gbs} GB, {name}: {}", plan.table());
                        assert_eq!(plan, first, "{gbs} GB {name}");
                    }
                    (Err(e), None) => println!("{gbs} GB, {name}: {e}"),
                    (got, want) => panic!("{gbs} GB {name}: {got:?} vs {want:?}"),
                }
            }
        }
        // The 80 GB card runs 540p in bf16 with both DiTs resident: no offloading at all.
        let plan = plan_memory(&p540(), &budget(80, PrecisionChoice::Auto)).unwrap();
        assert_eq!(
            (plan.precision, plan.dits, plan.offloads()),
            (DitPrecision::Bf16, DitPlacement::BothResident, false)
        );
        // Forcing bf16 on a 24 GB card offloads instead of quantising.
        let plan = plan_memory(&job(5, None), &budget(24, PrecisionChoice::Bf16));
        assert!(plan.is_err() || plan.is_ok_and(|p| p.precision == DitPrecision::Bf16));
    }

    #[test]
    fn stage_arithmetic() {
        let j = p1080();
        let plan = arrange(
            &j,
            0,
            DitPrecision::Bf16,
            true,
            TextEncoderPlacement::Gpu,
            false,
        )
        .unwrap();
        let encode = &plan.stages[0];
        // 9,241,705,984 parameters in bf16.
        assert!(encode.parts.contains(&("text encoder", 18_483_411_968)));
        assert_eq!(j.tokens(j.shapes.base), 32 * 8 * 14 + 126 + 640);
        assert_eq!(j.tokens(j.shapes.sr.unwrap()), 32 * 34 * 60 + 126 + 640);
        let decode = plan.stages.last().unwrap();
        let video = decode
            .parts
            .iter()
            .find(|(w, _)| *w == "video decode")
            .unwrap()
            .1;
        // cadence_codec docs: three activations of 128 x 36 x 544 x 960 in bf16 (14.4 GB) plus
        // temporaries.
        assert!((15 * GB..17 * GB).contains(&video), "{video}");
        for s in &plan.stages {
            assert_eq!(s.total(), s.parts.iter().map(|p| p.1).sum::<u64>());
        }
        assert_eq!(
            plan.peak(),
            plan.stages.iter().map(StageMemory::total).max().unwrap()
        );
    }

    #[test]
    fn too_small_a_budget_names_the_need() {
        let err = plan_memory(&p1080(), &budget(16, PrecisionChoice::Auto))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs at least") && err.contains("16.0 GB"),
            "{err}"
        );
    }

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(parse_memory_size("24").unwrap(), 24 * GB);
        assert_eq!(parse_memory_size("24GB").unwrap(), 24 * GB);
        assert_eq!(parse_memory_size(" 22.5 g").unwrap(), 22_500_000_000);
        assert_eq!(parse_memory_size("80GiB").unwrap(), 80 << 30);
        assert_eq!(parse_memory_size("512MB").unwrap(), 512_000_000);
        for bad in ["", "GB", "-3GB", "0", "12 parsecs", "1.2.3GB"] {
            assert!(parse_memory_size(bad).is_err(), "{bad}");
        }
    }
}
