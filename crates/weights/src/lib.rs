//! Weights management for Cadence: what to download, from where, and whether what is on disk
//! is complete.
//!
//! * [`Manifest`]: every component (DiTs, VAEs, text encoder, audio model) with its Hugging
//!   Face repository, revision and files, from `weights.toml` ([`Manifest::embedded`] or
//!   [`Manifest::load`]).
//! * Components are named by their manifest ids (`distill`, `t5gemma`, ...); which ones a
//!   generation mode needs is the engine's business (`cadence_pipeline::models::Mode`).
//! * [`fetch()`]: downloads components into the Hugging Face cache (the layout `huggingface_hub`
//!   uses, so existing caches are reused), resumable, verified before a file takes its final
//!   name, with progress callbacks ([`Progress`]), token and endpoint from the usual `HF_*`
//!   variables ([`HubSettings`]) and an offline mode.
//! * [`WeightsRoot`]: finds a component's folder in a plain weights directory or the cache.
//! * [`check()`]: per file present / missing / corrupt, plus a [`LayoutCheck`] hook for
//!   tensor-level checks by the model crates.
//!
//! Every error is one sentence naming the file and the fix, ready to print.
//!
//! ```no_run
//! use cadence_weights::{check, fetch, CheckOptions, FetchOptions, Manifest, WeightsRoot};
//! # fn main() -> cadence_weights::Result<()> {
//! let manifest = Manifest::embedded()?;
//! let ids = ["distill", "t5gemma", "turbo_vae", "stable_audio"];
//! let options = FetchOptions::from_env()?;
//! let report = fetch(&manifest, &ids, &options, &mut ())?;
//! for (file, error) in report.errors() {
//!     eprintln!("{file}: {error}");
//! }
//! let root = WeightsRoot::from_settings(None, &options.hub);
//! let checked = check(&manifest, &ids, &root, &CheckOptions::default(), None)?;
//! assert!(checked.is_ok(), "{}", checked.problems().join("\n"));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod cache;
pub mod check;
mod error;
pub mod fetch;
mod formats;
mod http;
pub mod hub;
pub mod manifest;
pub mod progress;
mod resume;
pub mod root;
pub mod token;

pub use check::{
    check, CheckOptions, CheckReport, ComponentCheck, FileCheck, FileStatus, LayoutCheck,
};
pub use error::{Error, Result};
pub use fetch::{fetch, ComponentFetch, FetchOptions, FetchReport, FetchedFile, FileOutcome};
pub use hub::HubSettings;
pub use manifest::{Component, FileSpec, Manifest, RemoteFile};
pub use progress::Progress;
pub use root::{Located, Source, WeightsRoot};
pub use token::{Token, TokenSource};
