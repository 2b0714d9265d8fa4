//! The video and audio codecs (Wan2.2 VAE, Turbo-VAED, Oobleck, the audio path) against the
//! golden fixtures.
//!
//! Shared by the CPU tests and the GPU self-test: [`check_case`] takes a fixture case and a
//! device, loads the case's weights and inputs onto the device, recomputes every `out.*` tensor
//! (and every `mid.*` the case holds) in f32 and compares it, back on the CPU, at the tolerance
//! `case.json: tolerances.<name>` states; an `out.*` tensor left unchecked fails the case. One
//! summary line per compared tensor goes to stdout.
//!
//! [`check_case_bf16`] runs the production precision instead: the two video codecs in bf16,
//! held to [`BF16_REL_L2`]; the audio VAE, f32 in production, runs its f32 check.

mod audio;
mod bf16;
mod checker;
mod turbo;
mod wan;

use crate::fixtures::Case;
use cadence_core::{Error, Result};
use candle_core::Device;

/// The fixture kinds this module checks.
pub const KINDS: &[&str] = &[
    "wan22_vae_encode",
    "wan22_vae_decode",
    "turbo_vaed_decode",
    "oobleck",
    "audio_post",
];

/// The kinds with a bf16 mode in [`check_case_bf16`]: the video codecs, bf16 in production.
pub const BF16_KINDS: &[&str] = &["wan22_vae_encode", "wan22_vae_decode", "turbo_vaed_decode"];

/// Bound on the relative L2 error of a bf16 video-codec result against the f32 reference.
///
/// The fixtures are f32 and state no bf16 tolerance; codecs SPEC.md asks for a looser
/// acceptance test for the bf16 path without giving a number. bf16 keeps 8 significant bits
/// (rounding error up to 2^-9 ≈ 0.2 % per op); over the ~30 conv layers of a decoder that
/// compounds to ~2 % (measured on the CPU: 1.4e-2 to 2.3e-2 on the fixtures).
pub const BF16_REL_L2: f64 = 0.05;

/// Runs the f32 check for `case` on `device`.
pub fn check_case(case: &Case, device: &Device) -> Result<()> {
    match case.kind.as_str() {
        "wan22_vae_encode" => wan::check_encode(case, device),
        "wan22_vae_decode" => wan::check_decode(case, device),
        "turbo_vaed_decode" => turbo::check_decode(case, device),
        "oobleck" => audio::check_oobleck(case, device),
        "audio_post" => audio::check_audio_post(case, device),
        other => Err(Error::Config(format!(
            "{}: kind {other} is not a codec fixture",
            case.name
        ))),
    }
}

/// Runs the check for `case` on `device` in the production precision: a [`BF16_KINDS`] case
/// computes in bf16 and its main output (latent or video) must stay within [`BF16_REL_L2`] of
/// the f32 reference; the audio kinds, f32 in production, run [`check_case`].
pub fn check_case_bf16(case: &Case, device: &Device) -> Result<()> {
    match case.kind.as_str() {
        "wan22_vae_encode" | "wan22_vae_decode" => bf16::check_wan(case, device),
        "turbo_vaed_decode" => bf16::check_turbo(case, device),
        _ => check_case(case, device),
    }
}
