//! The T5Gemma text encoder, its tokenizer and the real config against the golden fixtures.
//!
//! Shared by the CPU tests and the GPU self-test: [`check_case`] takes a fixture case and a
//! device, recomputes what the case pins down and compares it at the tolerances the case states
//! (one summary line per compared tensor on stdout). A tensor the case holds but this module
//! cannot produce fails the case.
//!
//! Precision: the encoder runs in f32 (or the dtype the case's `compute` and tensor names ask
//! for). The fixtures state no gated bf16 tolerance for the encoder (their bf16 context is
//! informational only, and SPEC.md gives none), so there is no bf16 mode: on a GPU the check
//! runs f32 on the device at the f32 tolerances. The tokenizer and the config facts are CPU-only
//! by nature and ignore the device.

mod encoder;
mod real_config;
mod rules;
mod tokenizer;

use crate::fixtures::Case;
use cadence_core::{Error, Result};
use candle_core::Device;

/// The fixture kinds this module checks. `t5gemma_real_config` holds facts, not tensors.
pub const KINDS: &[&str] = &["t5gemma_encoder", "tokenizer", "t5gemma_real_config"];

/// Runs the check for `case` on `device` (the device is used by `t5gemma_encoder` only).
pub fn check_case(case: &Case, device: &Device) -> Result<()> {
    match case.kind.as_str() {
        "t5gemma_encoder" => encoder::check_case(case, device),
        "tokenizer" => tokenizer::check_case(case),
        "t5gemma_real_config" => real_config::check_case(case),
        other => Err(Error::Config(format!(
            "{}: kind {other} is not a text fixture",
            case.name
        ))),
    }
}
