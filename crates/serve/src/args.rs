//! The flags of `cadence serve`, as a clap `Args` struct the CLI embeds.

use std::net::SocketAddr;
use std::path::PathBuf;

use cadence_pipeline::memory::MemoryArgs;
use cadence_pipeline::models::{BaseModel, Resolution};
use clap::Args;

/// `cadence serve`.
#[derive(Debug, Clone, Args)]
#[command(after_help = SERVE_HELP)]
pub struct ServeArgs {
    /// Address and port to listen on. The default answers only this machine; give
    /// 0.0.0.0:8080 (with --api-key) to expose it.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Folder of the job database (SQLite) and of the clips and uploads.
    #[arg(long, value_name = "DIR", default_value = "cadence-data")]
    pub data_dir: PathBuf,
    /// The job queue: a PostgreSQL URL (postgres://user:pass@host/db) shared by a fleet of
    /// servers; without it, an SQLite file in --data-dir.
    #[arg(long, value_name = "URL", env = "CADENCE_QUEUE")]
    pub queue: Option<String>,
    /// Serve the built-in tiny random model (CPU; the pictures are noise).
    #[arg(long)]
    pub demo: bool,
    /// The DiT of the base stage.
    #[arg(long, value_enum, default_value_t = BaseModel::Distilled)]
    pub model: BaseModel,
    /// Also load the super-resolution model of this resolution (540p or 1080p).
    #[arg(long, value_enum, default_value_t = Resolution::P256)]
    pub resolution: Resolution,
    /// Load the image encoder, so requests may carry an `input_reference` image.
    #[arg(long)]
    pub image: bool,
    /// Precision and memory placement of each worker's engine.
    #[command(flatten)]
    pub memory: MemoryArgs,
    /// A folder with one sub-folder per component, searched before the Hugging Face cache.
    #[arg(long, value_name = "DIR", env = "CADENCE_WEIGHTS_DIR")]
    pub weights_dir: Option<PathBuf>,
    /// Devices to run workers on, one worker each: `cpu`, or CUDA GPU indices (0,1,...).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "cpu"
    )]
    pub devices: Vec<DeviceArg>,
    /// Serve the API only: take jobs into the queue but run none (a front of a fleet).
    #[arg(long)]
    pub no_worker: bool,
    /// An API key clients must send (`Authorization: Bearer KEY`); repeatable, or
    /// comma-separated in CADENCE_API_KEYS. Without any key, no authentication is asked.
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "CADENCE_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// A file of API keys, one per line (blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Largest upload (the whole request body), in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 25 << 20)]
    pub max_upload_bytes: usize,
    /// Longest prompt, in characters.
    #[arg(long, value_name = "CHARS", default_value_t = 4000)]
    pub max_prompt_chars: usize,
    /// Longest clip, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub max_seconds: u32,
    /// Most jobs waiting in the queue; more are refused with 429 and Retry-After.
    #[arg(long, value_name = "JOBS", default_value_t = 100)]
    pub max_queue: u64,
    /// Seconds a finished clip (or a failure) is kept before it and its files are deleted.
    #[arg(long, value_name = "SECONDS", default_value_t = 24 * 3600)]
    pub retention: u64,
    /// Seconds a worker's claim on a job lasts without a heartbeat; a job whose worker
    /// vanished is taken over after this.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub lease: u64,
    /// Times a job is started before a worker loss marks it failed instead of retrying it.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_attempts: u32,
    /// On SIGTERM, seconds to let the running job finish before it is stopped and requeued.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub grace: u64,
}

/// One device of `--devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    /// The CPU.
    Cpu,
    /// A CUDA GPU by index.
    Cuda(usize),
}

impl std::str::FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            n => n.parse().map(Self::Cuda).map_err(|_| {
                format!("device {n:?} is neither `cpu` nor a GPU index; use e.g. --devices 0,1")
            }),
        }
    }
}

impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

const SERVE_HELP: &str = "\
Examples:
  cadence serve --demo                                   # http://127.0.0.1:8080/ in a browser
  cadence serve --api-key \"$KEY\" --bind 0.0.0.0:8080 --devices 0,1
  cadence serve --queue postgres://cadence@db/cadence --devices 0    # one member of a fleet
  cadence serve --queue postgres://cadence@db/cadence --no-worker    # an API-only front

It serves the OpenAI Videos API (POST/GET/DELETE /v1/videos, /v1/videos/{id}/content), plus
POST /v1/videos/sync, GET /v1/videos/{id}/events (progress as server-sent events), a page at /,
/healthz, /readyz and /metrics. Jobs survive restarts; SIGTERM stops taking jobs and lets the
running one finish (--grace) or requeues it. See crates/serve/README.md.";

/// `cadence serve` with these flags, for unit tests.
#[cfg(test)]
pub(crate) fn parse_for_tests(flags: &[&str]) -> ServeArgs {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }
    <Cli as clap::Parser>::parse_from(["serve"].iter().chain(flags)).args
}
