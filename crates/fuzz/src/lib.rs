//! Fuzzing of every parser of untrusted bytes in Cadence, on the stable toolchain: safetensors
//! headers and shard indexes, PyTorch pickles and zip checkpoints, the models' `config.json`
//! files, `weights.toml`, PNG/JPEG/WebP images and WAV/FLAC/MP3/AAC audio ([`targets`]).
//!
//! Why this shape. cargo-fuzz and libFuzzer need a nightly compiler, which the project does not
//! use. [proptest](https://crates.io/crates/proptest) runs on stable and gives what a fuzzer
//! needs around the mutations: a seeded RNG (every run reproducible, `CADENCE_FUZZ_SEED` picks
//! another), case counts, and shrinking of a failing case to a minimal list of mutations.
//! `arbitrary` only turns raw bytes into typed values and `bolero`'s stable mode is the same
//! random-input loop with fewer controls, so proptest drives [`mutate`], which is structure-aware
//! where formats need it: valid seeds built by the formats' own encoders ([`seeds`]), integer
//! fields of every width set to boundary values, numbers in JSON/TOML set to extremes, chunks
//! duplicated and spliced, PNG checksums repaired so mutated headers reach the decoder.
//!
//! Each input must come back as `Ok` or `Err`: a panic fails, so does an input that runs past
//! the time limit or holds more heap at once than the target's bound ([`harness`]; measured by
//! [`alloc::CountingAlloc`], which the fuzz test binary installs). The bounded run is part of
//! `cargo test --workspace`; a long one is
//! `CADENCE_FUZZ_CASES=200000 cargo test --release -p cadence-fuzz -- --nocapture`.

pub mod alloc;
pub mod harness;
pub mod mutate;
pub mod seeds;
pub mod targets;
