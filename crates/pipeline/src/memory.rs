//! The device-memory plan of a generation: what is on the device in each stage, and how the
//! models are placed to fit a budget. The engine carries out the plan it picks
//! ([`crate::engine`]); `cadence plan` prints it without loading anything.
//!
//! A generation runs four stages, one after the other:
//!
//! 1. **encode**: the T5Gemma-9B text encoder (9.24 B parameters, 18.5 GB in bf16) turns the
//!    prompt into the DiT's context; the conditioning encoders run (the Wan2.2 VAE encoder for a
//!    first-frame image, the Oobleck encoder for user audio);
//! 2. **base**: the base (or distilled) DiT samples the 256p latent;
//! 3. **sr**: the super-resolution DiT refines it at 540p or 1080p (absent without SR);
//! 4. **decode**: Turbo-VAED and the Oobleck decoder turn the latents into frames and sound.
//!
//! # Placements
//!
//! The text encoder and the DiTs each have a [`Placement`]; the codecs (about 1 GB) always stay:
//!
//! | placement | on the device | costs per clip |
//! |---|---|---|
//! | resident | in every stage, across clips | nothing |
//! | visiting | whole in the stages that use it; otherwise its layers (and the text encoder's embedding table) wait in host RAM and only the small rest stays | one host-to-device copy of it |
//! | streamed | its layers, [`STREAM_LOOKAHEAD`] + 1 at a time, while it runs; the small rest stays | a copy of its layers per forward pass, overlapped with compute |
//! | host (text encoder only) | never: it computes on the host CPU | minutes of CPU time |
//!
//! [`plan_memory`] picks, for a budget, the first arrangement of this ladder whose every stage
//! fits, so a model leaves the device only when it must:
//!
//! | rung | DiT weights | DiTs | text encoder |
//! |---|---|---|---|
//! | 1 | bf16 (reference numerics) | resident | resident |
//! | 2 | bf16 | resident | visiting |
//! | 3 | FP8 | resident | resident |
//! | 4 | FP8 | resident | visiting |
//! | 5 | FP8 | visiting (the idle DiT waits in host RAM; both leave for the decode) | visiting |
//! | 6 | FP8 | visiting | streamed |
//! | 7 | FP8 | streamed | streamed |
//! | 8 | FP8 | streamed | host |
//!
//! A precision the user forces ([`PrecisionChoice`]) keeps the same placements in that
//! precision; an explicit [`Offload`] keeps only its placements. Every stage adds a reserve
//! ([`RESERVE`] on a GPU: the CUDA context, library workspaces and the caching allocator's
//! slack; [`HOST_RESERVE`] on the CPU).
//!
//! # Sizes
//!
//! Weights come from the configurations ([`MemoryModels`]): the DiTs' from
//! [`cadence_model::footprint`] (a 15.3 B model: 30.6 GB with bf16 GEMMs, 15.4 GB with FP8
//! ones), the text encoder's from [`TextEncoderConfig::held_bytes`], so for a loaded engine the
//! plan's weight parts are exactly the bytes its models hold (the engine's placement ledger is
//! checked against them). Activations are estimates: one DiT forward from
//! [`cadence_model::footprint`], the text encoder's score and MLP tensors, Turbo-VAED's window
//! arithmetic (three activations of `128 ch × 36 frames × H/2 × W/2`, about 15 GB at 1080p in
//! bf16), the Oobleck decoder's widest stage.

use std::fmt::{self, Write as _};

use candle_core::DType;

use cadence_core::{Error, Result};
use cadence_kernels::transfer::STREAM_LOOKAHEAD;
use cadence_model::footprint::{forward_activation_bytes, weight_split, WeightSplit};
use cadence_model::packing::TokenLayout;
use cadence_model::{DitConfig, DitVariant, LoadOptions};
use cadence_text::{TextEncoderBytes, TextEncoderConfig, CONTEXT_ROWS};

use crate::shapes::{LatentShapes, LatentSize, AUDIO_CHANNELS, PATCH, VIDEO_CHANNELS};

/// One gigabyte (10⁹ bytes), the unit of `--max-memory` and of the tables.
pub const GB: u64 = 1_000_000_000;

/// GPU memory held back from every stage: the CUDA context (about 0.5 GB on an H100), the
/// cuBLAS/cuBLASLt workspaces, the kernels' modules and the caching allocator's slack. An
/// estimate until the benchmark harness measures it.
pub const RESERVE: u64 = 2 * GB;

/// Host memory held back from every stage of a CPU engine (the allocator's slack; no CUDA
/// context).
pub const HOST_RESERVE: u64 = GB / 4;

/// Names of the weight parts of a stage (the placement ledger uses the same names).
pub mod part {
    /// The text encoder's weights.
    pub const TEXT_ENCODER: &str = "text encoder";
    /// The base (or distilled) DiT's weights.
    pub const BASE_DIT: &str = "base DiT";
    /// The super-resolution DiT's weights.
    pub const SR_DIT: &str = "SR DiT";
    /// The video and audio codecs' weights (always on the device).
    pub const CODECS: &str = "codecs";
    /// The parts that are model weights (the rest are activations and the reserve).
    pub const WEIGHTS: [&str; 4] = [TEXT_ENCODER, BASE_DIT, SR_DIT, CODECS];
}

/// Audio sample rate of the Oobleck decoder's output.
const AUDIO_RATE: u64 = 44_100;
/// Frames Turbo-VAED decodes per window (9 latent frames).
const DECODE_WINDOW_FRAMES: u64 = 36;

/// Which precision the DiTs' GEMM weights may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PrecisionChoice {
    /// bf16 when the DiTs stay whole on the device, FP8 otherwise.
    #[default]
    Auto,
    /// Dense in the compute dtype (bf16 on GPUs, f32 on CPUs): the reference numerics;
    /// offloads instead of quantising.
    Bf16,
    /// FP8 e4m3 quantised at load, one scale per output channel: half the DiT memory and
    /// Hopper's FP8 tensor cores; about 4 % relative error per matrix product.
    Fp8,
}

/// The DiTs' GEMM weights in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DitPrecision {
    /// Dense in the compute dtype (bf16 on GPUs, f32 on CPUs): the reference numerics.
    Dense,
    /// FP8 e4m3 with per-channel scales.
    Fp8,
}

impl DitPrecision {
    /// How the DiTs are loaded in this precision, computing in `compute`.
    pub fn load_options(self, compute: DType) -> LoadOptions {
        match self {
            Self::Dense => LoadOptions::dense(compute),
            Self::Fp8 => LoadOptions::fp8(compute),
        }
    }

    /// `bf16` (dense) or `fp8`, as the command line names them.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dense => "bf16",
            Self::Fp8 => "fp8",
        }
    }
}

/// Where a model is while a clip is generated (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// On the device in every stage, across clips.
    Resident,
    /// On the device in the stages that use it, parked in host RAM otherwise.
    Visiting,
    /// In host RAM; its layers are streamed to the device while it runs.
    Streamed,
    /// In host RAM, computing on the host CPU (the text encoder only).
    Host,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Resident => "resident",
            Self::Visiting => "visiting",
            Self::Streamed => "streamed",
            Self::Host => "host",
        })
    }
}

/// Which offloading the user allows (`--offload`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Offload {
    /// Whatever the budget needs, least first.
    #[default]
    Auto,
    /// Everything stays on the device.
    None,
    /// The text encoder and the DiTs come to the device only for their stage.
    Swap,
    /// The text encoder's and the DiTs' layers are streamed from host memory.
    Stream,
}

/// How the models are placed: one rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arrangement {
    /// The DiTs' GEMM weights.
    pub precision: DitPrecision,
    /// Where the DiTs are (both the same way).
    pub dits: Placement,
    /// Where the text encoder is.
    pub text_encoder: Placement,
}

impl Arrangement {
    /// The arrangements a precision choice and an offload choice allow, cheapest first
    /// (module docs). With an explicit offload and automatic precision, both precisions of its
    /// placements remain, dense first.
    pub fn ladder(precision: PrecisionChoice, offload: Offload) -> Vec<Self> {
        use Placement::{Host, Resident, Streamed, Visiting};
        // (DiTs, text encoder), least offloading first.
        let placements = [
            (Resident, Resident),
            (Resident, Visiting),
            (Visiting, Visiting),
            (Visiting, Streamed),
            (Streamed, Streamed),
            (Streamed, Host),
        ];
        let rungs = |precision: DitPrecision, count: usize| {
            placements[..count]
                .iter()
                .map(move |&(dits, text_encoder)| Self {
                    precision,
                    dits,
                    text_encoder,
                })
        };
        let all = placements.len();
        let mut ladder: Vec<Self> = match (precision, offload) {
            // bf16 only while the DiTs stay whole on the device; FP8 before any DiT leaves.
            (PrecisionChoice::Auto, Offload::Auto) => rungs(DitPrecision::Dense, 2)
                .chain(rungs(DitPrecision::Fp8, all))
                .collect(),
            (PrecisionChoice::Auto, _) => rungs(DitPrecision::Dense, all)
                .chain(rungs(DitPrecision::Fp8, all))
                .collect(),
            (PrecisionChoice::Bf16, _) => rungs(DitPrecision::Dense, all).collect(),
            (PrecisionChoice::Fp8, _) => rungs(DitPrecision::Fp8, all).collect(),
        };
        ladder.retain(|r| match offload {
            Offload::Auto => true,
            Offload::None => r.dits == Resident && r.text_encoder == Resident,
            Offload::Swap => r.dits == Visiting && r.text_encoder == Visiting,
            Offload::Stream => r.dits == Streamed && r.text_encoder == Streamed,
        });
        ladder
    }
}

/// The models a plan sizes, as configurations and dtypes.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryModels {
    /// The text encoder.
    pub text: TextEncoderConfig,
    /// The dtype it computes in.
    pub text_dtype: DType,
    /// The base-stage DiT.
    pub base: DitConfig,
    /// The super-resolution DiT, when the engine has one.
    pub sr: Option<DitConfig>,
    /// The DiTs' compute dtype.
    pub compute: DType,
    /// The codecs' weights and working sizes.
    pub codecs: CodecMemory,
    /// Memory held back from every stage ([`RESERVE`] on a GPU, [`HOST_RESERVE`] on the CPU).
    pub reserve: u64,
}

/// What the plan needs of the codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecMemory {
    /// Bytes of all codec weights the engine holds (always on the device).
    pub weights: u64,
    /// Channels of the video decoder's half-resolution stage (128 for Turbo-VAED).
    pub decode_channels: usize,
    /// Bytes per element of the video codecs' activations.
    pub dtype_bytes: u64,
    /// Base channels of the Oobleck decoder (128 for Stable Audio Open).
    pub audio_channels: usize,
}

/// Turbo-VAED parameters (fixtures' codec manifest).
const TURBO_VAED_PARAMS: u64 = 107_122_892;
/// Wan2.2 VAE encoder parameters (first-frame image conditioning).
const WAN_ENCODER_PARAMS: u64 = 149_627_776;
/// Oobleck parameters (encoder and decoder, stored counts), held in f32.
const OOBLECK_PARAMS: u64 = 156_112_514;

impl MemoryModels {
    /// The published models at their real sizes, as a GPU runs them (bf16 compute; the text
    /// encoder in bf16): the base DiT, the SR DiT of `sr`, Turbo-VAED, the Wan2.2 encoder when
    /// `image`, Oobleck.
    pub fn published(sr: Option<DitVariant>, image: bool) -> Self {
        let wan = if image { 2 * WAN_ENCODER_PARAMS } else { 0 };
        Self {
            text: TextEncoderConfig::t5gemma_9b(),
            text_dtype: DType::BF16,
            base: DitVariant::Distilled.config(),
            sr: sr.map(DitVariant::config),
            compute: DType::BF16,
            codecs: CodecMemory {
                weights: 2 * TURBO_VAED_PARAMS + wan + 4 * OOBLECK_PARAMS,
                decode_channels: 128,
                dtype_bytes: 2,
                audio_channels: 128,
            },
            reserve: RESERVE,
        }
    }

    fn text_bytes(&self) -> TextEncoderBytes {
        self.text.held_bytes(self.text_dtype)
    }

    fn dit_bytes(&self, config: &DitConfig, precision: DitPrecision) -> WeightSplit {
        weight_split(config, &precision.load_options(self.compute))
    }
}

/// The stages of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Tokens the text encoder reads (the prompt's; [`CONTEXT_ROWS`] as a typical worst case).
    pub text_tokens: usize,
    /// Whether a first-frame image is encoded (TI2V).
    pub image: bool,
}

impl MemoryJob {
    /// A text-to-video job of `seconds` at the base size, refined to `sr` when given, with a
    /// prompt of [`CONTEXT_ROWS`] tokens.
    pub fn clip(seconds: usize, base: LatentSize, sr: Option<LatentSize>) -> Result<Self> {
        Ok(Self {
            shapes: LatentShapes::new(crate::shapes::audio_frames_for_seconds(seconds), base, sr)?,
            text_tokens: CONTEXT_ROWS,
            image: false,
        })
    }

    /// DiT tokens of a forward at latent size `size` (the DiT reads at most
    /// [`CONTEXT_ROWS`] text rows).
    pub fn tokens(&self, size: LatentSize) -> usize {
        TokenLayout {
            latent_channels: VIDEO_CHANNELS,
            frames: self.shapes.latent_frames,
            rows: size.height / PATCH,
            cols: size.width / PATCH,
            patch: PATCH,
            audio: self.shapes.audio_frames,
            text: self.text_tokens.min(CONTEXT_ROWS),
        }
        .len()
    }

    /// The size the decoders work at (the SR size when there is one).
    fn output_size(&self) -> LatentSize {
        self.shapes.sr.unwrap_or(self.shapes.base)
    }

    /// Seconds of audio (at 25 audio latents per second), rounded up.
    fn seconds(&self) -> u64 {
        (self.shapes.audio_frames as u64).div_ceil(crate::shapes::FPS as u64)
    }
}

/// One stage's resident set: named parts and their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageMemory {
    /// The stage these parts are resident in.
    pub stage: MemoryStage,
    /// `(what, bytes)`, reserve included; the weight parts are named by [`part`].
    pub parts: Vec<(&'static str, u64)>,
}

impl StageMemory {
    /// The stage's total.
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|(_, b)| b).sum()
    }

    /// The bytes of part `name` (0 when absent).
    pub fn part(&self, name: &str) -> u64 {
        self.parts
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, b)| b)
            .sum()
    }
}

/// The plan for one job under one budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The budget it was made for.
    pub budget: u64,
    /// The placements.
    pub arrangement: Arrangement,
    /// The resident set of every stage the job has.
    pub stages: Vec<StageMemory>,
    /// Host RAM the parked and streamed models take.
    pub host_bytes: u64,
    /// Host-to-device copies per clip of the visiting models (a warm engine repeats them for
    /// every clip; a streamed model's per-pass copies are [`MemoryPlan::streamed_per_pass`]).
    pub transfer_per_clip: u64,
    /// Bytes copied per forward pass of a streamed model (its layers), overlapped with compute.
    pub streamed_per_pass: u64,
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

    /// Whether it fits its budget.
    pub fn fits(&self) -> bool {
        self.peak() <= self.budget
    }

    /// The stage `stage`, when the job has it.
    pub fn stage(&self, stage: MemoryStage) -> Option<&StageMemory> {
        self.stages.iter().find(|s| s.stage == stage)
    }

    /// Whether anything leaves the device during a clip.
    pub fn offloads(&self) -> bool {
        self.arrangement.dits != Placement::Resident
            || self.arrangement.text_encoder != Placement::Resident
    }

    /// A one-line description: precision and placements.
    pub fn summary(&self) -> String {
        let a = &self.arrangement;
        format!(
            "DiTs {} ({}), text encoder {}",
            a.dits,
            a.precision.name(),
            a.text_encoder
        )
    }

    /// A markdown table: one row per stage with its parts.
    pub fn table(&self) -> String {
        let mut out = format!(
            "budget {:.1} GB: {}; peak {:.1} GB\n\n| stage | GB | on the device |\n|---|---|---|\n",
            gb(self.budget),
            self.summary(),
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

/// Bytes as gigabytes, for messages and tables.
pub fn gb(bytes: u64) -> f64 {
    bytes as f64 / GB as f64
}

/// A memory budget: `--max-memory`, the precision and the offloading the user allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes of device memory the run may use.
    pub max_memory: u64,
    /// Which DiT precision the plan may pick.
    pub precision: PrecisionChoice,
    /// Which placements the plan may pick.
    pub offload: Offload,
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
    if value.is_nan() || value <= 0.0 || value * scale > u64::MAX as f64 {
        return Err(Error::InvalidInput(format!(
            "max memory {text:?} must be a positive size below 18 EB"
        )));
    }
    Ok((value * scale) as u64)
}

/// The memory flags of the front ends (`--precision`, `--max-memory`, `--offload`), as a clap
/// `Args` group both the CLI and the server flatten into their commands.
#[cfg(feature = "clap")]
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    /// How the DiTs hold their GEMM weights.
    #[arg(long, value_enum, default_value_t = PrecisionChoice::Auto)]
    pub precision: PrecisionChoice,
    /// Device memory the engine may use, e.g. 24GB, 80GiB [default: what the device has free];
    /// the models are placed to fit it (see `cadence plan`).
    #[arg(long, value_name = "SIZE", value_parser = memory_flag)]
    pub max_memory: Option<u64>,
    /// Which offloading the memory plan may use.
    #[arg(long, value_enum, default_value_t = Offload::Auto)]
    pub offload: Offload,
}

/// `--max-memory`, with [`parse_memory_size`]'s message on a bad value.
#[cfg(feature = "clap")]
fn memory_flag(text: &str) -> std::result::Result<u64, String> {
    parse_memory_size(text).map_err(|e| match e {
        Error::InvalidInput(m) => m,
        other => other.to_string(),
    })
}

/// The plan of the first arrangement of the ladder (module docs) whose every stage fits the
/// budget, or an error naming the smallest budget any allowed arrangement needs and the fix.
pub fn plan_memory(
    job: &MemoryJob,
    models: &MemoryModels,
    budget: &MemoryBudget,
) -> Result<MemoryPlan> {
    let mut smallest: Option<MemoryPlan> = None;
    for rung in Arrangement::ladder(budget.precision, budget.offload) {
        let plan = arrange(job, models, rung, budget.max_memory);
        if plan.fits() {
            return Ok(plan);
        }
        if smallest.as_ref().is_none_or(|s| plan.peak() < s.peak()) {
            smallest = Some(plan);
        }
    }
    let need = smallest.map(|p| p.peak()).unwrap_or(0);
    let allowed = match (budget.offload, budget.precision) {
        (Offload::Auto, PrecisionChoice::Auto) => {
            "even with FP8 DiTs and every model offloaded that can be".to_string()
        }
        (offload, precision) => {
            format!("with --offload {offload:?} and --precision {precision:?}").to_lowercase()
        }
    };
    Err(Error::InvalidInput(format!(
        "this clip needs at least {:.1} GB of device memory {allowed}, and the budget is \
         {:.1} GB; choose a lower resolution or a shorter clip, allow more offloading \
         (--offload auto), or use a device with more memory",
        gb(need),
        gb(budget.max_memory)
    )))
}

/// The stages of `job` under `arrangement`.
pub fn arrange(
    job: &MemoryJob,
    models: &MemoryModels,
    arrangement: Arrangement,
    budget: u64,
) -> MemoryPlan {
    use MemoryStage::{Base, Decode, Encode, SuperResolution};
    use Placement::{Host, Resident, Streamed, Visiting};
    let Arrangement {
        precision,
        dits,
        text_encoder,
    } = arrangement;
    let options = precision.load_options(models.compute);
    let text = models.text_bytes();
    let base = models.dit_bytes(&models.base, precision);
    let sr = job
        .shapes
        .sr
        .and(models.sr.as_ref())
        .map(|c| (c, models.dit_bytes(c, precision)));
    let in_flight = |largest: u64, count: usize| largest * (STREAM_LOOKAHEAD + 1).min(count) as u64;

    // The bytes a model holds on the device in `stage`, given the stages it runs in.
    let text_in = |stage| match (text_encoder, stage == Encode) {
        (Resident, _) | (Visiting, true) => text.total(),
        (Streamed, true) => {
            text.final_norm + in_flight(text.largest_layer, models.text.num_layers())
        }
        (Streamed | Visiting, false) => text.final_norm,
        (Host, _) => 0,
    };
    let dit_in = |split: &WeightSplit, layers: usize, runs: bool| match (dits, runs) {
        (Resident, _) | (Visiting, true) => split.non_layer + split.layers,
        (Streamed, true) => split.non_layer + in_flight(split.largest_layer, layers),
        (Streamed | Visiting, false) => split.non_layer,
        (Host, _) => 0,
    };

    let sampler = sampler_bytes(job, models);
    let mut stage_list = vec![Encode, Base];
    if sr.is_some() {
        stage_list.push(SuperResolution);
    }
    stage_list.push(Decode);
    let stages = stage_list
        .into_iter()
        .map(|stage| {
            let mut parts = vec![("reserve", models.reserve)];
            let mut weight = |name, bytes| {
                if bytes > 0 {
                    parts.push((name, bytes));
                }
            };
            weight(part::CODECS, models.codecs.weights);
            weight(part::TEXT_ENCODER, text_in(stage));
            weight(
                part::BASE_DIT,
                dit_in(&base, models.base.num_layers, stage == Base),
            );
            if let Some((config, split)) = &sr {
                weight(
                    part::SR_DIT,
                    dit_in(split, config.num_layers, stage == SuperResolution),
                );
            }
            match stage {
                Encode => {
                    if text_encoder != Host {
                        parts.push(("text activations", text_activation_bytes(job, models)));
                    }
                    if job.image {
                        parts.push(("image activations", image_encode_bytes(job, models)));
                    }
                }
                Base | SuperResolution => {
                    let (config, size) = match (stage, &sr) {
                        (SuperResolution, Some((c, _))) => (*c, job.output_size()),
                        _ => (&models.base, job.shapes.base),
                    };
                    let forward = forward_activation_bytes(config, job.tokens(size), &options);
                    parts.push(("DiT forward", forward.total()));
                    parts.push(("latents", sampler));
                }
                Decode => {
                    parts.push(("video decode", video_decode_bytes(job, models)));
                    parts.push(("audio decode", audio_decode_bytes(job, models)));
                    parts.push(("latents", sampler));
                }
            }
            StageMemory { stage, parts }
        })
        .collect();

    // Host RAM for what is parked or streamed, and what a clip copies to the device.
    let all_dits = base.non_layer + base.layers + sr.map_or(0, |(_, s)| s.non_layer + s.layers);
    let (text_host, text_transfer) = match text_encoder {
        Resident => (0, 0),
        Visiting => (text.total(), text.total()),
        Streamed => (text.embedding + text.layers, 0),
        Host => (text.total(), 0),
    };
    let (dit_host, dit_transfer, streamed_per_pass) = match dits {
        Resident | Host => (0, 0, 0),
        Visiting => (all_dits, all_dits, 0),
        Streamed => {
            let layers = base.layers + sr.map_or(0, |(_, s)| s.layers);
            (layers, 0, base.layers.max(sr.map_or(0, |(_, s)| s.layers)))
        }
    };
    MemoryPlan {
        budget,
        arrangement,
        stages,
        host_bytes: text_host + dit_host,
        transfer_per_clip: text_transfer + dit_transfer,
        streamed_per_pass,
    }
}

/// The encoder's activations for the job's prompt (`cadence_text` docs): three f32 score
/// tensors of one kv head's query group, `(heads / kv_heads) × L²`, three `L × intermediate`
/// MLP tensors and a few f32 residuals.
fn text_activation_bytes(job: &MemoryJob, models: &MemoryModels) -> u64 {
    let c = &models.text;
    let l = job.text_tokens as u64;
    let s = models.text_dtype.size_in_bytes() as u64;
    let group = (c.num_heads / c.num_kv_heads.max(1)) as u64;
    3 * 4 * group * l * l
        + 3 * s * l * c.intermediate_size as u64
        + 4 * 4 * l * c.hidden_size as u64
}

/// Encoding one conditioning image at the output size with the Wan2.2 encoder: about four
/// activations of its first stage (160 channels at half the pixel resolution).
fn image_encode_bytes(job: &MemoryJob, models: &MemoryModels) -> u64 {
    let size = job.output_size();
    let half = (size.height_px() / 2 * size.width_px() / 2) as u64;
    4 * models.codecs.dtype_bytes * 160 * half
}

/// The video decoder's peak for one window (`cadence_codec` docs): three activations of
/// `channels × frames × H/2 × W/2`, six frames of conv temporaries, and the streamed f32 chunk
/// of up to 28 frames.
fn video_decode_bytes(job: &MemoryJob, models: &MemoryModels) -> u64 {
    let size = job.output_size();
    let frames =
        DECODE_WINDOW_FRAMES.min(4 * job.shapes.latent_frames.saturating_sub(1) as u64 + 1);
    let half = (size.height_px() / 2 * size.width_px() / 2) as u64;
    let pixels = (size.height_px() * size.width_px()) as u64;
    let (c, s) = (
        models.codecs.decode_channels as u64,
        models.codecs.dtype_bytes,
    );
    3 * s * c * frames * half + 6 * s * c * half + 28.min(frames) * 3 * 4 * pixels
}

/// The Oobleck decoder's activations: its widest full-rate stage at 44.1 kHz, doubled for the
/// lower-rate stages, three alive at once, in f32.
fn audio_decode_bytes(job: &MemoryJob, models: &MemoryModels) -> u64 {
    3 * 2 * models.codecs.audio_channels as u64 * AUDIO_RATE * job.seconds() * 4
}

/// The sampler's latents: eight copies of the f32 video and audio latents (state, noise,
/// velocities with and without guidance, the multistep history) and two f32 text contexts.
fn sampler_bytes(job: &MemoryJob, models: &MemoryModels) -> u64 {
    let size = job.output_size();
    let video = (VIDEO_CHANNELS * job.shapes.latent_frames * size.height * size.width) as u64;
    let audio = (job.shapes.audio_frames * AUDIO_CHANNELS) as u64;
    let text_width = models.base.text_in_channels;
    8 * 4 * (video + audio) + 2 * 4 * (CONTEXT_ROWS * text_width) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use cadence_model::footprint::weight_bytes;

    /// `seconds` at 448x256, refined to `sr` pixels when given.
    fn job(seconds: usize, sr: Option<(usize, usize)>) -> MemoryJob {
        let base = LatentSize::from_pixels(448, 256).unwrap();
        let sr = sr.map(|(w, h)| LatentSize::from_pixels(w, h).unwrap());
        MemoryJob::clip(seconds, base, sr).unwrap()
    }

    fn p256() -> (MemoryJob, MemoryModels) {
        (job(5, None), MemoryModels::published(None, false))
    }

    fn p540() -> (MemoryJob, MemoryModels) {
        (
            job(5, Some((896, 512))),
            MemoryModels::published(Some(DitVariant::Sr540p), false),
        )
    }

    fn p1080() -> (MemoryJob, MemoryModels) {
        (
            job(5, Some((1920, 1088))),
            MemoryModels::published(Some(DitVariant::Sr1080p), false),
        )
    }

    fn budget(gb: u64) -> MemoryBudget {
        MemoryBudget {
            max_memory: gb * GB,
            precision: PrecisionChoice::Auto,
            offload: Offload::Auto,
        }
    }

    fn plan((job, models): &(MemoryJob, MemoryModels), b: &MemoryBudget) -> Result<MemoryPlan> {
        plan_memory(job, models, b)
    }

    #[test]
    fn an_80_gb_card_keeps_everything_resident_at_256p_in_bf16() {
        let plan = plan(&p256(), &budget(80)).unwrap();
        println!("{}", plan.table());
        assert!(!plan.offloads());
        assert_eq!(plan.arrangement.precision, DitPrecision::Dense);
        assert_eq!(plan.transfer_per_clip, 0);
        let base = plan.stage(MemoryStage::Base).unwrap();
        assert_eq!(
            base.part(part::BASE_DIT),
            weight_bytes(
                &DitVariant::Distilled.config(),
                &LoadOptions::dense(DType::BF16)
            ) - weight_split(
                &DitVariant::Distilled.config(),
                &LoadOptions::dense(DType::BF16)
            )
            .rope_bands
        );
        // The text encoder's 9,241,705,984 parameters in bf16, norms in f32.
        assert!((18_483_411_968..18_486_000_000).contains(&base.part(part::TEXT_ENCODER)));
    }

    #[test]
    fn the_targets_every_resolution_on_24_gb_and_540p_on_16_gb() {
        for (name, case, gbs) in [
            ("256p", p256(), 16),
            ("540p", p540(), 16),
            ("256p", p256(), 24),
            ("540p", p540(), 24),
            ("1080p", p1080(), 24),
        ] {
            let plan = plan(&case, &budget(gbs)).unwrap_or_else(|e| panic!("{name} {gbs}: {e}"));
            println!("{name} on {gbs} GB: {}", plan.table());
            assert!(plan.fits());
        }
    }

    #[test]
    fn offloading_only_when_needed() {
        // For every card and resolution, the plan is the first rung of the documented ladder
        // that fits: nothing leaves the device that a cheaper rung keeps.
        let ladder = Arrangement::ladder(PrecisionChoice::Auto, Offload::Auto);
        assert_eq!(ladder.len(), 8);
        for gbs in [16, 24, 32, 48, 80] {
            for (name, case) in [("256p", p256()), ("540p", p540()), ("1080p", p1080())] {
                let b = budget(gbs);
                let first_fit = ladder
                    .iter()
                    .map(|&r| arrange(&case.0, &case.1, r, b.max_memory))
                    .find(MemoryPlan::fits);
                match (plan(&case, &b), first_fit) {
                    (Ok(plan), Some(first)) => assert_eq!(plan, first, "{gbs} GB {name}"),
                    (Err(e), None) => println!("{gbs} GB, {name}: {e}"),
                    (got, want) => panic!("{gbs} GB {name}: {got:?} vs {want:?}"),
                }
            }
        }
        // Forcing bf16 on a 24 GB card streams instead of quantising.
        let plan = plan(
            &p256(),
            &MemoryBudget {
                precision: PrecisionChoice::Bf16,
                ..budget(24)
            },
        )
        .unwrap();
        assert_eq!(plan.arrangement.precision, DitPrecision::Dense);
        assert_eq!(plan.arrangement.dits, Placement::Streamed);
    }

    #[test]
    fn an_explicit_offload_keeps_its_placements() {
        let case = p540();
        for (offload, placement) in [
            (Offload::None, Placement::Resident),
            (Offload::Swap, Placement::Visiting),
            (Offload::Stream, Placement::Streamed),
        ] {
            let b = MemoryBudget {
                offload,
                ..budget(1000)
            };
            let plan = plan(&case, &b).unwrap();
            assert_eq!(plan.arrangement.dits, placement);
            assert_eq!(plan.arrangement.text_encoder, placement);
            assert_eq!(plan.arrangement.precision, DitPrecision::Dense);
        }
        let e = plan(
            &p1080(),
            &MemoryBudget {
                offload: Offload::None,
                ..budget(24)
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--offload none") && e.contains("24.0 GB"), "{e}");
    }

    #[test]
    fn streaming_holds_a_few_layers_and_visiting_holds_the_model_in_its_stage_only() {
        let (job, models) = p540();
        let fp8 = DitPrecision::Fp8;
        let split = models.dit_bytes(&models.base, fp8);
        let streamed = arrange(
            &job,
            &models,
            Arrangement {
                precision: fp8,
                dits: Placement::Streamed,
                text_encoder: Placement::Streamed,
            },
            0,
        );
        let base = streamed.stage(MemoryStage::Base).unwrap();
        assert_eq!(
            base.part(part::BASE_DIT),
            split.non_layer + 3 * split.largest_layer
        );
        let decode = streamed.stage(MemoryStage::Decode).unwrap();
        assert_eq!(decode.part(part::BASE_DIT), split.non_layer);
        assert_eq!(
            streamed.streamed_per_pass,
            split
                .layers
                .max(models.dit_bytes(models.sr.as_ref().unwrap(), fp8).layers)
        );
        let visiting = arrange(
            &job,
            &models,
            Arrangement {
                precision: fp8,
                dits: Placement::Visiting,
                text_encoder: Placement::Visiting,
            },
            0,
        );
        let sr = visiting.stage(MemoryStage::SuperResolution).unwrap();
        assert_eq!(sr.part(part::BASE_DIT), split.non_layer);
        assert!(sr.part(part::SR_DIT) > 15 * GB);
        assert_eq!(
            visiting
                .stage(MemoryStage::Encode)
                .unwrap()
                .part(part::TEXT_ENCODER),
            models.text_bytes().total()
        );
        assert_eq!(sr.part(part::TEXT_ENCODER), models.text_bytes().final_norm);
    }

    #[test]
    fn stage_arithmetic() {
        let (j, models) = p1080();
        assert_eq!(j.tokens(j.shapes.base), 32 * 8 * 14 + 126 + 640);
        assert_eq!(j.tokens(j.shapes.sr.unwrap()), 32 * 34 * 60 + 126 + 640);
        let video = video_decode_bytes(&j, &models);
        // Three activations of 128 x 36 x 544 x 960 in bf16 (14.4 GB) plus temporaries.
        assert!((15 * GB..17 * GB).contains(&video), "{video}");
        let plan = plan(&(j, models), &budget(1000)).unwrap();
        for s in &plan.stages {
            assert_eq!(s.total(), s.parts.iter().map(|p| p.1).sum::<u64>());
        }
    }

    #[test]
    fn too_small_a_budget_names_the_need() {
        let err = plan(&p1080(), &budget(8)).unwrap_err().to_string();
        assert!(
            err.contains("needs at least") && err.contains("8.0 GB"),
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
        for bad in ["", "GB", "-3GB", "0", "12 parsecs", "1.2.3GB", "1e30"] {
            assert!(parse_memory_size(bad).is_err(), "{bad}");
        }
    }
}
