//! The command line, as clap derive types. Only parsing and help live here; each subcommand's
//! behaviour is in its own module.

use std::path::PathBuf;

use cadence_pipeline::memory::MemoryArgs;
use cadence_pipeline::models::{BaseModel, Resolution, VideoDecoder};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::errors::EXIT_CODES_HELP;

const ABOUT: &str = "Generate short videos with synchronised speech and sound from a prompt \
(daVinci-MagiHuman, native Rust).";

const AFTER_HELP: &str = "\
Quick start:
  cadence generate --demo \"a test prompt\" -o demo.mp4   # tiny built-in model, no download
  cadence fetch                                          # the real weights (tens of GB; needs HF_TOKEN)
  cadence generate \"A woman smiles and says: hello there.\"

Run `cadence <command> --help` for the options of each command.";

/// `cadence`: the command-line front door of Cadence.
#[derive(Debug, Parser)]
#[command(
    name = "cadence",
    version,
    about = ABOUT,
    after_help = format!("{AFTER_HELP}\n\n{EXIT_CODES_HELP}"),
    propagate_version = true
)]
pub struct Cli {
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Verbosity, accepted by every subcommand.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// More log output (-v: details, -vv: everything, including the libraries).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors: no progress bars, no notices.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a clip (video + audio) from a prompt, optionally from an image and/or a voice.
    #[command(after_help = GENERATE_HELP)]
    Generate(GenerateArgs),
    /// Download the weights a mode needs into the Hugging Face cache.
    #[command(after_help = FETCH_HELP)]
    Fetch(FetchArgs),
    /// Report which weight files are present, missing or damaged.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Check this build on this device against the golden parity fixtures (built with the
    /// `selftest` feature).
    #[cfg(feature = "selftest")]
    #[command(after_help = SELFTEST_HELP)]
    Selftest(SelftestArgs),
    /// Time clips stage by stage: seconds, GPU memory, achieved TFLOP/s.
    #[command(after_help = BENCH_HELP)]
    Bench(BenchArgs),
    /// Show how a clip fits a GPU's memory: the placements, each stage's resident set and peak.
    #[command(after_help = PLAN_HELP)]
    Plan(PlanArgs),
    /// Serve the OpenAI Videos API, a web page and a job queue (one GPU to a fleet).
    Serve(cadence_serve::ServeArgs),
}

const GENERATE_HELP: &str = "\
Examples:
  cadence generate --demo \"a test prompt\" -o demo.mp4
  cadence generate \"A man in a blue shirt says: welcome to the show.\" --seed 7
  cadence generate --prompt-file prompt.txt --image face.png --seconds 5
  cadence generate \"She sings along.\" --audio voice.wav --resolution 540p
  cadence generate \"...\" --model base --steps 24 --width 512 --height 512 --json > run.json

Without weights installed, `cadence generate \"prompt\"` runs the built-in demo model and says so.
Sizes are rounded down to multiples of 32 pixels. 540p and 1080p first generate at 448x256 (or
the --width/--height shape scaled to that area), then run the super-resolution model.

Memory: the models are placed to fit the device (or --max-memory): everything resident when it
fits, else FP8 DiTs, then models that visit the device only for their stage, then layers streamed
from host memory. `cadence plan` shows the arrangement without loading anything; --offload and
--precision force one.

Limits: 1-20 whole seconds; prompts up to 16 KiB and 2048 tokens; stages up to 1920 px a side
and 1920x1088 pixels; a clip whose memory estimate exceeds the budget is refused before any work.
Ctrl-C or SIGTERM stops cleanly: no partial file is left behind.";

const FETCH_HELP: &str = "\
Examples:
  cadence fetch                        # distilled text-to-video at 256p (the fastest mode)
  cadence fetch --model base --resolution 1080p --image
  cadence fetch --all                  # every component
  cadence fetch --component wan_vae    # one component by id
  HF_HUB_OFFLINE=1 cadence fetch       # what is already cached, without network

Files go to the Hugging Face cache (HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub) and interrupted downloads resume. google/t5gemma-9b-9b-ul2 and
stabilityai/stable-audio-open-1.0 are gated: accept their licences on huggingface.co, then give a
token with --token, HF_TOKEN or `huggingface-cli login`.";

const CHECK_HELP: &str = "\
Examples:
  cadence check                               # the default mode, in the cache
  cadence check --weights-dir /data/ckpts --all
  cadence check --model base --resolution 540p --hashes

Each file is reported present, missing or corrupt; DiT and text-encoder checkpoints are also
opened and every tensor name and shape compared with what the model expects.";

#[cfg(feature = "selftest")]
const SELFTEST_HELP: &str = "\
Examples:
  cadence selftest                                   # every fixture case, on the CPU here
  cadence selftest --device cuda                     # the same cases on the GPU
  cadence selftest --device cuda --kind dit_forward  # only the DiT cases
  CADENCE_FIXTURES=/data/fixtures cadence selftest

Every case under the fixture folder ($CADENCE_FIXTURES, else ../shared/fixtures beside the source
tree) is recomputed by the checker that owns its kind and compared at the tolerances its case.json
states; one line per case (`ok <case> (<kind>) <seconds>s` or `FAIL <case> (<kind>): <reason>`),
then `N passed, M failed, K skipped`. The exit code is 1 when any case fails or has a kind no
checker knows.

Precision: dit_forward cases compute in the dtype their case.json names (f32 or bf16) on every
device; the video codecs run their f32 check and then their production bf16 check (bound 0.05
relative L2); everything else is f32. On CUDA, candle's f32 matrix products use full f32 (cuBLAS
CUBLAS_COMPUTE_32F; TF32 stays off, and selftest makes sure of it), so the f32 cases are held to
the same tight tolerances as on the CPU.";

const BENCH_HELP: &str = "\
Examples:
  cadence bench --demo --runs 2 --resolution 256p --model distilled --out bench/
  cadence bench --device cuda --resolution 256p --model distilled --out bench/
  cadence bench --device cuda --runs 5 --out bench/        # 256p, 540p and 1080p, both models
  cadence bench --device cuda --random-weights --resolution 1080p --model distilled

For each resolution and model: one cold run (building the models and moving them to the
device, then a clip) and --runs warm runs; the medians of the seconds per clip and per stage
(text encoding, each denoising stage and its steps, video decoding, audio decoding, muxing),
the peak GPU memory per stage, and the achieved TFLOP/s of the DiT stages and the text encoder
against a GEMM peak measured in the same run (a bf16 product shaped like the DiT's QKV
projection). The table goes to stdout (--json: the JSON document); --out DIR writes both
bench.json and bench.md there.

Without --demo the models have their real sizes (15B parameters per DiT), so a GPU is needed;
the installed weights are used when complete, else random weights at the real sizes (the report
says so: time and memory are representative, the clips are noise). --demo runs the embedded tiny
model on the CPU: it checks the harness, its numbers do not describe the real model.";

const PLAN_HELP: &str = "\
Examples:
  cadence plan --resolution 1080p --max-memory 24GB
  cadence plan --resolution 540p --seconds 10 --max-memory 16GB --json
  cadence plan --resolution 256p --max-memory 80GB --precision bf16 --offload none

Nothing is loaded: the plan comes from the published models' configurations (bf16 compute on a
GPU). For each stage (encode, base, sr, decode) it lists what is on the device and the peak, with
the placements chosen: DiTs and text encoder resident, visiting (on the device only for their
stage) or streamed (their layers copied a few at a time). The exit code is 0 when a plan fits
the budget, 5 when none does (the message names the smallest budget that would do).";

/// `--seconds`: whole seconds, with a message that says so.
fn whole_seconds(text: &str) -> Result<u32, String> {
    text.trim().parse::<u32>().map_err(|_| {
        format!(
            "{text:?} is not a whole number of seconds; clips are whole seconds (1-20), \
             e.g. --seconds 2"
        )
    })
}

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// The first CUDA GPU when this build has CUDA and one is present, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

/// The flags that decide which models a run needs; shared by generate, fetch and check.
#[derive(Debug, Clone, Args)]
pub struct ModeArgs {
    /// Model variant for the base stage.
    #[arg(long, value_enum, default_value_t = BaseModel::Distilled)]
    pub model: BaseModel,
    /// Output resolution preset.
    #[arg(long, value_enum, default_value_t = Resolution::P256)]
    pub resolution: Resolution,
    /// Which decoder turns the latents into frames.
    #[arg(long, value_enum, default_value_t = VideoDecoder::Turbo)]
    pub video_decoder: VideoDecoder,
}

/// Where the weights are.
#[derive(Debug, Clone, Args)]
pub struct WeightsArgs {
    /// A folder with one sub-folder per component (distill/, t5gemma-9b-9b-ul2/, ...), searched
    /// before the Hugging Face cache.
    #[arg(long, value_name = "DIR", env = "CADENCE_WEIGHTS_DIR")]
    pub weights_dir: Option<PathBuf>,
    /// An edited weights.toml instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
}

/// `cadence generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What the clip shows and says (quote it). Detailed prompts work best.
    #[arg(value_name = "PROMPT", conflicts_with = "prompt_file")]
    // Not a String: clap would reject a non-UTF-8 prompt without saying how to fix it.
    pub prompt: Option<std::ffi::OsString>,
    /// Read the prompt from a text file.
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// First frame to animate (PNG, JPEG or WebP).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Voice or sound to drive the clip (WAV, FLAC, MP3, M4A); it is kept as the soundtrack.
    #[arg(long, value_name = "FILE")]
    pub audio: Option<PathBuf>,
    /// Clip length in whole seconds, 1-20 (with --audio: at most this much of it)
    /// [default: 4; 2 with the demo model].
    #[arg(long, value_parser = whole_seconds)]
    pub seconds: Option<u32>,
    /// Model and resolution.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Output width in pixels (with --height), instead of the preset's.
    #[arg(long, requires = "height")]
    pub width: Option<u32>,
    /// Output height in pixels (with --width), instead of the preset's.
    #[arg(long, requires = "width")]
    pub height: Option<u32>,
    /// Denoising steps of the base stage (default: 8 distilled, 32 base).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed of every random draw; the same seed and settings give the same clip.
    /// Default: a random one (printed, and part of the default file name).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output file [default: cadence-<seed>.mp4].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Precision and memory placement.
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Weights location.
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Use the built-in tiny random model (CPU, seconds): shows the whole pipeline working,
    /// the picture is noise. Without a prompt it uses a sample one.
    #[arg(long)]
    pub demo: bool,
    /// Print a JSON summary (sizes, seed, per-stage timings) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Selects components for fetch and check: a mode, or explicit ids.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Model and resolution.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Include what a reference image needs (the Wan2.2 VAE encoder).
    #[arg(long)]
    pub image: bool,
    /// Include what a reference audio needs.
    #[arg(long)]
    pub audio: bool,
    /// Every component of the manifest.
    #[arg(long, conflicts_with = "component")]
    pub all: bool,
    /// Component ids instead of a mode (repeatable): base, distill, 540p_sr, 1080p_sr,
    /// turbo_vae, t5gemma, stable_audio, wan_vae.
    #[arg(long, value_name = "ID")]
    pub component: Vec<String>,
}

/// `cadence fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// What to fetch.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Hugging Face access token (default: HF_TOKEN, or the `huggingface-cli login` file).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Use only what is already cached; never touch the network (same as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Weights.toml to use.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
}

/// `cadence check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// What to check.
    #[command(flatten)]
    pub select: SelectArgs,
    /// Weights location.
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Also hash every file whose sha256 is known (reads every byte: minutes for 15B models).
    #[arg(long)]
    pub hashes: bool,
}

/// `cadence bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Resolutions to measure (repeatable) [default: 256p, 540p and 1080p].
    #[arg(long, value_enum, value_name = "RESOLUTION")]
    pub resolution: Vec<Resolution>,
    /// Base models to measure (repeatable) [default: distilled and base].
    #[arg(long, value_enum, value_name = "MODEL")]
    pub model: Vec<BaseModel>,
    /// Warm runs per scenario (the engine already built); the report gives their median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Cold runs per scenario, each building the models anew.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub cold_runs: u64,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u32,
    /// The prompt of every run [default: a 200-byte scene description].
    #[arg(long)]
    pub prompt: Option<String>,
    /// Seed of every run.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The embedded tiny model on the CPU (checks the harness; the numbers are not the model's).
    #[arg(long)]
    pub demo: bool,
    /// Run the real sizes on the CPU anyway (15B parameters per DiT: very slow, ~100 GB RAM).
    #[arg(long, conflicts_with = "demo")]
    pub allow_cpu: bool,
    /// Precision and memory placement of every scenario's engine.
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Random weights at the real sizes even when the real ones are installed.
    #[arg(long, conflicts_with = "demo")]
    pub random_weights: bool,
    /// Weights location.
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// The reference GEMM as MxKxN [default: 4096x5120x7208, the DiT's QKV projection over
    /// 4096 tokens; 256x512x512 with --demo].
    #[arg(long, value_name = "MxKxN", value_parser = parse_gemm)]
    pub gemm: Option<(usize, usize, usize)>,
    /// Write bench.json and bench.md into this folder (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `cadence plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Model and resolution.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Plan for a first-frame image (TI2V: the Wan2.2 encoder is loaded).
    #[arg(long)]
    pub image: bool,
    /// Clip length in whole seconds.
    #[arg(long, default_value_t = 5, value_parser = whole_seconds)]
    pub seconds: u32,
    /// Output width in pixels (with --height), instead of the preset's.
    #[arg(long, requires = "height")]
    pub width: Option<u32>,
    /// Output height in pixels (with --width), instead of the preset's.
    #[arg(long, requires = "width")]
    pub height: Option<u32>,
    /// Precision and memory placement (--max-memory is required here).
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// Print the plan as JSON (`fits`, `peak_gb`, and a `stages` list with `name` and
    /// `peak_gb`).
    #[arg(long)]
    pub json: bool,
}

/// `4096x5120x7208` as `(m, k, n)`.
fn parse_gemm(text: &str) -> Result<(usize, usize, usize), String> {
    let dims: Vec<usize> = text
        .split('x')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&v| v > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{text:?} is not MxKxN with positive integers"))?;
    match dims[..] {
        [m, k, n] => Ok((m, k, n)),
        _ => Err(format!("{text:?} is not MxKxN (three sizes)")),
    }
}

/// `cadence selftest`.
#[cfg(feature = "selftest")]
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Where to run the checks.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Only the cases of this fixture kind (repeatable), e.g. dit_forward, t5gemma_encoder,
    /// turbo_vaed_decode; cases of other kinds are counted as skipped.
    #[arg(long, value_name = "KIND")]
    pub kind: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn gemm_shapes_parse() {
        assert_eq!(parse_gemm("4096x5120x7208"), Ok((4096, 5120, 7208)));
        assert!(parse_gemm("4096x5120").is_err());
        assert!(parse_gemm("0x1x1").is_err());
        assert!(parse_gemm("ax1x1").is_err());
    }

    #[test]
    fn width_needs_height() {
        let e = Cli::try_parse_from(["cadence", "generate", "p", "--width", "512"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn presets_parse_by_their_names() {
        let cli =
            Cli::try_parse_from(["cadence", "generate", "p", "--resolution", "1080p"]).unwrap();
        let Command::Generate(g) = cli.command else {
            panic!("not generate")
        };
        assert_eq!(g.mode.resolution, Resolution::P1080);
        assert_eq!(g.mode.model, BaseModel::Distilled);
    }
}
