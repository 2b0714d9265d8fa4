//! `cadence serve`: the engine behind the OpenAI Videos API, a built-in page, progress events,
//! health and metrics, with jobs that survive restarts and a queue a fleet of servers shares.
//! The CLI embeds [`ServeArgs`] and calls [`run`]; crates/serve/README.md shows it in use.
//!
//! # Choices
//!
//! * **Job queue: sqlx with this crate's own small schema** ([`store`]), on an embedded SQLite
//!   file by default or PostgreSQL for a fleet. Of the queue crates, graphile_worker, underway
//!   and sqlxmq are PostgreSQL-only, so the zero-set-up default would need a second queue; only
//!   apalis covers both, as two backends with their own schemas (apalis-sqlite's default
//!   features also pull in sqlx's macros and rustls). Either way the API's video objects
//!   (status, progress, stage, list order, errors) would live in a second table kept in step
//!   with the queue's. Here one `videos` row is both the job and the object the API returns:
//!   claiming is one `UPDATE ... RETURNING` (with `FOR UPDATE SKIP LOCKED` on PostgreSQL;
//!   SQLite serialises writers), a lease with heartbeats recovers the jobs of dead workers, and
//!   every write of a worker is fenced on its claim. No network protocol of our own: servers
//!   only talk to the database.
//! * **Where clips live**: files under `--data-dir` with SQLite (one machine); in the database
//!   with PostgreSQL, so every server of a fleet reads every clip (and upload) without a shared
//!   file system, and deleting a video deletes its files in the same statement. Clips are a
//!   few MB; stored uncompressed so byte ranges read only what they need.
//! * **HTTP**: axum on tokio, HTTP/1 only, with the features used (JSON, query, multipart).
//!   Generation runs on one plain thread per device ([`worker`]), never on the runtime.
//! * **Engine boundary**: everything that touches the engine's API is in [`generator`]
//!   (behind the [`generator::ClipGenerator`] trait), so a new engine API is one file's port.
//! * **Progress events** read the store rather than an in-process channel, so a client
//!   following a job gets its progress from whichever server of the fleet runs it.

pub mod api;
pub mod args;
pub mod auth;
pub mod generator;
pub mod metrics;
mod server;
pub mod store;
pub mod worker;

pub use args::ServeArgs;
pub use server::run;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A flag or the environment is unusable; the message names it and the fix.
    #[error("{0}")]
    Config(String),
    /// The job store could not be opened or failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A worker could not load its models.
    #[error("cannot load the models: {0}")]
    Engine(generator::GenError),
}
